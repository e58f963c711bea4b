//! Exporter `otlp`: OTLP over gRPC through one lazily connected tonic channel per exporter and signal.
//!
//! TLS (an `https://` endpoint, or a `tls:` block asking for it) is done by outpost's own connector with
//! rustls, so the client certificate and its rotation work as everywhere else in outpost.
//!
//! With a bandwidth cap the channel's TCP connections are wrapped so every byte written (HTTP/2 frames,
//! after gRPC compression) is debited from the cap: that is the only place the bytes on the wire are known.

use std::str::FromStr;

use std::marker::PhantomData;

use futures::future::BoxFuture;
use outpost_config::{ComponentId, Compression, OtlpExporterConfig};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::either::Either;

use super::credentials::BearerToken;
use super::delivery::Bandwidth;
use super::{Delivered, ErrorClass, ExportError, Exporter, Payload};
use crate::otlp::OtlpSignal;

pub struct OtlpGrpcExporter {
    channel: Channel,
    compression: Option<CompressionEncoding>,
    headers: MetadataMap,
    token: Option<BearerToken>,
}

/// `host:port` becomes `http://host:port`; schemes are validated by the config loader.
fn endpoint_uri(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// Whether the exporter speaks TLS: an `https://` endpoint, or a bare `host:port` whose `tls:` block asks
/// for it (see `TlsConfig::wants_tls`).
pub fn uses_tls(cfg: &OtlpExporterConfig) -> bool {
    cfg.endpoint.starts_with("https://") || (!cfg.endpoint.contains("://") && cfg.tls.wants_tls())
}

impl OtlpGrpcExporter {
    pub fn new(
        id: &ComponentId,
        cfg: &OtlpExporterConfig,
        bandwidth: Option<Arc<Bandwidth>>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, String> {
        let uri = endpoint_uri(&cfg.endpoint);
        let parsed = http::Uri::from_str(&uri).map_err(|e| {
            format!(
                "exporters.{id}.endpoint: not a valid endpoint '{}': {e}",
                cfg.endpoint
            )
        })?;
        let host = parsed.host().unwrap_or("").to_owned();
        // TLS is done by the connector below, so tonic is handed the plain-scheme URI.
        let plain = uri.replacen("https://", "http://", 1);
        let endpoint = Endpoint::from_str(&plain)
            .map_err(|e| {
                format!(
                    "exporters.{id}.endpoint: not a valid endpoint '{}': {e}",
                    cfg.endpoint
                )
            })?
            .timeout(cfg.timeout.get())
            .connect_timeout(cfg.timeout.get())
            .tcp_nodelay(true);
        let mut headers = MetadataMap::new();
        for (k, v) in &cfg.headers {
            let key = MetadataKey::from_str(&k.to_ascii_lowercase())
                .map_err(|_| format!("exporters.{id}.headers: '{k}' is not a valid header name"))?;
            let mut value = MetadataValue::from_str(v.expose()).map_err(|_| {
                format!("exporters.{id}.headers.{k}: the value is not a valid header value")
            })?;
            value.set_sensitive(true);
            headers.insert(key, value);
        }
        let token = match &cfg.auth.bearer_token_file {
            Some(path) => {
                Some(BearerToken::new(path).map_err(|e| format!("exporters.{id}.auth: {e}"))?)
            }
            None => None,
        };
        let tls = match tls {
            Some(config) => Some((
                tokio_rustls::TlsConnector::from(config),
                crate::tls::server_name(&cfg.tls, &host)
                    .map_err(|e| format!("exporters.{id}.tls: {e}"))?,
            )),
            None => None,
        };
        let channel = if tls.is_none() && bandwidth.is_none() {
            endpoint.connect_lazy()
        } else {
            let connect_timeout = cfg.timeout.get();
            endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: http::Uri| {
                let bw = bandwidth.clone();
                let tls = tls.clone();
                async move {
                    let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
                    let port = uri.port_u16().unwrap_or(80);
                    let connect = async {
                        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
                        tcp.set_nodelay(true)?;
                        let io = match tls {
                            Some((connector, name)) => {
                                Either::Right(connector.connect(name, tcp).await?)
                            }
                            None => Either::Left(tcp),
                        };
                        Ok::<_, std::io::Error>(io)
                    };
                    let io = tokio::time::timeout(connect_timeout, connect)
                        .await
                        .map_err(|_| {
                            std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                        })??;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(Metered { inner: io, bw }))
                }
            }))
        };
        Ok(Self {
            channel,
            compression: match cfg.compression {
                Compression::Gzip => Some(CompressionEncoding::Gzip),
                Compression::Zstd => Some(CompressionEncoding::Zstd),
                Compression::None => None,
            },
            headers,
            token,
        })
    }
}

