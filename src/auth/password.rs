//! Password hashing: argon2id with the OWASP parameters (19 MiB, t=2, p=1 — the crate's
//! defaults), always on a blocking thread so a login never stalls the async executor.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

/// Checks the length rule (in characters, not bytes).
pub fn validate(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters"));
    }
    if n > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters"));
    }
    Ok(())
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_sync(&password)).await?
}

fn hash_sync(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// True when `password` matches the stored PHC string.
pub async fn verify(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || verify_sync(&password, &stored))
        .await
        .unwrap_or(false)
}

fn verify_sync(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as a real verification, for logins of unknown accounts, so the
/// answer's timing does not tell whether an email is registered.
pub async fn verify_dummy(password: String) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let _ = tokio::task::spawn_blocking(move || {
        let stored = DUMMY.get_or_init(|| hash_sync("plinth-dummy-password").unwrap_or_default());
        verify_sync(&password, stored)
    })
    .await;
}

/// Normalises an email (trimmed, lower-case) and checks its shape.
pub fn normalize_email(raw: &str) -> Result<String, &'static str> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err("is required");
    }
    if email.len() > 254 || !email_address::EmailAddress::is_valid(&email) {
        return Err("is not a valid email address");
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_lengths() {
        assert!(validate("1234567").is_err());
        assert!(validate("12345678").is_ok());
        assert!(validate(&"é".repeat(128)).is_ok());
        assert!(validate(&"a".repeat(129)).is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Bob@Example.COM ").as_deref(),
            Ok("bob@example.com")
        );
        assert!(normalize_email("not-an-email").is_err());
        assert!(normalize_email("").is_err());
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse".into(), h.clone()).await);
        assert!(!verify("wrong horse".into(), h).await);
    }
}
