//! Resource exhaustion (issue 14): a tenant, or anyone, uses up connections, subscriptions
//! or function workers while another tenant's requests are measured. Bounds asserted are
//! generous (debug build, 2 shared cores, other tests in parallel); the figures are
//! printed and RELIABILITY.md keeps the last ones.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::functions::deploy;
use crate::realtime::Client;
use crate::rules::install_rules;
use crate::support::*;

backend_tests!(
    slowloris_crowds_are_cut_at_the_header_timeout,
    many_subscriptions_leave_other_tenants_served,
    hostile_functions_of_several_tenants_leave_another_served,
);

/// Latencies of a probe: p50 and max, printed with what was going on.
struct Probe {
    name: &'static str,
    took: Vec<Duration>,
}

impl Probe {
    fn new(name: &'static str) -> Probe {
        Probe {
            name,
            took: Vec::new(),
        }
    }

    async fn time<T>(&mut self, f: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let out = f.await;
        self.took.push(t.elapsed());
        out
    }

    fn p50(&self) -> Duration {
        let mut v = self.took.clone();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.took.iter().copied().max().unwrap_or_default()
    }

    /// Prints the figures; asserts the worst under `bound`.
    #[track_caller]
    fn report(&self, during: &str, bound: Duration) {
        println!(
            "{during}: {} p50 {:?}, max {:?} over {}",
            self.name,
            self.p50(),
            self.max(),
            self.took.len()
        );
        assert!(!self.took.is_empty(), "{}: no probe ran", self.name);
        assert!(
            self.max() < bound,
            "{during}: {} max {:?} (bound {bound:?})",
            self.name,
            self.max()
        );
    }
}

