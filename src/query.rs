//! A dialect-neutral predicate over stored documents: what a read rule or filter becomes
//! once everything that does not depend on the document has been evaluated.
//!
//! Semantics follow CEL as implemented by the `cel` crate, with SQL NULL standing for a
//! CEL evaluation error (so `&&`/`||`/`!` keep CEL's error absorption rules):
//! - `Compare{field, Eq, v}` is true when the field holds a JSON value equal to `v` under
//!   CEL equality, false when it holds a different value, unknown (NULL) where CEL errs.
//! - Order comparisons are defined between numbers, between strings (code-point order)
//!   and between booleans; anything else is an error in CEL, hence unknown.
//! - A missing field is an error in CEL (no such key): unknown.
//! - A field whose parent is not an object (`doc.a.b` with `a` a string) is an error too.

use serde_json::Value;

use crate::names::FieldPath;

#[derive(Clone, Debug, PartialEq)]
pub enum Predicate {
    True,
    False,
    /// A CEL evaluation error: SQL NULL.
    Unknown,
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    /// `field <op> value`; the translator puts the field on the left, flipping the
    /// operator when needed.
    Compare {
        field: Field,
        op: CmpOp,
        value: Value,
    },
    /// `field in [values]`.
    In {
        field: Field,
        values: Vec<Value>,
    },
    /// `has(doc.a.b)`: the path exists (whatever its value, null included).
    Has {
        field: Field,
    },
    /// `value in field` (CEL `in` with the document on the right): when the field holds a
    /// list, whether an element equals `value` (CEL equality); when it holds an object,
    /// whether `value` is one of its keys (false for a number or boolean, unknown for
    /// null, a list or an object); unknown for any other field value or a missing field.
    Contains {
        field: Field,
        value: Value,
    },
    /// `field.startsWith(prefix)`: whether the field holds a string that begins with
    /// `prefix` (code points); unknown for a value of another type or a missing field.
    StartsWith {
        field: Field,
        prefix: String,
    },
    /// `field.contains(needle)` on a string: whether the field holds a string that has
    /// `needle` in it; unknown for a value of another type or a missing field. No index
    /// serves it: every row the rest of the predicate leaves is read.
    Substring {
        field: Field,
        needle: String,
    },
}

impl Predicate {
    /// Whether one of `indexes` (each a list of document paths) narrows this predicate
    /// but none delivers its rows in the default order: some index's first path is
    /// compared (`==`, `in`, a range, a prefix) in the top-level conjunction, and no
    /// index has all its paths compared for equality there.
    pub fn needs_index_sort(&self, indexes: &[Vec<FieldPath>]) -> bool {
        let mut conjuncts = Vec::new();
        self.conjuncts(&mut conjuncts);
        let mut equal: Vec<&[String]> = Vec::new();
        let mut narrowed: Vec<&[String]> = Vec::new();
        for c in conjuncts {
            match c {
                Predicate::Compare {
                    field: Field::Doc(p),
                    op: CmpOp::Eq,
                    ..
                } => equal.push(p),
                Predicate::In {
                    field: Field::Doc(p),
                    values,
                } if values.len() == 1 => equal.push(p),
                Predicate::In {
                    field: Field::Doc(p),
                    ..
                }
                | Predicate::Compare {
                    field: Field::Doc(p),
                    op: CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge,
                    ..
                }
                | Predicate::StartsWith {
                    field: Field::Doc(p),
                    ..
                } => narrowed.push(p),
                _ => {}
            }
        }
        let ordered = indexes
            .iter()
            .any(|i| i.iter().all(|p| equal.contains(&p.segments())));
        let narrows = indexes.iter().any(|i| {
            i.first()
                .is_some_and(|p| equal.contains(&p.segments()) || narrowed.contains(&p.segments()))
        });
        narrows && !ordered
    }

    fn conjuncts<'a>(&'a self, out: &mut Vec<&'a Predicate>) {
        match self {
            Predicate::And(items) => items.iter().for_each(|i| i.conjuncts(out)),
            other => out.push(other),
        }
    }
}

