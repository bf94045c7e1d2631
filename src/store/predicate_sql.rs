//! Renders a [`Predicate`] as parameterised SQL for SQLite or PostgreSQL. No user text is
//! ever pasted into SQL: values become bind parameters; document paths are inlined only
//! when every segment is `[A-Za-z_][A-Za-z0-9_]*` (so expression indexes can match) and
//! are bound otherwise.
//!
//! Columns of the `documents` table the SQL refers to: `id` TEXT, `data` (SQLite: TEXT
//! holding JSON; PostgreSQL: JSONB), `version`, `created_at`, `updated_at` (BIGINT).

use crate::rules::{Field, Predicate};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A bind parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlParam {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// JSON text (bound as TEXT on SQLite, as JSONB on PostgreSQL).
    Json(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// A boolean SQL expression (NULL where CEL would err).
    pub sql: String,
    pub params: Vec<SqlParam>,
}

/// Renders `pred`; placeholders are numbered from `first_param` (`$N`, both dialects).
pub fn render(pred: &Predicate, dialect: Dialect, first_param: usize) -> Rendered {
    let _ = (pred, dialect, first_param);
    todo!("rules helper")
}

/// The SQL expression for a field's value, as used by ORDER BY and expression indexes:
/// SQLite `json_extract(data, '$.a.b')`, PostgreSQL `(data -> 'a' -> 'b')`; meta fields
/// are their columns. Only for identifier-safe paths (None otherwise).
pub fn field_sql(field: &Field, dialect: Dialect) -> Option<String> {
    let _ = (field, dialect);
    todo!("rules helper")
}
