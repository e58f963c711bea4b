//! Request-body compression, done once per run.
//!
//! The settings match tonic's own (gzip level 6, zstd's default level, the same streaming
//! encoders), so the bytes loadgen compresses up front are byte for byte what tonic puts on the
//! wire when it compresses a gRPC message. That keeps the wire-byte count honest for gRPC, where
//! tonic does the compressing (see `codec`), and keeps HTTP and gRPC runs comparable.

use std::io::Read;

use bytes::Bytes;
use clap::ValueEnum;
use serde::Serialize;
use tonic::codec::CompressionEncoding;

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Send the protobuf bytes as they are.
    None,
    /// gzip (level 6, as tonic).
    Gzip,
    /// zstd (default level, as tonic).
    Zstd,
}

impl Compression {
    /// The name used on the command line, in reports and in `Content-Encoding`/`grpc-encoding`.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The HTTP `Content-Encoding` to send, if any.
    pub const fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }

    /// The encoding tonic should compress gRPC messages with, if any.
    pub const fn grpc_encoding(self) -> Option<CompressionEncoding> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some(CompressionEncoding::Gzip),
            Compression::Zstd => Some(CompressionEncoding::Zstd),
        }
    }

    /// Compresses `data`, or returns `None` for [`Compression::None`].
    pub fn compress(self, data: &[u8]) -> Option<Bytes> {
        let mut out = Vec::with_capacity(data.len() / 4 + 64);
        let read = match self {
            Compression::None => return None,
            Compression::Gzip => flate2::read::GzEncoder::new(data, flate2::Compression::new(6))
                .read_to_end(&mut out),
            Compression::Zstd => {
                zstd::stream::read::Encoder::new(data, zstd::DEFAULT_COMPRESSION_LEVEL)
                    .and_then(|mut encoder| encoder.read_to_end(&mut out))
            }
        };
        // Compressing one in-memory slice into a Vec does no I/O that can fail: an error here is
        // a bug in the compression library, and sending a wrong body would hide it.
        read.expect("compressing an in-memory buffer cannot fail");
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..10_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect()
    }

    #[test]
    fn gzip_round_trips_and_shrinks() {
        let data = sample();
        let compressed = Compression::Gzip.compress(&data).unwrap();
        assert!(compressed.len() < data.len() / 2);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn zstd_round_trips_and_shrinks() {
        let data = sample();
        let compressed = Compression::Zstd.compress(&data).unwrap();
        assert!(compressed.len() < data.len() / 2);
        assert_eq!(zstd::decode_all(&compressed[..]).unwrap(), data);
    }

    #[test]
    fn none_compresses_nothing() {
        assert_eq!(Compression::None.compress(b"abc"), None);
        assert_eq!(Compression::None.content_encoding(), None);
        assert_eq!(Compression::None.grpc_encoding(), None);
    }
}
