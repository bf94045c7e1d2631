//! The per-socket delivery handle the broker and the feeds hold: the socket's queue,
//! the direct write to an idle socket, and the reason a socket is closed from outside its
//! task. The feed's dispatcher and the socket task both write through it, so the
//! delivery protocol (queued vs direct writes, the `queued` counter, kill on overflow)
//! lives here in one place.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Waker};

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::{Notify, mpsc};

use super::socket_auth::SocketAuth;
use crate::tenancy::{Caller, Tenant};

/// Why a socket is being closed from outside its task.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kill {
    None = 0,
    SlowConsumer = 1,
    Revoked = 2,
    Shutdown = 3,
}

pub(super) type Sink = SplitSink<WebSocket, Message>;

/// The socket's write half. The socket task writes through it (replies, history, pings,
/// queued events), and so does the feed's dispatcher, directly, when the socket is idle:
/// that spares the socket task a wake-up per event, which was about a fifth of the
/// server's CPU in a large fan-out.
pub(super) struct Writer {
    pub sink: Sink,
    /// A direct write could not flush everything (the client's window is full): the
    /// socket task finishes it, and events queue until it has.
    pub unflushed: bool,
}

/// The part of a socket the broker and the feeds hold.
pub(crate) struct Outbox {
    pub id: u64,
    pub tenant: Arc<Tenant>,
    pub ip: String,
    out: mpsc::Sender<String>,
    /// Events handed to the socket task and not written yet. While there are any, new
    /// events queue behind them instead of being written directly: order is kept.
    pub(super) queued: AtomicUsize,
    /// None before the socket task starts and once it has taken the sink back to close.
    /// The dispatcher only ever `try_lock`s it, so it never waits for a socket.
    pub(super) writer: tokio::sync::Mutex<Option<Writer>>,
    /// Tells the socket task that a direct write left bytes to flush.
    pub(super) flush: Notify,
    auth: RwLock<Arc<SocketAuth>>,
    kill: AtomicU8,
    pub(super) killed: Notify,
}

impl Outbox {
    /// A socket's handle, and the receiving end of its queue (the socket task's).
    pub(super) fn new(
        id: u64,
        tenant: Arc<Tenant>,
        ip: String,
        auth: SocketAuth,
        capacity: usize,
    ) -> (Arc<Outbox>, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(capacity);
        let outbox = Arc::new(Outbox {
            id,
            tenant,
            ip,
            out: tx,
            queued: AtomicUsize::new(0),
            writer: tokio::sync::Mutex::new(None),
            flush: Notify::new(),
            auth: RwLock::new(Arc::new(auth)),
            kill: AtomicU8::new(Kill::None as u8),
            killed: Notify::new(),
        });
        (outbox, rx)
    }

    pub fn auth(&self) -> Option<Arc<SocketAuth>> {
        self.auth.read().ok().map(|a| a.clone())
    }

    pub(super) fn set_auth(&self, auth: SocketAuth) {
        if let Ok(mut a) = self.auth.write() {
            *a = Arc::new(auth);
        }
    }

    /// Writes events to the socket at once when it is idle, or queues them for the socket
    /// task; a full queue marks the socket a slow consumer. Never waits.
    pub fn send_events(&self, texts: Vec<String>) {
        for text in self.try_write(texts) {
            self.queued.fetch_add(1, Ordering::SeqCst);
            if self.out.try_send(text).is_err() {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                self.kill(Kill::SlowConsumer);
                return;
            }
        }
    }

    /// The direct write: only when nobody holds the writer, nothing is queued before these
    /// events and nothing is left unflushed. Gives back, in order, the events it could not
    /// write, to be queued.
    fn try_write(&self, texts: Vec<String>) -> Vec<String> {
        let Ok(mut guard) = self.writer.try_lock() else {
            return texts;
        };
        let Some(w) = guard.as_mut() else {
            return texts;
        };
        if w.unflushed || self.queued.load(Ordering::SeqCst) != 0 {
            return texts;
        }
        // No waker of ours: what cannot finish now is handed to the socket task, which
        // registers its own when it finishes the flush. (The WebSocket layers pass one
        // waker to both directions, so a waker that woke the task would be woken often.)
        let mut cx = Context::from_waker(Waker::noop());
        let mut texts = texts.into_iter();
        let mut wrote = false;
        let rest = loop {
            if !matches!(w.sink.poll_ready_unpin(&mut cx), Poll::Ready(Ok(()))) {
                break texts.collect();
            }
            let Some(text) = texts.next() else {
                break Vec::new();
            };
            if w.sink.start_send_unpin(Message::Text(text.into())).is_err() {
                // The connection is failing; the socket task finds out on its next read
                // or write and ends, as it would have with the events queued.
                return Vec::new();
            }
            wrote = true;
        };
        if wrote && w.sink.poll_flush_unpin(&mut cx).is_pending() {
            w.unflushed = true;
            self.flush.notify_one();
        }
        rest
    }

    pub fn kill(&self, why: Kill) {
        if self
            .kill
            .compare_exchange(
                Kill::None as u8,
                why as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            // Every waiter: the socket task's loop, and a write of it that waits for a
            // client that stopped reading.
            self.killed.notify_waiters();
        }
    }

    pub(super) fn killed_for(&self) -> Kill {
        match self.kill.load(Ordering::SeqCst) {
            1 => Kill::SlowConsumer,
            2 => Kill::Revoked,
            3 => Kill::Shutdown,
            _ => Kill::None,
        }
    }

    /// The user's (uid, session id), when the socket speaks for a user.
    pub fn user(&self) -> Option<(String, String)> {
        match &self.auth()?.caller {
            Caller::User(u) => Some((u.uid.clone(), u.session_id.clone())),
            _ => None,
        }
    }
}
