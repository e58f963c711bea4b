//! Credentials an exporter sends: the bearer token of `auth.bearer_token_file`, re-read when the file
//! changes so a short-lived token refreshed by another process (a sidecar, a cron job) is used from the
//! next request on, without a restart. The token is marked sensitive wherever it becomes a header, so
//! HTTP libraries leave it out of their debug output, and never appears in outpost's logs or errors.

use std::path::Path;
use std::time::Duration;

use http::HeaderValue;

use crate::tls::Reloading;

pub struct BearerToken(Reloading<HeaderValue>);

impl BearerToken {
    pub fn new(path: &Path) -> Result<Self, String> {
        let p = path.to_path_buf();
        Reloading::new(
            format!("bearer token file {}", path.display()),
            vec![path.to_path_buf()],
            Duration::from_secs(1),
            move || {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| format!("cannot read '{}': {e}", p.display()))?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(format!(
                        "'{}' is empty; it should hold the token",
                        p.display()
                    ));
                }
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        format!("'{}' holds characters a header cannot carry", p.display())
                    })?;
                value.set_sensitive(true);
                Ok(value)
            },
        )
        .map(Self)
    }

    /// `Bearer <token>`, with the token as the file holds it now.
    pub fn header(&self) -> HeaderValue {
        (*self.0.current()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_token_file_is_used_from_the_next_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-token\n").unwrap();
        let t = BearerToken::new(&path).unwrap();
        assert_eq!(t.header(), "Bearer first-token");
        assert!(t.header().is_sensitive());
        std::fs::write(&path, "the-second-token\n").unwrap();
        // Checked at most once a second.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(t.header(), "Bearer the-second-token");
    }
}
