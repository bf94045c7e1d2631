//! CEL → [`Predicate`]: what a read rule or filter means for SQL.
//!
//! Sub-expressions that do not mention the stored document are evaluated now (with
//! `auth` and `now` bound) and become values; what remains must be comparisons of
//! document fields with values, `in`, `has()`, and `&&`, `||`, `!`, `? :` over those.
//!
//! The predicate is exact under three-valued logic with NULL for a CEL error, with one
//! deliberate exception: a bare boolean field (`doc.done`) in a position that only
//! `&&`/`||` lead to (no `!` above it) becomes `doc.done == true`, which is FALSE rather
//! than NULL for a non-boolean value. Kleene logic is regular (an unknown input that
//! yields TRUE yields TRUE whatever it is), so replacing NULL with FALSE below an even
//! number of negations, or with TRUE below an odd number, never changes whether the
//! whole predicate is TRUE — which is all a WHERE clause asks.

use std::collections::HashSet;

use cel::common::ast::{Expr, IdedExpr, LiteralValue};
use cel::objects::Key;
use cel::{Context, Value};
use serde_json::Value as Json;

use super::Untranslatable;
use super::ast::{DOC_VARIABLES, string_literal};
use super::lex::{self, Offsets};
use super::values;
use super::{CmpOp, Field, Predicate};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Polarity {
    /// Under an even number of negations, and only below `&&`/`||`.
    Positive,
    /// Under an odd number of negations, and only below `&&`/`||`/`!`.
    Negative,
    /// Anywhere else (a ternary's condition): the exact value is needed.
    Exact,
}

impl Polarity {
    fn flip(self) -> Polarity {
        match self {
            Polarity::Positive => Polarity::Negative,
            Polarity::Negative => Polarity::Positive,
            Polarity::Exact => Polarity::Exact,
        }
    }
}

pub(super) struct Translator<'a> {
    pub src: &'a str,
    pub offsets: &'a Offsets,
    pub doc_nodes: &'a HashSet<u64>,
    pub ctx: &'a Context<'a, 'a>,
}

const SUPPORTED: &str = "SQL supports comparisons of document fields with values \
(==, !=, <, <=, >, >=), 'field in [values]', 'value in field', has(doc.field), \
doc.field.startsWith(value), doc.field.contains(value), and &&, ||, !, ? : over them";

/// `doc.a.contains(s)` reads the whole string of every row it is checked on, comparing
/// at each position; the needle's length bounds the work per position.
pub const MAX_CONTAINS_CHARS: usize = 64;

fn cmp_op(name: &str) -> Option<CmpOp> {
    Some(match name {
        "_==_" => CmpOp::Eq,
        "_!=_" => CmpOp::Ne,
        "_<_" => CmpOp::Lt,
        "_<=_" => CmpOp::Le,
        "_>_" => CmpOp::Gt,
        "_>=_" => CmpOp::Ge,
        _ => return None,
    })
}

/// `field == v` is never true but errs when the field is missing: FALSE or NULL.
fn never_equal(field: Field) -> Predicate {
    let v = Json::String(String::new());
    Predicate::And(vec![
        Predicate::Compare {
            field: field.clone(),
            op: CmpOp::Eq,
            value: v.clone(),
        },
        Predicate::Compare {
            field,
            op: CmpOp::Ne,
            value: v,
        },
    ])
}

/// TRUE, or NULL when the field is missing.
fn present(field: Field) -> Predicate {
    Predicate::Not(Box::new(never_equal(field)))
}

fn cmp(field: Field, op: CmpOp, value: Json) -> Predicate {
    Predicate::Compare { field, op, value }
}

