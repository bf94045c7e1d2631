//! Deploy-time compilation: a module to bytecode (checked to evaluate to a default
//! export), the prelude once per process, and compile errors located at file:line.

#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::{Context, Ctx, Module, Runtime, Value, module::WriteOptions, promise::PromiseState};

use super::JS_STACK_BYTES;
use crate::functions::bundle::BundleError;

/// Budget for evaluating a module's top level when a deploy is validated.
const VALIDATE_BUDGET: Duration = Duration::from_millis(500);
const VALIDATE_MEMORY: usize = 64 * 1024 * 1024;

/// Compiles a module to bytecode and checks that it evaluates (within a budget) to a
/// module whose default export is a function. Runs in a throwaway runtime.
pub fn compile(file: &str, source: &str) -> Result<Vec<u8>, BundleError> {
    let runtime = Runtime::new().map_err(|e| BundleError::new(file, e.to_string()))?;
    runtime.set_memory_limit(VALIDATE_MEMORY);
    runtime.set_max_stack_size(JS_STACK_BYTES);
    let deadline = Instant::now() + VALIDATE_BUDGET;
    runtime.set_interrupt_handler(Some(Box::new(move || Instant::now() >= deadline)));
    crate::functions::imports::refuse_imports(&runtime);
    let context = Context::full(&runtime).map_err(|e| BundleError::new(file, e.to_string()))?;
    context.with(|ctx| {
        let declared =
            Module::declare(ctx.clone(), file, source).map_err(|e| located(file, &ctx, e))?;
        let bytes = declared
            .write(WriteOptions::default())
            .map_err(|e| BundleError::new(file, e.to_string()))?;
        // Evaluate from the bytecode, as a worker will.
        // SAFETY: `bytes` was written by QuickJS itself just above, in this runtime.
        let module = unsafe { Module::load(ctx.clone(), &bytes) }
            .map_err(|e| BundleError::new(file, e.to_string()))?;
        let (module, promise) = module.eval().map_err(|e| located(file, &ctx, e))?;
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
                    return Err(located(file, &ctx, err));
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
fn located(file: &str, ctx: &Ctx<'_>, err: rquickjs::Error) -> BundleError {
    let Exception {
        name,
        message,
        stack,
    } = match err {
        rquickjs::Error::Exception => describe_exception(&ctx.catch()),
        other => Exception {
            name: String::new(),
            message: other.to_string(),
            stack: None,
        },
    };
    let text = if name.is_empty() {
        message.clone()
    } else {
        format!("{name}: {message}")
    };
    // QuickJS puts "file:line:column" of the error into the stack.
    let pos = stack
        .and_then(|s| find_position(&s, file))
        .or_else(|| find_position(&message, file));
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

/// A thrown value as Rust sees it.
pub(super) struct Exception {
    pub name: String,
    pub message: String,
    /// Where QuickJS recorded one: the stack, which holds "file:line:column".
    pub stack: Option<String>,
}

/// Name, message and stack of a thrown value.
pub(super) fn describe_exception(v: &Value<'_>) -> Exception {
    let plain = |name: &str, message: String| Exception {
        name: name.into(),
        message,
        stack: None,
    };
    if let Some(obj) = v.as_object() {
        let name: Option<String> = obj.get("name").ok();
        let message: Option<String> = obj.get("message").ok();
        if message.is_some() || name.is_some() {
            return Exception {
                name: name.unwrap_or_default(),
                message: message.unwrap_or_default(),
                stack: obj.get("stack").ok(),
            };
        }
    }
    if v.is_null() || v.is_undefined() {
        // QuickJS throws null when it cannot even allocate the error object.
        return plain("InternalError", "out of memory".into());
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
    plain("", text)
}

/// Compiles the prelude once per process.
pub fn prelude_bytecode() -> Arc<[u8]> {
    static PRELUDE: std::sync::OnceLock<Arc<[u8]>> = std::sync::OnceLock::new();
    PRELUDE
        .get_or_init(|| {
            compile("plinth:prelude", include_str!("../prelude.js"))
                .map(Arc::from)
                .unwrap_or_else(|e| panic!("the built-in prelude does not compile: {e}"))
        })
        .clone()
}
