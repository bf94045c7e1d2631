//! `/v1/t/{tenant}/collections/{collection}/docs` and `/v1/t/{tenant}/batch`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ApiPath, ApiQuery, TenantScope};
use crate::documents::wire::DocJson;
use crate::documents::{BatchWrite, Count, DocError, ListParams, PatchBody, Preconditions};
use crate::error::{ApiError, ApiResult, Problem};
use crate::names::{CollectionName, DocId, parse_doc};
use crate::rules::Operation;
use crate::state::AppState;
use crate::store::{ChangeOp, ListedDoc, StoredDoc, Written};
use crate::tenancy::Caller;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_docs, create_doc))
        .routes(routes!(get_doc, put_doc, patch_doc, delete_doc))
        .routes(routes!(batch))
}

#[derive(Deserialize)]
pub struct CollectionPath {
    #[allow(dead_code)]
    tenant: String,
    collection: String,
}

#[derive(Deserialize)]
pub struct DocPath {
    #[allow(dead_code)]
    tenant: String,
    collection: String,
    id: String,
}

/// The path's collection, checked once here; refused as the service refuses a bad name.
fn collection_name(collection: &str) -> ApiResult<CollectionName> {
    Ok(CollectionName::parse(collection).map_err(DocError::from)?)
}

/// The path's collection and id, checked once here (the collection first).
fn doc_names(collection: &str, id: &str) -> ApiResult<(CollectionName, DocId)> {
    Ok(parse_doc(collection, id).map_err(DocError::from)?)
}

/// Writes a page of listed documents as JSON by hand around the documents, each written
/// by [`DocJson::write_to`] with its stored JSON text spliced in as it is: no parse, no
/// re-serialisation.
fn page_body(items: &[ListedDoc], next_cursor: Option<&str>, count: Option<Count>) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        64 + items
            .iter()
            .map(|d| d.data.len() + d.id.len() + d.collection.len() + 140)
            .sum::<usize>(),
    );
    out.extend_from_slice(b"{\"items\":[");
    for (i, d) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        DocJson::listed(d).write_to(&mut out);
    }
    out.extend_from_slice(b"],\"next_cursor\":");
    match next_cursor {
        // Writing a string to a Vec cannot fail.
        Some(c) => {
            let _ = serde_json::to_writer(&mut out, c);
        }
        None => out.extend_from_slice(b"null"),
    }
    if let Some(c) = count {
        out.extend_from_slice(
            format!(",\"count\":{},\"count_capped\":{}", c.count, c.capped).as_bytes(),
        );
    }
    out.push(b'}');
    out
}

#[derive(Serialize, ToSchema)]
pub struct DocPage {
    pub items: Vec<DocJson<'static>>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// With `count=true`: how many documents the list matches over all its pages, at
    /// most 10,000.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub count: Option<i64>,
    /// With `count=true`: more documents match than `count` (the count stopped at
    /// 10,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_capped: Option<bool>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQueryParams {
    /// CEL over `doc`, `id`, `version`, `created_at`, `updated_at` (and `auth`, `now`).
    pub filter: Option<String>,
    /// Comma-separated fields, `-` for descending: `-score,created_at`. Default `created_at`.
    pub order: Option<String>,
    /// 1..1000, default 50.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// `true`: the page also says how many documents match in all (`count`, at most
    /// 10,000; `count_capped` when more do).
    pub count: Option<bool>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQueryParams {
    /// With a service key: explain which rule decides instead of returning the document.
    pub explain: Option<String>,
    /// explain: the operation (read, update, delete; default read).
    pub op: Option<String>,
    /// explain: evaluate as this user of the tenant (default: anonymous).
    pub uid: Option<String>,
}

/// One operation of a JSON Patch (RFC 6902), or `increment`: add the number `value` to
/// the number at `path` (0 when absent). Only describes the body for the OpenAPI document;
/// the patch is applied from the JSON as sent.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JsonPatchOp {
    pub op: JsonPatchOpName,
    /// A JSON Pointer into the document's data.
    pub path: String,
    /// add, replace, test, increment: the value.
    pub value: Option<serde_json::Value>,
    /// move, copy: the JSON Pointer to take the value from.
    pub from: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum JsonPatchOpName {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
    Increment,
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn doc_response(status: StatusCode, doc: StoredDoc) -> Response {
    let tag = etag(doc.version);
    let mut res = (status, Json(DocJson::of(&doc))).into_response();
    res.headers_mut().insert(header::ETAG, tag);
    res
}

fn bad_precondition(h: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_precondition",
        format!("{h} must be a version (\"3\") or *"),
    )
}

/// `If-Match: "3"` (or `3`, `*`) and `If-None-Match: *`. If-Match compares strongly
/// (RFC 9110 §13.1.1): a weak tag such as `W/"3"` never matches, whatever the document's
/// state, so it fails here with 412 like a version that does not match.
fn preconditions(headers: &HeaderMap) -> Result<Preconditions, ApiError> {
    let mut pre = Preconditions::default();
    if let Some(v) = headers.get(header::IF_MATCH) {
        let s = v.to_str().map_err(|_| bad_precondition("If-Match"))?.trim();
        pre.if_match = Some(if s == "*" {
            None
        } else {
            let (weak, tag) = match s.strip_prefix("W/") {
                Some(tag) => (true, tag),
                None => (false, s),
            };
            let n = tag
                .trim_matches('"')
                .parse::<i64>()
                .map_err(|_| bad_precondition("If-Match"))?;
            if weak {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition_failed",
                    format!(
                        "If-Match uses strong comparison: the weak tag W/\"{n}\" matches no \
                         version (send \"{n}\")"
                    ),
                ));
            }
            Some(n)
        });
    }
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        let s = v
            .to_str()
            .map_err(|_| bad_precondition("If-None-Match"))?
            .trim();
        if s != "*" {
            return Err(ApiError::bad_request(
                "invalid_precondition",
                "only If-None-Match: * is supported on writes",
            ));
        }
        pre.if_none_match_any = true;
    }
    Ok(pre)
}

