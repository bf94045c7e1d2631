//! Who the socket speaks for over time: an `auth` message changes it, the token's
//! expiry ends the subscriptions that depended on it.

use std::time::Duration;

use tokio::time::Instant;

use super::Connection;
use crate::realtime::protocol::{self, ServerMsg};
use crate::realtime::socket_auth::SocketAuth;

impl Connection {
    /// Points the expiry timer at the current token's `exp`; returns that `exp` (None when
    /// the socket has no expiring token). Unchanged when the token is the same.
    pub(super) fn arm_expiry(
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
    pub(super) fn token_expired(&mut self) -> Vec<String> {
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

    pub(super) async fn authenticate(&mut self, token: &str) -> String {
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
                if matches!(
                    e,
                    crate::auth::AuthError::Store(_) | crate::auth::AuthError::Internal(_)
                ) {
                    tracing::warn!(error = %e, "realtime: cannot authenticate a socket");
                }
                protocol::error(None, e.code(), &e.client_detail())
            }
        }
    }
}
