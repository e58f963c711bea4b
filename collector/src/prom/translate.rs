//! OTLP metrics → Prometheus remote-write series, per the OpenTelemetry specification's "Prometheus and
//! OpenMetrics compatibility" rules (the OpenTelemetry Collector's `prometheusremotewrite` exporter
//! behaves the same way).
//!
//! What becomes of each OTLP point:
//! - Gauge → one gauge series. Sum, cumulative and monotonic → a counter named `…_total`; cumulative and
//!   not monotonic → a gauge.
//! - Histogram (cumulative) → `…_bucket{le="…"}` with cumulative counts ending at `le="+Inf"`, `…_sum`
//!   (when the point has a sum) and `…_count`.
//! - Summary → `…{quantile="…"}` per quantile, `…_sum` and `…_count`.
//! - Exponential histogram (cumulative) → a Prometheus native histogram (remote-write's `Histogram`
//!   message; Prometheus stores it with `--enable-feature=native-histograms`, and refuses the request
//!   otherwise). Scales above 8 are downscaled to 8 by merging buckets; scales below -4 cannot be
//!   represented and the point is dropped. A point without a sum gets an ordinary NaN sum.
//! - Delta (and unspecified) temporality is dropped: Prometheus has no delta type, and turning deltas into
//!   cumulative values would need state across payloads and restarts. Every dropped point is counted with
//!   its reason ([`Translation::dropped`]).
//! - A point flagged `NoRecordedValue` becomes a staleness marker (Prometheus's stale NaN) on each of its
//!   series.
//!
//! Names: invalid characters become `_`, runs of `_` collapse, the unit is appended in Prometheus's words
//! (`ms` → `_milliseconds`, `By` → `_bytes`, `By/s` → `_bytes_per_second`, `{packets}` → nothing, `1` →
//! `_ratio` on gauges) unless the name already holds it, then `_total` on counters; `add_metric_suffixes:
//! false` keeps only the sanitised name. Label names are sanitised the same way (a leading digit or `_`
//! gets a `key` prefix); attributes that collide after sanitising are joined with `;` in the order of
//! their original keys.
//!
//! Labels of a series, lowest precedence first: the resource's attributes (only with
//! `resource_to_telemetry_conversion`), the point's attributes, `job` (`service.namespace/service.name`)
//! and `instance` (`service.instance.id`) from the resource, then `external_labels` where no label of that
//! name exists yet. Empty values are left out (Prometheus treats them as absent). Per resource, a
//! `target_info` gauge (value 1) carries the other resource attributes with `job` and `instance`, so they
//! can be joined in queries; it is sent only when the resource has such attributes and a `job` or
//! `instance` to join on. Scope name and version are not turned into labels.
//!
//! Exemplars of histograms and counters are kept (`trace_id`, `span_id`, then filtered attributes while
//! the exemplar's labels stay within OpenMetrics's 128 characters); a histogram's exemplar goes to the
//! bucket its value falls in.
//!
//! The output is grouped: all series that come from one metric and one label set (a histogram's buckets,
//! sum and count at every timestamp of the payload) form a [`Group`], so [`super::pack`] can split a payload into
//! requests without splitting a data point across requests when it can avoid it, and can say how many
//! OTLP points each request carries. Samples of one series are sorted by time, as Prometheus requires.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    AggregationTemporality, Exemplar as OtlpExemplar, ExponentialHistogramDataPoint,
    HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
};

use super::names::{holds_unit, prometheus_unit, sanitize_label_name, sanitize_metric_name};
use super::remote_write::{
    histogram, stale_nan, BucketSpan, Exemplar, Histogram, Label, MetricMetadata, MetricType,
    Sample, TimeSeries, METRIC_NAME_LABEL,
};

/// Reasons points are not translated, as counted in `/metrics`.
pub mod reason {
    pub const DELTA_TEMPORALITY: &str = "delta_temporality";
    pub const UNSPECIFIED_TEMPORALITY: &str = "unspecified_temporality";
    /// An exponential histogram scale below -4, which no Prometheus schema can hold.
    pub const UNSUPPORTED_SCALE: &str = "unsupported_scale";
    /// A number point without a value, or a metric name with no valid character.
    pub const INVALID_POINT: &str = "invalid_point";
}

/// The `NoRecordedValue` data point flag.
const NO_RECORDED_VALUE: u32 = 1;

