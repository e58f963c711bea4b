//! Where a job's targets come from: `static_configs`, and `file_sd_configs` files (JSON or YAML lists of
//! `{targets, labels}`, as Prometheus reads them).
//!
//! Files are watched by polling their metadata (modification time and size) every
//! [`FILE_CHECK_INTERVAL`], and re-read in full at least every `refresh_interval`. Polling a handful of
//! `stat` calls a second costs nothing, needs no inotify watch budget, and sees a file replaced by
//! rename (how configuration tools write) the same as one edited in place. A file that cannot be read
//! or parsed keeps its previous targets, and the error is logged once per change, as Prometheus does: a
//! half-written file must not make every target vanish.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use outpost_config::{FileSdConfig, ScrapeConfig};
use serde::Deserialize;

use crate::prom::to_otlp::Labels;

/// How often file metadata is checked for a change.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Targets sharing labels, from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// `static/<i>` or the file's path: target identity does not depend on it.
    pub source: String,
    pub targets: Vec<String>,
    /// Group labels plus, for files, `__meta_filepath`.
    pub labels: Labels,
}

pub fn static_groups(job: &ScrapeConfig) -> Vec<TargetGroup> {
    job.static_configs
        .iter()
        .enumerate()
        .map(|(i, sc)| TargetGroup {
            source: format!("static/{i}"),
            targets: sc.targets.clone(),
            labels: sorted(&sc.labels),
        })
        .collect()
}

fn sorted(labels: &BTreeMap<String, String>) -> Labels {
    labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The format of a file_sd file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Reads one file_sd file.
pub fn read_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let value = if is_json {
        serde_json::from_str::<serde_json::Value>(&text).map_err(|e| format!("not JSON: {e}"))?
    } else {
        outpost_config::yaml_data_to_json(&text).map_err(|e| format!("not YAML: {e}"))?
    };
    if value.is_null() {
        return Ok(Vec::new());
    }
    let groups: Vec<FileGroup> = serde_json::from_value(value).map_err(|e| {
        format!("expected a list of {{targets: [host:port, ...], labels: {{name: value}}}}: {e}")
    })?;
    let file = path.display().to_string();
    let mut out = Vec::with_capacity(groups.len());
    for (i, g) in groups.into_iter().enumerate() {
        for t in &g.targets {
            outpost_config::check_target(t).map_err(|e| format!("group {i}: {e}"))?;
        }
        let mut labels = sorted(&g.labels.unwrap_or_default());
        labels.push(("__meta_filepath".into(), file.clone()));
        labels.sort();
        out.push(TargetGroup {
            source: format!("{file}/{i}"),
            targets: g.targets,
            labels,
        });
    }
    Ok(out)
}

/// A file's modification time and size: a change in either means it is read again.
type FileStamp = (SystemTime, u64);

/// The files of one `file_sd_configs` item and what was last read from them.
pub struct FileSd {
    patterns: Vec<String>,
    refresh: Duration,
    last_full_read: Option<Instant>,
    /// Per file: its metadata when read, and its groups.
    files: HashMap<PathBuf, (Option<FileStamp>, Vec<TargetGroup>)>,
    /// Errors already logged, so a broken file is reported once per change, not once a second.
    reported: HashMap<PathBuf, String>,
}

impl FileSd {
    pub fn new(cfg: &FileSdConfig) -> Self {
        Self {
            patterns: cfg.files.clone(),
            refresh: cfg.refresh_interval.get(),
            last_full_read: None,
            files: HashMap::new(),
            reported: HashMap::new(),
        }
    }

