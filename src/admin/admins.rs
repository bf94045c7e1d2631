//! Managing admins (owners only): add, list, change role and tenants, remove, with one
//! owner always left; an admin's own password change.

use std::collections::{BTreeMap, BTreeSet};

use super::access::{Principal, Role, Via};
use super::{Actor, AdminError, AdminService, Result, field, invalid_token};
use crate::auth::CredentialError;
use crate::auth::password;
use crate::store::{AdminRow, OwnerGuarded, StoreError};

/// An admin as the API shows them: tenants by slug.
#[derive(Debug, Clone)]
pub struct AdminView {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub tenants: Vec<String>,
    pub created_at: i64,
}

/// Tenant ids as stored (a JSON array); anything unreadable is no tenant at all.
pub(super) fn tenant_ids(json: &str) -> BTreeSet<i64> {
    serde_json::from_str(json).unwrap_or_default()
}

pub(super) fn ids_json(ids: &BTreeSet<i64>) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

pub(super) fn parse_role(role: &str) -> Result<Role> {
    Role::parse(role).ok_or_else(|| field("role", "must be owner, admin, tenant_admin or viewer"))
}

pub(super) fn principal_of(admin: AdminRow, via: Via) -> Result<Principal> {
    let role =
        Role::parse(&admin.role).ok_or_else(|| invalid_token("the admin has an unknown role"))?;
    let tenants = if role == Role::TenantAdmin {
        tenant_ids(&admin.tenant_ids)
    } else {
        BTreeSet::new()
    };
    Ok(Principal {
        id: admin.id,
        email: admin.email,
        role,
        tenants,
        via,
        key_prefix: None,
        expires_at: None,
    })
}

impl AdminService {
    /// Slugs to tenant ids. A slug the caller cannot see is refused like one that does
    /// not exist, so the answer tells a tenant admin nothing of other tenants.
    pub(super) async fn resolve_tenants(
        &self,
        p: &Principal,
        slugs: &[String],
    ) -> Result<BTreeSet<i64>> {
        if slugs.len() > 1000 {
            return Err(field("tenants", "at most 1000 tenants"));
        }
        let mut ids = BTreeSet::new();
        for slug in slugs {
            match self.store.get_tenant_by_slug(slug).await? {
                Some(t) if p.sees(t.id) => {
                    ids.insert(t.id);
                }
                _ => return Err(field("tenants", format!("no tenant '{slug}'"))),
            }
        }
        Ok(ids)
    }

