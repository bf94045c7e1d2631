//! Tenants, callers and the `Scope` every tenant-data operation is bound to.
//!
//! A `Scope` is built only by its named constructors (`Scope::anonymous`, `user`,
//! `service_key`, `admin`, `reader`, `system`, `socket`, `for_function`), so `grep 'Scope::'` lists
//! who acts on a tenant; every `Store` method on tenant data takes one, and the store
//! picks the tenant's database and id from it alone.

pub mod service_keys;

use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub suspended: bool,
    pub cors_origins: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The storage location of its data: `default` or a configured cluster's name.
    pub location: String,
    /// A move is copying its data: writes answer 503 `tenant_moving` until it ends.
    pub moving: bool,
}

impl Tenant {
    /// The JWT audience of this tenant's access tokens. Bound to the numeric id, never
    /// reused, so a token outlives neither its tenant nor a later tenant of the same slug.
    pub fn audience(&self) -> String {
        format!("plinth:tenant:{}", self.id)
    }

    /// The JWT audience of the read tokens admins get for this tenant's API: never an
    /// end user's audience, so neither kind of token passes for the other.
    pub fn reader_audience(&self) -> String {
        format!("plinth:tenant:{}:reader", self.id)
    }
}

/// An authenticated end user, as proven by an access token whose session is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCaller {
    pub uid: String,
    pub email: String,
    pub email_verified: bool,
    pub session_id: String,
}

/// Who is acting on the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(UserCaller),
    /// A service key of this tenant: bypasses rules, inside this tenant only.
    Service {
        key_id: String,
    },
    /// A platform admin (admin API) or the local CLI, acting on this tenant.
    Admin {
        actor: String,
    },
    /// A platform admin reading this tenant's data through the tenant API with a read
    /// token (the console's data browser, for viewers above all): not subject to the
    /// rules, and writes nothing. `actor` is who, as the audit log names them.
    Reader {
        actor: String,
    },
    /// The server itself, on no one's request: a background task or a lookup that has to
    /// happen before anyone is known (the token check reading a service key).
    System(SystemTask),
}

/// The server's own work on a tenant, named so logs and audits can tell which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemTask {
    /// Pruning the change log past its retention.
    Retention,
    /// Reading the change log for the realtime feed.
    RealtimeFeed,
    /// Checking whether a realtime socket's session is still live.
    SessionCheck,
    /// Draining the after-hook queue.
    Hooks,
    /// Authenticating a request: reading the service key or session it names.
    Authentication,
}

impl Caller {
    /// Service keys, admins and the server itself are not subject to the access rules.
    pub fn bypasses_rules(&self) -> bool {
        matches!(
            self,
            Caller::Service { .. }
                | Caller::Admin { .. }
                | Caller::Reader { .. }
                | Caller::System(_)
        )
    }

    /// A service key, or a function acting for its tenant (`Scope::for_function`): what
    /// an HTTP function's and a hook's event call `service`.
    pub fn is_service(&self) -> bool {
        matches!(self, Caller::Service { .. })
    }

