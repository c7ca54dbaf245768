//! A bounded soak: for `SOAK_SECS` seconds (default 60) clients of every
//! transport connect, read a while, drop (some cleanly, some with a TCP
//! reset) and resume by id, while publishers publish on several channels at
//! a modest rate over HTTP (single and batch) and RESP, and churners open and
//! drop bursts of connections. Then:
//!
//! - every resuming client (sse, stream, iframe, multipart, ws, longpoll,
//!   jsonp) received every message of its channel published after it first
//!   connected, exactly once, in order, with no gap signal;
//! - every Bayeux session (long-polling and websocket) received the messages
//!   of its channel in order, without gaps or repeats, from its subscription
//!   on, and the last sessions drained to the last message;
//! - once every client is gone, the server's open fds return to the baseline
//!   (+5) and its RSS to the baseline plus a documented slack.
//!
//! `bench/soak` runs it for longer in release mode:
//! `SOAK_SECS=600 cargo test --release --test soak -- --nocapture`.

mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Channels published to (`soak/c0` …); Bayeux sees them as `/soak/c0` ….
const CHANNELS: usize = 6;
/// Pause between publish rounds of one channel's publisher (a round is one
/// HTTP publish, one RESP publish or an HTTP batch of three, in turn): about
/// 11 messages a second per channel.
const PUBLISH_PAUSE: Duration = Duration::from_millis(150);
/// Resuming clients per transport.
const CLIENTS_PER_TRANSPORT: usize = 2;
/// Threads opening and dropping bursts of connections.
const CHURNERS: usize = 2;
/// Open fds allowed above the baseline once every client is gone.
const FD_SLACK: usize = 5;
/// RSS allowed above the baseline once every client is gone, besides the
/// retained history (see [`HISTORY_BYTES_PER_MESSAGE`]): allocator caches and
/// fragmentation left by the peak of connections.
const RSS_SLACK_KIB: u64 = 8 * 1024;
/// Allowance per retained message: the message, its id and channel, and its
/// cached encodings for each transport. Measured: about 1 KiB per message of
/// this soak (RSS grew 18.8 MiB while 19,598 more messages were retained in
/// the 600 s run, with 47,712 connections opened meanwhile).
const HISTORY_BYTES_PER_MESSAGE: u64 = 1536;

