//! A real Prometheus server for tests: Debian's `prometheus` binary (`$OUTPOST_TEST_PROMETHEUS`, else
//! `prometheus` on the PATH, else `/usr/bin/prometheus`), started on a free 127.0.0.1 port with its own
//! temporary TSDB and a config with no scrape jobs, as a remote-write receiver with native histograms and
//! exemplar storage enabled. [`Prometheus::query`] and friends read it back through its HTTP API.
//!
//! The process is killed when the [`Prometheus`] value is dropped, and (through `PR_SET_PDEATHSIG`) when
//! the test process dies without running destructors.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, http_get};

/// How long Prometheus may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
    // Last, so it is removed after the process is gone.
    _dir: tempfile::TempDir,
}

/// The binary to run.
pub fn prometheus_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTPOST_TEST_PROMETHEUS") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("prometheus"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

impl Prometheus {
    /// Starts Prometheus and waits until it is ready. Panics with its log if it does not become ready.
    pub fn start() -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("outpost-prometheus-")
            .tempdir()
            .expect("a temp dir for Prometheus");
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("writing prometheus.yml");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log_path = dir.path().join("prometheus.log");
        let log = File::create(&log_path).expect("creating the Prometheus log");
        let bin = prometheus_bin();
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--enable-feature=native-histograms,exemplar-storage")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); install Debian's `prometheus` package or set OUTPOST_TEST_PROMETHEUS",
                bin.display()
            )
        });
        let mut p = Prometheus {
            child,
            addr,
            log_path,
            _dir: dir,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if matches!(http_get(addr, "/-/ready"), Ok(r) if r.status == 200) {
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!(
                    "Prometheus exited ({status}) before it was ready:\n{}",
                    p.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "Prometheus was not ready within {READY_TIMEOUT:?}:\n{}",
                    p.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The remote-write URL.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<cannot read the log: {e}>"))
    }

    /// `GET path?params` on the HTTP API; returns `data` of a successful answer. Panics otherwise.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        let url = format!("{path}?{}", query.join("&"));
        let r = http_get(self.addr, &url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let body: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| {
            panic!(
                "GET {url} answered {} with non-JSON ({e}): {}",
                r.status, r.body
            )
        });
        assert_eq!(
            body["status"], "success",
            "GET {url} answered {}: {}",
            r.status, r.body
        );
        body["data"].clone()
    }

    /// The result vector of an instant PromQL query.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        match self.api("/api/v1/query", &[("query", promql)])["result"].as_array() {
            Some(v) => v.clone(),
            None => panic!("{promql}: the result is not a vector"),
        }
    }

    /// The one sample an instant query returns: its labels and value. Panics unless there is exactly one.
    pub fn query_one(&self, promql: &str) -> (serde_json::Map<String, Value>, f64) {
        let result = self.query(promql);
        assert_eq!(result.len(), 1, "{promql}: {result:#?}");
        let labels = result[0]["metric"].as_object().cloned().unwrap_or_default();
        let value = result[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{promql}: no float value in {:?}", result[0]));
        (labels, value)
    }

    /// Label sets of every series matching `selector`.
    pub fn series(&self, selector: &str) -> Vec<serde_json::Map<String, Value>> {
        self.api("/api/v1/series", &[("match[]", selector)])
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_object().cloned()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding for a query-string component (RFC 3986 unreserved characters stay).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
