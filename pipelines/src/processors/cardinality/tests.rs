use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::prelude::*;

use super::*;
use crate::signal::tests::kv;
use crate::telemetry::Telemetry;

const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;
const DELTA: i32 = AggregationTemporality::Delta as i32;

fn config(v: serde_json::Value) -> CardinalityLimitConfig {
    serde_json::from_value(v).unwrap()
}

fn processor(cfg: &CardinalityLimitConfig, t0: Instant) -> CardinalityLimit {
    CardinalityLimit::new_at(
        cfg,
        Telemetry::new().cardinality("metrics", "cardinality_limit"),
        ("metrics", "cardinality_limit"),
        None,
        t0,
    )
    .unwrap()
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv(k, v)).collect()
}

fn wrap(metrics: Vec<Metric>) -> Metrics {
    Metrics {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "shop")],
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

fn counter(name: &str, temporality: i32, points: Vec<(Vec<KeyValue>, i64)>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Sum(Sum {
            data_points: points
                .into_iter()
                .map(|(a, v)| NumberDataPoint {
                    attributes: a,
                    start_time_unix_nano: 1,
                    time_unix_nano: 10,
                    value: Some(NumValue::AsInt(v)),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: temporality,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumValue;

fn run(
    p: &mut CardinalityLimit,
    data: Metrics,
    now: Instant,
) -> (Metrics, Vec<(&'static str, usize)>) {
    let mut out = Emit::default();
    p.process_at(Batch::new(data), now, &mut out);
    let dropped = out.take_dropped();
    let mut batches = out.take_batches();
    let data = batches.pop().map(|b| b.into_parts().0).unwrap_or_default();
    (data, dropped)
}

/// Every (attribute set → value) of the sums named `name`, attribute sets as sorted "k=v" strings.
fn sum_points(m: &Metrics, name: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for rm in &m.resource_metrics {
        for sm in &rm.scope_metrics {
            for metric in sm.metrics.iter().filter(|x| x.name == name) {
                let points: Vec<&NumberDataPoint> = match &metric.data {
                    Some(Data::Sum(s)) => s.data_points.iter().collect(),
                    Some(Data::Gauge(g)) => g.data_points.iter().collect(),
                    _ => Vec::new(),
                };
                for p in points {
                    let prev = out.insert(label_key(&p.attributes), p.acc().as_f64());
                    assert!(prev.is_none(), "two points for one series in one batch");
                }
            }
        }
    }
    out
}

fn label_key(attrs: &[KeyValue]) -> String {
    let mut v: Vec<String> = attrs
        .iter()
        .map(|kv| {
            let val = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            format!("{}={val}", kv.key)
        })
        .collect();
    v.sort();
    v.join(",")
}

const OVERFLOW: &str = "otel.metric.overflow=true";

#[test]
fn a_series_budget_overflows_into_one_series_that_keeps_the_total() {
    let t0 = Instant::now();
    let cfg = config(json!({"metrics": [{"name": "requests", "max_series": 4}]}));
    let mut p = processor(&cfg, t0);
    let points: Vec<_> = (0..10)
        .map(|u| (attrs(&[("user_id", &format!("u{u}"))]), 10 + u as i64))
        .collect();
    let (out, dropped) = run(
        &mut p,
        wrap(vec![counter("requests", CUMULATIVE, points)]),
        t0,
    );
    let got = sum_points(&out, "requests");
    // 3 admitted + the overflow series: the overflow series is one of the metric's 4.
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(p.metric_series("requests"), 3);
    assert_eq!(got[OVERFLOW], (13..20).sum::<i64>() as f64);
    assert_eq!(got.values().sum::<f64>(), (10..20).sum::<i64>() as f64);
    assert_eq!(dropped, vec![("cardinality_merged", 6)]);
    assert_eq!(p.stats().overflowed, 7);
}

#[test]
fn cumulative_overflow_stays_monotonic_and_adds_increases_not_totals() {
    let t0 = Instant::now();
    let cfg = config(json!({"metrics": [{"name": "requests", "max_series": 1}]}));
    let mut p = processor(&cfg, t0);
    // Two series, both over budget (max_series 1 leaves only the overflow series).
    let batch = |a: i64, b: i64| {
        wrap(vec![counter(
            "requests",
            CUMULATIVE,
            vec![
                (attrs(&[("user_id", "a")]), a),
                (attrs(&[("user_id", "b")]), b),
            ],
        )])
    };
    let mut last = 0.0;
    for (a, b, want) in [(5, 7, 12.0), (6, 7, 13.0), (6, 20, 26.0), (2, 21, 29.0)] {
        // (2, ...) is a reset of series a: its 2 is new counts, the 6 before it stays counted.
        let (out, _) = run(&mut p, batch(a, b), t0);
        let v = sum_points(&out, "requests")[OVERFLOW];
        assert_eq!(v, want);
        assert!(v >= last, "the overflow counter went down: {last} -> {v}");
        last = v;
    }
    // Only one of the two sent this time: the other's last value still counts.
    let only_b = wrap(vec![counter(
        "requests",
        CUMULATIVE,
        vec![(attrs(&[("user_id", "b")]), 25)],
    )]);
    let (out, _) = run(&mut p, only_b, t0);
    assert_eq!(sum_points(&out, "requests")[OVERFLOW], 33.0);
}

#[test]
fn value_limit_with_drop_label_removes_the_label_and_merges_the_series() {
    let t0 = Instant::now();
    let cfg = config(json!({
        "labels": {"user_id": {"value_limit": 2, "action": "drop_label"}},
    }));
    let mut p = processor(&cfg, t0);
    let points: Vec<_> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|u| (attrs(&[("route", "/buy"), ("user_id", u)]), 1))
        .collect();
    let (out, _) = run(&mut p, wrap(vec![counter("requests", DELTA, points)]), t0);
    let got = sum_points(&out, "requests");
    assert_eq!(got["route=/buy,user_id=a"], 1.0);
    assert_eq!(got["route=/buy,user_id=b"], 1.0);
    assert_eq!(got["route=/buy"], 3.0, "{got:?}");
    assert_eq!(got.len(), 3);
    assert_eq!(p.stats().labels_dropped, 3);
}

#[test]
fn a_trimmed_cumulative_series_keeps_its_first_route() {
    let t0 = Instant::now();
    let cfg = config(json!({
        "labels": {"user_id": {"value_limit": 1, "action": "drop_label"}},
        "metrics": [{"name": "requests", "max_series": 3, "action": "drop_label"}],
    }));
    let mut p = processor(&cfg, t0);
    let point = |u: &str, r: &str, v: i64| (attrs(&[("user_id", u), ("route", r)]), v);
    // u0/r2 is admitted; u1 is over user_id's value limit, so u1/r1 becomes route=/r1 (admitted too);
    // u0/r1 finds no room, and route and user_id tie for the widest label.
    let first = vec![
        point("u0", "/r2", 1),
        point("u1", "/r1", 2),
        point("u0", "/r1", 5),
    ];
    // user_id is now the widest label (u1 came again as a new value): dropping it would send u0/r1 to
    // route=/r1, while its total of 5 is still held where it went first.
    let second = vec![point("u1", "/r1", 2), point("u0", "/r1", 5)];
    let mut downstream = BTreeMap::new();
    for points in [first, second] {
        let (out, _) = run(
            &mut p,
            wrap(vec![counter("requests", CUMULATIVE, points)]),
            t0,
        );
        downstream.extend(sum_points(&out, "requests"));
        assert_eq!(downstream.values().sum::<f64>(), 8.0, "{downstream:?}");
    }
    // Every point of u1/r1 and u0/r1 was trimmed, the second batch's too.
    assert_eq!(p.stats().labels_dropped, 4);
}

#[test]
fn drop_datapoint_drops_and_counts() {
    let t0 = Instant::now();
    let telemetry = Telemetry::new();
    let cfg = config(json!({"max_series": 2, "action": "drop_datapoint"}));
    let mut p = CardinalityLimit::new_at(
        &cfg,
        telemetry.cardinality("metrics", "cl"),
        ("metrics", "cl"),
        None,
        t0,
    )
    .unwrap();
    let points: Vec<_> = (0..5)
        .map(|u| (attrs(&[("user_id", &format!("u{u}"))]), 1))
        .collect();
    let (out, dropped) = run(&mut p, wrap(vec![counter("requests", DELTA, points)]), t0);
    assert_eq!(sum_points(&out, "requests").len(), 2);
    assert_eq!(dropped, vec![("cardinality_limit", 3)]);
    let text = telemetry.encode();
    assert!(
        text.contains(r#"outpost_cardinality_trimmed_items_total{pipeline="metrics",processor="cl",metric="requests",label="",action="drop_datapoint"} 3"#),
        "{text}"
    );
}

#[test]
fn exclusions_leave_metrics_and_labels_alone() {
    let t0 = Instant::now();
    let cfg = config(json!({
        "max_series": 1000,
        "value_limit": 1,
        "labels": {"region": {"exclude": true}},
        "metrics": [{"name_regex": "debug_.*", "exclude": true}],
    }));
    let mut p = processor(&cfg, t0);
    let many = |name: &str, key: &str| {
        counter(
            name,
            DELTA,
            (0..5)
                .map(|u| (attrs(&[(key, &format!("v{u}"))]), 1))
                .collect(),
        )
    };
    let (out, dropped) = run(
        &mut p,
        wrap(vec![
            many("debug_queue", "user_id"),
            many("requests", "region"),
        ]),
        t0,
    );
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(sum_points(&out, "debug_queue").len(), 5);
    assert_eq!(sum_points(&out, "requests").len(), 5);
    assert_eq!(p.tracked_series(), 5, "the excluded metric is not tracked");
}

#[test]
fn series_ttl_frees_the_budget() {
    let t0 = Instant::now();
    let cfg = config(
        json!({"max_series": 2, "series_ttl": "10s", "persist_interval": "1s", "action": "drop_datapoint"}),
    );
    let mut p = processor(&cfg, t0);
    let one = |u: &str| {
        wrap(vec![counter(
            "requests",
            DELTA,
            vec![(attrs(&[("user_id", u)]), 1)],
        )])
    };
    run(&mut p, one("a"), t0);
    run(&mut p, one("b"), t0 + Duration::from_secs(5));
    let (_, dropped) = run(&mut p, one("c"), t0 + Duration::from_secs(6));
    assert_eq!(dropped, vec![("cardinality_limit", 1)]);
    // a was last seen at 0 s; at 12 s it has been gone longer than the ttl, b has not.
    p.tick(t0 + Duration::from_secs(12));
    assert_eq!(p.tracked_series(), 1);
    let (out, dropped) = run(&mut p, one("c"), t0 + Duration::from_secs(12));
    assert!(dropped.is_empty());
    assert_eq!(sum_points(&out, "requests").len(), 1);
}

#[test]
fn histograms_merge_bucket_by_bucket() {
    let t0 = Instant::now();
    let cfg = config(json!({"metrics": [{"name": "latency", "max_series": 1}]}));
    let mut p = processor(&cfg, t0);
    let hist = |u: &str, buckets: Vec<u64>| HistogramDataPoint {
        attributes: attrs(&[("user_id", u)]),
        start_time_unix_nano: 1,
        time_unix_nano: 10,
        count: buckets.iter().sum(),
        sum: Some(buckets.iter().sum::<u64>() as f64 * 2.0),
        bucket_counts: buckets,
        explicit_bounds: vec![1.0, 5.0],
        min: Some(0.5),
        max: Some(7.0),
        ..Default::default()
    };
    let metric = |points| Metric {
        name: "latency".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: CUMULATIVE,
        })),
        ..Default::default()
    };
    let (out, _) = run(
        &mut p,
        wrap(vec![metric(vec![
            hist("a", vec![1, 2, 3]),
            hist("b", vec![4, 0, 1]),
        ])]),
        t0,
    );
    let h = match &out.resource_metrics[0].scope_metrics[0].metrics[0].data {
        Some(Data::Histogram(h)) => h.data_points[0].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(label_key(&h.attributes), OVERFLOW);
    assert_eq!(h.bucket_counts, vec![5, 2, 4]);
    assert_eq!(h.count, 11);
    assert_eq!(h.sum, Some(22.0));
    // a grows by one in its first bucket; b unchanged
    let (out, _) = run(
        &mut p,
        wrap(vec![metric(vec![hist("a", vec![2, 2, 3])])]),
        t0,
    );
    let h = match &out.resource_metrics[0].scope_metrics[0].metrics[0].data {
        Some(Data::Histogram(h)) => h.data_points[0].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(h.bucket_counts, vec![6, 2, 4]);
    // Another layout cannot be merged: dropped and counted.
    let mut odd = hist("c", vec![1, 1]);
    odd.explicit_bounds = vec![3.0];
    let (_, dropped) = run(&mut p, wrap(vec![metric(vec![odd])]), t0);
    assert_eq!(dropped, vec![("cardinality_bucket_mismatch", 1)]);
}

#[test]
fn exponential_histograms_merge_at_the_coarser_scale() {
    let t0 = Instant::now();
    let cfg = config(json!({"metrics": [{"name": "size", "max_series": 1}]}));
    let mut p = processor(&cfg, t0);
    let point =
        |u: &str, scale: i32, offset: i32, counts: Vec<u64>| ExponentialHistogramDataPoint {
            attributes: attrs(&[("user_id", u)]),
            time_unix_nano: 10,
            scale,
            count: counts.iter().sum(),
            positive: Some(Buckets {
                offset,
                bucket_counts: counts,
            }),
            ..Default::default()
        };
    let metric = Metric {
        name: "size".into(),
        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![
                // scale 1, indexes 2..=5: at scale 0 they fold into indexes 1, 1, 2, 2
                point("a", 1, 2, vec![1, 2, 3, 4]),
                point("b", 0, 1, vec![10, 20]),
            ],
            aggregation_temporality: DELTA,
        })),
        ..Default::default()
    };
    let (out, _) = run(&mut p, wrap(vec![metric]), t0);
    let e = match &out.resource_metrics[0].scope_metrics[0].metrics[0].data {
        Some(Data::ExponentialHistogram(h)) => h.data_points[0].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(e.scale, 0);
    assert_eq!(e.count, 40);
    let pos = e.positive.unwrap();
    assert_eq!((pos.offset, pos.bucket_counts), (1, vec![13, 27]));
}

#[test]
fn gauges_keep_the_latest_point() {
    let t0 = Instant::now();
    let cfg = config(json!({"metrics": [{"name": "temp", "max_series": 1}]}));
    let mut p = processor(&cfg, t0);
    let g = |u: &str, t: u64, v: f64| NumberDataPoint {
        attributes: attrs(&[("sensor", u)]),
        time_unix_nano: t,
        value: Some(NumValue::AsDouble(v)),
        ..Default::default()
    };
    let metric = Metric {
        name: "temp".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![g("a", 20, 1.5), g("b", 30, 2.5), g("c", 10, 9.0)],
        })),
        ..Default::default()
    };
    let (out, _) = run(&mut p, wrap(vec![metric]), t0);
    assert_eq!(sum_points(&out, "temp")[OVERFLOW], 2.5);
}

