//! Exporter `prometheusremotewrite`: metrics to a Prometheus remote-write 1.0 endpoint.
//!
//! One queued payload is translated ([`crate::prom::translate`]) and packed into one or more requests
//! (`max_batch_size_bytes` before compression, `max_samples_per_request`), each a snappy-compressed
//! `WriteRequest` POSTed in order. To the runner the payload is all-or-nothing: it is done only when every
//! request is answered. What happens per request:
//!
//! - 2xx: delivered. The next request goes out once the bandwidth cap allows.
//! - A retryable failure (connection error, timeout, 429, 5xx — remote-write's rule is that every 5xx is
//!   retried — with Retry-After honoured by the runner) or 401/403: the runner retries the payload. The
//!   requests already accepted are *not* sent again: the exporter keeps the encoded requests and how far
//!   it got until the payload is done (for at most [`MAX_REMEMBERED`] payloads). This matters beyond
//!   saving bandwidth and CPU: Prometheus refuses a sample older than the newest one of its series, and
//!   it refuses a whole request for one such sample, so re-sending an accepted request holding two
//!   samples of a series would turn a transient error into a loss. (After a restart the record is sent
//!   again from its first request; what Prometheus then refuses as out of order is already stored.)
//! - 413: with nothing of the payload delivered yet, the runner halves the payload and retries each half;
//!   otherwise the request's points are dropped, counted as `http_413`.
//! - Any other 4xx: Prometheus refused the request as a whole (it rolls the request back); its points are
//!   dropped, counted with the status as reason, and the remaining requests still go out.
//!
//! Points the translation cannot carry (delta temporality, unsupported scales) are counted as dropped with
//! their reason; the rest count as sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use outpost_config::Signal;
use outpost_config::{ComponentId, PrometheusRemoteWriteExporterConfig};
use outpost_pipelines::Metrics;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};

use super::delivery::Bandwidth;
use super::{http_error, Delivered, ErrorClass, ExportError, Exporter, Payload};
use crate::otlp::OtlpSignal;
use crate::prom::pack;
use crate::prom::remote_write;
use crate::prom::translate::{self, Settings};

/// Bytes an HTTP/1.1 request adds to its body (request line and headers), debited from the bandwidth
/// budget with the body: an estimate, since the client writes them.
const REQUEST_OVERHEAD: usize = 320;

/// Payloads whose progress is remembered at most. Only payloads being retried are remembered, at most
/// `num_consumers` at a time; the bound covers those the runner gave up on without telling the exporter
/// (`max_age`, `max_elapsed_time`), which would otherwise be kept forever. Forgetting one costs a resend.
const MAX_REMEMBERED: usize = 64;

/// One encoded request of a payload.
struct Body {
    data: Bytes,
    points: usize,
}

/// How far the delivery of one payload got, kept between the runner's attempts.
struct Progress {
    /// A handle on the payload's bytes: while it is held the allocation cannot be reused, so its address
    /// identifies the payload.
    payload: Bytes,
    bodies: Vec<Body>,
    next: usize,
    /// Points dropped so far, by reason (translation, refused requests).
    dropped: Vec<(String, usize)>,
    /// Whether any request of this payload was accepted.
    delivered_any: bool,
    /// When it was remembered, to forget the oldest first.
    remembered: u64,
}

pub struct PrometheusRemoteWriteExporter {
    id: String,
    client: reqwest::Client,
    token: Option<Arc<super::credentials::BearerToken>>,
    url: String,
    settings: Settings,
    max_bytes: usize,
    max_samples: usize,
    bandwidth: Option<Arc<Bandwidth>>,
    progress: Mutex<HashMap<usize, Progress>>,
    remembered: AtomicU64,
    /// Unix seconds of the last warning about a refused request (at most one a second).
    last_warning: AtomicU64,
}

