//! Request and response bodies of the public API.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::admin::Page;
use crate::auth::IssuedSession;
use crate::secrets::SecretInfo;
use crate::store::{AuditEntry, ServiceKeyRow, UserRow};
use crate::tenancy::Tenant;

pub use crate::documents::timestamp;

#[derive(Serialize, ToSchema)]
pub struct UserDto {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<UserRow> for UserDto {
    fn from(u: UserRow) -> Self {
        UserDto {
            id: u.id,
            email: u.email,
            email_verified: u.email_verified,
            disabled: u.disabled,
            created_at: timestamp(u.created_at),
            updated_at: timestamp(u.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionDto {
    pub user: UserDto,
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<IssuedSession> for SessionDto {
    fn from(s: IssuedSession) -> Self {
        SessionDto {
            user: s.user.into(),
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            token_type: "Bearer",
            expires_in: s.expires_in,
        }
    }
}

/// A user an admin creates.
#[derive(Deserialize, ToSchema)]
pub struct CreateUser {
    pub email: String,
    /// Checked as sign-up checks it. Absent or `null`: the user has no password and
    /// signs in only after a password reset.
    pub password: Option<String>,
    /// Mark the email verified at once (default `false`).
    #[serde(default)]
    pub verified: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Deserialize, Default, ToSchema)]
pub struct LogoutRequest {
    /// Optional: also (or instead) end the session this refresh token belongs to.
    pub refresh_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct PasswordChanged {
    /// How many other sessions were ended.
    pub revoked_sessions: u64,
}

#[derive(Deserialize, ToSchema)]
pub struct EmailRequest {
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
pub struct TokenConfirm {
    pub token: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ResetConfirm {
    pub token: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`: the answer does not say whether the email is registered.
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Verified {
    pub email_verified: bool,
}

// ---- admin --------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
pub struct SetupRequest {
    /// The one-time token printed by `plinth serve` on first start.
    pub token: String,
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct AdminDto {
    pub id: String,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct SetupResponse {
    pub admin: AdminDto,
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

#[derive(Serialize, ToSchema)]
pub struct AdminToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TenantDto {
    pub slug: String,
    pub name: String,
    pub suspended: bool,
    pub cors_origins: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The storage location of the tenant's data: `default` (the server's own storage)
    /// or a configured cluster's name.
    pub location: String,
    /// A move is copying the tenant: its writes answer 503 `tenant_moving`.
    pub moving: bool,
    /// The move holding the `moving` mark, as recorded (only in `GET
    /// /admin/v1/tenants/{tenant}`, and only while moving).
    #[serde(rename = "move", skip_serializing_if = "Option::is_none")]
    pub move_status: Option<MoveStatusDto>,
}

/// A tenant's move as the control database records it.
#[derive(Serialize, ToSchema)]
pub struct MoveStatusDto {
    pub from: String,
    pub to: String,
    /// `copying` (the source is authoritative) or `switched` (the target is).
    pub phase: String,
    pub started_at: String,
    /// The mover's last heartbeat (it beats every third of its lease while alive).
    pub heartbeat_at: String,
    pub lease_ms: i64,
    /// The mover has been silent past its lease: taken for dead. `plinth tenant move`
    /// (any `--to`) finishes or rolls it back.
    pub stale: bool,
}

impl From<crate::store::MoveRecord> for MoveStatusDto {
    fn from(r: crate::store::MoveRecord) -> Self {
        MoveStatusDto {
            stale: r.stale(),
            phase: match r.phase {
                crate::store::MovePhase::Copying => "copying".into(),
                crate::store::MovePhase::Switched => "switched".into(),
            },
            from: r.from,
            to: r.to,
            started_at: timestamp(r.started_at),
            heartbeat_at: timestamp(r.heartbeat_at),
            lease_ms: r.lease_ms,
        }
    }
}

impl From<Tenant> for TenantDto {
    fn from(t: Tenant) -> Self {
        TenantDto {
            slug: t.slug,
            name: t.name,
            suspended: t.suspended,
            location: t.location,
            moving: t.moving,
            move_status: None,
            cors_origins: t.cors_origins,
            created_at: timestamp(t.created_at),
            updated_at: timestamp(t.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CreateTenant {
    pub slug: String,
    /// Display name; defaults to the slug.
    #[serde(default)]
    pub name: String,
    /// Where its data lives: `default` (the default) or a configured cluster's name
    /// (`GET /admin/v1/locations`); an unknown one is 400 `unknown_location`.
    #[serde(default)]
    pub location: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateTenant {
    pub name: Option<String>,
    /// Origins allowed to call this tenant's API from a browser (`*` for any).
    pub cors_origins: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct TenantList {
    pub items: Vec<TenantDto>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateKey {
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyDto {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<ServiceKeyRow> for KeyDto {
    fn from(k: ServiceKeyRow) -> Self {
        KeyDto {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            created_at: timestamp(k.created_at),
            revoked_at: k.revoked_at.map(timestamp),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    pub prefix: String,
    /// The secret: shown this once, stored only as a hash.
    pub key: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyDto>,
}

#[derive(Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserDto>,
    pub next_cursor: Option<String>,
}

impl From<Page<UserRow>> for UserPage {
    fn from(p: Page<UserRow>) -> Self {
        UserPage {
            items: p.items.into_iter().map(UserDto::from).collect(),
            next_cursor: p.next_cursor,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RevokedSessions {
    pub revoked_sessions: u64,
}

#[derive(Serialize, ToSchema)]
pub struct AuditDto {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub tenant: Option<String>,
    pub target: Option<String>,
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub detail: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditDto>,
    pub next_cursor: Option<String>,
}

impl From<Page<AuditEntry>> for AuditPage {
    fn from(p: Page<AuditEntry>) -> Self {
        AuditPage {
            items: p
                .items
                .into_iter()
                .map(|e| AuditDto {
                    id: e.id,
                    at: timestamp(e.at),
                    actor: e.actor,
                    action: e.action,
                    tenant: e.tenant,
                    target: e.target,
                    detail: serde_json::from_str(&e.detail).unwrap_or_default(),
                })
                .collect(),
            next_cursor: p.next_cursor,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Part of the email to look for.
    pub search: Option<String>,
    pub cursor: Option<String>,
    /// 1..1000, default 50.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQueryParams {
    /// Only entries about this tenant.
    pub tenant: Option<String>,
    pub cursor: Option<String>,
    /// 1..1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct RulesDto {
    /// 0 when no rule set was ever installed (everything is denied).
    pub version: i64,
    pub source: String,
}

#[derive(Serialize, ToSchema)]
pub struct RulesInstalled {
    pub version: i64,
    pub collections: Vec<String>,
    /// Read rules and indexes that leave list queries scanning a whole collection.
    pub warnings: Vec<String>,
}

/// `POST .../rules/validate`: what installing this set would say, nothing installed.
#[derive(Serialize, ToSchema)]
pub struct RulesValidation {
    pub valid: bool,
    /// Every error, in source order; empty when valid.
    pub errors: Vec<RuleErrorDto>,
    /// The collections a valid set names.
    pub collections: Vec<String>,
    /// As for an install: read rules and indexes that scan a whole collection.
    pub warnings: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RuleErrorDto {
    pub collection: Option<String>,
    pub operation: Option<String>,
    /// 1-based position in the TOML source.
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl From<Result<crate::rules::RuleSet, Vec<crate::rules::RuleSetError>>> for RulesValidation {
    fn from(parsed: Result<crate::rules::RuleSet, Vec<crate::rules::RuleSetError>>) -> Self {
        match parsed {
            Ok(rules) => RulesValidation {
                valid: true,
                errors: Vec::new(),
                warnings: rules.warnings(),
                collections: rules.collections.into_keys().collect(),
            },
            Err(errors) => RulesValidation {
                valid: false,
                errors: errors
                    .into_iter()
                    .map(|e| RuleErrorDto {
                        collection: e.collection,
                        operation: e.operation,
                        line: e.line,
                        column: e.column,
                        message: e.message,
                    })
                    .collect(),
                collections: Vec::new(),
                warnings: Vec::new(),
            },
        }
    }
}

/// One stored rule set version.
#[derive(Serialize, ToSchema)]
pub struct RulesVersionDto {
    pub version: i64,
    pub created_at: String,
    /// Who installed it: `admin:<email>`, `key:<prefix>` or as the audit log names actors.
    pub created_by: String,
    /// Whether this is the active (newest) version.
    pub active: bool,
}

#[derive(Serialize, ToSchema)]
pub struct RulesVersionList {
    /// Newest first, at most 200.
    pub items: Vec<RulesVersionDto>,
}

/// Body of `POST .../rules/test`: a rule set and the cases to run against it.
#[derive(Deserialize, ToSchema)]
pub struct RulesTestRequest {
    /// The rule set, TOML (as `PUT .../rules` takes it).
    pub rules: String,
    /// `[[case]]` tables, TOML, as in a `plinth rules test` file without its `rules` key.
    pub cases: String,
}

/// `POST .../rules/test`: each case's result, or the rule set's errors (then no case ran).
#[derive(Serialize, ToSchema)]
pub struct RulesTestReport {
    /// Whether the rule set compiled.
    pub valid: bool,
    /// The rule set's errors, as `validate` reports them; empty when valid.
    pub errors: Vec<RuleErrorDto>,
    /// Whether every case passed (false when the set is invalid).
    pub passed: bool,
    pub cases: Vec<crate::rules::testing::CaseResult>,
}

impl RulesTestReport {
    pub fn of(
        outcome: Result<crate::rules::testing::TestReport, Vec<crate::rules::RuleSetError>>,
    ) -> Self {
        match outcome {
            Ok(report) => RulesTestReport {
                valid: true,
                errors: Vec::new(),
                passed: report.passed(),
                cases: report.cases,
            },
            Err(errors) => RulesTestReport {
                valid: false,
                errors: RulesValidation::from(Err(errors)).errors,
                passed: false,
                cases: Vec::new(),
            },
        }
    }
}

/// Body of `PUT .../secrets/{name}`. Deliberately not `Debug`: the value must not be logged.
#[derive(Deserialize, ToSchema)]
pub struct PutSecret {
    /// UTF-8, at most 8192 bytes. Stored encrypted; no API ever returns it.
    pub value: String,
}

/// A secret as the API shows it: its name and last write, never its value.
#[derive(Serialize, ToSchema)]
pub struct SecretDto {
    pub name: String,
    pub updated_at: String,
}

impl From<SecretInfo> for SecretDto {
    fn from(s: SecretInfo) -> Self {
        SecretDto {
            name: s.name,
            updated_at: timestamp(s.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SecretList {
    pub items: Vec<SecretDto>,
}

#[derive(Deserialize, ToSchema)]
pub struct MoveTenant {
    /// The target location: `default` or a configured cluster's name.
    pub to: String,
}

/// What a tenant move did; the counts and the checksum were the same on both sides.
#[derive(Serialize, ToSchema)]
pub struct MoveReportDto {
    pub from: String,
    pub to: String,
    /// Rows per table carried.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// SHA-256 of the documents (collection, id, version, canonical JSON data), in key
    /// order.
    pub documents_sha256: String,
    /// Whether the copy at the old location was deleted.
    pub source_deleted: bool,
    pub millis: u64,
    /// What was done first about an interrupted move of the tenant: `rolled_back` (it
    /// had not switched), `finished` (it had) or `cleared` (a mark with no record);
    /// absent when there was none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub recovered: Option<crate::store::Recovery>,
}

impl From<crate::store::MoveReport> for MoveReportDto {
    fn from(r: crate::store::MoveReport) -> Self {
        MoveReportDto {
            from: r.from,
            to: r.to,
            counts: r.counts,
            documents_sha256: r.documents_sha256,
            source_deleted: r.source_deleted,
            millis: r.millis,
            recovered: r.recovered,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LocationList {
    /// `default` first, then the configured clusters by name.
    pub items: Vec<String>,
}
