//! The SQL path and the in-memory path of filters must agree: for random documents and
//! random filters, `Expression::evaluate` on each document equals "the rendered SQL
//! predicate IS TRUE" on SQLite and on PostgreSQL (when `TEST_POSTGRES_URL` is set; in CI
//! it must be).
//!
//! Test data stays in the ranges where CEL and SQL agree on numbers: integers within
//! ±2^53 (CEL compares int with double through f64), finite doubles, strings without NUL
//! (PostgreSQL's jsonb refuses \u0000).

use std::collections::BTreeSet;
use std::str::FromStr;

use plinth::rules::{AuthInfo, Bindings, DocMeta, ExprKind, Expression, QueryBindings};
use plinth::store::predicate_sql::{Dialect, Rendered, SqlParam, render};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

const NOW_MS: i64 = 5_000;

// ---------------------------------------------------------------------------------------
// Backends

struct Backends {
    sqlite: SqlitePool,
    pg: Option<(PgPool, String)>,
}

async fn sqlite_pool() -> SqlitePool {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .expect("sqlite");
    sqlx::query(
        "CREATE TABLE docs (id TEXT PRIMARY KEY, data TEXT NOT NULL, version BIGINT NOT NULL, \
         created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create sqlite table");
    pool
}

/// A fresh database on the server of `TEST_POSTGRES_URL`, with a default collation that
/// is not code-point order when the server has ICU (so `COLLATE "C"` is really needed).
async fn pg_pool() -> Option<(PgPool, String)> {
    let url = match std::env::var("TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true but TEST_POSTGRES_URL is not set: PostgreSQL tests cannot be skipped in CI"
                );
            }
            println!("SKIPPED (PostgreSQL): TEST_POSTGRES_URL is not set");
            return None;
        }
    };
    let admin_opts = PgConnectOptions::from_str(&url).expect("TEST_POSTGRES_URL");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(admin_opts.clone())
        .await
        .expect("connect to TEST_POSTGRES_URL");
    let name = format!("rules_sql_{}", uuid::Uuid::now_v7().simple());
    let mut created = false;
    for options in [
        "ENCODING 'UTF8' TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
        "ENCODING 'UTF8' TEMPLATE template0 LOCALE 'C.UTF-8'",
        "ENCODING 'UTF8' TEMPLATE template0",
        "",
    ] {
        let sql = format!("CREATE DATABASE {name} {options}");
        if sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&admin)
            .await
            .is_ok()
        {
            created = true;
            break;
        }
    }
    assert!(created, "could not create database {name}");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(admin_opts.database(&name))
        .await
        .expect("connect to the test database");
    sqlx::query(
        "CREATE TABLE docs (id TEXT PRIMARY KEY, data JSONB NOT NULL, version BIGINT NOT NULL, \
         created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create pg table");
    Some((pool, name))
}

impl Backends {
    /// A fresh SQLite database and, when configured, a fresh PostgreSQL database.
    fn new() -> (tokio::runtime::Runtime, Backends) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let b = rt.block_on(async {
            Backends {
                sqlite: sqlite_pool().await,
                pg: pg_pool().await,
            }
        });
        (rt, b)
    }
}

/// Drops the PostgreSQL database, also when a test fails (`WITH (FORCE)` closes the
/// pool's connections). Runs on its own thread: it may be dropped inside a runtime.
impl Drop for Backends {
    fn drop(&mut self) {
        let Some((_, name)) = self.pg.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let Ok(url) = std::env::var("TEST_POSTGRES_URL") else {
                return;
            };
            let Ok(opts) = PgConnectOptions::from_str(&url) else {
                return;
            };
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(admin) = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await
                {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await;
                }
            });
        })
        .join();
    }
}

fn meta(i: usize) -> DocMeta {
    let created_at = 1_000 + 100 * i as i64;
    DocMeta {
        version: i as i64 + 1,
        created_at,
        updated_at: created_at + 50,
    }
}

fn doc_id(i: usize) -> String {
    format!("d{i}")
}