fn soak_secs() -> u64 {
    std::env::var("SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60)
}

fn channel(ch: usize) -> String {
    format!("soak/c{ch}")
}

// ---------------------------------------------------------------------------
// Randomness and shared counters

struct Shared {
    public: SocketAddr,
    ingest: SocketAddr,
    resp: SocketAddr,
    /// Per channel: publishes started (the next sequence number). Stored
    /// before a publish is sent, so a message numbered at or above a value
    /// read after a subscription was confirmed was published after it.
    started: Vec<AtomicU64>,
    /// Per channel: publishes acknowledged.
    acked: Vec<AtomicU64>,
    /// The soak time is over: publishers stop, clients start draining.
    stop: AtomicBool,
    /// Every publisher has stopped: `acked` holds each channel's total.
    finished: AtomicBool,
    connections: AtomicU64,
    delivered: AtomicU64,
    server_ended: AtomicU64,
}

thread_local! {
    /// Connections opened by this thread (each client runs on its own).
    static DIALED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Shared {
    /// Counts a connection and opens it.
    fn dial(&self, addr: SocketAddr) -> TcpStream {
        self.connections.fetch_add(1, SeqCst);
        DIALED.with(|d| d.set(d.get() + 1));
        connect(addr)
    }
}

/// The sequence number of a soak payload `c{ch}-{seq}` of channel `ch`.
fn seq_of(data: &str, ch: usize, what: &str) -> u64 {
    data.strip_prefix(&format!("c{ch}-"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: a payload {data:?} that is not of channel {ch}"))
}

// ---------------------------------------------------------------------------
// Publishers

/// Publishes `c{ch}-{seq}` in order until told to stop; returns the count.
fn publisher(ch: usize, shared: Arc<Shared>) -> u64 {
    let name = channel(ch);
    let what = format!("publisher of {name}");
    let mut http = HttpConn::new(shared.ingest);
    let mut resp = HttpConn::new(shared.resp);
    let mut seq = 0u64;
    let mut round = 0u64;
    while !shared.stop.load(SeqCst) {
        if round > 0 && round.is_multiple_of(200) {
            // Publishers reconnect now and then too.
            http = HttpConn::new(shared.ingest);
            resp = HttpConn::new(shared.resp);
        }
        match round % 3 {
            0 => {
                shared.started[ch].store(seq + 1, SeqCst);
                let data = format!("c{ch}-{seq}");
                http.send(&format_request("POST", &format!("/pub/{name}"), &[], data.as_bytes()));
                let r = http.response();
                assert_eq!(r.status, 200, "{what}: publish {data}: {}", r.text());
                seq += 1;
            }
            1 => {
                shared.started[ch].store(seq + 1, SeqCst);
                let data = format!("c{ch}-{seq}");
                resp.send(&publish_cmd(&name, &data));
                let line = resp.resp_line();
                assert!(line.starts_with(':'), "{what}: PUBLISH {data}: {line:?}");
                seq += 1;
            }
            _ => {
                shared.started[ch].store(seq + 3, SeqCst);
                let body: String = (seq..seq + 3)
                    .map(|s| format!("{}\n", json!({"channel": name, "data": format!("c{ch}-{s}")})))
                    .collect();
                http.send(&format_request("POST", "/pub", &[], body.as_bytes()));
                let r = http.response();
                assert_eq!(r.status, 200, "{what}: batch at {seq}: {}", r.text());
                assert_eq!(r.json()["ids"].as_array().map(Vec::len), Some(3), "{what}: {}", r.text());
                seq += 3;
            }
        }
        shared.acked[ch].store(seq, SeqCst);
        round += 1;
        thread::sleep(PUBLISH_PAUSE);
    }
    seq
}

// ---------------------------------------------------------------------------
// A connection read with deadlines

enum Got {
    Data,
    Eof,
    Timeout,
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    what: String,
}

impl Conn {
    fn open(shared: &Shared, addr: SocketAddr, what: &str) -> Conn {
        Conn { s: shared.dial(addr), buf: Vec::new(), what: what.to_string() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap_or_else(|e| panic!("{}: write: {e}", self.what));
    }

    /// Reads more bytes, waiting until `until` at most.
    fn read_some(&mut self, until: Instant) -> Got {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Got::Timeout;
        }
        self.s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        let mut tmp = [0u8; 65536];
        match self.s.read(&mut tmp) {
            Ok(0) => Got::Eof,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Got::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Got::Timeout,
            Err(e) if e.kind() == ErrorKind::Interrupted => Got::Data,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Got::Eof,
            Err(e) => panic!("{}: read: {e}", self.what),
        }
    }

    /// Reads a response head; it must come within [`DEADLINE`].
    fn head(&mut self) -> (u16, Vec<(String, String)>) {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let status = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{}: bad response head {head:?}", self.what));
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                return (status, headers);
            }
            match self.read_some(until) {
                Got::Data => {}
                Got::Eof => panic!("{}: closed before a response head; got {}", self.what, esc(&self.buf)),
                Got::Timeout => panic!("{}: no response head within {DEADLINE:?}", self.what),
            }
        }
    }

    /// A whole Content-Length response, within [`DEADLINE`].
    fn response(&mut self) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let (status, headers) = self.head();
        let len: usize = header(&headers, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{}: a {status} without Content-Length: {headers:?}", self.what));
        let until = Instant::now() + DEADLINE;
        while self.buf.len() < len {
            match self.read_some(until) {
                Got::Data => {}
                _ => panic!("{}: the body of a {status} did not arrive", self.what),
            }
        }
        let body = self.buf.drain(..len).collect();
        (status, headers, body)
    }
}

// ---------------------------------------------------------------------------
// Hub transports

#[derive(Debug, Clone, Copy, PartialEq)]
enum T {
    Sse,
    Stream,
    Iframe,
    Multipart,
    Ws,
    LongPoll,
    Jsonp,
    BayeuxPoll,
    BayeuxWs,
}

impl T {
    fn name(self) -> &'static str {
        match self {
            T::Sse => "sse",
            T::Stream => "stream",
            T::Iframe => "iframe",
            T::Multipart => "multipart",
            T::Ws => "ws",
            T::LongPoll => "longpoll",
            T::Jsonp => "jsonp",
            T::BayeuxPoll => "bayeux-long-polling",
            T::BayeuxWs => "bayeux-websocket",
        }
    }
    const ALL: [T; 9] = [
        T::Sse,
        T::Stream,
        T::Iframe,
        T::Multipart,
        T::Ws,
        T::LongPoll,
        T::Jsonp,
        T::BayeuxPoll,
        T::BayeuxWs,
    ];
}

/// One delivered message.
#[derive(Debug, Clone)]
struct Msg {
    id: String,
    seq: u64,
}

/// What one connection of a resuming client produced.
#[derive(Default)]
struct Session {
    msgs: Vec<Msg>,
    /// The position to resume from next (the last id seen).
    cursor: Option<String>,
    gap: bool,
    server_ended: bool,
}

enum Item {
    Msg(Msg),
    End,
    Skip,
}

/// An envelope `{"id","channel","data"}` or an end notice.
fn envelope(v: &Value, ch: usize, what: &str) -> Item {
    if v.get("end").is_some() {
        return Item::End;
    }
    assert_eq!(v["channel"], channel(ch).as_str(), "{what}: envelope of another channel: {v}");
    let id = v["id"].as_str().unwrap_or_else(|| panic!("{what}: envelope without id: {v}")).to_string();
    let data = v["data"].as_str().unwrap_or_else(|| panic!("{what}: envelope without data: {v}"));
    Item::Msg(Msg { id, seq: seq_of(data, ch, what) })
}

/// Parses the next complete item of a streaming body; None if more is needed.
fn parse_item(t: T, text: &mut Vec<u8>, ch: usize, what: &str) -> Option<Item> {
    let utf8 =
        |b: &[u8]| String::from_utf8(b.to_vec()).unwrap_or_else(|_| panic!("{what}: not UTF-8: {}", esc(b)));
    match t {
        T::Sse => {
            let end = find(text, b"\n\n")?;
            let block = utf8(&text[..end]);
            text.drain(..end + 2);
            if block.starts_with(": end") {
                return Some(Item::End);
            }
            let mut id = None;
            let mut data = None;
            for line in block.split('\n') {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(v.to_string());
                }
            }
            Some(match (id, data) {
                (Some(id), Some(data)) => Item::Msg(Msg { id, seq: seq_of(&data, ch, what) }),
                _ => Item::Skip,
            })
        }
        T::Stream => {
            let end = find(text, b"\n")?;
            let line = utf8(&text[..end]);
            text.drain(..end + 1);
            if line.trim().is_empty() {
                return Some(Item::Skip);
            }
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: bad line {line:?}: {e}"));
            Some(envelope(&v, ch, what))
        }
        T::Iframe => {
            let open = find(text, b"<script>")?;
            let close = open + find(&text[open..], b"</script>")?;
            let inner = utf8(&text[open + 8..close]);
            text.drain(..close + 9);
            let Some(args) = inner.strip_prefix("parent.push(") else { return Some(Item::Skip) };
            let json = args.strip_suffix(')').unwrap_or_else(|| panic!("{what}: bad script {inner:?}"));
            let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{what}: {e}: {json:?}"));
            Some(envelope(&v, ch, what))
        }
        T::Multipart => {
            const BOUNDARY: &[u8] = b"--halley-part\r\n";
            const DELIMITER: &[u8] = b"\r\n--halley-part";
            if text.starts_with(BOUNDARY) {
                text.drain(..BOUNDARY.len());
                return Some(Item::Skip);
            }
            if BOUNDARY.starts_with(text) {
                return None;
            }
            let head_end = find(text, b"\r\n\r\n")?;
            let body_start = head_end + 4;
            let body_len = find(&text[body_start..], DELIMITER)?;
            let after = body_start + body_len + DELIMITER.len();
            let consumed = if text[after..].starts_with(b"\r\n") {
                after + 2
            } else if text[after..].starts_with(b"--\r\n") {
                after + 4
            } else if text.len() - after < 4 {
                return None;
            } else {
                panic!("{what}: a boundary followed by {}", esc(&text[after..]));
            };
            let head = utf8(&text[..head_end]);
            let body = utf8(&text[body_start..body_start + body_len]);
            text.drain(..consumed);
            let part_header = |name: &str| {
                head.split("\r\n")
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_string())
            };
            if part_header("x-halley-end").is_some() {
                return Some(Item::End);
            }
            Some(match part_header("x-message-id") {
                Some(id) => Item::Msg(Msg { id, seq: seq_of(&body, ch, what) }),
                None => Item::Skip,
            })
        }
        _ => unreachable!(),
    }
}

