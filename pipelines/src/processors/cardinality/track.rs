//! What the processor knows: the series admitted so far and the values each label took, either exactly
//! (64-bit fingerprints in hash maps) or probabilistically (Bloom filters of a fixed size).
//!
//! A series' fingerprint is the xxh3 hash of its metric context (resource attributes, scope, metric
//! name) and of its attribute set. The attribute set is hashed without sorting: each attribute is hashed
//! alone and the hashes are added, so the order a client sends attributes in does not matter and no
//! allocation is needed. xxh3 is used, not std's hasher, because fingerprints are persisted and must
//! mean the same thing to the next build. At 64 bits two series collide with probability about n²/2⁶⁵
//! (one in 36 million for a million series); a collision makes the second series pass as known.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// The hash of one attribute, key and value.
pub(super) fn kv_hash(kv: &KeyValue) -> u64 {
    let mut h = Xxh3::new();
    h.update(kv.key.as_bytes());
    h.update(&[0xff]);
    hash_value(&mut h, kv.value.as_ref());
    h.digest()
}

fn hash_value(h: &mut Xxh3, v: Option<&AnyValue>) {
    use any_value::Value;
    match v.and_then(|v| v.value.as_ref()) {
        None => h.update(&[0]),
        Some(Value::StringValue(s)) => {
            h.update(&[1]);
            h.update(s.as_bytes());
        }
        Some(Value::BoolValue(b)) => h.update(&[2, u8::from(*b)]),
        Some(Value::IntValue(i)) => {
            h.update(&[3]);
            h.update(&i.to_le_bytes());
        }
        Some(Value::DoubleValue(d)) => {
            h.update(&[4]);
            h.update(&d.to_bits().to_le_bytes());
        }
        Some(Value::BytesValue(b)) => {
            h.update(&[5]);
            h.update(b);
        }
        // Rare as metric labels: their protobuf encoding is a faithful, if slower, identity.
        Some(other) => {
            h.update(&[6]);
            h.update(
                &AnyValue {
                    value: Some(other.clone()),
                }
                .encode_to_vec(),
            );
        }
    }
}

/// The order-independent hash of an attribute set, from its attributes' hashes.
pub(super) fn set_hash(kv_hashes: &[u64]) -> u64 {
    kv_hashes.iter().fold(0u64, |a, h| a.wrapping_add(*h))
}

/// Two hashes into one.
pub(super) fn mix(a: u64, b: u64) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&a.to_le_bytes());
    buf[8..].copy_from_slice(&b.to_le_bytes());
    xxh3_64(&buf)
}

pub(super) fn str_hash(s: &str) -> u64 {
    xxh3_64(s.as_bytes())
}

// ---------------------------------------------------------------------------------------------------------
// Bloom filter

/// A Bloom filter over values that are already 64-bit hashes, so it derives its probe positions from the
/// hash (double hashing) instead of hashing again; its bits are what is persisted.
#[derive(Debug, Clone)]
pub(super) struct Bloom {
    words: Vec<u64>,
}

/// Probes per item: the false-positive rate is lowest with about 4 probes while the filter is a fifth
/// to a quarter full of items per bit-slot, where a budget-sized filter spends most of its life.
const PROBES: u64 = 4;

impl Bloom {
    pub(super) fn with_bytes(bytes: u64) -> Bloom {
        let words = (bytes / 8).max(1) as usize;
        Bloom {
            words: vec![0; words],
        }
    }

