//! Builds the application state and router, binds the listener, runs until shutdown.
//! `App::build` is what both `plinth serve` and the integration tests use.

mod backups;
mod cluster;
mod moves;

pub use crate::state::{AppInner, AppState};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;

pub struct App {
    state: AppState,
    listener: TcpListener,
    setup_token: Option<String>,
    demo: Option<crate::demo::Prepared>,
    tls: Option<Arc<crate::http::tls::CertStore>>,
    /// The certificate obtained by ACME, when configured (never with `tls`).
    acme: Option<Arc<crate::acme::Acme>>,
    /// On SQLite, the data directory's shared lock, released when the server ends.
    _dir_lock: Option<crate::store::DirLock>,
}

impl App {
    /// Opens everything and binds the listener; nothing is served until `run`.
    pub async fn build(mut config: Config) -> anyhow::Result<App> {
        let listen = config.listen;
        // The derived public URL (`Config::new` makes it http) follows the TLS setting.
        if config.serves_tls() && !config.public_url_configured {
            config.public_url = config.derived_public_url();
        }
        // First: bad certificate files end the start before anything is opened.
        let tls = match &config.tls {
            Some(files) => Some(crate::http::tls::CertStore::load(files)?),
            None => None,
        };
        // Likewise an ACME directory that cannot be made or a CA root that cannot be read.
        let acme = match &config.acme {
            Some(settings) => Some(crate::acme::Acme::open(settings.clone())?),
            None => None,
        };
        let state = AppState::open(config).await?;
        // Held while serving: a local `tenant move` on these SQLite files waits for none.
        let dir_lock = state.store.lock_data_dir(false)?;
        let setup_token = state.admin.prepare_setup_token().await?;
        let listener = TcpListener::bind(listen).await?;
        let demo = if state.config.demo {
            let token = state.config.demo_twilio_token.as_ref().map(|t| t.expose());
            Some(
                crate::demo::prepare(
                    crate::demo::DemoServices {
                        admin: &state.admin,
                        secrets: &state.secrets,
                        functions: &state.functions,
                        docs: &state.docs,
                    },
                    token.map(String::as_str),
                )
                .await?,
            )
        } else {
            None
        };
        Ok(App {
            state,
            listener,
            setup_token,
            demo,
            tls,
            acme,
            _dir_lock: dir_lock,
        })
    }

    /// The certificate files being served, when serving them (`reload` swaps them).
    pub fn tls(&self) -> Option<&Arc<crate::http::tls::CertStore>> {
        self.tls.as_ref()
    }

    /// The ACME client, when the certificate comes from ACME.
    pub fn acme(&self) -> Option<&Arc<crate::acme::Acme>> {
        self.acme.as_ref()
    }

    /// Whether the server speaks TLS (certificate files or ACME).
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some() || self.acme.is_some()
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
        let tls = match (&self.tls, &self.acme) {
            (Some(files), _) => Some(files.acceptor()?),
            (None, Some(acme)) => Some(crate::http::tls::acceptor(
                acme.resolver(),
                &[crate::acme::ACME_TLS_ALPN],
            )?),
            (None, None) => None,
        };
        // Orders (and renews) once the listener is bound: the CA's validation connects to it.
        let acme = self.acme.clone().map(|a| tokio::spawn(a.run_forever()));
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
        let idle_release = tokio::spawn(release_idle_forever(state.clone()));
        let retention = tokio::spawn(prune_changes_forever(state.clone()));
        let realtime_tasks = state.realtime.start();
        let tenant_changes = tokio::spawn(cluster::follow_tenant_changes(state.clone()));
        let usage_flusher = tokio::spawn(state.usage.clone().flush_forever());
        let move_watch = tokio::spawn(moves::watch_forever(state.clone()));
        let backups = state
            .config
            .backups
            .clone()
            .map(|s| tokio::spawn(backups::run_forever(state.clone(), s)));
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
        crate::http::server::serve(self.listener, router, limits, tls, shutdown).await;
        pruner.abort();
        if let Some(a) = acme {
            a.abort();
        }
        idle_release.abort();
        retention.abort();
        tenant_changes.abort();
        move_watch.abort();
        if let Some(b) = backups {
            // A backup cut short removes its partial folder (pg_dump is killed with it).
            b.abort();
        }
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

/// Every half of the idle time, drops what this node holds for tenants that went idle
/// (`AppState::release_idle_tenants`).
async fn release_idle_forever(state: AppState) {
    let every = (state.config.sqlite.idle_close / 2).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.release_idle_tenants();
    }
}

/// Applies the change-log retention every ten minutes to the tenants written since the
/// previous pass. A tenant not written since has a log that did not grow, and reading it
/// would open its file again (SQLite) and undo its idle close: its changes past the
/// retention go at the first pass after its next write. (PostgreSQL: every tenant.)
async fn prune_changes_forever(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    let mut since = crate::store::now_ms();
    loop {
        tick.tick().await;
        let started = crate::store::now_ms();
        match prune_changes_written_since(&state, Some(since)).await {
            Ok(_) => since = started,
            Err(e) => tracing::warn!(error = %e, "change-log retention failed"),
        }
    }
}

/// One retention pass over every tenant.
pub async fn prune_changes_once(state: &AppState) -> anyhow::Result<u64> {
    prune_changes_written_since(state, None).await
}

/// One retention pass over the tenants written since `since_ms` (see
/// `Store::tenants_written_since`), or over every tenant; answers the changes pruned.
pub async fn prune_changes_written_since(
    state: &AppState,
    since_ms: Option<i64>,
) -> anyhow::Result<u64> {
    let cutoff =
        chrono::Utc::now().timestamp_millis() - state.config.changes_retention.as_millis() as i64;
    let written = match since_ms {
        Some(t) => state.store.tenants_written_since(t).await,
        None => None,
    };
    let mut total = 0;
    for tenant in state.store.list_tenants().await? {
        if written.as_ref().is_some_and(|w| !w.contains(&tenant.id)) {
            continue;
        }
        let scope = crate::tenancy::Scope::system(
            Arc::new(crate::tenancy::Tenant::from(tenant)),
            crate::tenancy::SystemTask::Retention,
        );
        total += state.store.prune_changes(&scope, cutoff).await?;
    }
    Ok(total)
}
