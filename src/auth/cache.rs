//! A short-lived cache of positive authentication checks (live sessions, live service
//! keys), so a request does not pay a database round trip to learn what the previous
//! request learned a moment ago.
//!
//! Revocations made through this process forget the affected entries at once and are
//! announced (`store::announce`) to the other nodes sharing a PostgreSQL database, the
//! `plinth` CLI's included; a node that missed an announcement sees the revocation
//! within the TTL (one second by default).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::tokens::AccessClaims;
use crate::store::Store;

/// A user's sessions (or one session) may have ended: disabled, deleted, revoked, logged
/// out, password changed. Subscribers (the realtime broker) re-check what they hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEvent {
    pub tenant: i64,
    pub user: Option<String>,
    pub session: Option<String>,
}

/// What a live service key resolves to.
#[derive(Clone, Debug)]
pub struct CachedKey {
    pub id: String,
    pub hash: String,
}

pub struct AuthCache {
    ttl: Duration,
    /// Verified access tokens (exact text) -> their claims. A token is immutable, so a
    /// cached verification stays true until the token expires; a tampered token is a
    /// different text and misses.
    tokens: RwLock<HashMap<String, std::sync::Arc<AccessClaims>>>,
    /// (tenant, session id) -> (user id, checked at)
    sessions: RwLock<HashMap<(i64, String), (String, Instant)>>,
    /// (tenant, key prefix) -> (key, checked at)
    keys: RwLock<HashMap<(i64, String), (CachedKey, Instant)>>,
    /// Admins' read tokens (exact text) found live -> checked at. Any change to admins,
    /// their sessions or keys drops them all: admins are few, such changes rare.
    readers: RwLock<HashMap<String, Instant>>,
    /// Bumped each time the read tokens found live are dropped, so holders of read
    /// tokens (realtime sockets) check theirs again.
    readers_dropped: tokio::sync::watch::Sender<u64>,
    events: tokio::sync::broadcast::Sender<SessionEvent>,
    /// Announces session changes to the other nodes.
    store: Store,
}

const MAX_ENTRIES: usize = 100_000;

impl AuthCache {
    pub fn new(ttl: Duration, store: Store) -> AuthCache {
        AuthCache {
            ttl,
            tokens: RwLock::new(HashMap::new()),
            sessions: RwLock::new(HashMap::new()),
            keys: RwLock::new(HashMap::new()),
            readers: RwLock::new(HashMap::new()),
            readers_dropped: tokio::sync::watch::Sender::new(0),
            events: tokio::sync::broadcast::channel(1024).0,
            store,
        }
    }

    /// The claims of a token verified before, if it has not expired since.
    pub fn verified(&self, token: &str, now_secs: i64) -> Option<std::sync::Arc<AccessClaims>> {
        self.tokens
            .read()
            .ok()?
            .get(token)
            .filter(|c| c.exp > now_secs)
            .cloned()
    }

