use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point, summary_data_point::ValueAtQuantile, ExponentialHistogram,
    Gauge, Histogram as OtlpHistogram, ResourceMetrics, ScopeMetrics, Sum, Summary,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::*;
use crate::prom::pack::{field_len, pack};
use crate::prom::remote_write::is_stale_nan;
use prost::Message;

const T0: u64 = 1_700_000_000_000_000_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn kv_any(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn service() -> Vec<KeyValue> {
    vec![
        kv("service.name", "checkout"),
        kv("service.namespace", "shop"),
        kv("service.instance.id", "node-7"),
        kv("host.name", "edge-1"),
    ]
}

fn number(v: f64, attrs: Vec<KeyValue>, t: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: t,
        start_time_unix_nano: T0,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: format!("about {name}"),
        data: Some(data),
        ..Default::default()
    }
}

fn sum(points: Vec<NumberDataPoint>, monotonic: bool, temporality: AggregationTemporality) -> Data {
    Data::Sum(Sum {
        data_points: points,
        aggregation_temporality: temporality as i32,
        is_monotonic: monotonic,
    })
}

/// Every series as (`name{labels}`, values) in a readable, sorted form.
fn flat(t: &Translation) -> Vec<(String, Vec<f64>)> {
    let mut out: Vec<(String, Vec<f64>)> = t
        .groups
        .iter()
        .flat_map(|g| g.series.iter())
        .map(|s| {
            let name = s
                .labels
                .iter()
                .find(|l| l.name == METRIC_NAME_LABEL)
                .map(|l| l.value.clone())
                .unwrap();
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|l| l.name != METRIC_NAME_LABEL)
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            (
                format!("{name}{{{}}}", labels.join(",")),
                s.samples.iter().map(|x| x.value).collect(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn names(t: &Translation) -> Vec<String> {
    flat(t)
        .into_iter()
        .map(|(s, _)| s.split('{').next().unwrap().to_owned())
        .collect()
}

#[test]
fn counters_get_unit_and_total_suffixes_and_identity_labels() {
    let req = request(
        service(),
        vec![metric(
            "http.server.request.duration",
            "ms",
            sum(
                vec![number(
                    12.0,
                    vec![kv("http.method", "GET")],
                    T0 + 1_000_000_000,
                )],
                true,
                AggregationTemporality::Cumulative,
            ),
        )],
    );
    let t = translate(
        &req,
        &Settings {
            target_info: false,
            ..Default::default()
        },
    );
    assert_eq!(
        flat(&t),
        vec![(
            "http_server_request_duration_milliseconds_total{http_method=GET,instance=node-7,job=shop/checkout}"
                .to_owned(),
            vec![12.0]
        )]
    );
    let s = &t.groups[0].series[0];
    assert_eq!(s.samples[0].timestamp, 1_700_000_001_000);
    // Labels are sorted by name, __name__ included.
    let order: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(order, ["__name__", "http_method", "instance", "job"]);
    assert_eq!(t.points(), 1);
    assert!(t.dropped.is_empty());
}

#[test]
fn names_follow_the_compatibility_rules() {
    let cases: &[(&str, &str, Data, &str)] = &[
        // A name already ending in _total keeps one _total.
        (
            "requests_total",
            "",
            sum(
                vec![number(1.0, vec![], T0)],
                true,
                AggregationTemporality::Cumulative,
            ),
            "requests_total",
        ),
        // Unit 1 on a gauge is a ratio; on a counter it is dropped.
        (
            "memory.utilization",
            "1",
            Data::Gauge(Gauge {
                data_points: vec![number(0.5, vec![], T0)],
            }),
            "memory_utilization_ratio",
        ),
        (
            "outpost.test.requests",
            "1",
            sum(
                vec![number(1.0, vec![], T0)],
                true,
                AggregationTemporality::Cumulative,
            ),
            "outpost_test_requests_total",
        ),
        // Annotations vanish, "per" units are spelt out, a unit the name already holds is not repeated.
        (
            "system.network.dropped",
            "{packets}",
            sum(
                vec![number(1.0, vec![], T0)],
                true,
                AggregationTemporality::Cumulative,
            ),
            "system_network_dropped_total",
        ),
        (
            "disk.io.rate",
            "By/s",
            Data::Gauge(Gauge {
                data_points: vec![number(1.0, vec![], T0)],
            }),
            "disk_io_rate_bytes_per_second",
        ),
        (
            "request.duration.seconds",
            "s",
            Data::Gauge(Gauge {
                data_points: vec![number(1.0, vec![], T0)],
            }),
            "request_duration_seconds",
        ),
        // Invalid characters and runs of them become one _, a leading digit gets a _.
        (
            "9lives..cat/count",
            "",
            Data::Gauge(Gauge {
                data_points: vec![number(1.0, vec![], T0)],
            }),
            "_9lives_cat_count",
        ),
        // A non-monotonic sum is a gauge: no _total.
        (
            "queue.depth",
            "{items}",
            sum(
                vec![number(-3.0, vec![], T0)],
                false,
                AggregationTemporality::Cumulative,
            ),
            "queue_depth",
        ),
        // Unknown units are kept, sanitised.
        (
            "fan.speed",
            "rpm",
            Data::Gauge(Gauge {
                data_points: vec![number(1.0, vec![], T0)],
            }),
            "fan_speed_rpm",
        ),
    ];
    for (name, unit, data, want) in cases {
        let req = request(vec![], vec![metric(name, unit, data.clone())]);
        let t = translate(&req, &Settings::default());
        assert_eq!(names(&t), vec![want.to_string()], "{name} [{unit}]");
    }
}

#[test]
fn without_suffixes_only_the_name_is_sanitised_and_namespace_prefixes() {
    let req = request(
        vec![],
        vec![metric(
            "http.server.duration",
            "ms",
            sum(
                vec![number(1.0, vec![], T0)],
                true,
                AggregationTemporality::Cumulative,
            ),
        )],
    );
    let t = translate(
        &req,
        &Settings {
            add_metric_suffixes: false,
            namespace: Some("edge".into()),
            ..Default::default()
        },
    );
    assert_eq!(names(&t), vec!["edge_http_server_duration"]);
}

#[test]
fn label_names_are_sanitised_and_colliding_values_joined_in_key_order() {
    let req = request(
        vec![],
        vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: vec![number(
                    1.0,
                    vec![
                        kv("a.b", "dot"),
                        kv("a-b", "dash"),
                        kv("2xx", "digit"),
                        kv("_private", "underscore"),
                        kv("ok", ""),
                        kv_any("flag", any_value::Value::BoolValue(true)),
                        kv_any("n", any_value::Value::IntValue(-4)),
                        kv_any("ratio", any_value::Value::DoubleValue(0.25)),
                        kv_any(
                            "list",
                            any_value::Value::ArrayValue(ArrayValue {
                                values: vec![
                                    AnyValue {
                                        value: Some(any_value::Value::StringValue("x".into())),
                                    },
                                    AnyValue {
                                        value: Some(any_value::Value::IntValue(1)),
                                    },
                                ],
                            }),
                        ),
                    ],
                    T0,
                )],
            }),
        )],
    );
    let t = translate(&req, &Settings::default());
    assert_eq!(
        flat(&t)[0].0,
        r#"g{a_b=dash;dot,flag=true,key_2xx=digit,key_private=underscore,list=["x",1],n=-4,ratio=0.25}"#
    );
}

