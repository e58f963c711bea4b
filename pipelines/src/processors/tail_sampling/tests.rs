//! Tail sampling against generated traces with a known mix: what must be kept is kept, rates are within
//! statistical bounds, late spans follow their decision, memory stays bounded under overload.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use prost::Message;

use super::gen::{GenTrace, TraceGen, TraceKind};
use super::*;
use crate::batch::Admission;
use crate::telemetry::Telemetry;

fn config(json: serde_json::Value) -> TailSamplingConfig {
    serde_json::from_value(json).expect("test config")
}

fn processor(json: serde_json::Value) -> TailSampling {
    let cfg = config(json);
    let names: Vec<&str> = cfg.policies.iter().map(|p| p.name.as_str()).collect();
    let metrics = Telemetry::new().tail_sampling("traces", "tail_sampling", &names);
    TailSampling::new(&cfg, metrics).unwrap()
}

/// Errors, slow traces and 10% of the rest.
fn standard(extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "decision_wait": "10s",
        "num_traces": 100000,
        "policies": [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
            {"name": "sample-10", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}},
        ]
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

/// Kept spans by trace id, with the policy attribute each carried.
#[derive(Default)]
struct Sink {
    spans: HashMap<[u8; 16], Vec<Span>>,
    dropped: usize,
}

impl Sink {
    fn take(&mut self, out: &mut Emit<Traces>) {
        for b in out.take_batches() {
            let (data, _) = b.into_parts();
            for rs in data.resource_spans {
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        let id: [u8; 16] = s.trace_id.as_slice().try_into().unwrap();
                        self.spans.entry(id).or_default().push(s);
                    }
                }
            }
        }
        self.dropped += out
            .take_dropped()
            .into_iter()
            .map(|(_, n)| n)
            .sum::<usize>();
    }
    fn total(&self) -> usize {
        self.spans.values().map(Vec::len).sum()
    }
}

fn policy_of(span: &Span) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == POLICY_ATTRIBUTE)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

/// Sends `traces` in requests of `per_request` traces each, at `now`.
fn send(
    p: &mut TailSampling,
    g: &TraceGen,
    traces: &[GenTrace],
    per_request: usize,
    now: Instant,
    sink: &mut Sink,
) {
    for chunk in traces.chunks(per_request) {
        let spans: Vec<Span> = chunk.iter().flat_map(|t| t.spans.clone()).collect();
        let mut out = Emit::default();
        p.process_at(Batch::new(g.request(spans)), now, &mut out);
        sink.take(&mut out);
    }
}

#[test]
fn every_error_and_slow_trace_is_kept_and_the_rest_at_the_configured_rate() {
    let mut g = TraceGen::new(7);
    let mut p = processor(standard(serde_json::json!({})));
    let traces: Vec<GenTrace> = (0..6000)
        .map(|_| {
            let k = g.kind(5, 5, 0);
            g.trace(k)
        })
        .collect();
    let t0 = Instant::now();
    let mut sink = Sink::default();
    send(&mut p, &g, &traces, 25, t0, &mut sink);
    assert_eq!(sink.total(), 0, "nothing leaves before its decision");
    assert_eq!(p.held_traces(), traces.len());
    let mut out = Emit::default();
    p.on_deadline_at(t0 + Duration::from_secs(9), &mut out);
    assert!(out.batches().is_empty(), "decision_wait has not passed");
    p.on_deadline_at(t0 + Duration::from_secs(10), &mut out);
    sink.take(&mut out);
    assert_eq!(p.held_traces(), 0);

    let mut fast = 0usize;
    let mut fast_kept = 0usize;
    let mut sent_spans = 0usize;
    for t in &traces {
        sent_spans += t.spans.len();
        let kept = sink.spans.get(&t.id);
        match t.kind {
            TraceKind::Error | TraceKind::Slow => {
                let kept = kept.unwrap_or_else(|| panic!("{:?} trace not kept", t.kind));
                assert_eq!(kept.len(), t.spans.len(), "a kept trace is kept whole");
                let want = if t.kind == TraceKind::Error {
                    "errors"
                } else {
                    "slow"
                };
                assert!(kept.iter().all(|s| policy_of(s).as_deref() == Some(want)));
            }
            _ => {
                fast += 1;
                if let Some(kept) = kept {
                    fast_kept += 1;
                    assert_eq!(kept.len(), t.spans.len());
                    assert!(kept
                        .iter()
                        .all(|s| policy_of(s).as_deref() == Some("sample-10")));
                }
            }
        }
    }
    // Binomial(fast, 0.1): within 4.5 standard deviations.
    let mean = fast as f64 * 0.1;
    let sd = (fast as f64 * 0.1 * 0.9).sqrt();
    assert!(
        (fast_kept as f64 - mean).abs() < 4.5 * sd,
        "kept {fast_kept} of {fast} fast traces; expected about {mean:.0} ± {:.0}",
        4.5 * sd
    );
    assert_eq!(
        sink.total() + sink.dropped,
        sent_spans,
        "every span is kept or counted dropped"
    );
    let s = p.stats();
    assert_eq!(
        (s.traces_sampled + s.traces_not_sampled) as usize,
        traces.len()
    );
    assert!(
        s.early.is_empty(),
        "no early decisions without pressure: {:?}",
        s.early
    );
    assert_eq!(
        s.spans_unpacked as usize,
        sink.total(),
        "policies decide on the summary: only kept spans are taken out of their fragments"
    );
}

