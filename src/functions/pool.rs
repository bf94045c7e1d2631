//! The worker pool: a few OS threads that run JavaScript off the async executor.
//!
//! Jobs wait in one queue. Each worker runs an event loop: it starts jobs, parks an
//! invocation while it awaits host calls (`ctx.db`) and runs others meanwhile, resumes it
//! when the answer arrives, and ends invocations whose deadline passed. So a worker is
//! busy only while JavaScript runs, not while the database works.
//!
//! Sharing between tenants: a tenant runs JavaScript on at most `per_tenant` workers at
//! once (all but one), so one tenant's runaway functions cannot occupy every worker. A
//! worker counts the tenant in as it takes the job, under the queue's lock (counted when
//! the JavaScript started, workers woken together all took jobs of a tenant at its share),
//! and again to resume a parked invocation: an invocation that loops after a host call
//! held a worker beyond the share. An answer for a tenant at its share waits on its worker
//! until the tenant is below it, and the tenant's new jobs wait behind it. A free worker
//! takes the oldest job of the tenant running on the fewest workers, not the oldest job:
//! behind a tenant with a deep queue of slow jobs, another's waited for that whole queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::sandbox::{Call, Failure, LogLine, Msg, Output, Sandboxes};

struct Job {
    call: Call,
    reply: oneshot::Sender<Output>,
    /// Told the call's deadline when a worker starts it.
    started: oneshot::Sender<Instant>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Workers running (or about to run) JavaScript of each tenant right now.
    running: HashMap<i64, usize>,
    /// Host answers per tenant that wait on their workers for the tenant to drop below
    /// its share.
    held: HashMap<i64, usize>,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    per_tenant: usize,
    wakers: Mutex<Vec<mpsc::Sender<Msg>>>,
    /// Set at shutdown: running JavaScript is interrupted (a loop would hold the
    /// shutdown for its whole time budget).
    stop: Arc<AtomicBool>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job to start next, its tenant counted in: the oldest job of the tenant running
    /// on the fewest workers, among those below their share and with no answer held.
    fn take(&self) -> Option<Job> {
        let mut q = self.lock();
        // Callers that gave up (a timed-out request) need no answer.
        q.jobs.retain(|j| !j.reply.is_closed());
        let Queue {
            jobs,
            running,
            held,
            ..
        } = &mut *q;
        let mut best: Option<(usize, usize)> = None;
        let mut previous = None;
        for (i, job) in jobs.iter().enumerate() {
            let tenant = job.call.tenant;
            // A tenant's later jobs cannot beat its first (runs of one tenant are common).
            if previous.replace(tenant) == Some(tenant) {
                continue;
            }
            // Its held answers go first: they finish work already started. The worker
            // whose invocation parked just dropped below the share, is awake and takes
            // the next job at once; the worker holding an answer was asleep and came too
            // late, job after job (a batch of hook jobs: one held for seconds, past its
            // claim, and run again by another node).
            if held.contains_key(&tenant) {
                continue;
            }
            let n = running.get(&tenant).copied().unwrap_or(0);
            if n < self.per_tenant && best.is_none_or(|(fewest, _)| n < fewest) {
                best = Some((n, i));
                if n == 0 {
                    break;
                }
            }
        }
        let job = jobs.remove(best?.1)?;
        *running.entry(job.call.tenant).or_default() += 1;
        Some(job)
    }

    /// Counts the tenant in to resume one of its invocations; at its share, holds the
    /// answer instead (counted, so that the tenant's next `leave` wakes the workers).
    fn enter_or_hold(&self, tenant: i64) -> bool {
        let mut q = self.lock();
        if q.running.get(&tenant).copied().unwrap_or(0) < self.per_tenant {
            *q.running.entry(tenant).or_default() += 1;
            return true;
        }
        *q.held.entry(tenant).or_default() += 1;
        false
    }

