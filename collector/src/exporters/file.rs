//! Exporter `file`: OTLP JSON, one export request per line (the OTLP file format, so the output can be
//! replayed or read by any OTLP JSON tool), with size-based rotation and age / count retention.
//!
//! Each batch is written and flushed before the exporter takes the next, so what the pipeline delivered
//! is in the file (in the page cache) when the exporter reports it sent.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use outpost_config::{ComponentId, FileExporterConfig, FileRotationConfig};

use super::{Delivered, ExportError, Exporter};
use crate::otlp::OtlpSignal;

pub struct FileExporter {
    path: PathBuf,
    rotation: Option<FileRotationConfig>,
    file: BufWriter<File>,
    size: u64,
}

fn open(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((BufWriter::new(file), size))
}

impl FileExporter {
    pub fn new(id: &ComponentId, cfg: &FileExporterConfig) -> Result<Self, String> {
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

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if let Some(rot) = &self.rotation {
            let max = rot.max_megabytes.saturating_mul(1024 * 1024);
            if self.size > 0 && self.size + line.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.file.write_all(line)?;
        self.file.write_all(b"\n")?;
        self.size += line.len() as u64 + 1;
        Ok(())
    }

    /// Renames the current file to `<stem>-<UTC timestamp>.<ext>`, starts a new one, and prunes backups.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let stamp = humantime::format_rfc3339_millis(SystemTime::now())
            .to_string()
            .replace([':', '-'], "");
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

impl<T: OtlpSignal> Exporter<T> for FileExporter {
    fn export(&mut self, data: T) -> BoxFuture<'_, Result<Delivered, ExportError>> {
        Box::pin(async move {
            let io_err = |e: std::io::Error| ExportError {
                reason: "io_error".into(),
                message: e.to_string(),
                retryable: true,
            };
            let line = serde_json::to_vec(&data).map_err(|e| ExportError {
                reason: "encode_error".into(),
                message: e.to_string(),
                retryable: false,
            })?;
            // A local file write is short; blocking the exporter's own task briefly is acceptable.
            tokio::task::block_in_place(|| {
                self.write_line(&line)?;
                self.file.flush()
            })
            .map_err(io_err)?;
            Ok(Delivered {
                wire_bytes: line.len() + 1,
                rejected: Default::default(),
            })
        })
    }

    fn shutdown(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.file.flush() {
                tracing::error!(path = %self.path.display(), error = %e, "file exporter: final flush failed");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_pipelines::Traces;

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
        let mut exp = FileExporter::new(&"file".parse().unwrap(), &cfg).unwrap();
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
        for _ in 0..20 {
            Exporter::<Traces>::export(&mut exp, t.clone())
                .await
                .unwrap();
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
