//! Schemas of trace sampling and summarization: processor `tail_sampling` and connectors `spanmetrics`
//! and `count`, with the OpenTelemetry Collector's key names and policy shapes.
//!
//! A policy is one struct for every type (`name`, `type`, and one optional block per type, as upstream
//! writes them), so a config written for the Collector loads unchanged. Which block a type needs, and
//! regexes, are checked by validation (`validate/sampling.rs`) so each finding points at its own path.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, HumanDuration};

// ---------------------------------------------------------------------------------------------------------
// tail_sampling

/// `processors.tail_sampling`: holds each trace's spans until its decision, then keeps or drops the
/// whole trace by policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TailSamplingConfig {
    /// How long after a trace's first span its decision is made.
    #[serde(default = "TailSamplingConfig::default_decision_wait")]
    pub decision_wait: HumanDuration,
    /// Decide this long after a trace's root span (no parent) arrived, if that is sooner than
    /// `decision_wait`. Unset: only `decision_wait` applies.
    #[serde(default)]
    pub decision_wait_after_root_received: Option<HumanDuration>,
    /// Traces held in memory (pending or recently decided); at this count the oldest is let go (decided
    /// early if still pending).
    #[serde(default = "TailSamplingConfig::default_num_traces")]
    pub num_traces: u64,
    /// Sizing hint for the trace table.
    #[serde(default)]
    pub expected_new_traces_per_sec: u64,
    /// Remembered decisions, so spans arriving after their trace was decided follow the decision.
    #[serde(default)]
    pub decision_cache: DecisionCacheConfig,
    /// outpost's bound on the bytes of held spans; at it the oldest pending traces are decided early
    /// (counted). Default 64MiB.
    #[serde(default = "TailSamplingConfig::default_max_memory")]
    pub max_memory: ByteSize,
    /// Evaluated in order for every trace: any `drop` that matches drops it, else any policy that samples
    /// keeps it.
    pub policies: Vec<PolicyConfig>,
}

impl TailSamplingConfig {
    pub const fn default_decision_wait() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub const fn default_num_traces() -> u64 {
        50_000
    }
    pub const fn default_max_memory() -> ByteSize {
        ByteSize(64 << 20)
    }
}

/// `decision_cache:` sizes (trace ids) of the kept and dropped decision caches.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionCacheConfig {
    #[serde(default)]
    pub sampled_cache_size: usize,
    #[serde(default)]
    pub non_sampled_cache_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyType {
    AlwaysSample,
    Latency,
    NumericAttribute,
    Probabilistic,
    StatusCode,
    StringAttribute,
    BooleanAttribute,
    RateLimiting,
    BytesLimiting,
    SpanCount,
    TraceState,
    And,
    Composite,
    Drop,
    Not,
}

impl PolicyType {
    /// The key of the block this type reads its settings from (none for `always_sample`).
    pub fn block(self) -> Option<&'static str> {
        Some(match self {
            PolicyType::AlwaysSample => return None,
            PolicyType::Latency => "latency",
            PolicyType::NumericAttribute => "numeric_attribute",
            PolicyType::Probabilistic => "probabilistic",
            PolicyType::StatusCode => "status_code",
            PolicyType::StringAttribute => "string_attribute",
            PolicyType::BooleanAttribute => "boolean_attribute",
            PolicyType::RateLimiting => "rate_limiting",
            PolicyType::BytesLimiting => "bytes_limiting",
            PolicyType::SpanCount => "span_count",
            PolicyType::TraceState => "trace_state",
            PolicyType::And => "and",
            PolicyType::Composite => "composite",
            PolicyType::Drop => "drop",
            PolicyType::Not => "not",
        })
    }
}