#[tokio::test]
async fn admitted_series_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let cfg = config(json!({"metrics": [{"name": "requests", "max_series": 4}]}));
    let open = || {
        crate::queue::Queue::open(
            crate::queue::QueueOptions {
                directory: dir.path().to_owned(),
                max_size: 64 << 20,
                high_watermark: 48 << 20,
                low_watermark: 32 << 20,
                overflow: crate::queue::Overflow::Block,
                sync: crate::queue::SyncPolicy::Never,
                max_age: None,
            },
            &Telemetry::new(),
        )
        .unwrap()
    };
    let batch = |users: std::ops::Range<u32>| {
        wrap(vec![counter(
            "requests",
            DELTA,
            users
                .map(|u| (attrs(&[("user_id", &format!("u{u}"))]), 1))
                .collect(),
        )])
    };
    let new = |q: &crate::queue::Queue| {
        CardinalityLimit::new_at(
            &cfg,
            Telemetry::new().cardinality("metrics", "cl"),
            ("metrics", "cl"),
            Some(q.state()),
            t0,
        )
        .unwrap()
    };
    {
        let q = open();
        let mut p = new(&q);
        // u5, u6, u7 are admitted; the rest overflow.
        let (out, _) = run(&mut p, batch(5..10), t0);
        assert!(sum_points(&out, "requests").contains_key("user_id=u5"));
        p.persist();
        drop(p);
        q.close().await;
    }
    let q = open();
    let mut p = new(&q);
    assert_eq!(p.metric_series("requests"), 3);
    // After the restart the same three are admitted, although others now come first.
    let (out, _) = run(&mut p, batch(0..10), t0);
    let got = sum_points(&out, "requests");
    let kept: Vec<&String> = got.keys().filter(|k| *k != OVERFLOW).collect();
    assert_eq!(kept, vec!["user_id=u5", "user_id=u6", "user_id=u7"]);
    assert_eq!(got[OVERFLOW], 7.0);
}

