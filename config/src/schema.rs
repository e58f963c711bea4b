//! The typed configuration schema, in the OpenTelemetry Collector's shape.
//!
//! Every struct denies unknown fields: a misspelt key is an error at load time, never a setting that is
//! silently ignored. Defaults are `const fn`s or `Default` impls next to the type so a reader finds the
//! default of a key where the key is declared. Component configs are typed by the component's *type* (the
//! part of `type[/name]` before the slash); [`crate::load`] dispatches on it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::id::{ComponentId, PipelineId};
pub use crate::prometheus::*;
pub use crate::tls::*;
use crate::units::{ByteSize, HumanDuration};
use crate::Signal;

mod cardinality;
mod logs;
mod sampling;
pub use cardinality::*;
pub use logs::*;
pub use sampling::*;

/// The whole configuration, after loading and validation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub receivers: IndexMap<ComponentId, ReceiverConfig>,
    pub processors: IndexMap<ComponentId, ProcessorConfig>,
    pub exporters: IndexMap<ComponentId, ExporterConfig>,
    pub connectors: IndexMap<ComponentId, ConnectorConfig>,
    pub extensions: IndexMap<ComponentId, ExtensionConfig>,
    pub queue: QueueConfig,
    pub service: ServiceConfig,
}

impl Config {
    /// Addresses the admin HTTP endpoint (`/healthz`, `/readyz`, `/metrics`) listens on: the
    /// `health_check` extensions enabled in `service.extensions`, and `service.telemetry.metrics.address`.
    /// With neither, [`DEFAULT_ADMIN_ENDPOINT`].
    pub fn admin_endpoints(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for id in &self.service.extensions {
            if let Some(ExtensionConfig::HealthCheck(hc)) = self.extensions.get(id) {
                out.push(hc.endpoint);
            }
        }
        if let Some(addr) = self.service.telemetry.metrics.address {
            out.push(addr);
        }
        if out.is_empty() {
            out.push(
                DEFAULT_ADMIN_ENDPOINT
                    .parse()
                    .expect("constant address parses"),
            );
        }
        out.sort();
        out.dedup();
        out
    }
}

impl Config {
    /// The node's data directory: `queue.directory`, else the directory of the first `file_storage`
    /// extension (an OpenTelemetry Collector config keeps working), else `./outpost-data`.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.queue.directory {
            return dir.clone();
        }
        self.extensions
            .values()
            .find_map(|e| match e {
                ExtensionConfig::FileStorage(fs) => Some(fs.directory.clone()),
                _ => None,
            })
            .unwrap_or_else(QueueConfig::default_directory)
    }

    /// How exporter `id` reads the queue: its `sending_queue` block, or the defaults.
    pub fn sending_queue(&self, id: &ComponentId) -> SendingQueueConfig {
        self.delivery(id).sending_queue
    }

    /// How exporter `id` delivers: queue reading, retries, circuit breaker and bandwidth cap. Exporters
    /// without a network destination get the defaults.
    pub fn delivery(&self, id: &ComponentId) -> DeliveryConfig {
        match self.exporters.get(id) {
            Some(ExporterConfig::Otlp(c)) => c.delivery(),
            Some(ExporterConfig::OtlpHttp(c)) => c.delivery(),
            Some(ExporterConfig::PrometheusRemoteWrite(c)) => c.delivery(),
            _ => DeliveryConfig::default(),
        }
    }
}

pub const DEFAULT_ADMIN_ENDPOINT: &str = "127.0.0.1:13133";

// ---------------------------------------------------------------------------------------------------------
// Receivers

#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverConfig {
    Otlp(Box<OtlpReceiverConfig>),
    Filelog(FilelogReceiverConfig),
    Syslog(SyslogReceiverConfig),
    Prometheus(PrometheusReceiverConfig),
    PrometheusRemoteWrite(PrometheusRemoteWriteReceiverConfig),
}

impl ReceiverConfig {
    /// Receiver types this build knows, for error messages.
    pub const TYPES: &'static [&'static str] = &[
        "otlp",
        "filelog",
        "syslog",
        "prometheus",
        "prometheusremotewrite",
    ];

    /// The signals this receiver can produce.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ReceiverConfig::Otlp(_) => &Signal::ALL,
            ReceiverConfig::Filelog(_) | ReceiverConfig::Syslog(_) => &[Signal::Logs],
            ReceiverConfig::Prometheus(_) | ReceiverConfig::PrometheusRemoteWrite(_) => {
                &[Signal::Metrics]
            }
        }
    }
}

/// `receivers.otlp`: OTLP over gRPC and HTTP. A protocol is enabled by naming it, even with no settings
/// (`grpc:` alone enables gRPC on its default endpoint), as in the OpenTelemetry Collector.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    #[serde(default)]
    pub protocols: OtlpProtocols,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpProtocols {
    #[serde(default, deserialize_with = "crate::units::present_means_default")]
    pub grpc: Option<OtlpGrpcConfig>,
    #[serde(default, deserialize_with = "crate::units::present_means_default")]
    pub http: Option<OtlpHttpConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcConfig {
    #[serde(
        default = "OtlpGrpcConfig::default_endpoint",
        deserialize_with = "crate::units::socket_addr"
    )]
    pub endpoint: SocketAddr,
    /// Largest request accepted, after decompression (the OTel Collector's name; MiB).
    #[serde(default = "OtlpGrpcConfig::default_max_recv_msg_size_mib")]
    pub max_recv_msg_size_mib: u64,
    /// Concurrent HTTP/2 streams per connection.
    #[serde(default = "OtlpGrpcConfig::default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Concurrent TCP connections; further connections wait in the accept backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// TLS (and mTLS with `client_ca_file`); unset: plaintext.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub auth: Option<ReceiverAuthConfig>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

