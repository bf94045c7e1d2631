//! What the functions subsystem is configured with.

use std::time::Duration;

use super::LimitCaps;

#[derive(Clone, Debug)]
pub struct FunctionsConfig {
    /// Worker threads running JavaScript.
    pub workers: usize,
    pub http_timeout: Duration,
    /// The longest an HTTP function may run whatever its `timeout_ms`: a little under the
    /// server's request timeout (set from it at start).
    pub http_deadline: Duration,
    pub before_timeout: Duration,
    pub after_timeout: Duration,
    pub memory_bytes: usize,
    pub caps: LimitCaps,
    /// How long a node trusts its cached active deploy before checking the version.
    pub cache_ttl: Duration,
    /// Whether this node runs after-hook jobs (a node may serve requests only).
    pub run_hooks: bool,
    /// How long a claimed hook job is its runner's before another may claim it again;
    /// renewed while the job waits for a worker or for its outcome to be recorded, and as
    /// it starts if short (`hooks::claims`), so a job is taken over only when its runner
    /// died or stalled, or when its run outlasts the lease.
    /// None: twice the longest function timeout allowed, plus 10 s (a run never outlives
    /// its lease). Shorter (`PLINTH_HOOK_LEASE`): a dead node's jobs run sooner, and a job
    /// that outruns its lease may run twice (delivery is at least once either way).
    pub hook_lease: Option<Duration>,
    /// How often the hook runner looks for jobs it was not told of: a dead runner's on
    /// another node, or queued by another process (see `store::OutboxScan`).
    pub hook_rescan: Duration,
}

impl Default for FunctionsConfig {
    fn default() -> Self {
        FunctionsConfig {
            // One more than the cores: a tenant may use all but one worker, so one tenant
            // can keep every core busy while a worker stays free for the others.
            workers: std::thread::available_parallelism()
                .map(|n| n.get() + 1)
                .unwrap_or(2)
                .max(2),
            http_timeout: Duration::from_secs(10),
            http_deadline: Duration::from_millis(29_500),
            before_timeout: Duration::from_millis(100),
            after_timeout: Duration::from_secs(5),
            memory_bytes: 64 * 1024 * 1024,
            caps: LimitCaps {
                max_timeout_ms: 60_000,
                max_memory_mb: 256,
            },
            cache_ttl: Duration::from_secs(1),
            run_hooks: true,
            hook_lease: None,
            hook_rescan: Duration::from_secs(30),
        }
    }
}
