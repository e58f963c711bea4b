//! One scrape of one target → an OTLP metrics request, with start times and staleness.
//!
//! Samples (after metric relabeling) are grouped into metric families by their TYPE: `_bucket`, `_sum`,
//! `_count` and `_created` lines join their histogram, summary or counter, after relabeling as in
//! Prometheus. Then, per the OpenTelemetry specification's compatibility rules:
//!
//! - counter → monotonic cumulative Sum; gauge and untyped → Gauge (`prometheus.type` metadata says
//!   which); histogram → Histogram (`le` buckets, de-cumulated); summary → Summary. A histogram or
//!   summary without `_count` is dropped (counted, reason `incomplete_histogram` / `incomplete_summary`).
//! - Start time of a cumulative point: its `_created` value; else the first time outpost saw the series;
//!   after a reset (the value, or a histogram's count, went down) the time of the previous observation,
//!   the last moment the old run is known to have been alive.
//! - The target is the resource (`service.name` = job, `service.instance.id` = instance, `server.*`,
//!   `url.scheme`, the target's other labels, and the labels of an exposed `target_info`, which is not
//!   forwarded as a metric). A series still carrying a `job` / `instance` of its own (kept by
//!   `honor_labels`, or set by metric relabeling; see [`super::scrape::sample_labels`]) gets a resource of
//!   its own (federation, Pushgateway).
//! - Staleness: a series seen in the previous scrape and absent from this one (every series, when the
//!   scrape failed; every series and the synthetic ones, when the target goes away) gets a point with the
//!   `NoRecordedValue` flag.
//!
//! The per-series state ([`SeriesCache`]) is read while converting and replaced only by [`commit`], so a
//! scrape the pipeline refused leaves the state as of the last scrape that was queued: the next scrape
//! still marks what disappeared in between.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, summary_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use outpost_pipelines::Metrics;
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::parse::{FamilyMeta, FamilyType, RawSample};
use crate::prom::to_otlp::{
    self, attributes, double_point, resource_attributes, stale_point, string_kv, Endpoint, Labels,
    INSTANCE_LABEL, JOB_LABEL, NAME_LABEL, NO_RECORDED_VALUE,
};

/// The OTLP shape a series takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

/// Who was scraped: the resource of everything the scrape yields.
#[derive(Debug, Clone)]
pub struct Target {
    pub job: String,
    pub instance: String,
    pub endpoint: Endpoint,
    /// Target labels other than `job`, `instance` and `__*`, sorted.
    pub labels: Labels,
    pub honor_timestamps: bool,
}

/// What identifies one OTLP series.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesId {
    /// `(job, instance)` when the series names its own (honor_labels), else the target's.
    resource: Option<(String, String)>,
    scope: Option<(String, String)>,
    family: String,
    kind: Kind,
    attrs: Labels,
}

/// What is remembered about one series between scrapes.
#[derive(Debug, Clone)]
pub struct Series {
    id: Arc<SeriesId>,
    start_ns: u64,
    /// The value (counter) or count (histogram, summary) last seen, for reset detection.
    last: f64,
    last_ns: u64,
}

/// The series of one target as of its last queued scrape.
#[derive(Debug, Default)]
pub struct SeriesCache {
    series: FxHashMap<u64, Series>,
}

