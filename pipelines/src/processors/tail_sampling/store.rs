//! Compact storage of held spans.
//!
//! A held span costs far less than its decoded form, and less than its OTLP encoding:
//! - the resource and scope it came with are interned once ([`Groups`], reference-counted) and the span
//!   names its group by a small number;
//! - its trace id is dropped (it is the key of the trace that holds it) and restored on release;
//! - the spans of one trace that arrive under one resource and scope in one request form a *fragment*:
//!   their encodings, each behind its length, compressed with zstd (a fast level) against a dictionary
//!   trained on the first spans this processor saw. Span encodings share most of their bytes with other
//!   spans (attribute keys, service and operation names, URL shapes), which the dictionary captures, so
//!   even a one-span fragment compresses well. Until enough samples arrived to train it, fragments are
//!   stored uncompressed. A fragment names its group and span count outside the compressed bytes, so a
//!   dropped trace is let go without decompressing anything.
//!
//! A kept trace leaves as it is stored, never decoded: [`Codec::unpack`] hands out each span's encoding,
//! and the processor frames it, with its trace id and the policy attribute appended as fields (protobuf
//! lets a field come in any order, and a repeated field's entries are concatenated), under the group's
//! resource and scope encoded once when the group was interned ([`Groups::heads`]).
//!
//! [`Fragment::cost`] is what a fragment occupies on the heap, the number `max_memory` is held to.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::encoding::{decode_varint, encode_varint, WireType};
use prost::Message;
use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe::{CCtx, DCtx};

use super::policy::{Hits, Predicate};

/// A resource and scope pair spans arrived with, borrowed from the request.
#[derive(Clone, Copy)]
pub struct Group<'a> {
    pub resource: Option<&'a Resource>,
    pub resource_schema_url: &'a str,
    pub scope: Option<&'a InstrumentationScope>,
    pub scope_schema_url: &'a str,
}

struct Interned {
    /// The span predicates the resource's attributes meet, for every trace with a span in this group.
    hits: Hits,
    hash: u64,
    /// The encodings of the group's `ResourceSpans` and `ScopeSpans` without their children, one after
    /// the other, split at `split`: what a kept span is framed under on its way out, and the group's
    /// identity (equal groups encode equally, so a lookup compares bytes instead of decoded structs).
    key: Box<[u8]>,
    split: usize,
    /// Held spans that name this group.
    refs: u64,
    bytes: usize,
}

/// The interned groups of held spans.
#[derive(Default)]
pub struct Groups {
    by_hash: HashMap<u64, Vec<u32>>,
    slots: Vec<Option<Interned>>,
    free: Vec<u32>,
    bytes: usize,
}

/// `ResourceSpans.resource`, `ResourceSpans.schema_url`; `ScopeSpans.scope`, `ScopeSpans.schema_url`.
const FIELD_HEAD: u32 = 1;
const FIELD_SCHEMA_URL: u32 = 3;

/// A `schema_url` field, as `prost::encoding::string::encode` writes it (which wants a `String`).
fn encode_str(s: &str, buf: &mut Vec<u8>) {
    prost::encoding::encode_key(FIELD_SCHEMA_URL, WireType::LengthDelimited, buf);
    encode_varint(s.len() as u64, buf);
    buf.extend_from_slice(s.as_bytes());
}

/// A group's identity: the encodings of its `ResourceSpans` and `ScopeSpans` without their children, as
/// prost would encode them, one after the other, and their hash. Taken once per scope of a request, into
/// a buffer reused across requests.
#[derive(Default)]
pub struct GroupKey {
    bytes: Vec<u8>,
    split: usize,
    hash: u64,
}

impl GroupKey {
    /// Makes this the key of `group`.
    pub fn set(&mut self, group: &Group<'_>) {
        self.split = group.key(&mut self.bytes);
        self.hash = xxhash_rust::xxh3::xxh3_64(&self.bytes);
    }
}

impl Group<'_> {
    /// Writes the group's key into `buf` (cleared first) and returns where the `ScopeSpans` part
    /// starts (see [`GroupKey`]).
    fn key(&self, buf: &mut Vec<u8>) -> usize {
        buf.clear();
        if let Some(r) = self.resource {
            prost::encoding::message::encode(FIELD_HEAD, r, buf);
        }
        if !self.resource_schema_url.is_empty() {
            encode_str(self.resource_schema_url, buf);
        }
        let split = buf.len();
        if let Some(s) = self.scope {
            prost::encoding::message::encode(FIELD_HEAD, s, buf);
        }
        if !self.scope_schema_url.is_empty() {
            encode_str(self.scope_schema_url, buf);
        }
        split
    }
}

