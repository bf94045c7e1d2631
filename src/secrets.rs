//! A tenant's secrets: named values its functions read as `ctx.env`.
//!
//! Values are sealed before they reach the store, with XChaCha20-Poly1305 under one
//! 32-byte server key: a fresh random 24-byte nonce per write, and associated data that
//! binds the tenant id and the secret's name, so a ciphertext copied to another tenant or
//! another name does not decrypt. The key comes from configuration (`PLINTH_SECRETS_KEY`)
//! or is generated on first start and kept in the control database (`app.rs`).
//!
//! No API returns a value: admins set, list (names only) and delete; only
//! [`SecretsService::env`] decrypts, for functions. `env` runs on every invocation, so each
//! tenant's decrypted map is cached: a write through this process invalidates it at once,
//! and a write through another node or the CLI shows here within the cache TTL (one second
//! by default, `Config::secrets_cache_ttl`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::fault::Kind;
use crate::store::{SecretPut, Store, StoreError};
use crate::tenancy::Scope;

/// Length of the server key, in bytes.
pub const KEY_BYTES: usize = 32;
/// Longest value, in bytes of UTF-8.
pub const MAX_VALUE_BYTES: usize = 8192;
/// Most secrets one tenant may hold.
pub const MAX_SECRETS: usize = 100;
const NONCE_BYTES: usize = 24;
/// How many tenants' maps the cache holds before it drops expired ones.
const CACHE_SWEEP_AT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("name must match ^[A-Z_][A-Z0-9_]{{0,63}}$")]
    InvalidName,
    #[error("value must be at most {MAX_VALUE_BYTES} bytes")]
    ValueTooLarge,
    #[error("the tenant already has {MAX_SECRETS} secrets")]
    TooMany,
    #[error("no such secret")]
    NotFound,
    /// The stored ciphertext does not open under this server's key (the key changed, or
    /// the row was tampered with or moved).
    #[error("secret {0} cannot be decrypted with this server's secrets key")]
    Undecryptable(String),
    #[error("encryption failed")]
    Seal,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SecretsError {
    /// The stable machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            SecretsError::InvalidName | SecretsError::ValueTooLarge => "validation_failed",
            SecretsError::TooMany => "too_many_secrets",
            SecretsError::NotFound => "not_found",
            SecretsError::Undecryptable(_) | SecretsError::Seal => "internal",
            SecretsError::Store(e) => e.code(),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            SecretsError::InvalidName | SecretsError::ValueTooLarge => Kind::Invalid,
            SecretsError::TooMany => Kind::Conflict,
            SecretsError::NotFound => Kind::NotFound,
            SecretsError::Undecryptable(_) | SecretsError::Seal => Kind::Internal,
            SecretsError::Store(e) => e.kind(),
        }
    }

    /// What a client is told. Faults of the server's own say nothing of their cause.
    pub fn client_detail(&self) -> String {
        match self {
            SecretsError::InvalidName | SecretsError::ValueTooLarge => {
                let (field, problem) = self.field().unwrap_or_default();
                format!("{field}: {problem}")
            }
            SecretsError::TooMany => format!(
                "the tenant already has {MAX_SECRETS} secrets, the most it may have; delete one first"
            ),
            SecretsError::NotFound => "no such secret".into(),
            SecretsError::Undecryptable(_) | SecretsError::Seal => "internal server error".into(),
            SecretsError::Store(e) => e.client_detail(),
        }
    }

    /// The input field at fault, and what is wrong with it, when there is one.
    pub fn field(&self) -> Option<(String, String)> {
        match self {
            SecretsError::InvalidName => {
                Some(("name".into(), "must match ^[A-Z_][A-Z0-9_]{0,63}$".into()))
            }
            SecretsError::ValueTooLarge => Some((
                "value".into(),
                format!("must be at most {MAX_VALUE_BYTES} bytes of UTF-8"),
            )),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, SecretsError>;

/// A secret as every API shows it: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    /// Unix milliseconds of the last write.
    pub updated_at: i64,
}

/// Checks a secret name: `^[A-Z_][A-Z0-9_]{0,63}$`.
pub fn validate_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = (1..=64).contains(&b.len())
        && (b[0].is_ascii_uppercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(SecretsError::InvalidName)
    }
}

pub fn validate_value(value: &str) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(SecretsError::ValueTooLarge);
    }
    Ok(())
}

/// The server key as stored in the control database (base64url, unpadded).
pub fn decode_stored_key(stored: &str) -> anyhow::Result<Vec<u8>> {
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(stored.trim())
        .map_err(|e| anyhow::anyhow!("the stored secrets key is not base64: {e}"))?;
    anyhow::ensure!(
        key.len() == KEY_BYTES,
        "the stored secrets key is {} bytes, not {KEY_BYTES}",
        key.len()
    );
    Ok(key)
}

/// The AEAD under the server key. Associated data: a domain tag, the tenant id (never
/// reused, unlike a slug) and the name.
struct Sealer {
    cipher: XChaCha20Poly1305,
}

