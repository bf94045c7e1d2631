//! Compile-time checks of a CEL expression: size limits, syntax (the `cel` parser), the
//! variables a kind of expression may use, a whitelist of functions, and a small type
//! inference over the AST that catches clashes visible without data (`'a' < 1`,
//! `1 && true`, a rule that is not boolean).
//!
//! The walk over the tree is here; `syntax` rewords the parser's errors, `types` holds
//! the type lattice, `calls` checks operators and the whitelisted functions.

mod calls;
mod syntax;
mod types;

use std::collections::{BTreeSet, HashSet};

use cel::common::ast::{ComprehensionExpr, EntryExpr, Expr, IdedExpr};
use cel::parser::Parser;

use super::ast::{self, contains_comprehension, key_use, mark_doc_nodes};
use super::lex::{self, Offsets};
use super::values::{KeyUse, VARIABLES};
use super::{ExprKind, Operation};
use syntax::parse_failure;
use types::{Ty, literal_type};

pub(super) const MAX_SOURCE_BYTES: usize = 4096;
pub(super) const MAX_DEPTH: usize = 64;
pub(super) const MAX_NODES: usize = 1000;
/// Bracket nesting allowed before parsing (the parser needs ~100 KB of stack per level
/// in debug builds; it runs on a thread with a large stack).
pub(super) const MAX_NESTING: usize = 32;
pub(super) const MAX_COMPREHENSION_NESTING: usize = 2;

/// A compile error at a byte offset of the expression text.
#[derive(Debug)]
pub(super) struct Fail {
    pub at: usize,
    pub message: String,
}

fn fail<T>(at: usize, message: impl Into<String>) -> Result<T, Fail> {
    Err(Fail {
        at,
        message: message.into(),
    })
}

/// What compiling produced.
pub(super) struct Compiled {
    pub root: IdedExpr,
    pub offsets: Offsets,
    /// Nodes whose subtree mentions the stored document or its metadata (`doc`, `id`,
    /// `version`, `created_at`, `updated_at`).
    pub doc_nodes: HashSet<u64>,
    /// Variables the expression uses.
    pub uses: BTreeSet<&'static str>,
    pub doc_keys: KeyUse,
    pub new_keys: KeyUse,
    /// Whether it has a comprehension (its evaluation may take up to its whole budget).
    pub has_comprehension: bool,
}

pub(super) fn allowed_variables(kind: ExprKind) -> &'static [&'static str] {
    match kind {
        ExprKind::Rule(Operation::Read) | ExprKind::Filter => &[
            "auth",
            "doc",
            "id",
            "now",
            "version",
            "created_at",
            "updated_at",
        ],
        ExprKind::Rule(Operation::Create) => &["auth", "new", "id", "now"],
        ExprKind::Rule(Operation::Update) | ExprKind::Condition => {
            &["auth", "doc", "new", "id", "now"]
        }
        ExprKind::Rule(Operation::Delete) => &["auth", "doc", "id", "now"],
    }
}

fn kind_name(kind: ExprKind) -> String {
    match kind {
        ExprKind::Rule(op) => format!("a {} rule", op.as_str()),
        ExprKind::Filter => "a filter".to_string(),
        ExprKind::Condition => "a hook condition".to_string(),
    }
}

