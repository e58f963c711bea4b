//! Schema of processor `cardinality_limit`: series budgets (global and per metric), distinct-value
//! budgets per label (`value_limit`, the name Vector's `tag_cardinality_limit` uses), and what happens to a
//! data point that would exceed one (`action`).
//!
//! Settings resolve from the most specific to the least: a label entry under a metric entry, then the
//! processor-wide `labels` entry, then the metric entry, then the processor's own keys. The first
//! `metrics` entry whose `name` / `name_regex` matches a metric is the one that applies to it.

use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, HumanDuration};

/// `processors.cardinality_limit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CardinalityLimitConfig {
    /// Series admitted across every metric of the pipeline. 0: no global budget.
    #[serde(default = "CardinalityLimitConfig::default_max_series")]
    pub max_series: u64,
    /// What happens to a data point of a new series that a budget has no room for (default `overflow`).
    #[serde(default)]
    pub action: CardinalityAction,
    /// Distinct values each label of each metric may take. Unset: no limit on values, only series.
    #[serde(default)]
    pub value_limit: Option<u64>,
    /// A series (or a label value) not seen for this long frees its place in the budgets.
    #[serde(default = "CardinalityLimitConfig::default_series_ttl")]
    pub series_ttl: HumanDuration,
    /// `exact` (64-bit fingerprints, about 40 bytes per series) or `probabilistic` (Bloom filters of a
    /// fixed size; a new series may be mistaken for a known one with a small probability).
    #[serde(default)]
    pub mode: TrackingMode,
    /// Probabilistic mode: the memory of the series filter, fixed whatever the series count.
    #[serde(default = "CardinalityLimitConfig::default_max_memory")]
    pub max_memory: ByteSize,
    /// Probabilistic mode: the memory of each (metric, label) value filter.
    #[serde(default = "CardinalityLimitConfig::default_cache_size_per_key")]
    pub cache_size_per_key: ByteSize,
    /// Keep admitted series in the data directory's state store, so a restart admits the same series.
    #[serde(default = "CardinalityLimitConfig::default_persist")]
    pub persist: bool,
    /// How often newly admitted and expired series are written to the state store, in one batch.
    #[serde(default = "CardinalityLimitConfig::default_persist_interval")]
    pub persist_interval: HumanDuration,
    /// Per label, for every metric: `value_limit`, `action`, `exclude`.
    #[serde(default)]
    pub labels: IndexMap<String, LabelLimitConfig>,
    /// Per metric (by `name` or `name_regex`; the first match applies).
    #[serde(default)]
    pub metrics: Vec<MetricLimitConfig>,
}

impl CardinalityLimitConfig {
    pub const fn default_max_series() -> u64 {
        100_000
    }
    pub const fn default_series_ttl() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
    pub const fn default_max_memory() -> ByteSize {
        ByteSize(1 << 20)
    }
    pub const fn default_cache_size_per_key() -> ByteSize {
        ByteSize(5 << 10)
    }
    pub const fn default_persist() -> bool {
        true
    }
    pub const fn default_persist_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
}

impl Default for CardinalityLimitConfig {
    fn default() -> Self {
        Self {
            max_series: Self::default_max_series(),
            action: CardinalityAction::default(),
            value_limit: None,
            series_ttl: Self::default_series_ttl(),
            mode: TrackingMode::default(),
            max_memory: Self::default_max_memory(),
            cache_size_per_key: Self::default_cache_size_per_key(),
            persist: Self::default_persist(),
            persist_interval: Self::default_persist_interval(),
            labels: IndexMap::new(),
            metrics: Vec::new(),
        }
    }
}

/// What `cardinality_limit` does with a data point that a budget has no room for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CardinalityAction {
    /// As the OpenTelemetry SDK: the point's attributes are replaced by `otel.metric.overflow="true"`
    /// and its value is aggregated into that one series.
    #[default]
    Overflow,
    /// The offending label is removed and the point aggregated into the series it then belongs to.
    DropLabel,
    /// The data point is dropped (counted).
    DropDatapoint,
}

impl CardinalityAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CardinalityAction::Overflow => "overflow",
            CardinalityAction::DropLabel => "drop_label",
            CardinalityAction::DropDatapoint => "drop_datapoint",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TrackingMode {
    #[default]
    Exact,
    Probabilistic,
}

/// One label's settings (under `labels:` or under a metric entry's `labels:`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelLimitConfig {
    /// Distinct values this label may take per metric.
    #[serde(default)]
    pub value_limit: Option<u64>,
    /// The action when `value_limit` is reached (default: the metric's, then the processor's).
    #[serde(default)]
    pub action: Option<CardinalityAction>,
    /// Never limit this label's values (series budgets still apply).
    #[serde(default)]
    pub exclude: bool,
}

/// One entry of `metrics:`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricLimitConfig {
    /// The metric's exact name.
    #[serde(default)]
    pub name: Option<String>,
    /// A regular expression matched against the whole metric name.
    #[serde(default)]
    pub name_regex: Option<String>,
    /// Series this metric may have (each metric matching `name_regex` has its own budget).
    #[serde(default)]
    pub max_series: Option<u64>,
    /// The action for this metric's budgets.
    #[serde(default)]
    pub action: Option<CardinalityAction>,
    /// Distinct values each label of this metric may take.
    #[serde(default)]
    pub value_limit: Option<u64>,
    /// Pass this metric through untouched and untracked.
    #[serde(default)]
    pub exclude: bool,
    /// Per label of this metric.
    #[serde(default)]
    pub labels: IndexMap<String, LabelLimitConfig>,
}
