//! Renders a [`Predicate`] as parameterised SQL for SQLite or PostgreSQL. No user text is
//! ever pasted into SQL: values become bind parameters; document paths are inlined only
//! when every segment is `[A-Za-z_][A-Za-z0-9_]*` (so expression indexes can match) and
//! are bound otherwise.
//!
//! Columns of the `documents` table the SQL refers to: `id` TEXT, `data` (SQLite: TEXT
//! holding JSON; PostgreSQL: JSONB), `version`, `created_at`, `updated_at` (BIGINT).
//!
//! The SQL mirrors CEL as the `cel` crate evaluates it, with NULL for a CEL error:
//! - A document field is read with `field_sql`'s expression, so an expression index on it
//!   serves equality: SQLite `json_extract(data, '$.poll') = $1 AND json_type(...) = 'text'`,
//!   PostgreSQL `(data -> 'poll') = $1::jsonb` (jsonb equality is CEL's JSON equality:
//!   numbers by value, `1 == 1.0`, objects regardless of key order).
//! - JSON type guards keep SQL from comparing across types the way CEL does not: SQLite's
//!   `json_extract` returns 1/0 for true/false and JSON text for arrays and objects;
//!   PostgreSQL orders jsonb values of different types. An order comparison across types
//!   is an error in CEL, so it renders as NULL (`CASE WHEN <type matches> THEN ... END`).
//! - Strings order by code point: SQLite's BINARY collation, `COLLATE "C"` on PostgreSQL.
//! - A missing field is an error in CEL: `json_extract`/`->` give NULL, and so does
//!   every comparison with it.
//!
//! Placeholders are `$N` in both dialects (SQLite reads `$N` as a numbered parameter);
//! on PostgreSQL each carries a cast (`$1::jsonb`) so bound types never need inferring.
//! A placeholder may appear more than once in the SQL.

use serde_json::Value as Json;

use crate::query::{CmpOp, Field, Predicate};

mod json_path;

use json_path::{DocField, Step, column, keys};
pub use json_path::{field_sql, path_sql};

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
    let mut r = Renderer {
        dialect,
        first: first_param,
        params: Vec::new(),
        negated: false,
    };
    let sql = r.pred(pred);
    Rendered {
        sql,
        params: r.params,
    }
}

struct Renderer {
    dialect: Dialect,
    first: usize,
    params: Vec<SqlParam>,
    /// Under an odd number of `NOT`s, where a NULL (CEL error) must stay NULL: NOT NULL
    /// excludes the row, NOT FALSE includes it. Elsewhere only TRUE counts (the SQL is a
    /// WHERE condition), so an error may render as FALSE (see `guarded`).
    negated: bool,
}

/// Whether `json_extract(data, path) = v` (SQLite) can only be TRUE where the field holds
/// a value of `v`'s JSON type: `json_extract` gives an array or object as its JSON text,
/// and `true`/`false` as 1/0.
fn guard_is_redundant(v: &Json) -> bool {
    match v {
        Json::String(s) => !s.starts_with('[') && !s.starts_with('{'),
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && f != 1.0),
        _ => false,
    }
}

impl Renderer {
    fn param(&mut self, p: SqlParam) -> String {
        let cast = match (&p, self.dialect) {
            (_, Dialect::Sqlite) => "",
            (SqlParam::Bool(_), Dialect::Postgres) => "::boolean",
            (SqlParam::Int(_), Dialect::Postgres) => "::bigint",
            (SqlParam::Float(_), Dialect::Postgres) => "::double precision",
            (SqlParam::Text(_), Dialect::Postgres) => "::text",
            (SqlParam::Json(_), Dialect::Postgres) => "::jsonb",
        };
        self.params.push(p);
        format!("${}{cast}", self.first + self.params.len() - 1)
    }

