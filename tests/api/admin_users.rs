//! Admins creating a tenant's users (`POST /admin/v1/tenants/{tenant}/users`): the users
//! sign in through the tenant API, the input is refused as sign-up refuses it, a user made
//! without a password signs in only after a reset, and who may create whom.

use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_roles::add_admin;
use crate::backend_tests;
use crate::support::smtp::SmtpSink;
use crate::support::*;

backend_tests!(
    created_users_sign_in_through_the_tenant_api,
    created_user_input_is_refused_as_signup_refuses_it,
    a_user_made_without_a_password_signs_in_after_a_reset,
    who_may_create_users,
);

const USERS: &str = "/admin/v1/tenants/acme/users";

async fn create(app: &TestApp, token: &str, path: &str, body: Value) -> Reply {
    app.post(path, Some(token), body).await
}

async fn created_users_sign_in_through_the_tenant_api(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;

    let u = create(
        &app,
        &admin,
        USERS,
        json!({"email": "  Ada@Acme.TEST ", "password": PASSWORD}),
    )
    .await
    .ok(201);
    assert_eq!(u["email"], "ada@acme.test", "normalised as sign-up does");
    assert_eq!(u["email_verified"], false);
    assert_eq!(u["disabled"], false);
    // The same shape as reading the user back.
    let id = u["id"].as_str().unwrap();
    let read = app
        .get(&format!("{USERS}/{id}"), Some(&admin))
        .await
        .ok(200);
    assert_eq!(u, read);

    // No session was opened for them; they sign in themselves.
    let s = Session::from_json(&app.login("acme", "ada@acme.test", PASSWORD).await.ok(200));
    assert_eq!(s.user_id, id);
    let me = app.get("/v1/t/acme/auth/me", Some(&s.access)).await.ok(200);
    assert_eq!(me["email_verified"], false, "{me}");
    app.login("acme", "ada@acme.test", "not-the-password-1")
        .await
        .problem(401, "invalid_credentials");

    // Created verified: the token says so.
    let v = create(
        &app,
        &admin,
        USERS,
        json!({"email": "bo@acme.test", "password": PASSWORD, "verified": true}),
    )
    .await
    .ok(201);
    assert_eq!(v["email_verified"], true);
    let s = Session::from_json(&app.login("acme", "bo@acme.test", PASSWORD).await.ok(200));
    let me = app.get("/v1/t/acme/auth/me", Some(&s.access)).await.ok(200);
    assert_eq!(me["email_verified"], true, "{me}");

    // Listed, and audited without the password.
    let list = app.get(USERS, Some(&admin)).await.ok(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let audit = app
        .get("/admin/v1/audit?tenant=acme", Some(&admin))
        .await
        .ok(200);
    let creates: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "user.create")
        .collect();
    assert_eq!(creates.len(), 2, "{audit}");
    assert!(creates.iter().any(|e| e["target"] == id), "{audit}");
    assert!(!audit.to_string().contains(PASSWORD), "{audit}");
}

async fn created_user_input_is_refused_as_signup_refuses_it(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    app.signup("acme", "taken@acme.test").await;

    // The email a sign-up took, in any case: the code sign-up answers.
    let p = create(
        &app,
        &admin,
        USERS,
        json!({"email": "TAKEN@acme.test", "password": PASSWORD}),
    )
    .await
    .problem(409, "email_taken");
    assert!(p["fields"]["email"].is_string(), "{p}");
    // And one an admin made: sign-up answers it the same.
    create(&app, &admin, USERS, json!({"email": "made@acme.test"}))
        .await
        .ok(201);
    create(&app, &admin, USERS, json!({"email": "made@acme.test"}))
        .await
        .problem(409, "email_taken");
    app.post(
        "/v1/t/acme/auth/signup",
        None,
        json!({"email": "made@acme.test", "password": PASSWORD}),
    )
    .await
    .problem(409, "email_taken");

    for bad in ["", "not-an-email", "a@", "two@@x.test"] {
        let p = create(&app, &admin, USERS, json!({"email": bad}))
            .await
            .problem(400, "validation_failed");
        assert!(p["fields"]["email"].is_string(), "{bad:?}: {p}");
    }
    for weak in ["12345678", "password1", "new@acme.test"] {
        let p = create(
            &app,
            &admin,
            USERS,
            json!({"email": "new@acme.test", "password": weak}),
        )
        .await
        .problem(400, "weak_password");
        assert!(p["fields"]["password"].is_string(), "{weak:?}: {p}");
    }
    // An empty password is a password that fails the policy, not "no password".
    let p = create(
        &app,
        &admin,
        USERS,
        json!({"email": "new@acme.test", "password": ""}),
    )
    .await;
    assert_eq!(p.status.as_u16(), 400, "{}", p.text);
    assert!(p.json()["fields"]["password"].is_string(), "{}", p.text);

    // Malformed and mistyped bodies.
    let raw = app
        .send(
            app.req(Method::POST, USERS, Some(&admin))
                .header("content-type", "application/json")
                .body("{\"email\": "),
        )
        .await;
    raw.problem(400, "malformed_json");
    create(&app, &admin, USERS, json!({"password": PASSWORD}))
        .await
        .problem(400, "invalid_body");
    create(
        &app,
        &admin,
        USERS,
        json!({"email": "new@acme.test", "verified": "yes"}),
    )
    .await
    .problem(400, "invalid_body");
    create(
        &app,
        &admin,
        "/admin/v1/tenants/nope/users",
        json!({"email": "new@acme.test"}),
    )
    .await
    .problem(404, "tenant_not_found");

    // Nothing refused was stored.
    assert_eq!(app.user_count("acme").await, 2);
}

