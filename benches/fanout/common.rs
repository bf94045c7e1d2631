//! Shared by `ws_fanout.rs` (Plinth, WebSocket) and `sse_fanout.rs` (PocketBase, SSE): flags,
//! the three measurements, the HTTP write client, statistics and the JSON output. Each binary
//! supplies a [`Protocol`]: how one subscriber connects and subscribes, how its events read,
//! and which HTTP request writes document `n`.
//!
//! Modes (`--mode`), one JSON line per measurement on standard output:
//! - `latency`: N subscribers; one writer makes `--writes` writes one at a time, each waiting
//!   until every subscriber has it (at most `--write-timeout-ms`). Latency of a delivery =
//!   the subscriber's receive time − the time the write request was sent. Also per write:
//!   `fanout_span` (percentiles over writes of each write's slowest delivery) and
//!   `slowest_writes` ([write number, µs] of the five slowest), which tell a uniformly slow
//!   fan-out from a few slow writes.
//! - `throughput`: N subscribers (default 100); `--writers` keep-alive connections write as
//!   fast as the server answers for `--seconds`; events delivered inside that window per
//!   second, in total and per subscriber, and write requests per second.
//! - `idle`: N subscribed connections (default 10,000) that then stay idle; the server's
//!   resident memory (`--pid`) before and after, and the growth per connection.
//!
//! Only loopback targets are accepted. Subscribers spread over the source addresses
//! 127.0.0.1, 127.0.0.2, … (`--per-ip` each) so per-IP connection limits and the ephemeral
//! port range of one address do not cap the count.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};

/// One subscriber's connect-and-subscribe handshake may take this long once it started.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long stopped subscribers get to finish before they are abandoned.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Error kinds are map keys in the output; long messages would make them unique.
const MAX_KIND_LEN: usize = 120;

// ------------------------------------------------------------------ clock

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the process started. The writer stores it in the document (`t_us`)
/// just before sending the request, and subscribers subtract it from the same clock when the
/// event arrives: both ends live in this process, so one monotonic clock serves both.
pub fn now_us() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

// ------------------------------------------------------------------ protocol interface

/// What a subscriber read from its connection.
pub enum Event {
    /// A change of a document this bench wrote: its `n` and `t_us`, and the change's `seq`
    /// when the protocol has one.
    Change { n: u64, t_us: u64, seq: Option<u64> },
    /// Harmless traffic (`pong`, control frames).
    Ignored,
    /// A message the bench did not expect (an `error`, a `resync`, an unknown type…), by kind.
    Unexpected(String),
    /// The connection ended, and why.
    Closed(String),
}

/// The data of a document this bench wrote: `{"n": …, "t_us": …}`. Numbers are read as
/// `f64` because PocketBase stores number fields as floats.
#[derive(Deserialize)]
pub struct Stamp {
    pub n: Option<f64>,
    pub t_us: Option<f64>,
}

impl Stamp {
    /// The [`Event::Change`] this data stands for, or why it is not one of ours.
    pub fn to_event(&self, seq: Option<u64>) -> Event {
        match (self.n.and_then(as_count), self.t_us.and_then(as_count)) {
            (Some(n), Some(t_us)) => Event::Change { n, t_us, seq },
            _ => Event::Unexpected("change without numeric n and t_us".into()),
        }
    }
}

fn as_count(x: f64) -> Option<u64> {
    (x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 9.0e15).then_some(x as u64)
}

/// A server's realtime protocol, as seen by the bench.
pub trait Protocol: Send + Sync + 'static {
    type Conn: Subscription;
    /// Connects from `source`, subscribes to the collection, and returns once the server has
    /// confirmed the subscription (changes written after that must arrive).
    fn subscribe(&self, source: IpAddr) -> impl Future<Output = Result<Self::Conn, String>> + Send;
    /// The request that writes document `n` of measurement `round` (ids stay unique across
    /// measurements, so every write is a create on both servers).
    fn write_request(&self, round: u32, n: u64, t_us: u64) -> hyper::Request<Full<Bytes>>;
    /// Whether a write's HTTP status means it was stored.
    fn write_ok(&self, status: u16) -> bool;
}

