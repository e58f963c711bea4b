//! TLS for receivers and exporters: rustls with the `ring` provider, configured from the `tls:` block
//! ([`outpost_config::TlsConfig`]).
//!
//! Certificates, keys and CA bundles (a receiver's `client_ca_file`, an exporter's `ca_file`) are
//! [`Reloading`]: a rotated file is used from the next handshake
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

/// What a reloaded file gives: the thing built from it, and its soonest certificate expiry in seconds.
type WithExpiry<V> = (V, Option<f64>);

/// A CA file reloaded on change like every other TLS file, with `build` making the verifier from its
/// roots: a client or destination that moves to a new CA is trusted from the next handshake once the file
/// names that CA, without a restart. The gauge reports the soonest expiry among the file's certificates.
fn watched_ca<V: Send + Sync + 'static>(
    label: &str,
    ca: &Path,
    interval: Duration,
    metrics: &TlsMetrics,
    build: impl Fn(RootCertStore) -> Result<V, String> + Send + Sync + 'static,
) -> Result<Arc<Reloading<WithExpiry<V>>>, String> {
    let path = ca.to_path_buf();
    let file = ca.display().to_string();
    let (m, m2, file2) = (metrics.clone(), metrics.clone(), file.clone());
    let r = Reloading::new(
        format!("{label} {}", ca.display()),
        vec![path.clone()],
        interval,
        move || {
            let certs = load_certs(&path)?;
            let expiry = certs.iter().filter_map(seconds_to_expiry).reduce(f64::min);
            let verifier =
                build(roots(certs, &path)?).map_err(|e| format!("'{}': {e}", path.display()))?;
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
            let verifier =
                ClientVerifier(watched_ca("client CA", ca, interval, metrics, |store| {
                    WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
                        .build()
                        .map_err(|e| e.to_string())
                })?);
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
        let roots = match &cfg.ca_file {
            Some(ca) => Roots::File(watched_ca(
                "CA",
                ca,
                cfg.reload_interval.get(),
                metrics,
                webpki_verifier,
            )?),
            None => Roots::System(webpki_verifier(system_roots()?)?),
        };
        // HTTP clients verify against the URL's host; the override is applied here instead.
        let name = match &cfg.server_name_override {
            Some(name) => Some(server_name(cfg, name)?),
            None => None,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier { roots, name }))
    };
    let mut config = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            let watched = watched_key(cert, key, cfg.reload_interval.get(), metrics)?;
            builder.with_client_cert_resolver(Arc::new(ClientResolver(watched)))
        }
        _ => builder.with_no_client_auth(),
    };
    if cfg.ca_file.is_some() || cfg.cert_file.is_some() {
        // A resumed session skips certificate verification and reuses the client identity it was
        // made with: a CA taken out of `ca_file`, or a rotated client certificate, would still be in
        // use on every reconnect for the ticket's lifetime. Exporters keep their connections open, so
        // the full handshake on a reconnect costs little.
        config.resumption = rustls::client::Resumption::disabled();
    }
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

fn webpki_verifier(
    store: RootCertStore,
) -> Result<Arc<rustls::client::WebPkiServerVerifier>, String> {
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
        .build()
        .map_err(|e| e.to_string())
}

/// The verifier built from an exporter's CA file, and the CA's time to expiry for the gauge.
type ServerCa = (Arc<rustls::client::WebPkiServerVerifier>, Option<f64>);

/// Where an exporter's trusted roots come from.
enum Roots {
    /// The system's, read once.
    System(Arc<rustls::client::WebPkiServerVerifier>),
    /// `ca_file`, reloaded on change.
    File(Arc<Reloading<ServerCa>>),
}

/// Verifies the server's certificate against the current roots, for `server_name_override` when set
/// instead of the host the client connected to.
struct ServerVerifier {
    roots: Roots,
    name: Option<ServerName<'static>>,
}

impl ServerVerifier {
    fn current(&self) -> Arc<rustls::client::WebPkiServerVerifier> {
        match &self.roots {
            Roots::System(v) => v.clone(),
            Roots::File(r) => r.current().0.clone(),
        }
    }
}