impl OtlpGrpcConfig {
    pub fn default_endpoint() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4317))
    }
    pub const fn default_max_recv_msg_size_mib() -> u64 {
        4
    }
    pub const fn default_max_concurrent_streams() -> u32 {
        100
    }
}

impl Default for OtlpGrpcConfig {
    fn default() -> Self {
        Self {
            endpoint: Self::default_endpoint(),
            max_recv_msg_size_mib: Self::default_max_recv_msg_size_mib(),
            max_concurrent_streams: Self::default_max_concurrent_streams(),
            max_connections: default_max_connections(),
            tls: None,
            auth: None,
            rate_limit: None,
        }
    }
}

pub const fn default_max_connections() -> usize {
    256
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    #[serde(
        default = "OtlpHttpConfig::default_endpoint",
        deserialize_with = "crate::units::socket_addr"
    )]
    pub endpoint: SocketAddr,
    #[serde(default = "OtlpHttpConfig::default_traces_url_path")]
    pub traces_url_path: String,
    #[serde(default = "OtlpHttpConfig::default_metrics_url_path")]
    pub metrics_url_path: String,
    #[serde(default = "OtlpHttpConfig::default_logs_url_path")]
    pub logs_url_path: String,
    /// Largest request body accepted as sent on the wire (possibly compressed).
    #[serde(default = "OtlpHttpConfig::default_max_request_body_size")]
    pub max_request_body_size: ByteSize,
    /// Largest body accepted after decompression: a gzip bomb stops here.
    #[serde(default = "OtlpHttpConfig::default_max_decompressed_body_size")]
    pub max_decompressed_body_size: ByteSize,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// TLS (and mTLS with `client_ca_file`); unset: plaintext.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub auth: Option<ReceiverAuthConfig>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

impl OtlpHttpConfig {
    pub fn default_endpoint() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4318))
    }
    pub fn default_traces_url_path() -> String {
        "/v1/traces".into()
    }
    pub fn default_metrics_url_path() -> String {
        "/v1/metrics".into()
    }
    pub fn default_logs_url_path() -> String {
        "/v1/logs".into()
    }
    pub const fn default_max_request_body_size() -> ByteSize {
        ByteSize(20 * 1024 * 1024)
    }
    pub const fn default_max_decompressed_body_size() -> ByteSize {
        ByteSize(64 * 1024 * 1024)
    }
    /// The URL path serving `signal`.
    pub fn url_path(&self, signal: Signal) -> &str {
        match signal {
            Signal::Traces => &self.traces_url_path,
            Signal::Metrics => &self.metrics_url_path,
            Signal::Logs => &self.logs_url_path,
        }
    }
}

impl Default for OtlpHttpConfig {
    fn default() -> Self {
        Self {
            endpoint: Self::default_endpoint(),
            traces_url_path: Self::default_traces_url_path(),
            metrics_url_path: Self::default_metrics_url_path(),
            logs_url_path: Self::default_logs_url_path(),
            max_request_body_size: Self::default_max_request_body_size(),
            max_decompressed_body_size: Self::default_max_decompressed_body_size(),
            max_connections: default_max_connections(),
            tls: None,
            auth: None,
            rate_limit: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Processors

#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorConfig {
    Batch(BatchConfig),
    Resource(ResourceProcessorConfig),
    Attributes(AttributesProcessorConfig),
    MemoryLimiter(MemoryLimiterConfig),
    Redaction(Box<RedactionProcessorConfig>),
    Transform(TransformProcessorConfig),
    TailSampling(TailSamplingConfig),
    CardinalityLimit(Box<CardinalityLimitConfig>),
}

impl ProcessorConfig {
    pub const TYPES: &'static [&'static str] = &[
        "batch",
        "resource",
        "attributes",
        "memory_limiter",
        "redaction",
        "transform",
        "tail_sampling",
        "cardinality_limit",
    ];

    /// The signals this processor can run on; validation refuses it in pipelines of other signals.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ProcessorConfig::Transform(_) => &[Signal::Traces, Signal::Logs],
            ProcessorConfig::TailSampling(_) => &[Signal::Traces],
            ProcessorConfig::CardinalityLimit(_) => &[Signal::Metrics],
            _ => &Signal::ALL,
        }
    }
}

/// `processors.batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// A batch is sent once it holds at least this many items.
    #[serde(default = "BatchConfig::default_send_batch_size")]
    pub send_batch_size: usize,
    /// Upper bound on a batch's items; larger batches are split. 0 means no bound.
    #[serde(default)]
    pub send_batch_max_size: usize,
    /// A non-empty batch is sent after this long even when it is smaller than `send_batch_size`.
    #[serde(default = "BatchConfig::default_timeout")]
    pub timeout: HumanDuration,
}

impl BatchConfig {
    pub const fn default_send_batch_size() -> usize {
        8192
    }
    pub const fn default_timeout() -> HumanDuration {
        HumanDuration(Duration::from_millis(200))
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            send_batch_size: Self::default_send_batch_size(),
            send_batch_max_size: 0,
            timeout: Self::default_timeout(),
        }
    }
}

/// `processors.resource`: actions on resource attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceProcessorConfig {
    pub attributes: Vec<AttributeAction>,
}

/// `processors.attributes`: actions on span, log record and metric data point attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributesProcessorConfig {
    pub actions: Vec<AttributeAction>,
}

/// One attribute action, with the OpenTelemetry Collector's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeAction {
    pub key: String,
    pub action: AttributeActionKind,
    /// The value for insert / update / upsert.
    #[serde(default)]
    pub value: Option<AttrValue>,
    /// Take the value from this attribute of the same item instead of `value`.
    #[serde(default)]
    pub from_attribute: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributeActionKind {
    /// Add the attribute only where it is absent.
    Insert,
    /// Change the attribute only where it is present.
    Update,
    /// Insert or update.
    Upsert,
    Delete,
    /// Replace the value with its SHA-256 hex digest.
    Hash,
}

