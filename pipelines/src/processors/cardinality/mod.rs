//! Processor `cardinality_limit`: trims metric cardinality at the source, before it is queued and paid
//! for on the WAN link.
//!
//! Budgets: a global series limit (`max_series`), per-metric series limits (`metrics[].max_series`, by
//! name or regex), and per-label distinct-value limits (`value_limit`), with overrides and exclusions per
//! metric and per label (see `outpost_config::CardinalityLimitConfig` for how they resolve).
//!
//! Guarantees:
//! - A series is admitted once and then passes untouched (the fast path: one fingerprint and one hash
//!   lookup per data point). A new series is admitted only while every budget has room: then the metric
//!   holds at most `max_series - 1` admitted series plus its overflow series (the overflow series counts
//!   towards a metric's limit, as the OpenTelemetry SDK's cardinality limit does; with `drop_datapoint`
//!   the metric holds `max_series` series and no overflow). The global `max_series` bounds admitted
//!   series; each metric may add one overflow series to it.
//! - A point that does not fit is trimmed by the action of the budget it hit: `overflow` (attributes
//!   replaced by `otel.metric.overflow=true`), `drop_label` (the offending label removed; for a series
//!   budget, the metric's label with the most distinct values), or `drop_datapoint`. Trimmed points are
//!   combined into their new series by the rules of [`aggregate`]: sums and histogram buckets are
//!   conserved, cumulative counters stay monotonic.
//! - Once a series is the target of trimmed points, its own points are combined with them too, so one
//!   series never carries two competing values.
//! - A trimmed series of cumulative data keeps going to the series it was first combined into while it
//!   reports, even when a budget would now route it elsewhere or admit it: its total is then held by
//!   exactly one series.
//! - Series not seen for `series_ttl` free their place; so do label values (exact mode).
//! - Admitted series are written to the state store in one batch every `persist_interval` (and on
//!   shutdown), and read back at start, so a restart admits the same series instead of whichever come
//!   first. A crash loses at most one interval of admissions, which are then admitted anew.
//!
//! Every trimmed point is counted (`outpost_cardinality_trimmed_items_total{metric,label,action}`);
//! points the chain sees vanish are reported to it as dropped with reasons `cardinality_limit`
//! (drop_datapoint), `cardinality_merged` (combined into another point: their value is kept) and
//! `cardinality_bucket_mismatch`.
//!
//! Memory (exact mode): about 40 bytes per tracked series (a 16-byte map entry at the hash map's load
//! factor; measured by the cardinality bench), plus one entry per distinct value of each limited label,
//! plus, for cumulative data trimmed into a combined series, the last value and the route of each
//! original series (needed to add increases, not totals), which expire with `series_ttl` too.

mod aggregate;
mod persist;
mod track;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
    SummaryDataPoint,
};
use outpost_config::{CardinalityAction, CardinalityLimitConfig, TrackingMode};
use prometheus_client::metrics::gauge::Gauge;
use regex::Regex;
use serde_json::json;

use crate::batch::Batch;
use crate::processor::{Emit, Processor};
use crate::queue::StateStore;
use crate::signal::{Metrics, SignalData};
use crate::telemetry::CardinalityMetrics;

use aggregate::{combine, Contribution, CountSum, Exp, Hist, Num, Point, Rule, Running};
use persist::Store;
use track::{kv_hash, mix, set_hash, str_hash, Bloom, Series, Touch, Values};

/// The attribute of the overflow series, as the OpenTelemetry SDK names it.
pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";

/// Values remembered per label that has no `value_limit`, only to tell operators which label grows
/// (`/debug/cardinality`); beyond it new values are estimated from new series carrying the label.
const REPORT_VALUES: usize = 1024;

/// How often the report for `/debug/cardinality` is refreshed.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The span over which growth rates are measured.
const RATE_WINDOW: u32 = 60;

/// A growth counter with the count at the start of the current and of the previous window.
#[derive(Debug, Default, Clone, Copy)]
struct Growth {
    total: u64,
    window: (u32, u64),
    previous: Option<(u32, u64)>,
}

impl Growth {
    fn tick(&mut self, now: u32) {
        if now.saturating_sub(self.window.0) >= RATE_WINDOW {
            self.previous = Some(self.window);
            self.window = (now, self.total);
        }
    }
    fn per_second(&self, now: u32) -> f64 {
        let (t, c) = self.previous.unwrap_or(self.window);
        let dt = now.saturating_sub(t).max(1);
        (self.total - c) as f64 / f64::from(dt)
    }
}

