//! Realtime fan-out benchmark of PocketBase's SSE feed, the counterpart of `ws_fanout.rs`.
//! Each subscriber opens `GET /api/realtime` (an SSE stream whose first message,
//! `PB_CONNECT`, carries a `clientId`), then registers `COLLECTION/*` with
//! `POST /api/realtime {"clientId": …, "subscriptions": ["COLLECTION/*"]}` under `--token`
//! (a superuser or user auth token); a 204 means it is live. Events arrive as SSE messages
//! named `COLLECTION/*` with data `{"action": "create", "record": {…}}`. Writes are
//! `POST /api/collections/COLLECTION/records` of `{"n": i, "t_us": <send time>}` with the
//! same token. Modes, flags and output are described in `fanout/common.rs`.
//!
//! ```text
//! cargo bench --bench sse_fanout -- --addr 127.0.0.1:8090 --token "$SUPERUSER_TOKEN" \
//!   --collection feed --mode latency --subscribers 100,1000,10000 --writes 100
//! ```
//! Only loopback targets are accepted.

#[path = "fanout/common.rs"]
mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Event, HttpConn, Protocol, Stamp, Subscription, kind};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::Mutex;

/// Keep-alive connections per source address, shared by the subscribers from that address
/// for their `POST /api/realtime` (PocketBase answers 400 "Invalid realtime client." when it
/// comes from another IP than the SSE stream). One short-lived connection per subscriber
/// would leave 10,000 more sockets in TIME_WAIT.
const SUBSCRIBE_POOL_PER_IP: usize = 8;
/// Source addresses the pool covers: 127.0.0.1 to 127.0.0.250 (see `common::source_addr`).
const SOURCE_IPS: usize = 250;
/// A single SSE message larger than this means the stream is not what we expect.
const MAX_SSE_MESSAGE: usize = 1 << 20;

struct PocketBase {
    addr: SocketAddr,
    token: String,
    topic: String,
    records_path: String,
    pool: Vec<Mutex<Option<HttpConn>>>,
    next_pool_slot: AtomicUsize,
}

impl PocketBase {
    fn new(args: &common::Args) -> Self {
        assert!(args.tenant.is_empty(), "--tenant is for Plinth only");
        PocketBase {
            addr: args.addr,
            token: args.token.clone(),
            topic: format!("{}/*", args.collection),
            records_path: format!("/api/collections/{}/records", args.collection),
            pool: (0..SOURCE_IPS * SUBSCRIBE_POOL_PER_IP)
                .map(|_| Mutex::new(None))
                .collect(),
            next_pool_slot: AtomicUsize::new(0),
        }
    }

    /// Registers the subscription of `client_id` over a pooled connection from `source`.
    async fn register(&self, source: IpAddr, client_id: &str) -> Result<(), String> {
        let body = serde_json::json!({ "clientId": client_id, "subscriptions": [self.topic] });
        let req = hyper::Request::post("/api/realtime")
            .header("host", self.addr.to_string())
            .header("authorization", &self.token)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("valid request");
        let ip_index = match source {
            IpAddr::V4(v4) => (v4.octets()[3] as usize).saturating_sub(1) % SOURCE_IPS,
            IpAddr::V6(_) => 0,
        };
        let rr = self.next_pool_slot.fetch_add(1, Ordering::Relaxed) % SUBSCRIBE_POOL_PER_IP;
        let mut conn = self.pool[ip_index * SUBSCRIBE_POOL_PER_IP + rr]
            .lock()
            .await;
        if conn.is_none() {
            let tcp = common::connect_tcp(self.addr, source).await?;
            *conn = Some(HttpConn::handshake(tcp).await?);
        }
        let result = conn.as_mut().expect("connected above").send(req).await;
        match result {
            Ok((204, _)) => Ok(()),
            Ok((status, body)) => Err(format!(
                "POST /api/realtime: HTTP {status} {}",
                String::from_utf8_lossy(&body[..body.len().min(60)])
            )),
            Err(e) => {
                *conn = None; // broken; the next user reconnects
                Err(e)
            }
        }
    }
}

