//! `loadgen publish-rate`: a closed-loop publish benchmark. N keep-alive
//! connections, each keeping P identical publish requests in flight (P = 1:
//! send, wait for the answer, send the next), for a fixed time. It counts
//! successful answers (HTTP 2xx, RESP `:N`) and errors apart and records
//! every answer time (from the write to the complete answer) in an
//! HdrHistogram. One thread, one mio loop: at P = 1 the client's own turn
//! around between an answer and the next request is part of what is timed,
//! as it is for redis-benchmark -c 1.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::procfs;
use crate::stats::{self, Errors};

mod args;
mod report;
mod wire;

use args::{Args, Target};
use report::Outcome;

const USAGE: &str = "loadgen publish-rate (--http URL | --resp HOST:PORT) [--connections N] [--pipeline P]
    [--duration S] [--warmup S] [--payload-bytes B] [--channel NAME] [--pid P]... [--json] [--label L]
(see the publish-rate section of `loadgen --help`)
";

/// Runs `publish-rate` with the arguments that follow it; the exit status.
pub fn main(argv: &[String]) -> i32 {
    let a = match args::parse(argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
    };
    match run(&a) {
        Ok(o) => {
            if a.json {
                println!("{}", o.to_json());
            } else {
                print!("{}", o.summary());
            }
            0
        }
        Err(e) => {
            eprintln!("loadgen publish-rate: {e}");
            1
        }
    }
}

struct Conn {
    stream: Option<TcpStream>,
    connected: bool,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// Write time of every request awaiting its answer, in order.
    sent: VecDeque<Instant>,
    retry_at: Option<Instant>,
}

struct Bench {
    poll: Poll,
    conns: Vec<Conn>,
    target: Target,
    request: Vec<u8>,
    pipeline: usize,
    rtmp: Vec<u8>,
    /// Requests are sent from the warm-up on (a connection opened before
    /// waits; one reopened later starts at once).
    sending: bool,
    /// Answers count only while this is set (after the warm-up).
    counting: bool,
    ok: u64,
    errors: u64,
    err: Errors,
    reconnects: u64,
    hist: hdrhistogram::Histogram<u64>,
}

fn run(a: &Args) -> Result<Outcome, String> {
    stats::raise_nofile();
    let mut b = Bench {
        poll: Poll::new().map_err(|e| format!("poll: {e}"))?,
        conns: (0..a.connections)
            .map(|_| Conn {
                stream: None,
                connected: false,
                wbuf: Vec::new(),
                rbuf: Vec::new(),
                sent: VecDeque::new(),
                retry_at: None,
            })
            .collect(),
        request: wire::request(&a.target, &a.channel, a.payload_bytes),
        target: a.target.clone(),
        pipeline: a.pipeline,
        rtmp: vec![0; 64 * 1024],
        sending: false,
        counting: false,
        ok: 0,
        errors: 0,
        err: Errors::default(),
        reconnects: 0,
        hist: stats::new_hist(),
    };
    let mut events = Events::with_capacity(1024);
    // Connect every connection (at most 5 s) before anything is sent.
    for c in 0..b.conns.len() {
        b.open(c);
    }
    let until = Instant::now() + Duration::from_secs(5);
    while !b.conns.iter().all(|c| c.connected) {
        if Instant::now() >= until {
            let why = b.err.items.first().map_or("timeout".to_string(), |e| e.0.clone());
            return Err(format!("could not connect to {}: {why}", a.target.addr()));
        }
        b.turn(&mut events, Duration::from_millis(20));
    }
    b.err = Errors::default();
    b.reconnects = 0;
    // Warm up, then measure for --duration.
    let t0 = Instant::now();
    let warm_end = t0 + Duration::from_secs_f64(a.warmup);
    b.sending = true;
    for c in 0..b.conns.len() {
        b.refill(c);
    }
    while Instant::now() < warm_end {
        b.turn(
            &mut events,
            warm_end.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)),
        );
    }
    let mut server = procfs::Sampler::new(a.pids.clone());
    let server_cpu0 = server.cpu_now();
    let cpu0 = stats::rusage_cpu(libc::RUSAGE_SELF);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.duration);
    b.counting = true;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        b.turn(&mut events, (end - now).min(Duration::from_millis(50)));
    }
    b.counting = false;
    let secs = start.elapsed().as_secs_f64();
    let server_cpu_secs = match (server_cpu0, server.cpu_now()) {
        (Some(s0), Some(s1)) => Some(s1 - s0),
        _ => None,
    };
    let loadgen_cpu_secs = stats::rusage_cpu(libc::RUSAGE_SELF) - cpu0;
    let in_flight_at_end = b.conns.iter().map(|c| c.sent.len() as u64).sum();
    Ok(Outcome {
        label: a.label.clone(),
        protocol: a.target.protocol(),
        target: a.target.describe(&a.channel),
        connections: a.connections,
        pipeline: a.pipeline,
        payload_bytes: a.payload_bytes,
        warmup_secs: a.warmup,
        secs,
        ok: b.ok,
        errors: b.errors,
        error_samples: b.err,
        in_flight_at_end,
        reconnects: b.reconnects,
        hist: b.hist,
        server_cpu_secs,
        server_pids: a.pids.clone(),
        loadgen_cpu_secs,
    })
}