#[test]
fn the_report_names_the_label_that_grows() {
    let t0 = Instant::now();
    let cfg = config(json!({}));
    let mut p = processor(&cfg, t0);
    let points: Vec<_> = (0..50)
        .map(|u| {
            (
                attrs(&[
                    ("user_id", &format!("u{u}")),
                    ("method", if u % 2 == 0 { "GET" } else { "POST" }),
                ]),
                1,
            )
        })
        .collect();
    run(&mut p, wrap(vec![counter("requests", DELTA, points)]), t0);
    let report = p.report(10);
    let worst = &report["worst_labels"][0];
    assert_eq!(worst["metric"], "requests");
    assert_eq!(worst["label"], "user_id");
    assert_eq!(worst["distinct_values"], 50);
    assert_eq!(report["tracked_series"], 50);
}

#[test]
fn probabilistic_mode_enforces_the_budget_in_fixed_memory() {
    let t0 = Instant::now();
    let cfg = config(
        json!({"mode": "probabilistic", "max_memory": "64KiB", "metrics": [{"name": "requests", "max_series": 100}]}),
    );
    let mut p = processor(&cfg, t0);
    let points: Vec<_> = (0..1000)
        .map(|u| (attrs(&[("user_id", &format!("u{u}"))]), 1))
        .collect();
    let (out, _) = run(&mut p, wrap(vec![counter("requests", DELTA, points)]), t0);
    let got = sum_points(&out, "requests");
    assert!(got.len() <= 100, "{}", got.len());
    assert_eq!(got.values().sum::<f64>(), 1000.0);
}

