//! The SMS voting demo's bundle (web-demo/) through the real interfaces: Twilio-signed
//! webhooks, the exact tally, web votes under the voting rules, and the bad inputs.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use plinth::demo::{form_body as form, twilio_signature};

use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::support::*;

backend_tests!(
    sms_votes_are_verified_counted_once_and_answered,
    ten_thousand_concurrent_votes_tally_exactly,
    signed_in_users_vote_from_the_page,
);

pub const AUTH_TOKEN: &str = "test-twilio-auth-token";
pub const OPTIONS: [&str; 4] = ["red", "green", "blue", "gold"];

/// The web-demo bundle as it is in the repository.
pub fn bundle() -> serde_json::Map<String, Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web-demo");
    let mut files = serde_json::Map::new();
    for rel in ["plinth.toml", "rules.toml"] {
        let text = std::fs::read_to_string(root.join(rel)).expect("bundle file");
        files.insert(rel.to_string(), Value::from(text));
    }
    for entry in std::fs::read_dir(root.join("functions")).expect("functions/") {
        let p = entry.expect("entry").path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        files.insert(
            format!("functions/{name}"),
            Value::from(std::fs::read_to_string(&p).expect("function")),
        );
    }
    files
}

/// A tenant with the voting bundle deployed, its Twilio secret, an open poll and its
/// tally; returns the service key.
pub async fn voting_tenant(app: &mut TestApp, slug: &str) -> String {
    let key = tenant_with_key(app, slug).await;
    let admin = app.admin().await;
    app.send(
        app.req(
            Method::PUT,
            &format!("/admin/v1/tenants/{slug}/secrets/TWILIO_AUTH_TOKEN"),
            Some(&admin),
        )
        .json(&json!({ "value": AUTH_TOKEN })),
    )
    .await
    .ok(200);
    app.post(
        &format!("/admin/v1/tenants/{slug}/deploys"),
        Some(&admin),
        json!({ "files": bundle() }),
    )
    .await
    .ok(201);
    put(
        app,
        &key,
        &format!("{}/p1", docs(slug, "polls")),
        json!({"question": "Which colour should the logo be?", "options": OPTIONS, "active": true}),
    )
    .await
    .ok(201);
    put(
        app,
        &key,
        &format!("{}/p1", docs(slug, "tallies")),
        json!({"poll": "p1", "counts": {"red": 0, "green": 0, "blue": 0, "gold": 0}}),
    )
    .await
    .ok(201);
    key
}

/// Posts a webhook as Twilio would; `signature` None signs correctly.
async fn sms(
    app: &TestApp,
    tenant: &str,
    params: &[(&str, &str)],
    signature: Option<&str>,
) -> Reply {
    let path = format!("/v1/t/{tenant}/fn/sms");
    let url = app.url(&path);
    let sig = signature
        .map(str::to_string)
        .unwrap_or_else(|| twilio_signature(AUTH_TOKEN, &url, params));
    let mut req = app
        .req(Method::POST, &path, None)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(params));
    if !sig.is_empty() {
        req = req.header("x-twilio-signature", sig);
    }
    app.send(req).await
}

fn message(sid: &str, from: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MessageSid", sid.to_string()),
        ("AccountSid", "AC0123456789".to_string()),
        ("From", from.to_string()),
        ("To", "+15550009999".to_string()),
        ("Body", body.to_string()),
        ("NumMedia", "0".to_string()),
    ]
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn counts(app: &TestApp, tenant: &str) -> Value {
    app.get(&format!("{}/p1", docs(tenant, "tallies")), None)
        .await
        .ok(200)["data"]["counts"]
        .clone()
}

async fn wait_for_counts(app: &TestApp, tenant: &str, want: Value) {
    let got = eventually(
        Duration::from_secs(60),
        "the tally reaches the votes",
        || async {
            let c = counts(app, tenant).await;
            (c == want).then_some(c)
        },
    )
    .await;
    assert_eq!(got, want);
}

#[track_caller]
fn status(r: Reply, want: u16) {
    assert_eq!(r.status.as_u16(), want, "{}", r.text);
}

