//! The write load: clients that each own their documents and write them one request at a
//! time (creates, replaces, patches, batches), recording what the server acknowledged and
//! the one request that was in flight when the server died.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::server::TENANT;

/// Collections written by the clients; `orders` triggers the after hook.
pub const ITEMS: &str = "items";
pub const ORDERS: &str = "orders";

/// Bounds of one client's load in a round, whatever the kill does.
const MAX_OPS: usize = 5_000;
const MAX_TIME: Duration = Duration::from_secs(20);

/// A document as its owner last saw it acknowledged.
#[derive(Clone, Debug)]
pub struct Doc {
    pub collection: &'static str,
    pub id: String,
    pub version: i64,
    pub data: Value,
}

/// One write of a request, with the state it leaves the document in.
#[derive(Clone, Debug)]
pub struct Planned {
    pub collection: &'static str,
    /// None for a POST (the server picks the id).
    pub id: Option<String>,
    pub version: i64,
    pub data: Value,
    /// The owner's document it changes (None: it creates one).
    pub doc: Option<usize>,
    /// Sent as a merge patch of `k` and `tag` (else the whole data).
    pub patch: bool,
}

/// A request: its kind and its writes (one unless a batch).
#[derive(Clone, Debug)]
pub struct Op {
    pub kind: &'static str,
    pub writes: Vec<Planned>,
}

/// What one client did in a round.
#[derive(Default, Debug)]
pub struct Tally {
    pub ops: usize,
    pub writes: usize,
    pub hook_writes: usize,
    pub by_kind: std::collections::BTreeMap<&'static str, usize>,
    /// Acknowledged writes of this round: (collection, id, version).
    pub acked: Vec<(&'static str, String, i64)>,
    /// Things the server did that it must not (wrong version or data in an answer, a 4xx).
    pub violations: Vec<String>,
}

/// A client's documents, kept across rounds, and its request in flight at the kill.
pub struct Client {
    pub n: usize,
    pub docs: Vec<Doc>,
    pub in_flight: Option<Op>,
    counter: u64,
}

impl Client {
    pub fn new(n: usize) -> Client {
        Client {
            n,
            docs: Vec::new(),
            in_flight: None,
            counter: 0,
        }
    }

    fn fresh_id(&mut self, round: usize) -> String {
        self.counter += 1;
        format!("r{round}c{}n{}", self.n, self.counter)
    }

    fn data(&mut self, rng: &mut StdRng, round: usize) -> Value {
        self.counter += 1;
        let pad: String = (0..rng.random_range(0..160))
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect();
        json!({"client": self.n, "round": round, "k": self.counter,
               "tag": format!("{:016x}", rng.random::<u64>()), "pad": pad})
    }

    /// Picks the next request.
    fn plan(&mut self, rng: &mut StdRng, round: usize) -> Op {
        let pick = rng.random_range(0..100);
        let collection = |rng: &mut StdRng| if rng.random_bool(0.4) { ORDERS } else { ITEMS };
        if self.docs.is_empty() || pick < 20 {
            let c = collection(rng);
            let data = self.data(rng, round);
            if rng.random_bool(0.5) {
                let id = self.fresh_id(round);
                return Op {
                    kind: "put-create",
                    writes: vec![Planned {
                        collection: c,
                        id: Some(id),
                        version: 1,
                        data,
                        doc: None,
                        patch: false,
                    }],
                };
            }
            return Op {
                kind: "post",
                writes: vec![Planned {
                    collection: c,
                    id: None,
                    version: 1,
                    data,
                    doc: None,
                    patch: false,
                }],
            };
        }
        if pick < 70 {
            let i = rng.random_range(0..self.docs.len());
            let d = self.docs[i].clone();
            let (kind, data, patch) = if pick < 45 {
                ("put-replace", self.data(rng, round), false)
            } else {
                let mut data = d.data.clone();
                let fresh = self.data(rng, round);
                data["k"] = fresh["k"].clone();
                data["tag"] = fresh["tag"].clone();
                ("patch", data, true)
            };
            return Op {
                kind,
                writes: vec![Planned {
                    collection: d.collection,
                    id: Some(d.id.clone()),
                    version: d.version + 1,
                    data,
                    doc: Some(i),
                    patch,
                }],
            };
        }
        let n = rng.random_range(2..=6);
        let mut writes: Vec<Planned> = Vec::new();
        for _ in 0..n {
            let existing = (rng.random_bool(0.5) && !self.docs.is_empty())
                .then(|| rng.random_range(0..self.docs.len()))
                .filter(|i| !writes.iter().any(|w| w.doc == Some(*i)));
            if let Some(i) = existing {
                let d = self.docs[i].clone();
                let mut data = self.data(rng, round);
                let patch = rng.random_bool(0.5);
                if patch {
                    // A patch in the batch: only k and tag change.
                    let mut merged = d.data.clone();
                    merged["k"] = data["k"].take();
                    merged["tag"] = data["tag"].take();
                    data = merged;
                }
                writes.push(Planned {
                    collection: d.collection,
                    id: Some(d.id),
                    version: d.version + 1,
                    data,
                    doc: Some(i),
                    patch,
                });
            } else {
                let c = collection(rng);
                let id = self.fresh_id(round);
                let data = self.data(rng, round);
                writes.push(Planned {
                    collection: c,
                    id: Some(id),
                    version: 1,
                    data,
                    doc: None,
                    patch: false,
                });
            }
        }
        Op {
            kind: "batch",
            writes,
        }
    }

