//! Connection and rate limits through real sockets against the real binary:
//! connections per address (429 at accept) and in all (503 at accept), with
//! `Retry-After`, on every port; publishes per second per ingest connection
//! (HTTP 429, RESP `-ERR more than …`) and per public address (Bayeux
//! `429::`, the demo helper 429); channels per subscription (400, WebSocket
//! error frames); and the maximum stream age. Client sockets are bound to
//! 127.0.0.2 / 127.0.0.3 where a test needs distinct addresses.
//!
//! Rate checks never depend on timing to pass: publishes are pipelined on one
//! connection (or batched in one Bayeux request), the first `N` must pass,
//! and the number accepted may exceed the burst only by what the bucket can
//! have refilled in the time measured around the whole exchange.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Connections and refusals

/// An open SSE subscription (its head read, so the server has counted it).
fn open_stream(conn: &mut HttpConn, channel: &str) {
    conn.send(&format_request("GET", &format!("/sub/{channel}"), &[("Accept", "text/event-stream")], b""));
    let (status, headers) = conn.head();
    assert_eq!(status, 200, "{}: SSE /sub/{channel}: headers {headers:?}", conn.what);
}

/// Reads what the server says to a connection we have not sent anything on:
/// the refusal at accept, then the close.
fn refusal_at_accept(mut conn: HttpConn) -> Response {
    let (status, headers) = conn.head();
    let body = conn.read_to_close();
    Response { status, headers, body }
}

fn assert_refused_at_accept(conn: HttpConn, status: u16, needle: &str, what: &str) {
    let resp = refusal_at_accept(conn);
    assert_json_error(&resp, status, needle, what);
    assert_eq!(resp.header("retry-after"), Some("1"), "{what}: headers {:?}", resp.headers);
}

/// Whether a fresh connection from `src` is served: a long-poll answered
/// with 200. Refused (429/503, or reset by the refusal) gives false.
fn served(src: &str, addr: SocketAddr) -> bool {
    let mut stream = connect_from(src, addr);
    let request = format_request("GET", "/sub/probe?transport=longpoll&timeout=0", &[], b"");
    if stream.write_all(&request).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while find(&got, b"\r\n").is_none() {
        match stream.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&tmp[..n]),
        }
    }
    got.starts_with(b"HTTP/1.1 200 ")
}

/// Publishes accepted may exceed `burst` only by what `rate` per second
/// refills over `elapsed` (plus the token that may be partly refilled).
fn max_accepted(burst: usize, rate: f64, elapsed: Duration) -> usize {
    burst + (rate * elapsed.as_secs_f64()).floor() as usize + 1
}

// ---------------------------------------------------------------------------
// Connections

