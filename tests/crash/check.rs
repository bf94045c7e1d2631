//! What a restarted server must show: every acknowledged write, no torn batch, no document
//! nobody wrote, a marker for every committed hook-triggering write, and a change log with
//! no gap that agrees with the documents.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::load::{Api, Client, Doc, ITEMS, ORDERS};
use crate::server::TENANT;

pub const MARKS: &str = "marks";

/// id → (version, data) of every document of a collection.
pub type Docs = HashMap<String, (i64, Value)>;

/// Every document of a collection, page by page.
pub async fn list_all(api: &Api, collection: &str) -> Docs {
    let mut out = Docs::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = format!(
            "{}/v1/t/{TENANT}/collections/{collection}/docs?limit=1000&order=id{}",
            api.base,
            cursor_param(&cursor)
        );
        let page = crate::server::expect(api.http.get(url).bearer_auth(&api.key), 200).await;
        for d in page["items"].as_array().expect("items") {
            let id = d["id"].as_str().expect("id").to_string();
            out.insert(
                id,
                (d["version"].as_i64().expect("version"), d["data"].clone()),
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn cursor_param(cursor: &Option<String>) -> String {
    cursor
        .as_ref()
        .map(|c| {
            format!(
                "&cursor={}",
                form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
            )
        })
        .unwrap_or_default()
}

/// The documents after a restart, compared with what the clients were told.
#[derive(Default, Debug)]
pub struct DocReport {
    pub in_flight: usize,
    pub in_flight_applied: usize,
    pub torn: usize,
    pub violations: Vec<String>,
}

/// Checks every client's documents (all rounds) against `observed`, decides what became of
/// each request in flight at the kill (all of its writes or none), and takes the outcome in
/// as the clients' new acknowledged state.
pub fn check_documents(clients: &mut [Client], observed: &HashMap<&str, Docs>) -> DocReport {
    let mut report = DocReport::default();
    let mut seen: HashSet<(&str, String)> = HashSet::new();
    for c in clients.iter_mut() {
        let pending = c.in_flight.take();
        let mut applied: Vec<bool> = Vec::new();
        for (i, d) in c.docs.iter_mut().enumerate() {
            seen.insert((d.collection, d.id.clone()));
            let planned = pending
                .as_ref()
                .and_then(|op| op.writes.iter().find(|w| w.doc == Some(i)));
            match observed[d.collection].get(&d.id) {
                Some((v, data)) if *v == d.version && *data == d.data => {
                    if planned.is_some() {
                        applied.push(false);
                    }
                }
                Some((v, data)) if planned.is_some_and(|p| p.version == *v && p.data == *data) => {
                    applied.push(true);
                    d.version = *v;
                    d.data = data.clone();
                }
                found => report.violations.push(format!(
                    "{}/{} acknowledged at version {} with {}{}; found {}",
                    d.collection,
                    d.id,
                    d.version,
                    d.data,
                    planned
                        .map(|p| format!(" (in flight: version {} with {})", p.version, p.data))
                        .unwrap_or_default(),
                    found
                        .map(|(v, data)| format!("version {v} with {data}"))
                        .unwrap_or_else(|| "nothing (lost)".into()),
                )),
            }
        }
        let Some(op) = pending else { continue };
        for w in op.writes.iter().filter(|w| w.doc.is_none()) {
            let docs = &observed[w.collection];
            let found = match &w.id {
                Some(id) => docs.get(id).map(|d| (id.clone(), d)),
                None => docs
                    .iter()
                    .find(|(id, (_, data))| {
                        *data == w.data && !seen.contains(&(w.collection, (*id).clone()))
                    })
                    .map(|(id, d)| (id.clone(), d)),
            };
            match found {
                None => applied.push(false),
                Some((id, (1, data))) if *data == w.data => {
                    applied.push(true);
                    seen.insert((w.collection, id.clone()));
                    c.docs.push(Doc {
                        collection: w.collection,
                        id,
                        version: 1,
                        data: data.clone(),
                    });
                }
                Some((id, (v, data))) => report.violations.push(format!(
                    "{}/{id}, created by a request in flight, is at version {v} with {data}; \
                     planned version 1 with {}",
                    w.collection, w.data
                )),
            }
        }
        report.in_flight += 1;
        if applied.iter().all(|a| *a) && !applied.is_empty() {
            report.in_flight_applied += 1;
        } else if applied.iter().any(|a| *a) {
            report.torn += 1;
            report.violations.push(format!(
                "torn {} of client {}: applied {applied:?} for {:?}",
                op.kind,
                c.n,
                op.writes
                    .iter()
                    .map(|w| format!("{}/{:?} v{}", w.collection, w.id, w.version))
                    .collect::<Vec<_>>()
            ));
        }
    }
    for collection in [ITEMS, ORDERS] {
        for id in observed[collection].keys() {
            if !seen.contains(&(collection, id.clone())) {
                report
                    .violations
                    .push(format!("{collection}/{id} exists but no client wrote it"));
            }
        }
    }
    report
}

/// The markers the hook must have written for the orders as they are.
pub fn missing_marks(orders: &Docs, marks: &Docs) -> Vec<String> {
    let mut missing = Vec::new();
    for (id, (version, _)) in orders {
        for v in 1..=*version {
            let mark = format!("{id}-v{v}");
            match marks.get(&mark) {
                Some((_, data)) if data["order"] == json!(id) && data["version"] == json!(v) => {}
                Some((_, data)) => missing.push(format!("{mark} (wrong: {data})")),
                None => missing.push(mark),
            }
        }
    }
    missing.sort();
    missing
}

/// After-hook jobs of the tenant in a state (`pending` or `dead`).
pub async fn jobs(api: &Api, admin: &str, state: &str) -> usize {
    let mut n = 0;
    let mut cursor: Option<String> = None;
    loop {
        let url = format!(
            "{}/admin/v1/tenants/{TENANT}/jobs?state={state}&limit=500{}",
            api.base,
            cursor_param(&cursor)
        );
        let page = crate::server::expect(api.http.get(url).bearer_auth(admin), 200).await;
        n += page["items"].as_array().expect("items").len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return n,
        }
    }
}

/// One change of the log, as a `since: 0` replay delivers it.
#[derive(Debug)]
pub struct Change {
    pub collection: String,
    pub id: String,
    pub version: i64,
    pub op: String,
}

/// The whole change log through the public interface: a realtime socket subscribed to every
/// collection with `since: 0`, read until every seq up to the head has arrived (or `within`
/// has passed: a gap). Returns seq → change and the head.
pub async fn change_log(api: &Api, within: Duration) -> (BTreeMap<i64, Change>, i64, Vec<String>) {
    let url = format!(
        "ws://{}/v1/t/{TENANT}/realtime?access_token={}",
        api.base.trim_start_matches("http://"),
        api.key
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("realtime connects");
    // A live subscription reports the log's head; `since` ones report their `since`.
    let live = json!({"type": "subscribe", "id": "head", "collection": ITEMS});
    ws.send(Message::Text(live.to_string().into()))
        .await
        .expect("subscribe");
    let collections = [ITEMS, ORDERS, MARKS];
    for c in collections {
        let sub = json!({"type": "subscribe", "id": c, "collection": c, "since": 0});
        ws.send(Message::Text(sub.to_string().into()))
            .await
            .expect("subscribe");
    }
    let mut log = BTreeMap::new();
    let mut problems = Vec::new();
    let mut subscribed = 0;
    let mut head = i64::MAX;
    let deadline = tokio::time::Instant::now() + within;
    while subscribed <= collections.len() || (log.len() as i64) < head {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(other) => {
                problems.push(format!("the realtime socket ended: {other:?}"));
                break;
            }
            Err(_) if head == i64::MAX => {
                problems.push("no answer to the live subscription (the log's head)".into());
                break;
            }
            Err(_) => {
                let missing: Vec<i64> = (1..=head).filter(|s| !log.contains_key(s)).collect();
                problems.push(format!(
                    "change log: {} of seqs 1..={head} never arrived (first: {:?})",
                    missing.len(),
                    &missing[..missing.len().min(20)]
                ));
                break;
            }
        };
        let Message::Text(text) = msg else { continue };
        let m: Value = serde_json::from_str(text.as_str()).expect("json message");
        match m["type"].as_str() {
            Some("subscribed") => {
                subscribed += 1;
                if m["id"] == "head" {
                    head = m["seq"].as_i64().expect("seq");
                }
            }
            Some("change") if m["id"] != "head" => {
                let seq = m["seq"].as_i64().expect("seq");
                let change = Change {
                    collection: m["id"].as_str().unwrap_or_default().to_string(),
                    id: m["doc"]["id"].as_str().unwrap_or_default().to_string(),
                    version: m["doc"]["version"].as_i64().unwrap_or(-1),
                    op: m["op"].as_str().unwrap_or_default().to_string(),
                };
                if let Some(before) = log.insert(seq, change) {
                    problems.push(format!("seq {seq} delivered twice (first {before:?})"));
                }
            }
            _ => problems.push(format!("unexpected realtime message: {m}")),
        }
    }
    let _ = ws.close(None).await;
    if let Some((last, _)) = log.last_key_value()
        && *last > head
    {
        problems.push(format!(
            "seq {last} past the head {head}: a write after the hooks settled"
        ));
    }
    (log, head, problems)
}

/// The log agrees with the documents: each document's changes are its versions 1..=V in
/// seq order, each marker's seq is that of the order write it marks.
pub fn check_log(log: &BTreeMap<i64, Change>, observed: &HashMap<&str, Docs>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut versions: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
    let mut order_seq: HashMap<(&str, i64), i64> = HashMap::new();
    for (seq, c) in log {
        let expected_op = if c.version == 1 { "create" } else { "update" };
        if c.op != expected_op {
            problems.push(format!(
                "seq {seq}: {} of {}/{} version {}",
                c.op, c.collection, c.id, c.version
            ));
        }
        versions
            .entry((&c.collection, &c.id))
            .or_default()
            .push(c.version);
        if c.collection == ORDERS {
            order_seq.insert((&c.id, c.version), *seq);
        }
    }
    for (collection, docs) in observed {
        for (id, (version, data)) in docs {
            let got = versions
                .remove(&(*collection, id.as_str()))
                .unwrap_or_default();
            if got != (1..=*version).collect::<Vec<_>>() {
                problems.push(format!(
                    "{collection}/{id} is at version {version} but its changes carry versions {got:?}"
                ));
            }
            if *collection == MARKS {
                let order = data["order"].as_str().unwrap_or_default();
                let v = data["version"].as_i64().unwrap_or(-1);
                if order_seq.get(&(order, v)) != data["seq"].as_i64().as_ref() {
                    problems.push(format!(
                        "marker {id} names seq {} but the log has {:?} for {order} v{v}",
                        data["seq"],
                        order_seq.get(&(order, v))
                    ));
                }
            }
        }
    }
    for ((collection, id), got) in versions {
        problems.push(format!(
            "changes {got:?} of {collection}/{id}, which does not exist"
        ));
    }
    problems
}