#[test]
fn probabilistic_decisions_are_consistent_on_the_trace_id() {
    let mut g = TraceGen::new(11);
    let traces: Vec<GenTrace> = (0..2000).map(|_| g.trace(TraceKind::Fast)).collect();
    let kept = |order: &[GenTrace]| {
        let mut p = processor(standard(serde_json::json!({})));
        let mut sink = Sink::default();
        let t0 = Instant::now();
        send(&mut p, &g, order, 10, t0, &mut sink);
        let mut out = Emit::default();
        p.on_deadline_at(t0 + Duration::from_secs(11), &mut out);
        sink.take(&mut out);
        sink.spans.keys().copied().collect::<HashSet<_>>()
    };
    let mut reversed = traces.clone();
    reversed.reverse();
    let a = kept(&traces);
    assert!(!a.is_empty());
    assert_eq!(
        a,
        kept(&reversed),
        "the same trace ids are kept in any arrival order"
    );
}

#[test]
fn late_spans_follow_the_decision_from_the_table_and_from_the_cache() {
    let mut g = TraceGen::new(3);
    // A small table, so most decided traces are only remembered by the decision cache.
    let mut p = processor(standard(serde_json::json!({
        "num_traces": 50,
        "decision_cache": {"sampled_cache_size": 10000, "non_sampled_cache_size": 10000}
    })));
    let mut traces: Vec<GenTrace> = (0..400)
        .map(|_| {
            let k = g.kind(20, 0, 0);
            g.trace(k)
        })
        .collect();
    // Hold back each trace's last span; its error (if any) must be in what is sent first.
    let mut late = Vec::new();
    for t in &mut traces {
        let last = t.spans.pop().unwrap();
        if last.status.as_ref().is_some_and(|s| s.code == 2) {
            let n = t.spans.len();
            let l = std::mem::replace(&mut t.spans[n - 1], last);
            late.push(l);
        } else {
            late.push(last);
        }
    }
    let t0 = Instant::now();
    let mut sink = Sink::default();
    for (i, t) in traces.iter().enumerate() {
        // One trace per request, each arriving a little later, so the table turns over.
        send(
            &mut p,
            &g,
            std::slice::from_ref(t),
            1,
            t0 + Duration::from_millis(i as u64),
            &mut sink,
        );
    }
    let mut out = Emit::default();
    p.on_deadline_at(t0 + Duration::from_secs(60), &mut out);
    sink.take(&mut out);
    let kept_before: HashSet<[u8; 16]> = sink.spans.keys().copied().collect();
    let dropped_before = sink.dropped;
    let mut out = Emit::default();
    p.process_at(
        Batch::new(g.request(late.clone())),
        t0 + Duration::from_secs(61),
        &mut out,
    );
    sink.take(&mut out);
    for (t, l) in traces.iter().zip(&late) {
        let kept = sink.spans.get(&t.id);
        if kept_before.contains(&t.id) {
            let kept = kept.unwrap();
            assert_eq!(
                kept.len(),
                t.spans.len() + 1,
                "the late span of a kept trace is kept"
            );
            let last = kept.last().unwrap();
            assert_eq!(last.span_id, l.span_id);
            assert!(
                policy_of(last).is_some(),
                "a late kept span names the policy"
            );
        } else {
            assert!(
                kept.is_none(),
                "the late span of a dropped trace is dropped"
            );
        }
    }
    let s = p.stats();
    assert_eq!(s.late_spans_sampled as usize, kept_before.len());
    assert_eq!(
        s.late_spans_not_sampled as usize,
        traces.len() - kept_before.len()
    );
    assert_eq!(
        sink.dropped - dropped_before,
        traces.len() - kept_before.len()
    );
    assert_eq!(p.held_traces(), 0, "no late span started a new trace");
    // Every error trace was kept, early decisions by num_traces included.
    for t in &traces {
        if t.kind == TraceKind::Error {
            assert!(kept_before.contains(&t.id));
        }
    }
    assert!(s.early.get("num_traces").copied().unwrap_or(0) > 0);
}