impl Groups {
    /// The id of `group`, whose key is `key`, interning it; `spans` more held spans now name it. A new
    /// group's resource is checked against `preds` once, here.
    pub fn intern(
        &mut self,
        group: &Group<'_>,
        key: &GroupKey,
        spans: u64,
        preds: &[Predicate],
    ) -> u32 {
        let (hash, split) = (key.hash, key.split);
        let key = key.bytes.as_slice();
        if let Some(ids) = self.by_hash.get(&hash) {
            for &id in ids {
                if let Some(slot) = self.slots[id as usize].as_mut() {
                    if *slot.key == *key && slot.split == split {
                        slot.refs += spans;
                        return id;
                    }
                }
            }
        }
        let bytes = std::mem::size_of::<Interned>() + key.len().next_multiple_of(16);
        let hits = group
            .resource
            .map(|r| Hits::of_resource(preds, &r.attributes))
            .unwrap_or_default();
        let entry = Interned {
            hits,
            hash,
            key: key.into(),
            split,
            refs: spans,
            bytes,
        };
        self.bytes += bytes;
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(entry);
                id
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_hash.entry(hash).or_default().push(id);
        id
    }

    /// The encoded heads of group `id`'s `ResourceSpans` and `ScopeSpans` (see [`Interned`]).
    pub fn heads(&self, id: u32) -> Option<(&[u8], &[u8])> {
        self.slots
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|i| i.key.split_at(i.split))
    }

    /// The predicates the resource of group `id` meets.
    pub fn hits(&self, id: u32) -> Option<&Hits> {
        self.slots
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|i| &i.hits)
    }

    /// `spans` held spans naming `id` were let go; the group is forgotten with its last span.
    pub fn release(&mut self, id: u32, spans: u64) {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return;
        };
        let Some(entry) = slot.as_mut() else {
            return;
        };
        entry.refs = entry.refs.saturating_sub(spans);
        if entry.refs == 0 {
            let entry = slot.take().expect("present");
            self.bytes -= entry.bytes;
            if let Some(ids) = self.by_hash.get_mut(&entry.hash) {
                ids.retain(|&i| i != id);
                if ids.is_empty() {
                    self.by_hash.remove(&entry.hash);
                }
            }
            self.free.push(id);
        }
    }

    /// Heap bytes of the interned groups.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The spans of one trace that arrived under one resource and scope (`group`) in one request. `data` is
/// `[0][spans]` uncompressed or `[1][varint raw length][zstd frame of spans]`, each span
/// length-delimited.
pub struct Fragment {
    group: u32,
    spans: u32,
    data: Box<[u8]>,
}

impl Fragment {
    /// Heap bytes of this fragment, with the allocator's rounding and the struct that holds it.
    pub fn cost(&self) -> usize {
        self.data.len().next_multiple_of(16) + std::mem::size_of::<Self>()
    }

    /// The group its spans name, and how many they are: what to release when it is let go.
    pub fn group(&self) -> (u32, u64) {
        (self.group, u64::from(self.spans))
    }
}

/// Samples gathered before the dictionary is trained.
const TRAIN_SAMPLES_BYTES: usize = 256 << 10;
const DICT_BYTES: usize = 16 << 10;
/// One of zstd's fast (negative) levels: every held span is compressed, so this is on the processor's
/// hot path. Below level 1 zstd no longer Huffman-codes literals, which on span encodings (ids and
/// timestamps are random bytes) gains little once the dictionary has matched the rest, and it skips
/// ahead faster through bytes that do not match. Measured in the tail_sampling bench: held spans take
/// 0.370 of their OTLP size at -3 against 0.365 at level 1 (0.403 at -5, 0.422 at -10).
const LEVEL: i32 = -3;

/// Encodes fragments and decodes them, with the shared dictionary once it exists.
pub struct Codec {
    samples: Vec<u8>,
    sample_sizes: Vec<usize>,
    dict: Option<(EncoderDictionary<'static>, DecoderDictionary<'static>)>,
    train_failed: bool,
    cctx: CCtx<'static>,
    dctx: DCtx<'static>,
    scratch: Vec<u8>,
    raw: Vec<u8>,
    group: u32,
    spans: u32,
}

impl Default for Codec {
    fn default() -> Self {
        Self {
            samples: Vec::new(),
            sample_sizes: Vec::new(),
            dict: None,
            train_failed: false,
            cctx: CCtx::create(),
            dctx: DCtx::create(),
            scratch: Vec::new(),
            raw: Vec::new(),
            group: 0,
            spans: 0,
        }
    }
}

