//! A worker process: holds its share of the subscriber connections in one
//! mio event loop (edge-triggered, nonblocking), measures every delivery and
//! reports to the parent as JSON lines on stdout. Commands from the parent
//! arrive as lines on stdin: `snapshot <step>` and `exit`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::{Config, Transport};
use crate::parse::{self, Body, Seen, SeqTrack, WsEvent, CHUNK_START};
use crate::stats::{self, Errors};

const STDIN: Token = Token(usize::MAX - 1);
const READ_BUF: usize = 64 * 1024;
/// Largest long-poll answer body kept.
const MAX_POLL_BODY: usize = 16 << 20;
/// Per channel, at most this many messages' first/last receive times are kept per step.
const MAX_FL_PER_CHANNEL: usize = 20_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Idle,
    Connecting,
    Head,
    Body,
    Ws,
    Closed,
}

#[derive(Default)]
struct LongPoll {
    body: Vec<u8>,
    last_id: Vec<u8>,
    last_modified: Vec<u8>,
    etag: Vec<u8>,
    keep_alive: bool,
    status: u16,
    reconnects: u32,
}

struct Sub {
    stream: Option<TcpStream>,
    state: State,
    connected: bool,
    ch: u32,
    /// Global subscriber number.
    gidx: usize,
    started: Instant,
    out: Vec<u8>,
    head: Vec<u8>,
    body: Body,
    carry: Vec<u8>,
    frag: Vec<u8>,
    track: SeqTrack,
    lp: Option<Box<LongPoll>>,
}

/// First and last receive latency (µs) of each message of one channel,
/// indexed by `seq - base`.
#[derive(Default)]
struct FirstLast {
    base: u64,
    v: Vec<(u32, u32)>,
}

/// Counters of the current step (reset at each snapshot).
struct Stats {
    deliveries: u64,
    unique: u64,
    dup: u64,
    ooo: u64,
    stale: u64,
    /// Messages of an earlier step (already reported) arriving now.
    late: u64,
    hist: Histogram<u64>,
    /// Per channel, the first seq of the current step.
    step_start: Vec<u64>,
    fl: Vec<FirstLast>,
    /// Unique deliveries over the whole run (for progress reports).
    unique_total: u64,
    /// Messages with `t=` before this worker started are from an older run.
    run_start_ns: u64,
}

/// Everything but the sockets, the poll and the read buffer.
struct Ctx {
    transport: Transport,
    st: Stats,
    errors: Errors,
    connect_hist: Histogram<u64>,
    connected: usize,
    failed: usize,
    pending: usize,
    disconnected: u64,
    last_connected: Option<Instant>,
    ws_mask: [u8; 4],
}

enum Flow {
    Ok,
    /// The server ended the stream (or the WebSocket) on purpose.
    Ended(&'static str),
    /// Long-poll: open a new connection for the next poll.
    Reconnect,
    /// Long-poll: send the next poll on this connection.
    Repoll,
}

pub struct Worker<'a> {
    cfg: &'a Config,
    poll: Poll,
    subs: Vec<Sub>,
    buf: Vec<u8>,
    ctx: Ctx,
    target: SocketAddrV4,
    paths: Vec<String>,
    next: usize,
    next_connect_at: Instant,
    connect_interval: Option<Duration>,
    connect_started: Instant,
    ready_sent: bool,
    stdin_buf: Vec<u8>,
    exit: bool,
    deadline: Instant,
}

fn emit(v: &Value) {
    let mut out = io::stdout().lock();
    let line = v.to_string();
    if out.write_all(line.as_bytes()).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush()).is_err() {
        // The parent is gone: nothing left to report to.
        std::process::exit(1);
    }
}

pub fn run(cfg: &Config, index: usize, of: usize) -> i32 {
    stats::raise_nofile();
    match Worker::new(cfg, index, of).and_then(|mut w| w.run()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("loadgen worker {index}: {e}");
            emit(&json!({"type": "fatal", "error": e.to_string()}));
            1
        }
    }
}

