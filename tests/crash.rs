//! Crash test: the real `plinth serve` binary under a mixed write load from concurrent
//! clients, killed with SIGKILL at a random moment, restarted on the same storage (a SQLite
//! directory, or a PostgreSQL database), and checked:
//!
//! - every write the server acknowledged is there, with the acknowledged data at the
//!   acknowledged version (or at the next one, written by the request in flight at the kill);
//! - the request in flight at the kill is all there or not at all (no torn batch), and no
//!   document exists that no client wrote;
//! - every committed write to `orders` gets its after-hook marker, jobs the dead server had
//!   claimed included (after their lease, shortened for the test by `--hook-lease-secs`);
//! - the change log (a realtime `since: 0` replay of every collection) has every seq from 1
//!   to its head, once, and agrees with the documents and the markers.
//!
//! `PLINTH_CRASH_ROUNDS` (default 3) sets the kill/restart rounds, `PLINTH_CRASH_SEED` the
//! seed of every random choice (printed; timing still varies). `scripts/crash-loop.sh` runs
//! many rounds. Figures are printed per round (`-- --nocapture` to see them on success).

#[path = "api/support/mod.rs"]
mod support;

#[path = "crash/check.rs"]
mod check;
#[path = "crash/load.rs"]
mod load;
#[path = "crash/server.rs"]
mod server;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use check::MARKS;
use load::{Api, Client, ITEMS, ORDERS};
use server::{HOOK_LEASE_SECS, Server};
use support::{Backend, Storage};

/// Concurrent writers.
const CLIENTS: usize = 8;
/// How long after a restart every committed hook job must have run: the lease of the jobs
/// the dead server had claimed, plus time to run the backlog.
const HOOK_WAIT: Duration = Duration::from_secs(30 + HOOK_LEASE_SECS);

/// The two backends' runs take turns: each gets the machine to itself.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_survives_kill_9() {
    kill_9_rounds(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_survives_kill_9() {
    if !support::postgres_available() {
        return;
    }
    kill_9_rounds(Backend::Postgres).await;
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v}: {e}")),
    )
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

async fn kill_9_rounds(backend: Backend) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let rounds = env_number("PLINTH_CRASH_ROUNDS").unwrap_or(3) as usize;
    let seed = env_number("PLINTH_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    println!("crash[{name}]: {rounds} round(s), {CLIENTS} clients, PLINTH_CRASH_SEED={seed}");
    let started = Instant::now();
    let storage = Storage::fresh(backend).await;
    let logs = tempfile::tempdir().expect("log dir");
    let mut server = Server::start(&storage, &logs.path().join("server-0.log"), true).await;
    let creds = server::set_up(&http_client(), &server).await;
    let mut clients: Vec<Client> = (0..CLIENTS).map(Client::new).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cumulative = 0;
    for round in 1..=rounds {
        let round_started = Instant::now();
        let api = Api {
            http: http_client(),
            base: server.base.clone(),
            key: creds.key.clone(),
        };
        let kill_after = Duration::from_millis(rng.random_range(300..=1500));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = std::mem::take(&mut clients)
            .into_iter()
            .map(|mut c| {
                let (api, stop, seed) = (api.clone(), stop.clone(), rng.random::<u64>());
                tokio::spawn(async move {
                    let tally = c.run(&api, seed, round, stop).await;
                    (c, tally)
                })
            })
            .collect();
        // Not a synchronisation: the random moment the kill lands in the load.
        tokio::time::sleep(kill_after).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        let mut tallies = Vec::new();
        for t in tasks {
            let (c, tally) = t.await.expect("client task");
            clients.push(c);
            tallies.push(tally);
        }
        let mut violations: Vec<String> = tallies
            .iter_mut()
            .flat_map(|t| std::mem::take(&mut t.violations))
            .collect();

        let log = logs.path().join(format!("server-{round}.log"));
        server = Server::start(&storage, &log, false).await;
        let api = Api {
            http: http_client(),
            base: server.base.clone(),
            key: creds.key.clone(),
        };
        let jobs_at_restart = check::jobs(&api, &creds.admin, "pending").await;
        let mut observed: HashMap<&str, check::Docs> = HashMap::new();
        for c in [ITEMS, ORDERS] {
            observed.insert(c, check::list_all(&api, c).await);
        }
        let docs = check::check_documents(&mut clients, &observed);
        violations.extend(docs.violations.iter().cloned());
        let acked: Vec<&(&str, String, i64)> = tallies.iter().flat_map(|t| &t.acked).collect();
        let present = acked
            .iter()
            .filter(|(c, id, v)| observed[c].get(id).is_some_and(|(got, _)| got >= v))
            .count();
        cumulative += acked.len();

        // Every committed order write gets its marker.
        let hooks_started = Instant::now();
        let marks_at_restart =
            check::missing_marks(&observed[ORDERS], &check::list_all(&api, MARKS).await).len();
        let marks = loop {
            let marks = check::list_all(&api, MARKS).await;
            let missing = check::missing_marks(&observed[ORDERS], &marks);
            let pending = check::jobs(&api, &creds.admin, "pending").await;
            if missing.is_empty() && pending == 0 {
                break marks;
            }
            if hooks_started.elapsed() > HOOK_WAIT {
                violations.push(format!(
                    "{} markers still missing and {pending} jobs pending {} s after the restart \
                     (first: {:?})",
                    missing.len(),
                    HOOK_WAIT.as_secs(),
                    &missing[..missing.len().min(10)]
                ));
                break marks;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let hooks_took = hooks_started.elapsed();
        let dead = check::jobs(&api, &creds.admin, "dead").await;
        if dead > 0 {
            violations.push(format!("{dead} hook jobs dead"));
        }
        let reruns = marks.values().filter(|(v, _)| *v > 1).count();
        observed.insert(MARKS, marks);

        // The change log, gap-free to its head and in agreement with the documents.
        let (log, head, problems) = check::change_log(&api, Duration::from_secs(30)).await;
        violations.extend(problems);
        violations.extend(check::check_log(&log, &observed));

        let hook_writes: usize = tallies.iter().map(|t| t.hook_writes).sum();
        let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
        for t in &tallies {
            for (k, n) in &t.by_kind {
                *kinds.entry(k).or_default() += n;
            }
        }
        println!(
            "crash[{name}] round {round}/{rounds}: killed after {} ms; acknowledged {} writes \
             ({} requests {kinds:?}; {hook_writes} trigger the hook), present {present}, lost {}; \
             in flight {} (applied {}), torn {}; all rounds: {cumulative} acknowledged, {} documents; \
             change log {head} changes, {} delivered, gap-free {}; hooks: {jobs_at_restart} jobs \
             pending and {marks_at_restart} markers missing at restart -> 0 in {:.1} s \
             ({dead} dead; {reruns} markers written more than once, all rounds); round {:.1} s",
            kill_after.as_millis(),
            acked.len(),
            tallies.iter().map(|t| t.ops).sum::<usize>(),
            acked.len() - present,
            docs.in_flight,
            docs.in_flight_applied,
            docs.torn,
            observed[ITEMS].len() + observed[ORDERS].len(),
            log.len(),
            log.len() as i64 == head && log.keys().copied().eq(1..=head),
            hooks_took.as_secs_f64(),
            round_started.elapsed().as_secs_f64(),
        );
        assert!(
            violations.is_empty(),
            "crash[{name}] round {round} (PLINTH_CRASH_SEED={seed}): {} problem(s):\n{}\n{}",
            violations.len(),
            violations[..violations.len().min(30)].join("\n"),
            server.log_tail()
        );
    }
    println!(
        "crash[{name}]: {rounds} round(s) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