/// A scalar attribute value in config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Int(i64),
    Double(f64),
    String(String),
}

/// `processors.memory_limiter`: a bound on the bytes of telemetry in flight in a pipeline, between the
/// receivers and the queue. Above it, receivers refuse new data with RESOURCE_EXHAUSTED / 429 so clients
/// retry later, instead of the process growing until it is killed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    /// Accepted for compatibility; outpost accounts bytes on every request instead of polling.
    #[serde(default)]
    pub check_interval: Option<HumanDuration>,
    /// The bound in MiB. One of `limit_mib` / `limit_percentage` is required.
    #[serde(default)]
    pub limit_mib: Option<u64>,
    /// Headroom below the limit (MiB) kept free for requests already being decoded.
    #[serde(default)]
    pub spike_limit_mib: Option<u64>,
    /// The bound as a percentage of the machine's total memory.
    #[serde(default)]
    pub limit_percentage: Option<u8>,
    #[serde(default)]
    pub spike_limit_percentage: Option<u8>,
}

/// `processors.redaction`: removes PII and secrets from every string the pipeline carries, before
/// anything is written to disk or sent. The OpenTelemetry Collector's keys (allow_all_keys,
/// allowed_keys, ignored_keys, blocked_key_patterns, blocked_values, allowed_values, hash_function,
/// summary) work as upstream; `packs`, `rules` and the rest are outpost's. See docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactionProcessorConfig {
    /// Keep every attribute key (subject to the other rules). Unset: true unless `allowed_keys` is
    /// given, in which case only those keys are kept, as upstream.
    #[serde(default)]
    pub allow_all_keys: Option<bool>,
    /// With `allow_all_keys: false`, the only attribute keys kept; the others are removed.
    #[serde(default)]
    pub allowed_keys: Vec<String>,
    /// Attribute keys passed through unchanged: never scanned, masked or removed.
    #[serde(default)]
    pub ignored_keys: Vec<String>,
    /// Regular expressions on attribute keys; the whole value of a matching key is masked.
    #[serde(default)]
    pub blocked_key_patterns: Vec<String>,
    /// Regular expressions on values; the matching parts are masked.
    #[serde(default)]
    pub blocked_values: Vec<String>,
    /// Regular expressions on values; a value matching one is left unmasked by `blocked_values` and the
    /// rule packs.
    #[serde(default)]
    pub allowed_values: Vec<String>,
    /// `none` (mask with `mask`) or `hmac-sha256` (every mask becomes a keyed hash). Unkeyed hashes are
    /// refused: a dictionary reverses them.
    #[serde(default)]
    pub hash_function: HashFunction,
    /// Which audit attributes are added to redacted items: `debug` (counts and key names), `info`
    /// (counts), `silent` (none).
    #[serde(default)]
    pub summary: RedactionSummary,
    /// Rule packs: names of shipped packs (`pii-core`, `secrets`, `network`) or paths of pack files.
    #[serde(default = "RedactionProcessorConfig::default_packs")]
    pub packs: Vec<String>,
    /// Per-rule changes by rule id: `enabled`, `action`, `keep_last`.
    #[serde(default)]
    pub rules: IndexMap<String, RedactionRuleOverride>,
    /// Also scan integer and double values (card numbers sent as numbers); a redacted number becomes a
    /// string.
    #[serde(default)]
    pub redact_all_types: bool,
    /// Environment variable holding the HMAC key for `hash` actions.
    #[serde(default)]
    pub hash_key_env: Option<String>,
    /// File holding the HMAC key for `hash` actions (a trailing newline is ignored).
    #[serde(default)]
    pub hash_key_file: Option<PathBuf>,
    /// The text a masked value or part of a value is replaced with.
    #[serde(default = "RedactionProcessorConfig::default_mask")]
    pub mask: String,
    /// Values longer than this are not scanned; with `fail_closed` they are masked whole.
    #[serde(default = "RedactionProcessorConfig::default_max_value_size")]
    pub max_value_size: ByteSize,
    /// A value that cannot be scanned (too large, nested too deep) is masked whole (true) or passed
    /// through unscanned (false). Either way it is counted.
    #[serde(default = "RedactionProcessorConfig::default_fail_closed")]
    pub fail_closed: bool,
    /// URL query parameters whose values are masked wherever a URL appears (`?token=…&page=2`).
    #[serde(default = "RedactionProcessorConfig::default_sensitive_query_params")]
    pub sensitive_query_params: Vec<String>,
}

