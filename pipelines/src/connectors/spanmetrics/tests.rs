use std::collections::HashMap;

use super::*;
use crate::processors::tail_sampling::gen::{TraceGen, TraceKind};
use crate::signal::SignalData;

fn cfg(json: serde_json::Value) -> SpanMetricsConfig {
    serde_json::from_value(json).unwrap()
}

fn attr(attrs: &[KeyValue], k: &str) -> String {
    match find_attr(attrs, k).and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// (service, span name, status) → calls, from the `calls` sums.
fn calls(m: &Metrics) -> HashMap<(String, String, String), u64> {
    let mut out = HashMap::new();
    for rm in &m.resource_metrics {
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                if let Some(Data::Sum(s)) = &metric.data {
                    for p in &s.data_points {
                        let Some(number_data_point::Value::AsInt(v)) = p.value else {
                            panic!()
                        };
                        *out.entry((
                            attr(&p.attributes, "service.name"),
                            attr(&p.attributes, "span.name"),
                            attr(&p.attributes, "status.code"),
                        ))
                        .or_default() += v as u64;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn counts_equal_the_spans_sent_and_histograms_agree() {
    let mut g = TraceGen::new(21);
    g.huge_spans = 300;
    let mut sm = SpanMetrics::new(&cfg(
        serde_json::json!({"dimensions": [{"name": "db.system", "default": "none"}]}),
    ));
    let mut expected: HashMap<(String, String, String), u64> = HashMap::new();
    let mut sent = 0usize;
    for _ in 0..200 {
        let spans: Vec<_> = (0..10)
            .flat_map(|_| {
                let k = g.kind(5, 5, 1);
                g.trace(k).spans
            })
            .collect();
        let req = g.request(spans);
        sent += req.item_count();
        for rs in &req.resource_spans {
            let svc = attr(&rs.resource.as_ref().unwrap().attributes, "service.name");
            for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                *expected
                    .entry((
                        svc.clone(),
                        s.name.clone(),
                        status_name(s.status.as_ref().unwrap().code).into(),
                    ))
                    .or_default() += 1;
            }
        }
        sm.consume(&req);
    }
    let m = sm.flush(unix_nanos_now());
    let got = calls(&m);
    assert_eq!(got.values().sum::<u64>() as usize, sent);
    assert_eq!(got, expected);
    // Each histogram point counts what its calls point counts, in its buckets too.
    for rm in &m.resource_metrics {
        for metric in &rm.scope_metrics[0].metrics {
            if let Some(Data::Histogram(h)) = &metric.data {
                assert_eq!(metric.name, "traces.span.metrics.duration");
                for p in &h.data_points {
                    assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
                    assert_eq!(p.explicit_bounds.len() + 1, p.bucket_counts.len());
                    assert!(!attr(&p.attributes, "db.system").is_empty());
                }
            }
        }
    }
    // Cumulative: a second flush still reports everything.
    assert_eq!(calls(&sm.flush(unix_nanos_now())), expected);
}

#[test]
fn delta_forgets_and_exponential_counts() {
    let mut g = TraceGen::new(1);
    let mut sm = SpanMetrics::new(&cfg(serde_json::json!({
        "aggregation_temporality": "AGGREGATION_TEMPORALITY_DELTA",
        "histogram": {"exponential": {"max_size": 20}}
    })));
    let t = g.trace(TraceKind::Slow);
    sm.consume(&g.request(t.spans.clone()));
    let m = sm.flush(unix_nanos_now());
    let mut n = 0;
    for metric in &m.resource_metrics[0].scope_metrics[0].metrics {
        if let Some(Data::ExponentialHistogram(h)) = &metric.data {
            for p in &h.data_points {
                let b = p.positive.as_ref().unwrap();
                assert!(b.bucket_counts.len() <= 20);
                assert_eq!(b.bucket_counts.iter().sum::<u64>() + p.zero_count, p.count);
                // Every duration lies in its bucket's range at the point's scale.
                let base = 2f64.powf(2f64.powi(-p.scale));
                let lo = base.powi(b.offset);
                let hi = base.powi(b.offset + b.bucket_counts.len() as i32);
                assert!(
                    p.min.unwrap() > lo * 0.999 && p.max.unwrap() <= hi * 1.001,
                    "{lo} {hi} {p:?}"
                );
                n += p.count;
            }
        }
    }
    assert_eq!(n as usize, t.spans.len());
    assert!(
        sm.flush(unix_nanos_now()).resource_metrics.is_empty(),
        "delta starts over"
    );
}

#[test]
fn summary_quantiles_match_the_exact_ones() {
    let mut g = TraceGen::new(5);
    let mut sm = SpanMetrics::new(&cfg(serde_json::json!({
        "histogram": {"disable": true},
        "summary": {"quantiles": [0.5, 0.99]}
    })));
    let mut durations: Vec<f64> = Vec::new();
    let mut spans = Vec::new();
    for _ in 0..500 {
        let mut t = g.trace(TraceKind::Slow);
        t.spans.truncate(1);
        let mut s = t.spans.pop().unwrap();
        s.name = "one".into();
        durations.push((s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6);
        spans.push(s);
    }
    // All under one service and series.
    for s in &mut spans {
        s.trace_id[0] = 0;
    }
    sm.consume(&g.request(spans));
    durations.sort_by(f64::total_cmp);
    let m = sm.flush(unix_nanos_now());
    let summary = m.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find_map(|x| match &x.data {
            Some(Data::Summary(s)) => Some(s),
            _ => None,
        })
        .unwrap();
    let p = &summary.data_points[0];
    assert_eq!(p.count, 500);
    for q in &p.quantile_values {
        let exact = durations[((q.quantile * 500.0).ceil() as usize).clamp(1, 500) - 1];
        assert!(
            (q.value - exact).abs() / exact < 0.002,
            "q{}: {} vs {exact}",
            q.quantile,
            q.value
        );
    }
}

#[test]
fn the_cardinality_limit_sends_new_series_to_overflow() {
    let mut g = TraceGen::new(3);
    let mut sm = SpanMetrics::new(&cfg(
        serde_json::json!({"aggregation_cardinality_limit": 2}),
    ));
    let mut t = g.trace(TraceKind::Fast);
    for (i, s) in t.spans.iter_mut().enumerate() {
        s.name = format!("op{i}");
        s.trace_id[0] = 0;
    }
    let n = t.spans.len();
    sm.consume(&g.request(t.spans));
    assert_eq!(sm.take_overflow() as usize, n - 2);
    let got = calls(&sm.flush(unix_nanos_now()));
    assert_eq!(
        got.values().sum::<u64>() as usize,
        n,
        "overflowed spans are still counted"
    );
    assert_eq!(got.len(), 3, "two series and the overflow series");
}
