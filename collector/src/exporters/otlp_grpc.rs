//! Exporter `otlp`: OTLP over gRPC through one lazily connected tonic channel per exporter and signal.

use std::str::FromStr;

use std::marker::PhantomData;

use futures::future::BoxFuture;
use outpost_config::{ComponentId, Compression, OtlpExporterConfig};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::{Delivered, ExportError, Exporter, Payload};
use crate::otlp::OtlpSignal;

pub struct OtlpGrpcExporter {
    channel: Channel,
    compression: Option<CompressionEncoding>,
    headers: MetadataMap,
}

/// `host:port` becomes `http://host:port`; schemes are validated by the config loader.
fn endpoint_uri(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

impl OtlpGrpcExporter {
    pub fn new(id: &ComponentId, cfg: &OtlpExporterConfig) -> Result<Self, String> {
        let uri = endpoint_uri(&cfg.endpoint);
        let endpoint = Endpoint::from_str(&uri)
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
            let value = MetadataValue::from_str(v).map_err(|_| {
                format!("exporters.{id}.headers.{k}: the value is not a valid header value")
            })?;
            headers.insert(key, value);
        }
        Ok(Self {
            channel: endpoint.connect_lazy(),
            compression: match cfg.compression {
                Compression::Gzip => Some(CompressionEncoding::Gzip),
                Compression::Zstd => Some(CompressionEncoding::Zstd),
                Compression::None => None,
            },
            headers,
        })
    }
}

/// gRPC codes a retry can cure, per the OTLP specification.
fn retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Cancelled
            | DeadlineExceeded
            | Aborted
            | OutOfRange
            | Unavailable
            | DataLoss
            | ResourceExhausted
    )
}

impl<T: OtlpSignal> Exporter<T> for OtlpGrpcExporter {
    fn export<'a>(
        &'a mut self,
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
            grpc.ready().await.map_err(|e| ExportError {
                reason: "connect_error".into(),
                message: e.to_string(),
                retryable: true,
            })?;
            let mut request = tonic::Request::new(body);
            *request.metadata_mut() = self.headers.clone();
            let codec = EncodedCodec::<T::Response>(PhantomData);
            let path = http::uri::PathAndQuery::from_static(T::GRPC_PATH);
            match grpc.unary(request, path, codec).await {
                Ok(resp) => Ok(Delivered {
                    wire_bytes,
                    rejected: T::rejected_in(resp.get_ref()),
                }),
                // A status tonic made from a broken connection (reset, HTTP/2 error) carries its cause;
                // the destination never judged the data, so it is always worth sending again.
                Err(status) if std::error::Error::source(&status).is_some() => Err(ExportError {
                    reason: "transport_error".into(),
                    message: status.to_string(),
                    retryable: true,
                }),
                Err(status) => Err(ExportError {
                    reason: format!("grpc_{}", code_label(status.code())),
                    message: status.message().to_owned(),
                    retryable: retryable(status.code()),
                }),
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
        assert!(retryable(tonic::Code::Unavailable));
        assert!(!retryable(tonic::Code::InvalidArgument));
    }
}
