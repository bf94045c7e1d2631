//! A small HTTP/1.1 load generator: N keep-alive connections send one request template as
//! fast as the server answers, for a bounded time and count, and report requests per
//! second and latency percentiles as one JSON line.
//!
//! ```text
//! cargo bench --bench load -- --addr 127.0.0.1:8080 --method POST \
//!   --path /v1/t/bench/collections/notes/docs --header 'authorization: Bearer …' \
//!   --body '{"owner":"{uid}","title":"t{n}"}' --connections 16 --seconds 10
//! ```
//! Placeholders in path and body: `{n}` a per-request counter, `{id}` a random line of
//! `--ids FILE`, `{uid}` the `--uid` value. A line of the ids file may carry a second,
//! space-separated column: `{tok}` in a header value is replaced by it, from the same line
//! as the request's `{id}` (so each document can be read with its owner's token). Only
//! loopback targets are accepted.
//!
//! `--targets FILE` spreads the requests over several paths and header sets (several
//! tenants, each with its key). One target a line, tab-separated: the path template, then
//! any number of `name: value` headers; empty lines and lines starting with `#` are
//! skipped:
//!
//! ```text
//! /v1/t/shop-1/collections/notes/docs<TAB>authorization: Bearer plk_…
//! /v1/t/shop-2/collections/notes/docs<TAB>authorization: Bearer plk_…
//! ```
//!
//! A target's path replaces `--path` and its headers replace the `--header`s of the same
//! name (the others, e.g. content-type, still apply). `--targets-by request` (the default)
//! sends request n to target n mod the count, round-robin over every connection's
//! requests; `--targets-by connection` pins connection c to target c mod the count (with
//! fewer connections than targets, the last targets get nothing). The output line is the
//! same with or without targets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One line of `--targets FILE`.
struct Target {
    path: String,
    headers: Vec<(String, String)>,
}

struct Args {
    addr: SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    connections: usize,
    seconds: u64,
    max_requests: u64,
    ids: Vec<String>,
    uid: String,
    label: String,
    expect: u16,
    targets: Vec<Target>,
    targets_by_connection: bool,
}

fn parse_header(h: &str) -> (String, String) {
    let (k, v) = h
        .split_once(':')
        .unwrap_or_else(|| panic!("header '{h}': expected 'name: value'"));
    (k.trim().to_string(), v.trim().to_string())
}

fn read_targets(path: &str) -> Vec<Target> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let targets: Vec<Target> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut cols = line.split('\t');
            let path = cols.next().unwrap_or_default().trim().to_string();
            assert!(
                path.starts_with('/'),
                "{path}: a target's first column is a path starting with /"
            );
            let headers = cols
                .filter(|c| !c.trim().is_empty())
                .map(parse_header)
                .collect();
            Target { path, headers }
        })
        .collect();
    assert!(!targets.is_empty(), "{path}: no targets");
    targets
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8080".parse().expect("addr"),
        method: "GET".into(),
        path: "/healthz".into(),
        headers: Vec::new(),
        body: None,
        connections: 16,
        seconds: 10,
        max_requests: 5_000_000,
        ids: Vec::new(),
        uid: String::new(),
        label: "run".into(),
        expect: 0,
        targets: Vec::new(),
        targets_by_connection: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val().parse().expect("--addr host:port"),
            "--method" => a.method = val(),
            "--path" => a.path = val(),
            "--header" => a.headers.push(parse_header(&val())),
            "--body" => a.body = Some(val()),
            "--connections" => a.connections = val().parse().expect("number"),
            "--seconds" => a.seconds = val().parse().expect("number"),
            "--max-requests" => a.max_requests = val().parse().expect("number"),
            "--ids" => {
                let path = val();
                a.ids = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{path}: {e}"))
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "--targets" => a.targets = read_targets(&val()),
            "--targets-by" => {
                a.targets_by_connection = match val().as_str() {
                    "request" => false,
                    "connection" => true,
                    other => panic!("--targets-by request|connection, not {other}"),
                }
            }
            "--uid" => a.uid = val(),
            "--label" => a.label = val(),
            "--expect" => a.expect = val().parse().expect("status"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        a.addr.ip().is_loopback(),
        "load is only ever sent to loopback"
    );
    a
}

/// One request's line of the ids file: the id, and the token of its second column.
fn pick<'a>(args: &'a Args, rng: &mut u64) -> (&'a str, &'a str) {
    if args.ids.is_empty() {
        return ("", "");
    }
    // xorshift: cheap, good enough to spread reads over the ids.
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let line = &args.ids[(*rng % args.ids.len() as u64) as usize];
    line.split_once(' ').unwrap_or((line.as_str(), ""))
}

/// The target of request `n` on connection `c`, if `--targets` was given.
fn target_of(args: &Args, c: usize, n: u64) -> Option<&Target> {
    if args.targets.is_empty() {
        return None;
    }
    let i = if args.targets_by_connection {
        c % args.targets.len()
    } else {
        (n % args.targets.len() as u64) as usize
    };
    Some(&args.targets[i])
}

/// The request: `--header`s, except those the target sets itself, then the target's.
fn request(
    args: &Args,
    target: Option<&Target>,
    path: String,
    body: String,
    token: &str,
) -> hyper::Request<Full<Bytes>> {
    let mut req = hyper::Request::builder()
        .method(args.method.as_str())
        .uri(path)
        .header("host", args.addr.to_string());
    let own = target.map_or(&[][..], |t| t.headers.as_slice());
    let common = args
        .headers
        .iter()
        .filter(|(k, _)| !own.iter().any(|(o, _)| o.eq_ignore_ascii_case(k)));
    for (k, v) in common.chain(own) {
        if v.contains("{tok}") {
            req = req.header(k, v.replace("{tok}", token));
        } else {
            req = req.header(k, v);
        }
    }
    req.body(Full::new(Bytes::from(body))).expect("request")
}

fn fill(template: &str, n: u64, args: &Args, id: &str) -> String {
    template
        .replace("{n}", &n.to_string())
        .replace("{uid}", &args.uid)
        .replace("{id}", id)
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let args = args.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(args.addr).await.expect("connect");
            stream.set_nodelay(true).ok();
            let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if n >= args.max_requests {
                    break;
                }
                let (id, token) = pick(&args, &mut rng);
                let target = target_of(&args, c, n);
                let path = fill(target.map_or(&args.path, |t| &t.path), n, &args, id);
                let body = args
                    .body
                    .as_ref()
                    .map(|b| fill(b, n, &args, id))
                    .unwrap_or_default();
                let req = request(&args, target, path, body, token);
                let start = Instant::now();
                match sender.send_request(req).await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let _ = res.into_body().collect().await;
                        latencies.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        *statuses.entry(status).or_default() += 1;
                        if args.expect != 0 && status != args.expect {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors, statuses)
        }));
    }
    let started = Instant::now();
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for t in tasks {
        let (l, e, s) = t.await.expect("task");
        all.extend(l);
        errors += e;
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = started
        .elapsed()
        .as_secs_f64()
        .min(args.seconds as f64)
        .max(0.001);
    all.sort_unstable();
    let pct = |p: f64| -> u32 {
        if all.is_empty() {
            0
        } else {
            all[((all.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    let statuses = statuses
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "{{\"label\":\"{}\",\"connections\":{},\"requests\":{},\"errors\":{},\"rps\":{:.0},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"statuses\":{{{}}}}}",
        args.label,
        args.connections,
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0),
        statuses
    );
}
