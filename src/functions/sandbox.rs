//! The JavaScript sandbox: QuickJS runtimes that live on one worker thread each.
//!
//! A worker keeps one runtime per tenant (never shared between tenants) holding the
//! prelude and the modules of one deploy version, loaded from bytecode compiled at deploy
//! time. An invocation sets the runtime's memory limit and a deadline that the interrupt
//! handler enforces, calls the module's default export through the prelude's invoker, and
//! drives the returned promise: QuickJS jobs run on this thread, host calls (`ctx.db`) run
//! on the server's tokio runtime and their answers come back over a channel. The deadline
//! also bounds the waits for host answers, which the interrupt handler cannot see.
//! A runtime that timed out or ran out of memory is thrown away: its heap is suspect.
//! The pool's stop flag interrupts running JavaScript too, so a shutdown does not wait
//! for a loop's whole budget.

#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rquickjs::context::intrinsic;
use rquickjs::{
    Context, Ctx, Function, Module, Persistent, Promise, Runtime, Value, module::WriteOptions,
    promise::PromiseState,
};

use super::bundle::BundleError;

/// Native stack QuickJS may use; worker threads get far more (see `pool`).
pub const JS_STACK_BYTES: usize = 1024 * 1024;
/// Captured log output per invocation, beyond which lines are dropped.
pub const MAX_LOG_LINES: usize = 200;
pub const MAX_LOG_BYTES: usize = 32 * 1024;
const MAX_LINE_BYTES: usize = 4 * 1024;
/// Budget for evaluating a module's top level when a deploy is validated.
const VALIDATE_BUDGET: Duration = Duration::from_millis(500);
const VALIDATE_MEMORY: usize = 64 * 1024 * 1024;

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

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

/// Why an invocation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The function threw (or its promise rejected).
    Thrown {
        name: String,
        message: String,
    },
    Timeout,
    OutOfMemory,
    Internal(String),
}

impl Failure {
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::Thrown { .. } => "error",
            Failure::Timeout => "timeout",
            Failure::OutOfMemory => "out_of_memory",
            Failure::Internal(_) => "internal_error",
        }
    }

    pub fn describe(&self, limits: &Limits) -> String {
        match self {
            Failure::Thrown { name, message } if name.is_empty() => message.clone(),
            Failure::Thrown { name, message } => format!("{name}: {message}"),
            Failure::Timeout => format!(
                "the function ran past its time budget of {} ms",
                limits.timeout.as_millis()
            ),
            Failure::OutOfMemory => format!(
                "the function ran out of memory (limit {} MiB)",
                limits.memory_bytes / (1024 * 1024)
            ),
            Failure::Internal(m) => m.clone(),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

pub struct Output {
    /// The function's return value as JSON text.
    pub result: Result<String, Failure>,
    pub logs: Vec<LogLine>,
    pub logs_truncated: bool,
    /// Time spent running JavaScript (not waiting for host calls).
    pub cpu: Duration,
    /// Whether this invocation had to build a runtime or load the module.
    pub cold: bool,
}

/// An error a host call reports to JavaScript (it becomes a thrown `PlinthError`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct HostError {
    pub code: String,
    pub status: u16,
    pub message: String,
}

/// The asynchronous host calls of one invocation (`ctx.db`); implemented by the service.
pub trait Host: Send + Sync + 'static {
    fn call(
        &self,
        op: String,
        args: Vec<serde_json::Value>,
    ) -> BoxFuture<'static, Result<serde_json::Value, HostError>>;
}

/// One invocation, as a worker receives it.
pub struct Call {
    pub tenant: i64,
    pub version: i64,
    pub function: String,
    pub bytecode: Arc<[u8]>,
    pub event: String,
    pub env: Arc<str>,
    pub limits: Limits,
    pub host: Arc<dyn Host>,
}

