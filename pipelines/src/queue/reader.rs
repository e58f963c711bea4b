//! Cursors: each exporter's own read position in a stream, with acknowledgement and a persisted
//! watermark.
//!
//! A [`Cursor`] hands out records in sequence order and remembers which ones are in flight (handed out,
//! not yet acknowledged). Acks may come in any order; the **watermark** — persisted in the `cursors`
//! column family on every advance — moves only over the contiguous acknowledged prefix: it is the highest
//! sequence such that every record at or below it was acknowledged, skipped as corrupt, or moved past by
//! policy. After a restart a cursor resumes just above its watermark, so records that were in flight are
//! delivered again (at-least-once) and nothing at or below the watermark ever is.
//!
//! [`Cursor::next_batch`] is cancel-safe: it changes the cursor only after its last await point, in the
//! same poll that returns the records, so dropping it in a `select!` loses nothing. Reading is a plain
//! RocksDB iterator on the calling task (payloads of a batch are usually in the page cache; a batch of
//! ten 150 KB records decompresses in about a millisecond).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use rocksdb::{ReadOptions, WriteOptions};
use tokio::sync::watch;

use super::format::{self, RecordHeader, CF_CURSORS, CF_RECORDS, DEFAULT_LANE};
use super::shared::{cf, map_db_error, now_ms, Core, CursorShared, StreamShared};
use super::{Lag, MaxLag, QueueError, Record, StartAt};

/// One exporter's reader of one stream. `Send`; not `Clone` (one reader per cursor).
pub struct Cursor {
    core: Arc<Core>,
    stream: Arc<StreamShared>,
    shared: Arc<CursorShared>,
    generation: u64,
    /// The highest sequence handed out (or skipped).
    read_pos: u64,
    /// Handed out, not yet acknowledged.
    in_flight: BTreeSet<u64>,
    committed: watch::Receiver<u64>,
    /// `newest_first` only: sequences above the watermark already handed out (or skipped), as disjoint
    /// inclusive ranges `start -> end`. Reading newest first leaves holes below what was handed out, so
    /// the single `read_pos` of oldest-first reading cannot describe it.
    newest_first: Option<BTreeMap<u64, u64>>,
    /// False for a reader that needs only the records' headers: payloads are checked against their
    /// checksum but not decompressed, and handed out empty.
    payloads: bool,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("stream", &self.stream.name)
            .field("exporter", &self.shared.name)
            .field("read_pos", &self.read_pos)
            .field("watermark", &self.shared.watermark())
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

pub(crate) fn open_cursor(
    core: Arc<Core>,
    stream: Arc<StreamShared>,
    exporter: &str,
    start_at: StartAt,
    max_lag: Option<MaxLag>,
) -> Result<Cursor, QueueError> {
    if core.is_closed() {
        return Err(QueueError::Closed);
    }
    let shared = {
        let mut cursors = stream.cursors.lock().unwrap_or_else(|p| p.into_inner());
        match cursors.iter().find(|c| c.name == exporter) {
            Some(c) => c.clone(),
            None => {
                let watermark = match start_at {
                    StartAt::Oldest => 0,
                    StartAt::Newest => stream.index().next_seq.saturating_sub(1),
                };
                let db = core.db()?;
                let c = Arc::new(CursorShared::new(
                    &stream,
                    exporter,
                    watermark,
                    &core.metrics,
                ));
                let mut wo = WriteOptions::default();
                wo.set_sync(true);
                db.put_cf_opt(
                    cf(&db, CF_CURSORS)?,
                    c.key(),
                    format::encode_cursor(watermark),
                    &wo,
                )
                .map_err(map_db_error)?;
                cursors.push(c.clone());
                c
            }
        }
    };
    let (generation, watermark) = shared.attach(max_lag);
    let committed = stream.committed.subscribe();
    Ok(Cursor {
        core,
        stream,
        shared,
        generation,
        read_pos: watermark,
        in_flight: BTreeSet::new(),
        committed,
        newest_first: None,
        payloads: true,
    })
}

impl Cursor {
    pub fn exporter(&self) -> &str {
        &self.shared.name
    }

    /// The persisted watermark: every record at or below it is done.
    pub fn watermark(&self) -> u64 {
        self.shared.watermark()
    }

    /// Hands out the newest records first: each batch is the newest records not yet handed out, so after
    /// an outage fresh data goes before the backlog. The watermark still moves only over the contiguous
    /// acknowledged prefix, so after a restart what was delivered above it is sent again (at-least-once).
    /// Call before the first `next_batch`.
    pub fn set_newest_first(&mut self, on: bool) {
        self.newest_first = on.then(BTreeMap::new);
    }

    /// With `false`, records come with an empty `payload`: for a reader that uses only the header's
    /// item count (the `debug` exporter at `basic`), decompressing every record would be most of its
    /// cost. The checksum is still verified, so corrupt records are skipped and counted as always.
    pub fn set_read_payloads(&mut self, on: bool) {
        self.payloads = on;
    }