    /// Tenant id to slug, for showing assignments.
    pub(super) async fn slug_map(&self) -> Result<BTreeMap<i64, String>> {
        Ok(self
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| (t.id, t.slug))
            .collect())
    }

    pub(super) fn slugs(map: &BTreeMap<i64, String>, ids: &BTreeSet<i64>) -> Vec<String> {
        ids.iter().filter_map(|id| map.get(id).cloned()).collect()
    }

    pub(super) fn view(&self, row: AdminRow, map: &BTreeMap<i64, String>) -> AdminView {
        let role = Role::parse(&row.role).unwrap_or(Role::Viewer);
        let tenants = if role == Role::TenantAdmin {
            Self::slugs(map, &tenant_ids(&row.tenant_ids))
        } else {
            Vec::new()
        };
        AdminView {
            id: row.id,
            email: row.email,
            role,
            tenants,
            created_at: row.created_at,
        }
    }

    /// The principal as an admin view (`GET /admin/v1/auth/session`): its role and
    /// tenants as proven (an API key's may be narrower than its maker's), the rest from
    /// the admin's row.
    pub async fn describe(&self, p: &Principal) -> Result<AdminView> {
        let map = self.slug_map().await?;
        let created_at = match (&p.via, &p.key_prefix) {
            (Via::ApiKey, Some(prefix)) => self
                .store
                .admin_key_by_prefix(prefix)
                .await?
                .map_or(0, |k| k.created_at),
            _ => self
                .store
                .get_admin(&p.id)
                .await?
                .map_or(0, |row| row.created_at),
        };
        Ok(AdminView {
            id: p.id.clone(),
            email: p.email.clone(),
            role: p.role,
            tenants: Self::slugs(&map, &p.tenants),
            created_at,
        })
    }

    pub(super) fn require_owner(p: &Principal) -> Result<()> {
        if p.is_owner() {
            Ok(())
        } else {
            Err(AdminError::Forbidden("only an owner manages admins"))
        }
    }

    /// The rules of making an admin, by hand or by invitation: owners only, a known role,
    /// a tenant admin's tenants resolved, and no grant wider than the caller's (an API
    /// key makes no owner).
    pub(super) async fn checked_grant(
        &self,
        p: &Principal,
        role: &str,
        tenants: &[String],
    ) -> Result<(Role, BTreeSet<i64>)> {
        Self::require_owner(p)?;
        let role = parse_role(role)?;
        let ids = if role == Role::TenantAdmin {
            self.resolve_tenants(p, tenants).await?
        } else {
            BTreeSet::new()
        };
        if !p.may_grant(role, &ids) {
            return Err(AdminError::Forbidden("an API key cannot make an owner"));
        }
        Ok((role, ids))
    }

    pub async fn add_admin(
        &self,
        p: &Principal,
        email: &str,
        pw: &str,
        role: &str,
        tenants: &[String],
    ) -> Result<AdminView> {
        let (role, ids) = self.checked_grant(p, role, tenants).await?;
        let (email, hash) = self.checked_credentials(email, pw).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let row = self
            .store
            .create_admin(&id, &email, &hash, role.as_str(), &ids_json(&ids))
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AdminError::AdminExists,
                other => other.into(),
            })?;
        let view = self.view(row, &self.slug_map().await?);
        self.audit(
            &Actor::of(p),
            "admin.create",
            None,
            Some(&view.id),
            serde_json::json!({"email": view.email, "role": role.as_str(), "tenants": view.tenants}),
        )
        .await?;
        Ok(view)
    }

    pub async fn list_admins(&self, p: &Principal) -> Result<Vec<AdminView>> {
        Self::require_owner(p)?;
        let map = self.slug_map().await?;
        Ok(self
            .store
            .list_admins()
            .await?
            .into_iter()
            .map(|row| self.view(row, &map))
            .collect())
    }

    /// Changes an admin's role and/or tenants; the last owner stays an owner.
    pub async fn update_admin(
        &self,
        p: &Principal,
        id: &str,
        role: Option<&str>,
        tenants: Option<&[String]>,
    ) -> Result<AdminView> {
        Self::require_owner(p)?;
        if role.is_none() && tenants.is_none() {
            // Unknown fields are ignored, as everywhere in the API: a misspelt field must
            // not pass for a change that was made.
            return Err(field("role", "give role, tenants or both"));
        }
        let current = self
            .store
            .get_admin(id)
            .await?
            .ok_or(AdminError::NotFound("admin"))?;
        let role = match role {
            Some(r) => parse_role(r)?,
            None => parse_role(&current.role)?,
        };
        let ids = match (role, tenants) {
            (Role::TenantAdmin, Some(slugs)) => self.resolve_tenants(p, slugs).await?,
            (Role::TenantAdmin, None) => tenant_ids(&current.tenant_ids),
            _ => BTreeSet::new(),
        };
        if !p.may_grant(role, &ids) {
            return Err(AdminError::Forbidden("an API key cannot make an owner"));
        }
        let row = match self
            .store
            .update_admin_access(id, Some(role.as_str()), Some(&ids_json(&ids)))
            .await
            .map_err(|e| super::not_found_as(e, "admin"))?
        {
            OwnerGuarded::Done(row) => row,
            OwnerGuarded::LastOwner => return Err(AdminError::LastOwner),
        };
        self.auth_cache.forget_readers().await;
        let view = self.view(row, &self.slug_map().await?);
        self.audit(
            &Actor::of(p),
            "admin.update",
            None,
            Some(id),
            serde_json::json!({"email": view.email, "role": role.as_str(), "tenants": view.tenants}),
        )
        .await?;
        Ok(view)
    }

    /// Removes an admin with their console sessions; their tokens (read tokens included)
    /// stop working at once.
    pub async fn remove_admin(&self, p: &Principal, id: &str) -> Result<()> {
        Self::require_owner(p)?;
        let row = match self
            .store
            .delete_admin(id)
            .await
            .map_err(|e| super::not_found_as(e, "admin"))?
        {
            OwnerGuarded::Done(row) => row,
            OwnerGuarded::LastOwner => return Err(AdminError::LastOwner),
        };
        self.auth_cache.forget_readers().await;
        self.audit(
            &Actor::of(p),
            "admin.delete",
            None,
            Some(id),
            serde_json::json!({"email": row.email}),
        )
        .await?;
        Ok(())
    }

    /// An admin changes their own password: every console session of theirs ends and
    /// their admin tokens stop working.
    pub async fn change_password(
        &self,
        p: &Principal,
        current: &str,
        new: &str,
        ip: &str,
    ) -> Result<()> {
        if p.via == Via::ApiKey {
            return Err(AdminError::Forbidden("an API key has no password"));
        }
        self.limiter
            .check_ip(ip)
            .map_err(CredentialError::RateLimited)?;
        let admin = self
            .store
            .get_admin(&p.id)
            .await?
            .ok_or(AdminError::SessionExpired)?;
        if !password::verify(current.to_string(), admin.password_hash.clone()).await {
            return Err(field("current_password", "is wrong"));
        }
        let (_, hash) = self.checked_credentials(&admin.email, new).await?;
        self.store
            .set_admin_password(&admin.id, &hash)
            .await
            .map_err(|e| super::not_found_as(e, "admin"))?;
        self.auth_cache.forget_readers().await;
        self.audit(
            &Actor::of(p),
            "admin.password",
            None,
            Some(&admin.id),
            serde_json::json!({}),
        )
        .await?;
        Ok(())
    }
}
