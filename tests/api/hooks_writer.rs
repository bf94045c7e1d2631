//! What a hook is told about the writer: the same as an HTTP function is told about its
//! caller (`auth` and `service`), for a before hook and an after hook alike.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::functions::deploy;
use crate::rules::{NOTES_RULES, install_rules};
use crate::support::*;

backend_tests!(hooks_are_told_the_writer_as_http_functions_are_told_the_caller);

const MANIFEST: &str = r#"
[[http]]
name = "whoami"
function = "whoami"

[[hooks]]
function = "stamp"
collection = "notes"
on = ["create"]
phase = "before"

[[hooks]]
function = "record"
collection = "notes"
on = ["create"]
"#;

/// What the HTTP function is told about its caller.
const WHOAMI: &str = r#"
export default (req) => ({ status: 200, body: {
  auth: req.auth, service: 'service' in req ? req.service : 'missing' } });
"#;

/// The before hook stores what it is told in the document it lets through.
const STAMP: &str = r#"
export default (event) => ({ ...event.doc.data, told: {
  auth: event.auth, service: 'service' in event ? event.service : 'missing' } });
"#;

/// The after hook stores what it is told in `seen/{id}`.
const RECORD: &str = r#"
export default async (event, ctx) => {
  await ctx.db.put('seen', event.doc.id, {
    auth: event.auth, service: 'service' in event ? event.service : 'missing' });
};
"#;

async fn hooks_are_told_the_writer_as_http_functions_are_told_the_caller(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    deploy(
        &mut app,
        "shop",
        &[
            ("plinth.toml", MANIFEST),
            ("functions/whoami.js", WHOAMI),
            ("functions/stamp.js", STAMP),
            ("functions/record.js", RECORD),
        ],
    )
    .await
    .ok(201);
    let alice = app.signup("shop", "alice@shop.test").await;

    let whoami = |token: String| {
        let app = &app;
        async move {
            app.post("/v1/t/shop/fn/whoami", Some(&token), json!({}))
                .await
                .ok(200)
        }
    };
    let as_alice = whoami(alice.access.clone()).await;
    let as_service = whoami(key.clone()).await;
    assert_eq!(
        as_alice,
        json!({"auth": {"uid": alice.user_id, "email": "alice@shop.test",
                        "email_verified": false}, "service": false})
    );
    assert_eq!(as_service, json!({"auth": null, "service": true}));

    put(
        &app,
        &alice.access,
        &format!("{}/n1", docs("shop", "notes")),
        json!({"owner": alice.user_id, "title": "by alice"}),
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{}/n2", docs("shop", "notes")),
        json!({"owner": "nobody", "title": "by the service"}),
    )
    .await
    .ok(201);

    for (id, expected) in [("n1", &as_alice), ("n2", &as_service)] {
        let note = app
            .get(&format!("{}/{id}", docs("shop", "notes")), Some(&key))
            .await
            .ok(200);
        assert_eq!(&note["data"]["told"], expected, "before hook on {id}");
        let seen: Value = eventually(Duration::from_secs(10), "after hook ran", || async {
            let r = app
                .get(&format!("{}/{id}", docs("shop", "seen")), Some(&key))
                .await;
            (r.status.as_u16() == 200).then(|| r.json()["data"].clone())
        })
        .await;
        assert_eq!(&seen, expected, "after hook on {id}");
    }
}
