//! Writes that no edge refusal stops while a tenant moves: an HTTP function called by
//! GET or HEAD is let through (it may only read), but its `ctx.db` writes are refused by
//! the commit path whatever process runs the move. Here the mover is a dead CLI process
//! (`PLINTH_TEST_MOVE_CRASH`), so no freeze of the serving process stops them: the mark
//! read with the tenant's placement does. And a mail token requested just before a
//! move, written after the request's answer, is written before the move copies.

use std::time::Duration;

use plinth::store::Location;
use reqwest::Method;
use serde_json::json;
use sqlx::Connection;

use crate::backend_tests;
use crate::documents::tenant_with_key;
use crate::functions::deploy;
use crate::placement::{all_docs, second_cluster};
use crate::placement_recovery::{crashed_move, past_the_lease, restart};
use crate::support::smtp::SmtpSink;
use crate::support::*;

backend_tests!(function_writes_are_refused_while_moving);

/// The test holds the token table's writes back with a PostgreSQL table lock.
mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mail_token_requested_just_before_a_move_is_moved() {
        if !crate::support::postgres_available() {
            return;
        }
        super::a_mail_token_requested_just_before_a_move_is_moved().await
    }
}

/// Writes the document `touches/{id}`; answers what became of the write.
const TOUCH: &str = r#"
export default async (req, ctx) => {
  try {
    await ctx.db.put('touches', req.query.id, { method: req.method });
    return { wrote: req.query.id };
  } catch (e) {
    return { refused: e.code ?? String(e) };
  }
}
"#;

fn touch(id: &str) -> String {
    format!("/v1/t/shop/fn/touch?id={id}")
}

/// Marked moving by a mover that died, "shop" answers its function's GET and HEAD calls,
/// but their writes are refused (`tenant_moving`) and nothing is written; once the move
/// is rolled back the same call writes.
async fn function_writes_are_refused_while_moving(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let cluster = format!("eu2={url}");
    let mut app = restart(b, Storage::fresh(b).await, &url).await;
    let admin = app.admin().await;
    let key = tenant_with_key(&mut app, "shop").await;
    deploy(
        &mut app,
        "shop",
        &[
            (
                "plinth.toml",
                "[[http]]\nname = \"touch\"\nfunction = \"touch\"\n",
            ),
            ("functions/touch.js", TOUCH),
        ],
    )
    .await
    .ok(201);
    let r = app.get(&touch("before"), None).await.ok(200);
    assert_eq!(r, json!({"wrote": "before"}));
    let before = all_docs(&app, &key, "shop", "touches").await;
    assert_eq!(before.len(), 1, "{before:?}");

    let storage = app.stop().await;
    let crashed = crashed_move(&storage, &cluster, "eu2", "after-copy");
    let app = restart(b, storage, &url).await;
    let r = app.get(&touch("during"), None).await.ok(200);
    assert_eq!(r, json!({"refused": "tenant_moving"}));
    let r = app.send(app.req(Method::HEAD, &touch("head"), None)).await;
    assert_eq!(r.status.as_u16(), 200, "HEAD: {}", r.text);
    let sub = app
        .get("/v1/t/shop/fn/touch/sub/path?id=sub", None)
        .await
        .ok(200);
    assert_eq!(sub, json!({"refused": "tenant_moving"}));
    assert_eq!(all_docs(&app, &key, "shop", "touches").await, before);

    past_the_lease(crashed).await;
    let report = app
        .post(
            "/admin/v1/tenants/shop/move",
            Some(&admin),
            json!({"to": "default"}),
        )
        .await
        .ok(200);
    assert_eq!(report["recovered"], "rolled_back", "{report}");
    let r = app.get(&touch("after"), None).await.ok(200);
    assert_eq!(r, json!({"wrote": "after"}));
    assert_eq!(all_docs(&app, &key, "shop", "touches").await.len(), 2);
}

/// `auth/verify/request` answers 202 before it writes its token (its timing must not
/// tell whether the address exists). A move started then waits for that write (held
/// back here by a lock on the token table, which lets the copy read), so the token is
/// copied and the emailed link works at the new location.
async fn a_mail_token_requested_just_before_a_move_is_moved() {
    let b = Backend::Postgres;
    let (_cluster, url) = second_cluster().await;
    let smtp = SmtpSink::start().await;
    let (smtp_url, eu2) = (smtp.url(), url.clone());
    let mut app = TestApp::start_with(b, move |c| {
        c.smtp_url = Some(plinth::config::Secret::new(smtp_url));
        c.clusters = vec![("eu2".into(), eu2)];
    })
    .await;
    let admin = app.admin().await;
    app.create_tenant("shop").await;
    let s = app.signup("shop", "heidi@example.com").await;

    let Location::Postgres(db) = &app.storage.location else {
        unreachable!("a PostgreSQL test")
    };
    let mut pg = sqlx::PgConnection::connect(db).await.expect("connect");
    let mut hold = pg.begin().await.expect("begin");
    sqlx::query("LOCK TABLE user_tokens IN SHARE MODE")
        .execute(&mut *hold)
        .await
        .expect("lock user_tokens");
    app.post(
        "/v1/t/shop/auth/verify/request",
        None,
        json!({"email": "heidi@example.com"}),
    )
    .await
    .ok(202);
    let mover = tokio::spawn(
        app.req(Method::POST, "/admin/v1/tenants/shop/move", Some(&admin))
            .json(&json!({"to": "eu2"}))
            .send(),
    );
    // Past the move's 1.5 s wait for other nodes: without its own ticket the token
    // would be written after the copy (which this lock lets read).
    tokio::time::sleep(Duration::from_secs(4)).await;
    hold.rollback().await.expect("unlock user_tokens");
    let moved = mover.await.expect("join").expect("the move's answer");
    let status = moved.status().as_u16();
    let body = moved.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}");

    let link = format!(
        "/v1/t/shop/auth/verify/confirm?token={}",
        smtp.wait_for(1).await.token()
    );
    let r = app.get(&link, None).await.ok(200);
    assert_eq!(r["email_verified"], true, "{r}");
    let me = app.get("/v1/t/shop/auth/me", Some(&s.access)).await.ok(200);
    assert_eq!(me["email_verified"], true, "{me}");
    let t = app
        .get("/admin/v1/tenants/shop", Some(&admin))
        .await
        .ok(200);
    assert_eq!(t["location"], "eu2", "{t}");
}