    /// The files the patterns name now.
    fn paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for pattern in &self.patterns {
            if !pattern.contains(['*', '?', '[']) {
                out.push(PathBuf::from(pattern));
                continue;
            }
            match glob::glob(pattern) {
                Ok(paths) => out.extend(paths.flatten()),
                Err(e) => tracing::warn!(pattern, error = %e, "file_sd: bad glob"),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Re-reads what changed. Returns the groups of every file when anything changed, else `None`.
    pub fn poll(&mut self, job: &str) -> Option<Vec<TargetGroup>> {
        let full = self
            .last_full_read
            .is_none_or(|t| t.elapsed() >= self.refresh);
        if full {
            self.last_full_read = Some(Instant::now());
        }
        let paths = self.paths();
        let mut changed = false;
        // Files no longer matched lose their targets.
        let before = self.files.len();
        self.files.retain(|p, _| paths.contains(p));
        changed |= self.files.len() != before;
        for path in paths {
            let meta = std::fs::metadata(&path)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            let known = self.files.get(&path).map(|(m, _)| *m);
            if !full && known.is_some() && known == Some(meta) {
                continue;
            }
            match read_file(&path) {
                Ok(groups) => {
                    self.reported.remove(&path);
                    let old = self.files.insert(path, (meta, groups.clone()));
                    changed |= old.map(|(_, g)| g) != Some(groups);
                }
                Err(e) => {
                    if self.reported.get(&path) != Some(&e) {
                        tracing::warn!(job, file = %path.display(), error = %e, "file_sd: cannot use this target file; keeping its previous targets");
                        self.reported.insert(path.clone(), e);
                    }
                    // Remember the metadata so the same broken version is not re-read every second.
                    match self.files.get_mut(&path) {
                        Some(entry) => entry.0 = meta,
                        None => {
                            self.files.insert(path, (meta, Vec::new()));
                        }
                    }
                }
            }
        }
        changed.then(|| {
            let mut all: Vec<TargetGroup> = self
                .files
                .values()
                .flat_map(|(_, g)| g.iter().cloned())
                .collect();
            all.sort_by(|a, b| a.source.cmp(&b.source));
            all
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_config::HumanDuration;

    #[test]
    fn json_and_yaml_files_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("a.json");
        std::fs::write(
            &json,
            r#"[{"targets": ["10.0.0.1:9100"], "labels": {"env": "prod"}}]"#,
        )
        .unwrap();
        let yaml = dir.path().join("b.yaml");
        std::fs::write(
            &yaml,
            "- targets: ['10.0.0.2:9100']\n  labels:\n    env: dev\n",
        )
        .unwrap();
        let a = read_file(&json).unwrap();
        let b = read_file(&yaml).unwrap();
        assert_eq!(a[0].targets, vec!["10.0.0.1:9100"]);
        assert_eq!(b[0].targets, vec!["10.0.0.2:9100"]);
        assert!(a[0].labels.contains(&("env".into(), "prod".into())));
        assert!(b[0].labels.contains(&("env".into(), "dev".into())));
        assert!(b[0]
            .labels
            .contains(&("__meta_filepath".into(), yaml.display().to_string())));
        std::fs::write(&yaml, "- targets: ['http://x:1']\n").unwrap();
        assert!(read_file(&yaml).unwrap_err().contains("scheme"));
    }

    #[test]
    fn a_poll_sees_new_changed_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut sd = FileSd::new(&FileSdConfig {
            files: vec![format!("{}/*.json", dir.path().display())],
            refresh_interval: HumanDuration(Duration::from_secs(3600)),
        });
        assert_eq!(sd.poll("j"), None, "no files, nothing changed");
        let f = dir.path().join("t.json");
        std::fs::write(&f, r#"[{"targets": ["a:1"]}]"#).unwrap();
        let groups = sd.poll("j").unwrap();
        assert_eq!(groups[0].targets, vec!["a:1"]);
        assert_eq!(sd.poll("j"), None, "unchanged");
        // A broken rewrite keeps the previous targets.
        std::fs::write(&f, r#"[{"targets": ["a:1"]"#).unwrap();
        assert_eq!(sd.poll("j"), None);
        std::fs::write(&f, r#"[{"targets": ["a:1", "b:2"]}]"#).unwrap();
        assert_eq!(sd.poll("j").unwrap()[0].targets, vec!["a:1", "b:2"]);
        std::fs::remove_file(&f).unwrap();
        assert_eq!(sd.poll("j"), Some(vec![]));
    }
}
