//! The on-disk format: column family names, key layouts, the record header, index entries and cursor
//! values. docs/queue-format.md is the human copy of this file; change both together.
//!
//! Every integer is big-endian. Keys are big-endian so RocksDB's bytewise order is numeric order: a
//! stream's records of one lane are contiguous and sorted by sequence, which is what lets a cursor read
//! with one iterator and lets deletion be one `delete_range` instead of a tombstone per record.
//!
//! Values start with a format version byte so a later build can tell old entries from new ones. Decoding
//! never panics: anything short, unknown or inconsistent is a [`FormatError`], which callers turn into
//! "skip and count as corrupt".

use std::cell::RefCell;
use std::fmt;
use std::thread::LocalKey;

use outpost_config::Signal;

/// Column family of queue records: key [`record_key`], value [`RecordHeader`] ‖ zstd payload.
pub const CF_RECORDS: &str = "records";
/// Column family of per-record metadata ([`IndexEntry`]), same keys as `records`. Start-up scans only
/// this, so it never reads payloads.
pub const CF_INDEX: &str = "index";
/// Column family of exporter cursors: key [`cursor_key`], value [`encode_cursor`].
pub const CF_CURSORS: &str = "cursors";
/// Generic durable key-value store ([`super::StateStore`]).
pub const CF_STATE: &str = "state";
/// Format version, stream registry and per-stream last assigned sequence.
pub const CF_META: &str = "meta";
/// Every column family besides `default`, which stays empty.
pub const COLUMN_FAMILIES: [&str; 5] = [CF_RECORDS, CF_INDEX, CF_CURSORS, CF_STATE, CF_META];

/// Version of the whole layout, stored under [`META_FORMAT_VERSION`].
pub const FORMAT_VERSION: u32 = 1;
/// Version byte that starts every record header, index entry and cursor value.
pub const VALUE_VERSION: u8 = 1;
/// Payload encoding: the prost encoding of an OTLP export request, zstd-compressed.
pub const ENCODING_ZSTD_PROST: u8 = 1;
/// zstd level for payloads: level 1 keeps append near memory speed; OTLP protobuf still shrinks 5–10×.
pub const ZSTD_LEVEL: i32 = 1;
/// Largest payload the reader will decompress (guards allocation against a corrupt length field).
pub const MAX_UNCOMPRESSED_LEN: u32 = 256 << 20;

/// The lane every record uses today. Lanes exist in keys and records so priority lanes can come later
/// without a format change.
pub const DEFAULT_LANE: u8 = 0;

pub const META_FORMAT_VERSION: &[u8] = b"format_version";
pub const META_NEXT_STREAM_ID: &[u8] = b"next_stream_id";
/// `stream/<name>` → stream id (u32).
pub const META_STREAM_PREFIX: &[u8] = b"stream/";
/// `seq/<stream id u32>` → last sequence assigned in that stream (u64), written with every append so a
/// sequence is never reused, even after every record was deleted.
pub const META_SEQ_PREFIX: &[u8] = b"seq/";

pub const RECORD_KEY_LEN: usize = 4 + 1 + 8;
pub const HEADER_LEN: usize = 24;
pub const INDEX_ENTRY_LEN: usize = 18;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError(msg.into()))
}

pub fn signal_code(signal: Signal) -> u8 {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

pub fn signal_from_code(code: u8) -> Result<Signal, FormatError> {
    match code {
        0 => Ok(Signal::Traces),
        1 => Ok(Signal::Metrics),
        2 => Ok(Signal::Logs),
        other => err(format!("unknown signal code {other}")),
    }
}

/// stream id ‖ lane ‖ sequence, 13 bytes.
pub fn record_key(stream: u32, lane: u8, seq: u64) -> [u8; RECORD_KEY_LEN] {
    let mut k = [0u8; RECORD_KEY_LEN];
    k[..4].copy_from_slice(&stream.to_be_bytes());
    k[4] = lane;
    k[5..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// (stream id, lane, sequence) of a record or index key.
pub fn parse_record_key(key: &[u8]) -> Result<(u32, u8, u64), FormatError> {
    let Ok(k) = <[u8; RECORD_KEY_LEN]>::try_from(key) else {
        return err(format!(
            "record key of {} bytes, expected {RECORD_KEY_LEN}",
            key.len()
        ));
    };
    let stream = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&k[5..]);
    Ok((stream, k[4], u64::from_be_bytes(seq)))
}

/// The fixed header in front of every record's compressed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub signal: Signal,
    pub encoding: u8,
    pub items: u32,
    pub created_ms: u64,
    pub uncompressed_len: u32,
    pub crc32c: u32,
}

impl RecordHeader {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(VALUE_VERSION);
        out.push(signal_code(self.signal));
        out.push(self.encoding);
        out.push(0); // reserved (flags)
        out.extend_from_slice(&self.items.to_be_bytes());
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&self.uncompressed_len.to_be_bytes());
        out.extend_from_slice(&self.crc32c.to_be_bytes());
    }

    pub fn parse(value: &[u8]) -> Result<RecordHeader, FormatError> {
        if value.len() < HEADER_LEN {
            return err(format!(
                "record of {} bytes is shorter than its header",
                value.len()
            ));
        }
        if value[0] != VALUE_VERSION {
            return err(format!(
                "record header version {} (this build reads {VALUE_VERSION})",
                value[0]
            ));
        }
        let signal = signal_from_code(value[1])?;
        let be4 = |at: usize| {
            u32::from_be_bytes([value[at], value[at + 1], value[at + 2], value[at + 3]])
        };
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&value[8..16]);
        Ok(RecordHeader {
            signal,
            encoding: value[2],
            items: be4(4),
            created_ms: u64::from_be_bytes(ms),
            uncompressed_len: be4(16),
            crc32c: be4(20),
        })
    }
}

