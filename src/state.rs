//! The shared state of every handler and command: the wired services. `AppState::open`
//! opens the store and builds them; `app` serves them, `http` and `demo` use them, and
//! the CLI opens them directly for local administration. A module of its own so that
//! what uses the state does not depend on what serves it.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

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
use crate::tenant_registry::Registry;

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
    pub(crate) limiter: Arc<LoginLimiter>,
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
        let store = Store::open(&config.location, config.pg_max_connections, config.sqlite).await?;
        store.set_clusters(
            config.clusters.clone(),
            config.pg_max_connections,
            config.placement,
        );
        store.set_move_lease(config.move_lease);
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
        let auth_cache = Arc::new(crate::auth::cache::AuthCache::new(
            config.auth_cache_ttl,
            store.clone(),
        ));
        let mailer = Arc::new(Mailer::new(
            config.smtp_url.as_ref().map(|s| s.expose().as_str()),
            &config.smtp_from,
        )?);
        let auth = auth_service(&config, &store, &keyring, &limiter, &auth_cache, &mailer);
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
        let secrets = secrets_service(&config, &store).await?;
        let metrics = metrics(&store, &rules, &registry);
        let usage = Arc::new(crate::usage::Usage::new(store.clone()));
        let functions = crate::functions::FunctionService::new(
            store.clone(),
            docs.clone(),
            rules.clone(),
            secrets.clone(),
            usage.clone(),
            metrics.clone(),
            functions_config(&config),
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
            crate::admin::InviteMail {
                mailer,
                public_url: config.public_url.clone(),
                ttl: config.admin_invite_ttl,
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
        // The lower layers call back into the upper ones at five points, all wired
        // here: the document service runs before hooks, a group commit plans
        // after-hook jobs and wakes the realtime feeds, the usage meter samples the
        // open realtime connections, and authentication asks the admin layer whether an
        // admin's read token still stands.
        docs.set_before_write(functions.before_write_hooks());
        auth.set_reader_check(admin.clone());
        store.set_job_planner(functions.job_planner());
        store.set_commit_listener(realtime.commit_listener());
        usage.watch_open_sockets({
            let broker = realtime.clone();
            move || broker.open_sockets_per_tenant()
        });
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

impl AppState {
    /// Drops what this node holds for the tenants unused for the idle time
    /// (`PLINTH_SQLITE_IDLE`): their compiled rules and deploys, their slug lookups, the
    /// key and session checks past their TTL, and the write queues of tenants not writing. The store closes idle tenant files itself, on the
    /// same time (`store::tenant_files` has the policy). Run by `app` every half of it.
    pub fn release_idle_tenants(&self) {
        let idle = self.config.sqlite.idle_close;
        self.rules.release_idle(idle);
        self.registry.release_idle(idle);
        self.functions.release_idle(idle);
        self.auth.release_stale();
        self.store.release_idle_commit_queues();
    }
}

/// The metrics registry, with what it reads at each scrape: the store's commit counters,
/// SQLite's memory and the per-tenant state this node holds.
fn metrics(store: &Store, rules: &Arc<RulesRegistry>, registry: &Arc<Registry>) -> Arc<Metrics> {
    Arc::new(Metrics::new(
        {
            let store = store.clone();
            move || store.commit_totals()
        },
        {
            let store = store.clone();
            move || {
                let m = crate::store::sqlite_memory();
                crate::metrics::SqliteHeap {
                    used: m.used,
                    highwater: m.highwater,
                    budget: m.budget,
                    connections: i64::try_from(store.sqlite_connections()).unwrap_or(i64::MAX),
                }
            }
        },
        {
            let (store, rules, registry) = (store.clone(), rules.clone(), registry.clone());
            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            move || crate::metrics::TenantState {
                files: count(store.sqlite_tenant_files()),
                rules: count(rules.cached()),
                lookups: count(registry.cached()),
            }
        },
    ))
}

fn auth_service(
    config: &Config,
    store: &Store,
    keyring: &Arc<Keyring>,
    limiter: &Arc<LoginLimiter>,
    auth_cache: &Arc<crate::auth::cache::AuthCache>,
    mailer: &Arc<Mailer>,
) -> Arc<AuthService> {
    Arc::new(AuthService::new(
        store.clone(),
        keyring.clone(),
        mailer.clone(),
        limiter.clone(),
        auth_cache.clone(),
        AuthSettings {
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            verify_ttl: config.verify_ttl,
            reset_ttl: config.reset_ttl,
            public_url: config.public_url.clone(),
        },
    ))
}

/// The key that seals tenant secrets: from the configuration, or made once and kept in
/// the store.
async fn secrets_service(config: &Config, store: &Store) -> anyhow::Result<Arc<SecretsService>> {
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
    Ok(Arc::new(SecretsService::new(
        store.clone(),
        &secrets_key,
        config.secrets_cache_ttl,
    )?))
}

fn functions_config(config: &Config) -> crate::functions::FunctionsConfig {
    crate::functions::FunctionsConfig {
        // An HTTP function must be stopped and answered before the request times out:
        // past it the client got 503 while the JavaScript ran on.
        http_deadline: config
            .request_timeout
            .saturating_sub(std::time::Duration::from_millis(500))
            .max(std::time::Duration::from_millis(100)),
        ..config.functions.clone()
    }
}
