use super::*;
use crate::receivers::prometheus::parse;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;

fn target() -> Target {
    Target {
        job: "shop".into(),
        instance: "10.0.0.7:9100".into(),
        endpoint: Endpoint {
            scheme: "http".into(),
            host: "10.0.0.7".into(),
            port: Some(9100),
        },
        labels: vec![("env".into(), "prod".into())],
        honor_timestamps: true,
    }
}

const SEC: u64 = 1_000_000_000;

/// Converts `page` scraped at `t` seconds and commits it.
fn scrape(cache: &mut SeriesCache, page: &str, t: u64) -> Metrics {
    let p = parse::parse(page).unwrap();
    let n = p.samples.len();
    let c = convert(
        &target(),
        cache,
        p.samples,
        &p.families,
        Some(ScrapeReport {
            up: true,
            duration_seconds: 0.5,
            samples_scraped: n,
            samples_post_relabeling: n,
        }),
        t * SEC,
    );
    assert!(c.dropped.is_empty(), "{:?}", c.dropped);
    let points = c.points;
    commit(cache, c.next);
    assert_eq!(points, pipelines_points(&c.request));
    c.request
}

fn pipelines_points(m: &Metrics) -> usize {
    outpost_pipelines::SignalData::item_count(m)
}

fn metrics(m: &Metrics) -> Vec<&Metric> {
    m.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect()
}

fn metric<'m>(m: &'m Metrics, name: &str) -> &'m Metric {
    metrics(m)
        .into_iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn value(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> Option<f64> {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => Some(v),
        _ => None,
    }
}

fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

const PAGE: &str = r#"# HELP requests_total Requests served.
# TYPE requests_total counter
requests_total{code="200"} 10
requests_total{code="500"} 2
# TYPE temperature gauge
temperature 21.5
untyped_thing{x="y"} 7
# TYPE latency histogram
latency_bucket{le="0.1"} 3
latency_bucket{le="0.5"} 5
latency_bucket{le="+Inf"} 6
latency_sum 1.25
latency_count 6
# TYPE rpc summary
rpc{quantile="0.5"} 0.2
rpc{quantile="0.9"} 0.7
rpc_sum 12
rpc_count 40
"#;

#[test]
fn types_map_to_otlp_shapes_with_the_target_as_resource() {
    let mut cache = SeriesCache::default();
    let m = scrape(&mut cache, PAGE, 100);
    assert_eq!(m.resource_metrics.len(), 1);
    let res = m.resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(
        attr(&res.attributes, "service.name"),
        Some(&str_attr("shop"))
    );
    assert_eq!(
        attr(&res.attributes, "service.instance.id"),
        Some(&str_attr("10.0.0.7:9100"))
    );
    assert_eq!(attr(&res.attributes, "env"), Some(&str_attr("prod")));
    assert_eq!(
        attr(&res.attributes, "server.port"),
        Some(&any_value::Value::IntValue(9100))
    );
    let scope = m.resource_metrics[0].scope_metrics[0]
        .scope
        .as_ref()
        .unwrap();
    assert_eq!(scope.name, "outpost/receiver/prometheus");

    let requests = metric(&m, "requests_total");
    assert_eq!(requests.description, "Requests served.");
    let Some(metric::Data::Sum(sum)) = &requests.data else {
        panic!("counter is not a sum: {requests:?}")
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    assert_eq!(sum.data_points.len(), 2);
    let p200 = sum
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "code") == Some(&str_attr("200")))
        .unwrap();
    assert_eq!(value(p200), Some(10.0));
    // First observation: the start is the observation itself.
    assert_eq!(p200.start_time_unix_nano, 100 * SEC);
    assert_eq!(p200.time_unix_nano, 100 * SEC);
    // Target labels are on the resource, never on points.
    assert!(attr(&p200.attributes, "env").is_none());
    assert!(attr(&p200.attributes, "job").is_none());

    let Some(metric::Data::Gauge(g)) = &metric(&m, "temperature").data else {
        panic!()
    };
    assert_eq!(value(&g.data_points[0]), Some(21.5));
    let untyped = metric(&m, "untyped_thing");
    assert!(matches!(untyped.data, Some(metric::Data::Gauge(_))));
    assert_eq!(
        attr(&untyped.metadata, "prometheus.type"),
        Some(&str_attr("unknown"))
    );

    let Some(metric::Data::Histogram(h)) = &metric(&m, "latency").data else {
        panic!()
    };
    let hp = &h.data_points[0];
    assert_eq!(hp.explicit_bounds, vec![0.1, 0.5]);
    assert_eq!(hp.bucket_counts, vec![3, 2, 1]);
    assert_eq!((hp.count, hp.sum), (6, Some(1.25)));
    // Bucket and sum series do not leak as metrics of their own.
    assert!(metrics(&m).iter().all(|x| !x.name.starts_with("latency_")));

    let Some(metric::Data::Summary(s)) = &metric(&m, "rpc").data else {
        panic!()
    };
    let sp = &s.data_points[0];
    assert_eq!((sp.count, sp.sum), (40, 12.0));
    let q: Vec<(f64, f64)> = sp
        .quantile_values
        .iter()
        .map(|q| (q.quantile, q.value))
        .collect();
    assert_eq!(q, vec![(0.5, 0.2), (0.9, 0.7)]);

    let Some(metric::Data::Gauge(up)) = &metric(&m, "up").data else {
        panic!()
    };
    assert_eq!(value(&up.data_points[0]), Some(1.0));
    let Some(metric::Data::Gauge(added)) = &metric(&m, "scrape_series_added").data else {
        panic!()
    };
    // requests ×2, temperature, untyped_thing, latency, rpc.
    assert_eq!(value(&added.data_points[0]), Some(6.0));
}