struct LabelState {
    values: Values,
    limit: Option<u64>,
    action: CardinalityAction,
    excluded: bool,
    new_values: Growth,
}

struct MetricState {
    name: String,
    excluded: bool,
    /// Regular series this metric may have (`None`: no per-metric budget).
    limit: Option<u64>,
    configured_limit: Option<u64>,
    action: CardinalityAction,
    series: u64,
    labels: HashMap<String, LabelState>,
    /// Whether some label of this metric has a value_limit (its values are then refreshed per point).
    limited_labels: bool,
    /// Index of the `metrics:` entry that applies, if any.
    rule: Option<usize>,
    new_series: Growth,
    trimmed: u64,
    gauge: Option<Gauge>,
}

struct MetricRule {
    name: Option<String>,
    regex: Option<Regex>,
}

/// Combined-series state per data point type.
#[derive(Default)]
struct Runners {
    sums: HashMap<u64, Running<Num>>,
    hists: HashMap<u64, Running<Hist>>,
    exps: HashMap<u64, Running<Exp>>,
    summaries: HashMap<u64, Running<CountSum>>,
}

/// A data point type, with where its combined-series state lives.
trait Kind: Point + Default {
    fn running(r: &mut Runners) -> &mut HashMap<u64, Running<Self::A>>;
}

impl Kind for NumberDataPoint {
    fn running(r: &mut Runners) -> &mut HashMap<u64, Running<Num>> {
        &mut r.sums
    }
}
impl Kind for HistogramDataPoint {
    fn running(r: &mut Runners) -> &mut HashMap<u64, Running<Hist>> {
        &mut r.hists
    }
}
impl Kind for ExponentialHistogramDataPoint {
    fn running(r: &mut Runners) -> &mut HashMap<u64, Running<Exp>> {
        &mut r.exps
    }
}
impl Kind for SummaryDataPoint {
    fn running(r: &mut Runners) -> &mut HashMap<u64, Running<CountSum>> {
        &mut r.summaries
    }
}

/// A series that trimmed points are combined into.
struct Target {
    attrs: Vec<KeyValue>,
    /// Seconds-clock when last used.
    at: u32,
}

/// The route of an original series of cumulative data that was trimmed: it keeps going to the same
/// combined series for as long as it reports. A cumulative point carries its series' whole total, and
/// the combined series holds that total from the first point on; were a later point to go elsewhere
/// (the widest label changed, a value was freed, room opened for admission), the total would be held by
/// two series at once and counted twice downstream. Delta and gauge points need no route (each is
/// complete by itself), so a flood of trimmed delta series costs no memory.
struct Pin {
    target: u64,
    /// The budgets that trimmed it, counted again for each later point.
    reasons: Vec<(Option<String>, CardinalityAction)>,
    seen: u32,
}

enum Verdict {
    Pass,
    To { target: u64, attrs: Vec<KeyValue> },
    Drop,
}

/// Counts of one batch, turned into metrics once at its end.
#[derive(Default)]
struct Tally {
    trimmed: HashMap<(u32, Option<String>, CardinalityAction), u64>,
    dropped: usize,
    merged: usize,
    mismatched: usize,
}

/// Counts kept by the processor itself, for tests and benches.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub overflowed: u64,
    pub labels_dropped: u64,
    pub points_dropped: u64,
}

pub struct CardinalityLimit {
    pipeline: String,
    id: String,
    max_series: u64,
    action: CardinalityAction,
    value_limit: Option<u64>,
    ttl: u32,
    mode: TrackingMode,
    cache_size_per_key: u64,
    config: CardinalityLimitConfig,
    rules: Vec<MetricRule>,
    epoch: Instant,
    series: Series,
    global: u64,
    metric_ids: HashMap<String, u32>,
    metrics: Vec<MetricState>,
    /// Series that trimmed points were combined into.
    targets: HashMap<u64, Target>,
    /// Where each trimmed original series of cumulative data goes (see [`Pin`]).
    pins: HashMap<u64, Pin>,
    /// The budgets that trimmed the point being decided.
    reasons: Vec<(Option<String>, CardinalityAction)>,
    runners: Runners,
    store: Option<Store>,
    telemetry: CardinalityMetrics,
    persist_every: Duration,
    next_persist: Instant,
    next_report: Instant,
    /// Seconds-clock at the last expiry sweep / generation change.
    last_sweep: u32,
    scratch: Vec<u64>,
    stats: Stats,
}

