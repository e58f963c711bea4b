//! Connector `spanmetrics`: RED metrics from spans, with the OpenTelemetry Collector's names and
//! dimensions.
//!
//! Per series — service.name, span.name, span.kind, status.code and the configured dimensions — it
//! counts calls (`<namespace>.calls`, a monotonic sum) and records durations (`<namespace>.duration`, an
//! explicit-bucket or base-2 exponential histogram in `ms` or `s`). With `summary:` it also reports exact
//! quantiles (`<namespace>.duration.summary`) from an HDR histogram (3 significant digits over 1 µs to
//! 1 hour). Exemplars (trace and span id of recent spans) are attached when enabled. Every count is exact:
//! each span is counted once in exactly one series; spans of a series beyond
//! `aggregation_cardinality_limit` go to one overflow series (`otel.metric.overflow=true`) per service.
//!
//! Cumulative temporality keeps every series from its first span on (start time = first seen); delta
//! forgets them at each flush (start time = previous flush).

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram as Hdr;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, AggregationTemporality, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use outpost_config::{SpanMetricsConfig, Temporality};

use super::{find_attr, key_of, str_kv, unix_nanos_now, Summarizer};
use crate::signal::{Metrics, Traces};

/// Upstream's default bounds, in milliseconds.
const DEFAULT_BUCKETS_MS: [f64; 16] = [
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10000.0, 15000.0,
];
const DEFAULT_EXEMPLARS: usize = 5;

enum Buckets_ {
    Explicit { bounds: Vec<f64>, counts: Vec<u64> },
    Exponential(Expo),
}

/// A base-2 exponential histogram of positive values that lowers its scale to stay within `max_size`
/// buckets.
#[derive(Clone)]
struct Expo {
    max_size: usize,
    scale: i32,
    zero: u64,
    buckets: BTreeMap<i32, u64>,
}

impl Expo {
    fn new(max_size: u32) -> Self {
        Self {
            max_size: max_size as usize,
            scale: 20,
            zero: 0,
            buckets: BTreeMap::new(),
        }
    }
    fn index(v: f64, scale: i32) -> i32 {
        // Bucket i holds (base^i, base^(i+1)] with base = 2^(2^-scale).
        let i = (v.log2() * 2f64.powi(scale)).ceil() as i64 - 1;
        i.clamp(i32::MIN as i64, i32::MAX as i64) as i32
    }
    fn record(&mut self, v: f64) {
        if v <= 0.0 || !v.is_finite() {
            self.zero += 1;
            return;
        }
        let mut i = Self::index(v, self.scale);
        *self.buckets.entry(i).or_default() += 1;
        while let (Some((&lo, _)), Some((&hi, _))) = (
            self.buckets.first_key_value(),
            self.buckets.last_key_value(),
        ) {
            if ((hi as i64) - (lo as i64) + 1) as usize <= self.max_size || self.scale <= -10 {
                break;
            }
            let old = std::mem::take(&mut self.buckets);
            for (k, c) in old {
                *self.buckets.entry(k >> 1).or_default() += c;
            }
            self.scale -= 1;
            i >>= 1;
        }
        let _ = i;
    }
    fn point(&self) -> (i32, u64, Buckets) {
        let (offset, counts) = match (
            self.buckets.first_key_value(),
            self.buckets.last_key_value(),
        ) {
            (Some((&lo, _)), Some((&hi, _))) => (
                lo,
                (lo..=hi)
                    .map(|k| self.buckets.get(&k).copied().unwrap_or(0))
                    .collect(),
            ),
            _ => (0, Vec::new()),
        };
        (
            self.scale,
            self.zero,
            Buckets {
                offset,
                bucket_counts: counts,
            },
        )
    }
}

struct Series {
    resource_key: String,
    attrs: Vec<KeyValue>,
    start: u64,
    calls: u64,
    sum: f64,
    min: f64,
    max: f64,
    buckets: Option<Buckets_>,
    hdr: Option<Hdr<u64>>,
    exemplars: Vec<Exemplar>,
}

pub struct SpanMetrics {
    namespace: String,
    unit_ms: bool,
    dims: Vec<(String, Option<String>)>,
    explicit: Option<Vec<f64>>,
    expo_max: Option<u32>,
    histogram: bool,
    exemplars: Option<usize>,
    limit: usize,
    delta: bool,
    quantiles: Option<Vec<f64>>,
    series: HashMap<Vec<u8>, Series>,
    /// Series per service, for the cardinality limit.
    per_service: HashMap<String, usize>,
    overflow: u64,
    last_flush: u64,
}

