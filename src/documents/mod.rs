//! The document store as callers see it: validate → authorize (rules) → store (document,
//! change log) in one transaction. `documents` knows nothing of realtime or functions;
//! they consume the change log.

pub mod before;
mod cursor;
mod error;
mod list;
pub mod patch;
mod read_plan;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

pub use crate::names::{depth, has_nul, valid_collection, valid_doc_id};
pub use cursor::{CursorContext, CursorKey};
pub use error::DocError;
pub use read_plan::{ReadFor, ReadPlan};

use crate::rules::{
    AuthInfo, Bindings, CelError, DocMeta, Explanation, ExprKind, Expression, Field, Operation,
    Predicate, PredicateError, QueryBindings, RuleSet, RulesRegistry,
};
use crate::store::{
    JobRef, OrderKey, Store, StoreError, StoredDoc, WriteDecision, WriteError, WriteRequest,
    Written,
};
use crate::tenancy::{Caller, Scope};

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
pub const MAX_ORDER_KEYS: usize = 4;

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

/// One write of a batch, as posted.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
pub struct BatchWrite {
    /// create | put | patch | delete
    pub op: String,
    pub collection: String,
    pub id: Option<String>,
    /// create and put: the document's data.
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    pub data: Option<Value>,
    /// patch: an object is a merge patch, an array a JSON Patch (with `increment`).
    pub patch: Option<Value>,
    /// The version the document must have.
    pub if_match: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct DocLimits {
    pub max_bytes: usize,
}

/// What `explain` reports.
pub struct ExplainResult {
    pub operation: Operation,
    pub rule: Option<String>,
    pub explanation: Option<Explanation>,
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

/// What a write intends, before its data is final.
enum Intent {
    Put(Value),
    Patch(PatchBody),
    Delete,
}

/// Attempts of a write whose before hook saw a version that changed before the write.
const BEFORE_RACE_ATTEMPTS: usize = 3;

const MAX_CACHED_FILTERS: usize = 1024;

/// The rules' view of the caller: a user's identity, None for every other caller
/// (anonymous, and those that bypass rules: service keys, admins, the system).
fn auth_of(scope: &Scope) -> Option<AuthInfo> {
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

fn bypasses_rules(scope: &Scope) -> bool {
    scope.caller().bypasses_rules()
}

fn now_ms() -> i64 {
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
struct Gate {
    rules: Option<Arc<RuleSet>>,
    auth: Option<AuthInfo>,
    collection: String,
}

impl Gate {
    fn check(
        &self,
        op: Operation,
        id: &str,
        doc: Option<&StoredDoc>,
        new: Option<&Value>,
    ) -> Result<(), DocError> {
        let Some(rules) = &self.rules else {
            return Ok(());
        };
        let allowed = match rules.rule(&self.collection, op) {
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
                collection: self.collection.clone(),
                op: op.as_str(),
            })
        }
    }

    /// A missing document: 404 if the caller could have acted on it, 403 otherwise, so
    /// a denied caller cannot probe which ids exist.
    fn missing(&self, op: Operation, id: &str) -> DocError {
        match self.check(op, id, None, None) {
            Ok(()) => DocError::NotFound,
            Err(denied) => denied,
        }
    }
}

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

    /// The before hooks of writes to `collection`, when there are any.
    async fn before_hooks(
        &self,
        scope: &Scope,
        collection: &str,
    ) -> Option<Arc<dyn before::BeforeWrite>> {
        let hooks = self.before.get()?;
        hooks.wants(scope, collection).await.then(|| hooks.clone())
    }

