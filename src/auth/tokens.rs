//! JWT signing keys and access tokens.
//!
//! Keys are HS256 secrets with a `kid`. They come from config (`PLINTH_JWT_SECRET`) or are
//! generated at first start and persisted in the control database, so every node sharing
//! a database signs and verifies alike. The newest unretired key signs; every stored key
//! verifies, so rotating (`plinth signing-key rotate`) never cuts off live tokens. A token
//! with an unknown `kid` makes the keyring reload once (another node may have rotated).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::crypto::sha256_hex;
use crate::store::{SigningKeyRow, Store, StoreResult};

pub const ISSUER: &str = "plinth";
pub const ADMIN_AUDIENCE: &str = "plinth:admin";
const LEEWAY_SECS: u64 = 5;

/// Claims of a tenant end user's access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// The session (refresh-token family) this token was issued for.
    pub sid: String,
    pub email: String,
    pub email_verified: bool,
}

/// Claims of a platform admin's token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub email: String,
    /// The admin's password version when the token was issued: a password change bumps
    /// it, so older tokens stop working. Absent (0) in tokens from before it existed.
    #[serde(default)]
    pub pwv: i64,
}

/// Claims of an admin's read token for one tenant's API (`aud`: the tenant's
/// [reader audience](crate::tenancy::Tenant::reader_audience)).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReaderClaims {
    pub iss: String,
    pub aud: String,
    /// The admin's id, or the admin API key's.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// Who reads, as the audit log names them (`admin:<email>`, `key:<prefix>`).
    pub actor: String,
    /// How the admin proved who they were when the token was made, so each use checks
    /// that proof still stands: `session` (the console's cookie), `token` (an admin
    /// token) or `key` (an admin API key).
    pub via: String,
    /// The console session's stored id (`session`) or the API key's prefix (`key`).
    #[serde(default)]
    pub sid: String,
    /// The admin's password version when the token was made (`token`).
    #[serde(default)]
    pub pwv: i64,
}

/// How a read token's admin proved who they were (see [`ReaderClaims::via`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderVia {
    /// A console session, by its stored id.
    Session(String),
    /// An admin token, with the admin's password version.
    Token(i64),
    /// An admin API key, by its prefix.
    Key(String),
}

impl ReaderClaims {
    /// The proof this token was made with; None for a shape this server never makes.
    pub fn proof(&self) -> Option<ReaderVia> {
        match self.via.as_str() {
            "session" if !self.sid.is_empty() => Some(ReaderVia::Session(self.sid.clone())),
            "token" => Some(ReaderVia::Token(self.pwv)),
            "key" if !self.sid.is_empty() => Some(ReaderVia::Key(self.sid.clone())),
            _ => None,
        }
    }
}

/// What a read token starts with, so the tenant API tells it from a user's access token
/// (and a service key) before verifying it; the rest is a JWT.
pub const READER_PREFIX: &str = "prt_";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

struct Key {
    kid: String,
    retired: bool,
    enc: EncodingKey,
    dec: DecodingKey,
}

pub struct Keyring {
    store: Store,
    /// A key given in configuration; it signs and is never stored.
    configured: Option<Arc<Key>>,
    keys: RwLock<Vec<Arc<Key>>>,
    last_reload: RwLock<Option<Instant>>,
}

fn key_from_secret(kid: String, secret: &[u8], retired: bool) -> Key {
    Key {
        kid,
        retired,
        enc: EncodingKey::from_secret(secret),
        dec: DecodingKey::from_secret(secret),
    }
}

fn key_from_row(row: &SigningKeyRow) -> Option<Arc<Key>> {
    let secret = STANDARD.decode(&row.secret).ok()?;
    Some(Arc::new(key_from_secret(
        row.kid.clone(),
        &secret,
        row.retired_at.is_some(),
    )))
}

/// The kid of the key a database's first start generates. Fixed, so that nodes starting
/// together on an empty database all insert the same row: one insert wins, the others
/// change nothing, and every node reads back the winner's secret. (Random kids gave each
/// racing node a key of its own, and a node that read the table before the others had
/// inserted signed with a key they only found by reloading.)
const FIRST_KID: &str = "k-first";

fn new_key_row() -> SigningKeyRow {
    key_row(format!("k{}", uuid::Uuid::now_v7().simple()))
}

fn key_row(kid: String) -> SigningKeyRow {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret[..]);
    let now = chrono::Utc::now().timestamp_millis();
    SigningKeyRow {
        kid,
        alg: "HS256".into(),
        secret: STANDARD.encode(secret),
        created_at: now,
        retired_at: None,
    }
}

impl Keyring {
    /// Loads the keys; on a database with none, generates and stores the first one.
    pub async fn load(store: Store, configured_secret: Option<&[u8]>) -> anyhow::Result<Keyring> {
        let configured = match configured_secret {
            Some(secret) => {
                anyhow::ensure!(
                    secret.len() >= 32,
                    "the configured JWT secret must be at least 32 bytes"
                );
                let kid = format!("cfg-{}", &sha256_hex(&STANDARD.encode(secret))[..12]);
                Some(Arc::new(key_from_secret(kid, secret, false)))
            }
            None => None,
        };
        let ring = Keyring {
            store,
            configured,
            keys: RwLock::new(Vec::new()),
            last_reload: RwLock::new(None),
        };
        let mut rows = ring.store.list_signing_keys().await?;
        if rows.is_empty() && ring.configured.is_none() {
            // Inserted unless present (see `FIRST_KID`), then read back whoever won.
            ring.store
                .insert_signing_key(&key_row(FIRST_KID.into()))
                .await?;
            rows = ring.store.list_signing_keys().await?;
        }
        ring.install(&rows);
        Ok(ring)
    }