/// Prometheus accepts native histogram schemas -4..=8.
const MAX_SCHEMA: i32 = 8;
const MIN_SCHEMA: i32 = -4;

/// The zero bucket width the specification prescribes when a point does not set one.
const DEFAULT_ZERO_THRESHOLD: f64 = 1e-128;

/// OpenMetrics caps the combined length of an exemplar's label names and values.
const EXEMPLAR_LABELS_MAX_CHARS: usize = 128;

/// How to translate, from the exporter's config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Prefixed with `_` to every metric name (not to `target_info`).
    pub namespace: Option<String>,
    /// Sorted by name; added where the series has no label of that name.
    pub external_labels: Vec<Label>,
    pub resource_to_telemetry_conversion: bool,
    pub target_info: bool,
    pub add_metric_suffixes: bool,
    pub send_metadata: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: None,
            external_labels: Vec::new(),
            resource_to_telemetry_conversion: false,
            target_info: true,
            add_metric_suffixes: true,
            send_metadata: false,
        }
    }
}

impl Settings {
    pub fn external_labels(labels: &BTreeMap<String, String>) -> Vec<Label> {
        let mut out: Vec<Label> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| Label::new(k.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The series of one metric and one label set.
#[derive(Debug, Default)]
pub struct Group {
    pub series: Vec<TimeSeries>,
    /// OTLP data points these series came from.
    pub points: usize,
    /// Per series: its metric name and the value of its `le` / `quantile` label, to find it again.
    keys: Vec<(String, Option<String>)>,
}

/// A translated payload.
#[derive(Debug, Default)]
pub struct Translation {
    pub groups: Vec<Group>,
    pub metadata: Vec<MetricMetadata>,
    /// Points not translated, by reason.
    pub dropped: Vec<(&'static str, usize)>,
}

impl Translation {
    pub fn points(&self) -> usize {
        self.groups.iter().map(|g| g.points).sum()
    }

    pub fn dropped_points(&self) -> usize {
        self.dropped.iter().map(|(_, n)| n).sum()
    }

    fn drop_points(&mut self, reason: &'static str, n: usize) {
        if n == 0 {
            return;
        }
        match self.dropped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => self.dropped.push((reason, n)),
        }
    }
}

/// Translates one OTLP export request.
pub fn translate(req: &ExportMetricsServiceRequest, settings: &Settings) -> Translation {
    let mut t = Translator {
        settings,
        out: Translation::default(),
        index: HashMap::new(),
        families: HashSet::new(),
    };
    for rm in &req.resource_metrics {
        let attrs: &[KeyValue] = rm
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let resource = ResourceLabels::new(attrs, settings.resource_to_telemetry_conversion);
        let mut latest: Option<i64> = None;
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                if let Some(ts) = t.metric(m, &resource) {
                    latest = Some(latest.map_or(ts, |l: i64| l.max(ts)));
                }
            }
        }
        if let (true, Some(ts)) = (settings.target_info, latest) {
            t.target_info(attrs, &resource, ts);
        }
    }
    for g in &mut t.out.groups {
        for s in &mut g.series {
            sort_by_time(s);
        }
    }
    t.out
}

/// The labels one resource gives its series.
struct ResourceLabels {
    /// `job` and `instance`, which win over point attributes of the same name.
    identity: Vec<Label>,
    /// Every resource attribute, with `resource_to_telemetry_conversion`; point attributes win.
    all: Vec<Label>,
}

impl ResourceLabels {
    fn new(attrs: &[KeyValue], convert_all: bool) -> Self {
        let get = |key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| attr_string(kv.value.as_ref()))
                .filter(|v| !v.is_empty())
        };
        let mut identity = Vec::new();
        if let Some(instance) = get("service.instance.id") {
            identity.push(Label::new("instance", instance));
        }
        if let Some(name) = get("service.name") {
            let job = match get("service.namespace") {
                Some(ns) => format!("{ns}/{name}"),
                None => name,
            };
            identity.push(Label::new("job", job));
        }
        let all = if convert_all {
            attr_labels(attrs.iter())
        } else {
            Vec::new()
        };
        Self { identity, all }
    }
}

/// How a metric's points map to Prometheus.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
    NativeHistogram,
}

