//! Sampling policies, built from their config once and evaluated per trace at decision time.
//!
//! Each policy gives its own verdict ([`Verdict`]); [`combine`] turns the verdicts of all top-level
//! policies into the trace's decision as the OpenTelemetry Collector does: a `drop` that matches vetoes,
//! an inverted match that fails vetoes, otherwise any policy that samples keeps the trace.

use std::time::Instant;

use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use outpost_config::{PolicyConfig, PolicyType};

/// A condition on one span, or on the attributes of the resource it came with. A trace meets it when
/// any of its spans (or their resources) does, so it is evaluated once per span as the span arrives and
/// the trace keeps one bit: policies decide on that summary and a held span is never decoded to be
/// judged.
#[derive(Debug)]
pub enum Predicate {
    /// The span's status code is one of these.
    Status(Vec<i32>),
    /// The attribute `key` is a number in `min..=max`.
    Numeric { key: String, min: i64, max: i64 },
    /// The attribute `key` is a string equal to one of `exact` or matching one of `regexes`.
    Strings {
        key: String,
        exact: Vec<String>,
        regexes: Vec<regex::Regex>,
    },
    /// The attribute `key` is this boolean.
    Boolean { key: String, value: bool },
    /// The span's W3C trace state holds `key` with one of `values`.
    TraceState { key: String, values: Vec<String> },
}

impl Predicate {
    fn on_value(&self, v: &Value) -> bool {
        match (self, v) {
            (Predicate::Numeric { min, max, .. }, Value::IntValue(i)) => (*min..=*max).contains(i),
            (Predicate::Numeric { min, max, .. }, Value::DoubleValue(d)) => {
                *d >= *min as f64 && *d <= *max as f64
            }
            (Predicate::Strings { exact, regexes, .. }, Value::StringValue(s)) => {
                exact.iter().any(|e| e == s) || regexes.iter().any(|r| r.is_match(s))
            }
            (Predicate::Boolean { value, .. }, Value::BoolValue(b)) => b == value,
            _ => false,
        }
    }

    fn key(&self) -> Option<&str> {
        match self {
            Predicate::Numeric { key, .. }
            | Predicate::Strings { key, .. }
            | Predicate::Boolean { key, .. } => Some(key),
            Predicate::Status(_) | Predicate::TraceState { .. } => None,
        }
    }

    /// Whether `span` meets this condition by itself.
    pub fn on_span(&self, span: &Span) -> bool {
        match self {
            Predicate::Status(codes) => {
                codes.contains(&span.status.as_ref().map_or(0, |st| st.code))
            }
            Predicate::TraceState { key, values } => span.trace_state.split(',').any(|kv| {
                kv.trim()
                    .split_once('=')
                    .is_some_and(|(k, v)| k == key && values.iter().any(|x| x == v))
            }),
            _ => self.on_attributes(&span.attributes),
        }
    }

    /// Whether a resource with these attributes meets this condition (attribute conditions only).
    pub fn on_attributes(&self, attrs: &[KeyValue]) -> bool {
        self.key()
            .and_then(|key| find(key, attrs))
            .is_some_and(|v| self.on_value(v))
    }
}

fn find<'a>(key: &str, attrs: &'a [KeyValue]) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// Which predicates a trace (or a resource) has met, one bit each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hits {
    first: u64,
    /// Bits 64 and up, for configurations with more than 64 predicates (empty, so unallocated, else).
    rest: Vec<u64>,
}

impl Hits {
    pub fn get(&self, i: usize) -> bool {
        if i < 64 {
            self.first & (1 << i) != 0
        } else {
            let i = i - 64;
            self.rest
                .get(i / 64)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
        }
    }

    pub fn set(&mut self, i: usize) {
        if i < 64 {
            self.first |= 1 << i;
        } else {
            let i = i - 64;
            if self.rest.len() <= i / 64 {
                self.rest.resize(i / 64 + 1, 0);
            }
            self.rest[i / 64] |= 1 << (i % 64);
        }
    }

    pub fn union(&mut self, other: &Hits) {
        self.first |= other.first;
        if self.rest.len() < other.rest.len() {
            self.rest.resize(other.rest.len(), 0);
        }
        for (a, b) in self.rest.iter_mut().zip(&other.rest) {
            *a |= b;
        }
    }

    /// The predicates `attrs` meets as a resource's attributes.
    pub fn of_resource(preds: &[Predicate], attrs: &[KeyValue]) -> Hits {
        let mut h = Hits::default();
        for (i, p) in preds.iter().enumerate() {
            if p.on_attributes(attrs) {
                h.set(i);
            }
        }
        h
    }
}

