//! Connector `count`: counts spans, metric data points or log records that match conditions, grouped by
//! attributes, as monotonic cumulative sums (one metric per configured name). Without definitions for
//! its input signal it counts everything under the OpenTelemetry Collector's default names
//! (`trace.span.count`, `metric.datapoint.count`, `log.record.count`).
//!
//! Conditions are parsed at load time ([`outpost_config::condition`]); an item is counted when any of
//! its metric's conditions holds (none: every item). Grouping attributes are read from the item, then
//! its resource, else their `default`; an item missing one without a default is counted without it.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use outpost_config::condition::{Condition, Field, Value};
use outpost_config::{CountConfig, CountMetric, Signal};

use super::{find_attr, key_of, unix_nanos_now, Summarizer};
use crate::signal::{metric_points, Logs, Metrics, Traces};

struct Counter {
    name: String,
    description: String,
    conditions: Vec<Condition>,
    attributes: Vec<(String, Option<String>)>,
    /// Grouping key → (attributes, count).
    counts: HashMap<Vec<u8>, (Vec<KeyValue>, u64)>,
}

pub struct Count {
    counters: Vec<Counter>,
    start: u64,
}

fn to_value(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
        Some(any_value::Value::IntValue(i)) => Value::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::Float(*d),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        _ => Value::Nil,
    }
}

/// What a condition may read of one item.
struct Item<'a> {
    attrs: &'a [KeyValue],
    resource: &'a [KeyValue],
    name: Option<&'a str>,
    kind: Option<i32>,
    status: Option<i32>,
    severity_number: Option<i32>,
    severity_text: Option<&'a str>,
    body: Option<&'a AnyValue>,
}

impl Item<'_> {
    fn get(&self, f: &Field) -> Value {
        match f {
            Field::Attribute(k) => to_value(find_attr(self.attrs, k)),
            Field::ResourceAttribute(k) => to_value(find_attr(self.resource, k)),
            Field::Name | Field::MetricName => {
                self.name.map_or(Value::Nil, |n| Value::Str(n.into()))
            }
            Field::Kind => self.kind.map_or(Value::Nil, |k| Value::Int(k.into())),
            Field::StatusCode => self.status.map_or(Value::Nil, |k| Value::Int(k.into())),
            Field::SeverityNumber => self
                .severity_number
                .map_or(Value::Nil, |k| Value::Int(k.into())),
            Field::SeverityText => self
                .severity_text
                .map_or(Value::Nil, |t| Value::Str(t.into())),
            Field::Body => to_value(self.body),
        }
    }
}

impl Counter {
    fn new(name: &str, m: &CountMetric) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            description: m.description.clone().unwrap_or_default(),
            conditions: m
                .conditions
                .iter()
                .map(|c| Condition::parse(c).map_err(|e| format!("{name}: condition '{c}': {e}")))
                .collect::<Result<_, _>>()?,
            attributes: m
                .attributes
                .iter()
                .map(|d| (d.name.clone(), d.default.clone()))
                .collect(),
            counts: HashMap::new(),
        })
    }

    fn add(&mut self, item: &Item<'_>) {
        if !self.conditions.is_empty()
            && !self.conditions.iter().any(|c| c.matches(&|f| item.get(f)))
        {
            return;
        }
        let mut attrs = Vec::with_capacity(self.attributes.len());
        for (k, default) in &self.attributes {
            let v = find_attr(item.attrs, k)
                .or_else(|| find_attr(item.resource, k))
                .cloned()
                .or_else(|| {
                    default.as_ref().map(|d| AnyValue {
                        value: Some(any_value::Value::StringValue(d.clone())),
                    })
                });
            if let Some(v) = v {
                attrs.push(KeyValue {
                    key: k.clone(),
                    value: Some(v),
                    ..Default::default()
                });
            }
        }
        let key = key_of(&attrs);
        self.counts.entry(key).or_insert_with(|| (attrs, 0)).1 += 1;
    }
}

impl Count {
    /// The counters of `cfg` for input signal `signal`.
    pub fn new(cfg: &CountConfig, signal: Signal) -> Result<Self, String> {
        let (defs, default_name, default_desc) = match signal {
            Signal::Traces => (
                &cfg.spans,
                "trace.span.count",
                "The number of spans observed.",
            ),
            Signal::Metrics => (
                &cfg.datapoints,
                "metric.datapoint.count",
                "The number of data points observed.",
            ),
            Signal::Logs => (
                &cfg.logs,
                "log.record.count",
                "The number of log records observed.",
            ),
        };
        let counters = if defs.is_empty() {
            vec![Counter::new(
                default_name,
                &CountMetric {
                    description: Some(default_desc.into()),
                    ..Default::default()
                },
            )?]
        } else {
            defs.iter()
                .map(|(n, m)| Counter::new(n, m))
                .collect::<Result<_, _>>()?
        };
        Ok(Self {
            counters,
            start: unix_nanos_now(),
        })
    }

    fn add(&mut self, item: Item<'_>) {
        for c in &mut self.counters {
            c.add(&item);
        }
    }