/// The open-files limit, raised to the hard limit when allowed.
fn open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(hard) = lim.maximum
        && lim.current.is_some_and(|c| c < hard)
    {
        lim.current = Some(hard);
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// How many of `want` units of `per_unit` descriptors this test may open: the heavy
/// tests run one at a time (`DESCRIPTOR_HEAVY`), the others need a few thousand.
fn descriptor_budget(want: usize, per_unit: u64) -> usize {
    let soft = open_files_limit();
    let spare = soft.saturating_sub(4_000);
    let n = want.min((spare / per_unit) as usize);
    if n < want {
        eprintln!(
            "open-files limit {soft}: {n} instead of {want} (4,000 descriptors left to the \
             tests running beside this one)"
        );
    }
    n
}

/// A tenant with a key and one document to read: the probe's target.
async fn probe_tenant(app: &mut TestApp, slug: &str) -> (String, String) {
    let key = tenant_with_key(app, slug).await;
    let path = format!("{}/probe", docs(slug, "things"));
    put(app, &key, &path, json!({"n": 1})).await.ok(201);
    (key, path)
}

/// Many clients send a request head one byte at a time (slowloris). Each is cut at the
/// header timeout, whatever it keeps sending, and another tenant's reads are served
/// throughout.
async fn slowloris_crowds_are_cut_at_the_header_timeout(b: Backend) {
    let _heavy = DESCRIPTOR_HEAVY.lock().await;
    let header_timeout = Duration::from_secs(2);
    let mut app = TestApp::start_with(b, |c| c.header_timeout = header_timeout).await;
    let (key, path) = probe_tenant(&mut app, "alpha").await;
    let n = descriptor_budget(500, 2);
    let addr = app.base.trim_start_matches("http://").to_string();
    // Never ends: the header line is longer than the test.
    let head: &'static [u8] = Box::leak(
        format!(
            "GET /v1/t/bravo/auth/me HTTP/1.1\r\nHost: x\r\nX-Slow: {}",
            "a".repeat(4000)
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let started = Instant::now();
    let mut crawlers = Vec::with_capacity(n);
    for _ in 0..n {
        let sock = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        crawlers.push(tokio::spawn(async move {
            let opened = Instant::now();
            let (mut r, mut w) = sock.into_split();
            let mut buf = [0u8; 512];
            let mut at = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if at < head.len() && w.write_all(&head[at..at + 1]).await.is_err() {
                            return (opened.elapsed(), at);
                        }
                        at += 1;
                    }
                    read = r.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return (opened.elapsed(), at),
                        // An answer (408 or 400) before the close is fine.
                        Ok(_) => {}
                    },
                }
                if opened.elapsed() > Duration::from_secs(30) {
                    return (opened.elapsed(), at);
                }
            }
        }));
    }
    println!(
        "{n} slowloris connections opened in {:?}",
        started.elapsed()
    );
    let mut rest = Probe::new("other tenant's GET");
    while started.elapsed() < header_timeout + Duration::from_secs(2) {
        let r = rest.time(app.get(&path, Some(&key))).await;
        r.ok(200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lived = Vec::with_capacity(n);
    for c in crawlers {
        let (alive, sent) = c.await.expect("crawler");
        assert!(
            alive < header_timeout + Duration::from_secs(8),
            "a slowloris connection lived {alive:?} ({sent} bytes sent)"
        );
        lived.push(alive);
    }
    lived.sort();
    println!(
        "slowloris: {n} connections cut after {:?} (first) .. {:?} (last), header timeout {header_timeout:?}",
        lived[0],
        lived[lived.len() - 1]
    );
    // Cut by the timeout, not by anything sooner.
    assert!(
        lived[0] >= header_timeout - Duration::from_millis(100),
        "{:?}",
        lived[0]
    );
    rest.report("slowloris", Duration::from_secs(2));
}

/// One tenant opens sockets up to its limit, each with many subscriptions, and writes
/// so that every change goes out to thousands of them; another tenant's reads, and its
/// own realtime events, stay prompt. The limits hold: a socket past the tenant's is
/// refused, a subscription past the socket's is refused.
async fn many_subscriptions_leave_other_tenants_served(b: Backend) {
    const SUBS: usize = 10;
    const COLLECTIONS: usize = 10;
    let _heavy = DESCRIPTOR_HEAVY.lock().await;
    let sockets = descriptor_budget(2_000, 2);
    let mut app = TestApp::start_with(b, |c| {
        c.realtime.max_sockets_per_tenant = sockets;
        c.realtime.max_sockets_per_ip = sockets + 10;
    })
    .await;
    let (key, path) = probe_tenant(&mut app, "alpha").await;
    install_rules(&mut app, "alpha", "[feed]\nread = \"true\"\n")
        .await
        .ok(200);
    let bravo = tenant_with_key(&mut app, "bravo").await;
    let mut rules = String::new();
    for c in 0..COLLECTIONS {
        rules.push_str(&format!("[c{c}]\nread = \"true\"\n"));
    }
    install_rules(&mut app, "bravo", &rules).await.ok(200);

    // Before: alpha's reads at rest.
    let mut at_rest = Probe::new("other tenant's GET at rest");
    for _ in 0..20 {
        at_rest.time(app.get(&path, Some(&key))).await.ok(200);
    }
    at_rest.report("before the flood", Duration::from_secs(2));

    // bravo: `sockets` sockets, SUBS subscriptions each, spread over COLLECTIONS
    // collections, half of them with a filter. Each socket is read by a task of its own
    // that only counts the changes (these clients share the test's two cores with the
    // server: the less they do, the more the figures are the server's).
    let t = Instant::now();
    let url = format!(
        "ws://{}/v1/t/bravo/realtime",
        app.base.trim_start_matches("http://")
    );
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel::<()>(sockets);
    let mut readers = Vec::with_capacity(sockets);
    for s in 0..sockets {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("websocket connects");
        let ready_tx = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            for i in 0..SUBS {
                let mut sub = json!({"type": "subscribe", "id": format!("s{i}"),
                    "collection": format!("c{}", (s + i) % COLLECTIONS)});
                if i % 2 == 1 {
                    sub["filter"] = json!("doc.n >= 0");
                }
                ws.send(Message::Text(sub.to_string().into()))
                    .await
                    .expect("send");
            }
            let (mut subscribed, mut changes) = (0, 0usize);
            while let Some(m) = ws.next().await {
                match m {
                    Ok(Message::Text(t)) if t.as_str().starts_with(r#"{"type":"change""#) => {
                        changes += 1
                    }
                    Ok(Message::Text(t)) if t.as_str().starts_with(r#"{"type":"subscribed""#) => {
                        subscribed += 1;
                        if subscribed == SUBS {
                            let _ = ready_tx.send(()).await;
                        }
                    }
                    Ok(Message::Ping(_) | Message::Pong(_)) => {}
                    other => return (subscribed, changes, format!("{other:?}")),
                }
            }
            (subscribed, changes, "ended".to_string())
        }));
    }
    drop(ready_tx);
    for _ in 0..sockets {
        tokio::time::timeout(Duration::from_secs(120), ready.recv())
            .await
            .expect("all subscribed within 120 s")
            .expect("a socket ended before subscribing");
    }
    println!(
        "{sockets} sockets x {SUBS} subscriptions ({}) live after {:?}",
        sockets * SUBS,
        t.elapsed()
    );

    // The limits: no socket past the tenant's, no subscription past the socket's.
    let url = format!(
        "ws://{}/v1/t/bravo/realtime",
        app.base.trim_start_matches("http://")
    );
    let err = tokio_tungstenite::connect_async(&url)
        .await
        .expect_err("a socket past the tenant's limit");
    assert!(err.to_string().contains("429"), "{err}");

    // alpha's probes, while bravo writes: each write fans out to sockets*SUBS/COLLECTIONS
    // subscriptions.
    let mut alpha_ws = Client::connect(&app, "alpha", None).await;
    alpha_ws
        .subscribe(json!({"type": "subscribe", "id": "f", "collection": "feed"}))
        .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (http, base, bravo, stop) = (
            app.http.clone(),
            app.base.clone(),
            bravo.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let url = format!("{base}{}", docs("bravo", &format!("c{}", n % COLLECTIONS)));
                let r = http
                    .post(url)
                    .bearer_auth(&bravo)
                    .json(&json!({"n": n}))
                    .send()
                    .await;
                assert_eq!(r.expect("write").status().as_u16(), 201);
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n
        })
    };
    let mut rest = Probe::new("other tenant's GET");
    let mut event = Probe::new("other tenant's write-to-event");
    for i in 0..20 {
        rest.time(app.get(&path, Some(&key))).await.ok(200);
        let feed = docs("alpha", "feed");
        let ev = event
            .time(async {
                app.post(&feed, Some(&key), json!({"i": i})).await.ok(201);
                alpha_ws.until("change").await
            })
            .await;
        assert_eq!(ev["doc"]["data"]["i"], i);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    println!(
        "bravo wrote {writes} documents, each to {} subscriptions",
        sockets * SUBS / COLLECTIONS
    );
    rest.report("many subscriptions", Duration::from_secs(3));
    event.report("many subscriptions", Duration::from_secs(5));

    // A socket at the per-socket limit refuses one more.
    let mut full = Client::connect(&app, "alpha", None).await;
    for i in 0..100 {
        full.send(json!({"type": "subscribe", "id": format!("x{i}"), "collection": "feed"}))
            .await;
    }
    for _ in 0..100 {
        full.until("subscribed").await;
    }
    full.send(json!({"type": "subscribe", "id": "one-more", "collection": "feed"}))
        .await;
    let m = full.until("error").await;
    assert_eq!(m["error"]["code"], "too_many_subscriptions", "{m}");

    // Every bravo socket is still open and got its events (none was cut as slow).
    let mut delivered = 0;
    for r in readers {
        r.abort();
        match r.await {
            Err(e) if e.is_cancelled() => {}
            Ok((subscribed, changes, why)) => {
                panic!("a bravo socket ended ({subscribed} subscribed, {changes} changes): {why}")
            }
            Err(e) => panic!("{e}"),
        }
        delivered += 1;
    }
    assert_eq!(delivered, sockets);
}