/// What the policies look at: a summary of one trace's spans, kept up to date as they arrive.
#[derive(Debug, Clone)]
pub struct Summary {
    pub spans: u64,
    /// The trace's size as OTLP-encoded spans.
    pub encoded_bytes: u64,
    /// Earliest span start and latest span end (Unix ns).
    pub start: u64,
    pub end: u64,
    pub hits: Hits,
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            spans: 0,
            encoded_bytes: 0,
            start: u64::MAX,
            end: 0,
            hits: Hits::default(),
        }
    }
}

impl Summary {
    /// Takes `span` (of `encoded` bytes as sent) into the summary.
    pub fn add(&mut self, span: &Span, encoded: u64, preds: &[Predicate]) {
        self.spans += 1;
        self.encoded_bytes += encoded;
        self.start = self.start.min(span.start_time_unix_nano);
        self.end = self.end.max(span.end_time_unix_nano);
        for (i, p) in preds.iter().enumerate() {
            if !self.hits.get(i) && p.on_span(span) {
                self.hits.set(i);
            }
        }
    }

    /// Takes the summary of more spans of the same trace in.
    pub fn merge(&mut self, other: &Summary) {
        self.spans += other.spans;
        self.encoded_bytes += other.encoded_bytes;
        self.start = self.start.min(other.start);
        self.end = self.end.max(other.end);
        self.hits.union(&other.hits);
    }

    fn duration_ms(&self) -> u64 {
        if self.spans == 0 {
            0
        } else {
            self.end.saturating_sub(self.start) / 1_000_000
        }
    }
}

/// A trace as policies see it.
pub struct TraceView<'a> {
    pub trace_id: &'a [u8],
    pub summary: &'a Summary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Sampled,
    NotSampled,
    /// An inverted match did not match: keep, unless another policy says no.
    InvertSampled,
    /// An inverted match matched: do not keep, whatever other policies say.
    InvertNotSampled,
    /// A `drop` policy matched: do not keep.
    Dropped,
}

impl Verdict {
    pub fn samples(self) -> bool {
        matches!(self, Verdict::Sampled | Verdict::InvertSampled)
    }
}

/// A spans-per-second allowance per wall-clock second.
#[derive(Debug)]
struct PerSecond {
    limit: u64,
    second: Option<Instant>,
    used: u64,
}

impl PerSecond {
    fn new(limit: u64) -> Self {
        Self {
            limit,
            second: None,
            used: 0,
        }
    }
    fn roll(&mut self, now: Instant) {
        if self
            .second
            .is_none_or(|s| now.duration_since(s).as_secs() >= 1)
        {
            self.second = Some(now);
            self.used = 0;
        }
    }
    fn fits(&mut self, now: Instant, n: u64) -> bool {
        self.roll(now);
        self.used + n <= self.limit
    }
    fn take(&mut self, now: Instant, n: u64) -> bool {
        if self.fits(now, n) {
            self.used += n;
            true
        } else {
            false
        }
    }
}

enum Kind {
    Always,
    Latency {
        lower: u64,
        upper: u64,
    },
    /// One of the span predicates: status_code, numeric/string/boolean attribute, trace_state.
    Matches {
        predicate: usize,
        invert: bool,
    },
    Probabilistic {
        salt: String,
        threshold: u64,
    },
    RateLimit(PerSecond),
    BytesLimit {
        rate: f64,
        burst: f64,
        tokens: f64,
        last: Option<Instant>,
    },
    SpanCount {
        min: u64,
        max: u64,
    },
    And(Vec<Policy>),
    Composite {
        subs: Vec<(Policy, PerSecond)>,
        total: PerSecond,
    },
    Drop(Vec<Policy>),
    Not(Box<Policy>),
}

/// One configured policy, ready to evaluate.
pub struct Policy {
    pub name: String,
    kind: Kind,
}

