//! How the data points of several original series are combined into one series (the overflow series, or
//! the series left once a label is dropped), per metric type.
//!
//! - Delta sums and delta histograms: the points of one batch that land in one series are added (values,
//!   counts, sums, every bucket). No state is kept.
//! - Cumulative sums, histograms and summaries: each original series' last cumulative value is kept, and
//!   the combined series carries a running total to which each new point adds its increase over its own
//!   series' last value. So the combined total always equals the sum of the originals' latest totals, and
//!   it never decreases when the originals don't. A monotonic original that goes down (its process
//!   restarted, or its start time changed) is a reset: its new value is added whole, and what it counted
//!   before the reset stays in the total — the combined counter stays monotonic and counts every
//!   increase once. Non-monotonic sums (up-down counters) add `new - last`, decreases included.
//! - Explicit-bound histograms merge bucket by bucket and need the same bounds; a point whose bounds
//!   differ from its combined series' is dropped and counted (`cardinality_bucket_mismatch`).
//! - Exponential histograms are brought to the coarser of the two scales (buckets folded pairwise, as an
//!   SDK downscales) and then added bucket by bucket; the zero bucket takes the larger threshold.
//! - Gauges: the point with the latest timestamp wins (on a tie, the one that came later in the batch).
//! - Summaries: `count` and `sum` follow the cumulative counter rule; quantiles of different series
//!   cannot be combined and are left out of the combined point.
//!
//! `min` and `max` of combined histograms are the minimum and maximum over the contributing points.
//! Exemplars are not carried over to combined points.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumValue;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, SummaryDataPoint,
};

/// A value that can be combined: the part of a data point that aggregation acts on.
pub(super) trait Acc: Clone {
    /// The increase from `last` to `self`, or `None` when `self` cannot follow `last` (a reset).
    fn increase_since(&self, last: &Self, monotonic: bool) -> Option<Self>;
    /// Adds `other`; `Err` when the two cannot be combined (different histogram bounds).
    fn add(&mut self, other: &Self) -> Result<(), Mismatch>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mismatch;

/// A data point type the processor can trim.
pub(super) trait Point: Clone {
    type A: Acc;
    fn attrs(&self) -> &[KeyValue];
    fn start(&self) -> u64;
    fn time(&self) -> u64;
    fn acc(&self) -> Self::A;
    /// A new point for a combined series.
    fn build(acc: &Self::A, attrs: Vec<KeyValue>, start: u64, time: u64) -> Self;
}

// ---------------------------------------------------------------------------------------------------------
// Numbers

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    Int(i64),
    Double(f64),
}

impl Num {
    pub(super) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Double(d) => d,
        }
    }
}

impl Acc for Num {
    fn increase_since(&self, last: &Self, monotonic: bool) -> Option<Self> {
        let d = match (*self, *last) {
            (Num::Int(a), Num::Int(b)) => match a.checked_sub(b) {
                Some(d) => Num::Int(d),
                None => Num::Double(a as f64 - b as f64),
            },
            (a, b) => Num::Double(a.as_f64() - b.as_f64()),
        };
        if monotonic && d.as_f64() < 0.0 {
            None
        } else {
            Some(d)
        }
    }
    fn add(&mut self, other: &Self) -> Result<(), Mismatch> {
        *self = match (*self, *other) {
            (Num::Int(a), Num::Int(b)) => match a.checked_add(b) {
                Some(s) => Num::Int(s),
                None => Num::Double(a as f64 + b as f64),
            },
            (a, b) => Num::Double(a.as_f64() + b.as_f64()),
        };
        Ok(())
    }
}

