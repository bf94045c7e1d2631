//! Builds the application state and router, binds the listener, runs until shutdown.
//! `App::build` is what both `plinth serve` and the integration tests use.

mod cluster;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::AdminService;
use crate::auth::mail::Mailer;
use crate::auth::ratelimit::{LoginLimiter, LoginLimits};
use crate::auth::tokens::Keyring;
use crate::auth::{AuthService, AuthSettings};
use crate::config::Config;
use crate::documents::{CursorKey, DocLimits, DocumentService};
use crate::metrics::Metrics;
use crate::rules::RulesRegistry;
use crate::secrets::SecretsService;
use crate::store::Store;
use crate::tenancy::Registry;

pub struct AppInner {
    pub config: Config,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub keyring: Arc<Keyring>,
    pub auth: Arc<AuthService>,
    pub admin: Arc<AdminService>,
    pub rules: Arc<RulesRegistry>,
    pub docs: Arc<DocumentService>,
    /// A tenant's secrets, sealed at rest; `env` is the decrypted map functions read.
    pub secrets: Arc<SecretsService>,
    pub realtime: Arc<crate::realtime::Broker>,
    pub functions: Arc<crate::functions::FunctionService>,
    pub usage: Arc<crate::usage::Usage>,
    pub metrics: Arc<Metrics>,
    limiter: Arc<LoginLimiter>,
}

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Opens the store (running migrations) and wires the services. The CLI uses this
    /// directly for local administration, without binding a port.
    pub async fn open(config: Config) -> anyhow::Result<AppState> {
        let store = Store::open(&config.location, config.pg_max_connections).await?;
        let keyring = Arc::new(
            Keyring::load(
                store.clone(),
                config.jwt_secret.as_ref().map(|s| s.expose().as_slice()),
            )
            .await?,
        );
        let registry = Arc::new(Registry::new(store.clone(), config.tenant_cache_ttl));
        let limiter = Arc::new(LoginLimiter::new(LoginLimits {
            per_ip_per_minute: config.login_per_ip_per_minute,
            free_failures: config.login_free_failures,
            account_failures_per_hour: config.login_failures_per_account_per_hour,
        }));
        let mailer = Arc::new(Mailer::new(
            config.smtp_url.as_ref().map(|s| s.expose().as_str()),
            &config.smtp_from,
        )?);
        let auth_cache = Arc::new(crate::auth::cache::AuthCache::new(config.auth_cache_ttl));
        let auth = Arc::new(AuthService::new(
            store.clone(),
            keyring.clone(),
            mailer,
            limiter.clone(),
            auth_cache.clone(),
            AuthSettings {
                access_ttl: config.access_ttl,
                refresh_ttl: config.refresh_ttl,
                verify_ttl: config.verify_ttl,
                reset_ttl: config.reset_ttl,
                public_url: config.public_url.clone(),
            },
        ));
        let rules = Arc::new(RulesRegistry::new(store.clone(), Duration::from_secs(1)));
        let cursor_secret = store
            .server_secret("cursor_key", || crate::crypto::random_token(32))
            .await?;
        let docs = Arc::new(DocumentService::new(
            store.clone(),
            rules.clone(),
            CursorKey::new(cursor_secret.into_bytes()),
            DocLimits {
                max_bytes: config.doc_max_bytes,
            },
        ));
        let secrets_key = match &config.secrets_key {
            Some(key) => key.expose().clone(),
            None => crate::secrets::decode_stored_key(
                &store
                    .server_secret("secrets_key", || {
                        crate::crypto::random_token(crate::secrets::KEY_BYTES)
                    })
                    .await?,
            )?,
        };
        let secrets = Arc::new(SecretsService::new(
            store.clone(),
            &secrets_key,
            config.secrets_cache_ttl,
        )?);
        let metrics = Arc::new(Metrics::new({
            let store = store.clone();
            move || store.commit_totals()
        }));
        let usage = Arc::new(crate::usage::Usage::new(store.clone()));
        let functions = crate::functions::FunctionService::new(
            store.clone(),
            docs.clone(),
            rules.clone(),
            secrets.clone(),
            usage.clone(),
            metrics.clone(),
            crate::functions::FunctionsConfig {
                // An HTTP function must be stopped and answered before the request
                // times out: past it the client got 503 while the JavaScript ran on.
                http_deadline: config
                    .request_timeout
                    .saturating_sub(std::time::Duration::from_millis(500))
                    .max(std::time::Duration::from_millis(100)),
                ..config.functions.clone()
            },
        )?;
        let admin = Arc::new(AdminService::new(
            store.clone(),
            registry.clone(),
            rules.clone(),
            secrets.clone(),
            functions.clone(),
            usage.clone(),
            keyring.clone(),
            limiter.clone(),
            auth_cache,
            config.admin_ttl,
            crate::admin::SessionTimes {
                idle: config.admin_session_idle,
                lifetime: config.admin_session_lifetime,
            },
        ));
        let realtime = crate::realtime::Broker::new(
            store.clone(),
            rules.clone(),
            auth.clone(),
            docs.clone(),
            registry.clone(),
            config.realtime.clone(),
        );
        Ok(AppState(Arc::new(AppInner {
            config,
            store,
            registry,
            keyring,
            auth,
            admin,
            rules,
            docs,
            secrets,
            realtime,
            functions,
            usage,
            metrics,
            limiter,
        })))
    }
}

