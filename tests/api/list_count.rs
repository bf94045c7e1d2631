//! `?count=true` on lists: the number of documents the list matches over all its pages
//! (read rule and filter), the same whatever the page, bounded by a cap.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::documents::{docs, tenant_with_key, urlencode};
use crate::support::*;

backend_tests!(counts_what_the_list_matches, counting_stops_at_the_cap);

async fn counts_what_the_list_matches(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    crate::lists::seed(&app, &key, 20).await;
    let items = docs("shop", "items");
    let count = |page: &Value| (page["count"].as_i64(), page["count_capped"].as_bool());

    // Everything, one short page: the count is of all pages.
    let page = app
        .get(&format!("{items}?count=true&limit=5"), Some(&key))
        .await
        .ok(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert_eq!(count(&page), (Some(20), Some(false)));
    // The next page counts the same.
    let cursor = page["next_cursor"].as_str().unwrap();
    let page = app
        .get(
            &format!("{items}?count=true&limit=5&cursor={}", urlencode(cursor)),
            Some(&key),
        )
        .await
        .ok(200);
    assert_eq!(count(&page), (Some(20), Some(false)));

    // With a filter: only its matches (tags a, b, c in turn: 7 of 20 are 'a').
    let f = urlencode("doc.tag == 'a'");
    let page = app
        .get(&format!("{items}?count=true&filter={f}"), Some(&key))
        .await
        .ok(200);
    assert_eq!(count(&page), (Some(7), Some(false)));
    let f = urlencode("doc.tag == 'none'");
    let page = app
        .get(&format!("{items}?count=true&filter={f}"), Some(&key))
        .await
        .ok(200);
    assert_eq!(count(&page), (Some(0), Some(false)));

    // Not asked: not counted; a value that is not a boolean is refused.
    let page = app
        .get(&format!("{items}?limit=5"), Some(&key))
        .await
        .ok(200);
    assert!(page.get("count").is_none() && page.get("count_capped").is_none());
    let page = app
        .get(&format!("{items}?count=false"), Some(&key))
        .await
        .ok(200);
    assert!(page.get("count").is_none());
    let r = app.get(&format!("{items}?count=maybe"), Some(&key)).await;
    assert_eq!(r.status, 400, "{}", r.text);

    // An end user counts only what the read rule lets them read.
    crate::rules::install_rules(
        &mut app,
        "shop",
        "[notes]\nread = \"doc.owner == auth.uid\"\ncreate = \"true\"\nindexes = [[\"owner\"]]\n",
    )
    .await
    .ok(200);
    let alice = app.signup("shop", "alice@shop.test").await;
    let bob = app.signup("shop", "bob@shop.test").await;
    let writes: Vec<Value> = (0..9)
        .map(|i| {
            let owner = if i % 3 == 0 {
                &alice.user_id
            } else {
                &bob.user_id
            };
            json!({"op": "create", "collection": "notes", "data": {"owner": owner}})
        })
        .collect();
    app.post("/v1/t/shop/batch", Some(&key), json!({"writes": writes}))
        .await
        .ok(200);
    let notes = docs("shop", "notes");
    let page = app
        .get(&format!("{notes}?count=true&limit=1"), Some(&alice.access))
        .await
        .ok(200);
    assert_eq!(count(&page), (Some(3), Some(false)));
    let page = app
        .get(&format!("{notes}?count=true"), Some(&bob.access))
        .await
        .ok(200);
    assert_eq!(count(&page), (Some(6), Some(false)));
}

/// The store counts no further than the cap plus one (the API's cap is 10,000; a small
/// one here shows the bound without writing 10,001 documents).
async fn counting_stops_at_the_cap(b: Backend) {
    use plinth::rules::{ExprKind, Expression, QueryBindings};
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    crate::lists::seed(&app, &key, 20).await;
    let state = app.running.as_ref().unwrap().state.clone();
    let scope = crate::documents::scope_of(&app, "shop").await;
    let count = |pred, cap| {
        let state = state.clone();
        let scope = scope.clone();
        async move {
            state
                .store
                .count_documents(&scope, "items", pred, cap)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(None, 5).await, 6);
    assert_eq!(count(None, 19).await, 20);
    assert_eq!(count(None, 20).await, 20);
    assert_eq!(count(None, 0).await, 1);
    let pred = Expression::compile("doc.n >= 10", ExprKind::Filter)
        .unwrap()
        .to_predicate(&QueryBindings {
            auth: None,
            now_ms: 0,
        })
        .unwrap();
    assert_eq!(count(Some(&pred), 100).await, 10);
    assert_eq!(count(Some(&pred), 3).await, 4);
    // A collection with no documents.
    assert_eq!(
        state
            .store
            .count_documents(&scope, "empty", None, 5)
            .await
            .unwrap(),
        0
    );
}
