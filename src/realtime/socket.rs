//! One WebSocket connection: reads client messages, writes events, keeps time (pings,
//! idle timeout, token expiry), and closes cleanly when told to (slow consumer, revoked
//! session, shutdown).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{FuturesUnordered, SplitSink};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::Broker;
use super::feed::{Feed, Mode, Sub, SubKey};
use super::protocol::{self, ClientMsg, ServerMsg};
use crate::rules::{AuthInfo, Predicate, QueryBindings};
use crate::tenancy::{Caller, Scope, Tenant};

/// Who a socket speaks for.
#[derive(Clone, Debug)]
pub struct SocketAuth {
    pub caller: Caller,
    pub info: Option<AuthInfo>,
    /// Unix seconds at which the token expires (users only).
    pub expires: Option<i64>,
}

impl SocketAuth {
    pub fn anonymous() -> SocketAuth {
        SocketAuth {
            caller: Caller::Anonymous,
            info: None,
            expires: None,
        }
    }

    pub fn bypasses_rules(&self) -> bool {
        self.caller.bypasses_rules()
    }

    pub fn for_scope(scope: &Scope, token: &str) -> SocketAuth {
        match scope.caller() {
            Caller::User(u) => SocketAuth {
                caller: scope.caller().clone(),
                info: Some(AuthInfo {
                    uid: u.uid.clone(),
                    email: u.email.clone(),
                    email_verified: u.email_verified,
                    claims: serde_json::Value::Object(Default::default()),
                }),
                expires: crate::auth::tokens::expiry_of(token),
            },
            other => SocketAuth {
                caller: other.clone(),
                info: None,
                expires: None,
            },
        }
    }
}

/// Why a socket is being closed from outside its task.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kill {
    None = 0,
    SlowConsumer = 1,
    Revoked = 2,
    Shutdown = 3,
}

type Sink = SplitSink<WebSocket, Message>;

/// The socket's write half. The socket task writes through it (replies, history, pings,
/// queued events), and so does the feed's dispatcher, directly, when the socket is idle:
/// that spares the socket task a wake-up per event, which was about a fifth of the
/// server's CPU in a large fan-out.
struct Writer {
    sink: Sink,
    /// A direct write could not flush everything (the client's window is full): the
    /// socket task finishes it, and events queue until it has.
    unflushed: bool,
}

/// The part of a socket the broker and the feeds hold.
pub(crate) struct SocketShared {
    pub id: u64,
    pub tenant: Arc<Tenant>,
    pub ip: String,
    out: mpsc::Sender<String>,
    /// Events handed to the socket task and not written yet. While there are any, new
    /// events queue behind them instead of being written directly: order is kept.
    queued: AtomicUsize,
    /// None before the socket task starts and once it has taken the sink back to close.
    /// The dispatcher only ever `try_lock`s it, so it never waits for a socket.
    writer: tokio::sync::Mutex<Option<Writer>>,
    /// Tells the socket task that a direct write left bytes to flush.
    flush: Notify,
    auth: RwLock<Arc<SocketAuth>>,
    kill: AtomicU8,
    killed: Notify,
}

impl SocketShared {
    pub fn auth(&self) -> Option<Arc<SocketAuth>> {
        self.auth.read().ok().map(|a| a.clone())
    }

