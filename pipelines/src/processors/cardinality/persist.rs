//! Admitted series in the state store, so a restart admits the same series.
//!
//! Keys live under `cardinality/<pipeline>/<processor>/`. Exact mode writes one key per admitted
//! series, `s` + its fingerprint (8 bytes, big-endian), whose value names the metric and lists the
//! series' labels as (key, value hash) so the label value sets are rebuilt too:
//! `u16 name length, name, then per label: u16 key length, key, u64 value hash` (little-endian).
//! Probabilistic mode writes one key, `bloom`: both filter generations' bits, then the series count per
//! metric (`u32 metrics, then per metric: u16 name length, name, u64 count`).
//!
//! Changes are gathered in memory (a later change to a series replaces an earlier one) and written in
//! one RocksDB batch per `persist_interval`, so admitting a burst of series costs one write, not one per
//! point. A restored series counts as seen at start, so it has a full `series_ttl` to show up again.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;

use crate::queue::{QueueError, StateEntry, StateStore};

use super::track::{Series, Values};
use super::CardinalityLimit;

pub(super) struct Store {
    state: StateStore,
    prefix: Vec<u8>,
    /// Fingerprint → the value to write, or `None` to delete.
    pending: HashMap<u64, Option<Vec<u8>>>,
    dirty: bool,
}

impl Store {
    pub(super) fn new(state: StateStore, pipeline: &str, id: &str) -> Store {
        Store {
            state,
            prefix: format!("cardinality/{pipeline}/{id}/").into_bytes(),
            pending: HashMap::new(),
            dirty: false,
        }
    }

