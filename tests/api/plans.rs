//! Query plans of lists: each shape an index serves (docs/rules.md, "Indexes") is read
//! from that index, in the list's order, without a sort step, on both backends. The
//! plans are the database's own (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on
//! PostgreSQL) for the SQL a list runs, and the same lists through the API return the
//! documents the shape asks for, so a plan cannot be right for a wrong query.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::documents::{docs, tenant_with_key, urlencode};
use crate::support::*;

backend_tests!(index_plans_serve_each_supported_shape);

const RULES: &str = "[items]\nread = \"true\"\n\
    indexes = [[\"owner\"], [\"owner\", \"score\"], [\"owner\", \"name\"]]\n";

/// 20 owners × 50 documents, written one owner after another; `score` is a number (a
/// string for every tenth document, so type guards matter), `name` a string.
async fn seed(app: &TestApp, key: &str) {
    for owners in (0..20).collect::<Vec<_>>().chunks(10) {
        let writes: Vec<Value> = owners
            .iter()
            .flat_map(|owner| (0..50).map(move |i| (owner, i)))
            .map(|(owner, i)| {
                let score = if i % 10 == 9 {
                    json!(format!("s{i}"))
                } else {
                    json!(i)
                };
                json!({"op": "create", "collection": "items", "data": {
                    "owner": format!("u{owner}"), "i": i, "score": score,
                    "name": format!("{}{i:02}", ["ab", "ac", "b"][i % 3])}})
            })
            .collect();
        app.post("/v1/t/shop/batch", Some(key), json!({"writes": writes}))
            .await
            .ok(200);
    }
}

/// The plan of the list `filter` in `order`, one line per step, as the list runs it.
async fn plan(app: &TestApp, filter: &str, order: &str) -> String {
    let state = app.running.as_ref().unwrap().state.clone();
    let scope = crate::documents::scope_of(app, "shop").await;
    let plan = state
        .docs
        .explain_list(
            &scope,
            "items",
            plinth::documents::ListParams {
                filter: Some(filter.to_string()),
                order: Some(order.to_string()),
                limit: Some(20),
                cursor: None,
                count: false,
            },
        )
        .await
        .unwrap();
    let text = plan.join("\n");
    println!("-- {filter} / order={order}\n{text}");
    text
}

/// The `i`s of the first page of 20 of `filter` in `order`, through the API.
async fn page(app: &TestApp, key: &str, filter: &str, order: &str) -> Vec<i64> {
    let page = app
        .get(
            &format!(
                "{}?limit=20&filter={}&order={}",
                docs("shop", "items"),
                urlencode(filter),
                urlencode(order)
            ),
            Some(key),
        )
        .await
        .ok(200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["data"]["i"].as_i64().unwrap())
        .collect()
}

fn assert_served(shape: &str, text: &str) {
    assert!(text.contains("ix_t"), "{shape}: no index of ours:\n{text}");
    assert!(
        !text.contains("TEMP B-TREE") && !text.contains("Sort"),
        "{shape}: the rows are sorted after reading them:\n{text}"
    );
}

/// Whether the index search itself (not a filter on its rows) holds a condition with
/// `op` on `path`.
fn range_in_index(b: Backend, text: &str, path: &str, op: &str) -> bool {
    match b {
        // SEARCH documents USING INDEX ix (tenant_id=? AND ... AND <expr>>?)
        // (SQLite shows `<=` as `<` and `>=` as `>`)
        Backend::Sqlite => text
            .lines()
            .any(|l| l.contains("SEARCH") && l.contains(&format!("{}?", &op[..1]))),
        // Index Cond: (... AND ((data -> 'score'::text) > '5'::jsonb))
        Backend::Postgres => text.lines().any(|l| {
            l.contains("Index Cond") && l.contains(&format!("(data -> '{path}'::text) {op} "))
        }),
    }
}

