//! One compiled CEL expression: a rule or a filter.

use serde::Serialize;

use super::{Bindings, Operation, Predicate, QueryBindings};

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

/// One evaluated sub-expression, for explanations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceStep {
    /// The sub-expression's source text.
    pub expression: String,
    /// Its value (as JSON), or the error text.
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub allowed: bool,
    /// The sub-expression whose value decided the outcome (the whole expression when it
    /// is a single leaf).
    pub decided_by: String,
    pub trace: Vec<TraceStep>,
}

pub struct Expression {
    source: String,
    kind: ExprKind,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expression")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Expression {
    /// Parses and checks `source`. Never panics, whatever the input.
    pub fn compile(source: &str, kind: ExprKind) -> Result<Expression, CelError> {
        let _ = (source, kind);
        todo!("rules helper")
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn kind(&self) -> ExprKind {
        self.kind
    }

    /// Evaluates in memory; true only when the result is the boolean `true` (an error or
    /// a non-boolean result denies).
    pub fn evaluate(&self, b: &Bindings<'_>) -> bool {
        let _ = b;
        todo!("rules helper")
    }

    /// Like `evaluate`, and says which sub-expression decided.
    pub fn explain(&self, b: &Bindings<'_>) -> Explanation {
        let _ = b;
        todo!("rules helper")
    }

    /// The SQL-translatable form, with `auth` and `now` bound.
    pub fn to_predicate(&self, b: &QueryBindings<'_>) -> Result<Predicate, Untranslatable> {
        let _ = b;
        todo!("rules helper")
    }

    /// Whether `to_predicate` can succeed for every caller (checked at install time for
    /// read rules, so a list never meets an untranslatable rule).
    pub fn check_translatable(&self) -> Result<(), Untranslatable> {
        todo!("rules helper")
    }

    /// Document paths compared for equality in the top-level conjunction (used to warn
    /// about read rules that no index serves).
    pub fn equality_paths(&self) -> Vec<Vec<String>> {
        todo!("rules helper")
    }
}