impl Kind {
    fn metric_type(self) -> MetricType {
        match self {
            Kind::Gauge => MetricType::Gauge,
            Kind::Counter => MetricType::Counter,
            Kind::Histogram | Kind::NativeHistogram => MetricType::Histogram,
            Kind::Summary => MetricType::Summary,
        }
    }
}

struct Translator<'s> {
    settings: &'s Settings,
    out: Translation,
    /// (family name, labels) → index into `out.groups`.
    index: HashMap<String, usize>,
    families: HashSet<String>,
}

impl Translator<'_> {
    /// Translates one metric; returns the latest timestamp it produced a series for.
    fn metric(&mut self, m: &Metric, resource: &ResourceLabels) -> Option<i64> {
        let Some(data) = &m.data else {
            return None;
        };
        let points = pipelines_points(data);
        let kind = match data {
            Data::Gauge(_) => Kind::Gauge,
            Data::Sum(s) => match temporality(s.aggregation_temporality) {
                Err(reason) => {
                    self.out.drop_points(reason, points);
                    return None;
                }
                Ok(()) if s.is_monotonic => Kind::Counter,
                Ok(()) => Kind::Gauge,
            },
            Data::Histogram(h) => match temporality(h.aggregation_temporality) {
                Err(reason) => {
                    self.out.drop_points(reason, points);
                    return None;
                }
                Ok(()) => Kind::Histogram,
            },
            Data::ExponentialHistogram(h) => match temporality(h.aggregation_temporality) {
                Err(reason) => {
                    self.out.drop_points(reason, points);
                    return None;
                }
                Ok(()) => Kind::NativeHistogram,
            },
            Data::Summary(_) => Kind::Summary,
        };
        let is_otlp_gauge = matches!(data, Data::Gauge(_));
        let (family, unit) = metric_name(m, kind, is_otlp_gauge, self.settings);
        if family.is_empty() {
            self.out.drop_points(reason::INVALID_POINT, points);
            return None;
        }
        if self.settings.send_metadata && self.families.insert(family.clone()) {
            self.out.metadata.push(MetricMetadata {
                r#type: kind.metric_type() as i32,
                metric_family_name: family.clone(),
                help: m.description.clone(),
                unit: unit.unwrap_or_default(),
            });
        }
        let mut latest = None;
        let mut seen = |ts: i64| latest = Some(latest.map_or(ts, |l: i64| l.max(ts)));
        match data {
            Data::Gauge(g) => {
                for p in &g.data_points {
                    if let Some(ts) = self.number(&family, p, resource, false) {
                        seen(ts);
                    }
                }
            }
            Data::Sum(s) => {
                for p in &s.data_points {
                    if let Some(ts) = self.number(&family, p, resource, kind == Kind::Counter) {
                        seen(ts);
                    }
                }
            }
            Data::Histogram(h) => {
                for p in &h.data_points {
                    seen(self.histogram(&family, p, resource));
                }
            }
            Data::ExponentialHistogram(h) => {
                for p in &h.data_points {
                    if let Some(ts) = self.native_histogram(&family, p, resource) {
                        seen(ts);
                    }
                }
            }
            Data::Summary(s) => {
                for p in &s.data_points {
                    seen(self.summary(&family, p, resource));
                }
            }
        }
        latest
    }

    /// The group of `family` with the point's labels, created if new; counts the point in it.
    fn group(&mut self, family: &str, labels: &[Label]) -> usize {
        let mut key = String::with_capacity(family.len() + labels.len() * 24);
        key.push_str(family);
        for l in labels {
            key.push('\u{1}');
            key.push_str(&l.name);
            key.push('\u{2}');
            key.push_str(&l.value);
        }
        let next = self.out.groups.len();
        let gi = *self.index.entry(key).or_insert(next);
        if gi == next {
            self.out.groups.push(Group::default());
        }
        self.out.groups[gi].points += 1;
        gi
    }

    /// The labels of a point's series (without `__name__`), sorted by name.
    fn point_labels(&self, attrs: &[KeyValue], resource: &ResourceLabels) -> Vec<Label> {
        let mut labels = attr_labels(attrs.iter());
        if !resource.all.is_empty() {
            labels = merge(labels, &resource.all, false);
        }
        labels = merge(labels, &resource.identity, true);
        if !self.settings.external_labels.is_empty() {
            labels = merge(labels, &self.settings.external_labels, false);
        }
        labels
    }

    fn number(
        &mut self,
        family: &str,
        p: &NumberDataPoint,
        resource: &ResourceLabels,
        counter: bool,
    ) -> Option<i64> {
        let value = match (p.value, p.flags & NO_RECORDED_VALUE != 0) {
            (_, true) => stale_nan(),
            (Some(number_data_point::Value::AsDouble(v)), false) => v,
            (Some(number_data_point::Value::AsInt(v)), false) => v as f64,
            (None, false) => {
                self.out.drop_points(reason::INVALID_POINT, 1);
                return None;
            }
        };
        let ts = millis(p.time_unix_nano);
        let labels = self.point_labels(&p.attributes, resource);
        let gi = self.group(family, &labels);
        let g = &mut self.out.groups[gi];
        let s = g.series(0, family, None, &labels);
        s.samples.push(Sample {
            value,
            timestamp: ts,
        });
        if counter {
            s.exemplars.extend(p.exemplars.iter().map(exemplar));
        }
        Some(ts)
    }

    fn histogram(
        &mut self,
        family: &str,
        p: &HistogramDataPoint,
        resource: &ResourceLabels,
    ) -> i64 {
        let ts = millis(p.time_unix_nano);
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        let value = |v: f64| if stale { stale_nan() } else { v };
        let labels = self.point_labels(&p.attributes, resource);
        let gi = self.group(family, &labels);
        let g = &mut self.out.groups[gi];
        let bucket_name = format!("{family}_bucket");
        // Buckets beyond the bounds (a malformed point) are ignored; missing ones count as empty.
        let mut cumulative = 0u64;
        let mut slot = 0;
        for (i, bound) in p
            .explicit_bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
        {
            cumulative = cumulative.saturating_add(p.bucket_counts.get(i).copied().unwrap_or(0));
            let le = if bound == f64::INFINITY {
                // The +Inf bucket holds every observation, whatever the buckets add up to.
                cumulative = cumulative.max(p.count);
                "+Inf".to_owned()
            } else {
                format_float(bound)
            };
            let s = g.series(slot, &bucket_name, Some(("le", le)), &labels);
            s.samples.push(Sample {
                value: value(cumulative as f64),
                timestamp: ts,
            });
            if !stale {
                let lower = if i == 0 {
                    f64::NEG_INFINITY
                } else {
                    p.explicit_bounds[i - 1]
                };
                s.exemplars.extend(
                    p.exemplars
                        .iter()
                        .filter(|e| {
                            let v = exemplar_value(e);
                            v > lower && v <= bound
                        })
                        .map(exemplar),
                );
            }
            slot += 1;
        }
        if let Some(sum) = p.sum {
            let s = g.series(slot, &format!("{family}_sum"), None, &labels);
            s.samples.push(Sample {
                value: value(sum),
                timestamp: ts,
            });
            slot += 1;
        }
        let s = g.series(slot, &format!("{family}_count"), None, &labels);
        s.samples.push(Sample {
            value: value(p.count as f64),
            timestamp: ts,
        });
        ts
    }

    fn summary(&mut self, family: &str, p: &SummaryDataPoint, resource: &ResourceLabels) -> i64 {
        let ts = millis(p.time_unix_nano);
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        let value = |v: f64| if stale { stale_nan() } else { v };
        let labels = self.point_labels(&p.attributes, resource);
        let gi = self.group(family, &labels);
        let g = &mut self.out.groups[gi];
        let mut slot = 0;
        for q in &p.quantile_values {
            let s = g.series(
                slot,
                family,
                Some(("quantile", format_float(q.quantile))),
                &labels,
            );
            s.samples.push(Sample {
                value: value(q.value),
                timestamp: ts,
            });
            slot += 1;
        }
        let s = g.series(slot, &format!("{family}_sum"), None, &labels);
        s.samples.push(Sample {
            value: value(p.sum),
            timestamp: ts,
        });
        let s = g.series(slot + 1, &format!("{family}_count"), None, &labels);
        s.samples.push(Sample {
            value: value(p.count as f64),
            timestamp: ts,
        });
        ts
    }

    fn native_histogram(
        &mut self,
        family: &str,
        p: &ExponentialHistogramDataPoint,
        resource: &ResourceLabels,
    ) -> Option<i64> {
        let Some(h) = native(p) else {
            self.out.drop_points(reason::UNSUPPORTED_SCALE, 1);
            return None;
        };
        let labels = self.point_labels(&p.attributes, resource);
        let gi = self.group(family, &labels);
        let s = self.out.groups[gi].series(0, family, None, &labels);
        s.histograms.push(h);
        if p.flags & NO_RECORDED_VALUE == 0 {
            s.exemplars.extend(p.exemplars.iter().map(exemplar));
        }
        Some(millis(p.time_unix_nano))
    }

    fn target_info(&mut self, attrs: &[KeyValue], resource: &ResourceLabels, ts: i64) {
        if resource.identity.is_empty() {
            return; // nothing to join it on
        }
        let others = attr_labels(attrs.iter().filter(|kv| {
            !matches!(
                kv.key.as_str(),
                "service.name" | "service.namespace" | "service.instance.id"
            )
        }));
        if others.is_empty() {
            return;
        }
        let mut labels = merge(others, &resource.identity, true);
        labels = merge(labels, &self.settings.external_labels, false);
        let gi = self.group("target_info", &labels);
        let g = &mut self.out.groups[gi];
        g.points -= 1; // not an OTLP point
        g.series(0, "target_info", None, &labels)
            .samples
            .push(Sample {
                value: 1.0,
                timestamp: ts,
            });
        if self.settings.send_metadata && self.families.insert("target_info".into()) {
            self.out.metadata.push(MetricMetadata {
                r#type: MetricType::Gauge as i32,
                metric_family_name: "target_info".into(),
                help: "Target metadata".into(),
                unit: String::new(),
            });
        }
    }
}

