use serde_json::json;

use super::*;
use crate::rules::{CmpOp, DocMeta, Field, Operation};

fn read(src: &str) -> Expression {
    Expression::compile(src, ExprKind::Rule(Operation::Read))
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn err(src: &str, kind: ExprKind) -> CelError {
    match Expression::compile(src, kind) {
        Ok(_) => panic!("`{src}` compiled"),
        Err(e) => e,
    }
}

fn alice() -> AuthInfo {
    AuthInfo {
        uid: "alice".into(),
        email: "alice@example.com".into(),
        email_verified: true,
        claims: json!({"admin": true, "teams": ["red"]}),
    }
}

fn eval(src: &str, auth: Option<&AuthInfo>, doc: serde_json::Value) -> bool {
    let e = read(src);
    let meta = DocMeta {
        version: 3,
        created_at: 1000,
        updated_at: 2000,
    };
    let b = Bindings {
        auth,
        id: "d1",
        doc: Some(&doc),
        new: None,
        meta: Some(&meta),
        now_ms: 5000,
    };
    let v = e.evaluate(&b);
    assert_eq!(e.explain(&b).allowed, v, "explain disagrees on {src}");
    v
}

#[test]
fn compile_errors_have_positions() {
    let read = ExprKind::Rule(Operation::Read);
    // (source, line, column, message fragment)
    let table: &[(&str, u32, u32, &str)] = &[
        ("", 1, 1, "end of expression"),
        ("auth != null &&", 1, 16, "unexpected end of expression"),
        ("(doc.a == 1", 1, 12, "missing ')'"),
        ("doc.a == 1)", 1, 11, "unexpected ')'"),
        ("doc.a == 1 &&\n  doc.b ==", 2, 11, "end of expression"),
        ("'é' == 1 &&", 1, 12, "end of expression"),
        ("doc.a # 1", 1, 7, "invalid character '#'"),
        ("foo == 1", 1, 1, "unknown variable 'foo'"),
        (
            "doc.a == 1 && new.a == 2",
            1,
            15,
            "'new' is not available in a read rule",
        ),
        ("'a' < 1", 1, 5, "cannot compare a string with an int"),
        (
            "doc.a == ('a' + 1)",
            1,
            15,
            "cannot apply '+' to a string and an int",
        ),
        ("true && 'x'", 1, 9, "'&&' needs booleans"),
        ("!'x'", 1, 2, "'!' needs booleans"),
        ("1 && true", 1, 1, "'&&' needs booleans"),
        (
            "1 + 2",
            1,
            1,
            "must be a boolean expression, this one is an int",
        ),
        (
            "'x'",
            1,
            1,
            "must be a boolean expression, this one is a string",
        ),
        ("1 == 'a'", 1, 3, "always false"),
        ("id == null", 1, 4, "always false"),
        ("null < 1", 1, 1, "cannot be ordered"),
        ("doc.a.foo(1)", 1, 7, "unknown function 'foo'"),
        (
            "lowerAscii(doc.a) == 'x'",
            1,
            1,
            "unknown function 'lowerAscii'",
        ),
        ("size(doc.a, 1) == 1", 1, 1, "'size' takes 1 argument"),
        ("doc.a.startsWith(1)", 1, 18, "'startsWith' needs strings"),
        ("doc.a.matches('[')", 1, 15, "invalid regular expression"),
        ("'a' in 'abc'", 1, 8, "'in' needs a list or a map"),
        ("auth.name == 'x'", 1, 6, "auth has no field 'name'"),
        ("id.x == 1", 1, 3, "cannot select field 'x' of a string"),
        (
            "doc.a == 1 + 1.0",
            1,
            12,
            "cannot apply '+' to an int and a double",
        ),
        (
            "[1].exists(doc, doc == 1)",
            1,
            11,
            "would hide the variable 'doc'",
        ),
        ("doc.a.?b == 1", 1, 6, "syntax error"),
        (
            "[1].all(a, [1].all(b, [1].all(c, true)))",
            1,
            30,
            "nest at most 2 deep",
        ),
    ];
    for (src, line, column, fragment) in table {
        let e = err(src, read);
        assert!(
            e.message.contains(fragment) && e.line == *line && e.column == *column,
            "`{src}`: got {}:{}: {} (wanted {line}:{column}: …{fragment}…)",
            e.line,
            e.column,
            e.message
        );
    }
}

#[test]
fn size_limits() {
    let long = format!("doc.a == '{}'", "x".repeat(5000));
    assert!(err(&long, ExprKind::Filter).message.contains("too long"));
    let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
    let e = err(&deep, ExprKind::Filter);
    assert!(e.message.contains("nest too deeply"), "{e}");
    assert_eq!((e.line, e.column), (1, 33));
    let chain = format!("doc.a == 1{}", " + 1".repeat(70));
    assert!(
        err(&chain, ExprKind::Filter)
            .message
            .contains("nested too deeply")
    );
    let many = format!(
        "doc.a in [{}]",
        (0..1100)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(many.len() < 4096 + 2000);
    let short_many = format!(
        "doc.a in [{}]",
        (0..1001)
            .map(|i| (i % 10).to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(
        err(&short_many, ExprKind::Filter)
            .message
            .contains("too large")
    );
    // a deep but bracket-free chain within 4 KiB does not overflow the parser
    let plus = format!("doc.a == {}1", "1+".repeat(2000));
    assert!(Expression::compile(&plus, ExprKind::Filter).is_err());
    let sel = format!("doc{} == 1", ".b".repeat(1500));
    assert!(Expression::compile(&sel, ExprKind::Filter).is_err());
}

#[test]
fn variables_per_kind() {
    use ExprKind::*;
    let cases: &[(ExprKind, &[&str])] = &[
        (
            Rule(Operation::Read),
            &[
                "auth",
                "doc",
                "id",
                "now",
                "version",
                "created_at",
                "updated_at",
            ],
        ),
        (Rule(Operation::Create), &["auth", "new", "id", "now"]),
        (
            Rule(Operation::Update),
            &["auth", "doc", "new", "id", "now"],
        ),
        (Rule(Operation::Delete), &["auth", "doc", "id", "now"]),
        (
            Filter,
            &[
                "auth",
                "doc",
                "id",
                "now",
                "version",
                "created_at",
                "updated_at",
            ],
        ),
        (Condition, &["auth", "doc", "new", "id", "now"]),
    ];
    for (kind, allowed) in cases {
        for v in crate::rules::values::VARIABLES {
            let src = format!("{v} == {v}");
            let r = Expression::compile(&src, *kind);
            assert_eq!(r.is_ok(), allowed.contains(&v), "{kind:?} {v}: {r:?}");
        }
    }
    let e = err("doc.a == 1", Rule(Operation::Create));
    assert!(e.message.contains("use 'new'"), "{e}");
}

#[test]
fn compile_never_panics_on_tricky_input() {
    for src in [
        "&&",
        "a &&",
        "((((",
        "))))",
        "\"unterminated",
        "'''",
        "r'",
        "b'\\x'",
        "\u{0}",
        "doc.",
        "doc[",
        "{",
        "{1:}",
        "[,]",
        "1 ? : 2",
        "has()",
        "has(doc)",
        "has(1)",
        "doc.a.exists()",
        "[].map(x)",
        "`a`",
        "doc.`a b`",
        "0x",
        "1e99999",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616u",
        "\\",
        "doc.a == '\\u123'",
    ] {
        let _ = Expression::compile(src, ExprKind::Filter);
    }
    let huge = "a".repeat(1 << 20);
    assert!(Expression::compile(&huge, ExprKind::Filter).is_err());
}

#[test]
fn evaluates_typical_rules() {
    let a = alice();
    let owner = "auth != null && doc.owner == auth.uid";
    assert!(eval(owner, Some(&a), json!({"owner": "alice"})));
    assert!(!eval(owner, Some(&a), json!({"owner": "bob"})));
    assert!(!eval(owner, None, json!({"owner": "alice"})));
    assert!(!eval(owner, Some(&a), json!({})));
    assert!(eval(
        "doc.public || doc.owner == auth.uid",
        None,
        json!({"public": true})
    ));
    assert!(!eval(
        "doc.public || doc.owner == auth.uid",
        None,
        json!({"public": false})
    ));
    assert!(eval("auth.claims.admin == true", Some(&a), json!({})));
    assert!(eval("'red' in auth.claims.teams", Some(&a), json!({})));
    assert!(eval("doc.n + 1 == 3", None, json!({"n": 2})));
    assert!(eval("doc.n * 2.0 == 3.0", None, json!({"n": 1.5})));
    assert!(!eval("doc.n * 2 == 3.0", None, json!({"n": 1.5}))); // no mixed arithmetic in CEL
    assert!(eval(
        "version == 3 && created_at < updated_at && now > 0",
        None,
        json!({})
    ));
    assert!(eval("id == 'd1'", None, json!({})));
    assert!(eval(
        "size(doc.tags) == 2 && doc.tags.exists(t, t == 'x')",
        None,
        json!({"tags": ["x", "y"]})
    ));
    assert!(eval(
        "doc.title.startsWith('He') && doc.title.matches('^H.*o$')",
        None,
        json!({"title": "Hello"})
    ));
    assert!(eval(
        "has(doc.a.b) && !has(doc.a.c)",
        None,
        json!({"a": {"b": null}})
    ));
    assert!(eval("doc['a-b'] == 1", None, json!({"a-b": 1})));
    // errors deny, non-booleans deny
    assert!(!eval("doc.missing == 1", None, json!({})));
    assert!(!eval("!(doc.missing == 1)", None, json!({})));
    assert!(!eval("doc.s < 1", None, json!({"s": "x"})));
    assert!(!eval("doc.x", None, json!({"x": 1})));
    assert!(eval("doc.x", None, json!({"x": true})));
    // error absorption
    assert!(eval("doc.missing == 1 || true", None, json!({})));
    assert!(!eval("doc.missing == 1 && false", None, json!({})));
    // non-negative integers are ints, not uints
    assert!(eval("doc.n - 1 == 4", None, json!({"n": 5})));
    assert!(eval("doc.n == 5u", None, json!({"n": 5})));
}

#[test]
fn create_and_update_rules_see_new() {
    let e = Expression::compile(
        "auth != null && new.owner == auth.uid && new.option in ['a', 'b']",
        ExprKind::Rule(Operation::Create),
    )
    .unwrap();
    let a = alice();
    let new = json!({"owner": "alice", "option": "a"});
    let b = Bindings {
        auth: Some(&a),
        id: "x",
        doc: None,
        new: Some(&new),
        meta: None,
        now_ms: 1,
    };
    assert!(e.evaluate(&b));
    let new = json!({"owner": "alice", "option": "z"});
    assert!(!e.evaluate(&Bindings {
        new: Some(&new),
        ..b
    }));
    let e =
        Expression::compile("doc.owner == new.owner", ExprKind::Rule(Operation::Update)).unwrap();
    let doc = json!({"owner": "alice", "big": [1, 2, 3]});
    assert!(e.evaluate(&Bindings {
        doc: Some(&doc),
        new: Some(&json!({"owner": "alice"})),
        ..b
    }));
}

#[test]
fn explain_names_the_deciding_leaf() {
    let a = alice();
    let e = read("auth != null && (doc.public || doc.owner == auth.uid)");
    let doc = json!({"public": false, "owner": "bob"});
    let b = Bindings {
        auth: Some(&a),
        id: "d",
        doc: Some(&doc),
        new: None,
        meta: None,
        now_ms: 0,
    };
    let x = e.explain(&b);
    assert!(!x.allowed);
    assert_eq!(x.decided_by, "doc.owner == auth.uid");
    assert_eq!(
        x.trace
            .iter()
            .map(|t| t.expression.as_str())
            .collect::<Vec<_>>(),
        vec!["auth != null", "doc.public", "doc.owner == auth.uid"]
    );
    assert_eq!(x.trace[0].value, "true");
    let x = e.explain(&Bindings { auth: None, ..b });
    assert_eq!(x.decided_by, "auth != null");
    assert_eq!(x.trace.len(), 1);
    let doc = json!({"owner": "alice"});
    let x = e.explain(&Bindings {
        doc: Some(&doc),
        ..b
    });
    assert!(x.allowed);
    assert_eq!(x.decided_by, "doc.owner == auth.uid");
    assert!(x.trace[1].value.starts_with("error: "), "{:?}", x.trace);
    let e = read("size(doc.tags) > 1 && !has(doc.hidden)");
    let doc = json!({"tags": [1, 2], "hidden": 1});
    let x = e.explain(&Bindings {
        doc: Some(&doc),
        ..b
    });
    assert_eq!(x.decided_by, "has(doc.hidden)");
    assert_eq!(x.trace[0].expression, "size(doc.tags) > 1");
}

fn pred(src: &str, auth: Option<&AuthInfo>) -> Predicate {
    Expression::compile(src, ExprKind::Filter)
        .unwrap()
        .to_predicate(&QueryBindings { auth, now_ms: 100 })
        .unwrap_or_else(|e| panic!("{src}: {e:?}"))
}

fn doc(p: &[&str]) -> Field {
    Field::Doc(p.iter().map(|s| s.to_string()).collect())
}

#[test]
fn predicate_shapes() {
    let a = alice();
    assert_eq!(
        pred("auth != null && doc.owner == auth.uid", Some(&a)),
        Predicate::Compare {
            field: doc(&["owner"]),
            op: CmpOp::Eq,
            value: json!("alice")
        }
    );
    assert_eq!(
        pred("auth != null && doc.owner == auth.uid", None),
        Predicate::False
    );
    assert_eq!(pred("doc.owner == auth.uid", None), Predicate::Unknown);
    assert_eq!(
        pred("5 < doc.n", None),
        Predicate::Compare {
            field: doc(&["n"]),
            op: CmpOp::Gt,
            value: json!(5)
        }
    );
    assert_eq!(
        pred("doc['a']['b c'] != 'x'", None),
        Predicate::Compare {
            field: doc(&["a", "b c"]),
            op: CmpOp::Ne,
            value: json!("x")
        }
    );
    assert_eq!(
        pred("doc.tag in ['a', 1]", None),
        Predicate::In {
            field: doc(&["tag"]),
            values: vec![json!("a"), json!(1)]
        }
    );
    assert_eq!(
        pred("has(doc.a.b)", None),
        Predicate::Has {
            field: doc(&["a", "b"])
        }
    );
    assert_eq!(
        pred("doc.done", None),
        Predicate::Compare {
            field: doc(&["done"]),
            op: CmpOp::Eq,
            value: json!(true)
        }
    );
    assert_eq!(
        pred("!doc.done", None),
        Predicate::Compare {
            field: doc(&["done"]),
            op: CmpOp::Eq,
            value: json!(false)
        }
    );
    assert_eq!(
        pred("id == 'x' || version >= now", None),
        Predicate::Or(vec![
            Predicate::Compare {
                field: Field::Id,
                op: CmpOp::Eq,
                value: json!("x")
            },
            Predicate::Compare {
                field: Field::Version,
                op: CmpOp::Ge,
                value: json!(100)
            },
        ])
    );
    assert_eq!(
        pred("id in [1, 'x']", None),
        Predicate::In {
            field: Field::Id,
            values: vec![json!("x")]
        }
    );
    assert_eq!(pred("id in [1]", None), Predicate::False);
    assert_eq!(pred("doc.a < auth.uid", None), Predicate::Unknown);
    assert_eq!(pred("true || doc.a == 1", None), Predicate::True);
    assert_eq!(
        pred("auth.uid in doc.members", Some(&a)),
        Predicate::Contains {
            field: doc(&["members"]),
            value: json!("alice")
        }
    );
    assert_eq!(pred("auth.uid in doc.members", None), Predicate::Unknown);
}

#[test]
fn untranslatable_constructs_are_named() {
    for (src, column, fragment) in [
        ("size(doc.tags) > 0", 1, "size()"),
        ("doc.a + 1 == 2", 1, "arithmetic ('+')"),
        ("doc.a == doc.b", 1, "two document values"),
        (
            "doc.a in doc.members",
            1,
            "membership between two document values",
        ),
        ("doc.tags.exists(t, t == 1)", 1, "comprehension"),
        ("auth != null && doc.l[0] == 1", 17, "list index"),
        ("doc[auth.uid] == 1", 1, "computed key"),
        ("doc.name.endsWith('a')", 1, "endsWith()"),
    ] {
        let e = Expression::compile(src, ExprKind::Filter).unwrap();
        let err = e.check_translatable().expect_err(src);
        assert!(
            err.message.contains(fragment) && err.column == column,
            "{src}: {err:?}"
        );
    }
}

#[test]
fn equality_paths_of_the_top_level_conjunction() {
    let e = read(
        "doc.poll == 'p' && auth != null && doc.option in ['a'] && (doc.x == 1 || doc.y == 2) && 'k' == doc.k.j",
    );
    assert_eq!(
        e.equality_paths(),
        vec![
            vec!["poll".to_string()],
            vec!["option".to_string()],
            vec!["k".to_string(), "j".to_string()]
        ]
    );
}

#[test]
fn evaluation_cost() {
    let e = read("auth != null && (doc.owner == auth.uid || doc.public == true) && doc.n < 10");
    let a = alice();
    let doc = json!({"owner": "alice", "public": false, "n": 3, "title": "hello", "body": "x".repeat(200), "tags": ["a", "b"]});
    let b = Bindings {
        auth: Some(&a),
        id: "d",
        doc: Some(&doc),
        new: None,
        meta: None,
        now_ms: 0,
    };
    assert!(e.evaluate(&b));
    let n = 20_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(e.evaluate(std::hint::black_box(&b)));
    }
    let per = t.elapsed() / n;
    println!("evaluate: {per:?} per call");
}

/// Prints what compiling costs (`cargo test --release --lib cost -- --nocapture`).
#[test]
fn compile_cost_breakdown() {
    let src = "auth != null && (doc.owner == auth.uid || doc.public == true) && doc.n < 10";
    let t = std::time::Instant::now();
    for _ in 0..100 {
        std::hint::black_box(cel::parser::Parser::default().parse(src).unwrap());
    }
    println!("parse only: {:?}", t.elapsed() / 100);
    let t = std::time::Instant::now();
    for _ in 0..100 {
        std::hint::black_box(crate::rules::check::compile(src, ExprKind::Filter).is_ok());
    }
    println!("parse and check: {:?}", t.elapsed() / 100);
    let t = std::time::Instant::now();
    for _ in 0..100 {
        std::hint::black_box(Expression::compile(src, ExprKind::Filter).unwrap());
    }
    println!(
        "Expression::compile (on its own thread): {:?}",
        t.elapsed() / 100
    );
}

#[test]
fn worst_case_inputs_do_not_overflow_the_parser_stack() {
    let n = super::check::MAX_NESTING;
    let fill = |unit: &str, room: usize| unit.repeat(room / unit.len());
    let cases = [
        format!(
            "{}a{}{}",
            "(".repeat(n),
            fill(".b", 4000 - 3 * n),
            ")".repeat(n)
        ),
        format!(
            "{}1{}{}",
            "(".repeat(n),
            fill("+1", 4000 - 3 * n),
            ")".repeat(n)
        ),
        format!(
            "{}1{}{}",
            "f(".repeat(n),
            fill("<1", 4000 - 4 * n),
            ")".repeat(n)
        ),
        format!(
            "{}1{}{}",
            "[".repeat(n),
            fill("[0]", 4000 - 3 * n),
            "]".repeat(n)
        ),
        format!("{}1{}", "{1:".repeat(n), "}".repeat(n)),
        format!("{}{}", "(".repeat(n), fill("!", 4000)),
        format!("{}{}", "a ? ".repeat(n), fill("b ? c : ", 3000)),
        format!("{}x{}", "[".repeat(n), fill("].map(x, [", 3500)),
        fill("-", 4096),
        fill("a.b(", 4096),
    ];
    for src in cases {
        assert!(src.len() <= 4096 || Expression::compile(&src, ExprKind::Filter).is_err());
        let r = Expression::compile(&src, ExprKind::Filter);
        println!("{} bytes: {:?}", src.len(), r.map(|_| ()));
    }
}

#[test]
fn expressions_and_rule_sets_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Expression>();
    assert_send_sync::<crate::rules::RuleSet>();
}

#[test]
fn the_deepest_allowed_expressions_evaluate_on_a_small_stack() {
    let sources = [
        format!("doc.a == 0{}", " + 1".repeat(60)),
        format!("{}doc.a", "!".repeat(60)),
        format!(
            "{}doc.a == 1{}",
            "(".repeat(30),
            " || doc.b == 2)".repeat(30)
        ),
        format!("{}doc.a{}", "(doc.b ? ".repeat(30), " : false)".repeat(30)),
    ];
    std::thread::Builder::new()
        .stack_size(1 << 20) // half a tokio worker's stack
        .spawn(move || {
            let doc = json!({"a": 60, "b": true});
            for src in &sources {
                let e = Expression::compile(src, ExprKind::Filter)
                    .unwrap_or_else(|e| panic!("{src}: {e}"));
                let b = Bindings {
                    auth: None,
                    id: "x",
                    doc: Some(&doc),
                    new: None,
                    meta: None,
                    now_ms: 0,
                };
                let v = e.evaluate(&b);
                assert_eq!(e.explain(&b).allowed, v, "{src}");
                let _ = e.to_predicate(&QueryBindings {
                    auth: None,
                    now_ms: 0,
                });
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Small shallow sources are parsed on the caller's thread: their worst cases must fit a
/// small stack with room to spare.
#[test]
fn small_sources_parse_inline_on_a_small_stack() {
    let n = super::INLINE_MAX_NESTING;
    let room = super::INLINE_MAX_BYTES;
    let fill = |unit: &str, room: usize| unit.repeat(room / unit.len());
    let cases = [
        format!(
            "{}a{}{}",
            "(".repeat(n),
            fill(".b", room - 2 * n - 1),
            ")".repeat(n)
        ),
        format!(
            "{}1{}{}",
            "(".repeat(n),
            fill("+1", room - 2 * n - 1),
            ")".repeat(n)
        ),
        format!(
            "{}1{}{}",
            "f(".repeat(n),
            fill("<1", room - 3 * n - 1),
            ")".repeat(n)
        ),
        format!("{}1{}", "[".repeat(n), "]".repeat(n)),
        format!("{}{}", "(".repeat(n), fill("!", room - n)),
        fill("-", room),
        fill("a.b(", room),
        fill("a?", room),
        fill("[", room),
    ];
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            for src in cases {
                assert!(src.len() <= room, "{}", src.len());
                let _ = Expression::compile(&src, ExprKind::Filter);
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn uses_only_names_the_variables_an_expression_reads() {
    let c = |s: &str| Expression::compile(s, ExprKind::Condition).unwrap();
    assert!(c("auth != null").uses_only(&["auth", "now"]));
    assert!(c("auth != null && now > 0").uses_only(&["auth", "now"]));
    assert!(c("true").uses_only(&["auth", "now"]));
    assert!(!c("auth != null && new.poll != ''").uses_only(&["auth", "now"]));
    assert!(!c("doc.owner == auth.uid").uses_only(&["auth", "now"]));
    assert!(!c("id == 'x'").uses_only(&["auth", "now"]));
}
