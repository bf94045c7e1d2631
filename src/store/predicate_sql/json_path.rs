//! Document paths in SQL: a field's value expression (shared with ORDER BY and
//! expression indexes), JSON paths for SQLite, `->` chains for PostgreSQL, and whether a
//! filter's path key may be inlined (a `names::valid_identifier`) or must be bound.

use serde_json::Value as Json;

use super::{Dialect, Renderer, SqlParam};
use crate::names::{FieldPath, valid_identifier};
use crate::query::{Field, OrderField};

/// The SQL expression of what a list is ordered by: a column, or [`path_sql`].
pub fn field_sql(field: &OrderField, dialect: Dialect) -> String {
    match field {
        OrderField::Doc(path) => path_sql(path, dialect),
        OrderField::Id => column(&Field::Id).to_string(),
        OrderField::Version => column(&Field::Version).to_string(),
        OrderField::CreatedAt => column(&Field::CreatedAt).to_string(),
        OrderField::UpdatedAt => column(&Field::UpdatedAt).to_string(),
    }
}

/// The SQL expression of a document path's value, as ORDER BY and expression indexes
/// hold it: SQLite `json_extract(data, '$.a.b')`, PostgreSQL `(data -> 'a' -> 'b')`. The
/// path is written into the SQL text, which a [`FieldPath`]'s grammar makes safe; it is
/// the expression a filter's comparison on that path renders too, so the index serves it.
pub fn path_sql(path: &FieldPath, dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => format!("json_extract(data, '{}')", json_path(path.segments())),
        Dialect::Postgres => pg_path(path.segments()),
    }
}

pub(super) fn column(field: &Field) -> &'static str {
    match field {
        Field::Id => "id",
        Field::Version => "version",
        Field::CreatedAt => "created_at",
        Field::UpdatedAt => "updated_at",
        Field::Doc(_) => "data",
    }
}

/// A path step into JSON: an object key or (inside values compared whole) a list index.
#[derive(Clone, Debug)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// A SQLite JSON path: `$.a.b`, with keys that are not identifier-safe quoted as JSON
/// strings (`$."a b"`; SQLite 3.45+ reads the escapes).
fn sqlite_path(steps: &[Step]) -> String {
    let mut p = String::from("$");
    for s in steps {
        match s {
            Step::Key(k) if valid_identifier(k) => {
                p.push('.');
                p.push_str(k);
            }
            Step::Key(k) => {
                p.push('.');
                p.push_str(&Json::String(k.clone()).to_string());
            }
            Step::Index(i) => p.push_str(&format!("[{i}]")),
        }
    }
    p
}

fn json_path(path: &[String]) -> String {
    sqlite_path(&keys(path))
}

pub(super) fn keys(path: &[String]) -> Vec<Step> {
    path.iter().map(|k| Step::Key(k.clone())).collect()
}

fn pg_path(path: &[String]) -> String {
    let mut s = String::from("(data");
    for k in path {
        s.push_str(&format!(" -> '{k}'"));
    }
    s.push(')');
    s
}

/// How a document field is read, once its path parameters (if any) are bound.
pub(super) struct DocField {
    /// SQLite: the JSON path argument (an inlined literal or a placeholder).
    /// PostgreSQL: the jsonb expression.
    pub(super) access: String,
    /// The parent's access (for `has`), None at the top level.
    pub(super) parent: Option<String>,
}

impl Renderer {
    /// Binds (or inlines) the path of a document field.
    pub(super) fn doc_field(&mut self, steps: &[Step]) -> DocField {
        let parent = if steps.len() > 1 {
            Some(self.access(&steps[..steps.len() - 1]))
        } else {
            None
        };
        DocField {
            access: self.access(steps),
            parent,
        }
    }

    pub(super) fn access(&mut self, steps: &[Step]) -> String {
        self.access_from(None, steps)
    }

    /// SQLite: the JSON path of `steps` below `root` (a SQL expression holding a path,
    /// e.g. `e.fullkey`), or below the document. PostgreSQL: the jsonb value.
    pub(super) fn access_from(&mut self, root: Option<&str>, steps: &[Step]) -> String {
        let safe = steps.iter().all(|s| match s {
            Step::Key(k) => valid_identifier(k),
            Step::Index(_) => true,
        });
        match self.dialect {
            Dialect::Sqlite => {
                let path = sqlite_path(steps);
                match root {
                    None if safe => format!("'{path}'"),
                    None => self.param(SqlParam::Text(path)),
                    Some(root) if steps.is_empty() => root.to_string(),
                    Some(root) if safe => format!("({root} || '{}')", &path[1..]),
                    Some(root) => {
                        let p = self.param(SqlParam::Text(path[1..].to_string()));
                        format!("({root} || {p})")
                    }
                }
            }
            Dialect::Postgres => {
                let mut s = String::from("(data");
                for step in steps {
                    match step {
                        Step::Key(k) if valid_identifier(k) => s.push_str(&format!(" -> '{k}'")),
                        // `->` with text never indexes an array (`#>` would, for "0")
                        Step::Key(k) => {
                            let p = self.param(SqlParam::Text(k.clone()));
                            s.push_str(&format!(" -> {p}"));
                        }
                        Step::Index(i) => s.push_str(&format!(" -> {i}")),
                    }
                }
                s.push(')');
                s
            }
        }
    }
}