impl Group {
    /// The series named `name` (with the extra label, if any) of this group, created with `labels` if
    /// new. `slot` is where it sits when every point of the group has the same shape, which is the
    /// usual case and spares a search.
    fn series(
        &mut self,
        slot: usize,
        name: &str,
        extra: Option<(&'static str, String)>,
        labels: &[Label],
    ) -> &mut TimeSeries {
        let matches = |k: &(String, Option<String>)| {
            k.0 == name && k.1.as_deref() == extra.as_ref().map(|(_, v)| v.as_str())
        };
        let found = match self.keys.get(slot) {
            Some(k) if matches(k) => Some(slot),
            _ => self.keys.iter().position(matches),
        };
        let i = match found {
            Some(i) => i,
            None => {
                let mut all = Vec::with_capacity(labels.len() + 2);
                all.push(Label::new(METRIC_NAME_LABEL, name));
                all.extend_from_slice(labels);
                if let Some((k, v)) = &extra {
                    all.push(Label::new(*k, v.clone()));
                }
                all.sort_by(|a, b| a.name.cmp(&b.name));
                self.series.push(TimeSeries {
                    labels: all,
                    ..Default::default()
                });
                self.keys.push((name.to_owned(), extra.map(|(_, v)| v)));
                self.series.len() - 1
            }
        };
        &mut self.series[i]
    }
}

fn pipelines_points(data: &Data) -> usize {
    match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }
}

