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

// ---- WebSocket client messages (docs/realtime.md, "Protocol" and "Errors") ----

const CLIENT_TYPES: [&str; 4] = ["auth", "subscribe", "unsubscribe", "ping"];

/// The documented answer to a frame the parser refuses: an `error` frame without `id`
/// whose code is `unknown_type` exactly when the frame is a JSON object with a string
/// `type` the protocol does not have, `malformed_message` otherwise.
fn expected_refusal(text: &str) -> &'static str {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => match m.get("type") {
            Some(Value::String(t)) if !CLIENT_TYPES.contains(&t.as_str()) => "unknown_type",
            _ => "malformed_message",
        },
        _ => "malformed_message",
    }
}

fn check_refusal(text: &str, frame: &str) -> Result<(), TestCaseError> {
    let v: Value = serde_json::from_str(frame)
        .map_err(|e| TestCaseError::fail(format!("error frame is not JSON ({e}): {frame}")))?;
    prop_assert_eq!(&v["type"], "error", "{}", frame);
    prop_assert!(v.get("id").is_none(), "{}", frame);
    prop_assert_eq!(
        v["error"]["code"].as_str(),
        Some(expected_refusal(text)),
        "{:?} -> {}",
        text,
        frame
    );
    prop_assert!(v["error"]["message"].is_string(), "{}", frame);
    Ok(())
}

/// The message a JSON value denotes by the documented grammar, or None when it is not
/// one: unknown fields are ignored, optional fields may be absent or null.
fn oracle_message(v: &Value) -> Option<plinth::realtime::ClientMsg> {
    use plinth::realtime::{ClientMsg, Subscribe};
    let m = v.as_object()?;
    let string = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    let optional_string = |k: &str| match m.get(k) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    };
    match m.get("type")?.as_str()? {
        "ping" => Some(ClientMsg::Ping),
        "auth" => Some(ClientMsg::Auth {
            token: string("token")?,
        }),
        "unsubscribe" => Some(ClientMsg::Unsubscribe { id: string("id")? }),
        "subscribe" => Some(ClientMsg::Subscribe(Subscribe {
            id: string("id")?,
            collection: string("collection")?,
            doc: optional_string("doc")?,
            filter: optional_string("filter")?,
            since: match m.get("since") {
                None | Some(Value::Null) => None,
                Some(n) => Some(n.as_i64()?),
            },
            snapshot: match m.get("snapshot") {
                None => false,
                Some(b) => b.as_bool()?,
            },
        })),
        _ => None,
    }
}

/// Any text (random characters, or bytes as a client's UTF-8 text frame carries them):
/// the parser answers a message or the documented error frame, never panics.
#[test]
fn websocket_text_never_panics_and_refusals_are_documented() {
    let text = prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        // Near-JSON: fragments of messages glued at random.
        prop::collection::vec(
            prop::sample::select(vec![
                "{",
                "}",
                "\"type\"",
                ":",
                ",",
                "\"ping\"",
                "\"subscribe\"",
                "\"id\"",
                "\"s1\"",
                "\"since\"",
                "1e400",
                "-1",
                "null",
                "[",
                "]",
                "\"\\u0000\"",
                " ",
                "\"\\ud800\"",
                "true",
            ]),
            0..16
        )
        .prop_map(|p| p.concat()),
    ];
    runner()
        .run(&text, |text| {
            match plinth::realtime::parse_client(&text) {
                Ok(msg) => {
                    let v: Value = serde_json::from_str(&text).map_err(|e| {
                        TestCaseError::fail(format!("accepted non-JSON ({e}): {text:?}"))
                    })?;
                    prop_assert_eq!(oracle_message(&v), Some(msg), "{:?}", text);
                }
                Err(frame) => check_refusal(&text, &frame)?,
            }
            Ok(())
        })
        .unwrap();
}

