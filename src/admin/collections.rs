//! A tenant's collections with their document counts, and read tokens for the tenant
//! API: the admin console's data browser (documents themselves are read through the
//! tenant API, like any client; a viewer, who makes no service key, with a read token).

use std::time::Duration;

use super::{Actor, AdminService, Principal, Result};
use crate::auth::tokens::{READER_PREFIX, reader_claims};

/// How long a read token works. It is checked by its signature alone, so this bounds
/// how long it outlives its admin's removal; the console asks for another in time.
pub const READ_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionCount {
    pub name: String,
    pub count: i64,
}

impl AdminService {
    /// Through `scope`, so whatever decides which tenants an admin may see decides here too.
    pub async fn collections(&self, actor: &Actor, slug: &str) -> Result<Vec<CollectionCount>> {
        let scope = self.scope(actor, slug).await?;
        let rows = self.store.collection_counts(&scope).await?;
        Ok(rows
            .into_iter()
            .map(|(name, count)| CollectionCount { name, count })
            .collect())
    }

    /// A token that reads `slug`'s documents through the tenant API (lists, gets,
    /// realtime) as `principal`, past the rules, and writes nothing: every write it asks
    /// for is 403 `read_only`. Any role may have one for a tenant it sees.
    pub async fn read_token(&self, principal: &Principal, slug: &str) -> Result<String> {
        let tenant = self.get_tenant(slug).await?;
        let claims = reader_claims(
            tenant.reader_audience(),
            &principal.id,
            &Actor::of(principal).0,
            READ_TOKEN_TTL,
        );
        Ok(format!("{READER_PREFIX}{}", self.keyring.sign(&claims)?))
    }
}
