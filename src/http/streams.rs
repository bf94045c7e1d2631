//! The idle bound of an HTTP/2 connection. HTTP/1.1 gets it from hyper's header read
//! timeout (the timer runs while hyper waits for the next request); HTTP/2 has nothing
//! like it, so a client that keeps its connection open and sends nothing held it, and a
//! connection permit, for ever (keep-alive pings only catch a peer that is gone).
//!
//! Here each HTTP/2 connection counts its streams in progress: a request from its head
//! until its answer's body is sent or dropped, and a WebSocket opened by extended
//! CONNECT (RFC 8441) for as long as the socket lives (the realtime route holds its
//! [`StreamGuard`]). After the header timeout with none, the connection is shut down
//! gracefully (GOAWAY).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::watch;
use tower::ServiceExt;

/// The streams in progress on one connection.
#[derive(Clone)]
pub struct Streams(Arc<watch::Sender<usize>>);

/// One stream in progress; the stream ends when the last clone is dropped.
#[derive(Clone)]
pub struct StreamGuard {
    _open: Arc<Open>,
}

struct Open(Arc<watch::Sender<usize>>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Default for Streams {
    fn default() -> Streams {
        Streams(Arc::new(watch::channel(0).0))
    }
}

impl Streams {
    fn open(&self) -> StreamGuard {
        self.0.send_modify(|n| *n += 1);
        StreamGuard {
            _open: Arc::new(Open(self.0.clone())),
        }
    }

    /// Resolves once no stream has been in progress for `after`.
    pub async fn idle_for(&self, after: Duration) {
        let mut rx = self.0.subscribe();
        loop {
            // The sender lives as long as `self`: these waits end only by a change. (The
            // answers are made bools at once: a `watch::Ref` held over an await would
            // make this future !Send.)
            let gone = rx.wait_for(|n| *n == 0).await.is_err();
            if gone {
                return std::future::pending().await;
            }
            let busy = tokio::time::timeout(after, rx.wait_for(|n| *n > 0))
                .await
                .map(|r| r.is_ok());
            match busy {
                Err(_) => return,
                Ok(false) => return std::future::pending().await,
                Ok(true) => {}
            }
        }
    }
}

/// `service`, with each request counted as a stream of `streams` until its answer's body
/// ends; the request carries the stream's [`StreamGuard`] for handlers that outlive it.
pub fn counted<S>(
    streams: Streams,
    service: S,
) -> impl tower::Service<
    axum::extract::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static
where
    S: tower::Service<
            axum::extract::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    tower::service_fn(
        move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            let guard = streams.open();
            req.extensions_mut().insert(guard.clone());
            let answer = service.clone().oneshot(req);
            async move {
                let res = answer.await?;
                Ok(res.map(|body| {
                    Body::new(Guarded {
                        body,
                        _guard: guard,
                    })
                }))
            }
        },
    )
}

/// An answer's body that keeps its stream counted until it is sent or dropped.
struct Guarded {
    body: Body,
    _guard: StreamGuard,
}

impl HttpBody for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The request's stream over HTTP/2 (none over HTTP/1.1), for a handler whose work
/// outlives its answer (a WebSocket).
pub struct HeldStream(pub Option<StreamGuard>);

impl<S: Send + Sync> FromRequestParts<S> for HeldStream {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(HeldStream(parts.extensions.get::<StreamGuard>().cloned()))
    }
}