#[test]
fn connections_over_the_per_address_limit_get_429_at_accept_on_every_port() {
    let server = Server::start(&["--max-connections-per-ip", "3"]);
    // Three streams from 127.0.0.2, each counted (its head read) before the next.
    let mut held: Vec<HttpConn> = (0..3)
        .map(|i| {
            let mut conn = HttpConn::from_src("127.0.0.2", server.public);
            open_stream(&mut conn, &format!("held{i}"));
            conn
        })
        .collect();

    let fourth = HttpConn::from_src("127.0.0.2", server.public);
    assert_refused_at_accept(fourth, 429, "127.0.0.2", "4th connection from 127.0.0.2");
    // The limit counts connections on every port.
    let ingest = HttpConn::from_src("127.0.0.2", server.ingest);
    assert_refused_at_accept(ingest, 429, "127.0.0.2", "ingest connection from 127.0.0.2");
    let mut resp = HttpConn::from_src("127.0.0.2", server.resp);
    let refused = String::from_utf8_lossy(&resp.read_to_close()).into_owned();
    assert!(
        refused.starts_with("-ERR too many connections"),
        "RESP from 127.0.0.2 over its limit: {refused:?}"
    );

    // Another address is not affected.
    let mut other = HttpConn::from_src("127.0.0.3", server.public);
    open_stream(&mut other, "other");
    assert!(served("127.0.0.3", server.public), "a second connection from 127.0.0.3");

    // The streams still work, and a closed one frees its slot.
    server.publish("held0", "still here");
    let mut seen = String::new();
    while !seen.contains("data: still here\n") {
        let chunk = held[0].chunk().unwrap_or_else(|| panic!("held stream ended; got {seen:?}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    held.pop();
    wait_until("a connection from 127.0.0.2 is served after one closed", || {
        served("127.0.0.2", server.public)
    });
}

#[test]
fn connections_over_max_connections_get_503_at_accept_on_every_port() {
    let server = Server::start(&["--max-connections", "3"]);
    let mut held: Vec<HttpConn> = (0..3)
        .map(|i| {
            let mut conn = HttpConn::new(server.public);
            open_stream(&mut conn, &format!("full{i}"));
            conn
        })
        .collect();
    assert_refused_at_accept(
        HttpConn::new(server.public),
        503,
        "limit of 3 connections",
        "public port when full",
    );
    assert_refused_at_accept(
        HttpConn::new(server.ingest),
        503,
        "limit of 3 connections",
        "ingest port when full",
    );
    let mut resp = HttpConn::new(server.resp);
    let refused = String::from_utf8_lossy(&resp.read_to_close()).into_owned();
    assert!(refused.starts_with("-ERR server is at its limit"), "RESP port when full: {refused:?}");

    held.pop();
    wait_until("a connection is served after one closed", || served("127.0.0.1", server.public));
}

// ---------------------------------------------------------------------------
// Publish rates

#[test]
fn publish_rate_per_connection_refuses_the_excess_on_http_ingest_and_resp() {
    const RATE: usize = 5;
    const SENT: usize = 15;
    let server = Server::start(&["--publish-rate-per-connection", "5"]);

    // HTTP: SENT publishes pipelined on one keep-alive connection.
    let mut conn = HttpConn::new(server.ingest);
    let pipeline: Vec<u8> = (0..SENT)
        .flat_map(|i| format_request("POST", "/pub/rated", &[], format!("m{i}").as_bytes()))
        .collect();
    let started = Instant::now();
    conn.send(&pipeline);
    let answers: Vec<Response> = (0..SENT).map(|_| conn.response()).collect();
    let elapsed = started.elapsed();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert!(statuses[..RATE].iter().all(|s| *s == 200), "the first {RATE} must pass: {statuses:?}");
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        accepted < SENT && accepted <= max_accepted(RATE, RATE as f64, elapsed),
        "{accepted} of {SENT} accepted in {elapsed:?} at {RATE}/s: {statuses:?}"
    );
    for resp in answers.iter().filter(|r| r.status != 200) {
        assert_json_error(resp, 429, "more than 5 publishes per second", "HTTP publish over the rate");
        assert_eq!(resp.header("retry-after"), Some("1"), "429 headers {:?}", resp.headers);
    }
    // A new connection has its own allowance.
    let resp = request(server.ingest, "POST", "/pub/rated", &[], b"fresh connection");
    assert_eq!(resp.status, 200, "publish on a new connection: {}", resp.text());

    // RESP: the same, pipelined in one write.
    let mut resp_conn = HttpConn::new(server.resp);
    let pipeline: Vec<u8> =
        (0..SENT).flat_map(|i| resp_args(&["PUBLISH", "rated", &format!("r{i}")])).collect();
    let started = Instant::now();
    resp_conn.send(&pipeline);
    let replies: Vec<String> = (0..SENT).map(|_| resp_conn.resp_line()).collect();
    let elapsed = started.elapsed();
    assert!(replies[..RATE].iter().all(|r| r.starts_with(':')), "the first {RATE} must pass: {replies:?}");
    let accepted = replies.iter().filter(|r| r.starts_with(':')).count();
    assert!(
        accepted < SENT && accepted <= max_accepted(RATE, RATE as f64, elapsed),
        "{accepted} of {SENT} RESP publishes accepted in {elapsed:?}: {replies:?}"
    );
    for reply in replies.iter().filter(|r| !r.starts_with(':')) {
        assert!(reply.starts_with("-ERR more than 5 publishes per second"), "RESP over the rate: {reply:?}");
    }
    // The refused connection stays open, and a new one has its own allowance.
    resp_conn.send(&resp_args(&["PING"]));
    assert_eq!(resp_conn.resp_line(), "+PONG");
    let mut fresh = HttpConn::new(server.resp);
    fresh.send(&resp_args(&["PUBLISH", "rated", "fresh"]));
    assert!(fresh.resp_line().starts_with(':'), "RESP publish on a new connection");
}

#[test]
fn publish_rate_per_address_refuses_the_excess_on_bayeux_and_the_demo_helper() {
    const RATE: usize = 3;
    let server = Server::start(&["--publish-rate-per-ip", "3", "--bayeux-timeout-ms", "1500"]);

    // Bayeux from 127.0.0.1: eight publishes in one request are handled at one instant.
    let hs = bayeux(
        &server,
        &json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}]),
    );
    let cid = hs[0]["clientId"].as_str().unwrap_or_else(|| panic!("handshake: {hs:?}")).to_string();
    let publishes: Vec<Value> = (0..8)
        .map(|i| json!({"channel": "/rated", "clientId": cid, "data": i, "id": i.to_string()}))
        .collect();
    let replies = bayeux(&server, &Value::Array(publishes));
    let ok: Vec<bool> = replies.iter().map(|r| r["successful"] == true).collect();
    assert_eq!(ok, [true, true, true, false, false, false, false, false], "replies {replies:?}");
    for reply in &replies[RATE..] {
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("429::") && error.contains("more than 3 publishes per second from 127.0.0.1"),
            "Bayeux publish over the rate: {reply}"
        );
    }

    // The demo helper from 127.0.0.2: pipelined on one connection.
    let mut conn = HttpConn::from_src("127.0.0.2", server.public);
    let pipeline: Vec<u8> = (0..10)
        .flat_map(|i| format_request("POST", "/demo/pub/rated", &[], format!("d{i}").as_bytes()))
        .collect();
    let started = Instant::now();
    conn.send(&pipeline);
    let answers: Vec<Response> = (0..10).map(|_| conn.response()).collect();
    let elapsed = started.elapsed();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert!(statuses[..RATE].iter().all(|s| *s == 200), "the first {RATE} must pass: {statuses:?}");
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        accepted < 10 && accepted <= max_accepted(RATE, RATE as f64, elapsed),
        "{accepted} of 10 demo publishes accepted in {elapsed:?}: {statuses:?}"
    );
    for resp in answers.iter().filter(|r| r.status != 200) {
        assert_json_error(resp, 429, "from 127.0.0.2", "demo helper over the rate");
        assert_eq!(resp.header("retry-after"), Some("1"), "429 headers {:?}", resp.headers);
    }

    // Per address: 127.0.0.3 still publishes; the ingest port has no per-address rate.
    let mut other = HttpConn::from_src("127.0.0.3", server.public);
    let resp = other.request("POST", "/demo/pub/rated", &[], b"other address");
    assert_eq!(resp.status, 200, "demo helper from 127.0.0.3: {}", resp.text());
    let mut ingest = HttpConn::new(server.ingest);
    let pipeline: Vec<u8> = (0..10).flat_map(|_| format_request("POST", "/pub/rated", &[], b"i")).collect();
    ingest.send(&pipeline);
    for i in 0..10 {
        let resp = ingest.response();
        assert_eq!(resp.status, 200, "ingest publish {i} (no per-address rate there): {}", resp.text());
    }
}

