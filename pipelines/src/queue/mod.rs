//! The disk queue: a RocksDB database between the processors and the exporters that holds every
//! record until every exporter of its pipeline has delivered it, across restarts, crashes and power loss.
//!
//! # Model
//!
//! A [`Queue`] is one database in one directory. It holds several **streams** (one per pipeline); a
//! stream is a sequence of **records** (one OTLP export request each) numbered by a **sequence** that the
//! queue assigns, strictly increasing per stream and never reused, even after a restart with every record
//! deleted. Each exporter reads a stream through its own [`Cursor`], whose **watermark** (the highest
//! sequence at or below which everything was delivered) is persisted. A record is deleted once every
//! cursor of its stream has passed it. Records carry a **lane** in their key (always 0 today) so priority
//! lanes can be added without a format change.
//!
//! # Guarantees
//!
//! - **Durability.** [`Stream::append`] resolves only once the record is durable under the
//!   [`SyncPolicy`]: with `Always`, fsynced (group commit: concurrent appends share one fsync); with
//!   `Interval(d)`, written to the WAL in the kernel (a process kill loses nothing, a power loss loses at
//!   most `d`); with `Never`, the same without the periodic fsync. A client may be acknowledged then.
//! - **At-least-once.** Nothing whose append returned [`Appended::Stored`] is lost unless a counted policy
//!   removes it (overflow, `max_age`, a cursor's `max_lag`). After a crash, records a cursor had handed out
//!   but that were not acknowledged are delivered again; records below the persisted watermark are not.
//! - **Bounded disk.** Byte accounting counts stored record values. Above `high_watermark` the queue is
//!   under [`pressure`](Queue::pressure) until it falls below `low_watermark`; then, and always at
//!   `max_size`, the [`Overflow`] policy applies. A dead exporter cannot pin the disk: its cursor's
//!   [`MaxLag`] moves it on, [`Queue::retain_cursors`] deletes cursors of removed exporters, and
//!   `max_age` expires old records. Everything shed is counted in
//!   `outpost_queue_dropped_items_total{stream,reason}`.
//! - **No panics on disk state.** A record that fails its checksum or does not decompress is skipped and
//!   counted (`reason="corrupt"`); a full disk is [`QueueError::NoSpace`], retryable, and the queue works
//!   again once space is freed.
//!
//! # Design constraints, and what follows from them
//!
//! - *The node's flash is small and the WAN may be down for hours*: values are zstd-compressed by us
//!   (RocksDB's own compression is off, so the bytes we account are the bytes RocksDB writes), and
//!   deletion is one `delete_range` per stream and pass, not a tombstone per record.
//! - *Start-up must be fast even with a full queue*: a small `index` column family holds per-record
//!   metadata, so recovery (`recovery`) rebuilds accounting without reading a payload.
//! - *Exporters forward without re-encoding*: the payload is the prost encoding of the export request,
//!   returned decompressed as [`bytes::Bytes`].
//! - *One writer*: a dedicated thread (`writer`) assigns sequences, decides overflow, and is the only
//!   mutator of accounting, so sequences become visible in order (a cursor can never skip a record that
//!   commits late) and accounting needs no cross-thread reconciliation.
//!
//! The byte layout is in [`format`] and docs/queue-format.md. Modules: `writer` (group commit and
//! overflow), `reader` (cursors), `cleaner` (deletion, `max_age`, `max_lag`, metrics), `recovery`
//! (open), `inspect` (offline inspection and verification), `state` (the generic key-value store).

mod cleaner;
pub mod format;
mod inspect;
mod reader;
mod recovery;
mod shared;
mod state;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use outpost_config::Signal;
use tokio::sync::oneshot;

use crate::telemetry::Telemetry;

use self::shared::{Owner, StreamShared};
use self::writer::{AppendRequest, Command};

pub use self::inspect::{
    inspect, verify, CorruptRecord, CursorReport, InspectReport, StreamReport, VerifyReport,
};
pub use self::reader::Cursor;
pub use self::state::{StateEntry, StateStore};

