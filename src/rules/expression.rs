//! One compiled CEL expression: a rule or a filter.

use std::panic::{AssertUnwindSafe, catch_unwind};

use cel::common::ast::{Expr, IdedExpr};
use serde::{Deserialize, Serialize};

use super::check::{self, Compiled, MAX_NESTING, MAX_SOURCE_BYTES};
use super::cost::{self, EVAL_BUDGET};
use super::index_hints;
use super::lex;
use super::translate::Translator;
use super::values::{self, Vars};
use super::{AuthInfo, Bindings, CelError, ExprKind, Predicate, QueryBindings, Untranslatable};

/// Why an expression has no SQL form for a caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PredicateError {
    /// Its shape cannot be translated (a compile-time property of the expression).
    Untranslatable(Untranslatable),
    /// Evaluating its parts that do not mention the document spent the budget.
    TooCostly,
}

/// The outcome of an in-memory evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    True,
    /// False, an error or a non-boolean value.
    NotTrue,
    /// The evaluation spent its budget (whatever value it came to).
    TooCostly,
}

/// What a spent budget is called in messages.
pub const TOO_COSTLY: &str = "the expression is too costly to evaluate (it spent its \
     evaluation budget; see docs/rules.md, \"Cost limits\")";

/// One evaluated sub-expression, for explanations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    compiled: Compiled,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expression")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .finish()
    }
}

/// The parser recurses deeply (about 100 KB of stack per bracket level in debug builds):
/// it runs on its own thread with this much stack. 16 MiB holds the worst 4 KiB input in
/// a debug build, and is small enough for glibc to reuse the stack of a finished thread
/// (a much larger one is mapped afresh every time, which costs hundreds of µs).
const PARSER_STACK_BYTES: usize = 16 << 20;

/// Sources at most this long and nesting brackets at most this deep are parsed on the
/// caller's thread (a test checks they fit in 256 KiB of stack); others get a thread of
/// their own, which costs ~100 µs.
const INLINE_MAX_BYTES: usize = 512;
const INLINE_MAX_NESTING: usize = 8;

fn error_at(src: &str, at: usize, message: impl Into<String>) -> CelError {
    let (line, column) = lex::line_col(src, at);
    CelError {
        line,
        column,
        message: message.into(),
    }
}

/// One evaluated sub-expression's outcome, as `&&`/`||` see it.
enum Outcome {
    Bool(bool),
    /// An error, or a value that is not a boolean (both act as errors).
    Other,
}

