//! The Prometheus remote-write 1.0 protocol: the `prometheus.WriteRequest` message and its parts as
//! prost structs, with the snappy framing the protocol prescribes.
//!
//! The field numbers and wire types are those of Prometheus's `prompb/remote.proto` and
//! `prompb/types.proto` (2.40+, which added native histograms), written out by hand with prost's
//! derive so the build needs no `protoc`. A request body is the protobuf encoding of a
//! [`WriteRequest`], compressed with snappy's *block* (raw) format — not the framed/stream format — and
//! sent with `Content-Encoding: snappy`, `Content-Type: application/x-protobuf` and
//! `X-Prometheus-Remote-Write-Version: 0.1.0` ([`CONTENT_TYPE`], [`CONTENT_ENCODING`],
//! [`VERSION_HEADER`], [`PROTOCOL_VERSION`]).
//!
//! Conventions the receiver relies on (not enforced by the types): the labels of a series are sorted
//! by name and include `__name__`; the samples of one series are in timestamp order; timestamps are
//! milliseconds since the Unix epoch.

use prost::Message;

pub const CONTENT_TYPE: &str = "application/x-protobuf";
pub const CONTENT_ENCODING: &str = "snappy";
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
pub const PROTOCOL_VERSION: &str = "0.1.0";

/// The label holding a series' metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// The NaN Prometheus reads as "this series ended" (staleness marker), distinct from an ordinary NaN.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (an ordinary NaN is not).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// `prometheus.WriteRequest`: one remote-write request body (before snappy).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    // Tag 2 is reserved in the protocol.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// One series: its labels (sorted, `__name__` included) and its samples, exemplars and native
/// histograms in timestamp order.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    /// Usually `trace_id` and `span_id`, plus the exemplar's filtered attributes.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`: TYPE, HELP and UNIT of one metric family.
#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    #[prost(enumeration = "MetricType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    Stateset = 7,
}

/// A native (sparse, exponential) histogram sample. Integer histograms use `*_deltas` (each bucket's
/// count as the difference to the previous bucket's), float histograms `*_counts` (absolute).
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(oneof = "histogram::Count", tags = "1, 2")]
    pub count: Option<histogram::Count>,
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Bucket boundaries are powers of `2^(2^-schema)`; Prometheus accepts -4..=8.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
    pub zero_count: Option<histogram::ZeroCount>,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    #[prost(enumeration = "histogram::ResetHint", tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

pub mod histogram {
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Count {
        #[prost(uint64, tag = "1")]
        CountInt(u64),
        #[prost(double, tag = "2")]
        CountFloat(f64),
    }

    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum ZeroCount {
        #[prost(uint64, tag = "6")]
        ZeroCountInt(u64),
        #[prost(double, tag = "7")]
        ZeroCountFloat(f64),
    }

    /// Whether this sample follows a counter reset: `Gauge` marks a gauge histogram.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResetHint {
        Unknown = 0,
        Yes = 1,
        No = 2,
        Gauge = 3,
    }
}

/// A run of `length` consecutive buckets starting `offset` buckets after the end of the previous span
/// (the first span's offset is the index of its first bucket).
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// Why a remote-write body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not snappy block-compressed data: {0}")]
    Snappy(#[from] snap::Error),
    #[error("the body is not a remote-write WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("the body would decompress to {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

/// Snappy block compression of `raw` (the remote-write body encoding).
pub fn snappy_compress(raw: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(raw)
}

/// Decompresses a snappy block, refusing one that claims to expand beyond `limit` bytes before any
/// memory is allocated for it.
pub fn snappy_decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let size = snap::raw::decompress_len(body)?;
    if size > limit {
        return Err(DecodeError::TooLarge { size, limit });
    }
    Ok(snap::raw::Decoder::new().decompress_vec(body)?)
}

impl WriteRequest {
    /// The request body: protobuf, then snappy block compression.
    pub fn encode_snappy(&self) -> Result<Vec<u8>, snap::Error> {
        snappy_compress(&self.encode_to_vec())
    }

