//! The small type lattice of the checker: what is known about a value without data,
//! and which operators can never work on it.

use cel::common::ast::{IdedExpr, LiteralValue};

use super::{Checker, Fail, fail};

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
    pub(super) fn name(self) -> &'static str {
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

    pub(super) fn article(self) -> String {
        match self {
            Ty::Int | Ty::UInt => format!("an {}", self.name()),
            Ty::Null => "null".to_string(),
            _ => format!("a {}", self.name()),
        }
    }

    pub(super) fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::UInt | Ty::Double)
    }
}

pub(super) fn literal_type(l: &LiteralValue) -> Ty {
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

pub(super) fn eq_compatible(a: Ty, b: Ty) -> bool {
    a == b
        || a == Ty::Dyn
        || b == Ty::Dyn
        || (a.numeric() && b.numeric())
        || matches!(
            (a, b),
            (Ty::Auth, Ty::Null | Ty::Map) | (Ty::Null | Ty::Map, Ty::Auth)
        )
}

pub(super) fn orderable(a: Ty) -> bool {
    !matches!(a, Ty::Null | Ty::List | Ty::Map | Ty::Auth)
}

impl Checker<'_> {
    pub(super) fn arithmetic(&self, e: &IdedExpr, op: &str, a: Ty, b: Ty) -> Result<Ty, Fail> {
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