/// One subscribed connection.
pub trait Subscription: Send + 'static {
    /// The next event. Must be cancel-safe: it is raced against the stop signal.
    fn next_event(&mut self) -> impl Future<Output = Event> + Send;
}

// ------------------------------------------------------------------ flags

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Latency,
    Throughput,
    Idle,
}

pub struct Args {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub subscribers: Vec<usize>,
    pub writes: u64,
    pub write_timeout: Duration,
    pub seconds: u64,
    pub writers: usize,
    pub max_writes: u64,
    pub drain: Duration,
    pub pid: Option<u32>,
    pub hold: Duration,
    pub warmup: usize,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    pub per_ip: usize,
    pub collection: String,
    pub tenant: String,
    pub token: String,
    pub label: String,
    pub server: String,
}

/// Parses the flags (see the module comment); `server` names the server in the output.
pub fn parse_args(server: &str) -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8080".parse().expect("addr"),
        mode: Mode::Latency,
        subscribers: Vec::new(),
        writes: 100,
        write_timeout: Duration::from_millis(5000),
        seconds: 10,
        writers: 4,
        max_writes: 1_000_000,
        drain: Duration::from_secs(10),
        pid: None,
        hold: Duration::from_secs(5),
        warmup: 50,
        connect_concurrency: 64,
        connect_timeout: Duration::from_secs(180),
        per_ip: 500,
        collection: "feed".into(),
        tenant: String::new(),
        token: String::new(),
        label: String::new(),
        server: server.into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val().parse().expect("--addr host:port"),
            "--mode" => {
                a.mode = match val().as_str() {
                    "latency" => Mode::Latency,
                    "throughput" => Mode::Throughput,
                    "idle" => Mode::Idle,
                    other => panic!("--mode latency|throughput|idle, not {other}"),
                }
            }
            "--subscribers" => {
                a.subscribers = val()
                    .split(',')
                    .map(|s| s.trim().parse().expect("--subscribers 100,1000,10000"))
                    .collect()
            }
            "--writes" => a.writes = val().parse().expect("number"),
            "--write-timeout-ms" => a.write_timeout = Duration::from_millis(num(val())),
            "--seconds" => a.seconds = val().parse().expect("number"),
            "--writers" => a.writers = val().parse().expect("number"),
            "--max-writes" => a.max_writes = val().parse().expect("number"),
            "--drain-secs" => a.drain = Duration::from_secs(num(val())),
            "--pid" => a.pid = Some(val().parse().expect("pid")),
            "--hold-secs" => a.hold = Duration::from_secs(num(val())),
            "--warmup" => a.warmup = val().parse().expect("number"),
            "--connect-concurrency" => a.connect_concurrency = val().parse().expect("number"),
            "--connect-timeout-secs" => a.connect_timeout = Duration::from_secs(num(val())),
            "--per-ip" => a.per_ip = val().parse().expect("number"),
            "--collection" => a.collection = val(),
            "--tenant" => a.tenant = val(),
            "--token" => a.token = val(),
            "--label" => a.label = val(),
            "--server" => a.server = val(),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        a.addr.ip().is_loopback(),
        "realtime load is only ever sent to loopback"
    );
    assert!(!a.token.is_empty(), "--token is required");
    if a.subscribers.is_empty() {
        a.subscribers = match a.mode {
            Mode::Latency => vec![100, 1000, 10_000],
            Mode::Throughput => vec![100],
            Mode::Idle => vec![10_000],
        };
    }
    assert!(
        a.subscribers.iter().all(|&n| (1..=100_000).contains(&n)),
        "--subscribers: 1 to 100000 each"
    );
    assert!((1..=100_000).contains(&a.writes), "--writes: 1 to 100000");
    assert!(
        (1..=10_000_000).contains(&a.max_writes),
        "--max-writes: 1 to 10^7"
    );
    assert!((1..=3600).contains(&a.seconds), "--seconds: 1 to 3600");
    assert!((1..=1024).contains(&a.writers), "--writers: 1 to 1024");
    assert!(a.connect_concurrency >= 1 && a.per_ip >= 1);
    assert!(
        a.mode != Mode::Idle || a.pid.is_some(),
        "--mode idle needs --pid of the server"
    );
    if a.label.is_empty() {
        a.label = format!("{:?}", a.mode).to_lowercase();
    }
    a
}

