//! A cost budget for evaluating CEL. The `cel` interpreter has none: a 2 KB filter such
//! as `size(L.map(a, L.map(b, L))) > 0` (with `L` a 320-element list) builds 33 million
//! values, seconds of CPU and a gigabyte of memory, and a hostile client may send it.
//!
//! Compiling rewrites the AST so that the places where work can multiply pass their
//! values through `__cost(value)` (a function only the rewrite can write: the checker
//! refuses names it does not know), which charges the value's weight against a budget
//! kept per thread for one evaluation, and fails once it is spent:
//! - everywhere: the result of `+` (the only operator that grows strings and lists), a
//!   comprehension's range (read once per run of the comprehension), and `matches`
//!   (compiles its pattern on every call);
//! - inside a comprehension's loop (its condition, step and result, evaluated once per
//!   element): every variable or field read, every list or map literal (built anew each
//!   time), and each iteration once.
//!
//! Every other operation costs at most the weight of its operands, which were charged,
//! so the work of an evaluation is bounded by a constant factor of its budget.
//!
//! A failed charge is an evaluation error, which `&&`/`||` could absorb
//! (`true || error`); [`metered`] therefore reports whether the budget ran out, and the
//! callers treat that as the outcome, whatever value came back.

use std::cell::Cell;

use cel::ExecutionError;
use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{CelBytes, CelInt, CelList, CelMap, CelString};
use cel::common::value::{CowVal, Val};

/// The name of the charging function.
pub(super) const COST_FN: &str = "__cost";

/// Units for one evaluation of a filter's constant part (once per list request), a rule
/// or a hook condition. A unit is about one value visited; a scalar weighs 1, a string
/// 1 per started 64 bytes, a list or map 1 plus its elements. A unit costs ~0.2 µs in a
/// debug build (`cargo test --lib budget_time -- --nocapture`), so spending the budget
/// takes tens of milliseconds at most.
pub const EVAL_BUDGET: u64 = 300_000;

/// Units for one realtime event of one subscription (a subscription whose filter spends
/// it is ended): per-event work multiplies by the number of subscribers.
pub const EVENT_BUDGET: u64 = 100_000;

/// Extra units charged for each `matches` call (the interpreter compiles the pattern on
/// every call).
const MATCHES_UNITS: i64 = 1_000;

struct Meter {
    left: Cell<u64>,
    spent_out: Cell<bool>,
}

thread_local! {
    static METER: Meter = const {
        Meter {
            left: Cell::new(u64::MAX),
            spent_out: Cell::new(false),
        }
    };
}

/// Runs `f` (one evaluation) under a budget of `units` on this thread; also returns
/// whether the budget ran out. Nests: an outer evaluation's budget is restored after.
pub(super) fn metered<T>(units: u64, f: impl FnOnce() -> T) -> (T, bool) {
    let saved = METER.with(|m| {
        let saved = (m.left.get(), m.spent_out.get());
        m.left.set(units);
        m.spent_out.set(false);
        saved
    });
    let out = f();
    let spent_out = METER.with(|m| {
        let spent = m.spent_out.get();
        m.left.set(saved.0);
        m.spent_out.set(saved.1);
        spent
    });
    (out, spent_out)
}

/// Charges `extra` units plus the weight of `v`; false once the budget is spent (and
/// from then on for the rest of the evaluation).
fn charge(v: &dyn Val, extra: u64) -> bool {
    METER.with(|m| {
        if m.spent_out.get() {
            return false;
        }
        let mut left = m.left.get();
        let ok = take(&mut left, extra) && weigh(v, &mut left);
        m.left.set(left);
        if !ok {
            m.spent_out.set(true);
        }
        ok
    })
}

fn take(left: &mut u64, units: u64) -> bool {
    match left.checked_sub(units) {
        Some(l) => {
            *left = l;
            true
        }
        None => {
            *left = 0;
            false
        }
    }
}

/// Weighs `v` against `left`, stopping as soon as it is spent (a huge value costs no
/// more to refuse than the budget).
fn weigh(v: &dyn Val, left: &mut u64) -> bool {
    let mut stack: Vec<&dyn Val> = Vec::new();
    let mut next = Some(v);
    while let Some(x) = next.take().or_else(|| stack.pop()) {
        let units = if let Some(s) = x.downcast_ref::<CelString>() {
            1 + s.inner().len() as u64 / 64
        } else if let Some(b) = x.downcast_ref::<CelBytes>() {
            1 + b.inner().len() as u64 / 64
        } else if let Some(l) = x.downcast_ref::<CelList>() {
            stack.extend(l.inner().iter().map(|b| b.as_ref() as &dyn Val));
            1
        } else if let Some(m) = x.downcast_ref::<CelMap>() {
            for (k, v) in m.inner() {
                stack.push(k.inner());
                stack.push(v.as_ref());
            }
            1
        } else {
            1
        };
        if !take(left, units) {
            return false;
        }
    }
    true
}

