//! Schemas of the log receivers, `filelog` and `syslog`, and of the log-parsing operators they share,
//! with the OpenTelemetry Collector's key names.
//!
//! Values whose grammar serde cannot check (globs, regexes, encodings, time zones, field paths) are
//! kept as written and checked by validation (`validate/logs.rs`), which reports each problem at its
//! own YAML path instead of stopping at the first.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::id::ComponentId;
use crate::units::{ByteSize, HumanDuration};

// ---------------------------------------------------------------------------------------------------------
// filelog

/// `receivers.filelog`: tails files matched by globs, with checkpoints in the node's state store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilelogReceiverConfig {
    /// Globs of the files to read (`/var/log/app/*.log`, `**` for any depth).
    pub include: Vec<String>,
    /// Globs of files not to read even when `include` matches them (rotated archives such as `*.gz`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to begin in files found at the first poll that have no checkpoint: `end` (only new lines)
    /// or `beginning`. Files that appear later are always read from their beginning.
    #[serde(default)]
    pub start_at: FilelogStartAt,
    /// How often the globs are evaluated and idle files checked for new data.
    #[serde(default = "FilelogReceiverConfig::default_poll_interval")]
    pub poll_interval: HumanDuration,
    /// How many leading bytes of a file identify it across renames, copies and restarts.
    #[serde(default = "FilelogReceiverConfig::default_fingerprint_size")]
    pub fingerprint_size: ByteSize,
    /// The longest log entry; longer ones are cut into pieces of this size (counted).
    #[serde(default = "FilelogReceiverConfig::default_max_log_size")]
    pub max_log_size: ByteSize,
    /// The files' character encoding: `utf-8` (invalid sequences replaced with U+FFFD, counted),
    /// `utf-16le`, `utf-16be`, `ascii`, `nop` (bytes kept as they are, as a bytes body), or another
    /// WHATWG label such as `latin1`, `shift_jis`, `gbk`.
    #[serde(default = "FilelogReceiverConfig::default_encoding")]
    pub encoding: String,
    /// Entries spanning several lines. Without it every line is an entry.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// An entry that is not followed by a newline (or by the next entry's start line) is emitted once
    /// its file has not grown for this long.
    #[serde(default = "FilelogReceiverConfig::default_force_flush_period")]
    pub force_flush_period: HumanDuration,
    /// Add the attribute `log.file.name`.
    #[serde(default = "FilelogReceiverConfig::default_include_file_name")]
    pub include_file_name: bool,
    /// Add the attribute `log.file.path`.
    #[serde(default)]
    pub include_file_path: bool,
    /// The most files held open at once; further matches wait for a later poll.
    #[serde(default = "FilelogReceiverConfig::default_max_concurrent_files")]
    pub max_concurrent_files: usize,
    /// Accepted for compatibility (a `file_storage` extension): checkpoints always live in the node's
    /// state store beside the queue.
    #[serde(default)]
    pub storage: Option<ComponentId>,
    /// Parsing operators, applied to each entry in order.
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
}

impl FilelogReceiverConfig {
    pub const fn default_poll_interval() -> HumanDuration {
        HumanDuration(Duration::from_millis(200))
    }
    pub const fn default_fingerprint_size() -> ByteSize {
        ByteSize(1000)
    }
    pub const fn default_max_log_size() -> ByteSize {
        ByteSize(1 << 20)
    }
    pub fn default_encoding() -> String {
        "utf-8".into()
    }
    pub const fn default_force_flush_period() -> HumanDuration {
        HumanDuration(Duration::from_millis(500))
    }
    pub const fn default_include_file_name() -> bool {
        true
    }
    pub const fn default_max_concurrent_files() -> usize {
        1024
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FilelogStartAt {
    Beginning,
    #[default]
    End,
}

/// `multiline`: exactly one of the two patterns.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A regex matching the first line of an entry; lines up to the next match belong to it.
    #[serde(default)]
    pub line_start_pattern: Option<String>,
    /// A regex matching the last line of an entry.
    #[serde(default)]
    pub line_end_pattern: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------
// Operators

/// One parsing operator, selected by `type` as in the OpenTelemetry Collector's stanza.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OperatorConfig {
    JsonParser(JsonParserConfig),
    RegexParser(RegexParserConfig),
    SeverityParser(SeverityParserConfig),
    TimeParser(TimeParserConfig),
}

impl OperatorConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            OperatorConfig::JsonParser(_) => "json_parser",
            OperatorConfig::RegexParser(_) => "regex_parser",
            OperatorConfig::SeverityParser(_) => "severity_parser",
            OperatorConfig::TimeParser(_) => "time_parser",
        }
    }
}

/// `type: json_parser`: the field's text, a JSON object, becomes attributes (or `parse_to`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonParserConfig {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default = "FieldPath::body")]
    pub parse_from: FieldPath,
    #[serde(default = "FieldPath::attributes")]
    pub parse_to: FieldPath,
    #[serde(default)]
    pub on_error: OnError,
    /// Then parse the entry's time from one of the parsed fields.
    #[serde(default)]
    pub timestamp: Option<TimeParserConfig>,
    /// Then parse the entry's severity from one of the parsed fields.
    #[serde(default)]
    pub severity: Option<SeverityParserConfig>,
}