/// One sampling policy (also the shape of sub-policies inside `and`, `composite`, `drop`, `not`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Names the policy in metrics and in the attribute of the spans it kept.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: PolicyType,
    #[serde(default)]
    pub latency: Option<LatencyPolicy>,
    #[serde(default)]
    pub numeric_attribute: Option<NumericAttributePolicy>,
    #[serde(default)]
    pub probabilistic: Option<ProbabilisticPolicy>,
    #[serde(default)]
    pub status_code: Option<StatusCodePolicy>,
    #[serde(default)]
    pub string_attribute: Option<StringAttributePolicy>,
    #[serde(default)]
    pub boolean_attribute: Option<BooleanAttributePolicy>,
    #[serde(default)]
    pub rate_limiting: Option<RateLimitingPolicy>,
    #[serde(default)]
    pub bytes_limiting: Option<BytesLimitingPolicy>,
    #[serde(default)]
    pub span_count: Option<SpanCountPolicy>,
    #[serde(default)]
    pub trace_state: Option<TraceStatePolicy>,
    #[serde(default)]
    pub and: Option<AndPolicy>,
    #[serde(default)]
    pub composite: Option<CompositePolicy>,
    #[serde(default)]
    pub drop: Option<DropPolicy>,
    #[serde(default)]
    pub not: Option<NotPolicy>,
}

/// Samples traces whose duration (earliest start to latest end) is at least `threshold_ms` and, when
/// `upper_threshold_ms` is set, at most that.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyPolicy {
    #[serde(default)]
    pub threshold_ms: u64,
    #[serde(default)]
    pub upper_threshold_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NumericAttributePolicy {
    pub key: String,
    #[serde(default)]
    pub min_value: Option<i64>,
    #[serde(default)]
    pub max_value: Option<i64>,
    #[serde(default)]
    pub invert_match: bool,
}

/// Samples `sampling_percentage` % of traces, decided by a hash of the trace id (and `hash_salt`), so
/// every outpost with the same settings keeps the same traces.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticPolicy {
    #[serde(default)]
    pub hash_salt: String,
    #[serde(default)]
    pub sampling_percentage: f64,
}

