//! A tenant's rows, table by table, read from one location and written to another of
//! either dialect: the tables a move carries, their columns and types, pages in key
//! order, counts, the documents' checksum, and the removal of a copy.

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::store::{Db, StoreResult, on_db};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Ty {
    Text,
    Int,
    /// PostgreSQL `integer` (read as bigint, written back cast).
    Int4,
    Bool,
    /// PostgreSQL `jsonb`, SQLite text: moved as its text.
    Json,
    Bytes,
}

/// A tenant table: its columns but `tenant_id`, and its key (the order pages are read in;
/// empty for the one-row tables).
pub(super) struct Table {
    pub name: &'static str,
    cols: &'static [(&'static str, Ty)],
    key: &'static [&'static str],
}

use Ty::*;

/// Every table a move carries, in an order their foreign keys allow for inserts (users
/// before sessions before refresh tokens); deletes go the other way.
pub(super) const TABLES: &[Table] = &[
    Table {
        name: "users",
        cols: &[
            ("id", Text),
            ("email", Text),
            ("password_hash", Text),
            ("email_verified", Bool),
            ("disabled", Bool),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: &["id"],
    },
    Table {
        name: "sessions",
        cols: &[
            ("id", Text),
            ("user_id", Text),
            ("created_at", Int),
            ("last_used_at", Int),
            ("expires_at", Int),
            ("revoked_at", Int),
            ("ip", Text),
            ("user_agent", Text),
        ],
        key: &["id"],
    },
    Table {
        name: "refresh_tokens",
        cols: &[
            ("token_hash", Text),
            ("session_id", Text),
            ("created_at", Int),
            ("used_at", Int),
        ],
        key: &["token_hash"],
    },
    Table {
        name: "user_tokens",
        cols: &[
            ("token_hash", Text),
            ("user_id", Text),
            ("kind", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("used_at", Int),
        ],
        key: &["token_hash"],
    },
    Table {
        name: "service_keys",
        cols: &[
            ("id", Text),
            ("name", Text),
            ("prefix", Text),
            ("key_hash", Text),
            ("created_at", Int),
            ("revoked_at", Int),
        ],
        key: &["id"],
    },
    DOCUMENTS,
    Table {
        name: "changes",
        cols: &[
            ("seq", Int),
            ("collection", Text),
            ("doc_id", Text),
            ("op", Text),
            ("version", Int),
            ("data", Json),
            ("before", Json),
            ("at", Int),
            ("created_at", Int),
            ("before_updated_at", Int),
        ],
        key: &["seq"],
    },
    Table {
        name: "tenant_seq",
        cols: &[("seq", Int), ("pruned_through", Int)],
        key: &[],
    },
    Table {
        name: "rulesets",
        cols: &[
            ("version", Int),
            ("source", Text),
            ("created_at", Int),
            ("created_by", Text),
        ],
        key: &["version"],
    },
    Table {
        name: "secrets",
        cols: &[
            ("name", Text),
            ("nonce", Bytes),
            ("ciphertext", Bytes),
            ("updated_at", Int),
        ],
        key: &["name"],
    },
    Table {
        name: "deploys",
        cols: &[
            ("version", Int),
            ("manifest", Text),
            ("files", Text),
            ("rules", Text),
            ("created_at", Int),
            ("created_by", Text),
        ],
        key: &["version"],
    },
    Table {
        name: "deploy_active",
        cols: &[
            ("version", Int),
            ("activated_at", Int),
            ("activated_by", Text),
        ],
        key: &[],
    },
    Table {
        name: "invocations",
        cols: &[
            ("id", Text),
            ("function", Text),
            ("trigger", Text),
            ("version", Int),
            ("started_at", Int),
            ("duration_us", Int),
            ("outcome", Text),
            ("error", Text),
            ("logs", Text),
        ],
        key: &["id"],
    },
    Table {
        name: "jobs",
        cols: &[
            ("id", Text),
            ("function", Text),
            ("event", Text),
            ("depth", Int4),
            ("attempts", Int4),
            ("max_attempts", Int4),
            ("state", Text),
            ("run_at", Int),
            ("lease_until", Int),
            ("last_error", Text),
            ("created_at", Int),
        ],
        key: &["id"],
    },
];

const DOCUMENTS: Table = Table {
    name: "documents",
    cols: &[
        ("collection", Text),
        ("id", Text),
        ("version", Int),
        ("data", Json),
        ("created_at", Int),
        ("updated_at", Int),
    ],
    key: &["collection", "id"],
};

/// Rows read or written per statement batch.
const PAGE: usize = 500;

/// One column's value, of either dialect.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Val {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

pub(super) type Rows = Vec<Vec<Val>>;

fn is_pg(db: &Db) -> bool {
    matches!(db, Db::Postgres(_))
}

fn select_sql(t: &Table, pg: bool, after: bool) -> String {
    let cols: Vec<String> = t
        .cols
        .iter()
        .map(|(c, ty)| match (pg, ty) {
            (true, Json) => format!("\"{c}\"::text"),
            (true, Int4) => format!("\"{c}\"::bigint"),
            _ => format!("\"{c}\""),
        })
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {} WHERE tenant_id = $1",
        cols.join(", "),
        t.name
    );
    if !t.key.is_empty() {
        let key: Vec<String> = t.key.iter().map(|k| format!("\"{k}\"")).collect();
        let key = key.join(", ");
        if after {
            let params: Vec<String> = (0..t.key.len()).map(|i| format!("${}", i + 2)).collect();
            sql.push_str(&format!(" AND ({key}) > ({})", params.join(", ")));
        }
        sql.push_str(&format!(" ORDER BY {key} LIMIT {PAGE}"));
    }
    sql
}

/// One INSERT of `rows` rows: the tenant bound once as `$1`, then each row's columns.
/// (500 rows of the widest table bind 5,501 values: under both dialects' limits, 32,766
/// on SQLite and 65,535 on PostgreSQL.)
fn insert_sql(t: &Table, pg: bool, rows: usize) -> String {
    let cols: Vec<String> = t.cols.iter().map(|(c, _)| format!("\"{c}\"")).collect();
    let width = t.cols.len();
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = t
                .cols
                .iter()
                .enumerate()
                .map(|(i, (_, ty))| {
                    let n = 2 + r * width + i;
                    match (pg, ty) {
                        (true, Json) => format!("CAST(${n} AS jsonb)"),
                        (true, Int4) => format!("CAST(${n} AS integer)"),
                        _ => format!("${n}"),
                    }
                })
                .collect();
            format!("($1, {})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {} (tenant_id, {}) VALUES {}",
        t.name,
        cols.join(", "),
        tuples.join(", ")
    )
}

macro_rules! bind_vals {
    ($q:expr, $vals:expr) => {{
        let mut q = $q;
        for v in $vals {
            q = match v {
                Val::Text(x) => q.bind(x.clone()),
                Val::Int(x) => q.bind(*x),
                Val::Bool(x) => q.bind(*x),
                Val::Bytes(x) => q.bind(x.clone()),
            };
        }
        q
    }};
}

macro_rules! decode_row {
    ($row:expr, $t:expr) => {{
        let mut vals = Vec::with_capacity($t.cols.len());
        for (i, (_, ty)) in $t.cols.iter().enumerate() {
            vals.push(match ty {
                Text | Json => Val::Text($row.try_get(i)?),
                Int | Int4 => Val::Int($row.try_get(i)?),
                Bool => Val::Bool($row.try_get(i)?),
                Bytes => Val::Bytes($row.try_get(i)?),
            });
        }
        vals
    }};
}

/// One page of the tenant's rows of `t`, after the row whose key is `after`.
async fn read_page(db: &Db, tenant: i64, t: &Table, after: Option<&[Val]>) -> StoreResult<Rows> {
    let sql = select_sql(t, is_pg(db), after.is_some());
    on_db!(db, |p| {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        if let Some(a) = after {
            q = bind_vals!(q, a);
        }
        let rows = q.fetch_all(p).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(decode_row!(row, t));
        }
        Ok(out)
    })
}

