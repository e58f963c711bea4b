//! Opening the queue: RocksDB options, the format check, and rebuilding the in-memory state — streams,
//! each stream's index and next sequence, cursors, byte accounting — from the `meta`, `index` and
//! `cursors` column families. Payloads are never read here, so start-up time depends on the number of
//! records, not their size.
//!
//! Recovery trusts nothing it reads to be complete:
//! - a stream's next sequence is one above the highest of its recorded last sequence (`meta`), its last
//!   index entry and its cursors' watermarks, so a sequence is never reused even if one of them is lost;
//! - index entries that do not decode are skipped (their record, if any, is still read and delivered by
//!   cursors, and deleted with its range); an index entry whose record is gone only inflates accounting
//!   until deletion passes it;
//! - index entries or cursors of a stream missing from `meta` get a placeholder stream `#<id>`, so their
//!   bytes stay accounted and visible to `outpost queue inspect`.
//!
//! RocksDB holds a LOCK file in the directory; a second opener — another process, or this one twice —
//! gets [`QueueError::Locked`] naming the directory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rocksdb::{ColumnFamilyDescriptor, DBCompressionType, IteratorMode, Options, WriteOptions, DB};

use crate::telemetry::Telemetry;

use super::format::{self, IndexEntry, CF_CURSORS, CF_INDEX, CF_META, CF_RECORDS};
use super::shared::{cf, map_db_error, Core, CursorShared, Owner, StreamShared, Streams};
use super::{cleaner, writer, QueueError, QueueOptions, Tuning};

pub(crate) fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_compression_type(DBCompressionType::None);
    o.set_max_background_jobs(2);
    // Small column families (cursors, meta) pin WAL files until they are flushed; bound the WAL so
    // RocksDB flushes them instead of letting WAL files pile up on a small device.
    o.set_max_total_wal_size(64 << 20);
    o.set_keep_log_file_num(2);
    o.set_max_log_file_size(1 << 20);
    o
}

fn cf_options(name: &str, tuning: &Tuning) -> Options {
    let mut o = Options::default();
    o.set_compression_type(DBCompressionType::None);
    o.set_bottommost_compression_type(DBCompressionType::None);
    if name == CF_RECORDS {
        o.set_write_buffer_size(tuning.records_write_buffer);
        o.set_target_file_size_base(64 << 20);
    } else {
        o.set_write_buffer_size(4 << 20);
    }
    o
}

/// The memtable size for a device of `device` bytes. A memtable becomes one file when it is flushed, and
/// after ENOSPC the writer waits for that much free space before reopening; on small flash a 16 MiB
/// memtable could need more room than can ever be freed, so it is at most 1/16 of the device (never
/// under 256 KiB).
pub(crate) fn fit_write_buffer(configured: usize, device: Option<u64>) -> usize {
    match device {
        Some(size) => configured.min(((size / 16) as usize).max(256 << 10)),
        None => configured,
    }
}

/// Total bytes of the device holding `dir`, if the OS says.
fn device_size(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized, writable statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| (st.f_blocks as u64).saturating_mul(st.f_frsize as u64))
}

pub(crate) fn descriptors(tuning: &Tuning) -> Vec<ColumnFamilyDescriptor> {
    format::COLUMN_FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, tuning)))
        .collect()
}

/// Turns RocksDB's open error into one that names the directory and the fix.
pub(crate) fn open_error(dir: &Path, e: rocksdb::Error) -> QueueError {
    let msg = e.to_string();
    let lower = msg.to_lowercase();
    if lower.contains("lock")
        && (lower.contains("unavailable")
            || lower.contains("lock hold")
            || lower.contains("no locks"))
    {
        return QueueError::Locked(format!(
            "disk queue directory {} is in use by another outpost process (its RocksDB LOCK is held): stop that \
             process, or give this one a different queue directory ({msg})",
            dir.display()
        ));
    }
    match map_db_error(e) {
        QueueError::Io(m) => {
            QueueError::Io(format!("cannot open disk queue {}: {m}", dir.display()))
        }
        QueueError::Corrupt(m) => QueueError::Corrupt(format!("disk queue {}: {m}", dir.display())),
        other => other,
    }
}