fn temporality(t: i32) -> Result<(), &'static str> {
    match AggregationTemporality::try_from(t) {
        Ok(AggregationTemporality::Cumulative) => Ok(()),
        Ok(AggregationTemporality::Delta) => Err(reason::DELTA_TEMPORALITY),
        _ => Err(reason::UNSPECIFIED_TEMPORALITY),
    }
}

fn millis(unix_nanos: u64) -> i64 {
    (unix_nanos / 1_000_000) as i64
}

/// Shortest round-trip decimal, as Prometheus writes `le` and `quantile` (`0.005`, `1`, `1e+21` aside).
fn format_float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn sort_by_time(s: &mut TimeSeries) {
    if !s.samples.is_sorted_by_key(|x| x.timestamp) {
        s.samples.sort_by_key(|x| x.timestamp);
    }
    // Two points of one series at one instant (two metrics that normalise to one name): Prometheus
    // refuses a request holding both values, so the later one in the payload wins.
    let mut i = 1;
    while i < s.samples.len() {
        if s.samples[i].timestamp == s.samples[i - 1].timestamp {
            s.samples.remove(i - 1);
        } else {
            i += 1;
        }
    }
    if !s.histograms.is_sorted_by_key(|x| x.timestamp) {
        s.histograms.sort_by_key(|x| x.timestamp);
    }
    s.histograms.dedup_by(|later, earlier| {
        let same = later.timestamp == earlier.timestamp;
        if same {
            std::mem::swap(later, earlier);
        }
        same
    });
    if !s.exemplars.is_sorted_by_key(|x| x.timestamp) {
        s.exemplars.sort_by_key(|x| x.timestamp);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Names

/// The family name of `m` as `kind`, and its unit in Prometheus's words.
fn metric_name(
    m: &Metric,
    kind: Kind,
    is_otlp_gauge: bool,
    settings: &Settings,
) -> (String, Option<String>) {
    let mut name = sanitize_metric_name(&m.name);
    if name.is_empty() {
        return (name, None);
    }
    let unit = prometheus_unit(&m.unit, is_otlp_gauge);
    if settings.add_metric_suffixes {
        let counter = kind == Kind::Counter;
        if counter {
            if let Some(stripped) = name.strip_suffix("_total") {
                name.truncate(stripped.len());
            }
        }
        if let Some(unit) = &unit {
            if !holds_unit(&name, unit) {
                name.push('_');
                name.push_str(unit);
            }
        }
        if counter {
            name.push_str("_total");
        }
    }
    if let Some(ns) = settings.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        name = format!("{ns}_{name}");
    }
    (sanitize_metric_name(&name), unit)
}

// ---------------------------------------------------------------------------------------------------------
// Labels

/// Attributes as labels, sorted by name: names sanitised, values stringified, values of attributes
/// whose names collide after sanitising joined with `;` in the order of their original keys.
fn attr_labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>) -> Vec<Label> {
    let mut named: Vec<(String, &str, String)> = attrs
        .filter_map(|kv| {
            let name = sanitize_label_name(&kv.key);
            let value = attr_string(kv.value.as_ref());
            (!name.is_empty() && !value.is_empty()).then_some((name, kv.key.as_str(), value))
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
    let mut out: Vec<Label> = Vec::with_capacity(named.len());
    for (name, _, value) in named {
        match out.last_mut() {
            Some(last) if last.name == name => {
                last.value.push(';');
                last.value.push_str(&value);
            }
            _ => out.push(Label { name, value }),
        }
    }
    out
}

/// Merges two label lists sorted by name; on a name in both, `other` wins if `other_wins`.
fn merge(base: Vec<Label>, other: &[Label], other_wins: bool) -> Vec<Label> {
    if other.is_empty() {
        return base;
    }
    let mut out = Vec::with_capacity(base.len() + other.len());
    let mut b = base.into_iter().peekable();
    let mut o = other.iter().peekable();
    loop {
        match (b.peek(), o.peek()) {
            (Some(x), Some(y)) => match x.name.cmp(&y.name) {
                std::cmp::Ordering::Less => out.push(b.next().expect("peeked")),
                std::cmp::Ordering::Greater => out.push(o.next().expect("peeked").clone()),
                std::cmp::Ordering::Equal => {
                    let (x, y) = (b.next().expect("peeked"), o.next().expect("peeked"));
                    out.push(if other_wins { y.clone() } else { x });
                }
            },
            (Some(_), None) => out.extend(b.by_ref()),
            (None, Some(_)) => out.extend(o.by_ref().cloned()),
            (None, None) => break,
        }
    }
    out
}

/// An attribute value as a label value: strings as they are, other scalars in their usual spelling,
/// bytes in base64, arrays and maps as JSON (the OpenTelemetry rule for non-OTLP formats).
fn attr_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => match json(other) {
            serde_json::Value::String(s) => s,
            j => j.to_string(),
        },
    }
}

