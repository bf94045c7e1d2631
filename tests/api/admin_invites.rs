//! Inviting admins by mail: the owner's invitation, the mailed one-time link (read from
//! the SMTP sink, as the user-reset tests read theirs), the invitee's password and
//! session; single use, expiry, withdrawal, a newer invitation replacing the pending
//! one, and the rules of adding admins (owners only, keys no wider than themselves).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_roles::add_admin;
use crate::backend_tests;
use crate::support::smtp::SmtpSink;
use crate::support::*;

backend_tests!(
    an_invited_admin_sets_a_password_and_is_signed_in,
    invitations_are_single_use_and_expire,
    invitations_can_be_withdrawn_and_replaced,
    invitations_follow_the_rules_of_adding_admins,
);

async fn with_mail(b: Backend, ttl: Option<Duration>) -> (TestApp, SmtpSink) {
    let smtp = SmtpSink::start().await;
    let url = smtp.url();
    let app = TestApp::start_with(b, |c| {
        c.smtp_url = Some(plinth::config::Secret::new(url));
        if let Some(ttl) = ttl {
            c.admin_invite_ttl = ttl;
        }
    })
    .await;
    (app, smtp)
}

async fn invite(app: &TestApp, who: &str, body: Value) -> Reply {
    app.post("/admin/v1/admins/invite", Some(who), body).await
}

async fn accept(app: &TestApp, token: &str, password: &str) -> Reply {
    app.post(
        "/admin/v1/auth/invite",
        None,
        json!({"token": token, "password": password}),
    )
    .await
}

fn emails(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap().to_string())
        .collect()
}

async fn an_invited_admin_sets_a_password_and_is_signed_in(b: Backend) {
    let (mut app, smtp) = with_mail(b, None).await;
    let owner = app.admin().await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;

    let made = invite(
        &app,
        &owner,
        json!({"email": " New@X.test ", "role": "tenant_admin", "tenants": ["acme"]}),
    )
    .await
    .ok(201);
    assert_eq!(made["email"], "new@x.test", "{made}");
    assert_eq!(made["role"], "tenant_admin", "{made}");
    assert_eq!(made["tenants"], json!(["acme"]), "{made}");
    assert!(
        made["expires_at"].is_string() && made.get("token").is_none(),
        "{made}"
    );
    let pending = app
        .get("/admin/v1/admins/invite", Some(&owner))
        .await
        .ok(200);
    assert_eq!(emails(&pending), ["new@x.test"]);
    // Not an admin until accepted.
    let admins = app.get("/admin/v1/admins", Some(&owner)).await.ok(200);
    assert!(!emails(&admins).contains(&"new@x.test".to_string()));

    let mail = smtp.wait_for(1).await;
    assert!(mail.rcpt[0].contains("new@x.test"), "{:?}", mail.rcpt);
    let token = mail.token();
    assert!(
        mail.text().contains(&format!("/_/invite#token={token}")),
        "{}",
        mail.text()
    );
    // The console page the link opens is served.
    let page = app.get("/_/invite", None).await;
    assert_eq!(page.status, 200, "{}", page.text);

    // A refused password leaves the link usable.
    accept(&app, &token, "short")
        .await
        .problem(400, "validation_failed");
    let r = accept(&app, &token, "a long passphrase here").await;
    let session = r.ok(200);
    assert_eq!(session["admin"]["email"], "new@x.test", "{session}");
    assert_eq!(session["admin"]["role"], "tenant_admin", "{session}");
    assert_eq!(session["admin"]["tenants"], json!(["acme"]), "{session}");
    let set_cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().unwrap();

    // Signed in, with the invitation's role and tenants.
    let seen = app
        .send(
            app.req(Method::GET, "/admin/v1/tenants", None)
                .header("cookie", cookie),
        )
        .await
        .ok(200);
    let slugs: Vec<&str> = seen["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme"]);
    let csrf = session["csrf_token"].as_str().unwrap();
    app.send(
        app.req(Method::POST, "/admin/v1/tenants/acme/keys", None)
            .header("cookie", cookie)
            .header("x-csrf-token", csrf)
            .json(&json!({"name": "mine"})),
    )
    .await
    .ok(201);
    // The password works for a plain login too.
    app.post(
        "/admin/v1/auth/login",
        None,
        json!({"email": "new@x.test", "password": "a long passphrase here"}),
    )
    .await
    .ok(200);

    // Spent: once only, and no longer pending.
    accept(&app, &token, "another long passphrase")
        .await
        .problem(400, "invalid_or_expired_token");
    let pending = app
        .get("/admin/v1/admins/invite", Some(&owner))
        .await
        .ok(200);
    assert!(emails(&pending).is_empty(), "{pending}");
    let admins = app.get("/admin/v1/admins", Some(&owner)).await.ok(200);
    assert!(emails(&admins).contains(&"new@x.test".to_string()));

    let audit = app.get("/admin/v1/audit", Some(&owner)).await.ok(200);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in ["admin_invite.create", "admin_invite.accept"] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    assert!(
        !audit.to_string().contains(&token),
        "the token is never logged"
    );
}