impl CardinalityLimit {
    /// Builds processor `id` of `pipeline`; with `state`, admitted series are read back from and written
    /// to it under a key prefix naming both.
    pub fn new(
        cfg: &CardinalityLimitConfig,
        telemetry: CardinalityMetrics,
        (pipeline, id): (&str, &str),
        state: Option<StateStore>,
    ) -> Result<Self, String> {
        Self::new_at(cfg, telemetry, (pipeline, id), state, Instant::now())
    }

    pub fn new_at(
        cfg: &CardinalityLimitConfig,
        telemetry: CardinalityMetrics,
        (pipeline, id): (&str, &str),
        state: Option<StateStore>,
        now: Instant,
    ) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (i, m) in cfg.metrics.iter().enumerate() {
            let regex = match &m.name_regex {
                Some(re) => Some(Regex::new(&format!("^(?:{re})$")).map_err(|e| {
                    format!("metrics[{i}].name_regex: not a valid regular expression: {e}")
                })?),
                None => None,
            };
            rules.push(MetricRule {
                name: m.name.clone(),
                regex,
            });
        }
        let series = match cfg.mode {
            TrackingMode::Exact => Series::Exact(HashMap::new()),
            TrackingMode::Probabilistic => {
                // The two generations share the bound.
                let half = (cfg.max_memory.bytes() / 2).max(8);
                Series::Probabilistic {
                    current: Bloom::with_bytes(half),
                    previous: Bloom::with_bytes(half),
                    started: 0,
                }
            }
        };
        let persist_every = cfg.persist_interval.get().max(Duration::from_millis(10));
        let mut p = CardinalityLimit {
            pipeline: pipeline.to_owned(),
            id: id.to_owned(),
            max_series: cfg.max_series,
            action: cfg.action,
            value_limit: cfg.value_limit,
            ttl: u32::try_from(cfg.series_ttl.get().as_secs().max(1)).unwrap_or(u32::MAX),
            mode: cfg.mode,
            cache_size_per_key: cfg.cache_size_per_key.bytes(),
            config: cfg.clone(),
            rules,
            epoch: now,
            series,
            global: 0,
            metric_ids: HashMap::new(),
            metrics: Vec::new(),
            targets: HashMap::new(),
            pins: HashMap::new(),
            reasons: Vec::new(),
            runners: Runners::default(),
            store: None,
            telemetry,
            persist_every,
            next_persist: now + persist_every,
            next_report: now,
            last_sweep: 0,
            scratch: Vec::new(),
            stats: Stats::default(),
        };
        if let Some(state) = state.filter(|_| cfg.persist) {
            let store = Store::new(state, pipeline, id);
            store
                .load(&mut p)
                .map_err(|e| format!("cannot read admitted series from the state store: {e}"))?;
            p.store = Some(store);
        }
        Ok(p)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Series admitted and tracked now (exact mode; in probabilistic mode the count of this generation).
    pub fn tracked_series(&self) -> u64 {
        self.global
    }

    /// Series admitted for `metric`.
    pub fn metric_series(&self, metric: &str) -> u64 {
        self.metric_ids
            .get(metric)
            .map(|&i| self.metrics[i as usize].series)
            .unwrap_or(0)
    }

    fn secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    /// The state of `name`, created with its resolved settings on first sight; `None` if excluded.
    fn metric_id(&mut self, name: &str) -> Option<u32> {
        if let Some(&id) = self.metric_ids.get(name) {
            return (!self.metrics[id as usize].excluded).then_some(id);
        }
        let id = self.new_metric(name);
        (!self.metrics[id as usize].excluded).then_some(id)
    }

