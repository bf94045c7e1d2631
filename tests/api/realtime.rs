//! Realtime feeds over a real WebSocket (tokio-tungstenite), on both backends.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::rules::{NOTES_RULES, install_rules};
use crate::support::*;

// Other test files reach the WebSocket client through here.
pub use crate::support::Client;

backend_tests!(
    users_see_only_what_their_rule_allows,
    filters_send_remove_and_rules_apply_live,
    snapshot_and_since_resume_without_gaps,
    since_replays_only_the_subscribed_collection,
    new_collections_join_a_busy_feed_without_gaps,
    resume_after_a_restart,
    slow_consumer_is_cut_off_alone,
    a_consumer_that_never_reads_is_let_go,
    a_consumer_stuck_in_its_snapshot_is_let_go,
    tokens_refresh_expire_and_revoke,
    bad_input_gets_errors_not_crashes,
    silent_sockets_time_out,
    since_replays_gaps_of_any_size,
    costly_subscription_filters_are_refused,
    upgrade_reads_authorization_like_rest,
    upgrades_count_in_the_tenants_usage,
    a_newcomer_to_an_idle_feed_starts_at_the_head,
);

mod nodes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_and_revocations_cross_nodes_on_postgres() {
        if !postgres_available() {
            return;
        }
        let mut a = TestApp::start(Backend::Postgres).await;
        let key = tenant_with_key(&mut a, "shop").await;
        install_rules(&mut a, "shop", NOTES_RULES).await.ok(200);
        let alice = a.signup("shop", "alice@shop.test").await;
        // A second node on the same database.
        let location = a.storage.location.clone();
        let b = TestApp::start_on(
            Backend::Postgres,
            Storage {
                location,
                _dir: None,
            },
            |_| {},
        )
        .await;
        let mut on_b = Client::connect(&b, "shop", Some(&alice.access)).await;
        on_b.subscribe(json!({"type": "subscribe", "id": "n", "collection": "notes"}))
            .await;
        a.post(
            &docs("shop", "notes"),
            Some(&key),
            json!({"owner": alice.user_id, "title": "from a"}),
        )
        .await
        .ok(201);
        let got = on_b.changes(1).await;
        assert_eq!(
            got[0]["doc"]["data"]["title"], "from a",
            "a write on node A reaches node B"
        );

        let admin = a.admin().await;
        let started = std::time::Instant::now();
        a.post(
            &format!(
                "/admin/v1/tenants/shop/users/{}/revoke-sessions",
                alice.user_id
            ),
            Some(&admin),
            json!({}),
        )
        .await
        .ok(200);
        assert_eq!(on_b.until("__closed").await["code"], 1008);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed in {:?}",
            started.elapsed()
        );
    }

    /// The `plinth` CLI is a process of its own on the same database: a revocation it
    /// makes reaches a running node's sockets at once, announced by its `auth`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cli_revocations_reach_a_running_node_on_postgres() {
        if !postgres_available() {
            return;
        }
        let mut a = TestApp::start(Backend::Postgres).await;
        tenant_with_key(&mut a, "shop").await;
        install_rules(&mut a, "shop", NOTES_RULES).await.ok(200);
        let alice = a.signup("shop", "alice@shop.test").await;
        let mut ws = Client::connect(&a, "shop", Some(&alice.access)).await;
        ws.subscribe(json!({"type": "subscribe", "id": "n", "collection": "notes"}))
            .await;
        let storage = Storage {
            location: a.storage.location.clone(),
            _dir: None,
        };
        let out = crate::cli::plinth(
            &storage,
            &[
                "users",
                "revoke-sessions",
                &alice.user_id,
                "--tenant",
                "shop",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let done = std::time::Instant::now();
        assert_eq!(ws.until("__closed").await["code"], 1008);
        assert!(
            done.elapsed() < Duration::from_secs(2),
            "closed {:?} after the CLI ended",
            done.elapsed()
        );
    }
}

/// Asserts that an upgrade to `url` is refused with this HTTP status.
async fn assert_refused(url: &str, status: u16) {
    let err = tokio_tungstenite::connect_async(url)
        .await
        .expect_err("the upgrade is refused");
    assert!(err.to_string().contains(&status.to_string()), "{err}");
}