/// Samples traces with a span whose status is one of `OK`, `ERROR`, `UNSET`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusCodePolicy {
    pub status_codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StringAttributePolicy {
    pub key: String,
    pub values: Vec<String>,
    /// `values` are regular expressions (matched anywhere unless anchored).
    #[serde(default)]
    pub enabled_regex_matching: bool,
    /// Accepted for compatibility; outpost matches without a result cache.
    #[serde(default)]
    pub cache_max_size: Option<usize>,
    #[serde(default)]
    pub invert_match: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BooleanAttributePolicy {
    pub key: String,
    pub value: bool,
    #[serde(default)]
    pub invert_match: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingPolicy {
    pub spans_per_second: u64,
}

/// A token bucket over the traces' OTLP-encoded bytes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BytesLimitingPolicy {
    pub bytes_per_second: u64,
    /// Default: twice `bytes_per_second`.
    #[serde(default)]
    pub burst_capacity: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpanCountPolicy {
    #[serde(default)]
    pub min_spans: u64,
    /// 0: no upper bound.
    #[serde(default)]
    pub max_spans: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceStatePolicy {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AndPolicy {
    pub and_sub_policy: Vec<PolicyConfig>,
}

/// Sub-policies in `policy_order`, each with a share (`rate_allocation`, percent) of
/// `max_total_spans_per_second`; the first that samples and has budget left keeps the trace.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompositePolicy {
    pub max_total_spans_per_second: u64,
    #[serde(default)]
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<PolicyConfig>,
    #[serde(default)]
    pub rate_allocation: Vec<RateAllocation>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateAllocation {
    pub policy: String,
    pub percent: f64,
}

/// Drops the trace when every sub-policy samples it, whatever other policies say.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropPolicy {
    pub drop_sub_policy: Vec<PolicyConfig>,
}

/// Samples exactly the traces its sub-policy does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotPolicy {
    pub not_sub_policy: Box<PolicyConfig>,
}

// ---------------------------------------------------------------------------------------------------------
// spanmetrics

/// `connectors.spanmetrics`: request counts and duration histograms from 100% of the spans it sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpanMetricsConfig {
    #[serde(default)]
    pub histogram: SpanMetricsHistogram,
    /// Extra attributes (span, then resource) to group by, after service.name, span.name, span.kind and
    /// status.code.
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    #[serde(default)]
    pub exemplars: ExemplarsConfig,
    /// The most distinct series per metric; spans beyond it are counted in one overflow series
    /// (`otel.metric.overflow=true`).
    #[serde(default)]
    pub aggregation_cardinality_limit: usize,
    /// `AGGREGATION_TEMPORALITY_CUMULATIVE` (default) or `AGGREGATION_TEMPORALITY_DELTA`.
    #[serde(default)]
    pub aggregation_temporality: Temporality,
    /// How often the metrics are emitted.
    #[serde(default = "SpanMetricsConfig::default_metrics_flush_interval")]
    pub metrics_flush_interval: HumanDuration,
    /// Prefix of the metric names (`traces.span.metrics` as upstream).
    #[serde(default = "SpanMetricsConfig::default_namespace")]
    pub namespace: String,
    /// Also emit a summary with exact latency quantiles (outpost's addition), from an HDR histogram.
    #[serde(default)]
    pub summary: Option<SummaryConfig>,
}

impl SpanMetricsConfig {
    pub const fn default_metrics_flush_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(60))
    }
    pub fn default_namespace() -> String {
        "traces.span.metrics".into()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpanMetricsHistogram {
    #[serde(default)]
    pub disable: bool,
    /// `ms` (default) or `s`.
    #[serde(default = "SpanMetricsHistogram::default_unit")]
    pub unit: String,
    #[serde(default)]
    pub explicit: Option<ExplicitBuckets>,
    #[serde(default)]
    pub exponential: Option<ExponentialBuckets>,
}

impl SpanMetricsHistogram {
    pub fn default_unit() -> String {
        "ms".into()
    }
}

impl Default for SpanMetricsHistogram {
    fn default() -> Self {
        Self {
            disable: false,
            unit: Self::default_unit(),
            explicit: None,
            exponential: None,
        }
    }
}

/// Bucket bounds as durations (`2ms`, `1s`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplicitBuckets {
    #[serde(default)]
    pub buckets: Vec<HumanDuration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExponentialBuckets {
    #[serde(default = "ExponentialBuckets::default_max_size")]
    pub max_size: u32,
}

impl ExponentialBuckets {
    pub const fn default_max_size() -> u32 {
        160
    }
}

/// An attribute to group by; spans without it get `default` (or are grouped without it).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: String,
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExemplarsConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Exemplars kept per series between flushes.
    #[serde(default)]
    pub max_per_data_point: Option<usize>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Temporality {
    #[default]
    #[serde(rename = "AGGREGATION_TEMPORALITY_CUMULATIVE")]
    Cumulative,
    #[serde(rename = "AGGREGATION_TEMPORALITY_DELTA")]
    Delta,
}

/// Quantiles of span duration reported as a summary metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryConfig {
    #[serde(default = "SummaryConfig::default_quantiles")]
    pub quantiles: Vec<f64>,
}

impl SummaryConfig {
    pub fn default_quantiles() -> Vec<f64> {
        vec![0.5, 0.9, 0.99]
    }
}

// ---------------------------------------------------------------------------------------------------------
// count

/// `connectors.count`: counts of spans, span events, metrics, data points and log records, as sums.
/// Without any definition, one default counter per signal is emitted (`trace.span.count`, ...).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountConfig {
    #[serde(default)]
    pub spans: indexmap::IndexMap<String, CountMetric>,
    #[serde(default)]
    pub logs: indexmap::IndexMap<String, CountMetric>,
    #[serde(default)]
    pub datapoints: indexmap::IndexMap<String, CountMetric>,
    /// How often the counts are emitted (outpost's addition; upstream emits per batch).
    #[serde(default = "CountConfig::default_flush_interval")]
    pub flush_interval: HumanDuration,
}

impl CountConfig {
    pub const fn default_flush_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
}

/// One counter: the items matching any of `conditions`, grouped by `attributes`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountMetric {
    #[serde(default)]
    pub description: Option<String>,
    /// Conditions such as `attributes["http.method"] == "GET"`, `resource.attributes["k"] != "v"`,
    /// `status.code == STATUS_CODE_ERROR`, `severity_number >= 17`, `name == "x"`, `IsMatch(body, "re")`.
    /// Joined with `or`; none means every item.
    #[serde(default)]
    pub conditions: Vec<String>,
    #[serde(default)]
    pub attributes: Vec<Dimension>,
}
