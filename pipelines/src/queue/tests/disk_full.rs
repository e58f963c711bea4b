//! A real full disk: the queue on a small tmpfs, filled up by another file.
//!
//! Needs `mount` (root, or a user namespace that allows tmpfs). Where mounting is impossible the test
//! says so loudly on stderr and passes without checking anything; set `OUTPOST_REQUIRE_TMPFS=1` (CI does)
//! to make that a failure instead.
//!
//! What it shows: appends on a full device fail with `NoSpace` (retryable) — never a panic, never a
//! `Stored` that was not stored; once space is freed, appends succeed again without a restart (RocksDB
//! stays stopped after a failed WAL append; the writer's reopen fallback clears it, see `writer`); every
//! record that was acknowledged `Stored` before, during and after is then delivered.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_config::Signal;

use super::{noise, options};
use crate::queue::{Appended, Queue, QueueError, StartAt};
use crate::telemetry::Telemetry;

/// Unmounts on drop, even when the test fails.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes `path` until the device is full; returns how much it wrote.
fn fill(path: &Path) -> u64 {
    let Ok(mut f) = std::fs::File::create(path) else {
        return 0;
    };
    let chunk = vec![0xA5u8; 64 << 10];
    let mut written = 0;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = f.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_appends_and_recovers_when_space_is_freed() {
    let mount_point = tempfile::tempdir().unwrap();
    let _tmpfs = match Tmpfs::mount(mount_point.path(), "48m") {
        Ok(m) => m,
        Err(e) => {
            if std::env::var_os("OUTPOST_REQUIRE_TMPFS").is_some() {
                panic!("cannot mount a tmpfs for the disk-full test: {e}");
            }
            eprintln!(
                "\n!!!!! SKIPPED queue disk-full test: cannot mount a tmpfs ({e}); run as root to check ENOSPC handling !!!!!\n"
            );
            return;
        }
    };
    let t = Telemetry::new();
    let q = Queue::open_tuned(
        options(&mount_point.path().join("queue")),
        &t,
        super::tuning(),
    )
    .expect("open on tmpfs");
    let s = q.stream("traces").unwrap();
    let mut cursor = s.cursor("otlp", StartAt::Oldest, None).unwrap();
    let mut stored = Vec::new();
    for i in 0..5 {
        match s.append(Signal::Traces, 1, &noise(100_000, i)).await {
            Ok(Appended::Stored { seq }) => stored.push(seq),
            other => panic!("before filling: {other:?}"),
        }
    }

    let filler = mount_point.path().join("filler");
    let filled = fill(&filler);
    assert!(filled > 16 << 20, "filled {filled} bytes");

    // Append until the device refuses; RocksDB may still have preallocated WAL space left.
    let mut refused = None;
    for i in 0..2_000u64 {
        match s.append(Signal::Traces, 1, &noise(100_000, 100 + i)).await {
            Ok(Appended::Stored { seq }) => stored.push(seq),
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("a full device must refuse appends");
    assert!(
        matches!(refused, QueueError::NoSpace(_)),
        "expected NoSpace, got {refused:?}"
    );
    assert!(refused.retryable());
    // It keeps refusing (and keeps not panicking) while full.
    for i in 0..5u64 {
        let r = s.append(Signal::Traces, 1, &noise(1_000, 5_000 + i)).await;
        assert!(
            matches!(r, Err(QueueError::NoSpace(_)) | Err(QueueError::Io(_))),
            "{r:?}"
        );
    }

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let resumed = loop {
        match s.append(Signal::Traces, 1, &noise(1_000, 9_999)).await {
            Ok(Appended::Stored { seq }) => break seq,
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(e.retryable(), "{e:?}");
                assert!(
                    Instant::now() < deadline,
                    "still refusing 60 s after space was freed: {e}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    stored.push(resumed);
    for i in 0..3 {
        match s
            .append(Signal::Traces, 1, &noise(10_000, 20_000 + i))
            .await
        {
            Ok(Appended::Stored { seq }) => stored.push(seq),
            other => panic!("after recovery: {other:?}"),
        }
    }

    // Every acknowledged record is there, in order.
    let mut delivered = Vec::new();
    while delivered.len() < stored.len() {
        let batch = tokio::time::timeout(Duration::from_secs(5), cursor.next_batch(64))
            .await
            .expect("records to read")
            .unwrap();
        for r in batch {
            delivered.push(r.seq);
            cursor.ack(r.seq).unwrap();
        }
    }
    assert_eq!(delivered, stored);
    drop(cursor);
    drop(s);
    q.close().await;
}
