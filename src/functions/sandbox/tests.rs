//! The sandbox driven as a worker drives it: results, budgets, failures, versions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::*;

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
