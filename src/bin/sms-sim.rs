//! The SMS simulator: sends Twilio-format inbound-SMS webhooks, correctly signed, to the
//! voting demo's `sms` function, shows progress, and at the end checks that the poll's
//! tally moved exactly as the votes it sent say.
//!
//! ```sh
//! cargo run --release --bin sms-sim -- --votes 10000 --phones 1000 --concurrency 64
//! ```
//!
//! Each phone's messages are sent in order by one sender (so its last vote is the one
//! that counts), and phones vote many times, so many votes change. Phone numbers are new
//! on every run, so the expected tally is the tally before the run plus one vote per
//! phone, for its last option.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use plinth::demo::{form_body, twilio_signature};
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(
    name = "sms-sim",
    about = "Send signed Twilio-format SMS votes to a Plinth voting demo"
)]
struct Args {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// The poll whose tally is checked (its options are read from polls/{poll}).
    #[arg(long, default_value = "demo-poll")]
    poll: String,
    /// The tenant's TWILIO_AUTH_TOKEN secret.
    #[arg(
        long,
        env = "PLINTH_DEMO_TWILIO_TOKEN",
        default_value = "plinth-demo-twilio-token",
        hide_env_values = true
    )]
    auth_token: String,
    /// Messages to send.
    #[arg(long, default_value_t = 10_000)]
    votes: usize,
    /// Distinct phone numbers (each votes votes/phones times).
    #[arg(long, default_value_t = 1_000)]
    phones: usize,
    /// Messages in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to wait for the tally to catch up at the end, in seconds.
    #[arg(long, default_value_t = 120)]
    settle_secs: u64,
    /// Print the summary as one JSON line too.
    #[arg(long)]
    json: bool,
    /// Also watch the tally over the realtime WebSocket, as the demo page does, and report
    /// the delay from webhook answers to the tally update reaching the socket.
    #[arg(long)]
    watch: bool,
}

/// (when, total votes in the tally) for each tally update the socket received.
type Seen = Arc<std::sync::Mutex<Vec<(Instant, i64)>>>;

fn total(counts: &Value) -> i64 {
    counts
        .as_object()
        .map(|o| o.values().filter_map(Value::as_i64).sum())
        .unwrap_or(0)
}

/// Subscribes to the tally document (anonymously: tallies are public) and records every
/// update's total until the task is aborted.
async fn watch_tally(
    base: &str,
    tenant: &str,
    poll: &str,
    seen: Seen,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ws_url = format!(
        "{}/v1/t/{tenant}/realtime",
        base.replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await?;
    let sub =
        serde_json::json!({"type": "subscribe", "id": "t", "collection": "tallies", "doc": poll});
    ws.send(Message::text(sub.to_string())).await?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the socket closed"))??;
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t)?;
            match v["type"].as_str() {
                Some("subscribed") => break,
                Some("error") => anyhow::bail!("subscribe failed: {t}"),
                _ => {}
            }
        }
    }
    Ok(tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg
                && let Ok(v) = serde_json::from_str::<Value>(&t)
                && v["type"] == "change"
            {
                let n = total(&v["doc"]["data"]["counts"]);
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Instant::now(), n));
            }
        }
    }))
}

