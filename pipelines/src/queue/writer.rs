//! The writer thread: group commit, sequence assignment, overflow decisions and deletions.
//!
//! Every append and every deletion goes through one dedicated OS thread fed by a channel. It takes the
//! first command, drains whatever else is already queued (up to [`MAX_GROUP_BYTES`]), and commits all the
//! admitted appends of that group as **one** RocksDB `WriteBatch` — with `sync=true` under
//! [`SyncPolicy::Always`] — before it answers any of them. Appends that arrive while an fsync is running
//! wait in the channel and form the next group, so under load many appends share one fsync (group
//! commit) and the fsync rate, not the append rate, is what the disk sees.
//!
//! Being the only writer of records is also what keeps the queue correct:
//! - sequences are assigned in commit order, so a record becomes visible only after every lower one —
//!   a cursor that read up to N can never miss a record N-1 that committed late;
//! - overflow is decided against one consistent total (committed bytes plus what this group already
//!   admitted), so two concurrent appends cannot both squeeze under `max_size`;
//! - the in-memory index and the totals change only here, after the write succeeded; a failed write
//!   (ENOSPC, I/O error) changes nothing but the consumed sequence numbers, which are never reused.
//!
//! The thread is a plain thread, not a tokio task, because it blocks in fsync; appenders wait on a
//! oneshot, so a slow disk parks tasks, never runtime threads.
//!
//! **Full disk.** A write that fails (ENOSPC, I/O error) is answered with a retryable error. RocksDB
//! then refuses every write with the same background error until it recovers; it may recover by itself
//! (its SstFileManager polls free space), but it does not always: on a WAL append failure it stays
//! stopped. So while writes keep failing, the writer checks at most once per [`RECOVERY_RETRY`] whether
//! the device has at least a memtable's worth of free space and, if so, closes and reopens RocksDB, which
//! clears the error (WAL recovery drops a torn tail record). Reads keep working on the stopped database
//! until then.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::oneshot;

use super::format::{self, IndexEntry, CF_INDEX, CF_META, CF_RECORDS, DEFAULT_LANE};
use super::shared::{cf, free_space, map_db_error, Core, StreamShared};
use super::{Appended, Overflow, QueueError, SyncPolicy};

/// A group stops draining the channel past this many payload bytes, bounding the batch's memory.
pub const MAX_GROUP_BYTES: usize = 32 << 20;

/// How often, while writes fail, the writer tries to reopen RocksDB.
pub const RECOVERY_RETRY: Duration = Duration::from_secs(1);

pub(crate) enum Command {
    Append(AppendRequest),
    Trim(TrimRequest),
    /// Answered once every command before it was applied.
    Barrier(oneshot::Sender<()>),
}

pub(crate) struct AppendRequest {
    pub stream: Arc<StreamShared>,
    pub lane: u8,
    pub entry: IndexEntry,
    pub value: Vec<u8>,
    pub reply: oneshot::Sender<Result<Appended, QueueError>>,
}

/// Delete a stream's records up to and including `upto`.
pub(crate) struct TrimRequest {
    pub stream: Arc<StreamShared>,
    pub upto: u64,
    pub reason: TrimReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrimReason {
    /// Every cursor has passed them: not a loss, not counted.
    Delivered,
    /// Older than `max_age`: counted per cursor that had not delivered them.
    MaxAge,
}

impl TrimReason {
    fn metric(self) -> &'static str {
        match self {
            TrimReason::Delivered => "delivered",
            TrimReason::MaxAge => "max_age",
        }
    }
}

pub(crate) fn spawn(
    core: Arc<Core>,
    rx: mpsc::Receiver<Command>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("outpost-queue-writer".into())
        .spawn(move || {
            Writer {
                sync: core.opts.sync,
                core,
                dirty_since: None,
                retry_recovery_at: None,
            }
            .run(rx)
        })
}

struct Writer {
    core: Arc<Core>,
    sync: SyncPolicy,
    /// When the oldest append not yet fsynced was written (`Interval` and `Never`).
    dirty_since: Option<Instant>,
    /// Set while writes fail: when to try reopening RocksDB next.
    retry_recovery_at: Option<Instant>,
}

/// Appends admitted into the current batch, answered once it commits.
#[derive(Default)]
struct Group {
    batch: WriteBatch,
    staged: Vec<(AppendRequest, u64)>,
    bytes: u64,
    /// The group's own appends crossed the high watermark: later ones in it see pressure.
    crossed_high: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        while let Some(first) = self.next_command(&rx) {
            let mut cmds = vec![first];
            let mut bytes = 0usize;
            while bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(cmd) => {
                        if let Command::Append(a) = &cmd {
                            bytes += a.value.len();
                        }
                        cmds.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            self.process(cmds);
            self.interval_sync();
        }
        // Channel closed: the queue is shutting down. The owner fsyncs on a clean close.
    }