impl Translator<'_> {
    fn touches_doc(&self, e: &IdedExpr) -> bool {
        self.doc_nodes.contains(&e.id)
    }

    fn untranslatable(&self, e: &IdedExpr, what: impl std::fmt::Display) -> Untranslatable {
        let (lo, _) = lex::span(self.src, self.offsets, e);
        let (line, column) = lex::line_col(self.src, lo);
        Untranslatable {
            line,
            column,
            message: format!("{what} cannot be translated to SQL ({SUPPORTED})"),
        }
    }

    fn text(&self, e: &IdedExpr) -> &str {
        lex::text(self.src, self.offsets, e)
    }

    /// Evaluates a sub-expression that does not mention the document.
    fn value(&self, e: &IdedExpr) -> Option<Value> {
        values::eval(e, self.ctx).ok()
    }

    pub(super) fn predicate(&self, e: &IdedExpr) -> Result<Predicate, Untranslatable> {
        self.pred(e, Polarity::Positive).map(Predicate::simplify)
    }

    fn pred(&self, e: &IdedExpr, pol: Polarity) -> Result<Predicate, Untranslatable> {
        if !self.touches_doc(e) {
            return Ok(match self.value(e).and_then(|v| values::as_bool(&v)) {
                Some(true) => Predicate::True,
                Some(false) => Predicate::False,
                None => Predicate::Unknown,
            });
        }
        match &e.expr {
            Expr::Call(c) if c.target.is_none() => {
                let name = c.func_name.as_str();
                match (name, c.args.len()) {
                    ("_&&_", 2) => {
                        return Ok(Predicate::And(vec![
                            self.pred(&c.args[0], pol)?,
                            self.pred(&c.args[1], pol)?,
                        ]));
                    }
                    ("_||_", 2) => {
                        return Ok(Predicate::Or(vec![
                            self.pred(&c.args[0], pol)?,
                            self.pred(&c.args[1], pol)?,
                        ]));
                    }
                    ("!_", 1) => {
                        return Ok(Predicate::Not(Box::new(self.pred(&c.args[0], pol.flip())?)));
                    }
                    ("_?_:_", 3) => {
                        let cond = self.pred(&c.args[0], Polarity::Exact)?;
                        let a = self.pred(&c.args[1], pol)?;
                        let b = self.pred(&c.args[2], pol)?;
                        let not_cond = Predicate::Not(Box::new(cond.clone()));
                        // (c AND a) OR (NOT c AND b) OR (c AND NOT c): the last term is
                        // NULL exactly when c is, as CEL errs on an erring condition.
                        return Ok(Predicate::Or(vec![
                            Predicate::And(vec![cond.clone(), a]),
                            Predicate::And(vec![not_cond.clone(), b]),
                            Predicate::And(vec![cond, not_cond]),
                        ]));
                    }
                    _ => {}
                }
                if let Some(op) = cmp_op(name)
                    && c.args.len() == 2
                {
                    return self.comparison(e, op, &c.args[0], &c.args[1]);
                }
                if name == "@in" && c.args.len() == 2 {
                    return self.membership(e, &c.args[0], &c.args[1]);
                }
            }
            Expr::Select(s) if s.test => {
                let mut path = match self.field(&s.operand)? {
                    Field::Doc(path) => path,
                    _ => return Err(self.untranslatable(e, format!("'{}'", self.text(e)))),
                };
                path.push(s.field.clone());
                return Ok(Predicate::Has {
                    field: Field::Doc(path),
                });
            }
            _ => {}
        }
        if let Expr::Call(c) = &e.expr
            && matches!(c.func_name.as_str(), "startsWith" | "contains")
            && c.args.len() == 1
            && let Some(target) = c.target.as_deref()
            && is_field_expr(target)
            && !self.touches_doc(&c.args[0])
        {
            let field = self.field(target)?;
            let Some(Value::String(arg)) = self.value(&c.args[0]) else {
                // not a string: an error in CEL
                return Ok(Predicate::Unknown);
            };
            if !matches!(field, Field::Doc(_) | Field::Id) {
                return Ok(Predicate::Unknown); // version and the times are numbers
            }
            if c.func_name == "startsWith" {
                return Ok(Predicate::StartsWith {
                    field,
                    prefix: arg.to_string(),
                });
            }
            if arg.chars().count() > MAX_CONTAINS_CHARS {
                return Err(self.untranslatable(
                    e,
                    format!(
                        "contains() with a value over {MAX_CONTAINS_CHARS} characters in '{}'",
                        self.text(e)
                    ),
                ));
            }
            return Ok(Predicate::Substring {
                field,
                needle: arg.to_string(),
            });
        }
        if is_field_expr(e) {
            // a field used as a boolean
            let field = self.field(e)?;
            if !matches!(field, Field::Doc(_)) {
                return Ok(Predicate::Unknown); // id, version... are never booleans
            }
            let is = |b: bool| cmp(field.clone(), CmpOp::Eq, Json::Bool(b));
            return Ok(match pol {
                Polarity::Positive => is(true),
                Polarity::Negative => Predicate::Not(Box::new(is(false))),
                Polarity::Exact => Predicate::Or(vec![
                    is(true),
                    Predicate::And(vec![
                        Predicate::Not(Box::new(is(false))),
                        Predicate::Unknown,
                    ]),
                ]),
            });
        }
        Err(self.untranslatable(e, describe(e, self.text(e))))
    }

    /// A document field or metadata column: `doc.a.b`, `doc['a']`, `id`, `version`...
    fn field(&self, e: &IdedExpr) -> Result<Field, Untranslatable> {
        match &e.expr {
            Expr::Ident(name) => match name.as_str() {
                "doc" => Ok(Field::Doc(Vec::new())),
                "id" => Ok(Field::Id),
                "version" => Ok(Field::Version),
                "created_at" => Ok(Field::CreatedAt),
                "updated_at" => Ok(Field::UpdatedAt),
                _ => Err(self.untranslatable(e, format!("'{name}'"))),
            },
            Expr::Select(s) if !s.test => match self.field(&s.operand)? {
                Field::Doc(mut path) => {
                    path.push(s.field.clone());
                    Ok(Field::Doc(path))
                }
                _ => Err(self.untranslatable(e, format!("'{}'", self.text(e)))),
            },
            Expr::Call(c) if c.func_name == "_[_]" && c.args.len() == 2 && c.target.is_none() => {
                let Field::Doc(mut path) = self.field(&c.args[0])? else {
                    return Err(self.untranslatable(e, format!("'{}'", self.text(e))));
                };
                match string_literal(&c.args[1]) {
                    Some(k) => {
                        path.push(k.to_string());
                        Ok(Field::Doc(path))
                    }
                    None => {
                        let what = match &c.args[1].expr {
                            Expr::Literal(LiteralValue::Int(_) | LiteralValue::UInt(_)) => {
                                format!("the list index in '{}'", self.text(e))
                            }
                            _ => format!(
                                "the computed key in '{}' (use a string literal)",
                                self.text(e)
                            ),
                        };
                        Err(self.untranslatable(e, what))
                    }
                }
            }
            _ => Err(self.untranslatable(e, describe(e, self.text(e)))),
        }
    }

    fn comparison(
        &self,
        e: &IdedExpr,
        op: CmpOp,
        l: &IdedExpr,
        r: &IdedExpr,
    ) -> Result<Predicate, Untranslatable> {
        let (field_side, value_side, op) = match (self.touches_doc(l), self.touches_doc(r)) {
            (true, true) => {
                return Err(self.untranslatable(
                    e,
                    format!(
                        "'{}' (a comparison between two document values)",
                        self.text(e)
                    ),
                ));
            }
            (true, false) => (l, r, op),
            (false, true) => (r, l, op.flipped()),
            (false, false) => unreachable!("handled as a constant"),
        };
        let field = self.field(field_side)?;
        let Some(value) = self.value(value_side) else {
            return Ok(Predicate::Unknown);
        };
        Ok(compare(field, op, &value))
    }

    fn membership(
        &self,
        e: &IdedExpr,
        l: &IdedExpr,
        r: &IdedExpr,
    ) -> Result<Predicate, Untranslatable> {
        if self.touches_doc(r) {
            if self.touches_doc(l) {
                return Err(self.untranslatable(
                    e,
                    format!(
                        "'{}' (membership between two document values)",
                        self.text(e)
                    ),
                ));
            }
            let field = self.field(r)?;
            let Some(value) = self.value(l) else {
                return Ok(Predicate::Unknown);
            };
            return Ok(contains(field, &value));
        }
        let field = self.field(l)?;
        let Some(container) = self.value(r) else {
            return Ok(Predicate::Unknown);
        };
        if let Value::List(list) = &container {
            let elems: Vec<&Value> = list.iter().collect();
            return Ok(in_values(field, &elems));
        }
        if let Value::Map(map) = &container {
            let keys: Vec<Value> = map
                .map
                .keys()
                .map(|k| match k {
                    Key::Int(i) => Value::Int(*i),
                    Key::Uint(u) => Value::UInt(*u),
                    Key::Bool(b) => Value::Bool(*b),
                    Key::String(s) => Value::String(s.clone()),
                })
                .collect();
            let keys: Vec<&Value> = keys.iter().collect();
            let matches = in_values(field.clone(), &keys);
            return Ok(match field {
                // a map lookup errs for a null, list or map value: only scalars are keys
                Field::Doc(_) => {
                    let scalar = Predicate::Or(vec![
                        cmp(field.clone(), CmpOp::Ge, Json::String(String::new())),
                        cmp(field.clone(), CmpOp::Ge, Json::from(-f64::MAX)),
                        cmp(field, CmpOp::Ge, Json::Bool(false)),
                    ]);
                    Predicate::Or(vec![
                        matches,
                        Predicate::And(vec![Predicate::Not(Box::new(scalar)), Predicate::Unknown]),
                    ])
                }
                _ => matches,
            });
        }
        Ok(Predicate::Unknown)
    }
}