/// How the queue is sized, synced and shed. Sizes are bytes of stored records (header + compressed
/// payload); RocksDB's own overhead (WAL, not-yet-compacted deletions) comes on top, so leave headroom on
/// the device.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub directory: PathBuf,
    pub max_size: u64,
    pub high_watermark: u64,
    pub low_watermark: u64,
    pub overflow: Overflow,
    pub sync: SyncPolicy,
    /// Records older than this are deleted (counted, reason `max_age`) whether delivered or not.
    pub max_age: Option<Duration>,
}

/// What an append does while the queue is under pressure, or would exceed `max_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse: [`QueueError::Full`], retryable; receivers answer RESOURCE_EXHAUSTED / 429.
    Block,
    /// Delete the stream's oldest records (counted per cursor that had not delivered them) until the new
    /// one fits, then store it.
    DropOldest,
    /// Do not store the new record; [`Appended::Dropped`], counted.
    DropNewest,
}

/// When appended records are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every append is fsynced before it resolves; concurrent appends share one fsync (group commit).
    Always,
    /// Appends resolve once in the kernel; the WAL is fsynced every `d`. A power loss loses up to `d`.
    Interval(Duration),
    /// Never fsync (the WAL is still written: a process kill loses nothing, a power loss may lose much).
    Never,
}

/// Where a new cursor starts. An existing cursor always resumes where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Oldest,
    Newest,
}

/// How far a cursor may fall behind before it is moved forward (counted, reason `max_lag`), so one dead
/// destination cannot pin the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaxLag {
    pub bytes: Option<u64>,
    pub age: Option<Duration>,
}

/// The outcome of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Durable under the sync policy: the client may be acknowledged.
    Stored { seq: u64 },
    /// Shed by the `drop_newest` policy (or because the record can never fit); counted.
    Dropped { items: u32 },
}

/// One record as a cursor hands it out.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: u64,
    pub lane: u8,
    pub signal: Signal,
    pub items: u32,
    pub created_at: SystemTime,
    /// The prost encoding of the export request, decompressed: forward it as it is.
    pub payload: Bytes,
}

/// How far a cursor is behind the end of its stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    pub records: u64,
    pub bytes: u64,
    /// Age of the oldest record not yet delivered; `None` when caught up.
    pub oldest_age: Option<Duration>,
}

/// A snapshot of the queue's accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub bytes: u64,
    pub records: u64,
    pub oldest_age: Option<Duration>,
    pub pressure: bool,
    /// RocksDB write batches the writer committed with appends (one per group).
    pub write_batches: u64,
    /// WAL fsyncs the queue asked for (group commits under `Always`, ticks under `Interval`).
    pub wal_syncs: u64,
}

/// Why a queue operation failed. [`QueueError::retryable`] says whether trying again later can succeed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("the disk queue is full (above its high watermark or at max_size); retry later")]
    Full,
    #[error("the disk queue's device is out of space: {0}")]
    NoSpace(String),
    #[error("disk queue I/O error: {0}")]
    Io(String),
    #[error("disk queue data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Locked(String),
    #[error("the disk queue is closed")]
    Closed,
}

impl QueueError {
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            QueueError::Full | QueueError::NoSpace(_) | QueueError::Io(_)
        )
    }
}

/// The disk queue; cheap to clone. Dropping the last clone (and every [`Stream`]) closes it as
/// [`Queue::close`] would, minus the final WAL fsync.
#[derive(Clone)]
pub struct Queue {
    owner: Arc<Owner>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("directory", &self.owner.core.opts.directory)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Opens (or creates) the queue in `opts.directory`, recovers every stream and cursor, and starts the
    /// writer thread and the maintenance task. Must be called inside a tokio runtime.
    pub fn open(opts: QueueOptions, telemetry: &Telemetry) -> Result<Queue, QueueError> {
        Self::open_tuned(opts, telemetry, Tuning::default())
    }

    pub(crate) fn open_tuned(
        opts: QueueOptions,
        telemetry: &Telemetry,
        tuning: Tuning,
    ) -> Result<Queue, QueueError> {
        let owner = recovery::open(opts, telemetry, tuning)?;
        Ok(Queue {
            owner: Arc::new(owner),
        })
    }

    /// The stream called `name`, created on first use.
    pub fn stream(&self, name: &str) -> Result<Stream, QueueError> {
        let shared = self.owner.core.stream(name)?;
        Ok(Stream {
            owner: self.owner.clone(),
            shared,
        })
    }

