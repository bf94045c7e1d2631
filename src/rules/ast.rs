//! Walks over the parsed CEL tree that need no source text: the children of a node,
//! which nodes mention the stored document, which keys of `doc` and `new` an expression
//! can observe, and small shape tests (an identifier, a string literal).

use std::collections::{BTreeSet, HashSet};

use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr, IdedExpr, LiteralValue};
use cel::common::types::CelString;

use super::values::KeyUse;

/// The variables that depend on the stored document.
pub(super) const DOC_VARIABLES: [&str; 5] = ["doc", "id", "version", "created_at", "updated_at"];

/// Calls `f` with the id of every node of `e`.
pub(super) fn visit_ids(e: &IdedExpr, f: &mut impl FnMut(u64)) {
    f(e.id);
    for c in children(e) {
        visit_ids(c, f);
    }
}

/// The direct sub-expressions of `e`.
pub(super) fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    let mut out = Vec::new();
    match &e.expr {
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                out.push(t.as_ref());
            }
            out.extend(c.args.iter());
        }
        Expr::Select(s) => out.push(s.operand.as_ref()),
        Expr::List(l) => out.extend(l.elements.iter()),
        Expr::Map(m) => push_entries(&mut out, &m.entries),
        Expr::Struct(s) => push_entries(&mut out, &s.entries),
        Expr::Comprehension(c) => {
            out.push(&c.iter_range);
            out.push(&c.accu_init);
            out.push(&c.loop_cond);
            out.push(&c.loop_step);
            out.push(&c.result);
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
    out
}

/// The keys and values of a map literal, the field values of an object literal.
fn push_entries<'e>(out: &mut Vec<&'e IdedExpr>, entries: &'e [IdedEntryExpr]) {
    for entry in entries {
        match &entry.expr {
            EntryExpr::MapEntry(me) => {
                out.push(&me.key);
                out.push(&me.value);
            }
            EntryExpr::StructField(sf) => out.push(&sf.value),
        }
    }
}

pub(super) fn mark_doc_nodes(e: &IdedExpr, out: &mut HashSet<u64>) -> bool {
    let mut touches =
        matches!(&e.expr, Expr::Ident(name) if DOC_VARIABLES.contains(&name.as_str()));
    for c in children(e) {
        touches |= mark_doc_nodes(c, out);
    }
    if touches {
        out.insert(e.id);
    }
    touches
}

pub(super) fn is_ident(e: &IdedExpr, name: &str) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == name)
}

pub(super) fn string_literal(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(CelString::inner(s)),
        _ => None,
    }
}

/// The top-level keys of `var` the expression can observe.
pub(super) fn key_use(root: &IdedExpr, var: &str) -> KeyUse {
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
        for c in children(e) {
            walk(c, var, acc);
        }
    }
    let mut acc = Some(BTreeSet::new());
    walk(root, var, &mut acc);
    acc
}

pub(super) fn contains_comprehension(e: &IdedExpr) -> bool {
    matches!(e.expr, Expr::Comprehension(_)) || children(e).into_iter().any(contains_comprehension)
}