    /// Reads the stored document, works out the data the write would store, and lets the
    /// before hooks replace it or refuse. The result is the data to write (None: delete)
    /// and a precondition on the version the hooks saw, so nothing changes in between.
    async fn resolve_before(
        &self,
        scope: &Scope,
        hooks: &dyn before::BeforeWrite,
        gate: &Gate,
        id: &str,
        intent: &Intent,
        pre: &Preconditions,
    ) -> Result<(Option<Value>, Preconditions), DocError> {
        let collection = gate.collection.as_str();
        let current = self.store.get_document(scope, collection, id).await?;
        pre.check(current.as_ref())?;
        let (op, new) = match (intent, &current) {
            (Intent::Put(data), None) => (crate::store::ChangeOp::Create, Some(data.clone())),
            (Intent::Put(data), Some(_)) => (crate::store::ChangeOp::Update, Some(data.clone())),
            (Intent::Patch(body), Some(old)) => {
                let new = match body {
                    PatchBody::Merge(p) => patch::merge(&old.data, p),
                    PatchBody::JsonPatch(ops) => {
                        patch::json_patch(&old.data, ops).map_err(DocError::Patch)?
                    }
                };
                (crate::store::ChangeOp::Update, Some(new))
            }
            (Intent::Delete, Some(_)) => (crate::store::ChangeOp::Delete, None),
            (Intent::Patch(_), None) => return Err(gate.missing(Operation::Update, id)),
            (Intent::Delete, None) => return Err(gate.missing(Operation::Delete, id)),
        };
        let replaced = hooks
            .run(
                scope,
                before::PendingWrite {
                    collection,
                    id,
                    op,
                    new: new.as_ref(),
                    before: current.as_ref(),
                },
            )
            .await?;
        let data = match (op, replaced, new) {
            (crate::store::ChangeOp::Delete, _, _) => None,
            (_, Some(r), _) | (_, None, Some(r)) => {
                self.check_data(&r)?;
                Some(r)
            }
            (_, None, None) => None,
        };
        let pinned = match &current {
            Some(d) => Preconditions {
                if_match: Some(Some(d.version)),
                if_none_match_any: false,
            },
            None => Preconditions {
                if_match: None,
                if_none_match_any: true,
            },
        };
        Ok((data, pinned))
    }

    /// A single write through before hooks, retried when the document changed between
    /// the hooks' read and the write.
    async fn write_with_before(
        &self,
        scope: &Scope,
        hooks: Arc<dyn before::BeforeWrite>,
        collection: &str,
        id: &str,
        intent: Intent,
        pre: Preconditions,
    ) -> Result<Written, DocError> {
        let gate = self.gate(scope, collection).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (data, pinned) = self
                .resolve_before(scope, &*hooks, &gate, id, &intent, &pre)
                .await?;
            let request = match data {
                Some(data) => put_request(gate.clone(), collection, id, data, pinned),
                None => delete_request(gate.clone(), collection, id, pinned),
            };
            match self.write_one(scope, request).await {
                Err(DocError::PreconditionFailed(_) | DocError::Exists)
                    if attempt < BEFORE_RACE_ATTEMPTS =>
                {
                    continue;
                }
                other => return other,
            }
        }
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

    async fn gate(&self, scope: &Scope, collection: &str) -> Result<Gate, DocError> {
        let rules = if bypasses_rules(scope) {
            None
        } else {
            Some(self.rules.get(scope).await?)
        };
        Ok(Gate {
            rules,
            auth: auth_of(scope),
            collection: collection.to_string(),
        })
    }

    fn check_data(&self, data: &Value) -> Result<(), DocError> {
        if !data.is_object() {
            return Err(DocError::InvalidData(
                "document data must be a JSON object".into(),
            ));
        }
        if depth(data) > MAX_DEPTH {
            return Err(DocError::InvalidData(format!(
                "document data nests deeper than {MAX_DEPTH} levels"
            )));
        }
        if has_nul(data) {
            return Err(DocError::InvalidData(
                "strings and keys cannot contain U+0000".into(),
            ));
        }
        let size = serde_json::to_vec(data)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > self.limits.max_bytes {
            return Err(DocError::TooLarge(self.limits.max_bytes));
        }
        Ok(())
    }

