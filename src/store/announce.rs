//! What nodes sharing one PostgreSQL database tell each other (NOTIFY) and how they hear
//! it (LISTEN). The channel names and payload formats live here and nowhere else; on
//! SQLite one process serves the data, so there is nothing to tell.

use std::future::Future;
use std::time::Duration;

use super::{Backend, Store};

/// Commits of document writes; payload `{tenant}:{last seq}`.
pub(super) const CHANGES: &str = "plinth_changes";
/// Session changes; payload `{tenant}:{user id}` (all of a user's sessions) or
/// `{tenant}:#{session id}` (one session; `#` starts no user id).
const SESSIONS: &str = "plinth_sessions";
/// A tenant's configuration changed (settings, rules, deploys, secrets, keys); payload
/// its slug.
const TENANT_CHANGED: &str = "plinth_tenant_changed";
/// Admins, their console sessions or their API keys changed (what admins' read tokens
/// are checked against); no payload.
const ADMINS_CHANGED: &str = "plinth_admins_changed";

/// One announcement from a node (this one included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// The tenant's change log grew.
    Commit { tenant: i64 },
    /// All of a user's sessions changed (disabled, signed out everywhere, new password).
    UserSessions { tenant: i64, user_id: String },
    /// One session ended (a sign-out).
    SessionEnded { tenant: i64, session_id: String },
    /// The tenant's configuration changed: drop what is cached of it.
    TenantChanged { slug: String },
    /// An admin, console session or admin API key changed: drop the read tokens found live.
    AdminsChanged,
    /// Listening (re)started: whatever was announced before was missed.
    Resumed,
}

/// The kinds of announcement a follower wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    Commits,
    Sessions,
    Tenants,
    Admins,
}

impl Topic {
    fn channel(self) -> &'static str {
        match self {
            Topic::Commits => CHANGES,
            Topic::Sessions => SESSIONS,
            Topic::Tenants => TENANT_CHANGED,
            Topic::Admins => ADMINS_CHANGED,
        }
    }
}

pub(super) fn commit_payload(tenant: i64, seq: i64) -> String {
    format!("{tenant}:{seq}")
}

fn parse(channel: &str, payload: &str) -> Option<Announcement> {
    if channel == TENANT_CHANGED {
        return Some(Announcement::TenantChanged {
            slug: payload.to_string(),
        });
    }
    if channel == ADMINS_CHANGED {
        return Some(Announcement::AdminsChanged);
    }
    let (tenant, rest) = payload.split_once(':')?;
    let tenant = tenant.parse::<i64>().ok()?;
    match channel {
        CHANGES => Some(Announcement::Commit { tenant }),
        SESSIONS => Some(match rest.strip_prefix('#') {
            Some(sid) => Announcement::SessionEnded {
                tenant,
                session_id: sid.to_string(),
            },
            None => Announcement::UserSessions {
                tenant,
                user_id: rest.to_string(),
            },
        }),
        _ => None,
    }
}

impl Store {
    /// Calls `on` with each announcement of these topics, and with `Resumed` each time
    /// listening (re)starts; a lost connection is made again. Returns at once on SQLite;
    /// otherwise runs until its task is dropped.
    pub async fn follow_announcements<F, Fut>(&self, topics: &[Topic], mut on: F)
    where
        F: FnMut(Announcement) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Backend::Postgres(pool) = &*self.inner else {
            return;
        };
        let channels: Vec<&str> = topics.iter().map(|t| t.channel()).collect();
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, ?channels, "cannot LISTEN; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen_all(channels.iter().copied()).await {
                tracing::warn!(error = %e, ?channels, "LISTEN failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            on(Announcement::Resumed).await;
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        if let Some(a) = parse(n.channel(), n.payload()) {
                            on(a).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, ?channels, "LISTEN connection lost");
                        break;
                    }
                }
            }
        }
    }

    /// Tells every node that the tenant's configuration changed, so they drop what they
    /// cached of it.
    pub async fn announce_tenant_change(&self, slug: &str) {
        // The other nodes' caches still expire by themselves (about a second).
        self.announce(TENANT_CHANGED, slug.to_string()).await;
    }

    /// Tells every node that admins, their sessions or keys changed, so they check read
    /// tokens again.
    pub async fn announce_admins_changed(&self) {
        self.announce(ADMINS_CHANGED, String::new()).await;
    }

    /// Tells other nodes that the log of a tenant placed on a cluster grew: its commit's
    /// own NOTIFY went to that cluster, where no node listens.
    pub(super) async fn announce_commit(&self, tenant: i64, seq: i64) {
        self.announce(CHANGES, commit_payload(tenant, seq)).await;
    }

    /// Tells other nodes that a user's sessions changed.
    pub async fn notify_sessions(&self, tenant: i64, user_id: &str) {
        self.announce(SESSIONS, format!("{tenant}:{user_id}")).await;
    }

    /// Tells other nodes that one session ended (a sign-out).
    pub async fn notify_session_ended(&self, tenant: i64, session_id: &str) {
        self.announce(SESSIONS, format!("{tenant}:#{session_id}"))
            .await;
    }

    async fn announce(&self, channel: &'static str, payload: String) {
        if let Backend::Postgres(p) = &*self.inner
            && let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(&payload)
                .execute(p)
                .await
        {
            tracing::warn!(error = %e, channel, payload, "could not tell other nodes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_back() {
        assert_eq!(
            parse(CHANGES, &commit_payload(7, 42)),
            Some(Announcement::Commit { tenant: 7 })
        );
        assert_eq!(
            parse(SESSIONS, "3:u1"),
            Some(Announcement::UserSessions {
                tenant: 3,
                user_id: "u1".into()
            })
        );
        assert_eq!(
            parse(SESSIONS, "3:#s9"),
            Some(Announcement::SessionEnded {
                tenant: 3,
                session_id: "s9".into()
            })
        );
        assert_eq!(
            parse(TENANT_CHANGED, "shop"),
            Some(Announcement::TenantChanged {
                slug: "shop".into()
            })
        );
        assert_eq!(parse(ADMINS_CHANGED, ""), Some(Announcement::AdminsChanged));
        assert_eq!(parse(SESSIONS, "x:u1"), None);
        assert_eq!(parse("other", "1:2"), None);
    }
}