impl RedactionProcessorConfig {
    pub fn default_packs() -> Vec<String> {
        crate::redaction::DEFAULT_PACKS
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
    pub fn default_mask() -> String {
        "****".into()
    }
    pub const fn default_max_value_size() -> ByteSize {
        ByteSize(256 * 1024)
    }
    pub const fn default_fail_closed() -> bool {
        true
    }
    pub fn default_sensitive_query_params() -> Vec<String> {
        [
            "access_token",
            "api_key",
            "apikey",
            "auth",
            "code",
            "client_secret",
            "id_token",
            "key",
            "passwd",
            "password",
            "refresh_token",
            "secret",
            "session",
            "sessionid",
            "sig",
            "signature",
            "token",
            "x-amz-signature",
            "x-amz-credential",
            "x-goog-signature",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Whether only `allowed_keys` are kept (see `allow_all_keys`).
    pub fn allowlist_only(&self) -> bool {
        !self.allow_all_keys.unwrap_or(self.allowed_keys.is_empty())
    }

    /// The HMAC key, read from `hash_key_env` or `hash_key_file`; `Ok(None)` when neither is set. The
    /// error names the source and never contains the key.
    pub fn hash_key(&self) -> Result<Option<Vec<u8>>, String> {
        crate::redaction::read_hash_key(self.hash_key_env.as_deref(), self.hash_key_file.as_deref())
    }
}

impl Default for RedactionProcessorConfig {
    fn default() -> Self {
        Self {
            allow_all_keys: None,
            allowed_keys: Vec::new(),
            ignored_keys: Vec::new(),
            blocked_key_patterns: Vec::new(),
            blocked_values: Vec::new(),
            allowed_values: Vec::new(),
            hash_function: HashFunction::None,
            summary: RedactionSummary::default(),
            packs: Self::default_packs(),
            rules: IndexMap::new(),
            redact_all_types: false,
            hash_key_env: None,
            hash_key_file: None,
            mask: Self::default_mask(),
            max_value_size: Self::default_max_value_size(),
            fail_closed: Self::default_fail_closed(),
            sensitive_query_params: Self::default_sensitive_query_params(),
        }
    }
}

/// `hash_function` of the redaction processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum HashFunction {
    #[default]
    None,
    HmacSha256,
}

impl<'de> Deserialize<'de> for HashFunction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "" | "none" => Ok(HashFunction::None),
            "hmac-sha256" => Ok(HashFunction::HmacSha256),
            "md5" | "sha1" | "sha3" | "sha256" | "sha512" => {
                Err(serde::de::Error::custom(format!(
                    "'{s}' is an unkeyed hash, which a dictionary of likely values reverses; use \
                 hmac-sha256 with hash_key_env or hash_key_file"
                )))
            }
            _ => Err(serde::de::Error::custom(format!(
                "'{s}' is not a hash function (expected none or hmac-sha256)"
            ))),
        }
    }
}

/// `summary` of the redaction processor, as in the OpenTelemetry Collector.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RedactionSummary {
    Debug,
    #[default]
    Info,
    Silent,
}

/// What a redaction rule does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RedactionAction {
    /// Replace the match with the mask (keeping its last `keep_last` characters).
    Mask,
    /// Replace the match with its HMAC-SHA256 (hex): still joinable across nodes sharing the key.
    Hash,
    /// Remove the attribute (or the log body) that holds the match.
    DropAttribute,
    /// Drop the whole span, log record or data point.
    DropRecord,
}

/// `rules.<id>` of the redaction processor.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactionRuleOverride {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub action: Option<RedactionAction>,
    #[serde(default)]
    pub keep_last: Option<usize>,
}

/// `processors.transform`: a VRL program run on every span and log record. The item is offered to the
/// program as an object (see docs/configuration.md) and what the program leaves is written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformProcessorConfig {
    /// The VRL program.
    #[serde(default)]
    pub source: Option<String>,
    /// A file holding the VRL program, instead of `source`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// On a runtime error, drop the item (true) or pass it on unchanged (false). Counted either way.
    #[serde(default)]
    pub drop_on_error: bool,
    /// On `abort`, drop the item (true) or pass it on unchanged (false).
    #[serde(default = "TransformProcessorConfig::default_drop_on_abort")]
    pub drop_on_abort: bool,
}

impl TransformProcessorConfig {
    pub const fn default_drop_on_abort() -> bool {
        true
    }

