//! Realtime change feeds over WebSocket (protocol: docs/realtime.md).
//!
//! One `Broker` per process. It holds a `Feed` per tenant with live subscriptions; each
//! feed has a tailer task that follows the tenant's change log and dispatches every change
//! to the subscriptions indexed under its collection or document. Writers never wait on
//! subscribers: a subscriber's queue is bounded, and one that overflows is told `resync`
//! and closed. `documents/` knows nothing of this; the store only announces commits.

mod changes;
mod feed;
mod outbox;
mod protocol;
mod socket;
mod socket_auth;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::WebSocket;

use crate::auth::{AuthError, AuthService};
use crate::documents::DocumentService;
use crate::rules::RulesRegistry;
use crate::store::Store;
use crate::store::{Announcement, Topic};
use crate::tenancy::{Scope, SystemTask, Tenant};
use crate::tenant_registry::Registry;
use changes::LogError;
use feed::Feed;
// The client message parser, public for the property tests (tests/fuzz.rs).
use outbox::{Kill, Outbox};
pub use protocol::{ClientMsg, Subscribe, parse_client};
use socket::Connection;
pub use socket_auth::SocketAuth;

#[derive(Clone, Debug)]
pub struct RealtimeConfig {
    pub max_subscriptions_per_socket: usize,
    pub max_sockets_per_tenant: usize,
    pub max_sockets_per_ip: usize,
    pub max_frame_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    /// Events a socket may have queued before it counts as a slow consumer.
    pub queue_capacity: usize,
    pub snapshot_limit: usize,
    /// How long the last frames of a socket being closed (a slow consumer's `resync`s,
    /// the close frame) may take to go out: a client that stopped reading would otherwise
    /// keep the socket's task, connection and slot forever.
    pub close_grace: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            max_subscriptions_per_socket: 100,
            max_sockets_per_tenant: 10_000,
            max_sockets_per_ip: 1_000,
            max_frame_bytes: 64 * 1024,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            queue_capacity: 1024,
            snapshot_limit: 1000,
            close_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct Sockets {
    by_id: HashMap<u64, Arc<Outbox>>,
    per_tenant: HashMap<i64, usize>,
    per_ip: HashMap<String, usize>,
    /// (tenant, user id) -> sockets speaking for that user
    by_user: HashMap<(i64, String), HashSet<u64>>,
}

pub struct Broker {
    store: Store,
    rules: Arc<RulesRegistry>,
    auth: Arc<AuthService>,
    docs: Arc<DocumentService>,
    registry: Arc<Registry>,
    pub config: RealtimeConfig,
    feeds: Mutex<HashMap<i64, Arc<Feed>>>,
    sockets: Mutex<Sockets>,
    shutdown: tokio::sync::watch::Sender<bool>,
    next_id: AtomicU64,
}

/// A socket's slot under the per-tenant and per-IP limits, taken before the upgrade;
/// released on drop unless the socket started (it is released when the socket ends).
pub struct Admission {
    broker: Arc<Broker>,
    tenant: i64,
    ip: String,
    held: bool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.held {
            self.broker.release(self.tenant, &self.ip);
        }
    }
}

/// Why an upgrade was refused.
pub enum Refused {
    TooManyForTenant,
    TooManyForIp,
}

impl Broker {
    pub fn new(
        store: Store,
        rules: Arc<RulesRegistry>,
        auth: Arc<AuthService>,
        docs: Arc<DocumentService>,
        registry: Arc<Registry>,
        config: RealtimeConfig,
    ) -> Arc<Broker> {
        Arc::new(Broker {
            store,
            rules,
            auth,
            docs,
            registry,
            config,
            feeds: Mutex::new(HashMap::new()),
            sockets: Mutex::new(Sockets::default()),
            shutdown: tokio::sync::watch::channel(false).0,
            next_id: AtomicU64::new(1),
        })
    }

