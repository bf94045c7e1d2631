//! SQL text that both dialects run: the statements of the group commit that the
//! rusqlite and the sqlx paths share (`$N` placeholders; the SQLite path renumbers them).

/// Takes (and on PostgreSQL locks) the tenant's seq row and returns the current seq.
pub(crate) const LOCK_SEQ_SQL: &str = "INSERT INTO tenant_seq (tenant_id, seq, pruned_through) VALUES ($1, 0, 0) \
     ON CONFLICT (tenant_id) DO UPDATE SET seq = tenant_seq.seq RETURNING seq";
/// PostgreSQL: locks an existing seq row without writing a row version (`FOR UPDATE`
/// marks the tuple in place), where `LOCK_SEQ_SQL`'s `DO UPDATE` writes one at every
/// commit. With many tenants committing at once their rows share a page, the extra
/// versions fill it, updates stop being HOT and every lookup of the row walks dead index
/// entries (issue 17: PostgreSQL's CPU per create tripled over 16 tenants). No row yet
/// (a tenant's first write): `LOCK_SEQ_SQL`.
pub(crate) const PG_LOCK_SEQ_SQL: &str =
    "SELECT seq FROM tenant_seq WHERE tenant_id = $1 FOR UPDATE";
pub(crate) const SET_SEQ_SQL: &str = "UPDATE tenant_seq SET seq = $2 WHERE tenant_id = $1";
pub(crate) const UPSERT_TAIL: &str = "ON CONFLICT (tenant_id, collection, id) DO UPDATE SET \
     data = excluded.data, version = excluded.version, \
     created_at = excluded.created_at, updated_at = excluded.updated_at";