    fn install(&self, rows: &[SigningKeyRow]) {
        let keys: Vec<Arc<Key>> = rows.iter().filter_map(key_from_row).collect();
        if let Ok(mut slot) = self.keys.write() {
            *slot = keys;
        }
    }

    /// Generates a new signing key and retires the others (they keep verifying).
    pub async fn rotate(store: &Store) -> StoreResult<String> {
        let row = new_key_row();
        store.insert_signing_key(&row).await?;
        store.retire_signing_keys_except(&row.kid).await?;
        Ok(row.kid)
    }

    fn signer(&self) -> Option<Arc<Key>> {
        if let Some(k) = &self.configured {
            return Some(k.clone());
        }
        let keys = self.keys.read().ok()?;
        keys.iter().find(|k| !k.retired).or(keys.first()).cloned()
    }

    pub fn current_kid(&self) -> Option<String> {
        self.signer().map(|k| k.kid.clone())
    }

    fn find(&self, kid: &str) -> Option<Arc<Key>> {
        if let Some(k) = &self.configured
            && k.kid == kid
        {
            return Some(k.clone());
        }
        let keys = self.keys.read().ok()?;
        keys.iter().find(|k| k.kid == kid).cloned()
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let key = self
            .signer()
            .ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &key.enc)?)
    }

    /// Verifies signature, issuer, audience and expiry; only HS256 is accepted, so
    /// `alg: none` and algorithm-confusion tokens fail here.
    pub async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenError::Invalid(format!("malformed token ({e})")))?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid("unsupported algorithm".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("missing key id".into()))?;
        let key = match self.find(&kid) {
            Some(k) => k,
            None => {
                self.reload_if_stale().await;
                self.find(&kid)
                    .ok_or_else(|| TokenError::Invalid("unknown signing key".into()))?
            }
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        // Validate as a plain map first, so a wrong audience is reported as such rather
        // than as a claim missing from the expected shape.
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.dec,
            &validation,
        )
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                TokenError::Invalid("token not issued for this audience".into())
            }
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                TokenError::Invalid("bad signature".into())
            }
            _ => TokenError::Invalid(e.to_string()),
        })?;
        serde_json::from_value(serde_json::Value::Object(claims))
            .map_err(|_| TokenError::Invalid("token has the wrong shape for this audience".into()))
    }

    /// Reloads keys from the store at most once every few seconds.
    async fn reload_if_stale(&self) {
        let due = self
            .last_reload
            .read()
            .map(|t| t.is_none_or(|t| t.elapsed() > Duration::from_secs(5)))
            .unwrap_or(false);
        if !due {
            return;
        }
        if let Ok(mut t) = self.last_reload.write() {
            *t = Some(Instant::now());
        }
        if let Ok(rows) = self.store.list_signing_keys().await {
            self.install(&rows);
        }
    }
}

pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn access_claims(
    audience: String,
    user_id: &str,
    session_id: &str,
    email: &str,
    email_verified: bool,
    ttl: Duration,
) -> AccessClaims {
    let now = unix_now();
    AccessClaims {
        iss: ISSUER.into(),
        aud: audience,
        sub: user_id.into(),
        iat: now,
        exp: now + ttl.as_secs() as i64,
        sid: session_id.into(),
        email: email.into(),
        email_verified,
    }
}

pub fn admin_claims(admin_id: &str, email: &str, pwv: i64, ttl: Duration) -> AdminClaims {
    let now = unix_now();
    AdminClaims {
        iss: ISSUER.into(),
        aud: ADMIN_AUDIENCE.into(),
        sub: admin_id.into(),
        iat: now,
        exp: now + ttl.as_secs() as i64,
        email: email.into(),
        pwv,
    }
}

pub fn reader_claims(
    audience: String,
    sub: &str,
    actor: &str,
    via: &ReaderVia,
    ttl: Duration,
) -> ReaderClaims {
    let now = unix_now();
    let (via, sid, pwv) = match via {
        ReaderVia::Session(id) => ("session", id.clone(), 0),
        ReaderVia::Token(pwv) => ("token", String::new(), *pwv),
        ReaderVia::Key(prefix) => ("key", prefix.clone(), 0),
    };
    ReaderClaims {
        iss: ISSUER.into(),
        aud: audience,
        sub: sub.into(),
        iat: now,
        exp: now + ttl.as_secs() as i64,
        actor: actor.into(),
        via: via.into(),
        sid,
        pwv,
    }
}

/// The `exp` claim of a token that was already verified (no check here). A read token's
/// prefix is part of its first segment, so the claims are found the same way.
pub fn expiry_of(token: &str) -> Option<i64> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("exp")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_tokens_carry_the_proof_they_were_made_with() {
        let ttl = Duration::from_secs(60);
        for via in [
            ReaderVia::Session("s1".into()),
            ReaderVia::Token(3),
            ReaderVia::Key("pak_0123456789".into()),
        ] {
            let c = reader_claims("aud".into(), "admin-1", "admin:a@b.c", &via, ttl);
            assert_eq!(c.proof(), Some(via));
            // What a client sees of it survives a round trip through JSON.
            let back: ReaderClaims =
                serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
            assert_eq!(back.proof(), c.proof());
        }
        // Shapes this server never makes prove nothing.
        let mut c = reader_claims("aud".into(), "a", "x", &ReaderVia::Session("s".into()), ttl);
        c.sid.clear();
        assert_eq!(c.proof(), None);
        c.via = "cookie".into();
        assert_eq!(c.proof(), None);
    }
}