/// One streaming session (sse, stream, iframe, multipart) resuming after `cursor`.
/// SSE resumes with the `Last-Event-ID` header (as EventSource does) when
/// `via_header`, else with `?last_id=`.
fn stream_session(
    t: T,
    ch: usize,
    cursor: &str,
    until: Instant,
    abrupt: bool,
    via_header: bool,
    shared: &Shared,
) -> Session {
    let what = format!("{} client of {}", t.name(), channel(ch));
    let mut conn = Conn::open(shared, shared.public, &what);
    let (path, headers) = if via_header && t == T::Sse {
        (format!("/sub/{}", channel(ch)), vec![("Accept", "text/event-stream"), ("Last-Event-ID", cursor)])
    } else {
        (format!("/sub/{}?transport={}&last_id={cursor}", channel(ch), t.name()), vec![])
    };
    conn.send(&format_request("GET", &path, &headers, b""));
    let (status, headers) = conn.head();
    assert_eq!(status, 200, "{what}: GET {path}: {headers:?}");
    let mut out = Session { gap: header(&headers, "x-halley-gap").is_some(), ..Session::default() };
    let mut body = Dechunk::default();
    loop {
        body.feed(&mut conn.buf, &what);
        while let Some(item) = parse_item(t, &mut body.out, ch, &what) {
            match item {
                Item::Msg(m) => out.msgs.push(m),
                Item::End => out.server_ended = true,
                Item::Skip => {}
            }
        }
        if body.ended {
            assert!(out.server_ended, "{what}: the stream ended without an end notice");
            break;
        }
        match conn.read_some(until) {
            Got::Data => {}
            Got::Eof => panic!("{what}: the server closed the stream without its end notice"),
            Got::Timeout => break,
        }
    }
    if abrupt {
        reset(conn.s);
    }
    out.cursor = out.msgs.last().map(|m| m.id.clone());
    out
}

