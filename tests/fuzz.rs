//! Property tests of the parsers and evaluators that take untrusted input: whatever they
//! are given, they answer (a value or an error) and never panic, and CEL evaluation stays
//! within its budget's time. Stable Rust only (proptest); each property runs
//! `PLINTH_FUZZ_CASES` cases (default 256, so the suite stays quick);
//! `scripts/fuzz.sh` runs them at length.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plinth::documents::{CursorContext, CursorKey, parse_order};
use plinth::functions::bundle::{LimitCaps, check};
use plinth::rules::{AuthInfo, Bindings, ExprKind, Expression, Operation, QueryBindings};
use plinth::store::{After, SortValue};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

fn runner() -> TestRunner {
    let cases = std::env::var("PLINTH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Tokens CEL sources are made of, so random sources get past the lexer often.
fn cel_source() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("doc".to_string()),
        Just("auth".to_string()),
        Just("now".to_string()),
        Just("id".to_string()),
        Just(".".to_string()),
        Just("a".to_string()),
        Just("tags".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just(" == ".to_string()),
        Just(" < ".to_string()),
        Just(" && ".to_string()),
        Just(" || ".to_string()),
        Just("!".to_string()),
        Just(" + ".to_string()),
        Just(" in ".to_string()),
        Just(" ? ".to_string()),
        Just("'x'".to_string()),
        Just("1".to_string()),
        Just("2.5".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("size".to_string()),
        Just(".map(x, ".to_string()),
        Just(".filter(x, ".to_string()),
        Just(".exists(x, ".to_string()),
        Just(".all(x, ".to_string()),
        Just("x".to_string()),
        Just("has(".to_string()),
        Just(".matches('^a')".to_string()),
        Just(".startsWith(".to_string()),
        "[a-z0-9_'\"\\\\ ]{1,3}",
    ];
    prop::collection::vec(token, 1..40).prop_map(|t| t.concat())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        "[a-z]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn cel_compile_translate_and_evaluate_never_panic() {
    let user = AuthInfo {
        uid: "u1".into(),
        email: "u1@example.com".into(),
        email_verified: true,
        claims: json!({"tags": ["a", "b"]}),
    };
    runner()
        .run(&(cel_source(), json_value()), |(src, data)| {
            let doc = json!({"a": data, "tags": ["a", "x"]});
            for kind in [ExprKind::Filter, ExprKind::Rule(Operation::Update)] {
                let Ok(e) = Expression::compile(&src, kind) else {
                    continue;
                };
                let b = Bindings {
                    auth: Some(&user),
                    id: "d1",
                    doc: Some(&doc),
                    new: Some(&doc),
                    meta: None,
                    now_ms: 0,
                };
                let _ = e.evaluate(&b);
                let _ = e.explain(&b);
                let _ = e.to_predicate(&QueryBindings {
                    auth: None,
                    now_ms: 0,
                });
            }
            Ok(())
        })
        .unwrap();
}

/// Comprehensions nested as deep as allowed, over literal lists as long as the source
/// limit allows: evaluation ends within its budget's time, whatever the shape.
#[test]
fn cel_evaluation_time_is_bounded() {
    let shape = (
        1usize..=600,
        prop::sample::select(vec!["map", "filter", "exists", "all"]),
        prop::sample::select(vec!["map", "filter", "exists", "all"]),
        prop::sample::select(vec!["L", "L + L", "[a, b]", "a + b"]),
    );
    runner()
        .run(&shape, |(n, outer, inner, body)| {
            let list = format!("[{}]", vec!["1"; n].join(","));
            let body = body.replace('L', &list);
            let body = match inner {
                "map" | "filter" => format!("{list}.{inner}(b, {body})"),
                _ => format!("{list}.{inner}(b, size([{body}]) > 0)"),
            };
            let src = match outer {
                "map" | "filter" => format!("size({list}.{outer}(a, {body})) > 0"),
                _ => format!("{list}.{outer}(a, size([{body}]) > 0)"),
            };
            let Ok(e) = Expression::compile(&src, ExprKind::Filter) else {
                return Ok(());
            };
            let t = Instant::now();
            let _ = e.to_predicate(&QueryBindings {
                auth: None,
                now_ms: 0,
            });
            let took = t.elapsed();
            // Generous (debug build, tests in parallel): unbounded, the worst of these
            // took seconds and gigabytes.
            prop_assert!(took < Duration::from_secs(3), "{src}: {took:?}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn json_patch_never_panics() {
    let path = prop_oneof![
        Just(String::new()),
        "(/[a-z0-9~-]{0,3}){1,4}",
        "[a-z/~0-9-]{0,8}",
    ];
    let op = (
        prop::sample::select(vec![
            "add",
            "remove",
            "replace",
            "move",
            "copy",
            "test",
            "increment",
            "bogus",
        ]),
        path.clone(),
        path,
        json_value(),
    )
        .prop_map(
            |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
        );
    runner()
        .run(
            &(json_value(), prop::collection::vec(op, 0..6)),
            |(doc, ops)| {
                let _ = plinth::documents::patch::json_patch(&doc, &Value::from(ops));
                let _ = plinth::documents::patch::merge(&doc, &doc);
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn cursors_cannot_be_forged() {
    let key = CursorKey::new(vec![7; 32]);
    let ctx = CursorContext {
        tenant_id: 1,
        collection: "items",
        order: "",
        filter: "",
    };
    let good = key.encode(
        &ctx,
        &After {
            keys: vec![SortValue::Int(5)],
            tie: SortValue::Text("a".into()),
        },
    );
    runner()
        .run(
            &("[A-Za-z0-9_.=-]{0,80}", 0usize..200, any::<u8>()),
            |(random, at, byte)| {
                prop_assert!(key.decode(&ctx, &random).is_none() || random == good);
                // One byte of a valid cursor changed: refused, or the very same cursor.
                let mut bytes = good.clone().into_bytes();
                let i = at % bytes.len();
                bytes[i] = byte;
                if let Ok(altered) = String::from_utf8(bytes)
                    && altered != good
                {
                    prop_assert!(key.decode(&ctx, &altered).is_none(), "{altered}");
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn order_and_manifest_parsing_never_panic() {
    let manifest_line = prop_oneof![
        Just("[[http]]\n".to_string()),
        Just("[[hooks]]\n".to_string()),
        Just("[limits.f]\n".to_string()),
        Just("name = \"f\"\n".to_string()),
        Just("function = \"f\"\n".to_string()),
        Just("collection = \"votes\"\n".to_string()),
        Just("on = [\"create\"]\n".to_string()),
        Just("batch = 0\n".to_string()),
        Just("timeout_ms = 99999999999\n".to_string()),
        Just("when = \"new.a ==\"\n".to_string()),
        "[a-z_ =\\[\\]\"0-9.\n]{0,20}",
    ];
    runner()
        .run(
            &(
                "[a-z0-9_.,+ -]{0,30}",
                prop::collection::vec(manifest_line, 0..12),
            ),
            |(order, lines)| {
                let _ = parse_order(&order);
                let mut files = BTreeMap::new();
                files.insert("plinth.toml".to_string(), lines.concat());
                files.insert(
                    "functions/f.js".to_string(),
                    "export default () => 1".to_string(),
                );
                let _ = check(
                    &files,
                    LimitCaps {
                        max_timeout_ms: 60_000,
                        max_memory_mb: 256,
                    },
                );
                Ok(())
            },
        )
        .unwrap();
}