    fn set_auth(&self, auth: SocketAuth) {
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

    fn killed_for(&self) -> Kill {
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

/// Per-subscription state the socket keeps for itself.
struct LocalSub {
    feed: Arc<Feed>,
    requires_auth: bool,
}

pub(crate) struct Connection {
    broker: Arc<Broker>,
    shared: Arc<SocketShared>,
    subs: HashMap<String, LocalSub>,
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

impl Connection {
    pub(crate) fn new(
        broker: Arc<Broker>,
        id: u64,
        tenant: Arc<Tenant>,
        ip: String,
        auth: SocketAuth,
    ) -> (Connection, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(broker.config.queue_capacity);
        let shared = Arc::new(SocketShared {
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
        (
            Connection {
                broker,
                shared,
                subs: HashMap::new(),
            },
            rx,
        )
    }

    pub(crate) fn shared(&self) -> Arc<SocketShared> {
        self.shared.clone()
    }

    fn scope(&self) -> Scope {
        let caller = self
            .shared
            .auth()
            .map(|a| a.caller.clone())
            .unwrap_or(Caller::Anonymous);
        Scope::socket(self.shared.tenant.clone(), caller)
    }

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
        let cfg = self.broker.config.clone();
        let mut ping = tokio::time::interval(cfg.ping_interval);
        ping.tick().await;
        let mut last_heard = Instant::now();
        let mut closing: Option<Message> = None;
        // Futures that live across iterations, so a wake-up costs no re-registration:
        // the kill signal, the shutdown signal, a direct write's unfinished flush, and the
        // token's expiry (re-armed whenever the socket's token changes).
        let killed = shared.killed.notified();
        tokio::pin!(killed);
        // Registered now: `kill` wakes only the waiters it finds.
        killed.as_mut().enable();
        let mut kill_seen = shared.killed_for() != Kill::None;
        let shutdown_changed = shutdown.changed();
        tokio::pin!(shutdown_changed);
        let flush_wanted = shared.flush.notified();
        tokio::pin!(flush_wanted);
        let expiry = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(expiry);
        let mut armed_for = self.arm_expiry(expiry.as_mut(), None);
        while !kill_seen {
            tokio::select! {
                biased;
                Some((frame, rest)) = reads.next() => {
                    // None: the client went away (the stream is done, so not put back).
                    let Some(frame) = frame else { break };
                    reads.push(rest.into_future());
                    let frame = match frame {
                        Ok(f) => f,
                        Err(e) => {
                            // A frame over the limit is a protocol error of the client's;
                            // say so with the standard code rather than just dropping it.
                            let text = e.to_string();
                            let msg = if text.contains("too long") || text.contains("Space limit") {
                                close(1009, "message too big")
                            } else {
                                close(1002, "protocol error")
                            };
                            closing = Some(msg);
                            break;
                        }
                    };
                    last_heard = Instant::now();
                    // The writer is held for the whole answer: events of a subscription
                    // being set up queue behind its `subscribed` and history.
                    let mut writer = shared.writer.lock().await;
                    let Some(w) = writer.as_mut() else { break };
                    let reply = match frame {
                        Message::Text(text) => {
                            // Boxed: the handler's future is large (subscribe, snapshot, replay), and inline
                            // it would make every idle socket's task as large. It may be
                            // dropped at any await (a kill while a snapshot waits for a client
                            // that stopped reading): a subscription is registered in its feed
                            // and in `subs` with no await in between, so `detach_all` finds it.
                            let handled = Box::pin(self.handle_text(text.as_str(), &mut w.sink));
                            let r = match guarded(&shared, cfg.idle_timeout, handled).await {
                                Ok(r) => r,
                                Err(Interrupted::Killed) => { kill_seen = true; break }
                                Err(Interrupted::Stalled) => break,
                            };
                            armed_for = self.arm_expiry(expiry.as_mut(), armed_for);
                            r
                        }
                        Message::Binary(_) => Some(protocol::error(None, "binary_not_supported", "send text frames holding JSON")),
                        Message::Close(_) => break,
                        Message::Ping(_) | Message::Pong(_) => None,
                    };
                    if let Some(text) = reply {
                        let sent = guarded(&shared, cfg.idle_timeout, w.sink.send(Message::Text(text.into()))).await;
                        if write_ended(sent, &mut kill_seen) {
                            break;
                        }
                    }
                }
                _ = &mut killed => {
                    kill_seen = true;
                    break;
                }
                _ = &mut shutdown_changed => {
                    closing = Some(close(1001, "server shutting down"));
                    break;
                }
                // Before the events: under a steady flood of events, a subscription whose
                // token expired must still end on time.
                _ = &mut expiry, if armed_for.is_some() => {
                    // The socket becomes anonymous, so this fires once per token.
                    armed_for = None;
                    let texts = self.token_expired();
                    let mut writer = shared.writer.lock().await;
                    let Some(w) = writer.as_mut() else { break };
                    let sent = guarded(&shared, cfg.idle_timeout, write_texts(&mut w.sink, texts)).await;
                    if write_ended(sent, &mut kill_seen) {
                        break;
                    }
                }
                _ = &mut flush_wanted => {
                    flush_wanted.set(shared.flush.notified());
                    let mut writer = shared.writer.lock().await;
                    let Some(w) = writer.as_mut() else { break };
                    if w.unflushed {
                        let flushed = guarded(&shared, cfg.idle_timeout, w.sink.flush()).await;
                        if write_ended(flushed, &mut kill_seen) {
                            break;
                        }
                        w.unflushed = false;
                    }
                }
                Some(text) = events.recv() => {
                    // Whatever else is already queued goes out in the same flush.
                    let mut batch = vec![text];
                    while batch.len() < 64 {
                        match events.try_recv() {
                            Ok(t) => batch.push(t),
                            Err(_) => break,
                        }
                    }
                    let n = batch.len();
                    let mut writer = shared.writer.lock().await;
                    let Some(w) = writer.as_mut() else { break };
                    let sent = guarded(&shared, cfg.idle_timeout, write_texts(&mut w.sink, batch)).await;
                    if write_ended(sent, &mut kill_seen) {
                        break;
                    }
                    w.unflushed = false;
                    // Written, under the writer: the dispatcher may write directly again
                    // once nothing is queued.
                    shared.queued.fetch_sub(n, Ordering::SeqCst);
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > cfg.idle_timeout {
                        closing = Some(close(4000, "idle timeout"));
                        break;
                    }
                    let mut writer = shared.writer.lock().await;
                    let Some(w) = writer.as_mut() else { break };
                    let sent = guarded(&shared, cfg.idle_timeout, w.sink.send(Message::Ping(Default::default()))).await;
                    if write_ended(sent, &mut kill_seen) {
                        break;
                    }
                }
            }
        }
        if kill_seen {
            // Killed from outside (slow consumer, revoked session, shutdown): the frames
            // that say why get a bounded time, a client that stopped reading gets none.
            let mut writer = shared.writer.lock().await;
            if let Some(w) = writer.as_mut() {
                let frame = self.kill_frame(shared.killed_for(), &mut events, &mut w.sink);
                closing = tokio::time::timeout(cfg.close_grace, frame).await.ok();
            }
        }
        self.detach_all();
        self.broker.unregister(&self.shared);
        // The sink back from the writer: no direct write can reach the socket any more.
        let sink = shared.writer.lock().await.take().map(|w| w.sink);
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

    /// Points the expiry timer at the current token's `exp`; returns that `exp` (None when
    /// the socket has no expiring token). Unchanged when the token is the same.
    fn arm_expiry(
        &self,
        timer: std::pin::Pin<&mut tokio::time::Sleep>,
        armed_for: Option<i64>,
    ) -> Option<i64> {
        let exp = self.shared.auth().and_then(|a| a.expires);
        if exp != armed_for
            && let Some(exp) = exp
        {
            let now = chrono::Utc::now().timestamp();
            let left = Duration::from_secs(exp.saturating_sub(now).max(0) as u64);
            timer.reset(Instant::now() + left);
        }
        exp
    }

    /// The token expired unrefreshed: subscriptions that depended on it end; the socket
    /// goes on as anonymous.
    fn token_expired(&mut self) -> Vec<String> {
        self.shared.set_auth(SocketAuth::anonymous());
        let ended: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.requires_auth)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ended {
            self.detach(&id);
            out.push(protocol::error(
                Some(&id),
                "token_expired",
                "the token this subscription depended on expired; authenticate and subscribe again",
            ));
        }
        out
    }

    fn detach(&mut self, id: &str) {
        if let Some(local) = self.subs.remove(id) {
            let key: SubKey = (self.shared.id, id.to_string());
            local.feed.lock().remove(&key);
        }
    }

    fn detach_all(&mut self) {
        let ids: Vec<String> = self.subs.keys().cloned().collect();
        for id in ids {
            self.detach(&id);
        }
    }

    async fn handle_text(&mut self, text: &str, sink: &mut Sink) -> Option<String> {
        let msg = match protocol::parse_client(text) {
            Ok(m) => m,
            Err(frame) => return Some(frame),
        };
        match msg {
            ClientMsg::Ping => Some(ServerMsg::Pong.text()),
            ClientMsg::Auth { token } => Some(self.authenticate(&token).await),
            ClientMsg::Unsubscribe { id } => {
                if self.subs.contains_key(&id) {
                    self.detach(&id);
                    None
                } else {
                    Some(protocol::error(
                        Some(&id),
                        "invalid_subscription",
                        "no such subscription",
                    ))
                }
            }
            ClientMsg::Subscribe {
                id,
                collection,
                doc,
                filter,
                since,
                snapshot,
            } => match self
                .subscribe(sink, &id, collection, doc, filter, since, snapshot)
                .await
            {
                Ok(()) => None,
                Err(SubError::Reply(text)) => Some(text),
                Err(SubError::SocketGone) => None,
            },
        }
    }

    async fn authenticate(&mut self, token: &str) -> String {
        match self
            .broker
            .auth
            .authenticate(self.shared.tenant.clone(), Some(token))
            .await
        {
            Ok(scope) => {
                let auth = SocketAuth::for_scope(&scope, token);
                let uid = auth.info.as_ref().map(|i| i.uid.clone());
                let expires_at = auth.expires.map(|e| crate::documents::timestamp(e * 1000));
                self.broker.index_user(&self.shared, uid.as_deref(), &auth);
                self.shared.set_auth(auth);
                ServerMsg::Authenticated {
                    uid: uid.as_deref(),
                    expires_at,
                }
                .text()
            }
            Err(e) => {
                let api = crate::error::ApiError::from(e);
                protocol::error(None, api.code, &api.detail)
            }
        }
    }
}

enum SubError {
    /// Tell the client this (an error or resync frame).
    Reply(String),
    /// Writing to the socket failed; the connection is ending.
    SocketGone,
}

fn reply(id: &str, code: &str, message: &str) -> SubError {
    SubError::Reply(protocol::error(Some(id), code, message))
}

impl Connection {
    #[allow(clippy::too_many_arguments)]
    async fn subscribe(
        &mut self,
        sink: &mut Sink,
        id: &str,
        collection: String,
        doc: Option<String>,
        filter: Option<String>,
        since: Option<i64>,
        snapshot: bool,
    ) -> Result<(), SubError> {
        let broker = self.broker.clone();
        if id.is_empty() || id.len() > 128 {
            return Err(reply(
                id,
                "invalid_subscription",
                "id must be 1-128 characters",
            ));
        }
        if self.subs.contains_key(id) {
            return Err(reply(
                id,
                "invalid_subscription",
                "a subscription with this id exists",
            ));
        }
        if self.subs.len() >= broker.config.max_subscriptions_per_socket {
            return Err(reply(
                id,
                "too_many_subscriptions",
                &format!(
                    "at most {} subscriptions per socket",
                    broker.config.max_subscriptions_per_socket
                ),
            ));
        }
        if !crate::documents::valid_collection(&collection) {
            return Err(reply(
                id,
                "invalid_subscription",
                "collection must match ^[a-z][a-z0-9_]{0,62}$",
            ));
        }
        if let Some(d) = &doc
            && !crate::documents::valid_doc_id(d)
        {
            return Err(reply(
                id,
                "invalid_subscription",
                "doc must be 1-128 of [A-Za-z0-9_-]",
            ));
        }
        let scope = self.scope();
        let auth = self
            .shared
            .auth()
            .unwrap_or_else(|| Arc::new(SocketAuth::anonymous()));
        let now = chrono::Utc::now().timestamp_millis();
        let qb = QueryBindings {
            auth: auth.info.as_ref(),
            now_ms: now,
        };
        // The read rule, as SQL for the snapshot, and to refuse at once a subscription
        // the rule can never serve for this caller.
        let mut parts: Vec<Predicate> = Vec::new();
        if !auth.bypasses_rules() {
            let rules = broker
                .rules
                .get(&scope)
                .await
                .map_err(|_| reply(id, "internal", "could not load the rules"))?;
            let Some(rule) = rules.rule(&collection, crate::rules::Operation::Read) else {
                return Err(reply(
                    id,
                    "rule_denied",
                    &format!("collection '{collection}' has no read rule"),
                ));
            };
            let pred = match rule.to_predicate(&qb) {
                Ok(p) => p,
                // As for a list: a rule too costly for this caller denies.
                Err(crate::rules::PredicateError::TooCostly) => Predicate::False,
                Err(crate::rules::PredicateError::Untranslatable(_)) => {
                    return Err(reply(id, "internal", "the read rule cannot be translated"));
                }
            };
            if matches!(pred, Predicate::False | Predicate::Unknown) {
                let hint = if auth.info.is_none() {
                    "; send auth first"
                } else {
                    ""
                };
                return Err(reply(
                    id,
                    "rule_denied",
                    &format!("the read rule of '{collection}' denies this caller{hint}"),
                ));
            }
            parts.push(pred);
        }
        let filter_expr = match filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            Some(src) => {
                let compiled = broker.docs.compile_filter(src).map_err(|e| {
                    reply(
                        id,
                        "invalid_filter",
                        &format!("line {} column {}: {}", e.line, e.column, e.message),
                    )
                })?;
                // Its parts that do not mention the document are evaluated here under
                // the per-event budget (off the async workers when they may be costly):
                // the rest is translatable, so linear in the document, and every event
                // evaluates the whole filter again in memory.
                let pred = crate::documents::filter_predicate(
                    compiled.clone(),
                    auth.info.as_ref(),
                    now,
                    crate::rules::EVENT_BUDGET,
                )
                .await
                .map_err(|e| match e {
                    crate::documents::DocError::InvalidFilter(u) => reply(
                        id,
                        "invalid_filter",
                        &format!("line {} column {}: {}", u.line, u.column, u.message),
                    ),
                    crate::documents::DocError::FilterTooCostly => {
                        reply(id, "filter_too_costly", crate::rules::TOO_COSTLY)
                    }
                    _ => reply(id, "internal", "could not compile the filter"),
                })?;
                parts.push(pred);
                Some(compiled)
            }
            None => None,
        };
        if let Some(d) = &doc {
            parts.push(Predicate::Compare {
                field: crate::rules::Field::Id,
                op: crate::rules::CmpOp::Eq,
                value: serde_json::Value::String(d.clone()),
            });
        }
        let (last, pruned) = broker
            .store
            .change_seq(&scope)
            .await
            .map_err(|_| reply(id, "internal", "could not read the change log"))?;
        if let Some(s) = since {
            if s > last || s < 0 {
                return Err(reply(
                    id,
                    "invalid_since",
                    &format!("since {s} is ahead of the log (at {last})"),
                ));
            }
            if s < pruned {
                return Err(SubError::Reply(
                    ServerMsg::Resync {
                        id,
                        reason: "since_too_old",
                    }
                    .text(),
                ));
            }
        }

        // Register first (buffering live events), then send history, then go live: no
        // event is lost between the history and the live stream, and none repeats.
        let replaying = since.is_some() || snapshot;
        let feed = broker.feed(&self.shared.tenant, last);
        let sub = Arc::new(Sub::new(
            (self.shared.id, id.to_string()),
            collection.clone(),
            doc.clone(),
            filter_expr,
            self.shared.clone(),
            Mode::Replaying {
                buffer: Vec::new(),
                overflowed: false,
            },
        ));
        let position = {
            let mut state = feed.lock();
            if !replaying {
                *sub.mode.lock().unwrap_or_else(|p| p.into_inner()) = Mode::Live {
                    from: state.position,
                };
            }
            state.add(sub.clone());
            state.position
        };
        broker.ensure_tailer(&feed);
        self.subs.insert(
            id.to_string(),
            LocalSub {
                feed: feed.clone(),
                requires_auth: auth.info.is_some(),
            },
        );
        if !replaying {
            let t = ServerMsg::Subscribed { id, seq: position }.text();
            return send(sink, t).await;
        }

        let predicate = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Predicate::And(parts)),
        };
        let mut from = since.unwrap_or(position);
        let mut snap = None;
        if snapshot {
            let order = [crate::store::OrderKey {
                field: crate::rules::Field::CreatedAt,
                desc: false,
            }];
            let limit = broker.config.snapshot_limit as i64;
            let (seq, docs) = broker
                .store
                .snapshot(
                    &scope,
                    crate::store::ListQuery {
                        collection: &collection,
                        predicate: predicate.as_ref(),
                        order: &order,
                        after: None,
                        limit: limit + 1,
                        max_bytes: crate::documents::MAX_PAGE_BYTES,
                        sort_matches: false,
                    },
                )
                .await
                .map_err(|_| {
                    self.detach(id);
                    reply(id, "internal", "could not read the snapshot")
                })?;
            from = seq;
            snap = Some(docs);
        }
        send(sink, ServerMsg::Subscribed { id, seq: from }.text()).await?;
        if let Some(mut docs) = snap {
            let keep = crate::store::page_len(
                &docs,
                broker.config.snapshot_limit,
                crate::documents::MAX_PAGE_BYTES,
            );
            let truncated = docs.len() > keep;
            docs.truncate(keep);
            let out = ServerMsg::Snapshot {
                id,
                seq: from,
                truncated,
                docs: docs
                    .iter()
                    .map(crate::documents::wire::DocJson::listed)
                    .collect(),
            };
            send(sink, out.text()).await?;
        }
        // History between `from` and the feed's position when we registered, read in pages
        // until a page comes back short (the log's end) or passes `position`.
        let mut cursor = from;
        while cursor < position {
            let (changes, reached) = broker
                .store
                .changes_since(
                    &scope,
                    cursor,
                    HISTORY_PAGE,
                    Some(std::slice::from_ref(&sub.collection)),
                )
                .await
                .map_err(|_| reply(id, "internal", "could not read the change log"))?;
            let full_page = changes.len() as i64 >= HISTORY_PAGE;
            let rules = broker
                .rules
                .get(&scope)
                .await
                .map_err(|_| reply(id, "internal", "could not load the rules"))?;
            for c in changes.iter().take_while(|c| c.seq <= position) {
                cursor = c.seq;
                let versions = super::feed::Rendered::new(c);
                if let Some((op, side)) =
                    super::feed::event_for(&sub, c, &versions, &rules, Some(&auth), now)
                {
                    let text = versions.message(&sub, c.seq, op, side);
                    send(sink, text).await?;
                }
                if let Some(text) = sub.spent_notice() {
                    send(sink, text).await?;
                }
            }
            // A full page ends at its last change (`reached` is that seq, which `cursor`
            // now holds): read on. A short one reached the log's end, which is at or past
            // `position` (the feed only reads committed changes).
            if !full_page || changes.last().is_some_and(|c| c.seq >= position) {
                break;
            }
            cursor = cursor.max(reached);
        }
        // Go live: flush what arrived meanwhile, in order, past what was already sent.
        let live_from = from.max(position);
        let (buffered, overflowed) = {
            let _state = feed.lock();
            let mut mode = sub.mode.lock().unwrap_or_else(|p| p.into_inner());
            let old = std::mem::replace(&mut *mode, Mode::Live { from: live_from });
            match old {
                Mode::Replaying { buffer, overflowed } => (buffer, overflowed),
                Mode::Live { .. } => (Vec::new(), false),
            }
        };
        if overflowed {
            self.detach(id);
            return Err(SubError::Reply(
                ServerMsg::Resync {
                    id,
                    reason: "slow_consumer",
                }
                .text(),
            ));
        }
        for (seq, text) in buffered {
            if seq > live_from {
                send(sink, text).await?;
            }
        }
        Ok(())
    }
}

/// Changes read per page of a `since` replay.
const HISTORY_PAGE: i64 = 500;

async fn send(sink: &mut Sink, text: String) -> Result<(), SubError> {
    sink.send(Message::Text(text.into()))
        .await
        .map_err(|_| SubError::SocketGone)
}

/// Feeds the texts and flushes them: one write to the socket.
async fn write_texts(sink: &mut Sink, texts: Vec<String>) -> Result<(), axum::Error> {
    for t in texts {
        sink.feed(Message::Text(t.into())).await?;
    }
    sink.flush().await
}

/// Whether the socket loop ends after a guarded write: it failed, stalled, or the socket
/// was killed (then noted in `kill_seen`, so the kill's frames are sent).
fn write_ended<E>(r: Result<Result<(), E>, Interrupted>, kill_seen: &mut bool) -> bool {
    match r {
        Ok(Ok(())) => false,
        Ok(Err(_)) | Err(Interrupted::Stalled) => true,
        Err(Interrupted::Killed) => {
            *kill_seen = true;
            true
        }
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
    shared: &SocketShared,
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
