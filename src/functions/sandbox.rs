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

#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
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
    let context = Context::full(&runtime).map_err(|e| BundleError::new(file, e.to_string()))?;
    context.with(|ctx| {
        let declared = Module::declare(ctx.clone(), file, source)
            .map_err(|e| located(file, &ctx, e, source))?;
        let bytes = declared
            .write(WriteOptions::default())
            .map_err(|e| BundleError::new(file, e.to_string()))?;
        // Evaluate from the bytecode, as a worker will.
        let module = unsafe { Module::load(ctx.clone(), &bytes) }
            .map_err(|e| BundleError::new(file, e.to_string()))?;
        let (module, promise) = module.eval().map_err(|e| located(file, &ctx, e, source))?;
        while ctx.execute_pending_job() {}
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

/// Per-invocation state the host bridges reach.
struct CallState {
    pending: HashMap<u64, Persistent<Function<'static>>>,
    next_id: u64,
    tx: Option<mpsc::Sender<(u64, String)>>,
    host: Option<Arc<dyn Host>>,
    handle: tokio::runtime::Handle,
    logs: Vec<LogLine>,
    log_bytes: usize,
    truncated: bool,
}

impl CallState {
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

/// One tenant's runtime on one worker, for one deploy version. Field order is drop
/// order: JS handles before the context, the context before the runtime, and the
/// bytecode (which loaded modules point into) last.
struct TenantRuntime {
    invoke: Persistent<Function<'static>>,
    modules: HashMap<String, Persistent<Function<'static>>>,
    context: Context,
    runtime: Runtime,
    state: Rc<RefCell<CallState>>,
    deadline: Rc<Cell<Option<Instant>>>,
    version: i64,
    last_used: Instant,
    bytecode: Vec<Arc<[u8]>>,
}

impl Drop for TenantRuntime {
    fn drop(&mut self) {
        // Persistent handles must go before the runtime does.
        self.state.borrow_mut().pending.clear();
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

impl TenantRuntime {
    fn new(
        version: i64,
        prelude: &Arc<[u8]>,
        handle: tokio::runtime::Handle,
    ) -> Result<TenantRuntime, Failure> {
        let internal = |e: rquickjs::Error| Failure::Internal(e.to_string());
        let runtime = Runtime::new().map_err(internal)?;
        runtime.set_max_stack_size(JS_STACK_BYTES);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let d = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            d.get().is_some_and(|d| Instant::now() >= d)
        })));
        let context = Context::custom::<SandboxIntrinsics>(&runtime).map_err(internal)?;
        let state = Rc::new(RefCell::new(CallState {
            pending: HashMap::new(),
            next_id: 0,
            tx: None,
            host: None,
            handle,
            logs: Vec::new(),
            log_bytes: 0,
            truncated: false,
        }));
        let invoke = context.with(|ctx| -> Result<_, Failure> {
            let err = |e| js_err(&ctx, e);
            let host = host_bridge(&ctx, state.clone()).map_err(err)?;
            let host_sync = host_sync_bridge(&ctx, state.clone()).map_err(err)?;
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
            version,
            last_used: Instant::now(),
            bytecode: vec![prelude.clone()],
        })
    }

    /// Runs one invocation to completion (or failure).
    fn run(&mut self, call: &Call) -> (Result<String, Failure>, Duration, bool) {
        self.last_used = Instant::now();
        self.runtime.set_memory_limit(call.limits.memory_bytes);
        let start = Instant::now();
        let deadline = start + call.limits.timeout;
        self.deadline.set(Some(deadline));
        let (tx, rx) = mpsc::channel();
        {
            let mut st = self.state.borrow_mut();
            st.tx = Some(tx);
            st.host = Some(call.host.clone());
            st.pending.clear();
        }
        let mut cpu = Duration::ZERO;
        let cold = !self.modules.contains_key(&call.function);

        // Start: load the module if needed, call the invoker, run the jobs this queued.
        let t = Instant::now();
        let started = self.context.with(|ctx| -> Result<Step, Failure> {
            let f = match self.modules.get(&call.function) {
                Some(p) => p.clone().restore(&ctx).map_err(|e| js_err(&ctx, e))?,
                None => {
                    let f = load_module(&ctx, &call.bytecode)?;
                    self.modules
                        .insert(call.function.clone(), Persistent::save(&ctx, f.clone()));
                    self.bytecode.push(call.bytecode.clone());
                    f
                }
            };
            let invoke = self
                .invoke
                .clone()
                .restore(&ctx)
                .map_err(|e| js_err(&ctx, e))?;
            let promise: Promise = invoke
                .call((f, call.event.as_str(), &*call.env))
                .map_err(|e| js_err(&ctx, e))?;
            settle(&ctx, promise)
        });
        cpu += t.elapsed();

        let mut step = started;
        let result = loop {
            match step {
                Err(f) => break Err(f),
                Ok(Step::Done(s)) => break Ok(s),
                Ok(Step::Pending(promise)) => {
                    if Instant::now() >= deadline {
                        break Err(Failure::Timeout);
                    }
                    if self.state.borrow().pending.is_empty() {
                        break Err(Failure::Thrown {
                            name: "Error".into(),
                            message: "the function's promise never settles (it awaits \
                                      nothing that can finish)"
                                .into(),
                        });
                    }
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let (id, answer) = match rx.recv_timeout(remaining) {
                        Ok(x) => x,
                        Err(_) => break Err(Failure::Timeout),
                    };
                    let t = Instant::now();
                    step = self.context.with(|ctx| -> Result<Step, Failure> {
                        let resolve = self.state.borrow_mut().pending.remove(&id);
                        if let Some(resolve) = resolve {
                            let resolve = resolve.restore(&ctx).map_err(|e| js_err(&ctx, e))?;
                            resolve
                                .call::<_, ()>((answer,))
                                .map_err(|e| js_err(&ctx, e))?;
                        }
                        let promise = promise.restore(&ctx).map_err(|e| js_err(&ctx, e))?;
                        settle(&ctx, promise)
                    });
                    cpu += t.elapsed();
                }
            }
        };
        // The interrupt surfaces as an ordinary exception; the deadline says what it was.
        let result = match result {
            Err(Failure::Thrown { .. }) | Err(Failure::Internal(_))
                if Instant::now() >= deadline =>
            {
                Err(Failure::Timeout)
            }
            other => other,
        };
        self.deadline.set(None);
        let mut st = self.state.borrow_mut();
        st.pending.clear();
        st.tx = None;
        st.host = None;
        (result, cpu, cold)
    }

    fn take_logs(&self) -> (Vec<LogLine>, bool) {
        let mut st = self.state.borrow_mut();
        st.log_bytes = 0;
        (
            std::mem::take(&mut st.logs),
            std::mem::replace(&mut st.truncated, false),
        )
    }
}

enum Step {
    Done(String),
    Pending(Persistent<Promise<'static>>),
}

/// Runs queued jobs, then reports the promise's state.
fn settle<'js>(ctx: &Ctx<'js>, promise: Promise<'js>) -> Result<Step, Failure> {
    while ctx.execute_pending_job() {}
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

fn load_module<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> Result<Function<'js>, Failure> {
    // SAFETY: bytecode only ever comes from `compile` in this process (deploys are
    // compiled when they are loaded, never read back from storage as bytecode).
    let module = unsafe { Module::load(ctx.clone(), bytecode) }.map_err(|e| js_err(ctx, e))?;
    let (module, promise) = module.eval().map_err(|e| js_err(ctx, e))?;
    while ctx.execute_pending_job() {}
    if let PromiseState::Rejected = promise.state()
        && let Some(Err(e)) = promise.result::<Value>()
    {
        return Err(js_err(ctx, e));
    }
    module
        .get::<_, Function>("default")
        .map_err(|_| Failure::Internal("the module has no default export function".into()))
}

/// `host(op, argsJson)`: starts an asynchronous host call; returns a promise of the
/// answer envelope.
fn host_bridge<'js>(
    ctx: &Ctx<'js>,
    state: Rc<RefCell<CallState>>,
) -> rquickjs::Result<Function<'js>> {
    Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>, op: String, args: String| -> rquickjs::Result<Promise<'js>> {
            let (promise, resolve, _reject) = ctx.promise()?;
            let mut st = state.borrow_mut();
            let (Some(tx), Some(host)) = (st.tx.clone(), st.host.clone()) else {
                return Err(rquickjs::Exception::throw_message(
                    &ctx,
                    "ctx.db can only be used while the function runs",
                ));
            };
            let id = st.next_id;
            st.next_id += 1;
            st.pending.insert(id, Persistent::save(&ctx, resolve));
            let args: Vec<serde_json::Value> = serde_json::from_str(&args).unwrap_or_default();
            st.handle.spawn(async move {
                let answer = envelope(host.call(op, args).await);
                let _ = tx.send((id, answer));
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
            state.borrow_mut().log(level, message);
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

/// The runtimes of one worker thread, by tenant.
pub struct Sandboxes {
    tenants: HashMap<i64, TenantRuntime>,
    prelude: Arc<[u8]>,
    handle: tokio::runtime::Handle,
    max_tenants: usize,
}

impl Sandboxes {
    pub fn new(handle: tokio::runtime::Handle, max_tenants: usize) -> Sandboxes {
        Sandboxes {
            tenants: HashMap::new(),
            prelude: prelude_bytecode(),
            handle,
            max_tenants: max_tenants.max(1),
        }
    }

    pub fn run(&mut self, call: &Call) -> Output {
        let mut cold = false;
        if self
            .tenants
            .get(&call.tenant)
            .is_some_and(|t| t.version != call.version)
        {
            self.tenants.remove(&call.tenant);
        }
        if !self.tenants.contains_key(&call.tenant) {
            if self.tenants.len() >= self.max_tenants {
                self.evict_idlest();
            }
            match TenantRuntime::new(call.version, &self.prelude, self.handle.clone()) {
                Ok(t) => {
                    self.tenants.insert(call.tenant, t);
                    cold = true;
                }
                Err(f) => {
                    return Output {
                        result: Err(f),
                        logs: Vec::new(),
                        logs_truncated: false,
                        cpu: Duration::ZERO,
                        cold: true,
                    };
                }
            }
        }
        let Some(rt) = self.tenants.get_mut(&call.tenant) else {
            return Output {
                result: Err(Failure::Internal("no runtime".into())),
                logs: Vec::new(),
                logs_truncated: false,
                cpu: Duration::ZERO,
                cold: true,
            };
        };
        let (result, cpu, loaded) = rt.run(call);
        let (logs, logs_truncated) = rt.take_logs();
        if matches!(
            result,
            Err(Failure::Timeout | Failure::OutOfMemory | Failure::Internal(_))
        ) {
            self.tenants.remove(&call.tenant);
        }
        Output {
            result,
            logs,
            logs_truncated,
            cpu,
            cold: cold || loaded,
        }
    }

    fn evict_idlest(&mut self) {
        if let Some(id) = self
            .tenants
            .iter()
            .min_by_key(|(_, t)| t.last_used)
            .map(|(id, _)| *id)
        {
            self.tenants.remove(&id);
        }
    }

    /// Drops runtimes unused for `idle`.
    pub fn sweep(&mut self, idle: Duration) {
        self.tenants.retain(|_, t| t.last_used.elapsed() < idle);
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
                if op == "db.get" {
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

    fn run(src: &str, timeout_ms: u64) -> Output {
        let rt = tokio::runtime::Runtime::new().expect("tokio");
        let mut sb = Sandboxes::new(rt.handle().clone(), 4);
        sb.run(&call(src, timeout_ms))
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
        let out = run("export default () => new Promise(() => {})", 5000);
        assert!(
            matches!(out.result, Err(Failure::Thrown { .. })),
            "{:?}",
            out.result
        );
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
    fn compile_errors_carry_file_and_line() {
        let e = compile("functions/bad.js", "export default () => {\n  let x = ;\n}").unwrap_err();
        assert_eq!(e.file, "functions/bad.js");
        assert_eq!(e.line, Some(2), "{e}");
        let e = compile("functions/nodefault.js", "export const x = 1").unwrap_err();
        assert!(e.message.contains("export default"));
    }
}
