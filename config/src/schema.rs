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
use crate::units::{ByteSize, HumanDuration};
use crate::Signal;

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

pub const DEFAULT_ADMIN_ENDPOINT: &str = "127.0.0.1:13133";

// ---------------------------------------------------------------------------------------------------------
// Receivers

#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverConfig {
    Otlp(OtlpReceiverConfig),
}

impl ReceiverConfig {
    /// Receiver types this build knows, for error messages.
    pub const TYPES: &'static [&'static str] = &["otlp"];

    /// The signals this receiver can produce.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ReceiverConfig::Otlp(_) => &Signal::ALL,
        }
    }
}

/// `receivers.otlp`: OTLP over gRPC and HTTP. A protocol is enabled by naming it, even with no settings
/// (`grpc:` alone enables gRPC on its default endpoint), as in the OpenTelemetry Collector.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    #[serde(default)]
    pub protocols: OtlpProtocols,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpProtocols {
    #[serde(default, deserialize_with = "crate::units::present_means_default")]
    pub grpc: Option<OtlpGrpcConfig>,
    #[serde(default, deserialize_with = "crate::units::present_means_default")]
    pub http: Option<OtlpHttpConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        }
    }
}

pub const fn default_max_connections() -> usize {
    256
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

impl ProcessorConfig {
    pub const TYPES: &'static [&'static str] =
        &["batch", "resource", "attributes", "memory_limiter"];
}

/// `processors.batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceProcessorConfig {
    pub attributes: Vec<AttributeAction>,
}

/// `processors.attributes`: actions on span, log record and metric data point attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesProcessorConfig {
    pub actions: Vec<AttributeAction>,
}

/// One attribute action, with the OpenTelemetry Collector's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

// ---------------------------------------------------------------------------------------------------------
// Exporters

#[derive(Debug, Clone, PartialEq)]
pub enum ExporterConfig {
    Otlp(OtlpExporterConfig),
    OtlpHttp(OtlpHttpExporterConfig),
    Debug(DebugExporterConfig),
    File(FileExporterConfig),
}

impl ExporterConfig {
    pub const TYPES: &'static [&'static str] = &["otlp", "otlphttp", "debug", "file"];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

/// `tls:` on an exporter, accepted for compatibility with OpenTelemetry Collector configs. This build has
/// no TLS: a `host:port` or `http://` endpoint is plaintext whatever `insecure` says (so `insecure: false`,
/// the default, is fine), and validation refuses `https://` endpoints.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    #[serde(default)]
    pub insecure: bool,
}

/// `exporters.otlp`: OTLP over gRPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// `host:port` or `http://host:port`.
    pub endpoint: String,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_export_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub tls: ClientTlsConfig,
}

pub const fn default_export_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

/// `exporters.otlphttp`: OTLP over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_export_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub tls: ClientTlsConfig,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpEncoding {
    #[default]
    Proto,
    Json,
}

/// `exporters.debug`: writes what passes to outpost's own log.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

impl ConnectorConfig {
    pub const TYPES: &'static [&'static str] = &["forward"];

    /// Whether data of signal `from` entering the connector (as an exporter) can leave it as `to`
    /// (as a receiver).
    pub fn supports(&self, from: Signal, to: Signal) -> bool {
        match self {
            ConnectorConfig::Forward(_) => from == to,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConnectorConfig {}

// ---------------------------------------------------------------------------------------------------------
// Extensions

#[derive(Debug, Clone, PartialEq)]
pub enum ExtensionConfig {
    HealthCheck(HealthCheckConfig),
}

impl ExtensionConfig {
    pub const TYPES: &'static [&'static str] = &["health_check"];
}

/// `extensions.health_check`: where the admin endpoint listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
// Queue (the disk queue itself arrives with its own issue; the data directory is claimed now)

/// Top-level `queue:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The node's data directory: the queue and all durable state live here.
    #[serde(default = "QueueConfig::default_directory")]
    pub directory: PathBuf,
}

impl QueueConfig {
    pub fn default_directory() -> PathBuf {
        PathBuf::from("./outpost-data")
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            directory: Self::default_directory(),
        }
    }
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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub logs: TelemetryLogsConfig,
    #[serde(default)]
    pub metrics: TelemetryMetricsConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryMetricsConfig {
    /// `none`, `basic`, `normal`, `detailed`: accepted for compatibility; outpost always serves its
    /// metrics on the admin endpoint.
    #[serde(default)]
    pub level: Option<String>,
    /// An additional address for the admin endpoint (the OTel Collector serves its metrics here).
    #[serde(default, deserialize_with = "crate::units::option_socket_addr")]
    pub address: Option<SocketAddr>,
}
