//! The floor of the realtime latency measurement on this machine: a stand-in server that
//! does nothing per event but one blocking `write` of a ready-framed `change` message to
//! each subscriber's socket, in turn.
//!
//! It speaks just enough HTTP/1.1 and WebSocket for `ws_fanout` to measure it exactly as it
//! measures Plinth: the upgrade (any path, token ignored), a `subscribe` answered with
//! `subscribed`, and `PUT …/docs/{id}` with `{"n":…,"t_us":…}` answered `201` and then sent
//! as a `change` of the same shape and size as Plinth's to every subscribed socket. No
//! rules, no change log, no queues, no task per socket, no storage: what is left of a
//! delivery is the kernel's cost of one loopback send (on loopback that includes the
//! receiver's TCP processing, on the sender's core) and the load generator's cost of
//! receiving it. `benches/realtime-bench.sh` runs it with `ONLY=ideal` (or with the rest).
//!
//! ```text
//! cargo bench --bench ideal_fanout -- --listen 127.0.0.1:18713
//! ```
//! Not a server: loopback only, no limits, no error answers beyond what the bench needs.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Request heads longer than this are refused (the bench's are a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;
/// One thread per connection, which only reads: a small stack keeps 10,000 of them cheap.
const STACK: usize = 64 * 1024;

#[derive(Default)]
struct Hub {
    /// Subscribed sockets by connection number. Shared with their reading threads, not
    /// cloned: 10,000 subscribers must fit in 20,000 descriptors.
    subscribers: Mutex<Vec<(u64, Arc<TcpStream>)>>,
    next_conn: AtomicU64,
    seq: AtomicU64,
}

impl Hub {
    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Arc<TcpStream>)>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:18713".parse().expect("default address");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--listen ADDR:PORT")
            }
            // `cargo bench` passes --bench to every harness-less target.
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(listen.ip().is_loopback(), "loopback only");
    let listener = TcpListener::bind(listen).expect("bind");
    eprintln!("ideal fan-out server on {listen}");
    let hub = Arc::new(Hub::default());
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors, most likely: say so, and do not spin on it.
                eprintln!("accept: {e}");
                thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        // As Plinth does (and as any latency-minded server must).
        stream.set_nodelay(true).ok();
        let hub = hub.clone();
        let spawned = thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || serve(&hub, stream));
        if let Err(e) = spawned {
            eprintln!("cannot start a connection thread: {e}");
        }
    }
}

/// One connection: an upgrade becomes a subscriber; anything else is served as HTTP/1.1
/// keep-alive requests until the client leaves.
fn serve(hub: &Hub, mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let Some((head, rest)) = read_head(&mut stream, &mut buf) else {
            return;
        };
        buf = rest;
        let lower = head.to_ascii_lowercase();
        if head.starts_with("GET ") && lower.contains("upgrade: websocket") {
            let _ = subscriber(hub, stream, &head, buf);
            return;
        }
        let answered = if head.starts_with("PUT ") {
            write_request(hub, &mut stream, &head, &lower, &mut buf)
        } else {
            // /healthz and anything else.
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        };
        if answered.is_err() {
            return;
        }
    }
}

/// Reads up to the end of a request head; returns it and the bytes read past it.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `PUT …/docs/{id}`: answers 201, then sends the change to every subscriber.
fn write_request(
    hub: &Hub,
    stream: &mut TcpStream,
    head: &str,
    lower: &str,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let len: usize = header(lower, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    let data: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let path = head.split(' ').nth(1).unwrap_or("/");
    let id = path.rsplit('/').next().unwrap_or("");
    stream.write_all(
        b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    )?;
    let seq = hub.seq.fetch_add(1, Ordering::Relaxed) + 1;
    // The shape and size of Plinth's `change` message for the same write.
    let now = "2026-11-28T03:00:00.000Z";
    let text = serde_json::json!({
        "type": "change", "id": "s", "seq": seq, "op": "create",
        "doc": {"id": id, "collection": "feed", "version": 1,
                "created_at": now, "updated_at": now, "data": data},
    })
    .to_string();
    let frame = text_frame(&text);
    let mut subs = hub.subscribers();
    // A subscriber that left is dropped at its first failed write.
    subs.retain(|(_, s)| (&**s).write_all(&frame).is_ok());
    Ok(())
}

/// An unmasked (server → client) WebSocket text frame.
fn text_frame(text: &str) -> Vec<u8> {
    let len = text.len();
    let mut f = Vec::with_capacity(len + 10);
    f.push(0x81);
    if len < 126 {
        f.push(len as u8);
    } else if len <= u16::MAX as usize {
        f.push(126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(text.as_bytes());
    f
}

/// The upgrade, the `subscribe`/`subscribed` exchange, then reading (and dropping) until
/// the client leaves, at which point the socket stops being a subscriber.
fn subscriber(hub: &Hub, mut stream: TcpStream, head: &str, mut buf: Vec<u8>) -> io::Result<()> {
    let key = header(head, "sec-websocket-key").unwrap_or("");
    let accept = derive_accept_key(key.as_bytes());
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    )?;
    // The first client frame is the bench's `subscribe`; its content does not matter here.
    read_client_frame(&mut stream, &mut buf)?;
    stream.write_all(&text_frame(r#"{"type":"subscribed","id":"s","seq":0}"#))?;
    let conn = hub.next_conn.fetch_add(1, Ordering::Relaxed);
    let stream = Arc::new(stream);
    hub.subscribers().push((conn, stream.clone()));
    let mut sink = [0u8; 1024];
    while matches!((&*stream).read(&mut sink), Ok(n) if n > 0) {}
    hub.subscribers().retain(|(c, _)| *c != conn);
    Ok(())
}

/// Reads one masked client frame (header, extended length, mask, payload) off `buf` and
/// the stream.
fn read_client_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let need = |buf: &[u8]| -> Option<usize> {
        if buf.len() < 2 {
            return None;
        }
        let (len, ext) = match buf[1] & 0x7f {
            126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 2),
            127 => return Some(usize::MAX), // never sent by the bench
            n => (n as usize, 0),
        };
        let mask = if buf[1] & 0x80 != 0 { 4 } else { 0 };
        Some(2 + ext + mask + len)
    };
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(total) = need(buf) {
            if total == usize::MAX {
                return Err(io::ErrorKind::InvalidData.into());
            }
            if buf.len() >= total {
                buf.drain(..total);
                return Ok(());
            }
        }
        match stream.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