impl<'a> Worker<'a> {
    fn new(cfg: &'a Config, index: usize, of: usize) -> io::Result<Worker<'a>> {
        let poll = Poll::new()?;
        let now = Instant::now();
        let subs: Vec<Sub> = (index..cfg.subscribers)
            .step_by(of)
            .map(|g| Sub {
                stream: None,
                state: State::Idle,
                connected: false,
                ch: (g % cfg.channels) as u32,
                gidx: g,
                started: now,
                out: Vec::new(),
                head: Vec::new(),
                body: Body::Done,
                carry: Vec::new(),
                frag: Vec::new(),
                track: SeqTrack::default(),
                lp: (cfg.transport == Transport::LongPoll).then(Box::default),
            })
            .collect();
        let paths = (0..cfg.channels).map(|c| cfg.sub_url.path_for(&cfg.channel_name(c))).collect();
        let connect_interval =
            (cfg.connect_rate > 0.0).then(|| Duration::from_secs_f64(of as f64 / cfg.connect_rate));
        // SAFETY: fcntl on our own stdin.
        unsafe {
            let fl = libc::fcntl(0, libc::F_GETFL);
            libc::fcntl(0, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        poll.registry().register(&mut SourceFd(&0), STDIN, Interest::READABLE)?;
        Ok(Worker {
            cfg,
            poll,
            subs,
            buf: vec![0; READ_BUF],
            ctx: Ctx {
                transport: cfg.transport,
                st: Stats {
                    deliveries: 0,
                    unique: 0,
                    dup: 0,
                    ooo: 0,
                    stale: 0,
                    late: 0,
                    hist: stats::new_hist(),
                    step_start: vec![0; cfg.channels],
                    fl: (0..cfg.channels).map(|_| FirstLast::default()).collect(),
                    unique_total: 0,
                    run_start_ns: parse::realtime_ns().saturating_sub(1_000_000_000),
                },
                errors: Errors::default(),
                connect_hist: stats::new_hist(),
                connected: 0,
                failed: 0,
                pending: 0,
                disconnected: 0,
                last_connected: None,
                ws_mask: [0x5a, 0x17, 0xc3, 0x8e],
            },
            target: cfg.sub_url.addr,
            paths,
            next: 0,
            next_connect_at: now,
            connect_interval,
            connect_started: now,
            ready_sent: false,
            stdin_buf: Vec::new(),
            exit: false,
            deadline: now + Duration::from_secs_f64(cfg.hard_deadline_secs()),
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        let mut last_progress = u64::MAX;
        while !self.exit {
            let now = Instant::now();
            if now >= self.deadline {
                return Err(io::Error::other("hard deadline reached"));
            }
            if !self.ready_sent {
                self.start_connects(now);
            }
            let mut timeout = Duration::from_millis(100).saturating_sub(now - last_tick);
            if !self.ready_sent
                && self.next < self.subs.len()
                && self.ctx.pending < self.cfg.connect_concurrency
            {
                timeout = timeout.min(self.next_connect_at.saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                if ev.token() == STDIN {
                    self.read_stdin();
                } else {
                    self.on_event(ev.token().0, ev.is_read_closed() || ev.is_error());
                }
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                last_tick = Instant::now();
                if !self.ready_sent {
                    self.expire_connects();
                } else if self.ctx.st.unique_total != last_progress {
                    last_progress = self.ctx.st.unique_total;
                    emit(&json!({"type": "progress", "unique": last_progress}));
                }
            }
            if !self.ready_sent && self.next == self.subs.len() && self.ctx.pending == 0 {
                self.send_ready();
            }
        }
        emit(&json!({
            "type": "done",
            "disconnected": self.ctx.disconnected,
            "errors": self.ctx.errors.to_json(),
            "cpu_secs": stats::rusage_cpu(libc::RUSAGE_SELF),
            "rss_kib_peak": stats::own_rss_peak_kib(),
        }));
        Ok(())
    }

    fn send_ready(&mut self) {
        self.ready_sent = true;
        let mut per = vec![0u64; self.cfg.channels];
        for s in self.subs.iter().filter(|s| s.connected) {
            per[s.ch as usize] += 1;
        }
        let per: Vec<Value> =
            per.iter().enumerate().filter(|(_, n)| **n > 0).map(|(c, n)| json!([c, n])).collect();
        let all_ms = self.ctx.last_connected.map(|t| (t - self.connect_started).as_secs_f64() * 1000.0);
        emit(&json!({
            "type": "ready",
            "subscribers": self.subs.len(),
            "connected": self.ctx.connected,
            "failed": self.ctx.failed,
            "per_channel": per,
            "connect_us": stats::hist_to_json(&self.ctx.connect_hist),
            "all_connected_ms": all_ms,
            "errors": self.ctx.errors.to_json(),
        }));
    }

    fn start_connects(&mut self, now: Instant) {
        while self.next < self.subs.len() && self.ctx.pending < self.cfg.connect_concurrency {
            if let Some(iv) = self.connect_interval {
                if now < self.next_connect_at {
                    break;
                }
                self.next_connect_at =
                    self.next_connect_at.max(now.checked_sub(Duration::from_millis(100)).unwrap_or(now)) + iv;
            }
            let i = self.next;
            self.next += 1;
            self.ctx.pending += 1;
            self.subs[i].started = Instant::now();
            if let Err(e) = self.open(i) {
                self.close(i, &format!("connect: {e}"));
            }
        }
    }

    fn expire_connects(&mut self) {
        let limit = Duration::from_secs_f64(self.cfg.connect_timeout);
        let why = if self.cfg.transport == Transport::Stream {
            "connect timeout (no response head; halley answers NDJSON only with ?transport=stream)"
        } else {
            "connect timeout (no response head)"
        };
        for i in 0..self.next {
            let s = &self.subs[i];
            if !s.connected
                && matches!(s.state, State::Connecting | State::Head)
                && s.started.elapsed() > limit
            {
                self.close(i, why);
            }
        }
    }

    fn open(&mut self, i: usize) -> io::Result<()> {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        sock.set_nonblocking(true)?;
        let sub = &mut self.subs[i];
        if !self.cfg.source_addrs.is_empty() {
            let src: Ipv4Addr = self.cfg.source_addrs[sub.gidx % self.cfg.source_addrs.len()];
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with a c_int option value on our socket. Lets
            // the kernel pick the port at connect() time so each source
            // address has its own port range.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            sock.bind(&SocketAddrV4::new(src, 0).into())?;
        }
        match sock.connect(&self.target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(sock.into());
        self.poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        sub.stream = Some(stream);
        sub.state = State::Connecting;
        sub.head.clear();
        sub.out.clear();
        Ok(())
    }

    /// Ends subscriber `i` (a failure before it connected, a disconnect after).
    fn close(&mut self, i: usize, why: &str) {
        let sub = &mut self.subs[i];
        if let Some(mut s) = sub.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        if sub.state == State::Closed {
            return;
        }
        sub.state = State::Closed;
        if sub.connected {
            self.ctx.disconnected += 1;
            self.ctx.errors.add(&format!("after connecting: {why}"));
        } else {
            self.ctx.failed += 1;
            self.ctx.pending -= 1;
            self.ctx.errors.add(why);
        }
    }

    fn reconnect(&mut self, i: usize) {
        let sub = &mut self.subs[i];
        if let Some(mut s) = sub.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        let lp = sub.lp.as_mut().expect("long-poll state");
        lp.reconnects += 1;
        if lp.reconnects > 100_000 {
            return self.close(i, "long-poll: too many reconnects");
        }
        if let Err(e) = self.open(i) {
            self.close(i, &format!("long-poll reconnect: {e}"));
        }
    }

    fn send_request(&mut self, i: usize) -> io::Result<()> {
        let path = &self.paths[self.subs[i].ch as usize];
        let sub = &mut self.subs[i];
        write_request(self.cfg, path, sub);
        sub.state = State::Head;
        sub.head.clear();
        flush(sub)
    }

    fn on_event(&mut self, i: usize, closed: bool) {
        if i >= self.subs.len() {
            return;
        }
        if self.subs[i].state == State::Connecting {
            let stream = self.subs[i].stream.as_ref().expect("stream");
            let ready = match stream.take_error() {
                Ok(Some(e)) | Err(e) => Err(e),
                Ok(None) => match stream.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(e) => Err(e),
                },
            };
            match ready {
                Ok(false) => return,
                Err(e) => return self.close(i, &format!("connect: {e}")),
                Ok(true) => {
                    if let Err(e) = self.send_request(i) {
                        return self.close(i, &format!("write request: {e}"));
                    }
                    // A long-poll counts as connected once its first request is out.
                    if self.ctx.transport == Transport::LongPoll && !self.subs[i].connected {
                        mark_connected(&mut self.subs[i], &mut self.ctx);
                    }
                }
            }
        }
        let sub = &mut self.subs[i];
        if sub.state == State::Closed || sub.state == State::Idle {
            return;
        }
        if !sub.out.is_empty() {
            if let Err(e) = flush(sub) {
                return self.close(i, &format!("write: {e}"));
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let result = self.read_all(i, &mut buf, closed);
            match result {
                Ok(Flow::Ok) => {}
                Ok(Flow::Repoll) => {
                    if let Err(e) = self.send_request(i) {
                        self.close(i, &format!("write request: {e}"));
                    } else {
                        // Read on: the connection may have ended meanwhile.
                        continue;
                    }
                }
                Ok(Flow::Reconnect) => self.reconnect(i),
                Ok(Flow::Ended(why)) => self.close(i, why),
                Err(e) => self.close(i, &e),
            }
            break;
        }
        self.buf = buf;
    }

    fn read_all(&mut self, i: usize, buf: &mut [u8], closed: bool) -> Result<Flow, String> {
        let sub = &mut self.subs[i];
        loop {
            let Some(stream) = sub.stream.as_mut() else { return Ok(Flow::Ok) };
            let n = match stream.read(buf) {
                Ok(0) => return on_eof(sub, &mut self.ctx),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flow::Ok),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            let now = parse::realtime_ns();
            match on_bytes(sub, &buf[..n], now, &mut self.ctx)? {
                Flow::Ok => {}
                other => return Ok(other),
            }
            if !sub.out.is_empty() {
                flush(sub).map_err(|e| format!("write: {e}"))?;
            }
            // A short read drained the socket: the next data brings a new edge.
            if n < buf.len() && !closed {
                return Ok(Flow::Ok);
            }
        }
    }

    fn read_stdin(&mut self) {
        let mut tmp = [0u8; 4096];
        loop {
            // SAFETY: read into a buffer we own.
            let n = unsafe { libc::read(0, tmp.as_mut_ptr() as *mut libc::c_void, tmp.len()) };
            if n == 0 {
                // The parent is gone.
                self.exit = true;
                return;
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.exit = true;
                }
                break;
            }
            self.stdin_buf.extend_from_slice(&tmp[..n as usize]);
        }
        while let Some(pos) = self.stdin_buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.stdin_buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if let Some(rest) = line.strip_prefix("snapshot ") {
                // "snapshot <step> [[channel, first seq of the next step], ...]"
                let (k, next) = rest.split_once(' ').unwrap_or((rest, "[]"));
                let next: Value = serde_json::from_str(next).unwrap_or(Value::Null);
                self.snapshot(k.trim().parse().unwrap_or(0), &next);
            } else if line == "exit" {
                self.exit = true;
            }
        }
    }

    fn snapshot(&mut self, step: u64, next: &Value) {
        let st = &mut self.ctx.st;
        let mut fl = Vec::new();
        for (c, f) in st.fl.iter_mut().enumerate() {
            if f.v.is_empty() {
                continue;
            }
            let mins: Vec<u64> =
                f.v.iter().map(|e| if e.0 == u32::MAX { u64::MAX } else { e.0 as u64 }).collect();
            let maxs: Vec<u32> = f.v.iter().map(|e| e.1).collect();
            fl.push(json!([c, f.base, mins, maxs]));
            f.base += f.v.len() as u64;
            f.v.clear();
        }
        // From now on, seqs below the next step's first one are late.
        for pair in next.as_array().into_iter().flatten() {
            let (Some(c), Some(seq)) = (pair[0].as_u64(), pair[1].as_u64()) else { continue };
            if let (Some(start), Some(f)) = (st.step_start.get_mut(c as usize), st.fl.get_mut(c as usize)) {
                *start = seq;
                f.base = seq;
                f.v.clear();
            }
        }
        emit(&json!({
            "type": "step",
            "step": step,
            "deliveries": st.deliveries,
            "unique": st.unique,
            "duplicated": st.dup,
            "out_of_order": st.ooo,
            "stale": st.stale,
            "late": st.late,
            "hist": stats::hist_to_json(&st.hist),
            "fl": fl,
            "disconnected": self.ctx.disconnected,
            "errors": self.ctx.errors.to_json(),
        }));
        st.deliveries = 0;
        st.unique = 0;
        st.dup = 0;
        st.ooo = 0;
        st.stale = 0;
        st.late = 0;
        st.hist.reset();
    }
}

/// Appends the subscriber's next request to its output buffer (no allocation
/// once the buffer has grown: long-pollers send one per answer).
fn write_request(cfg: &Config, path: &str, sub: &mut Sub) {
    let out = &mut sub.out;
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    if let Some(lp) = &sub.lp {
        if !lp.last_id.is_empty() && lp.last_modified.is_empty() && lp.etag.is_empty() {
            out.push(if path.contains('?') { b'&' } else { b'?' });
            out.extend_from_slice(b"last_id=");
            out.extend_from_slice(&lp.last_id);
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(cfg.sub_url.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    match cfg.transport {
        Transport::Sse => out.extend_from_slice(b"Accept: text/event-stream\r\nCache-Control: no-cache\r\n"),
        Transport::Stream => out.extend_from_slice(b"Accept: application/x-ndjson\r\n"),
        Transport::LongPoll => {
            out.extend_from_slice(b"Accept: */*\r\n");
            let lp = sub.lp.as_ref().expect("long-poll state");
            for (name, value) in
                [(&b"If-Modified-Since: "[..], &lp.last_modified), (b"If-None-Match: ", &lp.etag)]
            {
                if !value.is_empty() {
                    out.extend_from_slice(name);
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        Transport::Ws => {
            let mut x = (sub.gidx as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut key = [0u8; 16];
            for b in key.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            out.extend_from_slice(
                b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
            );
            out.extend_from_slice(parse::base64_16(key).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    for (k, v) in &cfg.headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn flush(sub: &mut Sub) -> io::Result<()> {
    let Some(stream) = sub.stream.as_mut() else { return Ok(()) };
    let mut done = 0;
    while done < sub.out.len() {
        match stream.write(&sub.out[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    sub.out.drain(..done);
    Ok(())
}

fn mark_connected(sub: &mut Sub, ctx: &mut Ctx) {
    sub.connected = true;
    ctx.connected += 1;
    ctx.pending -= 1;
    let now = Instant::now();
    ctx.connect_hist.saturating_record((now - sub.started).as_micros().max(1) as u64);
    ctx.last_connected = Some(now);
}

fn on_eof(sub: &mut Sub, ctx: &mut Ctx) -> Result<Flow, String> {
    if sub.lp.is_some() && sub.connected {
        if sub.state == State::Body && sub.body == Body::Close {
            // A close-delimited answer is complete.
            let now = parse::realtime_ns();
            sub.body = Body::Done;
            finish_poll(sub, ctx, now);
        }
        return Ok(Flow::Reconnect);
    }
    if sub.connected {
        Ok(Flow::Ended("server closed the connection"))
    } else {
        Err("closed before the response head".to_string())
    }
}

/// What the head said (owned; the head buffer is reused).
struct Head {
    status: u16,
    body: Body,
    /// The Content-Type, cut to 64 bytes (no allocation per answer).
    ct: [u8; 64],
    ct_len: usize,
}

impl Head {
    fn content_type(&self) -> &[u8] {
        &self.ct[..self.ct_len]
    }
}

fn parse_head(buf: &[u8], lp: Option<&mut LongPoll>) -> Result<Option<(usize, Head)>, String> {
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hdrs);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let h = resp.headers;
    let chunked = parse::header(h, "transfer-encoding").is_some_and(|v| parse::contains_ci(v, "chunked"));
    let length = parse::header(h, "content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let conn = parse::header(h, "connection").unwrap_or(b"");
    let keep_alive =
        if http10 { parse::contains_ci(conn, "keep-alive") } else { !parse::contains_ci(conn, "close") };
    let body = if chunked {
        Body::Chunked(CHUNK_START)
    } else if let Some(n) = length {
        if n == 0 {
            Body::Done
        } else {
            Body::Length(n)
        }
    } else if status == 304 || status == 204 || status == 101 {
        Body::Done
    } else {
        Body::Close
    };
    if let Some(lp) = lp {
        if let Some(v) = parse::header(h, "last-modified") {
            lp.last_modified.clear();
            lp.last_modified.extend_from_slice(v);
        }
        if let Some(v) = parse::header(h, "etag") {
            lp.etag.clear();
            lp.etag.extend_from_slice(v);
        }
        lp.keep_alive = keep_alive;
        lp.status = status;
    }
    let raw_ct = parse::header(h, "content-type").unwrap_or(b"");
    let mut ct = [0u8; 64];
    let ct_len = raw_ct.len().min(64);
    ct[..ct_len].copy_from_slice(&raw_ct[..ct_len]);
    Ok(Some((len, Head { status, body, ct, ct_len })))
}

fn on_bytes(sub: &mut Sub, data: &[u8], now: u64, ctx: &mut Ctx) -> Result<Flow, String> {
    match sub.state {
        State::Head => {
            let prev = sub.head.len();
            let parsed = if prev == 0 {
                parse_head(data, sub.lp.as_deref_mut())?
            } else {
                sub.head.extend_from_slice(data);
                parse_head(&sub.head, sub.lp.as_deref_mut())?
            };
            let Some((len, head)) = parsed else {
                if prev == 0 {
                    sub.head.extend_from_slice(data);
                }
                if sub.head.len() > 64 * 1024 {
                    return Err("response head over 64 KiB".into());
                }
                return Ok(Flow::Ok);
            };
            sub.head.clear();
            let rest = &data[len - prev..];
            on_head(sub, head, ctx)?;
            if sub.state == State::Body && sub.body == Body::Done {
                // No body at all.
                if sub.lp.is_some() {
                    return Ok(finish_poll(sub, ctx, now));
                }
                return Ok(Flow::Ended("the server ended the stream"));
            }
            if rest.is_empty() {
                return Ok(Flow::Ok);
            }
            on_bytes(sub, rest, now, ctx)
        }
        State::Body => match ctx.transport {
            Transport::Sse | Transport::Stream => {
                let transport = ctx.transport;
                let mut err = None;
                let (carry, track, ch, st) = (&mut sub.carry, &mut sub.track, sub.ch, &mut ctx.st);
                sub.body
                    .feed(data, &mut |piece: &[u8]| {
                        let r = parse::split_lines(carry, piece, &mut |line: &[u8]| {
                            on_line(transport, line, &mut |s, t, u| deliver(st, track, ch, s, t, u, now));
                        });
                        if let Err(e) = r {
                            err = Some(e);
                        }
                    })
                    .map_err(|e| format!("body: {e}"))?;
                if let Some(e) = err {
                    return Err(e.to_string());
                }
                if sub.body == Body::Done {
                    return Ok(Flow::Ended("the server ended the stream"));
                }
                Ok(Flow::Ok)
            }
            Transport::LongPoll => {
                let lp = sub.lp.as_mut().expect("long-poll state");
                let body = &mut lp.body;
                sub.body
                    .feed(data, &mut |piece: &[u8]| body.extend_from_slice(piece))
                    .map_err(|e| format!("body: {e}"))?;
                if body.len() > MAX_POLL_BODY {
                    return Err("long-poll answer over 16 MiB".into());
                }
                if sub.body == Body::Done {
                    return Ok(finish_poll(sub, ctx, now));
                }
                Ok(Flow::Ok)
            }
            Transport::Ws => unreachable!("ws bodies are frames"),
        },
        State::Ws => {
            let mut ended = false;
            let (track, ch, st, out, mask) = (&mut sub.track, sub.ch, &mut ctx.st, &mut sub.out, ctx.ws_mask);
            let mut on = |e: WsEvent| match e {
                WsEvent::Message(m) => {
                    parse::extract(m, &mut |s, t, u| deliver(st, track, ch, s, t, u, now));
                }
                WsEvent::Ping(p) => parse::ws_client_frame(out, 0xA, p, mask),
                WsEvent::Close => {
                    parse::ws_client_frame(out, 0x8, &[], mask);
                    ended = true;
                }
            };
            if sub.carry.is_empty() {
                let used = parse::ws_frames(data, &mut sub.frag, &mut on)?;
                if used < data.len() && !ended {
                    sub.carry.extend_from_slice(&data[used..]);
                }
            } else {
                sub.carry.extend_from_slice(data);
                let used = parse::ws_frames(&sub.carry, &mut sub.frag, &mut on)?;
                sub.carry.drain(..used);
            }
            if ended {
                let _ = flush(sub);
                return Ok(Flow::Ended("the server closed the WebSocket"));
            }
            Ok(Flow::Ok)
        }
        State::Idle | State::Connecting | State::Closed => Ok(Flow::Ok),
    }
}

fn on_head(sub: &mut Sub, head: Head, ctx: &mut Ctx) -> Result<(), String> {
    let ct = head.content_type();
    let ct_text = || String::from_utf8_lossy(ct).into_owned();
    match ctx.transport {
        Transport::Ws => {
            if head.status != 101 {
                return Err(format!("HTTP {} instead of 101 Switching Protocols", head.status));
            }
            sub.state = State::Ws;
            sub.carry.clear();
        }
        Transport::Sse | Transport::Stream => {
            if head.status != 200 {
                return Err(format!("HTTP {}", head.status));
            }
            if ctx.transport == Transport::Sse && !parse::contains_ci(ct, "event-stream") {
                return Err(format!("content-type '{}', not text/event-stream", ct_text()));
            }
            if ctx.transport == Transport::Stream
                && ct.len() >= 16
                && ct[..16].eq_ignore_ascii_case(b"application/json")
            {
                return Err(format!(
                    "content-type '{}' (a long-poll answer?); for halley add ?transport=stream to --sub-url",
                    ct_text()
                ));
            }
            sub.state = State::Body;
            sub.body = head.body;
            sub.carry.clear();
        }
        Transport::LongPoll => {
            match head.status {
                200 | 304 | 408 | 204 => {}
                s => return Err(format!("HTTP {s}")),
            }
            sub.state = State::Body;
            sub.body = head.body;
            return Ok(());
        }
    }
    if !sub.connected {
        mark_connected(sub, ctx);
    }
    Ok(())
}

/// A long-poll answer is complete: count its messages, remember the position
/// (halley: `last_id` from the body; Nchan: Last-Modified/Etag, kept when the
/// head was parsed) and send the next poll.
fn finish_poll(sub: &mut Sub, ctx: &mut Ctx, now: u64) -> Flow {
    let lp = sub.lp.as_mut().expect("long-poll state");
    if lp.status == 200 {
        let (track, ch, st) = (&mut sub.track, sub.ch, &mut ctx.st);
        parse::extract(&lp.body, &mut |s, t, u| deliver(st, track, ch, s, t, u, now));
        if lp.last_modified.is_empty() && lp.etag.is_empty() {
            if let Some(p) = memchr::memmem::find(&lp.body, b"\"last_id\":\"") {
                let from = p + 11;
                if let Some(end) = memchr::memchr(b'"', &lp.body[from..]) {
                    if end > 0 {
                        lp.last_id.clear();
                        lp.last_id.extend_from_slice(&lp.body[from..from + end]);
                    }
                }
            }
        }
    }
    lp.body.clear();
    sub.state = State::Head;
    sub.head.clear();
    if !lp.keep_alive {
        return Flow::Reconnect;
    }
    Flow::Repoll
}

fn on_line(transport: Transport, line: &[u8], f: &mut impl FnMut(u64, u64, u64)) {
    match transport {
        Transport::Sse => {
            if let Some(rest) = line.strip_prefix(b"data:") {
                parse::extract(rest, f);
            }
        }
        _ => {
            if let Some(p) = memchr::memmem::find(line, b"\"data\":\"") {
                parse::extract(&line[p + 8..], f);
            }
        }
    }
}

fn deliver(st: &mut Stats, track: &mut SeqTrack, ch: u32, seq: u64, t: u64, u: u64, now: u64) {
    if t < st.run_start_ns {
        st.stale += 1;
        return;
    }
    if seq < st.step_start[ch as usize] {
        // Its step was already reported (it came after the settle time).
        track.record(seq, u);
        st.late += 1;
        return;
    }
    let lat_us = now.saturating_sub(t) / 1000;
    st.deliveries += 1;
    match track.record(seq, u) {
        Seen::New { out_of_order } => {
            st.unique += 1;
            st.unique_total += 1;
            st.ooo += out_of_order as u64;
        }
        Seen::Duplicate => st.dup += 1,
    }
    st.hist.saturating_record(lat_us.max(1));
    let f = &mut st.fl[ch as usize];
    if seq < f.base {
        return;
    }
    let idx = (seq - f.base) as usize;
    if idx >= f.v.len() {
        if idx >= MAX_FL_PER_CHANNEL {
            return;
        }
        f.v.resize(idx + 1, (u32::MAX, 0));
    }
    let lat = lat_us.min(u32::MAX as u64 - 1) as u32;
    let e = &mut f.v[idx];
    e.0 = e.0.min(lat);
    e.1 = e.1.max(lat);
}
