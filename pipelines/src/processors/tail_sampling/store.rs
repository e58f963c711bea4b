//! Compact storage of held spans.
//!
//! A held span costs far less than its decoded form, and less than its OTLP encoding:
//! - the resource and scope it came with are interned once ([`Groups`], reference-counted) and the span
//!   names its group by a small number;
//! - its trace id is dropped (it is the key of the trace that holds it) and restored on release;
//! - the spans of one trace that arrive in one request form a *fragment*: their encodings, each behind
//!   its group number and length, compressed with zstd against a dictionary trained on the first spans
//!   this processor saw. Span encodings share most of their bytes with other spans (attribute keys,
//!   service and operation names, URL shapes), which the dictionary captures, so even a one-span fragment
//!   compresses well. Until enough samples arrived to train it, fragments are stored uncompressed.
//!
//! [`Fragment::cost`] is what a fragment occupies on the heap, the number `max_memory` is held to.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::encoding::{decode_varint, encode_varint};
use prost::Message;
use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe::{CCtx, DCtx};

/// A resource and scope pair spans arrived with.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub resource: Option<Resource>,
    pub resource_schema_url: String,
    pub scope: Option<InstrumentationScope>,
    pub scope_schema_url: String,
}

struct Interned {
    group: Group,
    hash: u64,
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

fn attrs_cost(attrs: &[KeyValue]) -> usize {
    attrs.iter().map(|kv| kv.encoded_len() + 64).sum()
}

impl Groups {
    /// The id of `group`, interning it; `spans` more held spans now name it.
    pub fn intern(&mut self, group: &Group, spans: u64) -> u32 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        group
            .resource
            .as_ref()
            .map(Message::encode_to_vec)
            .hash(&mut h);
        group.resource_schema_url.hash(&mut h);
        group
            .scope
            .as_ref()
            .map(Message::encode_to_vec)
            .hash(&mut h);
        group.scope_schema_url.hash(&mut h);
        let hash = h.finish();
        if let Some(ids) = self.by_hash.get(&hash) {
            for &id in ids {
                if let Some(slot) = self.slots[id as usize].as_mut() {
                    if slot.group == *group {
                        slot.refs += spans;
                        return id;
                    }
                }
            }
        }
        let bytes = std::mem::size_of::<Interned>()
            + group
                .resource
                .as_ref()
                .map_or(0, |r| attrs_cost(&r.attributes))
            + group.scope.as_ref().map_or(0, |s| {
                s.name.len() + s.version.len() + attrs_cost(&s.attributes)
            });
        let entry = Interned {
            group: group.clone(),
            hash,
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

    pub fn get(&self, id: u32) -> Option<&Group> {
        self.slots
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|i| &i.group)
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

/// One stored fragment: `[0][entries]` uncompressed, or `[1][varint raw length][zstd frame]`.
pub struct Fragment(Box<[u8]>);

impl Fragment {
    /// Heap bytes of this fragment, with the allocator's rounding and the pointer that holds it.
    pub fn cost(&self) -> usize {
        self.0.len().next_multiple_of(16) + std::mem::size_of::<Self>()
    }
}

/// Samples gathered before the dictionary is trained.
const TRAIN_SAMPLES_BYTES: usize = 256 << 10;
const DICT_BYTES: usize = 16 << 10;
const LEVEL: i32 = 3;

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
        }
    }
}

impl Codec {
    /// Whether fragments are compressed yet.
    pub fn trained(&self) -> bool {
        self.dict.is_some()
    }

    /// Encodes `spans` (group id, span) as one fragment. Trace ids are left out: the caller has cleared
    /// them.
    pub fn encode(&mut self, spans: &[(u32, &Span)]) -> Fragment {
        self.raw.clear();
        for (group, span) in spans {
            let start = self.raw.len();
            encode_varint(u64::from(*group), &mut self.raw);
            encode_varint(span.encoded_len() as u64, &mut self.raw);
            span.encode(&mut self.raw).expect("a Vec grows as needed");
            if self.dict.is_none() && !self.train_failed {
                self.samples.extend_from_slice(&self.raw[start..]);
                self.sample_sizes.push(self.raw.len() - start);
            }
        }
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
                return Fragment(out.into_boxed_slice());
            }
        }
        let mut out = Vec::with_capacity(self.raw.len() + 1);
        out.push(0);
        out.extend_from_slice(&self.raw);
        Fragment(out.into_boxed_slice())
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

    /// Decodes a fragment back into (group id, span) pairs, appending to `out`.
    pub fn decode(&mut self, f: &Fragment, out: &mut Vec<(u32, Span)>) -> Result<(), String> {
        let bytes: &[u8] = &f.0;
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
        while !rest.is_empty() {
            let group = decode_varint(&mut rest).map_err(|e| e.to_string())? as u32;
            let len = decode_varint(&mut rest).map_err(|e| e.to_string())? as usize;
            if len > rest.len() {
                return Err("truncated span".into());
            }
            let span = Span::decode(&rest[..len]).map_err(|e| e.to_string())?;
            rest = &rest[len..];
            out.push((group, span));
        }
        Ok(())
    }
}
