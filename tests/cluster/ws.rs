//! A realtime subscriber: authenticates with the service key, subscribes to collections
//! (from `since` when resuming), and reads `change` frames.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::TENANT;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Sub {
    ws: Socket,
    /// The seq the first subscription went live at; the others start from it too.
    pub live_at: i64,
    /// Changes that arrived while the later subscriptions were being made.
    early: VecDeque<(i64, Value)>,
}

/// What reading a socket gave.
pub enum Next {
    Change(i64, Value),
    /// The socket closed or failed (a node died): reconnect and resume.
    Closed,
    Idle,
}

impl Sub {
    /// Connects to `ws_base` (a node or the proxy) and subscribes to each collection
    /// (subscription id = collection) from its `since`; one without starts live if it is
    /// the first, else from where the first went live, so together they miss nothing.
    /// Err when the connection or the handshake failed (the caller retries).
    pub async fn open(
        ws_base: &str,
        key: &str,
        subs: &[(&str, Option<i64>)],
    ) -> Result<Sub, String> {
        let url = format!("{ws_base}/v1/t/{TENANT}/realtime");
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
        let send = |v: Value| Message::text(v.to_string());
        ws.send(send(json!({"type": "auth", "token": key})))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut early = VecDeque::new();
        let mut live_at = None;
        for (c, since) in subs {
            let mut sub = json!({"type": "subscribe", "id": c, "collection": c});
            if let Some(s) = since.or(live_at) {
                sub["since"] = json!(s);
            }
            ws.send(send(sub)).await.map_err(|e| format!("send: {e}"))?;
            loop {
                let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
                    .await
                    .map_err(|_| "no answer to subscribe".to_string())?;
                let Some(Ok(Message::Text(t))) = frame else {
                    return Err(format!("socket ended before subscribed: {frame:?}"));
                };
                let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                match v["type"].as_str() {
                    Some("authenticated") => {}
                    Some("subscribed") => {
                        live_at.get_or_insert(v["seq"].as_i64().unwrap_or(0));
                        break;
                    }
                    Some("change") => {
                        early.push_back((v["seq"].as_i64().expect("seq"), v["doc"].clone()));
                    }
                    _ => return Err(format!("unexpected frame: {v}")),
                }
            }
        }
        Ok(Sub {
            ws,
            live_at: live_at.unwrap_or(0),
            early,
        })
    }

    /// The next change within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Next {
        if let Some((seq, doc)) = self.early.pop_front() {
            return Next::Change(seq, doc);
        }
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return Next::Idle,
                Ok(None) | Ok(Some(Err(_))) => return Next::Closed,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).expect("JSON frame");
                    match v["type"].as_str() {
                        Some("change") => {
                            let seq = v["seq"].as_i64().expect("seq");
                            return Next::Change(seq, v["doc"].clone());
                        }
                        Some("pong") => {}
                        _ => panic!("unexpected frame: {v}"),
                    }
                }
                Ok(Some(Ok(Message::Close(_)))) => return Next::Closed,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}
