//! State shared by the queue's handles, writer thread and maintenance task: the database handle, the
//! stream registry with each stream's in-memory index, cursors' shared halves, and the byte accounting.
//!
//! Ownership of mutation is split so no lock is held across I/O that another party waits for:
//! - the **writer thread** alone changes a stream's index (pushes appended records, pops deleted ones),
//!   its next sequence, and the totals;
//! - a **cursor's watermark** changes under that cursor's own mutex (by its exporter's acks, or by the
//!   writer / maintenance moving it forward by policy), and every change is persisted under that mutex
//!   so the stored value never goes backwards;
//! - everyone else reads.
//!
//! The database sits in a slot that [`Owner::shutdown`] empties, so closing the queue closes RocksDB (and
//! releases its LOCK) even while cursors or streams are still referenced elsewhere. The writer also uses
//! the slot to close and reopen RocksDB after a write error that RocksDB does not recover from by itself
//! (see `writer`): while that happens callers get a retryable [`QueueError::Io`], never `Closed`.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rocksdb::{ColumnFamily, WriteBatch, WriteOptions, DB};
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::telemetry::{QueueCursorMetrics, QueueMetrics, QueueStreamMetrics};

use super::format::{self, IndexEntry};
use super::writer::Command;
use super::{Lag, MaxLag, QueueError, QueueOptions, QueueStats, Tuning};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn age_since(created_ms: u64, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(created_ms))
}

/// Maps a RocksDB error to the queue's error kinds. RocksDB reports ENOSPC as an IO error whose message
/// says "No space left on device"; once it has hit it, it keeps answering every write with that
/// background error until it has recovered, which keeps the mapping right.
pub(crate) fn map_db_error(e: rocksdb::Error) -> QueueError {
    let kind = e.kind();
    let msg = e.into_string();
    if msg.contains("No space left") || msg.contains("NoSpace") || msg.contains("ENOSPC") {
        QueueError::NoSpace(msg)
    } else if kind == rocksdb::ErrorKind::Corruption {
        QueueError::Corrupt(msg)
    } else if kind == rocksdb::ErrorKind::ShutdownInProgress {
        QueueError::Closed
    } else {
        QueueError::Io(msg)
    }
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily, QueueError> {
    db.cf_handle(name)
        .ok_or_else(|| QueueError::Corrupt(format!("column family '{name}' is missing")))
}

/// One record in a stream's in-memory index, with running totals so the bytes and items between any two
/// sequences are one subtraction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub seq: u64,
    pub items: u32,
    pub stored_len: u32,
    pub created_ms: u64,
    /// Sum of `stored_len` of this entry and every entry ever pushed before it.
    pub cum_bytes: u64,
    pub cum_items: u64,
}

/// What the queue knows about a stream's lane-0 records without reading them.
#[derive(Debug, Default)]
pub(crate) struct StreamIndex {
    /// The sequence the next append gets.
    pub next_seq: u64,
    pub entries: VecDeque<Entry>,
}

/// Records, bytes and items strictly after some sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub records: u64,
    pub bytes: u64,
    pub items: u64,
}

impl StreamIndex {
    pub fn push(&mut self, seq: u64, e: &IndexEntry) {
        let (cb, ci) = self
            .entries
            .back()
            .map_or((0, 0), |b| (b.cum_bytes, b.cum_items));
        self.entries.push_back(Entry {
            seq,
            items: e.items,
            stored_len: e.stored_len,
            created_ms: e.created_ms,
            cum_bytes: cb + u64::from(e.stored_len),
            cum_items: ci + u64::from(e.items),
        });
    }

    /// Position of the first entry with a sequence above `seq`.
    pub fn after(&self, seq: u64) -> usize {
        self.entries.partition_point(|e| e.seq <= seq)
    }

    /// Running totals before entry `i` (what entry `i` starts from).
    fn base(&self, i: usize) -> (u64, u64) {
        match self.entries.get(i) {
            Some(e) => (
                e.cum_bytes - u64::from(e.stored_len),
                e.cum_items - u64::from(e.items),
            ),
            None => self
                .entries
                .back()
                .map_or((0, 0), |b| (b.cum_bytes, b.cum_items)),
        }
    }

    /// Entries in the half-open position range `[from, to)`.
    pub fn span(&self, from: usize, to: usize) -> Span {
        let to = to.min(self.entries.len());
        if from >= to {
            return Span::default();
        }
        let (b0, i0) = self.base(from);
        let (b1, i1) = self.base(to);
        Span {
            records: (to - from) as u64,
            bytes: b1 - b0,
            items: i1 - i0,
        }
    }

    /// Everything in `(from, to]`.
    pub fn span_between(&self, from: u64, to: u64) -> Span {
        self.span(self.after(from), self.after(to))
    }

