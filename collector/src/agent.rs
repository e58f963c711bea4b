//! The agent's lifecycle: claim the data directory, start the admin endpoint and the topology, apply
//! config reloads, and on SIGTERM / SIGINT stop everything within the shutdown deadline.
//!
//! Reloads come from three triggers: the config file's content changing (polled through the path, so
//! the atomic symlink swap of a Kubernetes ConfigMap is seen like an edit), SIGHUP, and
//! `POST /-/reload`. A reload validates the whole file first; an invalid file changes nothing, is
//! logged with every error, and marks the node degraded until a good file arrives. The config that was
//! last applied is kept in the state store as the last known good, so a node restarted with a broken
//! file still runs (see `main.rs`).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use outpost_config::Config;
use outpost_pipelines::queue::{Queue, QueueOptions, StateStore};
use outpost_pipelines::Telemetry;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness, ReloadRequest};
use crate::topology;

/// The state store key of the last known good config (the text of the last file applied).
pub const LAST_KNOWN_GOOD_KEY: &[u8] = b"config/last_known_good";

/// Where the running config came from and how to reload it.
pub struct Source {
    /// The config file; `None` for the embedded default, which has nothing to reload.
    pub path: Option<PathBuf>,
    /// The config text that is being started.
    pub text: String,
    /// `file`, `last_known_good` or `embedded`, for `outpost_config_info` and the logs.
    pub origin: &'static str,
    /// SHA-256 of the file as last read, when that differs from `text` (an invalid file at start):
    /// the watcher reloads only once the file changes again.
    pub file_hash: Option<String>,
    /// Why the node starts degraded, if it does.
    pub degraded: Option<String>,
    /// How often the file is checked for changes.
    pub watch_interval: Duration,
}

impl Source {
    /// A config loaded from `path` (or the embedded default when `None`).
    pub fn file(path: Option<PathBuf>, text: String) -> Self {
        Source {
            origin: if path.is_some() { "file" } else { "embedded" },
            path,
            text,
            file_hash: None,
            degraded: None,
            watch_interval: Duration::from_secs(1),
        }
    }
}

/// Hex SHA-256, the identity of a config in `outpost_config_info`.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The last known good config stored in `data_dir`, if there is one. Opens the queue's database only
/// to read it (the agent is not running yet).
pub async fn read_last_known_good(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let queue_dir = topology::queue_dir(data_dir);
    if !queue_dir.is_dir() {
        return Ok(None);
    }
    let _lock = lock_data_dir(data_dir)?;
    let opts = QueueOptions {
        directory: queue_dir,
        ..topology::queue_options(&Config::default())
    };
    let queue = Queue::open(opts, &Telemetry::new()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the state store in '{}': {e}",
            data_dir.display()
        )
    })?;
    let text = queue
        .state()
        .get(LAST_KNOWN_GOOD_KEY)
        .map_err(|e| anyhow::anyhow!("cannot read the last known good config: {e}"))?;
    queue.close().await;
    Ok(text.map(|t| String::from_utf8_lossy(&t).into_owned()))
}

/// An exclusive lock on the data directory, held for the agent's lifetime: two agents writing one
/// queue would corrupt it, so the second one refuses to start.
pub struct DataDirLock {
    _file: File,
    pub path: PathBuf,
}

pub fn lock_data_dir(dir: &Path) -> anyhow::Result<DataDirLock> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("queue.directory: cannot create '{}'", dir.display()))?;
    let path = dir.join("outpost.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("queue.directory: cannot open '{}'", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        bail!(
            "queue.directory: '{}' is in use by another outpost process (lock held on {}); give each agent its own directory",
            dir.display(),
            path.display()
        );
    }
    Ok(DataDirLock { _file: file, path })
}