impl SeriesCache {
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Counts of one scrape, reported as the synthetic series.
#[derive(Debug, Clone, Copy)]
pub struct ScrapeReport {
    pub up: bool,
    pub duration_seconds: f64,
    pub samples_scraped: usize,
    pub samples_post_relabeling: usize,
}

/// The result of converting one scrape; apply it with [`commit`] once it is queued.
pub struct Converted {
    pub request: Metrics,
    /// Data points in `request`.
    pub points: usize,
    /// Series that were not in the previous scrape.
    pub series_added: usize,
    /// Items left out, by reason.
    pub dropped: Vec<(&'static str, usize)>,
    /// The series state after this scrape, for [`commit`].
    pub next: NextState,
}

/// The series of a converted scrape.
pub struct NextState(FxHashMap<u64, Series>);

/// Makes the state of a converted scrape the one the next scrape is compared with.
pub fn commit(cache: &mut SeriesCache, next: NextState) {
    cache.series = next.0;
}

/// The identity of a series. Fx hashing: the keys come from the operator's own targets, and hashing is a
/// tenth of the cost of a scrape with SipHash.
fn key_of(id: &SeriesId) -> u64 {
    FxBuildHasher.hash_one(id)
}

/// A point being assembled from one or more sample lines.
enum Acc {
    Number(f64),
    Histogram {
        buckets: Vec<(f64, f64)>,
        sum: Option<f64>,
        count: Option<f64>,
    },
    Summary {
        quantiles: Vec<(f64, f64)>,
        sum: Option<f64>,
        count: Option<f64>,
    },
}

struct PointAcc {
    id: SeriesId,
    key: u64,
    time_ns: u64,
    created_ns: Option<u64>,
    acc: Acc,
}

/// Which part of a family a sample line is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Value,
    Bucket,
    Sum,
    Count,
    Created,
}

/// The family, its type and the role of a sample named `name`. A counter keeps the name its samples
/// have (`requests_total`, also when the TYPE line says `requests`, as OpenMetrics writes it), so the
/// series reads back under the same name.
fn classify(name: &str, families: &FxHashMap<String, FamilyMeta>) -> (String, FamilyType, Role) {
    let kind_of = |n: &str| families.get(n).and_then(|m| m.kind);
    if let Some(kind) = kind_of(name) {
        return (name.to_owned(), kind, Role::Value);
    }
    for (suffix, role) in [
        ("_bucket", Role::Bucket),
        ("_sum", Role::Sum),
        ("_count", Role::Count),
        ("_created", Role::Created),
        ("_total", Role::Value),
    ] {
        let Some(base) = name.strip_suffix(suffix) else {
            continue;
        };
        match (kind_of(base), role) {
            (Some(kind @ FamilyType::Histogram), Role::Bucket | Role::Sum | Role::Count)
            | (Some(kind @ FamilyType::Summary), Role::Sum | Role::Count)
            | (Some(kind @ (FamilyType::Histogram | FamilyType::Summary)), Role::Created) => {
                return (base.to_owned(), kind, role)
            }
            (Some(FamilyType::Counter), Role::Value) => {
                return (name.to_owned(), FamilyType::Counter, role)
            }
            (Some(FamilyType::Counter), Role::Created) => {
                let family = if base.ends_with("_total") {
                    base.to_owned()
                } else {
                    format!("{base}_total")
                };
                return (family, FamilyType::Counter, role);
            }
            _ => {}
        }
        // `x_created` of a counter exposed as `x_total`.
        if role == Role::Created {
            let total = format!("{base}_total");
            if kind_of(&total) == Some(FamilyType::Counter) {
                return (total, FamilyType::Counter, Role::Created);
            }
        }
    }
    (name.to_owned(), FamilyType::Untyped, Role::Value)
}

fn parse_bound(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse().ok(),
    }
}

