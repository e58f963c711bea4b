//! Settings of the Prometheus receivers: `prometheus` (scraping, configured with Prometheus's own
//! `scrape_configs` under `config:`, as in the OpenTelemetry Collector) and `prometheusremotewrite`
//! (an HTTP endpoint for remote-write 1.0).
//!
//! The scrape settings keep Prometheus's key names, defaults and duration spelling (`15s`, `1m`), so a
//! job block can be pasted from a `prometheus.yml`. Keys outpost does not implement are refused by name
//! (`deny_unknown_fields`) rather than silently ignored. What serde cannot check (a regex that does not
//! compile, a timeout longer than its interval, a relabel action missing its target) is checked by
//! `validate::prometheus`, with the YAML path of the offending key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, HumanDuration};

/// `receivers.prometheus`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusReceiverConfig {
    /// A Prometheus configuration: `global` and `scrape_configs`.
    #[serde(default)]
    pub config: PromConfig,
}

/// The part of a `prometheus.yml` the receiver reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromConfig {
    #[serde(default)]
    pub global: PromGlobalConfig,
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
}

/// `global:` — defaults for every job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromGlobalConfig {
    #[serde(default = "PromGlobalConfig::default_scrape_interval")]
    pub scrape_interval: HumanDuration,
    #[serde(default = "PromGlobalConfig::default_scrape_timeout")]
    pub scrape_timeout: HumanDuration,
}

impl PromGlobalConfig {
    /// Prometheus's own defaults.
    pub const fn default_scrape_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(60))
    }
    pub const fn default_scrape_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
}

impl Default for PromGlobalConfig {
    fn default() -> Self {
        Self {
            scrape_interval: Self::default_scrape_interval(),
            scrape_timeout: Self::default_scrape_timeout(),
        }
    }
}

/// One job of `scrape_configs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: String,
    /// Default: `global.scrape_interval`.
    #[serde(default)]
    pub scrape_interval: Option<HumanDuration>,
    /// Default: `global.scrape_timeout`, capped at the job's interval (as Prometheus does).
    #[serde(default)]
    pub scrape_timeout: Option<HumanDuration>,
    #[serde(default = "ScrapeConfig::default_metrics_path")]
    pub metrics_path: String,
    #[serde(default)]
    pub scheme: Scheme,
    /// URL query parameters, each with one or more values.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    /// Keep the target's own `job`, `instance`, ... labels when they clash with the target labels (true),
    /// or rename the exposed ones to `exported_<name>` (false, the default).
    #[serde(default)]
    pub honor_labels: bool,
    /// Use the timestamps the target exposes (true, the default) or the scrape time.
    #[serde(default = "ScrapeConfig::default_honor_timestamps")]
    pub honor_timestamps: bool,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub authorization: Option<Authorization>,
    /// The legacy spelling of `authorization: {credentials: ...}`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_config: Option<PromTlsConfig>,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Applied to each target's labels before scraping; a target may be dropped here.
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Applied to each scraped series before it is converted; a series may be dropped here.
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// More series than this after metric relabeling fails the scrape (up = 0). 0: no limit.
    #[serde(default)]
    pub sample_limit: u64,
    /// More labels than this on one series fails the scrape. 0: no limit.
    #[serde(default)]
    pub label_limit: u64,
    /// Largest uncompressed response accepted; a larger one fails the scrape before it costs memory.
    /// Unset: [`ScrapeConfig::DEFAULT_BODY_SIZE_LIMIT`] (Prometheus has no bound by default; an edge node
    /// must not be made to hold an unbounded page).
    #[serde(default)]
    pub body_size_limit: Option<ByteSize>,
}

impl ScrapeConfig {
    pub const DEFAULT_BODY_SIZE_LIMIT: ByteSize = ByteSize(64 << 20);

    pub fn default_metrics_path() -> String {
        "/metrics".into()
    }
    pub const fn default_honor_timestamps() -> bool {
        true
    }

    /// The interval this job scrapes at.
    pub fn interval(&self, global: &PromGlobalConfig) -> Duration {
        self.scrape_interval.unwrap_or(global.scrape_interval).get()
    }

    /// The timeout of one scrape: the job's, else the global one capped at the job's interval.
    pub fn timeout(&self, global: &PromGlobalConfig) -> Duration {
        match self.scrape_timeout {
            Some(t) => t.get(),
            None => global.scrape_timeout.get().min(self.interval(global)),
        }
    }

    pub fn body_size_limit(&self) -> u64 {
        self.body_size_limit
            .unwrap_or(Self::DEFAULT_BODY_SIZE_LIMIT)
            .bytes()
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    /// Read at every scrape, so a rotated secret is picked up.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme of the `Authorization` header.
    #[serde(default = "Authorization::default_type", rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub credentials: Option<String>,
    /// Read at every scrape, so a rotated token is picked up.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

impl Authorization {
    pub fn default_type() -> String {
        "Bearer".into()
    }
}

/// `tls_config:` with Prometheus's keys.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromTlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl PromTlsConfig {
    /// The same settings as outpost's own `tls:` block, which reads and reloads them.
    pub fn to_tls(&self) -> crate::tls::TlsConfig {
        crate::tls::TlsConfig {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            server_name_override: self.server_name.clone(),
            insecure_skip_verify: self.insecure_skip_verify,
            ..Default::default()
        }
    }
}

/// `static_configs:` item: targets sharing a set of labels.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `file_sd_configs:` item: files (JSON or YAML lists of static configs) re-read when they change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Paths; the last path element may be a glob (`targets/*.json`).
    pub files: Vec<String>,
    /// Every file is re-read at least this often, even if no change was noticed.
    #[serde(default = "FileSdConfig::default_refresh_interval")]
    pub refresh_interval: HumanDuration,
}

