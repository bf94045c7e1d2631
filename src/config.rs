//! Settings, from command-line flags and `PLINTH_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::store::{Location, SqliteTuning};

mod acme;
use acme::acme_settings;
pub use acme::{AcmeSettings, LETS_ENCRYPT};

/// A value that must never reach a log: its Debug output is redacted.
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where data lives, and the key its secrets are sealed with; shared by every command that
/// touches it.
#[derive(Args, Clone, Debug)]
pub struct StorageArgs {
    /// Directory of the embedded SQLite databases.
    #[arg(
        long,
        env = "PLINTH_DATA_DIR",
        default_value = "./plinth-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Put the whole server on PostgreSQL instead (postgres://user:pass@host/db).
    #[arg(
        long,
        env = "PLINTH_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Key that seals tenant secrets (base64 of exactly 32 bytes). Generated and stored
    /// in the database when absent. The server and the CLI must be given the same key.
    #[arg(
        long,
        env = "PLINTH_SECRETS_KEY",
        global = true,
        hide_env_values = true,
        value_parser = secret_string
    )]
    pub secrets_key: Option<Secret<String>>,
    /// Extra PostgreSQL clusters tenants may be placed on, as NAME=URL (repeat the flag,
    /// or separate them with commas in PLINTH_CLUSTERS). The server's own storage is the
    /// location `default`. Every node and the CLI must be given the same list.
    #[arg(
        long = "cluster",
        env = "PLINTH_CLUSTERS",
        value_name = "NAME=URL",
        value_delimiter = ',',
        global = true,
        hide_env_values = true
    )]
    pub clusters: Vec<String>,
    /// Where a tenant created without a location goes: `default` (the server's own
    /// storage) or `least-loaded` (the location, `default` or a cluster, holding the
    /// fewest tenants). The same on every node and the CLI.
    #[arg(
        long,
        env = "PLINTH_PLACEMENT",
        default_value = "default",
        value_parser = ["default", "least-loaded"],
        global = true
    )]
    pub placement: String,
    /// How long the mover of a `tenant move` this process runs may stay silent (no
    /// heartbeat) before another process takes it for dead and recovers its move, in
    /// milliseconds. Recorded with each move.
    #[arg(
        long,
        env = "PLINTH_MOVE_LEASE_MS",
        default_value_t = 15_000,
        value_parser = clap::value_parser!(u64).range(300..=600_000),
        global = true
    )]
    pub move_lease_ms: u64,
}

/// Wraps a flag's value as it is parsed, so not even `Debug` of the arguments shows it.
fn secret_string(value: &str) -> Result<Secret<String>, std::convert::Infallible> {
    Ok(Secret::new(value.to_string()))
}

impl StorageArgs {
    pub fn location(&self) -> Location {
        match &self.database_url {
            Some(url) if !url.is_empty() => Location::Postgres(url.clone()),
            _ => Location::SqliteDir(self.data_dir.clone()),
        }
    }

    /// The configured extra clusters (name, URL), checked.
    pub fn clusters(&self) -> anyhow::Result<Vec<(String, String)>> {
        crate::store::parse_clusters(&self.clusters)
            .map_err(|e| anyhow::anyhow!("PLINTH_CLUSTERS: {e}"))
    }

    /// The placement policy of new tenants.
    pub fn placement(&self) -> anyhow::Result<crate::store::PlacementPolicy> {
        crate::store::PlacementPolicy::parse(&self.placement)
            .map_err(|e| anyhow::anyhow!("PLINTH_PLACEMENT: {e}"))
    }

    /// The configured secrets key, decoded and checked; None when not configured.
    pub fn secrets_key(&self) -> anyhow::Result<Option<Secret<Vec<u8>>>> {
        use base64::Engine;
        let Some(s) = self
            .secrets_key
            .as_ref()
            .map(|s| s.expose().as_str())
            .filter(|s| !s.trim().is_empty())
        else {
            return Ok(None);
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| anyhow::anyhow!("PLINTH_SECRETS_KEY is not base64: {e}"))?;
        anyhow::ensure!(
            key.len() == crate::secrets::KEY_BYTES,
            "PLINTH_SECRETS_KEY must be {} bytes (e.g. `openssl rand -base64 32`), not {}",
            crate::secrets::KEY_BYTES,
            key.len()
        );
        Ok(Some(Secret::new(key)))
    }
}