/// Converts one scrape. `report` is `None` when the target is going away: then nothing is emitted but
/// staleness markers for every series it had, the synthetic ones included.
pub fn convert(
    target: &Target,
    cache: &SeriesCache,
    samples: Vec<RawSample>,
    families: &FxHashMap<String, FamilyMeta>,
    report: Option<ScrapeReport>,
    now_ns: u64,
) -> Converted {
    let mut dropped: Vec<(&'static str, usize)> = Vec::new();
    let mut extra_resource: Labels = target.labels.clone();
    let mut points: Vec<PointAcc> = Vec::new();
    let mut index: FxHashMap<u64, usize> = FxHashMap::default();

    for sample in samples {
        let RawSample {
            mut labels,
            value,
            timestamp_ms,
        } = sample;
        let Some(name) = to_otlp::take_label(&mut labels, NAME_LABEL) else {
            continue;
        };
        let time_ns = match (target.honor_timestamps, timestamp_ms) {
            (true, Some(ms)) => to_otlp::ms_to_ns(ms),
            _ => now_ns,
        };
        let (family, ftype, role) = classify(&name, families);
        if family == "target_info" && matches!(ftype, FamilyType::Gauge | FamilyType::Untyped) {
            for (k, v) in labels {
                if k != JOB_LABEL && k != INSTANCE_LABEL {
                    extra_resource.retain(|(ek, _)| *ek != k);
                    extra_resource.push((k, v));
                }
            }
            continue;
        }
        let scope = to_otlp::take_scope(&mut labels);
        // `job` / `instance` left on a series (honor_labels, or metric relabeling) give it a resource
        // of its own when they differ from the target's.
        let job = to_otlp::take_label(&mut labels, JOB_LABEL);
        let instance = to_otlp::take_label(&mut labels, INSTANCE_LABEL);
        let resource = if job.is_some() || instance.is_some() {
            let pair = (
                job.unwrap_or_else(|| target.job.clone()),
                instance.unwrap_or_else(|| target.instance.clone()),
            );
            (pair.0 != target.job || pair.1 != target.instance).then_some(pair)
        } else {
            None
        };
        let kind = match ftype {
            FamilyType::Counter => Kind::Counter,
            FamilyType::Gauge | FamilyType::Untyped => Kind::Gauge,
            FamilyType::Histogram => Kind::Histogram,
            FamilyType::Summary => Kind::Summary,
        };
        // The bucket bound or quantile is part of the point, not of its identity.
        let mut part = None;
        if (kind == Kind::Histogram && role == Role::Bucket)
            || (kind == Kind::Summary && role == Role::Value)
        {
            let key = if kind == Kind::Histogram {
                "le"
            } else {
                "quantile"
            };
            match to_otlp::take_label(&mut labels, key)
                .as_deref()
                .and_then(parse_bound)
            {
                Some(b) => part = Some(b),
                None => {
                    dropped.push(("invalid_bucket", 1));
                    continue;
                }
            }
        }
        let id = SeriesId {
            resource,
            scope,
            family,
            kind,
            attrs: labels,
        };
        let key = key_of(&id);
        let i = *index.entry(key).or_insert_with(|| {
            points.push(PointAcc {
                key,
                time_ns,
                created_ns: None,
                acc: match kind {
                    Kind::Gauge | Kind::Counter => Acc::Number(f64::NAN),
                    Kind::Histogram => Acc::Histogram {
                        buckets: Vec::new(),
                        sum: None,
                        count: None,
                    },
                    Kind::Summary => Acc::Summary {
                        quantiles: Vec::new(),
                        sum: None,
                        count: None,
                    },
                },
                id,
            });
            points.len() - 1
        });
        let p = &mut points[i];
        match (&mut p.acc, role) {
            (_, Role::Created) => {
                if value.is_finite() && value > 0.0 {
                    p.created_ns = Some((value * 1e9) as u64);
                }
            }
            (Acc::Number(v), _) => *v = value,
            (Acc::Histogram { buckets, .. }, Role::Bucket) => {
                buckets.push((part.unwrap_or(f64::INFINITY), value))
            }
            (Acc::Histogram { sum, .. } | Acc::Summary { sum, .. }, Role::Sum) => {
                *sum = Some(value)
            }
            (Acc::Histogram { count, .. } | Acc::Summary { count, .. }, Role::Count) => {
                *count = Some(value)
            }
            (Acc::Summary { quantiles, .. }, Role::Value) => {
                quantiles.push((part.unwrap_or(0.0), value))
            }
            _ => dropped.push(("invalid_sample", 1)),
        }
    }

    let mut out = Builder::new(target, extra_resource);
    let mut next: FxHashMap<u64, Series> =
        FxHashMap::with_capacity_and_hasher(points.len() + 5, FxBuildHasher);
    let mut series_added = 0;
    for p in points {
        let key = p.key;
        let previous = cache.series.get(&key);
        if previous.is_none() {
            series_added += 1;
        }
        // A known series keeps its remembered identity; this scrape's copy of the labels becomes the
        // point's attributes instead of being cloned.
        let (id, own_attrs) = match previous {
            Some(s) => (s.id.clone(), Some(p.id.attrs)),
            None => (Arc::new(p.id), None),
        };
        let point_attrs = || match own_attrs {
            Some(labels) => to_otlp::attributes_owned(labels),
            None => attributes(&id.attrs),
        };
        let help = families
            .get(&id.family)
            .or_else(|| {
                id.family
                    .strip_suffix("_total")
                    .and_then(|base| families.get(base))
            })
            .and_then(|m| m.help.as_deref());
        let ftype_name = families
            .get(&id.family)
            .and_then(|m| m.kind)
            .map_or("unknown", type_name);
        let start = |current: f64, time_ns: u64| -> u64 {
            if let Some(c) = p.created_ns {
                return c;
            }
            match previous {
                Some(s) if current >= s.last || s.last.is_nan() => s.start_ns,
                Some(s) => s.last_ns,
                None => time_ns,
            }
        };
        match p.acc {
            Acc::Number(v) => {
                let attrs = point_attrs();
                if id.kind == Kind::Counter {
                    let start_ns = start(v, p.time_ns);
                    out.sum(&id, help, attrs, start_ns, p.time_ns, v);
                    next.insert(key, series(&id, start_ns, v, p.time_ns));
                } else {
                    out.gauge(&id, help, ftype_name, attrs, p.time_ns, v);
                    next.insert(key, series(&id, 0, v, p.time_ns));
                }
            }
            Acc::Histogram {
                mut buckets,
                sum,
                count,
            } => {
                let Some(count) = count else {
                    dropped.push(("incomplete_histogram", 1));
                    continue;
                };
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut bounds = Vec::with_capacity(buckets.len());
                let mut counts = Vec::with_capacity(buckets.len() + 1);
                let mut below = 0.0;
                for (le, cumulative) in &buckets {
                    if le.is_infinite() {
                        continue;
                    }
                    bounds.push(*le);
                    counts.push(as_count(cumulative - below));
                    below = cumulative.max(below);
                }
                counts.push(as_count(count - below));
                let start_ns = start(count, p.time_ns);
                out.histogram(
                    &id,
                    help,
                    HistogramDataPoint {
                        attributes: point_attrs(),
                        start_time_unix_nano: start_ns,
                        time_unix_nano: p.time_ns,
                        count: as_count(count),
                        sum,
                        bucket_counts: counts,
                        explicit_bounds: bounds,
                        ..Default::default()
                    },
                );
                next.insert(key, series(&id, start_ns, count, p.time_ns));
            }
            Acc::Summary {
                mut quantiles,
                sum,
                count,
            } => {
                let Some(count) = count else {
                    dropped.push(("incomplete_summary", 1));
                    continue;
                };
                quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
                let start_ns = start(count, p.time_ns);
                out.summary(
                    &id,
                    help,
                    SummaryDataPoint {
                        attributes: point_attrs(),
                        start_time_unix_nano: start_ns,
                        time_unix_nano: p.time_ns,
                        count: as_count(count),
                        sum: sum.unwrap_or(0.0),
                        quantile_values: quantiles
                            .into_iter()
                            .map(|(quantile, value)| summary_data_point::ValueAtQuantile {
                                quantile,
                                value,
                            })
                            .collect(),
                        ..Default::default()
                    },
                );
                next.insert(key, series(&id, start_ns, count, p.time_ns));
            }
        }
    }

    if let Some(r) = report {
        // +5: the synthetic series themselves are not "added" series of the target.
        for (name, value) in [
            ("up", if r.up { 1.0 } else { 0.0 }),
            ("scrape_duration_seconds", r.duration_seconds),
            ("scrape_samples_scraped", r.samples_scraped as f64),
            (
                "scrape_samples_post_metric_relabeling",
                r.samples_post_relabeling as f64,
            ),
            ("scrape_series_added", series_added as f64),
        ] {
            let id = SeriesId {
                resource: None,
                scope: None,
                family: name.to_owned(),
                kind: Kind::Gauge,
                attrs: Vec::new(),
            };
            let key = key_of(&id);
            let id = cache
                .series
                .get(&key)
                .map_or_else(|| Arc::new(id), |s| s.id.clone());
            out.gauge(&id, None, "gauge", Vec::new(), now_ns, value);
            next.insert(key, series(&id, 0, value, now_ns));
        }
    }

    // Staleness: what the last queued scrape had and this one has not.
    for (key, s) in &cache.series {
        if next.contains_key(key) {
            continue;
        }
        out.stale(&s.id, s.start_ns, now_ns);
    }

    let (request, points) = out.finish();
    Converted {
        request,
        points,
        series_added,
        dropped,
        next: NextState(next),
    }
}

fn series(id: &Arc<SeriesId>, start_ns: u64, last: f64, last_ns: u64) -> Series {
    Series {
        id: id.clone(),
        start_ns,
        last,
        last_ns,
    }
}

fn as_count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

fn type_name(t: FamilyType) -> &'static str {
    match t {
        FamilyType::Counter => "counter",
        FamilyType::Gauge => "gauge",
        FamilyType::Histogram => "histogram",
        FamilyType::Summary => "summary",
        FamilyType::Untyped => "unknown",
    }
}

