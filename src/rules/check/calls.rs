//! Type checks of calls: operators by family (logic, comparison, arithmetic, membership
//! and indexing), then the whitelist of functions with their argument types, and literal
//! regular expressions.

use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::CelString;

use super::types::{Ty, eq_compatible, orderable};
use super::{Checker, Fail, fail};
use crate::rules::{ast::string_literal, values};

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

/// How an operator is written in the source.
fn op_text(n: &str) -> &'static str {
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
}

impl Checker<'_> {
    pub(super) fn call(&mut self, e: &IdedExpr, c: &CallExpr) -> Result<Ty, Fail> {
        if c.target.is_none() {
            match (c.func_name.as_str(), c.args.len()) {
                ("_&&_" | "_||_", 2) | ("!_" | "@not_strictly_false", 1) | ("_?_:_", 3) => {
                    return self.logic(c);
                }
                ("_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_", 2) => {
                    return self.comparison(e, c);
                }
                ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", 2) | ("-_", 1) => {
                    return self.arithmetic_call(e, c);
                }
                ("@in" | "_[_]", 2) => return self.membership(e, c),
                _ => {}
            }
        }
        self.function(e, c)
    }

    /// A type error at `arg`: `lead` then what `arg` is.
    fn mismatch<T>(&self, arg: &IdedExpr, t: Ty, lead: impl std::fmt::Display) -> Result<T, Fail> {
        fail(
            self.start(arg),
            format!("{lead}'{}' is {}", self.text(arg), t.article()),
        )
    }

    fn expect_bool(&mut self, arg: &IdedExpr, op: &str) -> Result<(), Fail> {
        let t = self.check(arg)?;
        if matches!(t, Ty::Bool | Ty::Dyn) {
            Ok(())
        } else {
            self.mismatch(arg, t, format_args!("'{op}' needs booleans, but "))
        }
    }

    /// `&&`, `||`, `!` and `? :`.
    fn logic(&mut self, c: &CallExpr) -> Result<Ty, Fail> {
        let name = c.func_name.as_str();
        match name {
            "_&&_" | "_||_" => {
                self.expect_bool(&c.args[0], op_text(name))?;
                self.expect_bool(&c.args[1], op_text(name))?;
                Ok(Ty::Bool)
            }
            "!_" => {
                self.expect_bool(&c.args[0], "!")?;
                Ok(Ty::Bool)
            }
            "@not_strictly_false" => {
                self.check(&c.args[0])?;
                Ok(Ty::Bool)
            }
            _ => {
                let cond = self.check(&c.args[0])?;
                if !matches!(cond, Ty::Bool | Ty::Dyn) {
                    return self.mismatch(
                        &c.args[0],
                        cond,
                        "the condition of '? :' must be a boolean, ",
                    );
                }
                let a = self.check(&c.args[1])?;
                let b = self.check(&c.args[2])?;
                Ok(if a == b { a } else { Ty::Dyn })
            }
        }
    }

    /// `==`, `!=` and the order comparisons.
    fn comparison(&mut self, e: &IdedExpr, c: &CallExpr) -> Result<Ty, Fail> {
        let name = c.func_name.as_str();
        let a = self.check(&c.args[0])?;
        let b = self.check(&c.args[1])?;
        if matches!(name, "_==_" | "_!=_") {
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
        for (t, arg) in [(a, &c.args[0]), (b, &c.args[1])] {
            if !orderable(t) {
                return self.mismatch(
                    arg,
                    t,
                    format_args!("'{}' cannot be ordered: ", op_text(name)),
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
        Ok(Ty::Bool)
    }

    /// The binary arithmetic operators and unary minus.
    fn arithmetic_call(&mut self, e: &IdedExpr, c: &CallExpr) -> Result<Ty, Fail> {
        if c.args.len() == 2 {
            let a = self.check(&c.args[0])?;
            let b = self.check(&c.args[1])?;
            return self.arithmetic(e, op_text(&c.func_name), a, b);
        }
        let a = self.check(&c.args[0])?;
        match a {
            Ty::Dyn | Ty::Int | Ty::Double => Ok(a),
            other => fail(self.tok(e), format!("cannot negate {}", other.article())),
        }
    }

    /// `x in container` and `container[key]`.
    fn membership(&mut self, e: &IdedExpr, c: &CallExpr) -> Result<Ty, Fail> {
        if c.func_name == "@in" {
            self.check(&c.args[0])?;
            let b = self.check(&c.args[1])?;
            if !matches!(b, Ty::Dyn | Ty::List | Ty::Map | Ty::Auth) {
                return self.mismatch(&c.args[1], b, "'in' needs a list or a map on its right, ");
            }
            return Ok(Ty::Bool);
        }
        let a = self.check(&c.args[0])?;
        let i = self.check(&c.args[1])?;
        match a {
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
        }
    }

    /// A call of a whitelisted function: its name, style and arity, then its arguments.
    fn function(&mut self, e: &IdedExpr, c: &CallExpr) -> Result<Ty, Fail> {
        let name = c.func_name.as_str();
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
        self.function_type(name, &types)
    }

    /// The result type of a whitelisted function, given its (checked) arguments, the
    /// target first.
    fn function_type(&self, name: &str, types: &[(Ty, &IdedExpr)]) -> Result<Ty, Fail> {
        let need = |this: &Self, (t, arg): (Ty, &IdedExpr), ok: &[Ty], what: &str| {
            if t == Ty::Dyn || ok.contains(&t) {
                Ok(())
            } else {
                this.mismatch(arg, t, format_args!("'{name}' needs {what}, but "))
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
            "int" | "uint" | "double" => {
                need(
                    self,
                    types[0],
                    &[Ty::Int, Ty::UInt, Ty::Double, Ty::String],
                    "a number or a string",
                )?;
                match name {
                    "int" => Ty::Int,
                    "uint" => Ty::UInt,
                    _ => Ty::Double,
                }
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
}