/// Options of `plinth serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PLINTH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base URL clients reach this server at: emailed links, the scheme of the URL
    /// functions see, the OpenAPI document's server. Default: `http://` (`https://` with
    /// TLS) and the listen address.
    #[arg(long, env = "PLINTH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// PEM file of the TLS certificate chain, leaf first. With --tls-key the server
    /// speaks HTTPS (HTTP/1.1 and HTTP/2) and WSS instead of plain HTTP; both files are
    /// read again on SIGHUP.
    #[arg(long, env = "PLINTH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the TLS certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "PLINTH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Obtain and renew the TLS certificate for this domain from an ACME CA (Let's
    /// Encrypt by default), answering its TLS-ALPN-01 challenge on the listen port.
    /// Repeat the flag (or comma-separate the variable) for more names on one
    /// certificate. Not with --tls-cert.
    #[arg(
        long = "acme-domain",
        env = "PLINTH_ACME_DOMAIN",
        value_delimiter = ','
    )]
    pub acme_domains: Vec<String>,
    /// Contact address given to the ACME CA with the account (optional).
    #[arg(long, env = "PLINTH_ACME_EMAIL")]
    pub acme_email: Option<String>,
    /// Directory keeping the ACME account key and the certificate (files 0600), reused
    /// across restarts: put it on a volume.
    #[arg(long, env = "PLINTH_ACME_DIR")]
    pub acme_dir: Option<PathBuf>,
    /// The ACME CA's directory URL (Let's Encrypt staging:
    /// https://acme-staging-v02.api.letsencrypt.org/directory).
    #[arg(long, env = "PLINTH_ACME_DIRECTORY", default_value = LETS_ENCRYPT)]
    pub acme_directory: String,
    /// PEM file of an extra root certificate trusted for the ACME CA's own HTTPS (a
    /// private CA, a test server).
    #[arg(long, env = "PLINTH_ACME_CA_ROOT")]
    pub acme_ca_root: Option<PathBuf>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "PLINTH_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Seconds a request may take before it is answered 503.
    #[arg(long, env = "PLINTH_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Seconds a client has to send a request's headers, and that an idle keep-alive
    /// connection is kept.
    #[arg(long, env = "PLINTH_HEADER_TIMEOUT", default_value_t = 20)]
    pub header_timeout_secs: u64,
    /// Most HTTP connections served at once (WebSockets count until upgraded; their own
    /// limits are per IP and per tenant). Past it, new connections wait in the backlog.
    #[arg(long, env = "PLINTH_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,
    /// SMTP server for account emails, e.g. smtp://localhost:2525 or smtps://user:pass@host.
    #[arg(long, env = "PLINTH_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of account emails.
    #[arg(
        long,
        env = "PLINTH_SMTP_FROM",
        default_value = "Plinth <no-reply@localhost>"
    )]
    pub smtp_from: String,
    /// JWT signing secret (base64, at least 32 bytes). Generated and stored when absent.
    #[arg(long, env = "PLINTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Lifetime of end-user access tokens, in seconds.
    #[arg(long, env = "PLINTH_ACCESS_TTL", default_value_t = 900)]
    pub access_ttl_secs: u64,
    /// Lifetime of an unused session (refresh token), in seconds.
    #[arg(long, env = "PLINTH_REFRESH_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_ttl_secs: u64,
    /// Lifetime of admin tokens, in seconds.
    #[arg(long, env = "PLINTH_ADMIN_TTL", default_value_t = 3600)]
    pub admin_ttl_secs: u64,
    /// Console sessions (the admin cookie) end after this many seconds without a request.
    #[arg(long, env = "PLINTH_ADMIN_SESSION_IDLE", default_value_t = 30 * 60)]
    pub admin_session_idle_secs: u64,
    /// Console sessions end this many seconds after sign-in, however busy.
    #[arg(long, env = "PLINTH_ADMIN_SESSION_LIFETIME", default_value_t = 12 * 3600)]
    pub admin_session_lifetime_secs: u64,
    /// Attempts allowed per client IP per minute at the routes that check or hash a
    /// password (logins, sign-ups, admin setup, password change and reset).
    #[arg(long, env = "PLINTH_LOGIN_PER_IP", default_value_t = 30)]
    pub login_per_ip_per_minute: u32,
    /// Failed logins in a row allowed per account from one client IP (and failed
    /// password changes per session) before each further attempt must wait: 1 s, then
    /// twice as long after each failure, up to 15 minutes.
    #[arg(long, env = "PLINTH_LOGIN_FREE_FAILURES", default_value_t = 5)]
    pub login_free_failures: u32,
    /// Failed logins allowed per account per hour from all addresses together (a safety
    /// net against guessing from many addresses; an address the account signed in from
    /// in the last 30 days is let through).
    #[arg(long, env = "PLINTH_LOGIN_FAILURES_PER_ACCOUNT", default_value_t = 100)]
    pub login_failures_per_account_per_hour: u32,
    /// Take the client IP from X-Forwarded-For (only behind a trusted proxy).
    #[arg(long, env = "PLINTH_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
    /// Connections in the PostgreSQL pool.
    #[arg(long, env = "PLINTH_PG_MAX_CONNECTIONS", default_value_t = 20)]
    pub pg_max_connections: u32,
    /// SQLite's memory budget for the whole node, in MiB (page caches of every tenant
    /// file's connections, schemas, statements): past it, SQLite recycles and frees the
    /// least recently used cached pages of any connection. 0: no budget (each connection
    /// keeps SQLite's default 2 MB cache). docs/deploy.md has the sizing.
    #[arg(long, env = "PLINTH_SQLITE_CACHE_MIB", default_value_t = SqliteTuning::DEFAULT_CACHE_MIB)]
    pub sqlite_cache_mib: u32,
    /// The most one SQLite connection caches, in MiB, within the node's budget; 0: up to
    /// the whole budget.
    #[arg(long, env = "PLINTH_SQLITE_CONN_CACHE_MIB", default_value_t = SqliteTuning::DEFAULT_CONN_CACHE_MIB)]
    pub sqlite_conn_cache_mib: u32,
    /// MiB of each SQLite file read through a memory map (the operating system's page
    /// cache, shared and reclaimable, not SQLite's heap); 0: off.
    #[arg(long, env = "PLINTH_SQLITE_MMAP_MIB", default_value_t = SqliteTuning::DEFAULT_MMAP_MIB)]
    pub sqlite_mmap_mib: u32,
    /// Seconds a tenant's SQLite file may go unused before its connections are closed.
    #[arg(long, env = "PLINTH_SQLITE_IDLE", default_value_t = SqliteTuning::DEFAULT_IDLE_SECS)]
    pub sqlite_idle_secs: u32,
    /// Largest document (its data as JSON), in bytes.
    #[arg(long, env = "PLINTH_DOC_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub doc_max_bytes: usize,
    /// Worker threads running JavaScript functions (default: cores + 1, at least 2; a tenant
    /// may use all but one).
    #[arg(long, env = "PLINTH_FUNCTION_WORKERS")]
    pub function_workers: Option<usize>,
    /// Run after-hook jobs on this node (false: serve requests only).
    #[arg(long, env = "PLINTH_RUN_HOOKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub run_hooks: bool,
    /// Seconds a claimed after-hook job stays its node's before another node (or this one,
    /// restarted) may run it (default: twice the longest function time limit plus 10 s).
    #[arg(long, env = "PLINTH_HOOK_LEASE")]
    pub hook_lease_secs: Option<u64>,
    /// Memory limit of a function invocation, in MiB (a bundle may set less per function).
    #[arg(long, env = "PLINTH_FUNCTION_MEMORY_MB", default_value_t = 64)]
    pub function_memory_mb: usize,
    /// How long the change log keeps changes (realtime resume window), in seconds.
    #[arg(long, env = "PLINTH_CHANGES_RETENTION", default_value_t = 7 * 24 * 3600)]
    pub changes_retention_secs: u64,
    /// Log format.
    #[arg(long, env = "PLINTH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Set up the SMS voting demo (tenant `demo`, its functions, rules, poll and tally)
    /// and serve its page at /demo/.
    #[arg(long, env = "PLINTH_DEMO", default_value_t = false)]
    pub demo: bool,
    /// With --demo: the demo tenant's TWILIO_AUTH_TOKEN secret. Unset: a secret already
    /// stored is kept, else the well-known `plinth-demo-twilio-token` (local demos only).
    #[arg(
        long,
        env = "PLINTH_DEMO_TWILIO_TOKEN",
        hide_env_values = true,
        value_parser = secret_string
    )]
    pub demo_twilio_token: Option<Secret<String>>,
    /// Take backups into this directory on a schedule (`plinth backup`'s, one folder per
    /// backup); on a cluster one node takes them.
    #[arg(long, env = "PLINTH_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Time between scheduled backups: a number and s, m, h or d (e.g. 30m, 1h, 1d).
    #[arg(long, env = "PLINTH_BACKUP_EVERY", default_value = "1h",
          value_parser = crate::backup::parse_interval)]
    pub backup_every: Duration,
    /// Scheduled backups kept (the newest); older ones are deleted only after a new one
    /// completed.
    #[arg(long, env = "PLINTH_BACKUP_KEEP", default_value_t = 24)]
    pub backup_keep: usize,
    /// pg_dump for scheduled backups on PostgreSQL (default: the one on PATH).
    #[arg(long, env = "PLINTH_PG_DUMP")]
    pub pg_dump: Option<PathBuf>,
}

