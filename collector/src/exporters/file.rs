//! Exporter `file`: OTLP JSON, one export request per line (the OTLP file format, so the output can be
//! replayed or read by any OTLP JSON tool), with size-based rotation and age / count retention.
//!
//! Each batch is written and flushed before the exporter takes the next, so what the pipeline delivered
//! is in the file (in the page cache) when the exporter reports it sent; `flush_interval` is accepted
//! for compatibility and never delays a write. All signals of one exporter (and any exporters naming the
//! same path) share one [`FileWriter`] behind a mutex, so lines never interleave and rotation sees the
//! file's true size.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use outpost_config::{ComponentId, FileExporterConfig, FileRotationConfig};

use super::{Delivered, ExportError, Exporter, Payload};
use crate::otlp::OtlpSignal;

/// The open file, its size, and how to rotate it.
pub struct FileWriter {
    path: PathBuf,
    rotation: Option<FileRotationConfig>,
    file: BufWriter<File>,
    size: u64,
}

/// One exporter's handle on a shared [`FileWriter`].
pub struct FileExporter {
    writer: Arc<Mutex<FileWriter>>,
}

impl FileExporter {
    pub fn new(writer: Arc<Mutex<FileWriter>>) -> Self {
        Self { writer }
    }
}

fn open(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((BufWriter::new(file), size))
}

impl FileWriter {
    pub fn open(id: &ComponentId, cfg: &FileExporterConfig) -> Result<Self, String> {
        let (file, size) = open(&cfg.path).map_err(|e| {
            format!(
                "exporters.{id}.path: cannot open '{}' for appending: {e}",
                cfg.path.display()
            )
        })?;
        Ok(Self {
            path: cfg.path.clone(),
            rotation: cfg.rotation.clone(),
            file,
            size,
        })
    }

    /// Writes one complete line (it must end in a newline) in a single write, and flushes.
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if let Some(rot) = &self.rotation {
            let max = rot.max_megabytes.saturating_mul(1024 * 1024);
            if self.size > 0 && self.size + line.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.file.write_all(line)?;
        self.file.flush()?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Renames the current file to `<stem>-<UTC timestamp>.<ext>`, starts a new one, and prunes backups.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let localtime = self.rotation.as_ref().is_some_and(|r| r.localtime);
        let stamp = timestamp(SystemTime::now(), localtime);
        let backup = self.path.with_file_name(backup_name(&self.path, &stamp));
        fs::rename(&self.path, &backup)?;
        let (file, size) = open(&self.path)?;
        self.file = file;
        self.size = size;
        if let Some(rot) = &self.rotation {
            prune(&self.path, rot)?;
        }
        Ok(())
    }
}

/// `YYYYMMDDTHHMMSS.mmm` in UTC (`…Z`) or local time, for names that sort chronologically.
fn timestamp(t: SystemTime, localtime: bool) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    if localtime {
        let secs = since.as_secs() as libc::time_t;
        // SAFETY: localtime_r writes only into the `tm` we pass; both pointers are valid for the call.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        if !unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
            return format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}",
                tm.tm_year + 1900,
                tm.tm_mon + 1,
                tm.tm_mday,
                tm.tm_hour,
                tm.tm_min,
                tm.tm_sec,
                since.subsec_millis()
            );
        }
    }
    humantime::format_rfc3339_millis(t)
        .to_string()
        .replace([':', '-'], "")
}