    fn series_key(&self, fp: u64) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b's');
        k.extend_from_slice(&fp.to_be_bytes());
        k
    }

    fn bloom_key(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"bloom");
        k
    }

    pub(super) fn admitted(&mut self, fp: u64, metric: &str, labels: &[KeyValue], hashes: &[u64]) {
        self.dirty = true;
        let mut v = Vec::with_capacity(2 + metric.len() + labels.len() * 24);
        put_str(&mut v, metric);
        for (kv, h) in labels.iter().zip(hashes) {
            put_str(&mut v, &kv.key);
            v.extend_from_slice(&h.to_le_bytes());
        }
        self.pending.insert(fp, Some(v));
    }

    pub(super) fn expired(&mut self, fp: u64) {
        self.dirty = true;
        self.pending.insert(fp, None);
    }

    pub(super) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Writes what changed since the last flush, in one batch.
    pub(super) fn flush(&mut self, p: &CardinalityLimit) -> Result<(), QueueError> {
        if !self.dirty {
            return Ok(());
        }
        let mut puts: Vec<StateEntry> = Vec::new();
        let mut deletes = Vec::new();
        match &p.series {
            Series::Exact(_) => {
                for (fp, v) in &self.pending {
                    match v {
                        Some(v) => puts.push((self.series_key(*fp), v.clone())),
                        None => deletes.push(self.series_key(*fp)),
                    }
                }
            }
            Series::Probabilistic {
                current, previous, ..
            } => {
                let mut v = Vec::with_capacity(current.bytes() * 2 + 64);
                current.encode(&mut v);
                previous.encode(&mut v);
                let counted: Vec<_> = p.metrics.iter().filter(|m| m.series > 0).collect();
                v.extend_from_slice(&(counted.len() as u32).to_le_bytes());
                for m in counted {
                    put_str(&mut v, &m.name);
                    v.extend_from_slice(&m.series.to_le_bytes());
                }
                puts.push((self.bloom_key(), v));
            }
        }
        self.state.write_batch(&puts, &deletes)?;
        self.pending.clear();
        self.dirty = false;
        Ok(())
    }

    /// Reads back what an earlier run admitted into `p`.
    pub(super) fn load(&self, p: &mut CardinalityLimit) -> Result<(), QueueError> {
        if matches!(p.series, Series::Probabilistic { .. }) {
            return self.load_bloom(p);
        }
        let mut series_prefix = self.prefix.clone();
        series_prefix.push(b's');
        let mut skipped = 0usize;
        for (k, v) in self.state.scan_prefix(&series_prefix)? {
            let Some(fp) = k
                .get(series_prefix.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
            else {
                skipped += 1;
                continue;
            };
            let Some((metric, labels)) = decode_series(&v) else {
                skipped += 1;
                continue;
            };
            let Some(mid) = p.metric_id(&metric) else {
                continue; // the metric is excluded now
            };
            if p.series.is_known(fp) {
                continue;
            }
            p.series.insert(fp, mid, 0);
            p.global += 1;
            p.metrics[mid as usize].series += 1;
            for (key, h) in labels {
                let l = p.label(mid, &key);
                if !l.excluded {
                    force_insert(&mut l.values, h);
                }
            }
        }
        if skipped > 0 {
            tracing::warn!(
                entries = skipped,
                "cardinality_limit: unreadable admitted-series entries in the state store were ignored"
            );
        }
        Ok(())
    }

    fn load_bloom(&self, p: &mut CardinalityLimit) -> Result<(), QueueError> {
        let Some(v) = self.state.get(&self.bloom_key())? else {
            return Ok(());
        };
        let Series::Probabilistic {
            current, previous, ..
        } = &mut p.series
        else {
            return Ok(());
        };
        let n = current.bytes();
        let restored = v
            .get(..n)
            .and_then(|b| current.decode_same_size(b))
            .zip(v.get(n..2 * n).and_then(|b| previous.decode_same_size(b)));
        let Some((cur, prev)) = restored else {
            tracing::warn!(
                "cardinality_limit: the saved series filter has another size (max_memory changed); starting empty"
            );
            return Ok(());
        };
        *current = cur;
        *previous = prev;
        let mut rest = &v[2 * n..];
        let count = take_u32(&mut rest).unwrap_or(0);
        for _ in 0..count {
            let (Some(name), Some(series)) = (take_str(&mut rest), take_u64(&mut rest)) else {
                break;
            };
            if let Some(mid) = p.metric_id(&name) {
                p.metrics[mid as usize].series = series;
                p.global += series;
            }
        }
        Ok(())
    }
}

/// A restored value is kept even if a lowered value_limit would not admit it now: the series that
/// carries it was admitted.
fn force_insert(values: &mut Values, h: u64) {
    if let Values::Exact { seen, .. } = values {
        seen.insert(h, 0);
    } else {
        values.insert(h, 0);
    }
}

fn put_str(v: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    v.extend_from_slice(&(b.len() as u16).to_le_bytes());
    v.extend_from_slice(b);
}

fn take_u16(b: &mut &[u8]) -> Option<u16> {
    let (h, t) = b.split_first_chunk::<2>()?;
    *b = t;
    Some(u16::from_le_bytes(*h))
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    let (h, t) = b.split_first_chunk::<4>()?;
    *b = t;
    Some(u32::from_le_bytes(*h))
}

fn take_u64(b: &mut &[u8]) -> Option<u64> {
    let (h, t) = b.split_first_chunk::<8>()?;
    *b = t;
    Some(u64::from_le_bytes(*h))
}

fn take_str(b: &mut &[u8]) -> Option<String> {
    let n = take_u16(b)? as usize;
    let s = b.get(..n)?;
    let out = String::from_utf8(s.to_vec()).ok()?;
    *b = &b[n..];
    Some(out)
}

fn decode_series(mut v: &[u8]) -> Option<(String, Vec<(String, u64)>)> {
    let metric = take_str(&mut v)?;
    let mut labels = Vec::new();
    while !v.is_empty() {
        let key = take_str(&mut v)?;
        labels.push((key, take_u64(&mut v)?));
    }
    Some((metric, labels))
}