async fn invitations_are_single_use_and_expire(b: Backend) {
    let (mut app, smtp) = with_mail(b, Some(Duration::ZERO)).await;
    let owner = app.admin().await;
    invite(
        &app,
        &owner,
        json!({"email": "late@x.test", "role": "viewer"}),
    )
    .await
    .ok(201);
    let token = smtp.wait_for(1).await.token();
    accept(&app, &token, "a long passphrase here")
        .await
        .problem(400, "invalid_or_expired_token");
    // Wrong, empty or absent tokens.
    accept(&app, "not-a-token", "a long passphrase here")
        .await
        .problem(400, "invalid_or_expired_token");
    accept(&app, "", "a long passphrase here")
        .await
        .problem(400, "validation_failed");
    app.post(
        "/admin/v1/auth/invite",
        None,
        json!({"password": "a long passphrase here"}),
    )
    .await
    .problem(400, "invalid_body");
    let admins = app.get("/admin/v1/admins", Some(&owner)).await.ok(200);
    assert_eq!(emails(&admins), ["root@plinth.test"]);
    let pending = app
        .get("/admin/v1/admins/invite", Some(&owner))
        .await
        .ok(200);
    assert!(emails(&pending).is_empty(), "expired ones are not pending");
}

async fn invitations_can_be_withdrawn_and_replaced(b: Backend) {
    let (mut app, smtp) = with_mail(b, None).await;
    let owner = app.admin().await;
    let body = json!({"email": "x@x.test", "role": "admin"});
    let first = invite(&app, &owner, body.clone()).await.ok(201);
    let first_token = smtp.wait_for(1).await.token();
    // A newer invitation to the same email replaces the pending one.
    let second = invite(&app, &owner, body.clone()).await.ok(201);
    assert_ne!(first["id"], second["id"]);
    let second_token = smtp.wait_for(2).await.token();
    accept(&app, &first_token, "a long passphrase here")
        .await
        .problem(400, "invalid_or_expired_token");
    let pending = app
        .get("/admin/v1/admins/invite", Some(&owner))
        .await
        .ok(200);
    assert_eq!(emails(&pending), ["x@x.test"]);

    // Withdrawn: the link stops working; withdrawing again is 404.
    let id = second["id"].as_str().unwrap();
    app.delete(&format!("/admin/v1/admins/invite/{id}"), Some(&owner))
        .await
        .ok(204);
    app.delete(&format!("/admin/v1/admins/invite/{id}"), Some(&owner))
        .await
        .problem(404, "not_found");
    accept(&app, &second_token, "a long passphrase here")
        .await
        .problem(400, "invalid_or_expired_token");

    // An admin of that email made meanwhile: the link is refused as a conflict, unspent.
    invite(&app, &owner, body).await.ok(201);
    let third_token = smtp.wait_for(3).await.token();
    add_admin(&app, &owner, "x@x.test", "viewer", &[]).await;
    accept(&app, &third_token, "a long passphrase here")
        .await
        .problem(409, "admin_exists");
    invite(&app, &owner, json!({"email": "x@x.test", "role": "viewer"}))
        .await
        .problem(409, "admin_exists");
}

async fn invitations_follow_the_rules_of_adding_admins(b: Backend) {
    let (mut app, smtp) = with_mail(b, None).await;
    let owner = app.admin().await;
    app.create_tenant("acme").await;
    let (_, admin) = add_admin(&app, &owner, "a@x.test", "admin", &[]).await;
    let (_, ta) = add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["acme"]).await;
    let (_, viewer) = add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    let wanted = json!({"email": "n@x.test", "role": "tenant_admin", "tenants": ["acme"]});
    for who in [&admin, &ta, &viewer] {
        invite(&app, who, wanted.clone())
            .await
            .problem(403, "insufficient_role");
        app.get("/admin/v1/admins/invite", Some(who))
            .await
            .problem(403, "insufficient_role");
    }
    // An owner's API key invites, but never an owner; an admin's key not at all.
    let key = |role: &'static str| {
        let owner = owner.clone();
        let app = &app;
        async move {
            app.post(
                "/admin/v1/api-keys",
                Some(&owner),
                json!({"name": role, "role": role}),
            )
            .await
            .ok(201)["key"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let owner_key = key("owner").await;
    let admin_key = key("admin").await;
    invite(
        &app,
        &owner_key,
        json!({"email": "o@x.test", "role": "owner"}),
    )
    .await
    .problem(403, "insufficient_role");
    invite(&app, &admin_key, wanted.clone())
        .await
        .problem(403, "insufficient_role");
    invite(&app, &owner_key, wanted.clone()).await.ok(201);

    // Bad input, as for adding an admin.
    invite(
        &app,
        &owner,
        json!({"email": "n2@x.test", "role": "tenant_admin", "tenants": ["nope"]}),
    )
    .await
    .problem(400, "validation_failed");
    invite(&app, &owner, json!({"email": "n2@x.test", "role": "root"}))
        .await
        .problem(400, "invalid_body");
    invite(
        &app,
        &owner,
        json!({"email": "not an email", "role": "viewer"}),
    )
    .await
    .problem(400, "validation_failed");
    invite(&app, &owner, json!({"email": "a@x.test", "role": "viewer"}))
        .await
        .problem(409, "admin_exists");
    // Only the one invitation made was mailed.
    smtp.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smtp.mails().len(), 1, "refused invitations send nothing");
}
