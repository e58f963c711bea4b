//! Exporter `otlphttp`: OTLP over HTTP, protobuf (default) or JSON, compressed as configured.

use futures::future::BoxFuture;
use outpost_config::{ComponentId, Compression, OtlpEncoding, OtlpHttpExporterConfig};
use prost::Message;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};

use std::sync::Arc;

use super::credentials::BearerToken;
use super::delivery::Bandwidth;
use super::{compress, http_error, Delivered, ExportError, Exporter, Payload};

/// Bytes an HTTP/1.1 request adds to its body (request line and headers), debited from the bandwidth
/// budget with the body: an estimate, since the client writes them.
const REQUEST_OVERHEAD: usize = 256;
use crate::otlp::OtlpSignal;

pub struct OtlpHttpExporter {
    client: reqwest::Client,
    url: String,
    compression: Compression,
    encoding: OtlpEncoding,
    bandwidth: Option<Arc<Bandwidth>>,
    token: Option<Arc<BearerToken>>,
}

impl OtlpHttpExporter {
    pub fn new<T: OtlpSignal>(
        id: &ComponentId,
        cfg: &OtlpHttpExporterConfig,
        bandwidth: Option<Arc<Bandwidth>>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, String> {
        let url = cfg.signal_url(T::SIGNAL).ok_or_else(|| {
            format!(
                "exporters.{id}: no URL for {signal}: set endpoint or {signal}_endpoint",
                signal = T::SIGNAL
            )
        })?;
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
        let token = match &cfg.auth.bearer_token_file {
            Some(path) => Some(Arc::new(
                BearerToken::new(path).map_err(|e| format!("exporters.{id}.auth: {e}"))?,
            )),
            None => None,
        };
        let client = crate::tls::http_client_builder(tls)
            .timeout(cfg.timeout.get())
            .default_headers(headers)
            .build()
            .map_err(|e| format!("exporters.{id}: cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            url,
            compression: cfg.compression,
            encoding: cfg.encoding,
            bandwidth,
            token,
        })
    }
}

impl<T: OtlpSignal> Exporter<T> for OtlpHttpExporter {
    fn export<'a>(
        &'a self,
        payload: &'a Payload<T>,
    ) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(async move {
            let (body, content_type) = match self.encoding {
                OtlpEncoding::Proto => (payload.bytes.to_vec(), "application/x-protobuf"),
                OtlpEncoding::Json => (
                    serde_json::to_vec(&payload.decode()?)
                        .map_err(|e| ExportError::permanent("encode_error", e))?,
                    "application/json",
                ),
            };
            let (body, content_encoding) = compress(self.compression, body)
                .map_err(|e| ExportError::permanent("encode_error", e))?;
            let wire_bytes = body.len();
            if let Some(bw) = &self.bandwidth {
                bw.debit(wire_bytes + REQUEST_OVERHEAD);
            }
            let mut req = self
                .client
                .post(&self.url)
                .header(CONTENT_TYPE, content_type)
                .body(body);
            if let Some(ce) = content_encoding {
                req = req.header(CONTENT_ENCODING, ce);
            }
            if let Some(token) = &self.token {
                req = req.header(reqwest::header::AUTHORIZATION, token.header());
            }
            let resp = req.send().await.map_err(|e| {
                let reason = if e.is_timeout() {
                    "timeout"
                } else {
                    "connect_error"
                };
                ExportError::retryable(reason, e)
            })?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.unwrap_or_default();
            if status.is_success() {
                let parsed = match self.encoding {
                    OtlpEncoding::Proto => T::Response::decode(&bytes[..]).ok(),
                    OtlpEncoding::Json => serde_json::from_slice::<T::Response>(&bytes).ok(),
                };
                return Ok(Delivered {
                    wire_bytes,
                    rejected: parsed.map(|r| T::rejected_in(&r)).unwrap_or_default(),
                    ..Default::default()
                });
            }
            Err(http_error(status.as_u16(), &headers, &bytes))
        })
    }
}