/// `PB_CONNECT` data.
#[derive(Deserialize)]
struct Connect {
    #[serde(rename = "clientId")]
    client_id: String,
}

/// Data of a record event.
#[derive(Deserialize)]
struct RecordEvent {
    action: String,
    record: Stamp,
}

impl Protocol for PocketBase {
    type Conn = SseSub;

    async fn subscribe(&self, source: IpAddr) -> Result<SseSub, String> {
        let tcp = common::connect_tcp(self.addr, source).await?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| kind("handshake", e))?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/api/realtime")
            .header("host", self.addr.to_string())
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| kind("sse request", e))?;
        if res.status() != 200 {
            return Err(format!("sse request: HTTP {}", res.status().as_u16()));
        }
        let mut sub = SseSub {
            body: res.into_body(),
            buf: Vec::new(),
            topic: self.topic.clone(),
            _sender: sender,
        };
        let (event, data) = sub.next_message().await?;
        if event != "PB_CONNECT" {
            return Err(format!("first sse message {event}, not PB_CONNECT"));
        }
        let connect: Connect =
            serde_json::from_str(&data).map_err(|e| kind("PB_CONNECT data", e))?;
        self.register(source, &connect.client_id).await?;
        Ok(sub)
    }

    fn write_request(&self, _round: u32, n: u64, t_us: u64) -> hyper::Request<Full<Bytes>> {
        // PocketBase assigns record ids itself, so every write is a create.
        hyper::Request::post(self.records_path.as_str())
            .header("host", self.addr.to_string())
            .header("authorization", &self.token)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!(
                "{{\"n\":{n},\"t_us\":{t_us}}}"
            ))))
            .expect("valid request")
    }

    fn write_ok(&self, status: u16) -> bool {
        status == 200
    }
}

/// One SSE stream.
struct SseSub {
    body: Incoming,
    /// Bytes received but not yet parsed into whole messages.
    buf: Vec<u8>,
    topic: String,
    /// Kept so the connection is not told that no more requests come while streaming.
    _sender: http1::SendRequest<Full<Bytes>>,
}

impl SseSub {
    /// The next whole SSE message as (event name, data). Cancel-safe: the buffer only
    /// changes after a body frame has been received.
    async fn next_message(&mut self) -> Result<(String, String), String> {
        loop {
            if let Some(message) = take_message(&mut self.buf) {
                return Ok(message);
            }
            if self.buf.len() > MAX_SSE_MESSAGE {
                return Err("sse message over 1 MiB".into());
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(kind("sse read", e)),
                None => return Err("eof".into()),
            }
        }
    }
}

/// Removes the first complete message (up to a blank line) from `buf` and parses its
/// `event:` and `data:` fields (several `data:` lines join with newlines, per the SSE spec).
fn take_message(buf: &mut Vec<u8>) -> Option<(String, String)> {
    let end = buf.windows(2).position(|w| w == b"\n\n")?;
    let block: Vec<u8> = buf.drain(..end + 2).collect();
    let text = String::from_utf8_lossy(&block);
    let (mut event, mut data) = (String::new(), Vec::new());
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_string(),
            "data" => data.push(value),
            _ => {} // id, retry, comments (empty field name)
        }
    }
    Some((event, data.join("\n")))
}

impl Subscription for SseSub {
    async fn next_event(&mut self) -> Event {
        match self.next_message().await {
            Err(why) => Event::Closed(why),
            Ok((event, data)) if event == self.topic => {
                match serde_json::from_str::<RecordEvent>(&data) {
                    Ok(e) if e.action == "create" || e.action == "update" => {
                        e.record.to_event(None)
                    }
                    Ok(e) => Event::Unexpected(format!("action {}", e.action)),
                    Err(_) => Event::Unexpected("malformed record event".into()),
                }
            }
            // A message with neither name nor data (a keep-alive) means nothing.
            Ok((event, data)) if event.is_empty() && data.is_empty() => Event::Ignored,
            Ok((event, _)) => Event::Unexpected(format!("sse event {event}")),
        }
    }
}

#[tokio::main]
async fn main() {
    let args = common::parse_args("pocketbase");
    let proto = Arc::new(PocketBase::new(&args));
    common::run(proto, args).await;
}
