//! Listening sockets with a bound on concurrent connections.
//!
//! A [`LimitedListener`] takes a semaphore permit before accepting, and the accepted stream holds the
//! permit until it closes. At the bound, new connections wait in the kernel's accept backlog instead of
//! costing memory here: a burst of clients cannot grow the process.
//!
//! With TLS, the listener completes each handshake in a task of its own (bounded by a timeout) and hands
//! over only finished connections, with the peer's address and client-certificate names ([`PeerInfo`]),
//! which tonic and axum put into every request's extensions for the receivers' authentication. Failed
//! handshakes (no client certificate, an untrusted one) are counted by reason.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use outpost_pipelines::telemetry::ReceiverMetrics;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Who is on the other end of a connection: the address, and with mTLS the names its certificate proves.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// Subject CN and SANs of the client certificate; `None` without mTLS.
    pub cert_names: Option<Arc<Vec<String>>>,
}

/// TLS on a listener: the server config and where handshake failures are counted.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub metrics: ReceiverMetrics,
}

/// How long a client has to complete the TLS handshake; a client that stalls it holds a connection slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Handshaken = (LimitedStream, SocketAddr);

enum Source {
    Plain(TcpListener),
    /// Handshakes run in their own tasks, so one slow client never delays the others' accepts; the
    /// finished connections arrive here.
    Tls {
        ready: mpsc::Receiver<Handshaken>,
        local: io::Result<SocketAddr>,
    },
}

pub struct LimitedListener {
    source: Source,
    permits: Arc<Semaphore>,
}

impl LimitedListener {
    pub fn new(listener: TcpListener, max_connections: usize) -> Self {
        Self {
            source: Source::Plain(listener),
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
        }
    }

    /// Like [`LimitedListener::new`], with TLS when `tls` is set. Needs a tokio runtime.
    pub fn with_tls(listener: TcpListener, max_connections: usize, tls: Option<ServerTls>) -> Self {
        let Some(tls) = tls else {
            return Self::new(listener, max_connections);
        };
        let permits = Arc::new(Semaphore::new(max_connections.max(1)));
        let local = listener.local_addr();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(tls_accept_loop(listener, permits.clone(), tls, tx));
        Self {
            source: Source::Tls { ready: rx, local },
            permits,
        }
    }

    pub async fn accept_limited(&mut self) -> (LimitedStream, SocketAddr) {
        match &mut self.source {
            Source::Plain(listener) => {
                let permit = self
                    .permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let (stream, addr) = accept_tcp(listener).await;
                (
                    LimitedStream {
                        inner: Conn::Plain(stream),
                        peer: PeerInfo {
                            addr,
                            cert_names: None,
                        },
                        _permit: permit,
                    },
                    addr,
                )
            }
            Source::Tls { ready, .. } => match ready.recv().await {
                Some(conn) => conn,
                // The accept loop only ends when this receiver is gone; never reached while it exists.
                None => std::future::pending().await,
            },
        }
    }

    /// The accepted connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<LimitedStream>> + Send {
        futures::stream::unfold(self, |mut l| async move {
            let (s, _) = l.accept_limited().await;
            Some((Ok(s), l))
        })
    }

    fn local(&self) -> io::Result<SocketAddr> {
        match &self.source {
            Source::Plain(l) => l.local_addr(),
            Source::Tls { local, .. } => local
                .as_ref()
                .map(|a| *a)
                .map_err(|e| io::Error::new(e.kind(), e.to_string())),
        }
    }
}

async fn accept_tcp(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                return (stream, addr);
            }
            // EMFILE and friends: back off instead of spinning; the listener stays usable.
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying in 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn tls_accept_loop(
    listener: TcpListener,
    permits: Arc<Semaphore>,
    tls: ServerTls,
    ready: mpsc::Sender<Handshaken>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = ready.closed() => return,
        };
        let (stream, addr) = tokio::select! {
            s = accept_tcp(&listener) => s,
            _ = ready.closed() => return,
        };
        let (acceptor, ready, metrics) = (acceptor.clone(), ready.clone(), tls.metrics.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let cert_names = tls_stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::new(crate::tls::certificate_names(c)));
                    let conn = LimitedStream {
                        inner: Conn::Tls(Box::new(tls_stream)),
                        peer: PeerInfo { addr, cert_names },
                        _permit: permit,
                    };
                    let _ = ready.send((conn, addr)).await;
                }
                Ok(Err(e)) => {
                    let reason = crate::tls::handshake_failure_reason(&e);
                    metrics.auth_failed(reason);
                    tracing::debug!(%addr, error = %e, reason, "TLS handshake failed");
                }
                Err(_) => {
                    metrics.auth_failed("tls_handshake_timeout");
                    tracing::debug!(%addr, "TLS handshake timed out");
                }
            }
        });
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_limited().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.local()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LimitedListener>>
    for PeerInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, LimitedListener>) -> Self {
        stream.io().peer.clone()
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A connection that returns its permit when dropped.
pub struct LimitedStream {
    inner: Conn,
    peer: PeerInfo,
    _permit: OwnedSemaphorePermit,
}

impl LimitedStream {
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.inner {
            Conn::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Conn::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_shutdown(cx))
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for LimitedStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

/// Binds `addr`, naming the config key in the error so the operator knows which setting to change.
pub async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        format!("{key}: cannot listen on {addr}: {e} (is another process using the port?)")
    })
}
