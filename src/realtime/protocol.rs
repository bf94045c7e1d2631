//! Messages of the realtime WebSocket protocol (docs/realtime.md).

use serde::{Deserialize, Serialize};

use crate::documents::wire::DocJson;

/// What a client may send.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Auth { token: String },
    Subscribe(Subscribe),
    Unsubscribe { id: String },
    Ping,
}

/// A `subscribe` message, as the subscription's set-up takes it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Subscribe {
    pub id: String,
    pub collection: String,
    #[serde(default)]
    pub doc: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub since: Option<i64>,
    #[serde(default)]
    pub snapshot: bool,
}

#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// What the server sends (`change` frames are rendered by the feed, once per change).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    Authenticated {
        uid: Option<&'a str>,
        expires_at: Option<String>,
    },
    Subscribed {
        id: &'a str,
        seq: i64,
    },
    Snapshot {
        id: &'a str,
        seq: i64,
        docs: Vec<DocJson<'a>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        error: ErrorBody<'a>,
    },
    Resync {
        id: &'a str,
        reason: &'a str,
    },
    Pong,
}

impl ServerMsg<'_> {
    pub fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{\"type\":\"error\"}".into())
    }
}

/// An `error` frame.
pub fn error(id: Option<&str>, code: &str, message: &str) -> String {
    ServerMsg::Error {
        id,
        error: ErrorBody { code, message },
    }
    .text()
}

/// The message types a client may send.
const CLIENT_TYPES: [&str; 4] = ["auth", "subscribe", "unsubscribe", "ping"];

/// A client's text frame as a message, or the `error` frame that refuses it:
/// `unknown_type` for a JSON object whose `type` is a string the protocol does not have,
/// `malformed_message` for anything else that is not a message (docs/realtime.md).
pub fn parse_client(text: &str) -> Result<ClientMsg, String> {
    serde_json::from_str(text).map_err(|e| {
        let v: Option<serde_json::Value> = serde_json::from_str(text).ok();
        match v
            .as_ref()
            .and_then(|v| v.get("type"))
            .and_then(|t| t.as_str())
        {
            Some(t) if !CLIENT_TYPES.contains(&t) => {
                error(None, "unknown_type", &format!("unknown message type '{t}'"))
            }
            _ => error(None, "malformed_message", &e.to_string()),
        }
    })
}
