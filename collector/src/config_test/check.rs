//! Evaluating checks against what came out of a pipeline.
//!
//! Output is looked at item by item (a span, a metric data point, a log record), each with its path in
//! OTLP/JSON terms (`resourceSpans[0].scopeSpans[0].spans[2]`), so a failure names exactly which item
//! broke which condition and shows the expected and the actual value side by side.

use std::collections::HashSet;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data as MetricData, number_data_point};

use super::spec::{Check, Cond, Data};

/// One item of a payload, as checks see it.
pub(super) struct Item<'a> {
    pub path: String,
    pub kind: &'static str,
    pub name: Option<&'a str>,
    pub attributes: &'a [KeyValue],
    pub resource: &'a [KeyValue],
    pub body: Option<&'a AnyValue>,
    pub value: Option<f64>,
    /// Trace and span id, to tell whether an input span came out (`sampled`).
    pub span_key: Option<(&'a [u8], &'a [u8])>,
}

const NO_ATTRS: &[KeyValue] = &[];

pub(super) fn items(data: &Data) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    match data {
        Data::Traces(t) => {
            for (r, rs) in t.resource_spans.iter().enumerate() {
                let resource = rs.resource.as_ref().map_or(NO_ATTRS, |r| &r.attributes);
                for (s, ss) in rs.scope_spans.iter().enumerate() {
                    for (i, span) in ss.spans.iter().enumerate() {
                        out.push(Item {
                            path: format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"),
                            kind: "span",
                            name: Some(&span.name),
                            attributes: &span.attributes,
                            resource,
                            body: None,
                            value: None,
                            span_key: Some((&span.trace_id, &span.span_id)),
                        });
                    }
                }
            }
        }
        Data::Logs(l) => {
            for (r, rl) in l.resource_logs.iter().enumerate() {
                let resource = rl.resource.as_ref().map_or(NO_ATTRS, |r| &r.attributes);
                for (s, sl) in rl.scope_logs.iter().enumerate() {
                    for (i, rec) in sl.log_records.iter().enumerate() {
                        out.push(Item {
                            path: format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]"),
                            kind: "log record",
                            name: None,
                            attributes: &rec.attributes,
                            resource,
                            body: rec.body.as_ref(),
                            value: None,
                            span_key: None,
                        });
                    }
                }
            }
        }
        Data::Metrics(m) => {
            for (r, rm) in m.resource_metrics.iter().enumerate() {
                let resource = rm.resource.as_ref().map_or(NO_ATTRS, |r| &r.attributes);
                for (s, sm) in rm.scope_metrics.iter().enumerate() {
                    for (i, metric) in sm.metrics.iter().enumerate() {
                        let base = format!("resourceMetrics[{r}].scopeMetrics[{s}].metrics[{i}]");
                        let mut point = |kind: &str, p: usize, attrs, value| {
                            out.push(Item {
                                path: format!("{base}.{kind}.dataPoints[{p}]"),
                                kind: "data point",
                                name: Some(&metric.name),
                                attributes: attrs,
                                resource,
                                body: None,
                                value,
                                span_key: None,
                            })
                        };
                        let number = |v: &Option<number_data_point::Value>| match v {
                            Some(number_data_point::Value::AsDouble(d)) => Some(*d),
                            Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
                            None => None,
                        };
                        match &metric.data {
                            Some(MetricData::Gauge(g)) => {
                                for (p, dp) in g.data_points.iter().enumerate() {
                                    point("gauge", p, &dp.attributes, number(&dp.value));
                                }
                            }
                            Some(MetricData::Sum(g)) => {
                                for (p, dp) in g.data_points.iter().enumerate() {
                                    point("sum", p, &dp.attributes, number(&dp.value));
                                }
                            }
                            // A distribution's value, for checks, is its count of observations.
                            Some(MetricData::Histogram(h)) => {
                                for (p, dp) in h.data_points.iter().enumerate() {
                                    point("histogram", p, &dp.attributes, Some(dp.count as f64));
                                }
                            }
                            Some(MetricData::ExponentialHistogram(h)) => {
                                for (p, dp) in h.data_points.iter().enumerate() {
                                    point(
                                        "exponentialHistogram",
                                        p,
                                        &dp.attributes,
                                        Some(dp.count as f64),
                                    );
                                }
                            }
                            Some(MetricData::Summary(h)) => {
                                for (p, dp) in h.data_points.iter().enumerate() {
                                    point("summary", p, &dp.attributes, Some(dp.count as f64));
                                }
                            }
                            None => {}
                        }
                    }
                }
            }
        }
    }
    out
}

/// An attribute value as the text conditions compare with: strings as written, numbers and bools in
/// their usual spelling, bytes as hex, arrays and maps as JSON.
pub(super) fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(_) => serde_json::to_string(v).unwrap_or_default(),
        None => String::new(),
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_ref().unwrap_or(&EMPTY))
}

static EMPTY: AnyValue = AnyValue { value: None };