/// One long-poll (or JSONP) session: polls until `until`, then leaves,
/// abruptly in the middle of a held poll when `abrupt`.
fn poll_session(t: T, ch: usize, cursor: &str, until: Instant, abrupt: bool, shared: &Shared) -> Session {
    let what = format!("{} client of {}", t.name(), channel(ch));
    let mut conn = Conn::open(shared, shared.public, &what);
    let mut out = Session { cursor: Some(cursor.to_string()), ..Session::default() };
    let callback = if t == T::Jsonp { "&callback=cb" } else { "" };
    loop {
        let at = out.cursor.clone().unwrap();
        let path = format!("/sub/{}?last_id={at}&timeout=2{callback}", channel(ch));
        conn.send(&format_request("GET", &path, &[], b""));
        if abrupt && Instant::now() >= until {
            // Leave in the middle of the held poll.
            thread::sleep(Duration::from_millis(50));
            reset(conn.s);
            return out;
        }
        let (status, headers, body) = conn.response();
        let text = String::from_utf8(body).expect("UTF-8 poll answer");
        assert_eq!(status, 200, "{what}: GET {path}: {text}");
        let json_text = if t == T::Jsonp {
            text.trim_end()
                .strip_prefix("cb(")
                .and_then(|s| s.strip_suffix(");"))
                .unwrap_or_else(|| panic!("{what}: not a JSONP call: {text}"))
        } else {
            text.as_str()
        };
        let v: Value = serde_json::from_str(json_text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        if v["gap"] == true {
            out.gap = true;
        }
        for m in v["messages"].as_array().unwrap_or_else(|| panic!("{what}: {v}")) {
            if let Item::Msg(m) = envelope(m, ch, &what) {
                out.msgs.push(m);
            }
        }
        out.cursor =
            Some(v["last_id"].as_str().unwrap_or_else(|| panic!("{what}: no last_id: {v}")).to_string());
        if Instant::now() >= until || header(&headers, "connection") == Some("close") {
            return out;
        }
    }
}

// ---------------------------------------------------------------------------
// WebSocket framing (client side)

fn ws_upgrade(conn: &mut Conn, path: &str) -> Vec<(String, String)> {
    conn.send(&upgrade_request(path, FIXED_KEY, &[]));
    let (status, headers) = conn.head();
    assert_eq!(status, 101, "{}: upgrade {path}: {headers:?}", conn.what);
    headers
}

/// Leaves a WebSocket: a close frame and the server's close (clean), or a reset.
fn ws_leave(mut conn: Conn, abrupt: bool) {
    if abrupt {
        return reset(conn.s);
    }
    let _ = conn.s.write_all(&frame(FIN | OP_CLOSE, &1000u16.to_be_bytes()));
    let until = Instant::now() + Duration::from_secs(5);
    while let Got::Data = conn.read_some(until) {}
}

fn ws_session(ch: usize, cursor: &str, until: Instant, abrupt: bool, shared: &Shared) -> Session {
    let what = format!("ws client of {}", channel(ch));
    let mut conn = Conn::open(shared, shared.public, &what);
    let headers = ws_upgrade(&mut conn, &format!("/sub/{}?last_id={cursor}", channel(ch)));
    let mut out = Session { gap: header(&headers, "x-halley-gap").is_some(), ..Session::default() };
    'read: loop {
        while let Some(Frame { opcode: op, payload, .. }) = take_frame(&mut conn.buf) {
            match op {
                0x1 => {
                    let v: Value = serde_json::from_slice(&payload).unwrap_or_else(|e| panic!("{what}: {e}"));
                    if let Item::Msg(m) = envelope(&v, ch, &what) {
                        out.msgs.push(m);
                    }
                }
                0x9 => conn.send(&frame(FIN | OP_PONG, &payload)),
                0x8 => {
                    out.server_ended = true;
                    let _ = conn.s.write_all(&frame(FIN | OP_CLOSE, &payload[..payload.len().min(2)]));
                    break 'read;
                }
                _ => {}
            }
        }
        match conn.read_some(until) {
            Got::Data => {}
            Got::Eof => panic!("{what}: the server closed without a close frame"),
            Got::Timeout => break,
        }
    }
    out.cursor = out.msgs.last().map(|m| m.id.clone());
    if !out.server_ended {
        ws_leave(conn, abrupt);
    }
    out
}

// ---------------------------------------------------------------------------
// Resuming hub clients

struct ClientReport {
    what: String,
    connections: u64,
    sessions: u64,
    messages: u64,
}

/// The current position of a channel: a `timeout=0` long-poll's `last_id`.
fn position(ch: usize, shared: &Shared) -> String {
    let mut conn = Conn::open(shared, shared.public, "position");
    conn.send(&format_request("GET", &format!("/sub/{}?timeout=0", channel(ch)), &[], b""));
    let (status, _, body) = conn.response();
    assert_eq!(status, 200, "position of {}: {}", channel(ch), esc(&body));
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    v["last_id"].as_str().expect("last_id").to_string()
}

