//! Prometheus metrics: requests by route, method, status and tenant, and a latency
//! histogram by route. Routes are the matched templates (`/v1/t/{tenant}/auth/login`),
//! and the tenant label is set only once a tenant was resolved, so label sets stay bounded.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvocationLabels {
    pub tenant: String,
    /// http | before | after
    pub trigger: String,
    /// ok | error | timeout | out_of_memory | internal_error
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    pub trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// ok | failed
    pub outcome: String,
}

/// The scheduled backups' outcomes (alert on `failed`, or on a last success too long ago).
#[derive(Default)]
struct BackupMetrics {
    runs: Family<OutcomeLabels, Counter>,
    last_success: Gauge,
    last_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_bytes: Gauge,
}

pub struct Metrics {
    registry: Registry,
    backups: BackupMetrics,
    stale_moves: Gauge,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    invocations: Family<InvocationLabels, Counter>,
    invocation_seconds: Family<TriggerLabels, Histogram, fn() -> Histogram>,
}

/// Totals that another part keeps itself (the store's group-commit pipeline), read at
/// each scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommitTotals {
    pub groups: u64,
    pub units: u64,
    pub writes: u64,
    pub busy_seconds: f64,
}

type ReadCommitTotals = Box<dyn Fn() -> CommitTotals + Send + Sync>;

struct CommitCollector(ReadCommitTotals);

impl std::fmt::Debug for CommitCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitCollector")
    }
}

impl Collector for CommitCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = (self.0)();
        let whole = [
            (
                "commit_groups",
                "Group commits of document writes",
                t.groups,
            ),
            (
                "commit_units",
                "Write requests (single writes or batches) committed in groups",
                t.units,
            ),
            (
                "commit_writes",
                "Document writes committed in groups",
                t.writes,
            ),
        ];
        for (name, help, value) in whole {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let busy = ConstCounter::new(t.busy_seconds);
        busy.encode(encoder.encode_descriptor(
            "commit_seconds",
            "Time spent committing groups (all tenants; per second of wall time, how busy \
             the commit pipelines are)",
            None,
            busy.metric_type(),
        )?)
    }
}

/// SQLite's heap in this process, from SQLite's own counters, read at each scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct SqliteHeap {
    pub used: i64,
    pub highwater: i64,
    pub budget: i64,
    /// rusqlite connections open to tenant files (this node's store).
    pub connections: i64,
}

type ReadSqliteHeap = Box<dyn Fn() -> SqliteHeap + Send + Sync>;

struct SqliteCollector(ReadSqliteHeap);

impl std::fmt::Debug for SqliteCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteCollector")
    }
}

impl Collector for SqliteCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let h = (self.0)();
        let gauges = [
            (
                "sqlite_memory_bytes",
                "Memory SQLite has allocated (page caches, schemas, statements of every \
                 connection; memory-mapped file pages are the kernel's and not counted)",
                h.used,
            ),
            (
                "sqlite_memory_highwater_bytes",
                "The most memory SQLite has held at once since the process started",
                h.highwater,
            ),
            (
                "sqlite_memory_budget_bytes",
                "SQLite's soft heap limit (PLINTH_SQLITE_CACHE_MIB; 0: none)",
                h.budget,
            ),
            (
                "sqlite_connections",
                "Connections open to tenant SQLite files on the hot paths: a writer and a few \
                 readers for each tenant used within PLINTH_SQLITE_IDLE, none for an idle one",
                h.connections,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// What this node holds per tenant, read at each scrape: each count follows the tenants
/// used within the idle time (`PLINTH_SQLITE_IDLE`), not all the tenants ever served.
#[derive(Clone, Copy, Debug, Default)]
pub struct TenantState {
    /// Tenant SQLite files open (0 on PostgreSQL).
    pub files: i64,
    /// Compiled rule sets.
    pub rules: i64,
    /// Tenant lookups by slug (unknown slugs included).
    pub lookups: i64,
}

type ReadTenantState = Box<dyn Fn() -> TenantState + Send + Sync>;

struct TenantCollector(ReadTenantState);

impl std::fmt::Debug for TenantCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantCollector")
    }
}