async fn load_sqlite(pool: &SqlitePool, docs: &[Value]) {
    sqlx::query("DELETE FROM docs").execute(pool).await.unwrap();
    for (i, d) in docs.iter().enumerate() {
        let m = meta(i);
        sqlx::query("INSERT INTO docs (id, data, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(doc_id(i))
            .bind(d.to_string())
            .bind(m.version)
            .bind(m.created_at)
            .bind(m.updated_at)
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn load_pg(pool: &PgPool, docs: &[Value]) {
    sqlx::query("DELETE FROM docs").execute(pool).await.unwrap();
    for (i, d) in docs.iter().enumerate() {
        let m = meta(i);
        sqlx::query("INSERT INTO docs (id, data, version, created_at, updated_at) VALUES ($1, $2::jsonb, $3, $4, $5)")
            .bind(doc_id(i))
            .bind(d.to_string())
            .bind(m.version)
            .bind(m.created_at)
            .bind(m.updated_at)
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn select_sqlite(pool: &SqlitePool, r: &Rendered) -> Result<BTreeSet<String>, String> {
    let sql = format!("SELECT id FROM docs WHERE {}", r.sql);
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in &r.params {
        q = match p {
            SqlParam::Bool(b) => q.bind(*b),
            SqlParam::Int(i) => q.bind(*i),
            SqlParam::Float(f) => q.bind(*f),
            SqlParam::Text(s) | SqlParam::Json(s) => q.bind(s.clone()),
        };
    }
    let rows = q.fetch_all(pool).await.map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| r.get::<String, _>("id")).collect())
}

async fn select_pg(pool: &PgPool, r: &Rendered) -> Result<BTreeSet<String>, String> {
    let sql = format!("SELECT id FROM docs WHERE {}", r.sql);
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in &r.params {
        q = match p {
            SqlParam::Bool(b) => q.bind(*b),
            SqlParam::Int(i) => q.bind(*i),
            SqlParam::Float(f) => q.bind(*f),
            SqlParam::Text(s) | SqlParam::Json(s) => q.bind(s.clone()),
        };
    }
    let rows = q.fetch_all(pool).await.map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| r.get::<String, _>("id")).collect())
}

/// Compiles `filter`, evaluates it on every document and checks both backends select
/// exactly the documents it allows.
fn check(
    (rt, b): (&tokio::runtime::Runtime, &Backends),
    filter: &str,
    auth: Option<&AuthInfo>,
    docs: &[Value],
) -> Result<(), String> {
    let expr = Expression::compile(filter, ExprKind::Filter)
        .map_err(|e| format!("`{filter}` does not compile: {e}"))?;
    let expected: BTreeSet<String> = docs
        .iter()
        .enumerate()
        .filter(|(i, d)| {
            let m = meta(*i);
            let id = doc_id(*i);
            expr.evaluate(&Bindings {
                auth,
                id: &id,
                doc: Some(d),
                new: None,
                meta: Some(&m),
                now_ms: NOW_MS,
            })
        })
        .map(|(i, _)| doc_id(i))
        .collect();
    let pred = expr
        .to_predicate(&QueryBindings {
            auth,
            now_ms: NOW_MS,
        })
        .map_err(|e| format!("`{filter}` is not translatable: {e:?}"))?;
    rt.block_on(async {
        let r = render(&pred, Dialect::Sqlite, 1);
        load_sqlite(&b.sqlite, docs).await;
        let got = select_sqlite(&b.sqlite, &r).await;
        if got.as_ref() != Ok(&expected) {
            return Err(report(
                "SQLite", filter, auth, docs, &pred, &r, &expected, &got,
            ));
        }
        if let Some((pool, _)) = &b.pg {
            let r = render(&pred, Dialect::Postgres, 1);
            load_pg(pool, docs).await;
            let got = select_pg(pool, &r).await;
            if got.as_ref() != Ok(&expected) {
                return Err(report(
                    "PostgreSQL",
                    filter,
                    auth,
                    docs,
                    &pred,
                    &r,
                    &expected,
                    &got,
                ));
            }
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
fn report(
    backend: &str,
    filter: &str,
    auth: Option<&AuthInfo>,
    docs: &[Value],
    pred: &plinth::rules::Predicate,
    r: &Rendered,
    expected: &BTreeSet<String>,
    got: &Result<BTreeSet<String>, String>,
) -> String {
    let mut s = format!(
        "{backend} disagrees with CEL\nfilter: {filter}\nauth: {auth:?}\npredicate: {pred:?}\nsql: {}\nparams: {:?}\nCEL allows: {expected:?}\nSQL selects: {got:?}\n",
        r.sql, r.params
    );
    for (i, d) in docs.iter().enumerate() {
        s.push_str(&format!("  {}: {d}\n", doc_id(i)));
    }
    s
}

// ---------------------------------------------------------------------------------------
// Random data

const STRINGS: &[&str] = &[
    "",
    "a",
    "b",
    "A",
    "ab",
    "é",
    "😀",
    "新",
    "10",
    "true",
    "null",
    "it's",
    "\"q\"",
    "'; DROP TABLE docs; --",
    "back\\slash",
    "tab\t",
    "Z",
    "a b",
    "it\u{10FFFF}x",
    "\u{D7FF}z",
    "\u{E000}",
    // the JSON text SQLite's json_extract gives for an array or an object
    "[]",
    "[1,2]",
    "{}",
    "{\"x\":1}",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(Value::from),
        prop::sample::select(vec![0.5f64, -0.25, 1.0, 2.0, -0.0, 2.5, 1e15, 1e-7, 3.0])
            .prop_map(Value::from),
        (-1000.0f64..1000.0).prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(vec!["a", "b", "x-y"]), inner, 0..3)
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
        ]
    })
}

const KEYS: &[&str] = &["a", "b", "s", "n", "o", "l", "x-y", "it's", "é", "0"];

fn string() -> impl Strategy<Value = Value> {
    prop::sample::select(STRINGS).prop_map(Value::from)
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-5i64..5).prop_map(Value::from),
        prop::sample::select(vec![0.5f64, -0.25, 1.0, 2.0, -0.0, 2.5, 3.0]).prop_map(Value::from),
    ]
}