/// Objects of the right field names with values of every type: accepted exactly when
/// they follow the documented grammar (then as the message they denote), refused with
/// the documented code otherwise.
#[test]
fn websocket_messages_follow_the_documented_grammar() {
    let value = prop_oneof![
        json_value(),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::from)),
        ".{0,12}".prop_map(Value::from),
    ];
    let ty = prop_oneof![
        prop::sample::select(vec![
            "auth",
            "subscribe",
            "unsubscribe",
            "ping",
            "Ping",
            "",
            "pong",
            "change",
            "error",
        ])
        .prop_map(Value::from),
        ".{0,6}".prop_map(Value::from),
        value.clone(),
    ];
    let field = prop::sample::select(vec![
        "token",
        "id",
        "collection",
        "doc",
        "filter",
        "since",
        "snapshot",
        "extra",
        "Type",
    ]);
    let object = (
        prop::option::weighted(0.95, ty),
        prop::collection::btree_map(field, value, 0..7),
    )
        .prop_map(|(ty, fields)| {
            let mut m: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if let Some(t) = ty {
                m.insert("type".into(), t);
            }
            Value::Object(m)
        });
    runner()
        .run(&object, |v| {
            let text = v.to_string();
            match (plinth::realtime::parse_client(&text), oracle_message(&v)) {
                (Ok(msg), Some(expected)) => prop_assert_eq!(msg, expected, "{}", text),
                (Ok(msg), None) => {
                    return Err(TestCaseError::fail(format!("accepted {text} as {msg:?}")));
                }
                (Err(frame), Some(expected)) => {
                    return Err(TestCaseError::fail(format!(
                        "refused {text} ({frame}), a valid {expected:?}"
                    )));
                }
                (Err(frame), None) => check_refusal(&text, &frame)?,
            }
            Ok(())
        })
        .unwrap();
}

/// Every valid message, whatever its strings hold, reads back as itself.
#[test]
fn websocket_messages_round_trip() {
    use plinth::realtime::{ClientMsg, Subscribe};
    let s = || any::<String>();
    let msg = prop_oneof![
        Just(ClientMsg::Ping),
        s().prop_map(|token| ClientMsg::Auth { token }),
        s().prop_map(|id| ClientMsg::Unsubscribe { id }),
        (
            s(),
            s(),
            prop::option::of(s()),
            prop::option::of(s()),
            prop::option::of(any::<i64>()),
            any::<bool>()
        )
            .prop_map(|(id, collection, doc, filter, since, snapshot)| {
                ClientMsg::Subscribe(Subscribe {
                    id,
                    collection,
                    doc,
                    filter,
                    since,
                    snapshot,
                })
            }),
    ];
    runner()
        .run(&msg, |msg| {
            let v = match &msg {
                ClientMsg::Ping => json!({"type": "ping"}),
                ClientMsg::Auth { token } => json!({"type": "auth", "token": token}),
                ClientMsg::Unsubscribe { id } => json!({"type": "unsubscribe", "id": id}),
                ClientMsg::Subscribe(Subscribe {
                    id,
                    collection,
                    doc,
                    filter,
                    since,
                    snapshot,
                }) => json!({"type": "subscribe", "id": id, "collection": collection,
                    "doc": doc, "filter": filter, "since": since, "snapshot": snapshot}),
            };
            let parsed = plinth::realtime::parse_client(&v.to_string());
            prop_assert_eq!(parsed, Ok(msg));
            Ok(())
        })
        .unwrap();
}

// ---- Paths, names and credentials (docs/api.md, "Conventions" and "Authentication") ----

fn full_match(re: &str, s: &str) -> bool {
    regex::Regex::new(&format!("^(?:{re})$"))
        .expect("regex")
        .is_match(s)
}

/// Strings near the grammars: their characters, a few others, lengths around the limits.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-]{0,70}",
        "[a-zA-Z0-9_.-]{0,140}",
        "[a-z][a-z0-9_-]{60,66}",
        "[A-Za-z0-9_-]{125,132}",
        ".{0,12}",
        "[a-z ._/%é\\-]{0,8}",
    ]
}

