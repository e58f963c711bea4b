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
        &mut cache,
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
        &mut cache,
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
    let refused = convert(
        &target(),
        &mut cache,
        p.samples,
        &p.families,
        None,
        20 * SEC,
    );
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
    let mut cache = SeriesCache::default();
    let p = parse::parse("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 3\n").unwrap();
    let c = convert(&target(), &mut cache, p.samples, &p.families, None, SEC);
    assert_eq!(c.dropped, vec![("incomplete_histogram", 1)]);
    assert_eq!(c.points, 0);
}

/// Reads `page` through the scrape cache (`drop_name`'s series dropped as by relabeling), converts and
/// commits it.
fn cached_scrape(
    cache: &mut SeriesCache,
    page: &str,
    t: u64,
    drop_name: &str,
) -> Result<Converted, ParseError> {
    cache.begin(&target(), t * SEC);
    let stats = cache.add_page(&target(), page, |labels| {
        Ok(to_otlp::label(labels, NAME_LABEL) != Some(drop_name))
    })?;
    let c = cache.finish(
        &target(),
        Some(ScrapeReport {
            up: true,
            duration_seconds: 0.5,
            samples_scraped: stats.exposed,
            samples_post_relabeling: stats.kept,
        }),
    );
    let next = NextState(c.next.0);
    commit(cache, next);
    Ok(c)
}

/// The same scrape without the line cache: the page parsed in full, relabeled, converted.
fn uncached_scrape(cache: &mut SeriesCache, page: &str, t: u64, drop_name: &str) -> Converted {
    let p = parse::parse(page).unwrap();
    let exposed = p.samples.len();
    let samples: Vec<RawSample> = p
        .samples
        .into_iter()
        .filter(|s| s.name() != drop_name)
        .collect();
    let kept = samples.len();
    let c = convert(
        &target(),
        cache,
        samples,
        &p.families,
        Some(ScrapeReport {
            up: true,
            duration_seconds: 0.5,
            samples_scraped: exposed,
            samples_post_relabeling: kept,
        }),
        t * SEC,
    );
    let next = NextState(c.next.0);
    commit(cache, next);
    c
}

#[test]
fn the_line_cache_gives_the_same_requests_as_a_full_parse() {
    let pages = [
        PAGE.to_string(),
        // The same page again: every line known; counter values move, one goes down (a reset).
        PAGE.replace("requests_total{code=\"200\"} 10", "requests_total{code=\"200\"} 4"),
        // Timestamps, extra blanks, a new series, one gone, a dropped one, target_info.
        "# TYPE requests_total counter\nrequests_total{code=\"200\"}   7 1700000000000\n\
         requests_total{code=\"404\"} 1\nsecret{a=\"b c\"} 5\n# TYPE target_info gauge\n\
         target_info{region=\"eu\"} 1\n# TYPE latency histogram\nlatency_bucket{le=\"0.1\"} 3\n\
         latency_bucket{le=\"+Inf\"} 6\nlatency_sum 1.25\nlatency_count 6\n"
            .to_string(),
        // A TYPE changes: `requests_total` becomes a gauge, with the same lines.
        "# TYPE requests_total gauge\nrequests_total{code=\"200\"} 8\nrequests_total{code=\"404\"} 1\n"
            .to_string(),
        "# TYPE requests_total gauge\nrequests_total{code=\"200\"} 9\nrequests_total{code=\"404\"} 2\n"
            .to_string(),
    ];
    let mut cached = SeriesCache::default();
    let mut uncached = SeriesCache::default();
    for (i, page) in pages.iter().enumerate() {
        let t = 10 * (i as u64 + 1);
        let a = cached_scrape(&mut cached, page, t, "secret").unwrap();
        let b = uncached_scrape(&mut uncached, page, t, "secret");
        assert_eq!(a.request, b.request, "page {i}");
        assert_eq!(
            (a.points, a.series_added),
            (b.points, b.series_added),
            "page {i}"
        );
        assert_eq!(a.dropped, b.dropped, "page {i}");
    }
    // Every line of the last page is known, and the dropped series text was remembered too.
    assert!(cached.known_lines() >= 2);
    let again = cached_scrape(&mut cached, &pages[4], 60, "secret").unwrap();
    assert_eq!(again.series_added, 0);
}