/// Upgrades with this `Authorization` header.
async fn upgrade_with_header(
    app: &TestApp,
    tenant: &str,
    authorization: &str,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = ws_url(app, tenant).into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        authorization.parse().expect("header value"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(Client { ws })
}

/// A tenant "shop" whose `log` collection anyone may read; its service key.
async fn tenant_with_open_log(app: &mut TestApp) -> String {
    let key = tenant_with_key(app, "shop").await;
    install_rules(app, "shop", "[log]\nread = \"true\"\n")
        .await
        .ok(200);
    key
}

fn seqs(changes: &[Value]) -> Vec<i64> {
    changes.iter().map(|c| c["seq"].as_i64().unwrap()).collect()
}

async fn users_see_only_what_their_rule_allows(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    let alice = app.signup("shop", "alice@shop.test").await;
    let bob = app.signup("shop", "bob@shop.test").await;

    let mut a = Client::connect(&app, "shop", None).await;
    a.send(json!({"type": "auth", "token": alice.access})).await;
    let auth = a.until("authenticated").await;
    assert_eq!(auth["uid"], alice.user_id.as_str());
    let mut bc = Client::connect(&app, "shop", Some(&bob.access)).await;
    let sa = a
        .subscribe(json!({"type": "subscribe", "id": "n", "collection": "notes"}))
        .await;
    bc.subscribe(json!({"type": "subscribe", "id": "n", "collection": "notes"}))
        .await;
    let mut svc = Client::connect(&app, "shop", Some(&key)).await;
    svc.subscribe(json!({"type": "subscribe", "id": "all", "collection": "notes"}))
        .await;

    let notes = docs("shop", "notes");
    app.post(
        &notes,
        Some(&alice.access),
        json!({"owner": alice.user_id, "title": "a1"}),
    )
    .await
    .ok(201);
    app.post(
        &notes,
        Some(&bob.access),
        json!({"owner": bob.user_id, "title": "b1"}),
    )
    .await
    .ok(201);
    app.post(
        &notes,
        Some(&alice.access),
        json!({"owner": alice.user_id, "title": "a2", "public": true}),
    )
    .await
    .ok(201);

    let got_a = a.changes(2).await;
    assert_eq!(
        got_a
            .iter()
            .map(|c| c["doc"]["data"]["title"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["a1", "a2"]
    );
    assert!(got_a.iter().all(|c| c["op"] == "create" && c["id"] == "n"));
    assert_eq!(got_a[0]["doc"]["collection"], "notes");
    assert_eq!(got_a[0]["doc"]["version"], 1);
    let got_b = bc.changes(2).await;
    assert_eq!(
        got_b
            .iter()
            .map(|c| c["doc"]["data"]["title"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["b1", "a2"]
    );
    assert_eq!(
        svc.changes(3).await.len(),
        3,
        "a service key sees everything"
    );
    a.quiet(Duration::from_millis(300)).await;

    // The same through replay from `since`.
    let mut late = Client::connect(&app, "shop", Some(&bob.access)).await;
    late.subscribe(
        json!({"type": "subscribe", "id": "r", "collection": "notes", "since": sa["seq"]}),
    )
    .await;
    let replayed = late.changes(2).await;
    assert_eq!(
        replayed
            .iter()
            .map(|c| c["doc"]["data"]["title"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["b1", "a2"]
    );
    assert_eq!(seqs(&replayed), seqs(&got_b));
    late.quiet(Duration::from_millis(300)).await;
}

async fn filters_send_remove_and_rules_apply_live(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", "[items]\nread = \"true\"\n")
        .await
        .ok(200);
    let mut c = Client::connect(&app, "shop", None).await;
    c.subscribe(json!({"type": "subscribe", "id": "open", "collection": "items", "filter": "doc.status == 'open'"})).await;
    let mut one = Client::connect(&app, "shop", None).await;
    one.subscribe(json!({"type": "subscribe", "id": "x", "collection": "items", "doc": "i2"}))
        .await;

    let base = docs("shop", "items");
    put(&app, &key, &format!("{base}/i1"), json!({"status": "open"}))
        .await
        .ok(201);
    put(
        &app,
        &key,
        &format!("{base}/i2"),
        json!({"status": "closed"}),
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{base}/i1"),
        json!({"status": "closed", "n": 2}),
    )
    .await
    .ok(200);
    put(&app, &key, &format!("{base}/i2"), json!({"status": "open"}))
        .await
        .ok(200);
    app.delete(&format!("{base}/i2"), Some(&key)).await.ok(204);

    let got = c.changes(4).await;
    let ops: Vec<(&str, &str)> = got
        .iter()
        .map(|g| (g["op"].as_str().unwrap(), g["doc"]["id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops,
        [
            ("create", "i1"),
            ("remove", "i1"),
            ("update", "i2"),
            ("delete", "i2")
        ]
    );
    // remove carries the last version the subscriber could read.
    assert_eq!(got[1]["doc"]["data"], json!({"status": "open"}));
    assert_eq!(got[1]["doc"]["version"], 1);
    assert_eq!(got[3]["doc"]["version"], 2);
    let only_i2 = one.changes(3).await;
    assert!(only_i2.iter().all(|g| g["doc"]["id"] == "i2"));
    assert_eq!(
        only_i2
            .iter()
            .map(|g| g["op"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["create", "update", "delete"]
    );

    // A new rule set applies to the live subscription at once.
    install_rules(&mut app, "shop", "[items]\nread = \"doc.public == true\"\n")
        .await
        .ok(200);
    put(&app, &key, &format!("{base}/i3"), json!({"status": "open"}))
        .await
        .ok(201);
    put(
        &app,
        &key,
        &format!("{base}/i4"),
        json!({"status": "open", "public": true}),
    )
    .await
    .ok(201);
    let got = c.changes(1).await;
    assert_eq!(got[0]["doc"]["id"], "i4");
    c.quiet(Duration::from_millis(300)).await;
}

async fn snapshot_and_since_resume_without_gaps(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_open_log(&mut app).await;
    let base = docs("shop", "log");
    for i in 0..5 {
        put(&app, &key, &format!("{base}/pre{i}"), json!({"i": i}))
            .await
            .ok(201);
    }
    // Writers run while a subscriber takes a snapshot, then follows.
    let writer = {
        let http = app.http.clone();
        let url = app.url(&base);
        let key = key.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                let r = http
                    .put(format!("{url}/w{}", i % 30))
                    .bearer_auth(&key)
                    .json(&json!({"i": i}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        })
    };
    let mut c = Client::connect(&app, "shop", None).await;
    c.send(json!({"type": "subscribe", "id": "s", "collection": "log", "snapshot": true}))
        .await;
    let sub = c.until("subscribed").await;
    let snap = c.until("snapshot").await;
    assert_eq!(snap["seq"], sub["seq"]);
    let mut state: BTreeMap<String, Value> = snap["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap().to_string(), d["data"].clone()))
        .collect();
    let mut last = snap["seq"].as_i64().unwrap();
    writer.await.unwrap();
    let (final_seq, _) = crate::documents::change_seq(&app, "shop").await;
    // Apply changes until the log's end: every seq exactly once, in order.
    while last < final_seq {
        let m = c.recv().await;
        assert_eq!(m["type"], "change", "{m}");
        let seq = m["seq"].as_i64().unwrap();
        assert_eq!(seq, last + 1, "gap or repeat at the snapshot seam");
        last = seq;
        let id = m["doc"]["id"].as_str().unwrap().to_string();
        match m["op"].as_str().unwrap() {
            "delete" | "remove" => {
                state.remove(&id);
            }
            _ => {
                state.insert(id, m["doc"]["data"].clone());
            }
        }
    }
    let list = app
        .get(&format!("{base}?limit=1000"), Some(&key))
        .await
        .ok(200);
    let stored: BTreeMap<String, Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap().to_string(), d["data"].clone()))
        .collect();
    assert_eq!(state, stored, "snapshot + changes = the stored collection");

    // A disconnect in the middle of a burst: resume from the last seq seen.
    let mut c = Client::connect(&app, "shop", None).await;
    let s0 = c
        .subscribe(json!({"type": "subscribe", "id": "s", "collection": "log"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    let burst = {
        let http = app.http.clone();
        let url = app.url(&base);
        let key = key.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                http.put(format!("{url}/b{i}"))
                    .bearer_auth(&key)
                    .json(&json!({"i": i}))
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    let first = c.changes(20).await;
    drop(c);
    let seen = seqs(&first);
    assert_eq!(seen, (s0 + 1..=s0 + 20).collect::<Vec<_>>());
    let mut c2 = Client::connect(&app, "shop", None).await;
    c2.subscribe(
        json!({"type": "subscribe", "id": "s", "collection": "log", "since": seen.last().unwrap()}),
    )
    .await;
    burst.await.unwrap();
    let rest = c2.changes(80).await;
    assert_eq!(
        seqs(&rest),
        (s0 + 21..=s0 + 100).collect::<Vec<_>>(),
        "nothing lost, repeated or reordered"
    );
    c2.quiet(Duration::from_millis(300)).await;

    // since ahead of the log; since older than the retained log.
    let mut c3 = Client::connect(&app, "shop", None).await;
    c3.send(json!({"type": "subscribe", "id": "f", "collection": "log", "since": 1_000_000}))
        .await;
    let e = c3.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["error"]["code"].as_str()),
        (Some("error"), Some("invalid_since"))
    );
    let state_ = app.running.as_ref().unwrap().state.clone();
    let scope = crate::documents::scope_of(&app, "shop").await;
    state_
        .store
        .prune_changes(&scope, chrono::Utc::now().timestamp_millis() + 1000)
        .await
        .unwrap();
    c3.send(json!({"type": "subscribe", "id": "old", "collection": "log", "since": 3}))
        .await;
    let r = c3.recv().await;
    assert_eq!(
        (r["type"].as_str(), r["reason"].as_str()),
        (Some("resync"), Some("since_too_old"))
    );
}

/// A replay from `since` reads the whole change log: changes of other collections (whose
/// read rules may forbid them, or whose documents share the subscribed id) stay out.
async fn since_replays_only_the_subscribed_collection(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(
        &mut app,
        "shop",
        "[log]\nread = \"true\"\n\n[private]\nread = \"false\"\n",
    )
    .await
    .ok(200);
    let mut c = Client::connect(&app, "shop", None).await;
    let whole = c
        .subscribe(json!({"type": "subscribe", "id": "all", "collection": "log"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    drop(c);
    put(
        &app,
        &key,
        &format!("{}/shared", docs("shop", "private")),
        json!({"secret": 1}),
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{}/shared", docs("shop", "log")),
        json!({"public": 1}),
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{}/other", docs("shop", "private")),
        json!({"secret": 2}),
    )
    .await
    .ok(201);

    let mut c = Client::connect(&app, "shop", None).await;
    c.subscribe(json!({"type": "subscribe", "id": "all", "collection": "log", "since": whole}))
        .await;
    let got = c.changes(1).await;
    assert_eq!(got[0]["doc"]["collection"], "log", "{got:?}");
    c.subscribe(json!({"type": "subscribe", "id": "one", "collection": "log", "doc": "shared", "since": whole}))
        .await;
    let got = c.changes(1).await;
    assert_eq!(got[0]["id"], "one");
    assert_eq!(got[0]["doc"]["collection"], "log", "{got:?}");
    c.quiet(Duration::from_millis(300)).await;
}

/// The tailer reads only the changes of collections with subscribers. Subscriptions (with
/// `since`) to collections nobody followed, made while another collection is written at
/// full speed, still get every change: the race is a tailer read made without the new
/// collection, landing after the subscription registered at an older position.
async fn new_collections_join_a_busy_feed_without_gaps(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let rounds = 40;
    let mut rules = String::from("[noise]\nread = \"true\"\n");
    for r in 0..rounds {
        rules.push_str(&format!("\n[target{r}]\nread = \"true\"\n"));
    }
    install_rules(&mut app, "shop", &rules).await.ok(200);
    let mut a = Client::connect(&app, "shop", None).await;
    let start = a
        .subscribe(json!({"type": "subscribe", "id": "n", "collection": "noise"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let noise = |w: usize| {
        let (app, key, done) = (&app, &key, &done);
        async move {
            let mut i = 0;
            // Bounded: the noise subscriber reads only at the end (its queue holds 1,024).
            while !done.load(std::sync::atomic::Ordering::Relaxed) && i < 200 {
                put(
                    app,
                    key,
                    &format!("{}/n{w}-{i}", docs("shop", "noise")),
                    json!({"i": i}),
                )
                .await
                .ok(201);
                i += 1;
            }
            i
        }
    };
    let targets = async {
        for r in 0..rounds {
            let collection = format!("target{r}");
            let url = |id: &str| format!("{}/{id}", docs("shop", &collection));
            put(&app, &key, &url("pre"), json!({})).await.ok(201);
            let mut c = Client::connect(&app, "shop", None).await;
            c.subscribe(
                json!({"type": "subscribe", "id": "t", "collection": collection, "since": start}),
            )
            .await;
            put(&app, &key, &url("post"), json!({})).await.ok(201);
            let got = c.changes(2).await;
            let ids: Vec<&str> = got
                .iter()
                .map(|g| g["doc"]["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, ["pre", "post"], "round {r}: {got:?}");
            c.quiet(Duration::from_millis(20)).await;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (written, ()) =
        futures_util::future::join(futures_util::future::join_all((0..4).map(noise)), targets)
            .await;
    // The noise subscriber got every noise write too, in order.
    let written: usize = written.iter().sum();
    let got = a.changes(written).await;
    assert!(seqs(&got).windows(2).all(|w| w[0] < w[1]));
}

async fn resume_after_a_restart(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_open_log(&mut app).await;
    let base = docs("shop", "log");
    let mut c = Client::connect(&app, "shop", None).await;
    let s0 = c
        .subscribe(json!({"type": "subscribe", "id": "s", "collection": "log"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    for i in 0..10 {
        put(&app, &key, &format!("{base}/d{i}"), json!({"i": i}))
            .await
            .ok(201);
    }
    let before = c.changes(10).await;
    let last = *seqs(&before).last().unwrap();
    assert_eq!(last, s0 + 10);
    // Writes the client misses while the server goes down and comes back.
    put(&app, &key, &format!("{base}/while-closing"), json!({}))
        .await
        .ok(201);
    let storage = app.stop().await;
    let closed = c.try_recv(Duration::from_secs(5)).await;
    let closed_ok = closed
        .as_ref()
        .is_some_and(|m| m["type"] == "__closed" || m["type"] == "change");
    assert!(closed_ok, "the socket ends on shutdown: {closed:?}");
    let app = TestApp::start_on(b, storage, |_| {}).await;
    put(&app, &key, &format!("{base}/after-restart"), json!({}))
        .await
        .ok(201);
    let mut c = Client::connect(&app, "shop", None).await;
    c.subscribe(json!({"type": "subscribe", "id": "s", "collection": "log", "since": last}))
        .await;
    let missed = c.changes(2).await;
    assert_eq!(seqs(&missed), vec![last + 1, last + 2]);
    assert_eq!(missed[0]["doc"]["id"], "while-closing");
    assert_eq!(missed[1]["doc"]["id"], "after-restart");
}

async fn slow_consumer_is_cut_off_alone(b: Backend) {
    // The slow socket reads only once the burst is over; on a loaded machine that is
    // later than the default 5 s its last frames get, and they would be dropped unread.
    let mut app = TestApp::start_with(b, |c| {
        c.realtime.queue_capacity = 16;
        c.realtime.close_grace = Duration::from_secs(60);
    })
    .await;
    let key = tenant_with_open_log(&mut app).await;
    let base = docs("shop", "log");
    // The slow one subscribes and never reads; its TCP buffers fill, then its queue.
    let mut slow = Client::connect_small_buffer(&app, "shop").await;
    slow.subscribe(json!({"type": "subscribe", "id": "s", "collection": "log"}))
        .await;
    let mut fast = Client::connect(&app, "shop", None).await;
    let f0 = fast
        .subscribe(json!({"type": "subscribe", "id": "f", "collection": "log"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    // More than the kernel buffers (several MiB on loopback) and the queue can hold.
    let big = "x".repeat(100_000);
    let writes = 120;
    let writer = {
        let http = app.http.clone();
        let url = app.url(&base);
        let key = key.clone();
        let big = big.clone();
        tokio::spawn(async move {
            for i in 0..writes {
                let r = http
                    .put(format!("{url}/w{i}"))
                    .bearer_auth(&key)
                    .json(&json!({"i": i, "pad": big}))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    r.status().is_success(),
                    "writers are never slowed down into failure"
                );
            }
        })
    };
    let got = fast.changes(writes).await;
    assert_eq!(
        seqs(&got),
        (f0 + 1..=f0 + writes as i64).collect::<Vec<_>>()
    );
    writer.await.unwrap();
    // Now the slow one reads: some changes, then resync, then a close.
    let mut saw_resync = false;
    let mut closed = None;
    while closed.is_none() {
        let m = slow
            .try_recv(Duration::from_secs(10))
            .await
            .expect("the slow socket ends");
        match m["type"].as_str() {
            Some("resync") => {
                assert_eq!(m["reason"], "slow_consumer");
                saw_resync = true;
            }
            Some("__closed") => closed = Some(m),
            _ => {}
        }
    }
    assert!(saw_resync, "a resync before the close");
    assert_eq!(closed.unwrap()["code"], 1013);
}

/// A slow consumer that never reads again cannot hold its socket (and its slot under
/// the per-IP limit) forever: its last frames get a bounded time to go out.
async fn a_consumer_that_never_reads_is_let_go(b: Backend) {
    let mut app = TestApp::start_with(b, |c| {
        c.realtime.queue_capacity = 16;
        c.realtime.max_sockets_per_ip = 1;
    })
    .await;
    let key = tenant_with_open_log(&mut app).await;
    let mut stuck = Client::connect_small_buffer(&app, "shop").await;
    stuck
        .subscribe(json!({"type": "subscribe", "id": "s", "collection": "log"}))
        .await;
    let url = ws_url(&app, "shop");
    // The one slot per IP is taken.
    assert_refused(&url, 429).await;
    // Enough to fill the kernel buffers and the queue; the stuck client never reads.
    let big = "x".repeat(100_000);
    for i in 0..120 {
        let path = format!("{}/w{i}", docs("shop", "log"));
        put(&app, &key, &path, json!({"i": i, "pad": big}))
            .await
            .ok(201);
    }
    // Cut off as a slow consumer, its resync and close frames cannot go out; after the
    // grace period the server drops the connection and the slot is free again.
    slot_frees_up(&url).await;
    drop(stuck);
}

/// The same while the socket is still sending the subscription's snapshot. No kill comes
/// (the subscription's events wait in its replay buffer, not in the socket's queue): the
/// snapshot's write must give up after the idle timeout.
async fn a_consumer_stuck_in_its_snapshot_is_let_go(b: Backend) {
    let mut app = TestApp::start_with(b, |c| {
        c.realtime.max_sockets_per_ip = 1;
        c.realtime.idle_timeout = Duration::from_secs(3);
        // No ping tick (where idle sockets are closed) within the test: only a write
        // that gives up can free the slot.
        c.realtime.ping_interval = Duration::from_secs(600);
    })
    .await;
    let key = tenant_with_open_log(&mut app).await;
    // A snapshot of ~8 MB: more than the kernel buffers of a client that does not read.
    let big = "x".repeat(200_000);
    for i in 0..40 {
        let path = format!("{}/d{i}", docs("shop", "log"));
        put(&app, &key, &path, json!({"i": i, "pad": big}))
            .await
            .ok(201);
    }
    let mut stuck = Client::connect_small_buffer(&app, "shop").await;
    stuck
        .send(json!({"type": "subscribe", "id": "s", "collection": "log", "snapshot": true}))
        .await;
    let url = ws_url(&app, "shop");
    // Its slot is taken while the snapshot is stuck, then freed.
    assert_refused(&url, 429).await;
    slot_frees_up(&url).await;
    drop(stuck);
}

/// Waits (at most 30 s) until the per-IP limit of 1 admits a new socket.
async fn slot_frees_up(url: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok(_) => return,
            Err(e) => {
                assert!(e.to_string().contains("429"), "{e}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the stuck consumer still holds its slot after 30 s"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn tokens_refresh_expire_and_revoke(b: Backend) {
    let mut app = TestApp::start_with(b, |c| c.access_ttl = Duration::from_secs(3)).await;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    let alice = app.signup("shop", "alice@shop.test").await;
    let notes = docs("shop", "notes");

    // Expiry: the subscription that needed the token ends; the socket stays open.
    let mut c = Client::connect(&app, "shop", Some(&alice.access)).await;
    c.subscribe(json!({"type": "subscribe", "id": "mine", "collection": "notes"}))
        .await;
    let ended = c.until("error").await;
    assert_eq!(
        (ended["id"].as_str(), ended["error"]["code"].as_str()),
        (Some("mine"), Some("token_expired"))
    );
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.until("pong").await["type"], "pong");

    // Live refresh: swap the token in place before it expires.
    let s = Session::from_json(&app.login("shop", "alice@shop.test", PASSWORD).await.ok(200));
    let mut c = Client::connect(&app, "shop", Some(&s.access)).await;
    c.subscribe(json!({"type": "subscribe", "id": "mine", "collection": "notes"}))
        .await;
    let mut current = s.refresh.clone();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let r = Session::from_json(
            &app.post(
                "/v1/t/shop/auth/refresh",
                None,
                json!({"refresh_token": current}),
            )
            .await
            .ok(200),
        );
        current = r.refresh.clone();
        c.send(json!({"type": "auth", "token": r.access})).await;
        c.until("authenticated").await;
    }
    app.post(
        &notes,
        Some(&key),
        json!({"owner": alice.user_id, "title": "still here"}),
    )
    .await
    .ok(201);
    let got = c.changes(1).await;
    assert_eq!(
        got[0]["doc"]["data"]["title"], "still here",
        "the refreshed socket kept its subscription"
    );

    // Revocation closes the socket within a second.
    let admin = app.admin().await;
    let started = std::time::Instant::now();
    app.post(
        &format!(
            "/admin/v1/tenants/shop/users/{}/revoke-sessions",
            alice.user_id
        ),
        Some(&admin),
        json!({}),
    )
    .await
    .ok(200);
    let closed = c.until("__closed").await;
    assert_eq!(closed["code"], 1008);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed in {:?}",
        started.elapsed()
    );

    // Disabling closes too.
    let s = Session::from_json(&app.login("shop", "alice@shop.test", PASSWORD).await.ok(200));
    let mut c = Client::connect(&app, "shop", Some(&s.access)).await;
    c.subscribe(json!({"type": "subscribe", "id": "mine", "collection": "notes"}))
        .await;
    app.post(
        &format!("/admin/v1/tenants/shop/users/{}/disable", alice.user_id),
        Some(&admin),
        json!({}),
    )
    .await
    .ok(200);
    assert_eq!(c.until("__closed").await["code"], 1008);
}

async fn bad_input_gets_errors_not_crashes(b: Backend) {
    let mut app = TestApp::start_with(b, |c| c.realtime.max_sockets_per_ip = 5).await;
    let key = tenant_with_key(&mut app, "shop").await;
    app.create_tenant("other").await;
    let rules =
        format!("{NOTES_RULES}\n[private]\nread = \"auth != null && doc.owner == auth.uid\"\n");
    install_rules(&mut app, "shop", &rules).await.ok(200);
    let other_user = app.signup("other", "x@other.test").await;
    let mut bystander = Client::connect(&app, "shop", Some(&key)).await;
    bystander
        .subscribe(json!({"type": "subscribe", "id": "b", "collection": "notes"}))
        .await;

    let mut c = Client::connect(&app, "shop", None).await;
    let code = |m: &Value| m["error"]["code"].as_str().unwrap_or("").to_string();
    c.ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(code(&c.recv().await), "malformed_message");
    c.ws.send(Message::Text("[1,2]".into())).await.unwrap();
    assert_eq!(code(&c.recv().await), "malformed_message");
    c.send(json!({"type": "frobnicate"})).await;
    assert_eq!(code(&c.recv().await), "unknown_type");
    c.ws.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(code(&c.recv().await), "binary_not_supported");
    c.send(json!({"type": "subscribe", "id": "n", "collection": "nope"}))
        .await;
    let e = c.recv().await;
    assert_eq!(
        (code(&e), e["id"].as_str()),
        ("rule_denied".to_string(), Some("n")),
        "{e}"
    );
    // This rule needs auth: refused before auth, with a hint.
    c.send(json!({"type": "subscribe", "id": "n", "collection": "private"}))
        .await;
    let e = c.recv().await;
    assert_eq!(code(&e), "rule_denied");
    assert!(e["error"]["message"].as_str().unwrap().contains("auth"));
    c.send(json!({"type": "subscribe", "id": "f", "collection": "notes", "filter": "doc.x =="}))
        .await;
    let e = c.recv().await;
    assert!(
        ["invalid_filter", "rule_denied"].contains(&code(&e).as_str()),
        "{e}"
    );
    c.send(json!({"type": "subscribe", "id": "bad name", "collection": "Bad"}))
        .await;
    assert_eq!(code(&c.recv().await), "invalid_subscription");
    // A token of another tenant: refused, the socket stays anonymous and open.
    c.send(json!({"type": "auth", "token": other_user.access}))
        .await;
    assert_eq!(code(&c.recv().await), "invalid_token");
    c.send(json!({"type": "auth", "token": key})).await;
    assert_eq!(c.recv().await["type"], "authenticated");
    c.send(json!({"type": "subscribe", "id": "f", "collection": "notes", "filter": "doc.x =="}))
        .await;
    assert_eq!(code(&c.recv().await), "invalid_filter");
    c.send(json!({"type": "subscribe", "id": "ok", "collection": "notes"}))
        .await;
    c.until("subscribed").await;
    c.send(json!({"type": "subscribe", "id": "ok", "collection": "notes"}))
        .await;
    assert_eq!(code(&c.recv().await), "invalid_subscription");
    for i in 0..99 {
        c.send(json!({"type": "subscribe", "id": format!("m{i}"), "collection": "notes"}))
            .await;
        c.until("subscribed").await;
    }
    c.send(json!({"type": "subscribe", "id": "one-too-many", "collection": "notes"}))
        .await;
    assert_eq!(code(&c.recv().await), "too_many_subscriptions");

    // A frame over the size limit closes that socket with 1009; others carry on.
    let mut big = Client::connect(&app, "shop", None).await;
    let _ = big
        .ws
        .send(Message::Text(
            format!("{{\"type\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(70_000)).into(),
        ))
        .await;
    let closed = big.try_recv(Duration::from_secs(5)).await.expect("closed");
    assert_eq!(closed["type"], "__closed");
    assert_eq!(closed["code"], 1009);

    // The upgrade itself: an invalid token and too many sockets are HTTP errors.
    assert_refused(&format!("{}?access_token=nope", ws_url(&app, "shop")), 401).await;
    assert_refused(&ws_url(&app, "ghost"), 404).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect(&app, "shop", None).await);
    }
    // Over the per-IP limit.
    assert_refused(&ws_url(&app, "shop"), 429).await;

    // The bystander saw none of this and still gets its events.
    app.post(
        &docs("shop", "notes"),
        Some(&key),
        json!({"owner": "z", "title": "t"}),
    )
    .await
    .ok(201);
    assert_eq!(bystander.changes(1).await[0]["doc"]["data"]["title"], "t");
}

async fn silent_sockets_time_out(b: Backend) {
    let app = TestApp::start_with(b, |c| {
        c.realtime.ping_interval = Duration::from_millis(100);
        c.realtime.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let mut app = app;
    tenant_with_key(&mut app, "shop").await;
    let mut c = Client::connect(&app, "shop", None).await;
    // Not reading means not answering pings: after the idle timeout the server closes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let closed = c.until("__closed").await;
    assert_eq!(closed["code"], 4000, "{closed}");
    // A client that reads (and so answers pings) stays open.
    let mut live = Client::connect(&app, "shop", None).await;
    live.quiet(Duration::from_millis(1200)).await;
    live.send(json!({"type": "ping"})).await;
    assert_eq!(live.until("pong").await["type"], "pong");
}

/// Writes `n` documents to `shop/log` in batches (the API takes up to 500 writes each).
async fn write_log(app: &TestApp, key: &str, n: usize) {
    let mut left = n;
    while left > 0 {
        let k = left.min(500);
        let writes: Vec<Value> = (0..k)
            .map(|i| json!({"op": "create", "collection": "log", "data": {"i": i}}))
            .collect();
        app.post("/v1/t/shop/batch", Some(key), json!({ "writes": writes }))
            .await
            .ok(200);
        left -= k;
    }
}

/// A `since` replay delivers every missed change however many there are (the log is read
/// in pages of 500), then goes live with no gap and no repeat, whether or not another
/// socket keeps the tenant's feed live meanwhile. Before the fix a replay stopped after
/// its first full page and the rest of the gap was never sent.
async fn since_replays_gaps_of_any_size(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(
        &mut app,
        "shop",
        "[log]\nread = \"true\"\n\n[other]\nread = \"true\"\n",
    )
    .await
    .ok(200);
    let mut bystander: Option<Client> = None;
    for with_other in [false, true] {
        if with_other {
            let mut o = Client::connect(&app, "shop", None).await;
            o.subscribe(json!({"type": "subscribe", "id": "o", "collection": "other"}))
                .await;
            bystander = Some(o);
        }
        for gap in [499usize, 500, 501, 5_000, 20_000] {
            let mut c = Client::connect(&app, "shop", None).await;
            let since = c
                .subscribe(json!({"type": "subscribe", "id": "s", "collection": "log"}))
                .await["seq"]
                .as_i64()
                .unwrap();
            drop(c);
            write_log(&app, &key, gap).await;
            let mut c = Client::connect(&app, "shop", None).await;
            c.subscribe(
                json!({"type": "subscribe", "id": "r", "collection": "log", "since": since}),
            )
            .await;
            let got = seqs(&c.changes(gap).await);
            let want: Vec<i64> = (since + 1..=since + gap as i64).collect();
            assert!(
                got == want,
                "gap {gap} (another subscriber: {with_other}): got {} changes, first {:?} \
                 last {:?}; wanted {}..={}",
                got.len(),
                got.first(),
                got.last(),
                since + 1,
                since + gap as i64
            );
            // Live from there: the next write arrives once, right after the replay.
            write_log(&app, &key, 1).await;
            let next = c.changes(1).await;
            assert_eq!(
                seqs(&next),
                vec![since + gap as i64 + 1],
                "gap {gap} (another subscriber: {with_other})"
            );
        }
    }
    if let Some(mut o) = bystander {
        o.quiet(Duration::from_millis(50)).await;
    }
}

/// A subscription filter is evaluated again on every event, so its parts that do not
/// mention the document must fit the per-event budget, smaller than a list's: a filter a
/// list accepts can be refused at subscribe (and the probe's filter is refused by both).
/// Other subscribers of the tenant are not affected.
async fn costly_subscription_filters_are_refused(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_open_log(&mut app).await;
    let mut other = Client::connect(&app, "shop", None).await;
    other
        .subscribe(json!({"type": "subscribe", "id": "all", "collection": "log"}))
        .await;
    let l = format!("[{}]", vec!["1"; 400].join(","));
    let middling = format!("size({l}.map(a, {l})) > 0 && doc.v == 1");
    app.get(
        &format!(
            "{}?filter={}",
            docs("shop", "log"),
            crate::documents::urlencode(&middling)
        ),
        None,
    )
    .await
    .ok(200);
    let mut c = Client::connect(&app, "shop", None).await;
    for (id, filter) in [
        ("middling", middling),
        ("bomb", crate::lists::bomb_filter()),
    ] {
        c.send(json!({"type": "subscribe", "id": id, "collection": "log", "filter": filter}))
            .await;
        let m = c.recv().await;
        assert_eq!(m["type"], "error", "{m}");
        assert_eq!(m["id"], id, "{m}");
        assert_eq!(m["error"]["code"], "filter_too_costly", "{m}");
    }
    // A cheap filter on the same socket still works, and so does the other subscriber.
    c.subscribe(
        json!({"type": "subscribe", "id": "v", "collection": "log", "filter": "doc.v == 1"}),
    )
    .await;
    put(
        &app,
        &key,
        &format!("{}/one", docs("shop", "log")),
        json!({"v": 1}),
    )
    .await
    .ok(201);
    assert_eq!(c.changes(1).await[0]["id"], "v");
    assert_eq!(other.changes(1).await[0]["doc"]["id"], "one");
}
/// The upgrade reads `Authorization` exactly as REST routes do: the scheme is
/// case-insensitive, and a token that is not valid here (another tenant's, or a header
/// of another shape) is refused, never downgraded to an anonymous socket.
async fn upgrade_reads_authorization_like_rest(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    app.create_tenant("other").await;
    let alice = app.signup("shop", "alice@shop.test").await;
    let mallory = app.signup("other", "mallory@other.test").await;
    let notes = docs("shop", "notes");

    for scheme in ["bearer", "BEARER", "Bearer"] {
        let mut c = upgrade_with_header(&app, "shop", &format!("{scheme} {}", alice.access))
            .await
            .unwrap_or_else(|e| panic!("{scheme}: upgrade refused: {e}"));
        c.subscribe(json!({"type": "subscribe", "id": "n", "collection": "notes"}))
            .await;
        // An anonymous socket would get only the public note.
        for (title, public) in [("private", false), ("public", true)] {
            app.post(
                &notes,
                Some(&key),
                json!({"owner": alice.user_id, "title": format!("{title} {scheme}"), "public": public}),
            )
            .await
            .ok(201);
        }
        // The first of this round's notes (the feed may still hand a new subscriber the
        // previous round's, which it is as entitled to).
        let first = loop {
            let change = c.changes(1).await.remove(0);
            let title = change["doc"]["data"]["title"].as_str().unwrap().to_string();
            if title.ends_with(&format!(" {scheme}")) {
                break title;
            }
        };
        assert_eq!(first, format!("private {scheme}"), "the socket is Alice's");
    }

    for authorization in [
        format!("bearer {}", mallory.access),
        format!("Bearer {}", mallory.access),
        "bearer not-a-token".to_string(),
        format!("Basic {}", alice.access),
        "Bearer ".to_string(),
    ] {
        let err = upgrade_with_header(&app, "shop", &authorization)
            .await
            .err()
            .unwrap_or_else(|| panic!("{authorization}: the upgrade is accepted"));
        assert!(err.to_string().contains("401"), "{authorization}: {err}");
        // REST answers the same header the same way.
        let r = app
            .send(
                app.req(reqwest::Method::GET, "/v1/t/shop/auth/me", None)
                    .header("authorization", &authorization),
            )
            .await;
        assert_eq!(r.status, 401, "{authorization}: {}", r.text);
    }
}

/// The upgrade resolves its tenant like every tenant route, so each socket opened counts
/// as one of the tenant's requests (it used not to count at all), and a refused one too
/// (as an error); the sockets opened count as realtime connections, the refused one not.
async fn upgrades_count_in_the_tenants_usage(b: Backend) {
    let mut app = TestApp::start(b).await;
    tenant_with_open_log(&mut app).await;
    app.create_tenant("quiet").await;
    let admin = app.admin().await;
    let requests = |u: &Value| u["total"]["requests"].as_i64().unwrap_or(-1);
    let first = app
        .get("/admin/v1/tenants/shop/usage", Some(&admin))
        .await
        .ok(200);
    let before = requests(&first);
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(&app, "shop"))
            .await
            .expect("upgrade");
        sockets.push(ws);
    }
    assert_refused(
        &format!("{}?access_token=forged", ws_url(&app, "shop")),
        401,
    )
    .await;
    let last = app
        .get("/admin/v1/tenants/shop/usage", Some(&admin))
        .await
        .ok(200);
    let after = requests(&last);
    assert_eq!(after - before, 4, "three upgrades and one refusal");
    let grew = |k: &str| last["total"][k].as_i64().unwrap() - first["total"][k].as_i64().unwrap();
    assert_eq!(grew("errors"), 1, "{last}");
    assert_eq!(grew("realtime_connections"), 3, "{last}");
    assert_eq!(last["total"]["realtime_peak"], 3, "{last}");
    let quiet = app
        .get("/admin/v1/tenants/quiet/usage", Some(&admin))
        .await
        .ok(200);
    assert_eq!(requests(&quiet), 0, "{quiet}");
    drop(sockets);
}

/// A feed whose last subscriber left stops following the log. A new subscriber without
/// `since` starts at the log's head: it used to be answered with the position where the
/// feed stopped and then sent every change written since, as live events (found by the
/// console's 100,000-document test).
async fn a_newcomer_to_an_idle_feed_starts_at_the_head(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_open_log(&mut app).await;
    let mut first = Client::connect(&app, "shop", None).await;
    let at = first
        .subscribe(json!({"type": "subscribe", "id": "a", "collection": "log"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    drop(first);
    // The tailer notices it has nobody left at its next wake (at most a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    write_log(&app, &key, 600).await;
    let mut later = Client::connect(&app, "shop", None).await;
    let subscribed = later
        .subscribe(json!({"type": "subscribe", "id": "b", "collection": "log"}))
        .await;
    assert_eq!(
        subscribed["seq"].as_i64(),
        Some(at + 600),
        "subscribed at the head: {subscribed}"
    );
    later.quiet(Duration::from_millis(1500)).await;
    // And it is live from there.
    write_log(&app, &key, 1).await;
    assert_eq!(seqs(&later.changes(1).await), vec![at + 601]);
}