impl Collector for TenantCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = (self.0)();
        let mut family = encoder.encode_descriptor(
            "tenants_cached",
            "Tenants whose state this node holds, by kind: open SQLite files, compiled rule \
             sets, slug lookups; each is dropped once the tenant is unused for \
             PLINTH_SQLITE_IDLE",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (kind, value) in [
            ("files", t.files),
            ("rules", t.rules),
            ("lookups", t.lookups),
        ] {
            ConstGauge::new(value).encode(family.encode_family(&[("kind", kind)])?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// The registry; `commits` reads the store's commit counters, `sqlite` SQLite's
    /// memory and `tenants` the per-tenant state at each scrape.
    pub fn new(
        commits: impl Fn() -> CommitTotals + Send + Sync + 'static,
        sqlite: impl Fn() -> SqliteHeap + Send + Sync + 'static,
        tenants: impl Fn() -> TenantState + Send + Sync + 'static,
    ) -> Metrics {
        let mut registry = Registry::with_prefix("plinth");
        registry.register_collector(Box::new(CommitCollector(Box::new(commits))));
        registry.register_collector(Box::new(SqliteCollector(Box::new(sqlite))));
        registry.register_collector(Box::new(TenantCollector(Box::new(tenants))));
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests by route, method, status and tenant",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let invocations = Family::<InvocationLabels, Counter>::default();
        let invocation_seconds =
            Family::<TriggerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "function_invocations",
            "Function invocations by tenant, trigger and outcome",
            invocations.clone(),
        );
        registry.register(
            "function_duration_seconds",
            "Function invocation wall time (queueing included) by trigger",
            invocation_seconds.clone(),
        );
        let backups = BackupMetrics::default();
        for outcome in ["ok", "failed"] {
            // Both series exist from the start, so an alert on `failed` sees its first one.
            let _ = backups.runs.get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            });
        }
        registry.register(
            "backups",
            "Scheduled backups taken by this node, by outcome",
            backups.runs.clone(),
        );
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When this node's last scheduled backup completed (Unix time; 0: none yet)",
            backups.last_success.clone(),
        );
        registry.register(
            "backup_last_duration_seconds",
            "How long this node's last successful scheduled backup took",
            backups.last_seconds.clone(),
        );
        registry.register(
            "backup_last_size_bytes",
            "Size of this node's last successful scheduled backup",
            backups.last_bytes.clone(),
        );
        let stale_moves = Gauge::default();
        registry.register(
            "tenant_moves_stale",
            "Tenants left marked moving (read-only) by a mover that stopped beating its \
             heartbeat: run `plinth tenant move` on each to finish or roll it back",
            stale_moves.clone(),
        );
        Metrics {
            registry,
            backups,
            stale_moves,
            requests,
            latency,
            invocations,
            invocation_seconds,
        }
    }

    pub fn invocation(&self, labels: InvocationLabels, seconds: f64) {
        self.invocation_seconds
            .get_or_create(&TriggerLabels {
                trigger: labels.trigger.clone(),
            })
            .observe(seconds);
        self.invocations.get_or_create(&labels).inc();
    }

    pub fn observe(&self, labels: RequestLabels, seconds: f64) {
        self.latency
            .get_or_create(&RouteLabels {
                method: labels.method.clone(),
                route: labels.route.clone(),
            })
            .observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    pub fn backup_succeeded(&self, seconds: f64, bytes: u64) {
        self.backups
            .runs
            .get_or_create(&OutcomeLabels {
                outcome: "ok".into(),
            })
            .inc();
        self.backups
            .last_success
            .set(chrono::Utc::now().timestamp());
        self.backups.last_seconds.set(seconds);
        self.backups
            .last_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn backup_failed(&self) {
        self.backups
            .runs
            .get_or_create(&OutcomeLabels {
                outcome: "failed".into(),
            })
            .inc();
    }

    /// How many tenants a dead mover left marked moving, as last checked.
    pub fn set_stale_moves(&self, n: usize) {
        self.stale_moves.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