#[test]
fn a_known_series_with_a_bad_value_still_fails_the_page_with_its_line() {
    let mut cache = SeriesCache::default();
    cached_scrape(&mut cache, "a 1\nb{x=\"1\"} 2\n", 10, "").unwrap();
    let e = cached_scrape(&mut cache, "a 1\nb{x=\"1\"} two\n", 20, "")
        .err()
        .expect("the page fails");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("'two' is not a number"), "{e}");
    let e = cached_scrape(&mut cache, "a 1 12.5\n", 30, "")
        .err()
        .expect("the page fails");
    assert!(e.message.contains("is not a timestamp"), "{e}");
    // A failed page leaves nothing behind: the next good scrape sees `b` as it was.
    cache.begin(&target(), 40 * SEC);
    let c = cache.finish(&target(), None);
    assert_eq!(
        c.points,
        2 + 5,
        "a, b and the synthetic series are still live"
    );
}

#[test]
fn a_value_glued_to_the_labels_is_never_taken_for_part_of_the_series() {
    // The split from the end guesses `x{a="1"}5` as the series and `6` as the value; the full parser
    // reads value 5 at 6 ms. The guess must not be remembered.
    let mut cache = SeriesCache::default();
    for t in [10, 20] {
        let c = cached_scrape(&mut cache, "x{a=\"1\"}5 6\n", t, "").unwrap();
        let Some(metric::Data::Gauge(g)) = &metric(&c.request, "x").data else {
            panic!()
        };
        assert_eq!(value(&g.data_points[0]), Some(5.0), "scrape at {t}");
        assert_eq!(g.data_points[0].time_unix_nano, 6_000_000);
    }
}

#[test]
fn series_unseen_for_a_while_are_forgotten() {
    let mut cache = SeriesCache::default();
    cached_scrape(&mut cache, "a 1\ngone 1\n", 1, "").unwrap();
    let live = cache.len();
    for t in 2..(EVICT_AFTER * 3) {
        cached_scrape(&mut cache, "a 1\n", t, "").unwrap();
    }
    assert_eq!(cache.len(), live - 1);
    // `a` and the five synthetic series are all the slots left.
    assert_eq!(cache.slots.len(), 6);
    assert_eq!(cache.known_lines(), 1);
    let c = cached_scrape(&mut cache, "a 2\ngone 3\n", 100, "").unwrap();
    assert_eq!(c.series_added, 1);
}

/// Pages for the encoder: every kind, HELP, `_created`, timestamps, a reset, a series that goes, a
/// relabeled and a dropped series, target_info, a scope, a series with its own job, quantiles at 0.
const ENCODE_PAGES: [&str; 3] = [
    r#"# HELP requests_total Requests served.
# TYPE requests_total counter
requests_total{code="200",path="/a"} 10
requests_total{code="500",path="/a"} 2 1700000000000
requests_created{code="200",path="/a"} 1600000000
# TYPE temperature gauge
temperature{room="a b"} 21.5
temperature{room="c"} 0
untyped_thing{x="y"} -7
# HELP latency Latency.
# TYPE latency histogram
latency_bucket{le="0.1"} 3
latency_bucket{le="0.5"} 5
latency_bucket{le="+Inf"} 6
latency_sum 1.25
latency_count 6
latency_bucket{route="b",le="+Inf"} 0
latency_count{route="b"} 0
# TYPE rpc summary
rpc{quantile="0"} 0
rpc{quantile="0.9"} 0.7
rpc{quantile="0.5"} 0.2
rpc_sum 12
rpc_count 40
rpc_count{only="count"} 3
secret{a="1"} 5
# TYPE target_info gauge
target_info{region="eu"} 1
lib_calls{otel_scope_name="mylib",otel_scope_version="1.2"} 3
pushed{job="batch",instance="runner-1"} 9
"#,
    // Values move; a counter resets; `temperature{room="c"}`, the summary and the scoped series go.
    r#"# HELP requests_total Requests served.
# TYPE requests_total counter
requests_total{code="200",path="/a"} 4
requests_total{code="500",path="/a"} 3 1700000010000
requests_total{code="404",path="/b"} 1
# TYPE temperature gauge
temperature{room="a b"} 22
untyped_thing{x="y"} 8
# HELP latency Latency.
# TYPE latency histogram
latency_bucket{le="0.1"} 4
latency_bucket{le="0.5"} 9
latency_bucket{le="+Inf"} 9
latency_sum 2
latency_count 9
pushed{job="batch",instance="runner-1"} 10
"#,
    // Only a new family: everything else is marked stale, in metrics the page no longer describes.
    "# TYPE fresh gauge\nfresh 1\n",
];

