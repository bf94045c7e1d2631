//! One WebSocket connection: reads client messages, writes events, keeps time (pings,
//! idle timeout, token expiry), and closes cleanly when told to (slow consumer, revoked
//! session, shutdown).
//!
//! `connection` runs the socket's task, `token` follows who the socket speaks for,
//! `subscribe` sets a subscription up (plan, history, go live).

mod connection;
mod subscribe;
mod token;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::SinkExt;
use tokio::sync::mpsc;

use super::Broker;
use super::feed::{Feed, SubKey};
use super::outbox::{Outbox, Sink};
use super::protocol::{self, ClientMsg, ServerMsg};
use super::socket_auth::SocketAuth;
use crate::tenancy::{Caller, Scope, Tenant};

/// Per-subscription state the socket keeps for itself.
struct LocalSub {
    feed: Arc<Feed>,
    requires_auth: bool,
}

pub(crate) struct Connection {
    broker: Arc<Broker>,
    shared: Arc<Outbox>,
    subs: HashMap<String, LocalSub>,
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

impl Connection {
    pub(crate) fn new(
        broker: Arc<Broker>,
        id: u64,
        tenant: Arc<Tenant>,
        ip: String,
        auth: SocketAuth,
    ) -> (Connection, mpsc::Receiver<String>) {
        let (shared, rx) = Outbox::new(id, tenant, ip, auth, broker.config.queue_capacity);
        (
            Connection {
                broker,
                shared,
                subs: HashMap::new(),
            },
            rx,
        )
    }

    pub(crate) fn shared(&self) -> Arc<Outbox> {
        self.shared.clone()
    }

    fn scope(&self) -> Scope {
        let caller = self
            .shared
            .auth()
            .map(|a| a.caller.clone())
            .unwrap_or(Caller::Anonymous);
        Scope::socket(self.shared.tenant.clone(), caller)
    }

    fn detach(&mut self, id: &str) {
        if let Some(local) = self.subs.remove(id) {
            let key: SubKey = (self.shared.id, id.to_string());
            local.feed.lock().remove(&key);
        }
    }

    fn detach_all(&mut self) {
        let ids: Vec<String> = self.subs.keys().cloned().collect();
        for id in ids {
            self.detach(&id);
        }
    }

    async fn handle_text(&mut self, text: &str, sink: &mut Sink) -> Option<String> {
        let msg = match protocol::parse_client(text) {
            Ok(m) => m,
            Err(frame) => return Some(frame),
        };
        match msg {
            ClientMsg::Ping => Some(ServerMsg::Pong.text()),
            ClientMsg::Auth { token } => Some(self.authenticate(&token).await),
            ClientMsg::Unsubscribe { id } => {
                if self.subs.contains_key(&id) {
                    self.detach(&id);
                    None
                } else {
                    Some(protocol::error(
                        Some(&id),
                        "invalid_subscription",
                        "no such subscription",
                    ))
                }
            }
            ClientMsg::Subscribe(req) => match self.subscribe(sink, &req).await {
                Ok(()) => None,
                Err(SubError::Reply(text)) => Some(text),
                Err(SubError::SocketGone) => None,
            },
        }
    }
}

enum SubError {
    /// Tell the client this (an error or resync frame).
    Reply(String),
    /// Writing to the socket failed; the connection is ending.
    SocketGone,
}

fn reply(id: &str, code: &str, message: &str) -> SubError {
    SubError::Reply(protocol::error(Some(id), code, message))
}

async fn send(sink: &mut Sink, text: String) -> Result<(), SubError> {
    sink.send(Message::Text(text.into()))
        .await
        .map_err(|_| SubError::SocketGone)
}
