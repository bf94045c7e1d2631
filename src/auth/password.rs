//! Password hashing: argon2id with the OWASP parameters (19 MiB, t=2, p=1 — the crate's
//! defaults), always on a blocking thread so a login never stalls the async executor.
//!
//! Each running hash or verification holds 19 MiB, and tokio's blocking pool runs up to
//! 512 tasks at once: a flood of setup attempts or password changes grew the process by
//! hundreds of MiB (GiB) and starved every other request of CPU. So at most one hash or
//! verification per core runs at a time, process-wide ([`slots`]); the others wait their
//! turn. A request that goes away while waiting (client gone, timeout) leaves the queue,
//! and how many wait is bounded by the rate limits of the routes that hash.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The permits for argon2 work: one per core, for the whole process (every app of a
/// test binary shares them, as they share the cores).
fn slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            Arc::new(Semaphore::new(cores))
        })
        .clone()
}

/// Runs `work` on a blocking thread once a slot is free. The permit travels with the
/// work: a request dropped while its hash runs frees the slot only when the hash is
/// done, so the bound holds for the work actually running.
async fn on_slot<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let permit = slots().acquire_owned().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let out = work();
        drop(permit);
        out
    })
    .await?)
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    on_slot(move || hash_sync(&password)).await?
}

fn hash_sync(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// What an account without a password stores instead of a PHC string (a user an admin
/// created without one): nothing matches it.
pub const NO_PASSWORD: &str = "";

/// True when `password` matches the stored PHC string. Against [`NO_PASSWORD`] it spends
/// a verification's time anyway, so the answer's timing does not tell such an account.
pub async fn verify(password: String, stored: String) -> bool {
    if stored == NO_PASSWORD {
        verify_dummy(password).await;
        return false;
    }
    on_slot(move || verify_sync(&password, &stored))
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
    let _ = on_slot(move || {
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
    fn emails() {
        assert_eq!(
            normalize_email("  Bob@Example.COM ").as_deref(),
            Ok("bob@example.com")
        );
        assert!(normalize_email("not-an-email").is_err());
        assert!(normalize_email("").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_run_at_most_one_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4 * cores + 2)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(on_slot(move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = running.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    let _ = hash_sync("some password");
                    running.fetch_sub(1, SeqCst);
                }))
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let most = most.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            most >= 1 && most <= cores,
            "{most} hashes ran at once, {cores} cores"
        );
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse".into(), h.clone()).await);
        assert!(!verify("wrong horse".into(), h).await);
        assert!(!verify(String::new(), NO_PASSWORD.into()).await);
        assert!(!verify("anything".into(), NO_PASSWORD.into()).await);
    }
}