fn json(v: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(format!("{d}")), J::Number)
        }
        any_value::Value::BytesValue(b) => {
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map_or(J::Null, json))
                .collect(),
        ),
        any_value::Value::KvlistValue(kvs) => J::Object(
            kvs.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map_or(J::Null, json),
                    )
                })
                .collect(),
        ),
        #[allow(unreachable_patterns)]
        // fields added to AnyValue in newer protos (profiles' string refs)
        _ => J::Null,
    }
}

fn exemplar_value(e: &OtlpExemplar) -> f64 {
    match e.value {
        Some(exemplar::Value::AsDouble(v)) => v,
        Some(exemplar::Value::AsInt(v)) => v as f64,
        None => 0.0,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn exemplar(e: &OtlpExemplar) -> Exemplar {
    let mut labels = Vec::new();
    let mut chars = 0;
    if !e.trace_id.is_empty() {
        labels.push(Label::new("trace_id", hex(&e.trace_id)));
    }
    if !e.span_id.is_empty() {
        labels.push(Label::new("span_id", hex(&e.span_id)));
    }
    for l in &labels {
        chars += l.name.len() + l.value.len();
    }
    for l in attr_labels(e.filtered_attributes.iter()) {
        let n = l.name.chars().count() + l.value.chars().count();
        if chars + n > EXEMPLAR_LABELS_MAX_CHARS || labels.iter().any(|x| x.name == l.name) {
            continue;
        }
        chars += n;
        labels.push(l);
    }
    Exemplar {
        labels,
        value: exemplar_value(e),
        timestamp: millis(e.time_unix_nano),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Native histograms

/// An exponential histogram point as a native histogram; `None` when its scale is below -4.
fn native(p: &ExponentialHistogramDataPoint) -> Option<Histogram> {
    if p.scale < MIN_SCHEMA {
        return None;
    }
    let shift = (p.scale - MAX_SCHEMA).max(0) as u32;
    let schema = p.scale.min(MAX_SCHEMA);
    let timestamp = millis(p.time_unix_nano);
    let zero_threshold = if p.zero_threshold > 0.0 {
        p.zero_threshold
    } else {
        DEFAULT_ZERO_THRESHOLD
    };
    if p.flags & NO_RECORDED_VALUE != 0 {
        return Some(Histogram {
            count: Some(histogram::Count::CountFloat(stale_nan())),
            sum: stale_nan(),
            schema,
            zero_threshold,
            timestamp,
            ..Default::default()
        });
    }
    let (positive_spans, positive_deltas) = spans(p.positive.as_ref(), shift);
    let (negative_spans, negative_deltas) = spans(p.negative.as_ref(), shift);
    Some(Histogram {
        count: Some(histogram::Count::CountInt(p.count)),
        sum: p.sum.unwrap_or(f64::NAN),
        schema,
        zero_threshold,
        zero_count: Some(histogram::ZeroCount::ZeroCountInt(p.zero_count)),
        negative_spans,
        negative_deltas,
        positive_spans,
        positive_deltas,
        reset_hint: histogram::ResetHint::Unknown as i32,
        timestamp,
        ..Default::default()
    })
}

/// OTLP's dense buckets (bucket `offset + i` holds `(base^(offset+i), base^(offset+i+1)]`) as
/// Prometheus spans and deltas (bucket `k` holds `(base^(k-1), base^k]`, so indexes move up by one),
/// after merging `2^shift` neighbouring buckets to lower the scale. Runs of up to two empty buckets stay
/// inside a span (cheaper than a new span); longer runs start a new one.
fn spans(buckets: Option<&Buckets>, shift: u32) -> (Vec<BucketSpan>, Vec<i64>) {
    let Some(b) = buckets else {
        return (Vec::new(), Vec::new());
    };
    // (prometheus index, count) of non-empty buckets, ascending.
    let mut merged: Vec<(i64, u64)> = Vec::new();
    for (i, &c) in b.bucket_counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let otlp_index = b.offset as i64 + i as i64;
        let index = (otlp_index >> shift) + 1;
        match merged.last_mut() {
            Some((last, n)) if *last == index => *n += c,
            _ => merged.push((index, c)),
        }
    }
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::with_capacity(merged.len());
    let mut prev_count: i64 = 0;
    let mut next_index: Option<i64> = None; // the index right after the last bucket written
    for (index, count) in merged {
        match next_index {
            None => spans.push(BucketSpan {
                offset: index as i32,
                length: 0,
            }),
            Some(next) => {
                let gap = index - next;
                if gap <= 2 {
                    for _ in 0..gap {
                        deltas.push(-prev_count);
                        prev_count = 0;
                    }
                    if let Some(span) = spans.last_mut() {
                        span.length += gap as u32;
                    }
                } else {
                    spans.push(BucketSpan {
                        offset: gap as i32,
                        length: 0,
                    });
                }
            }
        }
        if let Some(span) = spans.last_mut() {
            span.length += 1;
        }
        let count = count as i64;
        deltas.push(count - prev_count);
        prev_count = count;
        next_index = Some(index + 1);
    }
    (spans, deltas)
}

#[cfg(test)]
mod tests;