impl Predicate {
    /// Folds constants and flattens nested conjunctions and disjunctions.
    pub fn simplify(self) -> Predicate {
        match self {
            Predicate::And(items) => flatten(items, Connective::And),
            Predicate::Or(items) => flatten(items, Connective::Or),
            Predicate::Not(inner) => match inner.simplify() {
                Predicate::True => Predicate::False,
                Predicate::False => Predicate::True,
                Predicate::Unknown => Predicate::Unknown,
                Predicate::Not(x) => *x,
                other => Predicate::Not(Box::new(other)),
            },
            other => other,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Connective {
    And,
    Or,
}

/// `items` joined by `connective`, simplified: its unit (TRUE for `And`, FALSE for `Or`)
/// drops out, its zero decides the whole, nested items of the same connective are lifted
/// into this one, and `Unknown` is kept once.
fn flatten(items: Vec<Predicate>, connective: Connective) -> Predicate {
    let (unit, zero) = match connective {
        Connective::And => (Predicate::True, Predicate::False),
        Connective::Or => (Predicate::False, Predicate::True),
    };
    let mut out: Vec<Predicate> = Vec::new();
    for item in items.into_iter().map(Predicate::simplify) {
        match (item, connective) {
            (Predicate::And(inner), Connective::And) | (Predicate::Or(inner), Connective::Or) => {
                for i in inner {
                    if !(i == Predicate::Unknown && out.contains(&Predicate::Unknown)) {
                        out.push(i);
                    }
                }
            }
            (item, _) if item == unit => {}
            (item, _) if item == zero => return zero,
            (Predicate::Unknown, _) if out.contains(&Predicate::Unknown) => {}
            (other, _) => out.push(other),
        }
    }
    match out.len() {
        0 => unit,
        1 => out.pop().unwrap_or(unit),
        _ if connective == Connective::And => Predicate::And(out),
        _ => Predicate::Or(out),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// A path into the document's data: `doc.a.b` is `Doc(["a", "b"])`.
    Doc(Vec<String>),
    Id,
    Version,
    CreatedAt,
    UpdatedAt,
}

/// What a list is ordered by: a metadata column or a checked document path. Unlike a
/// predicate's [`Field`], whose keys may be anything (the store binds the ones it cannot
/// inline), the path is a [`FieldPath`]: the store writes it into `ORDER BY` as text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OrderField {
    Doc(FieldPath),
    Id,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Ne => CmpOp::Ne,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
        }
    }
}

impl Predicate {
    /// Whether a string anywhere in it (a value, or a key of a document path) holds
    /// U+0000. No document can hold one, and PostgreSQL refuses it in text and jsonb
    /// parameters, so such a filter is refused before it reaches SQL.
    pub fn mentions_nul(&self) -> bool {
        fn in_value(v: &Value) -> bool {
            match v {
                Value::String(s) => s.contains('\0'),
                Value::Array(a) => a.iter().any(in_value),
                Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || in_value(v)),
                _ => false,
            }
        }
        fn in_field(f: &Field) -> bool {
            matches!(f, Field::Doc(path) if path.iter().any(|k| k.contains('\0')))
        }
        match self {
            Predicate::True | Predicate::False | Predicate::Unknown => false,
            Predicate::And(ps) | Predicate::Or(ps) => ps.iter().any(Predicate::mentions_nul),
            Predicate::Not(p) => p.mentions_nul(),
            Predicate::Compare { field, value, .. } | Predicate::Contains { field, value } => {
                in_field(field) || in_value(value)
            }
            Predicate::In { field, values } => in_field(field) || values.iter().any(in_value),
            Predicate::Has { field } => in_field(field),
            Predicate::StartsWith { field, prefix } => in_field(field) || prefix.contains('\0'),
            Predicate::Substring { field, needle } => in_field(field) || needle.contains('\0'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    fn cmp(p: &str, op: CmpOp) -> Predicate {
        Predicate::Compare {
            field: Field::Doc(path(p)),
            op,
            value: json!(1),
        }
    }

    fn index(paths: &[&str]) -> Vec<FieldPath> {
        paths.iter().map(|p| FieldPath::parse(p).unwrap()).collect()
    }

    #[test]
    fn an_index_that_narrows_but_cannot_order_asks_for_a_sort() {
        let owner = index(&["owner"]);
        let owner_score = index(&["owner", "score"]);
        let both = [owner.clone(), owner_score.clone()];
        let eq = cmp("owner", CmpOp::Eq);
        let in_ = Predicate::In {
            field: Field::Doc(path("owner")),
            values: vec![json!("a"), json!("b")],
        };
        let range = Predicate::And(vec![eq.clone(), cmp("score", CmpOp::Gt)]);
        // equality on all of an index's paths: that index delivers the order
        assert!(!eq.needs_index_sort(&both));
        assert!(!range.needs_index_sort(&both));
        // only [owner, score]: equality on owner narrows, the order needs a sort
        assert!(eq.needs_index_sort(std::slice::from_ref(&owner_score)));
        assert!(range.needs_index_sort(std::slice::from_ref(&owner_score)));
        assert!(in_.needs_index_sort(&both));
        // nothing indexed, or the comparison below an `||`: the planner decides
        assert!(!eq.needs_index_sort(&[]));
        assert!(!cmp("name", CmpOp::Eq).needs_index_sort(&both));
        let or = Predicate::Or(vec![eq.clone(), cmp("x", CmpOp::Eq)]);
        assert!(!or.needs_index_sort(&both));
    }
}