/// The per-address bucket lives in the per-address connection count entry,
/// which is removed when the address's last connection closes: a client that
/// publishes once per connection (and closes it) starts each time with a full
/// bucket.
#[test]
fn publish_rate_per_address_holds_across_reconnects() {
    let server = Server::start(&["--publish-rate-per-ip", "1"]);
    let publish = || {
        let mut conn = HttpConn::new(server.public);
        let resp = conn.request("POST", "/demo/pub/r", &[("Connection", "close")], b"x");
        // Wait for the server's close, then close ours: the server then drops the connection.
        conn.read_to_close();
        resp.status
    };
    let first_sent = Instant::now();
    assert_eq!(publish(), 200, "first publish");
    // With a rate of 1/s, nothing more may pass until a second after the first.
    let mut statuses = Vec::new();
    while first_sent.elapsed() < Duration::from_millis(700) && statuses.len() < 20 {
        let status = publish();
        // Received less than a second after the first was sent: the bucket cannot have refilled.
        if first_sent.elapsed() < Duration::from_millis(950) {
            statuses.push(status);
        }
    }
    assert!(
        statuses.iter().all(|s| *s == 429),
        "publishes within a second of the first, each on a new connection: {statuses:?}"
    );
}

// ---------------------------------------------------------------------------
// Channels per subscription, stream age