#[test]
fn histograms_become_cumulative_buckets_with_sum_and_count() {
    let p = HistogramDataPoint {
        attributes: vec![kv("route", "/buy")],
        time_unix_nano: T0,
        count: 10,
        sum: Some(42.5),
        bucket_counts: vec![1, 2, 3, 4],
        explicit_bounds: vec![0.005, 1.0, 2.5],
        exemplars: vec![OtlpExemplar {
            value: Some(exemplar::Value::AsDouble(2.0)),
            time_unix_nano: T0 - 5_000_000,
            trace_id: vec![0xab; 16],
            span_id: vec![0x01; 8],
            filtered_attributes: vec![kv("user", "u1")],
        }],
        ..Default::default()
    };
    let req = request(
        service(),
        vec![metric(
            "latency",
            "s",
            Data::Histogram(OtlpHistogram {
                data_points: vec![p],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )],
    );
    let t = translate(
        &req,
        &Settings {
            target_info: false,
            ..Default::default()
        },
    );
    let l = "instance=node-7,job=shop/checkout";
    assert_eq!(
        flat(&t),
        vec![
            (
                "latency_seconds_bucket{instance=node-7,job=shop/checkout,le=+Inf,route=/buy}"
                    .to_owned(),
                vec![10.0]
            ),
            (
                "latency_seconds_bucket{instance=node-7,job=shop/checkout,le=0.005,route=/buy}"
                    .to_owned(),
                vec![1.0]
            ),
            (
                "latency_seconds_bucket{instance=node-7,job=shop/checkout,le=1,route=/buy}"
                    .to_owned(),
                vec![3.0]
            ),
            (
                "latency_seconds_bucket{instance=node-7,job=shop/checkout,le=2.5,route=/buy}"
                    .to_owned(),
                vec![6.0]
            ),
            (
                format!("latency_seconds_count{{{l},route=/buy}}"),
                vec![10.0]
            ),
            (format!("latency_seconds_sum{{{l},route=/buy}}"), vec![42.5]),
        ]
    );
    // One group (one point), and its exemplar sits on the bucket its value falls in (1 < 2 <= 2.5).
    assert_eq!(t.groups.len(), 1);
    assert_eq!(t.points(), 1);
    let with_exemplar: Vec<&TimeSeries> = t.groups[0]
        .series
        .iter()
        .filter(|s| !s.exemplars.is_empty())
        .collect();
    assert_eq!(with_exemplar.len(), 1);
    assert!(with_exemplar[0].labels.contains(&Label::new("le", "2.5")));
    let e = &with_exemplar[0].exemplars[0];
    assert_eq!(e.value, 2.0);
    assert_eq!(e.timestamp, 1_699_999_999_995);
    assert_eq!(
        e.labels,
        vec![
            Label::new("trace_id", "ab".repeat(16)),
            Label::new("span_id", "01".repeat(8)),
            Label::new("user", "u1"),
        ]
    );
}

#[test]
fn summaries_become_quantiles_sum_and_count() {
    let req = request(
        vec![],
        vec![metric(
            "rpc.latency",
            "ms",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: T0,
                    count: 4,
                    sum: 20.0,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 4.0,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 9.0,
                        },
                    ],
                    ..Default::default()
                }],
            }),
        )],
    );
    let t = translate(&req, &Settings::default());
    assert_eq!(
        flat(&t),
        vec![
            ("rpc_latency_milliseconds_count{}".to_owned(), vec![4.0]),
            ("rpc_latency_milliseconds_sum{}".to_owned(), vec![20.0]),
            (
                "rpc_latency_milliseconds{quantile=0.5}".to_owned(),
                vec![4.0]
            ),
            (
                "rpc_latency_milliseconds{quantile=0.99}".to_owned(),
                vec![9.0]
            ),
        ]
    );
}

