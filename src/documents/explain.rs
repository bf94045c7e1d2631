//! Which rule and sub-expression decide an operation on a stored document.

use super::gate::{meta, now_ms};
use super::{DocError, DocumentService};
use crate::names::{CollectionName, DocId, NameError};
use crate::rules::{AuthInfo, Bindings, Explanation, Operation};
use crate::tenancy::Scope;

/// What `explain` reports.
pub struct ExplainResult {
    pub operation: Operation,
    /// Whether the document is stored; a missing one is explained as `doc == null`
    /// (what a create, or a read of an absent id, sees).
    pub exists: bool,
    pub rule: Option<String>,
    pub explanation: Option<Explanation>,
}

impl DocumentService {
    /// Which rule and sub-expression decide `op` on a stored document for one of the
    /// tenant's users (`uid`) or for an anonymous caller: the one explain behind the HTTP
    /// route and the CLI, so the two cannot drift apart.
    ///
    /// `doc` is the document's names as the caller parsed them; a refused name is answered
    /// only after an unknown `uid`, so the answer to a request wrong in both stays the same.
    pub async fn explain_as(
        &self,
        scope: &Scope,
        doc: Result<(CollectionName, DocId), NameError>,
        op: Operation,
        uid: Option<&str>,
    ) -> Result<ExplainResult, DocError> {
        let auth = match uid {
            None => None,
            Some(uid) => {
                let user = self
                    .store
                    .get_user(scope, uid)
                    .await?
                    .ok_or(DocError::UnknownUser)?;
                Some(AuthInfo {
                    uid: user.id,
                    email: user.email,
                    email_verified: user.email_verified,
                    claims: serde_json::Value::Object(Default::default()),
                })
            }
        };
        let (collection, id) = doc?;
        self.explain(scope, &collection, &id, op, auth).await
    }

    pub(super) async fn explain(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        id: &DocId,
        op: Operation,
        auth: Option<AuthInfo>,
    ) -> Result<ExplainResult, DocError> {
        let (collection, id) = (collection.as_str(), id.as_str());
        let rules = self.rules.get(scope).await?;
        let doc = self.store.get_document(scope, collection, id).await?;
        let Some(rule) = rules.rule(collection, op) else {
            return Ok(ExplainResult {
                operation: op,
                exists: doc.is_some(),
                rule: None,
                explanation: None,
            });
        };
        let m = doc.as_ref().map(meta);
        let explanation = rule.explain(&Bindings {
            auth: auth.as_ref(),
            id,
            doc: doc.as_ref().map(|d| &d.data),
            new: if op == Operation::Update {
                doc.as_ref().map(|d| &d.data)
            } else {
                None
            },
            meta: m.as_ref(),
            now_ms: now_ms(),
        });
        Ok(ExplainResult {
            operation: op,
            exists: doc.is_some(),
            rule: Some(rule.source().to_string()),
            explanation: Some(explanation),
        })
    }
}
