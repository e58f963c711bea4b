//! The shape of exporter endpoints, checked without resolving anything: a config must validate the same
//! on a laptop and on a node whose DNS is down.
//!
//! This build has no TLS, so `https://` is refused with that reason rather than failing at the first
//! export; a plain `host:port` or `http://` endpoint needs no `tls.insecure: true`.

const NO_TLS: &str =
    "https:// needs TLS, which this build of outpost does not include; use http://host:port \
                      (or host:port) on a trusted network, or terminate TLS in a local proxy";

/// An OTLP/gRPC endpoint: `host:port`, `http://host:port` or (refused) `https://host:port`.
pub(crate) fn check_grpc(endpoint: &str) -> Result<(), String> {
    let expected = || {
        format!(
            "not an endpoint: '{endpoint}' (expected host:port, http://host:port or https://host:port)"
        )
    };
    let authority = if endpoint.starts_with("https://") {
        return Err(NO_TLS.to_owned());
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        rest.strip_suffix('/').unwrap_or(rest)
    } else if endpoint.contains("://") {
        return Err(expected());
    } else {
        endpoint
    };
    host_port(authority, true).map_err(|_| expected())
}

/// An OTLP/HTTP URL: `http://host[:port][/path]`, or (refused) `https://…`.
pub(crate) fn check_http_url(url: &str) -> Result<(), String> {
    let expected =
        || format!("not a URL: '{url}' (expected http://host:port or https://host:port)");
    if url.starts_with("https://") {
        return Err(NO_TLS.to_owned());
    }
    let rest = url.strip_prefix("http://").ok_or_else(expected)?;
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
        assert!(check_grpc("https://collector:4317")
            .unwrap_err()
            .contains("needs TLS"));
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
        assert!(check_http_url("https://c:4318")
            .unwrap_err()
            .contains("needs TLS"));
    }
}
