//! The document store as callers see it: validate → authorize (rules) → store (document,
//! change log) in one transaction. `documents` knows nothing of realtime or functions;
//! they consume the change log.

mod batch;
pub mod before;
mod before_write;
mod cursor;
mod error;
mod explain;
mod gate;
mod list;
mod order;
pub mod patch;
mod read_plan;
pub mod wire;
mod write;

use std::sync::Arc;

use serde_json::Value;

pub use crate::names::{depth, has_nul, valid_collection, valid_doc_id};
pub use batch::BatchWrite;
pub use cursor::{CursorContext, CursorKey};
pub use error::DocError;
pub use explain::RuleExplanation;
pub(crate) use gate::meta;
pub use order::{MAX_ORDER_KEYS, parse_order};
pub use read_plan::{ReadFor, ReadPlan};
pub use wire::timestamp;

// Names the list code reaches through `super::`.
use gate::{auth_of, bypasses_rules, now_ms};

use crate::names::{CollectionName, DocId};
use crate::rules::{
    AuthInfo, CelError, ExprKind, Expression, Operation, Predicate, PredicateError, QueryBindings,
    RulesRegistry,
};
use crate::store::{Store, StoredDoc};
use crate::tenancy::Scope;

pub const MAX_DEPTH: usize = 32;

/// A list page (and a realtime snapshot) holds at most this much document data; a page
/// of large documents ends early, with a cursor to the rest (1,000 documents of 1 MiB
/// would otherwise be a gigabyte in memory per request).
pub const MAX_PAGE_BYTES: usize = 8 << 20;

/// Filters whose evaluation may take its whole budget (milliseconds) run on the blocking
/// pool, at most this many at once per core, so a flood of them queues instead of
/// taking the async runtime's workers or every core.
static COSTLY_FILTERS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    });

/// A list or subscription filter as SQL for this caller (its parts that do not mention
/// the document evaluated now, under a budget of `units`).
pub(crate) async fn filter_predicate(
    filter: Arc<Expression>,
    auth: Option<&AuthInfo>,
    now_ms: i64,
    units: u64,
) -> Result<Predicate, DocError> {
    let result = if filter.may_be_costly() {
        let _permit = COSTLY_FILTERS
            .acquire()
            .await
            .map_err(|_| DocError::Internal("filter semaphore closed".into()))?;
        let auth = auth.cloned();
        tokio::task::spawn_blocking(move || {
            filter.to_predicate_within(
                &QueryBindings {
                    auth: auth.as_ref(),
                    now_ms,
                },
                units,
            )
        })
        .await
        .map_err(|e| DocError::Internal(format!("filter translation failed: {e}")))?
    } else {
        filter.to_predicate_within(&QueryBindings { auth, now_ms }, units)
    };
    match result {
        Ok(p) if p.mentions_nul() => Err(DocError::InvalidFilter(CelError {
            line: 1,
            column: 1,
            message: "a string in a filter cannot contain U+0000 (no document holds one)".into(),
        })),
        Ok(p) => Ok(p),
        Err(PredicateError::Untranslatable(u)) => Err(DocError::InvalidFilter(CelError {
            line: u.line,
            column: u.column,
            message: u.message,
        })),
        Err(PredicateError::TooCostly) => Err(DocError::FilterTooCostly),
    }
}

pub const MAX_BATCH: usize = 500;

/// Conditions of a write, from `If-Match` / `If-None-Match`.
#[derive(Clone, Debug, Default)]
pub struct Preconditions {
    /// The version the document must have; `Some(None)` is `*` (it must exist).
    pub if_match: Option<Option<i64>>,
    /// `If-None-Match: *`: the document must not exist.
    pub if_none_match_any: bool,
}

impl Preconditions {
    fn check(&self, existing: Option<&StoredDoc>) -> Result<(), DocError> {
        match (existing, self.if_match) {
            (None, Some(_)) => {
                return Err(DocError::PreconditionFailed(
                    "the document does not exist".into(),
                ));
            }
            (Some(d), Some(Some(v))) if d.version != v => {
                return Err(DocError::PreconditionFailed(format!(
                    "the document is at version {}, not {v}",
                    d.version
                )));
            }
            _ => {}
        }
        if self.if_none_match_any && existing.is_some() {
            return Err(DocError::PreconditionFailed("the document exists".into()));
        }
        Ok(())
    }
}

/// A PATCH body.
#[derive(Clone, Debug)]
pub enum PatchBody {
    Merge(Value),
    JsonPatch(Value),
}

#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub filter: Option<String>,
    pub order: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Also count every document the list matches (all pages), up to [`MAX_COUNT`].
    pub count: bool,
}

/// `?count=true` counts at most this many documents: the count reads every matching
/// row (from an index where one serves the filter), so it is bounded like a page is.
pub const MAX_COUNT: i64 = 10_000;

pub struct Page {
    pub items: Vec<crate::store::ListedDoc>,
    pub next_cursor: Option<String>,
    pub count: Option<Count>,
}

/// The number of documents a list matches, whatever the cursor and limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    /// At most [`MAX_COUNT`].
    pub count: i64,
    /// More documents match than `count` says (the count stopped at [`MAX_COUNT`]).
    pub capped: bool,
}

#[derive(Clone, Debug)]
pub struct DocLimits {
    pub max_bytes: usize,
}

pub struct DocumentService {
    store: Store,
    rules: Arc<RulesRegistry>,
    cursor_key: CursorKey,
    limits: DocLimits,
    /// Compiled list filters by source text: compiling costs hundreds of lookups
    /// (BENCHMARKS.md), and clients repeat the same few filters.
    filters: std::sync::RwLock<std::collections::HashMap<String, Arc<Expression>>>,
    before: std::sync::OnceLock<Arc<dyn before::BeforeWrite>>,
}

const MAX_CACHED_FILTERS: usize = 1024;

impl DocumentService {
    pub fn new(
        store: Store,
        rules: Arc<RulesRegistry>,
        cursor_key: CursorKey,
        limits: DocLimits,
    ) -> DocumentService {
        DocumentService {
            store,
            rules,
            cursor_key,
            limits,
            filters: Default::default(),
            before: Default::default(),
        }
    }

    /// Sets the one source of before-write hooks (the function service).
    pub fn set_before_write(&self, hooks: Arc<dyn before::BeforeWrite>) {
        let _ = self.before.set(hooks);
    }

    pub(crate) fn compile_filter(&self, src: &str) -> Result<Arc<Expression>, CelError> {
        if let Some(f) = self.filters.read().ok().and_then(|m| m.get(src).cloned()) {
            return Ok(f);
        }
        let compiled = Arc::new(Expression::compile(src, ExprKind::Filter)?);
        if let Ok(mut m) = self.filters.write() {
            if m.len() >= MAX_CACHED_FILTERS {
                m.clear();
            }
            m.insert(src.to_string(), compiled.clone());
        }
        Ok(compiled)
    }

    pub fn rules(&self) -> &Arc<RulesRegistry> {
        &self.rules
    }

    pub async fn get(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        id: &DocId,
    ) -> Result<StoredDoc, DocError> {
        let gate = self.gate(scope, collection).await?;
        let id = id.as_str();
        match self
            .store
            .get_document(scope, collection.as_str(), id)
            .await?
        {
            Some(doc) => {
                gate.check(Operation::Read, id, Some(&doc), None)?;
                Ok(doc)
            }
            None => Err(gate.missing(Operation::Read, id)),
        }
    }
}
