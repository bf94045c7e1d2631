//! A tenant's collections with their document counts: the admin console's data browser
//! (documents themselves are read through the tenant API, like any client; a viewer,
//! who makes no service key, with a read token: `read_tokens`).

use super::{Actor, AdminService, Result};

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
}