    /// Waits until at least one record past the read position exists and returns up to `max_records` of
    /// them (at least one). Corrupt records are skipped and counted. Cancel-safe.
    pub async fn next_batch(&mut self, max_records: usize) -> Result<Vec<Record>, QueueError> {
        let max = max_records.max(1);
        loop {
            self.check_current()?;
            // Mark the current commit as seen *before* reading, so a commit racing with the read wakes us.
            self.committed.borrow_and_update();
            self.catch_up_with_policy();
            if self.newest_first.is_some() {
                let (records, skipped) = self.read_newest(max)?;
                let handed = self.newest_first.as_mut().expect("checked above");
                for &seq in records.iter().map(|r| &r.seq).chain(skipped.iter()) {
                    range_insert(handed, seq);
                }
                for r in &records {
                    self.in_flight.insert(r.seq);
                }
                if !skipped.is_empty() {
                    self.advance_watermark();
                }
                if !records.is_empty() {
                    return Ok(records);
                }
                if !skipped.is_empty() {
                    continue;
                }
                tokio::select! {
                    _ = self.core.closed.cancelled() => return Err(QueueError::Closed),
                    changed = self.committed.changed() => {
                        if changed.is_err() {
                            return Err(QueueError::Closed);
                        }
                    }
                }
                continue;
            }
            let (records, skipped_to) = self.read(max)?;
            if let Some(last) = skipped_to {
                self.read_pos = self.read_pos.max(last);
                for r in &records {
                    self.in_flight.insert(r.seq);
                }
                if records.is_empty() {
                    // Only corrupt records: the watermark may move over them; keep reading.
                    self.advance_watermark();
                    continue;
                }
                return Ok(records);
            }
            tokio::select! {
                _ = self.core.closed.cancelled() => return Err(QueueError::Closed),
                changed = self.committed.changed() => {
                    if changed.is_err() {
                        return Err(QueueError::Closed);
                    }
                }
            }
        }
    }

    /// Marks `seq` delivered. The watermark (persisted) advances over the contiguous delivered prefix.
    /// Acks of records already passed, or never handed out, are ignored. Failing to persist is logged and
    /// not returned: the ack took effect, and a restart would only deliver the record again.
    pub fn ack(&mut self, seq: u64) -> Result<(), QueueError> {
        self.check_current()?;
        if seq <= self.shared.watermark() || !self.in_flight.remove(&seq) {
            return Ok(());
        }
        self.advance_watermark();
        Ok(())
    }

    /// How far behind the end of the stream this cursor's watermark is.
    pub fn lag(&self) -> Lag {
        self.stream
            .index()
            .lag_after(self.shared.watermark(), now_ms())
    }

    fn check_current(&self) -> Result<(), QueueError> {
        if self.core.is_closed() || !self.shared.is_current(self.generation) {
            return Err(QueueError::Closed);
        }
        Ok(())
    }

    /// A policy (`max_lag`, `max_age`, `drop_oldest`) may have moved the watermark past records this
    /// reader has not read or not had acknowledged: skip them.
    fn catch_up_with_policy(&mut self) {
        let w = self.shared.watermark();
        if w > self.read_pos {
            self.read_pos = w;
        }
        while self.in_flight.first().is_some_and(|&s| s <= w) {
            self.in_flight.pop_first();
        }
        if let Some(handed) = &mut self.newest_first {
            range_remove_through(handed, w);
        }
    }

    fn advance_watermark(&mut self) {
        self.catch_up_with_policy();
        let done_to = match &self.newest_first {
            // The contiguous handed-out run starting just above the watermark, if there is one.
            Some(handed) => match handed.first_key_value() {
                Some((&start, &end)) if start == self.shared.watermark() + 1 => end,
                _ => return,
            },
            None => self.read_pos,
        };
        let to = match self.in_flight.first() {
            Some(&first) => (first - 1).min(done_to),
            None => done_to,
        };
        if to <= self.shared.watermark() {
            return;
        }
        let result = self.core.db().and_then(|db| self.shared.advance(&db, to));
        if let Err(e) = result {
            tracing::warn!(error = %e, stream = %self.stream.name, exporter = %self.shared.name,
                "disk queue: cannot persist a cursor; after a restart some records may be delivered again");
        }
        if self.core.pressure.load(Ordering::Acquire) {
            self.core.maintenance_wake.notify_one();
        }
    }