/// Most keys are present; `s` is mostly a string, `n` mostly a number, `o` mostly an
/// object, so comparisons often meet a value of their own type.
fn document() -> impl Strategy<Value = Value> {
    let typed = |preferred: BoxedStrategy<Value>| prop_oneof![3 => preferred, 1 => value()].boxed();
    let fields: Vec<BoxedStrategy<Option<Value>>> = KEYS
        .iter()
        .map(|k| {
            let v = match *k {
                "s" | "é" => typed(string().boxed()),
                "l" => typed(
                    prop::collection::vec(
                        prop_oneof![
                            number(),
                            string(),
                            any::<bool>().prop_map(Value::Bool),
                            Just(Value::Null)
                        ],
                        0..5,
                    )
                    .prop_map(Value::Array)
                    .boxed(),
                ),
                "n" | "0" => typed(number().boxed()),
                "o" => typed(
                    (value(), value(), any::<bool>())
                        .prop_map(|(a, b, xy)| {
                            let mut o = json!({"a": a, "b": b});
                            if xy {
                                o["x-y"] = json!(1);
                            }
                            o
                        })
                        .boxed(),
                ),
                _ => value().boxed(),
            };
            prop::option::weighted(0.75, v).boxed()
        })
        .collect();
    fields.prop_map(|values| {
        let mut m = serde_json::Map::new();
        for (k, v) in KEYS.iter().zip(values) {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        }
        Value::Object(m)
    })
}

fn auth() -> impl Strategy<Value = Option<AuthInfo>> {
    prop_oneof![
        1 => Just(None),
        3 => (
            prop::sample::select(vec!["alice", "bob", "it's", "a"]),
            any::<bool>(),
            -3i64..3,
            prop::collection::vec(prop::sample::select(STRINGS), 0..3),
        )
            .prop_map(|(uid, verified, level, tags)| Some(AuthInfo {
                uid: uid.to_string(),
                email: format!("{uid}@example.com"),
                email_verified: verified,
                claims: json!({"level": level, "tags": tags, "admin": verified, "ratio": 1.5,
                               "roles": {"a": 1, "b": 2}}),
            })),
    ]
}