    pub fn lag_after(&self, seq: u64, now_ms: u64) -> Lag {
        let i = self.after(seq);
        let s = self.span(i, self.entries.len());
        Lag {
            records: s.records,
            bytes: s.bytes,
            oldest_age: self.entries.get(i).map(|e| age_since(e.created_ms, now_ms)),
        }
    }

    pub fn total(&self) -> Span {
        self.span(0, self.entries.len())
    }

    pub fn items_of(&self, seq: u64) -> Option<u32> {
        let i = self.after(seq.saturating_sub(1));
        self.entries
            .get(i)
            .filter(|e| e.seq == seq)
            .map(|e| e.items)
    }
}

/// The shared half of a cursor: the persisted watermark and what the maintenance task needs.
pub(crate) struct CursorShared {
    pub name: String,
    key: Vec<u8>,
    state: Mutex<CursorState>,
    /// Mirror of `state.watermark` for lock-free reads.
    watermark: AtomicU64,
    pub metrics: QueueCursorMetrics,
}

#[derive(Debug)]
struct CursorState {
    watermark: u64,
    /// Bumped each time a [`super::Cursor`] attaches; an older `Cursor` seeing a newer generation knows it
    /// was replaced.
    generation: u64,
    removed: bool,
    max_lag: Option<MaxLag>,
}