impl Codec {
    /// Whether fragments are compressed yet.
    pub fn trained(&self) -> bool {
        self.dict.is_some()
    }

    /// Starts a new fragment of spans of group `group`: [`Codec::push`] them, then [`Codec::finish`].
    pub fn begin(&mut self, group: u32) {
        self.raw.clear();
        self.group = group;
        self.spans = 0;
    }

    /// Adds `span` to the fragment being built, and returns the bytes its encoding took (with its
    /// length). The caller has cleared its trace id.
    pub fn push(&mut self, span: &Span) -> usize {
        let start = self.raw.len();
        // One walk for the length and one for the bytes; `encode` would take the length twice.
        span.encode_length_delimited(&mut self.raw)
            .expect("a Vec grows as needed");
        self.spans += 1;
        if self.dict.is_none() && !self.train_failed {
            self.samples.extend_from_slice(&self.raw[start..]);
            self.sample_sizes.push(self.raw.len() - start);
        }
        self.raw.len() - start
    }

    /// The fragment of the spans pushed since [`Codec::begin`], compressed once the dictionary exists.
    pub fn finish(&mut self) -> Fragment {
        if self.dict.is_none() && !self.train_failed && self.samples.len() >= TRAIN_SAMPLES_BYTES {
            self.train();
        }
        if let Some((enc, _)) = &self.dict {
            // zstd writes from the start of the buffer, so the header is put in front afterwards.
            self.scratch.clear();
            self.scratch
                .reserve(zstd::zstd_safe::compress_bound(self.raw.len()));
            if self
                .cctx
                .compress_using_cdict(&mut self.scratch, &self.raw, enc.as_cdict())
                .is_ok()
                && self.scratch.len() + 4 < self.raw.len()
            {
                let mut out = Vec::with_capacity(self.scratch.len() + 6);
                out.push(1);
                encode_varint(self.raw.len() as u64, &mut out);
                out.extend_from_slice(&self.scratch);
                return self.fragment(out);
            }
        }
        let mut out = Vec::with_capacity(self.raw.len() + 1);
        out.push(0);
        out.extend_from_slice(&self.raw);
        self.fragment(out)
    }

    fn fragment(&self, data: Vec<u8>) -> Fragment {
        Fragment {
            group: self.group,
            spans: self.spans,
            data: data.into_boxed_slice(),
        }
    }

    fn train(&mut self) {
        let mut at = 0;
        let samples: Vec<&[u8]> = self
            .sample_sizes
            .iter()
            .map(|&n| {
                let s = &self.samples[at..at + n];
                at += n;
                s
            })
            .collect();
        match zstd::dict::from_samples(&samples, DICT_BYTES) {
            Ok(dict) => {
                self.dict = Some((
                    EncoderDictionary::copy(&dict, LEVEL),
                    DecoderDictionary::copy(&dict),
                ));
            }
            Err(e) => {
                // Too uniform or too few samples: fragments stay uncompressed, which is correct, only
                // larger.
                tracing::debug!(error = %e, "tail_sampling: no compression dictionary; storing spans uncompressed");
                self.train_failed = true;
            }
        }
        self.samples = Vec::new();
        self.sample_sizes = Vec::new();
    }

    /// Calls `each` with the encoding of every span of a fragment (without its trace id, as pushed),
    /// and returns how many there were. An error (only a bug gets one: the bytes are our own) may come
    /// after some spans were handed out.
    pub fn unpack(&mut self, f: &Fragment, mut each: impl FnMut(&[u8])) -> Result<usize, String> {
        let bytes: &[u8] = &f.data;
        let body: &[u8] = match bytes.first() {
            Some(0) => &bytes[1..],
            Some(1) => {
                let mut rest = &bytes[1..];
                let raw_len = decode_varint(&mut rest).map_err(|e| e.to_string())? as usize;
                let Some((_, dec)) = &self.dict else {
                    return Err("compressed fragment without a dictionary".into());
                };
                self.raw.clear();
                self.raw.reserve(raw_len);
                self.dctx
                    .decompress_using_ddict(&mut self.raw, rest, dec.as_ddict())
                    .map_err(|c| format!("zstd error {c}"))?;
                &self.raw
            }
            _ => return Err("empty fragment".into()),
        };
        let mut rest = body;
        let mut n = 0;
        while !rest.is_empty() {
            let len = decode_varint(&mut rest).map_err(|e| e.to_string())? as usize;
            if len > rest.len() {
                return Err("truncated span".into());
            }
            each(&rest[..len]);
            rest = &rest[len..];
            n += 1;
        }
        Ok(n)
    }
}