/// `__cost(value)` and `__cost(value, extra_units)`: charges, then returns the value.
pub(super) fn cost_fn<'b, 'v>(
    mut args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let extra = if args.len() == 2 {
        let units = args
            .pop()
            .and_then(|u| u.downcast_ref::<CelInt>().map(|i| *i.inner()))
            .unwrap_or(0);
        units.max(0) as u64
    } else {
        0
    };
    let Some(v) = args.pop() else {
        return Err(ExecutionError::invalid_argument_count(1, 0));
    };
    if charge(v.as_ref(), extra) {
        Ok(v)
    } else {
        Err(ExecutionError::function_error(
            COST_FN,
            "the expression's evaluation budget is spent",
        ))
    }
}

/// Whether `e` is a call of the charging function.
pub(super) fn is_cost(e: &IdedExpr) -> bool {
    matches!(&e.expr, Expr::Call(c) if c.func_name == COST_FN && c.target.is_none())
}

/// `e`, or what it charges for when it is a call of the charging function.
pub(super) fn uncharged(e: &IdedExpr) -> &IdedExpr {
    match &e.expr {
        Expr::Call(c) if c.func_name == COST_FN && c.target.is_none() && !c.args.is_empty() => {
            uncharged(&c.args[0])
        }
        _ => e,
    }
}

/// Rewrites a checked AST in place (see the module doc). New nodes take ids above every
/// id in the tree; they have no source offsets, so spans and texts are the wrapped
/// node's.
pub(super) fn instrument(root: &mut IdedExpr) {
    let mut max_id = 0;
    super::ast::visit_ids(root, &mut |id| max_id = max_id.max(id));
    let mut r = Rewriter {
        next_id: max_id + 1,
        accumulators: Vec::new(),
    };
    r.walk(root, false);
}

struct Rewriter {
    next_id: u64,
    /// Accumulator variables of the comprehensions around the node being rewritten (the
    /// interpreter recognises `@result + [x]` and `@result && x` steps by their shape,
    /// so these are never wrapped).
    accumulators: Vec<String>,
}

impl Rewriter {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Replaces `e` with `__cost(e)` (or `__cost(e, extra)`).
    fn wrap(&mut self, e: &mut IdedExpr, extra: Option<i64>) {
        if is_cost(e) {
            // Already charged: add the extra units to the same call.
            if let (Expr::Call(c), Some(units)) = (&mut e.expr, extra)
                && c.args.len() == 1
            {
                let id = self.id();
                c.args.push(IdedExpr {
                    id,
                    expr: Expr::Literal(LiteralValue::Int(units.into())),
                });
            }
            return;
        }
        let inner = std::mem::take(e);
        let mut args = vec![inner];
        if let Some(units) = extra {
            args.push(IdedExpr {
                id: self.id(),
                expr: Expr::Literal(LiteralValue::Int(units.into())),
            });
        }
        *e = IdedExpr {
            id: self.id(),
            expr: Expr::Call(CallExpr {
                func_name: COST_FN.to_string(),
                target: None,
                args,
            }),
        };
    }

    fn is_accumulator(&self, e: &IdedExpr) -> bool {
        matches!(&e.expr, Expr::Ident(n) if self.accumulators.iter().any(|a| a == n))
    }

    /// Walks `e`; `in_loop`: evaluated once per element of an enclosing comprehension.
    fn walk(&mut self, e: &mut IdedExpr, in_loop: bool) {
        if in_loop && is_access(e) && !self.is_accumulator(e) {
            // A variable or field read: walk only the computed keys along it, then charge
            // the value read.
            self.walk_access_keys(e);
            self.wrap(e, None);
            return;
        }
        match &mut e.expr {
            Expr::Comprehension(c) => {
                self.comprehension(c, in_loop);
            }
            Expr::Call(c) => {
                if let Some(t) = c.target.as_deref_mut() {
                    self.walk(t, in_loop);
                }
                let appends = c.func_name == "_+_"
                    && c.target.is_none()
                    && c.args.len() == 2
                    && self.is_accumulator(&c.args[0]);
                for a in c.args.iter_mut() {
                    match &mut a.expr {
                        // `@result + [x]` must keep its list literal for the interpreter's
                        // in-place append: walk (and charge) its elements only.
                        Expr::List(l) if appends => {
                            for x in l.elements.iter_mut() {
                                self.walk(x, in_loop);
                            }
                        }
                        _ => self.walk(a, in_loop),
                    }
                }
                let grows =
                    c.func_name == "_+_" && c.target.is_none() && c.args.len() == 2 && !appends;
                let regex = c.func_name == "matches";
                if grows {
                    self.wrap(e, None);
                } else if regex {
                    self.wrap(e, Some(MATCHES_UNITS));
                }
            }
            Expr::Select(s) => self.walk(&mut s.operand, in_loop),
            // A literal list or map is built anew on every step of a loop around it.
            Expr::List(l) => {
                for x in l.elements.iter_mut() {
                    self.walk(x, in_loop);
                }
                if in_loop {
                    self.wrap(e, None);
                }
            }
            Expr::Map(m) => {
                for entry in m.entries.iter_mut() {
                    if let EntryExpr::MapEntry(me) = &mut entry.expr {
                        self.walk(&mut me.key, in_loop);
                        self.walk(&mut me.value, in_loop);
                    }
                }
                if in_loop {
                    self.wrap(e, None);
                }
            }
            Expr::Struct(s) => {
                for entry in s.entries.iter_mut() {
                    match &mut entry.expr {
                        EntryExpr::MapEntry(me) => {
                            self.walk(&mut me.key, in_loop);
                            self.walk(&mut me.value, in_loop);
                        }
                        EntryExpr::StructField(f) => self.walk(&mut f.value, in_loop),
                    }
                }
            }
            _ => {}
        }
    }