/// `value in field`.
fn contains(field: Field, value: &Value) -> Predicate {
    if !matches!(field, Field::Doc(_)) {
        // id is a string, version and the timestamps are ints: never containers
        return Predicate::Unknown;
    }
    if let Some(json) = values::to_json(value) {
        return Predicate::Contains { field, value: json };
    }
    // No JSON form: no list element equals it. A NaN or infinite double is simply not a
    // key of a map; anything else (bytes, a map with non-string keys...) cannot be one.
    // `x AND NOT x` is FALSE where `x` is known, NULL where it is not.
    let probe = if matches!(value, Value::Float(_)) {
        Json::String(String::new())
    } else {
        Json::Null
    };
    let c = Predicate::Contains {
        field,
        value: probe,
    };
    Predicate::And(vec![c.clone(), Predicate::Not(Box::new(c))])
}

/// `field in [values]`, keeping the values a field can equal.
fn in_values(field: Field, elems: &[&Value]) -> Predicate {
    let mut values = Vec::new();
    for v in elems {
        let Some(j) = values::to_json(v) else {
            continue; // NaN, bytes...: never equal to stored JSON
        };
        let keep = match &field {
            Field::Doc(_) => true,
            Field::Id => j.is_string(),
            _ => j.is_number(),
        };
        if keep {
            values.push(j);
        }
    }
    if values.is_empty() && !matches!(field, Field::Doc(_)) {
        return Predicate::False;
    }
    Predicate::In { field, values }
}