    /// Reads up to `max` records not yet handed out, newest first, down to the watermark. Returns them
    /// and the sequences of corrupt records it skipped, without changing the cursor.
    fn read_newest(&self, max: usize) -> Result<(Vec<Record>, Vec<u64>), QueueError> {
        let handed = self.newest_first.as_ref().expect("newest-first mode");
        let floor = self.shared.watermark();
        let db = self.core.db()?;
        let records_cf = cf(&db, CF_RECORDS)?;
        let mut ro = ReadOptions::default();
        ro.fill_cache(false);
        let mut it = db.raw_iterator_cf_opt(records_cf, ro);
        it.seek_for_prev(format::record_key(self.stream.id, DEFAULT_LANE, u64::MAX));
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        while it.valid() && out.len() < max {
            let (Some(key), Some(value)) = (it.key(), it.value()) else {
                break;
            };
            let Ok((stream, lane, seq)) = format::parse_record_key(key) else {
                break;
            };
            if stream != self.stream.id || lane != DEFAULT_LANE || seq <= floor {
                break;
            }
            // Jump over a run already handed out instead of stepping through it.
            if let Some((&start, &end)) = handed.range(..=seq).next_back() {
                if seq <= end {
                    if start <= floor + 1 {
                        break;
                    }
                    it.seek_for_prev(format::record_key(self.stream.id, DEFAULT_LANE, start - 1));
                    continue;
                }
            }
            match self.decode_record(seq, lane, value) {
                Some(r) => out.push(r),
                None => skipped.push(seq),
            }
            it.prev();
        }
        it.status().map_err(map_db_error)?;
        Ok((out, skipped))
    }

    /// A stored value as a [`Record`]; `None` (counted and logged) if it is corrupt.
    fn decode_record(&self, seq: u64, lane: u8, value: &[u8]) -> Option<Record> {
        let decoded = if self.payloads {
            format::decode_record(value)
        } else {
            format::check_record(value).map(|h| (h, Vec::new()))
        };
        match decoded {
            Ok((h, payload)) => Some(Record {
                seq,
                lane,
                signal: h.signal,
                items: h.items,
                created_at: UNIX_EPOCH + Duration::from_millis(h.created_ms),
                payload: Bytes::from(payload),
            }),
            Err(e) => {
                let items = RecordHeader::parse(value)
                    .ok()
                    .map(|h| h.items)
                    .or_else(|| self.stream.index().items_of(seq))
                    .unwrap_or(0);
                self.stream.metrics.dropped("corrupt", u64::from(items));
                tracing::error!(stream = %self.stream.name, exporter = %self.shared.name, seq, items, error = %e,
                    "disk queue: skipping a corrupt record");
                None
            }
        }
    }

    /// Reads up to `max` records after the read position. Returns them and the last sequence looked at
    /// (`None` if there was nothing), without changing the cursor.
    fn read(&self, max: usize) -> Result<(Vec<Record>, Option<u64>), QueueError> {
        let db = self.core.db()?;
        let records_cf = cf(&db, CF_RECORDS)?;
        let start = match self.read_pos.checked_add(1) {
            Some(s) => s,
            None => return Ok((Vec::new(), None)),
        };
        let mut ro = ReadOptions::default();
        // Never pull a batch of payloads through the block cache: they are read once.
        ro.fill_cache(false);
        let mut it = db.raw_iterator_cf_opt(records_cf, ro);
        it.seek(format::record_key(self.stream.id, DEFAULT_LANE, start));
        let mut out = Vec::new();
        let mut last = None;
        while it.valid() && out.len() < max {
            let (Some(key), Some(value)) = (it.key(), it.value()) else {
                break;
            };
            let Ok((stream, lane, seq)) = format::parse_record_key(key) else {
                break;
            };
            if stream != self.stream.id || lane != DEFAULT_LANE {
                break;
            }
            last = Some(seq);
            if let Some(r) = self.decode_record(seq, lane, value) {
                out.push(r);
            }
            it.next();
        }
        it.status().map_err(map_db_error)?;
        Ok((out, last))
    }
}

/// Adds `seq` to a set of disjoint inclusive ranges, merging with its neighbours.
fn range_insert(ranges: &mut BTreeMap<u64, u64>, seq: u64) {
    let mut start = seq;
    let mut end = seq;
    if let Some((&s, &e)) = ranges.range(..=seq).next_back() {
        if seq <= e {
            return;
        }
        if e + 1 == seq {
            start = s;
        }
    }
    if let Some(&e) = ranges.get(&(seq + 1)) {
        ranges.remove(&(seq + 1));
        end = e;
    }
    ranges.insert(start, end);
}

/// Removes every sequence `<= through` from the ranges.
fn range_remove_through(ranges: &mut BTreeMap<u64, u64>, through: u64) {
    while let Some((&s, &e)) = ranges.first_key_value() {
        if s > through {
            break;
        }
        ranges.remove(&s);
        if e > through {
            ranges.insert(through + 1, e);
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_trim() {
        let mut r = BTreeMap::new();
        for s in [10, 8, 9, 3, 4, 12] {
            range_insert(&mut r, s);
        }
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            vec![(3, 4), (8, 10), (12, 12)]
        );
        let mut r = BTreeMap::from([(3, 4), (8, 10), (12, 12)]);
        range_insert(&mut r, 11);
        assert_eq!(
            r.clone().into_iter().collect::<Vec<_>>(),
            vec![(3, 4), (8, 12)]
        );
        range_remove_through(&mut r, 9);
        assert_eq!(r.into_iter().collect::<Vec<_>>(), vec![(10, 12)]);
    }
}
