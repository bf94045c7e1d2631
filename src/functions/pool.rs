//! The worker pool: a few OS threads that run JavaScript off the async executor.
//!
//! Jobs wait in one queue; a free worker takes the oldest job whose tenant is below its
//! share of the workers, so one tenant's runaway functions can occupy at most
//! `per_tenant` workers and the others keep serving everyone else.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::sandbox::{Call, Output, Sandboxes};

struct Job {
    call: Call,
    reply: oneshot::Sender<Output>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    running: HashMap<i64, usize>,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    per_tenant: usize,
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub workers: usize,
}

/// Thread stack of a worker: QuickJS gets `JS_STACK_BYTES` of it, the rest is headroom
/// for the host side (CEL, serde) and unoptimised builds.
const WORKER_STACK: usize = 16 * 1024 * 1024;
/// A worker drops tenant runtimes idle for this long.
const IDLE_RUNTIME: Duration = Duration::from_secs(300);
/// Tenant runtimes kept per worker.
const MAX_TENANTS_PER_WORKER: usize = 256;

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
            ready: Condvar::new(),
            per_tenant: if workers > 2 { workers - 1 } else { 1 }.max(1),
        });
        // Compile the prelude before any request waits on it.
        let _ = super::sandbox::prelude_bytecode();
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let shared = shared.clone();
            let handle = handle.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("plinth-fn-{i}"))
                    .stack_size(WORKER_STACK)
                    .spawn(move || worker(shared, handle))?,
            );
        }
        Ok(Pool {
            shared,
            threads: Mutex::new(threads),
            workers,
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
        self.shared.ready.notify_one();
        rx.await.map_err(|_| PoolError::Closed)
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.shared
            .queue
            .lock()
            .map(|q| q.jobs.len())
            .unwrap_or_default()
    }

    /// Stops the workers after the jobs they are running; queued jobs are dropped.
    pub fn shutdown(&self) {
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.shutdown = true;
            q.jobs.clear();
        }
        self.shared.ready.notify_all();
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

fn next_job(shared: &Shared) -> Option<Job> {
    let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if q.shutdown {
            return None;
        }
        // Callers that gave up (a timed-out request) need no answer.
        q.jobs.retain(|j| !j.reply.is_closed());
        let pick = q
            .jobs
            .iter()
            .position(|j| q.running.get(&j.call.tenant).copied().unwrap_or(0) < shared.per_tenant);
        if let Some(i) = pick
            && let Some(job) = q.jobs.remove(i)
        {
            *q.running.entry(job.call.tenant).or_default() += 1;
            return Some(job);
        }
        let (guard, _) = shared
            .ready
            .wait_timeout(q, Duration::from_secs(30))
            .unwrap_or_else(|p| p.into_inner());
        q = guard;
    }
}

fn worker(shared: Arc<Shared>, handle: tokio::runtime::Handle) {
    let mut sandboxes = Sandboxes::new(handle, MAX_TENANTS_PER_WORKER);
    let mut last_sweep = std::time::Instant::now();
    while let Some(job) = next_job(&shared) {
        let tenant = job.call.tenant;
        let output = sandboxes.run(&job.call);
        let _ = job.reply.send(output);
        {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = q.running.get_mut(&tenant) {
                *n -= 1;
                if *n == 0 {
                    q.running.remove(&tenant);
                }
            }
        }
        // A job of a tenant that was at its share may now run.
        shared.ready.notify_all();
        if last_sweep.elapsed() > IDLE_RUNTIME {
            sandboxes.sweep(IDLE_RUNTIME);
            last_sweep = std::time::Instant::now();
        }
    }
}
