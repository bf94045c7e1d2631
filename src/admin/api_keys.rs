//! Admin API keys, for the CLI and CI: `pak_<prefix>_<secret>`, 256 random bits, stored
//! as a SHA-256 hash (a slow hash buys nothing against a key this long, and every request
//! checks one). Each has a role, tenants and an optional expiry, never wider than its
//! maker's; revocation and expiry apply at the next request on every node.

use std::collections::BTreeSet;

use super::access::{Principal, Role, Via};
use super::admins::{ids_json, parse_role, tenant_ids};
use super::{Actor, AdminError, AdminService, Result, field, invalid_token};
use crate::crypto::{ct_eq, random_token, sha256_hex};
use crate::store::{AdminKeyRow, NewAdminKey, now_ms};

pub const KEY_MARK: &str = "pak_";

/// How stale a key's last-used time may get before a request writes it again: one
/// write a minute per key at most, not one per request.
const TOUCH_EVERY_MS: i64 = 60_000;

/// What `POST /admin/v1/api-keys` asks for.
pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub tenants: &'a [String],
    /// RFC 3339.
    pub expires_at: Option<&'a str>,
}

/// A key as the API lists it: tenants by slug, never the hash.
#[derive(Debug, Clone)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub tenants: Vec<String>,
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// The prefix of something shaped like an admin key (`pak_` + 10 hex + `_` + secret).
fn prefix_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(KEY_MARK)?;
    let (body, secret) = rest.split_once('_')?;
    if body.len() != 10 || !body.bytes().all(|b| b.is_ascii_hexdigit()) || secret.is_empty() {
        return None;
    }
    Some(&token[..KEY_MARK.len() + body.len()])
}

fn parse_time(field_name: &'static str, s: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            field(
                field_name,
                "must be an RFC 3339 time, e.g. 2030-01-31T00:00:00Z",
            )
        })
}

impl AdminService {
    fn key_view(
        &self,
        row: AdminKeyRow,
        map: &std::collections::BTreeMap<i64, String>,
    ) -> ApiKeyView {
        ApiKeyView {
            role: Role::parse(&row.role).unwrap_or(Role::Viewer),
            tenants: Self::slugs(map, &tenant_ids(&row.tenant_ids)),
            id: row.id,
            name: row.name,
            prefix: row.prefix,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }

    /// Makes a key no wider than its maker (role, tenants, and, for a key made by a key,
    /// expiry). The secret is returned this once.
    pub async fn create_api_key(
        &self,
        p: &Principal,
        req: NewApiKey<'_>,
    ) -> Result<(ApiKeyView, String)> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(field("name", "must be 1-100 characters"));
        }
        let role = parse_role(req.role)?;
        let ids = if role == Role::TenantAdmin {
            self.resolve_tenants(p, req.tenants).await?
        } else {
            BTreeSet::new()
        };
        if !p.may_grant(role, &ids) {
            return Err(AdminError::Forbidden(
                "a key cannot be an owner made by a key, nor wider than its maker",
            ));
        }
        let now = now_ms();
        let expires_at = match req.expires_at {
            Some(s) => {
                let t = parse_time("expires_at", s)?;
                if t <= now {
                    return Err(field("expires_at", "must be in the future"));
                }
                if p.expires_at.is_some_and(|own| t > own) {
                    return Err(field("expires_at", "must not be later than this key's own"));
                }
                Some(t)
            }
            None => p.expires_at,
        };
        let prefix = format!("{KEY_MARK}{}", hex::encode(rand::random::<[u8; 5]>()));
        let key = format!("{prefix}_{}", random_token(32));
        let id = uuid::Uuid::now_v7().to_string();
        let row = self
            .store
            .create_admin_key(NewAdminKey {
                id: &id,
                name,
                role: role.as_str(),
                tenant_ids: &ids_json(&ids),
                prefix: &prefix,
                key_hash: &sha256_hex(&key),
                created_by: &p.id,
                expires_at,
            })
            .await?;
        let view = self.key_view(row, &self.slug_map().await?);
        self.audit(
            &Actor::of(p),
            "api_key.create",
            None,
            Some(&view.id),
            serde_json::json!({"name": view.name, "role": role.as_str(),
                               "tenants": view.tenants, "prefix": view.prefix}),
        )
        .await?;
        Ok((view, key))
    }

    /// Owners see every key; others the keys they made.
    pub async fn list_api_keys(&self, p: &Principal) -> Result<Vec<ApiKeyView>> {
        let mine = (!p.is_owner()).then_some(p.id.as_str());
        let map = self.slug_map().await?;
        Ok(self
            .store
            .list_admin_keys(mine)
            .await?
            .into_iter()
            .map(|row| self.key_view(row, &map))
            .collect())
    }

    /// Owners revoke any key; others the keys they made (any other is 404).
    pub async fn revoke_api_key(&self, p: &Principal, id: &str) -> Result<ApiKeyView> {
        let mine = (!p.is_owner()).then_some(p.id.as_str());
        let row = self
            .store
            .revoke_admin_key(id, mine)
            .await
            .map_err(|e| super::not_found_as(e, "api key"))?;
        self.auth_cache.forget_readers().await;
        let view = self.key_view(row, &self.slug_map().await?);
        self.audit(
            &Actor::of(p),
            "api_key.revoke",
            None,
            Some(id),
            serde_json::json!({"name": view.name, "prefix": view.prefix}),
        )
        .await?;
        Ok(view)
    }

    pub(super) async fn verify_api_key(&self, token: &str) -> Result<Principal> {
        let invalid = || invalid_token("unknown or revoked admin API key");
        let prefix = prefix_of(token).ok_or_else(invalid)?;
        let row = self
            .store
            .admin_key_by_prefix(prefix)
            .await?
            .ok_or_else(invalid)?;
        if !ct_eq(sha256_hex(token).as_bytes(), row.key_hash.as_bytes()) || row.revoked_at.is_some()
        {
            return Err(invalid());
        }
        let now = now_ms();
        if row.expires_at.is_some_and(|e| e <= now) {
            return Err(AdminError::TokenExpired);
        }
        if row.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY_MS) {
            self.store.touch_admin_key(&row.id, now).await?;
        }
        principal_of_key(row).ok_or_else(invalid)
    }
}

/// The principal a key's row proves (not checked here: revocation, expiry); None for a
/// role this server does not know.
pub(super) fn principal_of_key(row: AdminKeyRow) -> Option<Principal> {
    let role = Role::parse(&row.role)?;
    Some(Principal {
        id: row.id,
        email: row.name,
        role,
        tenants: if role == Role::TenantAdmin {
            tenant_ids(&row.tenant_ids)
        } else {
            BTreeSet::new()
        },
        via: Via::ApiKey,
        key_prefix: Some(row.prefix),
        expires_at: row.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::prefix_of;

    #[test]
    fn only_key_shaped_tokens_have_a_prefix() {
        assert_eq!(prefix_of("pak_0123456789_secret"), Some("pak_0123456789"));
        assert_eq!(prefix_of("pak_0123456789_"), None);
        assert_eq!(prefix_of("pak_01234_secret"), None);
        assert_eq!(prefix_of("plk_0123456789_secret"), None);
        assert_eq!(prefix_of("eyJhbGciOi.x.y"), None);
    }
}
