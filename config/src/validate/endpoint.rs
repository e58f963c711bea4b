//! The shape of exporter endpoints, checked without resolving anything: a config must validate the same
//! on a laptop and on a node whose DNS is down.
//!
//! `https://` means TLS, `http://` plaintext; a bare `host:port` is plaintext unless the exporter's `tls:`
//! block asks for TLS (see `TlsConfig::wants_tls`).

/// An OTLP/gRPC endpoint: `host:port`, `http://host:port` or `https://host:port`.
pub(crate) fn check_grpc(endpoint: &str) -> Result<(), String> {
    let expected = || {
        format!(
            "not an endpoint: '{endpoint}' (expected host:port, http://host:port or https://host:port)"
        )
    };
    let authority = if let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    {
        rest.strip_suffix('/').unwrap_or(rest)
    } else if endpoint.contains("://") {
        return Err(expected());
    } else {
        endpoint
    };
    host_port(authority, true).map_err(|_| expected())
}

/// An HTTP URL: `http://host[:port][/path]` or `https://…`.
pub(crate) fn check_http_url(url: &str) -> Result<(), String> {
    let expected =
        || format!("not a URL: '{url}' (expected http://host:port or https://host:port)");
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(expected)?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if path.chars().any(char::is_whitespace) {
        return Err(expected());
    }
    host_port(authority, false).map_err(|_| expected())
}

/// `host:port`, `[v6]:port`, or without the port when it is optional.
fn host_port(authority: &str, port_required: bool) -> Result<(), ()> {
    if authority.is_empty()
        || authority
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'))
    {
        return Err(());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or(())?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(());
        }
        match after {
            "" => (inside, None),
            p => (inside, Some(p.strip_prefix(':').ok_or(())?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(());
    }
    match port {
        None if port_required => Err(()),
        None => Ok(()),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => Ok(()),
            _ => Err(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_endpoints() {
        for ok in [
            "collector:4317",
            "10.0.0.1:4317",
            "http://collector:4317",
            "http://c:4317/",
            "[::1]:4317",
        ] {
            assert_eq!(check_grpc(ok), Ok(()), "{ok}");
        }
        for bad in [
            "collector",
            "collector:",
            "collector:http",
            ":4317",
            "grpc://c:4317",
            "c:4317/x",
            "c:0",
            "c:70000",
            "::1:4317",
            "",
        ] {
            let e = check_grpc(bad).expect_err(bad);
            assert!(e.starts_with("not an endpoint"), "{bad}: {e}");
        }
        assert_eq!(check_grpc("https://collector:4317"), Ok(()));
    }

    #[test]
    fn http_urls() {
        for ok in [
            "http://c:4318",
            "http://c",
            "http://c:4318/otlp",
            "http://[::1]:4318/v1/traces",
        ] {
            assert_eq!(check_http_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "c:4318",
            "ftp://c/x",
            "http://",
            "http:///x",
            "http://c:x/",
            "http://a b/",
        ] {
            let e = check_http_url(bad).expect_err(bad);
            assert!(e.starts_with("not a URL"), "{bad}: {e}");
        }
        assert_eq!(check_http_url("https://c:4318/v1/traces"), Ok(()));
    }
}
