//! The agent's lifecycle: claim the data directory, start the admin endpoint and the topology, wait for
//! SIGTERM / SIGINT, and stop everything within the shutdown deadline.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use outpost_config::Config;
use outpost_pipelines::Telemetry;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::topology;

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
    let app = admin::router(telemetry.clone(), readiness.clone(), &health_paths);
    let admin_tasks = admin::serve(&config.admin_endpoints(), app, admin_stop.clone())
        .await
        .map_err(|e| anyhow::anyhow!(e.join("\n")))?;

    let running = match topology::start(&config, &telemetry).await {
        Ok(r) => r,
        Err(errors) => {
            admin_stop.cancel();
            bail!("cannot start:\n  {}", errors.join("\n  "));
        }
    };
    readiness.set(Ok(()));
    tracing::info!(
        pipelines = config.service.pipelines.len(),
        signals = ?topology::signals_in_use(&config),
        data_dir = %data_dir.display(),
        "outpost is running"
    );

    stop.cancelled().await;
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