async fn index_plans_serve_each_supported_shape(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    crate::rules::install_rules(&mut app, "shop", RULES)
        .await
        .ok(200);
    seed(&app, &key).await;

    let numbers = |p: &dyn Fn(i64) -> bool| -> Vec<i64> {
        (0..50).filter(|i| i % 10 != 9 && p(*i)).collect()
    };

    // Equality, default order.
    let f = "doc.owner == 'u19'";
    assert_served("equality", &plan(&app, f, "").await);
    assert_eq!(page(&app, &key, f, "").await, (0..20).collect::<Vec<_>>());

    // Equality, explicit order on the next indexed path, both directions.
    let text = plan(&app, f, "score").await;
    assert_served("equality + order", &text);
    let text = plan(&app, f, "-score").await;
    assert_served("equality + descending order", &text);
    // Where the strings go is the backend's (after numbers on SQLite, before on
    // PostgreSQL's jsonb); the numbers come in descending order.
    let desc: Vec<i64> = page(&app, &key, f, "-score")
        .await
        .into_iter()
        .filter(|i| i % 10 != 9)
        .collect();
    assert!(desc.len() >= 15, "{desc:?}");
    assert_eq!(
        desc,
        numbers(&|_| true)
            .into_iter()
            .rev()
            .take(desc.len())
            .collect::<Vec<_>>()
    );

    // Equality + a range on the last indexed path, ordered by it.
    for (op, want) in [
        ("<", numbers(&|i| i < 30)),
        ("<=", numbers(&|i| i <= 30)),
        (">", numbers(&|i| i > 30)),
        (">=", numbers(&|i| i >= 30)),
    ] {
        let f = format!("doc.owner == 'u19' && doc.score {op} 30");
        let text = plan(&app, &f, "score").await;
        assert_served(&format!("range {op}"), &text);
        assert!(
            range_in_index(b, &text, "score", op),
            "range {op} is a filter, not part of the index search:\n{text}"
        );
        let mut want = want;
        want.truncate(20);
        assert_eq!(page(&app, &key, &f, "score").await, want, "range {op}");
    }
    // A range the other way round and a range with both ends.
    let f = "30 < doc.score && doc.owner == 'u19' && doc.score <= 40";
    let text = plan(&app, f, "score").await;
    assert_served("two-sided range", &text);
    assert_eq!(
        page(&app, &key, f, "score").await,
        numbers(&|i| i > 30 && i <= 40)
    );

    // Equality + a prefix of the last indexed path, ordered by it.
    let f = "doc.owner == 'u19' && doc.name.startsWith('ab')";
    let text = plan(&app, f, "name").await;
    assert_served("startsWith", &text);
    // PostgreSQL's jsonb index orders strings by the database's collation, CEL by code
    // point: there the prefix is checked on the rows of the equality, in index order.
    assert!(
        b == Backend::Postgres || range_in_index(b, &text, "name", ">="),
        "the prefix is a filter, not part of the index search:\n{text}"
    );
    let want: Vec<i64> = (0..50).filter(|i| i % 3 == 0).take(20).collect();
    assert_eq!(page(&app, &key, f, "name").await, want);

    // A substring is no index's: it is checked on the rows of the equality.
    let f = "doc.owner == 'u19' && doc.name.contains('b0')";
    assert_served("contains", &plan(&app, f, "").await);
    // "ab00", "b02", "ab03"...: a name ending in b, then 0
    let want: Vec<i64> = (0..10).filter(|i| i % 3 != 1).collect();
    assert_eq!(page(&app, &key, f, "").await, want);
    // Its cost grows with the needle: over 64 characters it is refused.
    let long = "x".repeat(65);
    let r = app
        .get(
            &format!(
                "{}?filter={}",
                docs("shop", "items"),
                urlencode(&format!("doc.name.contains('{long}')"))
            ),
            Some(&key),
        )
        .await;
    let p = r.problem(400, "invalid_filter");
    assert!(p["detail"].as_str().unwrap().contains("64"), "{p}");

    // `in` on the indexed path: every value is looked up in the index.
    let f = "doc.owner in ['u3', 'u19'] && doc.score == 7";
    let text = plan(&app, f, "").await;
    // SQLite looks each value up. PostgreSQL 15 cannot keep an index's order past an
    // `= ANY` on a later column, so it reads our index whole or looks the values up,
    // as its statistics say; either way not the created_at walk.
    assert!(
        text.contains("ix_t") && !text.contains("documents_created"),
        "in: the values are not read from our index:\n{text}"
    );
    if b == Backend::Sqlite {
        assert!(text.contains("SEARCH documents USING INDEX ix_t"), "{text}");
    }
    assert_eq!(page(&app, &key, f, "").await, vec![7, 7]);
    let f = "doc.owner == 'u19' && doc.score in [3, 5, 8]";
    let text = plan(&app, f, "score").await;
    assert_served("in, ordered by the path", &text);
    assert_eq!(page(&app, &key, f, "score").await, vec![3, 5, 8]);
}