    fn null(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "NULL",
            Dialect::Postgres => "CAST(NULL AS boolean)",
        }
    }

    fn pred(&mut self, p: &Predicate) -> String {
        match p {
            Predicate::True => "TRUE".to_string(),
            Predicate::False => "FALSE".to_string(),
            Predicate::Unknown => self.null().to_string(),
            Predicate::And(items) if items.is_empty() => "TRUE".to_string(),
            Predicate::Or(items) if items.is_empty() => "FALSE".to_string(),
            Predicate::And(items) => {
                let parts: Vec<String> = items.iter().map(|i| self.pred(i)).collect();
                format!("({})", parts.join(" AND "))
            }
            Predicate::Or(items) => {
                let parts: Vec<String> = items.iter().map(|i| self.pred(i)).collect();
                format!("({})", parts.join(" OR "))
            }
            Predicate::Not(inner) => {
                self.negated = !self.negated;
                let inner = self.pred(inner);
                self.negated = !self.negated;
                format!("(NOT {inner})")
            }
            Predicate::Compare { field, op, value } => match field {
                Field::Doc(path) => {
                    let f = self.doc_field(&keys(path));
                    self.compare_doc(&f, &keys(path), *op, value)
                }
                meta => self.compare_meta(meta, *op, value),
            },
            Predicate::In { field, values } => match field {
                Field::Doc(path) => {
                    let f = self.doc_field(&keys(path));
                    self.in_doc(&f, &keys(path), values)
                }
                meta => {
                    let parts: Vec<String> = values
                        .iter()
                        .map(|v| self.compare_meta(meta, CmpOp::Eq, v))
                        .collect();
                    if parts.is_empty() {
                        "FALSE".to_string()
                    } else {
                        format!("({})", parts.join(" OR "))
                    }
                }
            },
            Predicate::Contains { field, value } => match field {
                Field::Doc(path) => self.contains_doc(&keys(path), value),
                // id, version and the timestamps are never containers
                _ => self.null().to_string(),
            },
            Predicate::StartsWith { field, prefix } => self.starts_with(field, prefix),
            Predicate::Substring { field, needle } => self.substring(field, needle),
            Predicate::Has { field } => match field {
                Field::Doc(path) if !path.is_empty() => {
                    let f = self.doc_field(&keys(path));
                    match (self.dialect, &f.parent) {
                        (Dialect::Sqlite, None) => {
                            format!("(json_type(data, {}) IS NOT NULL)", f.access)
                        }
                        (Dialect::Sqlite, Some(parent)) => format!(
                            "(CASE WHEN json_type(data, {parent}) = 'object' THEN json_type(data, {}) IS NOT NULL END)",
                            f.access
                        ),
                        (Dialect::Postgres, None) => format!("({} IS NOT NULL)", f.access),
                        (Dialect::Postgres, Some(parent)) => format!(
                            "(CASE WHEN jsonb_typeof({parent}) = 'object' THEN {} IS NOT NULL END)",
                            f.access
                        ),
                    }
                }
                // the document and its metadata always exist
                _ => "TRUE".to_string(),
            },
        }
    }

    /// A scalar JSON value as a bind parameter (SQLite); None for null, arrays, objects.
    fn sqlite_scalar(&mut self, v: &Json) -> Option<(String, &'static str)> {
        Some(match v {
            Json::String(s) => (self.param(SqlParam::Text(s.clone())), "= 'text'"),
            Json::Bool(b) => (
                self.param(SqlParam::Int(i64::from(*b))),
                "IN ('true', 'false')",
            ),
            Json::Number(n) => (self.number(n), "IN ('integer', 'real')"),
            _ => return None,
        })
    }

    fn number(&mut self, n: &serde_json::Number) -> String {
        match n.as_i64() {
            Some(i) => self.param(SqlParam::Int(i)),
            None => self.param(SqlParam::Float(n.as_f64().unwrap_or(0.0))),
        }
    }

    fn compare_doc(&mut self, f: &DocField, steps: &[Step], op: CmpOp, v: &Json) -> String {
        match op {
            CmpOp::Eq => self.eq_doc(f, steps, v),
            CmpOp::Ne => {
                self.negated = !self.negated;
                let eq = self.eq_doc(f, steps, v);
                self.negated = !self.negated;
                format!("(NOT {eq})")
            }
            _ => {
                let sym = match op {
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    _ => ">=",
                };
                match self.dialect {
                    Dialect::Sqlite => {
                        let a = &f.access;
                        match v {
                            Json::Number(_) | Json::String(_) | Json::Bool(_) => {
                                let Some((p, guard)) = self.sqlite_scalar(v) else {
                                    return self.null().to_string();
                                };
                                self.guarded(
                                    &format!("json_type(data, {a}) {guard}"),
                                    &format!("json_extract(data, {a}) {sym} {p}"),
                                )
                            }
                            // null, lists and maps cannot be ordered: an error in CEL
                            _ => self.null().to_string(),
                        }
                    }
                    Dialect::Postgres => {
                        let a = &f.access;
                        match v {
                            Json::Number(_) => {
                                let p = self.param(SqlParam::Json(v.to_string()));
                                self.guarded(
                                    &format!("jsonb_typeof({a}) = 'number'"),
                                    &format!("{a} {sym} {p}"),
                                )
                            }
                            Json::Bool(_) => {
                                let p = self.param(SqlParam::Json(v.to_string()));
                                self.guarded(
                                    &format!("jsonb_typeof({a}) = 'boolean'"),
                                    &format!("{a} {sym} {p}"),
                                )
                            }
                            Json::String(s) => {
                                let p = self.param(SqlParam::Text(s.clone()));
                                format!(
                                    "(CASE WHEN jsonb_typeof({a}) = 'string' THEN ({a} #>> '{{}}') COLLATE \"C\" {sym} {p} END)"
                                )
                            }
                            _ => self.null().to_string(),
                        }
                    }
                }
            }
        }
    }

    /// `cond` where `guard` (a type check) holds, an error (NULL) elsewhere. Outside a
    /// negation it renders as `cond AND guard`, FALSE where CEL errs, which a WHERE
    /// treats alike and which leaves `cond` (a comparison of the indexed expression)
    /// where the planner can use it as a range of an index; `CASE` would hide it.
    fn guarded(&self, guard: &str, cond: &str) -> String {
        if self.negated {
            format!("(CASE WHEN {guard} THEN {cond} END)")
        } else {
            format!("({cond} AND {guard})")
        }
    }

    /// A field as SQL text for the string functions, with the guard that it holds a
    /// string (none for the id, always text); None for fields that are never strings.
    fn string_operand(&mut self, field: &Field) -> Option<(String, Option<String>)> {
        match (field, self.dialect) {
            (Field::Doc(path), Dialect::Sqlite) => {
                let a = self.doc_field(&keys(path)).access;
                Some((
                    format!("json_extract(data, {a})"),
                    Some(format!("json_type(data, {a}) = 'text'")),
                ))
            }
            (Field::Doc(path), Dialect::Postgres) => {
                let a = self.doc_field(&keys(path)).access;
                Some((
                    format!("({a} #>> '{{}}')"),
                    Some(format!("jsonb_typeof({a}) = 'string'")),
                ))
            }
            (Field::Id, _) => Some(("id".to_string(), None)),
            _ => None,
        }
    }

    /// `field.startsWith(prefix)`. SQLite: the range `[prefix, successor)` of the indexed
    /// expression (BINARY collation is code-point order, so exactly the strings with the
    /// prefix). PostgreSQL: `starts_with` on the text, since the jsonb index orders
    /// strings by the database's collation, not by code point.
    fn starts_with(&mut self, field: &Field, prefix: &str) -> String {
        let Some((value, guard)) = self.string_operand(field) else {
            // numbers have no startsWith: an error in CEL
            return self.null().to_string();
        };
        let cond = match self.dialect {
            Dialect::Postgres => {
                let p = self.param(SqlParam::Text(prefix.to_string()));
                format!("starts_with({value}, {p})")
            }
            Dialect::Sqlite if prefix.is_empty() => "TRUE".to_string(),
            Dialect::Sqlite => {
                let lo = self.param(SqlParam::Text(prefix.to_string()));
                match prefix_successor(prefix) {
                    Some(hi) => {
                        let hi = self.param(SqlParam::Text(hi));
                        format!("{value} >= {lo} AND {value} < {hi}")
                    }
                    None => format!("{value} >= {lo} AND substr({value}, 1, length({lo})) = {lo}"),
                }
            }
        };
        match guard {
            Some(g) => self.guarded(&g, &cond),
            None => format!("({cond})"),
        }
    }

    /// `field.contains(needle)` on strings: `instr` (SQLite), `strpos` (PostgreSQL), both
    /// by characters.
    fn substring(&mut self, field: &Field, needle: &str) -> String {
        let Some((value, guard)) = self.string_operand(field) else {
            return self.null().to_string();
        };
        let p = self.param(SqlParam::Text(needle.to_string()));
        let cond = match self.dialect {
            Dialect::Sqlite => format!("instr({value}, {p}) > 0"),
            Dialect::Postgres => format!("strpos({value}, {p}) > 0"),
        };
        match guard {
            Some(g) => self.guarded(&g, &cond),
            None => format!("({cond})"),
        }
    }

    /// `field == v`: TRUE, FALSE, or NULL when the field is missing.
    fn eq_doc(&mut self, f: &DocField, steps: &[Step], v: &Json) -> String {
        let a = f.access.clone();
        match self.dialect {
            Dialect::Postgres => {
                let p = self.param(SqlParam::Json(v.to_string()));
                format!("({a} = {p})")
            }
            Dialect::Sqlite => match v {
                Json::Null => format!("(json_type(data, {a}) = 'null')"),
                Json::Array(_) | Json::Object(_) => {
                    let whole = self.eq2_sqlite(None, steps, v);
                    format!("(CASE WHEN json_type(data, {a}) IS NOT NULL THEN {whole} END)")
                }
                _ => match self.sqlite_scalar(v) {
                    // Outside a NOT only TRUE counts, and for these values `json_extract`
                    // can equal them only when the field has their type: a string that
                    // cannot be an array's or object's JSON text, a number that no
                    // boolean (1/0) equals. The guard then only turns NULL into FALSE,
                    // so it is left out: without it an index on the path answers the
                    // comparison alone (a count reads no row).
                    Some((p, _)) if !self.negated && guard_is_redundant(v) => {
                        format!("(json_extract(data, {a}) = {p})")
                    }
                    Some((p, guard)) => {
                        format!("(json_extract(data, {a}) = {p} AND json_type(data, {a}) {guard})")
                    }
                    None => self.null().to_string(),
                },
            },
        }
    }

    /// SQLite deep equality, two-valued (a missing path is unequal), of the value at
    /// `steps` below `root` (see `access_from`).
    fn eq2_sqlite(&mut self, root: Option<&str>, steps: &[Step], v: &Json) -> String {
        let a = self.access_from(root, steps);
        match v {
            Json::Null => format!("(json_type(data, {a}) IS 'null')"),
            Json::Array(items) => {
                let mut parts = vec![
                    format!("json_type(data, {a}) IS 'array'"),
                    format!("json_array_length(data, {a}) = {}", items.len()),
                ];
                for (i, item) in items.iter().enumerate() {
                    let mut sub = steps.to_vec();
                    sub.push(Step::Index(i));
                    parts.push(self.eq2_sqlite(root, &sub, item));
                }
                format!("({})", parts.join(" AND "))
            }
            Json::Object(map) => {
                let mut parts = vec![
                    format!("json_type(data, {a}) IS 'object'"),
                    format!(
                        "(SELECT count(*) FROM json_each(data, {a})) = {}",
                        map.len()
                    ),
                ];
                for (k, item) in map {
                    let mut sub = steps.to_vec();
                    sub.push(Step::Key(k.clone()));
                    parts.push(self.eq2_sqlite(root, &sub, item));
                }
                format!("({})", parts.join(" AND "))
            }
            _ => match self.sqlite_scalar(v) {
                Some((p, guard)) => format!(
                    "COALESCE(json_extract(data, {a}) = {p} AND json_type(data, {a}) {guard}, FALSE)"
                ),
                None => "FALSE".to_string(),
            },
        }
    }

    fn in_doc(&mut self, f: &DocField, steps: &[Step], values: &[Json]) -> String {
        let a = f.access.clone();
        if values.is_empty() {
            return match self.dialect {
                Dialect::Sqlite => {
                    format!("(CASE WHEN json_type(data, {a}) IS NOT NULL THEN FALSE END)")
                }
                Dialect::Postgres => format!("(CASE WHEN {a} IS NOT NULL THEN FALSE END)"),
            };
        }
        match self.dialect {
            Dialect::Postgres => {
                let ps: Vec<String> = values
                    .iter()
                    .map(|v| self.param(SqlParam::Json(v.to_string())))
                    .collect();
                format!("({a} IN ({}))", ps.join(", "))
            }
            Dialect::Sqlite => {
                // one IN per scalar type, so an index on the field serves it
                let mut groups: Vec<String> = Vec::new();
                for guard in ["= 'text'", "IN ('integer', 'real')", "IN ('true', 'false')"] {
                    let members: Vec<&Json> = values
                        .iter()
                        .filter(|v| match v {
                            Json::String(_) => guard == "= 'text'",
                            Json::Number(_) => guard == "IN ('integer', 'real')",
                            Json::Bool(_) => guard == "IN ('true', 'false')",
                            _ => false,
                        })
                        .collect();
                    if members.is_empty() {
                        continue;
                    }
                    let ps: Vec<String> = members
                        .into_iter()
                        .filter_map(|v| self.sqlite_scalar(v).map(|(p, _)| p))
                        .collect();
                    groups.push(format!(
                        "(json_extract(data, {a}) IN ({}) AND json_type(data, {a}) {guard})",
                        ps.join(", ")
                    ));
                }
                for v in values {
                    if matches!(v, Json::Null | Json::Array(_) | Json::Object(_)) {
                        groups.push(self.eq_doc(f, steps, v));
                    }
                }
                format!("({})", groups.join(" OR "))
            }
        }
    }

    /// `v in field`: list membership by CEL equality, or a key of an object.
    fn contains_doc(&mut self, steps: &[Step], v: &Json) -> String {
        let f = self.access(steps);
        let key_of_object = |r: &mut Self| -> String {
            match v {
                Json::String(k) => {
                    let mut sub = steps.to_vec();
                    sub.push(Step::Key(k.clone()));
                    let p = r.access(&sub);
                    match r.dialect {
                        Dialect::Sqlite => format!("json_type(data, {p}) IS NOT NULL"),
                        Dialect::Postgres => format!("{p} IS NOT NULL"),
                    }
                }
                // a number or boolean is looked up and not found among string keys
                Json::Number(_) | Json::Bool(_) => "FALSE".to_string(),
                // null, a list or a map cannot be a key: an error in CEL
                _ => r.null().to_string(),
            }
        };
        match self.dialect {
            Dialect::Sqlite => {
                let elem = match v {
                    Json::Null => "e.type = 'null'".to_string(),
                    Json::Bool(true) => "e.type = 'true'".to_string(),
                    Json::Bool(false) => "e.type = 'false'".to_string(),
                    Json::String(s) => {
                        let p = self.param(SqlParam::Text(s.clone()));
                        format!("e.type = 'text' AND e.atom = {p}")
                    }
                    Json::Number(n) => {
                        let p = self.number(n);
                        format!("e.type IN ('integer', 'real') AND e.atom = {p}")
                    }
                    Json::Array(_) | Json::Object(_) => {
                        let deep = self.eq2_sqlite(Some("e.fullkey"), &[], v);
                        format!("CASE WHEN e.type IN ('array', 'object') THEN {deep} END")
                    }
                };
                let key = key_of_object(self);
                format!(
                    "(CASE json_type(data, {f}) WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(data, {f}) AS e WHERE {elem}) WHEN 'object' THEN {key} END)"
                )
            }
            Dialect::Postgres => {
                let p = self.param(SqlParam::Json(v.to_string()));
                let key = key_of_object(self);
                format!(
                    "(CASE jsonb_typeof({f}) WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({f}) AS e(v) WHERE e.v = {p}) WHEN 'object' THEN {key} END)"
                )
            }
        }
    }

    /// A metadata column against a value: `id` is text, the others are integers.
    fn compare_meta(&mut self, field: &Field, op: CmpOp, v: &Json) -> String {
        let col = column(field);
        let param = match (field, v) {
            (Field::Id, Json::String(s)) => Some(self.param(SqlParam::Text(s.clone()))),
            (Field::Id, _) => None,
            (_, Json::Number(n)) => Some(self.number(n)),
            _ => None,
        };
        let Some(p) = param else {
            // CEL: a value of another type is never equal, and cannot be ordered
            return match op {
                CmpOp::Eq => "FALSE".to_string(),
                CmpOp::Ne => "TRUE".to_string(),
                _ => self.null().to_string(),
            };
        };
        let sym = match op {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        };
        let col = match (field, self.dialect, op) {
            (Field::Id, Dialect::Postgres, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge) => {
                format!("{col} COLLATE \"C\"")
            }
            _ => col.to_string(),
        };
        format!("({col} {sym} {p})")
    }
}

/// The least string above every string that starts with `prefix`, in code-point order
/// (None when the prefix is all U+10FFFF).
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(c) = next {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests;