/// `type: regex_parser`: named captures of `regex` become attributes (or `parse_to`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexParserConfig {
    #[serde(default)]
    pub id: Option<String>,
    pub regex: String,
    #[serde(default = "FieldPath::body")]
    pub parse_from: FieldPath,
    #[serde(default = "FieldPath::attributes")]
    pub parse_to: FieldPath,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub timestamp: Option<TimeParserConfig>,
    #[serde(default)]
    pub severity: Option<SeverityParserConfig>,
}

/// `type: severity_parser` (or `severity:` inside a parser): sets severity_number and severity_text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeverityParserConfig {
    #[serde(default)]
    pub id: Option<String>,
    pub parse_from: FieldPath,
    /// `default` (the level names trace … fatal4 and common spellings such as `warning`, `err`,
    /// `critical`) or `none`.
    #[serde(default)]
    pub preset: SeverityPreset,
    /// Level name → the values meaning it: strings (case-insensitive), integers, `{min, max}` ranges,
    /// or `2xx` … `5xx` for HTTP status codes.
    #[serde(default)]
    pub mapping: IndexMap<String, SeverityMatchers>,
    #[serde(default)]
    pub on_error: OnError,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SeverityPreset {
    #[default]
    Default,
    None,
}

/// One value or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum SeverityMatchers {
    One(SeverityMatcher),
    Many(Vec<SeverityMatcher>),
}