impl CursorShared {
    pub fn new(stream: &StreamShared, name: &str, watermark: u64, metrics: &QueueMetrics) -> Self {
        CursorShared {
            name: name.to_owned(),
            key: format::cursor_key(stream.id, name),
            state: Mutex::new(CursorState {
                watermark,
                generation: 0,
                removed: false,
                max_lag: None,
            }),
            watermark: AtomicU64::new(watermark),
            metrics: metrics.cursor(&stream.name, name),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CursorState> {
        // A poisoned lock only means another thread panicked mid-update of plain integers.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }

    pub fn max_lag(&self) -> Option<MaxLag> {
        self.lock().max_lag
    }

    /// Attaches a new reader; returns its generation and the watermark it starts from.
    pub fn attach(&self, max_lag: Option<MaxLag>) -> (u64, u64) {
        let mut s = self.lock();
        s.generation += 1;
        s.max_lag = max_lag;
        s.removed = false;
        (s.generation, s.watermark)
    }

    /// Whether the reader of `generation` is still the cursor's reader.
    pub fn is_current(&self, generation: u64) -> bool {
        let s = self.lock();
        s.generation == generation && !s.removed
    }

    pub fn mark_removed(&self) {
        self.lock().removed = true;
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Raises the watermark to `to` and persists it (unsynced: a lost update only means re-delivery).
    /// Returns the previous watermark if it moved. The in-memory watermark moves even if persisting fails.
    pub fn advance(&self, db: &DB, to: u64) -> Result<Option<u64>, QueueError> {
        let mut s = self.lock();
        if to <= s.watermark || s.removed {
            return Ok(None);
        }
        let from = s.watermark;
        s.watermark = to;
        self.watermark.store(to, Ordering::Release);
        let cf = cf(db, format::CF_CURSORS)?;
        db.put_cf(cf, &self.key, format::encode_cursor(to))
            .map_err(map_db_error)?;
        Ok(Some(from))
    }
}

/// One stream: its identity, in-memory index, cursors and the signal its readers wait on.
pub(crate) struct StreamShared {
    pub id: u32,
    pub name: String,
    pub index: Mutex<StreamIndex>,
    pub cursors: Mutex<Vec<Arc<CursorShared>>>,
    /// The last committed sequence; cursors wait on it for new records.
    pub committed: watch::Sender<u64>,
    pub metrics: QueueStreamMetrics,
}

impl StreamShared {
    pub fn new(id: u32, name: &str, metrics: &QueueMetrics) -> Self {
        StreamShared {
            id,
            name: name.to_owned(),
            index: Mutex::new(StreamIndex {
                next_seq: 1,
                entries: VecDeque::new(),
            }),
            cursors: Mutex::new(Vec::new()),
            committed: watch::Sender::new(0),
            metrics: metrics.stream(name),
        }
    }

    pub fn index(&self) -> MutexGuard<'_, StreamIndex> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cursors(&self) -> Vec<Arc<CursorShared>> {
        self.cursors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The lowest watermark over every cursor, attached or only persisted; `None` without cursors.
    pub fn min_watermark(&self) -> Option<u64> {
        self.cursors().iter().map(|c| c.watermark()).min()
    }
}

#[derive(Default)]
pub(crate) struct Streams {
    pub by_name: HashMap<String, Arc<StreamShared>>,
    pub by_id: HashMap<u32, Arc<StreamShared>>,
    pub next_id: u32,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub write_batches: AtomicU64,
    pub wal_syncs: AtomicU64,
}

pub(crate) struct Core {
    pub opts: QueueOptions,
    pub tuning: Tuning,
    db: RwLock<DbSlot>,
    pub streams: RwLock<Streams>,
    pub total_bytes: AtomicU64,
    pub total_records: AtomicU64,
    pub pressure: AtomicBool,
    pub closed: CancellationToken,
    writer: Mutex<Option<mpsc::Sender<Command>>>,
    pub metrics: QueueMetrics,
    pub counters: Counters,
    /// Wakes the maintenance task early (an ack while under pressure).
    pub maintenance_wake: Notify,
}

impl Core {
    pub fn new(
        opts: QueueOptions,
        tuning: Tuning,
        db: DB,
        streams: Streams,
        metrics: QueueMetrics,
        writer: mpsc::Sender<Command>,
    ) -> Core {
        Core {
            opts,
            tuning,
            db: RwLock::new(DbSlot::Open(Arc::new(db))),
            streams: RwLock::new(streams),
            total_bytes: AtomicU64::new(0),
            total_records: AtomicU64::new(0),
            pressure: AtomicBool::new(false),
            closed: CancellationToken::new(),
            writer: Mutex::new(Some(writer)),
            metrics,
            counters: Counters::default(),
            maintenance_wake: Notify::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.opts.directory
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// The open database; [`QueueError::Closed`] after shutdown, a retryable [`QueueError::Io`] while a
    /// reopen after a disk error has not succeeded yet.
    pub fn db(&self) -> Result<Arc<DB>, QueueError> {
        match &*self.db.read().unwrap_or_else(|p| p.into_inner()) {
            DbSlot::Open(db) => Ok(db.clone()),
            DbSlot::Broken(msg) => Err(QueueError::Io(msg.clone())),
            DbSlot::Closed => Err(QueueError::Closed),
        }
    }

    /// Closes and reopens RocksDB, which clears a background error it would not recover from by itself.
    /// Blocks callers of [`Core::db`] for its duration (tens of milliseconds). In-memory state stays
    /// valid: it only ever reflects writes that succeeded.
    pub fn reopen(&self) -> Result<(), QueueError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(
            &mut *slot,
            DbSlot::Broken("the disk queue is reopening".into()),
        ) {
            DbSlot::Closed => {
                *slot = DbSlot::Closed;
                return Err(QueueError::Closed);
            }
            DbSlot::Open(db) => wait_and_close(db),
            DbSlot::Broken(_) => {}
        }
        let dir = self.opts.directory.clone();
        match DB::open_cf_descriptors(
            &super::recovery::db_options(),
            &dir,
            super::recovery::descriptors(&self.tuning),
        ) {
            Ok(db) => {
                *slot = DbSlot::Open(Arc::new(db));
                tracing::info!(directory = %dir.display(), "disk queue reopened after a write error");
                Ok(())
            }
            Err(e) => {
                let err = super::recovery::open_error(&dir, e);
                *slot = DbSlot::Broken(format!("the disk queue could not be reopened yet: {err}"));
                Err(err)
            }
        }
    }

    pub fn send(&self, cmd: Command) -> Result<(), QueueError> {
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(cmd).map_err(|_| QueueError::Closed),
            None => Err(QueueError::Closed),
        }
    }

    /// Resolves once the writer has applied every command sent before it.
    pub async fn barrier(&self) -> Result<(), QueueError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Barrier(tx))?;
        rx.await.map_err(|_| QueueError::Closed)
    }

    pub fn all_streams(&self) -> Vec<Arc<StreamShared>> {
        let s = self.streams.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = s.by_id.values().cloned().collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// The stream called `name`, registered (durably) on first use.
    pub fn stream(&self, name: &str) -> Result<Arc<StreamShared>, QueueError> {
        if let Some(s) = self
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .get(name)
        {
            return Ok(s.clone());
        }
        if self.is_closed() {
            return Err(QueueError::Closed);
        }
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = streams.by_name.get(name) {
            return Ok(s.clone());
        }
        let id = streams.next_id;
        let next = id
            .checked_add(1)
            .ok_or_else(|| QueueError::Io("out of stream ids".into()))?;
        let db = self.db()?;
        let meta = cf(&db, format::CF_META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, format::stream_meta_key(name), id.to_be_bytes());
        batch.put_cf(meta, format::META_NEXT_STREAM_ID, next.to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo).map_err(map_db_error)?;
        let shared = Arc::new(StreamShared::new(id, name, &self.metrics));
        streams.next_id = next;
        streams.by_name.insert(name.to_owned(), shared.clone());
        streams.by_id.insert(id, shared.clone());
        Ok(shared)
    }

    pub fn stream_by_name(&self, name: &str) -> Option<Arc<StreamShared>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .get(name)
            .cloned()
    }

    /// Recomputes pressure from the total with hysteresis: on above `high_watermark`, off below
    /// `low_watermark`, unchanged between.
    pub fn update_pressure(&self) {
        let total = self.total_bytes.load(Ordering::Acquire);
        let was = self.pressure.load(Ordering::Acquire);
        let now = if total > self.opts.high_watermark {
            true
        } else if total < self.opts.low_watermark {
            false
        } else {
            was
        };
        if now != was {
            self.pressure.store(now, Ordering::Release);
            self.metrics.set_pressure(now);
            tracing::info!(
                directory = %self.dir().display(),
                bytes = total,
                pressure = now,
                "disk queue {}",
                if now { "is above its high watermark: under pressure" } else { "fell below its low watermark: pressure off" }
            );
        }
    }

    pub fn stats(&self) -> QueueStats {
        let now = now_ms();
        let oldest = self
            .all_streams()
            .iter()
            .filter_map(|s| s.index().entries.front().map(|e| e.created_ms))
            .min();
        QueueStats {
            bytes: self.total_bytes.load(Ordering::Acquire),
            records: self.total_records.load(Ordering::Acquire),
            oldest_age: oldest.map(|c| age_since(c, now)),
            pressure: self.pressure.load(Ordering::Acquire),
            write_batches: self.counters.write_batches.load(Ordering::Relaxed),
            wal_syncs: self.counters.wal_syncs.load(Ordering::Relaxed),
        }
    }

    pub fn retain_cursors(&self, stream: &str, live: &[&str]) -> Result<(), QueueError> {
        let Some(stream) = self.stream_by_name(stream) else {
            return Ok(());
        };
        let db = self.db()?;
        let cursors_cf = cf(&db, format::CF_CURSORS)?;
        let mut removed = Vec::new();
        {
            let mut cursors = stream.cursors.lock().unwrap_or_else(|p| p.into_inner());
            cursors.retain(|c| {
                let keep = live.contains(&c.name.as_str());
                if !keep {
                    removed.push(c.clone());
                }
                keep
            });
        }
        let mut batch = WriteBatch::default();
        for c in &removed {
            c.mark_removed();
            batch.delete_cf(cursors_cf, c.key());
            self.metrics.remove_cursor(&stream.name, &c.name);
            tracing::info!(stream = %stream.name, exporter = %c.name, "removed the queue cursor of an exporter that is no longer configured");
        }
        if !batch.is_empty() {
            db.write(batch).map_err(map_db_error)?;
            self.maintenance_wake.notify_one();
        }
        Ok(())
    }

    /// Takes the database out of its slot and closes it once the last in-flight user is done.
    fn close_db(&self, fsync: bool) {
        let taken = std::mem::replace(
            &mut *self.db.write().unwrap_or_else(|p| p.into_inner()),
            DbSlot::Closed,
        );
        let DbSlot::Open(db) = taken else { return };
        if fsync {
            if let Err(e) = db.flush_wal(true) {
                tracing::warn!(error = %e, "disk queue: final WAL sync failed");
            }
        }
        wait_and_close(db);
    }
}

enum DbSlot {
    Open(Arc<DB>),
    /// A reopen after a disk error failed; the writer keeps trying.
    Broken(String),
    Closed,
}

/// Closes RocksDB once nobody else holds it. Users hold the Arc only for the length of one operation;
/// waiting for them means RocksDB is really closed (and its LOCK released) when this returns.
fn wait_and_close(mut db: Arc<DB>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Arc::try_unwrap(db) {
            Ok(db) => {
                drop(db);
                return;
            }
            Err(back) if Instant::now() < deadline => {
                db = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => {
                tracing::warn!(
                    "disk queue: database still in use 10 s after close; it closes when released"
                );
                return;
            }
        }
    }
}

/// Free bytes on the device holding `dir`, if the OS says.
pub(crate) fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized, writable statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// What the [`super::Queue`] and [`super::Stream`] handles share: dropping the last one shuts the queue
/// down.
pub(crate) struct Owner {
    pub core: Arc<Core>,
    pub writer_thread: Mutex<Option<JoinHandle<()>>>,
    pub shut_down: AtomicBool,
}

impl Owner {
    /// Stops the maintenance task and the writer (after it applied everything already sent), then closes
    /// the database. Idempotent; blocks.
    pub fn shutdown(&self, fsync: bool) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.core.closed.cancel();
        // Dropping the only sender ends the writer once it has drained the channel.
        self.core
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let handle = self
            .writer_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("disk queue writer thread panicked");
            }
        }
        self.core.close_db(fsync);
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}
