//! Which rule and sub-expression decide an operation on a stored document.

use serde::{Deserialize, Serialize};

use super::gate::{meta, now_ms};
use super::{DocError, DocumentService};
use crate::names::{CollectionName, DocId, NameError};
use crate::rules::{AuthInfo, Bindings, Operation, TraceStep};
use crate::tenancy::Scope;

/// Which rule decides an operation on a stored document, and why.
// The one answer of `GET …/docs/{id}?explain=1`, of the admin API's explain route and of
// `plinth rules explain` (which reads it back from the admin API in remote mode). A plain
// comment, so the OpenAPI description stays the sentence above.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleExplanation {
    pub collection: String,
    pub id: String,
    #[schema(value_type = String)]
    pub operation: Operation,
    /// Whether the document is stored; a missing one is explained as `doc == null`.
    pub exists: bool,
    /// The rule's expression; null when the collection has no rule for the operation
    /// (then it is denied).
    pub rule: Option<String>,
    pub allowed: bool,
    /// The sub-expression whose value decided.
    pub decided_by: Option<String>,
    /// `{"expression","value"}` for each sub-expression evaluated.
    #[schema(value_type = Vec<serde_json::Value>)]
    pub trace: Vec<TraceStep>,
}

impl DocumentService {
    /// Which rule and sub-expression decide `op` on a stored document for one of the
    /// tenant's users (`uid`) or for an anonymous caller: the one explain behind the HTTP
    /// routes and the CLI, so they cannot drift apart.
    ///
    /// `doc` is the document's names as the caller parsed them; a refused name is answered
    /// only after an unknown `uid`, so the answer to a request wrong in both stays the same.
    pub async fn explain_as(
        &self,
        scope: &Scope,
        doc: Result<(CollectionName, DocId), NameError>,
        op: Operation,
        uid: Option<&str>,
    ) -> Result<RuleExplanation, DocError> {
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

    async fn explain(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        id: &DocId,
        op: Operation,
        auth: Option<AuthInfo>,
    ) -> Result<RuleExplanation, DocError> {
        let (collection, id) = (collection.as_str(), id.as_str());
        let rules = self.rules.get(scope).await?;
        let doc = self.store.get_document(scope, collection, id).await?;
        let mut answer = RuleExplanation {
            collection: collection.to_string(),
            id: id.to_string(),
            operation: op,
            exists: doc.is_some(),
            rule: None,
            allowed: false,
            decided_by: None,
            trace: Vec::new(),
        };
        let Some(rule) = rules.rule(collection, op) else {
            return Ok(answer);
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
        answer.rule = Some(rule.source().to_string());
        answer.allowed = explanation.allowed;
        answer.decided_by = Some(explanation.decided_by);
        answer.trace = explanation.trace;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON every explain answers with (the admin API's declared schema; the REST
    /// route's bytes are this object with its keys sorted).
    #[test]
    fn an_explanation_serializes_to_the_documented_json() {
        let x = RuleExplanation {
            collection: "notes".into(),
            id: "n1".into(),
            operation: Operation::Read,
            exists: true,
            rule: Some("doc.owner == auth.uid".into()),
            allowed: true,
            decided_by: Some("doc.owner == auth.uid".into()),
            trace: vec![TraceStep {
                expression: "doc.owner == auth.uid".into(),
                value: "true".into(),
            }],
        };
        let json = serde_json::to_string(&x).unwrap();
        assert_eq!(
            json,
            r#"{"collection":"notes","id":"n1","operation":"read","exists":true,"rule":"doc.owner == auth.uid","allowed":true,"decided_by":"doc.owner == auth.uid","trace":[{"expression":"doc.owner == auth.uid","value":"true"}]}"#
        );
        assert_eq!(serde_json::from_str::<RuleExplanation>(&json).unwrap(), x);
        let none = RuleExplanation {
            rule: None,
            allowed: false,
            decided_by: None,
            trace: Vec::new(),
            exists: false,
            operation: Operation::Delete,
            ..x
        };
        assert_eq!(
            serde_json::to_string(&none).unwrap(),
            r#"{"collection":"notes","id":"n1","operation":"delete","exists":false,"rule":null,"allowed":false,"decided_by":null,"trace":[]}"#
        );
    }
}
