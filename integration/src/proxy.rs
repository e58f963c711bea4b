//! A TCP proxy on 127.0.0.1 with a switch: the WAN link between an agent and its destination, which a
//! test can break and restore at will, in two ways:
//!
//! - [`TcpProxy::cut`]: the link drops. Every forwarded connection is reset at once and, until
//!   [`TcpProxy::restore`], each new connection is accepted and reset straight away, the way a middlebox
//!   (NAT gateway, L4 load balancer, sidecar) in front of a dead uplink behaves: TCP connects, then the
//!   connection dies mid-handshake or mid-request.
//! - [`TcpProxy::take_down`]: the destination is gone. Live connections are reset and the proxy stops
//!   listening, so connecting is refused (ECONNREFUSED) until [`TcpProxy::restore`] listens again on the
//!   same port.
//!
//! While the link is up, every connection is forwarded to the target port byte for byte, optionally slowed
//! the way a WAN is: [`TcpProxy::set_latency`] delays every chunk by a fixed time, [`TcpProxy::set_throttle`]
//! caps the bytes per second in each direction. [`TcpProxy::bytes`] counts forwarded bytes as they pass,
//! so a test can measure the rate a client really uses. The proxy runs
//! on a thread of its own with its own single-threaded tokio runtime, so sync and async tests use it
//! alike; dropping it stops the thread and closes every connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

/// The state of the link a [`TcpProxy`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Forwarding.
    Up,
    /// Accepting and resetting every connection ([`TcpProxy::cut`]).
    Cut,
    /// Not listening: connections are refused ([`TcpProxy::take_down`]).
    Down,
}

struct Shared {
    link: watch::Sender<Link>,
    /// Bumped by every cut or take-down; each forwarding task ends when it changes.
    breaks: watch::Sender<u64>,
    forwarded: AtomicUsize,
    refused: AtomicUsize,
    bytes: AtomicU64,
    /// Client-to-target bytes (what an exporter puts on the wire).
    upstream_bytes: AtomicU64,
    latency_ms: AtomicU64,
    /// Bytes per second per direction; 0 means unlimited.
    throttle: AtomicU64,
}