/// Collection names, document ids, tenant slugs, function names and `order` field paths
/// are accepted exactly when they match the documented patterns (checked by a regex).
#[test]
fn names_follow_the_documented_grammar() {
    const RESERVED: [&str; 27] = [
        "admin",
        "api",
        "www",
        "app",
        "apps",
        "auth",
        "console",
        "dashboard",
        "docs",
        "help",
        "internal",
        "login",
        "logout",
        "mail",
        "metrics",
        "plinth",
        "public",
        "root",
        "static",
        "status",
        "support",
        "system",
        "tenant",
        "tenants",
        "healthz",
        "readyz",
        "openapi",
    ];
    let reserved = prop::sample::select(RESERVED.to_vec()).prop_map(str::to_string);
    let input = prop_oneof![9 => name_like(), 1 => reserved];
    runner()
        .run(&input, |s| {
            prop_assert_eq!(
                plinth::documents::valid_collection(&s),
                full_match("[a-z][a-z0-9_]{0,62}", &s),
                "collection {:?}",
                s
            );
            prop_assert_eq!(
                plinth::documents::valid_doc_id(&s),
                full_match("[A-Za-z0-9_-]{1,128}", &s),
                "doc id {:?}",
                s
            );
            prop_assert_eq!(
                plinth::tenancy::validate_slug(&s).is_ok(),
                full_match("[a-z][a-z0-9-]{2,39}", &s) && !RESERVED.contains(&s.as_str()),
                "slug {:?}",
                s
            );
            prop_assert_eq!(
                plinth::functions::bundle::valid_function_name(&s),
                full_match("[a-z][a-z0-9_-]{0,63}", &s),
                "function name {:?}",
                s
            );
            // `order`: a system field or a dotted path of identifiers of up to 64
            // characters, optionally after `doc.` (one key, no sign, no comma here).
            if !s.contains([',', '+', '-']) && s.trim() == s && !s.is_empty() {
                let ident = "[A-Za-z_][A-Za-z0-9_]{0,63}";
                let ok = full_match("id|version|created_at|updated_at", &s)
                    || full_match(&format!("(?:doc\\.)?{ident}(?:\\.{ident})*"), &s);
                prop_assert_eq!(parse_order(&s).is_ok(), ok, "order {:?}", s);
            }
            Ok(())
        })
        .unwrap();
}

/// `Authorization` headers: the token of `Bearer <token>` (scheme in any case, blanks
/// around), `None` without the header, 401 `invalid_token` for any other shape.
#[test]
fn bearer_headers_follow_the_documented_grammar() {
    use axum::http::{HeaderMap, HeaderValue, header};
    let scheme = prop_oneof![
        "[bB][eE][aA][rR][eE][rR]",
        Just("Basic".to_string()),
        Just("Bearer:".to_string()),
        Just("Bearerx".to_string()),
        Just(String::new()),
        "[a-zA-Z]{0,7}",
    ];
    let blank = "[ \t]{0,3}";
    let token = prop_oneof![
        "[A-Za-z0-9._~+/=-]{0,40}",
        "[ -~\t]{0,20}",
        prop::collection::vec(any::<u8>(), 0..12)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let header =
        (blank, scheme, blank, token, blank).prop_map(|(a, s, b, t, c)| format!("{a}{s}{b}{t}{c}"));
    let oracle =
        regex::Regex::new("^[ \t]*(?i:bearer) [ \t]*([^ \t](?:.*[^ \t])?)[ \t]*$").expect("regex");
    runner()
        .run(&header, |raw| {
            let Ok(value) = HeaderValue::from_bytes(raw.as_bytes()) else {
                return Ok(()); // not a header value any client could send
            };
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value);
            let got = plinth::http::extract::bearer(&headers);
            let visible = raw
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
            let want = visible
                .then(|| oracle.captures(&raw))
                .flatten()
                .map(|c| c[1].to_string());
            match (got, want) {
                (Ok(Some(t)), Some(w)) => prop_assert_eq!(t, w.as_str(), "{:?}", raw),
                (Err(e), None) => {
                    prop_assert_eq!(e.status.as_u16(), 401);
                    prop_assert_eq!(e.code, "invalid_token");
                }
                (got, want) => {
                    return Err(TestCaseError::fail(format!(
                        "{raw:?}: got {:?}, documented {want:?}",
                        got.map_err(|e| e.code)
                    )));
                }
            }
            prop_assert!(matches!(
                plinth::http::extract::bearer(&HeaderMap::new()),
                Ok(None)
            ));
            Ok(())
        })
        .unwrap();
}