#[test]
fn ten_times_overload_stays_under_max_memory_and_counts_early_decisions() {
    let max = 1usize << 20;
    let mut g = TraceGen::new(5);
    g.huge_spans = 3000;
    let mut p = processor(standard(
        serde_json::json!({"max_memory": max, "decision_wait": "30s"}),
    ));
    let t0 = Instant::now();
    let mut sink = Sink::default();
    let mut sent = Vec::new();
    let mut encoded = 0usize;
    while encoded < 10 * max * 4 {
        let batch: Vec<GenTrace> = (0..20)
            .map(|_| {
                let k = g.kind(5, 5, 1);
                g.trace(k)
            })
            .collect();
        let req = g.request(batch.iter().flat_map(|t| t.spans.clone()).collect());
        encoded += req.encoded_len();
        let mut out = Emit::default();
        p.process_at(Batch::new(req), t0, &mut out);
        sink.take(&mut out);
        assert!(
            p.held_bytes() <= max,
            "held {} bytes with max_memory {max}",
            p.held_bytes()
        );
        sent.extend(batch);
    }
    let s = p.stats().clone();
    assert!(s.peak_held_bytes <= max);
    let early = s.early.get("max_memory").copied().unwrap_or(0);
    assert!(early > 0, "early decisions are counted");
    assert_eq!(
        early as usize + p.held_traces(),
        sent.len(),
        "every trace not decided early is still held (time never advanced)"
    );
    let mut out = Emit::default();
    p.drain(&mut out);
    sink.take(&mut out);
    assert_eq!(p.held_traces(), 0);
    let sent_spans: usize = sent.iter().map(|t| t.spans.len()).sum();
    assert_eq!(
        sink.total() + sink.dropped,
        sent_spans,
        "nothing lost without a count"
    );
    for t in &sent {
        if matches!(t.kind, TraceKind::Error | TraceKind::Slow) {
            assert_eq!(
                sink.spans.get(&t.id).map(Vec::len),
                Some(t.spans.len()),
                "{:?}",
                t.kind
            );
        }
    }
    assert!(p.stats().early.get("shutdown").copied().unwrap_or(0) > 0);
}

