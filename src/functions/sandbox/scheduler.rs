//! The invocation scheduler of one worker thread: which tenant runtimes it keeps (an
//! LRU bounded per worker), the invocations parked on host calls, their deadlines, and
//! the reset of a runtime whose heap is suspect.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rquickjs::{Persistent, Promise};

use super::runtime::{Step, TenantRuntime};
use super::{Call, Failure, Limits, Msg, Output, prelude_bytecode};

/// An invocation waiting for host answers.
struct Parked {
    tenant: i64,
    promise: Option<Persistent<Promise<'static>>>,
    deadline: Instant,
    limits: Limits,
    cpu: Duration,
    cold: bool,
    reply: tokio::sync::oneshot::Sender<Output>,
}

/// The runtimes and invocations of one worker thread.
pub struct Sandboxes {
    parked: HashMap<u64, Parked>,
    tenants: HashMap<i64, TenantRuntime>,
    prelude: Arc<[u8]>,
    handle: tokio::runtime::Handle,
    tx: mpsc::Sender<Msg>,
    /// Set at shutdown: interrupts running JavaScript.
    stop: Arc<AtomicBool>,
    max_tenants: usize,
}

impl Sandboxes {
    pub fn new(
        handle: tokio::runtime::Handle,
        tx: mpsc::Sender<Msg>,
        stop: Arc<AtomicBool>,
        max_tenants: usize,
    ) -> Sandboxes {
        Sandboxes {
            parked: HashMap::new(),
            tenants: HashMap::new(),
            prelude: prelude_bytecode(),
            handle,
            tx,
            stop,
            max_tenants: max_tenants.max(1),
        }
    }

    /// Invocations parked on host calls.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// The tenant of a parked invocation (None once it ended).
    pub fn parked_tenant(&self, inv: u64) -> Option<i64> {
        self.parked.get(&inv).map(|p| p.tenant)
    }

    /// Starts an invocation due by `deadline`; it answers on `reply` when it settles
    /// (now or later).
    pub fn start(
        &mut self,
        inv: u64,
        call: Call,
        deadline: Instant,
        reply: tokio::sync::oneshot::Sender<Output>,
    ) {
        let mut cold = false;
        if self
            .tenants
            .get(&call.tenant)
            .is_some_and(|t| t.version != call.version)
            && !self.parked.values().any(|p| p.tenant == call.tenant)
        {
            self.tenants.remove(&call.tenant);
        }
        if !self.tenants.contains_key(&call.tenant) {
            if self.tenants.len() >= self.max_tenants {
                self.evict_idlest();
            }
            match TenantRuntime::new(
                call.version,
                &self.prelude,
                self.handle.clone(),
                self.tx.clone(),
                self.stop.clone(),
            ) {
                Ok(t) => {
                    self.tenants.insert(call.tenant, t);
                    cold = true;
                }
                Err(f) => {
                    let _ = reply.send(Output {
                        result: Err(f),
                        logs: Vec::new(),
                        logs_truncated: false,
                        cpu: Duration::ZERO,
                        cold: true,
                    });
                    return;
                }
            }
        }
        let Some(rt) = self.tenants.get_mut(&call.tenant) else {
            return;
        };
        cold |= !rt
            .modules
            .contains_key(&(call.version, call.function.clone()));
        let t = Instant::now();
        let step = rt.start(inv, &call, deadline);
        let cpu = t.elapsed();
        let parked = Parked {
            tenant: call.tenant,
            promise: None,
            deadline,
            limits: call.limits,
            cpu,
            cold,
            reply,
        };
        self.after_step(inv, parked, step);
    }

    /// Delivers a host answer to its invocation (the pool decides when: this runs the
    /// tenant's JavaScript).
    pub fn answer(&mut self, inv: u64, call: u64, text: String) {
        let Some(mut p) = self.parked.remove(&inv) else {
            return; // the invocation already ended (timed out)
        };
        let Some(rt) = self.tenants.get_mut(&p.tenant) else {
            return;
        };
        let Some(promise) = p.promise.take() else {
            return;
        };
        let t = Instant::now();
        let step = rt.resume(inv, call, text, promise, p.deadline, p.limits.memory_bytes);
        p.cpu += t.elapsed();
        self.after_step(inv, p, step);
    }