#[test]
fn start_times_follow_the_series_and_its_resets() {
    let mut cache = SeriesCache::default();
    scrape(&mut cache, "# TYPE c counter\nc 5\n", 10);
    let m = scrape(&mut cache, "# TYPE c counter\nc 8\n", 20);
    let Some(metric::Data::Sum(s)) = &metric(&m, "c").data else {
        panic!()
    };
    assert_eq!(s.data_points[0].start_time_unix_nano, 10 * SEC);
    assert_eq!(value(&s.data_points[0]), Some(8.0));
    // The counter went down: a reset after the last observation at 20 s.
    let m = scrape(&mut cache, "# TYPE c counter\nc 1\n", 30);
    let Some(metric::Data::Sum(s)) = &metric(&m, "c").data else {
        panic!()
    };
    assert_eq!(s.data_points[0].start_time_unix_nano, 20 * SEC);
    let m = scrape(&mut cache, "# TYPE c counter\nc 4\n", 40);
    let Some(metric::Data::Sum(s)) = &metric(&m, "c").data else {
        panic!()
    };
    assert_eq!(s.data_points[0].start_time_unix_nano, 20 * SEC);
    // `_created` wins over observation.
    let m = scrape(
        &mut cache,
        "# TYPE c counter\nc 4\n# TYPE d counter\nd_total 3\nd_created 1700000000\n",
        50,
    );
    let Some(metric::Data::Sum(s)) = &metric(&m, "d_total").data else {
        panic!()
    };
    assert_eq!(s.data_points[0].start_time_unix_nano, 1_700_000_000 * SEC);
    assert!(metrics(&m).iter().all(|x| x.name != "d_created"));
}

#[test]
fn vanished_series_get_a_staleness_marker_once() {
    let mut cache = SeriesCache::default();
    scrape(
        &mut cache,
        "# TYPE g gauge\ng{a=\"1\"} 1\ng{a=\"2\"} 2\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        10,
    );
    let m = scrape(&mut cache, "# TYPE g gauge\ng{a=\"1\"} 1\n", 20);
    let Some(metric::Data::Gauge(g)) = &metric(&m, "g").data else {
        panic!()
    };
    assert_eq!(g.data_points.len(), 2);
    let stale = g
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "a") == Some(&str_attr("2")))
        .unwrap();
    assert_eq!(stale.flags & NO_RECORDED_VALUE, NO_RECORDED_VALUE);
    assert_eq!(stale.value, None);
    assert_eq!(stale.time_unix_nano, 20 * SEC);
    let Some(metric::Data::Histogram(h)) = &metric(&m, "h").data else {
        panic!()
    };
    assert_eq!(h.data_points[0].flags, NO_RECORDED_VALUE);
    // Marked once: the next scrape no longer mentions it.
    let m = scrape(&mut cache, "# TYPE g gauge\ng{a=\"1\"} 1\n", 30);
    let Some(metric::Data::Gauge(g)) = &metric(&m, "g").data else {
        panic!()
    };
    assert_eq!(g.data_points.len(), 1);
    assert!(metrics(&m).iter().all(|x| x.name != "h"));
}