async fn get_json(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let r = http.get(url).send().await?;
    let status = r.status();
    let text = r.text().await?;
    anyhow::ensure!(status.is_success(), "GET {url}: {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// One sender's messages, in order: (message number, option).
type Lane = Vec<(usize, usize)>;

/// Phone i sends messages i, i + phones, i + 2*phones, ...; each phone belongs to one
/// sender (lane), which sends its messages in order. Returns each phone's last option
/// and the lanes of (message, option).
fn plan(args: &Args, options: usize, run: u32) -> (BTreeMap<usize, usize>, Vec<Lane>) {
    let mut seed: u64 = u64::from(run) | 1;
    let mut last: BTreeMap<usize, usize> = BTreeMap::new();
    let mut lanes: Vec<Lane> = vec![Vec::new(); args.concurrency];
    for i in 0..args.votes {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let phone = i % args.phones;
        let option = (seed % options as u64) as usize;
        last.insert(phone, option);
        lanes[phone % args.concurrency].push((i, option));
    }
    (last, lanes)
}

/// What every lane's sender shares.
#[derive(Clone)]
struct Sender {
    http: reqwest::Client,
    url: String,
    token: String,
    options: Arc<Vec<String>>,
    run: u32,
    phones: usize,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Sender {
    /// Sends one lane's messages in order; returns each answer's latency and when each
    /// phone's first vote was answered.
    async fn send_lane(self, lane: Lane) -> (Vec<Duration>, Vec<Instant>) {
        let (run, phones) = (self.run, self.phones);
        let mut lat = Vec::with_capacity(lane.len());
        let mut firsts = Vec::new();
        for (i, option) in lane {
            let phone = i % phones;
            let params = vec![
                ("MessageSid", format!("SM{run:08x}{i:024x}")),
                (
                    "AccountSid",
                    "AC00000000000000000000000000000000".to_string(),
                ),
                ("From", format!("+1555{run:05}{phone:06}")),
                ("To", "+15550000000".to_string()),
                ("Body", format!("VOTE {}", self.options[option])),
                ("NumMedia", "0".to_string()),
            ];
            let body = form_body(&params);
            let t = Instant::now();
            let r = self
                .http
                .post(&self.url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header(
                    "x-twilio-signature",
                    twilio_signature(&self.token, &self.url, &params),
                )
                .body(body)
                .send()
                .await;
            let ok = match r {
                Ok(r) => {
                    r.status().is_success()
                        && r.text().await.is_ok_and(|t| t.contains("is counted"))
                }
                Err(_) => false,
            };
            lat.push(t.elapsed());
            if i < phones {
                // A phone's first vote adds one to the tally's total.
                firsts.push(Instant::now());
            }
            self.sent.fetch_add(1, Ordering::Relaxed);
            if !ok {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        (lat, firsts)
    }
}

/// Polls the tally until it holds the expected counts or `settle_secs` pass; returns the
/// last counts read and whether they were exact.
async fn wait_for_tally(
    http: &reqwest::Client,
    tally_url: &str,
    expected: &BTreeMap<String, i64>,
    settle_secs: u64,
) -> anyhow::Result<(Value, bool)> {
    let deadline = Instant::now() + Duration::from_secs(settle_secs);
    let mut counts = Value::Null;
    let mut exact = false;
    while Instant::now() < deadline {
        counts = get_json(http, tally_url).await?["data"]["counts"].clone();
        exact = expected
            .iter()
            .all(|(o, n)| counts[o].as_i64().unwrap_or(0) == *n);
        if exact {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((counts, exact))
}

/// The k-th first vote answered is matched with the first socket update whose total
/// counts k new votes: an approximation (hooks need not apply votes in answer order),
/// but one that cannot report less than the real delay of the slowest of them.
fn socket_delays(firsts: &[Instant], seen: &[(Instant, i64)], base_total: i64) -> Vec<Duration> {
    let mut delays = Vec::new();
    let mut j = 0;
    for (k, answered) in firsts.iter().enumerate() {
        let want = base_total + k as i64 + 1;
        while j < seen.len() && seen[j].1 < want {
            j += 1;
        }
        let Some((at, _)) = seen.get(j) else { break };
        delays.push(at.saturating_duration_since(*answered));
    }
    delays
}

/// The poll's options, read from `polls/{poll}`.
async fn poll_options(
    http: &reqwest::Client,
    base: &str,
    args: &Args,
) -> anyhow::Result<Vec<String>> {
    let poll = get_json(
        http,
        &format!(
            "{base}/v1/t/{}/collections/polls/docs/{}",
            args.tenant, args.poll
        ),
    )
    .await?;
    let options: Vec<String> = poll["data"]["options"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(!options.is_empty(), "poll {} has no options", args.poll);
    Ok(options)
}

/// Prints the sending progress twice a second until every message is sent.
fn spawn_progress(
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    total: u64,
    start: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let s = sent.load(Ordering::Relaxed);
            let rate = s as f64 / start.elapsed().as_secs_f64();
            eprint!(
                "\rsent {s}/{total} ({:.0}%), {} failed, {rate:.0} votes/s   ",
                100.0 * s as f64 / total as f64,
                failed.load(Ordering::Relaxed)
            );
            if s >= total {
                break;
            }
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    anyhow::ensure!(
        args.phones > 0 && args.concurrency > 0,
        "phones and concurrency must be > 0"
    );
    let base = args.url.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let options = poll_options(&http, &base, &args).await?;
    let tally_url = format!(
        "{base}/v1/t/{}/collections/tallies/docs/{}",
        args.tenant, args.poll
    );
    let before = get_json(&http, &tally_url).await?["data"]["counts"].clone();
    let seen: Seen = Arc::default();
    let watcher = if args.watch {
        Some(watch_tally(&base, &args.tenant, &args.poll, seen.clone()).await?)
    } else {
        None
    };

    let run: u32 = rand::random();
    let (last, lanes) = plan(&args, options.len(), run);
    let url = format!("{base}/v1/t/{}/fn/sms", args.tenant);
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let progress = spawn_progress(sent.clone(), failed.clone(), args.votes as u64, start);
    let options = Arc::new(options);
    let sender = Sender {
        http: http.clone(),
        url,
        token: args.auth_token.clone(),
        options: options.clone(),
        run,
        phones: args.phones,
        sent: sent.clone(),
        failed: failed.clone(),
    };
    let tasks: Vec<_> = lanes
        .into_iter()
        .map(|lane| tokio::spawn(sender.clone().send_lane(lane)))
        .collect();
    let mut lat = Vec::new();
    let mut firsts = Vec::new();
    for t in tasks {
        let (l, f) = t.await?;
        lat.extend(l);
        firsts.extend(f);
    }
    firsts.sort();
    let send_secs = start.elapsed().as_secs_f64();
    progress.abort();
    lat.sort();
    let failed = failed.load(Ordering::Relaxed);
    eprintln!(
        "\rsent {} messages in {send_secs:.1} s: {:.0} votes/s, answer p50 {:.1} ms p99 {:.1} ms, {failed} failed",
        args.votes,
        args.votes as f64 / send_secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
    );

    let mut expected: BTreeMap<String, i64> = options
        .iter()
        .map(|o| (o.clone(), before[o].as_i64().unwrap_or(0)))
        .collect();
    for option in last.values() {
        *expected.entry(options[*option].clone()).or_default() += 1;
    }
    let (counts, exact) = wait_for_tally(&http, &tally_url, &expected, args.settle_secs).await?;
    let settled = start.elapsed().as_secs_f64();
    let mut delays = Vec::new();
    if let Some(w) = watcher {
        tokio::time::sleep(Duration::from_millis(200)).await;
        w.abort();
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        delays = socket_delays(&firsts, &seen, total(&before));
        delays.sort();
        eprintln!(
            "tally on the socket after the webhook answer: p50 {:.1} ms, p99 {:.1} ms ({} of {} first votes matched, {} socket updates)",
            pct(&delays, 0.5),
            pct(&delays, 0.99),
            delays.len(),
            firsts.len(),
            seen.len()
        );
    }
    eprintln!("expected tally: {}", serde_json::to_string(&expected)?);
    eprintln!("server tally:   {counts}");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "votes": args.votes, "phones": args.phones, "concurrency": args.concurrency,
                "failed": failed, "send_secs": send_secs,
                "votes_per_sec": (args.votes as f64 / send_secs).round(),
                "answer_p50_ms": pct(&lat, 0.5), "answer_p99_ms": pct(&lat, 0.99),
                "exact": exact, "settled_secs": settled,
                "socket_delay_p50_ms": pct(&delays, 0.5), "socket_delay_p99_ms": pct(&delays, 0.99),
                "socket_delays": delays.len(),
            })
        );
    }
    anyhow::ensure!(failed == 0, "{failed} messages were not counted");
    anyhow::ensure!(
        exact,
        "the tally did not reach the expected counts within {} s (a vote cast from the page meanwhile also moves it)",
        args.settle_secs
    );
    eprintln!("tally exact after {settled:.1} s");
    Ok(())
}