fn check_options(opts: &QueueOptions) -> Result<(), QueueError> {
    if !(opts.low_watermark <= opts.high_watermark && opts.high_watermark <= opts.max_size) {
        return Err(QueueError::Io(format!(
            "disk queue {}: expected low_watermark ({}) <= high_watermark ({}) <= max_size ({})",
            opts.directory.display(),
            opts.low_watermark,
            opts.high_watermark,
            opts.max_size
        )));
    }
    Ok(())
}

pub(crate) fn open(
    opts: QueueOptions,
    telemetry: &Telemetry,
    tuning: Tuning,
) -> Result<Owner, QueueError> {
    check_options(&opts)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(QueueError::Io(
            "Queue::open must be called inside a tokio runtime (it spawns its maintenance task)"
                .into(),
        ));
    }
    let dir = opts.directory.clone();
    std::fs::create_dir_all(&dir).map_err(|e| {
        QueueError::Io(format!(
            "cannot create disk queue directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut tuning = tuning;
    tuning.records_write_buffer = fit_write_buffer(tuning.records_write_buffer, device_size(&dir));
    let db = DB::open_cf_descriptors(&db_options(), &dir, descriptors(&tuning))
        .map_err(|e| open_error(&dir, e))?;
    check_format(&db, &dir)?;
    let metrics = telemetry.queue();
    let recovered = load(&db, &metrics)?;

    let (tx, rx) = mpsc::channel();
    let core = Arc::new(Core::new(opts, tuning, db, recovered.streams, metrics, tx));
    core.total_bytes.store(recovered.bytes, Ordering::Release);
    core.total_records
        .store(recovered.records, Ordering::Release);
    core.update_pressure();
    core.metrics
        .set_pressure(core.pressure.load(Ordering::Acquire));
    let writer_thread = writer::spawn(core.clone(), rx)
        .map_err(|e| QueueError::Io(format!("cannot start the disk queue writer thread: {e}")))?;
    cleaner::spawn(core.clone());
    cleaner::refresh_all_gauges(&core);
    tracing::info!(directory = %dir.display(), bytes = recovered.bytes, records = recovered.records,
        streams = core.all_streams().len(), "disk queue opened");
    Ok(Owner {
        core,
        writer_thread: Mutex::new(Some(writer_thread)),
        shut_down: AtomicBool::new(false),
    })
}

fn check_format(db: &DB, dir: &Path) -> Result<(), QueueError> {
    let meta = cf(db, CF_META)?;
    match db
        .get_cf(meta, format::META_FORMAT_VERSION)
        .map_err(map_db_error)?
    {
        None => {
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            db.put_cf_opt(
                meta,
                format::META_FORMAT_VERSION,
                format::FORMAT_VERSION.to_be_bytes(),
                &wo,
            )
            .map_err(map_db_error)
        }
        Some(v) => match format::be_u32(&v) {
            Ok(format::FORMAT_VERSION) => Ok(()),
            Ok(other) => Err(QueueError::Corrupt(format!(
                "disk queue {} has format version {other}; this outpost reads version {} (move the directory \
                 aside or run the matching outpost to drain it)",
                dir.display(),
                format::FORMAT_VERSION
            ))),
            Err(e) => Err(QueueError::Corrupt(format!(
                "disk queue {}: unreadable format version: {e}",
                dir.display()
            ))),
        },
    }
}

struct Recovered {
    streams: Streams,
    bytes: u64,
    records: u64,
}

fn load(db: &DB, metrics: &crate::telemetry::QueueMetrics) -> Result<Recovered, QueueError> {
    let meta = cf(db, CF_META)?;
    let mut streams = Streams::default();
    let mut last_seq: HashMap<u32, u64> = HashMap::new();
    for item in db.iterator_cf(meta, IteratorMode::Start) {
        let (k, v) = item.map_err(map_db_error)?;
        if let Some(name) = k.strip_prefix(format::META_STREAM_PREFIX) {
            let (Ok(name), Ok(id)) = (std::str::from_utf8(name), format::be_u32(&v)) else {
                tracing::warn!("disk queue: skipping an unreadable stream registration");
                continue;
            };
            let s = Arc::new(StreamShared::new(id, name, metrics));
            streams.by_name.insert(name.to_owned(), s.clone());
            streams.by_id.insert(id, s);
        } else if let Some(id) = k.strip_prefix(format::META_SEQ_PREFIX) {
            if let (Ok(id), Ok(seq)) = (format::be_u32(id), format::be_u64(&v)) {
                last_seq.insert(id, seq);
            }
        } else if &*k == format::META_NEXT_STREAM_ID {
            streams.next_id = format::be_u32(&v).unwrap_or(0);
        }
    }
    let placeholder = |streams: &mut Streams, id: u32| -> Arc<StreamShared> {
        if let Some(s) = streams.by_id.get(&id) {
            return s.clone();
        }
        let name = format!("#{id}");
        tracing::warn!(stream = %name, "disk queue: records or cursors of an unregistered stream; keeping them under a placeholder name");
        let s = Arc::new(StreamShared::new(id, &name, metrics));
        streams.by_name.insert(name, s.clone());
        streams.by_id.insert(id, s.clone());
        s
    };

    let (mut bytes, mut records, mut bad) = (0u64, 0u64, 0u64);
    for item in db.iterator_cf(cf(db, CF_INDEX)?, IteratorMode::Start) {
        let (k, v) = item.map_err(map_db_error)?;
        let (Ok((id, lane, seq)), Ok(entry)) =
            (format::parse_record_key(&k), IndexEntry::decode(&v))
        else {
            bad += 1;
            continue;
        };
        if lane != format::DEFAULT_LANE {
            bad += 1;
            continue;
        }
        let s = placeholder(&mut streams, id);
        s.index().push(seq, &entry);
        bytes += u64::from(entry.stored_len);
        records += 1;
    }
    if bad > 0 {
        tracing::warn!(
            entries = bad,
            "disk queue: skipped unreadable index entries"
        );
    }

    for item in db.iterator_cf(cf(db, CF_CURSORS)?, IteratorMode::Start) {
        let (k, v) = item.map_err(map_db_error)?;
        let (Ok((id, name)), Ok(watermark)) =
            (format::parse_cursor_key(&k), format::decode_cursor(&v))
        else {
            tracing::warn!("disk queue: skipping an unreadable cursor");
            continue;
        };
        let s = placeholder(&mut streams, id);
        let c = Arc::new(CursorShared::new(&s, &name, watermark, metrics));
        s.cursors.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }

    for s in streams.by_id.values() {
        let from_meta = last_seq.get(&s.id).copied().unwrap_or(0);
        let from_index = s.index().entries.back().map_or(0, |e| e.seq);
        let from_cursors = s.cursors().iter().map(|c| c.watermark()).max().unwrap_or(0);
        let last = from_meta.max(from_index).max(from_cursors);
        s.index().next_seq = last.saturating_add(1);
        s.committed.send_replace(last);
        streams.next_id = streams.next_id.max(s.id.saturating_add(1));
    }
    Ok(Recovered {
        streams,
        bytes,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::fit_write_buffer;

    #[test]
    fn memtables_shrink_on_small_devices() {
        let configured = 16 << 20;
        assert_eq!(fit_write_buffer(configured, None), configured);
        assert_eq!(fit_write_buffer(configured, Some(64 << 30)), configured);
        assert_eq!(fit_write_buffer(configured, Some(16 << 20)), 1 << 20);
        assert_eq!(fit_write_buffer(configured, Some(1 << 20)), 256 << 10);
    }
}
