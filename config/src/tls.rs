//! TLS, authentication and secrets in config: the `tls:` block every network receiver and exporter shares
//! (the OpenTelemetry Collector's keys), the receivers' `auth:` and `rate_limit:` blocks, the exporters'
//! `auth:` block, and [`Secret`], the type of every value that must never be printed.
//!
//! Credentials are named by file, never written inline: a config is copied into tickets, diffs and
//! `outpost validate` output, a file of mode 0600 is not. Where a value must sit in the config (an
//! exporter header), `${file:PATH}` or `${env:VAR}` fills it in at load time and it is held as a
//! [`Secret`], whose `Debug`, `Display` and `Serialize` all print `<redacted>`, so no dump of the config,
//! log line or error message can carry it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, HumanDuration};

/// A value that must never be shown: its `Debug`, `Display` and `Serialize` print `<redacted>`. Read it
/// with [`Secret::expose`] at the one place it is sent.
#[derive(Clone, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub const REDACTED: &'static str = "<redacted>";

    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the request that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Self::REDACTED)
    }
}

/// The lowest TLS version a side accepts. rustls implements 1.2 and 1.3 only; 1.0 and 1.1 are broken and
/// refused at load time with that reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            F(f64),
        }
        let text = match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected \"1.2\" or \"1.3\""))?
        {
            Raw::S(s) => s,
            Raw::F(f) => f.to_string(),
        };
        match text.trim() {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            "1.0" | "1" | "1.1" => Err(serde::de::Error::custom(format!(
                "TLS {text} is not supported (it is broken); use \"1.2\" or \"1.3\""
            ))),
            _ => Err(serde::de::Error::custom(format!(
                "'{text}' is not a TLS version (expected \"1.2\" or \"1.3\")"
            ))),
        }
    }
}

/// `tls:`, with the OpenTelemetry Collector's keys, on receivers (server side) and exporters (client
/// side). Which keys apply depends on the side; validation says so when a key would be ignored.
///
/// - Server: `cert_file` + `key_file` are required; `client_ca_file` turns on mTLS (clients must present
///   a certificate signed by it).
/// - Client: `ca_file` replaces the system roots; `cert_file` + `key_file` are the client certificate for
///   mTLS; `insecure_skip_verify` accepts any server certificate; `server_name_override` is the name
///   checked in the server's certificate and sent as SNI; `insecure: true` means plaintext.
///
/// Certificate and key files are watched: a changed file is read again at the next handshake, checked at
/// most every `reload_interval`, so certificates rotate without a restart.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Exporters: plaintext. An `https://` endpoint with `insecure: true` is refused as a contradiction.
    #[serde(default)]
    pub insecure: bool,
    /// Exporters: do not verify the server's certificate (tests only; a warning says so).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Exporters: the CA bundle (PEM) that signs the server's certificate, instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The certificate chain (PEM): the server's on a receiver, the client's (mTLS) on an exporter.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM, PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Receivers: the CA bundle (PEM) client certificates must chain to; set, every client must present
    /// one (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Exporters: the name verified in the server's certificate and sent as SNI, instead of the
    /// endpoint's host.
    #[serde(default)]
    pub server_name_override: Option<String>,
    /// How often the files are checked for changes (at the next handshake after the interval).
    #[serde(default = "TlsConfig::default_reload_interval")]
    pub reload_interval: HumanDuration,
}

impl TlsConfig {
    pub const fn default_reload_interval() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(1))
    }

    /// Whether an exporter with an endpoint of no scheme (`host:port`) should use TLS: only when this
    /// block asks for something TLS does (a CA, a client certificate, a server name or skipping
    /// verification). Plain `host:port` stays plaintext otherwise, as before TLS existed in outpost.
    pub fn wants_tls(&self) -> bool {
        !self.insecure
            && (self.ca_file.is_some()
                || self.cert_file.is_some()
                || self.insecure_skip_verify
                || self.server_name_override.is_some())
    }

    /// Every file the block names, with its key.
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("client_ca_file", &self.client_ca_file),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }
}

/// An exporter's OTLP-style `tls:` was called `ClientTlsConfig` before receivers had TLS.
pub type ClientTlsConfig = TlsConfig;