#[test]
fn held_spans_take_at_most_half_their_otlp_encoding() {
    let mut g = TraceGen::new(9);
    let mut p = processor(standard(serde_json::json!({"max_memory": 1u64 << 30})));
    let t0 = Instant::now();
    let mut encoded = 0usize;
    let mut sink = Sink::default();
    // Past the dictionary's training samples, so the steady state is measured.
    for _ in 0..600 {
        let batch: Vec<Span> = (0..20)
            .flat_map(|_| {
                let k = g.kind(5, 5, 0);
                g.trace(k).spans
            })
            .collect();
        let req = g.request(batch);
        encoded += req.encoded_len();
        let mut out = Emit::default();
        p.process_at(Batch::new(req), t0, &mut out);
        sink.take(&mut out);
    }
    assert!(p.compressing());
    let ratio = p.held_bytes() as f64 / encoded as f64;
    assert!(
        ratio <= 0.5,
        "held {} bytes for {encoded} encoded: {ratio:.3}",
        p.held_bytes()
    );
}

#[test]
fn a_root_span_shortens_the_wait() {
    let mut g = TraceGen::new(1);
    let mut p = processor(standard(serde_json::json!({
        "decision_wait": "30s", "decision_wait_after_root_received": "2s"
    })));
    let t = g.trace(TraceKind::Error);
    let (root, children) = t.spans.split_first().unwrap();
    let t0 = Instant::now();
    let mut sink = Sink::default();
    let mut out = Emit::default();
    p.process_at(Batch::new(g.request(children.to_vec())), t0, &mut out);
    assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(30)));
    p.process_at(
        Batch::new(g.request(vec![root.clone()])),
        t0 + Duration::from_secs(1),
        &mut out,
    );
    assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(3)));
    p.on_deadline_at(t0 + Duration::from_secs(3), &mut out);
    sink.take(&mut out);
    assert_eq!(sink.spans.get(&t.id).map(Vec::len), Some(t.spans.len()));
}

#[tokio::test]
async fn held_spans_are_acknowledged_and_passed_spans_when_queued() {
    let mut g = TraceGen::new(2);
    let mut p = processor(standard(serde_json::json!({
        "decision_cache": {"sampled_cache_size": 10}
    })));
    let t = g.trace(TraceKind::Error);
    let (adm, wait) = Admission::new(0, None);
    let mut out = Emit::default();
    let t0 = Instant::now();
    p.process_at(
        Batch::with_admission(g.request(t.spans[1..].to_vec()), adm),
        t0,
        &mut out,
    );
    assert!(out.batches().is_empty());
    assert_eq!(
        wait.wait().await,
        Ok(()),
        "held spans are ours: the client is answered"
    );
    p.on_deadline_at(t0 + Duration::from_secs(10), &mut out);
    out.take_batches();
    // A late span of the kept trace passes through with its client's admission.
    let (adm, wait) = Admission::new(0, None);
    p.process_at(
        Batch::with_admission(g.request(t.spans[..1].to_vec()), adm),
        t0 + Duration::from_secs(11),
        &mut out,
    );
    let mut batches = out.take_batches();
    assert_eq!(batches.len(), 1);
    let mut wait = Box::pin(wait.wait());
    assert!(
        futures_poll(&mut wait).is_none(),
        "not answered before the span is queued"
    );
    drop(batches.pop().unwrap().into_parts());
    assert_eq!(wait.await, Ok(()));
}

fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::Pin::new(f).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// One trace through one policy list; whether it is kept and by which policy.
fn decide(policies: serde_json::Value, t: &GenTrace) -> (bool, Option<String>) {
    let g = TraceGen::new(0);
    let mut p = processor(serde_json::json!({"decision_wait": "1s", "policies": policies}));
    let t0 = Instant::now();
    let mut out = Emit::default();
    p.process_at(Batch::new(g.request(t.spans.clone())), t0, &mut out);
    p.on_deadline_at(t0 + Duration::from_secs(1), &mut out);
    let mut sink = Sink::default();
    sink.take(&mut out);
    let kept = sink.spans.get(&t.id);
    (kept.is_some(), kept.and_then(|k| policy_of(&k[0])))
}

