//! WebSocket abuse: binary and malformed frames, unknown and ill-typed messages, other
//! tenants' names, oversized frames, floods of subscribe and unsubscribe. Each gets its
//! error frame or the documented close, and the server keeps serving the bystanders.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::backend_tests;
use crate::documents::put;
use crate::realtime::Client;

backend_tests!(abusive_sockets_get_errors_and_others_are_served);

/// Sends one frame and checks the error frame that answers it.
async fn expect_error(c: &mut Client, tally: &Tally, what: &str, frame: Message, code: &str) {
    tally.tried();
    if let Err(e) = c.ws.send(frame).await {
        tally.mismatch(format!("{what}: send failed: {e}"));
        return;
    }
    let m = c.try_recv(Duration::from_secs(10)).await;
    match m {
        Some(m) if m["type"] == "error" && m["error"]["code"] == code => {}
        Some(m) if m["error"]["code"] == "internal" => {
            tally.mismatch(format!("{what}: server error {m}"));
        }
        other => tally.mismatch(format!("{what}: expected error {code}, got {other:?}")),
    }
}

fn text(s: impl Into<String>) -> Message {
    Message::Text(s.into().into())
}

async fn abusive_sockets_get_errors_and_others_are_served(b: Backend) {
    let World {
        mut app,
        alpha,
        bravo,
    } = world(b, &[]).await;
    let tally = Tally::new("websocket", b);
    let alpha_before = state(&mut app, &alpha).await;
    let bravo_before = state(&mut app, &bravo).await;

    // Bystanders of both tenants, subscribed before the abuse starts.
    let mut by_alpha = Client::connect(&app, "alpha", Some(&alpha.key)).await;
    by_alpha
        .subscribe(json!({"type": "subscribe", "id": "b", "collection": "public"}))
        .await;
    let mut by_bravo = Client::connect(&app, "bravo", Some(&bravo.key)).await;
    by_bravo
        .subscribe(json!({"type": "subscribe", "id": "b", "collection": "public"}))
        .await;

    let mut c = Client::connect(&app, "alpha", None).await;
    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let nested_obj = format!(
        "{{\"type\":\"subscribe\",\"id\":\"x\",\"collection\":\"public\",\"filter\":{}{}}}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let frames: Vec<(&str, Message, &str)> = vec![
        (
            "empty binary frame",
            Message::Binary(Vec::new().into()),
            "binary_not_supported",
        ),
        (
            "binary frame",
            Message::Binary(vec![0xffu8, 0, 1].into()),
            "binary_not_supported",
        ),
        (
            "binary JSON",
            Message::Binary(br#"{"type":"ping"}"#.to_vec().into()),
            "binary_not_supported",
        ),
        (
            "binary 60 KB",
            Message::Binary(vec![7u8; 60_000].into()),
            "binary_not_supported",
        ),
        ("empty text", text(""), "malformed_message"),
        ("not JSON", text("{not json"), "malformed_message"),
        ("JSON null", text("null"), "malformed_message"),
        ("JSON array", text("[1,2]"), "malformed_message"),
        ("JSON number", text("42"), "malformed_message"),
        ("JSON string", text("\"ping\""), "malformed_message"),
        ("no type", text("{}"), "malformed_message"),
        ("type a number", text(r#"{"type":5}"#), "malformed_message"),
        ("type null", text(r#"{"type":null}"#), "malformed_message"),
        ("nested 20,000 deep", text(nested), "malformed_message"),
        (
            "filter nested 5,000 deep",
            text(nested_obj),
            "malformed_message",
        ),
        (
            "trailing garbage",
            text(r#"{"type":"ping"} x"#),
            "malformed_message",
        ),
        (
            "unknown type",
            text(r#"{"type":"frobnicate"}"#),
            "unknown_type",
        ),
        (
            "type in capitals",
            text(r#"{"type":"SUBSCRIBE"}"#),
            "unknown_type",
        ),
        ("empty type", text(r#"{"type":""}"#), "unknown_type"),
        (
            "subscribe, no id",
            text(r#"{"type":"subscribe","collection":"public"}"#),
            "malformed_message",
        ),
        (
            "subscribe, id a number",
            text(r#"{"type":"subscribe","id":5,"collection":"public"}"#),
            "malformed_message",
        ),
        (
            "subscribe, collection an array",
            text(r#"{"type":"subscribe","id":"a","collection":[]}"#),
            "malformed_message",
        ),
        (
            "subscribe, since a string",
            text(r#"{"type":"subscribe","id":"a","collection":"public","since":"0"}"#),
            "malformed_message",
        ),
        (
            "subscribe, since 1e30",
            text(r#"{"type":"subscribe","id":"a","collection":"public","since":1e30}"#),
            "malformed_message",
        ),
        (
            "subscribe, since -1",
            text(r#"{"type":"subscribe","id":"a","collection":"public","since":-1}"#),
            "invalid_since",
        ),
        (
            "subscribe, since far ahead",
            text(
                r#"{"type":"subscribe","id":"a","collection":"public","since":9223372036854775807}"#,
            ),
            "invalid_since",
        ),
        (
            "subscribe, filter a number",
            text(r#"{"type":"subscribe","id":"a","collection":"public","filter":5}"#),
            "malformed_message",
        ),
        (
            "subscribe, snapshot a string",
            text(r#"{"type":"subscribe","id":"a","collection":"public","snapshot":"yes"}"#),
            "malformed_message",
        ),
        (
            "subscribe, bad filter",
            text(r#"{"type":"subscribe","id":"a","collection":"public","filter":"doc.n =="}"#),
            "invalid_filter",
        ),
        (
            "subscribe, bravo/public",
            text(r#"{"type":"subscribe","id":"a","collection":"bravo/public"}"#),
            "invalid_subscription",
        ),
        (
            "subscribe, ../bravo/public",
            text(r#"{"type":"subscribe","id":"a","collection":"../bravo/public"}"#),
            "invalid_subscription",
        ),
        (
            "subscribe, bravo.public",
            text(r#"{"type":"subscribe","id":"a","collection":"bravo.public"}"#),
            "invalid_subscription",
        ),
        (
            "subscribe, doc id with a slash",
            text(r#"{"type":"subscribe","id":"a","collection":"public","doc":"../bravo-pub"}"#),
            "invalid_subscription",
        ),
        (
            "subscribe, 10 KB id",
            text(format!(
                r#"{{"type":"subscribe","id":"{}","collection":"public"}}"#,
                "i".repeat(10_000)
            )),
            "invalid_subscription",
        ),
        (
            "subscribe to a collection nobody may read",
            text(r#"{"type":"subscribe","id":"a","collection":"secret"}"#),
            "rule_denied",
        ),
        (
            "subscribe to owner-only notes anonymously",
            text(r#"{"type":"subscribe","id":"a","collection":"notes"}"#),
            "rule_denied",
        ),
        (
            "unsubscribe what does not exist",
            text(r#"{"type":"unsubscribe","id":"nope"}"#),
            "invalid_subscription",
        ),
        (
            "unsubscribe, id a number",
            text(r#"{"type":"unsubscribe","id":5}"#),
            "malformed_message",
        ),
        (
            "auth, garbage token",
            text(r#"{"type":"auth","token":"garbage"}"#),
            "invalid_token",
        ),
        (
            "auth, token a number",
            text(r#"{"type":"auth","token":5}"#),
            "malformed_message",
        ),
        (
            "auth, bravo's key",
            text(format!(r#"{{"type":"auth","token":"{}"}}"#, bravo.key)),
            "invalid_token",
        ),
        (
            "auth, bravo's user",
            text(format!(
                r#"{{"type":"auth","token":"{}"}}"#,
                bravo.owner.access
            )),
            "invalid_token",
        ),
    ];
    for (what, frame, code) in frames {
        expect_error(&mut c, &tally, what, frame, code).await;
    }
    // After all that the socket still works.
    c.send(json!({"type": "ping"})).await;
    tally.tried();
    let m = c.recv().await;
    if m["type"] != "pong" {
        tally.mismatch(format!("ping after the bad frames: {m}"));
    }

    // A doc subscription on alpha naming bravo's document id sees nothing of bravo's.
    c.subscribe(
        json!({"type": "subscribe", "id": "d", "collection": "public", "doc": bravo.doc("public")}),
    )
    .await;

    // A flood: 400 subscribe/unsubscribe pairs sent without waiting, from 4 sockets at
    // once; every subscribe is answered, then a ping gets its pong.
    let started = Instant::now();
    let mut floods = Vec::new();
    for s in 0..4 {
        let mut f = Client::connect(&app, "alpha", None).await;
        floods.push(tokio::spawn(async move {
            for i in 0..100 {
                f.send(
                    json!({"type": "subscribe", "id": format!("s{s}-{i}"), "collection": "public"}),
                )
                .await;
                f.send(json!({"type": "unsubscribe", "id": format!("s{s}-{i}")}))
                    .await;
            }
            f.send(json!({"type": "ping"})).await;
            let mut subscribed = 0;
            loop {
                let m = f.recv().await;
                match m["type"].as_str() {
                    Some("subscribed") => subscribed += 1,
                    Some("pong") => break,
                    _ => return Err(format!("flood {s}: {m}")),
                }
            }
            Ok(subscribed)
        }));
    }
    // Meanwhile the bystanders are served.
    let mut lat = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        put(
            &app,
            &bravo.key,
            "/v1/t/bravo/collections/public/docs/bravo-pub",
            json!({"i": i}),
        )
        .await
        .ok(200);
        by_bravo.changes(1).await;
        lat.push(t.elapsed());
    }
    for f in floods {
        tally.tried();
        match f.await.expect("flood task") {
            Ok(100) => {}
            other => tally.mismatch(format!("flood: {other:?}")),
        }
    }
    println!(
        "websocket flood (4 sockets x 200 frames) took {:?}; bravo write->event latency meanwhile {lat:?}",
        started.elapsed()
    );
    assert!(lat.iter().all(|l| *l < Duration::from_secs(5)), "{lat:?}");

    // 101 subscriptions on one socket: the last is refused, the socket lives.
    let mut many = Client::connect(&app, "alpha", None).await;
    for i in 0..100 {
        many.send(json!({"type": "subscribe", "id": format!("m{i}"), "collection": "public"}))
            .await;
    }
    for _ in 0..100 {
        many.until("subscribed").await;
    }
    expect_error(
        &mut many,
        &tally,
        "101st subscription",
        text(r#"{"type":"subscribe","id":"last","collection":"public"}"#),
        "too_many_subscriptions",
    )
    .await;

    // Oversized frames close that socket with 1009, text or binary.
    for (what, frame) in [
        (
            "text frame of 70 KB",
            text(format!(
                r#"{{"type":"ping","pad":"{}"}}"#,
                "x".repeat(70_000)
            )),
        ),
        (
            "binary frame of 70 KB",
            Message::Binary(vec![1u8; 70_000].into()),
        ),
        ("text frame of 1 MB", text("y".repeat(1_000_000))),
    ] {
        let mut big = Client::connect(&app, "alpha", None).await;
        tally.tried();
        let _ = big.ws.send(frame).await;
        match big.try_recv(Duration::from_secs(5)).await {
            Some(m) if m["type"] == "__closed" && m["code"] == 1009 => {}
            other => tally.mismatch(format!("{what}: expected close 1009, got {other:?}")),
        }
    }

    // The bystanders never saw the abuse, and still get their events; c's doc
    // subscription saw nothing of bravo's writes to its namesake.
    if let Some(m) = c.try_recv(Duration::from_millis(300)).await {
        tally.mismatch(format!("alpha doc subscription on bravo's id saw {m}"));
    }
    tally.finish();
    assert_unchanged(&mut app, &alpha, &alpha_before, "websocket abuse").await;
    let bravo_after = state(&mut app, &bravo).await;
    assert_eq!(bravo_after.change_seq, bravo_before.change_seq + 5);
    put(
        &app,
        &alpha.key,
        "/v1/t/alpha/collections/public/docs/after",
        json!({"ok": true}),
    )
    .await
    .ok(201);
    let ch = by_alpha.changes(1).await;
    assert_eq!(ch[0]["doc"]["id"], "after");
    let worst = worst_healthz(&app, 5).await;
    println!("websocket abuse: /healthz worst of 5 afterwards {worst:?}");
}
