//! Service keys: `plk_<prefix>_<secret>`. The prefix is stored in clear (lookup, lists),
//! the whole key only as a SHA-256 hash; the key itself is shown once, at creation.

use crate::crypto::{ct_eq, random_token, sha256_hex};

pub const KEY_MARK: &str = "plk_";

pub struct GeneratedKey {
    /// `plk_` and ten random characters: safe to show, unique per tenant.
    pub prefix: String,
    pub key: String,
    pub hash: String,
}

pub fn generate() -> GeneratedKey {
    let prefix_body: String = hex::encode(random_bytes::<5>());
    let prefix = format!("{KEY_MARK}{prefix_body}");
    let key = format!("{prefix}_{}", random_token(32));
    let hash = sha256_hex(&key);
    GeneratedKey { prefix, key, hash }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::fill(&mut buf[..]);
    buf
}

/// The prefix of something that looks like a service key, or None.
pub fn prefix_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(KEY_MARK)?;
    let (body, secret) = rest.split_once('_')?;
    if body.len() != 10 || !body.bytes().all(|b| b.is_ascii_hexdigit()) || secret.is_empty() {
        return None;
    }
    Some(&token[..KEY_MARK.len() + body.len()])
}

pub fn matches(token: &str, stored_hash: &str) -> bool {
    ct_eq(sha256_hex(token).as_bytes(), stored_hash.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips() {
        let k = generate();
        assert_eq!(prefix_of(&k.key), Some(k.prefix.as_str()));
        assert!(matches(&k.key, &k.hash));
        assert!(!matches(&format!("{}x", k.key), &k.hash));
        assert_eq!(prefix_of("plk_zz_abc"), None);
        assert_eq!(prefix_of("eyJhbGciOi.x.y"), None);
    }
}