fn cel_string(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn cel_literal(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{:?}", n.as_f64().unwrap()),
        },
        Value::String(s) => cel_string(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(cel_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", cel_string(k), cel_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

const PATHS: &[&str] = &[
    "doc.a",
    "doc.b",
    "doc.s",
    "doc.n",
    "doc.l",
    "doc.o",
    "doc.o.a",
    "doc.o.b",
    "doc.o['x-y']",
    "doc['x-y']",
    "doc[\"it's\"]",
    "doc['é']",
    "doc['0']",
    "doc.a.a",
    "doc",
];

const HAS_PATHS: &[&str] = &[
    "doc.a", "doc.o", "doc.o.a", "doc.o.zz", "doc.a.b", "doc.l.a", "doc.n",
];

/// Values compared with fields: literals, or computed from `auth` and `now`.
fn operand() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => scalar().prop_map(|v| cel_literal(&v)),
        2 => prop::sample::select(STRINGS).prop_map(cel_string),
        1 => value().prop_map(|v| cel_literal(&v)),
        3 => prop::sample::select(vec![
            "auth.uid",
            "auth.email_verified",
            "auth.claims.level",
            "auth.claims.ratio",
            "auth.claims.tags",
            "auth.claims.missing",
            "auth.claims.roles",
            "auth.claims.level + 1",
            "now - 4990",
            "double(now) / 1000.0",
            "1.0 / 0.0",
            "-1.0 / 0.0",
            "0.0 / 0.0",
            "b'a'",
            "size(auth.uid)",
            "dyn(auth)",
        ])
        .prop_map(String::from),
    ]
}

fn leaf() -> impl Strategy<Value = String> {
    let op = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]);
    let flip = |(p, op, v, flip): (&str, &str, String, bool)| {
        if flip {
            format!("{v} {op} {p}")
        } else {
            format!("{p} {op} {v}")
        }
    };
    prop_oneof![
        // comparisons that usually meet values of their own type
        3 => (
            prop::sample::select(vec!["doc.s", "doc['é']"]),
            op.clone(),
            prop_oneof![3 => prop::sample::select(STRINGS).prop_map(cel_string), 1 => Just("auth.uid".to_string())],
            any::<bool>(),
        )
            .prop_map(flip),
        3 => (
            prop::sample::select(vec!["doc.n", "doc['0']"]),
            op.clone(),
            prop_oneof![3 => number().prop_map(|v| cel_literal(&v)), 1 => Just("auth.claims.level".to_string())],
            any::<bool>(),
        )
            .prop_map(flip),
        6 => (prop::sample::select(PATHS), op.clone(), operand(), any::<bool>()).prop_map(
            |(p, op, v, flip)| if flip { format!("{v} {op} {p}") } else { format!("{p} {op} {v}") }
        ),
        2 => (prop::sample::select(PATHS), prop::collection::vec(scalar(), 0..4))
            .prop_map(|(p, vs)| format!("{p} in {}", cel_literal(&Value::Array(vs)))),
        1 => (prop::sample::select(PATHS), prop::sample::select(vec![
            "auth.claims.tags", "auth.claims.roles", "{'a': 1, 'é': 2, 'true': 3}", "{1: 'x', 2.0: 'y'}",
            "{true: 1}", "auth.claims.missing", "auth.uid", "[1.0 / 0.0, 0.0 / 0.0, 1]"
        ])).prop_map(|(p, c)| format!("{p} in {c}")),
        // membership in a document list or object
        2 => (operand(), prop::sample::select(vec!["doc.l", "doc.a", "doc.o", "doc.o.a", "doc['0']", "doc.zz"]))
            .prop_map(|(v, p)| format!("{v} in {p}")),
        2 => (prop_oneof![number(), string(), any::<bool>().prop_map(Value::Bool)], prop::sample::select(vec!["doc.l", "doc.o"]))
            .prop_map(|(v, p)| format!("{} in {p}", cel_literal(&v))),
        // prefixes: the index range [prefix, successor) on SQLite, starts_with on PG
        3 => (
            prop::sample::select(vec!["doc.s", "doc['é']", "doc.n", "doc.o", "doc.o.a", "doc.zz", "doc", "id"]),
            prop_oneof![
                4 => prop::sample::select(STRINGS).prop_map(cel_string),
                2 => prop::sample::select(vec!["it", "ba", "d", "d1", "\u{10FFFF}", "a\u{10FFFF}", "\u{D7FF}"]).prop_map(cel_string),
                1 => prop::sample::select(vec!["auth.uid", "auth.claims.level", "auth.claims.missing", "auth.claims.tags"]).prop_map(String::from),
            ],
        )
            .prop_map(|(p, v)| format!("{p}.startsWith({v})")),
        2 => (
            prop::sample::select(vec!["doc.s", "doc['é']", "doc.n", "doc.o", "doc.l", "doc.zz", "doc", "id"]),
            prop_oneof![
                4 => prop::sample::select(STRINGS).prop_map(cel_string),
                2 => prop::sample::select(vec!["t", "b", "1", "'", "😀", " "]).prop_map(cel_string),
                1 => prop::sample::select(vec!["auth.uid", "auth.claims.level"]).prop_map(String::from),
            ],
        )
            .prop_map(|(p, v)| format!("{p}.contains({v})")),
        2 => prop::sample::select(HAS_PATHS).prop_map(|p| format!("has({p})")),
        2 => prop::sample::select(PATHS).prop_map(String::from),
        2 => prop::sample::select(vec![
            "id == 'd3'", "id != 'd1'", "id < 'd4'", "id >= auth.uid", "id in ['d1', 'd2', 5]",
            "version > 3", "version <= 2.5", "created_at >= 1200", "updated_at < now",
            "version == auth.claims.level", "version in auth.claims.roles", "id in {'d0': 1}",
            "version < 1.0 / 0.0", "created_at != 0.0 / 0.0",
        ]).prop_map(String::from),
        1 => prop::sample::select(vec![
            "true", "false", "auth != null", "auth == null", "auth.uid == 'alice'",
            "auth.claims.admin", "auth.claims.missing == 1",
        ]).prop_map(String::from),
    ]
}

