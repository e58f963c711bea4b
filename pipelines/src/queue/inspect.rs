//! `outpost queue inspect|verify --dir DIR`, as library functions: what a queue directory holds, and
//! whether every record in it is intact.
//!
//! Both open the database as a RocksDB **secondary** instance (a read-only follower with its own scratch
//! directory, which works while the agent holds the LOCK and writes), catching up with the primary
//! first. If that fails they fall back to a plain read-only open, which is exact when the agent is
//! stopped; if both fail, the error says to stop the agent. Neither ever writes to the queue.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocksdb::{IteratorMode, Options, DB};

use super::format::{self, IndexEntry, CF_CURSORS, CF_INDEX, CF_META, CF_RECORDS};
use super::shared::{age_since, cf, map_db_error, now_ms, StreamIndex};
use super::{recovery, Lag, QueueError, Tuning};

/// What a queue directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectReport {
    pub directory: PathBuf,
    /// How the database was opened: "secondary" (alongside a running agent) or "read-only".
    pub opened_as: &'static str,
    pub streams: Vec<StreamReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    pub id: u32,
    pub name: String,
    pub records: u64,
    pub bytes: u64,
    pub items: u64,
    pub oldest_age: Option<Duration>,
    /// The last sequence assigned in this stream.
    pub last_seq: u64,
    pub cursors: Vec<CursorReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorReport {
    pub exporter: String,
    pub watermark: u64,
    pub lag: Lag,
}

/// Whether every record is intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub directory: PathBuf,
    pub opened_as: &'static str,
    pub ok: u64,
    pub corrupt: u64,
    /// Records without an index entry (delivered, but not counted in accounting).
    pub missing_index: u64,
    /// Index entries without a record (counted in accounting until deletion passes them).
    pub stale_index: u64,
    /// The first [`VerifyReport::MAX_LISTED`] corrupt records.
    pub corrupt_records: Vec<CorruptRecord>,
}

impl VerifyReport {
    pub const MAX_LISTED: usize = 100;

    /// No corrupt record (index mismatches are tolerated and repaired by deletion).
    pub fn is_clean(&self) -> bool {
        self.corrupt == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    pub stream: u32,
    pub lane: u8,
    pub seq: u64,
    pub reason: String,
}

/// A read-only view of a queue directory; removes its secondary scratch directory when dropped.
struct Reader {
    db: Option<DB>,
    opened_as: &'static str,
    scratch: Option<PathBuf>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.db.take();
        if let Some(s) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(s);
        }
    }
}

impl Reader {
    fn open(dir: &Path) -> Result<Reader, QueueError> {
        if !dir.join("CURRENT").exists() {
            return Err(QueueError::Io(format!(
                "{} is not a disk queue directory (no RocksDB CURRENT file)",
                dir.display()
            )));
        }
        let tuning = Tuning::default();
        let mut o = recovery::db_options();
        o.create_if_missing(false);
        o.create_missing_column_families(false);
        // A secondary instance must keep every file open to follow the primary's compactions.
        o.set_max_open_files(-1);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let scratch = std::env::temp_dir().join(format!(
            "outpost-queue-inspect-{}-{nanos}",
            std::process::id()
        ));
        let secondary = DB::open_cf_descriptors_as_secondary(
            &o,
            dir,
            scratch.as_path(),
            recovery::descriptors(&tuning),
        )
        .and_then(|db| db.try_catch_up_with_primary().map(|()| db));
        match secondary {
            Ok(db) => Ok(Reader {
                db: Some(db),
                opened_as: "secondary",
                scratch: Some(scratch),
            }),
            Err(sec_err) => {
                let _ = std::fs::remove_dir_all(&scratch);
                let names = DB::list_cf(&Options::default(), dir).unwrap_or_default();
                match DB::open_cf_for_read_only(&o, dir, names, false) {
                    Ok(db) => Ok(Reader {
                        db: Some(db),
                        opened_as: "read-only",
                        scratch: None,
                    }),
                    Err(ro_err) => Err(QueueError::Io(format!(
                        "cannot open the disk queue at {} alongside the running agent ({sec_err}) nor read-only \
                         ({ro_err}); stop the agent and retry",
                        dir.display()
                    ))),
                }
            }
        }
    }

    fn db(&self) -> Result<&DB, QueueError> {
        self.db.as_ref().ok_or(QueueError::Closed)
    }
}

