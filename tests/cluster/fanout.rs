//! Realtime across nodes: writes through two nodes reach a subscriber on a third in seq
//! order without a gap; a node killed mid-burst loses no acknowledged write, and its
//! sockets resume through the proxy on the others with nothing lost or repeated.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Cluster, expect};
use crate::ws::{Next, Sub};

const COLLECTION: &str = "items";

/// PUTs `n` documents `{prefix}-{i}` through `base`, one at a time; the ids acknowledged.
async fn write_burst(
    http: reqwest::Client,
    base: String,
    key: String,
    prefix: String,
    n: usize,
) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i:04}");
        expect(
            http.put(format!("{}/{id}", Cluster::docs(&base, COLLECTION)))
                .bearer_auth(&key)
                .json(&json!({"data": {"writer": prefix, "i": i}})),
            201,
        )
        .await;
        acked.push(id);
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_on_b_sees_writes_through_a_and_c_in_order() {
    let Some(c) = Cluster::start(3, &[]).await else {
        return;
    };
    let b_ws = c.nodes[1].base().replacen("http://", "ws://", 1);
    let mut sub = Sub::open(&b_ws, &c.key, &[(COLLECTION, None)])
        .await
        .expect("subscribe on B");
    let n = 60;
    let a = tokio::spawn(write_burst(
        c.http.clone(),
        c.nodes[0].base(),
        c.key.clone(),
        "a".into(),
        n,
    ));
    let cc = tokio::spawn(write_burst(
        c.http.clone(),
        c.nodes[2].base(),
        c.key.clone(),
        "c".into(),
        n,
    ));
    let mut acked: BTreeSet<String> = a.await.unwrap().into_iter().collect();
    acked.extend(cc.await.unwrap());

    let mut seqs = Vec::new();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < acked.len() && Instant::now() < deadline {
        match sub.next(Duration::from_secs(5)).await {
            Next::Change(seq, doc) => {
                seqs.push(seq);
                seen.insert(doc["id"].as_str().expect("id").to_string());
            }
            Next::Idle => {}
            Next::Closed => panic!("B closed the socket\n{}", c.logs()),
        }
    }
    assert_eq!(seen, acked, "B's subscriber missed writes\n{}", c.logs());
    let expected: Vec<i64> = (sub.live_at + 1..=sub.live_at + acked.len() as i64).collect();
    assert_eq!(
        seqs, expected,
        "changes out of order, repeated or with a gap"
    );
    // Nothing more arrives (no duplicates after the last).
    assert!(matches!(
        sub.next(Duration::from_millis(300)).await,
        Next::Idle
    ));
}

/// One subscriber through the proxy to `items` and `marks` (the hook's markers) that
/// reconnects (through the proxy) whenever its socket ends and resumes each subscription
/// with `since` its last seq, until `stop` and a quiet second.
struct Followed {
    live_at: i64,
    /// Every change received: (seq, collection, document id).
    changes: Vec<(i64, String, String)>,
    reconnects: usize,
}

