//! An HTTP function's return value shaped into a response.

use serde_json::Value;

use super::FnError;

/// An HTTP function's answer.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub invocation: String,
}

/// Largest response body an HTTP function may return.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Turns a function's return value into a response: `{status, headers, body}`; any
/// other value is sent as JSON with 200; null (or nothing) is a 204.
pub(super) fn http_response(text: &str, invocation: String) -> Result<HttpResponse, FnError> {
    let bad = |m: &str| FnError::BadResponse {
        message: m.to_string(),
        invocation: invocation.clone(),
    };
    if text.len() > MAX_RESPONSE_BYTES + 1024 {
        return Err(bad(&format!(
            "the response is larger than {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    let value: Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
    let shaped = value.as_object().is_some_and(|o| {
        o.contains_key("status") || o.contains_key("body") || o.contains_key("headers")
    });
    let (status, headers, body) = if shaped {
        let o = value.as_object().cloned().unwrap_or_default();
        let status = match o.get("status") {
            None => 200,
            Some(s) => s
                .as_u64()
                .filter(|s| (200..=599).contains(s))
                .ok_or_else(|| bad("status must be an integer from 200 to 599"))?
                as u16,
        };
        let mut headers = Vec::new();
        if let Some(h) = o.get("headers") {
            let h = h
                .as_object()
                .ok_or_else(|| bad("headers must be an object"))?;
            for (k, v) in h {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad(&format!("header '{k}' must be a string"))),
                };
                headers.push((k.to_ascii_lowercase(), v));
            }
        }
        (
            status,
            headers,
            o.get("body").cloned().unwrap_or(Value::Null),
        )
    } else if value.is_null() {
        (204, Vec::new(), Value::Null)
    } else {
        (200, Vec::new(), value)
    };
    let has_type = headers.iter().any(|(k, _)| k == "content-type");
    let (body, default_type) = match body {
        Value::Null => (Vec::new(), None),
        Value::String(s) => (s.into_bytes(), Some("text/plain; charset=utf-8")),
        other => (other.to_string().into_bytes(), Some("application/json")),
    };
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(bad(&format!(
            "the response body is larger than {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    let mut headers = headers;
    if !has_type && let Some(t) = default_type {
        headers.push(("content-type".into(), t.into()));
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
        invocation,
    })
}
