//! The open-loop publisher: a thread of the parent with its own mio loop.
//! Message i of a step is due at start + i/rate and carries that scheduled
//! time in `t=`; the schedule never waits for answers. Each message goes to
//! the --pub-conns keep-alive connection with the fewest requests in flight
//! (at most --pub-pipeline each); when all are full it waits in a queue, its
//! latency still counting from the scheduled time. Because messages of one
//! channel may be in flight on several connections at once, each carries
//! `u=<seq>`: the lowest seq of its channel still unanswered when it was sent,
//! so subscribers count as out of order only what the server had promised to
//! deliver in order.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddrV4;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::cli::{Config, PubFormat, Target};
use crate::msg::{Cmd, Event, PubMsg, StepOutcome};
use crate::parse;
use crate::stats::{self, Errors};

pub(crate) mod answer;
mod flight;

use flight::Flight;

struct Conn {
    /// Which publish address (`--pub-url` template) this connection goes to.
    node: usize,
    stream: Option<TcpStream>,
    connected: bool,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// Every request awaiting its answer, in order.
    inflight: VecDeque<InFlight>,
    retry_at: Option<Instant>,
}

struct InFlight {
    ch: u32,
    seq: u64,
    /// The `t=` it carries and its scheduled time (to send it again as it was).
    t: u64,
    sched: Instant,
    written: Instant,
}

enum Mode {
    Http { paths: Vec<Vec<String>>, hosts: Vec<String>, format: PubFormat },
    Resp,
}

struct Publisher {
    poll: Poll,
    conns: Vec<Conn>,
    /// One per `--pub-url` template (one for RESP); message k goes to `addrs[k % n]`.
    addrs: Vec<SocketAddrV4>,
    /// The address the next message goes to.
    next_node: usize,
    mode: Mode,
    names: Vec<String>,
    seqs: Vec<u64>,
    flights: Vec<Flight>,
    /// (channel, seq, t, scheduled time) waiting for room in a pipeline.
    queue: VecDeque<(u32, u64, u64, Instant)>,
    rotate: usize,
    /// The server closes the connection after each answer (Connection:
    /// close): send one request per connection from then on.
    no_keepalive: bool,
    target: Target,
    rng: u64,
    rr: u64,
    payload_bytes: usize,
    pipeline: usize,
    payload: Vec<u8>,
    body: Vec<u8>,
    rtmp: Vec<u8>,
    // Per step.
    accepted: Vec<u64>,
    errors: u64,
    err: Errors,
    max_lag_us: u64,
    answer_hist: Histogram<u64>,
}

pub fn thread(cfg: Config, cmds: Receiver<Cmd>, events: Sender<Event>) {
    let mut p = match Publisher::new(&cfg) {
        Ok(p) => p,
        Err(e) => {
            let _ = events.send(Event::Pub(PubMsg::Connected(Err(format!("publisher: {e}")))));
            return;
        }
    };
    while let Ok(cmd) = cmds.recv() {
        let msg = match cmd {
            Cmd::Connect => PubMsg::Connected(p.connect_all()),
            Cmd::Step { rate, duration, settle } => {
                PubMsg::Step(Box::new(p.run_step(rate, duration, settle)))
            }
            Cmd::Exit => return,
        };
        if events.send(Event::Pub(msg)).is_err() {
            return;
        }
    }
}

impl Publisher {
    fn new(cfg: &Config) -> io::Result<Publisher> {
        let names: Vec<String> = (0..cfg.channels).map(|c| cfg.channel_name(c)).collect();
        let (addrs, mode) = match (cfg.pub_urls.is_empty(), cfg.pub_resp) {
            (false, _) => (
                cfg.pub_urls.iter().map(|u| u.addr).collect::<Vec<_>>(),
                Mode::Http {
                    paths: cfg
                        .pub_urls
                        .iter()
                        .map(|u| names.iter().map(|n| u.path_for(n)).collect())
                        .collect(),
                    hosts: cfg.pub_urls.iter().map(|u| u.host.clone()).collect(),
                    format: cfg.pub_format,
                },
            ),
            (true, Some(a)) => (vec![a], Mode::Resp),
            (true, None) => return Err(io::Error::other("nothing to publish to")),
        };
        // --pub-conns connections to each publish address.
        let conns = (0..cfg.pub_conns * addrs.len())
            .map(|c| Conn {
                node: c % addrs.len(),
                stream: None,
                connected: false,
                wbuf: Vec::new(),
                rbuf: Vec::new(),
                inflight: VecDeque::new(),
                retry_at: None,
            })
            .collect();
        Ok(Publisher {
            poll: Poll::new()?,
            conns,
            addrs,
            next_node: 0,
            mode,
            seqs: vec![0; cfg.channels],
            flights: (0..cfg.channels).map(|_| Flight::default()).collect(),
            queue: VecDeque::new(),
            rotate: 0,
            no_keepalive: false,
            accepted: vec![0; cfg.channels],
            names,
            target: cfg.target,
            rng: 0x2545_f491_4f6c_dd1d ^ parse::realtime_ns(),
            rr: 0,
            payload_bytes: cfg.payload_bytes,
            pipeline: cfg.pub_pipeline,
            payload: Vec::new(),
            body: Vec::new(),
            rtmp: vec![0; 64 * 1024],
            errors: 0,
            err: Errors::default(),
            max_lag_us: 0,
            answer_hist: stats::new_hist(),
        })
    }