    /// The program text, from `source` or read from `file`.
    pub fn program(&self) -> Result<String, String> {
        match (&self.source, &self.file) {
            (Some(s), None) => Ok(s.clone()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the VRL program '{}': {e}", path.display())),
            (Some(_), Some(_)) => Err("set one of source and file, not both".into()),
            (None, None) => Err("no program: set source (VRL text) or file (a path)".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Exporters

#[derive(Debug, Clone, PartialEq)]
pub enum ExporterConfig {
    Otlp(OtlpExporterConfig),
    OtlpHttp(OtlpHttpExporterConfig),
    Debug(DebugExporterConfig),
    File(FileExporterConfig),
    PrometheusRemoteWrite(PrometheusRemoteWriteExporterConfig),
}

impl ExporterConfig {
    pub const TYPES: &'static [&'static str] =
        &["otlp", "otlphttp", "debug", "file", "prometheusremotewrite"];

    /// The signals this exporter can send.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ExporterConfig::PrometheusRemoteWrite(_) => &[Signal::Metrics],
            _ => &Signal::ALL,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

/// `exporters.otlp`: OTLP over gRPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// `host:port` or `http://host:port`.
    pub endpoint: String,
    #[serde(default)]
    pub compression: Compression,
    /// Sent with every request. Values are secrets (never printed); fill them with `${file:PATH}` or
    /// `${env:VAR}` rather than writing credentials into the config.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default = "default_export_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub tls: ClientTlsConfig,
    #[serde(default)]
    pub auth: ExporterAuthConfig,
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// The most bytes per second this exporter puts on the wire (after compression); unlimited if unset.
    #[serde(default)]
    pub max_bytes_per_second: Option<ByteSize>,
    /// Bytes that may go out at once above the rate after a quiet period; default one second's worth.
    #[serde(default)]
    pub burst_bytes: Option<ByteSize>,
}

/// Every network exporter carries the same delivery keys (`sending_queue`, `retry_on_failure`,
/// `circuit_breaker`, `max_bytes_per_second`, `burst_bytes`); this gathers them for the runner.
macro_rules! delivery_from_keys {
    ($($config:ty),*) => {$(
        impl $config {
            pub fn delivery(&self) -> DeliveryConfig {
                DeliveryConfig {
                    sending_queue: self.sending_queue.clone(),
                    retry_on_failure: self.retry_on_failure.clone(),
                    circuit_breaker: self.circuit_breaker.clone(),
                    max_bytes_per_second: self.max_bytes_per_second,
                    burst_bytes: self.burst_bytes,
                }
            }
        }
    )*};
}

delivery_from_keys!(
    OtlpExporterConfig,
    OtlpHttpExporterConfig,
    PrometheusRemoteWriteExporterConfig
);

pub const fn default_export_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

/// `exporters.otlphttp`: OTLP over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpExporterConfig {
    /// Base URL; `/v1/traces`, `/v1/metrics`, `/v1/logs` are appended per signal.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for traces, overriding `endpoint`.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub encoding: OtlpEncoding,
    /// Sent with every request. Values are secrets (never printed); fill them with `${file:PATH}` or
    /// `${env:VAR}` rather than writing credentials into the config.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default = "default_export_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub tls: ClientTlsConfig,
    #[serde(default)]
    pub auth: ExporterAuthConfig,
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// The most bytes per second this exporter puts on the wire (after compression); unlimited if unset.
    #[serde(default)]
    pub max_bytes_per_second: Option<ByteSize>,
    /// Bytes that may go out at once above the rate after a quiet period; default one second's worth.
    #[serde(default)]
    pub burst_bytes: Option<ByteSize>,
}

impl OtlpHttpExporterConfig {
    /// The URL requests for `signal` go to, if one is configured.
    pub fn signal_url(&self, signal: Signal) -> Option<String> {
        let explicit = match signal {
            Signal::Traces => &self.traces_endpoint,
            Signal::Metrics => &self.metrics_endpoint,
            Signal::Logs => &self.logs_endpoint,
        };
        if let Some(url) = explicit {
            return Some(url.clone());
        }
        self.endpoint
            .as_ref()
            .map(|base| format!("{}/v1/{}", base.trim_end_matches('/'), signal.as_str()))
    }
}

/// `exporters.prometheusremotewrite`: metrics to a Prometheus remote-write 1.0 endpoint (protobuf +
/// snappy), translated per the OpenTelemetry specification's Prometheus compatibility rules. The keys are
/// the OpenTelemetry Collector's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusRemoteWriteExporterConfig {
    /// The full write URL, e.g. `http://prometheus:9090/api/v1/write`.
    pub endpoint: String,
    /// Sent with every request. Values are secrets (never printed); fill them with `${file:PATH}` or
    /// `${env:VAR}` rather than writing credentials into the config.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default = "default_export_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub tls: ClientTlsConfig,
    #[serde(default)]
    pub auth: ExporterAuthConfig,
    /// Prefixed (with `_`) to every metric name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels added to every series; a label of the data with the same name is overridden.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Copy every resource attribute onto every series as a label.
    #[serde(default)]
    pub resource_to_telemetry_conversion: EnabledFlag<false>,
    /// Send a `target_info` series per resource with its attributes as labels.
    #[serde(default)]
    pub target_info: EnabledFlag<true>,
    /// Append unit suffixes (`_seconds`, `_bytes`, `_ratio`) and `_total` to metric names.
    #[serde(default = "PrometheusRemoteWriteExporterConfig::default_add_metric_suffixes")]
    pub add_metric_suffixes: bool,
    /// Send TYPE / HELP / UNIT metadata with the series.
    #[serde(default)]
    pub send_metadata: bool,
    /// The largest request body before compression; a payload is split into several requests above it.
    #[serde(default = "PrometheusRemoteWriteExporterConfig::default_max_batch_size_bytes")]
    pub max_batch_size_bytes: ByteSize,
    /// The most samples (and native histogram samples) in one request.
    #[serde(default = "PrometheusRemoteWriteExporterConfig::default_max_samples_per_request")]
    pub max_samples_per_request: usize,
    /// Accepted for compatibility with OpenTelemetry Collector configs; superseded by the disk queue and
    /// `sending_queue` (a warning says so).
    #[serde(default)]
    pub remote_write_queue: Option<RemoteWriteQueueConfig>,
    /// As on other exporters, except that `num_consumers` defaults to 1, so the samples of a series
    /// arrive in order (Prometheus refuses out-of-order samples).
    #[serde(
        default = "PrometheusRemoteWriteExporterConfig::default_sending_queue",
        deserialize_with = "one_consumer_unless_set"
    )]
    pub sending_queue: SendingQueueConfig,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// The most bytes per second this exporter puts on the wire (after compression); unlimited if unset.
    #[serde(default)]
    pub max_bytes_per_second: Option<ByteSize>,
    /// Bytes that may go out at once above the rate after a quiet period; default one second's worth.
    #[serde(default)]
    pub burst_bytes: Option<ByteSize>,
}

impl PrometheusRemoteWriteExporterConfig {
    pub const fn default_add_metric_suffixes() -> bool {
        true
    }
    /// The OpenTelemetry Collector's default.
    pub const fn default_max_batch_size_bytes() -> ByteSize {
        ByteSize(3_000_000)
    }
    /// Prometheus's own remote-write client sends at most this many samples per request.
    pub const fn default_max_samples_per_request() -> usize {
        2000
    }
    pub fn default_sending_queue() -> SendingQueueConfig {
        SendingQueueConfig {
            num_consumers: 1,
            ..SendingQueueConfig::default()
        }
    }
}

/// `sending_queue` with `num_consumers` defaulting to 1. The keys mirror [`SendingQueueConfig`]'s.
fn one_consumer_unless_set<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<SendingQueueConfig, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Keys {
        #[serde(default = "SendingQueueConfig::default_enabled")]
        enabled: bool,
        #[serde(default)]
        num_consumers: Option<usize>,
        #[serde(default)]
        queue_size: Option<u64>,
        #[serde(default)]
        storage: Option<ComponentId>,
        #[serde(default)]
        start_at: StartAt,
        #[serde(default)]
        max_lag: Option<MaxLagConfig>,
        #[serde(default)]
        drain_order: DrainOrder,
        #[serde(default)]
        max_age: Option<HumanDuration>,
    }
    let k = Keys::deserialize(d)?;
    Ok(SendingQueueConfig {
        enabled: k.enabled,
        num_consumers: k.num_consumers.unwrap_or(1),
        queue_size: k.queue_size,
        storage: k.storage,
        start_at: k.start_at,
        max_lag: k.max_lag,
        drain_order: k.drain_order,
        max_age: k.max_age,
    })
}

