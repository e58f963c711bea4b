//! TLS for receivers and exporters: rustls with the `ring` provider, configured from the `tls:` block
//! ([`outpost_config::TlsConfig`]).
//!
//! Certificates, keys and the client CA are [`Reloading`]: a rotated file is used from the next handshake
//! on (checked at most every `reload_interval`), connections already open keep the certificate they were
//! made with, and a broken replacement leaves the previous files in use. Each configured certificate's
//! time to expiry is a gauge (`outpost_tls_certificate_expiry_seconds{component,file}`), refreshed every
//! few seconds by a task that also checks for rotation when no handshake happens.

pub mod reload;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outpost_config::tls::{load_certified_key, load_certs};
use outpost_config::{TlsConfig, TlsVersion};
use outpost_pipelines::telemetry::TlsMetrics;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

pub use reload::Reloading;

/// The one crypto provider outpost uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process default, for libraries that look it up (reqwest without a preconfigured TLS
/// config). Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static BOTH: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match min {
        TlsVersion::V1_2 => BOTH,
        TlsVersion::V1_3 => ONLY13,
    }
}

/// Seconds from now until the first certificate of `cert` (DER) expires.
pub fn seconds_to_expiry(cert: &CertificateDer<'_>) -> Option<f64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let not_after = parsed.validity().not_after.timestamp() as f64;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(not_after - now)
}

/// The names a certificate proves: its subject CN, and its DNS, URI and email SANs.
pub fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        use x509_parser::extensions::GeneralName;
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) | GeneralName::RFC822Name(n) => {
                    names.push((*n).to_owned())
                }
                _ => {}
            }
        }
    }
    names
}

/// Keeps the expiry gauges of `watched` fresh and checks for rotation every few seconds, until the
/// watched values are dropped (the component stopped).
fn refresh_expiry<T: Send + Sync + 'static>(watched: Weak<Reloading<T>>) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(w) = watched.upgrade() else { return };
                // `current` checks the files and, through `observe`, sets the gauges.
                w.current();
            }
        });
    }
}

/// A certificate and key pair, reloaded on change, with its expiry published.
fn watched_key(
    cert: &Path,
    key: &Path,
    interval: Duration,
    metrics: &TlsMetrics,
) -> Result<Arc<Reloading<Arc<CertifiedKey>>>, String> {
    let (c, k) = (cert.to_path_buf(), key.to_path_buf());
    let m = metrics.clone();
    let m2 = metrics.clone();
    let file = cert.display().to_string();
    let file2 = file.clone();
    let r = Reloading::new(
        format!("certificate {}", cert.display()),
        vec![cert.to_path_buf(), key.to_path_buf()],
        interval,
        move || load_certified_key(&c, &k),
    )?
    .observe(move |ck: &Arc<CertifiedKey>| {
        if let Some(s) = ck.cert.first().and_then(seconds_to_expiry) {
            m.set_expiry(&file, s);
        }
    })
    .on_reload(move |ok| m2.reloaded(&file2, ok));
    let r = Arc::new(r);
    refresh_expiry(Arc::downgrade(&r));
    Ok(r)
}

fn roots(certs: Vec<CertificateDer<'static>>, file: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "'{}' holds no usable CA certificate",
            file.display()
        ));
    }
    Ok(store)
}

fn watched_ca(
    ca: &Path,
    interval: Duration,
    metrics: &TlsMetrics,
) -> Result<Arc<Reloading<CaVerifier>>, String> {
    let path = ca.to_path_buf();
    let file = ca.display().to_string();
    let (m, m2, file2) = (metrics.clone(), metrics.clone(), file.clone());
    let r = Reloading::new(
        format!("client CA {}", ca.display()),
        vec![path.clone()],
        interval,
        move || {
            let certs = load_certs(&path)?;
            let expiry = certs.iter().filter_map(seconds_to_expiry).reduce(f64::min);
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(certs, &path)?),
                provider(),
            )
            .build()
            .map_err(|e| format!("'{}': {e}", path.display()))?;
            Ok((verifier, expiry))
        },
    )?
    .observe(move |(_, expiry)| {
        if let Some(s) = expiry {
            m.set_expiry(&file, *s);
        }
    })
    .on_reload(move |ok| m2.reloaded(&file2, ok));
    let r = Arc::new(r);
    refresh_expiry(Arc::downgrade(&r));
    Ok(r)
}

