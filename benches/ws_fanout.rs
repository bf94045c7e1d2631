//! Realtime fan-out benchmark of Plinth's WebSocket feed (`docs/realtime.md`): N subscribers
//! on `ws://ADDR/v1/t/TENANT/realtime?access_token=KEY`, each subscribed to one collection;
//! writes are HTTP `PUT`s of documents `{"n": i, "t_us": <send time>}` with the same service
//! key. Modes, flags and output are described in `fanout/common.rs`.
//!
//! ```text
//! cargo bench --bench ws_fanout -- --addr 127.0.0.1:8080 --tenant bench --token plk_… \
//!   --collection feed --mode latency --subscribers 100,1000,10000 --writes 100
//! ```
//! Only loopback targets are accepted.

#[path = "fanout/common.rs"]
mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use common::{Event, Protocol, Stamp, Subscription, kind};
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Bytes;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// The subscription id every subscriber uses (one subscription per socket).
const SUB_ID: &str = "s";
/// Messages a subscriber may see before `subscribed` (e.g. `authenticated`) before giving up.
const MAX_MESSAGES_BEFORE_SUBSCRIBED: usize = 16;

struct Plinth {
    addr: SocketAddr,
    /// Path and query of the upgrade request, token included.
    realtime_path: String,
    subscribe_msg: String,
    docs_path: String,
    authorization: String,
    /// Distinguishes this process's document ids from earlier runs on the same server.
    run: String,
}

impl Plinth {
    fn new(args: &common::Args) -> Self {
        assert!(!args.tenant.is_empty(), "--tenant is required");
        Plinth {
            addr: args.addr,
            realtime_path: format!(
                "/v1/t/{}/realtime?access_token={}",
                args.tenant,
                query_escape(&args.token)
            ),
            subscribe_msg: serde_json::json!({
                "type": "subscribe", "id": SUB_ID, "collection": args.collection,
            })
            .to_string(),
            docs_path: format!("/v1/t/{}/collections/{}/docs", args.tenant, args.collection),
            authorization: format!("Bearer {}", args.token),
            run: format!(
                "r{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Small buffers: 10,000 sockets with tungstenite's default 128 KiB read buffers would cost
/// the load generator over a gigabyte. Writes go out at once (no batching of our few frames).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// A server → client message (`docs/realtime.md`); fields absent from a type are `None`.
#[derive(Deserialize)]
struct ServerMsg {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    seq: Option<u64>,
    op: Option<String>,
    doc: Option<Doc>,
    error: Option<ErrorBody>,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Doc {
    data: Option<Stamp>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
}

impl ServerMsg {
    fn error_kind(&self) -> String {
        let code = self.error.as_ref().and_then(|e| e.code.as_deref());
        format!("error {}", code.unwrap_or("(no code)"))
    }
}

/// Why an upgrade failed: refusals carry an HTTP status and a problem+json `code`
/// (e.g. 429 `too_many_connections`, 401 for a bad token).
fn handshake_error(e: tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(res) => {
            let code = res
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string))
                .unwrap_or_default();
            format!("upgrade refused: HTTP {} {code}", res.status().as_u16())
        }
        e => kind("upgrade", e),
    }
}

impl Protocol for Plinth {
    type Conn = WsSub;

    async fn subscribe(&self, source: IpAddr) -> Result<WsSub, String> {
        let tcp = common::connect_tcp(self.addr, source).await?;
        let url = format!("ws://{}{}", self.addr, self.realtime_path);
        let (mut ws, _) = client_async_with_config(url, tcp, Some(ws_config()))
            .await
            .map_err(handshake_error)?;
        ws.send(Message::text(self.subscribe_msg.as_str()))
            .await
            .map_err(|e| kind("send subscribe", e))?;
        // The token came with the upgrade, so `authenticated` may come first; `pong` and
        // control frames are harmless; the first answer about our subscription decides.
        for _ in 0..MAX_MESSAGES_BEFORE_SUBSCRIBED {
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => return Err(close_reason(f)),
                Some(Ok(Message::Binary(_))) => return Err("binary frame before subscribed".into()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(kind("read", e)),
                None => return Err("closed before subscribed".into()),
            };
            let msg: ServerMsg =
                serde_json::from_str(&text).map_err(|e| kind("malformed server message", e))?;
            match msg.kind.as_str() {
                "subscribed" if msg.id.as_deref() == Some(SUB_ID) => return Ok(WsSub { ws }),
                "error" => return Err(msg.error_kind()),
                "authenticated" | "pong" => continue,
                other => return Err(format!("{other} before subscribed")),
            }
        }
        Err("no subscribed answer".into())
    }

    fn write_request(&self, round: u32, n: u64, t_us: u64) -> hyper::Request<Full<Bytes>> {
        hyper::Request::put(format!("{}/{}-{round}-{n}", self.docs_path, self.run))
            .header("host", self.addr.to_string())
            .header("authorization", &self.authorization)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!(
                "{{\"n\":{n},\"t_us\":{t_us}}}"
            ))))
            .expect("valid request")
    }

    fn write_ok(&self, status: u16) -> bool {
        // 201 created; 200 if an id was ever reused (replaced).
        status == 201 || status == 200
    }
}

fn close_reason(frame: Option<tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) => format!("close {} {}", u16::from(f.code), f.reason),
        None => "close".into(),
    }
}

struct WsSub {
    ws: WebSocketStream<TcpStream>,
}

impl Subscription for WsSub {
    async fn next_event(&mut self) -> Event {
        // Reading is also what answers the server's pings: tungstenite queues the pong and
        // flushes it on the next read.
        match self.ws.next().await {
            Some(Ok(Message::Text(text))) => parse_event(&text),
            Some(Ok(Message::Binary(_))) => Event::Unexpected("binary frame".into()),
            Some(Ok(Message::Close(f))) => Event::Closed(close_reason(f)),
            Some(Ok(_)) => Event::Ignored, // ping, pong
            Some(Err(e)) => Event::Closed(kind("read", e)),
            None => Event::Closed("eof".into()),
        }
    }
}

/// What a text frame means to the bench.
fn parse_event(text: &str) -> Event {
    let msg: ServerMsg = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(_) => return Event::Unexpected("malformed server message".into()),
    };
    match msg.kind.as_str() {
        "change" if msg.id.as_deref() != Some(SUB_ID) => {
            Event::Unexpected("change for an unknown subscription".into())
        }
        "change" => match msg.op.as_deref() {
            Some("create" | "update") => match msg.doc.and_then(|d| d.data) {
                Some(stamp) => stamp.to_event(msg.seq),
                None => Event::Unexpected("change without doc.data".into()),
            },
            op => Event::Unexpected(format!("change op {}", op.unwrap_or("(none)"))),
        },
        "pong" | "authenticated" => Event::Ignored,
        "error" => Event::Unexpected(msg.error_kind()),
        "resync" => Event::Unexpected(format!(
            "resync {}",
            msg.reason.as_deref().unwrap_or("(no reason)")
        )),
        other => Event::Unexpected(format!("message type {other}")),
    }
}

#[tokio::main]
async fn main() {
    let args = common::parse_args("plinth");
    let proto = Arc::new(Plinth::new(&args));
    common::run(proto, args).await;
}