/// Connects, reads a while, drops, resumes by id, until the soak ends; then
/// drains to the channel's last message and checks what it got.
fn hub_client(t: T, ch: usize, seed: u64, shared: Arc<Shared>) -> ClientReport {
    let what = format!("{} client #{seed} of {}", t.name(), channel(ch));
    let mut rng = Rng::seeded(seed);
    // Where this client starts: everything after this position is owed.
    let mut cursor = position(ch, &shared);
    let first = shared.started[ch].load(SeqCst);
    let mut got: Vec<Msg> = Vec::new();
    let mut sessions = 0u64;
    let mut drain_since: Option<Instant> = None;
    loop {
        let total = shared.finished.load(SeqCst).then(|| shared.acked[ch].load(SeqCst));
        if let Some(total) = total {
            if total == 0 || got.last().is_some_and(|m| m.seq + 1 >= total) {
                break;
            }
            let since = *drain_since.get_or_insert_with(Instant::now);
            assert!(
                since.elapsed() < DEADLINE,
                "{what}: still missing messages {DEADLINE:?} after the publishers stopped: have up to {:?} of {total}",
                got.last().map(|m| m.seq)
            );
        }
        let (budget, abrupt) = if total.is_some() {
            (Duration::from_secs(3), false)
        } else {
            (rng.millis(200, 4000), rng.chance(50))
        };
        let until = Instant::now() + budget;
        let out = match t {
            T::Sse | T::Stream | T::Iframe | T::Multipart => {
                let via_header = rng.chance(50);
                stream_session(t, ch, &cursor, until, abrupt, via_header, &shared)
            }
            T::Ws => ws_session(ch, &cursor, until, abrupt, &shared),
            T::LongPoll | T::Jsonp => poll_session(t, ch, &cursor, until, abrupt, &shared),
            _ => unreachable!(),
        };
        sessions += 1;
        assert!(!out.gap, "{what}: a gap signal resuming after {cursor} (history is large enough)");
        if out.server_ended {
            shared.server_ended.fetch_add(1, SeqCst);
        }
        shared.delivered.fetch_add(out.msgs.len() as u64, SeqCst);
        for m in out.msgs {
            if let Some(prev) = got.last() {
                assert!(
                    m.seq == prev.seq + 1,
                    "{what}: after {} (id {}) came {} (id {}), resuming from {cursor}: a {}",
                    prev.seq,
                    prev.id,
                    m.seq,
                    m.id,
                    if m.seq <= prev.seq { "repeat or reorder" } else { "gap" }
                );
                assert!(
                    id_key(&m.id) > id_key(&prev.id),
                    "{what}: ids not increasing: {} then {}",
                    prev.id,
                    m.id
                );
            } else {
                assert!(
                    m.seq <= first,
                    "{what}: the first message is #{} but #{first} and later were published after it connected",
                    m.seq
                );
            }
            got.push(m);
        }
        if let Some(c) = out.cursor {
            cursor = c;
        }
        if total.is_none() {
            thread::sleep(rng.millis(0, 300));
        }
    }
    ClientReport { what, connections: DIALED.with(|d| d.get()), sessions, messages: got.len() as u64 }
}

// ---------------------------------------------------------------------------
// Bayeux clients: sessions are not resumed by id; each session must get its
// channel's messages in order, without gaps or repeats, from its subscription.

/// Checks and counts one Bayeux session's deliveries.
fn check_bayeux_session(what: &str, msgs: &[Msg], first: u64) {
    for w in msgs.windows(2) {
        assert!(
            w[1].seq == w[0].seq + 1,
            "{what}: after {} came {}: a {}",
            w[0].seq,
            w[1].seq,
            if w[1].seq <= w[0].seq { "repeat or reorder" } else { "gap" }
        );
        assert!(id_key(&w[1].id) > id_key(&w[0].id), "{what}: ids not increasing");
    }
    if let Some(m) = msgs.first() {
        assert!(
            m.seq <= first,
            "{what}: first delivery #{} but #{first} was published after the subscription",
            m.seq
        );
    }
}

/// A Bayeux delivery of `/soak/c{ch}` as a message.
fn bayeux_msg(m: &Value, ch: usize, what: &str) -> Option<Msg> {
    if m.get("data").is_none() || m["channel"] != format!("/{}", channel(ch)).as_str() {
        return None;
    }
    let data = m["data"].as_str().unwrap_or_else(|| panic!("{what}: data not a string: {m}"));
    let id = m["id"].as_str().unwrap_or_else(|| panic!("{what}: delivery without id: {m}")).to_string();
    Some(Msg { id, seq: seq_of(data, ch, what) })
}

fn bayeux_post(conn: &mut Conn, messages: &Value) -> Vec<Value> {
    let body = messages.to_string();
    conn.send(&format_request("POST", "/bayeux", &[("Content-Type", "application/json")], body.as_bytes()));
    let (status, _, body) = conn.response();
    assert_eq!(status, 200, "{}: POST /bayeux {messages}: {}", conn.what, esc(&body));
    match serde_json::from_slice(&body) {
        Ok(Value::Array(v)) => v,
        other => panic!("{}: answer {other:?}", conn.what),
    }
}

fn bayeux_poll_session(ch: usize, until: Instant, abrupt: bool, shared: &Shared) -> (Vec<Msg>, u64) {
    let what = format!("bayeux long-polling client of {}", channel(ch));
    let mut conn = Conn::open(shared, shared.public, &what);
    let hs = bayeux_post(
        &mut conn,
        &json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}]),
    );
    assert_eq!(hs[0]["successful"], true, "{what}: {hs:?}");
    let cid = hs[0]["clientId"].as_str().expect("clientId").to_string();
    let sub = bayeux_post(
        &mut conn,
        &json!([{"channel": "/meta/subscribe", "clientId": cid, "subscription": format!("/{}", channel(ch))}]),
    );
    assert_eq!(sub[0]["successful"], true, "{what}: {sub:?}");
    let first = shared.started[ch].load(SeqCst);
    let connect = json!([{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}]);
    let mut msgs = Vec::new();
    loop {
        let total = shared.finished.load(SeqCst).then(|| shared.acked[ch].load(SeqCst));
        let drained = total.is_some_and(|t| first >= t || msgs.last().is_some_and(|m: &Msg| m.seq + 1 >= t));
        if drained || (total.is_none() && Instant::now() >= until) {
            break;
        }
        if total.is_some() && Instant::now() >= until + DEADLINE {
            panic!("{what}: not drained {DEADLINE:?} after the soak ended: up to {:?}", msgs.last());
        }
        for m in bayeux_post(&mut conn, &connect) {
            if m["channel"] == "/meta/connect" {
                assert_eq!(m["successful"], true, "{what}: connect: {m}");
            } else if let Some(msg) = bayeux_msg(&m, ch, &what) {
                msgs.push(msg);
            }
        }
    }
    if abrupt {
        conn.send(&format_request("POST", "/bayeux", &[], connect.to_string().as_bytes()));
        thread::sleep(Duration::from_millis(50));
        reset(conn.s);
    } else {
        let bye = bayeux_post(&mut conn, &json!([{"channel": "/meta/disconnect", "clientId": cid}]));
        assert!(
            bye.iter().any(|m| m["channel"] == "/meta/disconnect" && m["successful"] == true),
            "{what}: {bye:?}"
        );
    }
    (msgs, first)
}