impl std::fmt::Debug for ServerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerVerifier")
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.name.as_ref().unwrap_or(server_name);
        self.current()
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
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

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_pipelines::Telemetry;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use std::path::PathBuf;

    struct Ca(CertifiedIssuer<'static, KeyPair>);

    impl Ca {
        fn new(name: &str) -> Ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
        }

        /// (certificate PEM, key PEM) for `name`.
        fn leaf(&self, name: &str) -> (String, String) {
            let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.0).unwrap();
            (cert.pem(), key.serialize_pem())
        }
    }

    fn put(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        // Written beside and renamed over, as rotation tools do: never a half-written file.
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// One handshake over a socket pair; the client's error if it fails on either side.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> Result<(), String> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(client);
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut s = acceptor.accept(b).await.map_err(|e| e.to_string())?;
            s.write_all(b"ok").await.map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())
        });
        let name = ServerName::try_from("localhost").unwrap();
        let client = async {
            use tokio::io::AsyncReadExt;
            let mut c = connector
                .connect(name, a)
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 2];
            c.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        }
        .await;
        let server = server.await.unwrap();
        client.and(server)
    }

    /// An exporter's `ca_file` and client certificate are read again when they change: a destination
    /// whose CA the exporter does not trust yet, and that asks for a client certificate from a CA the
    /// exporter's current certificate is not from, is reached once both files are rewritten, without a
    /// new client config.
    #[tokio::test]
    async fn exporter_ca_file_and_client_certificate_are_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let (server_ca, client_ca, other) =
            (Ca::new("server CA"), Ca::new("client CA"), Ca::new("other"));
        let (cert, key) = server_ca.leaf("localhost");
        let server_cfg = TlsConfig {
            cert_file: Some(put(dir.path(), "server.pem", &cert)),
            key_file: Some(put(dir.path(), "server.key", &key)),
            client_ca_file: Some(put(dir.path(), "client-ca.pem", &client_ca.0.pem())),
            ..Default::default()
        };
        // The exporter starts with the wrong CA and a client certificate from the wrong CA.
        let (ccert, ckey) = other.leaf("edge-1");
        let client_cfg = TlsConfig {
            ca_file: Some(put(dir.path(), "ca.pem", &other.0.pem())),
            cert_file: Some(put(dir.path(), "client.pem", &ccert)),
            key_file: Some(put(dir.path(), "client.key", &ckey)),
            reload_interval: outpost_config::HumanDuration(Duration::ZERO),
            ..Default::default()
        };
        let telemetry = Telemetry::new();
        let server = server_config(&server_cfg, &telemetry.tls("receiver"), &[]).unwrap();
        let client = client_config(&client_cfg, &telemetry.tls("exporter"), &[]).unwrap();

        let e = handshake(server.clone(), client.clone()).await.unwrap_err();
        assert!(e.contains("invalid peer certificate"), "{e}");

        // The destination's CA arrives: the server is trusted, but it refuses our certificate.
        put(dir.path(), "ca.pem", &server_ca.0.pem());
        let e = handshake(server.clone(), client.clone()).await.unwrap_err();
        assert!(
            !e.contains("invalid peer certificate") && e.contains("alert"),
            "{e}"
        );

        // A client certificate from the CA the destination trusts: the handshake completes.
        let (ccert, ckey) = client_ca.leaf("edge-1");
        put(dir.path(), "client.key", &ckey);
        put(dir.path(), "client.pem", &ccert);
        handshake(server.clone(), client.clone())
            .await
            .expect("both files reloaded");

        // Back to a CA that did not sign the server: refused again. The new file is what counts, not a
        // session resumed from the handshake that succeeded.
        put(dir.path(), "ca.pem", &other.0.pem());
        let e = handshake(server, client).await.unwrap_err();
        assert!(e.contains("invalid peer certificate"), "{e}");
        let text = telemetry.encode();
        assert!(
            text.contains(r#"outpost_tls_reloads_total{component="exporter""#),
            "{text}"
        );
    }
}
