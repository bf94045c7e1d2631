//! One tenant's QuickJS runtime on a worker: the prelude and loaded modules, the host
//! bridges (`host` for `ctx.db`, `hostSync` for logging and crypto), and the driving of
//! an invocation's promise until it settles or parks on host calls.

#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use rquickjs::context::intrinsic;
use rquickjs::{
    Context, Ctx, Function, Module, Persistent, Promise, Runtime, Value, promise::PromiseState,
};

use super::compile::{Exception, describe_exception};
use super::{
    Call, Failure, Host, HostError, JS_STACK_BYTES, LogLine, MAX_LOG_BYTES, MAX_LOG_LINES, Msg,
};

const MAX_LINE_BYTES: usize = 4 * 1024;

/// Intrinsics of a sandbox context: the language, without `eval` and `Function`
/// (bytecode is loaded, never source compiled, inside a sandbox).
type SandboxIntrinsics = (
    intrinsic::Date,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::Proxy,
    intrinsic::MapSet,
    intrinsic::TypedArrays,
    intrinsic::Promise,
    intrinsic::WeakRef,
);

fn envelope(r: Result<serde_json::Value, HostError>) -> String {
    let v = match r {
        Ok(v) => serde_json::json!({ "v": v }),
        Err(e) => serde_json::json!({ "e": e }),
    };
    v.to_string()
}
/// The state of one invocation that the host bridges reach.
struct InvState {
    host: Arc<dyn Host>,
    /// Resolvers of host calls in flight, by call id.
    pending: HashMap<u64, Persistent<Function<'static>>>,
    logs: Vec<LogLine>,
    log_bytes: usize,
    truncated: bool,
}

impl InvState {
    fn log(&mut self, level: &str, mut message: String) {
        if self.logs.len() >= MAX_LOG_LINES || self.log_bytes >= MAX_LOG_BYTES {
            self.truncated = true;
            return;
        }
        if message.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("… (cut)");
        }
        self.log_bytes += message.len();
        self.logs.push(LogLine {
            level: level.to_string(),
            message,
        });
    }
}

/// What the host bridges of one runtime share: the invocations it holds and which of
/// them is running JavaScript right now (JS runs one entry at a time, and every entry
/// drains the job queue, so code that runs belongs to the current invocation).
struct CallState {
    current: Option<u64>,
    invs: HashMap<u64, InvState>,
    next_call: u64,
    tx: mpsc::Sender<Msg>,
    handle: tokio::runtime::Handle,
}

/// One tenant's runtime on one worker, for one deploy version. Several invocations of
/// the tenant may be in it at once (parked while they await host calls). Field order is
/// drop order: JS handles before the context, the context before the runtime, and the
/// bytecode (which loaded modules point into) last.
pub(super) struct TenantRuntime {
    invoke: Persistent<Function<'static>>,
    /// Loaded modules by (deploy version, function): while invocations of an older
    /// version are still parked here, a newer version's calls load their own modules.
    pub(super) modules: HashMap<(i64, String), Persistent<Function<'static>>>,
    context: Context,
    runtime: Runtime,
    state: Rc<RefCell<CallState>>,
    deadline: Rc<Cell<Option<Instant>>>,
    /// Set when the interrupt handler stopped JavaScript during the current entry.
    interrupted: Rc<Cell<bool>>,
    pub(super) version: i64,
    pub(super) last_used: Instant,
    bytecode: Vec<Arc<[u8]>>,
}

impl Drop for TenantRuntime {
    fn drop(&mut self) {
        // Persistent handles must go before the runtime does.
        self.state.borrow_mut().invs.clear();
        self.modules.clear();
    }
}

fn js_err(ctx: &Ctx<'_>, e: rquickjs::Error) -> Failure {
    match e {
        rquickjs::Error::Exception => thrown(describe_exception(&ctx.catch())),
        rquickjs::Error::Allocation => Failure::OutOfMemory,
        other => Failure::Internal(other.to_string()),
    }
}

fn thrown(Exception { name, message, .. }: Exception) -> Failure {
    if message == "out of memory" {
        return Failure::OutOfMemory;
    }
    Failure::Thrown { name, message }
}

pub(super) enum Step {
    Done(String),
    Pending(Persistent<Promise<'static>>),
}

/// Runs queued jobs, then reports the promise's state. Stops at an interrupt: QuickJS
/// runs each further job for another 10,000 branches or calls before it asks the
/// handler again, and a function can queue any number of them.
fn settle<'js>(
    ctx: &Ctx<'js>,
    promise: Promise<'js>,
    interrupted: &Cell<bool>,
) -> Result<Step, Failure> {
    while !interrupted.get() && ctx.execute_pending_job() {}
    if interrupted.get() {
        return Err(Failure::Timeout);
    }
    match promise.state() {
        PromiseState::Pending => Ok(Step::Pending(Persistent::save(ctx, promise))),
        PromiseState::Resolved => match promise.result::<String>() {
            Some(Ok(s)) => Ok(Step::Done(s)),
            Some(Err(e)) => Err(js_err(ctx, e)),
            None => Err(Failure::Internal("promise state changed".into())),
        },
        PromiseState::Rejected => match promise.result::<Value>() {
            Some(Err(e)) => Err(js_err(ctx, e)),
            _ => Err(Failure::Internal(
                "rejected promise without a reason".into(),
            )),
        },
    }
}