/// The server side of a receiver's `tls:` block.
pub fn server_config(
    cfg: &TlsConfig,
    metrics: &TlsMetrics,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) else {
        return Err("tls needs cert_file and key_file".into());
    };
    let interval = cfg.reload_interval.get();
    let resolver = ServerResolver(watched_key(cert, key, interval, metrics)?);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(cfg.min_version))
        .map_err(|e| e.to_string())?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let verifier = ClientVerifier(watched_ca(ca, interval, metrics)?);
            builder.with_client_cert_verifier(Arc::new(verifier))
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

struct ServerResolver(Arc<Reloading<Arc<CertifiedKey>>>);

impl std::fmt::Debug for ServerResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerResolver")
    }
}

impl ResolvesServerCert for ServerResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some((*self.0.current()).clone())
    }
}

/// Verifies client certificates against the current client CA (reloaded on change).
/// The verifier built from the client CA file, and the CA's time to expiry for the gauge.
type CaVerifier = (Arc<dyn ClientCertVerifier>, Option<f64>);

struct ClientVerifier(Arc<Reloading<CaVerifier>>);

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientVerifier")
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would have to outlive a reload; clients send their certificate without them.
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .current()
            .0
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .0
            .verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .0
            .verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().0.supported_verify_schemes()
    }
}

/// The client side of an exporter's `tls:` block. `alpn`: `h2` for gRPC.
pub fn client_config(
    cfg: &TlsConfig,
    metrics: &TlsMetrics,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(cfg.min_version))
        .map_err(|e| e.to_string())?;
    let builder = if cfg.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider())))
    } else {
        let store = match &cfg.ca_file {
            Some(ca) => {
                let certs = load_certs(ca)?;
                if let Some(s) = certs.iter().filter_map(seconds_to_expiry).reduce(f64::min) {
                    metrics.set_expiry(&ca.display().to_string(), s);
                }
                roots(certs, ca)?
            }
            None => system_roots()?,
        };
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            provider(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        match &cfg.server_name_override {
            // HTTP clients verify against the URL's host; the override is applied here instead.
            Some(name) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NameOverride {
                    inner: webpki,
                    name: server_name(cfg, name)?,
                })),
            None => builder.with_webpki_verifier(webpki),
        }
    };
    let mut config = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            let watched = watched_key(cert, key, cfg.reload_interval.get(), metrics)?;
            builder.with_client_cert_resolver(Arc::new(ClientResolver(watched)))
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no system CA certificates found ({}); install the ca-certificates package or set tls.ca_file",
            found
                .errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "none in the usual places".into())
        ));
    }
    Ok(store)
}

/// The server name to verify and send as SNI: `server_name_override`, else the endpoint's host.
pub fn server_name(cfg: &TlsConfig, host: &str) -> Result<ServerName<'static>, String> {
    let name = cfg
        .server_name_override
        .as_deref()
        .unwrap_or(host)
        .trim_matches(['[', ']']);
    ServerName::try_from(name.to_owned())
        .map_err(|e| format!("'{name}' is not a valid server name: {e}"))
}

struct ClientResolver(Arc<Reloading<Arc<CertifiedKey>>>);

impl std::fmt::Debug for ClientResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientResolver")
    }
}

impl ResolvesClientCert for ClientResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some((*self.0.current()).clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies the server's certificate as usual, but for `server_name_override` instead of the host
/// the client connected to.
#[derive(Debug)]
struct NameOverride {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake signatures are still checked
/// (so the connection is at least with the holder of the presented key).
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a server-side handshake failed, as a metric label.
pub fn handshake_failure_reason(e: &std::io::Error) -> &'static str {
    match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::NoCertificatesPresented) => "no_client_certificate",
        Some(rustls::Error::InvalidCertificate(_)) => "untrusted_client_certificate",
        Some(rustls::Error::AlertReceived(_)) => "tls_alert_from_client",
        _ => "tls_handshake",
    }
}

/// Every file named in `cfg`, for callers that list them.
pub fn files(cfg: &TlsConfig) -> Vec<PathBuf> {
    cfg.files().map(|(_, p)| p.clone()).collect()
}

/// A reqwest client builder using `tls` for `https://` URLs (or a verifying default), with outpost's
/// crypto provider. Every reqwest client outpost builds starts here: reqwest is built without a provider
/// of its own (see the workspace Cargo.toml).
pub fn http_client_builder(tls: Option<Arc<rustls::ClientConfig>>) -> reqwest::ClientBuilder {
    install_default_provider();
    let builder = reqwest::Client::builder();
    match tls {
        Some(config) => builder.use_preconfigured_tls((*config).clone()),
        None => builder,
    }
}
