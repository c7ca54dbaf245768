//! Test harness: runs the real `halley` binary on ephemeral ports and talks to
//! it over real sockets. Every wait has a deadline and fails with what it saw.
#![allow(dead_code)]

pub mod cluster;
pub mod frame;
pub mod http;
pub mod process;
pub mod redis_cluster;
pub mod redis_server;
pub mod resp;
pub mod rng;
pub mod stream;
pub mod tcp_proxy;
pub mod ws;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use frame::*;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use redis_server::*;
#[allow(unused_imports)]
pub use resp::*;
#[allow(unused_imports)]
pub use rng::Rng;
#[allow(unused_imports)]
pub use stream::*;
#[allow(unused_imports)]
pub use ws::*;

/// How long any single expected event may take on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running gateway process, killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub public: SocketAddr,
    pub ingest: SocketAddr,
    /// The Redis-protocol (RESP) publish port.
    pub resp: SocketAddr,
    /// Everything the server wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts halley with ephemeral ports and the given extra flags.
    pub fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_halley"))
            .args(["--listen", "127.0.0.1:0", "--ingest", "127.0.0.1:0", "--resp", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn halley");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening public=") {
                    let _ = tx.send(line.clone());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let line = match rx.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("halley did not start within {DEADLINE:?}; stderr:\n{}", log.lock().unwrap());
            }
        };
        let field = |name: &str| -> SocketAddr {
            let start = line.find(name).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len();
            line[start..].split_whitespace().next().unwrap().parse().unwrap()
        };
        Server {
            public: field("public="),
            ingest: field("ingest="),
            resp: field("resp="),
            child: Some(child),
            log,
        }
    }

    /// Publishes over HTTP and returns the JSON answer (panics on non-200).
    pub fn publish(&self, channel: &str, data: &str) -> serde_json::Value {
        let resp = request(self.ingest, "POST", &format!("/pub/{channel}"), &[], data.as_bytes());
        assert_eq!(resp.status, 200, "publish to {channel}: {}", resp.text());
        resp.json()
    }

    /// Publishes and returns the message id.
    pub fn publish_id(&self, channel: &str, data: &str) -> String {
        self.publish(channel, data)["id"].as_str().expect("id").to_string()
    }

    /// Sends SIGTERM and waits for exit; returns the exit status and time taken.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            assert!(started.elapsed() < DEADLINE, "halley did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id (for /proc/<pid>/status, /proc/<pid>/fd).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `cond` until it holds or the deadline passes; panics with `what`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Orders ids as the interface promises: `ms-seq`, numerically.
pub fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or_else(|| panic!("id {id:?} is not ms-seq"));
    (
        ms.parse().unwrap_or_else(|_| panic!("id {id:?}: bad ms")),
        seq.parse().unwrap_or_else(|_| panic!("id {id:?}: bad seq")),
    )
}

/// `GET /pub/{channel}` on the ingest port (must be 200).
pub fn channel_info(server: &Server, channel: &str) -> serde_json::Value {
    let resp = get(server.ingest, &format!("/pub/{channel}"));
    assert_eq!(resp.status, 200, "GET /pub/{channel}: {}", resp.text());
    resp.json()
}

/// One sample's value from `/metrics`: the line starting with `line_start`
/// (the metric and its labels, written out by the caller).
pub fn metric_sample(server: &Server, line_start: &str) -> f64 {
    let text = get(server.ingest, "/metrics").text();
    let line = text
        .lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad sample {line}"))
}

/// `GET /stats` on the ingest port (must be 200).
pub fn stats(server: &Server) -> serde_json::Value {
    let resp = get(server.ingest, "/stats");
    assert_eq!(resp.status, 200, "GET /stats: {}", resp.text());
    resp.json()
}

/// POSTs Bayeux messages to `/bayeux`; asserts a 200 JSON array and returns it.
pub fn bayeux(server: &Server, messages: &serde_json::Value) -> Vec<serde_json::Value> {
    let resp = request(
        server.public,
        "POST",
        "/bayeux",
        &[("Content-Type", "application/json")],
        messages.to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "POST /bayeux {messages}: {} {}", resp.status, resp.text());
    match resp.json() {
        serde_json::Value::Array(items) => items,
        other => panic!("Bayeux answer is not an array: {other}"),
    }
}