/// `auth:` on a receiver's protocol: who may send. Any configured method that succeeds admits the
/// request; with none configured, everyone is admitted. Failures are answered UNAUTHENTICATED / 401 and
/// counted by reason.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverAuthConfig {
    /// A file of accepted bearer tokens, one per line (`#` comments and blank lines ignored); re-read when
    /// it changes. Clients send `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// An htpasswd file (`user:hash` per line; bcrypt `$2y$` and `{SHA}` hashes); re-read when it
    /// changes. Clients send `Authorization: Basic …`.
    #[serde(default)]
    pub htpasswd_file: Option<PathBuf>,
    /// mTLS identity: the client certificate (required by `tls.client_ca_file`) must name one of these in
    /// its subject CN or a DNS / URI / email SAN. Empty: any certificate the CA signed.
    #[serde(default)]
    pub client_certificate: Option<ClientCertificateAuth>,
}

impl ReceiverAuthConfig {
    pub fn is_empty(&self) -> bool {
        self.bearer_token_file.is_none()
            && self.htpasswd_file.is_none()
            && self.client_certificate.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificateAuth {
    #[serde(default)]
    pub allowed_names: Vec<String>,
}

/// `auth:` on an exporter: credentials sent with every request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExporterAuthConfig {
    /// A file holding the bearer token (`Authorization: Bearer <token>`), re-read when it changes, so a
    /// short-lived token refreshed by another process is picked up without a restart.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

/// `rate_limit:` on a receiver's protocol: per-client budgets. A client is its authenticated identity
/// (token, user or certificate name) when there is one, else its IP address. Over budget, requests are
/// answered RESOURCE_EXHAUSTED / 429 with Retry-After, and counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second per client; unset: no request limit.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Request bytes (as received) per second per client; unset: no byte limit.
    #[serde(default)]
    pub bytes_per_second: Option<ByteSize>,
    /// Seconds of budget a quiet client may spend at once.
    #[serde(default = "RateLimitConfig::default_burst_seconds")]
    pub burst_seconds: f64,
    /// Clients tracked at once; the least recently seen are forgotten beyond it (bounded memory).
    #[serde(default = "RateLimitConfig::default_max_clients")]
    pub max_clients: usize,
}

impl RateLimitConfig {
    pub const fn default_burst_seconds() -> f64 {
        1.0
    }
    pub const fn default_max_clients() -> usize {
        10_000
    }
}

// ---------------------------------------------------------------------------------------------------------
// Reading the files. The collector uses the same functions, so a config that loads is one whose files
// the receivers and exporters can use.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates of a PEM file, in order; an error naming the file if it cannot be read or holds none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    std::fs::metadata(path).map_err(|e| format!("cannot read '{shown}': {e}"))?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read '{shown}': {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("'{shown}' is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "'{shown}' holds no certificate (expected PEM blocks '-----BEGIN CERTIFICATE-----')"
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file. The error never quotes the file's content.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let shown = path.display();
    std::fs::metadata(path).map_err(|e| format!("cannot read '{shown}': {e}"))?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::Io(e) => format!("cannot read '{shown}': {e}"),
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "'{shown}' holds no private key (expected a PEM block such as '-----BEGIN PRIVATE KEY-----')"
        ),
        _ => format!("'{shown}' is not a PEM private key file"),
    })
}

/// A certificate chain and its key, checked to belong together.
pub fn load_certified_key(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let provider = rustls::crypto::ring::default_provider();
    let signer = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "'{}': unsupported private key ({e}); use an RSA, ECDSA P-256/P-384 or Ed25519 key",
            key_file.display()
        )
    })?;
    let certified = rustls::sign::CertifiedKey::new(certs, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(_) => Err(format!(
            "the key in '{}' does not match the certificate in '{}'; give the key the certificate was \
             issued for",
            key_file.display(),
            cert_file.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn versions() {
        let v: TlsVersion = serde_json::from_str("\"1.3\"").unwrap();
        assert_eq!(v, TlsVersion::V1_3);
        let v: TlsVersion = serde_json::from_str("1.2").unwrap();
        assert_eq!(v, TlsVersion::V1_2);
        let e = serde_json::from_str::<TlsVersion>("\"1.1\"").unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }
}
