//! Progress on standard error (an upload's bytes, an export's records): a line redrawn in place on a terminal, one
//! summary line otherwise (logs and CI keep no carriage-return noise). A byte counter is
//! all an upload of a bundle needs; a progress-bar crate would add more than it shows.

use std::io::{IsTerminal, Write};
use std::time::Instant;

const CHUNK: usize = 16 * 1024;

/// The request body, sent in chunks; the counter moves as the connection takes them.
pub fn body(bytes: Vec<u8>) -> reqwest::Body {
    let total = bytes.len();
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut sent = 0usize;
    let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK).map(<[u8]>::to_vec).collect();
    let n = chunks.len();
    let stream =
        futures_util::stream::iter(chunks.into_iter().enumerate().map(move |(i, chunk)| {
            sent += chunk.len();
            if tty {
                eprint!("\r  {}", line(sent, total));
                let _ = std::io::stderr().flush();
            }
            if i + 1 == n {
                let took = started.elapsed().as_secs_f64();
                if tty {
                    eprintln!();
                }
                eprintln!("uploaded {} in {took:.1} s", kib(total));
            }
            Ok::<_, std::io::Error>(chunk)
        }));
    reqwest::Body::wrap_stream(stream)
}

/// A count of records written, for exports: redrawn in place on a terminal at most a
/// few times a second, a single summary line otherwise.
pub struct Counter {
    what: &'static str,
    tty: bool,
    started: Instant,
    last_drawn: Option<Instant>,
    n: u64,
}

impl Counter {
    pub fn new(what: &'static str) -> Counter {
        Counter {
            what,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_drawn: None,
            n: 0,
        }
    }

    pub fn at(&mut self, n: u64) {
        self.n = n;
        let due = self
            .last_drawn
            .is_none_or(|t| t.elapsed().as_millis() >= 200);
        if self.tty && due {
            eprint!("\r  {} {}", self.n, self.what);
            let _ = std::io::stderr().flush();
            self.last_drawn = Some(Instant::now());
        }
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn done(self) {
        if self.tty && self.last_drawn.is_some() {
            eprintln!();
        }
        let took = self.started.elapsed().as_secs_f64();
        eprintln!("{} {} in {took:.1} s", self.n, self.what);
    }
}

fn kib(n: usize) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

fn line(sent: usize, total: usize) -> String {
    let pct = (sent * 100).checked_div(total).unwrap_or(100);
    format!("{} / {} ({pct:>3}%)", kib(sent), kib(total))
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_line() {
        assert_eq!(super::line(512, 2048), "0.5 KiB / 2.0 KiB ( 25%)");
        assert_eq!(super::line(0, 0), "0.0 KiB / 0.0 KiB (100%)");
    }
}
