//! Compile-time checks of a CEL expression: size limits, syntax (the `cel` parser), the
//! variables a kind of expression may use, a whitelist of functions, and a small type
//! inference over the AST that catches clashes visible without data (`'a' < 1`,
//! `1 && true`, a rule that is not boolean).

use std::collections::{BTreeSet, HashSet};

use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::CelString;
use cel::parser::{ParseError, Parser};

use super::Operation;
use super::expression::ExprKind;
use super::lex::{self, Offsets};
use super::values::{self, KeyUse, VARIABLES};

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

/// The variables that depend on the stored document.
pub(super) const DOC_VARIABLES: [&str; 5] = ["doc", "id", "version", "created_at", "updated_at"];

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
    lex::visit_ids(&root, &mut |id| {
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

fn contains_comprehension(e: &IdedExpr) -> bool {
    matches!(e.expr, Expr::Comprehension(_))
        || lex::children(e).into_iter().any(contains_comprehension)
}

fn parse_failure(src: &str, e: &ParseError) -> Fail {
    let (line, col) = e.pos;
    let at = if line <= 0 {
        0
    } else {
        // the parser counts lines from 1 and columns in characters from 1
        super::lex::byte_offset(src, line as u32, col.max(1) as u32)
    };
    Fail {
        at,
        message: syntax_message(&e.msg),
    }
}

/// Rewrites the parser's messages for people.
fn syntax_message(msg: &str) -> String {
    let m = msg.strip_prefix("Syntax error: ").unwrap_or(msg);
    if m.contains("Recursion limit") {
        return "syntax error: expression is nested too deeply".to_string();
    }
    if m.contains("error recovery attempt limit") {
        return "syntax error: too many errors".to_string();
    }
    let quoted = |rest: &str| -> Option<String> {
        let rest = rest.strip_prefix('\'')?;
        // the token text ends at the last "' " before "expecting" (or the end)
        let end = rest
            .find("' expecting")
            .or_else(|| rest.rfind('\''))
            .unwrap_or(rest.len());
        Some(rest[..end].to_string())
    };
    let describe = |tok: &str| -> String {
        if tok == "<EOF>" {
            "end of expression".to_string()
        } else {
            format!("'{tok}'")
        }
    };
    if let Some(rest) = m.strip_prefix("mismatched input ")
        && let Some(tok) = quoted(rest)
    {
        return format!("syntax error: unexpected {}", describe(&tok));
    }
    if let Some(rest) = m.strip_prefix("extraneous input ")
        && let Some(tok) = quoted(rest)
    {
        return format!("syntax error: unexpected {}", describe(&tok));
    }
    if let Some(rest) = m.strip_prefix("no viable alternative at input ")
        && let Some(tok) = quoted(rest)
    {
        return format!("syntax error: cannot make sense of '{tok}'");
    }
    if let Some(rest) = m.strip_prefix("token recognition error at: ")
        && let Some(tok) = quoted(rest)
    {
        return format!("syntax error: invalid character '{tok}'");
    }
    if let Some(rest) = m.strip_prefix("missing ") {
        // missing ')' at '<EOF>'
        if let Some((what, at)) = rest.split_once(" at ") {
            let at = at.trim_matches('\'');
            return format!("syntax error: missing {what} before {}", describe(at));
        }
    }
    format!("syntax error: {m}")
}

/// Depth of the tree; counts nodes into `nodes`. Stops descending past the limits.
fn measure(e: &IdedExpr, depth: usize, nodes: &mut usize) -> usize {
    *nodes += 1;
    if depth > MAX_DEPTH + 1 || *nodes > MAX_NODES + 1 {
        return depth;
    }
    lex::children(e)
        .into_iter()
        .map(|c| measure(c, depth + 1, nodes))
        .max()
        .unwrap_or(depth)
}

fn mark_doc_nodes(e: &IdedExpr, out: &mut HashSet<u64>) -> bool {
    let mut touches =
        matches!(&e.expr, Expr::Ident(name) if DOC_VARIABLES.contains(&name.as_str()));
    for c in lex::children(e) {
        touches |= mark_doc_nodes(c, out);
    }
    if touches {
        out.insert(e.id);
    }
    touches
}

fn is_ident(e: &IdedExpr, name: &str) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == name)
}

pub(super) fn string_literal(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(CelString::inner(s)),
        _ => None,
    }
}