fn envelope(r: Result<serde_json::Value, HostError>) -> String {
    let v = match r {
        Ok(v) => serde_json::json!({ "v": v }),
        Err(e) => serde_json::json!({ "e": e }),
    };
    v.to_string()
}

/// Compiles a module to bytecode and checks that it evaluates (within a budget) to a
/// module whose default export is a function. Runs in a throwaway runtime.
pub fn compile(file: &str, source: &str) -> Result<Vec<u8>, BundleError> {
    let runtime = Runtime::new().map_err(|e| BundleError::new(file, e.to_string()))?;
    runtime.set_memory_limit(VALIDATE_MEMORY);
    runtime.set_max_stack_size(JS_STACK_BYTES);
    let deadline = Instant::now() + VALIDATE_BUDGET;
    runtime.set_interrupt_handler(Some(Box::new(move || Instant::now() >= deadline)));
    super::imports::refuse_imports(&runtime);
    let context = Context::full(&runtime).map_err(|e| BundleError::new(file, e.to_string()))?;
    context.with(|ctx| {
        let declared = Module::declare(ctx.clone(), file, source)
            .map_err(|e| located(file, &ctx, e, source))?;
        let bytes = declared
            .write(WriteOptions::default())
            .map_err(|e| BundleError::new(file, e.to_string()))?;
        // Evaluate from the bytecode, as a worker will.
        // SAFETY: `bytes` was written just above by this QuickJS from checked source.
        let module = unsafe { Module::load(ctx.clone(), &bytes) }
            .map_err(|e| BundleError::new(file, e.to_string()))?;
        let (module, promise) = module.eval().map_err(|e| located(file, &ctx, e, source))?;
        // Each job gets a fresh allowance before QuickJS asks the interrupt handler again.
        while Instant::now() < deadline && ctx.execute_pending_job() {}
        if Instant::now() >= deadline {
            return Err(BundleError::new(
                file,
                format!(
                    "evaluating the module took more than {} ms",
                    VALIDATE_BUDGET.as_millis()
                ),
            ));
        }
        match promise.state() {
            PromiseState::Rejected => {
                let e = promise.result::<Value>().map(|r| r.map(|_| ()));
                if let Some(Err(err)) = e {
                    return Err(located(file, &ctx, err, source));
                }
            }
            PromiseState::Pending => {
                return Err(BundleError::new(
                    file,
                    "the module's top level awaits something that never settles",
                ));
            }
            PromiseState::Resolved => {}
        }
        match module.get::<_, Value>("default") {
            Ok(v) if v.is_function() => Ok(bytes),
            _ => Err(BundleError::new(
                file,
                "the module must `export default` a function (async (event, ctx) => ...)",
            )),
        }
    })
}

/// A compile or evaluation error with the line (and column) QuickJS reported.
fn located(file: &str, ctx: &Ctx<'_>, err: rquickjs::Error, _source: &str) -> BundleError {
    let (name, message) = match err {
        rquickjs::Error::Exception => describe_exception(&ctx.catch()),
        other => (String::new(), other.to_string()),
    };
    let text = if name.is_empty() {
        message.clone()
    } else {
        format!("{name}: {message}")
    };
    // QuickJS puts "file:line:column" of the error into the stack.
    let stack = last_stack(ctx);
    let pos = find_position(&stack, file).or_else(|| find_position(&message, file));
    match pos {
        Some((line, column)) => BundleError {
            file: file.to_string(),
            line: Some(line),
            column,
            message: text,
        },
        None => BundleError::new(file, text),
    }
}

thread_local! {
    static LAST_STACK: RefCell<String> = const { RefCell::new(String::new()) };
}

fn last_stack(_ctx: &Ctx<'_>) -> String {
    LAST_STACK.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// Finds `file:LINE(:COL)` in a stack text.
fn find_position(text: &str, file: &str) -> Option<(u32, Option<u32>)> {
    let at = text.find(&format!("{file}:"))?;
    let rest = &text[at + file.len() + 1..];
    let line: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let line: u32 = line.parse().ok()?;
    let after = &rest[rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())..];
    let column = after
        .strip_prefix(':')
        .map(|r| {
            r.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
        })
        .and_then(|c| c.parse().ok());
    Some((line, column))
}