/// List documents the caller may read, filtered, ordered, paged by cursor.
#[utoipa::path(get, path = "/v1/t/{tenant}/collections/{collection}/docs", operation_id = "list_docs", tag = "documents",
    params(("tenant" = String, Path), ("collection" = String, Path), ListQueryParams),
    responses((status = 200, body = DocPage), (status = 400, body = Problem),
              (status = 403, body = Problem, description = "rule_denied")),
    security((), ("bearer" = [])))]
async fn list_docs(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiPath(CollectionPath { collection, .. }): ApiPath<CollectionPath>,
    ApiQuery(q): ApiQuery<ListQueryParams>,
) -> ApiResult<Response> {
    let collection = collection_name(&collection)?;
    let page = state
        .docs
        .list(
            &scope,
            &collection,
            ListParams {
                filter: q.filter,
                order: q.order,
                limit: q.limit,
                cursor: q.cursor,
                count: q.count.unwrap_or(false),
            },
        )
        .await?;
    let body = page_body(&page.items, page.next_cursor.as_deref(), page.count);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Create a document with a new UUIDv7 id. The body is the document's data (an object).
#[utoipa::path(post, path = "/v1/t/{tenant}/collections/{collection}/docs", operation_id = "create_doc", tag = "documents",
    params(("tenant" = String, Path), ("collection" = String, Path)),
    request_body(content = std::collections::HashMap<String, serde_json::Value>, description = "the document's data"),
    responses((status = 201, body = DocJson), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 413, body = Problem)),
    security((), ("bearer" = [])))]
async fn create_doc(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiPath(CollectionPath { collection, .. }): ApiPath<CollectionPath>,
    ApiJson(data): ApiJson<Value>,
) -> ApiResult<Response> {
    let collection = collection_name(&collection)?;
    let w = state.docs.create(&scope, &collection, data).await?;
    let location = format!(
        "/v1/t/{}/collections/{}/docs/{}",
        scope.tenant().slug,
        collection,
        w.doc.id
    );
    let mut res = doc_response(StatusCode::CREATED, w.doc);
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Read a document (ETag: its version). With `explain=1` and a service key: which rule
/// and sub-expression decide for a user (`uid`) or anonymous.
#[utoipa::path(get, path = "/v1/t/{tenant}/collections/{collection}/docs/{id}", operation_id = "get_doc", tag = "documents",
    params(("tenant" = String, Path), ("collection" = String, Path), ("id" = String, Path), GetQueryParams),
    responses((status = 200, body = DocJson), (status = 403, body = Problem), (status = 404, body = Problem)),
    security((), ("bearer" = [])))]
async fn get_doc(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiPath(DocPath { collection, id, .. }): ApiPath<DocPath>,
    ApiQuery(q): ApiQuery<GetQueryParams>,
) -> ApiResult<Response> {
    if q.explain
        .as_deref()
        .is_some_and(|e| e == "1" || e == "true")
    {
        if !matches!(scope.caller(), Caller::Service { .. }) {
            return Err(ApiError::forbidden(
                "service_key_required",
                "explain needs a service key",
            ));
        }
        let op = Operation::parse_explainable(q.op.as_deref().unwrap_or("read"))
            .map_err(|m| ApiError::invalid_field("op", m))?;
        let r = state
            .docs
            .explain_as(&scope, parse_doc(&collection, &id), op, q.uid.as_deref())
            .await?;
        // As a JSON value, whose keys serde_json keeps sorted: this route has always
        // answered with them in that order.
        let body = serde_json::to_value(r).map_err(ApiError::internal)?;
        return Ok(Json(body).into_response());
    }
    let (collection, id) = doc_names(&collection, &id)?;
    let doc = state.docs.get(&scope, &collection, &id).await?;
    Ok(doc_response(StatusCode::OK, doc))
}