fn filter() -> impl Strategy<Value = String> {
    let compound = leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
            inner.clone().prop_map(|a| format!("!({a})")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(c, a, b)| format!("({c} ? {a} : {b})")),
        ]
    });
    // single comparisons show a wrong leaf best; compounds check the logic around them
    prop_oneof![2 => leaf(), 1 => leaf().prop_map(|l| format!("!({l})")), 3 => compound]
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn sql_and_memory_agree_on_random_filters() {
    // RULES_SQL_CASES raises the count for a longer soak
    let cases = std::env::var("RULES_SQL_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256u32);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let (rt, b) = Backends::new();
    let compiled = std::cell::Cell::new(0usize);
    let strategy = (filter(), auth(), prop::collection::vec(document(), 4..10));
    runner
        .run(&strategy, |(f, auth, docs)| {
            // generated filters may clash statically (`'a' < 1`): those are not run
            if Expression::compile(&f, ExprKind::Filter).is_err() {
                return Ok(());
            }
            compiled.set(compiled.get() + 1);
            if std::env::var("SHOW").is_ok() {
                println!(
                    "F {f}  AUTH {:?} DOCS {}",
                    auth.as_ref().map(|a| &a.uid),
                    docs.len()
                );
            }
            check((&rt, &b), &f, auth.as_ref(), &docs).map_err(TestCaseError::fail)
        })
        .unwrap();
    let compiled = compiled.get();
    println!("{compiled} of {cases} random filters compiled and were compared");
    assert!(
        compiled as u32 > cases / 2,
        "too few filters compiled: {compiled}"
    );
}

#[test]
fn compile_never_panics_on_arbitrary_strings() {
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let tokens = prop::sample::select(vec![
        "doc", "auth", ".", "a", "(", ")", "[", "]", "{", "}", "&&", "||", "!", "?", ":", "==",
        "<", "in", "'x'", "\"", "'", "1", "2.5", "-", "+", ",", "has", "size", " ", "\n", "\\",
        "null", "true", "exists", "x", "=>", "`", "é",
    ]);
    let strategy = prop_oneof![
        any::<String>(),
        "\\PC{0,200}",
        prop::collection::vec(tokens, 0..60).prop_map(|t| t.concat()),
    ];
    runner
        .run(&strategy, |s| {
            let r = std::panic::catch_unwind(|| {
                let _ = Expression::compile(&s, ExprKind::Filter);
                let _ = Expression::compile(&s, ExprKind::Rule(plinth::rules::Operation::Update));
            });
            prop_assert!(r.is_ok(), "compile panicked on {s:?}");
            Ok(())
        })
        .unwrap();
}

fn user(uid: &str) -> AuthInfo {
    AuthInfo {
        uid: uid.to_string(),
        email: format!("{uid}@example.com"),
        email_verified: true,
        claims: json!({"level": 1, "tags": ["a", "b"], "roles": {"a": 1}}),
    }
}

/// Documents that exercise the corners found so far.
fn corner_docs() -> Vec<Value> {
    vec![
        json!({"a": 1, "s": "a", "n": 1.0, "o": {"a": 1}}),
        json!({"a": 1.5, "s": "B", "n": true, "o": {"a": "1"}}),
        json!({"a": "1", "s": "é", "n": null, "o": null, "l": [1, "a"]}),
        json!({"a": true, "s": "😀", "n": [1], "o": {"a": [1, 2.0], "b": {"x": 1}}}),
        json!({"a": null, "s": "", "l": [], "x-y": 1, "it's": "q", "0": 0}),
        json!({"a": [[1, 2], {"x": 1}], "l": [null, 1.5, "alice", true], "o": {"a": [{"b": 1}]}}),
        json!({"a": [1, 2], "s": "a b", "o": {"a": {"b": 1.0}}, "l": {"0": 1}}),
        json!({"a": {"x": 1}, "s": "新", "o": "str"}),
        json!({"a": "[1,2]", "o": {}, "l": "[]", "n": 2, "s": "{}"}),
        json!({}),
    ]
}

#[test]
fn regression_cases() {
    let alice = user("alice");
    let cases: &[(&str, Option<&AuthInfo>)] = &[
        // booleans stored as JSON true/false are 1/0 in SQLite
        ("doc.a == 1", None),
        ("doc.a == true", None),
        ("doc.a != 1", None),
        ("doc.a", None),
        ("!doc.a", None),
        ("(doc.a ? true : false)", None),
        ("!(doc.a ? doc.s == 'a' : doc.s == 'B')", None),
        // order across types is an error (NULL), not FALSE
        ("!(doc.a < 2)", None),
        ("!(doc.s > 'a')", None),
        ("!(doc.a <= false)", None),
        // strings order by code point (PostgreSQL's default collation does not)
        ("doc.s < 'b'", None),
        ("doc.s >= 'B'", None),
        // null, lists, maps: equality by value, int == double
        ("doc.n == null", None),
        ("doc.a == [1, 2.0]", None),
        ("doc.a == {'x': 1.0}", None),
        ("doc.o == {'a': [1.0, 2]}", None),
        ("doc.o.a == [1, 2]", None),
        ("doc.o.a.b == 1", None),
        ("doc.l == []", None),
        ("doc.l != {'0': 1}", None),
        // a string equal to the JSON text of an array or object, and null fields, in
        // and out of a negation (the type guard is left out only where it cannot matter)
        ("doc.a == '[1,2]' || doc.o == '{}' || doc.l == '[]'", None),
        ("!(doc.a == '[1,2]') && doc.l != '[]'", None),
        ("doc.n == 'x' || doc.o == 'x'", None),
        ("!(doc.n == 'x') && doc.n != 2", None),
        (
            "doc.a == 1 || doc.a == 0 || doc.a == 2 || doc.a == 1.0",
            None,
        ),
        ("!(doc.a == 2) && doc.n != 0", None),
        // missing fields and non-object parents are errors
        ("!(doc.zz == 1)", None),
        ("!(doc.o.a == 1)", None),
        ("has(doc.o.a)", None),
        ("!has(doc.o.a)", None),
        ("!has(doc.a)", None),
        // membership: lists, maps, empty lists
        ("doc.a in [1, 'a', true, null, [1, 2]]", None),
        ("!(doc.a in [])", None),
        ("doc.s in auth.claims.roles", Some(&alice)),
        ("!(doc.a in auth.claims.roles)", Some(&alice)),
        ("doc.a in {1: 'x'}", None),
        // membership in document lists and objects
        ("1 in doc.l || 'a' in doc.l", None),
        ("!(1.0 in doc.l)", None),
        ("!('a' in doc.o)", None),
        ("!(1 in doc.o)", None),
        ("!(null in doc.l)", None),
        ("!([1, 2] in doc.a)", None),
        ("{'x': 1.0} in doc.a || {'b': 1} in doc.o.a", None),
        ("!(auth.uid in doc.l)", Some(&alice)),
        ("!((0.0 / 0.0) in doc.l)", None),
        ("!(b'a' in doc.o)", None),
        ("!({1: 2} in doc.o)", None),
        // keys that are not identifiers, and numeric-looking keys on arrays
        (
            "doc['x-y'] == 1 || doc[\"it's\"] == 'q' || doc['0'] == 0",
            None,
        ),
        ("!(doc.l['0'] == 1)", None),
        // values that have no JSON form
        ("doc.a != 0.0 / 0.0", None),
        ("!(doc.a == 1.0 / 0.0)", None),
        ("doc.a < 1.0 / 0.0", None),
        ("!(doc.a > -1.0 / 0.0)", None),
        ("doc.a != b'a'", None),
        // metadata
        ("id < 'd3' || version >= 7", None),
        ("!(id < dyn(1))", None),
        ("version == 2.0 || created_at in [1000, 1300.0]", None),
        // prefixes and substrings: strings only (a list or a map is an error)
        ("doc.s.startsWith('a')", None),
        ("!doc.s.startsWith('')", None),
        ("!doc.l.startsWith('a')", None),
        ("doc.s.startsWith('😀') || id.startsWith('d1')", None),
        ("doc.s.contains(' ')", None),
        ("!doc.s.contains('')", None),
        ("!doc.l.contains('a')", None),
        ("doc.l.contains('a') || doc.o.contains('a')", None),
        ("!doc.a.contains('1')", None),
        ("id.contains('3')", None),
        // the whole document
        ("doc == {}", None),
        ("doc != {'a': 1}", None),
    ];
    let (rt, b) = Backends::new();
    let mut failures = Vec::new();
    for (f, auth) in cases {
        if let Err(e) = check((&rt, &b), f, *auth, &corner_docs()) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An expression index on `path_sql` of a path serves equality and `in` on that path.
#[test]
fn equality_is_served_by_an_expression_index() {
    use plinth::names::FieldPath;
    use plinth::store::predicate_sql::path_sql;

    let (rt, b) = Backends::new();
    let alice = user("alice");
    let field = FieldPath::parse("poll").unwrap();
    for filter in [
        "auth != null && doc.poll == auth.uid",
        "doc.poll in ['a', 'b']",
    ] {
        let pred = Expression::compile(filter, ExprKind::Filter)
            .unwrap()
            .to_predicate(&QueryBindings {
                auth: Some(&alice),
                now_ms: NOW_MS,
            })
            .unwrap();
        rt.block_on(async {
            let index = path_sql(&field, Dialect::Sqlite);
            let sql = format!("CREATE INDEX IF NOT EXISTS docs_poll ON docs ({index})");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&b.sqlite)
                .await
                .unwrap();
            let r = render(&pred, Dialect::Sqlite, 1);
            let sql = format!("EXPLAIN QUERY PLAN SELECT id FROM docs WHERE {}", r.sql);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in &r.params {
                q = match p {
                    SqlParam::Text(s) | SqlParam::Json(s) => q.bind(s.clone()),
                    SqlParam::Int(i) => q.bind(*i),
                    SqlParam::Float(f) => q.bind(*f),
                    SqlParam::Bool(v) => q.bind(*v),
                };
            }
            let plan: Vec<String> = q
                .fetch_all(&b.sqlite)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>("detail"))
                .collect();
            assert!(
                plan.iter().any(|d| d.contains("USING INDEX docs_poll")),
                "SQLite does not use the index for `{filter}` ({}): {plan:?}",
                r.sql
            );

            if let Some((pool, _)) = &b.pg {
                let index = path_sql(&field, Dialect::Postgres);
                let sql = format!("CREATE INDEX IF NOT EXISTS docs_poll ON docs ({index})");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(pool)
                    .await
                    .unwrap();
                let mut conn = pool.acquire().await.unwrap();
                sqlx::query("SET enable_seqscan = off")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                let r = render(&pred, Dialect::Postgres, 1);
                let sql = format!("EXPLAIN SELECT id FROM docs WHERE {}", r.sql);
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for p in &r.params {
                    q = match p {
                        SqlParam::Text(s) | SqlParam::Json(s) => q.bind(s.clone()),
                        SqlParam::Int(i) => q.bind(*i),
                        SqlParam::Float(f) => q.bind(*f),
                        SqlParam::Bool(v) => q.bind(*v),
                    };
                }
                let plan: Vec<String> = q
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.get::<String, _>(0))
                    .collect();
                sqlx::query("RESET enable_seqscan")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                assert!(
                    plan.iter().any(|l| l.contains("docs_poll")),
                    "PostgreSQL does not use the index for `{filter}` ({}): {plan:?}",
                    r.sql
                );
            }
        });
    }
}