    fn open(&mut self, c: usize) {
        let conn = &mut self.conns[c];
        conn.connected = false;
        conn.rbuf.clear();
        conn.wbuf.clear();
        match TcpStream::connect(self.addrs[conn.node].into()) {
            Ok(mut s) => {
                let _ = s.set_nodelay(true);
                if let Err(e) =
                    self.poll.registry().register(&mut s, Token(c), Interest::READABLE | Interest::WRITABLE)
                {
                    self.err.add(&format!("register: {e}"));
                    conn.retry_at = Some(Instant::now() + Duration::from_millis(100));
                    return;
                }
                conn.stream = Some(s);
                conn.retry_at = None;
            }
            Err(e) => {
                self.err.add(&format!("connect: {e}"));
                conn.retry_at = Some(Instant::now() + Duration::from_millis(100));
            }
        }
    }

    /// Drops connection `c`; what was in flight on it counts as failed.
    fn fail(&mut self, c: usize, why: &str) {
        let conn = &mut self.conns[c];
        if let Some(mut s) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        conn.connected = false;
        let lost = conn.inflight.len() as u64;
        for f in conn.inflight.drain(..) {
            self.flights[f.ch as usize].answered(f.seq);
        }
        conn.wbuf.clear();
        conn.rbuf.clear();
        conn.retry_at = Some(Instant::now() + Duration::from_millis(100));
        if lost > 0 {
            self.errors += lost;
            self.err.add_n(why, lost);
        }
    }

