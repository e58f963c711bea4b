//! The gate in front of a network receiver: who may send ([`Authenticator`], the `auth:` block) and how
//! much each client may send ([`RateLimiter`], the `rate_limit:` block).
//!
//! Authentication methods: a bearer token from a token file, a user and password checked against an
//! htpasswd file (bcrypt or `{SHA}`), or the names in an mTLS client certificate. Any configured method
//! that succeeds admits the request. Token and htpasswd files are re-read when they change. Failures are
//! counted by reason (`outpost_receiver_auth_failures_total`) and answered UNAUTHENTICATED / 401 with a
//! message that says what was missing or wrong, never what was sent.
//!
//! A client, for the limits, is its authenticated identity when it has one (so clients behind one NAT
//! address with their own tokens get their own budgets), else its IP address. Budgets are token buckets;
//! the map of clients is bounded (`max_clients`), the least recently seen forgotten first. Requests are
//! refused when their bucket is short ([`Gate::admit`]); a stream that has no request to refuse (syslog
//! over TCP) is charged for what it already sent, may go into debt, and waits until the debt is paid
//! ([`Gate::throttle`]), which holds it to the same long-run rate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http::HeaderMap;
use outpost_config::{RateLimitConfig, ReceiverAuthConfig, TlsConfig};
use outpost_pipelines::telemetry::ReceiverMetrics;
use sha2::{Digest, Sha256};

use crate::net::PeerInfo;
use crate::tls::Reloading;

/// The identity a request is accounted to (see the module docs). Never holds a secret: tokens appear
/// only as a short hash prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(pub Arc<str>);

/// Why a request was refused at the gate.
#[derive(Debug)]
pub enum Denied {
    /// UNAUTHENTICATED / 401.
    Unauthenticated(&'static str),
    /// RESOURCE_EXHAUSTED / 429, retry after the given time.
    Limited(Duration),
}

impl Denied {
    pub fn message(&self) -> String {
        match self {
            Denied::Unauthenticated(reason) => format!(
                "authentication failed ({}); send valid credentials",
                reason.replace('_', " ")
            ),
            Denied::Limited(_) => {
                "this client is over its rate limit (rate_limit on this receiver); retry later"
                    .into()
            }
        }
    }
}

/// `auth:` and `rate_limit:` of one receiver protocol.
pub struct Gate {
    auth: Option<Authenticator>,
    limiter: Option<RateLimiter>,
    metrics: ReceiverMetrics,
}

impl Gate {
    pub fn new(
        auth: Option<&ReceiverAuthConfig>,
        tls: Option<&TlsConfig>,
        rate_limit: Option<&RateLimitConfig>,
        metrics: ReceiverMetrics,
    ) -> Result<Self, String> {
        let interval = tls.map_or(Duration::from_secs(1), |t| t.reload_interval.get());
        Ok(Self {
            auth: match auth {
                Some(a) if !a.is_empty() => Some(Authenticator::new(a, interval)?),
                _ => None,
            },
            limiter: rate_limit.map(RateLimiter::new),
            metrics,
        })
    }

    /// Authenticates a request and charges it one request; counts every refusal.
    pub fn admit(&self, headers: &HeaderMap, peer: Option<&PeerInfo>) -> Result<ClientKey, Denied> {
        let key = self.identify(headers, peer)?;
        if let Some(l) = &self.limiter {
            l.charge(&key, 1.0, 0.0)
                .inspect_err(|_| self.metrics.rate_limited("requests"))?;
        }
        Ok(key)
    }

    /// Who the client is: its authenticated identity, or its IP address without `auth`. A failure is
    /// counted by reason. Nothing is charged.
    pub fn identify(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerInfo>,
    ) -> Result<ClientKey, Denied> {
        match &self.auth {
            Some(auth) => auth.authenticate(headers, peer).inspect_err(|d| {
                if let Denied::Unauthenticated(reason) = d {
                    self.metrics.auth_failed(reason);
                }
            }),
            None => Ok(ClientKey(peer.map_or_else(
                || "unknown".into(),
                |p| p.addr.ip().to_string().into(),
            ))),
        }
    }

    /// For a stream that can be slowed instead of refused (syslog over TCP): charges `items` and
    /// `bytes` already read to `key` and returns how long the reader should pause before reading more
    /// so the client stays within its budget on average. Each pause is counted by the limit that
    /// caused it.
    pub fn throttle(&self, key: &ClientKey, items: u64, bytes: u64) -> Duration {
        let Some(l) = &self.limiter else {
            return Duration::ZERO;
        };
        let (wait, limit) = l.charge_debt(key, items as f64, bytes as f64);
        if let Some(limit) = limit {
            self.metrics.rate_limited(limit);
        }
        wait
    }