/// Builds a policy, adding the span predicates it needs to `preds`. Config validation has already
/// checked it, so what remains impossible (a regex that does not compile) is an error string for the
/// topology to report.
pub fn build(cfg: &PolicyConfig, preds: &mut Vec<Predicate>) -> Result<Policy, String> {
    let mut leaf = |p: Predicate, invert: bool| {
        preds.push(p);
        Kind::Matches {
            predicate: preds.len() - 1,
            invert,
        }
    };
    let missing = || {
        format!(
            "policy '{}': its `{:?}` block is missing",
            cfg.name, cfg.kind
        )
    };
    let kind = match cfg.kind {
        PolicyType::AlwaysSample => Kind::Always,
        PolicyType::Latency => {
            let l = cfg.latency.as_ref().ok_or_else(missing)?;
            Kind::Latency {
                lower: l.threshold_ms,
                upper: l.upper_threshold_ms,
            }
        }
        PolicyType::NumericAttribute => {
            let n = cfg.numeric_attribute.as_ref().ok_or_else(missing)?;
            leaf(
                Predicate::Numeric {
                    key: n.key.clone(),
                    min: n.min_value.unwrap_or(i64::MIN),
                    max: n.max_value.unwrap_or(i64::MAX),
                },
                n.invert_match,
            )
        }
        PolicyType::Probabilistic => {
            let p = cfg.probabilistic.as_ref().ok_or_else(missing)?;
            let frac = (p.sampling_percentage / 100.0).clamp(0.0, 1.0);
            Kind::Probabilistic {
                salt: p.hash_salt.clone(),
                threshold: if frac >= 1.0 {
                    u64::MAX
                } else {
                    (frac * u64::MAX as f64) as u64
                },
            }
        }
        PolicyType::StatusCode => {
            let s = cfg.status_code.as_ref().ok_or_else(missing)?;
            let codes = Predicate::Status(
                s.status_codes
                    .iter()
                    .map(|c| match c.as_str() {
                        "OK" => Ok(1),
                        "ERROR" => Ok(2),
                        "UNSET" => Ok(0),
                        other => Err(format!(
                            "policy '{}': unknown status code '{other}'",
                            cfg.name
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            );
            leaf(codes, false)
        }
        PolicyType::StringAttribute => {
            let s = cfg.string_attribute.as_ref().ok_or_else(missing)?;
            let (exact, regexes) = if s.enabled_regex_matching {
                let res = s
                    .values
                    .iter()
                    .map(|v| {
                        regex::Regex::new(v)
                            .map_err(|e| format!("policy '{}': regex '{v}': {e}", cfg.name))
                    })
                    .collect::<Result<_, _>>()?;
                (Vec::new(), res)
            } else {
                (s.values.clone(), Vec::new())
            };
            leaf(
                Predicate::Strings {
                    key: s.key.clone(),
                    exact,
                    regexes,
                },
                s.invert_match,
            )
        }
        PolicyType::BooleanAttribute => {
            let b = cfg.boolean_attribute.as_ref().ok_or_else(missing)?;
            leaf(
                Predicate::Boolean {
                    key: b.key.clone(),
                    value: b.value,
                },
                b.invert_match,
            )
        }
        PolicyType::RateLimiting => {
            let r = cfg.rate_limiting.as_ref().ok_or_else(missing)?;
            Kind::RateLimit(PerSecond::new(r.spans_per_second))
        }
        PolicyType::BytesLimiting => {
            let b = cfg.bytes_limiting.as_ref().ok_or_else(missing)?;
            let burst = b.burst_capacity.unwrap_or(b.bytes_per_second * 2) as f64;
            Kind::BytesLimit {
                rate: b.bytes_per_second as f64,
                burst,
                tokens: burst,
                last: None,
            }
        }
        PolicyType::SpanCount => {
            let s = cfg.span_count.as_ref().ok_or_else(missing)?;
            Kind::SpanCount {
                min: s.min_spans,
                max: s.max_spans,
            }
        }
        PolicyType::TraceState => {
            let t = cfg.trace_state.as_ref().ok_or_else(missing)?;
            leaf(
                Predicate::TraceState {
                    key: t.key.clone(),
                    values: t.values.clone(),
                },
                false,
            )
        }
        PolicyType::And => Kind::And(
            cfg.and
                .as_ref()
                .ok_or_else(missing)?
                .and_sub_policy
                .iter()
                .map(|p| build(p, preds))
                .collect::<Result<_, _>>()?,
        ),
        PolicyType::Drop => Kind::Drop(
            cfg.drop
                .as_ref()
                .ok_or_else(missing)?
                .drop_sub_policy
                .iter()
                .map(|p| build(p, preds))
                .collect::<Result<_, _>>()?,
        ),
        PolicyType::Not => Kind::Not(Box::new(build(
            &cfg.not.as_ref().ok_or_else(missing)?.not_sub_policy,
            preds,
        )?)),
        PolicyType::Composite => {
            let c = cfg.composite.as_ref().ok_or_else(missing)?;
            let total = c.max_total_spans_per_second;
            // Sub-policies run in policy_order; those it does not name follow in config order.
            let mut ordered: Vec<&PolicyConfig> = c
                .policy_order
                .iter()
                .filter_map(|n| c.composite_sub_policy.iter().find(|p| &p.name == n))
                .collect();
            for p in &c.composite_sub_policy {
                if !ordered.iter().any(|o| o.name == p.name) {
                    ordered.push(p);
                }
            }
            let subs = ordered
                .into_iter()
                .map(|p| {
                    // A sub-policy without an allocation is bounded by the total only.
                    let share = c
                        .rate_allocation
                        .iter()
                        .find(|a| a.policy == p.name)
                        .map_or(total, |a| (total as f64 * a.percent / 100.0) as u64);
                    Ok((build(p, preds)?, PerSecond::new(share)))
                })
                .collect::<Result<_, String>>()?;
            Kind::Composite {
                subs,
                total: PerSecond::new(total),
            }
        }
    };
    Ok(Policy {
        name: cfg.name.clone(),
        kind,
    })
}

fn matched(hit: bool, invert: bool) -> Verdict {
    match (hit, invert) {
        (true, false) => Verdict::Sampled,
        (false, false) => Verdict::NotSampled,
        (true, true) => Verdict::InvertNotSampled,
        (false, true) => Verdict::InvertSampled,
    }
}

/// FNV-1a over the salt and the trace id: cheap, stable across processes and versions, and uniform
/// enough over random trace ids.
fn trace_hash(salt: &str, trace_id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.as_bytes().iter().chain(trace_id) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs; a final avalanche spreads them.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

impl Policy {
    /// This policy's verdict on `t` at `now` (rate limits count what they let through).
    pub fn evaluate(&mut self, t: &TraceView<'_>, now: Instant) -> Verdict {
        let spans = t.summary.spans;
        match &mut self.kind {
            Kind::Always => Verdict::Sampled,
            Kind::Latency { lower, upper } => {
                let ms = t.summary.duration_ms();
                matched(ms >= *lower && (*upper == 0 || ms <= *upper), false)
            }
            Kind::Matches { predicate, invert } => matched(t.summary.hits.get(*predicate), *invert),
            Kind::Probabilistic { salt, threshold } => matched(
                trace_hash(salt, t.trace_id) <= *threshold && *threshold > 0,
                false,
            ),
            Kind::RateLimit(limit) => matched(limit.take(now, spans), false),
            Kind::BytesLimit {
                rate,
                burst,
                tokens,
                last,
            } => {
                if let Some(l) = *last {
                    *tokens = (*tokens + now.duration_since(l).as_secs_f64() * *rate).min(*burst);
                }
                *last = Some(now);
                let need = t.summary.encoded_bytes as f64;
                if need <= *tokens {
                    *tokens -= need;
                    Verdict::Sampled
                } else {
                    Verdict::NotSampled
                }
            }
            Kind::SpanCount { min, max } => {
                matched(spans >= *min && (*max == 0 || spans <= *max), false)
            }
            Kind::And(subs) => {
                // Every sub-policy is evaluated so rate limits inside see every trace, as upstream.
                let all = subs
                    .iter_mut()
                    .map(|p| p.evaluate(t, now).samples())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .all(|b| b);
                matched(all, false)
            }
            Kind::Drop(subs) => {
                let all = subs
                    .iter_mut()
                    .map(|p| p.evaluate(t, now).samples())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .all(|b| b);
                if all {
                    Verdict::Dropped
                } else {
                    Verdict::NotSampled
                }
            }
            Kind::Not(sub) => matched(!sub.evaluate(t, now).samples(), false),
            Kind::Composite { subs, total } => {
                for (p, share) in subs.iter_mut() {
                    if p.evaluate(t, now).samples() {
                        if share.fits(now, spans) && total.fits(now, spans) {
                            share.take(now, spans);
                            total.take(now, spans);
                            return Verdict::Sampled;
                        }
                        return Verdict::NotSampled;
                    }
                }
                Verdict::NotSampled
            }
        }
    }
}

/// The trace's decision from every top-level policy's verdict, in config order: whether it is kept,
/// and the index of the policy that decided.
pub fn combine(verdicts: &[Verdict]) -> (bool, Option<usize>) {
    if let Some(i) = verdicts.iter().position(|v| *v == Verdict::Dropped) {
        return (false, Some(i));
    }
    if let Some(i) = verdicts
        .iter()
        .position(|v| *v == Verdict::InvertNotSampled)
    {
        return (false, Some(i));
    }
    match verdicts.iter().position(|v| v.samples()) {
        Some(i) => (true, Some(i)),
        None => (false, None),
    }
}