    fn positions(&self, h: u64) -> impl Iterator<Item = (usize, u64)> {
        let bits = self.words.len() as u64 * 64;
        let h2 = h.rotate_left(32) | 1;
        (0..PROBES).map(move |i| {
            let bit = h.wrapping_add(i.wrapping_mul(h2)) % bits;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    pub(super) fn contains(&self, h: u64) -> bool {
        self.positions(h).all(|(w, m)| self.words[w] & m != 0)
    }

    /// Inserts `h`; returns whether it was (probably) absent.
    pub(super) fn insert(&mut self, h: u64) -> bool {
        let mut pos = [(0usize, 0u64); PROBES as usize];
        for (slot, p) in pos.iter_mut().zip(self.positions(h)) {
            *slot = p;
        }
        let mut new = false;
        for (w, m) in pos {
            new |= self.words[w] & m == 0;
            self.words[w] |= m;
        }
        new
    }

    pub(super) fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    pub(super) fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// Reads back a filter of this size from `bytes`; `None` if the size differs (the config changed).
    pub(super) fn decode_same_size(&self, bytes: &[u8]) -> Option<Bloom> {
        if bytes.len() != self.bytes() {
            return None;
        }
        Some(Bloom {
            words: bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Series

/// Where a known series stands, in exact mode. 8 bytes, so a map entry with its key is 16.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    pub metric: u32,
    /// Seconds since the processor started.
    pub at: u32,
}

pub(super) enum Touch {
    Known,
    /// Probabilistic mode: known from the previous generation, now counted again.
    Revived,
    Unknown,
}

pub(super) enum Series {
    Exact(HashMap<u64, Seen>),
    /// Two generations, each `series_ttl` long: a series seen in either is known; seeing it copies it
    /// into the current one, so a series unseen for two generations is forgotten.
    Probabilistic {
        current: Bloom,
        previous: Bloom,
        started: u32,
    },
}

impl Series {
    pub(super) fn touch(&mut self, fp: u64, now: u32) -> Touch {
        match self {
            Series::Exact(map) => match map.get_mut(&fp) {
                Some(s) => {
                    s.at = now;
                    Touch::Known
                }
                None => Touch::Unknown,
            },
            Series::Probabilistic {
                current, previous, ..
            } => {
                if current.contains(fp) {
                    Touch::Known
                } else if previous.contains(fp) {
                    current.insert(fp);
                    Touch::Revived
                } else {
                    Touch::Unknown
                }
            }
        }
    }

    pub(super) fn is_known(&self, fp: u64) -> bool {
        match self {
            Series::Exact(map) => map.contains_key(&fp),
            Series::Probabilistic {
                current, previous, ..
            } => current.contains(fp) || previous.contains(fp),
        }
    }

    pub(super) fn insert(&mut self, fp: u64, metric: u32, now: u32) {
        match self {
            Series::Exact(map) => {
                map.insert(fp, Seen { metric, at: now });
            }
            Series::Probabilistic { current, .. } => {
                current.insert(fp);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Label values

/// Values one label of one metric took.
pub(super) enum Values {
    /// Value hash → when last seen; holds at most `cap` values.
    Exact { seen: HashMap<u64, u32>, cap: usize },
    /// Distinct values estimated by the inserts that set a bit.
    Bloom { filter: Bloom, count: u64 },
}

impl Values {
    pub(super) fn contains(&self, h: u64) -> bool {
        match self {
            Values::Exact { seen, .. } => seen.contains_key(&h),
            Values::Bloom { filter, .. } => filter.contains(h),
        }
    }

    /// Inserts `h` if there is room; returns whether it is now held.
    pub(super) fn insert(&mut self, h: u64, now: u32) -> bool {
        match self {
            Values::Exact { seen, cap } => {
                if let Some(at) = seen.get_mut(&h) {
                    *at = now;
                    return true;
                }
                if seen.len() >= *cap {
                    return false;
                }
                seen.insert(h, now);
                true
            }
            Values::Bloom { filter, count } => {
                if filter.insert(h) {
                    *count += 1;
                }
                true
            }
        }
    }

    pub(super) fn refresh(&mut self, h: u64, now: u32) {
        if let Values::Exact { seen, .. } = self {
            if let Some(at) = seen.get_mut(&h) {
                *at = now;
            }
        }
    }

    pub(super) fn len(&self) -> u64 {
        match self {
            Values::Exact { seen, .. } => seen.len() as u64,
            Values::Bloom { count, .. } => *count,
        }
    }

    pub(super) fn is_full(&self) -> bool {
        match self {
            Values::Exact { seen, cap } => seen.len() >= *cap,
            Values::Bloom { .. } => false,
        }
    }

    /// Forgets values last seen before `cutoff` (exact), or every value once per generation (Bloom).
    pub(super) fn expire(&mut self, cutoff: u32, new_generation: bool) {
        match self {
            Values::Exact { seen, .. } => seen.retain(|_, at| *at >= cutoff),
            Values::Bloom { filter, count } => {
                if new_generation {
                    filter.clear();
                    *count = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn attribute_order_does_not_change_the_fingerprint_but_values_do() {
        let a = [kv("a", "1"), kv("b", "2")];
        let b = [kv("b", "2"), kv("a", "1")];
        let c = [kv("a", "2"), kv("b", "1")];
        let h = |s: &[KeyValue]| set_hash(&s.iter().map(kv_hash).collect::<Vec<_>>());
        assert_eq!(h(&a), h(&b));
        assert_ne!(h(&a), h(&c), "swapped values are another series");
        assert_ne!(kv_hash(&kv("ab", "c")), kv_hash(&kv("a", "bc")));
    }

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let mut b = Bloom::with_bytes(16 << 10);
        for i in 0..10_000u64 {
            b.insert(str_hash(&format!("in{i}")));
        }
        assert!((0..10_000u64).all(|i| b.contains(str_hash(&format!("in{i}")))));
        let fp = (0..10_000u64)
            .filter(|i| b.contains(str_hash(&format!("out{i}"))))
            .count();
        // 131072 bits, 10000 items, 4 probes: about 0.5% expected.
        assert!(fp < 200, "{fp} false positives in 10000");
        let mut enc = Vec::new();
        b.encode(&mut enc);
        let back = b.decode_same_size(&enc).unwrap();
        assert!(back.contains(str_hash("in7")));
    }
}