/// `field <op> value` with CEL's semantics for the value's type.
fn compare(field: Field, op: CmpOp, value: &Value) -> Predicate {
    let json = values::to_json(value);
    let double = match value {
        Value::Float(d) => Some(*d),
        _ => None,
    };
    let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
    // NaN and infinities have no JSON form
    if let (None, Some(d)) = (&json, double) {
        if !ordering {
            return match (&field, op) {
                (Field::Doc(_), CmpOp::Eq) => never_equal(field),
                (Field::Doc(_), _) => present(field),
                (_, CmpOp::Eq) => Predicate::False,
                _ => Predicate::True,
            };
        }
        if d.is_nan() {
            return Predicate::Unknown;
        }
        // every stored number is finite: compare with the largest double instead
        let (op, bound) = match (op, d > 0.0) {
            (CmpOp::Lt | CmpOp::Le, true) => (CmpOp::Le, f64::MAX),
            (_, true) => (CmpOp::Gt, f64::MAX),
            (CmpOp::Gt | CmpOp::Ge, false) => (CmpOp::Ge, -f64::MAX),
            (_, false) => (CmpOp::Lt, -f64::MAX),
        };
        return match field {
            Field::Doc(_) => cmp(field, op, Json::from(bound)),
            Field::Id => Predicate::Unknown,
            _ => {
                if matches!(op, CmpOp::Le | CmpOp::Ge) {
                    Predicate::True
                } else {
                    Predicate::False
                }
            }
        };
    }
    let Some(json) = json else {
        // bytes, timestamps, maps with non-string keys...: never equal, never ordered
        return match (&field, op) {
            (_, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge) => Predicate::Unknown,
            (Field::Doc(_), CmpOp::Eq) => never_equal(field),
            (Field::Doc(_), _) => present(field),
            (_, CmpOp::Eq) => Predicate::False,
            _ => Predicate::True,
        };
    };
    match &field {
        Field::Doc(_) => {
            if ordering && !matches!(json, Json::Number(_) | Json::String(_) | Json::Bool(_)) {
                return Predicate::Unknown;
            }
            cmp(field, op, json)
        }
        Field::Id | Field::Version | Field::CreatedAt | Field::UpdatedAt => {
            let same_type = if field == Field::Id {
                json.is_string()
            } else {
                json.is_number()
            };
            match (same_type, op) {
                (true, _) => cmp(field, op, json),
                (false, CmpOp::Eq) => Predicate::False,
                (false, CmpOp::Ne) => Predicate::True,
                (false, _) => Predicate::Unknown,
            }
        }
    }
}

fn is_field_expr(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Ident(n) => DOC_VARIABLES.contains(&n.as_str()),
        Expr::Select(s) => !s.test && is_field_expr(&s.operand),
        Expr::Call(c) => {
            c.func_name == "_[_]"
                && c.args.len() == 2
                && c.target.is_none()
                && is_field_expr(&c.args[0])
        }
        _ => false,
    }
}

/// Names the construct for an error message.
fn describe(e: &IdedExpr, text: &str) -> String {
    match &super::cost::uncharged(e).expr {
        Expr::Call(c) => {
            let op = match c.func_name.as_str() {
                "_+_" => Some("+"),
                "_-_" | "-_" => Some("-"),
                "_*_" => Some("*"),
                "_/_" => Some("/"),
                "_%_" => Some("%"),
                _ => None,
            };
            match op {
                Some(op) => format!("arithmetic ('{op}') on document data in '{text}'"),
                None if c.func_name.starts_with('_') || c.func_name.starts_with('@') => {
                    format!("'{text}'")
                }
                None => format!(
                    "the function {}() on document data in '{text}'",
                    c.func_name
                ),
            }
        }
        Expr::Comprehension(_) => {
            format!(
                "a comprehension (all, exists, exists_one, map, filter) over document data in '{text}'"
            )
        }
        Expr::List(_) => format!("a list built from document data ('{text}')"),
        Expr::Map(_) => format!("a map built from document data ('{text}')"),
        _ => format!("'{text}'"),
    }
}