#[test]
fn delta_and_unspecified_temporality_are_dropped_and_counted() {
    let req = request(
        vec![],
        vec![
            metric(
                "d",
                "",
                sum(
                    vec![number(1.0, vec![], T0), number(2.0, vec![], T0 + 1)],
                    true,
                    AggregationTemporality::Delta,
                ),
            ),
            metric(
                "u",
                "",
                Data::Histogram(OtlpHistogram {
                    data_points: vec![HistogramDataPoint::default()],
                    aggregation_temporality: 0,
                }),
            ),
            metric(
                "kept",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(1.0, vec![], T0)],
                }),
            ),
        ],
    );
    let t = translate(&req, &Settings::default());
    assert_eq!(names(&t), vec!["kept"]);
    assert_eq!(
        t.dropped,
        vec![
            (reason::DELTA_TEMPORALITY, 2),
            (reason::UNSPECIFIED_TEMPORALITY, 1)
        ]
    );
    assert_eq!(t.points(), 1);
}

#[test]
fn target_info_carries_the_other_resource_attributes() {
    let req = request(
        service(),
        vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: vec![number(1.0, vec![], T0), number(2.0, vec![], T0 + 2_000_000)],
            }),
        )],
    );
    let t = translate(&req, &Settings::default());
    let info: Vec<_> = flat(&t)
        .into_iter()
        .filter(|(s, _)| s.starts_with("target_info"))
        .collect();
    assert_eq!(
        info,
        vec![(
            "target_info{host_name=edge-1,instance=node-7,job=shop/checkout}".to_owned(),
            vec![1.0]
        )]
    );
    // At the latest timestamp of the resource's points; not counted as an OTLP point.
    let ts = t
        .groups
        .iter()
        .flat_map(|g| &g.series)
        .find(|s| {
            s.labels
                .contains(&Label::new(METRIC_NAME_LABEL, "target_info"))
        })
        .unwrap()
        .samples[0]
        .timestamp;
    assert_eq!(ts, 1_700_000_000_002);
    assert_eq!(t.points(), 2);

    // No target_info without other attributes, or without job/instance to join on.
    let bare = request(
        vec![kv("service.name", "a")],
        vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: vec![number(1.0, vec![], T0)],
            }),
        )],
    );
    assert_eq!(names(&translate(&bare, &Settings::default())), vec!["g"]);
    let anonymous = request(
        vec![kv("host.name", "h")],
        vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: vec![number(1.0, vec![], T0)],
            }),
        )],
    );
    assert_eq!(
        names(&translate(&anonymous, &Settings::default())),
        vec!["g"]
    );
}