/// The key of a row of `t` (its values of the key columns).
fn key_of(t: &Table, row: &[Val]) -> Vec<Val> {
    t.key
        .iter()
        .filter_map(|k| t.cols.iter().position(|(c, _)| c == k))
        .map(|i| row[i].clone())
        .collect()
}

/// Calls `each` with every page of the tenant's rows of `t`, in key order.
async fn for_pages(
    db: &Db,
    tenant: i64,
    t: &Table,
    mut each: impl FnMut(&Rows) -> StoreResult<()>,
) -> StoreResult<()> {
    let mut after: Option<Vec<Val>> = None;
    loop {
        let rows = read_page(db, tenant, t, after.as_deref()).await?;
        each(&rows)?;
        match rows.last() {
            Some(last) if !t.key.is_empty() && rows.len() == PAGE => after = Some(key_of(t, last)),
            _ => return Ok(()),
        }
    }
}

/// Writes a page of rows: on PostgreSQL in one multi-row INSERT (a statement per row
/// cost a round trip each); on SQLite one prepared single-row INSERT run for each row in
/// one transaction, which measured faster there than a multi-row INSERT binding
/// thousands of values.
async fn write_page(db: &Db, tenant: i64, t: &Table, rows: &Rows) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    match db {
        Db::Postgres(p) => {
            let sql = insert_sql(t, true, rows.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
            for r in rows {
                q = bind_vals!(q, r);
            }
            q.execute(p).await?;
        }
        Db::Sqlite(p) => {
            let sql = insert_sql(t, false, 1);
            let mut tx = p.begin_with(db.begin_write()).await?;
            for r in rows {
                let q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(tenant);
                bind_vals!(q, r).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Copies the tenant's rows of `t` from `from` to `to`, a page at a time; the number
/// copied.
pub(super) async fn copy_table(from: &Db, to: &Db, tenant: i64, t: &Table) -> StoreResult<u64> {
    let mut after: Option<Vec<Val>> = None;
    let mut copied = 0u64;
    loop {
        let rows = read_page(from, tenant, t, after.as_deref()).await?;
        write_page(to, tenant, t, &rows).await?;
        copied += rows.len() as u64;
        match rows.last() {
            Some(last) if !t.key.is_empty() && rows.len() == PAGE => after = Some(key_of(t, last)),
            _ => return Ok(copied),
        }
    }
}

pub(super) async fn count(db: &Db, tenant: i64, t: &Table) -> StoreResult<u64> {
    let sql = format!("SELECT COUNT(*) FROM {} WHERE tenant_id = $1", t.name);
    let n: i64 = on_db!(db, |p| sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .fetch_one(p)
        .await?);
    Ok(n.max(0) as u64)
}

/// SHA-256 (hex) of the tenant's documents in key order: collection, id, version and the
/// data as canonical JSON (keys sorted), so SQLite's text and PostgreSQL's jsonb of the
/// same object agree. With the number of documents.
pub(super) async fn documents_checksum(db: &Db, tenant: i64) -> StoreResult<(u64, String)> {
    let mut hash = Sha256::new();
    let mut n = 0u64;
    for_pages(db, tenant, &DOCUMENTS, |rows| {
        for r in rows {
            let [
                Val::Text(Some(c)),
                Val::Text(Some(id)),
                Val::Int(Some(v)),
                Val::Text(Some(d)),
                ..,
            ] = r.as_slice()
            else {
                return Err(crate::store::StoreError::Internal(
                    "a document row is malformed",
                ));
            };
            let value: serde_json::Value = serde_json::from_str(d)
                .map_err(|_| crate::store::StoreError::Internal("a document's data is not JSON"))?;
            let mut line = format!("{c}\u{0}{id}\u{0}{v}\u{0}");
            canonical(&value, &mut line);
            line.push('\n');
            hash.update(line.as_bytes());
            n += 1;
        }
        Ok(())
    })
    .await?;
    Ok((n, hex::encode(hash.finalize())))
}

/// JSON text with object keys sorted, whatever order the value kept them in.
fn canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Deletes every row of the tenant at this location, in one transaction; with
/// `placeholder`, a cluster's placeholder `tenants` row too (never on the server's own
/// database, where that row is the tenant itself).
pub(crate) async fn clear_tenant(db: &Db, tenant: i64, placeholder: bool) -> StoreResult<()> {
    let begin = db.begin_write();
    on_db!(db, |p| {
        let mut tx = p.begin_with(begin).await?;
        for t in TABLES.iter().rev() {
            let sql = format!("DELETE FROM {} WHERE tenant_id = $1", t.name);
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
        }
        if placeholder {
            sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    })
}

/// The row a cluster's tenant tables refer to. Its slug is `#<id>`, so it collides with
/// no other tenant's placeholder whatever slugs are reused.
pub(crate) async fn placeholder_row(db: &Db, tenant: i64, name: &str) -> StoreResult<()> {
    let Db::Postgres(p) = db else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, created_at, updated_at) OVERRIDING SYSTEM VALUE \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING",
    )
    .bind(tenant)
    .bind(format!("#{tenant}"))
    .bind(name)
    .bind(crate::store::now_ms())
    .execute(p)
    .await?;
    Ok(())
}

/// What tells one PostgreSQL database from another (name, server address and port, and
/// the server's start time), so a move never takes a database for a different one.
pub(super) async fn pg_identity(db: &Db) -> StoreResult<Option<String>> {
    let Db::Postgres(p) = db else {
        return Ok(None);
    };
    let id: String = sqlx::query_scalar(
        "SELECT current_database() || '/' || COALESCE(host(inet_server_addr()), 'socket') \
         || ':' || COALESCE(inet_server_port()::text, '') || '/' \
         || pg_postmaster_start_time()::text",
    )
    .fetch_one(p)
    .await?;
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":"s"}}"#).unwrap();
        let mut out = String::new();
        canonical(&a, &mut out);
        assert_eq!(out, r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#);
    }

    #[test]
    fn statements_name_every_column_once() {
        for t in TABLES {
            let ins = insert_sql(t, true, 1);
            assert_eq!(ins.matches('$').count(), t.cols.len() + 1, "{}", t.name);
            let ins = insert_sql(t, false, 3);
            assert_eq!(
                ins.matches('$').count(),
                3 * (t.cols.len() + 1),
                "{}",
                t.name
            );
            let last = format!("${}", 1 + 3 * t.cols.len());
            assert!(ins.contains(&last) && !ins.contains(&format!("{last}0")));
            let sel = select_sql(t, false, true);
            assert!(sel.contains(t.name));
            for k in t.key {
                assert!(t.cols.iter().any(|(c, _)| c == k), "{}: key {k}", t.name);
            }
        }
        assert_eq!(
            select_sql(&DOCUMENTS, true, true),
            "SELECT \"collection\", \"id\", \"version\", \"data\"::text, \"created_at\", \
             \"updated_at\" FROM documents WHERE tenant_id = $1 AND (\"collection\", \"id\") > \
             ($2, $3) ORDER BY \"collection\", \"id\" LIMIT 500"
        );
    }
}
