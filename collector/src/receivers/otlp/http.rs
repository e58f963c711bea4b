//! OTLP/HTTP: `POST` to the per-signal paths with protobuf or JSON bodies, optionally gzip or zstd
//! compressed. Answers use the request's content type, errors included (a `google.rpc.Status`), as the
//! OTLP specification asks.

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use outpost_config::{OtlpHttpConfig, Signal};
use outpost_pipelines::telemetry::ReceiverMetrics;
use outpost_pipelines::{Logs, Metrics, Refusal, Traces};
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::RETRY_AFTER_SECS;
use crate::net::{LimitedListener, PeerInfo, ServerTls};
use crate::otlp::OtlpSignal;
use crate::receivers::gate::{ClientKey, Denied, Gate};
use crate::receivers::{admit, Inputs, InputsOf, Outcome};

struct HttpState {
    inputs: Arc<Inputs>,
    metrics: ReceiverMetrics,
    gate: Arc<Gate>,
    max_body: usize,
    max_decompressed: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Encoding {
    Proto,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the body of every OTLP/HTTP error response.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An error response: HTTP status, the gRPC code it corresponds to, and a message for the client.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    grpc_code: tonic::Code,
    message: String,
    reason: &'static str,
}

impl Failure {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        let grpc_code = match status {
            StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
            StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            StatusCode::NOT_FOUND => tonic::Code::Unimplemented,
            StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
            _ => tonic::Code::InvalidArgument,
        };
        Self {
            status,
            grpc_code,
            message: message.into(),
            reason,
        }
    }

    fn into_response(self, encoding: Encoding) -> Response {
        let status = RpcStatus {
            code: self.grpc_code as i32,
            message: self.message,
        };
        let mut resp = encoded(self.status, encoding, &status);
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}

fn encoded<M: Message + serde::Serialize>(
    status: StatusCode,
    encoding: Encoding,
    msg: &M,
) -> Response {
    let body = match encoding {
        Encoding::Proto => msg.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec()),
    };
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

fn request_encoding(headers: &HeaderMap) -> Result<Encoding, Failure> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Proto),
        "application/json" => Ok(Encoding::Json),
        _ => Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            format!("unsupported Content-Type '{ct}' (expected application/x-protobuf or application/json)"),
        )),
    }
}

/// Decompresses `body`, refusing as soon as the output would pass `limit`.
fn decompress(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, Failure> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let reader: Box<dyn Read + '_> = match enc.as_str() {
        "" | "identity" => {
            return if body.len() > limit {
                Err(too_large_decompressed(limit))
            } else {
                Ok(body)
            }
        }
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(&body[..])),
        "zstd" => Box::new(zstd::stream::read::Decoder::new(&body[..]).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "malformed_compression",
                format!("bad zstd body: {e}"),
            )
        })?),
        other => {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                format!("unsupported Content-Encoding '{other}' (expected gzip, zstd or none)"),
            ))
        }
    };
    let mut out = Vec::with_capacity((body.len() * 4).min(limit));
    // Reading one byte past the limit tells "exactly at the limit" from "over it".
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "malformed_compression",
                format!("cannot decompress the {enc} body: {e}"),
            )
        })?;
    if out.len() > limit {
        return Err(too_large_decompressed(limit));
    }
    Ok(Bytes::from(out))
}

fn too_large_decompressed(limit: usize) -> Failure {
    Failure::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the decompressed body exceeds max_decompressed_body_size ({limit} bytes); send smaller batches"),
    )
}

fn decode<T: OtlpSignal>(encoding: Encoding, body: &[u8]) -> Result<T, Failure> {
    match encoding {
        Encoding::Proto => T::decode(body).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("malformed OTLP protobuf: {e}"),
            )
        }),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("malformed OTLP JSON: {e}"),
            )
        }),
    }
}

/// A refusal at the gate: 401 with `WWW-Authenticate`, or 429 with the client's wait as Retry-After.
fn denied_response(denied: Denied, encoding: Encoding) -> Response {
    let message = denied.message();
    match denied {
        Denied::Unauthenticated(_) => {
            let mut resp = Failure {
                status: StatusCode::UNAUTHORIZED,
                grpc_code: tonic::Code::Unauthenticated,
                message,
                reason: "unauthenticated",
            }
            .into_response(encoding);
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer, Basic realm=\"outpost\""),
            );
            resp
        }
        Denied::Limited(wait) => {
            let mut resp = Failure::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
                .into_response(encoding);
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64),
            );
            resp
        }
    }
}

