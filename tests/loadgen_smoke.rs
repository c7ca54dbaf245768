//! A short smoke run of the load generator (loadgen/) against the real
//! halley: a few seconds of SSE, RESP-published and WebSocket load, checking
//! that every message reached every subscriber exactly once and in order.
//! It builds nothing: `cargo build --workspace` (tests/run does) puts the
//! loadgen binary next to halley's.
mod common;
use common::*;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn loadgen_bin() -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_halley")).with_file_name("loadgen");
    assert!(path.exists(), "no loadgen binary at {} (run `cargo build --workspace` first)", path.display());
    path
}

/// Runs loadgen with `args` plus --json, within a deadline; returns its JSON.
fn run_loadgen(args: &[String]) -> serde_json::Value {
    let mut child = Command::new(loadgen_bin())
        .args(args)
        .args(["--json", "--connect-timeout", "10"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loadgen");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let limit = Duration::from_secs(40);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loadgen {args:?} still running after {limit:?}; stderr:\n{}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "loadgen {args:?} exited with {status}; stderr:\n{err}\nstdout:\n{out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("loadgen printed no JSON ({e}): {out}\n{err}"))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Checks the one step of a run: every subscriber got every message once, in order.
/// The arguments the runs here share: `subscribers` on `channels` at
/// `sub_url`, published with `publish` (`--pub-url URL` or `--pub-resp
/// ADDR`) to every channel in turn at `rate` msg/s for `secs` seconds, 5 s
/// to settle; then `extra`.
fn load(
    sub_url: &str,
    (subscribers, channels): (u32, u32),
    publish: [&str; 2],
    (rate, secs): (u32, &str),
    extra: &[&str],
) -> Vec<String> {
    let (subscribers, channels, rate) = (subscribers.to_string(), channels.to_string(), rate.to_string());
    let mut list = args(&["--sub-url", sub_url, "--subscribers", &subscribers, "--channels", &channels]);
    list.extend(args(&publish));
    list.extend(args(&["--rate", &rate, "--duration", secs, "--target", "all", "--settle", "5"]));
    list.extend(args(extra));
    list
}

fn assert_complete(out: &serde_json::Value, subscribers: u64, published: u64, per_message: u64) {
    let what = out.to_string();
    assert_eq!(out["connected"], subscribers, "{what}");
    assert_eq!(out["disconnected"], 0, "{what}");
    let steps = out["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "{what}");
    let s = &steps[0];
    assert_eq!(s["published"], published, "{what}");
    assert_eq!(s["publish_errors"], 0, "{what}");
    assert_eq!(s["expected_deliveries"], published * per_message, "{what}");
    assert_eq!(s["deliveries"], s["expected_deliveries"], "{what}");
    for field in ["lost", "duplicated", "out_of_order"] {
        assert_eq!(s[field], 0, "{field}: {what}");
    }
    assert!(s["latency_ms"]["p99"].as_f64().is_some_and(|p| p > 0.0), "{what}");
    assert!(out["loadgen"]["cpu_secs"].as_f64().is_some_and(|c| c > 0.0), "{what}");
}

#[test]
fn sse_subscribers_get_every_message_over_http_publishing() {
    let server = Server::start(&[]);
    let sub = format!("http://{}/sub/{{ch}}", server.public);
    let publ = format!("http://{}/pub/{{ch}}", server.ingest);
    let out = run_loadgen(&load(
        &sub,
        (200, 4),
        ["--pub-url", &publ],
        (200, "3"),
        &["--transport", "sse", "--label", "smoke-sse"],
    ));
    assert_eq!(out["label"], "smoke-sse");
    assert_eq!(out["transport"], "sse");
    // 600 messages round-robin over 4 channels of 50 subscribers each.
    assert_complete(&out, 200, 600, 50);
    assert!(out["connect_ms"]["all_connected_ms"].as_f64().is_some(), "{out}");
}

#[test]
fn sse_subscribers_get_every_message_published_over_resp() {
    let server = Server::start(&[]);
    let sub = format!("http://{}/sub/{{ch}}", server.public);
    let out = run_loadgen(&load(&sub, (100, 2), ["--pub-resp", &server.resp.to_string()], (200, "2"), &[]));
    assert_complete(&out, 100, 400, 50);
}

#[test]
fn websocket_subscribers_get_every_message() {
    let server = Server::start(&[]);
    let sub = format!("http://{}/sub/{{ch}}", server.public);
    let publ = format!("http://{}/pub/{{ch}}", server.ingest);
    let out = run_loadgen(&load(&sub, (100, 2), ["--pub-url", &publ], (200, "2"), &["--transport", "ws"]));
    assert_eq!(out["transport"], "ws");
    assert_complete(&out, 100, 400, 50);
}

#[test]
fn usage_errors_exit_2_and_nothing_leaves_loopback() {
    for bad in [
        &["--sub-url", "http://10.1.2.3:80/sub/{ch}", "--no-publish"][..],
        &["--sub-url", "http://127.0.0.1:1/sub/{ch}", "--no-publish", "--source-addrs", "192.168.0.1"],
        &["--sub-url", "http://127.0.0.1:1/sub/{ch}"],
        &["--bogus"],
    ] {
        let out = Command::new(loadgen_bin()).args(bad).output().expect("run loadgen");
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A halley with TLS on its public port, its certificate from a test CA
/// made in a fresh directory (returned, for the caller to remove), and the
/// CA's path.
fn tls_server(name: &str) -> (Server, std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("halley-loadgen-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    test_pki(&dir);
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let server = Server::start(&["--tls-cert", &path("cert.pem"), "--tls-key", &path("key.pem")]);
    let ca = path("ca.pem");
    (server, dir, ca)
}

/// A test CA (`ca.pem`) and a certificate for localhost signed by it
/// (`cert.pem`, `key.pem`): rustls refuses a self-signed one as its own CA.
fn test_pki(dir: &std::path::Path) {
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let steps: [&[&str]; 3] = [
        &["req", "-x509", "-days", "2", "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem"],
        &["req", "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "cert.csr"],
        &[
            "x509",
            "-req",
            "-in",
            "cert.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
        ],
    ];
    for (i, step) in steps.iter().enumerate() {
        let mut cmd = Command::new("openssl");
        cmd.args(*step).current_dir(dir);
        match i {
            0 => cmd.args(ec).args(["-addext", "basicConstraints=critical,CA:TRUE"]),
            1 => cmd.args(ec),
            _ => cmd.args(["-extfile", "ext", "-out", "cert.pem"]),
        };
        let out = cmd.output().expect("run openssl");
        assert!(out.status.success(), "openssl {step:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn tls_subscribers_get_every_message() {
    let (server, dir, ca) = tls_server("tls");
    let ca = ca.as_str();
    let sub = format!("https://localhost:{}/sub/{{ch}}", server.public.port());
    let publ = format!("http://{}/pub/{{ch}}", server.ingest);
    let out = run_loadgen(&load(&sub, (100, 2), ["--pub-url", &publ], (100, "2"), &["--tls-ca", ca]));
    let _ = std::fs::remove_dir_all(&dir);
    assert_complete(&out, 100, 200, 50);
}

/// `loadgen publish-rate`: closed-loop publishing over HTTP and RESP, every
/// answer a success, and the answer times reported.
#[test]
fn publish_rate_counts_answers_over_http_and_resp() {
    let server = Server::start(&[]);
    let http = format!("http://{}/pub/{{ch}}", server.ingest);
    let resp = server.resp.to_string();
    for (flag, target, conns, pipeline) in [("--http", &http, "1", "1"), ("--resp", &resp, "2", "4")] {
        let out = Command::new(loadgen_bin())
            .args(["publish-rate", flag, target, "--connections", conns, "--pipeline", pipeline])
            .args(["--duration", "0.5", "--warmup", "0.1", "--json"])
            .output()
            .expect("run loadgen publish-rate");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{flag}: {}\n{text}", String::from_utf8_lossy(&out.stderr));
        let j: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON");
        assert_eq!(j["mode"], "publish-rate", "{j}");
        assert_eq!(j["errors"], 0, "{j}");
        assert!(j["ok"].as_u64().is_some_and(|n| n > 0), "{j}");
        assert!(j["publishes_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{j}");
        assert!(j["answer_us"]["p99"].as_u64().is_some_and(|p| p > 0), "{j}");
        assert!(j["in_flight_at_end"].as_u64().is_some_and(|n| n <= 8), "{j}");
    }
    let out = Command::new(loadgen_bin()).args(["publish-rate", "--resp", "10.0.0.1:6379"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Several nodes on one Redis (issue 13, bench scale-out): loadgen spreads its
/// subscribers over three halley nodes (`--sub-url 'A|B|C'`) and publishes
/// through all of them in turn (`--pub-url 'A|B|C'`), so most deliveries cross
/// the backplane; every subscriber still gets every message once, in order.
#[test]
fn subscribers_spread_over_nodes_on_redis_get_every_message() {
    let redis = RedisServer::start(false);
    let nodes = common::cluster::nodes(&redis, 3, &[]);
    let join = |f: &dyn Fn(&Server) -> String| nodes.iter().map(f).collect::<Vec<_>>().join("|");
    let sub = join(&|s| format!("http://{}/sub/{{ch}}", s.public));
    let publ = join(&|s| format!("http://{}/pub/{{ch}}", s.ingest));
    let out = run_loadgen(&load(&sub, (150, 2), ["--pub-url", &publ], (100, "2"), &[]));
    // 200 messages round-robin over 2 channels of 75 subscribers (25 on each node).
    assert_complete(&out, 150, 200, 75);
}

/// Runs loadgen on a thread and, while it runs, waits until halley's
/// `/metrics` shows `connections` open HTTP/2 connections carrying
/// `subscribers` subscribers of `transport`; returns loadgen's JSON.
fn run_loadgen_watching_h2(
    server: &Server,
    list: Vec<String>,
    transport: &str,
    subscribers: f64,
    connections: f64,
) -> serde_json::Value {
    let run = std::thread::spawn(move || run_loadgen(&list));
    let gauge = format!("halley_subscribers{{transport=\"{transport}\"}}");
    wait_until(
        &format!("{connections} HTTP/2 connections with {subscribers} {transport} subscribers"),
        || {
            run.is_finished()
                || (metric_sample(server, "halley_h2_connections") == connections
                    && metric_sample(server, &gauge) == subscribers)
        },
    );
    assert!(!run.is_finished(), "loadgen ended before halley showed its HTTP/2 subscribers");
    run.join().expect("loadgen thread")
}

/// The server's HTTP/2 counters after a run: every subscriber was a stream
/// and halley reset none of them (no window ever stalled a delivery).
fn assert_h2_streams(server: &Server, at_least: f64) {
    let streams = metric_sample(server, "halley_h2_streams_total");
    assert!(streams >= at_least, "halley_h2_streams_total {streams}, want at least {at_least}");
    assert_eq!(metric_sample(server, "halley_h2_streams_reset_total"), 0.0, "halley reset streams");
}

/// HTTP/2 subscribers (issue 17): 200 SSE subscribers as streams of 4 h2c
/// connections (50 each, prior knowledge); every message reaches every
/// stream once, in order, and halley counts 4 HTTP/2 connections.
#[test]
fn h2c_sse_streams_get_every_message() {
    let server = Server::start(&[]);
    let sub = format!("http://{}/sub/{{ch}}", server.public);
    let publ = format!("http://{}/pub/{{ch}}", server.ingest);
    let list = load(
        &sub,
        (200, 4),
        ["--pub-url", &publ],
        (200, "3"),
        &["--h2-streams", "50", "--workers", "1", "--label", "smoke-h2"],
    );
    let out = run_loadgen_watching_h2(&server, list, "sse", 200.0, 4.0);
    assert_eq!(out["label"], "smoke-h2");
    assert_eq!(out["transport"], "sse");
    assert_eq!(out["http2"], serde_json::json!({"streams_per_connection": 50, "connections": 4}), "{out}");
    assert_eq!(out["errors"], serde_json::json!([]), "{out}");
    assert_complete(&out, 200, 600, 50);
    assert_h2_streams(&server, 200.0);
}

/// NDJSON streams and long-polls over h2c: a long-poller asks again on a
/// new stream of the same connection after every answer, and loses nothing.
#[test]
fn h2c_ndjson_and_longpoll_subscribers_get_every_message() {
    let server = Server::start(&[]);
    let publ = format!("http://{}/pub/{{ch}}", server.ingest);
    for (transport, query, gauge) in [("stream", "?transport=stream", "stream"), ("longpoll", "", "longpoll")]
    {
        let sub = format!("http://{}/sub/{{ch}}{query}", server.public);
        let list = load(
            &sub,
            (40, 2),
            ["--pub-url", &publ],
            (50, "2"),
            &[
                "--transport",
                transport,
                "--h2-streams",
                "10",
                "--workers",
                "2",
                "--channel-prefix",
                transport,
            ],
        );
        // Two workers of 20 streams: 2 connections each. A long-poller is
        // between two polls now and then, so its gauge is not watched.
        let out = if transport == "longpoll" {
            run_loadgen(&list)
        } else {
            run_loadgen_watching_h2(&server, list, gauge, 40.0, 4.0)
        };
        assert_eq!(out["http2"]["connections"], 4, "{out}");
        assert_eq!(out["errors"], serde_json::json!([]), "{transport}: {out}");
        assert_complete(&out, 40, 100, 20);
    }
    // 40 NDJSON streams, then 40 first polls and at least one more each.
    assert_h2_streams(&server, 40.0 + 40.0 + 40.0);
}

/// HTTP/2 over TLS: ALPN h2, 100 SSE subscribers as streams of 2 connections.
#[test]
fn tls_alpn_h2_streams_get_every_message() {
    let (server, dir, ca) = tls_server("h2tls");
    let ca = ca.as_str();
    let sub = format!("https://localhost:{}/sub/{{ch}}", server.public.port());
    let publ = format!("http://{}/pub/{{ch}}", server.ingest);
    let list = load(
        &sub,
        (100, 2),
        ["--pub-url", &publ],
        (100, "2"),
        &["--tls-ca", ca, "--h2-streams", "50", "--workers", "1"],
    );
    let out = run_loadgen_watching_h2(&server, list, "sse", 100.0, 2.0);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out["http2"]["connections"], 2, "{out}");
    assert_eq!(out["errors"], serde_json::json!([]), "{out}");
    assert_complete(&out, 100, 200, 50);
    assert_h2_streams(&server, 100.0);
}

/// `--h2-streams` with WebSocket is a usage error that says why.
#[test]
fn h2_streams_refuse_websocket() {
    let out = Command::new(loadgen_bin())
        .args(["--sub-url", "http://127.0.0.1:1/sub/{ch}", "--no-publish", "--h2-streams", "10"])
        .args(["--transport", "ws"])
        .output()
        .expect("run loadgen");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no WebSocket over HTTP/2"), "{err}");
}