    /// The HTTP request of an op.
    fn request(&self, api: &Api, op: &Op) -> reqwest::RequestBuilder {
        let docs = |c: &str| format!("{}/v1/t/{TENANT}/collections/{c}/docs", api.base);
        let w = &op.writes[0];
        let req = match op.kind {
            "post" => api.http.post(docs(w.collection)).json(&w.data),
            "put-create" => api
                .http
                .put(format!(
                    "{}/{}",
                    docs(w.collection),
                    w.id.as_deref().unwrap_or("")
                ))
                .header("if-none-match", "*")
                .json(&w.data),
            "put-replace" => api
                .http
                .put(format!(
                    "{}/{}",
                    docs(w.collection),
                    w.id.as_deref().unwrap_or("")
                ))
                .header("if-match", format!("\"{}\"", w.version - 1))
                .json(&w.data),
            "patch" => api
                .http
                .patch(format!(
                    "{}/{}",
                    docs(w.collection),
                    w.id.as_deref().unwrap_or("")
                ))
                .header("content-type", "application/merge-patch+json")
                .body(json!({"k": w.data["k"], "tag": w.data["tag"]}).to_string()),
            _ => {
                let writes: Vec<Value> = op
                    .writes
                    .iter()
                    .map(|w| match w.doc {
                        None => json!({"op": "create", "collection": w.collection, "id": w.id, "data": w.data}),
                        Some(_) if w.patch => json!({
                            "op": "patch", "collection": w.collection, "id": w.id,
                            "patch": {"k": w.data["k"], "tag": w.data["tag"]}, "if_match": w.version - 1}),
                        Some(_) => json!({"op": "put", "collection": w.collection, "id": w.id,
                                          "data": w.data, "if_match": w.version - 1}),
                    })
                    .collect();
                api.http
                    .post(format!("{}/v1/t/{TENANT}/batch", api.base))
                    .json(&json!({"writes": writes}))
            }
        };
        req.bearer_auth(&api.key)
    }

    /// Checks an acknowledged answer against the plan and takes its writes in; returns
    /// what it got wrong.
    fn acknowledged(&mut self, op: &Op, body: &Value, tally: &mut Tally) -> Option<String> {
        let docs: Vec<&Value> = match op.kind {
            "batch" => body["results"]
                .as_array()
                .map(|r| r.iter().map(|r| &r["doc"]).collect())
                .unwrap_or_default(),
            _ => vec![body],
        };
        if docs.len() != op.writes.len() {
            return Some(format!(
                "{} acknowledged with {} results: {body}",
                op.kind,
                docs.len()
            ));
        }
        for (w, got) in op.writes.iter().zip(&docs) {
            if got["version"] != json!(w.version) || got["data"] != w.data {
                return Some(format!(
                    "{} acknowledged {} at version {} with {}, planned version {} with {}",
                    op.kind, got["id"], got["version"], got["data"], w.version, w.data
                ));
            }
        }
        for (w, got) in op.writes.iter().zip(docs) {
            let id = got["id"].as_str().unwrap_or_default().to_string();
            match w.doc {
                Some(i) => {
                    self.docs[i].version = w.version;
                    self.docs[i].data = w.data.clone();
                }
                None => self.docs.push(Doc {
                    collection: w.collection,
                    id: id.clone(),
                    version: w.version,
                    data: w.data.clone(),
                }),
            }
            if w.collection == ORDERS {
                tally.hook_writes += 1;
            }
            tally.acked.push((w.collection, id, w.version));
        }
        tally.ops += 1;
        tally.writes += op.writes.len();
        *tally.by_kind.entry(op.kind).or_default() += 1;
        None
    }

    /// Writes until a request fails (the server died), `stop` is set, or the bounds.
    pub async fn run(
        &mut self,
        api: &Api,
        seed: u64,
        round: usize,
        stop: Arc<AtomicBool>,
    ) -> Tally {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tally = Tally::default();
        let until = tokio::time::Instant::now() + MAX_TIME;
        for _ in 0..MAX_OPS {
            if stop.load(Ordering::Relaxed) || tokio::time::Instant::now() > until {
                break;
            }
            let op = self.plan(&mut rng, round);
            let answer = match self.request(api, &op).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    r.text().await.map(|t| (status, t))
                }
                Err(e) => Err(e),
            };
            match answer {
                Ok((status, text)) if (200..300).contains(&status) => {
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if let Some(v) = self.acknowledged(&op, &body, &mut tally) {
                        tally.violations.push(format!("client {}: {v}", self.n));
                        break;
                    }
                }
                Ok((status, text)) => {
                    // The server answered without doing it (4xx would be a test or server
                    // bug; 5xx may still commit later): either way the write is in doubt.
                    if status < 500 {
                        tally.violations.push(format!(
                            "client {}: {} answered {status}: {text}",
                            self.n, op.kind
                        ));
                    }
                    self.in_flight = Some(op);
                    break;
                }
                Err(_) => {
                    self.in_flight = Some(op);
                    break;
                }
            }
        }
        tally
    }
}

/// Where and as whom the clients write.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}
