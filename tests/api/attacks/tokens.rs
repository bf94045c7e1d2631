//! JWT forgery and session abuse on every kind of tenant route: forged, tampered,
//! expired tokens, tokens of disabled and deleted users, and a race of refreshes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::backend_tests;

backend_tests!(
    forged_and_dead_tokens_open_nothing,
    racing_refreshes_have_one_winner
);

/// The routes a token is tried on: (method, path, body).
fn routes(t: &Tenant) -> Vec<(Method, String, Option<Value>)> {
    let s = t.slug;
    let docs = |c: &str| format!("/v1/t/{s}/collections/{c}/docs");
    let note = format!("{}/{}", docs("notes"), t.doc("notes"));
    let public = format!("{}/{}", docs("public"), t.doc("public"));
    vec![
        (Method::GET, format!("/v1/t/{s}/auth/me"), None),
        (Method::GET, note.clone(), None),
        (Method::GET, public.clone(), None),
        (Method::GET, docs("notes"), None),
        (Method::GET, docs("public"), None),
        (Method::POST, docs("public"), Some(json!({"n": 9}))),
        (Method::PUT, public.clone(), Some(json!({"n": 9}))),
        (Method::PATCH, note.clone(), Some(json!({"n": 9}))),
        (Method::DELETE, public, None),
        (Method::DELETE, note, None),
        (
            Method::POST,
            format!("/v1/t/{s}/batch"),
            Some(
                json!({"writes": [{"op": "delete", "collection": "public", "id": t.doc("public")}]}),
            ),
        ),
        (
            Method::POST,
            format!("/v1/t/{s}/auth/password"),
            Some(json!({"current_password": PASSWORD, "new_password": "taken-over-password-9"})),
        ),
        (
            Method::POST,
            format!("/v1/t/{s}/auth/logout"),
            Some(json!({})),
        ),
        (Method::GET, format!("/v1/t/{s}/fn/peek"), None),
    ]
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Tries `token` on every route (and the realtime upgrade); each must answer 401 `code`.
async fn refused_everywhere(
    app: &TestApp,
    t: &Tenant,
    tally: &Tally,
    what: &str,
    token: &str,
    code: &str,
) {
    for (m, path, body) in routes(t) {
        let mut req = app.req(m.clone(), &path, Some(token));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = app.send(req).await;
        tally.expect(&format!("{what}: {m} {path}"), &r, 401, code);
    }
    let url = format!(
        "ws://{}/v1/t/{}/realtime?access_token={token}",
        app.base.trim_start_matches("http://"),
        t.slug
    );
    tally.tried();
    match tokio_tungstenite::connect_async(&url).await {
        Err(e) if e.to_string().contains("401") => {}
        other => tally.mismatch(format!(
            "{what}: realtime upgrade: expected 401, got {:?}",
            other.map(|_| "connected")
        )),
    }
}

async fn forged_and_dead_tokens_open_nothing(b: Backend) {
    let mut secret = Vec::new();
    let World {
        mut app,
        alpha,
        bravo,
    } = world_with(b, &[], |c| secret = config_secret(c)).await;
    let tally = Tally::new("tokens", b);

    // Users about to be disabled and deleted, with live tokens.
    let admin = app.admin().await;
    let doomed = app.signup("alpha", "doomed@alpha.test").await;
    let gone = app.signup("alpha", "gone@alpha.test").await;
    app.post(
        &format!("/admin/v1/tenants/alpha/users/{}/disable", doomed.user_id),
        Some(&admin),
        json!({}),
    )
    .await
    .ok(200);
    app.delete(
        &format!("/admin/v1/tenants/alpha/users/{}", gone.user_id),
        Some(&admin),
    )
    .await
    .ok(204);
    let before = state(&mut app, &alpha).await;
    let bravo_before = state(&mut app, &bravo).await;

    let real = &alpha.owner.access;
    let claims = jwt_payload(real);
    let header = jwt_header(real);
    let parts: Vec<&str> = real.split('.').collect();
    let mut forged: Vec<(String, String, &str)> = Vec::new();

    // No signature, or another algorithm named in the header.
    for alg in ["none", "None", "NONE", "HS512", "RS256", "ES256"] {
        let mut h = header.clone();
        h["alg"] = json!(alg);
        forged.push((
            format!("alg {alg}, no signature"),
            format!("{}.{}.", b64(&h), parts[1]),
            "invalid_token",
        ));
        forged.push((
            format!("alg {alg}, original signature"),
            format!("{}.{}.{}", b64(&h), parts[1], parts[2]),
            "invalid_token",
        ));
    }
    // Signed with a key that is not the server's (random, empty, the kid as a key).
    let kid = header["kid"].as_str().unwrap_or("").to_string();
    for (name, key) in [
        ("random key", random_secret()),
        ("empty key", Vec::new()),
        ("kid as key", kid.into_bytes()),
        ("slug as key", b"alpha".to_vec()),
    ] {
        forged.push((
            format!("HS256 with {name}"),
            forge(&key, &claims),
            "invalid_token",
        ));
    }
    // A header naming another kid, or none, with the right signature otherwise.
    for kid in [
        json!("nope"),
        json!(""),
        json!("../../etc/passwd"),
        Value::Null,
    ] {
        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.as_str().map(str::to_string);
        let t = encode(&h, &claims, &EncodingKey::from_secret(&secret)).expect("encode");
        forged.push((format!("kid {kid}"), t, "invalid_token"));
    }
    // Tampered payloads under the original signature: another user, another tenant's
    // audience, an admin's audience, a role, a later expiry.
    let bravo_claims = jwt_payload(&bravo.owner.access);
    for (name, field, value) in [
        ("sub of another user", "sub", json!(alpha.other.user_id)),
        (
            "sid of another session",
            "sid",
            jwt_payload(&alpha.other.access)["sid"].clone(),
        ),
        ("bravo's audience", "aud", bravo_claims["aud"].clone()),
        ("admin audience", "aud", json!("plinth:admin")),
        ("role admin", "role", json!("admin")),
        ("service caller", "service", json!(true)),
        ("expiry in 2100", "exp", json!(4_102_444_800i64)),
        ("email verified", "email_verified", json!(true)),
    ] {
        let mut c = claims.clone();
        c[field] = value;
        forged.push((
            format!("tampered {name}"),
            format!("{}.{}.{}", parts[0], b64(&c), parts[2]),
            "invalid_token",
        ));
    }
    // Truncated, padded, garbage.
    forged.push((
        "no signature part".into(),
        format!("{}.{}", parts[0], parts[1]),
        "invalid_token",
    ));
    forged.push((
        "signature flipped".into(),
        format!("{}.{}.{}A", parts[0], parts[1], &parts[2][1..]),
        "invalid_token",
    ));
    forged.push(("four parts".into(), format!("{real}.x"), "invalid_token"));
    forged.push(("8 KiB of dots".into(), ".".repeat(8192), "invalid_token"));
    forged.push(("a bravo key".into(), bravo.key.clone(), "invalid_token"));
    forged.push((
        "a revoked-looking key".into(),
        format!("{}x", alpha.key),
        "invalid_token",
    ));
    forged.push(("plk_ prefix only".into(), "plk_".into(), "invalid_token"));
    // Signed with the right key (as the server would), but expired.
    let mut expired = claims.clone();
    // (The server allows 5 s of clock skew.)
    expired["exp"] = json!(claims["iat"].as_i64().unwrap() - 120);
    forged.push(("expired".into(), forge(&secret, &expired), "token_expired"));
    // The tokens of a disabled and of a deleted user.
    forged.push((
        "disabled user's token".into(),
        doomed.access.clone(),
        "session_revoked",
    ));
    forged.push((
        "deleted user's token".into(),
        gone.access.clone(),
        "session_revoked",
    ));

    for (what, token, code) in &forged {
        refused_everywhere(&app, &alpha, &tally, what, token, code).await;
    }

    // An admin token signed with another key opens no admin route.
    let mut admin_claims = jwt_payload(&admin);
    admin_claims["exp"] = json!(4_102_444_800i64);
    for (name, token) in [
        ("admin, random key", forge(&random_secret(), &admin_claims)),
        (
            "admin, alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&admin_claims)
            ),
        ),
        ("user token as admin", alpha.owner.access.clone()),
    ] {
        for (m, path) in [
            (Method::GET, "/admin/v1/tenants"),
            (Method::GET, "/admin/v1/tenants/alpha/users"),
            (Method::DELETE, "/admin/v1/tenants/alpha"),
            (Method::POST, "/admin/v1/tenants/alpha/keys"),
        ] {
            let r = app
                .send(
                    app.req(m.clone(), path, Some(&token))
                        .json(&json!({"name": "k"})),
                )
                .await;
            tally.expect(&format!("{name}: {m} {path}"), &r, 401, "invalid_token");
        }
    }

    // Disabled and deleted users can neither refresh nor log in again.
    for (who, s) in [("disabled", &doomed), ("deleted", &gone)] {
        let r = app
            .post(
                "/v1/t/alpha/auth/refresh",
                None,
                json!({"refresh_token": s.refresh}),
            )
            .await;
        tally.expect(
            &format!("{who} user's refresh"),
            &r,
            401,
            "invalid_refresh_token",
        );
    }
    let r = app.login("alpha", "doomed@alpha.test", PASSWORD).await;
    tally.expect("disabled user's login", &r, 403, "user_disabled");
    let r = app.login("alpha", "gone@alpha.test", PASSWORD).await;
    tally.expect("deleted user's login", &r, 401, "invalid_credentials");

    tally.finish();
    assert_unchanged(&mut app, &alpha, &before, "token forgery").await;
    assert_unchanged(&mut app, &bravo, &bravo_before, "token forgery").await;
    // The real token still works.
    app.get("/v1/t/alpha/auth/me", Some(real)).await.ok(200);
}