impl Expression {
    /// Parses and checks `source`. Never panics, whatever the input.
    pub fn compile(source: &str, kind: ExprKind) -> Result<Expression, CelError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(CelError {
                line: 1,
                column: 1,
                message: format!(
                    "expression is too long ({} bytes; the limit is {MAX_SOURCE_BYTES})",
                    source.len()
                ),
            });
        }
        if let Some(at) = lex::nesting_overflow(source, MAX_NESTING) {
            return Err(error_at(
                source,
                at,
                format!("brackets nest too deeply (the limit is {MAX_NESTING} levels)"),
            ));
        }
        let inline = source.len() <= INLINE_MAX_BYTES
            && lex::nesting_overflow(source, INLINE_MAX_NESTING).is_none();
        let outcome = if inline {
            catch_unwind(AssertUnwindSafe(|| check::compile(source, kind))).ok()
        } else {
            std::thread::scope(|scope| {
                let handle = std::thread::Builder::new()
                    .name("cel-compile".to_string())
                    .stack_size(PARSER_STACK_BYTES)
                    .spawn_scoped(scope, || {
                        catch_unwind(AssertUnwindSafe(|| check::compile(source, kind))).ok()
                    });
                match handle {
                    Ok(h) => h.join().ok().flatten(),
                    Err(_) => None,
                }
            })
        };
        match outcome {
            Some(Ok(compiled)) => Ok(Expression {
                source: source.to_string(),
                kind,
                compiled,
            }),
            Some(Err(fail)) => Err(error_at(source, fail.at, fail.message)),
            None => Err(CelError {
                line: 1,
                column: 1,
                message: "internal error while compiling the expression".to_string(),
            }),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn kind(&self) -> ExprKind {
        self.kind
    }

    /// The variables of an in-memory evaluation (only those the expression uses).
    fn vars<'a>(&self, b: &Bindings<'a>) -> Vars<'a> {
        let uses = &self.compiled.uses;
        let meta = b.meta.cloned().unwrap_or_default();
        let mut v = Vars::default();
        if uses.contains("auth") {
            v.auth = Some(values::auth(b.auth));
        }
        if uses.contains("doc") {
            v.doc = Some(match b.doc {
                Some(d) => values::document(d, &self.compiled.doc_keys),
                None => Box::new(cel::common::types::CelNull),
            });
        }
        if uses.contains("new") {
            v.new = Some(match b.new {
                Some(d) => values::document(d, &self.compiled.new_keys),
                None => Box::new(cel::common::types::CelNull),
            });
        }
        if uses.contains("id") {
            v.id = Some(values::string(b.id));
        }
        if uses.contains("now") {
            v.now = Some(values::int(b.now_ms));
        }
        if uses.contains("version") {
            v.version = Some(values::int(meta.version));
        }
        if uses.contains("created_at") {
            v.created_at = Some(values::int(meta.created_at));
        }
        if uses.contains("updated_at") {
            v.updated_at = Some(values::int(meta.updated_at));
        }
        v
    }

    /// Evaluates in memory under the default budget ([`EVAL_BUDGET`]); true only when
    /// the result is the boolean `true` (an error, a non-boolean result or a spent budget
    /// denies).
    pub fn evaluate(&self, b: &Bindings<'_>) -> bool {
        self.evaluate_within(b, EVAL_BUDGET) == Verdict::True
    }

    /// Evaluates in memory under a budget of `units` (see `cost`).
    pub fn evaluate_within(&self, b: &Bindings<'_>, units: u64) -> Verdict {
        let (value, spent_out) = cost::metered(units, || {
            catch_unwind(AssertUnwindSafe(|| {
                let vars = self.vars(b);
                let ctx = values::context(&vars);
                match values::eval(&self.compiled.root, &ctx) {
                    Ok(v) => values::as_bool(&v) == Some(true),
                    Err(_) => false,
                }
            }))
            .unwrap_or(false)
        });
        match (spent_out, value) {
            (true, _) => Verdict::TooCostly,
            (false, true) => Verdict::True,
            (false, false) => Verdict::NotTrue,
        }
    }

    /// Whether evaluating may take a large share of its budget: only comprehensions
    /// multiply work (callers run such expressions off the async runtime's workers).
    pub fn may_be_costly(&self) -> bool {
        self.compiled.has_comprehension
    }

    /// Like `evaluate`, and says which sub-expression decided.
    pub fn explain(&self, b: &Bindings<'_>) -> Explanation {
        let (result, spent_out) = cost::metered(EVAL_BUDGET, || {
            catch_unwind(AssertUnwindSafe(|| {
                let vars = self.vars(b);
                let ctx = values::context(&vars);
                let mut trace = Vec::new();
                let (outcome, decided_by) =
                    self.explain_node(&self.compiled.root, &ctx, &mut trace);
                Explanation {
                    allowed: matches!(outcome, Outcome::Bool(true)),
                    decided_by: self.text(decided_by).to_string(),
                    trace,
                }
            }))
        });
        if spent_out {
            return Explanation {
                allowed: false,
                decided_by: self.source.clone(),
                trace: vec![TraceStep {
                    expression: self.source.clone(),
                    value: format!("error: {TOO_COSTLY}"),
                }],
            };
        }
        result.unwrap_or_else(|_| Explanation {
            allowed: false,
            decided_by: self.source.clone(),
            trace: vec![TraceStep {
                expression: self.source.clone(),
                value: "error: internal error during evaluation".to_string(),
            }],
        })
    }

    fn text(&self, e: &IdedExpr) -> &str {
        lex::text(&self.source, &self.compiled.offsets, e)
    }

    /// Mirrors the `cel` interpreter's `&&`, `||`, `!` and `? :` (an error or a
    /// non-boolean operand acts as an error; `false && error` is false, `true || error`
    /// is true), evaluating the other nodes as leaves.
    fn explain_node<'e>(
        &self,
        e: &'e IdedExpr,
        ctx: &cel::Context<'_, '_>,
        trace: &mut Vec<TraceStep>,
    ) -> (Outcome, &'e IdedExpr) {
        if let Expr::Call(c) = &e.expr
            && c.target.is_none()
        {
            match (c.func_name.as_str(), c.args.len()) {
                ("_&&_", 2) => {
                    let (l, ld) = self.explain_node(&c.args[0], ctx, trace);
                    if let Outcome::Bool(false) = l {
                        return (l, ld);
                    }
                    let (r, rd) = self.explain_node(&c.args[1], ctx, trace);
                    return match (l, r) {
                        (Outcome::Bool(true), r) => (r, rd),
                        (_, Outcome::Bool(false)) => (Outcome::Bool(false), rd),
                        (_, Outcome::Bool(true)) => (Outcome::Other, ld),
                        (_, Outcome::Other) => (Outcome::Other, rd),
                    };
                }
                ("_||_", 2) => {
                    let (l, ld) = self.explain_node(&c.args[0], ctx, trace);
                    if let Outcome::Bool(true) = l {
                        return (l, ld);
                    }
                    let (r, rd) = self.explain_node(&c.args[1], ctx, trace);
                    return match (l, r) {
                        (Outcome::Bool(false), r) => (r, rd),
                        (_, Outcome::Bool(true)) => (Outcome::Bool(true), rd),
                        (_, Outcome::Bool(false)) => (Outcome::Other, ld),
                        (_, Outcome::Other) => (Outcome::Other, rd),
                    };
                }
                ("!_", 1) => {
                    let (v, d) = self.explain_node(&c.args[0], ctx, trace);
                    return match v {
                        Outcome::Bool(b) => (Outcome::Bool(!b), d),
                        Outcome::Other => (Outcome::Other, d),
                    };
                }
                ("_?_:_", 3) => {
                    let (cond, cd) = self.explain_node(&c.args[0], ctx, trace);
                    return match cond {
                        Outcome::Bool(true) => self.explain_node(&c.args[1], ctx, trace),
                        Outcome::Bool(false) => self.explain_node(&c.args[2], ctx, trace),
                        Outcome::Other => (Outcome::Other, cd),
                    };
                }
                _ => {}
            }
        }
        let (outcome, value) = match values::eval(e, ctx) {
            Ok(v) => {
                let outcome = match values::as_bool(&v) {
                    Some(b) => Outcome::Bool(b),
                    None => Outcome::Other,
                };
                (outcome, values::display(&v))
            }
            Err(err) => (Outcome::Other, format!("error: {err}")),
        };
        trace.push(TraceStep {
            expression: self.text(e).to_string(),
            value,
        });
        (outcome, e)
    }

    /// The SQL-translatable form, with `auth` and `now` bound. The parts that do not
    /// mention the document are evaluated now, under [`EVAL_BUDGET`].
    pub fn to_predicate(&self, b: &QueryBindings<'_>) -> Result<Predicate, PredicateError> {
        self.to_predicate_within(b, EVAL_BUDGET)
    }

    /// Like `to_predicate`, under a budget of `units`.
    pub fn to_predicate_within(
        &self,
        b: &QueryBindings<'_>,
        units: u64,
    ) -> Result<Predicate, PredicateError> {
        let (outcome, spent_out) = cost::metered(units, || self.translate(b));
        if spent_out {
            return Err(PredicateError::TooCostly);
        }
        outcome.map_err(PredicateError::Untranslatable)
    }

    fn translate(&self, b: &QueryBindings<'_>) -> Result<Predicate, Untranslatable> {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut vars = Vars::default();
            if self.compiled.uses.contains("auth") {
                vars.auth = Some(values::auth(b.auth));
            }
            if self.compiled.uses.contains("now") {
                vars.now = Some(values::int(b.now_ms));
            }
            let ctx = values::context(&vars);
            let t = Translator {
                src: &self.source,
                offsets: &self.compiled.offsets,
                doc_nodes: &self.compiled.doc_nodes,
                ctx: &ctx,
            };
            t.predicate(&self.compiled.root)
        }));
        outcome.unwrap_or_else(|_| {
            Err(Untranslatable {
                line: 1,
                column: 1,
                message: "internal error while translating the expression".to_string(),
            })
        })
    }

    /// Whether `to_predicate` can succeed for every caller (checked at install time for
    /// read rules, so a list never meets an untranslatable rule). Translation only fails
    /// on the shape of the expression, never on the values bound; it is tried with an
    /// anonymous and with a signed-in caller all the same.
    pub fn check_translatable(&self) -> Result<(), Untranslatable> {
        let user = AuthInfo {
            uid: "check".to_string(),
            email: "check@example.com".to_string(),
            email_verified: true,
            claims: serde_json::json!({}),
        };
        for auth in [None, Some(&user)] {
            match self.to_predicate(&QueryBindings { auth, now_ms: 0 }) {
                Ok(_) => {}
                Err(PredicateError::Untranslatable(u)) => return Err(u),
                Err(PredicateError::TooCostly) => {
                    return Err(Untranslatable {
                        line: 1,
                        column: 1,
                        message: TOO_COSTLY.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Document paths compared for equality in the top-level conjunction (used to warn
    /// about read rules that no index serves). `doc.a in [...]` counts as well.
    pub fn equality_paths(&self) -> Vec<Vec<String>> {
        index_hints::equality_paths(&self.compiled.root, &self.compiled.doc_nodes)
    }

    /// Every document path compared for equality (or `in`) with a value, anywhere in
    /// the expression (bare boolean fields included).
    pub fn all_equality_paths(&self) -> Vec<Vec<String>> {
        index_hints::all_equality_paths(&self.compiled.root, &self.compiled.doc_nodes)
    }

    /// Whether an index whose first path is one of `firsts` (or the primary key, for
    /// `id == ...`) can narrow a list filtered by this expression.
    pub fn served_by_index(&self, firsts: &[Vec<String>]) -> bool {
        index_hints::served_by_index(&self.compiled.root, &self.compiled.doc_nodes, firsts)
    }

    /// Whether the expression mentions the stored document's data (`doc`).
    pub fn uses_document(&self) -> bool {
        self.compiled.uses.contains("doc")
    }

    /// Whether every variable the expression mentions is one of `names`.
    pub fn uses_only(&self, names: &[&str]) -> bool {
        self.compiled.uses.iter().all(|u| names.contains(u))
    }

    /// Whether the expression is a constant: it mentions no variable at all.
    pub fn is_constant(&self) -> bool {
        self.compiled.uses.is_empty()
    }
}

#[cfg(test)]
#[path = "expression_tests.rs"]
mod tests;