/// The top-level keys of `var` the expression can observe.
fn key_use(root: &IdedExpr, var: &str) -> KeyUse {
    fn walk(e: &IdedExpr, var: &str, acc: &mut KeyUse) {
        match &e.expr {
            Expr::Select(s) if is_ident(&s.operand, var) => {
                if let Some(set) = acc {
                    set.insert(s.field.clone());
                }
                return;
            }
            Expr::Call(c)
                if c.func_name == "_[_]" && c.args.len() == 2 && is_ident(&c.args[0], var) =>
            {
                match string_literal(&c.args[1]) {
                    Some(k) => {
                        if let Some(set) = acc {
                            set.insert(k.to_string());
                        }
                    }
                    None => *acc = None,
                }
                walk(&c.args[1], var, acc);
                return;
            }
            Expr::Ident(n) if n == var => {
                *acc = None;
                return;
            }
            _ => {}
        }
        for c in lex::children(e) {
            walk(c, var, acc);
        }
    }
    let mut acc = Some(BTreeSet::new());
    walk(root, var, &mut acc);
    acc
}

/// Statically known types (`Dyn` when unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    Dyn,
    Null,
    Bool,
    Int,
    UInt,
    Double,
    String,
    Bytes,
    List,
    Map,
    /// `auth`: null, or a map with known fields.
    Auth,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Dyn => "dyn",
            Ty::Null => "null",
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::UInt => "uint",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::Bytes => "bytes",
            Ty::List => "list",
            Ty::Map => "map",
            Ty::Auth => "auth",
        }
    }

    fn article(self) -> String {
        match self {
            Ty::Int | Ty::UInt => format!("an {}", self.name()),
            Ty::Null => "null".to_string(),
            _ => format!("a {}", self.name()),
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::UInt | Ty::Double)
    }
}

fn literal_type(l: &LiteralValue) -> Ty {
    match l {
        LiteralValue::Boolean(_) => Ty::Bool,
        LiteralValue::Bytes(_) => Ty::Bytes,
        LiteralValue::Double(_) => Ty::Double,
        LiteralValue::Int(_) => Ty::Int,
        LiteralValue::Null => Ty::Null,
        LiteralValue::String(_) => Ty::String,
        LiteralValue::UInt(_) => Ty::UInt,
    }
}

fn eq_compatible(a: Ty, b: Ty) -> bool {
    a == b
        || a == Ty::Dyn
        || b == Ty::Dyn
        || (a.numeric() && b.numeric())
        || matches!(
            (a, b),
            (Ty::Auth, Ty::Null | Ty::Map) | (Ty::Null | Ty::Map, Ty::Auth)
        )
}

fn orderable(a: Ty) -> bool {
    !matches!(a, Ty::Null | Ty::List | Ty::Map | Ty::Auth)
}

/// Functions callable as `f(x)`: (name, arity).
const GLOBAL_FUNCTIONS: [(&str, usize); 8] = [
    ("size", 1),
    ("matches", 2),
    ("int", 1),
    ("uint", 1),
    ("double", 1),
    ("string", 1),
    ("bool", 1),
    ("dyn", 1),
];

/// Functions callable as `x.f(...)`: (name, arity without the target).
const MEMBER_FUNCTIONS: [(&str, usize); 5] = [
    ("size", 0),
    ("contains", 1),
    ("startsWith", 1),
    ("endsWith", 1),
    ("matches", 1),
];

