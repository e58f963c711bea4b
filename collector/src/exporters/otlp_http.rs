//! Exporter `otlphttp`: OTLP over HTTP, protobuf (default) or JSON, compressed as configured.

use futures::future::BoxFuture;
use outpost_config::{ComponentId, Compression, OtlpEncoding, OtlpHttpExporterConfig};
use prost::Message;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};

use super::{compress, Delivered, ExportError, Exporter, Payload};
use crate::otlp::OtlpSignal;

pub struct OtlpHttpExporter {
    client: reqwest::Client,
    url: String,
    compression: Compression,
    encoding: OtlpEncoding,
}

impl OtlpHttpExporter {
    pub fn new<T: OtlpSignal>(
        id: &ComponentId,
        cfg: &OtlpHttpExporterConfig,
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
            let value = HeaderValue::from_str(v).map_err(|_| {
                format!("exporters.{id}.headers.{k}: the value is not a valid header value")
            })?;
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout.get())
            .default_headers(headers)
            .build()
            .map_err(|e| format!("exporters.{id}: cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            url,
            compression: cfg.compression,
            encoding: cfg.encoding,
        })
    }
}

impl<T: OtlpSignal> Exporter<T> for OtlpHttpExporter {
    fn export<'a>(
        &'a mut self,
        payload: &'a Payload<T>,
    ) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(async move {
            let (body, content_type) = match self.encoding {
                OtlpEncoding::Proto => (payload.bytes.to_vec(), "application/x-protobuf"),
                OtlpEncoding::Json => (
                    serde_json::to_vec(&payload.decode()?).map_err(|e| ExportError {
                        reason: "encode_error".into(),
                        message: e.to_string(),
                        retryable: false,
                    })?,
                    "application/json",
                ),
            };
            let (body, content_encoding) =
                compress(self.compression, body).map_err(|e| ExportError {
                    reason: "encode_error".into(),
                    message: e.to_string(),
                    retryable: false,
                })?;
            let wire_bytes = body.len();
            let mut req = self
                .client
                .post(&self.url)
                .header(CONTENT_TYPE, content_type)
                .body(body);
            if let Some(ce) = content_encoding {
                req = req.header(CONTENT_ENCODING, ce);
            }
            let resp = req.send().await.map_err(|e| ExportError {
                reason: if e.is_timeout() {
                    "timeout"
                } else {
                    "connect_error"
                }
                .into(),
                message: e.to_string(),
                retryable: true,
            })?;
            let status = resp.status();
            let bytes = resp.bytes().await.unwrap_or_default();
            if status.is_success() {
                let parsed = match self.encoding {
                    OtlpEncoding::Proto => T::Response::decode(&bytes[..]).ok(),
                    OtlpEncoding::Json => serde_json::from_slice::<T::Response>(&bytes).ok(),
                };
                return Ok(Delivered {
                    wire_bytes,
                    rejected: parsed.map(|r| T::rejected_in(&r)).unwrap_or_default(),
                });
            }
            Err(ExportError {
                reason: format!("http_{}", status.as_u16()),
                message: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
                retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
            })
        })
    }
}
