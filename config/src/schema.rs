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
            _ => DeliveryConfig::default(),
        }
    }
}

pub const DEFAULT_ADMIN_ENDPOINT: &str = "127.0.0.1:13133";

// ---------------------------------------------------------------------------------------------------------
// Receivers

#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverConfig {
    Otlp(OtlpReceiverConfig),
    Prometheus(PrometheusReceiverConfig),
    PrometheusRemoteWrite(PrometheusRemoteWriteReceiverConfig),
}

impl ReceiverConfig {
    /// Receiver types this build knows, for error messages.
    pub const TYPES: &'static [&'static str] = &["otlp", "prometheus", "prometheusremotewrite"];

    /// The signals this receiver can produce.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ReceiverConfig::Otlp(_) => &Signal::ALL,
            ReceiverConfig::Prometheus(_) | ReceiverConfig::PrometheusRemoteWrite(_) => {
                &[Signal::Metrics]
            }
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

impl OtlpExporterConfig {
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
    pub fn delivery(&self) -> DeliveryConfig {
        DeliveryConfig {
            sending_queue: self.sending_queue.clone(),
            retry_on_failure: self.retry_on_failure.clone(),
            circuit_breaker: self.circuit_breaker.clone(),
            max_bytes_per_second: self.max_bytes_per_second,
            burst_bytes: self.burst_bytes,
        }
    }

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
    FileStorage(FileStorageConfig),
}

impl ExtensionConfig {
    pub const TYPES: &'static [&'static str] = &["health_check", "file_storage"];
}

/// `extensions.file_storage`: the OpenTelemetry Collector's persistent storage. In outpost it names the
/// disk queue's directory (when `queue.directory` is not set); its other keys are accepted and the queue's
/// own settings govern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
// Queue

/// Top-level `queue:`: the disk-backed queue between the processors and the exporters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    #[default]
    Oldest,
    Newest,
}

/// The order an exporter drains a backlog in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