    fn new_metric(&mut self, name: &str) -> u32 {
        let rule = self.rules.iter().position(|r| {
            r.name.as_deref() == Some(name) || r.regex.as_ref().is_some_and(|re| re.is_match(name))
        });
        let entry = rule.map(|i| &self.config.metrics[i]);
        let action = entry.and_then(|e| e.action).unwrap_or(self.action);
        let configured_limit = entry.and_then(|e| e.max_series);
        // The overflow series takes one place of a metric's limit, as in the SDK.
        let limit = configured_limit.map(|n| match action {
            CardinalityAction::DropDatapoint => n,
            _ => n.saturating_sub(1),
        });
        let excluded = entry.is_some_and(|e| e.exclude);
        let limited_labels = entry.is_some_and(|e| {
            e.value_limit.is_some() || e.labels.values().any(|l| l.value_limit.is_some())
        }) || self.value_limit.is_some()
            || self.config.labels.values().any(|l| l.value_limit.is_some());
        let id = self.metrics.len() as u32;
        self.metrics.push(MetricState {
            name: name.to_owned(),
            excluded,
            limit,
            configured_limit,
            action,
            series: 0,
            labels: HashMap::new(),
            limited_labels,
            rule,
            new_series: Growth::default(),
            trimmed: 0,
            gauge: (!excluded).then(|| self.telemetry.tracked_series(name)),
        });
        self.metric_ids.insert(name.to_owned(), id);
        id
    }

    /// The state of label `key` of metric `mid`, created with its resolved settings on first sight.
    fn label(&mut self, mid: u32, key: &str) -> &mut LabelState {
        let m = &self.metrics[mid as usize];
        if !m.labels.contains_key(key) {
            let entry = m.rule.map(|i| &self.config.metrics[i]);
            let own = entry.and_then(|e| e.labels.get(key));
            let global = self.config.labels.get(key);
            let excluded = own.is_some_and(|l| l.exclude) || global.is_some_and(|l| l.exclude);
            let limit = own
                .and_then(|l| l.value_limit)
                .or(global.and_then(|l| l.value_limit))
                .or(entry.and_then(|e| e.value_limit))
                .or(self.value_limit)
                .filter(|_| !excluded);
            let action = own
                .and_then(|l| l.action)
                .or(global.and_then(|l| l.action))
                .or(entry.and_then(|e| e.action))
                .unwrap_or(self.action);
            let values = match self.mode {
                TrackingMode::Exact => Values::Exact {
                    seen: HashMap::new(),
                    cap: limit.map(|l| l as usize).unwrap_or(REPORT_VALUES),
                },
                TrackingMode::Probabilistic => Values::Bloom {
                    filter: Bloom::with_bytes(self.cache_size_per_key),
                    count: 0,
                },
            };
            self.metrics[mid as usize].labels.insert(
                key.to_owned(),
                LabelState {
                    values,
                    limit,
                    action,
                    excluded,
                    new_values: Growth::default(),
                },
            );
        }
        self.metrics[mid as usize]
            .labels
            .get_mut(key)
            .expect("inserted above")
    }

    fn has_room(&self, mid: u32) -> bool {
        let m = &self.metrics[mid as usize];
        m.limit.is_none_or(|l| m.series < l)
            && (self.max_series == 0 || self.global < self.max_series)
    }

    /// [`Processor::process`] at a given time (tests and benches drive the clock).
    pub fn process_at(&mut self, mut batch: Batch<Metrics>, now: Instant, out: &mut Emit<Metrics>) {
        let secs = self.secs(now);
        let mut tally = Tally::default();
        for rm in &mut batch.data.resource_metrics {
            let resource = rm
                .resource
                .as_ref()
                .map(|r| set_hash(&r.attributes.iter().map(kv_hash).collect::<Vec<_>>()))
                .unwrap_or(0);
            for sm in &mut rm.scope_metrics {
                let scope = sm
                    .scope
                    .as_ref()
                    .map(|s| mix(str_hash(&s.name), str_hash(&s.version)))
                    .unwrap_or(0);
                let base = mix(resource, scope);
                for m in &mut sm.metrics {
                    let Some(mid) = self.metric_id(&m.name) else {
                        continue;
                    };
                    let ctx = mix(base, str_hash(&m.name));
                    match m.data.as_mut() {
                        None => {}
                        Some(Data::Gauge(g)) => {
                            self.trim(mid, ctx, &mut g.data_points, Rule::Gauge, secs, &mut tally)
                        }
                        Some(Data::Sum(s)) => {
                            let rule = if s.aggregation_temporality
                                == AggregationTemporality::Delta as i32
                            {
                                Rule::Delta
                            } else {
                                Rule::Cumulative {
                                    monotonic: s.is_monotonic,
                                }
                            };
                            self.trim(mid, ctx, &mut s.data_points, rule, secs, &mut tally)
                        }
                        Some(Data::Histogram(h)) => {
                            let rule = temporality_rule(h.aggregation_temporality);
                            self.trim(mid, ctx, &mut h.data_points, rule, secs, &mut tally)
                        }
                        Some(Data::ExponentialHistogram(h)) => {
                            let rule = temporality_rule(h.aggregation_temporality);
                            self.trim(mid, ctx, &mut h.data_points, rule, secs, &mut tally)
                        }
                        Some(Data::Summary(s)) => self.trim(
                            mid,
                            ctx,
                            &mut s.data_points,
                            Rule::Cumulative { monotonic: true },
                            secs,
                            &mut tally,
                        ),
                    }
                }
            }
        }
        if tally.dropped + tally.merged + tally.mismatched > 0 {
            batch.data.prune_empty();
        }
        for ((mid, label, action), n) in tally.trimmed {
            let m = &mut self.metrics[mid as usize];
            m.trimmed += n;
            self.telemetry
                .trimmed(&m.name, label.as_deref().unwrap_or(""), action.as_str(), n);
            match action {
                CardinalityAction::Overflow => self.stats.overflowed += n,
                CardinalityAction::DropLabel => self.stats.labels_dropped += n,
                CardinalityAction::DropDatapoint => self.stats.points_dropped += n,
            }
        }
        out.dropped("cardinality_limit", tally.dropped);
        out.dropped("cardinality_merged", tally.merged);
        out.dropped("cardinality_bucket_mismatch", tally.mismatched);
        if batch.item_count() > 0 {
            out.push(batch);
        } else {
            batch.discard();
        }
    }