/// Name and message of a thrown value; records its stack for `located`.
fn describe_exception(v: &Value<'_>) -> (String, String) {
    if let Some(obj) = v.as_object() {
        let name: Option<String> = obj.get("name").ok();
        let message: Option<String> = obj.get("message").ok();
        let stack: Option<String> = obj.get("stack").ok();
        if let Some(stack) = stack {
            LAST_STACK.with(|s| *s.borrow_mut() = stack);
        }
        if message.is_some() || name.is_some() {
            return (name.unwrap_or_default(), message.unwrap_or_default());
        }
    }
    if v.is_null() || v.is_undefined() {
        // QuickJS throws null when it cannot even allocate the error object.
        return ("InternalError".into(), "out of memory".into());
    }
    let text = v
        .as_string()
        .and_then(|s| s.to_string().ok())
        .or_else(|| {
            v.ctx()
                .json_stringify(v.clone())
                .ok()
                .flatten()
                .and_then(|s| s.to_string().ok())
        })
        .unwrap_or_else(|| "a non-error value was thrown".into());
    (String::new(), text)
}

/// Compiles the prelude once per process.
pub fn prelude_bytecode() -> Arc<[u8]> {
    static PRELUDE: std::sync::OnceLock<Arc<[u8]>> = std::sync::OnceLock::new();
    PRELUDE
        .get_or_init(|| {
            compile("plinth:prelude", include_str!("prelude.js"))
                .map(Arc::from)
                .unwrap_or_else(|e| panic!("the built-in prelude does not compile: {e}"))
        })
        .clone()
}

/// A message to a worker: a host call's answer, or a nudge to look at the job queue.
pub enum Msg {
    Answer { inv: u64, call: u64, text: String },
    Wake,
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
struct TenantRuntime {
    invoke: Persistent<Function<'static>>,
    /// Loaded modules by (deploy version, function): while invocations of an older
    /// version are still parked here, a newer version's calls load their own modules.
    modules: HashMap<(i64, String), Persistent<Function<'static>>>,
    context: Context,
    runtime: Runtime,
    state: Rc<RefCell<CallState>>,
    deadline: Rc<Cell<Option<Instant>>>,
    /// Set when the interrupt handler stopped JavaScript during the current entry.
    interrupted: Rc<Cell<bool>>,
    version: i64,
    last_used: Instant,
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

fn thrown((name, message): (String, String)) -> Failure {
    LAST_STACK.with(|s| s.borrow_mut().clear());
    if message == "out of memory" {
        return Failure::OutOfMemory;
    }
    Failure::Thrown { name, message }
}

enum Step {
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
            super::crypto::call(&op, &args).map_err(|message| HostError {
                code: "invalid_argument".into(),
                status: 400,
                message,
            }),
        )
    })
}