fn associated_data(tenant: i64, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(24 + name.len());
    aad.extend_from_slice(b"plinth:secret:v1\0");
    aad.extend_from_slice(&tenant.to_be_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad
}

impl Sealer {
    fn new(key: &[u8]) -> anyhow::Result<Sealer> {
        anyhow::ensure!(
            key.len() == KEY_BYTES,
            "the secrets key must be {KEY_BYTES} bytes, not {}",
            key.len()
        );
        let cipher = XChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| anyhow::anyhow!("the secrets key has the wrong length"))?;
        Ok(Sealer { cipher })
    }

    /// (nonce, ciphertext with tag)
    fn seal(&self, tenant: i64, name: &str, value: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::fill(&mut nonce[..]);
        let aad = associated_data(tenant, name);
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretsError::Seal)?;
        Ok((nonce.to_vec(), ciphertext))
    }

    fn open(&self, tenant: i64, name: &str, nonce: &[u8], ciphertext: &[u8]) -> Option<String> {
        let nonce = XNonce::try_from(nonce).ok()?;
        let aad = associated_data(tenant, name);
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

struct Cached {
    env: Arc<BTreeMap<String, String>>,
    loaded: Instant,
}

pub struct SecretsService {
    store: Store,
    sealer: Sealer,
    ttl: Duration,
    cache: RwLock<HashMap<i64, Cached>>,
    /// Bumped by every invalidation. A load that overlapped one does not fill the cache,
    /// so a map read before a write is never cached after it.
    epoch: AtomicU64,
}

impl SecretsService {
    /// `key` is the 32-byte server key; `cache_ttl` how long a decrypted map is trusted
    /// (zero: never cached).
    pub fn new(store: Store, key: &[u8], cache_ttl: Duration) -> anyhow::Result<SecretsService> {
        Ok(SecretsService {
            store,
            sealer: Sealer::new(key)?,
            ttl: cache_ttl,
            cache: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        })
    }

    /// Creates or replaces a secret. At most [`MAX_SECRETS`] per tenant.
    pub async fn set(&self, scope: &Scope, name: &str, value: &str) -> Result<SecretInfo> {
        validate_name(name)?;
        validate_value(value)?;
        let tenant = scope.tenant().id;
        let (nonce, ciphertext) = self.sealer.seal(tenant, name, value)?;
        let put = self
            .store
            .put_secret(scope, name, &nonce, &ciphertext, MAX_SECRETS as i64)
            .await?;
        let updated_at = match put {
            SecretPut::Created { updated_at } | SecretPut::Updated { updated_at } => updated_at,
            SecretPut::LimitReached => return Err(SecretsError::TooMany),
        };
        self.forget(tenant);
        Ok(SecretInfo {
            name: name.to_string(),
            updated_at,
        })
    }

    /// Seals a value for `tenant` under this server's key without storing it: an
    /// import writes the sealed secrets in its own transaction.
    pub fn seal_for(&self, tenant: i64, name: &str, value: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        validate_name(name)?;
        validate_value(value)?;
        self.sealer.seal(tenant, name, value)
    }

    pub async fn delete(&self, scope: &Scope, name: &str) -> Result<()> {
        validate_name(name)?;
        let deleted = self.store.delete_secret(scope, name).await;
        // Forgotten whatever the outcome: a stale cached map must not outlive a delete.
        self.forget(scope.tenant().id);
        deleted.map_err(|e| match e {
            StoreError::NotFound => SecretsError::NotFound,
            other => other.into(),
        })
    }

    /// The tenant's secrets by name, without values.
    pub async fn list(&self, scope: &Scope) -> Result<Vec<SecretInfo>> {
        Ok(self
            .store
            .list_secrets(scope)
            .await?
            .into_iter()
            .map(|m| SecretInfo {
                name: m.name,
                updated_at: m.updated_at,
            })
            .collect())
    }

    /// Every secret of the tenant, decrypted: the environment of its functions. Served
    /// from the cache when fresh; a secret that does not decrypt fails the whole call
    /// (rather than running a function with part of its environment missing).
    pub async fn env(&self, scope: &Scope) -> Result<Arc<BTreeMap<String, String>>> {
        let tenant = scope.tenant().id;
        if let Some(env) = self.cached(tenant) {
            return Ok(env);
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let rows = self.store.load_secrets(scope).await?;
        let mut env = BTreeMap::new();
        for row in rows {
            let Some(value) = self
                .sealer
                .open(tenant, &row.name, &row.nonce, &row.ciphertext)
            else {
                tracing::error!(tenant = %scope.tenant().slug, secret = %row.name,
                    "a secret does not decrypt with this server's secrets key");
                return Err(SecretsError::Undecryptable(row.name));
            };
            env.insert(row.name, value);
        }
        let env = Arc::new(env);
        self.remember(tenant, epoch, env.clone());
        Ok(env)
    }

    /// Drops the tenant's cached map (after a write, or when the tenant is deleted).
    pub fn forget(&self, tenant_id: i64) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut c) = self.cache.write() {
            c.remove(&tenant_id);
        }
    }

    fn cached(&self, tenant: i64) -> Option<Arc<BTreeMap<String, String>>> {
        let c = self.cache.read().ok()?;
        c.get(&tenant)
            .filter(|e| e.loaded.elapsed() < self.ttl)
            .map(|e| e.env.clone())
    }

    fn remember(&self, tenant: i64, epoch: u64, env: Arc<BTreeMap<String, String>>) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut c) = self.cache.write() else {
            return;
        };
        // Checked under the lock `forget` takes after bumping the epoch: either the
        // invalidation is seen here, or it runs after this insert and removes it.
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if c.len() >= CACHE_SWEEP_AT {
            let ttl = self.ttl;
            c.retain(|_, e| e.loaded.elapsed() < ttl);
        }
        c.insert(
            tenant,
            Cached {
                env,
                loaded: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        let mut key = [0u8; KEY_BYTES];
        rand::fill(&mut key[..]);
        Sealer::new(&key).unwrap()
    }

    /// The codes, kinds and details are the public contract of the secrets API.
    #[test]
    fn codes_and_kinds() {
        let cases = [
            (SecretsError::InvalidName, "validation_failed", 400),
            (SecretsError::ValueTooLarge, "validation_failed", 400),
            (SecretsError::TooMany, "too_many_secrets", 409),
            (SecretsError::NotFound, "not_found", 404),
            (SecretsError::Undecryptable("K".into()), "internal", 500),
            (SecretsError::Seal, "internal", 500),
        ];
        for (e, code, status) in cases {
            assert_eq!((e.code(), e.kind().status()), (code, status), "{e:?}");
        }
        assert_eq!(
            SecretsError::InvalidName.client_detail(),
            "name: must match ^[A-Z_][A-Z0-9_]{0,63}$"
        );
        assert_eq!(
            SecretsError::ValueTooLarge.field().map(|f| f.0),
            Some("value".into())
        );
        assert_eq!(
            SecretsError::Undecryptable("K".into()).client_detail(),
            "internal server error"
        );
    }

    #[test]
    fn names() {
        for ok in ["A", "_", "API_KEY", "X1", "_9", &"A".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1A",
            "a",
            "Api",
            "API-KEY",
            "API KEY",
            "ÄPI",
            "API.KEY",
            &"A".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values() {
        assert!(validate_value("").is_ok());
        assert!(validate_value(&"x".repeat(MAX_VALUE_BYTES)).is_ok());
        assert!(validate_value(&"x".repeat(MAX_VALUE_BYTES + 1)).is_err());
        // Bytes, not characters: 4097 two-byte characters are 8194 bytes.
        assert!(validate_value(&"é".repeat(4097)).is_err());
    }

    #[test]
    fn seal_and_open() {
        let s = sealer();
        let (nonce, ct) = s.seal(7, "API_KEY", "sk_live_123").unwrap();
        assert_eq!(nonce.len(), NONCE_BYTES);
        assert!(!ct.windows(11).any(|w| w == b"sk_live_123"));
        assert_eq!(
            s.open(7, "API_KEY", &nonce, &ct).as_deref(),
            Some("sk_live_123")
        );
        // A fresh nonce per write: the same value seals differently.
        let (nonce2, ct2) = s.seal(7, "API_KEY", "sk_live_123").unwrap();
        assert_ne!(nonce, nonce2);
        assert_ne!(ct, ct2);
        assert_eq!(s.open(7, "API_KEY", &[], &[]), None);
        assert_eq!(s.open(7, "EMPTY", &nonce, &ct), None);
        let (n, c) = s.seal(7, "EMPTY", "").unwrap();
        assert_eq!(s.open(7, "EMPTY", &n, &c).as_deref(), Some(""));
    }

    #[test]
    fn a_moved_ciphertext_does_not_open() {
        let s = sealer();
        let (nonce, ct) = s.seal(1, "API_KEY", "value").unwrap();
        assert_eq!(s.open(1, "OTHER_KEY", &nonce, &ct), None, "another name");
        assert_eq!(s.open(2, "API_KEY", &nonce, &ct), None, "another tenant");
        // The name and tenant id are not confusable by shifting bytes between them.
        let (nonce, ct) = s.seal(1, "A", "value").unwrap();
        assert_eq!(s.open(1, "AA", &nonce, &ct), None);
        let mut tampered = ct.clone();
        tampered[0] ^= 1;
        assert_eq!(s.open(1, "A", &nonce, &tampered), None, "tampered");
        assert_eq!(
            sealer().open(1, "A", &nonce, &ct),
            None,
            "another server key"
        );
    }

    #[test]
    fn key_length_is_checked() {
        assert!(Sealer::new(&[0u8; 16]).is_err());
        assert!(Sealer::new(&[0u8; 33]).is_err());
        assert!(decode_stored_key(&crate::crypto::random_token(32)).is_ok());
        assert!(decode_stored_key(&crate::crypto::random_token(16)).is_err());
        assert!(decode_stored_key("not base64!").is_err());
    }
}