/// Runs the agent until `stop` is cancelled (by a signal, or by a test). Returns whether the shutdown
/// drained everything within the deadline.
pub async fn run(
    config: Config,
    source: Source,
    shutdown_timeout: Duration,
    stop: CancellationToken,
) -> anyhow::Result<bool> {
    let data_dir = config.data_dir();
    let _lock = lock_data_dir(&data_dir)?;
    let telemetry = Telemetry::new();
    let readiness = Readiness::new();
    let admin_stop = CancellationToken::new();
    let health_paths: Vec<String> = config
        .extensions
        .values()
        .filter_map(|e| match e {
            outpost_config::ExtensionConfig::HealthCheck(h) => Some(h.path.clone()),
            outpost_config::ExtensionConfig::FileStorage(_) => None,
        })
        .collect();
    let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let app = admin::router(
        telemetry.clone(),
        readiness.clone(),
        &health_paths,
        source.path.is_some().then_some(reload_tx),
    );
    let metrics_cfg = &config.service.telemetry.metrics;
    let admin_tls = match (&metrics_cfg.tls, metrics_cfg.address) {
        (Some(t), Some(addr)) => {
            let path = "service.telemetry.metrics";
            let config = crate::tls::server_config(t, &telemetry.tls(path), &[b"h2", b"http/1.1"])
                .map_err(|e| anyhow::anyhow!("{path}.tls: {e}"))?;
            Some((
                addr,
                crate::net::ServerTls {
                    config,
                    metrics: telemetry.receiver("admin", "https"),
                },
            ))
        }
        _ => None,
    };
    let admin_tasks = admin::serve(
        &config.admin_endpoints(),
        admin_tls,
        app,
        admin_stop.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.join("\n")))?;

    let running = match topology::start(&config, &telemetry).await {
        Ok(r) => r,
        Err(errors) => {
            admin_stop.cancel();
            bail!("cannot start:\n  {}", errors.join("\n  "));
        }
    };
    let hash = sha256_hex(&source.text);
    telemetry.config().applied(&hash, source.origin);
    if let Some(why) = &source.degraded {
        telemetry.config().reload("start", "invalid");
        tracing::warn!(reason = %why, "running degraded");
    }
    readiness.set_degraded(source.degraded.clone());
    readiness.set(Ok(()));
    if source.origin == "file" {
        store_last_known_good(&running.state(), &source.text);
    }
    tracing::info!(
        pipelines = config.service.pipelines.len(),
        signals = ?topology::signals_in_use(&config),
        data_dir = %data_dir.display(),
        config_sha256 = %hash,
        config_source = source.origin,
        "outpost is running"
    );

    let mut reloader = Reloader {
        last_seen: source.file_hash.clone().unwrap_or(hash),
        path: source.path.clone(),
        current: config,
        running,
        telemetry: telemetry.clone(),
        readiness: readiness.clone(),
    };
    reloader
        .serve(reload_rx, source.watch_interval, &stop)
        .await;
    let running = reloader.running;
    readiness.set(Err("shutting down".into()));
    tracing::info!(deadline = ?shutdown_timeout, "shutting down: receivers stop, pipelines drain, exporters flush");
    let clean = running.shutdown(shutdown_timeout).await;
    admin_stop.cancel();
    for t in admin_tasks {
        let _ = t.await;
    }
    if clean {
        tracing::info!("outpost stopped cleanly");
    }
    Ok(clean)
}

fn store_last_known_good(state: &StateStore, text: &str) {
    if let Err(e) = state.put_durable(LAST_KNOWN_GOOD_KEY, text.as_bytes()) {
        tracing::warn!(error = %e, "cannot store the applied config as the last known good");
    }
}

/// Applies reloads to the running topology.
struct Reloader {
    path: Option<PathBuf>,
    /// SHA-256 of the file as last read (applied or refused), so an unchanged file is not re-read into
    /// a reload every poll.
    last_seen: String,
    current: Config,
    running: topology::Running,
    telemetry: Telemetry,
    readiness: Readiness,
}