    /// Blocks for the next command; under `Interval`, wakes up to fsync written appends on time.
    fn next_command(&mut self, rx: &mpsc::Receiver<Command>) -> Option<Command> {
        loop {
            let (SyncPolicy::Interval(every), Some(since)) = (self.sync, self.dirty_since) else {
                return rx.recv().ok();
            };
            match rx.recv_timeout(every.saturating_sub(since.elapsed())) {
                Ok(cmd) => return Some(cmd),
                Err(mpsc::RecvTimeoutError::Timeout) => self.interval_sync(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Under `Interval`, fsyncs the WAL once the oldest unsynced append is `every` old: that bounds what
    /// a power loss can take to `every`.
    fn interval_sync(&mut self) {
        let (SyncPolicy::Interval(every), Some(since)) = (self.sync, self.dirty_since) else {
            return;
        };
        if since.elapsed() < every {
            return;
        }
        let Ok(db) = self.core.db() else { return };
        match db.flush_wal(true) {
            Ok(()) => {
                self.core.counters.wal_syncs.fetch_add(1, Ordering::Relaxed);
                self.dirty_since = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "disk queue: periodic WAL fsync failed; retrying")
            }
        }
    }

    /// Records the outcome of a write: a failure arms the reopen fallback, a success disarms it.
    fn note_outcome(&mut self, failed: Option<&QueueError>) {
        match failed {
            None => self.retry_recovery_at = None,
            Some(QueueError::NoSpace(_) | QueueError::Io(_)) => {
                self.retry_recovery_at
                    .get_or_insert_with(|| Instant::now() + RECOVERY_RETRY);
            }
            Some(_) => {}
        }
    }

    /// The full-disk fallback (see the module doc). Must run while this thread holds no database handle.
    fn maybe_recover(&mut self) {
        let Some(at) = self.retry_recovery_at else {
            return;
        };
        if Instant::now() < at {
            return;
        }
        self.retry_recovery_at = Some(Instant::now() + RECOVERY_RETRY);
        let need = self.core.tuning.records_write_buffer as u64;
        if free_space(self.core.dir()).is_some_and(|free| free < need) {
            return;
        }
        match self.core.reopen() {
            Ok(()) => self.retry_recovery_at = None,
            Err(e) => {
                tracing::warn!(error = %e, "disk queue: reopen after a write error failed; retrying")
            }
        }
    }

    fn process(&mut self, cmds: Vec<Command>) {
        self.maybe_recover();
        let db = match self.core.db() {
            Ok(db) => db,
            Err(e) => {
                for cmd in cmds {
                    if let Command::Append(a) = cmd {
                        let _ = a.reply.send(Err(e.clone()));
                    }
                }
                return;
            }
        };
        let mut group = Group::default();
        let mut trims = Vec::new();
        let mut barriers = Vec::new();
        for cmd in cmds {
            match cmd {
                Command::Append(a) => self.admit(&db, &mut group, a),
                Command::Trim(t) => trims.push(t),
                Command::Barrier(b) => barriers.push(b),
            }
        }
        self.commit(&db, &mut group);
        for t in trims {
            self.trim(&db, t);
        }
        for b in barriers {
            let _ = b.send(());
        }
    }

    /// Stages `a` into the group, or applies the overflow policy.
    fn admit(&mut self, db: &DB, group: &mut Group, a: AppendRequest) {
        let opts = &self.core.opts;
        let size = a.value.len() as u64;
        let total = self.core.total_bytes.load(Ordering::Acquire) + group.bytes;
        let pressure = self.core.pressure.load(Ordering::Acquire) || group.crossed_high;
        if !pressure && total + size <= opts.max_size {
            self.stage(db, group, a);
            return;
        }
        match opts.overflow {
            Overflow::Block => {
                let _ = a.reply.send(Err(QueueError::Full));
            }
            Overflow::DropNewest => self.drop_newest(a),
            Overflow::DropOldest => {
                // Eviction decides against the committed state, so settle the group first.
                self.commit(db, group);
                self.evict_and_store(db, a);
            }
        }
    }

    fn drop_newest(&self, a: AppendRequest) {
        let items = a.entry.items;
        a.stream.metrics.dropped("drop_newest", u64::from(items));
        let _ = a.reply.send(Ok(Appended::Dropped { items }));
    }

    fn stage(&mut self, db: &DB, group: &mut Group, a: AppendRequest) {
        let seq = {
            let mut idx = a.stream.index();
            let seq = idx.next_seq;
            idx.next_seq += 1;
            seq
        };
        if let Err(e) = put_record(db, &mut group.batch, &a, seq) {
            let _ = a.reply.send(Err(e));
            return;
        }
        group.bytes += a.value.len() as u64;
        let total = self.core.total_bytes.load(Ordering::Acquire) + group.bytes;
        if total > self.core.opts.high_watermark {
            group.crossed_high = true;
        }
        group.staged.push((a, seq));
    }

    fn write_options(&self) -> WriteOptions {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync == SyncPolicy::Always);
        wo
    }

    fn note_commit(&mut self) {
        self.core
            .counters
            .write_batches
            .fetch_add(1, Ordering::Relaxed);
        if self.sync == SyncPolicy::Always {
            self.core.counters.wal_syncs.fetch_add(1, Ordering::Relaxed);
        } else if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }

    /// Writes the group as one batch and answers every staged append.
    fn commit(&mut self, db: &DB, group: &mut Group) {
        let group = std::mem::take(group);
        if group.staged.is_empty() {
            return;
        }
        let result = db.write_opt(group.batch, &self.write_options());
        self.note_commit();
        match result {
            Ok(()) => {
                self.note_outcome(None);
                for (a, seq) in &group.staged {
                    self.apply_append(a, *seq);
                }
                // Pressure before answering: an appender that checks it right after must see its own bytes.
                self.core.update_pressure();
                for (a, seq) in group.staged {
                    let _ = a.reply.send(Ok(Appended::Stored { seq }));
                }
            }
            Err(e) => {
                let err = map_db_error(e);
                self.note_outcome(Some(&err));
                tracing::warn!(error = %err, appends = group.staged.len(), "disk queue: write failed; appends refused (retryable)");
                for (a, _) in group.staged {
                    let _ = a.reply.send(Err(err.clone()));
                }
            }
        }
    }

    fn apply_append(&self, a: &AppendRequest, seq: u64) {
        a.stream.index().push(seq, &a.entry);
        self.core
            .total_bytes
            .fetch_add(u64::from(a.entry.stored_len), Ordering::AcqRel);
        self.core.total_records.fetch_add(1, Ordering::AcqRel);
        a.stream.committed.send_replace(seq);
    }

    /// `drop_oldest`: deletes the stream's oldest records until the new one fits — under the high
    /// watermark while under pressure, else under `max_size` — and stores it in the same batch. If even
    /// deleting all of them would not bring the queue under `max_size` (other streams hold the bytes),
    /// the new record is dropped instead.
    fn evict_and_store(&mut self, db: &DB, a: AppendRequest) {
        let opts = &self.core.opts;
        let size = a.value.len() as u64;
        let total = self.core.total_bytes.load(Ordering::Acquire);
        let (n, upto) = {
            let idx = a.stream.index();
            let need = |target: u64| -> Option<usize> {
                let mut freed = 0u64;
                for n in 0..=idx.entries.len() {
                    if total.saturating_sub(freed) + size <= target {
                        return Some(n);
                    }
                    if let Some(e) = idx.entries.get(n) {
                        freed += u64::from(e.stored_len);
                    }
                }
                None
            };
            let target = if self.core.pressure.load(Ordering::Acquire) {
                opts.high_watermark.min(opts.max_size)
            } else {
                opts.max_size
            };
            match need(target).or_else(|| need(opts.max_size)) {
                Some(n) => (
                    n,
                    n.checked_sub(1)
                        .and_then(|i| idx.entries.get(i))
                        .map(|e| e.seq),
                ),
                None => (0, None),
            }
        };
        let fits = upto.is_some() || total + size <= opts.max_size;
        if !fits {
            self.drop_newest(a);
            return;
        }
        let mut batch = WriteBatch::default();
        if let Some(upto) = upto {
            if let Err(e) = delete_range(db, &mut batch, a.stream.id, upto) {
                let _ = a.reply.send(Err(e));
                return;
            }
        }
        let seq = {
            let mut idx = a.stream.index();
            let seq = idx.next_seq;
            idx.next_seq += 1;
            seq
        };
        if let Err(e) = put_record(db, &mut batch, &a, seq) {
            let _ = a.reply.send(Err(e));
            return;
        }
        let result = db.write_opt(batch, &self.write_options());
        self.note_commit();
        match result {
            Ok(()) => {
                self.note_outcome(None);
                if let Some(upto) = upto {
                    self.apply_deletion(db, &a.stream, n, upto, Some("drop_oldest"));
                }
                self.apply_append(&a, seq);
                self.core.update_pressure();
                let _ = a.reply.send(Ok(Appended::Stored { seq }));
            }
            Err(e) => {
                let err = map_db_error(e);
                self.note_outcome(Some(&err));
                let _ = a.reply.send(Err(err));
            }
        }
    }

    /// Deletes a stream's records up to `t.upto` (never past the slowest cursor for `Delivered`).
    fn trim(&mut self, db: &DB, t: TrimRequest) {
        let upto = match t.reason {
            // Re-checked here, not trusted from the request: a cursor may have been created since.
            TrimReason::Delivered => match t.stream.min_watermark() {
                Some(min) => t.upto.min(min),
                None => return,
            },
            TrimReason::MaxAge => t.upto,
        };
        let n = t.stream.index().after(upto);
        if n == 0 {
            return;
        }
        let mut batch = WriteBatch::default();
        if let Err(e) = delete_range(db, &mut batch, t.stream.id, upto) {
            tracing::warn!(error = %e, stream = %t.stream.name, "disk queue: cannot delete records");
            return;
        }
        // Deletions need no fsync of their own: losing one on power loss only brings delivered records
        // back (re-delivered, at-least-once); a later synced write syncs it anyway.
        match db.write(batch) {
            Ok(()) => {
                let counted = (t.reason == TrimReason::MaxAge).then(|| t.reason.metric());
                self.apply_deletion(db, &t.stream, n, upto, counted);
                self.core.update_pressure();
            }
            Err(e) => {
                let err = map_db_error(e);
                self.note_outcome(Some(&err));
                tracing::warn!(error = %err, stream = %t.stream.name, "disk queue: deleting records failed; retrying at the next pass")
            }
        }
    }

    /// After a deletion of the stream's first `n` index entries (through `upto`) committed: counts what
    /// each cursor lost (for a counted `reason`), moves those cursors past it, and updates accounting.
    fn apply_deletion(
        &self,
        db: &DB,
        stream: &StreamShared,
        n: usize,
        upto: u64,
        reason: Option<&'static str>,
    ) {
        let cursors = stream.cursors();
        let mut idx = stream.index();
        if let Some(reason) = reason {
            if cursors.is_empty() {
                stream.metrics.dropped(reason, idx.span(0, n).items);
            }
            for c in &cursors {
                let lost = idx.span_between(c.watermark(), upto).items;
                stream.metrics.dropped(reason, lost);
                if let Err(e) = c.advance(db, upto) {
                    tracing::warn!(error = %e, exporter = %c.name, "disk queue: cannot persist a cursor moved by policy");
                }
                if lost > 0 {
                    tracing::warn!(stream = %stream.name, exporter = %c.name, items = lost, reason, "disk queue deleted records an exporter had not delivered");
                }
            }
        }
        let gone = idx.span(0, n);
        let n = n.min(idx.entries.len());
        idx.entries.drain(..n);
        drop(idx);
        self.core
            .total_bytes
            .fetch_sub(gone.bytes, Ordering::AcqRel);
        self.core
            .total_records
            .fetch_sub(gone.records, Ordering::AcqRel);
    }
}

/// Puts a record, its index entry and the stream's last sequence into `batch`.
fn put_record(
    db: &DB,
    batch: &mut WriteBatch,
    a: &AppendRequest,
    seq: u64,
) -> Result<(), QueueError> {
    let key = format::record_key(a.stream.id, a.lane, seq);
    batch.put_cf(cf(db, CF_RECORDS)?, key, &a.value);
    batch.put_cf(cf(db, CF_INDEX)?, key, a.entry.encode());
    batch.put_cf(
        cf(db, CF_META)?,
        format::seq_meta_key(a.stream.id),
        seq.to_be_bytes(),
    );
    Ok(())
}

/// Deletes lane-0 records and index entries of `stream` from the start through `upto`: two range
/// tombstones, however many records.
fn delete_range(db: &DB, batch: &mut WriteBatch, stream: u32, upto: u64) -> Result<(), QueueError> {
    let from = format::record_key(stream, DEFAULT_LANE, 0);
    let to = match upto.checked_add(1) {
        Some(end) => format::record_key(stream, DEFAULT_LANE, end).to_vec(),
        // Through u64::MAX: end at the next lane.
        None => format::record_key(stream, DEFAULT_LANE + 1, 0).to_vec(),
    };
    batch.delete_range_cf(cf(db, CF_RECORDS)?, from.as_slice(), to.as_slice());
    batch.delete_range_cf(cf(db, CF_INDEX)?, from.as_slice(), to.as_slice());
    Ok(())
}