    pub async fn get(
        &self,
        scope: &Scope,
        collection: &str,
        id: &str,
    ) -> Result<StoredDoc, DocError> {
        check_names(collection, Some(id))?;
        let gate = self.gate(scope, collection).await?;
        match self.store.get_document(scope, collection, id).await? {
            Some(doc) => {
                gate.check(Operation::Read, id, Some(&doc), None)?;
                Ok(doc)
            }
            None => Err(gate.missing(Operation::Read, id)),
        }
    }

    /// POST: a new document with a fresh UUIDv7 id.
    pub async fn create(
        &self,
        scope: &Scope,
        collection: &str,
        data: Value,
    ) -> Result<Written, DocError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.put(
            scope,
            collection,
            &id,
            data,
            Preconditions {
                if_none_match_any: true,
                ..Default::default()
            },
        )
        .await
    }

    /// PUT: creates the document at `id` or replaces it.
    pub async fn put(
        &self,
        scope: &Scope,
        collection: &str,
        id: &str,
        data: Value,
        pre: Preconditions,
    ) -> Result<Written, DocError> {
        check_names(collection, Some(id))?;
        self.check_data(&data)?;
        if let Some(hooks) = self.before_hooks(scope, collection).await {
            return self
                .write_with_before(scope, hooks, collection, id, Intent::Put(data), pre)
                .await;
        }
        let gate = self.gate(scope, collection).await?;
        let write = put_request(gate, collection, id, data, pre);
        self.write_one(scope, write).await
    }

    pub async fn patch(
        &self,
        scope: &Scope,
        collection: &str,
        id: &str,
        body: PatchBody,
        pre: Preconditions,
    ) -> Result<Written, DocError> {
        check_names(collection, Some(id))?;
        check_patch_shape(&body)?;
        if let Some(hooks) = self.before_hooks(scope, collection).await {
            return self
                .write_with_before(scope, hooks, collection, id, Intent::Patch(body), pre)
                .await;
        }
        let gate = self.gate(scope, collection).await?;
        let write = patch_request(gate, collection, id, body, pre, self.limits.clone());
        self.write_one(scope, write).await
    }

    pub async fn delete(
        &self,
        scope: &Scope,
        collection: &str,
        id: &str,
        pre: Preconditions,
    ) -> Result<Written, DocError> {
        check_names(collection, Some(id))?;
        if let Some(hooks) = self.before_hooks(scope, collection).await {
            return self
                .write_with_before(scope, hooks, collection, id, Intent::Delete, pre)
                .await;
        }
        let gate = self.gate(scope, collection).await?;
        let write = delete_request(gate, collection, id, pre);
        self.write_one(scope, write).await
    }

    async fn write_one(
        &self,
        scope: &Scope,
        w: WriteRequest<DocError>,
    ) -> Result<Written, DocError> {
        let mut written = self
            .store
            .write_documents(scope, vec![w], Vec::new())
            .await
            .map_err(|e| match e {
                WriteError::Rejected(_, e) => e,
                WriteError::Store(StoreError::Conflict(_)) => DocError::Exists,
                WriteError::Store(StoreError::NotFound) => DocError::NotFound,
                WriteError::Store(e) => DocError::Store(e),
            })?;
        written.pop().ok_or(DocError::NotFound)
    }

    /// Up to 500 writes, all or nothing, each checked against the rules.
    pub async fn batch(
        &self,
        scope: &Scope,
        writes: Vec<BatchWrite>,
    ) -> Result<Vec<Written>, DocError> {
        self.batch_acking(scope, writes, Vec::new()).await
    }