/// Parses and checks `source`. Runs the parser, so call it on a thread with a large
/// stack (see `Expression::compile`).
pub(super) fn compile(source: &str, kind: ExprKind) -> Result<Compiled, Fail> {
    let (root, info) = match Parser::default().parse_with_source_info(source) {
        Ok(parsed) => parsed,
        Err(errors) => {
            let first = errors.errors.into_iter().next();
            return match first {
                Some(e) => Err(parse_failure(source, &e)),
                None => fail(0, "syntax error"),
            };
        }
    };
    let mut offsets = Offsets::new();
    let mut nodes = 0usize;
    let depth = measure(&root, 1, &mut nodes);
    if depth > MAX_DEPTH {
        return fail(
            0,
            format!("expression is nested too deeply ({depth} levels; the limit is {MAX_DEPTH})"),
        );
    }
    if nodes > MAX_NODES {
        return fail(
            0,
            format!("expression is too large ({nodes} nodes; the limit is {MAX_NODES})"),
        );
    }
    ast::visit_ids(&root, &mut |id| {
        if let Some(o) = info.offset_for(id) {
            offsets.insert(id, o);
        }
    });
    let mut checker = Checker {
        src: source,
        offsets: &offsets,
        kind,
        scope: Vec::new(),
        comprehensions: 0,
        uses: BTreeSet::new(),
    };
    let ty = checker.check(&root)?;
    if !matches!(ty, Ty::Bool | Ty::Dyn) {
        let (lo, _) = lex::span(source, &offsets, &root);
        return fail(
            lo,
            format!(
                "{} must be a boolean expression, this one is {}",
                match kind {
                    ExprKind::Rule(_) => "a rule",
                    ExprKind::Filter => "a filter",
                    ExprKind::Condition => "a condition",
                },
                ty.article()
            ),
        );
    }
    let uses = checker.uses;
    let has_comprehension = contains_comprehension(&root);
    let mut root = root;
    super::cost::instrument(&mut root);
    let mut doc_nodes = HashSet::new();
    mark_doc_nodes(&root, &mut doc_nodes);
    let doc_keys = key_use(&root, "doc");
    let new_keys = key_use(&root, "new");
    Ok(Compiled {
        root,
        offsets,
        doc_nodes,
        uses,
        doc_keys,
        new_keys,
        has_comprehension,
    })
}

/// Depth of the tree; counts nodes into `nodes`. Stops descending past the limits.
fn measure(e: &IdedExpr, depth: usize, nodes: &mut usize) -> usize {
    *nodes += 1;
    if depth > MAX_DEPTH + 1 || *nodes > MAX_NODES + 1 {
        return depth;
    }
    ast::children(e)
        .into_iter()
        .map(|c| measure(c, depth + 1, nodes))
        .max()
        .unwrap_or(depth)
}

struct Checker<'a> {
    src: &'a str,
    offsets: &'a Offsets,
    kind: ExprKind,
    /// Comprehension variables in scope, with their types.
    scope: Vec<(String, Ty)>,
    comprehensions: usize,
    uses: BTreeSet<&'static str>,
}