/// Two tenants keep every kind of runaway function going at once (loops, memory bombs,
/// loops catching their out-of-memory errors, promises that never settle); a third
/// tenant's function calls and reads are measured meanwhile.
async fn hostile_functions_of_several_tenants_leave_another_served(b: Backend) {
    let mut app = TestApp::start(b).await;
    let budget_ms = 1000;
    let names = ["spin", "bomb", "memcatch", "hangs"];
    let mut manifest: String = names
        .iter()
        .map(|n| format!("[[http]]\nname = \"{n}\"\nfunction = \"{n}\"\n[limits.{n}]\ntimeout_ms = {budget_ms}\nmemory_mb = 16\n"))
        .collect();
    manifest.push_str("[[http]]\nname = \"ok\"\nfunction = \"ok\"\n");
    let files = [
        ("plinth.toml", manifest.as_str()),
        ("functions/spin.js", "export default () => { for (;;) {} }"),
        (
            "functions/bomb.js",
            "export default () => { const a = []; for (;;) a.push(new Array(1e5).fill(1)) }",
        ),
        (
            "functions/memcatch.js",
            "export default () => { let keep = []; for (;;) { \
             try { keep.push('x'.repeat(1 << 20)) } catch (e) { keep = [] } } }",
        ),
        (
            "functions/hangs.js",
            "export default () => new Promise(() => {})",
        ),
        ("functions/ok.js", "export default () => ({ ok: true })"),
    ];
    for t in ["bad1", "bad2", "good"] {
        app.create_tenant(t).await;
        deploy(&mut app, t, &files).await.ok(201);
    }
    let key = app.create_key("good", "probe").await["key"]
        .as_str()
        .expect("key")
        .to_string();
    let path = format!("{}/probe", docs("good", "things"));
    put(&app, &key, &path, json!({"n": 1})).await.ok(201);

    let mut at_rest = Probe::new("other tenant's function at rest");
    for _ in 0..10 {
        at_rest
            .time(app.get("/v1/t/good/fn/ok", None))
            .await
            .ok(200);
    }
    at_rest.report("before the attack", Duration::from_secs(2));

    let run_for = Duration::from_secs(8);
    let started = Instant::now();
    let mut attackers = Vec::new();
    for t in ["bad1", "bad2"] {
        for (i, name) in names.iter().enumerate() {
            // Two callers per function and tenant, each calling again as soon as answered.
            for _ in 0..2 {
                let req = app.req(Method::GET, &format!("/v1/t/{t}/fn/{name}"), None);
                attackers.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50 * i as u64)).await;
                    let mut answers = Vec::new();
                    while started.elapsed() < run_for {
                        let r = req
                            .try_clone()
                            .expect("clone")
                            .send()
                            .await
                            .expect("answer");
                        answers.push(r.status().as_u16());
                    }
                    answers
                }));
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut call = Probe::new("other tenant's function");
    let mut rest = Probe::new("other tenant's GET");
    while started.elapsed() < run_for {
        let r = call.time(app.get("/v1/t/good/fn/ok", None)).await;
        assert_eq!(r.ok(200), json!({"ok": true}));
        rest.time(app.get(&path, Some(&key))).await.ok(200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut statuses = std::collections::BTreeMap::new();
    for a in attackers {
        for s in a.await.expect("attacker") {
            *statuses.entry(s).or_insert(0) += 1;
        }
    }
    println!("hostile calls answered: {statuses:?}");
    for s in statuses.keys() {
        assert!(matches!(s, 500 | 504), "a hostile call answered {s}");
    }
    rest.report("hostile functions", Duration::from_secs(2));
    // A worker frees within a hostile call's budget (plus the interrupt's delay): the
    // other tenant's call waits at most about that.
    call.report("hostile functions", Duration::from_millis(budget_ms * 5));
}

/// Known limit (RELIABILITY.md, "Known limits"), ignored until fixed: a loop of
/// `indexOf` over a large array allocates nothing, so it runs up to 10,000 calls past its
/// deadline; two tenants doing so hold every worker, and a third tenant's call waits
/// (measured: 503 after 30 s, then 27 s). Run with `--ignored hostile_scans`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known limit: scanning built-ins overrun the deadline (RELIABILITY.md)"]
async fn hostile_scans_of_two_tenants_hold_every_worker() {
    let mut app = TestApp::start(Backend::Sqlite).await;
    let manifest = "[[http]]\nname = \"scan\"\nfunction = \"scan\"\n[limits.scan]\ntimeout_ms = 1000\n\
                    [[http]]\nname = \"ok\"\nfunction = \"ok\"\n";
    let files = [
        ("plinth.toml", manifest),
        (
            "functions/scan.js",
            "export default () => { const a = new Array(5e5).fill(0); let n = 0; \
             for (;;) { n += a.indexOf(1) } }",
        ),
        ("functions/ok.js", "export default () => ({ ok: true })"),
    ];
    for t in ["bad1", "bad2", "good"] {
        app.create_tenant(t).await;
        deploy(&mut app, t, &files).await.ok(201);
    }
    let mut scans = Vec::new();
    for t in ["bad1", "bad1", "bad2", "bad2"] {
        let req = app.req(Method::GET, &format!("/v1/t/{t}/fn/scan"), None);
        scans.push(tokio::spawn(
            async move { req.send().await.map(|r| r.status()) },
        ));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut call = Probe::new("other tenant's function");
    for _ in 0..3 {
        let r = call.time(app.get("/v1/t/good/fn/ok", None)).await;
        assert_eq!(r.ok(200), json!({"ok": true}));
    }
    for s in scans {
        let _ = s.await;
    }
    call.report("two tenants scanning", Duration::from_secs(5));
}