pub struct App {
    state: AppState,
    listener: TcpListener,
    setup_token: Option<String>,
    demo: Option<crate::demo::Prepared>,
}

impl App {
    /// Opens everything and binds the listener; nothing is served until `run`.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let listen = config.listen;
        let state = AppState::open(config).await?;
        let setup_token = state.admin.prepare_setup_token().await?;
        let listener = TcpListener::bind(listen).await?;
        let demo = if state.config.demo {
            let token = state.config.demo_twilio_token.as_ref().map(|t| t.expose());
            Some(crate::demo::prepare(&state, token.map(String::as_str)).await?)
        } else {
            None
        };
        Ok(App {
            state,
            listener,
            setup_token,
            demo,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.listen)
    }

    /// The one-time token for `POST /admin/v1/setup`, when no admin exists yet.
    pub fn setup_token(&self) -> Option<&str> {
        self.setup_token.as_deref()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What setting up the SMS voting demo did, when the server runs with it.
    pub fn demo(&self) -> Option<&crate::demo::Prepared> {
        self.demo.as_ref()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let pruner = tokio::spawn({
            let limiter = state.limiter.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    limiter.prune();
                }
            }
        });
        let retention = tokio::spawn(prune_changes_forever(state.clone()));
        let realtime_tasks = state.realtime.start();
        let tenant_changes = tokio::spawn(cluster::follow_tenant_changes(state.clone()));
        let usage_flusher = tokio::spawn(state.usage.clone().flush_forever());
        let hooks = state
            .config
            .functions
            .run_hooks
            .then(|| tokio::spawn(state.functions.clone().run_forever()));
        let router = crate::http::router(state.clone());
        let broker = state.realtime.clone();
        // WebSockets would hold a graceful shutdown open: close them first, with a reason.
        let shutdown = async move {
            shutdown.await;
            broker.shutdown();
        };
        let limits = crate::http::server::ServeLimits {
            header_timeout: state.config.header_timeout,
            max_connections: state.config.max_connections,
        };
        crate::http::server::serve(self.listener, router, limits, shutdown).await;
        pruner.abort();
        retention.abort();
        tenant_changes.abort();
        for t in realtime_tasks {
            t.abort();
        }
        if let Some(h) = hooks {
            h.abort();
            // Jobs this node claimed as it committed them and has not started.
            state.functions.release_born().await;
        }
        usage_flusher.abort();
        if let Err(e) = state.usage.flush().await {
            tracing::warn!(error = %e, "final usage flush failed");
        }
        state.functions.shutdown();
        state.functions.flush_invocations().await;
        state.store.close().await;
        Ok(())
    }

    /// Runs in a background task; for tests and embedding.
    pub fn spawn(self) -> RunningApp {
        let addr = self.local_addr();
        let setup_token = self.setup_token.clone();
        let state = self.state.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            if let Err(e) = self
                .run(async move {
                    let _ = rx.await;
                })
                .await
            {
                tracing::error!(error = %e, "server stopped with an error");
            }
        });
        RunningApp {
            addr,
            setup_token,
            state,
            shutdown: Some(tx),
            handle,
        }
    }
}

pub struct RunningApp {
    pub addr: SocketAddr,
    pub setup_token: Option<String>,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl RunningApp {
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.handle).await;
    }
}

/// Applies the change-log retention to every tenant, every ten minutes.
async fn prune_changes_forever(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        if let Err(e) = prune_changes_once(&state).await {
            tracing::warn!(error = %e, "change-log retention failed");
        }
    }
}

pub async fn prune_changes_once(state: &AppState) -> anyhow::Result<u64> {
    let cutoff =
        chrono::Utc::now().timestamp_millis() - state.config.changes_retention.as_millis() as i64;
    let mut total = 0;
    for tenant in state.store.list_tenants().await? {
        let scope = crate::tenancy::Scope::system(
            Arc::new(crate::tenancy::Tenant::from(tenant)),
            crate::tenancy::SystemTask::Retention,
        );
        total += state.store.prune_changes(&scope, cutoff).await?;
    }
    Ok(total)
}