    /// What the store calls after each group commit: wakes that tenant's feeds.
    /// Registered by the composition root (`state`).
    pub fn commit_listener(self: &Arc<Self>) -> crate::store::CommitListener {
        let weak = Arc::downgrade(self);
        Arc::new(move |tenant, _seq| {
            if let Some(b) = weak.upgrade() {
                b.wake(tenant);
            }
        })
    }

    /// Background work: session changes made through this node and, on PostgreSQL,
    /// commits and session changes announced by other nodes. Realtime only listens: the
    /// changes are announced by `auth` (`AuthCache::forget_*`).
    pub fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let mut events = self.auth.session_events();
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match events.recv().await {
                    // `auth` announces them to the other nodes.
                    Ok(e) => {
                        me.recheck_sessions(e.tenant, e.user.as_deref(), e.session.as_deref())
                            .await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        me.recheck_all().await;
                    }
                    Err(_) => return,
                }
            }
        }));
        let mut readers = self.auth.reader_changes();
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            while readers.changed().await.is_ok() {
                me.recheck_readers().await;
            }
        }));
        let me = self.clone();
        tasks.push(tokio::spawn(me.follow_other_nodes()));
        tasks
    }

    /// What other nodes announce (PostgreSQL): commits wake the tenant's feed, session
    /// changes end the sockets they concern. Returns at once on SQLite.
    async fn follow_other_nodes(self: Arc<Self>) {
        let store = self.store.clone();
        store
            .follow_announcements(&[Topic::Commits, Topic::Sessions], |a| {
                let me = self.clone();
                async move {
                    match a {
                        Announcement::Commit { tenant } => me.wake(tenant),
                        // Anything announced while not listening is caught up by the
                        // tailers' poll.
                        Announcement::Resumed => me.wake_all().await,
                        // Another node ended sessions: their sockets here close. (The
                        // cached checks go in `app::cluster`; the recheck reads the
                        // database, not that cache.)
                        Announcement::SessionEnded { tenant, session_id } => {
                            me.recheck_sessions(tenant, None, Some(&session_id)).await;
                        }
                        Announcement::UserSessions { tenant, user_id } => {
                            me.recheck_sessions(tenant, Some(&user_id), None).await;
                        }
                        Announcement::TenantChanged { .. } | Announcement::AdminsChanged => {}
                    }
                }
            })
            .await;
    }

    /// Refuses a new socket when the tenant or the client IP is at its limit; otherwise
    /// counts it.
    fn admit(&self, tenant: i64, ip: &str) -> Result<(), Refused> {
        let mut s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if s.per_tenant.get(&tenant).copied().unwrap_or(0) >= self.config.max_sockets_per_tenant {
            return Err(Refused::TooManyForTenant);
        }
        if s.per_ip.get(ip).copied().unwrap_or(0) >= self.config.max_sockets_per_ip {
            return Err(Refused::TooManyForIp);
        }
        *s.per_tenant.entry(tenant).or_default() += 1;
        *s.per_ip.entry(ip.to_string()).or_default() += 1;
        Ok(())
    }

    /// Counts a new socket before the upgrade, so a refusal is an HTTP 429 with a problem
    /// body and the count is exact: a socket counts from the moment its upgrade is
    /// answered (counting it only once the upgrade completed let a burst of connections
    /// slip past the limit). The slot goes back if the upgrade never completes.
    pub fn reserve(self: &Arc<Self>, tenant: i64, ip: &str) -> Result<Admission, Refused> {
        self.admit(tenant, ip)?;
        Ok(Admission {
            broker: self.clone(),
            tenant,
            ip: ip.to_string(),
            held: true,
        })
    }

    /// The tenant's open sockets (and upgrades answered, not yet started) on this node.
    pub fn open_sockets(&self, tenant: i64) -> usize {
        let s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        s.per_tenant.get(&tenant).copied().unwrap_or(0)
    }

    /// Every tenant's open sockets on this node, for the usage meter's peak.
    pub fn open_sockets_per_tenant(&self) -> Vec<(i64, usize)> {
        let s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        s.per_tenant.iter().map(|(t, n)| (*t, *n)).collect()
    }

    fn release(&self, tenant: i64, ip: &str) {
        let mut s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = s.per_tenant.get_mut(&tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_tenant.remove(&tenant);
            }
        }
        if let Some(n) = s.per_ip.get_mut(ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_ip.remove(ip);
            }
        }
    }

    /// Serves one upgraded socket until it closes.
    pub async fn serve(
        self: Arc<Self>,
        ws: WebSocket,
        tenant: Arc<Tenant>,
        ip: String,
        auth: SocketAuth,
        mut admission: Admission,
    ) {
        // From here the slot is the socket's; `unregister` gives it back.
        admission.held = false;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (conn, events) =
            Connection::new(self.clone(), id, tenant.clone(), ip.clone(), auth.clone());
        let shared = conn.shared();
        {
            let mut s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
            s.by_id.insert(id, shared.clone());
        }
        let uid = auth.info.as_ref().map(|i| i.uid.clone());
        self.index_user(&shared, uid.as_deref(), &auth);
        conn.run(ws, events, self.shutdown.subscribe()).await;
    }

    pub(crate) fn index_user(&self, socket: &Outbox, uid: Option<&str>, _auth: &SocketAuth) {
        let mut s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        for set in s.by_user.values_mut() {
            set.remove(&socket.id);
        }
        s.by_user.retain(|_, set| !set.is_empty());
        if let Some(uid) = uid {
            s.by_user
                .entry((socket.tenant.id, uid.to_string()))
                .or_default()
                .insert(socket.id);
        }
    }

    pub(crate) fn unregister(&self, socket: &Outbox) {
        {
            let mut s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
            s.by_id.remove(&socket.id);
            for set in s.by_user.values_mut() {
                set.remove(&socket.id);
            }
            s.by_user.retain(|_, set| !set.is_empty());
        }
        self.release(socket.tenant.id, &socket.ip);
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<Feed>>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant's feed, created at `position` (the log's end) if it has none.
    pub(crate) fn feed(&self, tenant: &Arc<Tenant>, position: i64) -> Arc<Feed> {
        let feed = self
            .feeds()
            .entry(tenant.id)
            .or_insert_with(|| Arc::new(Feed::new(tenant.clone(), position)))
            .clone();
        let mut state = feed.lock();
        // An idle feed (no subscription, no tailer) stopped reading the log where its
        // last subscriber left. Nobody depends on that position any more: a newcomer
        // starts from the log's head (`position`, read just before), or it would be sent
        // every change since then as a live event.
        if state.subs.is_empty() && !state.tailer_running && position > state.position {
            state.position = position;
        }
        drop(state);
        feed
    }

    /// Starts the feed's tailer unless it runs.
    pub(crate) fn ensure_tailer(self: &Arc<Self>, feed: &Arc<Feed>) {
        {
            let mut state = feed.lock();
            if state.tailer_running {
                return;
            }
            state.tailer_running = true;
        }
        let me = self.clone();
        let feed = feed.clone();
        // Outside tokio's cooperative budget: the dispatcher writes events straight to
        // idle sockets, and under the budget every write after the 128th of a poll would
        // be refused (Pending), sending the rest of a large fan-out the slow way, through
        // each socket's task. The tailer still yields whenever it waits for the database
        // or for the next commit.
        tokio::spawn(tokio::task::unconstrained(
            async move { me.tail(feed).await },
        ));
    }

    fn wake(&self, tenant: i64) {
        if let Some(f) = self.feeds().get(&tenant) {
            f.wake.notify_one();
        }
    }

    async fn wake_all(&self) {
        for f in self.feeds().values() {
            f.wake.notify_one();
        }
    }

    /// Follows a tenant's change log while the feed has subscriptions.
    async fn tail(self: Arc<Self>, feed: Arc<Feed>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            // Woken by commits; the timeout catches notifications that were lost.
            tokio::select! {
                _ = feed.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            // The commit that woke us also woke its writer: let the writer's answer go
            // out before the fan-out takes the worker (writers first).
            if feed::fanout_yields() {
                tokio::task::yield_now().await;
            }
            // A deleted or suspended tenant's sockets are closed.
            match self.registry.get(&feed.tenant.slug).await {
                Ok(Some(t)) if t.id == feed.tenant.id && !t.suspended => {}
                Ok(_) => {
                    self.drop_feed(&feed);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "realtime: cannot look the tenant up");
                    continue;
                }
            }
            let scope = Scope::system(feed.tenant.clone(), SystemTask::RealtimeFeed);
            // Only the changes of collections someone subscribed to are read.
            let first = feed.lock().next_read();
            let read = changes::read_log(
                &self.store,
                &self.rules,
                &scope,
                Some(first),
                &mut feed::Dispatch(&feed),
            )
            .await;
            match read {
                Ok(()) => {}
                Err(LogError::Changes(e)) => {
                    tracing::warn!(error = %e, "realtime: cannot read the change log");
                }
                Err(LogError::Rules(e)) => {
                    tracing::warn!(error = %e, "realtime: cannot load rules");
                }
            }
            let mut state = feed.lock();
            if state.subs.is_empty() {
                state.tailer_running = false;
                return;
            }
        }
    }

    fn drop_feed(&self, feed: &Arc<Feed>) {
        let subs: Vec<_> = feed.lock().subs.values().cloned().collect();
        for s in subs {
            s.socket.kill(Kill::Shutdown);
        }
        feed.lock().tailer_running = false;
        self.feeds().remove(&feed.tenant.id);
    }

    /// A user's sessions may have ended: close their sockets whose session is gone.
    async fn recheck_sessions(&self, tenant: i64, user: Option<&str>, session: Option<&str>) {
        let candidates: Vec<Arc<Outbox>> = {
            let s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<u64> = match user {
                Some(uid) => s
                    .by_user
                    .get(&(tenant, uid.to_string()))
                    .map(|set| set.iter().copied().collect())
                    .unwrap_or_default(),
                None => s
                    .by_id
                    .values()
                    .filter(|sock| sock.tenant.id == tenant)
                    .filter(|sock| {
                        sock.user()
                            .is_some_and(|(_, sid)| Some(sid.as_str()) == session)
                    })
                    .map(|sock| sock.id)
                    .collect(),
            };
            ids.iter()
                .filter_map(|id| s.by_id.get(id).cloned())
                .collect()
        };
        for sock in candidates {
            let Some((uid, sid)) = sock.user() else {
                continue;
            };
            let scope = Scope::system(sock.tenant.clone(), SystemTask::SessionCheck);
            match self.auth.session_live(&scope, &sid, &uid).await {
                Ok(true) => {}
                Ok(false) => sock.kill(Kill::Revoked),
                Err(e) => tracing::warn!(error = %e, "realtime: cannot check a session"),
            }
        }
    }

    /// Admins, their sessions or keys changed: close the sockets whose admin read token
    /// no longer stands (ended, or its tenant no longer seen). An expired token is left
    /// to end its subscriptions as it does anyway.
    async fn recheck_readers(&self) {
        let readers: Vec<(Arc<Outbox>, Arc<str>)> = {
            let s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
            s.by_id
                .values()
                .filter_map(|sock| Some((sock.clone(), sock.auth()?.reader_token.clone()?)))
                .collect()
        };
        for (sock, token) in readers {
            let checked = self.auth.authenticate(sock.tenant.clone(), Some(&*token));
            if let Err(AuthError::ReaderRevoked | AuthError::TenantHidden) = checked.await {
                sock.kill(Kill::Revoked);
            }
        }
    }

    async fn recheck_all(&self) {
        let users: Vec<(i64, String)> = {
            let s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
            s.by_user.keys().cloned().collect()
        };
        for (tenant, uid) in users {
            self.recheck_sessions(tenant, Some(&uid), None).await;
        }
    }

    /// Closes every socket with 1001 "server shutting down".
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Open sockets (for tests and metrics).
    pub fn socket_count(&self) -> usize {
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .len()
    }
}
