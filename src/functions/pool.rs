//! The worker pool: a few OS threads that run JavaScript off the async executor.
//!
//! Jobs wait in one queue. Each worker runs an event loop: it starts jobs, parks an
//! invocation while it awaits host calls (`ctx.db`) and runs others meanwhile, resumes it
//! when the answer arrives, and ends invocations whose deadline passed. So a worker is
//! busy only while JavaScript runs, not while the database works. A worker takes a job
//! only if its tenant is running JavaScript on fewer than `per_tenant` workers (all but
//! one), so one tenant's runaway functions cannot occupy every worker.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::sandbox::{Call, EntryCounter, Msg, Output, Sandboxes};

struct Job {
    call: Call,
    reply: oneshot::Sender<Output>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Workers running JavaScript of each tenant right now.
    running: HashMap<i64, usize>,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    per_tenant: usize,
    wakers: Mutex<Vec<mpsc::Sender<Msg>>>,
}

impl Shared {
    /// Every worker, not one: with one caller at a time, waking only the last worker to
    /// go idle often woke a sleeping thread while the one that had just answered was
    /// still awake and would have taken the job (warm invocations ~52 µs p50 instead of
    /// ~20, benches/functions-bench.sh). Waking all costs ~4% of the SMS votes/s (4
    /// interleaved pairs), where every worker is busy anyway.
    fn wake_all(&self) {
        for w in self.wakers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = w.send(Msg::Wake);
        }
    }

    /// The oldest job whose tenant is below its share, if any.
    fn take(&self) -> Option<Job> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        // Callers that gave up (a timed-out request) need no answer.
        q.jobs.retain(|j| !j.reply.is_closed());
        let i = q
            .jobs
            .iter()
            .position(|j| q.running.get(&j.call.tenant).copied().unwrap_or(0) < self.per_tenant)?;
        q.jobs.remove(i)
    }
}

impl EntryCounter for Shared {
    fn enter(&self, tenant: i64) {
        *self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running
            .entry(tenant)
            .or_default() += 1;
    }

    fn leave(&self, tenant: i64) {
        let waiting = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = q.running.get_mut(&tenant) {
                *n -= 1;
                if *n == 0 {
                    q.running.remove(&tenant);
                }
            }
            q.jobs.iter().any(|j| j.call.tenant == tenant)
        };
        // A job held back by this tenant's share may now run elsewhere.
        if waiting {
            self.wake_all();
        }
    }
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Thread stack of a worker: QuickJS gets `JS_STACK_BYTES` of it, the rest is headroom
/// for the host side (CEL, serde) and unoptimised builds.
const WORKER_STACK: usize = 16 * 1024 * 1024;
/// A worker drops tenant runtimes idle for this long.
const IDLE_RUNTIME: Duration = Duration::from_secs(300);
/// Tenant runtimes kept per worker.
const MAX_TENANTS_PER_WORKER: usize = 256;
/// Invocations a worker holds parked at once before it stops taking jobs.
const MAX_PARKED: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the function pool is shut down")]
    Closed,
}

impl Pool {
    pub fn new(workers: usize, handle: tokio::runtime::Handle) -> std::io::Result<Pool> {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            per_tenant: if workers > 1 { workers - 1 } else { 1 },
            wakers: Mutex::new(Vec::new()),
        });
        // Compile the prelude before any request waits on it.
        let _ = super::sandbox::prelude_bytecode();
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let (tx, rx) = mpsc::channel();
            shared
                .wakers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(tx.clone());
            let shared = shared.clone();
            let handle = handle.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("plinth-fn-{i}"))
                    .stack_size(WORKER_STACK)
                    .spawn(move || worker(shared, handle, tx, rx))?,
            );
        }
        Ok(Pool {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// Queues a call and waits for its output.
    pub async fn run(&self, call: Call) -> Result<Output, PoolError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.shutdown {
                return Err(PoolError::Closed);
            }
            q.jobs.push_back(Job { call, reply: tx });
        }
        self.shared.wake_all();
        rx.await.map_err(|_| PoolError::Closed)
    }

    /// Stops the workers; parked and queued invocations fail.
    pub fn shutdown(&self) {
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.shutdown = true;
            q.jobs.clear();
        }
        self.shared.wake_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How much less CPU a function worker is given than the threads that serve requests
/// and commit writes (a nice value; 5 is about a third of the share when both compete).
const WORKER_NICE: i32 = 5;

/// Runs this worker thread at a lower CPU priority. JavaScript is tenants' code and the
/// throughput part of the work; the async runtime carries every request and the single
/// commit pipeline of each tenant, which all invocations wait on. On two cores under SMS
/// vote load, equal shares let busy workers delay the commits (A/B: +7% votes/s with
/// the workers at nice 5, BENCHMARKS.md), and a tenant's busy functions cannot starve the
/// document API and the realtime feeds of others.
fn lower_priority() {
    #[cfg(unix)]
    {
        // No pid: the calling thread (on Linux the nice value is per thread). Raising
        // one's own nice value needs no privilege; failing only loses the effect.
        if let Err(e) = rustix::process::setpriority_process(None, WORKER_NICE) {
            tracing::debug!(error = %e, "cannot lower the function workers' priority");
        }
    }
}

fn worker(
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
) {
    lower_priority();
    let counter: Arc<dyn EntryCounter> = shared.clone();
    let mut sandboxes = Sandboxes::new(handle, tx, counter, MAX_TENANTS_PER_WORKER);
    let mut next_inv: u64 = 0;
    let mut last_sweep = Instant::now();
    loop {
        // Answers first: they finish work already started.
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Answer { inv, call, text } = msg {
                sandboxes.answer(inv, call, text);
            }
        }
        if shared.queue.lock().map(|q| q.shutdown).unwrap_or(true) {
            sandboxes.abandon_all();
            return;
        }
        let mut started = false;
        while sandboxes.parked() < MAX_PARKED {
            let Some(job) = shared.take() else { break };
            next_inv += 1;
            sandboxes.start(next_inv, job.call, job.reply);
            started = true;
            // Look at answers between starts, so a burst of new jobs cannot starve
            // the invocations already parked.
            if let Ok(Msg::Answer { inv, call, text }) = rx.try_recv() {
                sandboxes.answer(inv, call, text);
            }
        }
        sandboxes.expire(Instant::now());
        if started {
            continue;
        }
        if last_sweep.elapsed() > IDLE_RUNTIME {
            sandboxes.sweep(IDLE_RUNTIME);
            last_sweep = Instant::now();
        }
        let wait = sandboxes
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        // A job queued since the last look sent this worker a wake-up, which waits here.
        match rx.recv_timeout(wait) {
            Ok(Msg::Answer { inv, call, text }) => sandboxes.answer(inv, call, text),
            Ok(Msg::Wake) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