async fn a_user_made_without_a_password_signs_in_after_a_reset(b: Backend) {
    let smtp = SmtpSink::start().await;
    let url = smtp.url();
    let mut app =
        TestApp::start_with(b, |c| c.smtp_url = Some(plinth::config::Secret::new(url))).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    create(&app, &admin, USERS, json!({"email": "nopw@acme.test"}))
        .await
        .ok(201);

    // No password matches, the empty one included.
    for guess in ["", "anything-at-all-1", PASSWORD] {
        let r = app.login("acme", "nopw@acme.test", guess).await;
        assert!(
            r.status.as_u16() == 401 || r.status.as_u16() == 400,
            "{guess:?}: {}",
            r.text
        );
    }

    app.post(
        "/v1/t/acme/auth/reset/request",
        None,
        json!({"email": "nopw@acme.test"}),
    )
    .await
    .ok(202);
    let token = smtp.wait_for(1).await.token();
    app.post(
        "/v1/t/acme/auth/reset/confirm",
        None,
        json!({"token": token, "password": "chosen-after-reset-1"}),
    )
    .await
    .ok(204);
    app.login("acme", "nopw@acme.test", "chosen-after-reset-1")
        .await
        .ok(200);
}

async fn who_may_create_users(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    let (_, viewer) = add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    let (_, ta) = add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["acme"]).await;
    let (_, adm) = add_admin(&app, &owner, "a@x.test", "admin", &[]).await;
    let user = |email: &str| json!({"email": email, "password": PASSWORD});

    create(&app, &viewer, USERS, user("u1@acme.test"))
        .await
        .problem(403, "insufficient_role");
    create(&app, &ta, USERS, user("u2@acme.test")).await.ok(201);
    // Another tenant's users do not exist for a tenant admin, even to be refused.
    create(
        &app,
        &ta,
        "/admin/v1/tenants/other/users",
        user("u3@x.test"),
    )
    .await
    .problem(404, "tenant_not_found");
    create(
        &app,
        &adm,
        "/admin/v1/tenants/other/users",
        user("u4@x.test"),
    )
    .await
    .ok(201);

    // API keys act within their scope.
    let key = |role: &str, tenants: &[&str]| {
        app.post(
            "/admin/v1/api-keys",
            Some(&owner),
            json!({"name": format!("k-{role}"), "role": role, "tenants": tenants}),
        )
    };
    let ta_key = key("tenant_admin", &["acme"]).await.ok(201)["key"]
        .as_str()
        .unwrap()
        .to_string();
    let viewer_key = key("viewer", &[]).await.ok(201)["key"]
        .as_str()
        .unwrap()
        .to_string();
    create(&app, &ta_key, USERS, user("u5@acme.test"))
        .await
        .ok(201);
    create(
        &app,
        &ta_key,
        "/admin/v1/tenants/other/users",
        user("u6@x.test"),
    )
    .await
    .problem(404, "tenant_not_found");
    create(&app, &viewer_key, USERS, user("u7@acme.test"))
        .await
        .problem(403, "insufficient_role");

    assert_eq!(app.user_count("acme").await, 2);
    assert_eq!(app.user_count("other").await, 1);
}