impl PrometheusRemoteWriteExporter {
    /// The exporter for signal `T`, which must be metrics (validation refuses it in other pipelines).
    pub fn build<T: OtlpSignal>(
        id: &ComponentId,
        cfg: &PrometheusRemoteWriteExporterConfig,
        bandwidth: Option<Arc<Bandwidth>>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Box<dyn Exporter<T>>, String> {
        if T::SIGNAL != Signal::Metrics {
            return Err(format!(
                "exporters.{id}: prometheusremotewrite only sends metrics; remove it from the {} pipeline",
                T::SIGNAL
            ));
        }
        let exporter: Box<dyn Exporter<Metrics>> = Box::new(Self::new(id, cfg, bandwidth, tls)?);
        // `T` is `Metrics` (checked above); the type system learns it through `Any`.
        let any: Box<dyn std::any::Any> = Box::new(exporter);
        any.downcast::<Box<dyn Exporter<T>>>()
            .map(|b| *b)
            .map_err(|_| format!("exporters.{id}: prometheusremotewrite only sends metrics"))
    }

    pub fn new(
        id: &ComponentId,
        cfg: &PrometheusRemoteWriteExporterConfig,
        bandwidth: Option<Arc<Bandwidth>>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("exporters.{id}.headers: '{k}' is not a valid header name"))?;
            let mut value = HeaderValue::from_str(v.expose()).map_err(|_| {
                format!("exporters.{id}.headers.{k}: the value is not a valid header value")
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = crate::tls::http_client_builder(tls)
            .timeout(cfg.timeout.get())
            .default_headers(headers)
            .user_agent(concat!("outpost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("exporters.{id}: cannot build the HTTP client: {e}"))?;
        let token = match &cfg.auth.bearer_token_file {
            Some(path) => Some(Arc::new(
                super::credentials::BearerToken::new(path)
                    .map_err(|e| format!("exporters.{id}.auth: {e}"))?,
            )),
            None => None,
        };
        Ok(Self {
            id: id.to_string(),
            token,
            client,
            url: cfg.endpoint.clone(),
            settings: Settings {
                namespace: cfg.namespace.clone(),
                external_labels: Settings::external_labels(&cfg.external_labels),
                resource_to_telemetry_conversion: cfg.resource_to_telemetry_conversion.enabled,
                target_info: cfg.target_info.enabled,
                add_metric_suffixes: cfg.add_metric_suffixes,
                send_metadata: cfg.send_metadata,
            },
            max_bytes: cfg.max_batch_size_bytes.bytes().max(1) as usize,
            max_samples: cfg.max_samples_per_request.max(1),
            bandwidth,
            progress: Mutex::new(HashMap::new()),
            remembered: AtomicU64::new(0),
            last_warning: AtomicU64::new(0),
        })
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Progress>> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where an earlier attempt at `payload` stopped, or a fresh translation of it.
    fn resume_or_encode(&self, payload: &Payload<Metrics>) -> Result<Progress, ExportError> {
        let key = payload.bytes.as_ptr() as usize;
        if let Some(p) = self.progress().remove(&key) {
            if p.payload.as_ptr() == payload.bytes.as_ptr()
                && p.payload.len() == payload.bytes.len()
            {
                return Ok(p);
            }
        }
        let request = payload.decode()?;
        let translation = translate::translate(&request, &self.settings);
        let dropped = translation
            .dropped
            .iter()
            .map(|(r, n)| ((*r).to_owned(), *n))
            .collect();
        let bodies = pack::pack(translation, self.max_bytes, self.max_samples)
            .into_iter()
            .map(|r| {
                let data = r
                    .body
                    .encode_snappy()
                    .map_err(|e| ExportError::permanent("encode_error", e))?;
                Ok(Body {
                    data: Bytes::from(data),
                    points: r.points,
                })
            })
            .collect::<Result<Vec<_>, ExportError>>()?;
        Ok(Progress {
            payload: payload.bytes.clone(),
            bodies,
            next: 0,
            dropped,
            delivered_any: false,
            remembered: 0,
        })
    }

    /// Keeps `p` for the next attempt at its payload.
    fn remember(&self, mut p: Progress) {
        p.remembered = self.remembered.fetch_add(1, Ordering::Relaxed);
        let mut map = self.progress();
        if map.len() >= MAX_REMEMBERED {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, v)| v.remembered)
                .map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        map.insert(p.payload.as_ptr() as usize, p);
    }

    /// `Authorization: Bearer …` from `auth.bearer_token_file`, as the file holds it now.
    fn auth_header(&self) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        if let Some(token) = &self.token {
            h.insert(reqwest::header::AUTHORIZATION, token.header());
        }
        h
    }

    async fn send(&self, body: Bytes) -> Result<(), ExportError> {
        let resp = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, remote_write::CONTENT_TYPE)
            .header(CONTENT_ENCODING, remote_write::CONTENT_ENCODING)
            .header(remote_write::VERSION_HEADER, remote_write::PROTOCOL_VERSION)
            .headers(self.auth_header())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let reason = if e.is_timeout() {
                    "timeout"
                } else {
                    "connect_error"
                };
                ExportError::retryable(reason, e)
            })?;
        let status = resp.status();
        if status.is_success() {
            // Read the (usually empty) body so the connection can be reused.
            let _ = resp.bytes().await;
            return Ok(());
        }
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap_or_default();
        let mut err = http_error(status.as_u16(), &headers, &bytes);
        if status.is_server_error() {
            // The remote-write specification: every 5xx is retried.
            err.class = ErrorClass::Retryable;
        }
        Err(err)
    }

