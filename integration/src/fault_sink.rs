//! A scripted HTTP/1.1 destination for fault injection: it records every request (time, path, headers,
//! body) and answers each with whatever the test's script says — 503 with Retry-After, 400, 413 for large
//! bodies. Only for the failures a real backend cannot be made to produce on demand.
//!
//! It runs on a thread of its own with a single-threaded tokio runtime, like [`crate::proxy::TcpProxy`],
//! and stops when dropped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// As received (still compressed if the client compressed it).
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body with its Content-Encoding (gzip or none) undone.
    pub fn decoded_body(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            Some("gzip") => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&self.body[..]),
                    &mut out,
                )
                .expect("a gzip body");
                out
            }
            _ => self.body.clone(),
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

type Script = Box<dyn FnMut(&Seen, usize) -> Reply + Send>;

/// See the module docs.
pub struct FaultSink {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultSink {
    /// A sink on a free port answering each request with `script(request, index)`, where `index` counts
    /// requests from 0.
    pub fn start(script: impl FnMut(&Seen, usize) -> Reply + Send + 'static) -> FaultSink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the sink");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let (stop, stopped) = oneshot::channel::<()>();
        let seen2 = seen.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-sink-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the sink's runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let mut stopped = stopped;
                    loop {
                        let conn = tokio::select! {
                            _ = &mut stopped => return,
                            c = listener.accept() => c,
                        };
                        let Ok((conn, _)) = conn else { continue };
                        tokio::spawn(serve(conn, seen2.clone(), script.clone()));
                    }
                });
            })
            .expect("spawning the sink thread");
        FaultSink {
            port,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; panics with what did arrive after `timeout`.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests at the sink within {timeout:?}, got {}",
                seen.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

async fn serve(
    conn: tokio::net::TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<Script>>,
) {
    let (read, mut write) = conn.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        match read.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if read.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let request = Seen {
            at: Instant::now(),
            path,
            headers,
            body,
        };
        let reply = {
            let mut seen = seen.lock().unwrap();
            let index = seen.len();
            seen.push(request.clone());
            (script.lock().unwrap())(&request, index)
        };
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&reply.body);
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

impl Drop for FaultSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