/// The certificate chain and key files of `serve --tls-cert --tls-key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything the server needs, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub location: Location,
    pub public_url: String,
    /// Whether `public_url` was configured (else it is derived from the listen address,
    /// which is no use to a client when that is a wildcard).
    pub public_url_configured: bool,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Serve HTTPS with a certificate obtained by ACME (never with `tls`).
    pub acme: Option<AcmeSettings>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub smtp_url: Option<Secret<String>>,
    pub smtp_from: String,
    pub jwt_secret: Option<Secret<Vec<u8>>>,
    /// The 32-byte key that seals tenant secrets; None: generated and stored on first start.
    pub secrets_key: Option<Secret<Vec<u8>>>,
    /// How long a tenant's decrypted secrets are trusted without reading them again
    /// (writes through this node apply at once).
    pub secrets_cache_ttl: Duration,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub admin_ttl: Duration,
    /// Console sessions: idle timeout and absolute lifetime.
    pub admin_session_idle: Duration,
    pub admin_session_lifetime: Duration,
    pub verify_ttl: Duration,
    pub reset_ttl: Duration,
    /// How long an admin invitation's link works.
    pub admin_invite_ttl: Duration,
    pub login_per_ip_per_minute: u32,
    pub login_free_failures: u32,
    pub login_failures_per_account_per_hour: u32,
    pub trust_forwarded_for: bool,
    pub pg_max_connections: u32,
    /// SQLite's page caches, memory maps and node budget (SQLite backend only).
    pub sqlite: SqliteTuning,
    pub tenant_cache_ttl: Duration,
    pub doc_max_bytes: usize,
    pub changes_retention: Duration,
    /// How long a positive session or service-key check is trusted without asking the
    /// database again (revocations through this node apply at once).
    pub auth_cache_ttl: Duration,
    pub realtime: crate::realtime::RealtimeConfig,
    pub functions: crate::functions::FunctionsConfig,
    /// Print the setup token on stdout (the server binary) or keep it quiet (embedded).
    pub print_setup_token: bool,
    /// Set up the SMS voting demo on start and serve its page at /demo/ (`serve --demo`).
    pub demo: bool,
    /// The demo tenant's Twilio token, when configured.
    pub demo_twilio_token: Option<Secret<String>>,
    /// Scheduled backups (`serve --backup-dir`), when configured.
    pub backups: Option<crate::backup::Schedule>,
    /// Extra PostgreSQL clusters tenants may be placed on (name, URL).
    pub clusters: Vec<(String, String)>,
    /// Where tenants created without a location go.
    pub placement: crate::store::PlacementPolicy,
    /// The lease of the tenant moves this process runs.
    pub move_lease: Duration,
}

