//! The harness for outpost's black-box tests: the real `outpost` binary, started as a child process on
//! 127.0.0.1, talked to only through its sockets, its files and its exit status.
//!
//! - [`outpost_bin`] finds the binary in the target directory the tests were built into, and runs
//!   `cargo build --workspace --all-targets` once per test process first, so a test never runs a stale
//!   binary left by an earlier build (set `OUTPOST_BIN` to test a binary built elsewhere; the build is then
//!   skipped). It selects the same packages and targets as `cargo test --workspace`, so features resolve
//!   alike and the build is a no-op there: a narrower selection would resolve different features for
//!   RocksDB's build-time dependencies and rebuild its C++ (15 minutes on 2 cores).
//! - [`Agent`] is one running outpost: its own temp dir (config, log, data dir, output files), its admin
//!   endpoint on a port of its own, readiness awaited through `/readyz`, and a `Drop` that stops it
//!   (SIGTERM, then SIGKILL after 5 s) so no process outlives its test, even a failed one.
//! - [`prometheus`] runs a real Prometheus as a remote-write sink and queries it back.
//! - [`python`] gives a Python interpreter with the OpenTelemetry SDK (a venv cached in the target dir).
//! - [`otlp_json`] reads what outpost's `file` exporter wrote; [`gen`] builds OTLP requests in Rust and
//!   sends raw bytes over gRPC; [`delivery`] compares what clients saw acknowledged with what arrived
//!   (losses, duplicates).
//! - Fault injection: [`SilentPeer`] (a destination that never answers), [`proxy::TcpProxy`] (a link
//!   that can be cut and restored), [`tmpfs`] (a small device that fills up), [`Agent::kill9`], and
//!   [`Rng`] to draw fault moments from a printed seed.
//!
//! Configs handed to [`Agent::start`] use three placeholders the harness fills in, so tests never
//! collide on ports or directories: `@ADMIN@` (the admin endpoint, a free port), `@DATA_DIR@` (the data
//! directory, fresh per agent) and `@DIR@` (the agent's temp dir, for output files).
//!
//! Synchronisation is by polling a condition with a deadline ([`wait_for`]), never by sleeping a guess.

pub mod delivery;
pub mod fault_sink;
pub mod gen;
pub mod otlp_json;
pub mod pki;
pub mod prometheus;
pub mod proxy;
pub mod python;
pub mod tmpfs;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an agent may take from spawn to a 200 from `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `Drop` waits after SIGTERM before it sends SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------------------
// Locating and building the binary

/// The workspace root (the directory holding the workspace `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ sits inside the workspace")
        .to_path_buf()
}

/// The profile directory the running test executable was built into: `.../target/debug` for
/// `.../target/debug/deps/sdk_roundtrip-1234`. Falls back to `$CARGO_TARGET_DIR/debug`, then to the
/// workspace's `target/debug`.
pub fn profile_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(deps) = exe.parent() {
            if deps.file_name().is_some_and(|n| n == "deps") {
                if let Some(profile) = deps.parent() {
                    return profile.to_path_buf();
                }
            }
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug")
}

/// The target directory (the parent of the profile directory).
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().map(Path::to_path_buf).unwrap_or(profile)
}

/// The `outpost` binary to test. Built (or brought up to date) by `cargo build --workspace --all-targets` on first use
/// in each test process; `OUTPOST_BIN` names a prebuilt binary instead. Panics with cargo's output when
/// the build fails.
pub fn outpost_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(locate_or_build)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn locate_or_build() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("OUTPOST_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("OUTPOST_BIN={} is not a file", bin.display()))
        };
    }
    let profile = profile_dir();
    let bin = profile.join("outpost");
    // `cargo test -p outpost-integration` does not build another package's binary, so build it here.
    // When the binary is up to date this is a no-op that takes a fraction of a second.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--workspace")
        .arg("--all-targets")
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir());
    match profile.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.arg("--profile").arg(other);
        }
    }
    let out = cmd.output().map_err(|e| {
        format!("cannot run `cargo build --workspace --all-targets` to build the binary under test: {e}")
    })?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build --workspace --all-targets` failed ({}), so there is no outpost binary to test:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if !bin.is_file() {
        return Err(format!(
            "`cargo build --workspace --all-targets` succeeded but {} does not exist",
            bin.display()
        ));
    }
    Ok(bin)
}

/// A `Command` for the outpost binary, with a clean environment for its logs (no inherited `RUST_LOG`,
/// no colour codes in log files).
pub fn outpost_command() -> Command {
    let mut cmd = Command::new(outpost_bin());
    cmd.env("RUST_BACKTRACE", "1")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    cmd
}

// ---------------------------------------------------------------------------------------------------------
// Ports and polling

/// A TCP port on 127.0.0.1 that was free a moment ago. The OS picks it; the harness never hands out the
/// same port twice in one process, so concurrent tests do not collide on ports they reserved but have not
/// bound yet.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0")
            .port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if seen.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` naming `what` and the
