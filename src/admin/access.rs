//! Who is calling the admin API and what they may do: roles, the principal an admin
//! token, admin API key or console session proves, and the one policy every admin route
//! is checked against (`Principal::authorize`, called by the `AdminCaller` extractor).

use std::collections::BTreeSet;

use super::AdminError;

/// An admin's (or admin API key's) role, from widest to narrowest.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Role {
    /// Everything, other admins and keys included.
    Owner,
    /// Every tenant; not other admins.
    Admin,
    /// Only the assigned tenants; the others are invisible.
    TenantAdmin,
    /// Reads everything an admin reads (never a secret's value); changes nothing.
    Viewer,
}

/// Read through a string, so a role of the wrong JSON type is a data error (400
/// `invalid_body`) like any other wrong field, not serde_json's syntax error for enums.
impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(s: String) -> Result<Role, String> {
        Role::parse(&s).ok_or_else(|| {
            format!("unknown role `{s}`, expected owner, admin, tenant_admin or viewer")
        })
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::TenantAdmin => "tenant_admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "tenant_admin" => Some(Role::TenantAdmin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// How a principal proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// An admin token from `POST /admin/v1/auth/login` or setup.
    Token,
    /// An admin API key (`pak_...`).
    ApiKey,
    /// The console's session cookie; `id` is the stored (hashed) session id, and
    /// `csrf_token` the token its changing requests must carry.
    Session { id: String, csrf_token: String },
}

/// A verified caller of the admin API.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The admin's id, or the API key's id.
    pub id: String,
    /// The admin's email; for a key, its name.
    pub email: String,
    pub role: Role,
    /// For a tenant admin, the ids of the assigned tenants; empty for every other role.
    pub tenants: BTreeSet<i64>,
    pub via: Via,
    /// For a key, its prefix (audit) and expiry (keys it makes expire no later).
    pub key_prefix: Option<String>,
    pub expires_at: Option<i64>,
}

/// What a route needs beyond a verified principal. Routes not named in [`route_need`]
/// get the default: reads for any role, changes for any role but viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Platform-wide changes (create, delete, suspend, resume a tenant): owner or admin.
    Platform,
    /// Admins: owners only, reads included.
    Owner,
    /// A tenant's export and import (password hashes, maybe secrets in clear; an import
    /// may replace everything): owner or admin, reads included.
    Transfer,
    /// Admin API keys: any role but viewer; the service narrows what each may make.
    Keys,
    /// The caller's own session and password: any role.
    SelfService,
    /// Requests that change nothing though they are POSTs (a rule set checked or tested,
    /// a read token minted): any role that sees the tenant, a viewer included.
    Read,
    /// The default.
    Default,
}

/// The routes with a need other than the default. Keyed by the route's pattern as
/// matched (`MatchedPath`), so renaming a route here without there fails the table test
/// in tests/api/admin_roles.rs.
pub fn route_need(method: &str, path: &str) -> Need {
    match (method, path) {
        ("POST", "/admin/v1/tenants")
        | ("DELETE", "/admin/v1/tenants/{tenant}")
        | ("POST", "/admin/v1/tenants/{tenant}/suspend")
        | ("POST", "/admin/v1/tenants/{tenant}/resume")
        | ("POST", "/admin/v1/tenants/{tenant}/move") => Need::Platform,
        (_, "/admin/v1/admins")
        | (_, "/admin/v1/admins/{id}")
        | (_, "/admin/v1/admins/invite")
        | (_, "/admin/v1/admins/invite/{id}") => Need::Owner,
        ("GET", "/admin/v1/tenants/{tenant}/export")
        | ("POST", "/admin/v1/tenants/{tenant}/import") => Need::Transfer,
        (_, "/admin/v1/api-keys") | (_, "/admin/v1/api-keys/{id}") => Need::Keys,
        ("DELETE", "/admin/v1/auth/session")
        | ("GET", "/admin/v1/auth/session")
        | ("POST", "/admin/v1/auth/password") => Need::SelfService,
        ("POST", "/admin/v1/tenants/{tenant}/rules/validate")
        | ("POST", "/admin/v1/tenants/{tenant}/rules/test")
        | ("POST", "/admin/v1/tenants/{tenant}/read-token") => Need::Read,
        _ => Need::Default,
    }
}