    /// The computed keys of an access chain (`doc[k]`), which may themselves cost.
    fn walk_access_keys(&mut self, e: &mut IdedExpr) {
        match &mut e.expr {
            Expr::Select(s) => self.walk_access_keys(&mut s.operand),
            Expr::Call(c) if c.args.len() == 2 => {
                let (obj, key) = c.args.split_at_mut(1);
                self.walk_access_keys(&mut obj[0]);
                self.walk(&mut key[0], true);
            }
            _ => {}
        }
    }

    fn comprehension(&mut self, c: &mut ComprehensionExpr, in_loop: bool) {
        self.walk(&mut c.iter_range, in_loop);
        self.wrap(&mut c.iter_range, None);
        self.walk(&mut c.accu_init, in_loop);
        // Decided before the walk, on the shape the interpreter will see.
        let append = is_append(c);
        self.accumulators.push(c.accu_var.clone());
        self.walk(&mut c.loop_cond, true);
        self.walk(&mut c.loop_step, true);
        self.walk(&mut c.result, true);
        self.accumulators.pop();
        if append {
            // `@result + [x]` (maybe guarded): the condition must stay a literal for the
            // interpreter's in-place append; charge each appended element instead.
            if let Some(items) = append_items_mut(c) {
                for x in items.iter_mut() {
                    self.wrap(x, Some(1));
                }
            }
        } else {
            self.wrap(&mut c.loop_cond, Some(1));
        }
    }
}

/// A variable, or a field or index read from one: `x`, `doc.a.b`, `doc['k']`, `x[i]`.
fn is_access(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Ident(_) => true,
        Expr::Select(s) => !s.test && is_access(&s.operand),
        Expr::Call(c) => {
            c.func_name == "_[_]"
                && c.target.is_none()
                && c.args.len() == 2
                && is_access(&c.args[0])
        }
        _ => false,
    }
}

/// The shape the interpreter runs as an in-place append (cel's `AppendStep`): a literal
/// condition, the accumulator as result, and a step `@result + [items]` or
/// `guard ? @result + [items] : @result`.
fn is_append(c: &ComprehensionExpr) -> bool {
    let accu = c.accu_var.as_str();
    let is_accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(n) if n == accu);
    let appends = |e: &IdedExpr| match &e.expr {
        Expr::Call(call) if call.func_name == "_+_" && call.target.is_none() => {
            matches!(call.args.as_slice(), [lhs, rhs] if is_accu(lhs) && matches!(rhs.expr, Expr::List(_)))
        }
        _ => false,
    };
    if !is_accu(&c.result) || !matches!(c.loop_cond.expr, Expr::Literal(_)) {
        return false;
    }
    match &c.loop_step.expr {
        Expr::Call(call) if call.func_name == "_?_:_" && call.target.is_none() => {
            matches!(call.args.as_slice(), [_, step, otherwise] if is_accu(otherwise) && appends(step))
        }
        _ => appends(&c.loop_step),
    }
}

/// The appended list's elements of an `is_append` comprehension.
fn append_items_mut(c: &mut ComprehensionExpr) -> Option<&mut Vec<IdedExpr>> {
    let guarded = matches!(&c.loop_step.expr,
        Expr::Call(call) if call.func_name == "_?_:_" && call.args.len() == 3);
    let step = if guarded {
        match &mut c.loop_step.expr {
            Expr::Call(call) => &mut call.args[1],
            _ => return None,
        }
    } else {
        &mut c.loop_step
    };
    match &mut step.expr {
        Expr::Call(call) if call.func_name == "_+_" && call.args.len() == 2 => {
            match &mut call.args[1].expr {
                Expr::List(l) => Some(&mut l.elements),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "cost_tests.rs"]
mod tests;