impl Reloader {
    async fn serve(
        &mut self,
        mut http: mpsc::Receiver<ReloadRequest>,
        interval: Duration,
        stop: &CancellationToken,
    ) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by file change or POST /-/reload");
                None
            }
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(req) = http.recv() => {
                    let result = self.reload("http").await;
                    let _ = req.reply.send(result);
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    if self.path.is_some() {
                        let _ = self.reload("sighup").await;
                    } else {
                        tracing::info!("SIGHUP ignored: the embedded default config has no file to reload");
                    }
                }
                _ = tick.tick(), if self.path.is_some() => {
                    let Some(path) = &self.path else { continue };
                    // Read through the path every time: a ConfigMap's symlink swap changes what it
                    // points at without touching the file that was open before.
                    if let Ok(text) = std::fs::read_to_string(path) {
                        if sha256_hex(&text) != self.last_seen {
                            let _ = self.reload("file").await;
                        }
                    }
                }
            }
        }
    }

    /// Reads, validates and applies the config file. `Ok` says what happened; `Err` why nothing (or not
    /// all of it) was applied.
    async fn reload(&mut self, trigger: &'static str) -> Result<String, String> {
        let Some(path) = self.path.clone() else {
            return Err("no config file to reload".into());
        };
        let metrics = self.telemetry.config().clone();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                let msg = format!("cannot read the config file '{}': {e}", path.display());
                tracing::error!(
                    trigger,
                    "config reload refused: {msg}; the running config stays"
                );
                self.readiness.set_degraded(Some(msg.clone()));
                metrics.reload(trigger, "invalid");
                return Err(msg);
            }
        };
        let hash = sha256_hex(&text);
        self.last_seen = hash.clone();
        let loaded = match outpost_config::load_str(&text, &path.display().to_string()) {
            Ok(l) => l,
            Err(diags) => {
                let errors: Vec<String> = diags.errors().map(ToString::to_string).collect();
                for e in &errors {
                    tracing::error!(trigger, "{e}");
                }
                let msg = format!(
                    "config file '{}' refused ({} errors, the first: {}); the previous config keeps running",
                    path.display(),
                    errors.len(),
                    errors.first().map_or("", String::as_str)
                );
                tracing::error!(trigger, "config reload refused: {msg}");
                self.readiness.set_degraded(Some(msg.clone()));
                metrics.reload(trigger, "invalid");
                return Err(msg);
            }
        };
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let config = loaded.config;
        let unchanged = config == self.current;
        // These are read once at start; the rest of the new config is applied without them.
        let mut restart_only = Vec::new();
        if config.queue != self.current.queue || config.data_dir() != self.current.data_dir() {
            restart_only.push("queue");
        }
        if config.admin_endpoints() != self.current.admin_endpoints()
            || config.service.telemetry.metrics.tls != self.current.service.telemetry.metrics.tls
        {
            restart_only
                .push("admin endpoints (extensions.health_check, service.telemetry.metrics)");
        }
        if config.service.telemetry.logs != self.current.service.telemetry.logs {
            restart_only.push("service.telemetry.logs");
        }
        match self.running.reload(&config).await {
            Ok(changes) => {
                store_last_known_good(&self.running.state(), &text);
                let degraded = (!restart_only.is_empty()).then(|| {
                    format!(
                        "config applied except what needs a restart: {}",
                        restart_only.join(", ")
                    )
                });
                if let Some(d) = &degraded {
                    tracing::warn!("{d}");
                }
                self.readiness.set_degraded(degraded);
                self.current = config;
                // Counted last: whoever waits on the counter then sees the rest of the new state.
                metrics.applied(&hash, "file");
                metrics.reload(trigger, if unchanged { "unchanged" } else { "applied" });
                tracing::info!(
                    trigger,
                    config_sha256 = %hash,
                    pipelines_kept = changes.pipelines_kept,
                    pipelines_replaced = changes.pipelines_replaced,
                    exporters_and_connectors_kept = changes.readers_kept,
                    exporters_and_connectors_replaced = changes.readers_replaced,
                    receivers_kept = changes.receivers_kept,
                    receivers_replaced = changes.receivers_replaced,
                    "config reloaded"
                );
                Ok(format!(
                    "config {} ({hash}): {} pipelines kept, {} replaced; {} receivers kept, {} replaced",
                    if unchanged { "unchanged" } else { "applied" },
                    changes.pipelines_kept,
                    changes.pipelines_replaced,
                    changes.receivers_kept,
                    changes.receivers_replaced
                ))
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(trigger, "{e}");
                }
                let msg = format!(
                    "config file '{}' could not be applied: {}",
                    path.display(),
                    errors.join("; ")
                );
                self.readiness.set_degraded(Some(msg.clone()));
                metrics.reload(trigger, "failed");
                Err(msg)
            }
        }
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
}
