//! A worker process: holds its share of the subscriber connections in one
//! mio event loop (edge-triggered, nonblocking), measures every delivery and
//! reports to the parent as JSON lines on stdout. Commands from the parent
//! arrive as lines on stdin: `snapshot <step>` and `exit`.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use crate::cli::{Config, Transport};
use crate::parse::SeqTrack;
use crate::stats::{self, Errors};

mod dial;
mod h2_link;
mod measure;
mod sub;

use dial::{connect_result, dial, tls_client};
use h2_link::{Link, Todo};
use measure::Stats;
use sub::{end_sub, flush, mark_connected, on_bytes, on_eof, write_request, Ctx, Decoder, Flow, State, Sub};

const STDIN: Token = Token(usize::MAX - 1);
const READ_BUF: usize = 64 * 1024;

pub struct Worker<'a> {
    cfg: &'a Config,
    poll: Poll,
    subs: Vec<Sub>,
    buf: Vec<u8>,
    ctx: Ctx,
    /// Per `--sub-url` template (node), per channel: the request path.
    paths: Vec<Vec<String>>,
    next: usize,
    next_connect_at: Instant,
    connect_interval: Option<Duration>,
    connect_started: Instant,
    ready_sent: bool,
    stdin_buf: Vec<u8>,
    exit: bool,
    deadline: Instant,
    /// Client config and server name with `--tls-ca`.
    tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    /// `--h2-streams`: the HTTP/2 connections, each carrying a contiguous
    /// range of `subs` (empty otherwise).
    links: Vec<Link>,
    h2_todo: Vec<Todo>,
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
                tls: None,
                state: State::Idle,
                connected: false,
                ch: (g % cfg.channels) as u32,
                gidx: g,
                started: now,
                out: Vec::new(),
                head: Vec::new(),
                track: SeqTrack::default(),
                dec: Decoder::new(cfg.transport),
                reconnects: 0,
                h2_stream: 0,
            })
            .collect();
        // Link c carries subscribers [c*S, (c+1)*S); its ordinal over all
        // workers picks its node and source address, as a subscriber's does.
        let links = match cfg.h2_streams {
            Some(per) => (0..subs.len().div_ceil(per))
                .map(|c| Link::new(c * per..((c + 1) * per).min(subs.len()), c * of + index))
                .collect(),
            None => Vec::new(),
        };
        let paths = cfg
            .sub_urls
            .iter()
            .map(|u| (0..cfg.channels).map(|c| u.path_for(&cfg.channel_name(c))).collect())
            .collect();
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
                st: Stats::new(cfg.channels),
                errors: Errors::default(),
                connect_hist: stats::new_hist(),
                connected: 0,
                failed: 0,
                pending: 0,
                disconnected: 0,
                last_connected: None,
                ws_mask: [0x5a, 0x17, 0xc3, 0x8e],
            },
            paths,
            next: 0,
            next_connect_at: now,
            connect_interval,
            connect_started: now,
            ready_sent: false,
            stdin_buf: Vec::new(),
            exit: false,
            deadline: now + Duration::from_secs_f64(cfg.hard_deadline_secs()),
            tls: tls_client(cfg)?,
            links,
            h2_todo: Vec::new(),
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
            if self.cfg.h2_streams.is_some() {
                // A whole link: its subscribers connect together.
                let l = self.links.iter().position(|k| k.subs.start == self.next).expect("a link per range");
                self.open_link(l);
                continue;
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
        let sub = &mut self.subs[i];
        let target = self.cfg.sub_urls[sub.gidx % self.cfg.sub_urls.len()].addr;
        let mut stream = dial(self.cfg, sub.gidx, target)?;
        self.poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        sub.stream = Some(stream);
        sub.tls = match &self.tls {
            Some((config, name)) => Some(Box::new(
                rustls::ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?,
            )),
            None => None,
        };
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
        end_sub(sub, &mut self.ctx, why);
        if self.cfg.h2_streams.is_some() {
            self.h2_drop_stream(i);
        }
    }

    fn reconnect(&mut self, i: usize) {
        let sub = &mut self.subs[i];
        if let Some(mut s) = sub.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        sub.reconnects += 1;
        if sub.reconnects > 100_000 {
            return self.close(i, "long-poll: too many reconnects");
        }
        if let Err(e) = self.open(i) {
            self.close(i, &format!("long-poll reconnect: {e}"));
        }
    }

    fn send_request(&mut self, i: usize) -> io::Result<()> {
        let path = &self.paths[self.subs[i].gidx % self.paths.len()][self.subs[i].ch as usize];
        let sub = &mut self.subs[i];
        write_request(self.cfg, path, sub);
        sub.state = State::Head;
        sub.head.clear();
        flush(sub)
    }

    fn on_event(&mut self, i: usize, closed: bool) {
        if self.cfg.h2_streams.is_some() {
            return self.link_event(i, closed);
        }
        if i >= self.subs.len() {
            return;
        }
        if self.subs[i].state == State::Connecting {
            let stream = self.subs[i].stream.as_ref().expect("stream");
            match connect_result(stream) {
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
        if self.subs[i].tls.is_some() {
            return self.read_tls(i, buf);
        }
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
            let now = crate::parse::realtime_ns();
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

    /// `read_all` through TLS: ciphertext until the socket would block, each
    /// record's plaintext handed on as it is decrypted.
    fn read_tls(&mut self, i: usize, buf: &mut [u8]) -> Result<Flow, String> {
        let sub = &mut self.subs[i];
        loop {
            let (Some(stream), Some(tls)) = (sub.stream.as_mut(), sub.tls.as_mut()) else {
                return Ok(Flow::Ok);
            };
            match tls.read_tls(stream) {
                Ok(0) => return on_eof(sub, &mut self.ctx),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flow::Ok),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
            let state = tls.process_new_packets().map_err(|e| format!("tls: {e}"))?;
            loop {
                let Some(tls) = sub.tls.as_mut() else { return Ok(Flow::Ok) };
                let Some(n) = dial::plaintext(tls, buf)? else { break };
                let now = crate::parse::realtime_ns();
                match on_bytes(sub, &buf[..n], now, &mut self.ctx)? {
                    Flow::Ok => {}
                    other => return Ok(other),
                }
            }
            // Handshake messages, and requests held until the handshake completed.
            flush(sub).map_err(|e| format!("write: {e}"))?;
            if state.peer_has_closed() {
                return on_eof(sub, &mut self.ctx);
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
        let mut v = self.ctx.st.snapshot(next);
        v.insert("type".into(), json!("step"));
        v.insert("step".into(), json!(step));
        v.insert("disconnected".into(), json!(self.ctx.disconnected));
        v.insert("errors".into(), self.ctx.errors.to_json());
        emit(&Value::Object(v));
    }
}
