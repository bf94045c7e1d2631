//! `/admin/v1/tenants/{tenant}/export` and `/import`: a tenant as one NDJSON file, the
//! format of `plinth tenant export` (`admin::export::format`), out of and into a running
//! server. Owners and admins only (`Need::Transfer`): the file holds password hashes and
//! may hold secrets in clear.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{AdminCaller, ApiPath, ApiQuery};
use crate::admin::Actor;
use crate::admin::export::ExportOptions;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

/// The largest file `import` takes. An import is checked whole in memory before it is
/// written, so this bounds the memory one import holds (a few times the file); larger
/// tenants are imported with `plinth tenant import` on the server itself.
pub const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;

/// The media types an import body may be declared as.
const NDJSON_TYPES: &[&str] = &[
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/octet-stream",
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_tenant))
        .routes(routes!(import_tenant))
        .layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Also write the tenant's secrets, decrypted (default false: left out, and counted
    /// in the header).
    pub include_secrets: Option<bool>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Replace an existing tenant's data with the file's, in one transaction (default
    /// false: an existing tenant is refused with 409 `tenant_exists`).
    pub replace: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct Imported {
    pub slug: String,
    /// The slug the file was exported from.
    pub from: String,
    /// `sqlite` or `postgres`: where the file was exported from.
    pub source_backend: String,
    /// Records written, by kind (`document`, `user`, `ruleset`, ...).
    pub counts: BTreeMap<String, u64>,
    /// Whether the file held the secrets' values.
    pub secrets_included: bool,
    /// How many secrets the source tenant had; when not included, set them again.
    pub secrets_count: usize,
}

/// Export a tenant (documents, rule sets, deploys, users with password hashes, service
/// keys by hash, and with `include_secrets` its secrets in clear) as NDJSON: a header
/// line, one line per record, a trailer with the counts and a SHA-256. Made whole from
/// one read snapshot before the answer starts. Owners and admins only; audited.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/export", operation_id = "export_tenant",
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug"), ExportQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = String,
               description = "The export file"),
              (status = 400, body = Problem, description = "invalid_query"),
              (status = 403, body = Problem, description = "insufficient_role"),
              (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn export_tenant(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let opts = ExportOptions {
        include_secrets: q.include_secrets.unwrap_or(false),
    };
    let spooled = state
        .admin
        .export_spooled(&Actor::of(&admin.0), &tenant, &opts)
        .await?;
    let file = tokio::fs::File::from_std(spooled.file);
    // The slug was found, so it is of the slug grammar: safe in a header.
    let disposition = format!("attachment; filename=\"{tenant}.ndjson\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (header::CONTENT_LENGTH, spooled.len.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(chunks(file)),
    )
        .into_response())
}

/// Create the tenant from an export file (the body, as `GET .../export` wrote it), or
/// with `replace=true` replace an existing tenant's data with it in one transaction.
/// The file is checked whole (every line parsed, counts and SHA-256 as its trailer
/// says) before anything is written: a bad file is 400 `invalid_export` naming the
/// line, and changes nothing. Owners and admins only; audited.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/import", operation_id = "import_tenant",
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug"), ImportQuery),
    request_body(content = String, content_type = "application/x-ndjson"),
    responses((status = 200, body = Imported),
              (status = 400, body = Problem, description = "invalid_export, naming the line"),
              (status = 403, body = Problem, description = "insufficient_role"),
              (status = 404, body = Problem),
              (status = 409, body = Problem, description = "tenant_exists (without replace)"),
              (status = 413, body = Problem, description = "payload_too_large"),
              (status = 415, body = Problem, description = "unsupported_media_type")),
    security(("bearer" = [])))]
async fn import_tenant(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Imported>> {
    let mime = super::extract::mime(&headers);
    if !NDJSON_TYPES.contains(&mime.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/x-ndjson",
        ));
    }
    let actor = Actor::of(&admin.0);
    let slug = tenant.clone();
    // Run to its end even when the request times out or the client goes away: a new
    // tenant's import cut between its creation and its cleanup would leave it behind.
    let task = tokio::spawn(async move {
        let input = &body[..];
        if q.replace.unwrap_or(false) {
            state.admin.replace_tenant(&actor, &slug, input).await
        } else {
            state.admin.import_tenant(&actor, &slug, input).await
        }
    });
    let (header, counts) = task.await.map_err(|e| {
        tracing::error!(error = %e, "internal error: the import task failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    })??;
    Ok(Json(Imported {
        slug: tenant,
        from: header.tenant.slug,
        source_backend: header.source_backend,
        counts,
        secrets_included: header.secrets_included,
        secrets_count: header.secrets_count,
    }))
}

/// The file in 64 KiB chunks.
fn chunks(file: tokio::fs::File) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