/// last state `describe` reports.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; last state: {}",
                describe()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The async twin of [`wait_for`], for tests running on a tokio runtime.
pub async fn wait_for_async<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; last state: {}",
                describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a finished child process said.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion with its output captured; kills it and panics (with what it printed so far)
/// if it runs longer than `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Finished {
    let dir = tempfile::tempdir().expect("a temp dir for the output");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("creating the stdout file"))
        .stderr(File::create(&err_path).expect("creating the stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for the child") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                read(&out_path),
                read(&err_path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Reproducible randomness

/// A small seeded PRNG (SplitMix64) for tests that inject faults at "random" moments: print the seed,
/// and a failure reproduces with it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed from the environment variable `var` when set (to replay a failure), else from the clock.
    /// Prints it either way, with the way to replay it.
    pub fn seed_from_env(var: &str) -> u64 {
        let seed = match std::env::var(var) {
            Ok(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{var}={v} is not a u64")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        eprintln!("random seed {seed} (replay with {var}={seed})");
        seed
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        lo + self.next_u64() % (hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Fault injection

/// A TCP peer on 127.0.0.1 that accepts connections and never answers: an exporter pointed at it hangs
/// until its own timeout, the way a destination behind a dead WAN link does. Connections stay open
/// (and what arrives is read and discarded) until the peer is dropped.
pub struct SilentPeer {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentPeer {
    pub fn start() -> SilentPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the silent peer");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((s, _)) = listener.accept() {
                    let _ = s.set_nonblocking(true);
                    conns.push(s);
                    accepted2.fetch_add(1, Ordering::Relaxed);
                }
                // Drain whatever the client wrote so it never blocks on a full socket buffer.
                for c in &mut conns {
                    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        SilentPeer {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 GET, usable from sync and async tests alike (no runtime involved)

/// A response to [`http_get`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// `GET http://{addr}{path}`, with a 5 s timeout. Blocking and dependency-free so the harness can call it
/// from anywhere, including inside an async test.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<HttpResponse> {
    http_request(addr, "GET", path, Duration::from_secs(5))
}

/// `POST http://{addr}{path}` with an empty body (an admin action such as `/-/reload`), 30 s timeout.
pub fn http_post(addr: SocketAddr, path: &str) -> std::io::Result<HttpResponse> {
    http_request(addr, "POST", path, Duration::from_secs(30))
}

fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let body = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{body}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http_response(&raw).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP/1.1 response")
    })
}

fn parse_http_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Metrics text

/// Sums the samples in Prometheus / OpenMetrics `text` that match `query`.
///
/// `query` is a metric name, optionally followed by label matchers in Prometheus syntax:
/// `outpost_receiver_accepted_items_total{signal="traces",transport="grpc"}` matches every series of that
/// name carrying (at least) those labels, whatever their order and whatever other labels it has.
pub fn sum_metric(text: &str, query: &str) -> f64 {
    let (name, wanted) =
        parse_series(query).unwrap_or_else(|| panic!("not a metric query: {query}"));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = parse_series(series.trim())?;
            (n == name && wanted.iter().all(|w| labels.contains(w)))
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        // fold, not sum: an empty f64 sum is -0.0, which reads oddly in assertion messages.
        .fold(0.0, |a, b| a + b)
}

/// `name{a="1",b="2"}` → (`name`, [(a, 1), (b, 2)]).
fn parse_series(s: &str) -> Option<(String, Vec<(String, String)>)> {
    let Some((name, rest)) = s.split_once('{') else {
        return Some((s.to_owned(), Vec::new()));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key.trim().to_owned(), value));
    }
    Some((name.to_owned(), labels))
}

/// A reqwest client builder. reqwest is built without a crypto provider of its own (outpost uses ring
/// only), so the provider is installed first; building a client without one panics.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

// ---------------------------------------------------------------------------------------------------------
// Agent

/// One outpost process under test. See the crate docs for the config placeholders.
pub struct Agent {
    child: Child,
    exit: Option<ExitStatus>,
    admin: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    config_path: PathBuf,
    // Last, so it is removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Agent {
    /// Writes `config_yaml` (placeholders filled in) to a fresh temp dir, runs `outpost run --config` on
    /// it, and waits until `/readyz` answers 200. Panics with the agent's log if it exits or is not ready
    /// within [`READY_TIMEOUT`].
    pub fn start(config_yaml: &str) -> Agent {
        let mut agent = Agent::spawn(config_yaml, None, &[]);
        agent.wait_ready();
        agent
    }

    /// Starts the process without waiting for readiness. `data_dir` overrides the fresh data directory
    /// (to run two agents on one); `extra_args` go after `run --config FILE`.
    pub fn spawn(config_yaml: &str, data_dir: Option<&Path>, extra_args: &[&str]) -> Agent {
        assert!(
            config_yaml.contains("@ADMIN@"),
            "test configs must put the admin endpoint on a port of their own: \
             `extensions: {{health_check: {{endpoint: @ADMIN@}}}}` (and list it in service.extensions)"
        );
        assert!(
            config_yaml.contains("@DATA_DIR@"),
            "test configs must give each agent its own data directory: `queue: {{directory: @DATA_DIR@}}`"
        );
        let dir = tempfile::Builder::new()
            .prefix("outpost-it-")
            .tempdir()
            .expect("creating the agent's temp dir");
        let data_dir = data_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("data"));
        let admin: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let yaml = config_yaml
            .replace("@ADMIN@", &admin.to_string())
            .replace("@DATA_DIR@", &data_dir.display().to_string())
            .replace("@DIR@", &dir.path().display().to_string());
        let config_path = dir.path().join("outpost.yaml");
        fs::write(&config_path, yaml).expect("writing the config");
        let log_path = dir.path().join("outpost.log");
        let log = File::create(&log_path).expect("creating the log file");
        let mut cmd = outpost_command();
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(extra_args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
        // If the test process dies without running destructors (SIGKILL by a test timeout), the agent
        // goes with it. Note the signal follows the *thread* that spawned the agent: start agents from the
        // test's own thread, which outlives the Agent value.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", outpost_bin().display()));
        Agent {
            child,
            exit: None,
            admin,
            data_dir,
            log_path,
            config_path,
            dir,
        }
    }

    /// Waits until `/readyz` answers 200; panics with the log if the process exits or times out first.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(r) = http_get(self.admin, "/readyz") {
                if r.status == 200 {
                    return;
                }
            }
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "outpost exited ({status}) before it was ready.\n--- config ---\n{}\n--- log ---\n{}",
                    self.config(),
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "outpost was not ready within {READY_TIMEOUT:?} (GET http://{}/readyz).\n--- config ---\n{}\n--- log ---\n{}",
                    self.admin,
                    self.config(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The exit status if the process has ended.
    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin endpoint (`/healthz`, `/readyz`, `/metrics`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The agent's temp dir (`@DIR@` in its config).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The agent's data directory (`@DATA_DIR@` in its config).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The config file the agent was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Fills in the placeholders of `config_yaml` as [`Agent::spawn`] does.
    pub fn fill(&self, config_yaml: &str) -> String {
        config_yaml
            .replace("@ADMIN@", &self.admin.to_string())
            .replace("@DATA_DIR@", &self.data_dir.display().to_string())
            .replace("@DIR@", &self.dir.path().display().to_string())
    }

    /// Replaces the config file the way an editor or a GitOps checkout does: a new file renamed over
    /// the old one, so the agent never reads half a file.
    pub fn write_config(&self, config_yaml: &str) {
        let tmp = self.config_path.with_extension("yaml.new");
        fs::write(&tmp, self.fill(config_yaml)).expect("writing the new config");
        fs::rename(&tmp, &self.config_path).expect("renaming the new config into place");
    }

    /// The config as written, placeholders filled in.
    pub fn config(&self) -> String {
        fs::read_to_string(&self.config_path).unwrap_or_default()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<cannot read the log: {e}>"))
    }

    /// The body of `GET /metrics`; panics if the endpoint does not answer 200.
    pub fn metrics_text(&self) -> String {
        match http_get(self.admin, "/metrics") {
            Ok(r) if r.status == 200 => r.body,
            Ok(r) => panic!("GET /metrics answered {}: {}", r.status, r.body),
            Err(e) => panic!("GET /metrics failed: {e}\n--- log ---\n{}", self.log()),
        }
    }

    /// The sum of the series matching `query` in `/metrics` (see [`sum_metric`]); 0 when none match.
    pub fn metric(&self, query: &str) -> f64 {
        sum_metric(&self.metrics_text(), query)
    }

    /// Waits up to 10 s for the series matching `query` to sum to `want`, and panics with the metrics if
    /// they do not. For counters updated after an event the test can see: an exporter counts what it
    /// sent when the destination's answer arrives, which is after the destination wrote it.
    pub fn await_metric(&self, query: &str, want: f64) {
        wait_for(
            Duration::from_secs(10),
            &format!("{query} = {want}"),
            || (self.metric(query) == want).then_some(()),
            || self.metrics_text(),
        );
    }

    /// Resident set size in KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// CPU time (user + system) the process has used, from `/proc/<pid>/stat`.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("reading /proc/<pid>/stat");
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
        let rest = &stat[stat.rfind(')').expect("a command name in /proc/<pid>/stat") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks / hz
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGHUP: reload the config file.
    pub fn sighup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// `kill -9`: the process gets no chance to flush or close anything. Waits until it is gone and
    /// returns its status (a signal, 9, unless it had already exited on its own).
    pub fn kill9(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_exit_status().is_none()
    }

    fn signal(&self, sig: libc::c_int) {
        if self.exit.is_none() {
            // SAFETY: plain kill(2) on our own, not yet reaped, child.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, sig);
            }
        }
    }

    /// Waits for the process to exit; panics with the log after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit_quietly(timeout) {
            Some(s) => s,
            None => panic!(
                "outpost (pid {}) did not exit within {timeout:?}.\n--- log ---\n{}",
                self.pid(),
                self.log()
            ),
        }
    }

    fn wait_exit_quietly(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exit {
            return Some(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.sigterm();
            if self.wait_exit_quietly(KILL_AFTER).is_none() {
                eprintln!(
                    "outpost (pid {}) ignored SIGTERM for {KILL_AFTER:?}; killing it",
                    self.pid()
                );
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if std::thread::panicking() {
            // The test failed: show what the agent said, the most useful clue there is.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!(
                "--- outpost log ({}, last {} lines) ---",
                self.log_path.display(),
                tail.len()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// An outpost receiving OTLP/gRPC on 127.0.0.1:`grpc` and writing traces to `@DIR@/traces.jsonl` (flushed
/// every 100 ms): the destination the delivery tests count arrivals at ([`delivery::Arrivals`]).
pub fn file_sink_config(grpc: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  file:
    path: "@DIR@/traces.jsonl"
    flush_interval: 100ms
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_queries_match_labels_in_any_order() {
        let text = "# TYPE outpost_x counter\n\
            outpost_x_total{receiver=\"otlp\",transport=\"grpc\",signal=\"traces\"} 5\n\
            outpost_x_total{receiver=\"otlp\",transport=\"http\",signal=\"traces\"} 7\n\
            outpost_x_total{receiver=\"otlp\",transport=\"http\",signal=\"logs\"} 1\n\
            outpost_x_created{receiver=\"otlp\"} 1700000000\n\
            outpost_y_total 2\n# EOF\n";
        assert_eq!(sum_metric(text, "outpost_x_total"), 13.0);
        assert_eq!(
            sum_metric(text, r#"outpost_x_total{signal="traces"}"#),
            12.0
        );
        assert_eq!(
            sum_metric(text, r#"outpost_x_total{signal="traces",transport="http"}"#),
            7.0
        );
        assert_eq!(
            sum_metric(text, r#"outpost_x_total{signal="metrics"}"#),
            0.0
        );
        assert_eq!(sum_metric(text, "outpost_y_total"), 2.0);
    }

    #[test]
    fn http_responses_parse_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready";
        let r = parse_http_response(plain).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ready"));
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n5\r\nready\r\n0\r\n\r\n";
        let r = parse_http_response(chunked).unwrap();
        assert_eq!((r.status, r.body.as_str()), (503, "not ready"));
    }

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
    }
}
