//! config/examples/spanmetrics-tail-sampling.yaml through the built binary: spanmetrics counts every span
//! sent (before sampling), while the sampled pipeline keeps every error and slow trace whole, marked
//! with the policy that kept it, drops health checks, and keeps only a fraction of the rest.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use outpost_integration::otlp_json::{self, Attr, Signal};
use outpost_integration::{free_port, gen, wait_for_async, workspace_root, Agent, Rng};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Fast,
    Slow,
    Error,
    Health,
}

fn trace(rng: &mut Rng, kind: Kind, n: usize) -> (String, Vec<Span>) {
    let id: Vec<u8> = (0..16).map(|_| rng.next_u64() as u8).collect();
    let root = rng.next_u64().to_be_bytes().to_vec();
    let start = 1_700_000_000_000_000_000u64;
    let ms = match kind {
        Kind::Slow => 900,
        _ => 20,
    };
    let route = if kind == Kind::Health {
        "/healthz"
    } else {
        "/api/cart"
    };
    let spans = (0..n)
        .map(|k| Span {
            trace_id: id.clone(),
            span_id: if k == 0 {
                root.clone()
            } else {
                rng.next_u64().to_be_bytes().to_vec()
            },
            parent_span_id: if k == 0 { Vec::new() } else { root.clone() },
            name: if k == 0 {
                format!("GET {route}")
            } else {
                "SELECT cart".into()
            },
            start_time_unix_nano: start,
            end_time_unix_nano: start + if k == 0 { ms } else { 5 } * 1_000_000,
            attributes: vec![gen::kv_str("http.route", route)],
            status: Some(Status {
                code: if kind == Kind::Error && k == n - 1 {
                    2
                } else {
                    0
                },
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    (id.iter().map(|b| format!("{b:02x}")).collect(), spans)
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![gen::kv_str("service.name", "cart")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "test".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_summarizes_every_span_and_keeps_what_matters() {
    let example = std::fs::read_to_string(
        workspace_root().join("config/examples/spanmetrics-tail-sampling.yaml"),
    )
    .unwrap();
    let grpc = free_port();
    // The example as shipped, pointed at this test's port and files, with short waits.
    let yaml = example
        .replace("127.0.0.1:4317", &format!("127.0.0.1:{grpc}"))
        .replace("decision_wait: 10s", "decision_wait: 3s")
        .replace("metrics_flush_interval: 15s", "metrics_flush_interval: 1s")
        .replace(
            "  otlp:\n    endpoint: ${env:CENTRAL_GRPC:-central.example.internal:4317}",
            "  otlp:\n    path: \"@DIR@/out.jsonl\"",
        )
        .replace("exporters:\n  otlp:", "exporters:\n  file:")
        .replace("exporters: [otlp]", "exporters: [file]")
        .replace(
            "  health_check:\n",
            "  health_check:\n    endpoint: \"@ADMIN@\"\nqueue:\n  directory: \"@DATA_DIR@\"\n",
        );
    let agent = Agent::start(&yaml);

    let mut rng = Rng::new(Rng::seed_from_env("OUTPOST_TEST_SEED"));
    let mut kinds: HashMap<String, (Kind, usize)> = HashMap::new();
    let mut all = Vec::new();
    for i in 0..400 {
        let kind = match i % 20 {
            0 => Kind::Error,
            1 => Kind::Slow,
            2 => Kind::Health,
            _ => Kind::Fast,
        };
        let n = 2 + (rng.next_u64() % 5) as usize;
        let (id, spans) = trace(&mut rng, kind, n);
        kinds.insert(id, (kind, n));
        all.extend(spans);
    }
    let sent = all.len();
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    for chunk in all.chunks(97) {
        client
            .export(request(chunk.to_vec()))
            .await
            .expect("accepted");
    }

    let out = agent.dir().join("out.jsonl");
    // Spanmetrics: cumulative calls reach exactly the spans sent.
    let calls = |path: &std::path::Path| -> i64 {
        let reqs = otlp_json::read_requests(path);
        let items = otlp_json::items(Signal::Metrics, &reqs);
        // The last flush has the cumulative totals: take each series' largest value.
        let mut per_series: HashMap<String, i64> = HashMap::new();
        for it in items.iter().filter(|i| {
            i.metric
                .as_ref()
                .is_some_and(|m| m.name == "traces.span.metrics.calls")
        }) {
            let key = format!("{:?}", it.attrs);
            let v = it.int_field("asInt").unwrap_or(0);
            let e = per_series.entry(key).or_default();
            *e = (*e).max(v);
        }
        per_series.values().sum()
    };
    let counted = wait_for_async(
        Duration::from_secs(30),
        "spanmetrics to count every span",
        || {
            let c = if out.exists() { calls(&out) } else { 0 };
            (c as usize == sent).then_some(c)
        },
        || format!("counted {} of {sent}\n{}", calls(&out), agent.log()),
    )
    .await;
    assert_eq!(
        counted as usize, sent,
        "spanmetrics counts every span before sampling"
    );

    // The sampled pipeline: wait until every error and slow trace arrived.
    let must: HashSet<&String> = kinds
        .iter()
        .filter(|(_, (k, _))| matches!(k, Kind::Error | Kind::Slow))
        .map(|(id, _)| id)
        .collect();
    let sampled = || {
        let reqs = otlp_json::read_requests(&out);
        let mut by_trace: HashMap<String, Vec<otlp_json::Item>> = HashMap::new();
        for it in otlp_json::items(Signal::Traces, &reqs) {
            by_trace
                .entry(it.str_field("traceId").to_lowercase())
                .or_default()
                .push(it);
        }
        by_trace
    };
    let kept = wait_for_async(
        Duration::from_secs(30),
        "every error and slow trace to be kept",
        || {
            let by_trace = sampled();
            must.iter()
                .all(|id| by_trace.get(*id).map(Vec::len) == Some(kinds[*id].1))
                .then_some(by_trace)
        },
        || format!("kept {} traces\n{}", sampled().len(), agent.log()),
    )
    .await;
    let mut fast_kept = 0;
    for (id, spans) in &kept {
        let (kind, n) = kinds[id];
        assert_eq!(spans.len(), n, "a kept trace is whole");
        let policy = match spans[0].attr("tailsampling.policy") {
            Some(Attr::Str(s)) => s.clone(),
            other => panic!("no policy attribute: {other:?}"),
        };
        match kind {
            Kind::Error => assert_eq!(policy, "errors"),
            Kind::Slow => assert_eq!(policy, "slow"),
            Kind::Health => panic!("health checks are dropped"),
            Kind::Fast => {
                assert_eq!(policy, "baseline");
                fast_kept += 1;
            }
        }
    }
    let fast = kinds.values().filter(|(k, _)| *k == Kind::Fast).count();
    assert!(
        fast_kept < fast / 4,
        "{fast_kept} of {fast} fast traces kept at 5%"
    );
    let metrics = agent.metrics_text();
    assert!(
        metrics.contains("outpost_tail_sampling_traces_total"),
        "decisions are counted:\n{metrics}"
    );
}
