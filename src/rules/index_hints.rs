//! What a read rule or filter asks of indexes: the document paths it compares for
//! equality, and whether an index starting with a given path can narrow a list it
//! filters. Used for the warnings of a rule set, not for SQL.

use std::collections::HashSet;

use cel::common::ast::{Expr, IdedExpr};

use super::ast::{self, string_literal};

/// Document paths compared for equality (or `in`) with a value in the top-level
/// conjunction of `root`.
pub(super) fn equality_paths(root: &IdedExpr, doc_nodes: &HashSet<u64>) -> Vec<Vec<String>> {
    fn conjuncts<'e>(e: &'e IdedExpr, out: &mut Vec<&'e IdedExpr>) {
        match &e.expr {
            Expr::Call(c) if c.func_name == "_&&_" && c.args.len() == 2 && c.target.is_none() => {
                conjuncts(&c.args[0], out);
                conjuncts(&c.args[1], out);
            }
            _ => out.push(e),
        }
    }
    let mut list = Vec::new();
    conjuncts(root, &mut list);
    let mut out: Vec<Vec<String>> = Vec::new();
    for e in list {
        // a bare boolean field: `doc.published`
        if let Some(p) = doc_path(e) {
            add_path(&mut out, p);
            continue;
        }
        if let Some(p) = compared_path(e, doc_nodes) {
            add_path(&mut out, p);
        }
    }
    out
}

/// The document path `e` compares for equality (or `in`) with a value, if any.
fn compared_path(e: &IdedExpr, doc_nodes: &HashSet<u64>) -> Option<Vec<String>> {
    let Expr::Call(c) = &e.expr else { return None };
    if c.args.len() != 2 || c.target.is_some() {
        return None;
    }
    let (l, r) = (&c.args[0], &c.args[1]);
    match c.func_name.as_str() {
        "_==_" if !doc_nodes.contains(&r.id) => doc_path(l),
        "_==_" if !doc_nodes.contains(&l.id) => doc_path(r),
        "@in" if !doc_nodes.contains(&r.id) => doc_path(l),
        _ => None,
    }
}

/// Adds a path once (the whole document, `doc` itself, is not a path).
fn add_path(out: &mut Vec<Vec<String>>, p: Vec<String>) {
    if !p.is_empty() && !out.contains(&p) {
        out.push(p);
    }
}

/// The document path `e` spells (`doc.a.b`, `doc['a']`), if it is one.
fn doc_path(e: &IdedExpr) -> Option<Vec<String>> {
    match &e.expr {
        Expr::Ident(n) if n == "doc" => Some(Vec::new()),
        Expr::Select(s) if !s.test => {
            let mut p = doc_path(&s.operand)?;
            p.push(s.field.clone());
            Some(p)
        }
        Expr::Call(c) if c.func_name == "_[_]" && c.args.len() == 2 && c.target.is_none() => {
            let mut p = doc_path(&c.args[0])?;
            p.push(string_literal(&c.args[1])?.to_string());
            Some(p)
        }
        _ => None,
    }
}

/// Every document path compared for equality (or `in`) with a value, anywhere.
pub(super) fn all_equality_paths(root: &IdedExpr, doc_nodes: &HashSet<u64>) -> Vec<Vec<String>> {
    fn walk(e: &IdedExpr, doc_nodes: &HashSet<u64>, out: &mut Vec<Vec<String>>) {
        if let Some(p) = compared_path(e, doc_nodes) {
            add_path(out, p);
        }
        if let Some(p) = doc_path(e) {
            add_path(out, p);
            return;
        }
        for c in ast::children(e) {
            walk(c, doc_nodes, out);
        }
    }
    let mut out = Vec::new();
    walk(root, doc_nodes, &mut out);
    out
}

/// Whether an index starting with one of `firsts` (or the primary key) can narrow a list
/// filtered by `e`: some conjunct is an equality on an indexed path, and for a
/// disjunction every disjunct that depends on the document is.
pub(super) fn served_by_index(
    e: &IdedExpr,
    doc_nodes: &HashSet<u64>,
    firsts: &[Vec<String>],
) -> bool {
    if !doc_nodes.contains(&e.id) {
        return false;
    }
    let is_id = |x: &IdedExpr| ast::is_ident(x, "id");
    let indexed = |x: &IdedExpr| doc_path(x).is_some_and(|p| firsts.contains(&p));
    if indexed(e) {
        return true; // a bare boolean field
    }
    let Expr::Call(c) = &e.expr else { return false };
    if c.target.is_some() || c.args.len() != 2 {
        return false;
    }
    let (l, r) = (&c.args[0], &c.args[1]);
    match c.func_name.as_str() {
        "_&&_" => served_by_index(l, doc_nodes, firsts) || served_by_index(r, doc_nodes, firsts),
        "_||_" => [l, r]
            .iter()
            .all(|x| !doc_nodes.contains(&x.id) || served_by_index(x, doc_nodes, firsts)),
        "_==_" => {
            ((indexed(l) || is_id(l)) && !doc_nodes.contains(&r.id))
                || ((indexed(r) || is_id(r)) && !doc_nodes.contains(&l.id))
        }
        "@in" => (indexed(l) || is_id(l)) && !doc_nodes.contains(&r.id),
        _ => false,
    }
}