/// A block with one key, `enabled`, defaulting to `DEFAULT` (`target_info: {enabled: false}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnabledFlag<const DEFAULT: bool> {
    #[serde(default = "EnabledFlag::<DEFAULT>::default_enabled")]
    pub enabled: bool,
}

impl<const DEFAULT: bool> EnabledFlag<DEFAULT> {
    pub const fn default_enabled() -> bool {
        DEFAULT
    }
}

impl<const DEFAULT: bool> Default for EnabledFlag<DEFAULT> {
    fn default() -> Self {
        Self { enabled: DEFAULT }
    }
}

/// `remote_write_queue:` of the OpenTelemetry Collector's exporter, accepted so its configs load. Its
/// in-memory queue is replaced by outpost's disk queue; `sending_queue.num_consumers` sets the requests in
/// flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteQueueConfig {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub queue_size: Option<u64>,
    #[serde(default)]
    pub num_consumers: Option<usize>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OtlpEncoding {
    #[default]
    Proto,
    Json,
}

/// `exporters.debug`: writes what passes to outpost's own log.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    #[serde(default)]
    pub verbosity: Verbosity,
    /// Log the first `sampling_initial` batches each second, then every `sampling_thereafter`-th.
    #[serde(default)]
    pub sampling_initial: Option<u32>,
    #[serde(default)]
    pub sampling_thereafter: Option<u32>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verbosity {
    /// One line per batch with its item counts.
    #[default]
    Basic,
    /// One line per item.
    Normal,
    /// Every item in full, as OTLP JSON.
    Detailed,
}

/// `exporters.file`: OTLP JSON, one export request per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileExporterConfig {
    pub path: PathBuf,
    #[serde(default, deserialize_with = "crate::units::present_means_default")]
    pub rotation: Option<FileRotationConfig>,
    /// How often buffered lines are flushed to the file.
    #[serde(default = "FileExporterConfig::default_flush_interval")]
    pub flush_interval: HumanDuration,
}

impl FileExporterConfig {
    pub const fn default_flush_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRotationConfig {
    /// Rotate when the file reaches this size.
    #[serde(default = "FileRotationConfig::default_max_megabytes")]
    pub max_megabytes: u64,
    /// Delete rotated files older than this many days (0: keep regardless of age).
    #[serde(default)]
    pub max_days: u64,
    /// Keep at most this many rotated files (0: keep all).
    #[serde(default = "FileRotationConfig::default_max_backups")]
    pub max_backups: usize,
    /// Name rotated files by local time instead of UTC.
    #[serde(default)]
    pub localtime: bool,
}

impl FileRotationConfig {
    pub const fn default_max_megabytes() -> u64 {
        100
    }
    pub const fn default_max_backups() -> usize {
        100
    }
}

impl Default for FileRotationConfig {
    fn default() -> Self {
        Self {
            max_megabytes: Self::default_max_megabytes(),
            max_days: 0,
            max_backups: Self::default_max_backups(),
            localtime: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Connectors

#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorConfig {
    /// Passes a pipeline's output unchanged into other pipelines of the same signal.
    Forward(ForwardConnectorConfig),
    /// Spans → request counts and duration histograms.
    SpanMetrics(SpanMetricsConfig),
    /// Spans, data points or log records → counts.
    Count(CountConfig),
}

impl ConnectorConfig {
    pub const TYPES: &'static [&'static str] = &["forward", "spanmetrics", "count"];

    /// Whether data of signal `from` entering the connector (as an exporter) can leave it as `to`
    /// (as a receiver).
    pub fn supports(&self, from: Signal, to: Signal) -> bool {
        match self {
            ConnectorConfig::Forward(_) => from == to,
            ConnectorConfig::SpanMetrics(_) => from == Signal::Traces && to == Signal::Metrics,
            ConnectorConfig::Count(_) => to == Signal::Metrics,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardConnectorConfig {}

// ---------------------------------------------------------------------------------------------------------
// Extensions

#[derive(Debug, Clone, PartialEq)]
pub enum ExtensionConfig {
    HealthCheck(HealthCheckConfig),
    FileStorage(FileStorageConfig),
}

impl ExtensionConfig {
    pub const TYPES: &'static [&'static str] = &["health_check", "file_storage"];
}

/// `extensions.file_storage`: the OpenTelemetry Collector's persistent storage. In outpost it names the
/// disk queue's directory (when `queue.directory` is not set); its other keys are accepted and the queue's
/// own settings govern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileStorageConfig {
    pub directory: PathBuf,
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    #[serde(default)]
    pub fsync: Option<bool>,
    #[serde(default)]
    pub create_directory: Option<bool>,
    #[serde(default)]
    pub compaction: Option<serde_json::Value>,
}

/// `extensions.health_check`: where the admin endpoint listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    #[serde(
        default = "HealthCheckConfig::default_endpoint",
        deserialize_with = "crate::units::socket_addr"
    )]
    pub endpoint: SocketAddr,
    /// An extra path answering like `/healthz` (the OTel Collector's health check answers on `/`).
    #[serde(default = "HealthCheckConfig::default_path")]
    pub path: String,
}