fn twiml_message(r: &Reply) -> String {
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml"),
        "{:?}",
        r.headers
    );
    let t = &r.text;
    let start = t.find("<Message>").expect("a TwiML message") + "<Message>".len();
    let end = t.find("</Message>").expect("closed");
    assert!(
        t.contains("<Response>") && t.ends_with("</Response>"),
        "{t}"
    );
    t[start..end].to_string()
}

async fn sms_votes_are_verified_counted_once_and_answered(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = voting_tenant(&mut app, "vote").await;

    let m = message("SM0001", "+15550001111", "  vote Red ");
    let reply = twiml_message(&sms(&app, "vote", &pairs(&m), None).await);
    assert_eq!(reply, "Thanks! Your vote for RED is counted.");
    wait_for_counts(
        &app,
        "vote",
        json!({"red": 1, "green": 0, "blue": 0, "gold": 0}),
    )
    .await;

    // The same MessageSid again (a Twilio retry): answered, not counted.
    let reply = twiml_message(&sms(&app, "vote", &pairs(&m), None).await);
    assert_eq!(reply, "This message was already counted.");
    // The same phone votes again: the vote moves.
    let m2 = message("SM0002", "+15550001111", "VOTE blue");
    twiml_message(&sms(&app, "vote", &pairs(&m2), None).await);
    wait_for_counts(
        &app,
        "vote",
        json!({"red": 0, "green": 0, "blue": 1, "gold": 0}),
    )
    .await;

    // Helpful replies, nothing counted.
    for body in ["", "   ", "hello", "VOTE purple", "VOTE", "VOTEred"] {
        let m = message("SM0100", "+15550002222", body);
        let reply = twiml_message(&sms(&app, "vote", &pairs(&m), None).await);
        assert!(
            reply.contains("reply VOTE and one of: RED, GREEN, BLUE, GOLD"),
            "{body:?}: {reply}"
        );
    }
    // XML in the text is escaped in the answer.
    let m = message("SM0101", "+15550002222", "<b>&");
    let r = sms(&app, "vote", &pairs(&m), None).await;
    assert!(!r.text.contains("<b>"), "{}", r.text);

    // Signatures: wrong, missing, signed for another URL, body changed after signing.
    let m = message("SM0200", "+15550003333", "VOTE gold");
    status(
        sms(&app, "vote", &pairs(&m), Some("bm90IGEgc2lnbmF0dXJl")).await,
        403,
    );
    status(sms(&app, "vote", &pairs(&m), Some("")).await, 403);
    let elsewhere = twilio_signature(
        AUTH_TOKEN,
        "https://evil.example/v1/t/vote/fn/sms",
        &pairs(&m),
    );
    status(sms(&app, "vote", &pairs(&m), Some(&elsewhere)).await, 403);
    let good = twilio_signature(AUTH_TOKEN, &app.url("/v1/t/vote/fn/sms"), &pairs(&m));
    let tampered = message("SM0200", "+15550003333", "VOTE red");
    status(sms(&app, "vote", &pairs(&tampered), Some(&good)).await, 403);
    let wrong_key = twilio_signature("another-token", &app.url("/v1/t/vote/fn/sms"), &pairs(&m));
    status(sms(&app, "vote", &pairs(&m), Some(&wrong_key)).await, 403);

    // Malformed bodies.
    let r = app
        .send(
            app.req(Method::POST, "/v1/t/vote/fn/sms", None)
                .header("content-type", "application/json")
                .header("x-twilio-signature", "x")
                .body("{\"Body\": \"VOTE red\"}"),
        )
        .await;
    status(r, 400);
    let no_sid = [("From", "+15550004444"), ("Body", "VOTE red")];
    status(sms(&app, "vote", &no_sid, None).await, 400);
    status(app.get("/v1/t/vote/fn/sms", None).await, 405);

    // Nothing of the refused ones was stored.
    let msgs = app
        .get(
            &format!("{}?limit=100", docs("vote", "messages")),
            Some(&key),
        )
        .await
        .ok(200);
    let sids: Vec<&str> = msgs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(sids, vec!["SM0001", "SM0002"]);
    assert_eq!(
        counts(&app, "vote").await,
        json!({"red": 0, "green": 0, "blue": 1, "gold": 0})
    );
}

