//! The tailer: finds the files to read, follows them through rotation, and reads their new entries.
//!
//! It is synchronous (plain file reads; the receiver runs it on the blocking pool) and knows nothing of
//! pipelines: [`Tailer::poll`] returns [`Chunk`]s of log records, and the receiver reports back with
//! [`Tailer::ack`] once a chunk is durably queued (or failed). Progress is tracked per *identity* — one
//! file's content, known by its fingerprint — not per path or inode:
//!
//! - **rename + create**: the renamed file keeps its inode, so its open reader goes on (and finishes it
//!   even when the new name is not matched); the new file is new content, read from its beginning.
//! - **copytruncate**: the copy (a new inode) carries the fingerprint of the identity whose file was
//!   truncated, so the identity moves to the copy and continues there; the truncated file becomes a new
//!   identity read from offset 0.
//! - **truncation** (size below the read position, or different first bytes): the identity starts
//!   again at 0.
//! - **deleted or renamed out of the globs while open**: read to its end through the open descriptor,
//!   then closed.
//! - **restart**: stored checkpoints are matched to files by fingerprint and resume where the last
//!   acknowledged entry ended.
//!
//! Per identity, `read_offset` is where reading goes on and `committed` is the end of the acknowledged
//! prefix. Chunks are acknowledged in any order but `committed` only advances over a contiguous run of
//! acknowledged chunks, so a checkpoint never covers an entry that is not queued. A chunk the queue
//! refused (it filled up between admission and append) is read again over exactly its own range and
//! keeps its place, so neither it nor the chunks after it arrive twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use outpost_config::Signal;
use outpost_pipelines::telemetry::ReceiverMetrics;
use outpost_pipelines::Logs;

use super::checkpoint::Checkpoint;
use super::fingerprint::Fingerprint;
use super::multiline::Splitter;
use super::operators::{Operators, Outcome};
use crate::receivers::logrecord;

/// Entries per chunk: one chunk becomes one batch in the pipeline and, typically, one queue record.
pub const CHUNK_ENTRIES: usize = 4096;
/// Bytes read per chunk (more when max_log_size is larger, so one entry always fits).
pub const CHUNK_BYTES: usize = 1 << 20;
/// Discovery passes a closed identity is remembered without its file being seen (rotation gaps,
/// a restart racing a rename), before its checkpoint is deleted.
const FORGET_AFTER_POLLS: u64 = 3;

/// Settings of one tailer, from the receiver's config.
pub struct TailerConfig {
    pub include: Vec<String>,
    pub exclude: Vec<glob::Pattern>,
    pub fingerprint_size: usize,
    pub force_flush_period: Duration,
    pub include_file_name: bool,
    pub include_file_path: bool,
    pub max_concurrent_files: usize,
    /// Begin at the end of files found at the first discovery (`start_at: end` on a first start).
    pub start_at_end: bool,
}

/// Records read from one file, covering its bytes up to `end_offset`.
pub struct Chunk {
    pub key: u64,
    pub generation: u64,
    pub seq: u64,
    pub logs: Logs,
    pub items: usize,
    /// Raw bytes read, for the memory budget.
    pub bytes: u64,
}

/// What one poll produced.
pub struct Polled {
    pub chunks: Vec<Chunk>,
    /// Some file has more to read right away.
    pub more: bool,
}

struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    size: u64,
    last_growth: Instant,
    /// Not matched by the globs any more (deleted, or renamed away): read to the end, then close.
    draining: bool,
}

/// A chunk handed out: the byte range it covers and what became of it.
struct InFlight {
    seq: u64,
    start: u64,
    end: u64,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for its acknowledgement.
    Pending,
    /// Durably queued.
    Done,
    /// Not queued: to be read again, in its place.
    Failed,
}

struct Identity {
    key: u64,
    fingerprint: Fingerprint,
    path: PathBuf,
    read_offset: u64,
    committed: u64,
    /// Bumped whenever offsets are reset, so acknowledgements of older chunks are ignored.
    generation: u64,
    next_seq: u64,
    inflight: VecDeque<InFlight>,
    file: Option<OpenFile>,
    last_seen: u64,
    /// The file was deleted (no links left) when it was closed: it cannot come back.
    deleted: bool,
    dirty: bool,
    /// Attributes every record of this file carries.
    attrs: Vec<KeyValue>,
}