fn function_list() -> String {
    "size, contains, startsWith, endsWith, matches, int, uint, double, string, bool, dyn, \
     and the macros has, all, exists, exists_one, map, filter"
        .to_string()
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

    fn expect_bool(&mut self, arg: &IdedExpr, op: &str) -> Result<(), Fail> {
        let t = self.check(arg)?;
        if matches!(t, Ty::Bool | Ty::Dyn) {
            Ok(())
        } else {
            fail(
                self.start(arg),
                format!(
                    "'{op}' needs booleans, but '{}' is {}",
                    self.text(arg),
                    t.article()
                ),
            )
        }
    }

    fn call(&mut self, e: &IdedExpr, c: &CallExpr) -> Result<Ty, Fail> {
        let name = c.func_name.as_str();
        let op_text = |n: &str| -> &'static str {
            match n {
                "_&&_" => "&&",
                "_||_" => "||",
                "!_" => "!",
                "-_" => "-",
                "_==_" => "==",
                "_!=_" => "!=",
                "_<_" => "<",
                "_<=_" => "<=",
                "_>_" => ">",
                "_>=_" => ">=",
                "_+_" => "+",
                "_-_" => "-",
                "_*_" => "*",
                "_/_" => "/",
                "_%_" => "%",
                _ => "?",
            }
        };
        if c.target.is_none() {
            match (name, c.args.len()) {
                ("_&&_" | "_||_", 2) => {
                    self.expect_bool(&c.args[0], op_text(name))?;
                    self.expect_bool(&c.args[1], op_text(name))?;
                    return Ok(Ty::Bool);
                }
                ("!_", 1) => {
                    self.expect_bool(&c.args[0], "!")?;
                    return Ok(Ty::Bool);
                }
                ("@not_strictly_false", 1) => {
                    self.check(&c.args[0])?;
                    return Ok(Ty::Bool);
                }
                ("_?_:_", 3) => {
                    let cond = self.check(&c.args[0])?;
                    if !matches!(cond, Ty::Bool | Ty::Dyn) {
                        return fail(
                            self.start(&c.args[0]),
                            format!(
                                "the condition of '? :' must be a boolean, '{}' is {}",
                                self.text(&c.args[0]),
                                cond.article()
                            ),
                        );
                    }
                    let a = self.check(&c.args[1])?;
                    let b = self.check(&c.args[2])?;
                    return Ok(if a == b { a } else { Ty::Dyn });
                }
                ("_==_" | "_!=_", 2) => {
                    let a = self.check(&c.args[0])?;
                    let b = self.check(&c.args[1])?;
                    if !eq_compatible(a, b) {
                        return fail(
                            self.tok(e),
                            format!(
                                "comparing {} with {} is always {}",
                                a.article(),
                                b.article(),
                                if name == "_==_" { "false" } else { "true" }
                            ),
                        );
                    }
                    return Ok(Ty::Bool);
                }
                ("_<_" | "_<=_" | "_>_" | "_>=_", 2) => {
                    let a = self.check(&c.args[0])?;
                    let b = self.check(&c.args[1])?;
                    for (t, arg) in [(a, &c.args[0]), (b, &c.args[1])] {
                        if !orderable(t) {
                            return fail(
                                self.start(arg),
                                format!(
                                    "'{}' cannot be ordered: '{}' is {}",
                                    op_text(name),
                                    self.text(arg),
                                    t.article()
                                ),
                            );
                        }
                    }
                    let ok = a == Ty::Dyn || b == Ty::Dyn || a == b || (a.numeric() && b.numeric());
                    if !ok {
                        return fail(
                            self.tok(e),
                            format!(
                                "cannot compare {} with {} using '{}'",
                                a.article(),
                                b.article(),
                                op_text(name)
                            ),
                        );
                    }
                    return Ok(Ty::Bool);
                }
                ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", 2) => {
                    let a = self.check(&c.args[0])?;
                    let b = self.check(&c.args[1])?;
                    return self.arithmetic(e, op_text(name), a, b);
                }
                ("-_", 1) => {
                    let a = self.check(&c.args[0])?;
                    return match a {
                        Ty::Dyn | Ty::Int | Ty::Double => Ok(a),
                        other => fail(self.tok(e), format!("cannot negate {}", other.article())),
                    };
                }
                ("@in", 2) => {
                    self.check(&c.args[0])?;
                    let b = self.check(&c.args[1])?;
                    if !matches!(b, Ty::Dyn | Ty::List | Ty::Map | Ty::Auth) {
                        return fail(
                            self.start(&c.args[1]),
                            format!(
                                "'in' needs a list or a map on its right, '{}' is {}",
                                self.text(&c.args[1]),
                                b.article()
                            ),
                        );
                    }
                    return Ok(Ty::Bool);
                }
                ("_[_]", 2) => {
                    let a = self.check(&c.args[0])?;
                    let i = self.check(&c.args[1])?;
                    return match a {
                        Ty::List => {
                            if matches!(i, Ty::Dyn | Ty::Int | Ty::UInt) {
                                Ok(Ty::Dyn)
                            } else {
                                fail(
                                    self.start(&c.args[1]),
                                    format!("a list index must be an int, not {}", i.article()),
                                )
                            }
                        }
                        Ty::Dyn | Ty::Map | Ty::Auth => Ok(Ty::Dyn),
                        other => fail(
                            self.tok(e),
                            format!(
                                "cannot index {} ('{}')",
                                other.article(),
                                self.text(&c.args[0])
                            ),
                        ),
                    };
                }
                _ => {}
            }
        }
        if name.starts_with('_')
            || name.starts_with('@')
            || name.starts_with('!')
            || name.starts_with('-')
        {
            return fail(self.tok(e), format!("unsupported operator '{name}'"));
        }
        let member = c.target.is_some();
        let table: &[(&str, usize)] = if member {
            &MEMBER_FUNCTIONS
        } else {
            &GLOBAL_FUNCTIONS
        };
        let at = self.name_pos(e);
        let Some(&(_, arity)) = table.iter().find(|(n, _)| *n == name) else {
            let other_style = if member {
                GLOBAL_FUNCTIONS.iter().any(|(n, _)| *n == name)
            } else {
                MEMBER_FUNCTIONS.iter().any(|(n, _)| *n == name)
            };
            return if other_style {
                fail(
                    at,
                    if member {
                        format!("'{name}' is called as {name}(x), not x.{name}()")
                    } else {
                        format!("'{name}' is a method: call it as x.{name}(...)")
                    },
                )
            } else {
                fail(
                    at,
                    format!("unknown function '{name}' (available: {})", function_list()),
                )
            };
        };
        if c.args.len() != arity {
            return fail(
                at,
                format!(
                    "'{name}' takes {arity} argument{}, not {}",
                    if arity == 1 { "" } else { "s" },
                    c.args.len()
                ),
            );
        }
        let mut types = Vec::new();
        if let Some(t) = &c.target {
            types.push((self.check(t)?, t.as_ref()));
        }
        for a in &c.args {
            types.push((self.check(a)?, a));
        }
        let need =
            |this: &Self, (t, arg): (Ty, &IdedExpr), ok: &[Ty], what: &str| -> Result<(), Fail> {
                if t == Ty::Dyn || ok.contains(&t) {
                    Ok(())
                } else {
                    fail(
                        this.start(arg),
                        format!(
                            "'{name}' needs {what}, but '{}' is {}",
                            this.text(arg),
                            t.article()
                        ),
                    )
                }
            };
        let result = match name {
            "size" => {
                need(
                    self,
                    types[0],
                    &[Ty::String, Ty::Bytes, Ty::List, Ty::Map, Ty::Auth],
                    "a string, bytes, a list or a map",
                )?;
                Ty::Int
            }
            "contains" | "startsWith" | "endsWith" | "matches" => {
                need(self, types[0], &[Ty::String], "strings")?;
                need(self, types[1], &[Ty::String], "strings")?;
                if name == "matches" {
                    self.check_regex(types[1].1)?;
                }
                Ty::Bool
            }
            "int" => {
                need(
                    self,
                    types[0],
                    &[Ty::Int, Ty::UInt, Ty::Double, Ty::String],
                    "a number or a string",
                )?;
                Ty::Int
            }
            "uint" => {
                need(
                    self,
                    types[0],
                    &[Ty::Int, Ty::UInt, Ty::Double, Ty::String],
                    "a number or a string",
                )?;
                Ty::UInt
            }
            "double" => {
                need(
                    self,
                    types[0],
                    &[Ty::Int, Ty::UInt, Ty::Double, Ty::String],
                    "a number or a string",
                )?;
                Ty::Double
            }
            "string" => {
                need(
                    self,
                    types[0],
                    &[
                        Ty::Int,
                        Ty::UInt,
                        Ty::Double,
                        Ty::String,
                        Ty::Bool,
                        Ty::Bytes,
                    ],
                    "a scalar",
                )?;
                Ty::String
            }
            "bool" => {
                need(
                    self,
                    types[0],
                    &[Ty::Bool, Ty::String],
                    "a bool or a string",
                )?;
                Ty::Bool
            }
            _ => Ty::Dyn, // dyn
        };
        Ok(result)
    }

    /// A literal regular expression must compile.
    fn check_regex(&self, pattern: &IdedExpr) -> Result<(), Fail> {
        let Some(p) = string_literal(pattern) else {
            return Ok(());
        };
        let probe = IdedExpr {
            id: 1,
            expr: Expr::Call(CallExpr {
                func_name: "matches".to_string(),
                target: Some(Box::new(IdedExpr {
                    id: 2,
                    expr: Expr::Literal(LiteralValue::String(CelString::from(String::new()))),
                })),
                args: vec![IdedExpr {
                    id: 3,
                    expr: Expr::Literal(LiteralValue::String(CelString::from(p.to_string()))),
                }],
            }),
        };
        let vars = values::Vars::default();
        let ctx = values::context(&vars);
        match cel::Value::resolve(&probe, &ctx) {
            Ok(_) => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                let msg = msg
                    .rsplit("error: ")
                    .next()
                    .unwrap_or(&msg)
                    .trim()
                    .to_string();
                fail(
                    self.start(pattern),
                    format!("invalid regular expression: {msg}"),
                )
            }
        }
    }

    fn arithmetic(&self, e: &IdedExpr, op: &str, a: Ty, b: Ty) -> Result<Ty, Fail> {
        let allowed: &[Ty] = match op {
            "+" => &[
                Ty::Int,
                Ty::UInt,
                Ty::Double,
                Ty::String,
                Ty::Bytes,
                Ty::List,
            ],
            "%" => &[Ty::Int, Ty::UInt],
            _ => &[Ty::Int, Ty::UInt, Ty::Double],
        };
        for t in [a, b] {
            if t != Ty::Dyn && !allowed.contains(&t) {
                return fail(
                    self.tok(e),
                    format!("cannot apply '{op}' to {}", t.article()),
                );
            }
        }
        if a == Ty::Dyn {
            return Ok(b);
        }
        if b == Ty::Dyn || a == b {
            return Ok(a);
        }
        let hint = if a.numeric() && b.numeric() {
            " (convert one side with int(), uint() or double())"
        } else {
            ""
        };
        fail(
            self.tok(e),
            format!(
                "cannot apply '{op}' to {} and {}{hint}",
                a.article(),
                b.article()
            ),
        )
    }
}