async fn follower(ws_base: String, key: String, stop: Arc<AtomicBool>) -> Followed {
    let mut changes = Vec::new();
    let mut reconnects = 0;
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut sub = Sub::open(&ws_base, &key, &[(COLLECTION, None), (MARKS, None)])
        .await
        .expect("subscribe");
    let live_at = sub.live_at;
    for c in [COLLECTION, MARKS] {
        last.insert(c.to_string(), live_at);
    }
    let mut quiet_since = None;
    while Instant::now() < deadline {
        match sub.next(Duration::from_millis(200)).await {
            Next::Change(seq, doc) => {
                quiet_since = None;
                let collection = doc["collection"].as_str().expect("collection").to_string();
                let id = doc["id"].as_str().expect("id").to_string();
                last.insert(collection.clone(), seq);
                changes.push((seq, collection, id));
            }
            Next::Idle => {
                if stop.load(Ordering::SeqCst) {
                    let q = *quiet_since.get_or_insert_with(Instant::now);
                    if q.elapsed() > Duration::from_secs(1) {
                        break;
                    }
                }
            }
            Next::Closed => {
                reconnects += 1;
                assert!(reconnects < 50, "reconnecting in a loop");
                let resume = [
                    (COLLECTION, Some(last[COLLECTION])),
                    (MARKS, Some(last[MARKS])),
                ];
                loop {
                    match Sub::open(&ws_base, &key, &resume).await {
                        Ok(s) => {
                            sub = s;
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
        }
    }
    Followed {
        live_at,
        changes,
        reconnects,
    }
}

/// The after hook: one marker per item write, `marks/{item id}-v{version}`, written with
/// `put`, so a job run twice (its acknowledgement lost with the node) leaves the same
/// marker at version 2.
const HOOKS: &str =
    "[[hooks]]\nfunction = \"mark\"\ncollection = \"items\"\non = [\"create\", \"update\"]\n";
const MARK: &str = "export default async function (event, ctx) {\n  \
    const d = event.doc;\n  \
    await ctx.db.put('marks', `${d.id}-v${d.version}`, { item: d.id });\n}\n";
const MARKS: &str = "marks";
/// PLINTH_HOOK_LEASE of the nodes: a dead node's claimed jobs run this long after it.
const LEASE_SECS: &str = "3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_loses_nothing_through_the_proxy() {
    let Some(mut c) = Cluster::start(3, &[("PLINTH_HOOK_LEASE", LEASE_SECS)]).await else {
        return;
    };
    expect(
        c.http
            .post(format!(
                "{}/admin/v1/tenants/{}/deploys",
                c.proxy.base,
                crate::harness::TENANT
            ))
            .bearer_auth(&c.admin)
            .json(&json!({"files": {"plinth.toml": HOOKS, "functions/mark.js": MARK}})),
        201,
    )
    .await;
    let ws_base = c.proxy.ws_base();
    let stop = Arc::new(AtomicBool::new(false));
    // Round-robin: six sockets through the proxy, two on each node.
    let followers: Vec<_> = (0..6)
        .map(|_| tokio::spawn(follower(ws_base.clone(), c.key.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Writers through the proxy; a write whose answer never came (the node died under
    // it) may or may not have committed: it is "unsure", not acknowledged.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let http = c.http.clone();
            let base = c.proxy.base.clone();
            let key = c.key.clone();
            tokio::spawn(async move {
                let (mut acked, mut unsure) = (Vec::new(), Vec::new());
                let started = Instant::now();
                for i in 0..300 {
                    if started.elapsed() > Duration::from_secs(6) {
                        break;
                    }
                    let id = format!("w{w}-{i:04}");
                    let r = http
                        .put(format!("{}/{id}", Cluster::docs(&base, COLLECTION)))
                        .bearer_auth(&key)
                        .json(&json!({"data": {"w": w, "i": i}}))
                        .send()
                        .await;
                    match r.map(|r| r.status().as_u16()) {
                        Ok(201) => acked.push(id),
                        Ok(s) if s >= 500 => unsure.push(id),
                        Ok(s) => panic!("write {id} answered {s}"),
                        Err(_) => unsure.push(id),
                    }
                }
                (acked, unsure)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.nodes[0].kill();
    let killed_at = Instant::now();

    let mut acked = BTreeSet::new();
    let mut unsure = BTreeSet::new();
    for w in writers {
        let (a, u) = w.await.unwrap();
        acked.extend(a);
        unsure.extend(u);
    }
    let writers_done = killed_at.elapsed();

    // Every acknowledged write is stored, and its hook ran (the dead node's claimed jobs
    // once their lease ended): read back through the proxy.
    let get = |collection: &'static str, id: String| {
        let req = c
            .http
            .get(format!("{}/{id}", Cluster::docs(&c.proxy.base, collection)))
            .bearer_auth(&c.key);
        async move {
            let r = req.send().await.expect("read back");
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    for id in &acked {
        assert_eq!(
            get(COLLECTION, id.clone()).await.0,
            200,
            "acknowledged {id} is gone"
        );
    }
    let mut twice = 0;
    for id in &acked {
        let marker = format!("{id}-v1");
        let waited = Instant::now();
        let doc = loop {
            let (status, doc) = get(MARKS, marker.clone()).await;
            if status == 200 {
                break doc;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the hook of {id} never ran\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if doc["version"].as_i64() != Some(1) {
            twice += 1;
        }
    }
    let hooks_done = killed_at.elapsed();
    stop.store(true, Ordering::SeqCst);

    let mut total_reconnects = 0;
    let mut ends = BTreeSet::new();
    for f in followers {
        let f = f.await.unwrap();
        total_reconnects += f.reconnects;
        // Each change once, none missing: the two subscriptions' seqs together are
        // exactly the ones after the point they went live.
        let mut seqs: Vec<i64> = f.changes.iter().map(|(s, _, _)| *s).collect();
        let received = seqs.len();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(
            seqs.len(),
            received,
            "a change was delivered twice\n{}",
            c.logs()
        );
        let expected: Vec<i64> = (f.live_at + 1..f.live_at + 1 + seqs.len() as i64).collect();
        assert_eq!(seqs, expected, "a follower missed changes\n{}", c.logs());
        ends.insert(seqs.last().copied());
        let items: BTreeSet<&String> = f
            .changes
            .iter()
            .filter(|(_, col, _)| col == COLLECTION)
            .map(|(_, _, id)| id)
            .collect();
        for id in &acked {
            assert!(
                items.contains(id),
                "acknowledged {id} never reached a follower"
            );
        }
        for id in &items {
            assert!(
                acked.contains(*id) || unsure.contains(*id),
                "a change for {id}, which no writer sent"
            );
        }
    }
    assert_eq!(ends.len(), 1, "followers ended at different seqs: {ends:?}");
    assert!(
        total_reconnects >= 1,
        "no socket was on the killed node (round-robin should have put two there)"
    );
    eprintln!(
        "kill -9 mid-burst: {} writes acknowledged, {} unsure, {} reconnects; writers done \
         {writers_done:?} and every hook run {hooks_done:?} after the kill ({twice} hooks ran twice)",
        acked.len(),
        unsure.len(),
        total_reconnects,
    );
}