#[test]
fn a_failed_scrape_marks_everything_stale_but_reports_up_0() {
    let mut cache = SeriesCache::default();
    scrape(&mut cache, "x 1\ny 2\n", 10);
    let c = convert(
        &target(),
        &cache,
        Vec::new(),
        &Default::default(),
        Some(ScrapeReport {
            up: false,
            duration_seconds: 0.1,
            samples_scraped: 0,
            samples_post_relabeling: 0,
        }),
        20 * SEC,
    );
    let m = &c.request;
    for name in ["x", "y"] {
        let Some(metric::Data::Gauge(g)) = &metric(m, name).data else {
            panic!()
        };
        assert_eq!(g.data_points[0].flags, NO_RECORDED_VALUE, "{name}");
    }
    let Some(metric::Data::Gauge(up)) = &metric(m, "up").data else {
        panic!()
    };
    assert_eq!(value(&up.data_points[0]), Some(0.0));
    assert_eq!(up.data_points[0].flags, 0);
    // A removed target marks everything, `up` included, and reports nothing new.
    commit(&mut cache, c.next);
    let c = convert(
        &target(),
        &cache,
        Vec::new(),
        &Default::default(),
        None,
        30 * SEC,
    );
    let Some(metric::Data::Gauge(up)) = &metric(&c.request, "up").data else {
        panic!()
    };
    assert_eq!(up.data_points[0].flags, NO_RECORDED_VALUE);
    assert_eq!(c.points, 5);
}

#[test]
fn a_refused_scrape_leaves_the_state_alone() {
    let mut cache = SeriesCache::default();
    scrape(&mut cache, "a 1\nb 1\n", 10);
    // This scrape loses `b` but is never committed (the pipeline refused it)...
    let p = parse::parse("a 1\n").unwrap();
    let refused = convert(&target(), &cache, p.samples, &p.families, None, 20 * SEC);
    assert!(refused.points > 0);
    drop(refused);
    // ...so the next one still marks `b` stale.
    let m = scrape(&mut cache, "a 1\n", 30);
    let Some(metric::Data::Gauge(g)) = &metric(&m, "b").data else {
        panic!()
    };
    assert_eq!(g.data_points[0].flags, NO_RECORDED_VALUE);
}

#[test]
fn target_info_scope_labels_and_own_job_shape_the_resources() {
    let mut cache = SeriesCache::default();
    let m = scrape(
        &mut cache,
        "# TYPE target_info gauge\ntarget_info{region=\"eu\",env=\"staging\"} 1\n\
         lib_calls{otel_scope_name=\"mylib\",otel_scope_version=\"1.2\"} 3\n\
         pushed{job=\"batch\",instance=\"runner-1\"} 9\n",
        10,
    );
    assert!(metrics(&m).iter().all(|x| x.name != "target_info"));
    assert_eq!(m.resource_metrics.len(), 2);
    let own = m.resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(attr(&own.attributes, "region"), Some(&str_attr("eu")));
    // target_info overrides a target label of the same name.
    assert_eq!(attr(&own.attributes, "env"), Some(&str_attr("staging")));
    let scopes: Vec<&str> = m.resource_metrics[0]
        .scope_metrics
        .iter()
        .map(|s| s.scope.as_ref().unwrap().name.as_str())
        .collect();
    assert!(scopes.contains(&"mylib"), "{scopes:?}");
    let lib = metric(&m, "lib_calls");
    let Some(metric::Data::Gauge(g)) = &lib.data else {
        panic!()
    };
    assert!(attr(&g.data_points[0].attributes, "otel_scope_name").is_none());
    let pushed = m.resource_metrics[1].resource.as_ref().unwrap();
    assert_eq!(
        attr(&pushed.attributes, "service.name"),
        Some(&str_attr("batch"))
    );
    assert_eq!(
        attr(&pushed.attributes, "service.instance.id"),
        Some(&str_attr("runner-1"))
    );
}

#[test]
fn a_histogram_without_count_is_dropped_and_counted() {
    let cache = SeriesCache::default();
    let p = parse::parse("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 3\n").unwrap();
    let c = convert(&target(), &cache, p.samples, &p.families, None, SEC);
    assert_eq!(c.dropped, vec![("incomplete_histogram", 1)]);
    assert_eq!(c.points, 0);
}