impl Identity {
    fn new(key: u64, fingerprint: Fingerprint, path: PathBuf, offset: u64) -> Identity {
        Identity {
            key,
            fingerprint,
            path,
            read_offset: offset,
            committed: offset,
            generation: 0,
            next_seq: 0,
            inflight: VecDeque::new(),
            file: None,
            last_seen: 0,
            deleted: false,
            dirty: true,
            attrs: Vec::new(),
        }
    }

    /// Starts over at `offset` with `fingerprint` (the content changed under the same inode).
    fn reset(&mut self, fingerprint: Fingerprint, offset: u64) {
        self.fingerprint = fingerprint;
        self.read_offset = offset;
        self.committed = offset;
        self.generation += 1;
        self.inflight.clear();
        self.dirty = true;
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            key: self.key,
            fingerprint: self.fingerprint.clone(),
            offset: self.committed,
            path: self.path.display().to_string(),
        }
    }

    /// Advances `committed` over the acknowledged front of `inflight`.
    fn settle(&mut self) {
        while self
            .inflight
            .front()
            .is_some_and(|f| f.state == State::Done)
        {
            let f = self.inflight.pop_front().expect("front exists");
            self.committed = f.end;
            self.dirty = true;
        }
    }
}

/// See the module docs.
pub struct Tailer {
    cfg: TailerConfig,
    splitter: Splitter,
    operators: Operators,
    metrics: ReceiverMetrics,
    identities: HashMap<u64, Identity>,
    discoveries: u64,
    next_key: u64,
    removed: Vec<u64>,
    buf: Vec<u8>,
    /// Round-robin position, so one busy file cannot starve the others.
    turn: usize,
    files_open: prometheus_client::metrics::gauge::Gauge,
    read_bytes: prometheus_client::metrics::counter::Counter,
}

impl Tailer {
    /// A tailer resuming from `checkpoints`.
    pub fn new(
        cfg: TailerConfig,
        splitter: Splitter,
        operators: Operators,
        metrics: ReceiverMetrics,
        checkpoints: Vec<Checkpoint>,
    ) -> Tailer {
        let mut identities = HashMap::new();
        let mut next_key = initial_key();
        for cp in checkpoints {
            next_key = next_key.max(cp.key.wrapping_add(1));
            let mut id = Identity::new(cp.key, cp.fingerprint, PathBuf::from(cp.path), cp.offset);
            id.dirty = false;
            identities.insert(cp.key, id);
        }
        Tailer {
            files_open: metrics.files_open(),
            read_bytes: metrics.read_bytes(),
            cfg,
            splitter,
            operators,
            metrics,
            identities,
            discoveries: 0,
            next_key,
            removed: Vec::new(),
            buf: Vec::new(),
            turn: 0,
        }
    }

    /// Finds files and follows rotation (when `discover`), then reads at most `max_chunks` chunks.
    pub fn poll(&mut self, discover: bool, max_chunks: usize) -> Polled {
        if discover {
            self.discover();
        }
        self.read(max_chunks)
    }

    /// Chunk `seq` of identity `key` was durably queued (`ok`) or not (`!ok`: it is read again).
    pub fn ack(&mut self, key: u64, generation: u64, seq: u64, ok: bool) {
        let Some(id) = self.identities.get_mut(&key) else {
            return;
        };
        if id.generation != generation {
            return;
        }
        // A failed chunk is read again over its own range (and only it): chunks after it that were
        // queued are not repeated.
        if let Some(f) = id.inflight.iter_mut().find(|f| f.seq == seq) {
            f.state = if ok { State::Done } else { State::Failed };
        }
        id.settle();
    }

    /// Checkpoints changed since the last call, and keys of checkpoints to delete.
    pub fn take_changes(&mut self) -> (Vec<Checkpoint>, Vec<u64>) {
        let changed = self
            .identities
            .values_mut()
            .filter_map(|id| std::mem::take(&mut id.dirty).then(|| id.checkpoint()))
            .collect();
        (changed, std::mem::take(&mut self.removed))
    }