    /// Charges `bytes` of request body to `key`'s byte budget.
    pub fn admit_bytes(&self, key: Option<&ClientKey>, bytes: u64) -> Result<(), Denied> {
        match (&self.limiter, key) {
            (Some(l), Some(key)) => l
                .charge(key, 0.0, bytes as f64)
                .inspect_err(|_| self.metrics.rate_limited("bytes")),
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Authentication

struct Authenticator {
    tokens: Option<Reloading<Vec<[u8; 32]>>>,
    htpasswd: Option<Reloading<HashMap<String, String>>>,
    /// Passwords already checked against a bcrypt hash, as SHA-256 of (hash, password): bcrypt costs tens
    /// of milliseconds by design, too much to pay on every request of a busy client. Keyed by the hash, so
    /// a changed htpasswd entry never matches an old verification.
    verified: Mutex<HashMap<[u8; 32], ()>>,
    cert_names: Option<Vec<String>>,
}

const VERIFIED_CACHE_MAX: usize = 4096;

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn lines(path: &PathBuf) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

impl Authenticator {
    fn new(cfg: &ReceiverAuthConfig, interval: Duration) -> Result<Self, String> {
        let tokens = match &cfg.bearer_token_file {
            Some(path) => {
                let p = path.clone();
                Some(Reloading::new(
                    format!("bearer token file {}", path.display()),
                    vec![path.clone()],
                    interval,
                    move || {
                        let tokens: Vec<[u8; 32]> =
                            lines(&p)?.iter().map(|t| sha256(&[t.as_bytes()])).collect();
                        if tokens.is_empty() {
                            return Err(format!("'{}' holds no token", p.display()));
                        }
                        Ok(tokens)
                    },
                )?)
            }
            None => None,
        };
        let htpasswd = match &cfg.htpasswd_file {
            Some(path) => {
                let p = path.clone();
                Some(Reloading::new(
                    format!("htpasswd file {}", path.display()),
                    vec![path.clone()],
                    interval,
                    move || parse_htpasswd(&p),
                )?)
            }
            None => None,
        };
        Ok(Self {
            tokens,
            htpasswd,
            verified: Mutex::new(HashMap::new()),
            cert_names: cfg
                .client_certificate
                .as_ref()
                .map(|c| c.allowed_names.clone()),
        })
    }

    fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerInfo>,
    ) -> Result<ClientKey, Denied> {
        let mut failure = "missing_credentials";
        if let Some(allowed) = &self.cert_names {
            match peer.and_then(|p| p.cert_names.as_ref()) {
                Some(names) => {
                    let ok = allowed.is_empty() || names.iter().any(|n| allowed.contains(n));
                    if ok {
                        let who = names.first().cloned().unwrap_or_default();
                        return Ok(ClientKey(format!("cert:{who}").into()));
                    }
                    failure = "certificate_name_not_allowed";
                }
                None => failure = "no_client_certificate",
            }
        }
        let Some(value) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(Denied::Unauthenticated(failure));
        };
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let Some(tokens) = &self.tokens else {
                return Err(Denied::Unauthenticated("bearer_not_accepted"));
            };
            let given = sha256(&[credentials.as_bytes()]);
            // Compared as hashes: the time taken says nothing about how much of a token matched.
            if tokens.current().contains(&given) {
                let short: String = given[..4].iter().map(|b| format!("{b:02x}")).collect();
                return Ok(ClientKey(format!("token:{short}").into()));
            }
            return Err(Denied::Unauthenticated("invalid_token"));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Some(users) = &self.htpasswd else {
                return Err(Denied::Unauthenticated("basic_not_accepted"));
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(Denied::Unauthenticated("malformed_authorization"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or(Denied::Unauthenticated("malformed_authorization"))?;
            let users = users.current();
            let Some(hash) = users.get(user) else {
                return Err(Denied::Unauthenticated("unknown_user"));
            };
            if self.password_matches(hash, password) {
                return Ok(ClientKey(format!("user:{user}").into()));
            }
            return Err(Denied::Unauthenticated("invalid_password"));
        }
        Err(Denied::Unauthenticated("malformed_authorization"))
    }

    fn password_matches(&self, hash: &str, password: &str) -> bool {
        if let Some(b64) = hash.strip_prefix("{SHA}") {
            use sha1::Digest as _;
            let digest = sha1::Sha1::digest(password.as_bytes());
            let expected = base64::engine::general_purpose::STANDARD.decode(b64);
            return expected.is_ok_and(|e| e.as_slice() == digest.as_slice());
        }
        if hash.starts_with("$2") {
            let key = sha256(&[hash.as_bytes(), password.as_bytes()]);
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.contains_key(&key) {
                return true;
            }
            drop(verified);
            let ok = bcrypt::verify(password, hash).unwrap_or(false);
            if ok {
                verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                if verified.len() >= VERIFIED_CACHE_MAX {
                    verified.clear();
                }
                verified.insert(key, ());
            }
            return ok;
        }
        false
    }
}

/// `user:hash` lines. Hashes other than bcrypt and `{SHA}` are refused by name: accepting them as
/// plaintext (as some servers do) would make a typo in the file a password.
fn parse_htpasswd(path: &PathBuf) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (n, line) in lines(path)?.into_iter().enumerate() {
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!(
                "'{}': entry {} is not user:hash",
                path.display(),
                n + 1
            ));
        };
        if !(hash.starts_with("$2") || hash.starts_with("{SHA}")) {
            return Err(format!(
                "'{}': the hash of user '{user}' is neither bcrypt ($2y$…) nor {{SHA}}; create it with \
                 `htpasswd -B`",
                path.display()
            ));
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

// ---------------------------------------------------------------------------------------------------------
// Per-client limits

struct Bucket {
    requests: f64,
    bytes: f64,
    at: Instant,
}

struct RateLimiter {
    requests_per_second: Option<f64>,
    bytes_per_second: Option<f64>,
    burst_seconds: f64,
    max_clients: usize,
    // A std Mutex: a few arithmetic operations under it, never an await.
    clients: Mutex<HashMap<ClientKey, Bucket>>,
}

impl RateLimiter {
    fn new(cfg: &RateLimitConfig) -> Self {
        Self {
            requests_per_second: cfg.requests_per_second,
            bytes_per_second: cfg.bytes_per_second.map(|b| b.bytes() as f64),
            burst_seconds: cfg.burst_seconds,
            max_clients: cfg.max_clients,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `requests` and `bytes` from `key`'s buckets, or refuses with the time until they refill.
    fn charge(&self, key: &ClientKey, requests: f64, bytes: f64) -> Result<(), Denied> {
        let now = Instant::now();
        let cap_r = self.requests_per_second.map(|r| r * self.burst_seconds);
        let cap_b = self.bytes_per_second.map(|b| b * self.burst_seconds);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        self.make_room(&mut clients, key);
        let b = clients.entry(key.clone()).or_insert(Bucket {
            requests: cap_r.unwrap_or(0.0),
            bytes: cap_b.unwrap_or(0.0),
            at: now,
        });
        let elapsed = now.duration_since(b.at).as_secs_f64();
        b.at = now;
        let mut wait: f64 = 0.0;
        if let (Some(rate), Some(cap)) = (self.requests_per_second, cap_r) {
            b.requests = (b.requests + elapsed * rate).min(cap);
            if requests > 0.0 && b.requests < requests {
                wait = wait.max((requests - b.requests) / rate);
            }
        }
        if let (Some(rate), Some(cap)) = (self.bytes_per_second, cap_b) {
            b.bytes = (b.bytes + elapsed * rate).min(cap);
            // A body larger than the whole burst could never pass; it goes through on a full bucket
            // (driving it negative) instead of being refused forever.
            if bytes > 0.0 && b.bytes < bytes.min(cap) {
                wait = wait.max((bytes.min(cap) - b.bytes) / rate);
            }
        }
        if wait > 0.0 {
            return Err(Denied::Limited(Duration::from_secs_f64(
                wait.clamp(0.001, 3600.0),
            )));
        }
        if self.requests_per_second.is_some() {
            b.requests -= requests;
        }
        if self.bytes_per_second.is_some() {
            b.bytes -= bytes;
        }
        Ok(())
    }
}

impl RateLimiter {
    /// Takes `requests` and `bytes` from `key`'s buckets even when that leaves them in debt, and returns
    /// the time until the debt is paid back, with the limit that set it. Data already read cannot be
    /// refused, only paid for by waiting; the client's long-run rate is the configured one either way.
    fn charge_debt(
        &self,
        key: &ClientKey,
        requests: f64,
        bytes: f64,
    ) -> (Duration, Option<&'static str>) {
        let now = Instant::now();
        let cap_r = self.requests_per_second.map(|r| r * self.burst_seconds);
        let cap_b = self.bytes_per_second.map(|b| b * self.burst_seconds);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        self.make_room(&mut clients, key);
        let b = clients.entry(key.clone()).or_insert(Bucket {
            requests: cap_r.unwrap_or(0.0),
            bytes: cap_b.unwrap_or(0.0),
            at: now,
        });
        let elapsed = now.duration_since(b.at).as_secs_f64();
        b.at = now;
        let (mut wait, mut limit) = (0.0_f64, None);
        if let (Some(rate), Some(cap)) = (self.requests_per_second, cap_r) {
            b.requests = (b.requests + elapsed * rate).min(cap) - requests;
            if b.requests < 0.0 {
                (wait, limit) = (-b.requests / rate, Some("messages"));
            }
        }
        if let (Some(rate), Some(cap)) = (self.bytes_per_second, cap_b) {
            b.bytes = (b.bytes + elapsed * rate).min(cap) - bytes;
            if b.bytes < 0.0 && -b.bytes / rate > wait {
                (wait, limit) = (-b.bytes / rate, Some("bytes"));
            }
        }
        (Duration::from_secs_f64(wait.min(3600.0)), limit)
    }

    /// Forgets the client seen longest ago when `key` is new and the map is full: it has the fullest
    /// bucket anyway.
    fn make_room(&self, clients: &mut HashMap<ClientKey, Bucket>, key: &ClientKey) {
        if !clients.contains_key(key) && clients.len() >= self.max_clients {
            if let Some(oldest) = clients
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(k, _)| k.clone())
            {
                clients.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_config::ByteSize;

    #[test]
    fn a_stream_over_budget_pauses_for_its_debt() {
        let l = limiter(Some(100.0), Some(1000));
        let a = ClientKey("a".into());
        // Within the burst: no pause.
        assert_eq!(l.charge_debt(&a, 50.0, 500.0), (Duration::ZERO, None));
        // 150 messages past the remaining 50: a debt of 100 messages, a second at 100/s.
        let (wait, limit) = l.charge_debt(&a, 150.0, 100.0);
        assert_eq!(limit, Some("messages"));
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Bytes dominate when their debt is longer: 3000 bytes over at 1000/s.
        let b = ClientKey("b".into());
        let (wait, limit) = l.charge_debt(&b, 1.0, 4000.0);
        assert_eq!(limit, Some("bytes"));
        assert!(wait > Duration::from_millis(2900), "{wait:?}");
        // Another client is not affected.
        l.clients.lock().unwrap().clear();
        assert_eq!(l.charge_debt(&b, 1.0, 10.0), (Duration::ZERO, None));
    }

    fn limiter(rps: Option<f64>, bps: Option<u64>) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            requests_per_second: rps,
            bytes_per_second: bps.map(ByteSize),
            burst_seconds: 1.0,
            max_clients: 2,
        })
    }

    #[test]
    fn request_budget_is_per_client() {
        let l = limiter(Some(3.0), None);
        let (a, b) = (ClientKey("a".into()), ClientKey("b".into()));
        for _ in 0..3 {
            l.charge(&a, 1.0, 0.0).unwrap();
        }
        assert!(matches!(l.charge(&a, 1.0, 0.0), Err(Denied::Limited(_))));
        l.charge(&b, 1.0, 0.0)
            .expect("another client has its own budget");
        // A third client evicts the oldest; the map stays bounded.
        l.charge(&ClientKey("c".into()), 1.0, 0.0).unwrap();
        assert_eq!(l.clients.lock().unwrap().len(), 2);
    }

    #[test]
    fn byte_budget_refuses_then_waits() {
        let l = limiter(None, Some(1000));
        let a = ClientKey("a".into());
        l.charge(&a, 0.0, 800.0).unwrap();
        match l.charge(&a, 0.0, 800.0) {
            Err(Denied::Limited(wait)) => assert!(wait > Duration::from_millis(100), "{wait:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn htpasswd_bcrypt_and_sha() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let bcrypt_hash = bcrypt::hash("open sesame", 4).unwrap();
        // {SHA} of "password", as `htpasswd -s` writes it.
        std::fs::write(
            &path,
            format!("alice:{bcrypt_hash}\nbob:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"),
        )
        .unwrap();
        let auth = Authenticator::new(
            &ReceiverAuthConfig {
                htpasswd_file: Some(path),
                ..Default::default()
            },
            Duration::from_secs(1),
        )
        .unwrap();
        let basic = |u: &str, p: &str| {
            let mut h = HeaderMap::new();
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            h.insert(
                http::header::AUTHORIZATION,
                format!("Basic {v}").parse().unwrap(),
            );
            h
        };
        assert_eq!(
            auth.authenticate(&basic("alice", "open sesame"), None)
                .unwrap()
                .0
                .as_ref(),
            "user:alice"
        );
        // Cached the second time; still right.
        assert!(auth
            .authenticate(&basic("alice", "open sesame"), None)
            .is_ok());
        assert!(matches!(
            auth.authenticate(&basic("alice", "wrong"), None),
            Err(Denied::Unauthenticated("invalid_password"))
        ));
        assert!(auth.authenticate(&basic("bob", "password"), None).is_ok());
        assert!(matches!(
            auth.authenticate(&basic("carol", "x"), None),
            Err(Denied::Unauthenticated("unknown_user"))
        ));
        assert!(matches!(
            auth.authenticate(&HeaderMap::new(), None),
            Err(Denied::Unauthenticated("missing_credentials"))
        ));
    }
}