/// Whether a request changes something (and so needs more than read access, and a CSRF
/// token when made with the session cookie).
pub fn is_mutating(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

impl Principal {
    /// Whether this principal may see the tenant with this id.
    pub fn sees(&self, tenant_id: i64) -> bool {
        self.role != Role::TenantAdmin || self.tenants.contains(&tenant_id)
    }

    pub fn is_owner(&self) -> bool {
        self.role == Role::Owner
    }

    /// The policy of every admin route. `tenant` is `Some` for routes under
    /// `/admin/v1/tenants/{tenant}`, holding the tenant's id when it exists (looked up for
    /// tenant admins only: nobody else's access depends on it).
    pub fn authorize(
        &self,
        method: &str,
        path: &str,
        tenant: Option<Option<i64>>,
    ) -> Result<(), AdminError> {
        // Another tenant's routes answer as if it did not exist, whatever the method.
        if let Some(id) = tenant
            && self.role == Role::TenantAdmin
            && !id.is_some_and(|id| self.tenants.contains(&id))
        {
            return Err(AdminError::TenantNotFound);
        }
        let write = is_mutating(method);
        match route_need(method, path) {
            Need::SelfService | Need::Read => Ok(()),
            Need::Owner if self.role != Role::Owner => {
                Err(AdminError::Forbidden("only an owner manages admins"))
            }
            Need::Transfer if !matches!(self.role, Role::Owner | Role::Admin) => Err(
                AdminError::Forbidden("only an owner or admin exports or imports a tenant"),
            ),
            Need::Platform if !matches!(self.role, Role::Owner | Role::Admin) => {
                Err(AdminError::Forbidden(
                    "only an owner or admin creates, deletes or suspends tenants",
                ))
            }
            _ if write && self.role == Role::Viewer => {
                Err(AdminError::Forbidden("a viewer changes nothing"))
            }
            // A tenant admin changes only inside their tenants (and makes keys within
            // them); platform-wide changes are not theirs.
            Need::Default if write && self.role == Role::TenantAdmin && tenant.is_none() => Err(
                AdminError::Forbidden("a tenant admin changes only their tenants"),
            ),
            _ => Ok(()),
        }
    }

    /// Whether a principal with `role` on `tenants` is within this one's reach: it may
    /// make an admin key (or, for owners, an admin) of that scope. Keys never make owners.
    pub fn may_grant(&self, role: Role, tenants: &BTreeSet<i64>) -> bool {
        if role == Role::Owner && self.via == Via::ApiKey {
            return false;
        }
        match self.role {
            Role::Owner => true,
            Role::Admin => role != Role::Owner,
            Role::TenantAdmin => role == Role::TenantAdmin && tenants.is_subset(&self.tenants),
            Role::Viewer => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, tenants: &[i64], via: Via) -> Principal {
        Principal {
            id: "x".into(),
            email: "x@y.z".into(),
            role,
            tenants: tenants.iter().copied().collect(),
            via,
            key_prefix: None,
            expires_at: None,
        }
    }

    #[test]
    fn grants_are_never_wider_than_the_granter() {
        let set = |v: &[i64]| v.iter().copied().collect::<BTreeSet<i64>>();
        let owner_key = p(Role::Owner, &[], Via::ApiKey);
        assert!(!owner_key.may_grant(Role::Owner, &set(&[])));
        assert!(owner_key.may_grant(Role::Admin, &set(&[])));
        assert!(p(Role::Owner, &[], Via::Token).may_grant(Role::Owner, &set(&[])));
        let admin = p(
            Role::Admin,
            &[],
            Via::Session {
                id: "s".into(),
                csrf_token: "c".into(),
            },
        );
        assert!(!admin.may_grant(Role::Owner, &set(&[])));
        assert!(admin.may_grant(Role::Viewer, &set(&[])));
        let ta = p(Role::TenantAdmin, &[1, 2], Via::Token);
        assert!(ta.may_grant(Role::TenantAdmin, &set(&[2])));
        assert!(!ta.may_grant(Role::TenantAdmin, &set(&[2, 3])));
        assert!(!ta.may_grant(Role::Viewer, &set(&[])));
        assert!(!ta.may_grant(Role::Admin, &set(&[])));
        assert!(!p(Role::Viewer, &[], Via::Token).may_grant(Role::Viewer, &set(&[])));
    }

    #[test]
    fn roles_round_trip() {
        for r in [Role::Owner, Role::Admin, Role::TenantAdmin, Role::Viewer] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