impl TenantRuntime {
    fn new(
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
        super::imports::refuse_imports(&runtime);
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
            // SAFETY: the prelude's bytecode is compiled once in this process
            // (`prelude_bytecode`) by the same QuickJS.
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
    fn start(&mut self, inv: u64, call: &Call, deadline: Instant) -> Result<Step, Failure> {
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
    fn resume(
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
    fn waiting(&self, inv: u64) -> bool {
        self.state
            .borrow()
            .invs
            .get(&inv)
            .is_some_and(|i| !i.pending.is_empty())
    }

    /// Adds a line to an invocation's captured log.
    fn note(&self, inv: u64, level: &str, message: &str) {
        if let Some(is) = self.state.borrow_mut().invs.get_mut(&inv) {
            is.log(level, message.to_string());
        }
    }

    /// Forgets an invocation; returns its captured logs.
    fn finish(&mut self, inv: u64) -> (Vec<LogLine>, bool) {
        match self.state.borrow_mut().invs.remove(&inv) {
            Some(i) => (i.logs, i.truncated),
            None => (Vec::new(), false),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    /// Answers `echo` with its arguments, anything else with an error.
    struct Echo;
    impl Host for Echo {
        fn call(
            &self,
            op: String,
            args: Vec<serde_json::Value>,
        ) -> BoxFuture<'static, Result<serde_json::Value, HostError>> {
            async move {
                if op == "db.list" {
                    // A slow host call: the invocation stays parked meanwhile.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(serde_json::json!({ "items": [] }))
                } else if op == "db.get" {
                    Ok(serde_json::json!({ "args": args }))
                } else {
                    Err(HostError {
                        code: "nope".into(),
                        status: 400,
                        message: format!("no {op}"),
                    })
                }
            }
            .boxed()
        }
    }

    fn call(src: &str, timeout_ms: u64) -> Call {
        let bytecode = compile("functions/t.js", src).expect("compiles");
        Call {
            tenant: 1,
            version: 1,
            function: "t".into(),
            bytecode: Arc::from(bytecode),
            event: r#"{"n": 2}"#.into(),
            env: Arc::from(r#"{"K":"v"}"#),
            limits: Limits {
                timeout: Duration::from_millis(timeout_ms),
                memory_bytes: 16 * 1024 * 1024,
            },
            host: Arc::new(Echo),
        }
    }

    /// Drives one invocation to its end as a worker would.
    fn run(src: &str, timeout_ms: u64) -> Output {
        run_until(src, timeout_ms, Default::default())
    }

    /// `run`, with the stop flag the pool sets at shutdown.
    fn run_until(src: &str, timeout_ms: u64, stop: Arc<AtomicBool>) -> Output {
        let rt = tokio::runtime::Runtime::new().expect("tokio");
        let (tx, rx) = mpsc::channel();
        let mut sb = Sandboxes::new(rt.handle().clone(), tx, stop, 4);
        let (reply, mut out) = tokio::sync::oneshot::channel();
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        sb.start(1, call(src, timeout_ms), deadline, reply);
        loop {
            if let Ok(o) = out.try_recv() {
                return o;
            }
            let wait = sb
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(100));
            match rx.recv_timeout(wait) {
                Ok(Msg::Answer { inv, call, text }) => sb.answer(inv, call, text),
                Ok(Msg::Wake) => {}
                Err(_) => sb.expire(Instant::now()),
            }
        }
    }

    #[test]
    fn returns_json_and_reaches_the_host() {
        let out = run(
            "export default async (event, ctx) => {
                console.log('hi', {a: 1});
                const got = await ctx.db.get('c', 'x');
                let err = null;
                try { await ctx.db.delete('c', 'x') } catch (e) { err = e.code + ':' + e.message }
                return { n: event.n * 21, env: ctx.env.K, got, err,
                         h: ctx.crypto.sha256('abc').slice(0, 8) };
            }",
            1000,
        );
        let v: serde_json::Value = serde_json::from_str(&out.result.expect("ok")).expect("json");
        assert_eq!(v["n"], 42);
        assert_eq!(v["env"], "v");
        assert_eq!(v["got"]["args"], serde_json::json!(["c", "x"]));
        assert_eq!(v["err"], "nope:no db.delete");
        assert_eq!(v["h"], "ba7816bf");
        assert_eq!(out.logs[0].message, "hi {\"a\":1}");
    }

    #[test]
    fn budgets_and_failures() {
        let out = run("export default () => { while (true) {} }", 50);
        assert_eq!(out.result, Err(Failure::Timeout));
        let out = run(
            "export default () => { const a = []; while (true) a.push('x'.repeat(1000)) }",
            5000,
        );
        assert_eq!(out.result, Err(Failure::OutOfMemory));
        let out = run(
            "export default () => { const f = () => f(); return f() }",
            5000,
        );
        assert!(
            matches!(out.result, Err(Failure::Thrown { .. })),
            "{:?}",
            out.result
        );
        // Whatever stops it at its deadline, a function that does not finish in time
        // timed out.
        let out = run("export default () => new Promise(() => {})", 100);
        assert_eq!(out.result, Err(Failure::Timeout));
        let out = run(
            "export default async (e, ctx) => { await ctx.db.get('c', 'x'); for (;;) {} }",
            100,
        );
        assert_eq!(out.result, Err(Failure::Timeout));
        let out = run("export default () => { throw new TypeError('bad') }", 5000);
        assert_eq!(
            out.result,
            Err(Failure::Thrown {
                name: "TypeError".into(),
                message: "bad".into()
            })
        );
        // No source compilation inside the sandbox: eval and Function do not work.
        let out = run("export default () => Function('return 1')()", 5000);
        assert!(
            matches!(out.result, Err(Failure::Thrown { .. })),
            "{:?}",
            out.result
        );
        let out = run("export default () => eval('1 + 1')", 5000);
        assert!(
            matches!(out.result, Err(Failure::Thrown { .. })),
            "{:?}",
            out.result
        );
    }

    #[test]
    fn the_stop_flag_interrupts_running_javascript() {
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let started = Instant::now();
        let out = run_until("export default () => { for (;;) {} }", 60_000, stop);
        let took = started.elapsed();
        let _ = stopper.join();
        assert_eq!(
            out.result,
            Err(Failure::Internal("the server is shutting down".into()))
        );
        assert!(took < Duration::from_secs(30), "{took:?}");
    }

    #[test]
    fn a_new_version_runs_its_own_module_while_an_old_one_is_parked() {
        let rt = tokio::runtime::Runtime::new().expect("tokio");
        let (tx, rx) = mpsc::channel();
        let mut sb = Sandboxes::new(rt.handle().clone(), tx, Default::default(), 4);
        let mut old = call(
            "export default async (e, ctx) => { await ctx.db.list('x', {}); return 'v1' }",
            5000,
        );
        old.version = 1;
        let mut new = call("export default () => 'v2'", 5000);
        new.version = 2;
        let (r1, mut o1) = tokio::sync::oneshot::channel();
        let (r2, mut o2) = tokio::sync::oneshot::channel();
        let deadline = Instant::now() + Duration::from_secs(5);
        sb.start(1, old, deadline, r1);
        assert_eq!(sb.parked(), 1);
        sb.start(2, new, deadline, r2);
        let second = o2.try_recv().expect("v2 answers at once");
        assert_eq!(second.result, Ok("\"v2\"".into()));
        let first = loop {
            if let Ok(o) = o1.try_recv() {
                break o;
            }
            match rx.recv_timeout(Duration::from_secs(5)).expect("an answer") {
                Msg::Answer { inv, call, text } => sb.answer(inv, call, text),
                Msg::Wake => {}
            }
        };
        assert_eq!(first.result, Ok("\"v1\"".into()));
    }

    #[test]
    fn imports_reject() {
        let out = run(
            "export default async () => { try { await import('plinth:prelude'); return 'loaded' } \
             catch (e) { return e.name + ': ' + e.message } }",
            1000,
        );
        let text = out.result.expect("ok");
        assert!(
            text.contains("TypeError: imports are not supported"),
            "{text}"
        );
        let e = compile(
            "functions/a.js",
            "import b from './b.js';\nexport default b",
        )
        .unwrap_err();
        assert!(e.message.contains("imports are not supported"), "{e}");
    }

    #[test]
    fn compile_errors_carry_file_and_line() {
        let e = compile("functions/bad.js", "export default () => {\n  let x = ;\n}").unwrap_err();
        assert_eq!(e.file, "functions/bad.js");
        assert_eq!(e.line, Some(2), "{e}");
        let e = compile("functions/nodefault.js", "export const x = 1").unwrap_err();
        assert!(e.message.contains("export default"));
    }
}
