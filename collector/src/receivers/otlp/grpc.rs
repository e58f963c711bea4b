//! OTLP/gRPC: one tonic service per signal, all from one generic [`OtlpGrpcService`].
//!
//! outpost does not use the generated servers because their codec reports undecodable protobuf as
//! INTERNAL; a malformed request is the client's fault, so [`OtlpCodec`] answers INVALID_ARGUMENT with
//! the decoder's reason, which is what OTLP clients treat as a permanent (not retryable) error.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use outpost_config::OtlpGrpcConfig;
use outpost_pipelines::telemetry::ReceiverMetrics;
use outpost_pipelines::{Logs, Metrics, Refusal, Traces};
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::RETRY_AFTER_SECS;
use crate::net::{LimitedListener, PeerInfo, ServerTls};
use crate::otlp::OtlpSignal;
use crate::receivers::gate::{ClientKey, Denied, Gate};
use crate::receivers::{admit, Inputs, InputsOf, Outcome};

/// The part of a request handler every signal shares.
struct Handler {
    inputs: Arc<Inputs>,
    metrics: ReceiverMetrics,
    gate: Arc<Gate>,
}

impl Handler {
    async fn handle<T: OtlpSignal + InputsOf>(
        &self,
        request: Measured<T>,
        client: Option<ClientKey>,
    ) -> Result<Response<T::Response>, Status> {
        self.gate
            .admit_bytes(client.as_ref(), request.bytes)
            .map_err(denied_status)?;
        match admit(&self.inputs, &self.metrics, request.data, request.bytes).await {
            Outcome::Accepted(rejected) => Ok(Response::new(T::response(&rejected))),
            Outcome::Refused(refusal) => Err(refusal_status(refusal)),
            Outcome::NotEnabled => Err(Status::unimplemented(format!(
                "this receiver feeds no {} pipeline",
                T::SIGNAL
            ))),
        }
    }
}

/// RESOURCE_EXHAUSTED and UNAVAILABLE carry a RetryInfo, which OTLP clients honour as the retry delay.
fn refusal_status(refusal: Refusal) -> Status {
    let (code, message) = match refusal {
        Refusal::Pressure(reason) => (
            tonic::Code::ResourceExhausted,
            format!("outpost is under pressure ({reason}); retry later"),
        ),
        Refusal::Unavailable(reason) => (
            tonic::Code::Unavailable,
            format!("outpost is not accepting data ({reason}); retry later"),
        ),
    };
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_retry_info(Some(Duration::from_secs(RETRY_AFTER_SECS))),
    )
}

/// A refusal at the gate: UNAUTHENTICATED, or RESOURCE_EXHAUSTED with the client's wait as RetryInfo.
fn denied_status(denied: Denied) -> Status {
    match denied {
        Denied::Unauthenticated(_) => Status::unauthenticated(denied.message()),
        Denied::Limited(wait) => Status::with_error_details(
            tonic::Code::ResourceExhausted,
            denied.message(),
            ErrorDetails::with_retry_info(Some(wait.max(Duration::from_secs(1)))),
        ),
    }
}

/// The gRPC service name of each signal, as tonic's router needs it.
trait GrpcName {
    const SERVICE: &'static str;
}
impl GrpcName for Traces {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}
impl GrpcName for Metrics {
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}
impl GrpcName for Logs {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

pub struct OtlpGrpcService<T> {
    handler: Arc<Handler>,
    max_message_size: usize,
    _signal: PhantomData<fn() -> T>,
}

impl<T> Clone for OtlpGrpcService<T> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            max_message_size: self.max_message_size,
            _signal: PhantomData,
        }
    }
}

impl<T: GrpcName> NamedService for OtlpGrpcService<T> {
    const NAME: &'static str = T::SERVICE;
}

struct Export<T>(Arc<Handler>, PhantomData<fn() -> T>);

impl<T: OtlpSignal + InputsOf> UnaryService<Measured<T>> for Export<T> {
    type Response = T::Response;
    type Future = futures::future::BoxFuture<'static, Result<Response<T::Response>, Status>>;
    fn call(&mut self, request: Request<Measured<T>>) -> Self::Future {
        let handler = self.0.clone();
        let client = request.extensions().get::<ClientKey>().cloned();
        Box::pin(async move { handler.handle::<T>(request.into_inner(), client).await })
    }
}