/// Reads Bayeux message arrays from a WebSocket into `pending` until there
/// is at least one or `until` passes; answers pings.
enum WsGot {
    Messages,
    Timeout,
    /// The server closed the socket (close frame payload).
    Closed(Vec<u8>),
}

fn bayeux_ws_read(conn: &mut Conn, pending: &mut Vec<Value>, until: Instant) -> WsGot {
    loop {
        while let Some(Frame { opcode: op, payload, .. }) = take_frame(&mut conn.buf) {
            match op {
                0x1 => match serde_json::from_slice(&payload) {
                    Ok(Value::Array(v)) => pending.extend(v),
                    other => panic!("{}: {other:?}", conn.what),
                },
                0x9 => conn.send(&frame(FIN | OP_PONG, &payload)),
                0x8 => {
                    let _ = conn.s.write_all(&frame(FIN | OP_CLOSE, &payload[..payload.len().min(2)]));
                    return WsGot::Closed(payload);
                }
                _ => {}
            }
        }
        if !pending.is_empty() {
            return WsGot::Messages;
        }
        match conn.read_some(until) {
            Got::Data => {}
            Got::Eof => panic!("{}: EOF without a close frame", conn.what),
            Got::Timeout => return WsGot::Timeout,
        }
    }
}

/// One Bayeux session over WebSocket. When the server ends the socket
/// (max age), the session goes on over a new socket, as CometD does: a
/// `/meta/connect` of the same clientId gets what was queued meanwhile.
fn bayeux_ws_session(ch: usize, until: Instant, abrupt: bool, shared: &Shared) -> (Vec<Msg>, u64) {
    let what = format!("bayeux websocket client of {}", channel(ch));
    let open = || {
        let mut conn = Conn::open(shared, shared.public, &what);
        ws_upgrade(&mut conn, "/bayeux");
        conn
    };
    let send = |conn: &mut Conn, v: &Value| conn.send(&frame(FIN | OP_TEXT, v.to_string().as_bytes()));
    let mut conn = open();
    let mut pending: Vec<Value> = Vec::new();
    send(
        &mut conn,
        &json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]}]),
    );
    let got = bayeux_ws_read(&mut conn, &mut pending, Instant::now() + DEADLINE);
    assert!(matches!(got, WsGot::Messages), "{what}: no handshake reply");
    let hs = pending.remove(0);
    assert_eq!(hs["successful"], true, "{what}: {hs}");
    let cid = hs["clientId"].as_str().expect("clientId").to_string();
    let connect = json!([{"channel": "/meta/connect", "clientId": cid, "connectionType": "websocket"}]);
    let subscription = format!("/{}", channel(ch));
    send(&mut conn, &json!([{"channel": "/meta/subscribe", "clientId": cid, "subscription": subscription}]));
    let mut first = None;
    let mut msgs: Vec<Msg> = Vec::new();
    loop {
        let total = shared.finished.load(SeqCst).then(|| shared.acked[ch].load(SeqCst));
        let drained = match (total, first) {
            (Some(t), Some(f)) => f >= t || msgs.last().is_some_and(|m| m.seq + 1 >= t),
            _ => false,
        };
        if drained || (total.is_none() && first.is_some() && Instant::now() >= until) {
            break;
        }
        let waiting_for_deliveries = total.is_none() && first.is_some();
        let wait = if waiting_for_deliveries { until } else { Instant::now() + DEADLINE };
        match bayeux_ws_read(&mut conn, &mut pending, wait) {
            WsGot::Messages => {}
            WsGot::Timeout => {
                assert!(
                    waiting_for_deliveries,
                    "{what}: nothing from the server within {DEADLINE:?} (subscribed: {first:?}, have up to {:?})",
                    msgs.last()
                );
                continue;
            }
            WsGot::Closed(payload) => {
                assert!(
                    payload.starts_with(&1001u16.to_be_bytes()) && first.is_some(),
                    "{what}: closed by the server: {}",
                    esc(&payload)
                );
                shared.server_ended.fetch_add(1, SeqCst);
                let _ = conn.read_some(Instant::now() + Duration::from_secs(2));
                conn = open();
                send(&mut conn, &connect);
                continue;
            }
        }
        for m in pending.drain(..) {
            match m["channel"].as_str() {
                Some("/meta/subscribe") => {
                    assert_eq!(m["successful"], true, "{what}: {m}");
                    first = Some(shared.started[ch].load(SeqCst));
                    send(&mut conn, &connect);
                }
                Some("/meta/connect") => {
                    assert_eq!(m["successful"], true, "{what}: connect: {m}");
                    send(&mut conn, &connect);
                }
                _ => {
                    if let Some(msg) = bayeux_msg(&m, ch, &what) {
                        msgs.push(msg);
                    }
                }
            }
        }
    }
    if !abrupt {
        send(&mut conn, &json!([{"channel": "/meta/disconnect", "clientId": cid}]));
    }
    ws_leave(conn, abrupt);
    (msgs, first.expect("subscribed"))
}