/// Service keys are `plk_<10 hex>_<secret>`: the prefix is found exactly for that shape;
/// reading the expiry of any token-like string never panics.
#[test]
fn keys_and_tokens_parse_without_panics() {
    use plinth::tenancy::service_keys::prefix_of;
    let candidate = prop_oneof![
        "plk_[0-9a-fA-F]{8,12}_.{0,10}",
        "plk_.{0,16}",
        "[a-z_]{0,6}.{0,10}",
        "[A-Za-z0-9_-]{0,30}\\.[A-Za-z0-9_=-]{0,60}\\.[A-Za-z0-9_-]{0,20}",
        any::<String>(),
    ];
    let oracle = regex::Regex::new("(?s)^(plk_[0-9A-Fa-f]{10})_.+$").expect("regex");
    runner()
        .run(&candidate, |s| {
            let want = oracle.captures(&s).map(|c| c[1].to_string());
            prop_assert_eq!(prefix_of(&s).map(str::to_string), want, "{:?}", s);
            let _ = plinth::auth::tokens::expiry_of(&s);
            Ok(())
        })
        .unwrap();
}

/// Percent-decoding of path segments by the `ApiPath` extractor: a segment that decodes
/// to UTF-8 reaches the handler as exactly those characters (`%XX` is a byte, a `%` not
/// followed by two hex digits stays as it is); one that does not is 400 `invalid_path`;
/// nothing is ever a 500.
#[test]
fn path_segments_decode_as_documented() {
    use axum::Router;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use plinth::http::extract::ApiPath;
    use tower::ServiceExt;

    let piece = prop_oneof![
        4 => "[A-Za-z0-9._~!$&'()*+,;=:@-]",
        4 => any::<u8>().prop_map(|b| format!("%{b:02X}")),
        2 => any::<u8>().prop_map(|b| format!("%{b:02x}")),
        1 => prop::sample::select(vec!["%", "%z", "%4", "%%", "%g0", "%C3", "%E2%82"])
            .prop_map(str::to_string),
    ];
    let segment = prop::collection::vec(piece, 1..10).prop_map(|p| p.concat());
    fn decode(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && let (Some(h), Some(l)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                )
            {
                out.push(h * 16 + l);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let app: Router = Router::new().route(
        "/t/{a}/x/{b}",
        get(|ApiPath((a, b)): ApiPath<(String, String)>| async move { axum::Json(json!([a, b])) }),
    );
    runner()
        .run(&(segment.clone(), segment), |(a, b)| {
            let uri = format!("/t/{a}/x/{b}");
            let Ok(req) = axum::http::Request::get(&uri).body(axum::body::Body::empty()) else {
                return Ok(()); // not a URI a client could send
            };
            let (status, body) = rt.block_on(async {
                let res = app.clone().oneshot(req).await.expect("infallible");
                let status = res.status().as_u16();
                let body = res.into_body().collect().await.expect("body").to_bytes();
                (
                    status,
                    serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
                )
            });
            match (String::from_utf8(decode(&a)), String::from_utf8(decode(&b))) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(status, 200, "{} {}", uri, body);
                    prop_assert_eq!(body, json!([a, b]), "{}", uri);
                }
                _ => {
                    prop_assert_eq!(status, 400, "{} {}", uri, body);
                    prop_assert_eq!(&body["code"], "invalid_path", "{}", uri);
                }
            }
            Ok(())
        })
        .unwrap();
}