fn stem_and_ext(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|s| format!(".{}", s.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

fn backup_name(path: &Path, stamp: &str) -> String {
    let (stem, ext) = stem_and_ext(path);
    format!("{stem}-{stamp}{ext}")
}

/// Deletes rotated files beyond `max_backups` (oldest first) and older than `max_days`.
fn prune(path: &Path, rot: &FileRotationConfig) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (stem, ext) = stem_and_ext(path);
    let prefix = format!("{stem}-");
    let mut backups: Vec<(String, PathBuf)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with(&prefix)
                && name.ends_with(&ext)
                && name.len() > prefix.len() + ext.len())
            .then(|| (name, e.path()))
        })
        .collect();
    // Timestamps in the names sort chronologically.
    backups.sort();
    let max_age = (rot.max_days > 0).then(|| Duration::from_secs(rot.max_days * 86_400));
    let excess = if rot.max_backups > 0 {
        backups.len().saturating_sub(rot.max_backups)
    } else {
        0
    };
    for (i, (_, p)) in backups.iter().enumerate() {
        let too_old = max_age.is_some_and(|age| {
            fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|e| e > age)
        });
        if i < excess || too_old {
            fs::remove_file(p)?;
        }
    }
    Ok(())
}

fn lock(w: &Mutex<FileWriter>) -> std::sync::MutexGuard<'_, FileWriter> {
    // A panic while writing leaves at worst a partial line; the file is still usable.
    w.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: OtlpSignal> Exporter<T> for FileExporter {
    fn export<'a>(
        &'a self,
        payload: &'a Payload<T>,
    ) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(async move {
            let data = payload.decode()?;
            let io_err = |e: std::io::Error| ExportError::retryable("io_error", e);
            let mut line =
                serde_json::to_vec(&data).map_err(|e| ExportError::permanent("encode_error", e))?;
            line.push(b'\n');
            // A local file write is short; blocking the exporter's own task briefly is acceptable.
            tokio::task::block_in_place(|| lock(&self.writer).write_line(&line)).map_err(io_err)?;
            Ok(Delivered {
                wire_bytes: line.len(),
                rejected: Default::default(),
            })
        })
    }

    fn shutdown(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut w = lock(&self.writer);
            if let Err(e) = w.file.flush() {
                tracing::error!(path = %w.path.display(), error = %e, "file exporter: final flush failed");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_pipelines::Traces;

    #[test]
    fn local_and_utc_stamps_sort_and_differ_only_by_zone() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t, false), "20231114T221320.123Z");
        let local = timestamp(t, true);
        assert_eq!(local.len(), "20231114T221320.123".len());
        assert!(local.ends_with(".123"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn rotates_by_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let cfg = FileExporterConfig {
            path: path.clone(),
            rotation: Some(FileRotationConfig {
                max_megabytes: 1,
                max_days: 0,
                max_backups: 2,
                localtime: false,
            }),
            flush_interval: FileExporterConfig::default_flush_interval(),
        };
        let writer = FileWriter::open(&"file".parse().unwrap(), &cfg).unwrap();
        let exp = FileExporter::new(Arc::new(Mutex::new(writer)));
        // Each payload is ~300 KiB of JSON, so 4 fit per MiB; 20 writes rotate several times.
        let mut t = Traces::default();
        t.resource_spans.push(Default::default());
        let span = opentelemetry_proto::tonic::trace::v1::Span {
            name: "x".repeat(300 * 1024),
            trace_id: vec![1; 16],
            span_id: vec![1; 8],
            ..Default::default()
        };
        t.resource_spans[0]
            .scope_spans
            .push(opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                spans: vec![span],
                ..Default::default()
            });
        let payload = super::Payload::<Traces>::new(prost::Message::encode_to_vec(&t).into(), 1);
        for _ in 0..20 {
            Exporter::<Traces>::export(&exp, &payload).await.unwrap();
            // Distinct timestamps for distinct backups.
            std::thread::sleep(Duration::from_millis(2));
        }
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "the live file and 2 backups: {names:?}");
        for n in &names {
            let len = fs::metadata(dir.path().join(n)).unwrap().len();
            assert!(len <= 1024 * 1024, "{n} is {len} bytes");
        }
        // Every line is a complete OTLP JSON request.
        for line in fs::read_to_string(&path).unwrap().lines() {
            let back: Traces = serde_json::from_str(line).unwrap();
            assert_eq!(
                back.resource_spans[0].scope_spans[0].spans[0].name.len(),
                300 * 1024
            );
        }
    }
}
