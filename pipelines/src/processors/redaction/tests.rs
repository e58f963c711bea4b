//! The processor on real OTLP payloads: scope (every place a string can be), actions, the OpenTelemetry
//! Collector's keys, fail-closed limits, counters and summaries.

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, Exemplar, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use outpost_config::{
    RedactionAction, RedactionProcessorConfig, RedactionRuleOverride, RedactionSummary,
};

use super::*;
use crate::signal::{Logs, Metrics, Traces};

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const SSN: &str = "536-22-8142";

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

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    match get(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    }
}

fn processor(cfg: &RedactionProcessorConfig) -> (RedactionProcessor, Telemetry) {
    let t = Telemetry::new();
    let r = Redaction::new(cfg).unwrap();
    (r.processor::<Traces>(&t), t)
}

fn traces() -> Traces {
    Traces {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("checkout")),
                    kv("owner.email", s(EMAIL)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "shop".into(),
                    attributes: vec![kv("scope.contact", s(EMAIL))],
                    ..Default::default()
                }),
                spans: vec![Span {
                    name: format!("charge {CARD}"),
                    attributes: vec![
                        kv("http.route", s("/api/orders/{id}")),
                        kv("customer", s(&format!("mail {EMAIL} now"))),
                    ],
                    events: vec![span::Event {
                        name: format!("notify {EMAIL}"),
                        attributes: vec![kv("ssn", s(SSN))],
                        ..Default::default()
                    }],
                    links: vec![span::Link {
                        attributes: vec![kv("peer", s(EMAIL))],
                        ..Default::default()
                    }],
                    status: Some(Status {
                        message: format!("declined {CARD}"),
                        code: 2,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn encoded<T: std::fmt::Debug>(m: &T) -> String {
    format!("{m:?}")
}

#[test]
fn every_string_of_a_span_is_scanned() {
    let (mut p, t) = processor(&RedactionProcessorConfig::default());
    let mut data = traces();
    assert_eq!(p.redact(&mut data), 0);
    let dump = encoded(&data);
    for seeded in [EMAIL, CARD, SSN] {
        assert!(!dump.contains(seeded), "{seeded} survived:\n{dump}");
    }
    let rs = &data.resource_spans[0];
    let span = &rs.scope_spans[0].spans[0];
    assert_eq!(span.name, "charge ****1111");
    assert_eq!(text(&span.attributes, "customer").unwrap(), "mail **** now");
    assert_eq!(
        text(&span.attributes, "http.route").unwrap(),
        "/api/orders/{id}"
    );
    let resource = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(text(resource, "service.name").unwrap(), "checkout");
    // summary: info by default, counts only.
    assert_eq!(
        get(&span.attributes, "redaction.masked.count"),
        Some(&any_value::Value::IntValue(6))
    );
    assert!(get(&span.attributes, "redaction.masked.keys").is_none());
    let metrics = t.encode();
    for line in [
        r#"outpost_redactions_total{rule="email",signal="traces"} 5"#,
        r#"outpost_redactions_total{rule="payment_card",signal="traces"} 2"#,
        r#"outpost_redactions_total{rule="us_ssn",signal="traces"} 1"#,
        r#"outpost_redactions_total{rule="iban",signal="traces"} 0"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

#[test]
fn log_bodies_are_scanned_through_maps_and_arrays() {
    let cfg = RedactionProcessorConfig::default();
    let t = Telemetry::new();
    let mut p = Redaction::new(&cfg).unwrap().processor::<Logs>(&t);
    let body = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![
                kv("msg", s(&format!("refund to {CARD}"))),
                kv(
                    "recipients",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![s("ops"), s(EMAIL)],
                        })),
                    },
                ),
            ],
        })),
    };
    let mut logs = Logs {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        body: Some(body),
                        attributes: vec![kv("user.ssn", s(SSN))],
                        ..Default::default()
                    },
                    LogRecord {
                        body: Some(s(&format!("plain {EMAIL}"))),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    p.redact(&mut logs);
    let dump = encoded(&logs);
    for seeded in [EMAIL, CARD, SSN] {
        assert!(!dump.contains(seeded), "{seeded} survived:\n{dump}");
    }
    assert!(dump.contains("ops"), "unrelated array items stay");
    let recs = &logs.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(
        recs[1].body.as_ref().unwrap().value,
        Some(any_value::Value::StringValue("plain ****".into()))
    );
}