/// See the module docs.
pub struct TcpProxy {
    port: u16,
    target: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpProxy {
    /// A proxy to `127.0.0.1:target_port`, link up.
    pub fn start(target_port: u16) -> TcpProxy {
        Self::spawn(target_port, Link::Up)
    }

    /// A proxy to `127.0.0.1:target_port` whose link starts cut (connections accepted, then reset).
    pub fn start_cut(target_port: u16) -> TcpProxy {
        Self::spawn(target_port, Link::Cut)
    }

    /// A proxy to `127.0.0.1:target_port` whose link starts down (connections refused). The port is
    /// reserved by binding it first, then released.
    pub fn start_down(target_port: u16) -> TcpProxy {
        Self::spawn(target_port, Link::Down)
    }

    fn spawn(target_port: u16, link: Link) -> TcpProxy {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding the proxy's listener");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener for tokio");
        let port = listener.local_addr().expect("the proxy's address").port();
        let target = SocketAddr::from(([127, 0, 0, 1], target_port));
        let (link, _) = watch::channel(link);
        let (breaks, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            link,
            breaks,
            forwarded: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            upstream_bytes: AtomicU64::new(0),
            latency_ms: AtomicU64::new(0),
            throttle: AtomicU64::new(0),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let shared2 = shared.clone();
        let (bound, bound_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("tcp-proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime");
                rt.block_on(serve(listener, port, target, shared2, stopped, bound));
                // Dropping the runtime aborts the forwarding tasks, closing their connections.
            })
            .expect("spawning the proxy thread");
        // A proxy that starts down has released its port by the time this returns.
        let _ = bound_rx.recv_timeout(Duration::from_secs(5));
        TcpProxy {
            port,
            target,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Cuts the link: resets every forwarded connection now, and every new one until [`Self::restore`].
    pub fn cut(&self) {
        self.set(Link::Cut);
    }

    /// Takes the destination down: resets every forwarded connection and stops listening until
    /// [`Self::restore`].
    pub fn take_down(&self) {
        self.set(Link::Down);
    }

    /// Restores the link: listening (again, on the same port) and forwarding new connections.
    pub fn restore(&self) {
        self.set(Link::Up);
        // Wait until the listener is back, so a test may rely on the port once this returns.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the proxy could not listen on port {} again",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn set(&self, link: Link) {
        self.shared.link.send_replace(link);
        if link != Link::Up {
            self.shared.breaks.send_modify(|n| *n += 1);
        }
    }

    pub fn link(&self) -> Link {
        *self.shared.link.borrow()
    }

    /// Connections forwarded so far (the probe [`Self::restore`] makes is one).
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    /// Connections reset on arrival because the link was cut.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far, both directions.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far from clients to the target.
    pub fn upstream_bytes(&self) -> u64 {
        self.shared.upstream_bytes.load(Ordering::Relaxed)
    }

    /// Delays every forwarded chunk by `latency` (0 to turn it off).
    pub fn set_latency(&self, latency: Duration) {
        self.shared
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Caps each direction of each connection at `bytes_per_second` (`None`: unlimited).
    pub fn set_throttle(&self, bytes_per_second: Option<u64>) {
        self.shared
            .throttle
            .store(bytes_per_second.unwrap_or(0), Ordering::Relaxed);
    }
}

/// Listens on `port` again (the port was ours a moment ago; SO_REUSEADDR lets us take it back).
fn rebind(port: u16) -> tokio::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => {
                l.set_nonblocking(true).expect("a non-blocking listener");
                return tokio::net::TcpListener::from_std(l).expect("a tokio listener");
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the proxy cannot listen on port {port} again: {e}"),
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    port: u16,
    target: SocketAddr,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
    bound: std::sync::mpsc::Sender<()>,
) {
    let mut link = shared.link.subscribe();
    let mut listener = Some(tokio::net::TcpListener::from_std(listener).expect("a tokio listener"));
    let mut bound = Some(bound);
    loop {
        let state = *link.borrow_and_update();
        match state {
            Link::Down => listener = None,
            _ if listener.is_none() => listener = Some(rebind(port)),
            _ => {}
        }
        if let Some(b) = bound.take() {
            let _ = b.send(());
        }
        let accepted = match &listener {
            None => {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = link.changed() => continue,
                }
            }
            Some(l) => tokio::select! {
                _ = &mut stopped => return,
                _ = link.changed() => continue,
                a = l.accept() => a,
            },
        };
        let Ok((inbound, _)) = accepted else {
            continue;
        };
        if *shared.link.borrow() != Link::Up {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            // RST rather than FIN: the client learns at once that the link is gone.
            let _ = inbound.set_zero_linger();
            drop(inbound);
            continue;
        }
        shared.forwarded.fetch_add(1, Ordering::Relaxed);
        let mut broken = shared.breaks.subscribe();
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut inbound = inbound;
            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                let _ = inbound.set_zero_linger();
                return; // nothing listens behind the proxy: the client sees its connection reset
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.split();
            let (out_read, out_write) = outbound.split();
            tokio::select! {
                _ = async {
                    tokio::join!(
                        pump(in_read, out_write, &shared, true),
                        pump(out_read, in_write, &shared, false)
                    )
                } => {}
                _ = broken.changed() => {
                    let _ = inbound.set_zero_linger();
                }
            }
        });
    }
}

/// Copies one direction of a connection chunk by chunk, counting as it goes and applying the latency and
/// throttle in force; closes the write side when the read side ends.
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    shared: &Shared,
    upstream: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let latency = shared.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let rate = shared.throttle.load(Ordering::Relaxed);
        if rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
        // Counted before the write: once the peer has the bytes it may read the counters at once, and
        // must find them there.
        shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if upstream {
            shared.upstream_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// An echo server on its own thread; returns its port.
    fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    fn echo(conn: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        conn.write_all(msg)?;
        let mut back = vec![0u8; msg.len()];
        conn.read_exact(&mut back)?;
        Ok(back)
    }

    /// Whether the peer closed `conn` (FIN or RST) rather than leaving it open until the read timeout.
    fn closed_by_peer(conn: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        match conn.read(&mut buf) {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    fn connect(port: u16) -> TcpStream {
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    }

    #[test]
    fn throttle_and_latency_slow_the_link_and_bytes_are_counted_live() {
        let proxy = TcpProxy::start(echo_server());
        let mut conn = connect(proxy.port());
        proxy.set_throttle(Some(100_000));
        let msg = vec![7u8; 1000];
        let start = Instant::now();
        for _ in 0..50 {
            assert_eq!(echo(&mut conn, &msg).unwrap(), msg);
        }
        // 50 KB each way at 100 KB/s per direction: at least 0.5 s.
        assert!(
            start.elapsed() >= Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(proxy.upstream_bytes(), 50_000);
        assert_eq!(
            proxy.bytes(),
            100_000,
            "counted while the connection is open"
        );
        proxy.set_throttle(None);
        proxy.set_latency(Duration::from_millis(100));
        let start = Instant::now();
        assert_eq!(echo(&mut conn, &msg).unwrap(), msg);
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn forwards_until_cut_and_again_once_restored() {
        let proxy = TcpProxy::start(echo_server());
        let mut before = connect(proxy.port());
        assert_eq!(echo(&mut before, b"hello").unwrap(), b"hello");

        proxy.cut();
        assert_eq!(proxy.link(), Link::Cut);
        // The forwarded connection is closed...
        assert!(closed_by_peer(&mut before), "a cut closes live connections");
        // ...and new ones are closed on arrival.
        let mut during = connect(proxy.port());
        assert!(closed_by_peer(&mut during), "a cut link refuses");
        assert!(proxy.refused() >= 1);

        proxy.restore();
        let mut after = connect(proxy.port());
        assert_eq!(echo(&mut after, b"back").unwrap(), b"back");
        assert!(proxy.forwarded() >= 2);
    }

    #[test]
    fn refuses_connections_while_down_and_listens_again_on_the_same_port() {
        let proxy = TcpProxy::start_down(echo_server());
        assert_eq!(proxy.link(), Link::Down);
        let refused = TcpStream::connect(("127.0.0.1", proxy.port()))
            .expect_err("nothing listens while the link is down");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

        proxy.restore();
        let mut up = connect(proxy.port());
        assert_eq!(echo(&mut up, b"up").unwrap(), b"up");

        proxy.take_down();
        assert!(
            closed_by_peer(&mut up),
            "taking it down resets live connections"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", proxy.port())).is_ok() {
            assert!(Instant::now() < deadline, "still listening after take_down");
            std::thread::sleep(Duration::from_millis(10));
        }
        proxy.restore();
        let mut again = connect(proxy.port());
        assert_eq!(echo(&mut again, b"again").unwrap(), b"again");
    }
}
