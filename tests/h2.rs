//! HTTP/2 on the public port (h2c with prior knowledge) against the real
//! binary, with real clients: curl (`--http2-prior-knowledge`), h2load, and
//! Python's sans-IO `h2` package plus hand-made frames for the protocol's
//! edge cases and the known attacks (tests/h2/edge_cases.py; tests/run
//! installs the package; a missing one fails, never skips). In every
//! attack case a control subscriber on another connection must keep
//! receiving everything. HTTP/2 over TLS (ALPN) is in tests/tls.rs and
//! tests/browser/h2.test.mjs.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts curl with `args` (h2c prior knowledge), output to its stdout.
fn curl(args: &[&str]) -> std::process::Child {
    Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-N"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn curl")
}

fn wait_subscribers(server: &Server, channel: &str, n: u64) {
    wait_until(&format!("{n} subscribers on {channel}"), || {
        let info = request(server.ingest, "GET", &format!("/pub/{channel}"), &[], b"");
        info.status == 200 && info.json()["subscribers"].as_u64() >= Some(n)
    });
}

#[test]
fn curl_h2c_serves_every_subscriber_transport_and_plain_answers() {
    require_tool("curl", "curl");
    let server = Server::start(&[]);
    let base = format!("http://{}", server.public);
    let streaming = [
        ("sse", "data: hello"),
        ("stream", r#""data":"hello""#),
        ("iframe", r#"parent.push({"#),
        ("multipart", "X-Channel: t"),
    ];
    let polls = [("longpoll", r#""data":"hello""#), ("jsonp", r#"cb({"messages":[{"#)];
    let mut children = Vec::new();
    for (transport, want) in streaming {
        let url = format!("{base}/sub/t?transport={transport}");
        children.push((transport, want, curl(&["-i", "--max-time", "4", &url])));
    }
    for (transport, want) in polls {
        let url = format!("{base}/sub/t?transport={transport}&callback=cb");
        children.push((transport, want, curl(&["-i", "--max-time", "15", &url])));
    }
    wait_subscribers(&server, "t", 6);
    server.publish("t", "hello");
    for (transport, want, child) in children {
        let out = wait_output(child, transport);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("HTTP/2 200"), "{transport}: {}", show(&out));
        assert!(text.contains(want), "{transport}: want {want:?} in {}", show(&out));
        assert!(!text.to_ascii_lowercase().contains("transfer-encoding"), "{transport}: {text}");
    }
    // Plain answers: the demo page, a refusal, CORS preflight.
    let out = wait_output(curl(&["-i", &format!("{base}/")]), "demo page");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 200") && text.contains("<html"), "{}", show(&out));
    let out = wait_output(curl(&["-i", &format!("{base}/sub/bad%20name")]), "bad channel");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/2 400"), "{}", show(&out));
    // HTTP/1.1 on the same port is unchanged.
    let poll = get(server.public, "/sub/t?timeout=0");
    assert_eq!(poll.status, 200, "{}", poll.text());
}

/// 100 long-polls on one h2c connection, answered by one publish. (With
/// Python's h2 client: Debian's curl 7.88.1 cannot add streams to an h2c
/// prior-knowledge connection it reuses, curl issue #10634, fixed in 8.0.
/// `curl --parallel` over TLS with ALPN has no such bug: tests/tls.rs runs
/// the same 100 polls through it.)
#[test]
fn hundred_long_polls_multiplexed_on_one_connection() {
    edge_case(&Server::start(&[]), "hundred_polls");
}

/// nghttp2's load generator as one more independent client: 2,000 polls
/// (answered at once) over 4 connections with 50 streams in flight each.
#[test]
fn h2load_requests_all_succeed() {
    require_tool("h2load", "nghttp2-client");
    let server = Server::start(&[]);
    let url = format!("http://{}/sub/load?timeout=0", server.public);
    let out = run(Command::new("h2load").args(["-n", "2000", "-c", "4", "-m", "50", &url]), Vec::new());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2000 succeeded, 0 failed, 0 errored"), "{}", show(&out));
    assert!(text.contains("2000 2xx"), "{}", show(&out));
}

/// Runs one case of tests/h2/edge_cases.py against `server`.
fn edge_case(server: &Server, case: &str) {
    let ok = Command::new("python3").args(["-c", "import h2"]).status().is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with the h2 package is required: `python3 -m pip install h2`; tests/run installs it"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2/edge_cases.py");
    let (public, ingest) = (server.public.port().to_string(), server.ingest.port().to_string());
    let out = run(Command::new("python3").args([script, &public, &ingest, case]), Vec::new());
    assert!(out.status.success(), "{case}: {}\nserver log:\n{}", show(&out), server.log_text());
}

#[test]
fn attacks_get_clear_errors_and_spare_other_clients() {
    edge_case(&Server::start(&[]), "attacks");
}

#[test]
fn a_stream_over_its_window_is_cut_and_others_go_on() {
    edge_case(&Server::start(&[]), "flow_control");
}

#[test]
fn bayeux_and_pushlet_over_h2_streams() {
    edge_case(&Server::start(&[]), "engines");
}

#[test]
fn a_body_that_never_comes_gets_408() {
    edge_case(&Server::start(&["--head-timeout-secs", "1"]), "slow_body");
}

#[test]
fn heartbeats_timeouts_deletes_and_stream_ends_over_h2() {
    edge_case(&Server::start(&["--heartbeat-secs", "1", "--max-stream-age-secs", "3"]), "lifecycle");
}

#[test]
fn a_large_catchup_is_not_cut_by_the_stream_cap() {
    edge_case(&Server::start(&[]), "catchup");
}

#[test]
fn client_reset_mid_stream_leaves_the_connection_working() {
    edge_case(&Server::start(&[]), "reset_mid_stream");
}

#[test]
fn concurrent_stream_limit() {
    edge_case(&Server::start(&[]), "many_streams");
}

#[test]
fn websockets_over_h2_streams_beside_an_sse_stream() {
    edge_case(&Server::start(&[]), "websocket");
}

#[test]
fn malformed_extended_connects_get_resets_or_clear_refusals() {
    edge_case(&Server::start(&[]), "websocket_malformed");
}

#[test]
fn websocket_over_h2_frame_limit_and_slow_consumer_cut() {
    edge_case(&Server::start(&[]), "websocket_limits");
}

#[test]
fn shutdown_ends_streams_then_sends_goaway() {
    let mut server = Server::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2/edge_cases.py");
    let (public, ingest) = (server.public.port().to_string(), server.ingest.port().to_string());
    let mut child = Command::new("python3")
        .args([script, &public, &ingest, "goaway_on_shutdown"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "ready", "the client did not get ready");
    let (status, _) = server.terminate();
    assert!(status.success(), "halley exit: {status:?}");
    let out = wait_output(child, "goaway client");
    assert!(out.status.success(), "{}", show(&out));
}