/// Assembles resource → scope → metric, one metric per family and kind.
struct Builder<'t> {
    target: &'t Target,
    extra_resource: Labels,
    resources: Vec<((String, String), Vec<ScopeMetrics>)>,
    metric_index: FxHashMap<(usize, usize, String, Kind), usize>,
    /// The metric the previous point went to: points of one family come together, so most points find
    /// their metric here without a lookup.
    last: Option<(Arc<SeriesId>, (usize, usize, usize))>,
    scope: InstrumentationScope,
    points: usize,
}

impl<'t> Builder<'t> {
    fn new(target: &'t Target, extra_resource: Labels) -> Self {
        Self {
            target,
            extra_resource,
            resources: Vec::new(),
            metric_index: FxHashMap::default(),
            last: None,
            scope: to_otlp::outpost_scope("prometheus"),
            points: 0,
        }
    }

    /// The metric of `id`'s family in its resource and scope, created with `make` if new.
    fn metric(&mut self, id: &Arc<SeriesId>, make: impl FnOnce() -> Metric) -> &mut Metric {
        if let Some((last, (ri, si, mi))) = &self.last {
            if last.kind == id.kind
                && last.family == id.family
                && last.resource == id.resource
                && last.scope == id.scope
            {
                let (ri, si, mi) = (*ri, *si, *mi);
                return &mut self.resources[ri].1[si].metrics[mi];
            }
        }
        let (job, instance) = match &id.resource {
            Some((j, i)) => (j.as_str(), i.as_str()),
            None => (self.target.job.as_str(), self.target.instance.as_str()),
        };
        let ri = match self
            .resources
            .iter()
            .position(|((j, i), _)| j == job && i == instance)
        {
            Some(i) => i,
            None => {
                self.resources
                    .push(((job.to_owned(), instance.to_owned()), Vec::new()));
                self.resources.len() - 1
            }
        };
        let (name, version) = match &id.scope {
            Some((n, v)) => (n.as_str(), v.as_str()),
            None => (self.scope.name.as_str(), self.scope.version.as_str()),
        };
        let scopes = &mut self.resources[ri].1;
        let si = match scopes.iter().position(|s| {
            s.scope
                .as_ref()
                .is_some_and(|sc| sc.name == name && sc.version == version)
        }) {
            Some(i) => i,
            None => {
                scopes.push(ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: name.to_owned(),
                        version: version.to_owned(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                scopes.len() - 1
            }
        };
        let metrics = &mut scopes[si].metrics;
        let mi = *self
            .metric_index
            .entry((ri, si, id.family.clone(), id.kind))
            .or_insert_with(|| {
                metrics.push(make());
                metrics.len() - 1
            });
        self.last = Some((id.clone(), (ri, si, mi)));
        &mut metrics[mi]
    }

    fn gauge(
        &mut self,
        id: &Arc<SeriesId>,
        help: Option<&str>,
        ptype: &str,
        attrs: Vec<KeyValue>,
        time_ns: u64,
        value: f64,
    ) {
        self.points += 1;
        let m = self.metric(id, || Metric {
            name: id.family.clone(),
            description: help.unwrap_or_default().to_owned(),
            metadata: vec![string_kv("prometheus.type", ptype)],
            data: Some(metric::Data::Gauge(Gauge::default())),
            ..Default::default()
        });
        if let Some(metric::Data::Gauge(g)) = &mut m.data {
            g.data_points.push(double_point(attrs, 0, time_ns, value));
        }
    }

    fn sum(
        &mut self,
        id: &Arc<SeriesId>,
        help: Option<&str>,
        attrs: Vec<KeyValue>,
        start_ns: u64,
        time_ns: u64,
        value: f64,
    ) {
        self.points += 1;
        let m = self.metric(id, || {
            new_metric(id, help, "counter", empty_data(Kind::Counter))
        });
        if let Some(metric::Data::Sum(s)) = &mut m.data {
            s.data_points
                .push(double_point(attrs, start_ns, time_ns, value));
        }
    }

    fn histogram(&mut self, id: &Arc<SeriesId>, help: Option<&str>, point: HistogramDataPoint) {
        self.points += 1;
        let m = self.metric(id, || {
            new_metric(id, help, "histogram", empty_data(Kind::Histogram))
        });
        if let Some(metric::Data::Histogram(h)) = &mut m.data {
            h.data_points.push(point);
        }
    }

    fn summary(&mut self, id: &Arc<SeriesId>, help: Option<&str>, point: SummaryDataPoint) {
        self.points += 1;
        let m = self.metric(id, || {
            new_metric(id, help, "summary", empty_data(Kind::Summary))
        });
        if let Some(metric::Data::Summary(s)) = &mut m.data {
            s.data_points.push(point);
        }
    }

    /// A point with `NoRecordedValue` for the series `id`.
    fn stale(&mut self, id: &Arc<SeriesId>, start_ns: u64, time_ns: u64) {
        self.points += 1;
        let ptype = match id.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        };
        let m = self.metric(id, || new_metric(id, None, ptype, empty_data(id.kind)));
        let attrs = attributes(&id.attrs);
        match &mut m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.push(stale_point(attrs, 0, time_ns)),
            Some(metric::Data::Sum(s)) => s.data_points.push(stale_point(attrs, start_ns, time_ns)),
            Some(metric::Data::Histogram(h)) => h.data_points.push(HistogramDataPoint {
                attributes: attrs,
                start_time_unix_nano: start_ns,
                time_unix_nano: time_ns,
                flags: NO_RECORDED_VALUE,
                ..Default::default()
            }),
            Some(metric::Data::Summary(s)) => s.data_points.push(SummaryDataPoint {
                attributes: attrs,
                start_time_unix_nano: start_ns,
                time_unix_nano: time_ns,
                flags: NO_RECORDED_VALUE,
                ..Default::default()
            }),
            _ => self.points -= 1,
        }
    }

