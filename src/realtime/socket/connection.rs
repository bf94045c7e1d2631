//! The socket's task: one loop over the client's frames, the kill and shutdown signals,
//! the token's expiry, direct writes left unflushed, queued events and pings.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::{FuturesUnordered, SplitStream, StreamFuture};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Connection, close};
use crate::realtime::outbox::{Kill, Outbox, Sink, Writer};
use crate::realtime::protocol::{self, ServerMsg};

/// What the socket loop does after one of its wake-ups.
enum Next {
    /// Keep serving.
    Go,
    /// End: the client left, or a write failed or stalled.
    End,
    /// End with this close frame.
    Close(Message),
    /// The socket was killed from outside; its frames say why.
    Killed,
}

type Reads = FuturesUnordered<StreamFuture<SplitStream<WebSocket>>>;

impl Connection {
    /// Runs until the client leaves or the socket is closed.
    pub(crate) async fn run(
        mut self,
        socket: WebSocket,
        mut events: mpsc::Receiver<String>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let (sink, stream) = socket.split();
        let shared = self.shared.clone();
        *shared.writer.lock().await = Some(Writer {
            sink,
            unflushed: false,
        });
        // The read side sits in a FuturesUnordered of one, which polls it only when its
        // own waker fired (the client sent something), not on every wake-up of the task.
        let mut reads = FuturesUnordered::new();
        reads.push(stream.into_future());
        let mut ping = tokio::time::interval(self.broker.config.ping_interval);
        ping.tick().await;
        let mut last_heard = Instant::now();
        // Futures that live across iterations, so a wake-up costs no re-registration:
        // the kill signal, the shutdown signal, a direct write's unfinished flush, and the
        // token's expiry (re-armed whenever the socket's token changes).
        let killed = shared.killed.notified();
        tokio::pin!(killed);
        // Registered now: `kill` wakes only the waiters it finds.
        killed.as_mut().enable();
        let shutdown_changed = shutdown.changed();
        tokio::pin!(shutdown_changed);
        let flush_wanted = shared.flush.notified();
        tokio::pin!(flush_wanted);
        let expiry = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(expiry);
        let mut armed_for = self.arm_expiry(expiry.as_mut(), None);
        let mut next = if shared.killed_for() == Kill::None {
            Next::Go
        } else {
            Next::Killed
        };
        while let Next::Go = next {
            next = tokio::select! {
                biased;
                Some((frame, rest)) = reads.next() => match frame {
                    // None: the client went away (the stream is done, so not put back).
                    None => Next::End,
                    Some(frame) => {
                        reads.push(rest.into_future());
                        last_heard = Instant::now();
                        self.on_frame(frame, expiry.as_mut(), &mut armed_for).await
                    }
                },
                _ = &mut killed => Next::Killed,
                _ = &mut shutdown_changed => Next::Close(close(1001, "server shutting down")),
                // Before the events: under a steady flood of events, a subscription whose
                // token expired must still end on time.
                _ = &mut expiry, if armed_for.is_some() => {
                    // The socket becomes anonymous, so this fires once per token.
                    armed_for = None;
                    self.on_expiry().await
                }
                _ = &mut flush_wanted => {
                    flush_wanted.set(shared.flush.notified());
                    self.on_flush().await
                }
                Some(text) = events.recv() => self.on_events(text, &mut events).await,
                _ = ping.tick() => self.on_ping(last_heard).await,
            };
        }
        let closing = match next {
            Next::Close(frame) => Some(frame),
            Next::Killed => self.kill_frames(&mut events).await,
            Next::Go | Next::End => None,
        };
        self.finish(closing, reads).await;
    }

