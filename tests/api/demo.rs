//! `plinth serve --demo`: the demo tenant, its secret, bundle and documents are set up
//! once and left alone on later starts; the page is served at /demo/ only in demo mode.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::*;

backend_tests!(
    demo_sets_itself_up_once,
    demo_page_is_served_with_the_client
);

/// An admin token on a server whose first admin may already exist.
async fn admin_token(app: &mut TestApp) -> String {
    if app.setup_token().is_some() {
        return app.admin().await;
    }
    app.post(
        "/admin/v1/auth/login",
        None,
        json!({"email": "root@plinth.test", "password": PASSWORD}),
    )
    .await
    .ok(200)["access_token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// How many times the demo tenant's Twilio secret was set, from the audit log.
async fn secret_sets(app: &TestApp, admin: &str) -> usize {
    let log = app
        .get("/admin/v1/audit?tenant=demo&limit=1000", Some(admin))
        .await
        .ok(200);
    log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "secret.set" && e["target"] == "TWILIO_AUTH_TOKEN")
        .count()
}

async fn deploy_versions(app: &TestApp, admin: &str) -> Vec<i64> {
    let list = app
        .get("/admin/v1/tenants/demo/deploys", Some(admin))
        .await
        .ok(200);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_i64().unwrap())
        .collect()
}

fn demo(token: Option<&str>) -> impl FnOnce(&mut plinth::config::Config) {
    let token = token.map(|t| plinth::config::Secret::new(t.to_string()));
    move |c| {
        c.demo = true;
        c.demo_twilio_token = token;
    }
}

async fn demo_sets_itself_up_once(b: Backend) {
    let mut app = TestApp::start_with(b, demo(None)).await;
    let admin = admin_token(&mut app).await;
    let tenants = app.get("/admin/v1/tenants", Some(&admin)).await.ok(200);
    assert!(
        tenants["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["slug"] == "demo"),
        "{tenants}"
    );
    assert_eq!(deploy_versions(&app, &admin).await, vec![1]);
    assert_eq!(secret_sets(&app, &admin).await, 1, "the default token");

    // The poll and its tally, public as the rules say.
    let poll = app
        .get("/v1/t/demo/collections/polls/docs/demo-poll", None)
        .await
        .ok(200);
    assert_eq!(
        poll["data"],
        json!({"question": "Which colour should the Plinth logo be?",
               "options": ["red", "green", "blue", "gold"], "active": true})
    );
    let tally = app
        .get("/v1/t/demo/collections/tallies/docs/demo-poll", None)
        .await
        .ok(200);
    assert_eq!(
        tally["data"],
        json!({"poll": "demo-poll", "counts": {"red": 0, "green": 0, "blue": 0, "gold": 0}})
    );

    // Documents that exist are left as they are on the next start.
    let key = app.create_key("demo", "tests").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut changed = poll["data"].clone();
    changed["question"] = Value::from("Edited?");
    app.send(
        app.req(
            reqwest::Method::PUT,
            "/v1/t/demo/collections/polls/docs/demo-poll",
            Some(&key),
        )
        .json(&changed),
    )
    .await
    .ok(200);

    // Restarts: the same bundle deploys no new version, a kept secret is not set again,
    // a configured token is set once.
    let storage = app.stop().await;
    let mut app = TestApp::start_on(b, storage, demo(None)).await;
    let admin = admin_token(&mut app).await;
    assert_eq!(deploy_versions(&app, &admin).await, vec![1]);
    assert_eq!(secret_sets(&app, &admin).await, 1);
    let poll = app
        .get("/v1/t/demo/collections/polls/docs/demo-poll", None)
        .await
        .ok(200);
    assert_eq!(poll["data"]["question"], "Edited?");
    assert_eq!(poll["version"], 2);

    for expected in [2, 2] {
        let storage = app.stop().await;
        app = TestApp::start_on(b, storage, demo(Some("configured-token"))).await;
        let admin = admin_token(&mut app).await;
        assert_eq!(secret_sets(&app, &admin).await, expected);
        assert_eq!(deploy_versions(&app, &admin).await, vec![1]);
    }

    // A bundle that differs from the active one is deployed again: roll back to a
    // hand-made version and restart.
    let admin = admin_token(&mut app).await;
    let files = json!({"files": {"plinth.toml": "", "functions/x.js": "export default () => 1;"}});
    app.post("/admin/v1/tenants/demo/deploys", Some(&admin), files)
        .await
        .ok(201);
    let storage = app.stop().await;
    let mut app = TestApp::start_on(b, storage, demo(None)).await;
    let admin = admin_token(&mut app).await;
    assert_eq!(deploy_versions(&app, &admin).await, vec![3, 2, 1]);
    let active = app
        .get("/admin/v1/tenants/demo/deploys", Some(&admin))
        .await
        .ok(200);
    assert_eq!(active["items"][0]["active"], true);
    app.stop().await;
}

async fn demo_page_is_served_with_the_client(b: Backend) {
    let app = TestApp::start_with(b, demo(None)).await;
    for (path, content_type) in [
        ("/demo/", "text/html; charset=utf-8"),
        ("/demo/index.html", "text/html; charset=utf-8"),
        ("/demo/app.js", "text/javascript; charset=utf-8"),
        ("/demo/style.css", "text/css; charset=utf-8"),
        ("/demo/client/index.js", "text/javascript; charset=utf-8"),
        ("/demo/client/realtime.js", "text/javascript; charset=utf-8"),
    ] {
        let r = app.get(path, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], content_type, "{path}");
        assert_eq!(r.headers["cache-control"], "no-cache", "{path}");
        assert!(!r.text.is_empty(), "{path}");
    }
    let index = app.get("/demo/", None).await;
    assert!(
        index
            .text
            .contains("<script type=\"module\" src=\"app.js\">")
    );
    let client = app.get("/demo/client/index.js", None).await;
    assert_eq!(client.text, include_str!("../../clients/js/src/index.js"));
    app.get("/demo/client/nope.js", None)
        .await
        .problem(404, "not_found");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects.get(app.url("/demo")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/demo/");
    let storage = app.stop().await;

    // Without --demo there is no page.
    let app = TestApp::start_on(b, storage, |_| {}).await;
    for path in ["/demo/", "/demo/index.html", "/demo/client/index.js"] {
        app.get(path, None).await.problem(404, "route_not_found");
    }
    app.stop().await;
}