async fn export<T: OtlpSignal + InputsOf>(
    State(state): State<Arc<HttpState>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let encoding = match request_encoding(&headers) {
        Ok(e) => e,
        Err(f) => {
            state.metrics.request_refused(T::SIGNAL, f.reason);
            return f.into_response(Encoding::Proto);
        }
    };
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<PeerInfo>>()
        .map(|c| &c.0);
    let client = match state.gate.admit(&headers, peer) {
        Ok(client) => client,
        Err(denied) => return denied_response(denied, encoding),
    };
    match export_inner::<T>(&state, &headers, body, encoding, &client).await {
        Ok(resp) => resp,
        Err(f) => {
            if !matches!(
                f.status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                // Refusals by the pipelines were already counted per item in `admit`.
                state.metrics.request_refused(T::SIGNAL, f.reason);
            }
            f.into_response(encoding)
        }
    }
}

async fn export_inner<T: OtlpSignal + InputsOf>(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
    client: &ClientKey,
) -> Result<Response, Failure> {
    let raw = Limited::new(body, state.max_body)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "the request body exceeds max_request_body_size ({} bytes); send smaller batches",
                        state.max_body
                    ),
                )
            } else {
                Failure::new(StatusCode::BAD_REQUEST, "body_read_error", format!("cannot read the body: {e}"))
            }
        })?
        .to_bytes();
    if let Err(denied) = state.gate.admit_bytes(Some(client), raw.len() as u64) {
        return Ok(denied_response(denied, encoding));
    }
    let body = decompress(headers, raw, state.max_decompressed)?;
    let bytes = body.len() as u64;
    let data: T = decode(encoding, &body)?;
    match admit(&state.inputs, &state.metrics, data, bytes).await {
        Outcome::Accepted(rejected) => {
            Ok(encoded(StatusCode::OK, encoding, &T::response(&rejected)))
        }
        Outcome::Refused(Refusal::Pressure(reason)) => Err(Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "pressure",
            format!("outpost is under pressure ({reason}); retry later"),
        )),
        Outcome::Refused(Refusal::Unavailable(reason)) => Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("outpost is not accepting data ({reason}); retry later"),
        )),
        Outcome::NotEnabled => Err(Failure::new(
            StatusCode::NOT_FOUND,
            "signal_not_enabled",
            format!("this receiver feeds no {} pipeline", T::SIGNAL),
        )),
    }
}

pub fn router(
    cfg: &OtlpHttpConfig,
    inputs: Arc<Inputs>,
    metrics: ReceiverMetrics,
    gate: Arc<Gate>,
) -> Router {
    let state = Arc::new(HttpState {
        inputs,
        metrics,
        gate,
        max_body: usize::try_from(cfg.max_request_body_size.bytes()).unwrap_or(usize::MAX),
        max_decompressed: usize::try_from(cfg.max_decompressed_body_size.bytes())
            .unwrap_or(usize::MAX),
    });
    Router::new()
        .route(cfg.url_path(Signal::Traces), post(export::<Traces>))
        .route(cfg.url_path(Signal::Metrics), post(export::<Metrics>))
        .route(cfg.url_path(Signal::Logs), post(export::<Logs>))
        .with_state(state)
}

pub fn serve(
    listener: TcpListener,
    cfg: &OtlpHttpConfig,
    inputs: Arc<Inputs>,
    metrics: ReceiverMetrics,
    guard: (Option<ServerTls>, Arc<Gate>),
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let (tls, gate) = guard;
    let app = router(cfg, inputs, metrics, gate);
    let addr = listener.local_addr().ok();
    let listener = LimitedListener::with_tls(listener, cfg.max_connections, tls);
    tokio::spawn(async move {
        tracing::info!(?addr, "OTLP/HTTP receiver listening");
        if let Err(e) = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<PeerInfo>(),
        )
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        {
            tracing::error!(error = %e, "OTLP/HTTP receiver stopped with an error");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn headers(enc: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(enc).unwrap(),
        );
        h
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 10 << 20]).unwrap();
        let bomb = Bytes::from(gz.finish().unwrap());
        assert!(
            bomb.len() < 64 << 10,
            "10 MiB of zeros compress to {} bytes",
            bomb.len()
        );
        let err = decompress(&headers("gzip"), bomb.clone(), 1 << 20).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            decompress(&headers("gzip"), bomb, 10 << 20).unwrap().len(),
            10 << 20
        );
    }

    #[test]
    fn zstd_and_unknown_encodings() {
        let z = zstd::encode_all(&b"hello"[..], 3).unwrap();
        assert_eq!(
            &decompress(&headers("zstd"), Bytes::from(z), 100).unwrap()[..],
            b"hello"
        );
        let err = decompress(&headers("br"), Bytes::from_static(b"x"), 100).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let err = decompress(&headers("gzip"), Bytes::from_static(b"not gzip"), 100).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }
}
