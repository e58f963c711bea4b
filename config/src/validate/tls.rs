//! `tls:`, `auth:` and `rate_limit:` blocks: the files they name are read now, at load time, so a missing
//! certificate, an unreadable token file or a key that belongs to another certificate is reported with
//! its key and line instead of failing the first handshake. No message quotes a file's content.

use std::path::Path;

use crate::report::Report;
use crate::schema::*;
use crate::source::key_path;
use crate::tls::{load_certified_key, load_certs};

fn readable(r: &mut Report, path: &str, file: &Path) {
    if let Err(e) = std::fs::File::open(file) {
        r.error(path, format!("cannot read '{}': {e}", file.display()));
    }
}

fn cert_and_key(r: &mut Report, tls_path: &str, tls: &TlsConfig, required: bool) {
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            if let Err(e) = load_certified_key(cert, key) {
                let at = if e.contains(&format!("'{}'", key.display()))
                    && !e.contains("does not match")
                {
                    "key_file"
                } else {
                    "cert_file"
                };
                r.error(&key_path(tls_path, at), e);
            }
        }
        (Some(_), None) => r.error(
            tls_path,
            "cert_file is set without key_file; set both (the certificate and its private key)",
        ),
        (None, Some(_)) => r.error(
            tls_path,
            "key_file is set without cert_file; set both (the certificate and its private key)",
        ),
        (None, None) if required => r.error(
            tls_path,
            "a receiver's tls needs cert_file and key_file (the server certificate and its key)",
        ),
        (None, None) => {}
    }
}

fn ca(r: &mut Report, path: &str, file: &Path) {
    if let Err(e) = load_certs(file) {
        r.error(path, e);
    }
}

/// `tls:`, `auth:` and `rate_limit:` of a receiver's protocol at `path`.
pub(super) fn receiver(
    r: &mut Report,
    path: &str,
    tls: Option<&TlsConfig>,
    auth: Option<&ReceiverAuthConfig>,
    rate_limit: Option<&RateLimitConfig>,
) {
    if let Some(tls) = tls {
        let tls_path = key_path(path, "tls");
        cert_and_key(r, &tls_path, tls, true);
        if let Some(file) = &tls.client_ca_file {
            ca(r, &key_path(&tls_path, "client_ca_file"), file);
        }
        for (key, set) in [
            ("insecure", tls.insecure),
            ("insecure_skip_verify", tls.insecure_skip_verify),
            ("server_name_override", tls.server_name_override.is_some()),
            ("ca_file", tls.ca_file.is_some()),
        ] {
            if set {
                let hint = if key == "ca_file" {
                    " (client certificates are checked against client_ca_file)"
                } else {
                    ""
                };
                r.warning(
                    &key_path(&tls_path, key),
                    format!("{key} applies to exporters; a receiver ignores it{hint}"),
                );
            }
        }
    }
    if let Some(auth) = auth {
        let auth_path = key_path(path, "auth");
        if auth.is_empty() {
            r.error(
                &auth_path,
                "auth names no method; set bearer_token_file, htpasswd_file and/or client_certificate",
            );
        }
        if let Some(file) = &auth.bearer_token_file {
            readable(r, &key_path(&auth_path, "bearer_token_file"), file);
        }
        if let Some(file) = &auth.htpasswd_file {
            readable(r, &key_path(&auth_path, "htpasswd_file"), file);
        }
        let mtls = tls.is_some_and(|t| t.client_ca_file.is_some());
        if auth.client_certificate.is_some() && !mtls {
            r.error(
                &key_path(&auth_path, "client_certificate"),
                "client_certificate needs mTLS: set tls.client_ca_file (the CA that signs client \
                 certificates) on this receiver",
            );
        }
        if tls.is_none() && (auth.bearer_token_file.is_some() || auth.htpasswd_file.is_some()) {
            r.warning(
                &auth_path,
                "tokens and passwords would cross the network in plaintext; configure tls on this \
                 receiver",
            );
        }
    }
    if let Some(rl) = rate_limit {
        let rl_path = key_path(path, "rate_limit");
        if rl.requests_per_second.is_none() && rl.bytes_per_second.is_none() {
            r.error(
                &rl_path,
                "rate_limit sets no limit; set requests_per_second and/or bytes_per_second",
            );
        }
        if rl
            .requests_per_second
            .is_some_and(|v| v.is_nan() || v <= 0.0)
        {
            r.error(
                &key_path(&rl_path, "requests_per_second"),
                "must be a positive number",
            );
        }
        if rl.bytes_per_second.is_some_and(|b| b.bytes() == 0) {
            r.error(&key_path(&rl_path, "bytes_per_second"), "must be above 0");
        }
        if rl.burst_seconds.is_nan() || rl.burst_seconds <= 0.0 {
            r.error(&key_path(&rl_path, "burst_seconds"), "must be above 0");
        }
        if rl.max_clients == 0 {
            r.error(&key_path(&rl_path, "max_clients"), "must be above 0");
        }
    }
}

/// `auth:` of a receiver whose protocol has no headers (syslog over TCP): only the mTLS identity can
/// be checked, so tokens and passwords are refused instead of being silently ignored.
pub(super) fn headerless(r: &mut Report, auth_path: &str, auth: &ReceiverAuthConfig) {
    for (key, set) in [
        ("bearer_token_file", auth.bearer_token_file.is_some()),
        ("htpasswd_file", auth.htpasswd_file.is_some()),
    ] {
        if set {
            r.error(
                &key_path(auth_path, key),
                format!(
                    "{key} cannot apply here: syslog carries no Authorization header; use \
                     client_certificate (mTLS, with tls.client_ca_file) to say which clients may send"
                ),
            );
        }
    }
}

/// `tls:` and `auth:` of an exporter at `path` whose endpoint(s) are `urls`.
pub(super) fn exporter(
    r: &mut Report,
    path: &str,
    tls: &TlsConfig,
    auth: &ExporterAuthConfig,
    urls: &[&str],
) {
    // A scrape job's block is Prometheus's `tls_config`; everything else uses `tls`.
    let tls_path = if urls.is_empty() {
        key_path(path, "tls_config")
    } else {
        key_path(path, "tls")
    };
    let https = urls.iter().any(|u| u.starts_with("https://"));
    if tls.insecure && https {
        r.error(
            &key_path(&tls_path, "insecure"),
            "insecure: true (plaintext) contradicts the https:// endpoint; use http:// for plaintext or \
             drop insecure",
        );
    }
    cert_and_key(r, &tls_path, tls, false);
    if let Some(file) = &tls.ca_file {
        ca(r, &key_path(&tls_path, "ca_file"), file);
    }
    if tls.client_ca_file.is_some() {
        r.warning(
            &key_path(&tls_path, "client_ca_file"),
            "client_ca_file applies to receivers; an exporter verifies its destination with ca_file",
        );
    }
    if tls.insecure_skip_verify {
        r.warning(
            &key_path(&tls_path, "insecure_skip_verify"),
            "the destination's certificate is not verified: anyone on the path can read and change the \
             data; use ca_file instead outside tests",
        );
    }
    if let Some(file) = &auth.bearer_token_file {
        readable(
            r,
            &key_path(&key_path(path, "auth"), "bearer_token_file"),
            file,
        );
    }
}