    fn connect_all(&mut self) -> Result<(), String> {
        for c in 0..self.conns.len() {
            self.open(c);
        }
        let until = Instant::now() + Duration::from_secs(3);
        let mut events = Events::with_capacity(256);
        while Instant::now() < until && !self.conns.iter().all(|c| c.connected) {
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(20)));
            let toks: Vec<usize> = events.iter().map(|e| e.token().0).collect();
            for c in toks {
                self.on_event(c);
            }
            for c in 0..self.conns.len() {
                if self.conns[c].stream.is_none()
                    && self.conns[c].retry_at.is_some_and(|t| Instant::now() >= t)
                {
                    self.open(c);
                }
            }
        }
        // Every publish address needs at least one connection up.
        for (n, addr) in self.addrs.iter().enumerate() {
            if !self.conns.iter().any(|c| c.node == n && c.connected) {
                let why = self.err.items.first().map(|e| e.0.clone()).unwrap_or_else(|| "timeout".into());
                return Err(format!("could not connect to the publish address {addr}: {why}"));
            }
        }
        Ok(())
    }

    fn pick_channel(&mut self, channels: usize) -> u32 {
        match self.target {
            Target::Ch0 => 0,
            Target::All => {
                let c = self.rr % channels as u64;
                self.rr += 1;
                c as u32
            }
            Target::Random => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                (self.rng % channels as u64) as u32
            }
        }
    }

    fn run_step(&mut self, rate: f64, duration: f64, settle: f64) -> StepOutcome {
        self.accepted.iter_mut().for_each(|a| *a = 0);
        self.errors = 0;
        self.err = Errors::default();
        self.max_lag_us = 0;
        self.answer_hist.reset();
        let n = (rate * duration).round().max(1.0) as u64;
        let iv_ns = 1e9 / rate;
        let start = Instant::now();
        let unix0 = parse::realtime_ns();
        let due = |i: u64| start + Duration::from_nanos((i as f64 * iv_ns) as u64);
        let publish_end = due(n - 1);
        let hard_end = publish_end + Duration::from_secs_f64(settle.max(1.0));
        let mut events = Events::with_capacity(256);
        let mut i = 0u64;
        let channels = self.seqs.len();
        loop {
            let now = Instant::now();
            let elapsed = (now - start).as_nanos() as f64;
            while i < n && i as f64 * iv_ns <= elapsed {
                let ch = self.pick_channel(channels);
                let seq = self.seqs[ch as usize];
                self.seqs[ch as usize] += 1;
                let off = (i as f64 * iv_ns) as u64;
                self.queue.push_back((ch, seq, unix0 + off, start + Duration::from_nanos(off)));
                i += 1;
            }
            for c in 0..self.conns.len() {
                if self.conns[c].stream.is_none() && self.conns[c].retry_at.is_some_and(|t| now >= t) {
                    self.open(c);
                }
            }
            self.dispatch();
            let idle = self.queue.is_empty() && self.conns.iter().all(|c| c.inflight.is_empty());
            if i == n && idle {
                break;
            }
            if now >= hard_end {
                let queued = self.queue.len() as u64;
                if queued > 0 {
                    self.errors += queued;
                    self.err.add_n("not sent before the end of the step (all connections busy)", queued);
                    for (ch, seq, _, _) in self.queue.drain(..) {
                        self.flights[ch as usize].answered(seq);
                    }
                }
                for c in 0..self.conns.len() {
                    if !self.conns[c].inflight.is_empty() {
                        self.fail(c, "unanswered at the end of the step");
                    }
                }
                break;
            }
            let next = if i < n { due(i) } else { now + Duration::from_millis(20) }.min(hard_end);
            let wait = next.saturating_duration_since(now);
            let timeout = if wait > Duration::from_millis(2) {
                wait - Duration::from_millis(1)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.err.add(&format!("poll: {e}"));
                }
            }
            let toks: Vec<usize> = events.iter().map(|e| e.token().0).collect();
            let got_events = !toks.is_empty();
            for c in toks {
                self.on_event(c);
            }
            if !got_events && i < n {
                // Sleep the last stretch precisely (epoll waits whole milliseconds).
                let left = due(i).saturating_duration_since(Instant::now());
                if left > Duration::ZERO && left <= Duration::from_millis(2) {
                    std::thread::sleep(left);
                }
            }
        }
        StepOutcome {
            scheduled: n,
            accepted: self.accepted.clone(),
            errors: self.errors,
            error_samples: std::mem::take(&mut self.err),
            publish_end,
            max_lag_us: self.max_lag_us,
            answer_hist: self.answer_hist.clone(),
            next_seqs: self.seqs.clone(),
        }
    }

    /// Sends queued messages, each on the connection with the fewest in flight.
    fn dispatch(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let now = Instant::now();
        let k = self.conns.len();
        let depth = if self.no_keepalive { 1 } else { self.pipeline };
        let mut dirty = 0u64;
        while !self.queue.is_empty() {
            self.rotate = (self.rotate + 1) % k;
            let node = self.next_node;
            let best = (0..k)
                .map(|j| (self.rotate + j) % k)
                .filter(|&c| {
                    self.conns[c].node == node
                        && self.conns[c].connected
                        && self.conns[c].inflight.len() < depth
                })
                .min_by_key(|&c| self.conns[c].inflight.len());
            let Some(c) = best else { break };
            self.next_node = (node + 1) % self.addrs.len();
            let (ch, seq, t, sched) = self.queue.pop_front().expect("queued");
            self.max_lag_us = self.max_lag_us.max(now.saturating_duration_since(sched).as_micros() as u64);
            let u = self.flights[ch as usize].sent(seq);
            self.write_request(c, ch, seq, t, u);
            self.conns[c].inflight.push_back(InFlight { ch, seq, t, sched, written: now });
            dirty |= 1 << (c % 64);
        }
        for c in 0..k {
            if dirty & (1 << (c % 64)) != 0 {
                self.flush(c);
            }
        }
    }

    fn write_request(&mut self, c: usize, ch: u32, seq: u64, t: u64, u: u64) {
        let name = &self.names[ch as usize];
        self.payload.clear();
        let _ = write!(self.payload, "s={seq} t={t} c={name} u={u} ");
        if self.payload.len() < self.payload_bytes {
            self.payload.resize(self.payload_bytes, b'x');
        }
        let node = self.conns[c].node;
        let w = &mut self.conns[c].wbuf;
        match &self.mode {
            Mode::Resp => {
                let _ = write!(
                    w,
                    "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{name}\r\n${}\r\n",
                    name.len(),
                    self.payload.len()
                );
                w.extend_from_slice(&self.payload);
                w.extend_from_slice(b"\r\n");
            }
            Mode::Http { paths, hosts, format } => {
                let host = &hosts[node];
                let (ctype, body) = match format {
                    PubFormat::Raw => ("text/plain", &self.payload),
                    PubFormat::Pushpin => {
                        self.body.clear();
                        let _ = write!(
                            self.body,
                            r#"{{"items":[{{"channel":"{name}","formats":{{"http-stream":{{"content":"event: message\ndata: "#
                        );
                        self.body.extend_from_slice(&self.payload);
                        self.body.extend_from_slice(br#"\n\n"}}}]}"#);
                        ("application/json", &self.body)
                    }
                };
                let _ = write!(
                    w,
                    "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                    paths[node][ch as usize],
                    body.len()
                );
                w.extend_from_slice(body);
            }
        }
    }

    fn flush(&mut self, c: usize) {
        let conn = &mut self.conns[c];
        let Some(s) = conn.stream.as_mut() else { return };
        if let Err(why) = crate::sock::write_pending(s, &mut conn.wbuf) {
            self.fail(c, &why);
        }
    }

    fn on_event(&mut self, c: usize) {
        if c >= self.conns.len() || self.conns[c].stream.is_none() {
            return;
        }
        if !self.conns[c].connected {
            let s = self.conns[c].stream.as_ref().expect("stream");
            match s.take_error() {
                Ok(Some(e)) | Err(e) => return self.fail(c, &format!("connect: {e}")),
                Ok(None) => {}
            }
            match s.peer_addr() {
                Ok(_) => self.conns[c].connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(c, &format!("connect: {e}")),
            }
            self.dispatch();
        }
        self.flush(c);
        // Read everything there is.
        let mut eof = None;
        loop {
            let Some(s) = self.conns[c].stream.as_mut() else { return };
            match s.read(&mut self.rtmp) {
                Ok(0) => {
                    eof = Some("the server closed the connection".to_string());
                    break;
                }
                Ok(n) => self.conns[c].rbuf.extend_from_slice(&self.rtmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eof = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        let close = match self.mode {
            Mode::Resp => self.answers_resp(c),
            Mode::Http { .. } => self.answers_http(c),
        };
        match (close, eof) {
            (Err(why), _) => self.fail(c, &why),
            (Ok(true), _) => self.closed_by_server(c, true),
            (Ok(false), Some(_)) if self.conns[c].inflight.is_empty() => self.closed_by_server(c, false),
            (Ok(false), Some(why)) => self.fail(c, &why),
            (Ok(false), None) => self.dispatch(),
        }
    }

    /// The server closed the connection in an orderly way (an answer with
    /// Connection: close, or an idle keep-alive timeout): requests still
    /// unanswered on it were not processed (RFC 9112 9.6) and go back to the
    /// front of the queue; a new connection opens at once after an announced
    /// close, 100 ms later after a silent one.
    fn closed_by_server(&mut self, c: usize, announced: bool) {
        let conn = &mut self.conns[c];
        if let Some(mut s) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        conn.connected = false;
        conn.wbuf.clear();
        conn.rbuf.clear();
        while let Some(f) = conn.inflight.pop_back() {
            self.queue.push_front((f.ch, f.seq, f.t, f.sched));
        }
        if announced {
            self.open(c);
            self.dispatch();
        } else {
            conn.retry_at = Some(Instant::now() + Duration::from_millis(100));
        }
    }

    fn answer(&mut self, c: usize, ok: Result<(), String>) {
        let Some(f) = self.conns[c].inflight.pop_front() else { return };
        self.flights[f.ch as usize].answered(f.seq);
        self.answer_hist.saturating_record(f.written.elapsed().as_micros().max(1) as u64);
        match ok {
            Ok(()) => self.accepted[f.ch as usize] += 1,
            Err(why) => {
                self.errors += 1;
                self.err.add(&why);
            }
        }
    }

    /// Handles complete HTTP answers; Err asks to drop the connection,
    /// Ok(true) says the server announced it closes it.
    fn answers_http(&mut self, c: usize) -> Result<bool, String> {
        while let Some(a) = answer::http(&self.conns[c].rbuf)? {
            self.conns[c].rbuf.drain(..a.len);
            if (100..200).contains(&a.status) {
                continue;
            }
            let ok = if (200..300).contains(&a.status) { Ok(()) } else { Err(format!("HTTP {}", a.status)) };
            self.answer(c, ok);
            if a.close {
                self.no_keepalive = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Handles complete RESP replies.
    fn answers_resp(&mut self, c: usize) -> Result<bool, String> {
        while let Some((len, ok)) = answer::resp(&self.conns[c].rbuf)? {
            self.conns[c].rbuf.drain(..len);
            self.answer(c, ok);
        }
        Ok(false)
    }
}