    /// Counts the tenant in to resume a held answer, if it is below its share now.
    fn enter_held(&self, tenant: i64) -> bool {
        let mut q = self.lock();
        if q.running.get(&tenant).copied().unwrap_or(0) >= self.per_tenant {
            return false;
        }
        *q.running.entry(tenant).or_default() += 1;
        drop_held(&mut q, tenant);
        true
    }

    /// A held answer whose invocation ended meanwhile (its deadline passed).
    fn forget_held(&self, tenant: i64) {
        drop_held(&mut self.lock(), tenant);
    }

    /// The tenant's JavaScript stopped on one worker.
    fn leave(&self, tenant: i64) {
        let waiting = {
            let mut q = self.lock();
            if let Some(n) = q.running.get_mut(&tenant) {
                *n -= 1;
                if *n == 0 {
                    q.running.remove(&tenant);
                }
            }
            q.held.contains_key(&tenant) || q.jobs.iter().any(|j| j.call.tenant == tenant)
        };
        // A job or an answer held back by this tenant's share may now run elsewhere.
        if waiting {
            self.wake_all();
        }
    }
}

fn drop_held(q: &mut Queue, tenant: i64) {
    if let Some(n) = q.held.get_mut(&tenant) {
        *n -= 1;
        if *n == 0 {
            q.held.remove(&tenant);
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
/// How long past its deadline a caller waits for the worker's own answer.
const OVERDUE_GRACE: Duration = Duration::from_millis(50);

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
            stop: Arc::new(AtomicBool::new(false)),
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

    /// Queues a call and waits for its output, which is due at the call's deadline once
    /// a worker started it. The worker's JavaScript may still run then: QuickJS asks the
    /// interrupt handler only every 10,000 branches or calls, and where each is a long
    /// built-in, that takes seconds past the deadline (copies are cut short by
    /// `late_alloc`; scans of large arrays are not). `on_start` is called once a worker
    /// has started the call (not at all if it never starts).
    pub async fn run(&self, call: Call, on_start: impl FnOnce()) -> Result<Output, PoolError> {
        let timeout = call.limits.timeout;
        let (tx, mut rx) = oneshot::channel();
        let (started_tx, started) = oneshot::channel();
        {
            let mut q = self.shared.lock();
            if q.shutdown {
                return Err(PoolError::Closed);
            }
            q.jobs.push_back(Job {
                call,
                reply: tx,
                started: started_tx,
            });
        }
        self.shared.wake_all();
        let deadline = tokio::select! {
            out = &mut rx => return out.map_err(|_| PoolError::Closed),
            d = started => match d {
                Ok(d) => {
                    on_start();
                    d
                }
                Err(_) => return rx.await.map_err(|_| PoolError::Closed),
            },
        };
        let due = tokio::time::Instant::from_std(deadline + OVERDUE_GRACE);
        match tokio::time::timeout_at(due, &mut rx).await {
            Ok(out) => out.map_err(|_| PoolError::Closed),
            Err(_) => Ok(overdue(timeout)),
        }
    }

    /// Stops the workers; running, parked and queued invocations fail.
    pub fn shutdown(&self) {
        {
            let mut q = self.shared.lock();
            q.shutdown = true;
            q.jobs.clear();
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The answer for an invocation whose worker is still running it past its deadline (the
/// worker throws the runtime away when the interrupt finally stops it).
fn overdue(budget: Duration) -> Output {
    Output {
        result: Err(Failure::Timeout),
        logs: vec![LogLine {
            level: "warn".into(),
            message: "the function was inside a long built-in operation at its deadline: \
                      answered without waiting for it, its log output is lost"
                .into(),
        }],
        logs_truncated: false,
        // The worker still runs it: at least its budget is charged.
        cpu: budget,
        cold: false,
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

/// A host answer for a parked invocation whose tenant was at its share.
struct Held {
    tenant: i64,
    inv: u64,
    call: u64,
    text: String,
}

/// One worker's invocations, and the answers it holds back.
struct Worker {
    shared: Arc<Shared>,
    sandboxes: Sandboxes,
    held: Vec<Held>,
}

impl Worker {
    /// Resumes a parked invocation with a host answer, unless its tenant is at its share.
    fn answer(&mut self, inv: u64, call: u64, text: String) {
        let Some(tenant) = self.sandboxes.parked_tenant(inv) else {
            return; // the invocation already ended (timed out)
        };
        if self.shared.enter_or_hold(tenant) {
            self.sandboxes.answer(inv, call, text);
            self.shared.leave(tenant);
        } else {
            self.held.push(Held {
                tenant,
                inv,
                call,
                text,
            });
        }
    }

    /// Resumes the held answers whose tenants are below their share now, oldest first.
    fn answer_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let mut still = Vec::new();
        for h in std::mem::take(&mut self.held) {
            if self.sandboxes.parked_tenant(h.inv).is_none() {
                self.shared.forget_held(h.tenant);
            } else if self.shared.enter_held(h.tenant) {
                self.sandboxes.answer(h.inv, h.call, h.text);
                self.shared.leave(h.tenant);
            } else {
                still.push(h);
            }
        }
        self.held = still;
    }

    /// Resumes what can be: the held answers first, then every answer waiting in the
    /// channel (wake-ups dropped). Answers first: they finish work already started. All
    /// of them, not one message: each start's `leave` sends every worker a wake-up while
    /// the tenant has queued jobs, so a worker that looked at one message between starts
    /// mostly read wake-ups, and its parked invocations' answers queued up behind them
    /// for as long as the tenant's jobs kept coming (20 jobs of 300 ms: 3 s, past a
    /// hook lease).
    ///
    /// The held answers are looked at again after the channel is drained: a wake-up read
    /// there may be the one that says a held answer's tenant dropped below its share, and
    /// once read, nothing else would wake this worker for it. It then slept out its whole
    /// wait (1 s) holding the answer, and every worker with it (the tenant's new jobs wait
    /// behind a held answer): the hook drain of benches/functions-bench.sh stood still
    /// for 1.0 s several times a run.
    fn take_answers(&mut self, rx: &mpsc::Receiver<Msg>) {
        self.answer_held();
        let mut woken = false;
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Answer { inv, call, text } => self.answer(inv, call, text),
                Msg::Wake => woken = true,
            }
        }
        if woken {
            self.answer_held();
        }
    }

    fn start(&mut self, inv: u64, job: Job) {
        let tenant = job.call.tenant;
        let deadline = Instant::now() + job.call.limits.timeout;
        let _ = job.started.send(deadline);
        self.sandboxes.start(inv, job.call, deadline, job.reply);
        self.shared.leave(tenant);
    }
}

fn worker(
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
) {
    lower_priority();
    let sandboxes = Sandboxes::new(handle, tx, shared.stop.clone(), MAX_TENANTS_PER_WORKER);
    let mut w = Worker {
        shared,
        sandboxes,
        held: Vec::new(),
    };
    let mut next_inv: u64 = 0;
    let mut last_sweep = Instant::now();
    loop {
        w.take_answers(&rx);
        if w.shared.queue.lock().map(|q| q.shutdown).unwrap_or(true) {
            w.sandboxes.abandon_all();
            return;
        }
        let mut started = false;
        while w.sandboxes.parked() < MAX_PARKED {
            let Some(job) = w.shared.take() else { break };
            next_inv += 1;
            w.start(next_inv, job);
            started = true;
            // Answers between starts, so a burst of new jobs cannot starve the
            // invocations already parked.
            w.take_answers(&rx);
        }
        w.sandboxes.expire(Instant::now());
        if started {
            continue;
        }
        if last_sweep.elapsed() > IDLE_RUNTIME {
            w.sandboxes.sweep(IDLE_RUNTIME);
            last_sweep = Instant::now();
        }
        let wait = w
            .sandboxes
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        // A job queued since the last look, or a share freed for a held answer, sent this
        // worker a wake-up, which waits here.
        match rx.recv_timeout(wait) {
            Ok(Msg::Answer { inv, call, text }) => w.answer(inv, call, text),
            Ok(Msg::Wake) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::sandbox::{Host, HostError, Limits};
    use futures_util::future::BoxFuture;

    struct NoHost;
    impl Host for NoHost {
        fn call(
            &self,
            _: String,
            _: Vec<serde_json::Value>,
        ) -> BoxFuture<'static, Result<serde_json::Value, HostError>> {
            Box::pin(async { Ok(serde_json::Value::Null) })
        }
    }

    /// A queue of jobs of these tenants, oldest first, with 3 workers (a share of 2).
    fn shared(tenants: &[i64]) -> (Shared, Vec<oneshot::Receiver<Output>>) {
        let shared = Shared {
            queue: Mutex::new(Queue::default()),
            per_tenant: 2,
            wakers: Mutex::new(Vec::new()),
            stop: Default::default(),
        };
        let mut replies = Vec::new();
        for (i, &tenant) in tenants.iter().enumerate() {
            let (reply, rx) = oneshot::channel();
            let (started, _) = oneshot::channel();
            replies.push(rx);
            let call = Call {
                tenant,
                version: 1,
                function: format!("f{i}"),
                bytecode: Arc::from(Vec::new()),
                event: String::new(),
                env: Arc::from("{}"),
                limits: Limits {
                    timeout: Duration::from_secs(1),
                    memory_bytes: 1 << 20,
                },
                host: Arc::new(NoHost),
            };
            shared.lock().jobs.push_back(Job {
                call,
                reply,
                started,
            });
        }
        (shared, replies)
    }

    fn taken(s: &Shared) -> Option<String> {
        s.take().map(|j| j.call.function)
    }

    #[test]
    fn a_free_worker_serves_the_tenant_running_on_the_fewest() {
        // Tenant 1 queued three jobs before tenant 2's one.
        let (s, _replies) = shared(&[1, 1, 1, 2]);
        assert_eq!(taken(&s).as_deref(), Some("f0"));
        // Tenant 1 runs on a worker, tenant 2 on none: tenant 2 goes first.
        assert_eq!(taken(&s).as_deref(), Some("f3"));
        assert_eq!(taken(&s).as_deref(), Some("f1"));
        // Tenant 1 is at its share (2 of 3 workers) until one of its runs ends.
        assert_eq!(taken(&s), None);
        s.leave(1);
        assert_eq!(taken(&s).as_deref(), Some("f2"));
    }

    #[test]
    fn answers_beyond_the_share_are_held_until_a_run_ends() {
        let (s, _replies) = shared(&[]);
        assert!(s.enter_or_hold(1));
        assert!(s.enter_or_hold(1));
        assert!(
            !s.enter_or_hold(1),
            "a third worker would leave none to others"
        );
        assert!(s.enter_or_hold(2));
        assert!(!s.enter_held(1));
        s.leave(1);
        assert!(s.enter_held(1));
        let q = s.lock();
        assert!(q.held.is_empty());
        assert_eq!(q.running.get(&1), Some(&2));
    }

    #[test]
    fn a_held_answer_goes_before_the_tenants_new_jobs() {
        let (s, _replies) = shared(&[1, 1, 2]);
        assert!(s.enter_or_hold(1));
        assert!(s.enter_or_hold(1));
        assert!(!s.enter_or_hold(1));
        // Tenant 1 is below its share again, but the answer held on another worker
        // resumes before any new job of tenant 1 starts; other tenants' jobs go on.
        s.leave(1);
        assert_eq!(taken(&s).as_deref(), Some("f2"));
        assert_eq!(taken(&s), None);
        assert!(s.enter_held(1));
        s.leave(1);
        assert_eq!(taken(&s).as_deref(), Some("f0"));
    }
}
