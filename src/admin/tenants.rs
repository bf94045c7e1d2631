//! Tenants: create, read, update, suspend, resume, delete.

use super::*;

impl AdminService {
    pub async fn create_tenant(&self, actor: &Actor, slug: &Slug, name: &str) -> Result<Tenant> {
        self.create_tenant_at(actor, slug, name, None).await
    }

    /// Creates a tenant whose data lives at `location` (`None`: `default`, the server's
    /// own storage; else a configured cluster's name).
    pub async fn create_tenant_at(
        &self,
        actor: &Actor,
        slug: &Slug,
        name: &str,
        location: Option<&str>,
    ) -> Result<Tenant> {
        let chosen = match location {
            Some(l) => l.to_string(),
            None => self.store.placement_for_new_tenant().await?,
        };
        let location = self.checked_location(&chosen)?;
        let slug = slug.as_str();
        let name = name.trim();
        let name = if name.is_empty() { slug } else { name };
        if name.chars().count() > 200 {
            return Err(field("name", "must be at most 200 characters"));
        }
        no_control("name", name)?;
        let row = self
            .store
            .create_tenant(slug, name, location)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AdminError::TenantExists,
                other => other.into(),
            })?;
        self.registry.invalidate(slug);
        self.audit(
            actor,
            "tenant.create",
            Some(slug),
            None,
            serde_json::json!({"name": name, "location": location}),
        )
        .await?;
        Ok(row.into())
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        Ok(self
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(Tenant::from)
            .collect())
    }

    /// The tenants this principal sees (a tenant admin: their own).
    pub async fn list_visible_tenants(&self, p: &Principal) -> Result<Vec<Tenant>> {
        let mut tenants = self.list_tenants().await?;
        tenants.retain(|t| p.sees(t.id));
        Ok(tenants)
    }

    /// The id of the tenant with this slug, read from the store (not the cache).
    pub async fn tenant_id(&self, slug: &str) -> Result<Option<i64>> {
        Ok(self.store.get_tenant_by_slug(slug).await?.map(|t| t.id))
    }

    pub async fn get_tenant(&self, slug: &str) -> Result<Tenant> {
        self.store
            .get_tenant_by_slug(slug)
            .await?
            .map(Tenant::from)
            .ok_or(AdminError::TenantNotFound)
    }

    pub async fn update_tenant(
        &self,
        actor: &Actor,
        slug: &str,
        name: Option<&str>,
        cors_origins: Option<&[String]>,
    ) -> Result<Tenant> {
        let name = name.map(str::trim);
        if let Some(n) = name
            && (n.is_empty() || n.chars().count() > 200)
        {
            return Err(field("name", "must be 1-200 characters"));
        }
        if let Some(n) = name {
            no_control("name", n)?;
        }
        if let Some(origins) = cors_origins {
            if origins.len() > 100 {
                return Err(field("cors_origins", "at most 100 origins"));
            }
            for o in origins {
                validate_cors_origin(o).map_err(|p| field("cors_origins", p))?;
            }
        }
        let cors_json = cors_origins.map(|o| serde_json::to_string(o).unwrap_or_default());
        let row = self
            .store
            .update_tenant(slug, name, None, cors_json.as_deref())
            .await
            .map_err(not_found_as_tenant)?;
        self.registry.invalidate(slug);
        self.audit(
            actor,
            "tenant.update",
            Some(slug),
            None,
            serde_json::json!({"name": name, "cors_origins": cors_origins}),
        )
        .await?;
        Ok(row.into())
    }

    pub async fn set_suspended(
        &self,
        actor: &Actor,
        slug: &str,
        suspended: bool,
    ) -> Result<Tenant> {
        let row = self
            .store
            .update_tenant(slug, None, Some(suspended), None)
            .await
            .map_err(not_found_as_tenant)?;
        self.registry.invalidate(slug);
        let action = if suspended {
            "tenant.suspend"
        } else {
            "tenant.resume"
        };
        self.audit(actor, action, Some(slug), None, serde_json::json!({}))
            .await?;
        Ok(row.into())
    }

    pub async fn delete_tenant(&self, actor: &Actor, slug: &str) -> Result<()> {
        self.scope_to_change(actor, slug).await?;
        let row = self
            .store
            .delete_tenant(slug)
            .await
            .map_err(not_found_as_tenant)?;
        self.registry.invalidate(slug);
        self.secrets.forget(row.id);
        self.audit(
            actor,
            "tenant.delete",
            Some(slug),
            None,
            serde_json::json!({}),
        )
        .await?;
        Ok(())
    }

    /// A scope for acting on `slug`'s data as an admin. Read from the store, not the
    /// cache, so an admin always sees the tenant as it is now.
    pub(crate) async fn scope(&self, actor: &Actor, slug: &str) -> Result<Scope> {
        let tenant = self.get_tenant(slug).await?;
        Ok(Scope::admin(Arc::new(tenant), &actor.0))
    }

    /// A scope for changing `slug`'s data (what lives at its storage location: users,
    /// keys, rules, deploys, secrets, jobs, the tenant itself): refused with
    /// `tenant_moving` while a move copies it, as its own writes are. The HTTP edge
    /// refuses these routes first (holding a ticket the move waits for); this is the
    /// check of every other caller, the local `plinth` CLI above all, a process of its
    /// own whose writes no server's freeze stops.
    pub(crate) async fn scope_to_change(&self, actor: &Actor, slug: &str) -> Result<Scope> {
        let tenant = self.get_tenant(slug).await?;
        if tenant.moving {
            return Err(StoreError::TenantMoving.into());
        }
        Ok(Scope::admin(Arc::new(tenant), &actor.0))
    }
}