#[test]
fn metric_points_and_exemplars_are_scanned_and_numbers_with_redact_all_types() {
    let point = |card: i64| NumberDataPoint {
        attributes: vec![
            kv("user", s(EMAIL)),
            kv(
                "card",
                AnyValue {
                    value: Some(any_value::Value::IntValue(card)),
                },
            ),
        ],
        exemplars: vec![Exemplar {
            filtered_attributes: vec![kv("who", s(EMAIL))],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mk = || Metrics {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "payments".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![point(4111111111111111)],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let t = Telemetry::new();
    let mut cfg = RedactionProcessorConfig::default();
    let mut p = Redaction::new(&cfg).unwrap().processor::<Metrics>(&t);
    let mut m = mk();
    p.redact(&mut m);
    let dump = encoded(&m);
    assert!(!dump.contains(EMAIL), "{dump}");
    assert!(
        dump.contains("IntValue(4111111111111111)"),
        "numbers are left alone by default"
    );
    cfg.redact_all_types = true;
    let mut p = Redaction::new(&cfg).unwrap().processor::<Metrics>(&t);
    let mut m = mk();
    p.redact(&mut m);
    let dump = encoded(&m);
    assert!(!dump.contains("4111111111111111"), "{dump}");
    assert!(dump.contains("StringValue(\"****1111\")"), "{dump}");
}

#[test]
fn drop_attribute_and_drop_record_actions() {
    let mut cfg = RedactionProcessorConfig::default();
    cfg.rules.insert(
        "email".into(),
        RedactionRuleOverride {
            action: Some(RedactionAction::DropAttribute),
            ..Default::default()
        },
    );
    cfg.rules.insert(
        "us_ssn".into(),
        RedactionRuleOverride {
            action: Some(RedactionAction::DropRecord),
            ..Default::default()
        },
    );
    cfg.summary = RedactionSummary::Debug;
    let (mut p, _) = processor(&cfg);
    let mut data = traces();
    // The only span has an event carrying an SSN: the span goes.
    assert_eq!(p.redact(&mut data), 1);
    assert!(data.resource_spans.is_empty(), "empty groups are pruned");

    let mut data = traces();
    data.resource_spans[0].scope_spans[0].spans[0]
        .events
        .clear();
    assert_eq!(p.redact(&mut data), 0);
    let rs = &data.resource_spans[0];
    let span = &rs.scope_spans[0].spans[0];
    assert!(
        get(&span.attributes, "customer").is_none(),
        "attribute removed"
    );
    assert!(get(&rs.resource.as_ref().unwrap().attributes, "owner.email").is_none());
    assert_eq!(
        text(&span.attributes, "redaction.redacted.keys").as_deref(),
        Some("customer,peer")
    );
    assert_eq!(
        text(&span.attributes, "redaction.masked.keys").as_deref(),
        Some("name,status.message")
    );
}

#[test]
fn a_drop_record_in_resource_attributes_drops_every_item_under_it() {
    let mut cfg = RedactionProcessorConfig::default();
    cfg.rules.insert(
        "email".into(),
        RedactionRuleOverride {
            action: Some(RedactionAction::DropRecord),
            ..Default::default()
        },
    );
    let (mut p, _) = processor(&cfg);
    let mut batch = Batch::new(traces());
    batch.data.resource_spans[0].scope_spans[0]
        .spans
        .push(Span::default());
    let mut out = Emit::default();
    Processor::<Traces>::process(&mut p, batch, &mut out);
    assert!(out.batches().is_empty());
}

#[test]
fn collector_keys_allowlist_ignored_blocked() {
    let cfg = RedactionProcessorConfig {
        allowed_keys: vec!["http.route".into(), "customer".into(), "note".into()],
        ignored_keys: vec!["debug.raw".into()],
        blocked_key_patterns: vec!["(?i)secret".into()],
        blocked_values: vec!["ORD-[0-9]+".into()],
        allowed_values: vec!["^support@example\\.com$".into()],
        summary: RedactionSummary::Debug,
        ..Default::default()
    };
    let (mut p, t) = processor(&cfg);
    let mut data = traces();
    {
        let span = &mut data.resource_spans[0].scope_spans[0].spans[0];
        span.attributes = vec![
            kv("http.route", s("/x")),
            kv("customer", s("support@example.com")),
            kv("note", s("order ORD-12345 shipped")),
            kv("debug.raw", s(EMAIL)),
            kv("user.secret_answer", s("blue")),
            kv("unlisted", s("x")),
        ];
    }
    p.redact(&mut data);
    let attrs = &data.resource_spans[0].scope_spans[0].spans[0].attributes;
    assert_eq!(
        text(attrs, "customer").unwrap(),
        "support@example.com",
        "allowed_values"
    );
    assert_eq!(
        text(attrs, "note").unwrap(),
        "order **** shipped",
        "blocked_values"
    );
    assert_eq!(
        text(attrs, "debug.raw").unwrap(),
        EMAIL,
        "ignored_keys pass untouched"
    );
    // Not in allowed_keys, so removed before any masking.
    assert!(get(attrs, "user.secret_answer").is_none());
    assert!(get(attrs, "unlisted").is_none());
    assert_eq!(
        text(attrs, "redaction.redacted.keys").as_deref(),
        Some("peer,ssn,unlisted,user.secret_answer"),
        "event and link attributes count towards their span"
    );
    assert_eq!(
        get(attrs, "redaction.ignored.count"),
        Some(&any_value::Value::IntValue(1))
    );
    // The resource lost service.name too: the allowlist covers every attribute list, as upstream.
    assert!(data.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .all(|kv| kv.key.starts_with("redaction.")));
    assert!(t
        .encode()
        .contains(r#"outpost_redactions_total{rule="allowed_keys",signal="traces"}"#));

    // blocked_key_patterns masks the whole value when the key is allowed.
    let cfg = RedactionProcessorConfig {
        blocked_key_patterns: vec!["(?i)secret".into()],
        summary: RedactionSummary::Silent,
        ..Default::default()
    };
    let (mut p, _) = processor(&cfg);
    let mut data = traces();
    data.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(kv("user.secret_answer", s("blue")));
    p.redact(&mut data);
    let attrs = &data.resource_spans[0].scope_spans[0].spans[0].attributes;
    assert_eq!(text(attrs, "user.secret_answer").unwrap(), "****");
    assert!(
        attrs.iter().all(|kv| !kv.key.starts_with("redaction.")),
        "silent"
    );
}

#[test]
fn hash_function_makes_values_joinable_across_processors() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "k3y-k3y-k3y-k3y-k3y\n").unwrap();
    let cfg = RedactionProcessorConfig {
        hash_function: outpost_config::HashFunction::HmacSha256,
        hash_key_file: Some(key),
        ..Default::default()
    };
    let (mut a, _) = processor(&cfg);
    let (mut b, _) = processor(&cfg);
    let (mut x, mut y) = (traces(), traces());
    a.redact(&mut x);
    b.redact(&mut y);
    let attrs = |t: &Traces| {
        t.resource_spans[0].scope_spans[0].spans[0]
            .attributes
            .clone()
    };
    let hashed = text(&attrs(&x), "customer").unwrap();
    assert_eq!(hashed, text(&attrs(&y), "customer").unwrap());
    assert!(
        !hashed.contains(EMAIL) && hashed.len() == "mail  now".len() + 64,
        "{hashed}"
    );
}

#[test]
fn values_too_large_or_too_deep_fail_closed() {
    let mut cfg = RedactionProcessorConfig {
        max_value_size: outpost_config::ByteSize(64),
        ..Default::default()
    };
    let big = format!("{} {EMAIL}", "x".repeat(100));
    let mut deep = s(EMAIL);
    for _ in 0..40 {
        deep = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![deep],
            })),
        };
    }
    let mk = || {
        let mut t = traces();
        let attrs = &mut t.resource_spans[0].scope_spans[0].spans[0].attributes;
        attrs.push(kv("big", s(&big)));
        attrs.push(kv("deep", deep.clone()));
        t
    };
    let (mut p, t) = processor(&cfg);
    let mut data = mk();
    p.redact(&mut data);
    let dump = encoded(&data);
    assert!(!dump.contains(EMAIL), "{dump}");
    let attrs = &data.resource_spans[0].scope_spans[0].spans[0].attributes;
    assert_eq!(text(attrs, "big").unwrap(), "****");
    let m = t.encode();
    assert!(
        m.contains(r#"outpost_redactions_total{rule="too_large",signal="traces"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"outpost_redactions_total{rule="too_deep",signal="traces"} 1"#),
        "{m}"
    );

    cfg.fail_closed = false;
    let (mut p, _) = processor(&cfg);
    let mut data = mk();
    p.redact(&mut data);
    let attrs = &data.resource_spans[0].scope_spans[0].spans[0].attributes;
    assert_eq!(
        text(attrs, "big").unwrap(),
        big,
        "fail open passes it, counted"
    );
}

/// A payload of each signal with values of every kind the walk visits: nested bodies, events, links,
/// statuses, exemplars, numbers, bytes, empty strings, ignored / blocked / not allowed keys, and
/// values that drop their attribute or record part-way through an item.
fn payloads() -> (Traces, Logs, Metrics) {
    let mut traces = traces();
    let spans = &mut traces.resource_spans[0].scope_spans[0].spans;
    let mut second = spans[0].clone();
    second.name = String::new();
    second.attributes.extend([
        kv("debug.raw", s(EMAIL)),
        kv("client_secret", s("hunter22")),
        kv("note", s(&format!("ORD-1234 and {SSN} then {CARD}"))),
        kv(
            "blob",
            AnyValue {
                value: Some(any_value::Value::BytesValue(EMAIL.as_bytes().to_vec())),
            },
        ),
        kv("customer", s("support@example.com")),
        kv("empty", s("")),
    ]);
    spans.push(second);
    spans.push(Span {
        name: "GET /health".into(),
        attributes: vec![kv("http.route", s("/health")), kv("n", s("42"))],
        ..Default::default()
    });
    let nested = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![
                kv("msg", s(&format!("refund to {CARD}"))),
                kv("secret.token", s("abc")),
                kv(
                    "list",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![s("ops"), s(EMAIL), s(""), s(SSN)],
                        })),
                    },
                ),
            ],
        })),
    };
    let logs = Logs {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("host.name", s("edge-01"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        body: Some(nested),
                        attributes: vec![kv("user.ssn", s("536228142"))],
                        event_name: format!("login {EMAIL}"),
                        ..Default::default()
                    },
                    LogRecord {
                        body: Some(s(&format!("plain {EMAIL} Bearer abcdefghijklmnop"))),
                        ..Default::default()
                    },
                    LogRecord {
                        body: Some(s("nothing here")),
                        attributes: vec![kv("note", s(SSN)), kv("customer", s(EMAIL))],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let point = |card: i64, who: &str| NumberDataPoint {
        attributes: vec![
            kv("user", s(who)),
            kv(
                "card",
                AnyValue {
                    value: Some(any_value::Value::IntValue(card)),
                },
            ),
        ],
        exemplars: vec![Exemplar {
            filtered_attributes: vec![kv("who", s(who))],
            ..Default::default()
        }],
        ..Default::default()
    };
    let metrics = Metrics {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "payments".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![
                            point(4111111111111111, EMAIL),
                            point(7, "ops"),
                            point(4111111111111111, SSN),
                        ],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (traces, logs, metrics)
}

/// The processor scans a payload's values as one batch; what it does must be exactly what scanning
/// each value on its own does, whatever the policy and actions, and the applying walk must find every
/// value it scans among those the collecting walk gathered (numbers aside, which it converts).
#[test]
fn batch_scans_do_exactly_what_value_by_value_scans_do() {
    let mut configs = vec![RedactionProcessorConfig::default()];
    configs.push(RedactionProcessorConfig {
        ignored_keys: vec!["debug.raw".into()],
        blocked_key_patterns: vec!["(?i)secret".into()],
        blocked_values: vec!["ORD-[0-9]+".into()],
        allowed_values: vec!["^support@example\\.com$".into()],
        summary: RedactionSummary::Debug,
        redact_all_types: true,
        ..Default::default()
    });
    configs.push(RedactionProcessorConfig {
        allowed_keys: vec!["http.route".into(), "customer".into(), "note".into()],
        max_value_size: outpost_config::ByteSize(12),
        ..Default::default()
    });
    for (action, rule) in [
        (RedactionAction::DropRecord, "us_ssn"),
        (RedactionAction::DropAttribute, "email"),
        (RedactionAction::DropRecord, "email"),
    ] {
        let mut cfg = RedactionProcessorConfig::default();
        cfg.rules.insert(
            rule.into(),
            RedactionRuleOverride {
                action: Some(action),
                ..Default::default()
            },
        );
        configs.push(cfg);
    }
    for (i, cfg) in configs.iter().enumerate() {
        let r = Redaction::new(cfg).unwrap();
        let t = Telemetry::new();
        let (mut batched, mut alone) = (r.processor::<Traces>(&t), r.processor::<Traces>(&t));
        let numbers = |d: &str| d.matches("IntValue").count();
        let (mut a, mut b) = (payloads(), payloads());
        let n = (
            batched.redact(&mut a.0),
            alone.redact_value_by_value(&mut b.0),
        );
        assert_eq!(n.0, n.1, "config {i}");
        assert_eq!(encoded(&a.0), encoded(&b.0), "config {i}");
        assert_eq!(batched.collected.alone, 0, "config {i}: traces");
        let n = (
            batched.redact(&mut a.1),
            alone.redact_value_by_value(&mut b.1),
        );
        assert_eq!(n.0, n.1, "config {i}");
        assert_eq!(encoded(&a.1), encoded(&b.1), "config {i}");
        assert_eq!(batched.collected.alone, 0, "config {i}: logs");
        let before = numbers(&encoded(&a.2));
        let n = (
            batched.redact(&mut a.2),
            alone.redact_value_by_value(&mut b.2),
        );
        assert_eq!(n.0, n.1, "config {i}");
        assert_eq!(encoded(&a.2), encoded(&b.2), "config {i}");
        let converted = if cfg.redact_all_types { before } else { 0 };
        assert!(
            batched.collected.alone <= converted,
            "config {i}: metrics scanned {} values alone",
            batched.collected.alone
        );
    }
}
