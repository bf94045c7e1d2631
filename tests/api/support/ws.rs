//! The WebSocket client of the realtime tests: connect (with a token, or with a tiny
//! receive buffer), send, and read JSON frames with deadlines.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::TestApp;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Client {
    pub ws: Ws,
}

/// A tenant's realtime endpoint, without a token.
pub fn ws_url(app: &TestApp, tenant: &str) -> String {
    format!(
        "ws://{}/v1/t/{tenant}/realtime",
        app.base.trim_start_matches("http://")
    )
}

impl Client {
    pub async fn connect(app: &TestApp, tenant: &str, token: Option<&str>) -> Client {
        let mut url = ws_url(app, tenant);
        if let Some(t) = token {
            url.push_str(&format!("?access_token={t}"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client { ws }
    }

    /// A client whose socket receive buffer is tiny, so it stops the server's writes soon.
    pub async fn connect_small_buffer(app: &TestApp, tenant: &str) -> Client {
        let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let stream = sock.connect(addr).await.unwrap();
        let url = format!("ws://{addr}/v1/t/{tenant}/realtime");
        let (ws, _) =
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
                .await
                .expect("websocket connects");
        Client { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// The next JSON message (pings are answered by the library), or panic after 10 s.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(Duration::from_secs(10))
            .await
            .expect("a message within 10 s")
    }

    pub async fn try_recv(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next()).await.ok()??;
            match msg {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("json"));
                }
                Ok(Message::Close(c)) => {
                    return Some(
                        json!({"type": "__closed", "code": c.as_ref().map(|c| u16::from(c.code)), "reason": c.map(|c| c.reason.to_string())}),
                    );
                }
                Ok(_) => continue,
                Err(_) => return Some(json!({"type": "__closed", "code": null})),
            }
        }
    }

    /// Messages until one of `type` arrives; returns it (others are dropped).
    pub async fn until(&mut self, ty: &str) -> Value {
        loop {
            let m = self.recv().await;
            if m["type"] == ty {
                return m;
            }
            assert_ne!(m["type"], "__closed", "closed while waiting for {ty}: {m}");
        }
    }

    pub async fn subscribe(&mut self, v: Value) -> Value {
        self.send(v).await;
        self.until("subscribed").await
    }

    /// Change events until `n` have arrived (panics on anything else but pongs).
    pub async fn changes(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let m = self.recv().await;
            match m["type"].as_str() {
                Some("change") => out.push(m),
                Some("pong") => {}
                _ => panic!("expected a change, got {m}"),
            }
        }
        out
    }

    /// Asserts that nothing arrives for a while.
    pub async fn quiet(&mut self, for_: Duration) {
        if let Some(m) = self.try_recv(for_).await {
            panic!("expected silence, got {m}");
        }
    }
}