#[test]
fn precedence_resource_attributes_point_attributes_identity_external_labels() {
    let req = request(
        vec![
            kv("service.name", "api"),
            kv("zone", "resource-zone"),
            kv("rack", "r1"),
        ],
        vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: vec![number(
                    1.0,
                    vec![
                        kv("zone", "point-zone"),
                        kv("job", "point-job"),
                        kv("site", "point-site"),
                    ],
                    T0,
                )],
            }),
        )],
    );
    let settings = Settings {
        resource_to_telemetry_conversion: true,
        target_info: false,
        external_labels: Settings::external_labels(&BTreeMap::from([
            ("site".to_owned(), "external-site".to_owned()),
            ("cluster".to_owned(), "edge".to_owned()),
        ])),
        ..Default::default()
    };
    let t = translate(&req, &settings);
    assert_eq!(
        flat(&t)[0].0,
        "g{cluster=edge,job=api,rack=r1,service_name=api,site=point-site,zone=point-zone}"
    );
}

#[test]
fn no_recorded_value_becomes_stale_markers() {
    let mut gauge_point = number(5.0, vec![], T0);
    gauge_point.flags = 1;
    let hist_point = HistogramDataPoint {
        time_unix_nano: T0,
        count: 3,
        sum: Some(1.0),
        bucket_counts: vec![1, 2],
        explicit_bounds: vec![1.0],
        flags: 1,
        ..Default::default()
    };
    let req = request(
        vec![],
        vec![
            metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![gauge_point],
                }),
            ),
            metric(
                "h",
                "",
                Data::Histogram(OtlpHistogram {
                    data_points: vec![hist_point],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
        ],
    );
    let t = translate(&req, &Settings::default());
    let all = flat(&t);
    assert_eq!(all.len(), 5);
    for (name, values) in all {
        assert!(is_stale_nan(values[0]), "{name}: {values:?}");
    }
}

fn exp_point(scale: i32, offset: i32, counts: Vec<u64>) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        time_unix_nano: T0,
        count: counts.iter().sum::<u64>() + 1,
        sum: Some(100.0),
        scale,
        zero_count: 1,
        positive: Some(exponential_histogram_data_point::Buckets {
            offset,
            bucket_counts: counts,
        }),
        ..Default::default()
    }
}

fn exp_request(points: Vec<ExponentialHistogramDataPoint>) -> ExportMetricsServiceRequest {
    request(
        vec![],
        vec![metric(
            "size",
            "By",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )],
    )
}

#[test]
fn exponential_histograms_become_native_histograms() {
    // Buckets at OTLP indexes 3,4 then a gap of 2 (kept in the span) then 7, then a gap of 3 (new span)
    // then 11: Prometheus indexes are one higher.
    let t = translate(
        &exp_request(vec![exp_point(2, 3, vec![5, 3, 0, 0, 2, 0, 0, 0, 4])]),
        &Settings::default(),
    );
    assert_eq!(names(&t), vec!["size_bytes"]);
    let s = &t.groups[0].series[0];
    assert!(s.samples.is_empty());
    let h = &s.histograms[0];
    assert_eq!(h.schema, 2);
    assert_eq!(h.count, Some(histogram::Count::CountInt(15)));
    assert_eq!(h.zero_count, Some(histogram::ZeroCount::ZeroCountInt(1)));
    assert_eq!(h.zero_threshold, 1e-128);
    assert_eq!(h.sum, 100.0);
    assert_eq!(h.timestamp, 1_700_000_000_000);
    assert_eq!(
        h.positive_spans,
        vec![
            BucketSpan {
                offset: 4,
                length: 5
            },
            BucketSpan {
                offset: 3,
                length: 1
            }
        ]
    );
    // Absolute counts 5,3,0,0,2 | 4 as deltas.
    assert_eq!(h.positive_deltas, vec![5, -2, -3, 0, 2, 2]);
    assert!(h.negative_spans.is_empty());
}

