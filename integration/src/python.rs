//! A Python interpreter with the OpenTelemetry SDK and its OTLP exporters, for tests that check outpost
//! against the real SDK rather than against our own idea of OTLP.
//!
//! `$OUTPOST_TEST_PYTHON`, when set, is used as is (it must already have the packages). Otherwise a venv
//! is created once in `<target>/outpost-test-venv` with `python3 -m venv` and `pip install` of
//! [`REQUIREMENTS`] (pinned, so every machine tests the same SDK), and reused by later runs. Test binaries
//! run in parallel hold an `flock` on `<target>/outpost-test-venv.lock` while they check or build it, and
//! a marker file naming the requirements is written only after a successful install, so an interrupted
//! install is redone rather than trusted, and a change to the pins rebuilds the venv.
//!
//! A failed setup fails the test with pip's output: a round-trip test that silently skipped would prove
//! nothing.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The packages the venv holds, pinned to versions that exist on PyPI and work together.
pub const REQUIREMENTS: &[&str] = &[
    "opentelemetry-api==1.45.2",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-grpc==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
];

/// What must import for the interpreter to be usable.
const PROBE: &str = "import opentelemetry.sdk.trace, opentelemetry.sdk.metrics, opentelemetry.sdk._logs, \
    opentelemetry.exporter.otlp.proto.grpc.trace_exporter, opentelemetry.exporter.otlp.proto.http.trace_exporter";

/// The interpreter to run SDK scripts with. Panics with the reason (pip's output included) when it
/// cannot be set up.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(setup)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn setup() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("OUTPOST_TEST_PYTHON") {
        let p = PathBuf::from(p);
        probe(&p).map_err(|e| {
            format!(
                "OUTPOST_TEST_PYTHON={} cannot import the OpenTelemetry SDK ({}): {e}",
                p.display(),
                REQUIREMENTS.join(" ")
            )
        })?;
        return Ok(p);
    }
    let target = crate::target_dir();
    fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    let venv = target.join("outpost-test-venv");
    let _lock = lock(&target.join("outpost-test-venv.lock"))?;
    let python = venv.join("bin").join("python");
    let marker = venv.join("outpost-requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    if fs::read_to_string(&marker).is_ok_and(|m| m == wanted) && python.is_file() {
        return Ok(python);
    }

    let started = Instant::now();
    eprintln!(
        "outpost-integration: creating the Python venv {} with {} (once; later runs reuse it)",
        venv.display(),
        REQUIREMENTS.join(" ")
    );
    if venv.exists() {
        fs::remove_dir_all(&venv)
            .map_err(|e| format!("removing the stale venv {}: {e}", venv.display()))?;
    }
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv (on Debian, `apt-get install python3-venv` provides it)",
    )?;
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
            ])
            .args(REQUIREMENTS),
        "pip install of the OpenTelemetry SDK",
    )?;
    probe(&python)?;
    fs::write(&marker, &wanted).map_err(|e| format!("writing {}: {e}", marker.display()))?;
    eprintln!(
        "outpost-integration: the Python venv is ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(python)
}

/// An exclusive flock held until the returned file is dropped.
fn lock(path: &Path) -> Result<File, String> {
    let file = File::create(path)
        .map_err(|e| format!("creating the lock file {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own; blocking until other test processes finish the setup.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(format!(
            "flock({}): {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(file)
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn probe(python: &Path) -> Result<(), String> {
    run(
        Command::new(python).arg("-c").arg(PROBE),
        "importing the OpenTelemetry SDK",
    )
}