fn num(s: String) -> u64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s}"))
}

// ------------------------------------------------------------------ networking helpers

/// The source address of subscriber `i`: 127.0.0.1 for the first `per_ip`, then
/// 127.0.0.2, … (all of 127/8 is loopback on Linux). IPv6 has a single loopback address.
pub fn source_addr(args: &Args, i: usize) -> IpAddr {
    match args.addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            1 + ((i / args.per_ip) % 250) as u8,
        )),
        ip => ip,
    }
}

/// A TCP connection from `source` to the (loopback) server.
pub async fn connect_tcp(addr: SocketAddr, source: IpAddr) -> Result<TcpStream, String> {
    assert!(addr.ip().is_loopback() && source.is_loopback());
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| kind("socket", e))?;
    // Earlier measurements leave thousands of ports of this address in TIME_WAIT; without
    // SO_REUSEADDR, binding before connecting could not pick them again.
    socket.set_reuseaddr(true).map_err(|e| kind("socket", e))?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| kind("bind", e))?;
    let stream = socket.connect(addr).await.map_err(|e| kind("connect", e))?;
    stream.set_nodelay(true).ok();
    Ok(stream)
}

/// A short error kind for the output's error maps.
pub fn kind(context: &str, e: impl std::fmt::Display) -> String {
    let mut s = format!("{context}: {e}");
    if s.len() > MAX_KIND_LEN {
        let mut cut = MAX_KIND_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// A keep-alive HTTP/1.1 connection (as in `load.rs`), one request at a time.
pub struct HttpConn {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> Result<Self, String> {
        assert!(addr.ip().is_loopback());
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| kind("connect", e))?;
        stream.set_nodelay(true).ok();
        Self::handshake(stream).await
    }

    /// HTTP/1.1 over an established connection.
    pub async fn handshake(stream: TcpStream) -> Result<Self, String> {
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| kind("handshake", e))?;
        tokio::spawn(conn);
        Ok(HttpConn { sender })
    }

    /// Sends one request and reads the whole answer: (status, body).
    pub async fn send(&mut self, req: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), String> {
        self.sender.ready().await.map_err(|e| kind("http", e))?;
        let res = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| kind("http", e))?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| kind("http body", e))?
            .to_bytes();
        Ok((status, body))
    }
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| kind(&format!("/proc/{pid}/status"), e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// CPU time (user + system) of a process so far, in seconds. `/proc/PID/stat` counts in
/// USER_HZ, which is 100 on Linux.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU use of the bench itself and of the server over one phase, in % of one core: a client
/// near 100% means the figure is bounded by the load generator, not the server.
struct CpuMeter {
    started: Instant,
    client: Option<f64>,
    server: Option<f64>,
    pid: Option<u32>,
}

impl CpuMeter {
    fn start(pid: Option<u32>) -> Self {
        CpuMeter {
            started: Instant::now(),
            client: cpu_secs("self"),
            server: pid.and_then(|p| cpu_secs(&p.to_string())),
            pid,
        }
    }

    fn finish(&self) -> Value {
        let wall = self.started.elapsed().as_secs_f64().max(0.001);
        let pct = |before: Option<f64>, now: Option<f64>| match (before, now) {
            (Some(b), Some(n)) => json!(((n - b) / wall * 100.0).round()),
            _ => Value::Null,
        };
        json!({
            "client": pct(self.client, cpu_secs("self")),
            "server": pct(self.server, self.pid.and_then(|p| cpu_secs(&p.to_string()))),
        })
    }
}

// ------------------------------------------------------------------ statistics

type Counts = BTreeMap<String, u64>;

fn bump(map: &mut Counts, key: impl Into<String>) {
    *map.entry(key.into()).or_default() += 1;
}

fn merge(into: &mut Counts, prefix: &str, from: Counts) {
    for (k, v) in from {
        *into.entry(format!("{prefix}{k}")).or_default() += v;
    }
}

/// p50, p99 and max of microsecond samples (sorts them).
fn percentiles(samples: &mut [u32]) -> Value {
    samples.sort_unstable();
    let pct = |p: f64| -> u32 {
        if samples.is_empty() {
            0
        } else {
            samples[((samples.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    json!({ "p50_us": pct(0.50), "p99_us": pct(0.99), "max_us": samples.last().copied().unwrap_or(0) })
}

// ------------------------------------------------------------------ subscribers

/// State shared by the subscribers of one measurement and the code driving it.
struct Shared {
    /// Writes are numbered 0..cap; an `n` outside is not one of this measurement's.
    cap: u64,
    /// Latency mode: deliveries per write, so the writer knows when everyone has it.
    per_write: Vec<AtomicU32>,
    /// Latency mode: each write's slowest delivery (µs), to tell a few slow writes from a
    /// uniformly slow fan-out.
    per_write_max: Vec<AtomicU32>,
    /// How many deliveries make a write complete (the subscribed count).
    target: AtomicU32,
    /// Signalled by the subscriber whose delivery completes a write.
    write_complete: Notify,
    /// All first deliveries so far (throughput mode waits on it while draining).
    delivered: AtomicU64,
    /// Throughput mode: deliveries after this instant fall outside the measured window.
    window_end: OnceLock<Instant>,
    /// Subscribed connections that ended before the measurement stopped them.
    ended_early: AtomicU64,
    admission: Mutex<Admission>,
}

/// Who got subscribed before the connect phase ended. Subscribers that finish their
/// handshake after it closed are dropped, so the count writes are checked against is exact.
#[derive(Default)]
struct Admission {
    open: bool,
    subscribed: usize,
    failed: usize,
    errors: Counts,
}

impl Shared {
    fn new(cap: u64, track_per_write: bool) -> Arc<Self> {
        let counters = || {
            if track_per_write {
                (0..cap).map(|_| AtomicU32::new(0)).collect()
            } else {
                Vec::new()
            }
        };
        let (per_write, per_write_max) = (counters(), counters());
        Arc::new(Shared {
            cap,
            per_write,
            per_write_max,
            target: AtomicU32::new(u32::MAX),
            write_complete: Notify::new(),
            delivered: AtomicU64::new(0),
            window_end: OnceLock::new(),
            ended_early: AtomicU64::new(0),
            admission: Mutex::new(Admission {
                open: true,
                ..Admission::default()
            }),
        })
    }

    /// Records the outcome of a subscribe attempt; false when the connect phase is over.
    fn admit(&self, outcome: Result<(), String>) -> bool {
        let mut a = self.admission.lock().expect("admission lock");
        if !a.open {
            return false;
        }
        match outcome {
            Ok(()) => a.subscribed += 1,
            Err(e) => {
                a.failed += 1;
                bump(&mut a.errors, e);
            }
        }
        true
    }
}

/// What one subscriber saw.
#[derive(Default)]
struct SubReport {
    latencies_us: Vec<u32>,
    delivered: u64,
    in_window: u64,
    duplicates: u64,
    seq_regressions: u64,
    problems: Counts,
}

/// Per-subscriber bookkeeping of deliveries.
struct Tracker {
    seen: Vec<u64>,
    last_seq: Option<u64>,
    report: SubReport,
}

impl Tracker {
    fn new(cap: u64) -> Self {
        Tracker {
            seen: vec![0; cap.div_ceil(64) as usize],
            last_seq: None,
            report: SubReport::default(),
        }
    }

    fn change(&mut self, shared: &Shared, n: u64, t_us: u64, seq: Option<u64>) {
        let received = now_us();
        if let Some(seq) = seq {
            // The protocol promises seq order per subscription.
            if self.last_seq.is_some_and(|last| seq <= last) {
                self.report.seq_regressions += 1;
            }
            self.last_seq = Some(seq);
        }
        if n >= shared.cap {
            bump(
                &mut self.report.problems,
                "change with an n this run did not write",
            );
            return;
        }
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if self.seen[word] & bit != 0 {
            self.report.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        let r = &mut self.report;
        r.delivered += 1;
        let latency = received.saturating_sub(t_us).min(u32::MAX as u64) as u32;
        r.latencies_us.push(latency);
        if let Some(max) = shared.per_write_max.get(n as usize) {
            max.fetch_max(latency, Ordering::Relaxed);
        }
        if shared
            .window_end
            .get()
            .is_none_or(|end| Instant::now() <= *end)
        {
            r.in_window += 1;
        }
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(count) = shared.per_write.get(n as usize) {
            let now = count.fetch_add(1, Ordering::AcqRel) + 1;
            if now == shared.target.load(Ordering::Acquire) {
                shared.write_complete.notify_one();
            }
        }
    }
}

/// One subscriber: connect and subscribe (at most `connect_concurrency` at a time), then
/// read events until told to stop.
async fn subscriber<P: Protocol>(
    proto: Arc<P>,
    source: IpAddr,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> SubReport {
    let attempt = {
        let _permit = gate.acquire().await;
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, proto.subscribe(source))
            .await
            .unwrap_or_else(|_| Err("subscribe timed out".into()))
    };
    let admitted = shared.admit(attempt.as_ref().map(|_| ()).map_err(Clone::clone));
    let Ok(mut conn) = attempt else {
        return SubReport::default();
    };
    if !admitted {
        // The connect phase ended without it; dropping the connection closes it.
        return SubReport::default();
    }
    let mut t = Tracker::new(shared.cap);
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => break,
            event = conn.next_event() => event,
        };
        match event {
            Event::Change { n, t_us, seq } => t.change(&shared, n, t_us, seq),
            Event::Ignored => {}
            Event::Unexpected(what) => bump(&mut t.report.problems, what),
            Event::Closed(why) => {
                bump(&mut t.report.problems, format!("closed early: {why}"));
                shared.ended_early.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    t.report
}

/// The subscribers of one measurement, subscribed and reading.
struct Subscribers {
    handles: Vec<tokio::task::JoinHandle<SubReport>>,
    stop: watch::Sender<bool>,
    subscribed: usize,
    failed: usize,
    late: usize,
    errors: Counts,
    connect_ms: u64,
}

/// Starts `n` subscribers and waits (at most `--connect-timeout-secs`) until each has
/// subscribed or failed.
async fn connect_subscribers<P: Protocol>(
    proto: &Arc<P>,
    args: &Args,
    n: usize,
    shared: &Arc<Shared>,
) -> Subscribers {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency));
    let (stop, stop_rx) = watch::channel(false);
    let handles = (0..n)
        .map(|i| {
            tokio::spawn(subscriber(
                proto.clone(),
                source_addr(args, i),
                shared.clone(),
                gate.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let deadline = started + args.connect_timeout;
    loop {
        let done = {
            let a = shared.admission.lock().expect("admission lock");
            a.subscribed + a.failed >= n
        };
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut a = shared.admission.lock().expect("admission lock");
    a.open = false;
    shared.target.store(a.subscribed as u32, Ordering::Release);
    Subscribers {
        handles,
        stop,
        subscribed: a.subscribed,
        failed: a.failed,
        late: n - a.subscribed - a.failed,
        errors: std::mem::take(&mut a.errors),
        connect_ms: started.elapsed().as_millis() as u64,
    }
}

/// Totals over all subscribers of a measurement.
#[derive(Default)]
struct Totals {
    latencies_us: Vec<u32>,
    delivered: u64,
    in_window: u64,
    duplicates: u64,
    seq_regressions: u64,
    problems: Counts,
}

impl Subscribers {
    /// Stops every subscriber (closing its connection) and adds up what they saw.
    async fn finish(self) -> (Totals, Counts) {
        let _ = self.stop.send(true);
        let mut totals = Totals::default();
        let mut errors = Counts::new();
        merge(&mut errors, "subscribe: ", self.errors);
        if self.late > 0 {
            *errors
                .entry("subscribe: not done by --connect-timeout-secs".into())
                .or_default() += self.late as u64;
        }
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        for handle in self.handles {
            let abort = handle.abort_handle();
            match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(r)) => {
                    totals.latencies_us.extend(r.latencies_us);
                    totals.delivered += r.delivered;
                    totals.in_window += r.in_window;
                    totals.duplicates += r.duplicates;
                    totals.seq_regressions += r.seq_regressions;
                    merge(&mut totals.problems, "", r.problems);
                }
                Ok(Err(e)) => bump(&mut errors, kind("subscriber task", e)),
                Err(_) => {
                    abort.abort();
                    bump(&mut errors, "subscriber did not stop in time");
                }
            }
        }
        merge(&mut errors, "", std::mem::take(&mut totals.problems));
        (totals, errors)
    }

    /// The output fields every measurement has.
    fn summary(&self, args: &Args, n: usize) -> Value {
        json!({
            "label": args.label,
            "server": args.server,
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "subscribers": n,
            "subscribed": self.subscribed,
            "subscribe_failed": self.failed + self.late,
            "connect_ms": self.connect_ms,
        })
    }
}

/// Adds `extra`'s fields to the object `base`.
fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// Waits until write `i` has reached every subscriber; false on timeout.
async fn wait_delivered(shared: &Shared, i: u64, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let target = shared.target.load(Ordering::Acquire);
    loop {
        // Registered before checking, so a notification between check and wait is kept.
        let notified = shared.write_complete.notified();
        if shared.per_write[i as usize].load(Ordering::Acquire) >= target {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return false;
        }
    }
}

// ------------------------------------------------------------------ measurements

/// Runs the measurements `--mode` asks for, one JSON line each on standard output.
pub async fn run<P: Protocol>(proto: Arc<P>, args: Args) {
    now_us(); // starts the clock
    let args = Arc::new(args);
    for (round, &n) in args.subscribers.iter().enumerate() {
        let round = round as u32;
        let line = match args.mode {
            Mode::Latency => latency(&proto, &args, round, n).await,
            Mode::Throughput => throughput(&proto, &args, round, n).await,
            Mode::Idle => idle(&proto, &args, n).await,
        };
        println!("{line}");
        // Let the server finish closing this round's sockets before the next one opens
        // as many again (connection limits count open sockets).
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// One write at a time to `n` subscribers; latency of every delivery.
async fn latency<P: Protocol>(proto: &Arc<P>, args: &Args, round: u32, n: usize) -> Value {
    let shared = Shared::new(args.writes, true);
    let subs = connect_subscribers(proto, args, n, &shared).await;
    let head = subs.summary(args, n);
    let mut errors = Counts::new();
    let mut write_latencies = Vec::new();
    let mut stored = vec![false; args.writes as usize];
    let mut timed_out = 0u64;
    let mut writer: Option<HttpConn> = None;
    let cpu = CpuMeter::start(args.pid);
    let mut attempted = 0;
    for i in 0..args.writes {
        if subs.subscribed == 0 {
            break; // nobody to deliver to: nothing to measure
        }
        attempted += 1;
        if writer.is_none() {
            match HttpConn::connect(args.addr).await {
                Ok(c) => writer = Some(c),
                Err(e) => {
                    bump(&mut errors, format!("write: {e}"));
                    continue;
                }
            }
        }
        let conn = writer.as_mut().expect("writer connected above");
        let t_us = now_us();
        match conn.send(proto.write_request(round, i, t_us)).await {
            Ok((status, _)) if proto.write_ok(status) => {
                stored[i as usize] = true;
                write_latencies.push((now_us() - t_us).min(u32::MAX as u64) as u32);
            }
            Ok((status, body)) => {
                note_write_failure(&mut errors, status, &body);
                continue;
            }
            Err(e) => {
                bump(&mut errors, format!("write: {e}"));
                writer = None;
                continue;
            }
        }
        if !wait_delivered(&shared, i, args.write_timeout).await {
            timed_out += 1;
        }
    }
    // Writes that timed out get one more window for their stragglers.
    if timed_out > 0 {
        tokio::time::sleep(args.write_timeout).await;
    }
    let cpu = cpu.finish();
    let target = subs.subscribed as u64;
    let missing: u64 = (0..args.writes as usize)
        .filter(|&i| stored[i])
        .map(|i| target.saturating_sub(shared.per_write[i].load(Ordering::Acquire) as u64))
        .sum();
    let (mut totals, sub_errors) = subs.finish().await;
    merge(&mut errors, "", sub_errors);
    let writes_ok = stored.iter().filter(|&&s| s).count();
    // Each write's last delivery: its median says how long a whole fan-out takes, its top
    // whether the tail comes from a few slow writes (and which, by number).
    let mut slowest: Vec<(usize, u32)> = (0..args.writes as usize)
        .filter(|&i| stored[i])
        .map(|i| (i, shared.per_write_max[i].load(Ordering::Acquire)))
        .collect();
    let mut spans: Vec<u32> = slowest.iter().map(|&(_, us)| us).collect();
    slowest.sort_by_key(|&(_, us)| std::cmp::Reverse(us));
    slowest.truncate(5);
    with(
        head,
        with(
            json!({
                "writes": writes_ok,
                "write_failed": attempted - writes_ok,
                "writes_timed_out": timed_out,
                "deliveries": totals.delivered,
                "missing": missing,
                "duplicates": totals.duplicates,
                "seq_regressions": totals.seq_regressions,
                "write": percentiles(&mut write_latencies),
                "fanout_span": percentiles(&mut spans),
                "slowest_writes": slowest,
                "cpu_pct": cpu,
                "errors": errors,
            }),
            percentiles(&mut totals.latencies_us),
        ),
    )
}

/// Several writers as fast as the server answers, for `--seconds`, to `n` subscribers.
async fn throughput<P: Protocol>(proto: &Arc<P>, args: &Arc<Args>, round: u32, n: usize) -> Value {
    let shared = Shared::new(args.max_writes, false);
    let subs = connect_subscribers(proto, args, n, &shared).await;
    let head = subs.summary(args, n);
    let cpu = CpuMeter::start(args.pid);
    let started = Instant::now();
    let window = Duration::from_secs(args.seconds);
    let _ = shared.window_end.set(started + window);
    let next = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..args.writers)
        .map(|_| {
            let (proto, args, next) = (proto.clone(), args.clone(), next.clone());
            tokio::spawn(
                async move { write_loop(&*proto, &args, round, &next, started + window).await },
            )
        })
        .collect();
    let mut errors = Counts::new();
    let mut writes_ok = 0u64;
    let mut write_latencies = Vec::new();
    for w in writers {
        match w.await {
            Ok((ok, lat, errs)) => {
                writes_ok += ok;
                write_latencies.extend(lat);
                merge(&mut errors, "", errs);
            }
            Err(e) => bump(&mut errors, kind("writer task", e)),
        }
    }
    let cpu = cpu.finish();
    // Events still in flight when the window closed: wait (bounded) so missing ones are real.
    let expected = writes_ok * subs.subscribed as u64;
    let drain_started = Instant::now();
    while shared.delivered.load(Ordering::Relaxed) < expected
        && drain_started.elapsed() < args.drain
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_ms = drain_started.elapsed().as_millis() as u64;
    let subscribed = subs.subscribed.max(1) as f64;
    let (mut totals, sub_errors) = subs.finish().await;
    merge(&mut errors, "", sub_errors);
    let secs = args.seconds as f64;
    let per_sub = totals.in_window as f64 / secs / subscribed;
    with(
        head,
        with(
            json!({
                "seconds": args.seconds,
                "writers": args.writers,
                "writes": writes_ok,
                "write_rps": (writes_ok as f64 / secs).round(),
                "events_in_window": totals.in_window,
                "events_per_sec": (totals.in_window as f64 / secs).round(),
                "events_per_sec_per_subscriber": per_sub.round(),
                "deliveries": totals.delivered,
                "missing": expected.saturating_sub(totals.delivered),
                "duplicates": totals.duplicates,
                "seq_regressions": totals.seq_regressions,
                "drain_ms": drain_ms,
                "write": percentiles(&mut write_latencies),
                "cpu_pct": cpu,
                "errors": errors,
            }),
            percentiles(&mut totals.latencies_us),
        ),
    )
}

/// One throughput writer: (writes stored, their HTTP latencies, errors).
async fn write_loop<P: Protocol>(
    proto: &P,
    args: &Args,
    round: u32,
    next: &AtomicU64,
    until: Instant,
) -> (u64, Vec<u32>, Counts) {
    let mut errors = Counts::new();
    let mut latencies = Vec::new();
    let mut ok = 0;
    let mut conn: Option<HttpConn> = None;
    while Instant::now() < until {
        let Some(c) = conn.as_mut() else {
            match HttpConn::connect(args.addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    bump(&mut errors, format!("write: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= args.max_writes {
            break;
        }
        let t_us = now_us();
        match c.send(proto.write_request(round, i, t_us)).await {
            Ok((status, _)) if proto.write_ok(status) => {
                ok += 1;
                latencies.push((now_us() - t_us).min(u32::MAX as u64) as u32);
            }
            Ok((status, body)) => note_write_failure(&mut errors, status, &body),
            Err(e) => {
                bump(&mut errors, format!("write: {e}"));
                conn = None;
            }
        }
    }
    (ok, latencies, errors)
}

/// Counts a refused write by status and error code, and shows the first of each on stderr.
fn note_write_failure(errors: &mut Counts, status: u16, body: &[u8]) {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("code").map(|c| c.to_string()))
        .unwrap_or_default();
    let key = format!("write: HTTP {status} {code}");
    if !errors.contains_key(&key) {
        eprintln!(
            "{key}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    bump(errors, key);
}

/// `n` subscribed, idle connections: the server's memory growth per connection.
async fn idle<P: Protocol>(proto: &Arc<P>, args: &Args, n: usize) -> Value {
    let pid = args.pid.expect("checked in parse_args");
    // A few connections first, so code and buffers every connection needs are in the
    // baseline rather than charged to the measured ones.
    if args.warmup > 0 {
        let warm = Shared::new(1, false);
        connect_subscribers(proto, args, args.warmup, &warm)
            .await
            .finish()
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let before = rss_kib(pid);
    let shared = Shared::new(1, false);
    let subs = connect_subscribers(proto, args, n, &shared).await;
    tokio::time::sleep(args.hold).await;
    let after = rss_kib(pid);
    let ended_early = shared.ended_early.load(Ordering::Relaxed);
    let head = subs.summary(args, n);
    let open = subs.subscribed as u64 - ended_early;
    let (_, mut errors) = subs.finish().await;
    let mut fields = json!({
        "hold_secs": args.hold.as_secs(),
        "ended_early": ended_early,
        "errors": {},
    });
    match (before, after) {
        (Ok(b), Ok(a)) => {
            fields["rss_before_kib"] = json!(b);
            fields["rss_after_kib"] = json!(a);
            fields["bytes_per_connection"] = if open > 0 {
                json!(((a as f64 - b as f64) * 1024.0 / open as f64).round())
            } else {
                Value::Null
            };
        }
        (Err(e), _) | (_, Err(e)) => bump(&mut errors, e),
    }
    fields["errors"] = json!(errors);
    with(head, fields)
}