impl HealthCheckConfig {
    pub fn default_endpoint() -> SocketAddr {
        DEFAULT_ADMIN_ENDPOINT
            .parse()
            .expect("constant address parses")
    }
    pub fn default_path() -> String {
        "/".into()
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            endpoint: Self::default_endpoint(),
            path: Self::default_path(),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Queue

/// Top-level `queue:`: the disk-backed queue between the processors and the exporters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The node's data directory: the queue and all durable state live here. Unset: the directory of a
    /// `file_storage` extension if one is configured, else `./outpost-data` (see [`Config::data_dir`]).
    #[serde(default)]
    pub directory: Option<PathBuf>,
    /// The most the queue may hold on disk; at this size the overflow policy always applies.
    #[serde(default = "QueueConfig::default_max_size")]
    pub max_size: ByteSize,
    /// Above this the queue is under pressure (bytes, or a percentage of max_size).
    #[serde(default = "QueueConfig::default_high_watermark")]
    pub high_watermark: SizeOrPercent,
    /// Below this the pressure ends (hysteresis: no flapping around one threshold).
    #[serde(default = "QueueConfig::default_low_watermark")]
    pub low_watermark: SizeOrPercent,
    /// What happens under pressure: `block` (refuse new data with a retryable error), `drop_oldest`,
    /// `drop_newest`. Every dropped item is counted.
    #[serde(default)]
    pub overflow: OverflowPolicy,
    /// When an append counts as durable: `always` (fsync, group commit), an interval such as `100ms`
    /// (fsync at most that often), or `never` (left to the OS).
    #[serde(default)]
    pub sync: SyncPolicy,
    /// Records older than this are dropped, counted. Unset: kept until delivered or overflow.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}

impl QueueConfig {
    pub fn default_directory() -> PathBuf {
        PathBuf::from("./outpost-data")
    }
    pub const fn default_max_size() -> ByteSize {
        ByteSize(1 << 30)
    }
    pub const fn default_high_watermark() -> SizeOrPercent {
        SizeOrPercent::Percent(80.0)
    }
    pub const fn default_low_watermark() -> SizeOrPercent {
        SizeOrPercent::Percent(60.0)
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            directory: None,
            max_size: Self::default_max_size(),
            high_watermark: Self::default_high_watermark(),
            low_watermark: Self::default_low_watermark(),
            overflow: OverflowPolicy::default(),
            sync: SyncPolicy::default(),
            max_age: None,
        }
    }
}

/// A size given in bytes (`512MiB`, `1000000`) or as a percentage of another size (`80%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeOrPercent {
    Bytes(u64),
    Percent(f64),
}

impl SizeOrPercent {
    /// The size in bytes, with percentages taken of `whole`.
    pub fn resolve(self, whole: u64) -> u64 {
        match self {
            SizeOrPercent::Bytes(b) => b,
            SizeOrPercent::Percent(p) => (whole as f64 * p / 100.0) as u64,
        }
    }
}

impl<'de> Deserialize<'de> for SizeOrPercent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let hint = "expected a size such as 512MiB or a percentage of max_size such as 80%";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(hint))? {
            Raw::N(n) => Ok(SizeOrPercent::Bytes(n)),
            Raw::S(s) => match s.trim().strip_suffix('%') {
                Some(p) => match p.trim().parse::<f64>() {
                    Ok(v) if v > 0.0 && v <= 100.0 => Ok(SizeOrPercent::Percent(v)),
                    _ => Err(serde::de::Error::custom(format!(
                        "'{s}' is not a percentage between 0 and 100"
                    ))),
                },
                None => s
                    .parse::<ByteSize>()
                    .map(|b| SizeOrPercent::Bytes(b.bytes()))
                    .map_err(|_| serde::de::Error::custom(format!("'{s}': {hint}"))),
            },
        }
    }
}

impl Serialize for SizeOrPercent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SizeOrPercent::Bytes(b) => ByteSize(*b).serialize(s),
            SizeOrPercent::Percent(p) => s.serialize_str(&format!("{p}%")),
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    #[default]
    Block,
    DropOldest,
    DropNewest,
}

/// `always`, `never`, or an interval (`100ms`; `interval` alone means 100ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    #[default]
    Always,
    Interval(Duration),
    Never,
}

impl SyncPolicy {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
}

impl<'de> Deserialize<'de> for SyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected always, never, or an interval such as 100ms")
        })?;
        match s.trim() {
            "always" => Ok(SyncPolicy::Always),
            "never" => Ok(SyncPolicy::Never),
            "interval" => Ok(SyncPolicy::Interval(Self::DEFAULT_INTERVAL)),
            other => match humantime::parse_duration(other) {
                Ok(d) if !d.is_zero() => Ok(SyncPolicy::Interval(d)),
                _ => Err(serde::de::Error::custom(format!(
                    "'{s}' is not a sync policy (expected always, never, or an interval such as 100ms)"
                ))),
            },
        }
    }
}

impl Serialize for SyncPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SyncPolicy::Always => s.serialize_str("always"),
            SyncPolicy::Never => s.serialize_str("never"),
            SyncPolicy::Interval(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        }
    }
}

/// `sending_queue:` on a network exporter, with the OpenTelemetry Collector's keys. In outpost every
/// exporter reads the pipeline's disk queue through its own cursor; this block tunes that reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendingQueueConfig {
    /// Accepted for compatibility; outpost always queues on disk (a warning says so when false).
    #[serde(default = "SendingQueueConfig::default_enabled")]
    pub enabled: bool,
    /// Requests in flight to the destination at once.
    #[serde(default = "SendingQueueConfig::default_num_consumers")]
    pub num_consumers: usize,
    /// Accepted for compatibility; the disk queue is bounded in bytes by `queue.max_size`.
    #[serde(default)]
    pub queue_size: Option<u64>,
    /// A `file_storage` extension: it names the queue's directory.
    #[serde(default)]
    pub storage: Option<ComponentId>,
    /// Where a new exporter's cursor starts: `oldest` (everything queued) or `newest` (only new data).
    #[serde(default)]
    pub start_at: StartAt,
    /// When this exporter falls this far behind, its cursor skips ahead (counted) so one dead destination
    /// cannot fill the disk for the others.
    #[serde(default)]
    pub max_lag: Option<MaxLagConfig>,
    /// Which queued data goes first when there is a backlog.
    #[serde(default)]
    pub drain_order: DrainOrder,
    /// Records older than this are not sent to this destination (counted as dropped, reason `max_age`):
    /// for backends that refuse old or out-of-order samples.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}