impl Bench {
    /// One wait for events (at most `timeout`) and their handling; reopens
    /// connections whose retry time came.
    fn turn(&mut self, events: &mut Events, timeout: Duration) {
        if let Err(e) = self.poll.poll(events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.err.add(&format!("poll: {e}"));
            }
        }
        let toks: Vec<usize> = events.iter().map(|e| e.token().0).collect();
        for c in toks {
            self.on_event(c);
        }
        let now = Instant::now();
        for c in 0..self.conns.len() {
            if self.conns[c].stream.is_none() && self.conns[c].retry_at.is_some_and(|t| now >= t) {
                self.reconnects += 1;
                self.open(c);
            }
        }
    }

    fn open(&mut self, c: usize) {
        let conn = &mut self.conns[c];
        conn.connected = false;
        conn.rbuf.clear();
        conn.wbuf.clear();
        conn.sent.clear();
        conn.retry_at = None;
        let result = TcpStream::connect(self.target.addr().into()).and_then(|mut s| {
            let _ = s.set_nodelay(true);
            self.poll.registry().register(&mut s, Token(c), Interest::READABLE | Interest::WRITABLE)?;
            Ok(s)
        });
        match result {
            Ok(s) => conn.stream = Some(s),
            Err(e) => {
                self.err.add(&format!("connect: {e}"));
                conn.retry_at = Some(Instant::now() + Duration::from_millis(100));
            }
        }
    }

    /// Drops connection `c` (reopened 100 ms later, or at once when the
    /// server announced the close); what was in flight on it counts as failed.
    fn drop_conn(&mut self, c: usize, why: &str, at_once: bool) {
        let conn = &mut self.conns[c];
        if let Some(mut s) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        let lost = conn.sent.len() as u64;
        conn.sent.clear();
        conn.connected = false;
        conn.retry_at =
            Some(Instant::now() + if at_once { Duration::ZERO } else { Duration::from_millis(100) });
        if lost > 0 && self.counting {
            self.errors += lost;
            self.err.add_n(why, lost);
        }
    }

    /// Tops connection `c` up to --pipeline requests in flight and writes.
    fn refill(&mut self, c: usize) {
        let conn = &mut self.conns[c];
        if !conn.connected {
            return;
        }
        let now = Instant::now();
        while conn.sent.len() < self.pipeline {
            conn.wbuf.extend_from_slice(&self.request);
            conn.sent.push_back(now);
        }
        self.flush(c);
    }

    fn flush(&mut self, c: usize) {
        let conn = &mut self.conns[c];
        let Some(s) = conn.stream.as_mut() else { return };
        if let Err(why) = crate::sock::write_pending(s, &mut conn.wbuf) {
            self.drop_conn(c, &why, false);
        }
    }

    fn on_event(&mut self, c: usize) {
        if c >= self.conns.len() || self.conns[c].stream.is_none() {
            return;
        }
        if !self.conns[c].connected {
            let s = self.conns[c].stream.as_ref().expect("stream");
            match s.take_error() {
                Ok(Some(e)) | Err(e) => return self.drop_conn(c, &format!("connect: {e}"), false),
                Ok(None) => {}
            }
            match s.peer_addr() {
                Ok(_) => self.conns[c].connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.drop_conn(c, &format!("connect: {e}"), false),
            }
            if self.sending {
                self.refill(c);
            }
        }
        self.flush(c);
        let mut eof = None;
        loop {
            let Some(s) = self.conns[c].stream.as_mut() else { return };
            match s.read(&mut self.rtmp) {
                Ok(0) => {
                    eof = Some("the server closed the connection".to_string());
                    break;
                }
                Ok(n) => {
                    self.conns[c].rbuf.extend_from_slice(&self.rtmp[..n]);
                    if n < self.rtmp.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eof = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        match self.answers(c) {
            Err(why) => self.drop_conn(c, &why, false),
            Ok(true) => self.drop_conn(c, "closed by the server after an answer", true),
            Ok(false) => match eof {
                Some(why) => self.drop_conn(c, &why, false),
                None => self.refill(c),
            },
        }
    }

    /// Takes every complete answer off connection `c`'s buffer; Ok(true)
    /// when the server announced that it closes the connection.
    fn answers(&mut self, c: usize) -> Result<bool, String> {
        let resp = matches!(self.target, Target::Resp(_));
        let now = Instant::now();
        let mut used = 0;
        let mut close = false;
        while let Some(a) = wire::answer(resp, &self.conns[c].rbuf[used..])? {
            used += a.len;
            let Some(outcome) = a.outcome else { continue };
            let Some(sent) = self.conns[c].sent.pop_front() else {
                return Err("an answer to no request".into());
            };
            if self.counting {
                self.hist.saturating_record(now.duration_since(sent).as_micros().max(1) as u64);
                match outcome {
                    Ok(()) => self.ok += 1,
                    Err(why) => {
                        self.errors += 1;
                        self.err.add(&why);
                    }
                }
            }
            if a.close {
                close = true;
                break;
            }
        }
        self.conns[c].rbuf.drain(..used);
        Ok(close)
    }
}
