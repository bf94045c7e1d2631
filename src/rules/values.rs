//! CEL values for Plinth: the shared environment, the variables of one evaluation
//! (JSON converted by hand, borrowing strings from the document), and CEL values back
//! to JSON.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt, DYN_TYPE,
    INT_TYPE,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::Key;
use cel::{Context, Env, Value};
use serde_json::Value as Json;

use super::AuthInfo;

/// The standard environment, built once (building it costs tens of microseconds).
/// It adds the cost budget's charging function (see `cost`).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    for (id, args) in [
        ("__cost_value", vec![DYN_TYPE]),
        ("__cost_value_units", vec![DYN_TYPE, INT_TYPE]),
    ] {
        if let Err(e) = env.add_overload(super::cost::COST_FN, id, args, super::cost::cost_fn) {
            // Only a new `cel` version could clash with our name; the rewrite's calls
            // would then fail as errors (denials), never unbounded.
            tracing::error!(error = ?e, "cannot declare the CEL cost function");
        }
    }
    Arc::new(env)
});

/// The names rules and filters can use.
pub(super) const VARIABLES: [&str; 8] = [
    "auth",
    "doc",
    "new",
    "id",
    "now",
    "version",
    "created_at",
    "updated_at",
];

/// Which top-level keys of a document an expression can observe: `None` when it may
/// observe all of them (it uses the whole map, or indexes it with a computed key).
pub(super) type KeyUse = Option<BTreeSet<String>>;

/// The variables of one evaluation. Unset variables are undeclared (an error if used).
#[derive(Default)]
pub(super) struct Vars<'a> {
    pub auth: Option<Box<dyn Val + 'a>>,
    pub doc: Option<Box<dyn Val + 'a>>,
    pub new: Option<Box<dyn Val + 'a>>,
    pub id: Option<Box<dyn Val + 'a>>,
    pub now: Option<Box<dyn Val + 'a>>,
    pub version: Option<Box<dyn Val + 'a>>,
    pub created_at: Option<Box<dyn Val + 'a>>,
    pub updated_at: Option<Box<dyn Val + 'a>>,
}

impl VariableResolver for Vars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let slot = match variable {
            "auth" => &self.auth,
            "doc" => &self.doc,
            "new" => &self.new,
            "id" => &self.id,
            "now" => &self.now,
            "version" => &self.version,
            "created_at" => &self.created_at,
            "updated_at" => &self.updated_at,
            _ => return None,
        };
        slot.as_deref()
            .map(|v| CowVal::Borrowed(v as &(dyn Val + 'b)))
    }
}

/// A root context over the shared environment, resolving `vars`.
pub(super) fn context<'v>(vars: &'v Vars<'_>) -> Context<'v, 'v> {
    let mut ctx = Context::with_env(Arc::clone(&ENV));
    ctx.set_variable_resolver(vars);
    ctx
}

pub(super) fn int(i: i64) -> Box<dyn Val + 'static> {
    Box::new(CelInt::from(i))
}

pub(super) fn string(s: &str) -> Box<dyn Val + '_> {
    Box::new(CelString::from(s))
}

/// `auth`: null, or `{uid, email, email_verified, claims}` (claims `{}` when null).
pub(super) fn auth(a: Option<&AuthInfo>) -> Box<dyn Val + '_> {
    let Some(a) = a else {
        return Box::new(CelNull);
    };
    let mut m: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = HashMap::with_capacity(4);
    m.insert(CelMapKey::from("uid"), string(&a.uid));
    m.insert(CelMapKey::from("email"), string(&a.email));
    m.insert(
        CelMapKey::from("email_verified"),
        Box::new(CelBool::from(a.email_verified)),
    );
    let claims = match &a.claims {
        Json::Null => Box::new(CelMap::from(HashMap::new())) as Box<dyn Val>,
        other => json(other),
    };
    m.insert(CelMapKey::from("claims"), claims);
    Box::new(CelMap::from(m))
}

/// A JSON value as CEL: integers as `int` (`uint` only beyond `i64`), other numbers as
/// `double`, objects as maps with string keys. Strings are borrowed, not copied.
pub(super) fn json(v: &Json) -> Box<dyn Val + '_> {
    match v {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Json::String(s) => string(s),
        Json::Array(a) => Box::new(CelList::from(a.iter().map(json).collect::<Vec<_>>())),
        Json::Object(o) => Box::new(CelMap::from(
            o.iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), json(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// A document as CEL, keeping only the top-level keys the expression can observe.
pub(super) fn document<'a>(v: &'a Json, keys: &KeyUse) -> Box<dyn Val + 'a> {
    match (v, keys) {
        (Json::Object(o), Some(keys)) => {
            let mut m = HashMap::with_capacity(keys.len());
            for k in keys {
                if let Some((k, v)) = o.get_key_value(k.as_str()) {
                    m.insert(CelMapKey::from(k.as_str()), json(v));
                }
            }
            Box::new(CelMap::from(m))
        }
        _ => json(v),
    }
}

/// Evaluates `e`. Goes through `Value::resolve`, which is compiled in the `cel` crate:
/// `resolve_val` is `#[inline(always)]`, so calling it directly would instantiate the
/// interpreter's recursion in this crate, unoptimised in debug builds, with frames large
/// enough to overflow a 2 MiB stack at the depth limit.
pub(super) fn eval(e: &cel::IdedExpr, ctx: &Context<'_, '_>) -> Result<Value, cel::ExecutionError> {
    Value::resolve(e, ctx)
}

/// A CEL value as JSON, when it has an exact JSON form (no NaN or infinity, no bytes,
/// timestamps or other opaque values, map keys all strings).
pub(super) fn to_json(v: &Value) -> Option<Json> {
    Some(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(d) => Json::Number(serde_json::Number::from_f64(*d)?),
        Value::String(s) => Json::String(s.to_string()),
        Value::List(l) => Json::Array(l.iter().map(to_json).collect::<Option<Vec<_>>>()?),
        Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let Key::String(k) = k else { return None };
                out.insert(k.to_string(), to_json(v)?);
            }
            Json::Object(out)
        }
        _ => return None,
    })
}

/// A short display of a CEL value: JSON when it has a JSON form, else its debug form.
pub(super) fn display(v: &Value) -> String {
    match to_json(v) {
        Some(j) => j.to_string(),
        None => {
            if let Value::Float(d) = v {
                return format!("{d}");
            }
            let s = format!("{v:?}");
            if s.len() > 200 {
                let mut end = 200;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}…", &s[..end])
            } else {
                s
            }
        }
    }
}

/// The value as a boolean, when it is one.
pub(super) fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}