#[test]
fn policies_and_their_combination() {
    use serde_json::json;
    let mut g = TraceGen::new(4);
    let err = g.trace(TraceKind::Error);
    let fast = g.trace(TraceKind::Fast);
    let slow = g.trace(TraceKind::Slow);
    let errors = json!({"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}});
    let db = json!({"name": "db", "type": "string_attribute",
        "string_attribute": {"key": "db.system", "values": ["^postgres"], "enabled_regex_matching": true}});
    let big_status = json!({"name": "5xx", "type": "numeric_attribute",
        "numeric_attribute": {"key": "http.response.status_code", "min_value": 500, "max_value": 599}});
    let svc = json!({"name": "svc", "type": "string_attribute",
        "string_attribute": {"key": "service.name", "values": ["checkout", "cart", "payments", "inventory"]}});
    let checks: Vec<(serde_json::Value, &GenTrace, bool, Option<&str>)> = vec![
        (json!([errors]), &err, true, Some("errors")),
        (json!([errors]), &fast, false, None),
        (json!([big_status]), &err, true, Some("5xx")),
        (json!([big_status]), &fast, false, None),
        (json!([db]), &fast, true, Some("db")),
        (json!([svc]), &fast, true, Some("svc")), // resource attributes count
        (
            json!([{"name": "all", "type": "always_sample"}]),
            &fast,
            true,
            Some("all"),
        ),
        (
            json!([{"name": "many", "type": "span_count", "span_count": {"min_spans": 100}}]),
            &fast,
            false,
            None,
        ),
        (
            json!([{"name": "few", "type": "span_count", "span_count": {"min_spans": 1, "max_spans": 100}}]),
            &fast,
            true,
            Some("few"),
        ),
        (
            json!([{"name": "band", "type": "latency", "latency": {"threshold_ms": 100, "upper_threshold_ms": 50000}}]),
            &slow,
            true,
            Some("band"),
        ),
        (
            json!([{"name": "and", "type": "and", "and": {"and_sub_policy": [errors, big_status]}}]),
            &err,
            true,
            Some("and"),
        ),
        (
            json!([{"name": "and", "type": "and", "and": {"and_sub_policy": [errors, db]}}]),
            &slow,
            false,
            None,
        ),
        (
            json!([{"name": "not", "type": "not", "not": {"not_sub_policy": errors}}]),
            &fast,
            true,
            Some("not"),
        ),
        (
            json!([{"name": "not", "type": "not", "not": {"not_sub_policy": errors}}]),
            &err,
            false,
            None,
        ),
        // A drop vetoes any sample.
        (
            json!([errors, {"name": "no-db-errors", "type": "drop", "drop": {"drop_sub_policy": [errors, db]}}]),
            &err,
            false,
            None,
        ),
        // An inverted match that matches vetoes too; one that does not match keeps.
        (
            json!([errors, {"name": "not-svc", "type": "string_attribute", "string_attribute": {"key": "service.name", "values": ["checkout", "cart", "payments", "inventory"], "invert_match": true}}]),
            &err,
            false,
            None,
        ),
        (
            json!([{"name": "not-x", "type": "string_attribute", "string_attribute": {"key": "service.name", "values": ["x"], "invert_match": true}}]),
            &fast,
            true,
            Some("not-x"),
        ),
        (
            json!([{"name": "bool", "type": "boolean_attribute", "boolean_attribute": {"key": "missing", "value": true}}]),
            &fast,
            false,
            None,
        ),
        (
            json!([{"name": "composite", "type": "composite", "composite": {
            "max_total_spans_per_second": 1000, "policy_order": ["e", "rest"],
            "composite_sub_policy": [
                {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                {"name": "rest", "type": "always_sample"}],
            "rate_allocation": [{"policy": "e", "percent": 50}, {"policy": "rest", "percent": 50}]}}]),
            &fast,
            true,
            Some("composite"),
        ),
    ];
    for (i, (policies, t, keep, by)) in checks.into_iter().enumerate() {
        let got = decide(policies, t);
        assert_eq!(got, (keep, by.map(str::to_owned)), "check {i}");
    }
    // trace_state
    let mut ts = g.trace(TraceKind::Fast);
    for s in &mut ts.spans {
        s.trace_state = "vendor=a,tier=gold".into();
    }
    let policy = json!([{"name": "gold", "type": "trace_state", "trace_state": {"key": "tier", "values": ["gold"]}}]);
    assert!(decide(policy.clone(), &ts).0);
    assert!(!decide(policy, &fast).0);
}

#[test]
fn rate_and_bytes_limits_hold_per_second() {
    let mut g = TraceGen::new(8);
    let traces: Vec<GenTrace> = (0..200).map(|_| g.trace(TraceKind::Fast)).collect();
    let spans: usize = traces.iter().map(|t| t.spans.len()).sum();
    for (policy, bound) in [
        (
            serde_json::json!({"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 100}}),
            100usize,
        ),
        (
            serde_json::json!({"name": "b", "type": "bytes_limiting", "bytes_limiting": {"bytes_per_second": 20000, "burst_capacity": 20000}}),
            usize::MAX,
        ),
    ] {
        let mut p = processor(serde_json::json!({"decision_wait": "1s", "policies": [policy]}));
        let t0 = Instant::now();
        let mut sink = Sink::default();
        send(&mut p, &g, &traces, 200, t0, &mut sink);
        let mut out = Emit::default();
        p.on_deadline_at(t0 + Duration::from_secs(1), &mut out);
        sink.take(&mut out);
        let kept_spans = sink.total();
        assert!(kept_spans > 0 && kept_spans < spans);
        assert!(kept_spans <= bound, "{kept_spans} > {bound}");
        if bound == usize::MAX {
            let bytes: usize = sink
                .spans
                .values()
                .flatten()
                .map(|s| {
                    // As received: without the policy attribute added on the way out.
                    let mut s = s.clone();
                    s.attributes.retain(|kv| kv.key != POLICY_ATTRIBUTE);
                    s.encoded_len()
                })
                .sum();
            assert!(bytes <= 20000, "{bytes}");
        }
    }
}

#[test]
fn invalid_trace_ids_are_dropped_and_counted() {
    let mut g = TraceGen::new(6);
    let mut t = g.trace(TraceKind::Fast);
    t.spans[0].trace_id = vec![1, 2, 3];
    let n = t.spans.len();
    let mut p = processor(standard(serde_json::json!({})));
    let mut out = Emit::default();
    p.process_at(Batch::new(g.request(t.spans)), Instant::now(), &mut out);
    let mut sink = Sink::default();
    sink.take(&mut out);
    assert_eq!(sink.dropped, 1);
    assert_eq!(p.held_traces(), 1);
    let _ = n;
}

#[test]
fn kept_traces_leave_encoded_and_equal_to_what_was_sent() {
    let mut g = TraceGen::new(11);
    let mut p = processor(standard(serde_json::json!({})));
    let mut t = g.trace(TraceKind::Error);
    // A policy attribute the client set is replaced by ours, not repeated.
    t.spans[1].attributes.push(KeyValue {
        key: POLICY_ATTRIBUTE.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue("the client's".into())),
        }),
        ..Default::default()
    });
    let sent = g.request(t.spans.clone());
    let t0 = Instant::now();
    let mut out = Emit::default();
    p.process_at(Batch::new(sent.clone()), t0, &mut out);
    p.on_deadline_at(t0 + Duration::from_secs(10), &mut out);
    let mut batches = out.take_batches();
    assert_eq!(batches.len(), 1);
    assert!(batches[0].has_encoded(), "held spans are not decoded again");
    let payload = batches[0].take_payload();
    let mut got = Traces::decode(payload.as_slice()).unwrap();
    // What left is what was sent, each span marked once with the deciding policy.
    let mut want = sent;
    for rs in &mut want.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.attributes.retain(|kv| kv.key != POLICY_ATTRIBUTE);
                mark(s, "errors");
            }
        }
    }
    for rs in &mut got.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                let marks = s
                    .attributes
                    .iter()
                    .filter(|kv| kv.key == POLICY_ATTRIBUTE)
                    .count();
                assert_eq!(marks, 1);
                assert_eq!(policy_of(s).as_deref(), Some("errors"));
            }
        }
    }
    assert_eq!(got, want);
}