/// One scrape through two caches that have seen the same scrapes: `page` (`None`: the scrape failed;
/// `removed`: the target went away), read through the line cache with relabeling (`path` renamed
/// `route_path`, `secret` dropped), then finished as owned structs by the first cache and encoded by
/// the second.
fn owned_and_encoded(
    caches: &mut [SeriesCache; 2],
    target: &Target,
    page: Option<&str>,
    t: u64,
    removed: bool,
) -> (Converted, Converted<Vec<u8>>) {
    let read = |cache: &mut SeriesCache| {
        cache.begin(target, t * SEC);
        if removed {
            return None;
        }
        let (up, exposed, kept) = match page {
            Some(page) => {
                let stats = cache
                    .add_page(target, page, |labels| {
                        if to_otlp::label(labels, NAME_LABEL) == Some("secret") {
                            return Ok(false);
                        }
                        if let Some(i) = labels.iter().position(|(k, _)| k == "path") {
                            labels[i].0 = "route_path".into();
                            labels.sort();
                        }
                        Ok(true)
                    })
                    .unwrap();
                (true, stats.exposed, stats.kept)
            }
            None => (false, 0, 0),
        };
        Some(ScrapeReport {
            up,
            duration_seconds: 0.25,
            samples_scraped: exposed,
            samples_post_relabeling: kept,
        })
    };
    let report = read(&mut caches[0]);
    let owned = caches[0].finish(target, report);
    let report = read(&mut caches[1]);
    let encoded = caches[1].finish_encoded(target, report);
    let [a, b] = caches;
    commit(a, NextState(owned.next.0));
    commit(b, NextState(encoded.next.0));
    (owned, encoded)
}