async fn ten_thousand_concurrent_votes_tally_exactly(b: Backend) {
    let mut app = TestApp::start(b).await;
    voting_tenant(&mut app, "vote").await;
    const PHONES: usize = 1000;
    const VOTES: usize = 10_000;
    const SENDERS: usize = 64;
    // Each phone's messages go out in order from one sender, so its last vote is known;
    // the phones' votes interleave across the senders.
    let mut per_sender: Vec<Vec<(String, String, String)>> = vec![Vec::new(); SENDERS];
    let mut last: HashMap<usize, &str> = HashMap::new();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for i in 0..VOTES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let phone = i % PHONES;
        let option = OPTIONS[(seed % 4) as usize];
        last.insert(phone, option);
        per_sender[phone % SENDERS].push((
            format!("SM{i:08}"),
            format!("+1555{phone:07}"),
            format!("vote {option}"),
        ));
    }
    let url = app.url("/v1/t/vote/fn/sms");
    let tasks: Vec<_> = per_sender
        .into_iter()
        .map(|msgs| {
            let http = app.http.clone();
            let url = url.clone();
            tokio::spawn(async move {
                for (sid, from, body) in msgs {
                    let m = message(&sid, &from, &body);
                    let p = pairs(&m);
                    let sig = twilio_signature(AUTH_TOKEN, &url, &p);
                    let r = http
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("x-twilio-signature", sig)
                        .body(form(&p))
                        .send()
                        .await
                        .expect("sent");
                    assert_eq!(r.status().as_u16(), 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
    let mut want: BTreeMap<&str, i64> = OPTIONS.iter().map(|o| (*o, 0)).collect();
    for option in last.values() {
        *want.get_mut(option).unwrap() += 1;
    }
    wait_for_counts(&app, "vote", serde_json::to_value(&want).unwrap()).await;
}

async fn signed_in_users_vote_from_the_page(b: Backend) {
    let mut app = TestApp::start(b).await;
    voting_tenant(&mut app, "vote").await;
    let ann = app.signup("vote", "ann@example.com").await;
    let bob = app.signup("vote", "bob@example.com").await;
    let ann_vote = format!("{}/p1-web-{}", docs("vote", "votes"), ann.user_id);
    let vote = |option: &str, uid: &str| json!({"poll": "p1", "option": option, "source": "web", "uid": uid});

    put(&app, &ann.access, &ann_vote, vote("green", &ann.user_id))
        .await
        .ok(201);
    wait_for_counts(
        &app,
        "vote",
        json!({"red": 0, "green": 1, "blue": 0, "gold": 0}),
    )
    .await;
    put(&app, &ann.access, &ann_vote, vote("gold", &ann.user_id))
        .await
        .ok(200);
    wait_for_counts(
        &app,
        "vote",
        json!({"red": 0, "green": 0, "blue": 0, "gold": 1}),
    )
    .await;

    // Not an option: the before hook refuses it, nothing changes.
    let p = put(&app, &ann.access, &ann_vote, vote("purple", &ann.user_id))
        .await
        .problem(400, "function_rejected");
    assert!(
        p["detail"].as_str().unwrap().contains("not an option"),
        "{p}"
    );
    // Bob cannot vote as Ann, nor read her vote; anonymous cannot vote.
    put(&app, &bob.access, &ann_vote, vote("red", &bob.user_id))
        .await
        .problem(403, "rule_denied");
    app.get(&ann_vote, Some(&bob.access))
        .await
        .problem(403, "rule_denied");
    let anon = format!("{}/p1-web-x", docs("vote", "votes"));
    app.send(app.req(Method::PUT, &anon, None).json(&vote("red", "x")))
        .await
        .problem(403, "rule_denied");
    // Ann withdraws her vote.
    app.delete(&ann_vote, Some(&ann.access)).await.ok(204);
    wait_for_counts(
        &app,
        "vote",
        json!({"red": 0, "green": 0, "blue": 0, "gold": 0}),
    )
    .await;
    // Tallies cannot be written by users.
    app.patch(
        &format!("{}/p1", docs("vote", "tallies")),
        Some(&bob.access),
        json!({"counts": {"red": 1000}}),
    )
    .await
    .problem(403, "rule_denied");
}
