//! The accept loop. `axum::serve` gives hyper no timer, so a client that opens a
//! connection and never finishes its headers (or trickles them, slowloris) held it for
//! ever, and nothing capped how many connections were open. Here every connection is
//! served by hyper's HTTP/1 with a header read timeout (which also ends idle keep-alive
//! connections: the timer runs while hyper waits for the next request's head), and
//! connections take a permit of a semaphore while they are served. An HTTP/2 connection
//! with no stream for the same timeout is closed too (`http::streams`).
//!
//! With TLS the handshake comes first, bounded by the same timeout, and ALPN picks
//! HTTP/2 or HTTP/1.1; plain connections are always HTTP/1.1 (no h2c). hyper-util's
//! `auto` builder is not used: it sniffs for the HTTP/2 preface with no timer at all,
//! so a client that sends nothing would hold its connection for ever.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use super::streams::{Streams, counted};

/// The largest request head (request line and headers) read into memory.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What bounds the connections.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown`
/// resolves, then lets every connection finish its request (WebSockets are closed by
/// their own shutdown before this).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Each connection task holds a receiver: closing the sender asks them to finish, and
    // `closed` on it waits until every one has.
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Without TCP_NODELAY a small write that follows an unacknowledged one waits for
        // the peer's delayed ACK (up to 40 ms): a realtime event sent soon after the
        // previous frame on the same socket arrived tens of ms late (BENCHMARKS.md).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let peer = Peer {
            router: router.clone(),
            addr,
        };
        let stop = stop_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(TokioIo::new(tcp), Proto::Http1, peer, limits, stop).await,
                Some(acceptor) => serve_tls(acceptor, tcp, peer, limits, stop).await,
            }
        });
    }
    drop(stop_rx);
    drop(listener);
    let _ = stop_tx.send(());
    stop_tx.closed().await;
}

/// What one connection serves: the router, for this peer. Passed as it is (not as a
/// mapped service, whose type has no name) so the functions on the way need no bounds.
struct Peer {
    router: Router,
    addr: std::net::SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
}

/// The TLS handshake, then the protocol ALPN chose (HTTP/1.1 when the client named none).
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: Peer,
    limits: ServeLimits,
    mut stop: watch::Receiver<()>,
) {
    // Bounded like a request head: a client that opens a connection and never finishes
    // the handshake would otherwise hold a permit for ever.
    let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
        _ = stop.changed() => return,
    };
    // An ACME CA validating TLS-ALPN-01: the handshake (its certificate) was the answer,
    // and no HTTP follows (RFC 8737 §3).
    if stream.get_ref().1.alpn_protocol() == Some(crate::acme::ACME_TLS_ALPN) {
        // Only completes while a challenge is pending (else there is no certificate).
        tracing::info!(peer = %peer.addr, "answered an ACME TLS-ALPN-01 validation");
        let mut stream = stream;
        let _ = tokio::time::timeout(limits.header_timeout, stream.shutdown()).await;
        return;
    }
    let proto = match stream.get_ref().1.alpn_protocol() {
        Some(b"h2") => Proto::Http2,
        _ => Proto::Http1,
    };
    serve_connection(TokioIo::new(stream), proto, peer, limits, stop).await;
}

/// Drives one connection until it ends, or until `stop` asks it to finish: then it
/// shuts down gracefully (the request in flight completes).
/// Also when `idle` resolves (HTTP/2: no stream for the header timeout).
macro_rules! drive {
    ($conn:expr, $stop:expr, $idle:expr) => {{
        let mut conn = pin!($conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = $stop.changed() => {}
            _ = $idle => tracing::trace!("idle connection closed"),
        }
        conn.as_mut().graceful_shutdown();
        if let Err(e) = conn.await {
            tracing::trace!(error = %e, "connection ended with an error");
        }
    }};
}

/// One code path for plain and TLS connections: only the protocol differs.
async fn serve_connection<I>(
    io: I,
    proto: Proto,
    peer: Peer,
    limits: ServeLimits,
    mut stop: watch::Receiver<()>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let Peer { router, addr } = peer;
    // Handlers see the peer's address (`ConnectInfo`) and axum's body type.
    let service = router
        .map_request(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(addr));
                req.map(axum::body::Body::new)
            },
        )
        .map_err(|e: Infallible| -> Infallible { match e {} });
    match proto {
        Proto::Http1 => drive!(
            hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                // A request head over 64 KiB is refused (431) instead of buffered
                // (hyper's default allows ~400 KiB per connection).
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(io, TowerToHyperService::new(service))
                .with_upgrades(),
            stop,
            std::future::pending::<()>()
        ),
        Proto::Http2 => {
            let streams = Streams::default();
            let service = TowerToHyperService::new(counted(streams.clone(), service));
            drive!(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    // The same 64 KiB bound on a request's headers as over HTTP/1.1.
                    .max_header_list_size(MAX_HEAD_BYTES as u32)
                    // HTTP/2 has no header read timeout; a ping that goes unanswered for
                    // the header timeout ends a connection whose peer is gone.
                    .keep_alive_interval(Some(limits.header_timeout))
                    .keep_alive_timeout(limits.header_timeout)
                    // WebSockets over HTTP/2 (RFC 8441): browsers that see this setting open
                    // the realtime socket as a stream of the connection they already have.
                    .enable_connect_protocol()
                    .serve_connection(io, service),
                stop,
                // The header timeout bounds an idle connection, as over HTTP/1.1.
                streams.idle_for(limits.header_timeout)
            )
        }
    }
}