impl SpanMetrics {
    pub fn new(cfg: &SpanMetricsConfig) -> Self {
        let unit_ms = cfg.histogram.unit != "s";
        let scale = if unit_ms { 1.0 } else { 0.001 };
        let explicit = if cfg.histogram.exponential.is_some() {
            None
        } else {
            Some(match &cfg.histogram.explicit {
                Some(e) if !e.buckets.is_empty() => e
                    .buckets
                    .iter()
                    .map(|d| d.get().as_secs_f64() * if unit_ms { 1000.0 } else { 1.0 })
                    .collect(),
                _ => DEFAULT_BUCKETS_MS.iter().map(|b| b * scale).collect(),
            })
        };
        Self {
            namespace: cfg.namespace.clone(),
            unit_ms,
            dims: cfg
                .dimensions
                .iter()
                .map(|d| (d.name.clone(), d.default.clone()))
                .collect(),
            explicit,
            expo_max: cfg.histogram.exponential.as_ref().map(|e| e.max_size),
            histogram: !cfg.histogram.disable,
            exemplars: cfg.exemplars.enabled.then(|| {
                cfg.exemplars
                    .max_per_data_point
                    .unwrap_or(DEFAULT_EXEMPLARS)
            }),
            limit: cfg.aggregation_cardinality_limit,
            delta: cfg.aggregation_temporality == Temporality::Delta,
            quantiles: cfg.summary.as_ref().map(|s| s.quantiles.clone()),
            series: HashMap::new(),
            per_service: HashMap::new(),
            overflow: 0,
            last_flush: unix_nanos_now(),
        }
    }

    fn new_series(&self, service: &str, attrs: Vec<KeyValue>, start: u64) -> Series {
        Series {
            resource_key: service.to_owned(),
            attrs,
            start,
            calls: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            buckets: if !self.histogram {
                None
            } else if let Some(b) = &self.explicit {
                Some(Buckets_::Explicit {
                    bounds: b.clone(),
                    counts: vec![0; b.len() + 1],
                })
            } else {
                self.expo_max.map(|m| Buckets_::Exponential(Expo::new(m)))
            },
            hdr: self
                .quantiles
                .as_ref()
                .and_then(|_| Hdr::new_with_bounds(1, 3_600_000_000, 3).ok()),
            exemplars: Vec::new(),
        }
    }
}

fn kind_name(k: i32) -> &'static str {
    match SpanKind::try_from(k).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
        SpanKind::Internal => "SPAN_KIND_INTERNAL",
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        SpanKind::Producer => "SPAN_KIND_PRODUCER",
        SpanKind::Consumer => "SPAN_KIND_CONSUMER",
    }
}

fn status_name(c: i32) -> &'static str {
    match StatusCode::try_from(c).unwrap_or(StatusCode::Unset) {
        StatusCode::Unset => "STATUS_CODE_UNSET",
        StatusCode::Ok => "STATUS_CODE_OK",
        StatusCode::Error => "STATUS_CODE_ERROR",
    }
}