    /// Chunks handed out and not yet acknowledged, over all files.
    pub fn inflight(&self) -> usize {
        self.identities.values().map(|id| id.inflight.len()).sum()
    }

    // -----------------------------------------------------------------------------------------------
    // Discovery

    fn matched_paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for pattern in &self.cfg.include {
            let Ok(paths) = glob::glob(pattern) else {
                continue; // refused by validation
            };
            // Unreadable directories are skipped: a file we may not read is not ours to tail.
            out.extend(
                paths
                    .flatten()
                    .filter(|p| !self.cfg.exclude.iter().any(|e| e.matches_path(p))),
            );
        }
        out.sort();
        out.dedup();
        out
    }

    fn discover(&mut self) {
        self.discoveries += 1;
        let now = self.discoveries;
        let first = now == 1;
        let by_inode: HashMap<(u64, u64), u64> = self
            .identities
            .values()
            .filter_map(|id| id.file.as_ref().map(|f| ((f.dev, f.ino), id.key)))
            .collect();
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        let mut fresh: Vec<(PathBuf, File, u64, u64, u64, Fingerprint)> = Vec::new();
        for path in self.matched_paths() {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue; // gone between the glob and now
            };
            if !meta.is_file() {
                continue;
            }
            let inode = (meta.dev(), meta.ino());
            if !seen.insert(inode) {
                continue; // a hard link or symlink to a file already matched
            }
            if let Some(key) = by_inode.get(&inode) {
                let id = self.identities.get_mut(key).expect("indexed above");
                id.last_seen = now;
                if id.path != path {
                    id.path = path.clone();
                    id.attrs = file_attrs(&self.cfg, &path);
                }
                continue;
            }
            if meta.len() == 0 {
                continue; // no fingerprint yet
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let Ok(fp) = Fingerprint::read(&file, self.cfg.fingerprint_size) else {
                continue;
            };
            if fp.is_empty() {
                continue;
            }
            fresh.push((path, file, inode.0, inode.1, meta.len(), fp));
        }

        // Open files: follow growth, notice truncation, and let go of files no longer matched.
        let mut truncated: Vec<(u64, Fingerprint)> = Vec::new();
        for id in self.identities.values_mut() {
            let Some(f) = id.file.as_mut() else { continue };
            if !seen.contains(&(f.dev, f.ino)) {
                f.draining = true;
            }
            let Ok(meta) = f.file.metadata() else {
                continue;
            };
            let size = meta.len();
            let current = Fingerprint::read(&f.file, self.cfg.fingerprint_size).unwrap_or_default();
            let changed = !id.fingerprint.is_empty() && !id.fingerprint.matches(&current);
            if size < id.read_offset || changed {
                truncated.push((id.key, current));
            } else if current.len() > id.fingerprint.len() {
                id.fingerprint = current;
                id.dirty = true;
            }
        }
        let truncated_keys: HashSet<u64> = truncated.iter().map(|(k, _)| *k).collect();

        let open_files = self
            .identities
            .values()
            .filter(|id| id.file.is_some())
            .count();
        let mut budget = self.cfg.max_concurrent_files.saturating_sub(open_files);
        let mut adopted: HashSet<u64> = HashSet::new();
        for (path, file, dev, ino, size, fp) in fresh {
            if budget == 0 {
                tracing::debug!(path = %path.display(), "max_concurrent_files reached; the file waits");
                continue;
            }
            budget -= 1;
            let open = OpenFile {
                file,
                dev,
                ino,
                size,
                last_growth: Instant::now(),
                draining: false,
            };
            let best = |candidates: &mut dyn Iterator<Item = &Identity>| {
                candidates
                    .filter(|id| id.fingerprint.matches(&fp))
                    .max_by_key(|id| id.fingerprint.len())
                    .map(|id| id.key)
            };
            // 1. A copy of a file that has since been truncated (copytruncate): the identity moves to
            //    the copy, with its chunks in flight, and the truncated file starts a new identity.
            if let Some(key) = best(
                &mut self
                    .identities
                    .values()
                    .filter(|id| truncated_keys.contains(&id.key) && !adopted.contains(&id.key)),
            ) {
                adopted.insert(key);
                let new_key = self.fresh_key();
                let id = self.identities.get_mut(&key).expect("found above");
                tracing::debug!(from = %id.path.display(), to = %path.display(), "file copied and truncated; following the copy");
                let old_path = std::mem::replace(&mut id.path, path.clone());
                let old = id.file.replace(open);
                id.attrs = file_attrs(&self.cfg, &path);
                id.last_seen = now;
                if let Some(old) = old {
                    let fingerprint = truncated
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, f)| f.clone())
                        .unwrap_or_default();
                    let mut rest = Identity::new(new_key, fingerprint, old_path.clone(), 0);
                    rest.attrs = file_attrs(&self.cfg, &old_path);
                    rest.last_seen = now;
                    rest.file = Some(old);
                    self.identities.insert(new_key, rest);
                }
                continue;
            }
            // 2. A copy of a file still being read (the copy exists, the truncation has not come yet):
            //    it continues where that file's acknowledged entries end.
            let live = best(
                &mut self
                    .identities
                    .values()
                    .filter(|id| id.file.is_some() && !truncated_keys.contains(&id.key)),
            );
            // 3. A file known from a checkpoint (a restart) or from before it left the globs.
            let closed = best(
                &mut self
                    .identities
                    .values()
                    .filter(|id| id.file.is_none() && !adopted.contains(&id.key)),
            );
            if let Some(key) = closed.filter(|_| live.is_none()) {
                adopted.insert(key);
                let id = self.identities.get_mut(&key).expect("found above");
                if size < id.committed {
                    id.reset(fp, 0);
                }
                id.file = Some(open);
                id.path = path.clone();
                id.attrs = file_attrs(&self.cfg, &path);
                id.last_seen = now;
                id.deleted = false;
                continue;
            }
            let offset = match live {
                Some(key) => self.identities[&key].committed.min(size),
                None if first && self.cfg.start_at_end => size,
                None => 0,
            };
            let key = self.fresh_key();
            let mut id = Identity::new(key, fp, path.clone(), offset);
            id.attrs = file_attrs(&self.cfg, &path);
            id.file = Some(open);
            id.last_seen = now;
            self.identities.insert(key, id);
        }

        // Truncated files nobody copied: their identity starts over on the new content.
        for (key, fp) in truncated {
            if adopted.contains(&key) {
                continue;
            }
            if let Some(id) = self.identities.get_mut(&key) {
                tracing::info!(path = %id.path.display(), "file truncated; reading it again from the start");
                id.reset(fp, 0);
            }
        }

        // Forget identities whose file is gone for good.
        let forget: Vec<u64> = self
            .identities
            .values()
            .filter(|id| {
                id.file.is_none()
                    && id.inflight.is_empty()
                    && (id.deleted || now.saturating_sub(id.last_seen) > FORGET_AFTER_POLLS)
            })
            .map(|id| id.key)
            .collect();
        for key in forget {
            self.identities.remove(&key);
            self.removed.push(key);
        }
        self.files_open.set(
            self.identities
                .values()
                .filter(|id| id.file.is_some())
                .count() as i64,
        );
    }

    fn fresh_key(&mut self) -> u64 {
        loop {
            let key = self.next_key;
            self.next_key = self.next_key.wrapping_add(1);
            if !self.identities.contains_key(&key) {
                return key;
            }
        }
    }

    // -----------------------------------------------------------------------------------------------
    // Reading

    fn read(&mut self, max_chunks: usize) -> Polled {
        let mut keys: Vec<u64> = self
            .identities
            .values()
            .filter(|id| id.file.is_some())
            .map(|id| id.key)
            .collect();
        keys.sort_unstable();
        let mut chunks = Vec::new();
        let mut more = false;
        if !keys.is_empty() {
            self.turn = (self.turn + 1) % keys.len();
            keys.rotate_left(self.turn);
        }
        let mut closed = false;
        for key in keys {
            if chunks.len() >= max_chunks {
                more = true;
                break;
            }
            let (chunk, has_more) = self.read_one(key);
            more |= has_more;
            if let Some(c) = chunk {
                chunks.push(c);
            }
            closed |= self.close_if_drained(key);
        }
        if closed {
            self.files_open.set(
                self.identities
                    .values()
                    .filter(|id| id.file.is_some())
                    .count() as i64,
            );
        }
        Polled { chunks, more }
    }

    /// Reads the next chunk of one file — a chunk that failed to be queued first, then new data.
    /// Returns the chunk (if it holds records) and whether more is waiting right behind it.
    fn read_one(&mut self, key: u64) -> (Option<Chunk>, bool) {
        let read_size = CHUNK_BYTES.max(self.splitter.max_log_size() + 8);
        let force_flush = self.cfg.force_flush_period;
        let Some(id) = self.identities.get_mut(&key) else {
            return (None, false);
        };
        let Some(f) = id.file.as_mut() else {
            return (None, false);
        };
        let size = match f.file.metadata() {
            Ok(m) => m.len(),
            Err(_) => return (None, false),
        };
        if size != f.size {
            f.size = size;
            f.last_growth = Instant::now();
        }
        let redo = id.inflight.iter().position(|c| c.state == State::Failed);
        if redo.is_none() && size <= id.read_offset {
            // Nothing new (or truncated: discovery deals with that).
            return (None, false);
        }
        // Truncated and written again since the last discovery (copytruncate)? Reading on at the old
        // offset would emit the middle of new content; discovery sorts it out first.
        if !id.fingerprint.is_empty() {
            self.buf.resize(id.fingerprint.len(), 0);
            match f.file.read_at(&mut self.buf, 0) {
                Ok(n) if self.buf[..n] == id.fingerprint.0[..] => {}
                _ => return (None, false),
            }
        }
        // A failed chunk is read again over exactly its range, which ends on an entry boundary (so the
        // range is flushed whole), and keeps its place in the order of acknowledgements.
        let (start, want, flush) = match redo {
            Some(i) => {
                let c = &id.inflight[i];
                (c.start, usize::try_from(c.end - c.start).unwrap_or(0), true)
            }
            None => (
                id.read_offset,
                usize::try_from(size - id.read_offset)
                    .unwrap_or(usize::MAX)
                    .min(read_size),
                false,
            ),
        };
        self.buf.resize(want, 0);
        let mut filled = 0;
        while filled < want {
            match f
                .file
                .read_at(&mut self.buf[filled..], start + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(path = %id.path.display(), error = %e, "cannot read the file; retrying at the next poll");
                    return (None, false);
                }
            }
        }
        self.buf.truncate(filled);
        let flush =
            flush || (start + filled as u64 >= size && f.last_growth.elapsed() >= force_flush);
        let skip = if start == 0 {
            self.splitter.decoder.bom_len(&self.buf)
        } else {
            0
        };
        let (entries, consumed) = self.splitter.split(&self.buf, skip, flush, CHUNK_ENTRIES);
        if consumed == 0 {
            return (None, false);
        }
        let observed = logrecord::now_unix_nanos();
        let mut records = Vec::with_capacity(entries.len());
        let (mut cut, mut replaced, mut dropped) = (0, 0, 0);
        let mut first_error: Option<String> = None;
        let mut errors: HashMap<&'static str, usize> = HashMap::new();
        for e in &entries {
            let bytes = self.splitter.decoder.trim_cr(&self.buf[e.start..e.end]);
            let (body, bad) = self.splitter.decoder.body(bytes);
            cut += usize::from(e.cut);
            replaced += usize::from(bad);
            let mut record = LogRecord {
                observed_time_unix_nano: observed,
                body: Some(body),
                attributes: id.attrs.clone(),
                ..Default::default()
            };
            if !self.operators.is_empty() {
                let outcome = self.operators.apply(&mut record, &mut |err| {
                    *errors.entry(err.operator).or_default() += 1;
                    if !err.quiet && first_error.is_none() {
                        first_error = Some(format!("{}: {}", err.operator, err.message));
                    }
                });
                if outcome == Outcome::Drop {
                    dropped += 1;
                    continue;
                }
            }
            records.push(record);
        }
        if redo.is_none() {
            // Counted once per entry, not again when a failed chunk is read a second time.
            if cut > 0 {
                self.metrics.malformed(Signal::Logs, "max_log_size", cut);
            }
            if replaced > 0 {
                self.metrics
                    .malformed(Signal::Logs, "invalid_encoding", replaced);
            }
            for (operator, n) in errors {
                self.metrics.malformed(Signal::Logs, operator, n);
            }
            if dropped > 0 {
                self.metrics.dropped(Signal::Logs, "on_error_drop", dropped);
            }
            if let Some(e) = first_error {
                tracing::warn!(path = %id.path.display(), error = %e, "an entry did not parse; kept as read (on_error)");
            }
            self.read_bytes.inc_by(consumed as u64);
        }
        let seq = id.next_seq;
        id.next_seq += 1;
        let state = if records.is_empty() {
            State::Done
        } else {
            State::Pending
        };
        let more = match redo {
            Some(i) => {
                let c = &mut id.inflight[i];
                c.seq = seq;
                c.state = state;
                true
            }
            None => {
                id.inflight.push_back(InFlight {
                    seq,
                    start,
                    end: start + consumed as u64,
                    state,
                });
                id.read_offset += consumed as u64;
                id.read_offset < size || id.inflight.iter().any(|c| c.state == State::Failed)
            }
        };
        if records.is_empty() {
            // Everything was dropped by policy: nothing to queue, the checkpoint moves on.
            id.settle();
            return (None, more);
        }
        let items = records.len();
        (
            Some(Chunk {
                key,
                generation: id.generation,
                seq,
                logs: logrecord::request(records),
                items,
                bytes: consumed as u64,
            }),
            more,
        )
    }

    /// Closes a file that left the globs once it is read to its end. Returns whether it was closed.
    fn close_if_drained(&mut self, key: u64) -> bool {
        let Some(id) = self.identities.get_mut(&key) else {
            return false;
        };
        let Some(f) = id.file.as_ref() else {
            return false;
        };
        if !f.draining || id.read_offset < f.size {
            return false;
        }
        id.deleted = f.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true);
        tracing::debug!(path = %id.path.display(), deleted = id.deleted, "file read to its end and closed");
        id.file = None;
        true
    }
}