    fn emit(&mut self, now: u64) -> Metrics {
        let metrics: Vec<Metric> = self
            .counters
            .iter()
            .filter(|c| !c.counts.is_empty())
            .map(|c| {
                let mut points: Vec<NumberDataPoint> = c
                    .counts
                    .values()
                    .map(|(attrs, n)| NumberDataPoint {
                        attributes: attrs.clone(),
                        start_time_unix_nano: self.start,
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsInt(*n as i64)),
                        ..Default::default()
                    })
                    .collect();
                points.sort_by_key(|p| key_of(&p.attributes));
                Metric {
                    name: c.name.clone(),
                    description: c.description.clone(),
                    unit: "1".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }
            })
            .collect();
        if metrics.is_empty() {
            return Metrics::default();
        }
        Metrics {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(
                        opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                            name: "outpost/connector/count".into(),
                            ..Default::default()
                        },
                    ),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

impl Summarizer<Traces> for Count {
    fn consume(&mut self, data: &Traces) {
        for rs in &data.resource_spans {
            let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                self.add(Item {
                    attrs: &s.attributes,
                    resource,
                    name: Some(&s.name),
                    kind: Some(s.kind),
                    status: Some(s.status.as_ref().map_or(0, |st| st.code)),
                    severity_number: None,
                    severity_text: None,
                    body: None,
                });
            }
        }
    }
    fn flush(&mut self, now: u64) -> Metrics {
        self.emit(now)
    }
}

impl Summarizer<Logs> for Count {
    fn consume(&mut self, data: &Logs) {
        for rl in &data.resource_logs {
            let resource: &[KeyValue] = rl.resource.as_ref().map_or(&[], |r| &r.attributes);
            for l in rl.scope_logs.iter().flat_map(|sl| &sl.log_records) {
                self.add(Item {
                    attrs: &l.attributes,
                    resource,
                    name: None,
                    kind: None,
                    status: None,
                    severity_number: Some(l.severity_number),
                    severity_text: Some(&l.severity_text),
                    body: l.body.as_ref(),
                });
            }
        }
    }
    fn flush(&mut self, now: u64) -> Metrics {
        self.emit(now)
    }
}

impl Summarizer<Metrics> for Count {
    fn consume(&mut self, data: &Metrics) {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data as D;
        for rm in &data.resource_metrics {
            let resource: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
            for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                let attrs_of: Vec<&[KeyValue]> = match &m.data {
                    Some(D::Gauge(g)) => g
                        .data_points
                        .iter()
                        .map(|p| p.attributes.as_slice())
                        .collect(),
                    Some(D::Sum(s)) => s
                        .data_points
                        .iter()
                        .map(|p| p.attributes.as_slice())
                        .collect(),
                    Some(D::Histogram(h)) => h
                        .data_points
                        .iter()
                        .map(|p| p.attributes.as_slice())
                        .collect(),
                    Some(D::ExponentialHistogram(h)) => h
                        .data_points
                        .iter()
                        .map(|p| p.attributes.as_slice())
                        .collect(),
                    Some(D::Summary(s)) => s
                        .data_points
                        .iter()
                        .map(|p| p.attributes.as_slice())
                        .collect(),
                    None => Vec::new(),
                };
                debug_assert_eq!(attrs_of.len(), metric_points(m));
                for attrs in attrs_of {
                    self.add(Item {
                        attrs,
                        resource,
                        name: Some(&m.name),
                        kind: None,
                        status: None,
                        severity_number: None,
                        severity_text: None,
                        body: None,
                    });
                }
            }
        }
    }
    fn flush(&mut self, now: u64) -> Metrics {
        self.emit(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::tail_sampling::gen::TraceGen;
    use crate::signal::SignalData;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn points(m: &Metrics, name: &str) -> Vec<(Vec<KeyValue>, i64)> {
        m.resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .filter(|x| x.name == name)
            .flat_map(|x| match &x.data {
                Some(Data::Sum(s)) => s.data_points.clone(),
                _ => Vec::new(),
            })
            .map(|p| match p.value {
                Some(number_data_point::Value::AsInt(v)) => (p.attributes, v),
                _ => panic!(),
            })
            .collect()
    }

    #[test]
    fn counts_spans_by_condition_and_attribute() {
        let cfg: CountConfig = serde_json::from_value(serde_json::json!({
            "spans": {
                "errors": {"conditions": ["status.code == STATUS_CODE_ERROR"],
                           "attributes": [{"name": "service.name"}]},
                "db": {"conditions": ["attributes[\"db.system\"] == \"postgresql\""]}
            }
        }))
        .unwrap();
        let mut c = Count::new(&cfg, Signal::Traces).unwrap();
        let mut g = TraceGen::new(2);
        let (mut errors, mut db, mut total) = (0i64, 0i64, 0usize);
        for _ in 0..100 {
            let k = g.kind(30, 0, 0);
            let t = g.trace(k);
            errors += t
                .spans
                .iter()
                .filter(|s| s.status.as_ref().unwrap().code == 2)
                .count() as i64;
            db += t
                .spans
                .iter()
                .filter(|s| s.attributes.iter().any(|kv| kv.key == "db.system"))
                .count() as i64;
            let req = g.request(t.spans);
            total += req.item_count();
            Summarizer::<Traces>::consume(&mut c, &req);
        }
        let m = Summarizer::<Traces>::flush(&mut c, 1);
        let e = points(&m, "errors");
        assert_eq!(e.iter().map(|(_, v)| v).sum::<i64>(), errors);
        assert!(e
            .iter()
            .all(|(a, _)| a.len() == 1 && a[0].key == "service.name"));
        assert_eq!(points(&m, "db").iter().map(|(_, v)| v).sum::<i64>(), db);
        assert!(errors > 0 && db > 0 && (db as usize) < total);
    }

    #[test]
    fn default_log_counter_counts_everything() {
        let mut c = Count::new(&CountConfig::default(), Signal::Logs).unwrap();
        let logs = Logs {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 7],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Summarizer::<Logs>::consume(&mut c, &logs);
        Summarizer::<Logs>::consume(&mut c, &logs);
        let m = Summarizer::<Logs>::flush(&mut c, 1);
        assert_eq!(points(&m, "log.record.count"), vec![(vec![], 14)]);
    }
}