/// Create or replace the document at `id` (`If-Match`, `If-None-Match: *` make it conditional).
#[utoipa::path(put, path = "/v1/t/{tenant}/collections/{collection}/docs/{id}", operation_id = "put_doc", tag = "documents",
    params(("tenant" = String, Path), ("collection" = String, Path), ("id" = String, Path)),
    request_body(content = std::collections::HashMap<String, serde_json::Value>, description = "the document's data"),
    responses((status = 200, body = DocJson, description = "replaced"), (status = 201, body = DocJson, description = "created"),
              (status = 403, body = Problem), (status = 412, body = Problem)),
    security((), ("bearer" = [])))]
async fn put_doc(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiPath(DocPath { collection, id, .. }): ApiPath<DocPath>,
    headers: HeaderMap,
    ApiJson(data): ApiJson<Value>,
) -> ApiResult<Response> {
    let pre = preconditions(&headers)?;
    let (collection, id) = doc_names(&collection, &id)?;
    let w = state.docs.put(&scope, &collection, &id, data, pre).await?;
    let status = if w.op == ChangeOp::Create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(doc_response(status, w.doc))
}

/// Patch a document: `application/merge-patch+json` (RFC 7396) or
/// `application/json-patch+json` (RFC 6902 plus the atomic `increment` op).
#[utoipa::path(patch, path = "/v1/t/{tenant}/collections/{collection}/docs/{id}", operation_id = "patch_doc", tag = "documents",
    params(("tenant" = String, Path), ("collection" = String, Path), ("id" = String, Path)),
    request_body(content(
            (std::collections::HashMap<String, serde_json::Value> = "application/merge-patch+json"),
            (Vec<JsonPatchOp> = "application/json-patch+json"),
            (std::collections::HashMap<String, serde_json::Value> = "application/json")),
        description = "A merge patch (RFC 7396; also taken as `application/json`) or a \
            JSON Patch (RFC 6902, plus `increment`)"),
    responses((status = 200, body = DocJson), (status = 404, body = Problem),
              (status = 409, body = Problem, description = "patch_test_failed"), (status = 412, body = Problem)),
    security((), ("bearer" = [])))]
async fn patch_doc(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiPath(DocPath { collection, id, .. }): ApiPath<DocPath>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    let pre = preconditions(&headers)?;
    let ct = super::extract::mime(&headers);
    let body = match ct.as_str() {
        "application/json-patch+json" => PatchBody::JsonPatch(body),
        "application/merge-patch+json" | "application/json" => PatchBody::Merge(body),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "PATCH takes application/merge-patch+json or application/json-patch+json",
            ));
        }
    };
    let (collection, id) = doc_names(&collection, &id)?;
    let w = state
        .docs
        .patch(&scope, &collection, &id, body, pre)
        .await?;
    Ok(doc_response(StatusCode::OK, w.doc))
}

/// Delete a document (`If-Match` makes it conditional).
#[utoipa::path(delete, path = "/v1/t/{tenant}/collections/{collection}/docs/{id}", operation_id = "delete_doc", tag = "documents",
    params(("tenant" = String, Path), ("collection" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 412, body = Problem)),
    security((), ("bearer" = [])))]
async fn delete_doc(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiPath(DocPath { collection, id, .. }): ApiPath<DocPath>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let pre = preconditions(&headers)?;
    let (collection, id) = doc_names(&collection, &id)?;
    state.docs.delete(&scope, &collection, &id, pre).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct BatchRequest {
    pub writes: Vec<BatchWrite>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResult<'a> {
    pub op: ChangeOpDto,
    pub collection: &'a str,
    pub id: &'a str,
    pub version: i64,
    pub seq: i64,
    /// The document after the write (absent for delete).
    pub doc: Option<DocJson<'a>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOpDto {
    Create,
    Update,
    Delete,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse<'a> {
    pub results: Vec<BatchResult<'a>>,
}

fn batch_result(w: &Written) -> BatchResult<'_> {
    let op = match w.op {
        ChangeOp::Create => ChangeOpDto::Create,
        ChangeOp::Update => ChangeOpDto::Update,
        ChangeOp::Delete => ChangeOpDto::Delete,
    };
    let deleted = w.op == ChangeOp::Delete;
    BatchResult {
        op,
        collection: &w.doc.collection,
        id: &w.doc.id,
        version: w.doc.version,
        seq: w.seq,
        doc: (!deleted).then(|| DocJson::of(&w.doc)),
    }
}

/// Up to 500 writes (create, put, patch, delete), all or nothing, each rule-checked. A
/// failing write fails the batch; the problem's `index` names it.
#[utoipa::path(post, path = "/v1/t/{tenant}/batch", operation_id = "batch_write", tag = "documents",
    params(("tenant" = String, Path)),
    request_body = BatchRequest,
    responses((status = 200, body = BatchResponse), (status = 400, body = Problem),
              (status = 403, body = Problem), (status = 412, body = Problem)),
    security((), ("bearer" = [])))]
async fn batch(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiJson(body): ApiJson<BatchRequest>,
) -> ApiResult<Response> {
    let written = state.docs.batch(&scope, body.writes).await?;
    Ok(Json(BatchResponse {
        results: written.iter().map(batch_result).collect(),
    })
    .into_response())
}