fn bayeux_client(t: T, ch: usize, seed: u64, shared: Arc<Shared>) -> ClientReport {
    let what = format!("{} client #{seed} of {}", t.name(), channel(ch));
    let mut rng = Rng::seeded(seed);
    let mut sessions = 0u64;
    let mut messages = 0u64;
    loop {
        let finishing = shared.finished.load(SeqCst);
        let until = Instant::now() + rng.millis(1000, 6000);
        let abrupt = !finishing && rng.chance(40);
        let (msgs, first) = match t {
            T::BayeuxPoll => bayeux_poll_session(ch, until, abrupt, &shared),
            T::BayeuxWs => bayeux_ws_session(ch, until, abrupt, &shared),
            _ => unreachable!(),
        };
        sessions += 1;
        check_bayeux_session(&format!("{what}, session {sessions}"), &msgs, first);
        messages += msgs.len() as u64;
        shared.delivered.fetch_add(msgs.len() as u64, SeqCst);
        if finishing {
            // This session began after the publishers stopped and drained.
            break;
        }
        thread::sleep(rng.millis(0, 300));
    }
    ClientReport { what, connections: DIALED.with(|d| d.get()), sessions, messages }
}

// ---------------------------------------------------------------------------
// Churners: bursts of connections of every transport, dropped without resuming.

fn churner(seed: u64, shared: Arc<Shared>) -> u64 {
    let mut rng = Rng::seeded(seed);
    let mut opened = 0;
    while !shared.stop.load(SeqCst) {
        let burst = 10 + rng.below(21);
        let mut held = Vec::new();
        for _ in 0..burst {
            let ch = rng.below(CHANNELS as u64) as usize;
            let name = channel(ch);
            let mut conn = Conn::open(&shared, shared.public, "churner");
            opened += 1;
            match rng.below(8) {
                0 => {
                    ws_upgrade(&mut conn, &format!("/sub/{name}"));
                }
                1 => {
                    conn.send(&format_request("GET", &format!("/sub/{name}?timeout=10"), &[], b""));
                }
                2 => {
                    ws_upgrade(&mut conn, "/bayeux");
                }
                n => {
                    let t = ["sse", "stream", "iframe", "multipart", "sse"][n as usize - 3];
                    conn.send(&format_request("GET", &format!("/sub/{name}?transport={t}"), &[], b""));
                    let (status, _) = conn.head();
                    assert_eq!(status, 200, "churner {t}");
                }
            }
            held.push(conn);
        }
        thread::sleep(rng.millis(100, 1000));
        for conn in held {
            if rng.chance(50) {
                reset(conn.s);
            } else {
                let _ = conn.s.shutdown(Shutdown::Both);
            }
        }
    }
    opened
}

// ---------------------------------------------------------------------------
// Process figures

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/<pid>/fd").count()
}

#[derive(Default)]
struct Peak {
    rss_kib: u64,
    fds: usize,
    open: u64,
}