#[test]
fn the_encoded_request_is_the_owned_request() {
    use prost::Message;
    for honor_timestamps in [true, false] {
        let target = Target {
            honor_timestamps,
            ..target()
        };
        let mut caches = [SeriesCache::default(), SeriesCache::default()];
        let scrapes = [
            (Some(ENCODE_PAGES[0]), false),
            (Some(ENCODE_PAGES[0]), false),
            (Some(ENCODE_PAGES[1]), false),
            (None, false),
            (Some(ENCODE_PAGES[1]), false),
            (Some(ENCODE_PAGES[2]), false),
            (Some(ENCODE_PAGES[0]), false),
            (None, true),
        ];
        let (mut stale, mut kinds, mut created_start, mut own_timestamp) = (0, Vec::new(), 0, 0);
        for (i, (page, removed)) in scrapes.into_iter().enumerate() {
            let t = 10 * (i as u64 + 1);
            let (owned, encoded) = owned_and_encoded(&mut caches, &target, page, t, removed);
            let at = format!("scrape {i}, honor_timestamps {honor_timestamps}");
            let decoded = Metrics::decode(encoded.request.as_slice()).unwrap();
            assert_eq!(decoded, owned.request, "{at}");
            assert_eq!(
                encoded.request,
                owned.request.encode_to_vec(),
                "{at}: prost's own bytes"
            );
            assert_eq!(encoded.points, owned.points, "{at}");
            assert_eq!(encoded.points, pipelines_points(&decoded), "{at}");
            assert_eq!(encoded.series_added, owned.series_added, "{at}");
            assert_eq!(encoded.dropped, owned.dropped, "{at}");

            // What the pages are meant to exercise, so the comparison covers it.
            for m in metrics(&decoded) {
                let kind = match &m.data {
                    Some(metric::Data::Sum(s)) => {
                        stale += s.data_points.iter().filter(|p| p.flags != 0).count();
                        created_start += s
                            .data_points
                            .iter()
                            .filter(|p| p.start_time_unix_nano == 1_600_000_000 * SEC)
                            .count();
                        own_timestamp += s
                            .data_points
                            .iter()
                            .filter(|p| p.time_unix_nano == 1_700_000_000 * 1_000_000_000)
                            .count();
                        "sum"
                    }
                    Some(metric::Data::Gauge(g)) => {
                        stale += g.data_points.iter().filter(|p| p.flags != 0).count();
                        "gauge"
                    }
                    Some(metric::Data::Histogram(h)) => {
                        stale += h.data_points.iter().filter(|p| p.flags != 0).count();
                        "histogram"
                    }
                    Some(metric::Data::Summary(s)) => {
                        stale += s.data_points.iter().filter(|p| p.flags != 0).count();
                        "summary"
                    }
                    _ => "other",
                };
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            if i == 0 {
                assert_eq!(decoded.resource_metrics.len(), 2, "{at}: own job");
                assert!(metric(&decoded, "up").description.is_empty());
                assert_eq!(metric(&decoded, "latency").description, "Latency.");
                let Some(metric::Data::Sum(s)) = &metric(&decoded, "requests_total").data else {
                    panic!("{at}")
                };
                assert!(
                    s.data_points
                        .iter()
                        .all(|p| attr(&p.attributes, "route_path").is_some()),
                    "{at}: relabeled"
                );
                assert!(metrics(&decoded).iter().all(|m| m.name != "secret"));
            }
        }
        kinds.sort();
        assert_eq!(kinds, ["gauge", "histogram", "sum", "summary"]);
        assert!(stale >= 8, "staleness markers: {stale}");
        assert!(created_start > 0);
        assert_eq!(own_timestamp > 0, honor_timestamps);
    }
}

#[test]
fn lines_that_move_on_the_page_are_still_read_right() {
    // The line cache first compares a line with the one at the same position of the last page; when
    // series are reordered, inserted, removed or replaced by one of the same length, the requests must
    // still be those of a full parse.
    let pages = [
        "# TYPE c counter\nc{a=\"1\"} 1\nc{a=\"2\"} 2\ng 3\n",
        "# TYPE c counter\nc{a=\"2\"} 5\nc{a=\"1\"} 4\ng 6\n",
        "# TYPE c counter\nc{a=\"2\"} 6\nc{a=\"3\"} 1\nc{a=\"1\"} 5\ng 7\n",
        "# TYPE c counter\nc{a=\"3\"} 2\nc{a=\"1\"} 6\ng 8\nsecret 1\n",
        "# TYPE c counter\nc{a=\"4\"} 9\nc{a=\"1\"} 7\nsecret 2\ng 9\n",
        "# TYPE c counter\nc{a=\"4\"} 9\nc{a=\"1\"} bad\ng 9\n",
        "# TYPE c counter\nc{a=\"4\"} 10\nc{a=\"1\"} 8\ng 10\n",
    ];
    let mut cached = SeriesCache::default();
    let mut uncached = SeriesCache::default();
    for (i, page) in pages.iter().enumerate() {
        let t = 10 * (i as u64 + 1);
        let Ok(a) = cached_scrape(&mut cached, page, t, "secret") else {
            assert_eq!(i, 5, "only the page with a bad value fails");
            continue;
        };
        let b = uncached_scrape(&mut uncached, page, t, "secret");
        assert_eq!(a.request, b.request, "page {i}");
        assert_eq!(
            (a.points, a.series_added, &a.dropped),
            (b.points, b.series_added, &b.dropped),
            "page {i}"
        );
    }
}

#[test]
fn an_owned_page_is_kept_without_a_copy_and_reads_as_a_borrowed_one() {
    // The scrape loop reads into a buffer it keeps: the cache takes the page read in full by swapping
    // and hands back the page before it, whose capacity the next fetch reuses. Requests must be those
    // of the copying path, also after a failed page and when lines move.
    let pages = [
        "# TYPE c counter\nc{a=\"1\"} 1\nc{a=\"2\"} 2\ng 3\n",
        "# TYPE c counter\nc{a=\"2\"} 5\nc{a=\"1\"} 4\ng 6\n",
        "# TYPE c counter\nc{a=\"2\"} 6\nc{a=\"1\"} bad\ng 7\n",
        "# TYPE c counter\nc{a=\"2\"} 7\nc{a=\"3\"} 1\nc{a=\"1\"} 5\ng 8\n",
        "# TYPE c counter\nc{a=\"2\"} 8\nc{a=\"3\"} 2\nc{a=\"1\"} 6\ng 9\n",
    ];
    let target = target();
    let mut copied = SeriesCache::default();
    let mut owned = SeriesCache::default();
    let mut buffer = String::new();
    let mut last_good: Option<&str> = None;
    for (i, page) in pages.iter().enumerate() {
        let t = 10 * (i as u64 + 1) * SEC;
        copied.begin(&target, t);
        owned.begin(&target, t);
        let a = copied.add_page(&target, page, |_| Ok(true));
        buffer.clear();
        buffer.push_str(page);
        let b = owned.add_owned_page(&target, &mut buffer, |_| Ok(true));
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!((a.exposed, a.kept), (b.exposed, b.kept), "page {i}");
                // The page before it (none at first) comes back.
                assert_eq!(buffer, last_good.unwrap_or(""), "page {i}");
                last_good = Some(page);
            }
            (Err(_), Err(_)) => {
                assert_eq!(i, 2, "only the page with a bad value fails");
                assert_eq!(buffer, *page, "a failed page stays with the caller");
                copied.begin(&target, t);
                owned.begin(&target, t);
            }
            (a, b) => panic!("page {i}: {a:?} against {b:?}"),
        }
        let report = Some(ScrapeReport {
            up: true,
            duration_seconds: 0.5,
            samples_scraped: 0,
            samples_post_relabeling: 0,
        });
        let x = copied.finish_encoded(&target, report);
        let y = owned.finish_encoded(&target, report);
        assert_eq!(x.request, y.request, "page {i}");
        assert_eq!(x.points, y.points, "page {i}");
        commit(&mut copied, x.next);
        commit(&mut owned, y.next);
    }
}
