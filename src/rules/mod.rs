//! Access rules and query filters: one expression language, CEL (the `cel` crate).
//!
//! - [`Expression`]: one compiled CEL expression (a rule of a collection, or a list
//!   filter), checked at compile time (syntax, unknown variables/functions, literal type
//!   clashes) with line and column.
//! - In memory: [`Expression::evaluate`] decides single-document operations and realtime
//!   events; an evaluation error denies.
//! - As SQL: [`Expression::to_predicate`] turns a read rule or filter into a
//!   dialect-neutral [`Predicate`] (sub-expressions that do not mention the document are
//!   evaluated now, with `auth` and `now` bound, and become values); `store::predicate_sql`
//!   renders it as parameterised SQL for SQLite or PostgreSQL.
//! - [`RuleSet`]: a TOML rule set, validated whole.
//!
//! Variables: `auth` (null, or `{uid, email, email_verified, claims}`), `doc` (stored
//! data), `new` (data after the write), `id` (document id), `now` (int, unix ms); filters
//! and read rules also see `version`, `created_at`, `updated_at` (ints, unix ms).

mod check;
mod expression;
mod lex;
pub mod predicate;
mod ruleset;
pub mod testing;
mod translate;
mod values;

pub use expression::{CelError, Explanation, ExprKind, Expression, TraceStep, Untranslatable};
pub use predicate::{CmpOp, Field, Predicate};
pub use ruleset::{CollectionRules, RuleSet, RuleSetError};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Read,
    Create,
    Update,
    Delete,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Read,
        Operation::Create,
        Operation::Update,
        Operation::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// The signed-in user as rules see it (`auth`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthInfo {
    pub uid: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub email_verified: bool,
    /// Extra claims (an object); `{}` when none.
    #[serde(default)]
    pub claims: serde_json::Value,
}

/// Metadata of a stored document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DocMeta {
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Everything an expression can see when evaluated in memory.
#[derive(Clone, Copy, Debug)]
pub struct Bindings<'a> {
    pub auth: Option<&'a AuthInfo>,
    pub id: &'a str,
    /// Stored data: None on create.
    pub doc: Option<&'a serde_json::Value>,
    /// Data after the write: None on read and delete.
    pub new: Option<&'a serde_json::Value>,
    /// Stored metadata: None on create.
    pub meta: Option<&'a DocMeta>,
    pub now_ms: i64,
}

/// What is known when a list query is built: the caller and the time, not the documents.
#[derive(Clone, Copy, Debug)]
pub struct QueryBindings<'a> {
    pub auth: Option<&'a AuthInfo>,
    pub now_ms: i64,
}