fn load_module<'js>(
    ctx: &Ctx<'js>,
    bytecode: &[u8],
    interrupted: &Cell<bool>,
) -> Result<Function<'js>, Failure> {
    // SAFETY: bytecode only ever comes from `compile` in this process (deploys are
    // compiled when they are loaded, never read back from storage as bytecode).
    let module = unsafe { Module::load(ctx.clone(), bytecode) }.map_err(|e| js_err(ctx, e))?;
    let (module, promise) = module.eval().map_err(|e| js_err(ctx, e))?;
    while !interrupted.get() && ctx.execute_pending_job() {}
    if interrupted.get() {
        return Err(Failure::Timeout);
    }
    if let PromiseState::Rejected = promise.state()
        && let Some(Err(e)) = promise.result::<Value>()
    {
        return Err(js_err(ctx, e));
    }
    module
        .get::<_, Function>("default")
        .map_err(|_| Failure::Internal("the module has no default export function".into()))
}

/// `host(op, argsJson)`: starts an asynchronous host call for the current invocation;
/// returns a promise of the answer envelope.
fn host_bridge<'js>(
    ctx: &Ctx<'js>,
    state: Rc<RefCell<CallState>>,
) -> rquickjs::Result<Function<'js>> {
    Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, op: String, args: String| -> rquickjs::Result<Promise<'js>> {
            let (promise, resolve, _reject) = ctx.promise()?;
            let mut guard = state.borrow_mut();
            let st = &mut *guard;
            let inv = st.current;
            let Some((inv, is)) = inv.and_then(|i| st.invs.get_mut(&i).map(|s| (i, s))) else {
                return Err(rquickjs::Exception::throw_message(
                    &ctx,
                    "ctx.db can only be used while the function runs",
                ));
            };
            let call = st.next_call;
            st.next_call += 1;
            is.pending.insert(call, Persistent::save(&ctx, resolve));
            let host = is.host.clone();
            let tx = st.tx.clone();
            let args: Vec<serde_json::Value> = serde_json::from_str(&args).unwrap_or_default();
            st.handle.spawn(async move {
                let text = envelope(host.call(op, args).await);
                let _ = tx.send(Msg::Answer { inv, call, text });
            });
            Ok(promise)
        },
    )
}

/// `hostSync(op, argsJson)`: logging and crypto, answered at once.
fn host_sync_bridge<'js>(
    ctx: &Ctx<'js>,
    state: Rc<RefCell<CallState>>,
) -> rquickjs::Result<Function<'js>> {
    Function::new(ctx.clone(), move |op: String, args: String| -> String {
        let args: Vec<serde_json::Value> = serde_json::from_str(&args).unwrap_or_default();
        if op == "log" {
            let level = args
                .first()
                .and_then(|v| v.as_str())
                .filter(|l| matches!(*l, "info" | "warn" | "error" | "debug"))
                .unwrap_or("info");
            let message = args
                .get(1)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            let mut st = state.borrow_mut();
            if let Some(is) = st.current.and_then(|i| st.invs.get_mut(&i)) {
                is.log(level, message);
            }
            return envelope(Ok(serde_json::Value::Null));
        }
        envelope(
            crate::functions::crypto::call(&op, &args).map_err(|message| HostError {
                code: "invalid_argument".into(),
                status: 400,
                message,
            }),
        )
    })
}

