//! The caller as rules see it, and the gate that decides one operation on one document
//! in memory.

use std::sync::Arc;

use serde_json::Value;

use super::{DocError, DocumentService};
use crate::names::CollectionName;
use crate::rules::{AuthInfo, Bindings, DocMeta, Operation, RuleSet};
use crate::store::StoredDoc;
use crate::tenancy::{Caller, Scope};

/// The rules' view of the caller: a user's identity, None for every other caller
/// (anonymous, and those that bypass rules: service keys, admins, the system).
pub(super) fn auth_of(scope: &Scope) -> Option<AuthInfo> {
    match scope.caller() {
        Caller::User(u) => Some(AuthInfo {
            uid: u.uid.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            claims: Value::Object(Default::default()),
        }),
        _ => None,
    }
}

pub(super) fn bypasses_rules(scope: &Scope) -> bool {
    scope.caller().bypasses_rules()
}

/// Refuses every write of a caller that only reads (an admin's read token), at the
/// entry of each write, before anything runs for it (before hooks included).
pub(super) fn may_write(scope: &Scope) -> Result<(), DocError> {
    if scope.caller().reads_only() {
        Err(DocError::ReadOnly)
    } else {
        Ok(())
    }
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The metadata of a stored document as rules see it.
pub(crate) fn meta(d: &StoredDoc) -> DocMeta {
    DocMeta {
        version: d.version,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

/// The caller's permission for one operation on one document, decided in memory.
#[derive(Clone)]
pub(super) struct Gate {
    rules: Option<Arc<RuleSet>>,
    auth: Option<AuthInfo>,
    /// The caller only reads: checked again here, so no write path can miss it.
    reads_only: bool,
    pub(super) collection: CollectionName,
}

impl Gate {
    pub(super) fn check(
        &self,
        op: Operation,
        id: &str,
        doc: Option<&StoredDoc>,
        new: Option<&Value>,
    ) -> Result<(), DocError> {
        if self.reads_only && op != Operation::Read {
            return Err(DocError::ReadOnly);
        }
        let Some(rules) = &self.rules else {
            return Ok(());
        };
        let allowed = match rules.rule(self.collection.as_str(), op) {
            None => false,
            Some(rule) => {
                let m = doc.map(meta);
                rule.evaluate(&Bindings {
                    auth: self.auth.as_ref(),
                    id,
                    doc: doc.map(|d| &d.data),
                    new,
                    meta: m.as_ref(),
                    now_ms: now_ms(),
                })
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(DocError::Denied {
                collection: self.collection.to_string(),
                op: op.as_str(),
            })
        }
    }

    /// A missing document: 404 if the caller could have acted on it, 403 otherwise, so
    /// a denied caller cannot probe which ids exist.
    pub(super) fn missing(&self, op: Operation, id: &str) -> DocError {
        match self.check(op, id, None, None) {
            Ok(()) => DocError::NotFound,
            Err(denied) => denied,
        }
    }
}

impl DocumentService {
    pub(super) async fn gate(
        &self,
        scope: &Scope,
        collection: &CollectionName,
    ) -> Result<Gate, DocError> {
        let rules = if bypasses_rules(scope) {
            None
        } else {
            Some(self.rules.get(scope).await?)
        };
        Ok(Gate {
            rules,
            auth: auth_of(scope),
            reads_only: scope.caller().reads_only(),
            collection: collection.clone(),
        })
    }
}
