//! The SQL of list and count queries: literals the planner must see, the predicate,
//! the keyset condition that resumes after a cursor, and the order with its tie-break.

use std::fmt::Write as _;

use super::{After, ListQuery, OrderKey, SortValue};
use crate::query::{OrderField, Predicate};
use crate::store::predicate_sql::{self, Dialect, SqlParam};
use crate::store::{StoreError, StoreResult};

/// The SQL of a list query and its parameters (numbered from `$1`).
///
/// The tenant id (an integer from our own tables) and the collection (validated
/// `^[a-z][a-z0-9_]{0,62}$`) are written into the SQL as literals: a partial expression
/// index (`WHERE collection = 'votes'`) is only usable when the planner can see them, and
/// PostgreSQL's generic plans for prepared statements cannot see bound values. Everything
/// that comes from a request is bound.
pub(in crate::store) fn list_sql(
    tenant: i64,
    q: &ListQuery<'_>,
    dialect: Dialect,
) -> StoreResult<(String, Vec<SqlParam>)> {
    if !crate::names::valid_collection(q.collection) {
        return Err(StoreError::Internal("invalid collection name"));
    }
    let mut params: Vec<SqlParam> = Vec::new();
    // `data_text`: the JSON as text on both backends, passed through to the response.
    let mut sql = String::from(match dialect {
        Dialect::Sqlite => {
            "SELECT id, data AS data_text, version, created_at, updated_at, rowid AS tie"
        }
        Dialect::Postgres => {
            "SELECT id, data::text AS data_text, version, created_at, updated_at, id AS tie"
        }
    });
    let mut key_exprs = Vec::with_capacity(q.order.len());
    for (i, k) in q.order.iter().enumerate() {
        // Exactly the expression an index on that path holds, so an index can deliver
        // rows in order. A missing path is SQL NULL, which sorts first on SQLite and
        // last (ascending) on PostgreSQL; the keyset condition follows each.
        let expr = predicate_sql::field_sql(&k.field, dialect);
        let _ = write!(sql, ", {expr} AS k{i}");
        key_exprs.push(expr);
    }
    let _ = write!(
        sql,
        " FROM documents WHERE tenant_id = {tenant} AND collection = '{}'",
        q.collection
    );
    let first = 1;
    if let Some(pred) = q.predicate {
        let rendered = predicate_sql::render(pred, dialect, first + params.len());
        // In WHERE, NULL (a CEL error) already excludes the row; no IS TRUE, which
        // would hide the equalities from the planner's index matching.
        let _ = write!(sql, " AND ({})", rendered.sql);
        params.extend(rendered.params);
    }
    if let Some(after) = q.after {
        let cond = keyset_condition(
            &key_exprs,
            q.order,
            after,
            dialect,
            first + params.len(),
            &mut params,
        );
        let _ = write!(sql, " AND ({cond})");
    }
    sql.push_str(" ORDER BY ");
    for (expr, k) in key_exprs.iter().zip(q.order) {
        let dir = if k.desc { "DESC" } else { "ASC" };
        let integer = matches!(
            k.field,
            OrderField::CreatedAt | OrderField::UpdatedAt | OrderField::Version
        );
        let _ = match (q.sort_matches && integer, dialect) {
            (false, _) => write!(sql, "{expr} {dir}, "),
            // the same values; an expression no index holds
            (true, Dialect::Sqlite) => write!(sql, "+{expr} {dir}, "),
            (true, Dialect::Postgres) => write!(sql, "({expr} + 0) {dir}, "),
        };
    }
    let (tie, tie_desc) = tie_break(q.order, dialect);
    let _ = write!(
        sql,
        "{tie} {} LIMIT {}",
        if tie_desc { "DESC" } else { "ASC" },
        q.limit.clamp(1, 10_001)
    );
    Ok((sql, params))
}