fn file_attrs(cfg: &TailerConfig, path: &Path) -> Vec<KeyValue> {
    let mut attrs = Vec::new();
    if cfg.include_file_name {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        attrs.push(logrecord::kv("log.file.name", logrecord::string(name)));
    }
    if cfg.include_file_path {
        attrs.push(logrecord::kv(
            "log.file.path",
            logrecord::string(path.display().to_string()),
        ));
    }
    attrs
}

/// A starting point for identity keys unlikely to meet keys of a previous run.
fn initial_key() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::filelog::encoding::Decoder;
    use crate::receivers::filelog::multiline::Mode;
    use outpost_pipelines::Telemetry;
    use std::io::Write;

    struct Harness {
        dir: tempfile::TempDir,
        tailer: Tailer,
    }

    fn config(dir: &Path, include: &str, start_at_end: bool) -> TailerConfig {
        TailerConfig {
            include: vec![dir.join(include).display().to_string()],
            exclude: Vec::new(),
            fingerprint_size: 1000,
            force_flush_period: Duration::from_secs(3600),
            include_file_name: true,
            include_file_path: false,
            max_concurrent_files: 100,
            start_at_end,
        }
    }

    fn tailer(cfg: TailerConfig, checkpoints: Vec<Checkpoint>) -> Tailer {
        Tailer::new(
            cfg,
            Splitter::new(Decoder::Utf8, Mode::Lines, 1 << 20),
            Operators::default(),
            Telemetry::new().receiver("filelog", "file"),
            checkpoints,
        )
    }

    impl Harness {
        fn new(include: &str, start_at_end: bool) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let tailer = tailer(config(dir.path(), include, start_at_end), Vec::new());
            Harness { dir, tailer }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn append(&self, name: &str, text: &str) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(name))
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        }

        /// Polls until nothing more comes, acknowledging every chunk; returns the bodies read.
        fn drain(&mut self) -> Vec<String> {
            self.drain_with(true)
        }

        fn drain_with(&mut self, ack: bool) -> Vec<String> {
            let mut out = Vec::new();
            let mut discover = true;
            loop {
                let polled = self.tailer.poll(discover, 100);
                discover = false;
                for c in &polled.chunks {
                    out.extend(bodies(&c.logs));
                    if ack {
                        self.tailer.ack(c.key, c.generation, c.seq, true);
                    }
                }
                if !polled.more {
                    return out;
                }
            }
        }
    }

    fn bodies(logs: &Logs) -> Vec<String> {
        logs.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .filter_map(|r| {
                r.body
                    .as_ref()
                    .and_then(logrecord::as_str)
                    .map(str::to_owned)
            })
            .collect()
    }

    fn lines(range: std::ops::Range<u32>) -> String {
        range.map(|i| format!("line {i}\n")).collect()
    }

    fn expect(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("line {i}")).collect()
    }

    #[test]
    fn start_at_end_skips_what_is_there_and_reads_what_comes() {
        let mut h = Harness::new("*.log", true);
        h.append("a.log", &lines(0..3));
        assert!(h.drain().is_empty());
        h.append("a.log", &lines(3..5));
        assert_eq!(h.drain(), expect(3..5));
        // A file appearing later is read from its beginning.
        h.append("b.log", &lines(10..12));
        assert_eq!(h.drain(), expect(10..12));
    }

    #[test]
    fn rename_and_create_rotation_loses_and_repeats_nothing() {
        // Only the live name is matched: the renamed file is finished through the open descriptor.
        let mut h = Harness::new("a.log", false);
        h.append("a.log", &lines(0..3));
        assert_eq!(h.drain(), expect(0..3));
        h.append("a.log", &lines(3..5));
        std::fs::rename(h.path("a.log"), h.path("a.log.1")).unwrap();
        h.append("a.log.1", &lines(5..6)); // the writer had not reopened yet
        h.append("a.log", &lines(6..8));
        let mut got = h.drain();
        got.sort();
        assert_eq!(got, {
            let mut e = expect(3..8);
            e.sort();
            e
        });
        assert!(h.drain().is_empty());
    }

    #[test]
    fn copytruncate_rotation_follows_the_copy() {
        let mut h = Harness::new("a.log*", false);
        h.append("a.log", &lines(0..3));
        assert_eq!(h.drain(), expect(0..3));
        h.append("a.log", &lines(3..5));
        std::fs::copy(h.path("a.log"), h.path("a.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(h.path("a.log"))
            .unwrap()
            .set_len(0)
            .unwrap();
        h.append("a.log", &lines(5..7));
        let mut got = h.drain();
        got.sort();
        assert_eq!(got, expect(3..7));
        h.append("a.log", &lines(7..8));
        assert_eq!(h.drain(), expect(7..8));
    }

    #[test]
    fn truncation_without_a_copy_starts_over() {
        let mut h = Harness::new("a.log", false);
        h.append("a.log", &lines(0..3));
        assert_eq!(h.drain(), expect(0..3));
        std::fs::write(h.path("a.log"), "new 1\n").unwrap();
        assert_eq!(h.drain(), vec!["new 1".to_owned()]);
        // Rewritten with different content longer than what was read: the fingerprint tells.
        std::fs::write(h.path("a.log"), lines(100..110)).unwrap();
        assert_eq!(h.drain(), expect(100..110));
    }

    #[test]
    fn a_file_deleted_while_open_is_read_to_its_end() {
        let mut h = Harness::new("*.log", false);
        h.append("a.log", &lines(0..2));
        assert_eq!(h.drain(), expect(0..2));
        let mut writer = std::fs::OpenOptions::new()
            .append(true)
            .open(h.path("a.log"))
            .unwrap();
        std::fs::remove_file(h.path("a.log")).unwrap();
        writer.write_all(lines(2..4).as_bytes()).unwrap();
        assert_eq!(h.drain(), expect(2..4));
        // Closed, and forgotten at the next pass: a deleted file cannot come back.
        h.tailer.poll(true, 10);
        let (_, removed) = h.tailer.take_changes();
        assert_eq!(removed.len(), 1);
        assert_eq!(h.tailer.identities.len(), 0);
    }

    #[test]
    fn a_restart_resumes_after_the_acknowledged_lines_only() {
        let mut h = Harness::new("*.log", false);
        h.append("a.log", &lines(0..3));
        assert_eq!(h.drain(), expect(0..3));
        h.append("a.log", &lines(3..6));
        // Read but never acknowledged (a crash before the queue append was durable).
        assert_eq!(h.drain_with(false), expect(3..6));
        let (checkpoints, _) = h.tailer.take_changes();
        assert_eq!(checkpoints.len(), 1);
        assert_eq!(checkpoints[0].offset, lines(0..3).len() as u64);
        // start_at: end does not apply to a receiver that has checkpoints: nothing is skipped.
        h.tailer = tailer(config(h.dir.path(), "*.log", false), checkpoints);
        h.append("b.log", &lines(10..11));
        let mut got = h.drain();
        got.sort();
        let mut want = expect(3..6);
        want.extend(expect(10..11));
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn a_failed_chunk_is_read_again_and_stale_acks_are_ignored() {
        let mut h = Harness::new("*.log", false);
        h.append("a.log", &lines(0..2));
        let polled = h.tailer.poll(true, 10);
        let c = &polled.chunks[0];
        h.tailer.ack(c.key, c.generation, c.seq, false);
        let again = h.tailer.poll(false, 10);
        assert_eq!(bodies(&again.chunks[0].logs), expect(0..2));
        // The failed chunk's generation is gone: an ack for it changes nothing.
        h.tailer.ack(c.key, c.generation, c.seq, true);
        assert_eq!(h.tailer.inflight(), 1);
        let c = &again.chunks[0];
        h.tailer.ack(c.key, c.generation, c.seq, true);
        assert_eq!(h.tailer.inflight(), 0);
    }

    #[test]
    fn only_the_failed_chunk_is_read_again_and_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = tailer(config(dir.path(), "*.log", false), Vec::new());
        let path = dir.path().join("a.log");
        std::fs::write(&path, lines(0..3)).unwrap();
        let first = t.poll(true, 10).chunks.remove(0);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(lines(3..5).as_bytes())
            .unwrap();
        let second = t.poll(false, 10).chunks.remove(0);
        // The second is queued, the first is refused (acknowledgements may come in any order).
        t.ack(second.key, second.generation, second.seq, true);
        t.ack(first.key, first.generation, first.seq, false);
        assert_eq!(t.take_changes().0.iter().map(|c| c.offset).max(), Some(0));
        let redo = t.poll(false, 10).chunks.remove(0);
        assert_eq!(bodies(&redo.logs), expect(0..3));
        assert!(
            t.poll(false, 10).chunks.is_empty(),
            "nothing else is read again"
        );
        t.ack(redo.key, redo.generation, redo.seq, true);
        let (changed, _) = t.take_changes();
        assert_eq!(changed[0].offset, lines(0..5).len() as u64);
    }

    #[test]
    fn a_line_without_its_newline_waits_for_the_flush_period() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), "*.log", false);
        cfg.force_flush_period = Duration::from_millis(50);
        let mut t = tailer(cfg, Vec::new());
        std::fs::write(dir.path().join("a.log"), "whole\npart").unwrap();
        let first = t.poll(true, 10);
        assert_eq!(bodies(&first.chunks[0].logs), vec!["whole"]);
        std::thread::sleep(Duration::from_millis(80));
        let later = t.poll(false, 10);
        assert_eq!(bodies(&later.chunks[0].logs), vec!["part"]);
    }

    #[test]
    fn file_name_attribute_and_invalid_utf8_replaced() {
        let mut h = Harness::new("*.log", false);
        h.append("a.log", "ok\n");
        std::fs::OpenOptions::new()
            .append(true)
            .open(h.path("a.log"))
            .unwrap()
            .write_all(b"bad \xFF byte\n")
            .unwrap();
        let polled = h.tailer.poll(true, 10);
        let rec = &polled.chunks[0].logs.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(rec[0].attributes[0].key, "log.file.name");
        assert_eq!(
            rec[0].attributes[0]
                .value
                .as_ref()
                .and_then(logrecord::as_str),
            Some("a.log")
        );
        assert_eq!(
            rec[1].body.as_ref().and_then(logrecord::as_str),
            Some("bad \u{FFFD} byte")
        );
    }
}