    fn finish(self) -> (Metrics, usize) {
        let target = self.target;
        let resource_metrics = self
            .resources
            .into_iter()
            .map(|((job, instance), scope_metrics)| {
                let own = job == target.job && instance == target.instance;
                let attributes = if own {
                    resource_attributes(
                        Some(&job),
                        Some(&instance),
                        Some(&target.endpoint),
                        &self.extra_resource,
                    )
                } else {
                    // A series that named its own job / instance (honor_labels) is not the target's.
                    resource_attributes(Some(&job), Some(&instance), None, &[])
                };
                ResourceMetrics {
                    resource: Some(Resource {
                        attributes,
                        ..Default::default()
                    }),
                    scope_metrics,
                    ..Default::default()
                }
            })
            .collect();
        (Metrics { resource_metrics }, self.points)
    }
}

fn new_metric(id: &SeriesId, help: Option<&str>, ptype: &str, data: metric::Data) -> Metric {
    Metric {
        name: id.family.clone(),
        description: help.unwrap_or_default().to_owned(),
        metadata: vec![string_kv("prometheus.type", ptype)],
        data: Some(data),
        ..Default::default()
    }
}

fn empty_data(kind: Kind) -> metric::Data {
    let cumulative = AggregationTemporality::Cumulative as i32;
    match kind {
        Kind::Gauge => metric::Data::Gauge(Gauge::default()),
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        }),
        Kind::Histogram => metric::Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: cumulative,
        }),
        Kind::Summary => metric::Data::Summary(Summary::default()),
    }
}

#[cfg(test)]
mod tests;