    fn trim<P: Kind>(
        &mut self,
        mid: u32,
        ctx: u64,
        points: &mut Vec<P>,
        rule: Rule,
        now: u32,
        tally: &mut Tally,
    ) {
        let pin = matches!(rule, Rule::Cumulative { .. });
        let mut verdicts: Vec<(usize, u64, Verdict)> = Vec::new();
        for (i, p) in points.iter().enumerate() {
            let (fp, v) = self.verdict(mid, ctx, p.attrs(), pin, now, tally);
            if !matches!(v, Verdict::Pass) {
                verdicts.push((i, fp, v));
            }
        }
        if verdicts.is_empty() {
            return;
        }
        let mut contributions = Vec::new();
        let mut remove = vec![false; points.len()];
        for (i, fp, v) in verdicts {
            remove[i] = true;
            match v {
                Verdict::Pass => {}
                Verdict::Drop => tally.dropped += 1,
                Verdict::To { target, attrs } => contributions.push(Contribution {
                    orig: fp,
                    target,
                    attrs,
                    point: std::mem::take(&mut points[i]),
                }),
            }
        }
        let mut i = 0;
        points.retain(|_| {
            i += 1;
            !remove[i - 1]
        });
        let n = contributions.len();
        let (combined, mismatched) =
            combine(contributions, rule, P::running(&mut self.runners), now);
        tally.mismatched += mismatched;
        tally.merged += n - mismatched - combined.len();
        points.extend(combined);
    }

    /// Decides one point: pass, combine into another series, or drop. Returns its series fingerprint.
    /// With `pin` (cumulative data), a trimmed series keeps its first route.
    fn verdict(
        &mut self,
        mid: u32,
        ctx: u64,
        attrs: &[KeyValue],
        pin: bool,
        now: u32,
        tally: &mut Tally,
    ) -> (u64, Verdict) {
        self.scratch.clear();
        self.scratch.extend(attrs.iter().map(kv_hash));
        let sum = set_hash(&self.scratch);
        let fp = mix(ctx, sum);
        if pin && !self.pins.is_empty() {
            if let Some(v) = self.follow_pin(mid, fp, now, tally) {
                return (fp, v);
            }
        }
        let routed = !self.targets.is_empty() && self.targets.contains_key(&fp);
        match self.series.touch(fp, now) {
            Touch::Known => {
                if self.metrics[mid as usize].limited_labels {
                    self.refresh_values(mid, attrs, now);
                }
            }
            Touch::Revived => {
                self.metrics[mid as usize].series += 1;
                self.global += 1;
            }
            Touch::Unknown if routed => {}
            Touch::Unknown => {
                // Reused from point to point: a flood of new series allocates nothing here.
                let mut reasons = std::mem::take(&mut self.reasons);
                reasons.clear();
                let v = self.admit_or_trim(mid, ctx, attrs, fp, sum, now, &mut reasons);
                for r in &reasons {
                    *tally.trimmed.entry((mid, r.0.clone(), r.1)).or_default() += 1;
                }
                if let (true, Verdict::To { target, .. }) = (pin, &v) {
                    let pinned = Pin {
                        target: *target,
                        reasons: reasons.clone(),
                        seen: now,
                    };
                    self.pins.insert(fp, pinned);
                }
                self.reasons = reasons;
                return (fp, v);
            }
        }
        if routed {
            return (fp, self.combine_into(fp, attrs.to_vec(), now));
        }
        (fp, Verdict::Pass)
    }