    /// Whether this caller may only read (every write it asks for is refused).
    pub fn reads_only(&self) -> bool {
        matches!(self, Caller::Reader { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Scope {
    tenant: Arc<Tenant>,
    caller: Caller,
    /// How many hooks deep the writes of this scope are (0: a client's own request).
    depth: u32,
}

/// Every scope is minted by one of these named constructors, so `grep 'Scope::'` lists
/// everyone who acts on a tenant.
impl Scope {
    fn new(tenant: Arc<Tenant>, caller: Caller) -> Scope {
        Scope {
            tenant,
            caller,
            depth: 0,
        }
    }

    /// A request without credentials.
    pub fn anonymous(tenant: Arc<Tenant>) -> Scope {
        Scope::new(tenant, Caller::Anonymous)
    }

    /// A request signed in as one of the tenant's users (its session checked).
    pub fn user(tenant: Arc<Tenant>, user: UserCaller) -> Scope {
        Scope::new(tenant, Caller::User(user))
    }

    /// A request with one of the tenant's service keys (checked).
    pub fn service_key(tenant: Arc<Tenant>, key_id: String) -> Scope {
        Scope::new(tenant, Caller::Service { key_id })
    }

    /// A platform admin or the local CLI; `actor` is who, for the audit log.
    pub fn admin(tenant: Arc<Tenant>, actor: &str) -> Scope {
        Scope::new(
            tenant,
            Caller::Admin {
                actor: actor.to_string(),
            },
        )
    }

    /// An admin's read token (checked): reads past the rules, writes nothing.
    pub fn reader(tenant: Arc<Tenant>, actor: &str) -> Scope {
        Scope::new(
            tenant,
            Caller::Reader {
                actor: actor.to_string(),
            },
        )
    }

    /// The server's own work on the tenant.
    pub fn system(tenant: Arc<Tenant>, task: SystemTask) -> Scope {
        Scope::new(tenant, Caller::System(task))
    }

    /// A realtime socket acting again for the caller its token proved at the upgrade
    /// (or at its last refresh).
    pub fn socket(tenant: Arc<Tenant>, caller: Caller) -> Scope {
        Scope::new(tenant, caller)
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The caller as function events show it (`{uid, email, email_verified}`); None
    /// unless an end user.
    pub fn auth_json(&self) -> Option<serde_json::Value> {
        match &self.caller {
            Caller::User(u) => Some(serde_json::json!({
                "uid": u.uid, "email": u.email, "email_verified": u.email_verified
            })),
            _ => None,
        }
    }

    /// The same tenant, acting as its service caller on behalf of a function: functions
    /// bypass rules inside their own tenant, and can reach no other.
    /// `depth` is the hook depth of the invocation (0 for HTTP functions).
    pub fn for_function(&self, function: &str, depth: u32) -> Scope {
        Scope {
            tenant: self.tenant.clone(),
            caller: Caller::Service {
                key_id: format!("function:{function}"),
            },
            depth,
        }
    }
}

/// Words that cannot be tenant slugs: they name, or may one day name, platform routes.
const RESERVED_SLUGS: &[&str] = &[
    "admin",
    "api",
    "www",
    "app",
    "apps",
    "auth",
    "console",
    "dashboard",
    "docs",
    "help",
    "internal",
    "login",
    "logout",
    "mail",
    "metrics",
    "plinth",
    "public",
    "root",
    "static",
    "status",
    "support",
    "system",
    "tenant",
    "tenants",
    "healthz",
    "readyz",
    "openapi",
];

/// A tenant slug that passed [`validate_slug`]: built only by [`Slug::parse`], so a tenant
/// is created under a checked slug only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    pub fn parse(slug: &str) -> Result<Slug, &'static str> {
        validate_slug(slug)?;
        Ok(Slug(slug.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a tenant slug: `^[a-z][a-z0-9-]{2,39}$` and not reserved.
pub fn validate_slug(slug: &str) -> Result<(), &'static str> {
    let bytes = slug.as_bytes();
    let shape_ok = (3..=40).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !shape_ok {
        return Err(
            "must be 3-40 characters: a lower-case letter, then lower-case letters, digits or '-'",
        );
    }
    if RESERVED_SLUGS.contains(&slug) {
        return Err("is a reserved word");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Slug, validate_slug};

    #[test]
    fn slugs() {
        for ok in ["abc", "my-app", "a1-b2", &"a".repeat(40)] {
            assert!(validate_slug(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "1abc",
            "-abc",
            "Abc",
            "ab c",
            "abç",
            &"a".repeat(41),
            "admin",
            "api",
            "www",
        ] {
            assert!(validate_slug(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Slug::parse("my-app").map(|s| s.as_str().to_string()),
            Ok("my-app".into())
        );
        assert!(Slug::parse("admin").is_err());
    }
}