    /// The generic durable key-value store (`state` column family).
    pub fn state(&self) -> StateStore {
        StateStore::new(self.owner.core.clone())
    }

    /// Whether the queue is under pressure (above the high watermark, not yet below the low one). One
    /// atomic load: receivers may call it per request.
    pub fn pressure(&self) -> bool {
        self.owner.core.pressure.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> QueueStats {
        self.owner.core.stats()
    }

    /// Deletes every cursor of `stream` whose exporter is not in `live`, so exporters removed from the
    /// configuration stop pinning records.
    pub fn retain_cursors(&self, stream: &str, live: &[&str]) -> Result<(), QueueError> {
        self.owner.core.retain_cursors(stream, live)
    }

    /// Runs one maintenance pass now (deletion of delivered records, `max_age`, `max_lag`, metrics) and
    /// waits until the writer has applied it. The maintenance task does this on its own every
    /// [`MAINTENANCE_INTERVAL`]; tests and tools call it to get a settled state.
    pub async fn run_maintenance(&self) -> Result<(), QueueError> {
        cleaner::run_once(&self.owner.core);
        self.owner.core.barrier().await
    }

    /// Stops accepting appends, commits what is pending, fsyncs the WAL, stops the background work and
    /// closes the database, even if other clones, streams or cursors still exist (they then get
    /// [`QueueError::Closed`]).
    pub async fn close(self) {
        let owner = self.owner.clone();
        drop(self);
        let joined = tokio::task::spawn_blocking(move || owner.shutdown(true)).await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "disk queue shutdown task failed");
        }
    }
}

/// How often the maintenance task runs.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(500);

/// Knobs tests turn; production uses the defaults.
#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    /// How often the maintenance task runs; tests set it very long and call `run_maintenance`.
    pub maintenance_interval: Duration,
    /// RocksDB memtable size of the records column family. It is also the free space the writer waits
    /// for before it reopens RocksDB after ENOSPC.
    pub records_write_buffer: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            maintenance_interval: MAINTENANCE_INTERVAL,
            records_write_buffer: 16 << 20,
        }
    }
}

/// One pipeline's sequence of records; cheap to clone. Keeps the queue open while it exists.
#[derive(Clone)]
pub struct Stream {
    owner: Arc<Owner>,
    shared: Arc<StreamShared>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl Stream {
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Stores one export request (`payload`: its prost encoding, `items` spans / data points / log
    /// records) and resolves once it is durable under the sync policy, or once the overflow policy
    /// decided. Compression runs on the calling task (about a millisecond for 150 KB).
    ///
    /// Dropping the future after it was polled does not withdraw the record: it may still be stored
    /// (at-least-once), which is why a caller that gives up must not tell its client it failed for sure.
    pub async fn append(
        &self,
        signal: Signal,
        items: u32,
        payload: &[u8],
    ) -> Result<Appended, QueueError> {
        let core = &self.owner.core;
        if core.is_closed() {
            return Err(QueueError::Closed);
        }
        let created_ms = shared::now_ms();
        let value = format::encode_record(signal, items, created_ms, payload)
            .map_err(|e| QueueError::Io(format!("record not stored: {e}")))?;
        let entry = format::IndexEntry {
            signal,
            items,
            created_ms,
            stored_len: u32::try_from(value.len())
                .map_err(|_| QueueError::Io("record larger than 4 GiB".into()))?,
        };
        let (reply, done) = oneshot::channel();
        core.send(Command::Append(AppendRequest {
            stream: self.shared.clone(),
            lane: format::DEFAULT_LANE,
            entry,
            value,
            reply,
        }))?;
        done.await.map_err(|_| QueueError::Closed)?
    }

    /// Opens the cursor of `exporter` on this stream, creating it at `start_at` if it does not exist yet;
    /// an existing one resumes at its watermark. Opening a cursor that is already open hands it over: the
    /// older [`Cursor`] gets [`QueueError::Closed`] and its un-acknowledged records are delivered again.
    pub fn cursor(
        &self,
        exporter: &str,
        start_at: StartAt,
        max_lag: Option<MaxLag>,
    ) -> Result<Cursor, QueueError> {
        reader::open_cursor(
            self.owner.core.clone(),
            self.shared.clone(),
            exporter,
            start_at,
            max_lag,
        )
    }
}