/// Compresses `payload` and prepends its header: the stored record value.
pub fn encode_record(
    signal: Signal,
    items: u32,
    created_ms: u64,
    payload: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let Ok(uncompressed_len) = u32::try_from(payload.len()) else {
        return err(format!(
            "payload of {} bytes is larger than 4 GiB",
            payload.len()
        ));
    };
    if uncompressed_len > MAX_UNCOMPRESSED_LEN {
        return err(format!(
            "payload of {uncompressed_len} bytes is larger than the queue's {MAX_UNCOMPRESSED_LEN}-byte limit"
        ));
    }
    let bound = zstd::zstd_safe::compress_bound(payload.len());
    let mut out = Vec::with_capacity(HEADER_LEN + bound);
    out.resize(HEADER_LEN, 0);
    thread_local! {
        static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    let written = with_kept(
        &COMPRESSOR,
        || zstd::bulk::Compressor::new(ZSTD_LEVEL),
        |c| {
            // Written into the spare capacity after the header, which is never zeroed first: that
            // memset of the compression bound (the payload's size) cost more than copying the output.
            let mut after_header = std::io::Cursor::new(&mut out);
            after_header.set_position(HEADER_LEN as u64);
            c.compress_to_buffer(payload, &mut after_header)
        },
    )
    .map_err(|e| FormatError(format!("zstd compression failed: {e}")))?;
    out.truncate(HEADER_LEN + written);
    let header = RecordHeader {
        signal,
        encoding: ENCODING_ZSTD_PROST,
        items,
        created_ms,
        uncompressed_len,
        crc32c: crc32c::crc32c(&out[HEADER_LEN..]),
    };
    let mut head = Vec::with_capacity(HEADER_LEN);
    header.write(&mut head);
    out[..HEADER_LEN].copy_from_slice(&head);
    Ok(out)
}

/// Runs `f` with this thread's kept zstd context, made by `make` on first use. One context per thread
/// is kept because making one per record (what `zstd::bulk::compress` and `decompress` do) allocates
/// and clears zstd's tables every time, which for small records costs as much as the work itself.
fn with_kept<C: 'static, R>(
    cell: &'static LocalKey<RefCell<Option<C>>>,
    make: impl FnOnce() -> std::io::Result<C>,
    f: impl FnOnce(&mut C) -> std::io::Result<R>,
) -> std::io::Result<R> {
    cell.with(|c| {
        let mut c = c.borrow_mut();
        let c = match &mut *c {
            Some(c) => c,
            None => c.insert(make()?),
        };
        f(c)
    })
}

/// Checks a stored record's header and checksum, without decompressing its payload: what a reader
/// that needs only the header (the item count) must still verify.
pub fn check_record(value: &[u8]) -> Result<RecordHeader, FormatError> {
    let header = RecordHeader::parse(value)?;
    let compressed = &value[HEADER_LEN..];
    let crc = crc32c::crc32c(compressed);
    if crc != header.crc32c {
        return err(format!(
            "checksum mismatch: stored {:08x}, computed {crc:08x}",
            header.crc32c
        ));
    }
    if header.encoding != ENCODING_ZSTD_PROST {
        return err(format!("unknown payload encoding {}", header.encoding));
    }
    if header.uncompressed_len > MAX_UNCOMPRESSED_LEN {
        return err(format!(
            "uncompressed length {} is implausible",
            header.uncompressed_len
        ));
    }
    Ok(header)
}

/// Checks a stored record and returns its header and decompressed payload.
pub fn decode_record(value: &[u8]) -> Result<(RecordHeader, Vec<u8>), FormatError> {
    let header = check_record(value)?;
    let compressed = &value[HEADER_LEN..];
    thread_local! {
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }
    let payload = with_kept(&DECOMPRESSOR, zstd::bulk::Decompressor::new, |d| {
        d.decompress(compressed, header.uncompressed_len as usize)
    })
    .map_err(|e| FormatError(format!("payload does not decompress: {e}")))?;
    if payload.len() != header.uncompressed_len as usize {
        return err(format!(
            "payload decompressed to {} bytes, header says {}",
            payload.len(),
            header.uncompressed_len
        ));
    }
    Ok((header, payload))
}