/// Per stream: records, bytes, oldest age; per cursor: watermark and lag.
pub fn inspect(dir: &Path) -> Result<InspectReport, QueueError> {
    let reader = Reader::open(dir)?;
    let db = reader.db()?;
    let now = now_ms();
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    let mut last_seq: BTreeMap<u32, u64> = BTreeMap::new();
    for item in db.iterator_cf(cf(db, CF_META)?, IteratorMode::Start) {
        let (k, v) = item.map_err(map_db_error)?;
        if let Some(name) = k.strip_prefix(format::META_STREAM_PREFIX) {
            if let Ok(id) = format::be_u32(&v) {
                names.insert(id, String::from_utf8_lossy(name).into_owned());
            }
        } else if let Some(id) = k.strip_prefix(format::META_SEQ_PREFIX) {
            if let (Ok(id), Ok(seq)) = (format::be_u32(id), format::be_u64(&v)) {
                last_seq.insert(id, seq);
            }
        }
    }
    let mut indexes: BTreeMap<u32, StreamIndex> = BTreeMap::new();
    for id in names.keys() {
        indexes.entry(*id).or_default();
    }
    for item in db.iterator_cf(cf(db, CF_INDEX)?, IteratorMode::Start) {
        let (k, v) = item.map_err(map_db_error)?;
        if let (Ok((id, _, seq)), Ok(e)) = (format::parse_record_key(&k), IndexEntry::decode(&v)) {
            indexes.entry(id).or_default().push(seq, &e);
        }
    }
    let mut cursors: BTreeMap<u32, Vec<(String, u64)>> = BTreeMap::new();
    for item in db.iterator_cf(cf(db, CF_CURSORS)?, IteratorMode::Start) {
        let (k, v) = item.map_err(map_db_error)?;
        if let (Ok((id, name)), Ok(w)) = (format::parse_cursor_key(&k), format::decode_cursor(&v)) {
            indexes.entry(id).or_default();
            cursors.entry(id).or_default().push((name, w));
        }
    }
    let streams = indexes
        .into_iter()
        .map(|(id, idx)| {
            let total = idx.total();
            StreamReport {
                id,
                name: names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")),
                records: total.records,
                bytes: total.bytes,
                items: total.items,
                oldest_age: idx.entries.front().map(|e| age_since(e.created_ms, now)),
                last_seq: last_seq
                    .get(&id)
                    .copied()
                    .unwrap_or(0)
                    .max(idx.entries.back().map_or(0, |e| e.seq)),
                cursors: cursors
                    .remove(&id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(exporter, watermark)| CursorReport {
                        lag: idx.lag_after(watermark, now),
                        exporter,
                        watermark,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(InspectReport {
        directory: dir.to_owned(),
        opened_as: reader.opened_as,
        streams,
    })
}

/// Reads every record, checking its checksum and that it decompresses, and cross-checks the index.
pub fn verify(dir: &Path) -> Result<VerifyReport, QueueError> {
    let reader = Reader::open(dir)?;
    let db = reader.db()?;
    let mut index_keys: HashSet<Vec<u8>> = HashSet::new();
    for item in db.iterator_cf(cf(db, CF_INDEX)?, IteratorMode::Start) {
        let (k, _) = item.map_err(map_db_error)?;
        index_keys.insert(k.into_vec());
    }
    let mut report = VerifyReport {
        directory: dir.to_owned(),
        opened_as: reader.opened_as,
        ok: 0,
        corrupt: 0,
        missing_index: 0,
        stale_index: 0,
        corrupt_records: Vec::new(),
    };
    for item in db.iterator_cf(cf(db, CF_RECORDS)?, IteratorMode::Start) {
        let (k, v) = item.map_err(map_db_error)?;
        if !index_keys.remove(&*k) {
            report.missing_index += 1;
        }
        let parsed = format::parse_record_key(&k);
        let result = parsed
            .clone()
            .and_then(|_| format::decode_record(&v).map(|_| ()));
        match result {
            Ok(()) => report.ok += 1,
            Err(e) => {
                report.corrupt += 1;
                if report.corrupt_records.len() < VerifyReport::MAX_LISTED {
                    let (stream, lane, seq) = parsed.unwrap_or((u32::MAX, u8::MAX, u64::MAX));
                    report.corrupt_records.push(CorruptRecord {
                        stream,
                        lane,
                        seq,
                        reason: e.0,
                    });
                }
            }
        }
    }
    report.stale_index = index_keys.len() as u64;
    Ok(report)
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_age(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d.as_secs() >= 3600 => format!("{:.1}h", d.as_secs_f64() / 3600.0),
        Some(d) if d.as_secs() >= 60 => format!("{:.1}m", d.as_secs_f64() / 60.0),
        Some(d) => format!("{:.1}s", d.as_secs_f64()),
    }
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "disk queue {} (opened {})",
            self.directory.display(),
            self.opened_as
        )?;
        if self.streams.is_empty() {
            return writeln!(f, "  no streams");
        }
        for s in &self.streams {
            writeln!(
                f,
                "  stream {} (id {}): {} records, {} items, {}, oldest {}, last seq {}",
                s.name,
                s.id,
                s.records,
                s.items,
                human_bytes(s.bytes),
                human_age(s.oldest_age),
                s.last_seq
            )?;
            if s.cursors.is_empty() {
                writeln!(f, "    no cursors (records are kept until an exporter reads them, max_age or overflow)")?;
            }
            for c in &s.cursors {
                writeln!(
                    f,
                    "    cursor {}: watermark {}, lag {} records / {}, oldest undelivered {}",
                    c.exporter,
                    c.watermark,
                    c.lag.records,
                    human_bytes(c.lag.bytes),
                    human_age(c.lag.oldest_age)
                )?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "disk queue {} (opened {}): {} records ok, {} corrupt",
            self.directory.display(),
            self.opened_as,
            self.ok,
            self.corrupt
        )?;
        if self.missing_index > 0 || self.stale_index > 0 {
            writeln!(
                f,
                "  index: {} records without an entry, {} entries without a record (tolerated)",
                self.missing_index, self.stale_index
            )?;
        }
        for c in &self.corrupt_records {
            writeln!(
                f,
                "  corrupt: stream {} lane {} seq {}: {}",
                c.stream, c.lane, c.seq, c.reason
            )?;
        }
        if self.corrupt as usize > self.corrupt_records.len() {
            writeln!(
                f,
                "  ... and {} more",
                self.corrupt as usize - self.corrupt_records.len()
            )?;
        }
        Ok(())
    }
}
