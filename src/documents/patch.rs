//! PATCH bodies: JSON merge patch (RFC 7396) and JSON Patch (RFC 6902) with an extra
//! atomic `increment` op (`{"op":"increment","path":"/counts/a","value":1}`; a missing
//! target counts as 0 and missing parent objects are created). Integers add exactly, as
//! 64-bit signed integers: a sum outside that range is refused, never rounded to a float.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    /// The patch document itself is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A `test` op did not hold.
    #[error("{0}")]
    TestFailed(String),
    /// An op could not be applied to this document.
    #[error("{0}")]
    Failed(String),
    /// An `increment` whose sum leaves the range of its numbers (64-bit signed integers,
    /// or finite doubles).
    #[error("{0}")]
    Overflow(String),
}

pub fn merge(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// Applies a JSON Patch to a copy of `doc`: all ops or none.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, PatchError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| PatchError::Invalid("a JSON Patch is an array of operations".into()))?;
    if ops.len() > 1000 {
        return Err(PatchError::Invalid("at most 1000 operations".into()));
    }
    let mut out = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        if name == "increment" {
            increment(&mut out, op).map_err(|e| prefix(i, e))?;
            continue;
        }
        let parsed: json_patch::PatchOperation = serde_json::from_value(op.clone())
            .map_err(|e| PatchError::Invalid(format!("operation {i}: {e}")))?;
        json_patch::patch(&mut out, std::slice::from_ref(&parsed)).map_err(|e| {
            let msg = format!("operation {i}: {e}");
            if matches!(e.kind, json_patch::PatchErrorKind::TestFailed) {
                PatchError::TestFailed(msg)
            } else {
                PatchError::Failed(msg)
            }
        })?;
    }
    Ok(out)
}

fn prefix(i: usize, e: PatchError) -> PatchError {
    match e {
        PatchError::Invalid(m) => PatchError::Invalid(format!("operation {i}: {m}")),
        PatchError::TestFailed(m) => PatchError::TestFailed(format!("operation {i}: {m}")),
        PatchError::Failed(m) => PatchError::Failed(format!("operation {i}: {m}")),
        PatchError::Overflow(m) => PatchError::Overflow(format!("operation {i}: {m}")),
    }
}

