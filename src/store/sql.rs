//! SQL text that both dialects run: the statements of the group commit that the
//! rusqlite and the sqlx paths share (`$N` placeholders; the SQLite path renumbers them).

/// Takes (and on PostgreSQL locks) the tenant's seq row and returns the current seq.
pub(crate) const LOCK_SEQ_SQL: &str = "INSERT INTO tenant_seq (tenant_id, seq, pruned_through) VALUES ($1, 0, 0) \
     ON CONFLICT (tenant_id) DO UPDATE SET seq = tenant_seq.seq RETURNING seq";
pub(crate) const SET_SEQ_SQL: &str = "UPDATE tenant_seq SET seq = $2 WHERE tenant_id = $1";
pub(crate) const UPSERT_TAIL: &str = "ON CONFLICT (tenant_id, collection, id) DO UPDATE SET \
     data = excluded.data, version = excluded.version, \
     created_at = excluded.created_at, updated_at = excluded.updated_at";