    /// A frame from the client, answered under the writer: events of a subscription
    /// being set up queue behind its `subscribed` and history.
    async fn on_frame(
        &mut self,
        frame: Result<Message, axum::Error>,
        expiry: std::pin::Pin<&mut tokio::time::Sleep>,
        armed_for: &mut Option<i64>,
    ) -> Next {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                // A frame over the limit is a protocol error of the client's; say so with
                // the standard code rather than just dropping it.
                let text = e.to_string();
                return Next::Close(
                    if text.contains("too long") || text.contains("Space limit") {
                        close(1009, "message too big")
                    } else {
                        close(1002, "protocol error")
                    },
                );
            }
        };
        let shared = self.shared.clone();
        let stall = self.broker.config.idle_timeout;
        let mut writer = shared.writer.lock().await;
        let Some(w) = writer.as_mut() else {
            return Next::End;
        };
        let reply = match frame {
            Message::Text(text) => {
                // Boxed: the handler's future is large (subscribe, snapshot, replay), and
                // inline it would make every idle socket's task as large. It may be
                // dropped at any await (a kill while a snapshot waits for a client that
                // stopped reading): a subscription is registered in its feed and in
                // `subs` with no await in between, so `detach_all` finds it.
                let handled = Box::pin(self.handle_text(text.as_str(), &mut w.sink));
                let r = match guarded(&shared, stall, handled).await {
                    Ok(r) => r,
                    Err(Interrupted::Killed) => return Next::Killed,
                    Err(Interrupted::Stalled) => return Next::End,
                };
                *armed_for = self.arm_expiry(expiry, *armed_for);
                r
            }
            Message::Binary(_) => Some(protocol::error(
                None,
                "binary_not_supported",
                "send text frames holding JSON",
            )),
            Message::Close(_) => return Next::End,
            Message::Ping(_) | Message::Pong(_) => None,
        };
        match reply {
            Some(text) => {
                let sent = guarded(&shared, stall, w.sink.send(Message::Text(text.into())));
                after_write(sent.await)
            }
            None => Next::Go,
        }
    }

    /// The token expired: the subscriptions that depended on it end.
    async fn on_expiry(&mut self) -> Next {
        let texts = self.token_expired();
        let shared = self.shared.clone();
        let mut writer = shared.writer.lock().await;
        let Some(w) = writer.as_mut() else {
            return Next::End;
        };
        let stall = self.broker.config.idle_timeout;
        after_write(guarded(&shared, stall, write_texts(&mut w.sink, texts)).await)
    }

    /// A direct write of the dispatcher could not flush everything: finish it.
    async fn on_flush(&self) -> Next {
        let mut writer = self.shared.writer.lock().await;
        let Some(w) = writer.as_mut() else {
            return Next::End;
        };
        if !w.unflushed {
            return Next::Go;
        }
        let stall = self.broker.config.idle_timeout;
        let next = after_write(guarded(&self.shared, stall, w.sink.flush()).await);
        if let Next::Go = next {
            w.unflushed = false;
        }
        next
    }

    /// Queued events: this one and whatever else is already queued, in one flush.
    async fn on_events(&self, first: String, events: &mut mpsc::Receiver<String>) -> Next {
        let mut batch = vec![first];
        while batch.len() < 64 {
            match events.try_recv() {
                Ok(t) => batch.push(t),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let mut writer = self.shared.writer.lock().await;
        let Some(w) = writer.as_mut() else {
            return Next::End;
        };
        let stall = self.broker.config.idle_timeout;
        let next = after_write(guarded(&self.shared, stall, write_texts(&mut w.sink, batch)).await);
        if let Next::Go = next {
            w.unflushed = false;
            // Written, under the writer: the dispatcher may write directly again once
            // nothing is queued.
            self.shared.queued.fetch_sub(n, Ordering::SeqCst);
        }
        next
    }

    /// A ping, unless the client has been silent past the idle timeout.
    async fn on_ping(&self, last_heard: Instant) -> Next {
        let cfg = &self.broker.config;
        if last_heard.elapsed() > cfg.idle_timeout {
            return Next::Close(close(4000, "idle timeout"));
        }
        let mut writer = self.shared.writer.lock().await;
        let Some(w) = writer.as_mut() else {
            return Next::End;
        };
        let sent = guarded(
            &self.shared,
            cfg.idle_timeout,
            w.sink.send(Message::Ping(Default::default())),
        );
        after_write(sent.await)
    }

    /// Killed from outside (slow consumer, revoked session, shutdown): the frames that
    /// say why get a bounded time, a client that stopped reading gets none.
    async fn kill_frames(&self, events: &mut mpsc::Receiver<String>) -> Option<Message> {
        let mut writer = self.shared.writer.lock().await;
        let w = writer.as_mut()?;
        let frame = self.kill_frame(self.shared.killed_for(), events, &mut w.sink);
        tokio::time::timeout(self.broker.config.close_grace, frame)
            .await
            .ok()
    }

    /// Leaves the feeds and the broker, and closes the connection (with the closing
    /// handshake when there is a close frame to send).
    async fn finish(mut self, closing: Option<Message>, reads: Reads) {
        self.detach_all();
        self.broker.unregister(&self.shared);
        // The sink back from the writer: no direct write can reach the socket any more.
        let sink = self.shared.writer.lock().await.take().map(|w| w.sink);
        // The read side, unless the client already ended it.
        let stream = reads.into_iter().next().and_then(|f| f.into_inner());
        if let (Some(frame), Some(mut sink)) = (closing, sink) {
            // The closing handshake: send our close, then give the client a moment to
            // answer, so it reads the code and reason instead of a reset connection.
            let sent = tokio::time::timeout(self.broker.config.close_grace, sink.send(frame)).await;
            if matches!(sent, Ok(Ok(())))
                && let Some(mut stream) = stream
            {
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Some(Ok(m)) = stream.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
    }

    /// The close frame for a socket killed from outside; a slow consumer is first told
    /// which subscriptions ended.
    async fn kill_frame(
        &self,
        why: Kill,
        events: &mut mpsc::Receiver<String>,
        sink: &mut Sink,
    ) -> Message {
        match why {
            Kill::SlowConsumer => {
                // The queue is full: drop it and say which subscriptions ended.
                while events.try_recv().is_ok() {}
                for id in self.subs.keys() {
                    let t = ServerMsg::Resync {
                        id,
                        reason: "slow_consumer",
                    }
                    .text();
                    let _ = sink.send(Message::Text(t.into())).await;
                }
                close(1013, "slow consumer")
            }
            Kill::Revoked => close(1008, "session revoked"),
            Kill::Shutdown | Kill::None => close(1001, "server shutting down"),
        }
    }
}

/// Feeds the texts and flushes them: one write to the socket.
async fn write_texts(sink: &mut Sink, texts: Vec<String>) -> Result<(), axum::Error> {
    for t in texts {
        sink.feed(Message::Text(t.into())).await?;
    }
    sink.flush().await
}

/// How the socket loop goes on after a guarded write: it ends when the write failed,
/// stalled, or the socket was killed meanwhile (then the kill's frames are sent).
fn after_write<E>(r: Result<Result<(), E>, Interrupted>) -> Next {
    match r {
        Ok(Ok(())) => Next::Go,
        Ok(Err(_)) | Err(Interrupted::Stalled) => Next::End,
        Err(Interrupted::Killed) => Next::Killed,
    }
}

/// Why a write of the socket task was given up.
enum Interrupted {
    /// The socket was killed meanwhile (slow consumer, revoked session, shutdown).
    Killed,
    /// It took longer than the idle timeout: the client stopped reading.
    Stalled,
}

/// Waits for a write (or a request's handling, which writes) unless the socket is killed
/// meanwhile or it stalls: a client that stopped reading must neither keep its socket's
/// task from seeing the kill nor hold the socket forever when no kill comes (a snapshot
/// it does not take: the subscription's events go to its replay buffer, not the queue).
async fn guarded<F: std::future::Future>(
    shared: &Outbox,
    stall: Duration,
    write: F,
) -> Result<F::Output, Interrupted> {
    let killed = shared.killed.notified();
    tokio::pin!(killed);
    // Registered before the check, so a kill in between is not missed.
    killed.as_mut().enable();
    if shared.killed_for() != Kill::None {
        return Err(Interrupted::Killed);
    }
    tokio::select! {
        biased;
        _ = killed => Err(Interrupted::Killed),
        out = tokio::time::timeout(stall, write) => out.map_err(|_| Interrupted::Stalled),
    }
}