/// What the `index` column family holds per record: enough for accounting, lag and age without the
/// payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub signal: Signal,
    pub items: u32,
    pub created_ms: u64,
    /// Size of the stored record value (header + compressed payload): the unit of byte accounting.
    pub stored_len: u32,
}

impl IndexEntry {
    pub fn encode(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut v = [0u8; INDEX_ENTRY_LEN];
        v[0] = VALUE_VERSION;
        v[1] = signal_code(self.signal);
        v[2..6].copy_from_slice(&self.items.to_be_bytes());
        v[6..14].copy_from_slice(&self.created_ms.to_be_bytes());
        v[14..18].copy_from_slice(&self.stored_len.to_be_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Result<IndexEntry, FormatError> {
        let Ok(v) = <[u8; INDEX_ENTRY_LEN]>::try_from(v) else {
            return err(format!(
                "index entry of {} bytes, expected {INDEX_ENTRY_LEN}",
                v.len()
            ));
        };
        if v[0] != VALUE_VERSION {
            return err(format!("index entry version {}", v[0]));
        }
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&v[6..14]);
        Ok(IndexEntry {
            signal: signal_from_code(v[1])?,
            items: u32::from_be_bytes([v[2], v[3], v[4], v[5]]),
            created_ms: u64::from_be_bytes(ms),
            stored_len: u32::from_be_bytes([v[14], v[15], v[16], v[17]]),
        })
    }
}

/// stream id ‖ exporter name (UTF-8).
pub fn cursor_key(stream: u32, exporter: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + exporter.len());
    k.extend_from_slice(&stream.to_be_bytes());
    k.extend_from_slice(exporter.as_bytes());
    k
}

pub fn parse_cursor_key(key: &[u8]) -> Result<(u32, String), FormatError> {
    if key.len() < 4 {
        return err("cursor key shorter than a stream id");
    }
    let stream = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    match std::str::from_utf8(&key[4..]) {
        Ok(name) => Ok((stream, name.to_owned())),
        Err(_) => err("cursor name is not UTF-8"),
    }
}

/// version ‖ lane-0 watermark: the highest sequence such that every record at or below it was
/// delivered (acknowledged) or skipped by policy.
pub fn encode_cursor(watermark: u64) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[0] = VALUE_VERSION;
    v[1..].copy_from_slice(&watermark.to_be_bytes());
    v
}

pub fn decode_cursor(v: &[u8]) -> Result<u64, FormatError> {
    if v.len() < 9 || v[0] != VALUE_VERSION {
        return err(format!(
            "cursor value of {} bytes / unknown version",
            v.len()
        ));
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&v[1..9]);
    Ok(u64::from_be_bytes(w))
}

pub fn stream_meta_key(name: &str) -> Vec<u8> {
    [META_STREAM_PREFIX, name.as_bytes()].concat()
}

pub fn seq_meta_key(stream: u32) -> Vec<u8> {
    [META_SEQ_PREFIX, &stream.to_be_bytes()[..]].concat()
}

pub fn be_u32(v: &[u8]) -> Result<u32, FormatError> {
    <[u8; 4]>::try_from(v)
        .map(u32::from_be_bytes)
        .or_else(|_| err(format!("expected 4 bytes, found {}", v.len())))
}

pub fn be_u64(v: &[u8]) -> Result<u64, FormatError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .or_else(|_| err(format!("expected 8 bytes, found {}", v.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_detects_damage() {
        let payload = b"an export request, or something like it".repeat(20);
        let v = encode_record(Signal::Logs, 7, 1_700_000_000_123, &payload).unwrap();
        let (h, p) = decode_record(&v).unwrap();
        assert_eq!(
            (h.signal, h.items, h.created_ms),
            (Signal::Logs, 7, 1_700_000_000_123)
        );
        assert_eq!(p, payload);

        let mut bad = v.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(decode_record(&bad).unwrap_err().0.contains("checksum"));
        assert!(decode_record(&v[..10]).is_err());
        assert!(decode_record(&[]).is_err());
    }

    #[test]
    fn keys_sort_numerically() {
        assert!(record_key(1, 0, 255) < record_key(1, 0, 256));
        assert!(record_key(1, 0, u64::MAX) < record_key(1, 1, 0));
        assert!(record_key(1, 9, u64::MAX) < record_key(2, 0, 0));
        assert_eq!(parse_record_key(&record_key(3, 0, 42)).unwrap(), (3, 0, 42));
    }

    #[test]
    fn index_and_cursor_values_round_trip() {
        let e = IndexEntry {
            signal: Signal::Metrics,
            items: 512,
            created_ms: 42,
            stored_len: 123_456,
        };
        assert_eq!(IndexEntry::decode(&e.encode()).unwrap(), e);
        assert_eq!(decode_cursor(&encode_cursor(99)).unwrap(), 99);
        assert!(IndexEntry::decode(b"short").is_err());
        assert_eq!(
            parse_cursor_key(&cursor_key(5, "otlp/cloud")).unwrap(),
            (5, "otlp/cloud".into())
        );
    }
}