    /// The verdict for a series pinned to a combined series that is still live, counted as trimmed for
    /// the reasons it was first trimmed.
    fn follow_pin(&mut self, mid: u32, fp: u64, now: u32, tally: &mut Tally) -> Option<Verdict> {
        let p = self.pins.get_mut(&fp)?;
        let Some(t) = self.targets.get_mut(&p.target) else {
            self.pins.remove(&fp);
            return None;
        };
        p.seen = now;
        t.at = now;
        for r in &p.reasons {
            *tally.trimmed.entry((mid, r.0.clone(), r.1)).or_default() += 1;
        }
        Some(Verdict::To {
            target: p.target,
            attrs: t.attrs.clone(),
        })
    }

    fn refresh_values(&mut self, mid: u32, attrs: &[KeyValue], now: u32) {
        let m = &mut self.metrics[mid as usize];
        for (kv, h) in attrs.iter().zip(&self.scratch) {
            if let Some(l) = m.labels.get_mut(&kv.key) {
                if l.limit.is_some() {
                    l.values.refresh(*h, now);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn admit_or_trim(
        &mut self,
        mid: u32,
        ctx: u64,
        attrs: &[KeyValue],
        fp: u64,
        sum: u64,
        now: u32,
        reasons: &mut Vec<(Option<String>, CardinalityAction)>,
    ) -> Verdict {
        self.metrics[mid as usize].new_series.total += 1;
        // 1. Label value budgets.
        let hashes = std::mem::take(&mut self.scratch);
        let mut dropped_labels: Vec<usize> = Vec::new();
        let mut verdict = None;
        for (j, kv) in attrs.iter().enumerate() {
            let h = hashes[j];
            let l = self.label(mid, &kv.key);
            if l.excluded || l.values.contains(h) {
                continue;
            }
            l.new_values.total += 1;
            let Some(limit) = l.limit else {
                // Unlimited: remembered at first sight (capped), only to report how the label grows.
                l.values.insert(h, now);
                continue;
            };
            if l.values.len() < limit {
                continue;
            }
            let action = l.action;
            reasons.push((Some(kv.key.clone()), action));
            match action {
                CardinalityAction::DropDatapoint => {
                    verdict = Some(Verdict::Drop);
                    break;
                }
                CardinalityAction::Overflow => {
                    verdict = Some(self.overflow(ctx, now));
                    break;
                }
                CardinalityAction::DropLabel => dropped_labels.push(j),
            }
        }
        if let Some(v) = verdict {
            self.scratch = hashes;
            return v;
        }
        let (kept, kept_hashes, fp) = if dropped_labels.is_empty() {
            (attrs.to_vec(), hashes.clone(), fp)
        } else {
            let removed: u64 = dropped_labels
                .iter()
                .map(|&j| hashes[j])
                .fold(0, u64::wrapping_add);
            let keep = |j: &usize| !dropped_labels.contains(j);
            let kept: Vec<KeyValue> = (0..attrs.len())
                .filter(keep)
                .map(|j| attrs[j].clone())
                .collect();
            let kept_hashes: Vec<u64> = (0..attrs.len()).filter(keep).map(|j| hashes[j]).collect();
            (kept, kept_hashes, mix(ctx, sum.wrapping_sub(removed)))
        };
        self.scratch = hashes;
        let relabelled = !dropped_labels.is_empty();
        if relabelled && (self.series.is_known(fp) || self.targets.contains_key(&fp)) {
            self.series.touch(fp, now);
            return self.combine_into(fp, kept, now);
        }

        // 2. Series budgets.
        if !self.has_room(mid) {
            let action = self.metrics[mid as usize].action;
            reasons.push((None, action));
            return match action {
                CardinalityAction::DropDatapoint => Verdict::Drop,
                CardinalityAction::Overflow => self.overflow(ctx, now),
                CardinalityAction::DropLabel => {
                    match self.widest_label(mid, &kept) {
                        Some(j) => {
                            let rest: Vec<KeyValue> = kept
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| *i != j)
                                .map(|(_, kv)| kv.clone())
                                .collect();
                            let fp = mix(ctx, set_hash(&kept_hashes).wrapping_sub(kept_hashes[j]));
                            if self.series.is_known(fp) || self.targets.contains_key(&fp) {
                                self.series.touch(fp, now);
                                self.combine_into(fp, rest, now)
                            } else {
                                // The reduced series would be new too, and there is no room for it.
                                self.overflow(ctx, now)
                            }
                        }
                        None => self.overflow(ctx, now),
                    }
                }
            };
        }

        // 3. Admit.
        self.series.insert(fp, mid, now);
        self.global += 1;
        self.metrics[mid as usize].series += 1;
        for (kv, h) in kept.iter().zip(&kept_hashes) {
            let l = self.label(mid, &kv.key);
            if !l.excluded {
                l.values.insert(*h, now);
            }
        }
        if let Some(store) = &mut self.store {
            if matches!(self.series, Series::Exact(_)) {
                store.admitted(fp, &self.metrics[mid as usize].name, &kept, &kept_hashes);
            } else {
                store.mark_dirty();
            }
        }
        if relabelled {
            self.combine_into(fp, kept, now)
        } else {
            Verdict::Pass
        }
    }

    /// Among `attrs`, the label of metric `mid` with the most distinct values (not excluded).
    fn widest_label(&self, mid: u32, attrs: &[KeyValue]) -> Option<usize> {
        let m = &self.metrics[mid as usize];
        attrs
            .iter()
            .enumerate()
            .filter_map(|(j, kv)| {
                let l = m.labels.get(&kv.key)?;
                (!l.excluded).then(|| (j, l.values.len().max(l.new_values.total)))
            })
            .max_by_key(|(_, n)| *n)
            .map(|(j, _)| j)
    }

    fn combine_into(&mut self, target: u64, attrs: Vec<KeyValue>, now: u32) -> Verdict {
        match self.targets.get_mut(&target) {
            Some(t) => t.at = now,
            None => {
                let t = Target {
                    attrs: attrs.clone(),
                    at: now,
                };
                self.targets.insert(target, t);
            }
        }
        Verdict::To { target, attrs }
    }

    fn overflow(&mut self, ctx: u64, now: u32) -> Verdict {
        let kv = overflow_attribute();
        let target = mix(ctx, set_hash(&[kv_hash(&kv)]));
        self.combine_into(target, vec![kv], now)
    }

    /// Housekeeping: expiry, persistence, the report. Called on every deadline.
    pub fn tick(&mut self, now: Instant) {
        let secs = self.secs(now);
        if now >= self.next_persist {
            self.expire(secs);
            self.persist();
            self.next_persist = now + self.persist_every;
        }
        if now >= self.next_report {
            self.publish(secs);
            self.next_report = now + REPORT_EVERY;
        }
    }

    fn expire(&mut self, now: u32) {
        let cutoff = now.saturating_sub(self.ttl);
        let mut new_generation = false;
        match &mut self.series {
            Series::Exact(map) => {
                if cutoff > 0 {
                    let metrics = &mut self.metrics;
                    let global = &mut self.global;
                    let store = &mut self.store;
                    map.retain(|fp, seen| {
                        if seen.at >= cutoff {
                            return true;
                        }
                        if let Some(m) = metrics.get_mut(seen.metric as usize) {
                            m.series = m.series.saturating_sub(1);
                        }
                        *global = global.saturating_sub(1);
                        if let Some(s) = store.as_mut() {
                            s.expired(*fp);
                        }
                        false
                    });
                }
            }
            Series::Probabilistic {
                current,
                previous,
                started,
            } => {
                if now.saturating_sub(*started) >= self.ttl {
                    std::mem::swap(current, previous);
                    current.clear();
                    *started = now;
                    new_generation = true;
                    self.global = 0;
                    for m in &mut self.metrics {
                        m.series = 0;
                    }
                    if let Some(s) = self.store.as_mut() {
                        s.mark_dirty();
                    }
                }
            }
        }
        if cutoff > 0 || new_generation {
            for m in &mut self.metrics {
                for l in m.labels.values_mut() {
                    l.values.expire(cutoff, new_generation);
                }
            }
            self.targets.retain(|_, t| t.at >= cutoff);
            let targets = &self.targets;
            self.pins
                .retain(|_, p| p.seen >= cutoff && targets.contains_key(&p.target));
            let r = &mut self.runners;
            r.sums.retain(|_, s| s.expire(cutoff));
            r.hists.retain(|_, s| s.expire(cutoff));
            r.exps.retain(|_, s| s.expire(cutoff));
            r.summaries.retain(|_, s| s.expire(cutoff));
        }
        self.last_sweep = now;
    }

    /// Writes what changed since the last call to the state store, in one batch.
    pub fn persist(&mut self) {
        let Some(mut store) = self.store.take() else {
            return;
        };
        if let Err(e) = store.flush(self) {
            tracing::warn!(error = %e, "cardinality_limit: cannot write admitted series to the state store; will retry");
        }
        self.store = Some(store);
    }

    /// The worst offenders and the budgets, as `/debug/cardinality` shows them.
    pub fn report(&mut self, now: u32) -> serde_json::Value {
        let mut metrics: Vec<(f64, serde_json::Value)> = Vec::new();
        let mut labels: Vec<(f64, serde_json::Value)> = Vec::new();
        for m in &mut self.metrics {
            if m.excluded {
                continue;
            }
            m.new_series.tick(now);
            let rate = m.new_series.per_second(now);
            if let Some(g) = &m.gauge {
                g.set(i64::try_from(m.series).unwrap_or(i64::MAX));
            }
            metrics.push((
                rate,
                json!({
                    "metric": m.name,
                    "tracked_series": m.series,
                    "max_series": m.configured_limit,
                    "action": m.action.as_str(),
                    "new_series_per_second": rate,
                    "trimmed_points": m.trimmed,
                }),
            ));
            for (key, l) in &mut m.labels {
                if l.excluded {
                    continue;
                }
                l.new_values.tick(now);
                let rate = l.new_values.per_second(now);
                labels.push((
                    rate,
                    json!({
                        "metric": m.name,
                        "label": key,
                        "distinct_values": l.values.len(),
                        "distinct_values_capped": l.limit.is_none() && l.values.is_full(),
                        "value_limit": l.limit,
                        "action": l.action.as_str(),
                        "new_values_per_second": rate,
                    }),
                ));
            }
        }
        let by_rate = |a: &(f64, serde_json::Value), b: &(f64, serde_json::Value)| {
            b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal)
        };
        metrics.sort_by(by_rate);
        labels.sort_by(by_rate);
        json!({
            "mode": match self.mode { TrackingMode::Exact => "exact", TrackingMode::Probabilistic => "probabilistic" },
            "max_series": self.max_series,
            "tracked_series": self.global,
            "series_ttl_seconds": self.ttl,
            "worst_labels": labels.into_iter().take(10).map(|(_, v)| v).collect::<Vec<_>>(),
            "worst_metrics": metrics.into_iter().take(10).map(|(_, v)| v).collect::<Vec<_>>(),
        })
    }

    fn publish(&mut self, now: u32) {
        let mut report = self.report(now);
        if let Some(o) = report.as_object_mut() {
            o.insert("pipeline".into(), json!(self.pipeline));
            o.insert("processor".into(), json!(self.id));
        }
        self.telemetry.publish(report);
    }
}

fn temporality_rule(t: i32) -> Rule {
    if t == AggregationTemporality::Delta as i32 {
        Rule::Delta
    } else {
        Rule::Cumulative { monotonic: true }
    }
}

fn overflow_attribute() -> KeyValue {
    KeyValue {
        key: OVERFLOW_ATTRIBUTE.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(true)),
        }),
        ..Default::default()
    }
}

impl Processor<Metrics> for CardinalityLimit {
    fn process(&mut self, batch: Batch<Metrics>, out: &mut Emit<Metrics>) {
        self.process_at(batch, Instant::now(), out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.next_persist.min(self.next_report))
    }

    fn on_deadline(&mut self, now: Instant, _out: &mut Emit<Metrics>) {
        self.tick(now);
    }

    fn drain(&mut self, _out: &mut Emit<Metrics>) {
        self.persist();
    }
}

impl Drop for CardinalityLimit {
    fn drop(&mut self) {
        // A processor replaced by a reload no longer reports.
        self.telemetry.publish(serde_json::Value::Null);
    }
}
