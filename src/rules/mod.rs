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
//!
//! # Compile-time checks
//! Sources up to 4 KiB, brackets nested at most 32 deep, ASTs at most 64 deep and 1000
//! nodes, comprehensions nested at most 2 deep. Syntax errors come from the `cel` parser;
//! then the variables the kind of expression may use ([`ExprKind`]), a whitelist of
//! functions (`size`, `contains`, `startsWith`, `endsWith`, `matches` with a valid literal
//! pattern, `int`, `uint`, `double`, `string`, `bool`, `dyn`, the macros `has`, `all`,
//! `exists`, `exists_one`, `map`, `filter`), and a small type inference that rejects what
//! can never work: `'a' < 1`, `'a' + 1`, `1 + 1.0`, `true && 'x'`, `!'x'`, `1 == 'a'`
//! (always false), `auth.name` (no such field), a rule that is not boolean.
//!
//! # CEL semantics (the `cel` crate 0.15, as measured)
//! - `==`/`!=` never err on values: across types they are false/true (`1 == 'a'` is
//!   false), except that numbers compare by value (`1 == 1.0`, `1 == 1u`), also inside
//!   lists and maps (`[1] == [1.0]`). `null == null`. Only an operand's error propagates.
//! - `<`, `<=`, `>`, `>=` work between numbers (int vs double through f64), strings
//!   (code-point order), booleans (`false < true`), bytes; anything else is an error, as
//!   is a NaN operand.
//! - A missing key (`doc.zz`) is an error; `has(doc.zz)` is false; a field of a
//!   non-map (`doc.s.x` with `s` a string, null or a list) is an error, for `has` too.
//! - `&&`/`||` absorb errors like SQL's three-valued logic absorbs NULL: `false && err`
//!   and `err && false` are false, `true || err` and `err || true` are true, otherwise an
//!   error stays an error; a non-boolean operand acts as an error. `!err` and `err ? a : b`
//!   are errors.
//! - `x in list` compares with `==` (never errs); `x in map` looks the key up (strings
//!   by presence, numbers and booleans by value, false for other keys) and errs for null,
//!   list or map keys. Anything else on the right errs.
//! - Arithmetic does not mix types (`1 + 1.0` errs), so JSON integers must be CEL ints:
//!   the JSON conversion here makes integers `int` (`uint` beyond `i64`), others `double`.
//!
//! # SQL translation
//! [`Expression::to_predicate`] handles comparisons of a document field (`doc.a.b`,
//! `doc['a-b']`) or metadata column with a value, `field in <list or map>`,
//! `value in field`, `has(doc.a.b)`, bare boolean fields, and `&&`, `||`, `!`, `? :` over
//! those; everything that does not mention the document becomes a value. Not translated
//! (an error naming the construct): functions and arithmetic on document data,
//! comprehensions over it, list indexes (`doc.l[0]`), computed keys (`doc[auth.uid]`),
//! comparisons between two document values. The differential test (tests/rules_sql.rs)
//! holds SQL and memory equal on SQLite and PostgreSQL for integers within ±2^53 and
//! finite doubles (CEL compares int with double through f64; SQL compares exactly).

mod ast;
mod check;
mod cost;
mod expression;
mod index_hints;
mod lex;
pub mod registry;
mod ruleset;
pub mod testing;
mod translate;
mod values;

pub use crate::query::{CmpOp, Field, Predicate};
pub use cost::{EVAL_BUDGET, EVENT_BUDGET};
pub use expression::{Explanation, Expression, PredicateError, TOO_COSTLY, TraceStep, Verdict};
pub use registry::{InstallError, Installed, RulesRegistry};
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

    /// An operation that an existing document's rule can be explained for (`explain`
    /// takes a stored document, so `create` has nothing to evaluate against).
    pub fn parse_explainable(s: &str) -> Result<Operation, String> {
        match s.parse() {
            Ok(op) if op != Operation::Create => Ok(op),
            _ => Err(format!("'{s}' is not read, update or delete")),
        }
    }
}

impl std::str::FromStr for Operation {
    type Err = String;

    /// `read`, `create`, `update` or `delete` (as written in rule sets and queries).
    fn from_str(s: &str) -> Result<Operation, String> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| format!("'{s}' is not read, create, update or delete"))
    }
}

/// Which variables an expression may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExprKind {
    /// A rule for this operation. read: auth, doc, id, now, version, created_at,
    /// updated_at; create: auth, new, id, now; update: auth, doc, new, id, now;
    /// delete: auth, doc, id, now.
    Rule(Operation),
    /// A list filter: doc, id, version, created_at, updated_at, auth, now.
    Filter,
    /// A hook condition (`when`): auth, doc, new, id, now.
    Condition,
}

/// A compile error, positioned in the expression's own text (1-based).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CelError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for CelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Why an expression cannot become SQL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Untranslatable {
    pub line: u32,
    pub column: u32,
    pub message: String,
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