#[test]
fn scales_above_8_are_downscaled_and_below_minus_4_dropped() {
    // Scale 10 → 8 merges groups of 4 buckets: OTLP indexes 6..=9 become 1 (6>>2) and 2 (8>>2, 9>>2).
    let t = translate(
        &exp_request(vec![
            exp_point(10, 6, vec![1, 2, 3, 4]),
            exp_point(-5, 0, vec![1]),
        ]),
        &Settings::default(),
    );
    let h = &t.groups[0].series[0].histograms[0];
    assert_eq!(h.schema, 8);
    assert_eq!(
        h.positive_spans,
        vec![BucketSpan {
            offset: 2,
            length: 2
        }]
    );
    assert_eq!(h.positive_deltas, vec![3, 4]);
    assert_eq!(t.dropped, vec![(reason::UNSUPPORTED_SCALE, 1)]);
    assert_eq!(t.points(), 1);
}

#[test]
fn points_of_one_series_merge_in_time_order() {
    let req = request(
        vec![],
        vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: vec![
                    number(3.0, vec![], T0 + 3_000_000),
                    number(1.0, vec![], T0 + 1_000_000),
                    number(2.0, vec![], T0 + 2_000_000),
                ],
            }),
        )],
    );
    let t = translate(&req, &Settings::default());
    assert_eq!(t.groups.len(), 1);
    assert_eq!(t.groups[0].points, 3);
    let ts: Vec<i64> = t.groups[0].series[0]
        .samples
        .iter()
        .map(|s| s.timestamp)
        .collect();
    assert_eq!(
        ts,
        vec![1_700_000_000_001, 1_700_000_000_002, 1_700_000_000_003]
    );
    assert_eq!(flat(&t)[0].1, vec![1.0, 2.0, 3.0]);
}

fn many_gauges(n: usize) -> ExportMetricsServiceRequest {
    request(
        vec![],
        vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: (0..n)
                    .map(|i| number(i as f64, vec![kv("i", &i.to_string())], T0))
                    .collect(),
            }),
        )],
    )
}

#[test]
fn pack_respects_sample_and_byte_limits_and_counts_points_per_request() {
    let t = translate(&many_gauges(25), &Settings::default());
    let reqs = pack(t, usize::MAX, 10);
    let samples: Vec<usize> = reqs.iter().map(|r| r.samples).collect();
    assert_eq!(samples, vec![10, 10, 5]);
    let points: Vec<usize> = reqs.iter().map(|r| r.points).collect();
    assert_eq!(points, vec![10, 10, 5]);

    let t = translate(&many_gauges(25), &Settings::default());
    let one = field_len(t.groups[0].series[0].encoded_len());
    let reqs = pack(t, one * 4, usize::MAX);
    assert!(reqs.len() >= 7, "{}", reqs.len());
    for r in &reqs {
        assert!(
            r.body.encoded_len() <= one * 4 + 8,
            "{}",
            r.body.encoded_len()
        );
    }
    assert_eq!(reqs.iter().map(|r| r.points).sum::<usize>(), 25);
}

#[test]
fn a_group_too_large_for_one_request_is_split_and_counted_once() {
    // One series with 30 samples, 10 per request.
    let req = request(
        vec![],
        vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: (0..30)
                    .map(|i| number(i as f64, vec![], T0 + i * 1_000_000))
                    .collect(),
            }),
        )],
    );
    let reqs = pack(translate(&req, &Settings::default()), usize::MAX, 10);
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        reqs.iter().map(|r| r.points).collect::<Vec<_>>(),
        vec![0, 0, 30]
    );
    let firsts: Vec<f64> = reqs
        .iter()
        .map(|r| r.body.timeseries[0].samples[0].value)
        .collect();
    assert_eq!(firsts, vec![0.0, 10.0, 20.0], "parts in time order");
}

#[test]
fn metadata_is_sent_once_per_family_when_asked() {
    let req = request(
        vec![],
        vec![
            metric(
                "c",
                "s",
                sum(
                    vec![number(1.0, vec![], T0)],
                    true,
                    AggregationTemporality::Cumulative,
                ),
            ),
            metric(
                "c",
                "s",
                sum(
                    vec![number(2.0, vec![kv("a", "b")], T0)],
                    true,
                    AggregationTemporality::Cumulative,
                ),
            ),
        ],
    );
    let t = translate(
        &req,
        &Settings {
            send_metadata: true,
            ..Default::default()
        },
    );
    assert_eq!(
        t.metadata,
        vec![MetricMetadata {
            r#type: MetricType::Counter as i32,
            metric_family_name: "c_seconds_total".into(),
            help: "about c".into(),
            unit: "seconds".into(),
        }]
    );
    assert!(translate(&req, &Settings::default()).metadata.is_empty());
}