    /// Parks an invocation that awaits host calls, or ends it.
    fn after_step(&mut self, inv: u64, mut p: Parked, step: Result<Step, Failure>) {
        let overdue = Instant::now() >= p.deadline;
        let step = match step {
            // The interrupt surfaces as an ordinary exception; the stop flag or the
            // deadline says what it was.
            Err(_) if self.stop.load(Ordering::Relaxed) => {
                Err(Failure::Internal("the server is shutting down".into()))
            }
            Err(Failure::Thrown { .. } | Failure::Internal(_)) if overdue => Err(Failure::Timeout),
            other => other,
        };
        // JavaScript stopped by the interrupt or the memory limit leaves a suspect heap.
        let reset = matches!(
            step,
            Err(Failure::Timeout | Failure::OutOfMemory | Failure::Internal(_))
        );
        match step {
            // Its time is up with the promise pending: a timeout, as for a loop. The
            // runtime is sound (nothing was interrupted).
            Ok(Step::Pending(promise)) if overdue => {
                drop(promise);
                self.end(inv, p, Err(Failure::Timeout), false);
            }
            Ok(Step::Pending(promise)) => {
                // A promise that awaits no host call can still be settled by another
                // invocation sharing the module; if nothing does, the deadline ends it.
                if let Some(rt) = self.tenants.get(&p.tenant)
                    && !rt.waiting(inv)
                {
                    rt.note(
                        inv,
                        "warn",
                        "the function's promise is pending and awaits no ctx.db call: \
                         it ends at its time budget",
                    );
                }
                p.promise = Some(promise);
                self.parked.insert(inv, p);
            }
            Ok(Step::Done(text)) => self.end(inv, p, Ok(text), false),
            Err(f) => self.end(inv, p, Err(f), reset),
        }
    }

    fn end(&mut self, inv: u64, mut p: Parked, result: Result<String, Failure>, reset: bool) {
        let (logs, logs_truncated) = self
            .tenants
            .get_mut(&p.tenant)
            .map(|rt| rt.finish(inv))
            .unwrap_or_default();
        let tenant = p.tenant;
        drop(p.promise.take());
        let _ = p.reply.send(Output {
            result,
            logs,
            logs_truncated,
            cpu: p.cpu,
            cold: p.cold,
        });
        if reset {
            self.reset_tenant(tenant);
        }
    }

    /// Throws a tenant's runtime away (its heap is suspect after an interrupt or OOM);
    /// invocations of the tenant parked in it fail.
    fn reset_tenant(&mut self, tenant: i64) {
        let victims: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, p)| p.tenant == tenant)
            .map(|(i, _)| *i)
            .collect();
        for inv in victims {
            if let Some(p) = self.parked.remove(&inv) {
                self.end(
                    inv,
                    p,
                    Err(Failure::Internal(
                        "the sandbox was reset after another invocation of this tenant ran out of time or memory"
                            .into(),
                    )),
                    false,
                );
            }
        }
        self.tenants.remove(&tenant);
    }

    /// Ends parked invocations whose deadline has passed.
    pub fn expire(&mut self, now: Instant) {
        let overdue: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(i, _)| *i)
            .collect();
        for inv in overdue {
            if let Some(p) = self.parked.remove(&inv) {
                // It was waiting for the host, not running: its runtime is sound.
                self.end(inv, p, Err(Failure::Timeout), false);
            }
        }
    }

    /// The earliest deadline of a parked invocation.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.parked.values().map(|p| p.deadline).min()
    }

    /// Fails every parked invocation (shutdown).
    pub fn abandon_all(&mut self) {
        let all: Vec<u64> = self.parked.keys().copied().collect();
        for inv in all {
            if let Some(p) = self.parked.remove(&inv) {
                self.end(
                    inv,
                    p,
                    Err(Failure::Internal("the server is shutting down".into())),
                    false,
                );
            }
        }
    }

    fn evict_idlest(&mut self) {
        let busy: std::collections::HashSet<i64> = self.parked.values().map(|p| p.tenant).collect();
        if let Some(id) = self
            .tenants
            .iter()
            .filter(|(id, _)| !busy.contains(id))
            .min_by_key(|(_, t)| t.last_used)
            .map(|(id, _)| *id)
        {
            self.tenants.remove(&id);
        }
    }

    /// Drops runtimes unused for `idle`.
    pub fn sweep(&mut self, idle: Duration) {
        let busy: std::collections::HashSet<i64> = self.parked.values().map(|p| p.tenant).collect();
        self.tenants
            .retain(|id, t| busy.contains(id) || t.last_used.elapsed() < idle);
    }
}
