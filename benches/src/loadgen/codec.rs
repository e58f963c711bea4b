//! A tonic [`Codec`] that passes bytes through, so gRPC calls carry the pre-encoded request.
//!
//! tonic's prost codec encodes the request message on every call. This codec's encoder instead
//! copies the already-encoded protobuf bytes into tonic's frame buffer as they are (one memcpy,
//! no encoding), and its decoder hands back the response message's bytes untouched; the caller
//! decodes those as the signal's `Export*ServiceResponse` to read `partial_success`.
//!
//! Compression is the one thing it cannot pass through. tonic sets a message's compressed flag
//! only on bytes it compressed itself, and a `grpc-encoding` header over a message whose flag
//! says "not compressed" tells the server the bytes are plain. So for gzip or zstd over gRPC the
//! encoder writes the uncompressed bytes and tonic compresses each message
//! (`Grpc::send_compressed`). `compression` uses tonic's exact settings, so what tonic sends is
//! byte for byte what loadgen compressed up front and the wire-byte count stays exact; the price
//! is loadgen CPU per request, which the `--compression` help says.

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// gRPC's message prefix: a compressed flag and a 4-byte length.
pub const GRPC_MESSAGE_HEADER: usize = 5;

/// tonic's default encode buffer, the floor for ours.
const MIN_BUFFER: usize = 8 * 1024;
/// tonic's default yield threshold; it only matters for streaming calls.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Sends [`Bytes`] as the gRPC request message and returns the response message as [`Bytes`].
#[derive(Debug, Clone, Copy)]
pub struct PassThroughCodec {
    buffer: BufferSettings,
}

impl PassThroughCodec {
    /// A codec whose encode buffer fits a message of `message_len` bytes in one allocation,
    /// instead of tonic growing it 8 KiB at a time for every call.
    pub fn for_message_len(message_len: usize) -> Self {
        let buffer_size = (message_len + GRPC_MESSAGE_HEADER).max(MIN_BUFFER);
        PassThroughCodec {
            buffer: BufferSettings::new(buffer_size, YIELD_THRESHOLD),
        }
    }
}

impl Default for PassThroughCodec {
    fn default() -> Self {
        PassThroughCodec::for_message_len(0)
    }
}

impl Codec for PassThroughCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = PassThroughEncoder;
    type Decoder = PassThroughDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        PassThroughEncoder {
            buffer: self.buffer,
        }
    }

    fn decoder(&mut self) -> Self::Decoder {
        PassThroughDecoder
    }
}

/// Writes the message bytes as they are.
#[derive(Debug, Clone, Copy)]
pub struct PassThroughEncoder {
    buffer: BufferSettings,
}

impl Encoder for PassThroughEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.buffer
    }
}

/// Reads the whole message as bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThroughDecoder;

impl Decoder for PassThroughDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::compression::Compression;
    use http_body_util::{BodyExt, Full};
    use tonic::codec::{CompressionEncoding, EncodeBody, Streaming};

    /// Frames `message` the way a tonic client does, with `compression`.
    async fn frame(message: Bytes, compression: Option<CompressionEncoding>) -> Bytes {
        let mut codec = PassThroughCodec::for_message_len(message.len());
        let source = tokio_stream::once(Ok(message));
        let body = EncodeBody::new_client(codec.encoder(), source, compression, None);
        body.collect()
            .await
            .expect("encoding cannot fail")
            .to_bytes()
    }

    /// Reads one message back the way a tonic server does.
    async fn unframe(framed: Bytes, compression: Option<CompressionEncoding>) -> Bytes {
        let mut codec = PassThroughCodec::default();
        let mut stream =
            Streaming::new_request(codec.decoder(), Full::new(framed), compression, None);
        stream.message().await.unwrap().expect("one message")
    }

    fn message() -> Bytes {
        Bytes::from(
            (0..20_000u32)
                .flat_map(|i| (i % 251).to_le_bytes())
                .collect::<Vec<u8>>(),
        )
    }

    #[tokio::test]
    async fn bytes_go_out_unchanged_and_come_back_unchanged() {
        let message = message();
        let framed = frame(message.clone(), None).await;
        assert_eq!(framed.len(), GRPC_MESSAGE_HEADER + message.len());
        assert_eq!(framed[0], 0, "not compressed");
        assert_eq!(&framed[1..5], &(message.len() as u32).to_be_bytes());
        assert_eq!(&framed[GRPC_MESSAGE_HEADER..], &message[..]);
        assert_eq!(unframe(framed, None).await, message);
    }

    #[tokio::test]
    async fn empty_message_round_trips() {
        let framed = frame(Bytes::new(), None).await;
        assert_eq!(&framed[..], &[0, 0, 0, 0, 0]);
        assert_eq!(unframe(framed, None).await, Bytes::new());
    }

    /// The wire-byte count for compressed gRPC assumes tonic's compression output equals
    /// loadgen's own; this is where that is checked.
    #[tokio::test]
    async fn tonic_compresses_exactly_as_loadgen_does() {
        let message = message();
        for compression in [Compression::Gzip, Compression::Zstd] {
            let encoding = compression.grpc_encoding();
            let framed = frame(message.clone(), encoding).await;
            let ours = compression.compress(&message).unwrap();
            assert_eq!(framed[0], 1, "{compression:?}: compressed flag set");
            assert_eq!(&framed[GRPC_MESSAGE_HEADER..], &ours[..], "{compression:?}");
            assert_eq!(unframe(framed, encoding).await, message, "{compression:?}");
        }
    }
}