impl Point for NumberDataPoint {
    type A = Num;
    fn attrs(&self) -> &[KeyValue] {
        &self.attributes
    }
    fn start(&self) -> u64 {
        self.start_time_unix_nano
    }
    fn time(&self) -> u64 {
        self.time_unix_nano
    }
    fn acc(&self) -> Num {
        match self.value {
            Some(NumValue::AsInt(i)) => Num::Int(i),
            Some(NumValue::AsDouble(d)) => Num::Double(d),
            None => Num::Int(0),
        }
    }
    fn build(acc: &Num, attrs: Vec<KeyValue>, start: u64, time: u64) -> Self {
        NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: start,
            time_unix_nano: time,
            value: Some(match *acc {
                Num::Int(i) => NumValue::AsInt(i),
                Num::Double(d) => NumValue::AsDouble(d),
            }),
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Explicit-bound histograms

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Hist {
    count: u64,
    sum: Option<f64>,
    bounds: Vec<f64>,
    buckets: Vec<u64>,
    min: Option<f64>,
    max: Option<f64>,
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn sub_counts(now: &[u64], last: &[u64]) -> Option<Vec<u64>> {
    now.iter()
        .zip(last)
        .map(|(a, b)| a.checked_sub(*b))
        .collect()
}

impl Acc for Hist {
    fn increase_since(&self, last: &Self, _monotonic: bool) -> Option<Self> {
        if self.bounds != last.bounds || self.buckets.len() != last.buckets.len() {
            return None;
        }
        Some(Hist {
            count: self.count.checked_sub(last.count)?,
            sum: match (self.sum, last.sum) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            },
            bounds: self.bounds.clone(),
            buckets: sub_counts(&self.buckets, &last.buckets)?,
            min: self.min,
            max: self.max,
        })
    }
    fn add(&mut self, other: &Self) -> Result<(), Mismatch> {
        if self.count == 0 && self.buckets.iter().all(|&c| c == 0) && self.bounds.is_empty() {
            // An empty total takes the layout of the first point added to it.
            self.bounds = other.bounds.clone();
            self.buckets = vec![0; other.buckets.len()];
        }
        if self.bounds != other.bounds || self.buckets.len() != other.buckets.len() {
            return Err(Mismatch);
        }
        self.count += other.count;
        self.sum = match (self.sum, other.sum) {
            (Some(a), Some(b)) => Some(a + b),
            (Some(a), None) | (None, Some(a)) => Some(a),
            (None, None) => None,
        };
        for (t, o) in self.buckets.iter_mut().zip(&other.buckets) {
            *t += o;
        }
        self.min = min_opt(self.min, other.min);
        self.max = max_opt(self.max, other.max);
        Ok(())
    }
}

impl Point for HistogramDataPoint {
    type A = Hist;
    fn attrs(&self) -> &[KeyValue] {
        &self.attributes
    }
    fn start(&self) -> u64 {
        self.start_time_unix_nano
    }
    fn time(&self) -> u64 {
        self.time_unix_nano
    }
    fn acc(&self) -> Hist {
        Hist {
            count: self.count,
            sum: self.sum,
            bounds: self.explicit_bounds.clone(),
            buckets: self.bucket_counts.clone(),
            min: self.min,
            max: self.max,
        }
    }
    fn build(acc: &Hist, attrs: Vec<KeyValue>, start: u64, time: u64) -> Self {
        HistogramDataPoint {
            attributes: attrs,
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: acc.count,
            sum: acc.sum,
            bucket_counts: acc.buckets.clone(),
            explicit_bounds: acc.bounds.clone(),
            min: acc.min,
            max: acc.max,
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Exponential histograms

/// One side's buckets: `counts[i]` counts bucket index `offset + i`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Dense {
    offset: i32,
    counts: Vec<u64>,
}

impl Dense {
    fn from(b: &Option<Buckets>) -> Dense {
        b.as_ref()
            .map(|b| Dense {
                offset: b.offset,
                counts: b.bucket_counts.clone(),
            })
            .unwrap_or_default()
    }

    fn to_buckets(&self) -> Option<Buckets> {
        Some(Buckets {
            offset: self.offset,
            bucket_counts: self.counts.clone(),
        })
    }

    /// The same counts at a scale `by` steps coarser: index i becomes i >> by (floor, also for
    /// negative indexes), so 2^by neighbouring buckets fold into one.
    fn downscale(&self, by: u32) -> Dense {
        if by == 0 || self.counts.is_empty() {
            return self.clone();
        }
        let by = by.min(31);
        let first = self.offset >> by;
        let last = (self.offset + self.counts.len() as i32 - 1) >> by;
        let mut counts = vec![0u64; (last - first + 1) as usize];
        for (i, c) in self.counts.iter().enumerate() {
            let idx = (self.offset + i as i32) >> by;
            counts[(idx - first) as usize] += c;
        }
        Dense {
            offset: first,
            counts,
        }
    }

    /// Bucket count at absolute index `idx`.
    fn at(&self, idx: i32) -> u64 {
        let i = idx - self.offset;
        if i < 0 {
            return 0;
        }
        self.counts.get(i as usize).copied().unwrap_or(0)
    }

    fn span(&self) -> Option<(i32, i32)> {
        (!self.counts.is_empty()).then(|| (self.offset, self.offset + self.counts.len() as i32 - 1))
    }

    /// `self + sign * other` over the union of both index ranges; `None` if a count would go negative.
    fn combine(&self, other: &Dense, subtract: bool) -> Option<Dense> {
        let (lo, hi) = match (self.span(), other.span()) {
            (None, None) => return Some(Dense::default()),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (Some(a), Some(b)) => (a.0.min(b.0), a.1.max(b.1)),
        };
        let mut counts = Vec::with_capacity((hi - lo + 1) as usize);
        for idx in lo..=hi {
            let (a, b) = (self.at(idx), other.at(idx));
            counts.push(if subtract { a.checked_sub(b)? } else { a + b });
        }
        Some(Dense { offset: lo, counts })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Exp {
    /// `None` for a total nothing was added to yet.
    scale: Option<i32>,
    count: u64,
    sum: Option<f64>,
    zero_count: u64,
    zero_threshold: f64,
    positive: Dense,
    negative: Dense,
    min: Option<f64>,
    max: Option<f64>,
}

impl Exp {
    /// Both sides at the coarser of the two scales.
    fn aligned(&self, other: &Exp) -> (Exp, Exp) {
        let (a, b) = (
            self.scale.unwrap_or(i32::MAX),
            other.scale.unwrap_or(i32::MAX),
        );
        let s = a.min(b);
        (self.at_scale(s), other.at_scale(s))
    }

    fn at_scale(&self, s: i32) -> Exp {
        let Some(cur) = self.scale else {
            let mut e = self.clone();
            e.scale = Some(s);
            return e;
        };
        let by = (cur - s).max(0) as u32;
        Exp {
            scale: Some(s),
            positive: self.positive.downscale(by),
            negative: self.negative.downscale(by),
            ..self.clone()
        }
    }
}

impl Acc for Exp {
    fn increase_since(&self, last: &Self, _monotonic: bool) -> Option<Self> {
        let (now, last) = self.aligned(last);
        Some(Exp {
            scale: now.scale,
            count: now.count.checked_sub(last.count)?,
            sum: match (now.sum, last.sum) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            },
            zero_count: now.zero_count.checked_sub(last.zero_count)?,
            zero_threshold: now.zero_threshold,
            positive: now.positive.combine(&last.positive, true)?,
            negative: now.negative.combine(&last.negative, true)?,
            min: now.min,
            max: now.max,
        })
    }
    fn add(&mut self, other: &Self) -> Result<(), Mismatch> {
        let (mut a, b) = self.aligned(other);
        a.count += b.count;
        a.sum = match (a.sum, b.sum) {
            (Some(x), Some(y)) => Some(x + y),
            (Some(x), None) | (None, Some(x)) => Some(x),
            (None, None) => None,
        };
        a.zero_count += b.zero_count;
        a.zero_threshold = a.zero_threshold.max(b.zero_threshold);
        a.positive = a.positive.combine(&b.positive, false).ok_or(Mismatch)?;
        a.negative = a.negative.combine(&b.negative, false).ok_or(Mismatch)?;
        a.min = min_opt(a.min, b.min);
        a.max = max_opt(a.max, b.max);
        *self = a;
        Ok(())
    }
}

impl Point for ExponentialHistogramDataPoint {
    type A = Exp;
    fn attrs(&self) -> &[KeyValue] {
        &self.attributes
    }
    fn start(&self) -> u64 {
        self.start_time_unix_nano
    }
    fn time(&self) -> u64 {
        self.time_unix_nano
    }
    fn acc(&self) -> Exp {
        Exp {
            scale: Some(self.scale),
            count: self.count,
            sum: self.sum,
            zero_count: self.zero_count,
            zero_threshold: self.zero_threshold,
            positive: Dense::from(&self.positive),
            negative: Dense::from(&self.negative),
            min: self.min,
            max: self.max,
        }
    }
    fn build(acc: &Exp, attrs: Vec<KeyValue>, start: u64, time: u64) -> Self {
        ExponentialHistogramDataPoint {
            attributes: attrs,
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: acc.count,
            sum: acc.sum,
            scale: acc.scale.unwrap_or(0),
            zero_count: acc.zero_count,
            positive: acc.positive.to_buckets(),
            negative: acc.negative.to_buckets(),
            min: acc.min,
            max: acc.max,
            zero_threshold: acc.zero_threshold,
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Summaries

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CountSum {
    count: u64,
    sum: f64,
}

impl Acc for CountSum {
    fn increase_since(&self, last: &Self, _monotonic: bool) -> Option<Self> {
        Some(CountSum {
            count: self.count.checked_sub(last.count)?,
            sum: self.sum - last.sum,
        })
    }
    fn add(&mut self, other: &Self) -> Result<(), Mismatch> {
        self.count += other.count;
        self.sum += other.sum;
        Ok(())
    }
}

impl Point for SummaryDataPoint {
    type A = CountSum;
    fn attrs(&self) -> &[KeyValue] {
        &self.attributes
    }
    fn start(&self) -> u64 {
        self.start_time_unix_nano
    }
    fn time(&self) -> u64 {
        self.time_unix_nano
    }
    fn acc(&self) -> CountSum {
        CountSum {
            count: self.count,
            sum: self.sum,
        }
    }
    fn build(acc: &CountSum, attrs: Vec<KeyValue>, start: u64, time: u64) -> Self {
        SummaryDataPoint {
            attributes: attrs,
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: acc.count,
            sum: acc.sum,
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Running totals of cumulative combined series

/// How the points of one combined series are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    /// Latest timestamp wins.
    Gauge,
    /// Added within the batch; nothing kept.
    Delta,
    /// Running total of the originals' increases.
    Cumulative { monotonic: bool },
}

struct Last<A> {
    value: A,
    start: u64,
    seen: u32,
}

/// What a cumulative combined series remembers between batches.
pub(super) struct Running<A> {
    total: Option<A>,
    start: u64,
    originals: HashMap<u64, Last<A>>,
    pub(super) seen: u32,
}

impl<A: Acc> Running<A> {
    pub(super) fn new() -> Self {
        Self {
            total: None,
            start: 0,
            originals: HashMap::new(),
            seen: 0,
        }
    }

    /// Adds the increase of original series `orig` shown by `value`.
    fn observe(
        &mut self,
        orig: u64,
        value: A,
        start: u64,
        now: u32,
        monotonic: bool,
    ) -> Result<(), Mismatch> {
        let increase = match self.originals.get(&orig) {
            // A changed start time on a monotonic series is a restart: count it from zero.
            Some(last) if !(monotonic && start != 0 && last.start != 0 && start != last.start) => {
                value
                    .increase_since(&last.value, monotonic)
                    .unwrap_or_else(|| value.clone())
            }
            _ => value.clone(),
        };
        match &mut self.total {
            Some(t) => t.add(&increase)?,
            None => self.total = Some(increase),
        }
        if self.start == 0 || (start != 0 && start < self.start) {
            self.start = start;
        }
        self.seen = now;
        self.originals.insert(
            orig,
            Last {
                value,
                start,
                seen: now,
            },
        );
        Ok(())
    }

    /// Forgets originals not seen since `cutoff`. Returns whether anything is left.
    pub(super) fn expire(&mut self, cutoff: u32) -> bool {
        self.originals.retain(|_, l| l.seen >= cutoff);
        self.seen >= cutoff
    }
}

/// One point headed for a combined series.
pub(super) struct Contribution<P> {
    pub orig: u64,
    pub target: u64,
    pub attrs: Vec<KeyValue>,
    pub point: P,
}

/// Combines `contributions` into one point per target series, in the order targets first appear.
/// `running` holds the cumulative state per target. Returns the combined points and how many
/// contributions were dropped for a bucket layout mismatch.
pub(super) fn combine<P: Point>(
    contributions: Vec<Contribution<P>>,
    rule: Rule,
    running: &mut HashMap<u64, Running<P::A>>,
    now: u32,
) -> (Vec<P>, usize) {
    struct Out<P: Point> {
        attrs: Vec<KeyValue>,
        start: u64,
        time: u64,
        acc: Option<P::A>,
        latest: Option<P>,
        contributed: bool,
    }
    let mut order: Vec<u64> = Vec::new();
    let mut outs: HashMap<u64, Out<P>> = HashMap::new();
    let mut mismatched = 0;
    for c in contributions {
        let out = outs.entry(c.target).or_insert_with(|| {
            order.push(c.target);
            Out {
                attrs: c.attrs,
                start: 0,
                time: 0,
                acc: None,
                latest: None,
                contributed: false,
            }
        });
        let (start, time) = (c.point.start(), c.point.time());
        let ok = match rule {
            Rule::Gauge => {
                if out.latest.as_ref().is_none_or(|l| time >= l.time()) {
                    out.latest = Some(c.point);
                }
                true
            }
            Rule::Delta => {
                let v = c.point.acc();
                match &mut out.acc {
                    Some(a) => a.add(&v).is_ok(),
                    None => {
                        out.acc = Some(v);
                        true
                    }
                }
            }
            Rule::Cumulative { monotonic } => running
                .entry(c.target)
                .or_insert_with(Running::new)
                .observe(c.orig, c.point.acc(), start, now, monotonic)
                .is_ok(),
        };
        if !ok {
            mismatched += 1;
            continue;
        }
        out.contributed = true;
        if out.start == 0 || (start != 0 && start < out.start) {
            out.start = start;
        }
        out.time = out.time.max(time);
    }
    let mut points = Vec::with_capacity(order.len());
    for target in order {
        let Some(out) = outs.remove(&target).filter(|o| o.contributed) else {
            continue;
        };
        match rule {
            Rule::Gauge => {
                if let Some(mut p) = out.latest {
                    let acc = p.acc();
                    p = P::build(&acc, out.attrs, p.start(), p.time());
                    points.push(p);
                }
            }
            Rule::Delta => {
                if let Some(acc) = out.acc {
                    points.push(P::build(&acc, out.attrs, out.start, out.time));
                }
            }
            Rule::Cumulative { .. } => {
                if let Some(r) = running.get(&target) {
                    if let Some(total) = &r.total {
                        points.push(P::build(total, out.attrs, r.start, out.time));
                    }
                }
            }
        }
    }
    (points, mismatched)
}