impl Config {
    /// Defaults for a server on `location` listening on `listen`; tests start from this.
    pub fn new(location: Location, listen: SocketAddr) -> Config {
        Config {
            listen,
            location,
            public_url: derived_public_url(listen, false),
            public_url_configured: false,
            tls: None,
            acme: None,
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(20),
            max_connections: 16_384,
            smtp_url: None,
            smtp_from: "Plinth <no-reply@localhost>".into(),
            jwt_secret: None,
            secrets_key: None,
            secrets_cache_ttl: Duration::from_secs(1),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            admin_ttl: Duration::from_secs(3600),
            admin_session_idle: Duration::from_secs(30 * 60),
            admin_session_lifetime: Duration::from_secs(12 * 3600),
            verify_ttl: Duration::from_secs(24 * 3600),
            reset_ttl: Duration::from_secs(3600),
            admin_invite_ttl: Duration::from_secs(72 * 3600),
            login_per_ip_per_minute: 30,
            login_free_failures: 5,
            login_failures_per_account_per_hour: 100,
            trust_forwarded_for: false,
            pg_max_connections: 20,
            sqlite: SqliteTuning::default(),
            tenant_cache_ttl: Duration::from_secs(2),
            doc_max_bytes: 1024 * 1024,
            changes_retention: Duration::from_secs(7 * 24 * 3600),
            auth_cache_ttl: Duration::from_secs(1),
            realtime: crate::realtime::RealtimeConfig::default(),
            functions: crate::functions::FunctionsConfig::default(),
            clusters: Vec::new(),
            placement: crate::store::PlacementPolicy::Default,
            move_lease: Duration::from_secs(15),
            print_setup_token: false,
            demo: false,
            demo_twilio_token: None,
            backups: None,
        }
    }

