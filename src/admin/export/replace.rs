//! `import --replace`: an existing tenant's data swapped for a file's. The file is checked
//! whole first; the swap is one transaction (`Store::replace_tenant`), so a refused or
//! failed import leaves the tenant as it was.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::format::{self, Header};
use super::{Result, TransferError, file_fault, split};
use crate::admin::{Actor, AdminError, AdminService};
use crate::tenancy::{Scope, Tenant};

impl AdminService {
    /// Replaces the tenant `slug`'s documents, rules, deploys, users, service keys and
    /// secrets with the file's, then takes its name, CORS origins and suspension. A
    /// tenant that does not exist is created, as by `import_tenant`. Everyone signed in
    /// to the tenant is signed out (its users are the file's now), and its change log
    /// is cut: realtime clients resuming from before are told to resync.
    pub async fn replace_tenant(
        &self,
        actor: &Actor,
        slug: &str,
        input: impl std::io::BufRead,
    ) -> Result<(Header, BTreeMap<String, u64>)> {
        let checked_slug = crate::admin::parse_slug(slug)?;
        let parsed = format::read(input).map_err(TransferError::BadFile)?;
        let tenant = match self.get_tenant(slug).await {
            Ok(t) => t,
            Err(AdminError::TenantNotFound) => {
                return self.import_parsed(actor, &checked_slug, parsed).await;
            }
            Err(e) => return Err(e.into()),
        };
        if tenant.moving {
            return Err(crate::store::StoreError::TenantMoving.into());
        }
        let (mut data, plain_secrets) = split(parsed.records)?;
        let h = &parsed.header;
        self.seal_into(tenant.id, plain_secrets, &mut data)?;
        let scope = Scope::admin(Arc::new(tenant.clone()), &actor.0);
        self.store
            .replace_tenant(&scope, &data)
            .await
            .map_err(file_fault)?;
        self.forget_cached(&tenant);
        self.rules.rebuild_indexes(&scope).await?;
        // The control database is another transaction (another file on SQLite): the
        // settings follow the data, and a failure here leaves the data replaced.
        self.update_tenant(
            actor,
            slug,
            Some(&h.tenant.name),
            Some(&h.tenant.cors_origins),
        )
        .await?;
        if h.tenant.suspended != tenant.suspended {
            self.set_suspended(actor, slug, h.tenant.suspended).await?;
        }
        // The audit also tells the other nodes to drop what they cached of the tenant.
        self.audit(
            actor,
            "tenant.import",
            Some(slug),
            None,
            serde_json::json!({"counts": parsed.counts, "from": h.tenant.slug,
                "source_backend": h.source_backend, "replace": true}),
        )
        .await?;
        Ok((parsed.header, parsed.counts))
    }

    /// Drops what this node cached of the tenant's old data: rules, secrets, the active
    /// deploy, session and key checks.
    fn forget_cached(&self, tenant: &Tenant) {
        self.registry.invalidate(&tenant.slug);
        self.rules.forget(tenant.id);
        self.secrets.forget(tenant.id);
        self.functions.expire(tenant.id);
        self.auth_cache.drop_tenant(tenant.id);
    }
}