impl Summarizer<Traces> for SpanMetrics {
    fn consume(&mut self, data: &Traces) {
        let now = unix_nanos_now();
        for rs in &data.resource_spans {
            let rattrs: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            let service = match find_attr(rattrs, "service.name").and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                _ => "unknown_service".into(),
            };
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let mut attrs = vec![
                        str_kv("service.name", &service),
                        str_kv("span.name", &span.name),
                        str_kv("span.kind", kind_name(span.kind)),
                        str_kv(
                            "status.code",
                            status_name(span.status.as_ref().map_or(0, |s| s.code)),
                        ),
                    ];
                    for (name, default) in &self.dims {
                        let v = find_attr(&span.attributes, name)
                            .or_else(|| find_attr(rattrs, name))
                            .cloned()
                            .or_else(|| {
                                default.as_ref().map(|d| AnyValue {
                                    value: Some(any_value::Value::StringValue(d.clone())),
                                })
                            });
                        if let Some(v) = v {
                            attrs.push(KeyValue {
                                key: name.clone(),
                                value: Some(v),
                                ..Default::default()
                            });
                        }
                    }
                    let mut key = key_of(&attrs);
                    if !self.series.contains_key(&key) {
                        let n = self.per_service.get(&service).copied().unwrap_or(0);
                        if self.limit > 0 && n >= self.limit {
                            attrs = vec![
                                str_kv("service.name", &service),
                                KeyValue {
                                    key: "otel.metric.overflow".into(),
                                    value: Some(AnyValue {
                                        value: Some(any_value::Value::BoolValue(true)),
                                    }),
                                    ..Default::default()
                                },
                            ];
                            key = key_of(&attrs);
                            self.overflow += 1;
                        }
                        if !self.series.contains_key(&key) {
                            let start = if self.delta { self.last_flush } else { now };
                            let s = self.new_series(&service, attrs, start);
                            self.series.insert(key.clone(), s);
                            *self.per_service.entry(service.clone()).or_default() += 1;
                        }
                    }
                    let s = self.series.get_mut(&key).expect("inserted above");
                    let dur_ns = span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano);
                    let v = if self.unit_ms {
                        dur_ns as f64 / 1e6
                    } else {
                        dur_ns as f64 / 1e9
                    };
                    s.calls += 1;
                    s.sum += v;
                    s.min = s.min.min(v);
                    s.max = s.max.max(v);
                    match &mut s.buckets {
                        Some(Buckets_::Explicit { bounds, counts }) => {
                            let i = bounds.partition_point(|b| *b < v);
                            counts[i] += 1;
                        }
                        Some(Buckets_::Exponential(e)) => e.record(v),
                        None => {}
                    }
                    if let Some(h) = &mut s.hdr {
                        h.saturating_record((dur_ns / 1000).max(1));
                    }
                    if let Some(max) = self.exemplars {
                        if s.exemplars.len() >= max {
                            s.exemplars.remove(0);
                        }
                        s.exemplars.push(Exemplar {
                            time_unix_nano: span.end_time_unix_nano,
                            trace_id: span.trace_id.clone(),
                            span_id: span.span_id.clone(),
                            value: Some(exemplar::Value::AsDouble(v)),
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }

    fn flush(&mut self, now: u64) -> Metrics {
        let temporality = if self.delta {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let unit = if self.unit_ms { "ms" } else { "s" };
        let mut by_service: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
        for s in self.series.values() {
            by_service.entry(&s.resource_key).or_default().push(s);
        }
        let mut out = Metrics::default();
        for (service, mut series) in by_service {
            series.sort_by_key(|a| key_of(&a.attrs));
            let calls = series
                .iter()
                .map(|s| NumberDataPoint {
                    attributes: s.attrs.clone(),
                    start_time_unix_nano: s.start,
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsInt(s.calls as i64)),
                    ..Default::default()
                })
                .collect();
            let mut metrics = vec![Metric {
                name: format!("{}.calls", self.namespace),
                unit: "{call}".into(),
                description: "Spans counted by service, name, kind and status".into(),
                data: Some(Data::Sum(Sum {
                    data_points: calls,
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                })),
                ..Default::default()
            }];
            let explicit: Vec<HistogramDataPoint> = series
                .iter()
                .filter_map(|s| match &s.buckets {
                    Some(Buckets_::Explicit { bounds, counts }) => Some(HistogramDataPoint {
                        attributes: s.attrs.clone(),
                        start_time_unix_nano: s.start,
                        time_unix_nano: now,
                        count: s.calls,
                        sum: Some(s.sum),
                        bucket_counts: counts.clone(),
                        explicit_bounds: bounds.clone(),
                        exemplars: s.exemplars.clone(),
                        min: s.min.is_finite().then_some(s.min),
                        max: s.max.is_finite().then_some(s.max),
                        ..Default::default()
                    }),
                    _ => None,
                })
                .collect();
            let expo: Vec<ExponentialHistogramDataPoint> = series
                .iter()
                .filter_map(|s| match &s.buckets {
                    Some(Buckets_::Exponential(e)) => {
                        let (scale, zero_count, positive) = e.point();
                        Some(ExponentialHistogramDataPoint {
                            attributes: s.attrs.clone(),
                            start_time_unix_nano: s.start,
                            time_unix_nano: now,
                            count: s.calls,
                            sum: Some(s.sum),
                            scale,
                            zero_count,
                            positive: Some(positive),
                            exemplars: s.exemplars.clone(),
                            min: s.min.is_finite().then_some(s.min),
                            max: s.max.is_finite().then_some(s.max),
                            ..Default::default()
                        })
                    }
                    _ => None,
                })
                .collect();
            let dname = format!("{}.duration", self.namespace);
            if !explicit.is_empty() {
                metrics.push(Metric {
                    name: dname.clone(),
                    unit: unit.into(),
                    description: "Span durations".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: explicit,
                        aggregation_temporality: temporality,
                    })),
                    ..Default::default()
                });
            }
            if !expo.is_empty() {
                metrics.push(Metric {
                    name: dname.clone(),
                    unit: unit.into(),
                    description: "Span durations".into(),
                    data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: expo,
                        aggregation_temporality: temporality,
                    })),
                    ..Default::default()
                });
            }
            if let Some(qs) = &self.quantiles {
                let div = if self.unit_ms { 1e3 } else { 1e6 };
                let points = series
                    .iter()
                    .filter_map(|s| {
                        let h = s.hdr.as_ref()?;
                        Some(SummaryDataPoint {
                            attributes: s.attrs.clone(),
                            start_time_unix_nano: s.start,
                            time_unix_nano: now,
                            count: s.calls,
                            sum: s.sum,
                            quantile_values: qs
                                .iter()
                                .map(|q| ValueAtQuantile {
                                    quantile: *q,
                                    value: h.value_at_quantile(*q) as f64 / div,
                                })
                                .collect(),
                            ..Default::default()
                        })
                    })
                    .collect();
                metrics.push(Metric {
                    name: format!("{dname}.summary"),
                    unit: unit.into(),
                    description: "Span duration quantiles".into(),
                    data: Some(Data::Summary(Summary {
                        data_points: points,
                    })),
                    ..Default::default()
                });
            }
            out.resource_metrics.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![str_kv("service.name", service)],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(
                        opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                            name: "outpost/connector/spanmetrics".into(),
                            ..Default::default()
                        },
                    ),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        if self.delta {
            self.series.clear();
            self.per_service.clear();
        } else {
            for s in self.series.values_mut() {
                s.exemplars.clear();
            }
        }
        self.last_flush = now;
        out
    }

    fn take_overflow(&mut self) -> u64 {
        std::mem::take(&mut self.overflow)
    }
}

#[cfg(test)]
mod tests;
