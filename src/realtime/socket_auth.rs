//! Who a socket speaks for: its caller, the rules' view of it and its token's expiry.
//! Set by the upgrade or an `auth` message; read by the feed for every event.

use crate::rules::AuthInfo;
use crate::tenancy::{Caller, Scope};

/// Who a socket speaks for.
#[derive(Clone, Debug)]
pub struct SocketAuth {
    pub caller: Caller,
    pub info: Option<AuthInfo>,
    /// Unix seconds at which the token expires (users' and admins' read tokens; a
    /// service key does not expire).
    pub expires: Option<i64>,
    /// An admin's read token, kept to check it again when admins, their sessions or
    /// keys change (the socket closes when it no longer stands).
    pub reader_token: Option<std::sync::Arc<str>>,
}

impl SocketAuth {
    pub fn anonymous() -> SocketAuth {
        SocketAuth {
            caller: Caller::Anonymous,
            info: None,
            expires: None,
            reader_token: None,
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
                reader_token: None,
            },
            // An admin's read token lives minutes: its subscriptions end with it.
            Caller::Reader { .. } => SocketAuth {
                caller: scope.caller().clone(),
                info: None,
                expires: crate::auth::tokens::expiry_of(token),
                reader_token: Some(token.into()),
            },
            other => SocketAuth {
                caller: other.clone(),
                info: None,
                expires: None,
                reader_token: None,
            },
        }
    }
}