    /// A batch that also acknowledges after-hook deliveries (`ctx.db.batch(writes, {ack:
    /// true})`): it commits only while each delivery still holds its job and deletes the
    /// jobs with it, so its writes happen exactly once (`delivery_superseded` otherwise).
    pub async fn batch_acking(
        &self,
        scope: &Scope,
        writes: Vec<BatchWrite>,
        acks: Vec<JobRef>,
    ) -> Result<Vec<Written>, DocError> {
        if writes.is_empty() || writes.len() > MAX_BATCH {
            return Err(DocError::InvalidParam {
                param: "writes",
                message: format!("a batch holds 1 to {MAX_BATCH} writes"),
            });
        }
        let mut requests = Vec::with_capacity(writes.len());
        for (index, w) in writes.into_iter().enumerate() {
            let in_batch = |e: DocError| DocError::InBatch {
                index,
                source: Box::new(e),
            };
            let request = self.batch_request(scope, w).await.map_err(in_batch)?;
            requests.push(request);
        }
        self.store
            .write_documents(scope, requests, acks)
            .await
            .map_err(|e| match e {
                WriteError::Rejected(index, e) => DocError::InBatch {
                    index,
                    source: Box::new(e),
                },
                WriteError::Store(e) => DocError::Store(e),
            })
    }

    /// A batch write through before hooks, when its collection has any: the write is
    /// pinned to the version the hooks saw (a concurrent change fails the batch with 412).
    async fn batch_before(
        &self,
        scope: &Scope,
        collection: &str,
        id: &str,
        intent: Intent,
        pre: &Preconditions,
    ) -> Option<Result<WriteRequest<DocError>, DocError>> {
        let hooks = self.before_hooks(scope, collection).await?;
        Some(
            async {
                let gate = self.gate(scope, collection).await?;
                let (data, pinned) = self
                    .resolve_before(scope, &*hooks, &gate, id, &intent, pre)
                    .await?;
                Ok(match data {
                    Some(d) => put_request(gate, collection, id, d, pinned),
                    None => delete_request(gate, collection, id, pinned),
                })
            }
            .await,
        )
    }

    async fn batch_request(
        &self,
        scope: &Scope,
        w: BatchWrite,
    ) -> Result<WriteRequest<DocError>, DocError> {
        let collection = w.collection.as_str();
        let pre = Preconditions {
            if_match: w.if_match.map(Some),
            if_none_match_any: false,
        };
        let need_id = || {
            w.id.clone().ok_or(DocError::InvalidParam {
                param: "id",
                message: "is required for this op".into(),
            })
        };
        match w.op.as_str() {
            "create" | "put" => {
                let id = match (&w.op[..], &w.id) {
                    ("create", None) => uuid::Uuid::now_v7().to_string(),
                    _ => need_id()?,
                };
                check_names(collection, Some(&id))?;
                let data = w.data.clone().ok_or(DocError::InvalidParam {
                    param: "data",
                    message: "is required for create and put".into(),
                })?;
                self.check_data(&data)?;
                let pre = if w.op == "create" {
                    Preconditions {
                        if_none_match_any: true,
                        ..pre
                    }
                } else {
                    pre
                };
                if let Some(r) = self
                    .batch_before(scope, collection, &id, Intent::Put(data.clone()), &pre)
                    .await
                {
                    return r;
                }
                Ok(put_request(
                    self.gate(scope, collection).await?,
                    collection,
                    &id,
                    data,
                    pre,
                ))
            }
            "patch" => {
                let id = need_id()?;
                check_names(collection, Some(&id))?;
                let body = match w.patch.clone() {
                    Some(p @ Value::Array(_)) => PatchBody::JsonPatch(p),
                    Some(p @ Value::Object(_)) => PatchBody::Merge(p),
                    _ => {
                        return Err(DocError::InvalidParam {
                            param: "patch",
                            message: "must be an object (merge patch) or an array (JSON Patch)"
                                .into(),
                        });
                    }
                };
                check_patch_shape(&body)?;
                if let Some(r) = self
                    .batch_before(scope, collection, &id, Intent::Patch(body.clone()), &pre)
                    .await
                {
                    return r;
                }
                Ok(patch_request(
                    self.gate(scope, collection).await?,
                    collection,
                    &id,
                    body,
                    pre,
                    self.limits.clone(),
                ))
            }
            "delete" => {
                let id = need_id()?;
                check_names(collection, Some(&id))?;
                if let Some(r) = self
                    .batch_before(scope, collection, &id, Intent::Delete, &pre)
                    .await
                {
                    return r;
                }
                Ok(delete_request(
                    self.gate(scope, collection).await?,
                    collection,
                    &id,
                    pre,
                ))
            }
            other => Err(DocError::InvalidParam {
                param: "op",
                message: format!("'{other}' is not one of create, put, patch, delete"),
            }),
        }
    }