    pub fn from_args(storage: &StorageArgs, serve: &ServeArgs) -> anyhow::Result<Config> {
        use base64::Engine;
        let jwt_secret = match &serve.jwt_secret {
            Some(s) => Some(Secret::new(
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|e| anyhow::anyhow!("PLINTH_JWT_SECRET is not base64: {e}"))?,
            )),
            None => None,
        };
        let mut c = Config::new(storage.location(), serve.listen);
        c.clusters = storage.clusters()?;
        c.placement = storage.placement()?;
        c.move_lease = Duration::from_millis(storage.move_lease_ms);
        c.tls = tls_files(serve)?;
        c.acme = acme_settings(serve)?;
        anyhow::ensure!(
            c.tls.is_none() || c.acme.is_none(),
            "--acme-domain (PLINTH_ACME_DOMAIN) and --tls-cert (PLINTH_TLS_CERT) are \
             exclusive: either Plinth obtains its certificate by ACME, or it serves the files"
        );
        match serve.public_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => {
                c.public_url = url.to_string();
                c.public_url_configured = true;
            }
            _ => c.public_url = c.derived_public_url(),
        }
        c.body_limit = serve.body_limit;
        c.request_timeout = Duration::from_secs(serve.request_timeout_secs.max(1));
        c.header_timeout = Duration::from_secs(serve.header_timeout_secs.max(1));
        c.max_connections = serve.max_connections.max(1);
        c.smtp_url = serve
            .smtp_url
            .clone()
            .filter(|u| !u.is_empty())
            .map(Secret::new);
        c.smtp_from = serve.smtp_from.clone();
        c.jwt_secret = jwt_secret;
        c.secrets_key = storage.secrets_key()?;
        c.access_ttl = Duration::from_secs(serve.access_ttl_secs.max(1));
        c.refresh_ttl = Duration::from_secs(serve.refresh_ttl_secs.max(1));
        c.admin_ttl = Duration::from_secs(serve.admin_ttl_secs.max(1));
        c.admin_session_idle = Duration::from_secs(serve.admin_session_idle_secs.max(1));
        c.admin_session_lifetime = Duration::from_secs(serve.admin_session_lifetime_secs.max(1));
        c.login_per_ip_per_minute = serve.login_per_ip_per_minute;
        c.login_free_failures = serve.login_free_failures;
        c.login_failures_per_account_per_hour = serve.login_failures_per_account_per_hour;
        c.trust_forwarded_for = serve.trust_forwarded_for;
        c.pg_max_connections = serve.pg_max_connections;
        c.sqlite = SqliteTuning {
            cache_budget: u64::from(serve.sqlite_cache_mib) << 20,
            conn_cache: u64::from(serve.sqlite_conn_cache_mib) << 20,
            mmap: u64::from(serve.sqlite_mmap_mib) << 20,
            idle_close: Duration::from_secs(u64::from(serve.sqlite_idle_secs.max(1))),
        };
        c.doc_max_bytes = serve.doc_max_bytes;
        c.changes_retention = Duration::from_secs(serve.changes_retention_secs);
        if let Some(w) = serve.function_workers {
            c.functions.workers = w.max(1);
        }
        c.functions.run_hooks = serve.run_hooks;
        if let Some(s) = serve.hook_lease_secs {
            c.functions.hook_lease = Some(Duration::from_secs(s.max(1)));
        }
        c.functions.memory_bytes = serve.function_memory_mb.clamp(1, 4096) * 1024 * 1024;
        c.print_setup_token = true;
        c.demo = serve.demo;
        c.demo_twilio_token = serve.demo_twilio_token.clone();
        c.backups = serve.backup_dir.clone().map(|dir| crate::backup::Schedule {
            dir,
            every: serve.backup_every,
            keep: serve.backup_keep.max(1),
            pg_dump: serve.pg_dump.clone(),
        });
        Ok(c)
    }
}

