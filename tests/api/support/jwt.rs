//! Tokens: forging them with the test's secret, and reading them without checking.

use base64::Engine;
use plinth::config::{Config, Secret};
use serde_json::Value;

pub fn random_secret() -> Vec<u8> {
    let mut s = vec![0u8; 32];
    rand::fill(&mut s[..]);
    s
}

/// Signs arbitrary claims with the test's configured secret (HS256, that kid).
pub fn forge(secret: &[u8], claims: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let kid = format!("cfg-{}", &plinth::crypto::sha256_hex(&b64)[..12]);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid);
    encode(&header, claims, &EncodingKey::from_secret(secret)).expect("encode")
}

pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

pub fn jwt_header(token: &str) -> Value {
    let part = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

pub fn config_secret(c: &mut Config) -> Vec<u8> {
    let s = random_secret();
    c.jwt_secret = Some(Secret::new(s.clone()));
    s
}
