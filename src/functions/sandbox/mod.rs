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

mod compile;
mod late_alloc;
mod runtime;
mod scheduler;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use compile::{compile, prelude_bytecode};
pub use scheduler::Sandboxes;

/// Native stack QuickJS may use; worker threads get far more (see `pool`).
pub const JS_STACK_BYTES: usize = 1024 * 1024;
/// Captured log output per invocation, beyond which lines are dropped.
pub const MAX_LOG_LINES: usize = 200;
pub const MAX_LOG_BYTES: usize = 32 * 1024;

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

/// A message to a worker: a host call's answer, or a nudge to look at the job queue.
pub enum Msg {
    Answer { inv: u64, call: u64, text: String },
    Wake,
}
