//! A TCP proxy on 127.0.0.1 with a cut switch: the WAN link between an agent and its destination, which
//! a test can cut and restore at will.
//!
//! While the link is up, every connection is forwarded to the target port byte for byte. [`TcpProxy::cut`]
//! closes every forwarded connection at once and, until [`TcpProxy::restore`], closes each new connection
//! as soon as it is accepted: the client sees its connection reset or closed, a fast retryable failure,
//! the way a dead uplink with a local router in front of it looks. The listening port stays the proxy's
//! all along, so nothing else can take it while the link is down.
//!
//! The proxy runs on a thread of its own with its own single-threaded tokio runtime, so sync and async
//! tests use it alike; dropping it stops the thread and closes every connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

struct Shared {
    open: AtomicBool,
    /// Bumped by every cut; each forwarding task ends when it changes.
    cuts: watch::Sender<u64>,
    forwarded: AtomicUsize,
    refused: AtomicUsize,
    bytes: AtomicU64,
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
        Self::spawn(target_port, true)
    }

    /// A proxy to `127.0.0.1:target_port` whose link starts cut.
    pub fn start_cut(target_port: u16) -> TcpProxy {
        Self::spawn(target_port, false)
    }

    fn spawn(target_port: u16, open: bool) -> TcpProxy {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding the proxy's listener");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener for tokio");
        let port = listener.local_addr().expect("the proxy's address").port();
        let target = SocketAddr::from(([127, 0, 0, 1], target_port));
        let (cuts, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            open: AtomicBool::new(open),
            cuts,
            forwarded: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let shared2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tcp-proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime");
                rt.block_on(serve(listener, target, shared2, stopped));
                // Dropping the runtime aborts the forwarding tasks, closing their connections.
            })
            .expect("spawning the proxy thread");
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

    /// Cuts the link: closes every forwarded connection now, and every new one until [`Self::restore`].
    pub fn cut(&self) {
        self.shared.open.store(false, Ordering::SeqCst);
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    /// Restores the link: new connections are forwarded again.
    pub fn restore(&self) {
        self.shared.open.store(true, Ordering::SeqCst);
    }

    pub fn is_open(&self) -> bool {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Connections forwarded so far.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    /// Connections closed on arrival because the link was cut.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Bytes forwarded (both directions) by connections that have ended.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }
}

async fn serve(
    listener: std::net::TcpListener,
    target: SocketAddr,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            a = listener.accept() => a,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        if !shared.open.load(Ordering::SeqCst) {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            // RST rather than FIN: the client learns at once that the link is gone.
            let _ = inbound.set_zero_linger();
            drop(inbound);
            continue;
        }
        shared.forwarded.fetch_add(1, Ordering::Relaxed);
        let mut cut = shared.cuts.subscribe();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                return; // nothing listens behind the proxy: the client sees its connection close
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {
                    if let Ok((up, down)) = r {
                        shared.bytes.fetch_add(up + down, Ordering::Relaxed);
                    }
                }
                _ = cut.changed() => {
                    let _ = inbound.set_zero_linger();
                }
            }
        });
    }
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
    use std::time::Duration;

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
    fn forwards_until_cut_and_again_once_restored() {
        let proxy = TcpProxy::start(echo_server());
        let mut before = connect(proxy.port());
        assert_eq!(echo(&mut before, b"hello").unwrap(), b"hello");

        proxy.cut();
        assert!(!proxy.is_open());
        // The forwarded connection is closed...
        assert!(closed_by_peer(&mut before), "a cut closes live connections");
        // ...and new ones are closed on arrival.
        let mut during = connect(proxy.port());
        assert!(closed_by_peer(&mut during), "a cut link refuses");
        assert!(proxy.refused() >= 1);

        proxy.restore();
        let mut after = connect(proxy.port());
        assert_eq!(echo(&mut after, b"back").unwrap(), b"back");
        assert_eq!(proxy.forwarded(), 2);
    }
}