/// N concurrent refreshes of one refresh token. The rule (store::rotate_refresh_token,
/// DESIGN.md "reuse of a rotated refresh token revokes that whole session family"): a
/// token presented twice, even by racing requests, is reuse. So exactly one request
/// rotates, the others are refused, and the family is revoked, the winner's new tokens
/// included; the user's other sessions are untouched.
async fn racing_refreshes_have_one_winner(b: Backend) {
    const N: usize = 16;
    let World {
        mut app,
        alpha,
        bravo: _,
    } = world(b, &[]).await;
    let tally = Tally::new("refresh_race", b);
    let before = state(&mut app, &alpha).await;
    let mut winners_seen = Vec::new();
    for round in 0..3 {
        let victim = Session::from_json(
            &app.login("alpha", "owner@alpha.test", PASSWORD)
                .await
                .ok(200),
        );
        let bystander = Session::from_json(
            &app.login("alpha", "owner@alpha.test", PASSWORD)
                .await
                .ok(200),
        );
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(N));
        let tasks: Vec<_> = (0..N)
            .map(|_| {
                let req = app
                    .req(Method::POST, "/v1/t/alpha/auth/refresh", None)
                    .json(&json!({"refresh_token": victim.refresh}));
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let res = req.send().await.expect("sent");
                    let status = res.status();
                    let headers = res.headers().clone();
                    let text = res.text().await.unwrap_or_default();
                    Reply {
                        status,
                        headers,
                        text,
                    }
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut reused = 0;
        for t in tasks {
            let r = t.await.expect("task");
            if r.status == 200 {
                tally.saw("racing refresh", &r);
                winners.push(Session::from_json(&r.json()));
            } else {
                tally.expect_any(
                    &format!("round {round}: racing refresh"),
                    &r,
                    &[
                        (401, "refresh_token_reused"),
                        (401, "invalid_refresh_token"),
                    ],
                );
                reused += usize::from(problem_code(&r).as_deref() == Some("refresh_token_reused"));
            }
        }
        winners_seen.push(winners.len());
        if winners.len() != 1 || reused == 0 {
            tally.mismatch(format!(
                "round {round}: {} winners, {reused} reuse answers of {N}",
                winners.len()
            ));
        }
        // The family is revoked: the winner's fresh tokens are dead too.
        for w in &winners {
            let r = app.get("/v1/t/alpha/auth/me", Some(&w.access)).await;
            tally.expect("winner's access after the race", &r, 401, "session_revoked");
            let r = app
                .post(
                    "/v1/t/alpha/auth/refresh",
                    None,
                    json!({"refresh_token": w.refresh}),
                )
                .await;
            tally.expect(
                "winner's refresh after the race",
                &r,
                401,
                "invalid_refresh_token",
            );
        }
        let r = app.get("/v1/t/alpha/auth/me", Some(&victim.access)).await;
        tally.expect("raced session's access", &r, 401, "session_revoked");
        app.get("/v1/t/alpha/auth/me", Some(&bystander.access))
            .await
            .ok(200);
        app.post(
            "/v1/t/alpha/auth/refresh",
            None,
            json!({"refresh_token": bystander.refresh}),
        )
        .await
        .ok(200);
    }
    println!("racing refreshes ({N} at once): winners per round {winners_seen:?}");
    tally.finish();
    assert_unchanged(&mut app, &alpha, &before, "refresh race").await;
}