    fn warn_refused(&self, err: &ExportError, points: usize) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if self.last_warning.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(exporter = %self.id, points, reason = %err.reason, error = %err.message,
                "Prometheus refused a remote-write request; its points are dropped");
        }
    }

    async fn deliver(&self, payload: &Payload<Metrics>) -> Result<Delivered, ExportError> {
        let mut p = self.resume_or_encode(payload)?;
        let mut wire_bytes = 0;
        let mut sent_in_this_attempt = false;
        while p.next < p.bodies.len() {
            let body = &p.bodies[p.next];
            if let Some(bw) = &self.bandwidth {
                // The runner waited for the first request of an attempt; later ones wait here.
                if sent_in_this_attempt {
                    bw.ready().await;
                }
                bw.debit(body.data.len() + REQUEST_OVERHEAD);
            }
            sent_in_this_attempt = true;
            match self.send(body.data.clone()).await {
                Ok(()) => {
                    wire_bytes += body.data.len();
                    p.delivered_any = true;
                    p.next += 1;
                }
                Err(err) => match err.class {
                    ErrorClass::Retryable | ErrorClass::Unauthorized => {
                        self.remember(p);
                        return Err(err);
                    }
                    ErrorClass::TooLarge if !p.delivered_any => return Err(err),
                    ErrorClass::TooLarge | ErrorClass::Permanent => {
                        let points = body.points;
                        self.warn_refused(&err, points);
                        match p.dropped.iter_mut().find(|(r, _)| *r == err.reason) {
                            Some((_, n)) => *n += points,
                            None => p.dropped.push((err.reason.clone(), points)),
                        }
                        if p.bodies.len() == 1 && p.dropped.len() == 1 {
                            // The whole payload was one refused request: the runner counts and logs it.
                            return Err(err);
                        }
                        p.next += 1;
                    }
                },
            }
        }
        Ok(Delivered {
            wire_bytes,
            dropped: p.dropped,
            ..Default::default()
        })
    }
}

impl Exporter<Metrics> for PrometheusRemoteWriteExporter {
    fn export<'a>(
        &'a self,
        payload: &'a Payload<Metrics>,
    ) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(self.deliver(payload))
    }
}

#[cfg(test)]
mod tests;
