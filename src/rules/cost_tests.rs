use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::rules::{
    AuthInfo, Bindings, ExprKind, Expression, Operation, PredicateError, QueryBindings, Verdict,
};

use super::{EVAL_BUDGET, EVENT_BUDGET};

fn filter(src: &str) -> Expression {
    Expression::compile(src, ExprKind::Filter).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn bindings<'a>(doc: &'a Value, auth: Option<&'a AuthInfo>) -> Bindings<'a> {
    Bindings {
        auth,
        id: "d1",
        doc: Some(doc),
        new: None,
        meta: None,
        now_ms: 0,
    }
}

/// The probe's filter: a 320-element list mapped twice (33 million values unbounded).
fn bomb(n: usize) -> String {
    let l = format!("[{}]", vec!["1"; n].join(","));
    format!("size({l}.map(a, {l}.map(b, {l}))) > 0 && doc.v == 1")
}

fn anonymous() -> QueryBindings<'static> {
    QueryBindings {
        auth: None,
        now_ms: 0,
    }
}

#[test]
fn the_probes_filter_is_refused_quickly() {
    let f = filter(&bomb(320));
    assert!(f.may_be_costly());
    let t = Instant::now();
    let r = f.to_predicate(&anonymous());
    let took = t.elapsed();
    assert_eq!(r, Err(PredicateError::TooCostly));
    println!("refused in {took:?}");
    // Generous: unbounded it took seconds even optimised.
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn an_absorbing_operator_does_not_hide_a_spent_budget() {
    // `error || true` is true in CEL: the spent budget must still decide.
    let l = format!("[{}]", vec!["1"; 320].join(","));
    let f = filter(&format!(
        "doc.v == 1 && (size({l}.map(a, {l}.map(b, {l}))) > 0 || true)"
    ));
    assert_eq!(f.to_predicate(&anonymous()), Err(PredicateError::TooCostly));
    let doc = json!({"v": 1});
    assert_eq!(
        f.evaluate_within(&bindings(&doc, None), EVAL_BUDGET),
        Verdict::TooCostly
    );
    assert!(!f.evaluate(&bindings(&doc, None)));
}

/// Found by tests/fuzz.rs: a literal list inside a loop is built anew on every step, and
/// was not charged (267³ values ran 3 s under budget).
#[test]
fn literals_in_loops_are_charged() {
    let l = format!("[{}]", vec!["1"; 267].join(","));
    let f = filter(&format!(
        "{l}.all(a, size([{l}.all(b, size([{l}]) > 0)]) > 0)"
    ));
    assert_eq!(f.to_predicate(&anonymous()), Err(PredicateError::TooCostly));
}

#[test]
fn documents_cannot_multiply_work() {
    let big: Vec<Value> = (0..5_000).map(|i| json!(format!("tag-{i}"))).collect();
    let s = "x".repeat(1 << 20);
    let doc = json!({"tags": big, "other": big, "s": s});
    let cases = [
        // nested loops over document arrays
        "doc.tags.exists(t, doc.other.exists(o, o == t + 'z'))",
        // membership in a large list on every element
        "doc.tags.all(t, t in doc.other) && false",
        // string growth without a loop
        &format!("size({}) == 0", vec!["doc.s"; 50].join(" + ")),
        // string growth in a loop
        "doc.tags.map(t, doc.s + t).size() == 0",
    ];
    for src in cases {
        let f = filter(src);
        let t = Instant::now();
        let v = f.evaluate_within(&bindings(&doc, None), EVENT_BUDGET);
        println!("{src}: {v:?} in {:?}", t.elapsed());
        assert_eq!(v, Verdict::TooCostly, "{src}");
    }
}

#[test]
fn ordinary_expressions_keep_their_meaning() {
    let a = AuthInfo {
        uid: "alice".into(),
        email: "alice@example.com".into(),
        email_verified: true,
        claims: json!({"groups": ["red", "blue"]}),
    };
    let doc = json!({"tags": ["a", "b", "red"], "n": [1, 2, 3], "owner": "alice", "m": {"k": [1]}});
    let table: &[(&str, bool)] = &[
        ("doc.tags.exists(t, t == 'a')", true),
        ("doc.tags.exists(t, t in auth.claims.groups)", true),
        ("doc.tags.all(t, size(t) >= 1)", true),
        ("doc.tags.exists_one(t, t == 'b')", true),
        ("doc.n.map(x, x * 2) == [2, 4, 6]", true),
        ("doc.n.filter(x, x > 1) == [2, 3]", true),
        ("doc.n.map(x, x + 1).filter(y, y > 2).size() == 2", true),
        (
            "[1, 2].map(a, [3, 4].map(b, a * b)) == [[3, 4], [6, 8]]",
            true,
        ),
        ("doc.tags.exists(t, doc.m.k.exists(k, k == 1))", true),
        ("doc['owner'] + '!' == 'alice!'", true),
        ("doc.tags.map(t, t + doc.owner)[0] == 'aalice'", true),
        ("doc.tags.exists(t, t.matches('^r'))", true),
        ("doc.tags.all(t, t == 'a')", false),
        ("doc.n.exists(x, x > 5)", false),
        ("has(doc.m.k) && doc.tags.exists(t, has(doc.m.k))", true),
    ];
    for (src, want) in table {
        let f = filter(src);
        let b = bindings(&doc, Some(&a));
        assert_eq!(f.evaluate(&b), *want, "{src}");
        assert_eq!(
            f.evaluate_within(&b, EVENT_BUDGET) == Verdict::True,
            *want,
            "{src} under the event budget"
        );
        assert_eq!(f.explain(&b).allowed, *want, "explain of {src}");
    }
}

#[test]
fn untranslatable_messages_name_the_construct_not_the_meter() {
    let f = filter("doc.a + 'x' == 'yx'");
    match f.to_predicate(&anonymous()) {
        Err(PredicateError::Untranslatable(u)) => {
            assert!(u.message.contains("arithmetic ('+')"), "{}", u.message);
            assert!(!u.message.contains("__cost"), "{}", u.message);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rule_too_costly_for_everyone_is_refused_at_install() {
    let l = format!("[{}]", vec!["1"; 320].join(","));
    let rule = Expression::compile(
        &format!("size({l}.map(a, {l}.map(b, {l}))) > 0"),
        ExprKind::Rule(Operation::Read),
    )
    .unwrap();
    let err = rule.check_translatable().expect_err("too costly");
    assert!(err.message.contains("too costly"), "{}", err.message);
}

/// Prints what spending the budgets costs (`cargo test --release --lib budget_time --
/// --nocapture`; RELIABILITY.md quotes it).
#[test]
fn budget_time() {
    let f = filter(&bomb(320));
    let n = 5;
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(f.to_predicate(&anonymous()), Err(PredicateError::TooCostly));
    }
    println!(
        "EVAL_BUDGET spent by the probe's filter: {:?}",
        t.elapsed() / n
    );
    let doc = json!({"v": 1});
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(
            f.evaluate_within(&bindings(&doc, None), EVENT_BUDGET),
            Verdict::TooCostly
        );
    }
    println!("EVENT_BUDGET spent by the same: {:?}", t.elapsed() / n);
}