#[test]
fn max_channels_per_subscription_limits_paths_and_websocket_subscribes() {
    let server = Server::start(&["--max-channels-per-subscription", "2"]);
    let resp = get(server.public, "/sub/a,b,c?transport=longpoll&timeout=0");
    assert_json_error(&resp, 400, "the limit is 2", "three channels in a path");
    let resp = get(server.public, "/sub/a,b?transport=longpoll&timeout=0");
    assert_eq!(resp.status, 200, "two channels: {}", resp.text());
    let resp = request(server.public, "GET", "/sub/a,b,c", &[("Accept", "text/event-stream")], b"");
    assert_json_error(&resp, 400, "the limit is 2", "three channels, SSE");

    let mut ws = Ws::open(server.public, "/sub/a");
    ws.send_text(r#"{"subscribe":["b","c"]}"#);
    let error = ws.next_json("a command's answer");
    assert!(error["error"].as_str().is_some_and(|m| m.contains("at most 2 channels")), "a+b+c: {error}");
    ws.send_text(r#"{"subscribe":["x","y","z"]}"#);
    let error = ws.next_json("a command's answer");
    assert!(
        error["error"].as_str().is_some_and(|m| m.contains("the limit is 2")),
        "three in one command: {error}"
    );
    ws.send_text(r#"{"subscribe":["b"]}"#);
    assert_eq!(ws.next_json("a command's answer"), json!({"subscribed": ["b"]}));
    ws.send_text(r#"{"subscribe":["c"]}"#);
    let error = ws.next_json("a command's answer");
    assert!(error["error"].as_str().is_some_and(|m| m.contains("at most 2 channels")), "a+b then c: {error}");
    // Leaving one makes room.
    ws.send_text(r#"{"unsubscribe":["a"]}"#);
    assert_eq!(ws.next_json("a command's answer"), json!({"unsubscribed": ["a"]}));
    ws.send_text(r#"{"subscribe":["c"]}"#);
    assert_eq!(ws.next_json("a command's answer"), json!({"subscribed": ["c"]}));
    server.publish("c", "on c");
    assert_eq!(ws.next_json("a command's answer")["data"], "on c");
}

#[test]
fn max_stream_age_ends_an_sse_stream_cleanly() {
    let server = Server::start(&["--max-stream-age-secs", "2"]);
    let mut sub = StreamClient::open(server.public, "/sub/aged", &[("Accept", "text/event-stream")]);
    assert_eq!(sub.status, 200);
    let head_at = Instant::now();
    let mut tail = String::new();
    while let Some(chunk) = sub.next_raw_chunk() {
        tail.push_str(&chunk);
        assert!(head_at.elapsed() < DEADLINE, "stream still open after {:?}", head_at.elapsed());
    }
    let lived = head_at.elapsed();
    assert!(tail.ends_with(": end max-age\n\n"), "stream end: {tail:?}");
    assert!(lived >= Duration::from_millis(1500), "stream ended after {lived:?}, before its max age");
    assert!(sub.conn.closed(), "connection not closed after the terminating chunk");
}