    /// Reads a request body, decompressing at most `limit` bytes.
    pub fn decode_snappy(body: &[u8], limit: usize) -> Result<Self, DecodeError> {
        let raw = snappy_decompress(body, limit)?;
        Ok(Self::decode(&raw[..])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label::new(METRIC_NAME_LABEL, "http_requests_total"),
                    Label::new("job", "shop/api"),
                ],
                samples: vec![Sample {
                    value: 42.0,
                    timestamp: 1_700_000_000_123,
                }],
                exemplars: vec![Exemplar {
                    labels: vec![Label::new("trace_id", "00ff")],
                    value: 0.25,
                    timestamp: 1_700_000_000_100,
                }],
                histograms: vec![Histogram {
                    count: Some(histogram::Count::CountInt(7)),
                    sum: 12.5,
                    schema: -3,
                    zero_threshold: 1e-128,
                    zero_count: Some(histogram::ZeroCount::ZeroCountInt(1)),
                    positive_spans: vec![BucketSpan {
                        offset: -2,
                        length: 3,
                    }],
                    positive_deltas: vec![2, -1, 3],
                    reset_hint: histogram::ResetHint::No as i32,
                    timestamp: 1_700_000_000_123,
                    ..Default::default()
                }],
            }],
            metadata: vec![MetricMetadata {
                r#type: MetricType::Counter as i32,
                metric_family_name: "http_requests_total".into(),
                help: "Requests served".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn a_request_survives_snappy_and_protobuf() {
        let req = request();
        let body = req.encode_snappy().unwrap();
        assert_eq!(WriteRequest::decode_snappy(&body, 1 << 20).unwrap(), req);
    }

    #[test]
    fn the_wire_format_has_the_protocol_field_numbers() {
        // A hand-assembled Sample{value: 1.0, timestamp: 5}: field 1 fixed64, field 2 varint.
        let mut expected = vec![0x09];
        expected.extend_from_slice(&1.0f64.to_le_bytes());
        expected.extend_from_slice(&[0x10, 0x05]);
        let s = Sample {
            value: 1.0,
            timestamp: 5,
        };
        assert_eq!(s.encode_to_vec(), expected);
        // BucketSpan offsets are sint32 (zig-zag): -1 encodes as 1.
        let span = BucketSpan {
            offset: -1,
            length: 2,
        };
        assert_eq!(span.encode_to_vec(), vec![0x08, 0x01, 0x10, 0x02]);
        // WriteRequest.metadata is field 3 (2 is reserved).
        let wr = WriteRequest {
            timeseries: vec![],
            metadata: vec![MetricMetadata::default()],
        };
        assert_eq!(wr.encode_to_vec(), vec![0x1a, 0x00]);
    }

    #[test]
    fn the_body_is_a_snappy_block_not_a_stream() {
        let body = request().encode_snappy().unwrap();
        // The framed format starts with a stream identifier chunk (0xff "sNaPpY"); a block starts with
        // the varint of the uncompressed length.
        assert_ne!(body[0], 0xff);
        let raw_len = request().encoded_len();
        assert_eq!(snap::raw::decompress_len(&body).unwrap(), raw_len);
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_allocation() {
        let raw = vec![0u8; 1 << 20];
        let body = snappy_compress(&raw).unwrap();
        match WriteRequest::decode_snappy(&body, 1024) {
            Err(DecodeError::TooLarge { size, limit }) => {
                assert_eq!((size, limit), (1 << 20, 1024))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(matches!(
            WriteRequest::decode_snappy(b"\xff\x06\x00\x00sNaPpY", 1024),
            Err(DecodeError::Snappy(_) | DecodeError::Protobuf(_))
        ));
    }

    #[test]
    fn stale_nan_is_told_apart_from_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(stale_nan().is_nan());
        assert!(!is_stale_nan(f64::NAN));
    }
}
