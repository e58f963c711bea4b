//! The transform processor on real OTLP payloads: values in and out, errors, abort, and drops counted.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use outpost_config::TransformProcessorConfig;

use super::*;
use crate::signal::{Logs, Traces};
use crate::telemetry::Telemetry;

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(v),
        ..Default::default()
    }
}

fn processor(source: &str, drop_on_error: bool) -> (TransformProcessor, Telemetry) {
    let t = Telemetry::new();
    let cfg = TransformProcessorConfig {
        source: Some(source.into()),
        file: None,
        drop_on_error,
        drop_on_abort: true,
    };
    let p = TransformProcessor::new(&cfg, t.transform_errors("logs", "transform")).unwrap();
    (p, t)
}

fn logs(records: Vec<LogRecord>) -> Logs {
    Logs {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("till"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn run<T: SignalData + Transformable>(
    p: &mut TransformProcessor,
    data: T,
) -> (Vec<T>, Vec<(&'static str, usize)>) {
    let mut out = Emit::default();
    Processor::<T>::process(p, Batch::new(data), &mut out);
    let dropped = out.dropped_reasons();
    (
        out.take_batches()
            .into_iter()
            .map(|b| b.into_parts().0)
            .collect(),
        dropped,
    )
}

#[test]
fn a_program_rewrites_body_attributes_and_severity() {
    let (mut p, _) = processor(
        r##"
        .attributes.service = .resource.attributes."service.name"
        .attributes.user = upcase(string!(.attributes.user))
        del(.attributes.secret)
        .body = replace(string!(.body), r'\d{4}', "XXXX")
        .severity_text = "WARN"
        .resource.attributes.ignored = "yes"
        "##,
        false,
    );
    let rec = LogRecord {
        body: Some(s("order 1234 failed")),
        attributes: vec![kv("user", s("bob")), kv("secret", s("x"))],
        ..Default::default()
    };
    let (out, dropped) = run(&mut p, logs(vec![rec]));
    assert!(dropped.is_empty());
    let rl = &out[0].resource_logs[0];
    let rec = &rl.scope_logs[0].log_records[0];
    assert_eq!(rec.body, Some(s("order XXXX failed")));
    assert_eq!(rec.severity_text, "WARN");
    let mut keys: Vec<_> = rec.attributes.iter().map(|kv| kv.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["service", "user"]);
    assert!(rec.attributes.contains(&kv("user", s("BOB"))));
    assert!(rec.attributes.contains(&kv("service", s("till"))));
    assert_eq!(
        rl.resource.as_ref().unwrap().attributes.len(),
        1,
        "resource is read-only"
    );
}

#[test]
fn nested_bodies_round_trip() {
    let (mut p, _) = processor(".body.extra = 1", false);
    let body = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![kv("a", s("b"))],
        })),
    };
    let (out, _) = run(
        &mut p,
        logs(vec![LogRecord {
            body: Some(body),
            ..Default::default()
        }]),
    );
    let body = out[0].resource_logs[0].scope_logs[0].log_records[0]
        .body
        .clone();
    let Some(any_value::Value::KvlistValue(kvs)) = body.and_then(|b| b.value) else {
        panic!("not a map")
    };
    assert_eq!(
        kvs.values,
        vec![
            kv("a", s("b")),
            kv(
                "extra",
                AnyValue {
                    value: Some(any_value::Value::IntValue(1))
                }
            )
        ]
    );
}

#[test]
fn runtime_errors_keep_or_drop_and_are_counted() {
    // `to_int!` fails at run time for a body that is not a number.
    let program = ".attributes.n = to_int!(.body)";
    let recs = || {
        logs(vec![
            LogRecord {
                body: Some(s("42")),
                ..Default::default()
            },
            LogRecord {
                body: Some(s("not a number")),
                ..Default::default()
            },
        ])
    };
    let (mut p, t) = processor(program, false);
    let (out, dropped) = run(&mut p, recs());
    let records = &out[0].resource_logs[0].scope_logs[0].log_records;
    assert_eq!(records.len(), 2);
    assert!(records[1].attributes.is_empty(), "left unchanged");
    assert!(dropped.is_empty());
    assert!(t.encode().contains(
        r#"outpost_transform_errors_total{pipeline="logs",processor="transform",outcome="kept"} 1"#
    ));

    let (mut p, t) = processor(program, true);
    let (out, dropped) = run(&mut p, recs());
    assert_eq!(out[0].resource_logs[0].scope_logs[0].log_records.len(), 1);
    assert_eq!(dropped, vec![(ERROR_REASON, 1)]);
    assert!(t.encode().contains(
        r#"outpost_transform_errors_total{pipeline="logs",processor="transform",outcome="dropped"} 1"#
    ));
}

#[test]
fn abort_drops_and_writes_back_invalid_results_fail() {
    let (mut p, _) = processor(r#"if .name == "health" { abort }"#, false);
    let traces = Traces {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    Span {
                        name: "health".into(),
                        ..Default::default()
                    },
                    Span {
                        name: "checkout".into(),
                        trace_id: vec![1; 16],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (out, dropped) = run(&mut p, traces.clone());
    let spans = &out[0].resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "checkout");
    assert_eq!(spans[0].trace_id, vec![1; 16], "ids survive the round trip");
    assert_eq!(dropped, vec![(ABORT_REASON, 1)]);

    // A trace id that is not 16 bytes of hex cannot be written back: the span stays as it was.
    let (mut p, _) = processor(r#".trace_id = "xyz"; .name = "changed""#, false);
    let (out, _) = run(&mut p, traces);
    let spans = &out[0].resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans[1].name, "checkout");
}