    pub fn remember_verified(&self, token: &str, claims: std::sync::Arc<AccessClaims>) {
        if let Ok(mut m) = self.tokens.write() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(token.to_string(), claims);
        }
    }

    pub fn session_live(&self, tenant: i64, sid: &str, uid: &str) -> bool {
        self.sessions.read().is_ok_and(|m| {
            m.get(&(tenant, sid.to_string()))
                .is_some_and(|(u, at)| u == uid && at.elapsed() < self.ttl)
        })
    }

    pub fn remember_session(&self, tenant: i64, sid: &str, uid: &str) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut m) = self.sessions.write() {
            if m.len() >= MAX_ENTRIES {
                m.retain(|_, (_, at)| at.elapsed() < self.ttl);
                if m.len() >= MAX_ENTRIES {
                    m.clear();
                }
            }
            m.insert((tenant, sid.to_string()), (uid.to_string(), Instant::now()));
        }
    }

    /// Forgets one session (signed out, revoked) and announces it, here and to the other
    /// nodes.
    pub async fn forget_session(&self, tenant: i64, sid: &str) {
        if let Ok(mut m) = self.sessions.write() {
            m.remove(&(tenant, sid.to_string()));
        }
        let _ = self.events.send(SessionEvent {
            tenant,
            user: None,
            session: Some(sid.to_string()),
        });
        self.store.notify_session_ended(tenant, sid).await;
    }

    /// Forgets every session of a user (disabled, deleted, password changed, revoked) and
    /// announces it, here and to the other nodes.
    pub async fn forget_user(&self, tenant: i64, uid: &str) {
        if let Ok(mut m) = self.sessions.write() {
            m.retain(|(t, _), (u, _)| !(*t == tenant && u == uid));
        }
        let _ = self.events.send(SessionEvent {
            tenant,
            user: Some(uid.to_string()),
            session: None,
        });
        self.store.notify_sessions(tenant, uid).await;
    }

    /// Drops a user's sessions, silently (unlike `forget_user`).
    pub fn drop_user(&self, tenant: i64, uid: &str) {
        if let Ok(mut m) = self.sessions.write() {
            m.retain(|(t, _), (u, _)| !(*t == tenant && u == uid));
        }
    }

    /// Drops one session, silently (unlike `forget_session`).
    pub fn drop_session(&self, tenant: i64, sid: &str) {
        if let Ok(mut m) = self.sessions.write() {
            m.remove(&(tenant, sid.to_string()));
        }
    }

    /// Drops the tenant's sessions and keys, silently (the change was made elsewhere and
    /// announced there).
    pub fn drop_tenant(&self, tenant: i64) {
        if let Ok(mut m) = self.sessions.write() {
            m.retain(|(t, _), _| *t != tenant);
        }
        if let Ok(mut m) = self.keys.write() {
            m.retain(|(t, _), _| *t != tenant);
        }
    }

    /// Drops the checks past the TTL and the tokens past their expiry: they would never be
    /// used again, and otherwise stay until the map is full (a node that served many
    /// tenants would keep an entry for each).
    pub fn release_stale(&self, now_secs: i64) {
        if let Ok(mut m) = self.tokens.write() {
            m.retain(|_, c| c.exp > now_secs);
        }
        if let Ok(mut m) = self.sessions.write() {
            m.retain(|_, (_, at)| at.elapsed() < self.ttl);
        }
        if let Ok(mut m) = self.keys.write() {
            m.retain(|_, (_, at)| at.elapsed() < self.ttl);
        }
        if let Ok(mut m) = self.readers.write() {
            m.retain(|_, at| at.elapsed() < self.ttl);
        }
    }

    /// Session changes made through this process, as they happen.
    pub fn session_events(&self) -> tokio::sync::broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    pub fn key(&self, tenant: i64, prefix: &str) -> Option<CachedKey> {
        self.keys.read().ok().and_then(|m| {
            m.get(&(tenant, prefix.to_string()))
                .filter(|(_, at)| at.elapsed() < self.ttl)
                .map(|(k, _)| k.clone())
        })
    }

    pub fn remember_key(&self, tenant: i64, prefix: &str, key: CachedKey) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut m) = self.keys.write() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert((tenant, prefix.to_string()), (key, Instant::now()));
        }
    }

    pub fn forget_key(&self, tenant: i64, prefix: &str) {
        if let Ok(mut m) = self.keys.write() {
            m.remove(&(tenant, prefix.to_string()));
        }
    }

    /// Whether this read token was found live within the TTL.
    pub fn reader_live(&self, token: &str) -> bool {
        self.readers
            .read()
            .is_ok_and(|m| m.get(token).is_some_and(|at| at.elapsed() < self.ttl))
    }

    pub fn remember_reader(&self, token: &str) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut m) = self.readers.write() {
            if m.len() >= MAX_ENTRIES {
                m.retain(|_, at| at.elapsed() < self.ttl);
                if m.len() >= MAX_ENTRIES {
                    m.clear();
                }
            }
            m.insert(token.to_string(), Instant::now());
        }
    }

    /// An admin, session or admin API key changed (removed, demoted, signed out, new
    /// password, revoked): forgets every read token found live, here and, through the
    /// announcement, on the other nodes.
    pub async fn forget_readers(&self) {
        self.drop_readers();
        self.store.announce_admins_changed().await;
    }

    /// Forgets the read tokens found live, silently (unlike `forget_readers`).
    pub fn drop_readers(&self) {
        if let Ok(mut m) = self.readers.write() {
            m.clear();
        }
        self.readers_dropped.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes each time the read tokens found live are dropped (here or, announced, on
    /// another node): what holds a read token checks it again.
    pub fn readers_dropped(&self) -> tokio::sync::watch::Receiver<u64> {
        self.readers_dropped.subscribe()
    }
}