impl Checker<'_> {
    fn tok(&self, e: &IdedExpr) -> usize {
        self.offsets.get(&e.id).map(|o| o.0 as usize).unwrap_or(0)
    }

    fn start(&self, e: &IdedExpr) -> usize {
        lex::span(self.src, self.offsets, e).0
    }

    fn text(&self, e: &IdedExpr) -> &str {
        lex::text(self.src, self.offsets, e)
    }

    /// Where a call's function name starts (its token is the '(').
    fn name_pos(&self, call: &IdedExpr) -> usize {
        let t = self.tok(call);
        let b = self.src.as_bytes();
        if t < b.len() && b[t] == b'(' {
            let mut k = t;
            while k > 0 && b[k - 1].is_ascii_whitespace() {
                k -= 1;
            }
            let mut n = k;
            while n > 0 && (b[n - 1].is_ascii_alphanumeric() || b[n - 1] == b'_') {
                n -= 1;
            }
            if n < k {
                return n;
            }
        }
        t
    }

    fn check(&mut self, e: &IdedExpr) -> Result<Ty, Fail> {
        match &e.expr {
            Expr::Literal(l) => Ok(literal_type(l)),
            Expr::Ident(name) => self.ident(e, name),
            Expr::Select(s) => {
                let operand = self.check(&s.operand)?;
                if s.test {
                    return match operand {
                        Ty::Dyn | Ty::Map | Ty::Auth => Ok(Ty::Bool),
                        other => fail(
                            self.start(e),
                            format!(
                                "has() needs a field of a map, '{}' is {}",
                                self.text(&s.operand),
                                other.article()
                            ),
                        ),
                    };
                }
                match operand {
                    Ty::Dyn | Ty::Map => Ok(Ty::Dyn),
                    Ty::Auth => match s.field.as_str() {
                        "uid" | "email" => Ok(Ty::String),
                        "email_verified" => Ok(Ty::Bool),
                        "claims" => Ok(Ty::Map),
                        other => fail(
                            self.tok(e) + 1,
                            format!(
                                "auth has no field '{other}' (it has uid, email, email_verified, claims)"
                            ),
                        ),
                    },
                    other => fail(
                        self.tok(e),
                        format!(
                            "cannot select field '{}' of {} ('{}')",
                            s.field,
                            other.article(),
                            self.text(&s.operand)
                        ),
                    ),
                }
            }
            Expr::Call(c) => self.call(e, c),
            Expr::List(l) => {
                for el in &l.elements {
                    self.check(el)?;
                }
                Ok(Ty::List)
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            let k = self.check(&me.key)?;
                            if !matches!(k, Ty::Dyn | Ty::String | Ty::Int | Ty::UInt | Ty::Bool) {
                                return fail(
                                    self.start(&me.key),
                                    format!(
                                        "map keys must be strings, ints, uints or bools, not {}",
                                        k.article()
                                    ),
                                );
                            }
                            self.check(&me.value)?;
                        }
                        EntryExpr::StructField(_) => {
                            return fail(self.tok(e), "object construction is not supported");
                        }
                    }
                }
                Ok(Ty::Map)
            }
            Expr::Struct(s) => fail(
                self.start(e),
                format!(
                    "object construction ('{}{{...}}') is not supported",
                    s.type_name
                ),
            ),
            Expr::Comprehension(c) => self.comprehension(e, c),
            Expr::Unspecified => fail(self.tok(e), "syntax error"),
        }
    }

    fn ident(&mut self, e: &IdedExpr, name: &str) -> Result<Ty, Fail> {
        if let Some((_, ty)) = self.scope.iter().rev().find(|(n, _)| n == name) {
            return Ok(*ty);
        }
        let allowed = allowed_variables(self.kind);
        if let Some(v) = allowed.iter().find(|v| **v == name) {
            self.uses.insert(v);
            return Ok(match name {
                "auth" => Ty::Auth,
                "id" => Ty::String,
                "now" | "version" | "created_at" | "updated_at" => Ty::Int,
                _ => Ty::Dyn,
            });
        }
        let at = self.tok(e);
        if VARIABLES.contains(&name) {
            let hint = match (name, self.kind) {
                ("doc", ExprKind::Rule(Operation::Create)) => {
                    " (there is no stored document yet: use 'new' for the data being written)"
                }
                ("new", _) => " ('new' is the data being written, only in create and update rules)",
                ("version" | "created_at" | "updated_at", _) => {
                    " (document metadata is only available to read rules and filters)"
                }
                _ => "",
            };
            return fail(
                at,
                format!(
                    "'{name}' is not available in {}{hint}",
                    kind_name(self.kind)
                ),
            );
        }
        fail(
            at,
            format!(
                "unknown variable '{name}' ({} can use: {})",
                kind_name(self.kind),
                allowed.join(", ")
            ),
        )
    }

    fn comprehension(&mut self, e: &IdedExpr, c: &ComprehensionExpr) -> Result<Ty, Fail> {
        let range = self.check(&c.iter_range)?;
        if !matches!(range, Ty::Dyn | Ty::List | Ty::Map | Ty::Auth) {
            return fail(
                self.start(&c.iter_range),
                format!(
                    "cannot iterate over {} ('{}')",
                    range.article(),
                    self.text(&c.iter_range)
                ),
            );
        }
        for v in std::iter::once(&c.iter_var).chain(c.iter_var2.iter()) {
            if VARIABLES.contains(&v.as_str()) {
                return fail(
                    self.tok(e),
                    format!(
                        "the iteration variable '{v}' would hide the variable '{v}': pick another name"
                    ),
                );
            }
        }
        self.comprehensions += 1;
        if self.comprehensions > MAX_COMPREHENSION_NESTING {
            return fail(
                self.tok(e),
                format!(
                    "comprehensions (all, exists, exists_one, map, filter) nest at most {MAX_COMPREHENSION_NESTING} deep"
                ),
            );
        }
        let accu = self.check(&c.accu_init)?;
        let depth = self.scope.len();
        self.scope.push((c.iter_var.clone(), Ty::Dyn));
        if let Some(v2) = &c.iter_var2 {
            self.scope.push((v2.clone(), Ty::Dyn));
        }
        self.scope.push((c.accu_var.clone(), accu));
        let result = (|| {
            self.check(&c.loop_cond)?;
            self.check(&c.loop_step)?;
            self.check(&c.result)
        })();
        self.scope.truncate(depth);
        self.comprehensions -= 1;
        result
    }
}