impl SeverityMatchers {
    pub fn as_slice(&self) -> &[SeverityMatcher] {
        match self {
            SeverityMatchers::One(m) => std::slice::from_ref(m),
            SeverityMatchers::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum SeverityMatcher {
    Int(i64),
    Str(String),
    Range { min: i64, max: i64 },
}

/// `type: time_parser` (or `timestamp:` inside a parser): sets the record's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeParserConfig {
    #[serde(default)]
    pub id: Option<String>,
    pub parse_from: FieldPath,
    #[serde(default)]
    pub layout_type: LayoutType,
    /// strptime: `%Y-%m-%dT%H:%M:%S%z` and the like (`%L` / `%f` read a fraction of a second);
    /// epoch: `s`, `ms`, `us`, `ns`, `s.ms`, `s.us`, `s.ns`.
    pub layout: String,
    /// IANA time zone for times written without an offset; default: the system's local zone.
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub on_error: OnError,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LayoutType {
    #[default]
    Strptime,
    Epoch,
    /// Go's reference-time layouts: refused by validation with a pointer to strptime.
    Gotime,
}

/// What an operator does with an entry it cannot parse. Either way it is counted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Keep the entry as it was, with a `log.parse_error` attribute saying why, and log a warning.
    #[default]
    Send,
    /// As `send`, without the log line.
    SendQuiet,
    /// Drop the entry (counted) and log a warning.
    Drop,
    DropQuiet,
}

/// A field of a log record: `body`, `body.key`, `attributes`, `attributes.key`, with `["a.b"]` for
/// keys holding dots. `resource` fields are accepted by the grammar and refused by validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    pub root: FieldRoot,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldRoot {
    Body,
    Attributes,
    Resource,
}

impl FieldPath {
    pub fn body() -> FieldPath {
        FieldPath {
            root: FieldRoot::Body,
            keys: Vec::new(),
        }
    }
    pub fn attributes() -> FieldPath {
        FieldPath {
            root: FieldRoot::Attributes,
            keys: Vec::new(),
        }
    }
}

impl std::str::FromStr for FieldPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "'{s}' is not a field ({why}); write body, body.key, attributes.key or attributes[\"key.with.dots\"]"
            )
        };
        let t = s.trim();
        let (root, mut rest) = [
            ("body", FieldRoot::Body),
            ("attributes", FieldRoot::Attributes),
            ("resource", FieldRoot::Resource),
        ]
        .into_iter()
        .find_map(|(name, root)| t.strip_prefix(name).map(|rest| (root, rest)))
        .ok_or_else(|| bad("it must start with body, attributes or resource"))?;
        let mut keys = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end == 0 {
                    return Err(bad("an empty key"));
                }
                keys.push(r[..end].to_owned());
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix("[\"") {
                let end = r.find("\"]").ok_or_else(|| bad("an unclosed [\""))?;
                keys.push(r[..end].to_owned());
                rest = &r[end + 2..];
            } else {
                return Err(bad("expected . or [\" after a key"));
            }
        }
        Ok(FieldPath { root, keys })
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.root {
            FieldRoot::Body => "body",
            FieldRoot::Attributes => "attributes",
            FieldRoot::Resource => "resource",
        })?;
        for k in &self.keys {
            if k.contains('.') || k.contains('[') {
                write!(f, "[\"{k}\"]")?;
            } else {
                write!(f, ".{k}")?;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

// ---------------------------------------------------------------------------------------------------------
// syslog

/// `receivers.syslog`: RFC 5424 or RFC 3164 messages over UDP and/or TCP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyslogReceiverConfig {
    pub protocol: SyslogProtocol,
    /// IANA time zone of RFC 3164 timestamps, which carry none; default UTC.
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub tcp: Option<SyslogTcpConfig>,
    #[serde(default)]
    pub udp: Option<SyslogUdpConfig>,
    /// Accepted for compatibility: on TCP each message's framing is detected (a message starting with
    /// a digit is octet-counted, RFC 6587 3.4.1; otherwise it ends at the trailer).
    #[serde(default)]
    pub enable_octet_counting: bool,
    /// The trailer ending a message that is not octet-counted: `LF` (default) or `NUL`.
    #[serde(default)]
    pub non_transparent_framing_trailer: FramingTrailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyslogProtocol {
    Rfc5424,
    Rfc3164,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum FramingTrailer {
    #[default]
    LF,
    NUL,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyslogTcpConfig {
    #[serde(deserialize_with = "crate::units::socket_addr")]
    pub listen_address: SocketAddr,
    /// The longest message; a longer one is cut (counted) and the connection resynchronised.
    #[serde(default = "SyslogTcpConfig::default_max_log_size")]
    pub max_log_size: ByteSize,
    /// Concurrent connections; further ones wait in the accept backlog.
    #[serde(default = "crate::schema::default_max_connections")]
    pub max_connections: usize,
    /// Syslog over TLS (RFC 5425), and mTLS with `client_ca_file`; unset: plaintext.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Which clients may connect. Syslog has no headers, so only `client_certificate` applies (the mTLS
    /// identity, with `tls.client_ca_file`); a connection whose certificate names none of
    /// `allowed_names` is closed before anything is read, and counted.
    #[serde(default)]
    pub auth: Option<crate::tls::ReceiverAuthConfig>,
    /// Per-client budgets (a client is its certificate name with `auth`, else its IP address):
    /// `requests_per_second` counts messages, `bytes_per_second` bytes as received. Over budget the
    /// connection is not read for a while, so the sender is slowed by TCP; nothing is dropped.
    #[serde(default)]
    pub rate_limit: Option<crate::tls::RateLimitConfig>,
}

impl SyslogTcpConfig {
    pub const fn default_max_log_size() -> ByteSize {
        ByteSize(1 << 20)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyslogUdpConfig {
    #[serde(deserialize_with = "crate::units::socket_addr")]
    pub listen_address: SocketAddr,
}

/// The OpenTelemetry severity number of a level name (`trace` … `fatal4`, and `warning` for `warn`),
/// as used in `severity.mapping` keys.
pub fn severity_number(name: &str) -> Option<i32> {
    let name = name.trim().to_ascii_lowercase();
    let (base, step) = match name.as_bytes().last() {
        Some(d @ b'2'..=b'4') => (&name[..name.len() - 1], i32::from(d - b'1')),
        _ => (name.as_str(), 0),
    };
    let first = match base {
        "trace" => 1,
        "debug" => 5,
        "info" => 9,
        "warn" | "warning" => 13,
        "error" => 17,
        "fatal" => 21,
        _ => return None,
    };
    Some(first + step)
}

/// The level name OpenTelemetry gives a severity number (`INFO`, `WARN3`, ...).
pub fn severity_text(number: i32) -> &'static str {
    const NAMES: [&str; 24] = [
        "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO",
        "INFO2", "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3",
        "ERROR4", "FATAL", "FATAL2", "FATAL3", "FATAL4",
    ];
    usize::try_from(number - 1)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("")
}

/// Epoch layouts a `time_parser` with `layout_type: epoch` accepts.
pub const EPOCH_LAYOUTS: &[&str] = &["s", "ms", "us", "ns", "s.ms", "s.us", "s.ns"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_read_dots_and_brackets() {
        let f: FieldPath = "attributes[\"http.method\"].x".parse().unwrap();
        assert_eq!(f.root, FieldRoot::Attributes);
        assert_eq!(f.keys, vec!["http.method".to_owned(), "x".to_owned()]);
        assert_eq!(f.to_string(), "attributes[\"http.method\"].x");
        assert_eq!("body".parse::<FieldPath>().unwrap(), FieldPath::body());
        assert!("attrs.x".parse::<FieldPath>().is_err());
        assert!("body..x".parse::<FieldPath>().is_err());
        assert!("body[\"x".parse::<FieldPath>().is_err());
    }

    #[test]
    fn severity_names_map_to_otel_numbers() {
        assert_eq!(severity_number("trace"), Some(1));
        assert_eq!(severity_number("INFO"), Some(9));
        assert_eq!(severity_number("warning"), Some(13));
        assert_eq!(severity_number("error3"), Some(19));
        assert_eq!(severity_number("fatal4"), Some(24));
        assert_eq!(severity_number("fatal5"), None);
        assert_eq!(severity_number("loud"), None);
        assert_eq!(severity_text(19), "ERROR3");
        assert_eq!(severity_text(0), "");
    }
}