impl TenantRuntime {
    pub(super) fn new(
        version: i64,
        prelude: &Arc<[u8]>,
        handle: tokio::runtime::Handle,
        tx: mpsc::Sender<Msg>,
        stop: Arc<AtomicBool>,
    ) -> Result<TenantRuntime, Failure> {
        let internal = |e: rquickjs::Error| Failure::Internal(e.to_string());
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let allocator = super::late_alloc::DeadlineAllocator {
            deadline: deadline.clone(),
        };
        let runtime = Runtime::new_with_alloc(allocator).map_err(internal)?;
        runtime.set_max_stack_size(JS_STACK_BYTES);
        let interrupted = Rc::new(Cell::new(false));
        let (d, fired) = (deadline.clone(), interrupted.clone());
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let stop = stop.load(Ordering::Relaxed) || d.get().is_some_and(|d| Instant::now() >= d);
            fired.set(fired.get() || stop);
            stop
        })));
        crate::functions::imports::refuse_imports(&runtime);
        let context = Context::custom::<SandboxIntrinsics>(&runtime).map_err(internal)?;
        let state = Rc::new(RefCell::new(CallState {
            current: None,
            invs: HashMap::new(),
            next_call: 0,
            tx,
            handle,
        }));
        let invoke = context.with(|ctx| -> Result<_, Failure> {
            let err = |e| js_err(&ctx, e);
            let host = host_bridge(&ctx, state.clone()).map_err(err)?;
            let host_sync = host_sync_bridge(&ctx, state.clone()).map_err(err)?;
            // SAFETY: the prelude's bytecode comes from `prelude_bytecode`, compiled in this
            // process by the same QuickJS.
            let module = unsafe { Module::load(ctx.clone(), prelude) }.map_err(err)?;
            let (module, promise) = module.eval().map_err(err)?;
            while ctx.execute_pending_job() {}
            if promise.state() != PromiseState::Resolved {
                return Err(Failure::Internal("the prelude did not load".into()));
            }
            let make: Function = module.get("default").map_err(err)?;
            let invoke: Function = make.call((host, host_sync)).map_err(err)?;
            Ok(Persistent::save(&ctx, invoke))
        })?;
        Ok(TenantRuntime {
            invoke,
            modules: HashMap::new(),
            context,
            runtime,
            state,
            deadline,
            interrupted,
            version,
            last_used: Instant::now(),
            bytecode: vec![prelude.clone()],
        })
    }

    /// Runs JavaScript for invocation `inv` until it settles or parks: `f` gets the
    /// context with `inv` current and its deadline armed. Interrupted JavaScript is a
    /// timeout whatever `f` saw: an interrupt inside an async function after an `await`
    /// ends it without rejecting its promise, which then looks merely pending.
    fn entry(
        &mut self,
        inv: u64,
        deadline: Instant,
        memory: usize,
        f: impl FnOnce(&mut Self, &Ctx<'_>) -> Result<Step, Failure>,
    ) -> Result<Step, Failure> {
        self.last_used = Instant::now();
        self.runtime.set_memory_limit(memory);
        self.deadline.set(Some(deadline));
        self.interrupted.set(false);
        self.state.borrow_mut().current = Some(inv);
        let context = self.context.clone();
        let r = context.with(|ctx| f(self, &ctx));
        self.state.borrow_mut().current = None;
        self.deadline.set(None);
        if self.interrupted.get() {
            return Err(Failure::Timeout);
        }
        r
    }

    /// Starts invocation `inv`: loads the module if needed, calls it through the prelude.
    pub(super) fn start(
        &mut self,
        inv: u64,
        call: &Call,
        deadline: Instant,
    ) -> Result<Step, Failure> {
        self.state.borrow_mut().invs.insert(
            inv,
            InvState {
                host: call.host.clone(),
                pending: HashMap::new(),
                logs: Vec::new(),
                log_bytes: 0,
                truncated: false,
            },
        );
        self.entry(inv, deadline, call.limits.memory_bytes, |rt, ctx| {
            let key = (call.version, call.function.clone());
            let f = match rt.modules.get(&key) {
                Some(p) => p.clone().restore(ctx).map_err(|e| js_err(ctx, e))?,
                None => {
                    let f = load_module(ctx, &call.bytecode, &rt.interrupted)?;
                    rt.modules.insert(key, Persistent::save(ctx, f.clone()));
                    rt.bytecode.push(call.bytecode.clone());
                    f
                }
            };
            let invoke = rt.invoke.clone().restore(ctx).map_err(|e| js_err(ctx, e))?;
            let promise: Promise = invoke
                .call((f, call.event.as_str(), &*call.env))
                .map_err(|e| js_err(ctx, e))?;
            settle(ctx, promise, &rt.interrupted)
        })
    }

    /// Resumes a parked invocation with the answer to one of its host calls.
    pub(super) fn resume(
        &mut self,
        inv: u64,
        call: u64,
        text: String,
        promise: Persistent<Promise<'static>>,
        deadline: Instant,
        memory: usize,
    ) -> Result<Step, Failure> {
        let resolve = self
            .state
            .borrow_mut()
            .invs
            .get_mut(&inv)
            .and_then(|i| i.pending.remove(&call));
        self.entry(inv, deadline, memory, |rt, ctx| {
            if let Some(resolve) = resolve {
                let resolve = resolve.restore(ctx).map_err(|e| js_err(ctx, e))?;
                resolve.call::<_, ()>((text,)).map_err(|e| js_err(ctx, e))?;
            }
            let promise = promise.restore(ctx).map_err(|e| js_err(ctx, e))?;
            settle(ctx, promise, &rt.interrupted)
        })
    }

    /// Whether the invocation still waits for a host answer.
    pub(super) fn waiting(&self, inv: u64) -> bool {
        self.state
            .borrow()
            .invs
            .get(&inv)
            .is_some_and(|i| !i.pending.is_empty())
    }

    /// Adds a line to an invocation's captured log.
    pub(super) fn note(&self, inv: u64, level: &str, message: &str) {
        if let Some(is) = self.state.borrow_mut().invs.get_mut(&inv) {
            is.log(level, message.to_string());
        }
    }

    /// Forgets an invocation; returns its captured logs.
    pub(super) fn finish(&mut self, inv: u64) -> (Vec<LogLine>, bool) {
        match self.state.borrow_mut().invs.remove(&inv) {
            Some(i) => (i.logs, i.truncated),
            None => (Vec::new(), false),
        }
    }
}
