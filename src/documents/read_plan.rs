//! The read-access plan: what a caller may read of a collection, as one predicate (the
//! read rule ∧ the filter ∧ the document id), built in one place for lists, snapshots and
//! subscriptions alike. It is the most security-sensitive composition of the service, so
//! it has no second copy.

use std::sync::Arc;

use crate::names::{CollectionName, DocId};
use crate::rules::{CmpOp, Expression, Field, Operation, Predicate, PredicateError, RuleSet};
use crate::tenancy::Scope;

use super::{DocError, DocumentService, auth_of, bypasses_rules, filter_predicate, now_ms};

/// What the plan is for; it decides the budget of the filter's caller-only parts and how
/// strictly a rule that cannot decide is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFor {
    /// A page of a list, under the request budget. A read rule that cannot decide for
    /// this caller (`Unknown`) lists nothing rather than refusing.
    List,
    /// A realtime subscription (and its snapshot), under the per-event budget, since its
    /// filter is evaluated again for every event. A rule that cannot decide for this
    /// caller refuses at once: the subscription could never deliver anything.
    Subscription,
}

impl ReadFor {
    fn budget(self) -> u64 {
        match self {
            ReadFor::List => crate::rules::EVAL_BUDGET,
            ReadFor::Subscription => crate::rules::EVENT_BUDGET,
        }
    }
}

/// A read, authorized and translated.
pub struct ReadPlan {
    /// What the store is asked for; None when nothing restricts the read (a caller that
    /// bypasses rules, with no filter and no document id).
    pub predicate: Option<Predicate>,
    /// The compiled filter, for evaluation in memory (a subscription's events).
    pub filter: Option<Arc<Expression>>,
    /// The rule set the plan was made from (its declared indexes guide a list's order).
    pub rules: Arc<RuleSet>,
}

impl DocumentService {
    /// The read plan of `scope`'s caller over `collection`, narrowed by an optional filter
    /// (CEL source; blank is none) and document id.
    ///
    /// Refuses (`Denied`) when the collection has no read rule or the rule denies this
    /// caller everything, before a filter is compiled or evaluated.
    pub async fn read_plan(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        filter: Option<&str>,
        doc: Option<&DocId>,
        purpose: ReadFor,
    ) -> Result<ReadPlan, DocError> {
        let now = now_ms();
        let auth = auth_of(scope);
        let rules = self.rules.get(scope).await?;
        let mut parts: Vec<Predicate> = Vec::new();
        if !bypasses_rules(scope) {
            let denied = || DocError::Denied {
                collection: collection.to_string(),
                op: "read",
            };
            let rule = rules
                .rule(collection.as_str(), Operation::Read)
                .ok_or_else(denied)?;
            let qb = crate::rules::QueryBindings {
                auth: auth.as_ref(),
                now_ms: now,
            };
            let pred = match rule.to_predicate(&qb) {
                Ok(p) => p,
                // Read rules are checked translatable at install; failing here is a bug.
                Err(PredicateError::Untranslatable(u)) => {
                    return Err(DocError::Internal(format!(
                        "read rule not translatable: {}",
                        u.message
                    )));
                }
                // A rule too costly for this caller denies.
                Err(PredicateError::TooCostly) => Predicate::False,
            };
            let never = match purpose {
                ReadFor::List => pred == Predicate::False,
                ReadFor::Subscription => matches!(pred, Predicate::False | Predicate::Unknown),
            };
            if never {
                // Nothing can be read: refuse before compiling or evaluating a filter.
                return Err(denied());
            }
            parts.push(pred);
        }
        let filter = match filter.map(str::trim).filter(|f| !f.is_empty()) {
            Some(src) => {
                let compiled = self.compile_filter(src).map_err(DocError::InvalidFilter)?;
                // Its parts that do not mention the document are evaluated now (off the
                // async workers when they may be costly); the rest is translatable, so
                // linear in the document.
                parts.push(
                    filter_predicate(compiled.clone(), auth.as_ref(), now, purpose.budget())
                        .await?,
                );
                Some(compiled)
            }
            None => None,
        };
        if let Some(d) = doc {
            parts.push(Predicate::Compare {
                field: Field::Id,
                op: CmpOp::Eq,
                value: serde_json::Value::String(d.as_str().to_string()),
            });
        }
        let predicate = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Predicate::And(parts)),
        };
        Ok(ReadPlan {
            predicate,
            filter,
            rules,
        })
    }
}