    /// Which rule decides `op` on a stored document for a given user (or anonymous).
    /// Which rule and sub-expression decide `op` on a stored document for one of the
    /// tenant's users (`uid`) or for an anonymous caller: the one explain behind the HTTP
    /// route and the CLI, so the two cannot drift apart.
    pub async fn explain_as(
        &self,
        scope: &Scope,
        collection: &str,
        id: &str,
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
        self.explain(scope, collection, id, op, auth).await
    }

    async fn explain(
        &self,
        scope: &Scope,
        collection: &str,
        id: &str,
        op: Operation,
        auth: Option<AuthInfo>,
    ) -> Result<ExplainResult, DocError> {
        check_names(collection, Some(id))?;
        let rules = self.rules.get(scope).await?;
        let doc = self.store.get_document(scope, collection, id).await?;
        let Some(rule) = rules.rule(collection, op) else {
            return Ok(ExplainResult {
                operation: op,
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
            rule: Some(rule.source().to_string()),
            explanation: Some(explanation),
        })
    }
}

fn check_names(collection: &str, id: Option<&str>) -> Result<(), DocError> {
    if !valid_collection(collection) {
        return Err(DocError::InvalidCollection);
    }
    if let Some(id) = id
        && !valid_doc_id(id)
    {
        return Err(DocError::InvalidId);
    }
    Ok(())
}

fn check_patch_shape(body: &PatchBody) -> Result<(), DocError> {
    match body {
        PatchBody::Merge(v) if !v.is_object() => Err(DocError::Patch(patch::PatchError::Invalid(
            "a merge patch must be a JSON object".into(),
        ))),
        PatchBody::JsonPatch(v) if !v.is_array() => Err(DocError::Patch(
            patch::PatchError::Invalid("a JSON Patch is an array of operations".into()),
        )),
        _ => Ok(()),
    }
}

fn put_request(
    gate: Gate,
    collection: &str,
    id: &str,
    data: Value,
    pre: Preconditions,
) -> WriteRequest<DocError> {
    let doc_id = id.to_string();
    WriteRequest {
        collection: collection.to_string(),
        id: id.to_string(),
        decide: Box::new(move |existing| {
            pre.check(existing)?;
            match existing {
                None => {
                    gate.check(Operation::Create, &doc_id, None, Some(&data))?;
                    Ok(WriteDecision::Insert(data))
                }
                Some(old) => {
                    gate.check(Operation::Update, &doc_id, Some(old), Some(&data))?;
                    Ok(WriteDecision::Replace(data))
                }
            }
        }),
    }
}

fn patch_request(
    gate: Gate,
    collection: &str,
    id: &str,
    body: PatchBody,
    pre: Preconditions,
    limits: DocLimits,
) -> WriteRequest<DocError> {
    let doc_id = id.to_string();
    WriteRequest {
        collection: collection.to_string(),
        id: id.to_string(),
        decide: Box::new(move |existing| {
            let Some(old) = existing else {
                pre.check(None)?;
                return Err(gate.missing(Operation::Update, &doc_id));
            };
            pre.check(Some(old))?;
            let new = match &body {
                PatchBody::Merge(p) => patch::merge(&old.data, p),
                PatchBody::JsonPatch(ops) => {
                    patch::json_patch(&old.data, ops).map_err(DocError::Patch)?
                }
            };
            if !new.is_object() {
                return Err(DocError::InvalidData(
                    "the patched document must stay a JSON object".into(),
                ));
            }
            if has_nul(&new) {
                return Err(DocError::InvalidData(
                    "strings and keys cannot contain U+0000".into(),
                ));
            }
            if depth(&new) > MAX_DEPTH {
                return Err(DocError::InvalidData(format!(
                    "document data nests deeper than {MAX_DEPTH} levels"
                )));
            }
            if serde_json::to_vec(&new)
                .map(|v| v.len())
                .unwrap_or(usize::MAX)
                > limits.max_bytes
            {
                return Err(DocError::TooLarge(limits.max_bytes));
            }
            gate.check(Operation::Update, &doc_id, Some(old), Some(&new))?;
            Ok(WriteDecision::Replace(new))
        }),
    }
}

fn delete_request(
    gate: Gate,
    collection: &str,
    id: &str,
    pre: Preconditions,
) -> WriteRequest<DocError> {
    let doc_id = id.to_string();
    WriteRequest {
        collection: collection.to_string(),
        id: id.to_string(),
        decide: Box::new(move |existing| {
            let Some(old) = existing else {
                pre.check(None)?;
                return Err(gate.missing(Operation::Delete, &doc_id));
            };
            pre.check(Some(old))?;
            gate.check(Operation::Delete, &doc_id, Some(old), None)?;
            Ok(WriteDecision::Delete)
        }),
    }
}

/// A document time as the API writes it everywhere (REST, realtime, hook events): RFC 3339
/// UTC with milliseconds, from unix milliseconds.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `order=field,-other`: meta fields by name (id, version, created_at, updated_at),
/// anything else a dotted path into the data (optionally prefixed `doc.`).
/// Keys without `created_at` get it appended (see below).
pub fn parse_order(src: &str) -> Result<Vec<OrderKey>, DocError> {
    let src = src.trim();
    if src.is_empty() {
        return Ok(vec![OrderKey {
            field: Field::CreatedAt,
            desc: false,
        }]);
    }
    let bad = |m: String| DocError::InvalidParam {
        param: "order",
        message: m,
    };
    let mut keys = Vec::new();
    for part in src.split(',') {
        let part = part.trim();
        let (desc, name) = match part.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, part.strip_prefix('+').unwrap_or(part)),
        };
        let field = match name {
            "id" => Field::Id,
            "version" => Field::Version,
            "created_at" => Field::CreatedAt,
            "updated_at" => Field::UpdatedAt,
            _ => {
                let path = name.strip_prefix("doc.").unwrap_or(name);
                let segs: Vec<String> = path.split('.').map(str::to_string).collect();
                let ok = !path.is_empty()
                    && segs.iter().all(|s| {
                        let b = s.as_bytes();
                        !b.is_empty()
                            && b.len() <= 64
                            && (b[0].is_ascii_alphabetic() || b[0] == b'_')
                            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    });
                if !ok {
                    return Err(bad(format!(
                        "'{name}' is not a field: use id, version, created_at, updated_at or a dotted path of identifiers"
                    )));
                }
                Field::Doc(segs)
            }
        };
        keys.push(OrderKey { field, desc });
    }
    if keys.len() > MAX_ORDER_KEYS {
        return Err(bad(format!("at most {MAX_ORDER_KEYS} fields")));
    }
    // Equal keys are ordered by the default order (created_at, then the tie-break), the
    // keys every declared index ends with: `order=score` on an index of
    // `["owner", "score"]` then reads in index order, without a sort.
    let unique_last = matches!(
        keys.last(),
        Some(OrderKey {
            field: Field::Id,
            ..
        })
    );
    if !unique_last && !keys.iter().any(|k| k.field == Field::CreatedAt) {
        let desc = keys.last().is_some_and(|k| k.desc);
        keys.push(OrderKey {
            field: Field::CreatedAt,
            desc,
        });
    }
    Ok(keys)
}