// ---------------------------------------------------------------------------------------------------------
// Properties

/// One step of a generated workload: which original series (user, route) report, and by how much their
/// cumulative counter and histogram buckets grow.
#[derive(Debug, Clone)]
struct Step {
    reports: Vec<(u8, u8, u8, [u8; 3])>,
}

fn step() -> impl Strategy<Value = Step> {
    prop::collection::vec(
        (0u8..12, 0u8..3, 0u8..5, prop::array::uniform3(0u8..4)),
        1..20,
    )
    .prop_map(|reports| Step { reports })
}

fn action() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("overflow"), Just("drop_label")]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With overflow and drop_label, what a downstream store that keeps each series' latest value holds
    /// adds up to the originals' totals, for the counter and for every histogram bucket; and the
    /// admitted series never exceed their budgets.
    #[test]
    fn totals_and_buckets_are_preserved(
        steps in prop::collection::vec(step(), 1..8),
        max_series in 1u64..8,
        global in 2u64..20,
        value_limit in 1u64..5,
        series_action in action(),
        label_action in action(),
    ) {
        let t0 = Instant::now();
        let cfg = config(json!({
            "max_series": global,
            "labels": {"user_id": {"value_limit": value_limit, "action": label_action}},
            "metrics": [
                {"name": "requests", "max_series": max_series, "action": series_action},
                {"name": "latency", "max_series": max_series, "action": series_action},
            ],
        }));
        let mut p = processor(&cfg, t0);
        let mut originals: HashMap<(u8, u8), (i64, [u64; 3])> = HashMap::new();
        let mut downstream_sum: HashMap<String, f64> = HashMap::new();
        let mut downstream_hist: HashMap<String, Vec<u64>> = HashMap::new();
        for s in &steps {
            let mut sums = Vec::new();
            let mut hists = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (user, route, inc, buckets) in &s.reports {
                if !seen.insert((*user, *route)) {
                    continue; // one point per series per batch, as an SDK sends
                }
                let o = originals.entry((*user, *route)).or_default();
                o.0 += i64::from(*inc);
                for (b, add) in o.1.iter_mut().zip(buckets) {
                    *b += u64::from(*add);
                }
                let a = attrs(&[("user_id", &format!("u{user}")), ("route", &format!("/r{route}"))]);
                sums.push((a.clone(), o.0));
                hists.push(HistogramDataPoint {
                    attributes: a,
                    start_time_unix_nano: 1,
                    time_unix_nano: 10,
                    count: o.1.iter().sum(),
                    bucket_counts: o.1.to_vec(),
                    explicit_bounds: vec![1.0, 5.0],
                    ..Default::default()
                });
            }
            let latency = Metric {
                name: "latency".into(),
                data: Some(Data::Histogram(Histogram { data_points: hists, aggregation_temporality: CUMULATIVE })),
                ..Default::default()
            };
            let (out, dropped) = run(&mut p, wrap(vec![counter("requests", CUMULATIVE, sums), latency]), t0);
            prop_assert!(dropped.iter().all(|(r, _)| *r == "cardinality_merged"), "{:?}", dropped);
            downstream_sum.extend(sum_points(&out, "requests"));
            for rm in &out.resource_metrics {
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        if let Some(Data::Histogram(h)) = &m.data {
                            for pt in &h.data_points {
                                prop_assert_eq!(pt.count, pt.bucket_counts.iter().sum::<u64>());
                                downstream_hist.insert(label_key(&pt.attributes), pt.bucket_counts.clone());
                            }
                        }
                    }
                }
            }
            let want_total: i64 = originals.values().map(|o| o.0).sum();
            prop_assert_eq!(downstream_sum.values().sum::<f64>(), want_total as f64);
            for b in 0..3 {
                let want: u64 = originals.values().map(|o| o.1[b]).sum();
                let got: u64 = downstream_hist.values().map(|v| v[b]).sum();
                prop_assert_eq!(got, want, "bucket {}", b);
            }
            for name in ["requests", "latency"] {
                prop_assert!(p.metric_series(name) < max_series.max(1), "{} has {} series", name, p.metric_series(name));
            }
            // The overflow series is one of the metric's max_series.
            prop_assert!(downstream_sum.len() as u64 <= max_series, "{:?}", downstream_sum.keys());
            prop_assert!(downstream_hist.len() as u64 <= max_series);
            prop_assert!(p.tracked_series() <= global);
        }
    }
}