/// Classifies a gRPC status per the OTLP specification (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, ...
/// retryable, honouring RetryInfo), with "message too large" split and auth failures retried a few times.
fn grpc_error(status: &tonic::Status) -> ExportError {
    use tonic::Code::*;
    use tonic_types::StatusExt;
    let message = status.message();
    let too_large = matches!(status.code(), ResourceExhausted | OutOfRange)
        && (message.contains("larger than max") || message.contains("too large"));
    let class = match status.code() {
        _ if too_large => ErrorClass::TooLarge,
        Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable | DataLoss
        | ResourceExhausted => ErrorClass::Retryable,
        Unauthenticated | PermissionDenied => ErrorClass::Unauthorized,
        _ => ErrorClass::Permanent,
    };
    let retry_after = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .map(|d| d.min(Duration::from_secs(3600)));
    ExportError::new(
        class,
        format!("grpc_{}", code_label(status.code())),
        message,
    )
    .with_retry_after(retry_after)
}

/// A connection (TCP or TLS over TCP) that debits every byte it writes from a bandwidth budget, if any.
struct Metered<S> {
    inner: S,
    bw: Option<Arc<Bandwidth>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(bw)) = (&r, &self.bw) {
            bw.debit(*n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(bw)) = (&r, &self.bw) {
            bw.debit(*n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: OtlpSignal> Exporter<T> for OtlpGrpcExporter {
    fn export<'a>(
        &'a self,
        payload: &'a Payload<T>,
    ) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(async move {
            // The queue's stored encoding goes out as it is: no decode, no re-encode.
            let body = payload.bytes.clone();
            let wire_bytes = body.len();
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            if let Some(enc) = self.compression {
                grpc = grpc.send_compressed(enc);
            }
            grpc = grpc
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd);
            grpc.ready()
                .await
                .map_err(|e| ExportError::retryable("connect_error", e))?;
            let mut request = tonic::Request::new(body);
            *request.metadata_mut() = self.headers.clone();
            if let Some(token) = &self.token {
                if let Ok(mut value) = MetadataValue::try_from(token.header().as_bytes()) {
                    value.set_sensitive(true);
                    request.metadata_mut().insert("authorization", value);
                }
            }
            let codec = EncodedCodec::<T::Response>(PhantomData);
            let path = http::uri::PathAndQuery::from_static(T::GRPC_PATH);
            match grpc.unary(request, path, codec).await {
                Ok(resp) => Ok(Delivered {
                    wire_bytes,
                    rejected: T::rejected_in(resp.get_ref()),
                    ..Default::default()
                }),
                // A status tonic made from a broken connection (reset, HTTP/2 error) carries its cause;
                // the destination never judged the data, so it is always worth sending again.
                Err(status) if std::error::Error::source(&status).is_some() => {
                    Err(ExportError::retryable("transport_error", &status))
                }
                Err(status) => Err(grpc_error(&status)),
            }
        })
    }
}

/// Sends bytes already holding an encoded request; decodes the response with prost.
struct EncodedCodec<R>(PhantomData<fn() -> R>);

impl<R: Message + Default + Send + 'static> Codec for EncodedCodec<R> {
    type Encode = bytes::Bytes;
    type Decode = R;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<R>;
    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> ProstDecoder<R> {
        ProstDecoder(PhantomData)
    }
}

struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: bytes::Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        buf.put(item);
        Ok(())
    }
}

struct ProstDecoder<R>(PhantomData<fn() -> R>);

impl<R: Message + Default> Decoder for ProstDecoder<R> {
    type Item = R;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<R>, tonic::Status> {
        R::decode(buf).map(Some).map_err(|e| {
            tonic::Status::internal(format!("undecodable response from the destination: {e}"))
        })
    }
}

fn code_label(code: tonic::Code) -> String {
    // "ResourceExhausted" → "resource_exhausted", a stable, bounded label set.
    let name = format!("{code:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_labels() {
        assert_eq!(endpoint_uri("collector:4317"), "http://collector:4317");
        assert_eq!(endpoint_uri("http://c:4317"), "http://c:4317");
        assert_eq!(
            code_label(tonic::Code::ResourceExhausted),
            "resource_exhausted"
        );
        assert_eq!(code_label(tonic::Code::Unavailable), "unavailable");
        let class = |s: tonic::Status| grpc_error(&s).class;
        assert_eq!(
            class(tonic::Status::unavailable("down")),
            ErrorClass::Retryable
        );
        assert_eq!(
            class(tonic::Status::resource_exhausted("slow down")),
            ErrorClass::Retryable
        );
        assert_eq!(
            class(tonic::Status::invalid_argument("bad span")),
            ErrorClass::Permanent
        );
        assert_eq!(
            class(tonic::Status::unauthenticated("who?")),
            ErrorClass::Unauthorized
        );
        assert_eq!(
            class(tonic::Status::resource_exhausted(
                "grpc: received message larger than max (5000000 vs. 4194304)"
            )),
            ErrorClass::TooLarge
        );
    }

    #[test]
    fn retry_info_sets_the_wait() {
        use tonic_types::{ErrorDetails, StatusExt};
        let status = tonic::Status::with_error_details(
            tonic::Code::Unavailable,
            "overloaded",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(7))),
        );
        let e = grpc_error(&status);
        assert_eq!(e.class, ErrorClass::Retryable);
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    }
}
