//! Opaque list cursors: the last row's sort keys and id, signed with a server key over the
//! tenant, collection, order and filter they belong to. A forged cursor, or one from
//! another tenant or another query, fails verification.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::store::After;

pub struct CursorKey(Vec<u8>);

/// What a cursor is bound to.
pub struct CursorContext<'a> {
    pub tenant_id: i64,
    pub collection: &'a str,
    pub order: &'a str,
    pub filter: &'a str,
}

impl CursorKey {
    pub fn new(key: Vec<u8>) -> CursorKey {
        CursorKey(key)
    }

    fn mac(&self, ctx: &CursorContext<'_>, payload: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        for part in [
            ctx.tenant_id.to_string().as_bytes(),
            ctx.collection.as_bytes(),
            ctx.order.as_bytes(),
            ctx.filter.as_bytes(),
            payload,
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes()[..16].to_vec()
    }

    pub fn encode(&self, ctx: &CursorContext<'_>, after: &After) -> String {
        let payload = serde_json::to_vec(after).unwrap_or_default();
        let mac = self.mac(ctx, &payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// None when the cursor is malformed, forged, or belongs to another query.
    pub fn decode(&self, ctx: &CursorContext<'_>, cursor: &str) -> Option<After> {
        if cursor.len() > 8192 {
            return None;
        }
        let (p, m) = cursor.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(p).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(m).ok()?;
        if !crate::crypto::ct_eq(&mac, &self.mac(ctx, &payload)) {
            return None;
        }
        serde_json::from_slice(&payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SortValue;

    #[test]
    fn round_trip_and_forgery() {
        let key = CursorKey::new(b"k".to_vec());
        let ctx = CursorContext {
            tenant_id: 1,
            collection: "c",
            order: "a",
            filter: "",
        };
        let after = After {
            keys: vec![SortValue::Int(3), SortValue::Null],
            tie: SortValue::Text("x".into()),
        };
        let c = key.encode(&ctx, &after);
        assert_eq!(key.decode(&ctx, &c), Some(after));
        let other = CursorContext {
            tenant_id: 2,
            ..ctx
        };
        assert_eq!(key.decode(&other, &c), None);
        let ctx = CursorContext {
            tenant_id: 1,
            collection: "c",
            order: "a",
            filter: "",
        };
        assert_eq!(key.decode(&ctx, &format!("{c}x")), None);
        assert_eq!(key.decode(&ctx, "abc"), None);
        assert_eq!(CursorKey::new(b"other".to_vec()).decode(&ctx, &c), None);
    }
}