/// The SQL counting the rows a list's predicate matches, at most `cap + 1` of them
/// (literals as in `list_sql`).
pub(in crate::store) fn count_sql(
    tenant: i64,
    collection: &str,
    predicate: Option<&Predicate>,
    cap: i64,
    dialect: Dialect,
) -> StoreResult<(String, Vec<SqlParam>)> {
    if !crate::names::valid_collection(collection) {
        return Err(StoreError::Internal("invalid collection name"));
    }
    let mut sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM documents WHERE tenant_id = {tenant} AND collection = '{collection}'"
    );
    let mut params = Vec::new();
    if let Some(pred) = predicate {
        let rendered = predicate_sql::render(pred, dialect, 1);
        let _ = write!(sql, " AND ({})", rendered.sql);
        params = rendered.params;
    }
    let _ = write!(sql, " LIMIT {}) AS matched", cap.max(0) + 1);
    Ok((sql, params))
}

/// The unique last sort key, in the direction of the last key so that an index read
/// backwards delivers a descending order too: on SQLite the rowid, which every index
/// (expression indexes included) holds in that order within equal keys; on PostgreSQL
/// the id, the last column of every declared index.
fn tie_break(order: &[OrderKey], dialect: Dialect) -> (&'static str, bool) {
    let desc = order.last().is_some_and(|k| k.desc);
    match dialect {
        Dialect::Sqlite => ("rowid", desc),
        Dialect::Postgres => ("id", desc),
    }
}

/// `row > after` in the list's order (keys, then the tie-break), NULL-aware.
fn keyset_condition(
    exprs: &[String],
    order: &[OrderKey],
    after: &After,
    dialect: Dialect,
    first_param: usize,
    params: &mut Vec<SqlParam>,
) -> String {
    let mut next = first_param;
    let mut bind = |params: &mut Vec<SqlParam>, v: &SortValue| -> String {
        let (param, cast) = match v {
            SortValue::Null => return "NULL".to_string(),
            SortValue::Int(i) => (SqlParam::Int(*i), ""),
            SortValue::Float(f) => (SqlParam::Float(*f), ""),
            SortValue::Text(s) => (SqlParam::Text(s.clone()), ""),
            SortValue::Json(s) => (SqlParam::Json(s.clone()), "::jsonb"),
        };
        params.push(param);
        let s = format!("${next}{cast}");
        next += 1;
        s
    };
    // Built from the last key outwards: tail = (tie beyond its cursor value)
    let (tie, tie_desc) = tie_break(order, dialect);
    let tie_param = bind(params, &after.tie);
    let mut cond = format!("{tie} {} {tie_param}", if tie_desc { "<" } else { ">" });
    for (i, (expr, key)) in exprs.iter().zip(order).enumerate().rev() {
        let value = after.keys.get(i).cloned().unwrap_or(SortValue::Null);
        let is_null = matches!(value, SortValue::Null);
        let v = bind(params, &value);
        let (beyond, equal) = match dialect {
            Dialect::Postgres => {
                // NULL sorts after every value ascending (before, descending).
                let beyond = match (key.desc, is_null) {
                    (false, true) => "FALSE".to_string(),
                    (false, false) => format!("({expr} > {v} OR {expr} IS NULL)"),
                    (true, true) => format!("{expr} IS NOT NULL"),
                    (true, false) => format!("{expr} < {v}"),
                };
                (beyond, format!("{expr} IS NOT DISTINCT FROM {v}"))
            }
            Dialect::Sqlite => {
                // NULL sorts before every value.
                let beyond = match (key.desc, is_null) {
                    (false, true) => format!("{expr} IS NOT NULL"),
                    (false, false) => format!("{expr} > {v}"),
                    (true, true) => "FALSE".to_string(),
                    (true, false) => format!("({expr} < {v} OR {expr} IS NULL)"),
                };
                (beyond, format!("{expr} IS {v}"))
            }
        };
        cond = format!("{beyond} OR ({equal} AND ({cond}))");
    }
    cond
}