impl<T: OtlpSignal + InputsOf> tower::Service<http::Request<Body>> for OtlpGrpcService<T> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != T::GRPC_PATH {
            let status = Status::unimplemented(format!("unknown method {}", req.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let peer = req.extensions().get::<PeerInfo>().cloned();
        match self.handler.gate.admit(req.headers(), peer.as_ref()) {
            Ok(client) => {
                req.extensions_mut().insert(client);
            }
            Err(denied) => {
                let status = denied_status(denied);
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        // tonic checks the size limit on the decompressed message, so it bounds gzip and zstd bombs too.
        let mut grpc = tonic::server::Grpc::new(OtlpCodec::<T>(self.handler.clone(), PhantomData))
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(self.max_message_size);
        let method = Export::<T>(self.handler.clone(), PhantomData);
        let handler = self.handler.clone();
        Box::pin(async move {
            let resp = grpc.unary(method, req).await;
            if let Some(reason) = transport_refusal(&resp) {
                handler.metrics.request_refused(T::SIGNAL, reason);
            }
            Ok(resp)
        })
    }
}

/// A decoded request and its size as received (after gRPC decompression): the size is what the memory
/// limiter accounts, and the decoder knows it for free where recomputing it would walk the whole message.
struct Measured<T> {
    data: T,
    bytes: u64,
}

/// Refusals tonic makes itself, before a request reaches [`Handler`]: the request was too large (on the
/// wire or after decompression) or its framing or compression was broken. Read from the trailers-only
/// response tonic answers them with, so they are counted like their HTTP counterparts.
fn transport_refusal(resp: &http::Response<Body>) -> Option<&'static str> {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    match header("grpc-status") {
        "11" => Some("too_large"),
        "8" if header("grpc-message").contains("decompress") => Some("too_large"),
        "13" => Some("malformed"),
        "12" if header("grpc-message").contains("ompress") => Some("unsupported_content_encoding"),
        _ => None,
    }
}

/// prost encoding out, prost decoding in with INVALID_ARGUMENT on failure (see the module docs).
struct OtlpCodec<T>(Arc<Handler>, PhantomData<fn() -> T>);

impl<T: OtlpSignal> Codec for OtlpCodec<T> {
    type Encode = T::Response;
    type Decode = Measured<T>;
    type Encoder = ResponseEncoder<T::Response>;
    type Decoder = RequestDecoder<T>;
    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder(self.0.clone(), PhantomData)
    }
}

struct ResponseEncoder<R>(PhantomData<fn() -> R>);

impl<R: Message> Encoder for ResponseEncoder<R> {
    type Item = R;
    type Error = Status;
    fn encode(&mut self, item: R, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

struct RequestDecoder<T>(Arc<Handler>, PhantomData<fn() -> T>);

impl<T: OtlpSignal> Decoder for RequestDecoder<T> {
    type Item = Measured<T>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Measured<T>>, Status> {
        use bytes::Buf;
        let bytes = buf.remaining() as u64;
        T::decode(buf)
            .map(|data| Some(Measured { data, bytes }))
            .map_err(|e| {
                self.0.metrics.request_refused(T::SIGNAL, "malformed");
                Status::invalid_argument(format!("malformed OTLP protobuf: {e}"))
            })
    }
}

pub fn serve(
    listener: TcpListener,
    cfg: &OtlpGrpcConfig,
    inputs: Arc<Inputs>,
    metrics: ReceiverMetrics,
    guard: (Option<ServerTls>, Arc<Gate>),
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let (tls, gate) = guard;
    let handler = Arc::new(Handler {
        inputs,
        metrics,
        gate,
    });
    let max_message_size = usize::try_from(cfg.max_recv_msg_size_mib.saturating_mul(1024 * 1024))
        .unwrap_or(usize::MAX);
    fn service<T>(handler: &Arc<Handler>, max_message_size: usize) -> OtlpGrpcService<T> {
        OtlpGrpcService {
            handler: handler.clone(),
            max_message_size,
            _signal: PhantomData,
        }
    }
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .add_service(service::<Traces>(&handler, max_message_size))
        .add_service(service::<Metrics>(&handler, max_message_size))
        .add_service(service::<Logs>(&handler, max_message_size));
    drop(handler);
    let addr = listener.local_addr().ok();
    let incoming = LimitedListener::with_tls(listener, cfg.max_connections, tls).into_stream();
    tokio::spawn(async move {
        tracing::info!(?addr, "OTLP/gRPC receiver listening");
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "OTLP/gRPC receiver stopped with an error");
        }
    })
}