/// The public URL when none is configured: the listen address, https when serving TLS.
pub fn derived_public_url(listen: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{listen}")
}

impl Config {
    /// The public URL when none is configured: with ACME the certificate's first name
    /// (clients reach the server by it: the certificate is for no other), else the
    /// listen address.
    pub fn derived_public_url(&self) -> String {
        match self.acme.as_ref().and_then(|a| a.domains.first()) {
            Some(domain) => match self.listen.port() {
                443 => format!("https://{domain}"),
                port => format!("https://{domain}:{port}"),
            },
            None => derived_public_url(self.listen, self.serves_tls()),
        }
    }

    /// Whether the server speaks TLS (certificate files or ACME).
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some() || self.acme.is_some()
    }
}

/// The TLS files, when both are given (an empty value counts as not given, so a
/// compose file can pass `PLINTH_TLS_CERT=` through unset).
fn tls_files(serve: &ServeArgs) -> anyhow::Result<Option<TlsFiles>> {
    let given = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    match (given(&serve.tls_cert), given(&serve.tls_key)) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => {
            anyhow::bail!("--tls-cert (PLINTH_TLS_CERT) needs --tls-key (PLINTH_TLS_KEY) too")
        }
        (None, Some(_)) => {
            anyhow::bail!("--tls-key (PLINTH_TLS_KEY) needs --tls-cert (PLINTH_TLS_CERT) too")
        }
    }
}

/// A warning for a wildcard listen address with no public URL configured: the derived
/// one (`http://0.0.0.0:8080`) reaches nobody, yet it goes into emailed links.
pub fn wildcard_warning(config: &Config) -> Option<String> {
    // With ACME on port 443 the derived URL is the certificate's name: right.
    let named = config.acme.is_some() && config.listen.port() == 443;
    (config.listen.ip().is_unspecified() && !config.public_url_configured && !named).then(|| {
        format!(
            "listening on the wildcard address {} with no public URL: emailed links will \
             point at {}; set --public-url (PLINTH_PUBLIC_URL) to the address clients use",
            config.listen, config.public_url
        )
    })
}