impl FileSdConfig {
    pub const fn default_refresh_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
}

/// One relabeling step, with Prometheus's keys and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "RelabelConfig::default_separator")]
    pub separator: String,
    #[serde(default)]
    pub target_label: Option<String>,
    /// Anchored at both ends, as in Prometheus.
    #[serde(default = "RelabelConfig::default_regex")]
    pub regex: String,
    #[serde(default)]
    pub modulus: Option<u64>,
    #[serde(default = "RelabelConfig::default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: RelabelAction,
}

impl RelabelConfig {
    pub fn default_separator() -> String {
        ";".into()
    }
    pub fn default_regex() -> String {
        "(.*)".into()
    }
    pub fn default_replacement() -> String {
        "$1".into()
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl RelabelAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RelabelAction::Replace => "replace",
            RelabelAction::Keep => "keep",
            RelabelAction::Drop => "drop",
            RelabelAction::KeepEqual => "keepequal",
            RelabelAction::DropEqual => "dropequal",
            RelabelAction::HashMod => "hashmod",
            RelabelAction::LabelMap => "labelmap",
            RelabelAction::LabelDrop => "labeldrop",
            RelabelAction::LabelKeep => "labelkeep",
            RelabelAction::Lowercase => "lowercase",
            RelabelAction::Uppercase => "uppercase",
        }
    }
}

/// `receivers.prometheusremotewrite`: `POST /api/v1/write` with snappy-compressed protobuf
/// (remote-write 1.0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusRemoteWriteReceiverConfig {
    #[serde(
        default = "PrometheusRemoteWriteReceiverConfig::default_endpoint",
        deserialize_with = "crate::units::socket_addr"
    )]
    pub endpoint: SocketAddr,
    #[serde(default = "PrometheusRemoteWriteReceiverConfig::default_path")]
    pub path: String,
    /// Largest body accepted as sent (snappy-compressed).
    #[serde(default = "PrometheusRemoteWriteReceiverConfig::default_max_request_body_size")]
    pub max_request_body_size: ByteSize,
    /// Largest body accepted after snappy decompression.
    #[serde(default = "PrometheusRemoteWriteReceiverConfig::default_max_decompressed_body_size")]
    pub max_decompressed_body_size: ByteSize,
    #[serde(default = "crate::schema::default_max_connections")]
    pub max_connections: usize,
    /// TLS, and mTLS with `client_ca_file` (only senders with a certificate the CA signed); unset:
    /// plaintext.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Who may send: bearer tokens, htpasswd users, mTLS certificate names. Refused: 401, counted.
    #[serde(default)]
    pub auth: Option<crate::tls::ReceiverAuthConfig>,
    /// Per-sender request and byte budgets. Over budget: 429 with Retry-After, counted.
    #[serde(default)]
    pub rate_limit: Option<crate::tls::RateLimitConfig>,
}

impl PrometheusRemoteWriteReceiverConfig {
    pub fn default_endpoint() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9090))
    }
    pub fn default_path() -> String {
        "/api/v1/write".into()
    }
    pub const fn default_max_request_body_size() -> ByteSize {
        ByteSize(16 << 20)
    }
    pub const fn default_max_decompressed_body_size() -> ByteSize {
        ByteSize(64 << 20)
    }
}

impl Default for PrometheusRemoteWriteReceiverConfig {
    fn default() -> Self {
        Self {
            endpoint: Self::default_endpoint(),
            path: Self::default_path(),
            max_request_body_size: Self::default_max_request_body_size(),
            max_decompressed_body_size: Self::default_max_decompressed_body_size(),
            max_connections: crate::schema::default_max_connections(),
            tls: None,
            auth: None,
            rate_limit: None,
        }
    }
}

/// Whether `name` is a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A target is `host:port` or `host` (the scheme's port is used), without scheme or path.
pub fn check_target(target: &str) -> Result<(), String> {
    if target.contains("://") {
        return Err(format!(
            "target '{target}' has a scheme; write host:port and set the job's scheme instead"
        ));
    }
    if target.contains('/') {
        return Err(format!(
            "target '{target}' has a path; write host:port and set the job's metrics_path instead"
        ));
    }
    if target.trim().is_empty() || target.contains(char::is_whitespace) {
        return Err(format!(
            "'{target}' is not a target (expected host:port, e.g. 127.0.0.1:9100)"
        ));
    }
    // `[::1]:9100` or `host:9100`: a port, when given, must be a number.
    let port = if let Some(rest) = target.strip_prefix('[') {
        match rest.split_once(']') {
            Some((_, after)) => after.strip_prefix(':'),
            None => return Err(format!("target '{target}': '[' is not closed by ']'")),
        }
    } else {
        match target.matches(':').count() {
            0 => None,
            1 => target.rsplit_once(':').map(|(_, p)| p),
            _ => {
                return Err(format!(
                    "target '{target}': an IPv6 address must be in brackets, e.g. [::1]:9100"
                ))
            }
        }
    };
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "target '{target}': '{port}' is not a port number (1-65535)"
            ));
        }
    }
    Ok(())
}
