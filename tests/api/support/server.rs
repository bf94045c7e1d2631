//! The server under test: started in-process on 127.0.0.1:0, stopped on demand.

use std::time::Duration;

use plinth::app::{App, RunningApp};
use plinth::config::Config;

use super::{Backend, Storage};

pub const PASSWORD: &str = "correct-horse-battery";

pub struct TestApp {
    pub backend: Backend,
    // Before `storage`: fields drop in order, so the server lets go of its data first.
    pub running: Option<RunningApp>,
    pub storage: Storage,
    pub base: String,
    pub http: reqwest::Client,
    /// The JWT secret the server signs with, when the test configured one (for forging).
    pub jwt_secret: Option<Vec<u8>>,
    pub(super) admin_token: Option<String>,
}

/// Server logs (warnings and errors) go to the test's captured output.
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // reqwest is built with rustls but no crypto provider of its own (see Cargo.toml).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("PLINTH_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
    });
}

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
        let storage = Storage::fresh(backend).await;
        Self::start_on(backend, storage, configure).await
    }

    /// Starts a server on existing storage (to test restarts and the CLI's effects).
    pub async fn start_on(
        backend: Backend,
        storage: Storage,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        init_logs();
        let mut config = Config::new(storage.location.clone(), ([127, 0, 0, 1], 0).into());
        config.pg_max_connections = 5;
        // Many tests log in repeatedly from 127.0.0.1; the rate-limit test sets its own.
        config.login_per_ip_per_minute = 10_000;
        config.login_free_failures = 10_000;
        config.login_failures_per_account_per_hour = 10_000;
        configure(&mut config);
        let jwt_secret = config.jwt_secret.as_ref().map(|s| s.expose().clone());
        let app = App::build(config).await.expect("app builds");
        let running = app.spawn();
        let base = format!("http://{}", running.addr);
        TestApp {
            backend,
            storage,
            running: Some(running),
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            jwt_secret,
            admin_token: None,
        }
    }

    /// Stops the server and hands back its storage.
    pub async fn stop(mut self) -> Storage {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        self.storage
    }

    pub fn setup_token(&self) -> Option<String> {
        self.running.as_ref().and_then(|r| r.setup_token.clone())
    }
}