/// One failed condition, ready to print.
pub(super) struct Failure {
    /// Which check, on which output.
    pub check: String,
    /// The item it concerns, if one.
    pub item: Option<String>,
    pub what: String,
    pub expected: String,
    pub actual: String,
}

fn selected<'a>(check: &Check, items: &'a [Item<'a>]) -> Vec<&'a Item<'a>> {
    items
        .iter()
        .filter(|it| check.name.as_deref().is_none_or(|n| it.name == Some(n)))
        .filter(|it| {
            check
                .where_
                .iter()
                .all(|(k, v)| attr(it.attributes, k).is_some_and(|a| text(a) == *v))
        })
        .collect()
}

fn show(v: Option<&AnyValue>) -> String {
    match v {
        None => "(absent)".into(),
        Some(a) => match &a.value {
            Some(any_value::Value::StringValue(s)) => format!("{s:?}"),
            _ => text(a),
        },
    }
}

fn cond_holds(c: &Cond, v: Option<&AnyValue>) -> bool {
    match (c, v) {
        (Cond::Absent, v) => v.is_none(),
        (Cond::Present, v) => v.is_some(),
        (_, None) => false,
        (Cond::Equals(e), Some(v)) => text(v) == *e,
        (Cond::Matches(r), Some(v)) => r.is_match(&text(v)),
    }
}

/// Evaluates `check` on the `output` of `pipeline`; `input` is what entered it (for `sampled`).
pub(super) fn evaluate(
    pipeline: &str,
    check: &Check,
    output: &[Item<'_>],
    input: &[Item<'_>],
    failures: &mut Vec<Failure>,
) {
    let heading = format!("output of {pipeline}, {}", check.label);
    let chosen = selected(check, output);
    let fail = |failures: &mut Vec<Failure>,
                item: Option<&Item>,
                what: String,
                exp: String,
                act: String| {
        failures.push(Failure {
            check: heading.clone(),
            item: item.map(|i| format!("{} at {}", i.kind, i.path)),
            what,
            expected: exp,
            actual: act,
        })
    };

    if let Some(sampled) = check.sampled {
        // The spans that entered this pipeline and that the check selects: each must (or must not)
        // have come out.
        let fed = selected(check, input);
        if fed.is_empty() {
            fail(
                failures,
                None,
                "sampled".into(),
                "at least one span selected by the check entering this pipeline".into(),
                format!("none among the {} spans that entered it", input.len()),
            );
        }
        let out_keys: HashSet<_> = output.iter().filter_map(|i| i.span_key).collect();
        for f in &fed {
            let kept = f.span_key.is_some_and(|k| out_keys.contains(&k));
            if kept != sampled {
                failures.push(Failure {
                    check: heading.clone(),
                    item: Some(format!("{} as it entered, at {}", f.kind, f.path)),
                    what: "sampled".into(),
                    expected: sampled.to_string(),
                    actual: if kept {
                        "true (the span came out)".into()
                    } else {
                        "false (the span was dropped)".into()
                    },
                });
            }
        }
    }

    let wants_present = check.present.unwrap_or(check.count != Some(0));
    if let Some(n) = check.count {
        if chosen.len() != n {
            fail(
                failures,
                None,
                "count".into(),
                n.to_string(),
                chosen.len().to_string(),
            );
        }
    } else if wants_present && chosen.is_empty() && check.sampled.is_none() {
        fail(
            failures,
            None,
            "present".into(),
            "at least one matching item".into(),
            format!("none among {} items", output.len()),
        );
    } else if !wants_present && !chosen.is_empty() {
        for it in &chosen {
            fail(
                failures,
                Some(it),
                "present".into(),
                "no matching item".into(),
                "this item".into(),
            );
        }
    }

    for it in &chosen {
        for (key, c) in &check.attributes {
            let v = attr(it.attributes, key);
            if !cond_holds(c, v) {
                fail(
                    failures,
                    Some(it),
                    format!("attribute {key:?}"),
                    c.to_string(),
                    show(v),
                );
            }
        }
        for (key, c) in &check.resource {
            let v = attr(it.resource, key);
            if !cond_holds(c, v) {
                fail(
                    failures,
                    Some(it),
                    format!("resource attribute {key:?}"),
                    c.to_string(),
                    show(v),
                );
            }
        }
        if let Some(c) = &check.body {
            if !cond_holds(c, it.body) {
                fail(
                    failures,
                    Some(it),
                    "body".into(),
                    c.to_string(),
                    show(it.body),
                );
            }
        }
        if let Some(want) = check.value {
            let ok = it
                .value
                .is_some_and(|v| (v - want).abs() <= 1e-9 * want.abs().max(1.0));
            if !ok {
                fail(
                    failures,
                    Some(it),
                    "value".into(),
                    want.to_string(),
                    it.value.map_or("(none)".into(), |v| v.to_string()),
                );
            }
        }
    }
}