#[test]
fn soak_60s() {
    let secs = soak_secs();
    let history = (secs * 40).max(10_000).to_string();
    let server = Server::start(&[
        "--history-size",
        &history,
        "--heartbeat-secs",
        "5",
        "--max-stream-age-secs",
        "3",
        "--longpoll-timeout-secs",
        "2",
        "--bayeux-timeout-ms",
        "2000",
    ]);
    let pid = server.pid();
    let started = Instant::now();
    // Baseline: the idle server after one request on each port.
    assert_eq!(get(server.ingest, "/healthz").status, 200);
    assert_eq!(get(server.public, "/sub/warmup?timeout=0").status, 200);
    thread::sleep(Duration::from_millis(300));
    let base_rss = rss_kib(pid);
    let base_fds = fds(pid);

    let shared = Arc::new(Shared {
        public: server.public,
        ingest: server.ingest,
        resp: server.resp,
        started: (0..CHANNELS).map(|_| AtomicU64::new(0)).collect(),
        acked: (0..CHANNELS).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        connections: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        server_ended: AtomicU64::new(0),
    });

    let peak = Arc::new(Mutex::new(Peak::default()));
    let monitor = {
        let (shared, peak, ingest) = (shared.clone(), peak.clone(), server.ingest);
        thread::spawn(move || {
            while !shared.finished.load(SeqCst) {
                let (r, f) = (rss_kib(pid), fds(pid));
                let open = get(ingest, "/stats").json()["connections"]["open"].as_u64().unwrap_or(0);
                let mut p = peak.lock().unwrap();
                p.rss_kib = p.rss_kib.max(r);
                p.fds = p.fds.max(f);
                p.open = p.open.max(open);
                drop(p);
                thread::sleep(Duration::from_millis(500));
            }
        })
    };

    let publishers: Vec<JoinHandle<u64>> = (0..CHANNELS)
        .map(|ch| {
            let shared = shared.clone();
            thread::spawn(move || publisher(ch, shared))
        })
        .collect();
    // Let every channel have a message before clients start.
    wait_until("a first publish on every channel", || shared.acked.iter().all(|a| a.load(SeqCst) > 0));

    let mut clients: Vec<(String, JoinHandle<ClientReport>)> = Vec::new();
    let mut seed = 1u64;
    for (i, t) in T::ALL.into_iter().enumerate() {
        for k in 0..CLIENTS_PER_TRANSPORT {
            let ch = (i + k * 3) % CHANNELS;
            let shared = shared.clone();
            let s = seed;
            seed += 1;
            let handle = match t {
                T::BayeuxPoll | T::BayeuxWs => thread::spawn(move || bayeux_client(t, ch, s, shared)),
                _ => thread::spawn(move || hub_client(t, ch, s, shared)),
            };
            clients.push((format!("{} client #{s}", t.name()), handle));
        }
    }
    let churners: Vec<JoinHandle<u64>> = (0..CHURNERS)
        .map(|i| {
            let shared = shared.clone();
            thread::spawn(move || churner(1000 + i as u64, shared))
        })
        .collect();

    // Mid-soak figures, for the summary.
    let soak = Duration::from_secs(secs);
    thread::sleep(soak / 2);
    let mid_rss = rss_kib(pid);
    let mid_retained = stats(&server)["retained_messages"].as_u64().unwrap_or(0);
    thread::sleep(soak - soak / 2);

    shared.stop.store(true, SeqCst);
    let published: Vec<u64> = publishers.into_iter().map(|h| join(h, "publisher")).collect();
    shared.finished.store(true, SeqCst);
    let churned: u64 = churners.into_iter().map(|h| join(h, "churner")).sum();
    let reports: Vec<ClientReport> = clients.into_iter().map(|(what, h)| join(h, &what)).collect();
    join(monitor, "monitor");
    let soak_took = started.elapsed();

    // Everything is gone: the server's connections and fds must return to
    // the baseline.
    let settle = Instant::now();
    let mut last;
    let settled = loop {
        let open = stats(&server)["connections"]["open"].as_u64().unwrap_or(u64::MAX);
        let f = fds(pid);
        last = (open, f);
        if open <= 1 && f <= base_fds + FD_SLACK {
            break true;
        }
        if settle.elapsed() > DEADLINE {
            break false;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let end_stats = stats(&server);
    let retained = end_stats["retained_messages"].as_u64().unwrap_or(0);
    let end_rss = rss_kib(pid);
    let end_fds = fds(pid);
    let peak = std::mem::take(&mut *peak.lock().unwrap());
    let total_published: u64 = published.iter().sum();
    let history_allowance_kib = retained * HISTORY_BYTES_PER_MESSAGE / 1024;
    let rss_limit = base_rss + history_allowance_kib + RSS_SLACK_KIB;

    eprintln!("soak summary ({secs} s requested, {soak_took:.1?} with the drain):");
    eprintln!(
        "  published {total_published} messages on {CHANNELS} channels ({published:?}); delivered {} to \
         resuming clients and Bayeux sessions; {} streams ended by the server (max age)",
        shared.delivered.load(SeqCst),
        shared.server_ended.load(SeqCst)
    );
    eprintln!(
        "  subscriber connections opened: {} ({churned} by churners); peak open {}",
        shared.connections.load(SeqCst),
        peak.open
    );
    for r in &reports {
        eprintln!(
            "    {:<46} {:>5} connections {:>5} sessions {:>6} messages",
            r.what, r.connections, r.sessions, r.messages
        );
    }
    eprintln!(
        "  RSS: baseline {base_rss} KiB, mid-soak {mid_rss} KiB ({mid_retained} retained), peak {} KiB, end {end_rss} \
         KiB ({retained} retained messages; limit {rss_limit} KiB)",
        peak.rss_kib
    );
    if retained > mid_retained {
        eprintln!(
            "  RSS growth from mid-soak to the end per message retained meanwhile: {} bytes",
            end_rss.saturating_sub(mid_rss) * 1024 / (retained - mid_retained)
        );
    }
    eprintln!("  fds: baseline {base_fds}, peak {}, end {end_fds} (limit {})", peak.fds, base_fds + FD_SLACK);
    eprintln!("  server stats at the end: {end_stats}");

    assert!(
        settled,
        "after every client left, {} connections still open and {} fds (baseline {base_fds}) after {DEADLINE:?}",
        last.0, last.1
    );
    assert!(
        end_rss <= rss_limit,
        "RSS {end_rss} KiB after every client left: over the baseline {base_rss} KiB + {history_allowance_kib} KiB \
         for {retained} retained messages + {RSS_SLACK_KIB} KiB slack"
    );
    assert_eq!(retained, total_published, "every published message is retained (history size {history})");
    // For the record: what deleting the channels (their history) gives back.
    for ch in 0..CHANNELS {
        let r = request(server.ingest, "DELETE", &format!("/pub/{}", channel(ch)), &[], b"");
        assert_eq!(r.status, 200, "DELETE {}: {}", channel(ch), r.text());
    }
    wait_until("the history to be dropped", || stats(&server)["retained_messages"] == 0);
    thread::sleep(Duration::from_millis(500));
    eprintln!("  RSS after deleting the channels: {} KiB", rss_kib(pid));
    let log = server.log_text();
    assert!(!log.contains("panicked"), "halley panicked:\n{log}");
}