/// RFC 6901 pointer segments, unescaped.
fn segments(path: &str) -> Result<Vec<String>, PatchError> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| PatchError::Invalid(format!("path '{path}' must start with '/'")))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn increment(doc: &mut Value, op: &Value) -> Result<(), PatchError> {
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| PatchError::Invalid("increment needs a string 'path'".into()))?;
    let by = op
        .get("value")
        .and_then(Value::as_number)
        .ok_or_else(|| PatchError::Invalid("increment needs a numeric 'value'".into()))?;
    let segs = segments(path)?;
    let (last, parents) = segs
        .split_last()
        .ok_or_else(|| PatchError::Invalid("increment needs a path below the root".into()))?;
    let mut target = doc;
    for s in parents {
        let obj = target
            .as_object_mut()
            .ok_or_else(|| PatchError::Failed(format!("'{path}': a parent is not an object")))?;
        target = obj
            .entry(s.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let obj = target
        .as_object_mut()
        .ok_or_else(|| PatchError::Failed(format!("'{path}': the parent is not an object")))?;
    let zero = serde_json::Number::from(0);
    let current = match obj.get(last) {
        None => &zero,
        Some(Value::Number(n)) => n,
        Some(_) => {
            return Err(PatchError::Failed(format!(
                "'{path}' does not hold a number"
            )));
        }
    };
    let sum = add(current, by).map_err(|why| PatchError::Overflow(format!("'{path}': {why}")))?;
    obj.insert(last.clone(), Value::Number(sum));
    Ok(())
}

/// The sum of two JSON numbers. Two integers add exactly and the sum must be a 64-bit
/// signed integer; with a float involved the sum is a float and must be finite. Err says
/// why the sum has no value.
fn add(a: &serde_json::Number, b: &serde_json::Number) -> Result<serde_json::Number, String> {
    let int = |n: &serde_json::Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    if let (Some(x), Some(y)) = (int(a), int(b)) {
        return i64::try_from(x + y)
            .map(serde_json::Number::from)
            .map_err(|_| format!("{a} + {b} is outside the 64-bit integer range"));
    }
    let (x, y) = (
        a.as_f64().unwrap_or(f64::NAN),
        b.as_f64().unwrap_or(f64::NAN),
    );
    serde_json::Number::from_f64(x + y).ok_or_else(|| format!("{a} + {b} is not a finite number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn increments() {
        let doc = json!({"n": 1});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "increment", "path": "/n", "value": 2},
                {"op": "increment", "path": "/counts/a", "value": 1},
                {"op": "increment", "path": "/f", "value": 0.5}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"n": 3, "counts": {"a": 1}, "f": 0.5}));
        assert!(matches!(
            json_patch(
                &json!({"s": "x"}),
                &json!([{"op": "increment", "path": "/s", "value": 1}])
            ),
            Err(PatchError::Failed(_))
        ));
        assert!(matches!(
            json_patch(
                &doc,
                &json!([{"op": "increment", "path": "/n", "value": "1"}])
            ),
            Err(PatchError::Invalid(_))
        ));
    }

    #[test]
    fn increments_never_overflow_into_floats() {
        let max = json!({"n": i64::MAX, "m": i64::MIN, "u": u64::MAX, "f": 1.0e308});
        let inc = |path: &str, by: Value| {
            json_patch(
                &max,
                &json!([{"op": "increment", "path": path, "value": by}]),
            )
        };
        for (path, by) in [
            ("/n", json!(1)),
            ("/m", json!(-1)),
            ("/u", json!(0)),
            ("/n", json!(u64::MAX)),
            ("/f", json!(1.0e308)),
        ] {
            assert!(
                matches!(inc(path, by.clone()), Err(PatchError::Overflow(_))),
                "{path} + {by}"
            );
        }
        assert_eq!(inc("/n", json!(-1)).unwrap()["n"], json!(i64::MAX - 1));
        assert_eq!(inc("/u", json!(i64::MIN)).unwrap()["u"], json!(i64::MAX));
        assert_eq!(
            json_patch(
                &json!({"n": 1}),
                &json!([{"op": "increment", "path": "/n", "value": i64::MAX - 1}])
            )
            .unwrap(),
            json!({"n": i64::MAX})
        );
        // The prefix names the operation.
        let Err(PatchError::Overflow(m)) = json_patch(
            &json!({"n": 1}),
            &json!([
                {"op": "increment", "path": "/x", "value": 1},
                {"op": "increment", "path": "/n", "value": i64::MAX}
            ]),
        ) else {
            panic!("overflow expected");
        };
        assert!(m.starts_with("operation 1: '/n'"), "{m}");
    }

    #[test]
    fn standard_ops_and_test() {
        let doc = json!({"a": 1, "b": [1, 2]});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "replace", "path": "/a", "value": 5},
                {"op": "add", "path": "/b/-", "value": 3},
                {"op": "remove", "path": "/a"}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"b": [1, 2, 3]}));
        assert!(matches!(
            json_patch(&doc, &json!([{"op": "test", "path": "/a", "value": 2}])),
            Err(PatchError::TestFailed(_))
        ));
        assert!(matches!(
            json_patch(&doc, &json!({"op": "add"})),
            Err(PatchError::Invalid(_))
        ));
        assert!(matches!(
            json_patch(&doc, &json!([{"op": "nope", "path": "/a"}])),
            Err(PatchError::Invalid(_))
        ));
    }

    #[test]
    fn merges() {
        assert_eq!(
            merge(&json!({"a": 1, "b": 2}), &json!({"a": null, "c": 3})),
            json!({"b": 2, "c": 3})
        );
    }
}