impl SendingQueueConfig {
    pub const fn default_enabled() -> bool {
        true
    }
    pub const fn default_num_consumers() -> usize {
        4
    }
}

impl Default for SendingQueueConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            num_consumers: Self::default_num_consumers(),
            queue_size: None,
            storage: None,
            start_at: StartAt::default(),
            max_lag: None,
            drain_order: DrainOrder::default(),
            max_age: None,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    #[default]
    Oldest,
    Newest,
}

/// The order an exporter drains a backlog in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DrainOrder {
    /// Oldest record first: the destination sees data in the order it was produced.
    #[default]
    OldestFirst,
    /// Newest record first: after an outage the freshest data arrives first, the backlog after it.
    NewestFirst,
}

/// Everything about how one exporter delivers, gathered from its config block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeliveryConfig {
    pub sending_queue: SendingQueueConfig,
    pub retry_on_failure: RetryConfig,
    pub circuit_breaker: CircuitBreakerConfig,
    pub max_bytes_per_second: Option<ByteSize>,
    pub burst_bytes: Option<ByteSize>,
}

/// `retry_on_failure:` with the OpenTelemetry Collector's keys. The defaults differ in one respect:
/// `max_elapsed_time` is 0 (never give up), because the data is on disk and the queue's `max_age` is what
/// bounds how long it is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "RetryConfig::default_enabled")]
    pub enabled: bool,
    #[serde(default = "RetryConfig::default_initial_interval")]
    pub initial_interval: HumanDuration,
    #[serde(default = "RetryConfig::default_max_interval")]
    pub max_interval: HumanDuration,
    #[serde(default = "RetryConfig::default_multiplier")]
    pub multiplier: f64,
    #[serde(default = "RetryConfig::default_randomization_factor")]
    pub randomization_factor: f64,
    /// Give up on a record after retrying it this long (dropped, counted); 0 means never.
    #[serde(default)]
    pub max_elapsed_time: HumanDuration,
    /// Attempts before a 401 / 403 / UNAUTHENTICATED / PERMISSION_DENIED is treated as permanent (a
    /// rotated credential often fixes itself within a few tries).
    #[serde(default = "RetryConfig::default_auth_failure_attempts")]
    pub auth_failure_attempts: u32,
}

impl RetryConfig {
    pub const fn default_enabled() -> bool {
        true
    }
    pub const fn default_initial_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    pub const fn default_max_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub const fn default_multiplier() -> f64 {
        1.5
    }
    pub const fn default_randomization_factor() -> f64 {
        0.5
    }
    pub const fn default_auth_failure_attempts() -> u32 {
        3
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: Self::default_initial_interval(),
            max_interval: Self::default_max_interval(),
            multiplier: Self::default_multiplier(),
            randomization_factor: Self::default_randomization_factor(),
            max_elapsed_time: HumanDuration::default(),
            auth_failure_attempts: Self::default_auth_failure_attempts(),
        }
    }
}

/// `circuit_breaker:` — after `failure_threshold` consecutive failed attempts the exporter stops sending
/// and probes the destination with one request per interval (growing from `initial_interval` to
/// `max_interval`, jittered), so a dead link costs almost nothing; the first success closes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    #[serde(default = "CircuitBreakerConfig::default_enabled")]
    pub enabled: bool,
    #[serde(default = "CircuitBreakerConfig::default_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "CircuitBreakerConfig::default_initial_interval")]
    pub initial_interval: HumanDuration,
    #[serde(default = "CircuitBreakerConfig::default_max_interval")]
    pub max_interval: HumanDuration,
}

impl CircuitBreakerConfig {
    pub const fn default_enabled() -> bool {
        true
    }
    pub const fn default_failure_threshold() -> u32 {
        5
    }
    pub const fn default_initial_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
    pub const fn default_max_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: Self::default_failure_threshold(),
            initial_interval: Self::default_initial_interval(),
            max_interval: Self::default_max_interval(),
        }
    }
}

/// A bound on how far behind an exporter may fall, in bytes and/or age.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxLagConfig {
    #[serde(default)]
    pub bytes: Option<ByteSize>,
    #[serde(default)]
    pub age: Option<HumanDuration>,
}

// ---------------------------------------------------------------------------------------------------------
// Service

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceConfig {
    pub extensions: Vec<ComponentId>,
    pub pipelines: IndexMap<PipelineId, PipelineConfig>,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PipelineConfig {
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
}

/// `service.telemetry`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub logs: TelemetryLogsConfig,
    #[serde(default)]
    pub metrics: TelemetryMetricsConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryLogsConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`; overridden by `RUST_LOG` when that is set.
    #[serde(default = "TelemetryLogsConfig::default_level")]
    pub level: LogLevel,
    #[serde(default)]
    pub encoding: LogEncoding,
}

impl TelemetryLogsConfig {
    pub const fn default_level() -> LogLevel {
        LogLevel::Info
    }
}

impl Default for TelemetryLogsConfig {
    fn default() -> Self {
        Self {
            level: Self::default_level(),
            encoding: LogEncoding::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryMetricsConfig {
    /// `none`, `basic`, `normal`, `detailed`: accepted for compatibility; outpost always serves its
    /// metrics on the admin endpoint.
    #[serde(default)]
    pub level: Option<String>,
    /// An additional address for the admin endpoint (the OTel Collector serves its metrics here).
    #[serde(default, deserialize_with = "crate::units::option_socket_addr")]
    pub address: Option<SocketAddr>,
    /// TLS (and mTLS with `client_ca_file`) on `address`, so a central Prometheus scrapes the node's
    /// own metrics over https; the `health_check` endpoint stays plaintext for local probes.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
}
