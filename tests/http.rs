//! HTTP/1.1 behaviour of both ports through real sockets: keep-alive,
//! pipelining, error statuses with JSON bodies, request body framing, head
//! timeouts, isolation between clients, publish backpressure, graceful
//! shutdown and HTTP/1.0.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// A publish request: POST /pub/{path} with `body` and a Content-Length.
fn publish_req(path: &str, body: &str) -> Vec<u8> {
    format_request("POST", &format!("/pub/{path}"), &[], body.as_bytes())
}

/// A publish request with a chunked body made of `chunks` (size lines in hex).
fn chunked_publish_req(path: &str, chunks: &[&str]) -> Vec<u8> {
    let mut out =
        format!("POST /pub/{path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    for chunk in chunks {
        out.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Sends raw bytes on a fresh connection and reads one response.
fn raw(addr: SocketAddr, bytes: &[u8]) -> (Response, HttpConn) {
    let mut conn = HttpConn::new(addr);
    conn.send(bytes);
    let resp = conn.response();
    (resp, conn)
}

/// A request head padded with one header so the whole head is `total` bytes.
fn head_of_size(method: &str, path: &str, total: usize) -> Vec<u8> {
    let start = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nX-Pad: ");
    let pad = total.saturating_sub(start.len() + 4);
    let mut out = start.into_bytes();
    out.extend(std::iter::repeat_n(b'a', pad));
    out.extend_from_slice(b"\r\n\r\n");
    assert_eq!(out.len(), total);
    out
}

/// Parses a JSON publish ack and returns its id, checking the channel.
fn ack_id(resp: &Response, channel: &str, what: &str) -> String {
    assert_eq!(resp.status, 200, "{what}: want 200, got {} {:?}", resp.status, resp.text());
    let json = resp.json();
    assert_eq!(json["channel"], channel, "{what}: ack {json}");
    json["id"].as_str().unwrap_or_else(|| panic!("{what}: no id in ack {json}")).to_string()
}

/// The data fields of a long-poll answer's messages.
fn poll_datas(json: &serde_json::Value) -> Vec<String> {
    json["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages array in {json}"))
        .iter()
        .map(|m| m["data"].as_str().unwrap_or_else(|| panic!("no data in {m}")).to_string())
        .collect()
}

fn assert_not_closing(resp: &Response, what: &str) {
    let connection = resp.header("connection").unwrap_or("");
    assert!(
        !connection.eq_ignore_ascii_case("close"),
        "{what}: keep-alive response says Connection: {connection}"
    );
}

/// Splits a raw response (as read until close) into status and body.
fn split_raw(bytes: &[u8]) -> (u16, Vec<u8>) {
    let end = find(bytes, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, bytes[end + 4..].to_vec())
}

// ---------------------------------------------------------------- 1. keep-alive

#[test]
fn keep_alive_serves_publishes_and_healthz_on_one_ingest_connection() {
    let server = Server::start(&[]);
    let mut conn = HttpConn::new(server.ingest);
    let mut ids = Vec::new();
    for round in 0..3 {
        conn.send(&publish_req("ka", &format!("m{round}")));
        let resp = conn.response();
        assert_not_closing(&resp, "publish");
        let id = ack_id(&resp, "ka", &format!("publish #{round} on a reused connection"));
        assert_eq!(resp.json()["subscribers"], 0, "nobody subscribed: {}", resp.text());
        ids.push(id);

        conn.send(&format_request("GET", "/healthz", &[], b""));
        let resp = conn.response();
        assert_eq!(resp.status, 200, "healthz #{round} on a reused connection: {}", resp.text());
        assert_not_closing(&resp, "healthz");
    }
    conn.send(&publish_req("ka?event=ping", "with-event"));
    let id = ack_id(&conn.response(), "ka", "publish with ?event= on a reused connection");
    ids.push(id);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "every publish got its own id: {ids:?}");
}

#[test]
fn keep_alive_serves_long_polls_on_one_public_connection() {
    let server = Server::start(&[]);
    let mut conn = HttpConn::new(server.public);

    conn.send(&format_request("GET", "/sub/ka?timeout=0", &[], b""));
    let resp = conn.response();
    assert_eq!(resp.status, 200, "first poll: {}", resp.text());
    assert_not_closing(&resp, "first poll");
    let first = resp.json();
    assert_eq!(poll_datas(&first), Vec::<String>::new(), "nothing published yet: {first}");
    let start = first["last_id"].as_str().unwrap_or_else(|| panic!("no last_id in {first}")).to_string();

    let id = server.publish_id("ka", "m1");
    conn.send(&format_request("GET", &format!("/sub/ka?last_id={start}&timeout=0"), &[], b""));
    let resp = conn.response();
    assert_eq!(resp.status, 200, "second poll on the same connection: {}", resp.text());
    assert_not_closing(&resp, "second poll");
    let json = resp.json();
    assert_eq!(poll_datas(&json), ["m1"], "second poll: {json}");
    assert_eq!(json["last_id"], id.as_str(), "second poll: {json}");

    conn.send(&format_request("GET", &format!("/sub/ka?last_id={id}&timeout=0"), &[], b""));
    let resp = conn.response();
    assert_eq!(resp.status, 200, "third poll on the same connection: {}", resp.text());
    let json = resp.json();
    assert_eq!(poll_datas(&json), Vec::<String>::new(), "third poll, nothing new: {json}");
    assert_eq!(json["last_id"], id.as_str(), "third poll: {json}");
}

// ---------------------------------------------------------------- 2. pipelining

/// Publish, healthz, chunked publish, publish, 404: one batch of bytes.
fn ingest_pipeline() -> Vec<u8> {
    let mut bytes = publish_req("pipe", "one");
    bytes.extend(format_request("GET", "/healthz", &[], b""));
    bytes.extend(chunked_publish_req("pipe", &["tw", "o"]));
    bytes.extend(publish_req("pipe", "three"));
    bytes.extend(format_request("GET", "/nope", &[], b""));
    bytes
}

/// Reads the answers to [`ingest_pipeline`] and checks their order, then that
/// the publishes were applied in order.
fn check_ingest_pipeline(server: &Server, conn: &mut HttpConn) {
    let first = ack_id(&conn.response(), "pipe", "pipelined publish 'one' (1st answer)");
    let health = conn.response();
    assert_eq!(health.status, 200, "pipelined healthz (2nd answer): {} {:?}", health.status, health.text());
    assert!(
        !health.text().contains("\"id\""),
        "2nd answer looks like a publish ack, not healthz: {}",
        health.text()
    );
    let second = ack_id(&conn.response(), "pipe", "pipelined chunked publish 'two' (3rd answer)");
    let third = ack_id(&conn.response(), "pipe", "pipelined publish 'three' (4th answer)");
    let missing = conn.response();
    assert_json_error(&missing, 404, "/nope", "pipelined GET /nope (5th answer)");
    assert!(first != second && second != third, "distinct ids: {first} {second} {third}");

    let (_, json) = poll(server.public, &format!("/sub/pipe?last_id={first}&timeout=0"));
    assert_eq!(poll_datas(&json), ["two", "three"], "publishes applied in request order: {json}");
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut conn = HttpConn::new(server.ingest);
    conn.send(&ingest_pipeline());
    check_ingest_pipeline(&server, &mut conn);
    // The connection is still usable afterwards.
    conn.send(&format_request("GET", "/healthz", &[], b""));
    assert_eq!(conn.response().status, 200, "healthz after the pipeline");
}

#[test]
fn everything_pipelined_before_a_half_close_is_answered() {
    let server = Server::start(&[]);
    // More publishes than one connection keeps with the hub at once, a
    // channel query and a health check behind them, then FIN.
    let mut conn = HttpConn::new(server.ingest);
    let mut bytes = Vec::new();
    for n in 0..100 {
        bytes.extend(publish_req("fin", &format!("m{n}")));
    }
    bytes.extend(format_request("GET", "/pub/fin", &[], b""));
    bytes.extend(format_request("GET", "/healthz", &[], b""));
    conn.send(&bytes);
    conn.stream.shutdown(std::net::Shutdown::Write).expect("half-close");
    let mut last = (0, 0);
    for n in 0..100 {
        let id = ack_id(&conn.response(), "fin", &format!("publish {n} of 100 before the FIN"));
        assert!(id_key(&id) > last, "acks in request order");
        last = id_key(&id);
    }
    let info = conn.response();
    assert_eq!(info.status, 200, "the channel query behind the publishes: {}", info.text());
    assert_eq!(info.json()["published"], 100, "it sees every publish before it: {}", info.text());
    assert_eq!(conn.response().status, 200, "healthz, the last request before the FIN");
    assert!(!conn.fill(), "then the connection closes");
}

#[test]
fn pipelined_long_polls_and_404_on_the_public_port() {
    let server = Server::start(&[]);
    let id = server.publish_id("pp", "hello");
    let mut bytes = format_request("GET", "/sub/pp?timeout=0&backlog=1", &[], b"");
    bytes.extend(format_request("GET", "/elsewhere", &[], b""));
    bytes.extend(format_request("GET", &format!("/sub/pp?last_id={id}&timeout=0"), &[], b""));
    let mut conn = HttpConn::new(server.public);
    conn.send(&bytes);

    let resp = conn.response();
    assert_eq!(resp.status, 200, "1st pipelined poll: {}", resp.text());
    assert_eq!(poll_datas(&resp.json()), ["hello"], "1st pipelined poll (backlog=1): {}", resp.text());
    assert_json_error(&conn.response(), 404, "/elsewhere", "2nd pipelined request");
    let resp = conn.response();
    assert_eq!(resp.status, 200, "3rd pipelined poll: {}", resp.text());
    assert_eq!(poll_datas(&resp.json()), Vec::<String>::new(), "3rd pipelined poll: {}", resp.text());
}

#[test]
fn pipelined_requests_split_at_odd_byte_boundaries() {
    let server = Server::start(&[]);
    let bytes = ingest_pipeline();
    let mut conn = HttpConn::new(server.ingest);
    // Pieces of 1, 2, 3, 5, ... bytes so that splits land inside the request
    // line, header names, CRLFs, the blank line, chunk sizes and bodies. The
    // short pause only keeps the pieces in separate segments.
    let sizes = [1, 2, 3, 5, 7, 11, 13, 17, 4, 1, 1, 6];
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + size).min(bytes.len());
        conn.send(&bytes[at..end]);
        at = end;
        std::thread::sleep(Duration::from_millis(2));
    }
    check_ingest_pipeline(&server, &mut conn);
}

// ---------------------------------------------------------------- 3. errors

#[test]
fn unknown_path_is_404_with_json_error_on_both_ports() {
    let server = Server::start(&[]);
    for (port, addr) in [("public", server.public), ("ingest", server.ingest)] {
        for path in ["/nope", "/subx/a", "/pubx/a"] {
            let resp = get(addr, path);
            assert_json_error(&resp, 404, path, &format!("GET {path} on the {port} port"));
        }
    }
    // `/` is the demo page on the public port only.
    assert_json_error(&get(server.ingest, "/"), 404, "/", "GET / on the ingest port");
    // Subscribing on the ingest port or publishing on the public port is also unknown.
    assert_json_error(&get(server.ingest, "/sub/a"), 404, "/sub/a", "GET /sub/a on the ingest port");
    let resp = request(server.public, "POST", "/pub/a", &[], b"x");
    assert_json_error(&resp, 404, "/pub/a", "POST /pub/a on the public port");
}

#[test]
fn wrong_method_is_405_with_allow_header() {
    let server = Server::start(&[]);
    let cases = [
        ("public", server.public, "DELETE", "/sub/x", "GET"),
        ("public", server.public, "POST", "/sub/x", "GET"),
        ("ingest", server.ingest, "PUT", "/pub/x", "POST"),
        ("ingest", server.ingest, "POST", "/healthz", "GET"),
    ];
    for (port, addr, method, path, allowed) in cases {
        let what = format!("{method} {path} on the {port} port");
        let resp = request(addr, method, path, &[], b"");
        assert_json_error(&resp, 405, allowed, &what);
        let allow = resp
            .header("allow")
            .unwrap_or_else(|| panic!("{what}: 405 without Allow; headers {:?}", resp.headers));
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{what}: Allow: {allow}, want it to list {allowed}"
        );
    }
}

#[test]
fn malformed_request_line_and_garbage_are_400_and_close() {
    let server = Server::start(&[]);
    let cases: [&[u8]; 6] = [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /sub/x\r\n\r\n",
        b"hello world\r\n\r\n",
        b"GET /sub/x HTTP/1.1\r\nbad header line\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\xff\xfe\r\n\r\n",
    ];
    for addr in [server.public, server.ingest] {
        for bytes in cases {
            let what = format!("{:?} to {addr}", String::from_utf8_lossy(bytes));
            let (resp, mut conn) = raw(addr, bytes);
            assert_json_error(&resp, 400, "", &what);
            assert!(conn.closed(), "{what}: connection not closed after a 400 for unparseable bytes");
        }
    }
}

#[test]
fn invalid_channel_name_is_400_naming_the_rule() {
    let server = Server::start(&[]);
    let long = "a".repeat(129);
    let subs = [
        "/sub/semi;colon",
        "/sub/a%20b",
        "/sub/a,,b",
        &format!("/sub/{long}"),
        "/sub//abs",
        "/sub/caf%C3%A9",
    ];
    for path in subs {
        let resp = get(server.public, &format!("{path}?timeout=0"));
        assert_json_error(&resp, 400, "1 to 128 bytes", &format!("GET {path}"));
    }
    let pubs = ["/pub/semi;colon", "/pub/a%20b", &format!("/pub/{long}"), "/pub//abs", "/pub/"];
    for path in pubs {
        let resp = request(server.ingest, "POST", path, &[], b"x");
        assert_json_error(&resp, 400, "1 to 128 bytes", &format!("POST {path}"));
    }
    // The longest legal name is fine.
    let max = "a".repeat(128);
    server.publish(&max, "ok");
}

#[test]
fn head_over_8_kib_is_431() {
    let server = Server::start(&[]);
    for (port, addr, path) in
        [("public", server.public, "/sub/x?timeout=0"), ("ingest", server.ingest, "/healthz")]
    {
        let ok = head_of_size("GET", path, 7 * 1024);
        let (resp, _) = raw(addr, &ok);
        assert_eq!(resp.status, 200, "7 KiB head on the {port} port: {}", resp.text());

        let (resp, mut conn) = raw(addr, &head_of_size("GET", path, 9 * 1024));
        assert_json_error(&resp, 431, "head", &format!("9 KiB head on the {port} port"));
        assert!(conn.closed(), "{port}: connection not closed after 431");

        // A head that never ends is refused as soon as it passes the limit.
        let mut endless = format!("GET {path} HTTP/1.1\r\nX-Pad: ").into_bytes();
        endless.extend(std::iter::repeat_n(b'b', 12 * 1024));
        let (resp, _) = raw(addr, &endless);
        assert_json_error(&resp, 431, "head", &format!("12 KiB unterminated head on the {port} port"));
    }
}

#[test]
fn head_over_max_head_bytes_is_431() {
    let server = Server::start(&["--max-head-bytes", "2048"]);
    for (port, addr, path) in
        [("public", server.public, "/sub/x?timeout=0"), ("ingest", server.ingest, "/healthz")]
    {
        let (resp, _) = raw(addr, &head_of_size("GET", path, 1500));
        assert_eq!(
            resp.status,
            200,
            "1500-byte head with --max-head-bytes 2048 on the {port} port: {}",
            resp.text()
        );
        let (resp, mut conn) = raw(addr, &head_of_size("GET", path, 3000));
        assert_json_error(
            &resp,
            431,
            "head",
            &format!("3000-byte head with --max-head-bytes 2048 on the {port} port"),
        );
        assert!(conn.closed(), "{port}: connection not closed after 431");
    }
}

#[test]
fn publish_over_max_message_bytes_is_413_by_content_length() {
    let server = Server::start(&["--max-message-bytes", "1024"]);
    let at_limit = "x".repeat(1024);
    server.publish("big", &at_limit);

    // Whole body sent.
    let over = "x".repeat(1025);
    let (resp, mut conn) = raw(server.ingest, &publish_req("big", &over));
    assert_json_error(&resp, 413, "1024", "1025-byte publish with --max-message-bytes 1024");
    assert!(conn.closed(), "connection not closed after 413");

    // Refused on the Content-Length alone, before any body byte is sent.
    let head = "POST /pub/big HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n";
    let (resp, _) = raw(server.ingest, head.as_bytes());
    assert_json_error(&resp, 413, "1024", "Content-Length: 100000 with no body sent");

    // The same under the default limit (64 KiB).
    let server = Server::start(&[]);
    let (resp, _) = raw(server.ingest, &publish_req("big", &"y".repeat(64 * 1024 + 1)));
    assert_json_error(&resp, 413, "65536", "64 KiB + 1 publish with the default limit");
    server.publish("big", &"y".repeat(64 * 1024));
}

#[test]
fn chunked_publish_over_max_message_bytes_is_413() {
    let server = Server::start(&["--max-message-bytes", "1024"]);
    let part = "z".repeat(400);
    let (resp, _) = raw(server.ingest, &chunked_publish_req("big", &[&part, &part]));
    assert_eq!(resp.status, 200, "800 bytes in two chunks: {}", resp.text());

    let (resp, mut conn) = raw(server.ingest, &chunked_publish_req("big", &[&part, &part, &part]));
    assert_json_error(&resp, 413, "1024", "1200 bytes in three chunks with --max-message-bytes 1024");
    assert!(conn.closed(), "connection not closed after 413");

    // A single chunk size line that announces too much is refused before its data.
    let head = "POST /pub/big HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nfffff\r\n";
    let (resp, _) = raw(server.ingest, head.as_bytes());
    assert_json_error(&resp, 413, "1024", "chunk size 0xfffff announced, no data sent");
}

#[test]
fn non_utf8_publish_body_is_400() {
    let server = Server::start(&[]);
    let resp = request(server.ingest, "POST", "/pub/bin", &[], b"ok\xff\xfe");
    assert_json_error(&resp, 400, "UTF-8", "publish with bytes ff fe");
    let resp = request(server.ingest, "POST", "/pub/bin", &[], b"\xc3");
    assert_json_error(&resp, 400, "UTF-8", "publish with a truncated UTF-8 sequence");
    // Nothing was stored.
    let (_, json) = poll(server.public, "/sub/bin?backlog=10&timeout=0");
    assert_eq!(poll_datas(&json), Vec::<String>::new(), "refused publishes must not be stored: {json}");
}

#[test]
fn http_2_request_line_is_505() {
    let server = Server::start(&[]);
    for addr in [server.public, server.ingest] {
        for version in ["HTTP/2.0", "HTTP/2", "HTTP/3.0"] {
            let bytes = format!("GET /sub/x {version}\r\nHost: test\r\n\r\n");
            let (resp, _) = raw(addr, bytes.as_bytes());
            assert_json_error(&resp, 505, "HTTP/1.1", &format!("{version} request line to {addr}"));
        }
    }
}

#[test]
fn bad_event_type_is_400() {
    let server = Server::start(&[]);
    let long = "e".repeat(65);
    for event in ["bad%20type", "a%0Ab", "a%0D%0Adata:%20x", "semi%3Bcolon", long.as_str()] {
        let resp = request(server.ingest, "POST", &format!("/pub/ev?event={event}"), &[], b"x");
        assert_json_error(&resp, 400, "event", &format!("publish with ?event={event}"));
    }
    let ok = "e".repeat(64);
    let resp = request(server.ingest, "POST", &format!("/pub/ev?event={ok}"), &[], b"x");
    assert_eq!(resp.status, 200, "64-byte event type: {}", resp.text());
}

// ---------------------------------------------------------------- 4. body framing

#[test]
fn chunked_publish_bodies_are_delivered() {
    let server = Server::start(&[]);
    let mut sub = StreamClient::open(server.public, "/sub/news", &[("Accept", "text/event-stream")]);
    assert_eq!(sub.status, 200);

    let (resp, _) = raw(server.ingest, &chunked_publish_req("news", &["hel", "lo wor", "ld"]));
    let first = ack_id(&resp, "news", "chunked publish");
    // Chunk extensions and trailer fields are allowed and ignored.
    let bytes = b"POST /pub/news HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
        6;name=value\r\nsecond\r\n2\r\n!!\r\n0\r\nX-Trailer: yes\r\n\r\n";
    let (resp, _) = raw(server.ingest, bytes);
    let second = ack_id(&resp, "news", "chunked publish with extension and trailer");

    let ev = sub.next_event().expect("first event");
    assert_eq!(ev, SseEvent { id: Some(first), event: None, data: "hello world".into() });
    let ev = sub.next_event().expect("second event");
    assert_eq!(ev, SseEvent { id: Some(second), event: None, data: "second!!".into() });
}

#[test]
fn expect_100_continue_gets_continue_then_200() {
    let server = Server::start(&[]);
    // Content-Length body.
    let mut conn = HttpConn::new(server.ingest);
    conn.send(b"POST /pub/exp HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let interim = conn.read_until(b"\r\n\r\n");
    let interim = String::from_utf8_lossy(&interim);
    assert!(
        interim.starts_with("HTTP/1.1 100"),
        "want 100 Continue before the body is sent, got {interim:?}"
    );
    conn.send(b"hello");
    let first = ack_id(&conn.response(), "exp", "publish after 100 Continue");

    // Chunked body, on the same connection.
    conn.send(
        b"POST /pub/exp HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let interim = conn.read_until(b"\r\n\r\n");
    let interim = String::from_utf8_lossy(&interim);
    assert!(interim.starts_with("HTTP/1.1 100"), "chunked: want 100 Continue, got {interim:?}");
    conn.send(b"5\r\nworld\r\n0\r\n\r\n");
    ack_id(&conn.response(), "exp", "chunked publish after 100 Continue");
    assert!(
        conn.buffered().is_empty(),
        "nothing after the 200: {:?}",
        String::from_utf8_lossy(conn.buffered())
    );

    let (_, json) = poll(server.public, &format!("/sub/exp?last_id={first}&timeout=0"));
    assert_eq!(poll_datas(&json), ["world"], "{json}");
}

// ---------------------------------------------------------------- 5. head timeout

/// Sends `partial` and reads until the server closes; returns what it answered
/// (empty if it just closed) and how long that took from before the connect.
fn time_until_closed(addr: SocketAddr, partial: &[u8]) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut conn = HttpConn::new(addr);
    conn.send(partial);
    let bytes = conn.read_to_close();
    (bytes, start.elapsed())
}

fn assert_408_or_nothing(bytes: &[u8], what: &str) {
    if bytes.is_empty() {
        return;
    }
    let (status, body) = split_raw(bytes);
    assert_eq!(status, 408, "{what}: want 408 or a bare close, got {:?}", String::from_utf8_lossy(bytes));
    let json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{what}: 408 body not JSON ({e}): {:?}", String::from_utf8_lossy(&body)));
    assert!(json["error"].as_str().is_some_and(|m| !m.is_empty()), "{what}: 408 body {json}");
}

#[test]
fn half_sent_head_is_answered_408_or_closed_after_head_timeout() {
    let server = Server::start(&["--head-timeout-secs", "1"]);
    for (port, addr) in [("public", server.public), ("ingest", server.ingest)] {
        let (bytes, took) = time_until_closed(addr, b"GET /sub/news HTTP/1.1\r\nHost: te");
        let what = format!("half a head on the {port} port with --head-timeout-secs 1");
        assert!(took >= Duration::from_millis(800), "{what}: closed after only {took:?}");
        assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
        assert_408_or_nothing(&bytes, &what);
    }
}

#[test]
fn trickled_head_does_not_extend_the_head_timeout() {
    let server = Server::start(&["--head-timeout-secs", "1"]);
    let start = Instant::now();
    let mut conn = HttpConn::new(server.public);
    let mut writer = conn.stream.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = stop.clone();
    // A slowloris: one more header byte every 100 ms, for up to 15 s.
    let trickle = std::thread::spawn(move || {
        let mut head = b"GET /sub/news HTTP/1.1\r\nHost: test\r\nX-Slow: ".to_vec();
        head.extend(std::iter::repeat_n(b's', 200));
        for byte in head {
            if stop_writer.load(Ordering::Relaxed) || writer.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let bytes = conn.read_to_close();
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    let what = "a head trickled a byte per 100 ms with --head-timeout-secs 1";
    assert!(took >= Duration::from_millis(800), "{what}: closed after only {took:?}");
    assert!(took < Duration::from_secs(10), "{what}: still open after {took:?}: the trickle keeps it alive");
    assert_408_or_nothing(&bytes, what);
}

#[test]
fn idle_keep_alive_connection_is_closed_after_head_timeout() {
    let server = Server::start(&["--head-timeout-secs", "1"]);
    for (port, addr, path) in
        [("ingest", server.ingest, "/healthz"), ("public", server.public, "/sub/idle?timeout=0")]
    {
        let mut conn = HttpConn::new(addr);
        // Measured from before the request: the server's idle clock starts
        // no earlier than its answer, so a close is due no sooner than 1 s on.
        let since = Instant::now();
        conn.send(&format_request("GET", path, &[], b""));
        let resp = conn.response();
        assert_eq!(resp.status, 200, "{port}: {}", resp.text());
        assert_not_closing(&resp, port);
        assert!(conn.closed(), "{port}: idle keep-alive connection still open after {:?}", since.elapsed());
        let took = since.elapsed();
        assert!(took >= Duration::from_millis(900), "{port}: idle connection closed after only {took:?}");
        assert!(took < Duration::from_secs(10), "{port}: idle connection closed only after {took:?}");
        assert!(
            conn.buffered().is_empty(),
            "{port}: an idle close sends nothing, got {:?}",
            String::from_utf8_lossy(conn.buffered())
        );
    }
}

// ---------------------------------------------------------------- 6. isolation

/// Best-effort read of whatever the server answers, for misbehaving clients.
fn drain(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut tmp = [0u8; 4096];
    while let Ok(n) = stream.read(&mut tmp) {
        if n == 0 {
            break;
        }
    }
}

fn raw_connect(addr: SocketAddr) -> Option<TcpStream> {
    let stream = TcpStream::connect(addr).ok()?;
    let _ = stream.set_nodelay(true);
    Some(stream)
}

type Misbehave = fn(SocketAddr, SocketAddr, usize, &mut Vec<TcpStream>);

fn send_garbage(public: SocketAddr, ingest: SocketAddr, round: usize, _: &mut Vec<TcpStream>) {
    let addr = if round.is_multiple_of(2) { public } else { ingest };
    let Some(mut s) = raw_connect(addr) else { return };
    let garbage: Vec<u8> = (0..600u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let _ = s.write_all(&garbage);
    drain(&mut s);
}

fn send_oversize_head(public: SocketAddr, ingest: SocketAddr, round: usize, _: &mut Vec<TcpStream>) {
    let addr = if round.is_multiple_of(2) { public } else { ingest };
    let Some(mut s) = raw_connect(addr) else { return };
    let mut head = b"GET /sub/ctl HTTP/1.1\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'x', 20 * 1024));
    let _ = s.write_all(&head);
    drain(&mut s);
}

fn slowloris(public: SocketAddr, ingest: SocketAddr, round: usize, held: &mut Vec<TcpStream>) {
    let addr = if round.is_multiple_of(2) { public } else { ingest };
    let Some(mut s) = raw_connect(addr) else { return };
    let _ = s.write_all(b"POST /pub/ctl HTTP/1.1\r\nHost: test\r\nX-Slow: ");
    held.push(s); // kept open and silent until the test ends
}

fn vanish_mid_head(public: SocketAddr, _: SocketAddr, _: usize, _: &mut Vec<TcpStream>) {
    let Some(mut s) = raw_connect(public) else { return };
    let _ = s.write_all(b"GET /sub/ctl HTTP/1.1\r\nAcc");
}

fn vanish_mid_body(_: SocketAddr, ingest: SocketAddr, round: usize, _: &mut Vec<TcpStream>) {
    let Some(mut s) = raw_connect(ingest) else { return };
    let bytes: &[u8] = if round.is_multiple_of(2) {
        b"POST /pub/ctl HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten b"
    } else {
        b"POST /pub/ctl HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nhalf a chu"
    };
    let _ = s.write_all(bytes);
}

fn bad_chunked_body(_: SocketAddr, ingest: SocketAddr, _: usize, _: &mut Vec<TcpStream>) {
    let Some(mut s) = raw_connect(ingest) else { return };
    let _ = s.write_all(
        b"POST /pub/ctl HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n0\r\n\r\n",
    );
    drain(&mut s);
}

fn subscribe_and_vanish(public: SocketAddr, _: SocketAddr, round: usize, _: &mut Vec<TcpStream>) {
    let Some(mut s) = raw_connect(public) else { return };
    let path = if round.is_multiple_of(2) { "/sub/ctl?transport=sse" } else { "/sub/ctl?transport=stream" };
    let _ = s.write_all(&format_request("GET", path, &[], b""));
    if round.is_multiple_of(3) {
        // Wait for the head so the subscription is live when it vanishes.
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.read(&mut [0u8; 512]);
    }
}

#[test]
fn bad_clients_never_disturb_a_subscriber() {
    const N: usize = 40;
    const ROUNDS: usize = 25;
    let server = Server::start(&[]);
    let mut sse = StreamClient::open(server.public, "/sub/ctl", &[("Accept", "text/event-stream")]);
    let mut ndjson = StreamClient::open(server.public, "/sub/ctl?transport=stream", &[]);
    assert_eq!((sse.status, ndjson.status), (200, 200));

    let behaviours: [(&str, Misbehave); 7] = [
        ("garbage", send_garbage),
        ("oversize head", send_oversize_head),
        ("slowloris", slowloris),
        ("vanish mid-head", vanish_mid_head),
        ("vanish mid-body", vanish_mid_body),
        ("bad chunked body", bad_chunked_body),
        ("subscribe and vanish", subscribe_and_vanish),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let started: Arc<Vec<AtomicUsize>> = Arc::new(behaviours.iter().map(|_| AtomicUsize::new(0)).collect());
    let (public, ingest) = (server.public, server.ingest);
    let threads: Vec<_> = behaviours
        .iter()
        .enumerate()
        .map(|(i, &(_, act))| {
            let (stop, started) = (stop.clone(), started.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for round in 0..ROUNDS {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    act(public, ingest, round, &mut held);
                    started[i].fetch_add(1, Ordering::Relaxed);
                }
                // Slowloris connections stay open until the control subscriber is done.
                while !stop.load(Ordering::Relaxed) && !held.is_empty() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    wait_until("every misbehaving client to have started", || {
        started.iter().all(|n| n.load(Ordering::Relaxed) > 0)
    });

    let mut publisher = HttpConn::new(server.ingest);
    let mut ids = Vec::new();
    for i in 0..N {
        publisher.send(&publish_req("ctl", &format!("msg-{i}")));
        ids.push(ack_id(&publisher.response(), "ctl", &format!("control publish #{i} amid bad clients")));
    }
    for (i, id) in ids.iter().enumerate() {
        let ev = sse.next_event().unwrap_or_else(|| panic!("SSE stream ended before message #{i}"));
        assert_eq!(
            ev,
            SseEvent { id: Some(id.clone()), event: None, data: format!("msg-{i}") },
            "SSE message #{i}"
        );
        let json = ndjson.next_json().unwrap_or_else(|| panic!("NDJSON stream ended before message #{i}"));
        assert_eq!(
            (json["id"].as_str(), json["data"].as_str()),
            (Some(id.as_str()), Some(format!("msg-{i}").as_str())),
            "NDJSON message #{i}: {json}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("misbehaving client thread");
    }
    let rounds: Vec<String> = behaviours
        .iter()
        .zip(started.iter())
        .map(|((name, _), n)| format!("{name}: {}", n.load(Ordering::Relaxed)))
        .collect();

    // Nothing from the half-sent publishes leaked in: the next message is the sentinel.
    let id = server.publish_id("ctl", "sentinel");
    let ev = sse.next_event().expect("sentinel event");
    assert_eq!(
        ev,
        SseEvent { id: Some(id), event: None, data: "sentinel".into() },
        "after rounds {rounds:?}"
    );
    let json = ndjson.next_json().expect("sentinel line");
    assert_eq!(json["data"], "sentinel", "after rounds {rounds:?}");
    assert_eq!(get(server.ingest, "/healthz").status, 200, "healthz after the bad clients");
    let (_, json) = poll(server.public, "/sub/ctl?backlog=1&timeout=0");
    assert_eq!(poll_datas(&json), ["sentinel"], "fresh long-poll after the bad clients: {json}");
}

// ---------------------------------------------------------------- 7. backpressure

#[test]
fn full_publish_queue_answers_503_with_retry_after() {
    let server = Server::start(&["--publish-queue", "1", "--batch-max", "1", "--batch-window-us", "5000000"]);
    const CONNS: usize = 6;
    let mut conns: Vec<HttpConn> = (0..CONNS).map(|_| HttpConn::new(server.ingest)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(&publish_req("busy", &format!("p{i}")));
    }
    let mut statuses = Vec::new();
    for (i, conn) in conns.iter_mut().enumerate() {
        let resp = conn.response();
        statuses.push(resp.status);
        match resp.status {
            200 => {
                ack_id(&resp, "busy", &format!("accepted publish #{i}"));
            }
            503 => {
                assert_json_error(&resp, 503, "queue", &format!("refused publish #{i}"));
                let retry = resp
                    .header("retry-after")
                    .unwrap_or_else(|| panic!("503 #{i} without Retry-After: {:?}", resp.headers));
                assert!(retry.trim().parse::<u64>().is_ok(), "Retry-After is seconds, got {retry:?}");
            }
            other => panic!("publish #{i}: want 200 or 503, got {other} {:?}", resp.text()),
        }
    }
    assert!(statuses.contains(&503), "no 503 with a queue of 1 and a 5 s batch window: {statuses:?}");
    assert!(statuses.contains(&200), "nothing accepted at all: {statuses:?}");

    // A publisher that honours Retry-After gets through once the queue drains.
    let start = Instant::now();
    let mut tries = Vec::new();
    loop {
        let resp = request(server.ingest, "POST", "/pub/busy", &[], b"retried");
        tries.push(resp.status);
        if resp.status == 200 {
            break;
        }
        assert_eq!(resp.status, 503, "retry: {}", resp.text());
        assert!(before_deadline(start), "a retried publish never got through: {tries:?} after {statuses:?}");
        let secs: u64 = resp.header("retry-after").and_then(|v| v.trim().parse().ok()).unwrap_or(1);
        std::thread::sleep(Duration::from_secs(secs));
    }
}

// ---------------------------------------------------------------- 8. shutdown

#[test]
fn sigterm_ends_streams_answers_polls_and_exits_cleanly() {
    let mut server = Server::start(&[]);
    let (public, ingest) = (server.public, server.ingest);

    // The long-poll is parked once the worker has parsed it. A pipelined
    // `timeout=0` poll in front of it proves that: its answer is written only
    // after the worker moved on to the next request.
    let mut lp = HttpConn::new(public);
    let mut bytes = format_request("GET", "/sub/lp?timeout=0", &[], b"");
    bytes.extend(format_request("GET", "/sub/lp?timeout=60", &[], b""));
    lp.send(&bytes);
    let first = lp.response();
    assert_eq!(first.status, 200, "timeout=0 poll: {}", first.text());

    let mut sse = StreamClient::open(public, "/sub/news", &[("Accept", "text/event-stream")]);
    let mut stream = StreamClient::open(public, "/sub/news?transport=stream", &[]);
    assert_eq!((sse.status, stream.status), (200, 200));
    server.publish("news", "before");
    assert_eq!(sse.next_event().expect("SSE event").data, "before");
    assert_eq!(stream.next_json().expect("NDJSON line")["data"], "before");

    let mut idle = HttpConn::new(ingest);
    idle.send(&format_request("GET", "/healthz", &[], b""));
    assert_eq!(idle.response().status, 200);

    let (status, took) = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}; log:\n{}", server.log_text());
    assert!(took < Duration::from_secs(5), "exit took {took:?}; log:\n{}", server.log_text());

    // Only comments (no events) may follow before the terminator.
    if let Some(ev) = sse.next_event() {
        panic!("SSE: unexpected event after shutdown: {ev:?}");
    }
    assert!(sse.ended, "SSE stream has no chunked terminator");
    while let Some(line) = stream.next_json() {
        assert!(line.get("data").is_none(), "NDJSON: unexpected message after shutdown: {line}");
    }
    assert!(stream.ended, "NDJSON stream has no chunked terminator");

    let resp = lp.response();
    assert_eq!(resp.status, 200, "parked long-poll at shutdown: {}", resp.text());
    let json = resp.json();
    assert_eq!(poll_datas(&json), Vec::<String>::new(), "parked long-poll: {json}");
    assert!(json["last_id"].is_string(), "parked long-poll answer has a last_id: {json}");
    assert!(lp.closed(), "long-poll connection not closed after its shutdown answer");
    assert!(idle.closed(), "idle keep-alive connection not closed by shutdown");

    for (port, addr) in [("public", public), ("ingest", ingest)] {
        assert!(TcpStream::connect(addr).is_err(), "{port} port {addr} still accepts connections after exit");
    }
}

// ---------------------------------------------------------------- 9. HTTP/1.0

#[test]
fn http10_long_poll_gets_content_length_and_close() {
    let server = Server::start(&[]);
    let mut conn = HttpConn::new(server.public);
    conn.send(b"GET /sub/old?timeout=0 HTTP/1.0\r\nHost: test\r\n\r\n");
    let resp = conn.response();
    assert_eq!(resp.status, 200, "HTTP/1.0 poll: {}", resp.text());
    assert!(
        resp.header("content-length").is_some(),
        "HTTP/1.0 poll without Content-Length: {:?}",
        resp.headers
    );
    assert!(resp.header("transfer-encoding").is_none(), "chunked to an HTTP/1.0 client: {:?}", resp.headers);
    let start = resp.json()["last_id"].as_str().expect("last_id").to_string();
    assert!(conn.closed(), "HTTP/1.0 connection not closed after the answer");

    // A message delivered to an HTTP/1.0 long-poll (as catch-up after last_id).
    let id = server.publish_id("old", "hi");
    let mut conn = HttpConn::new(server.public);
    conn.send(format!("GET /sub/old?last_id={start}&timeout=20 HTTP/1.0\r\n\r\n").as_bytes());
    let resp = conn.response();
    assert_eq!(resp.status, 200, "HTTP/1.0 poll with a message: {}", resp.text());
    assert!(resp.header("content-length").is_some(), "no Content-Length: {:?}", resp.headers);
    let json = resp.json();
    assert_eq!(poll_datas(&json), ["hi"], "{json}");
    assert_eq!(json["last_id"], id.as_str(), "{json}");
    assert!(conn.closed(), "HTTP/1.0 connection not closed after the answer");
}

#[test]
fn http10_sse_streams_unchunked_until_close() {
    let mut server = Server::start(&[]);
    let mut conn = HttpConn::new(server.public);
    conn.send(b"GET /sub/old HTTP/1.0\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n");
    let (status, headers) = conn.head();
    let header =
        |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    assert_eq!(status, 200, "headers {headers:?}");
    assert!(
        header("content-type").is_some_and(|c| c.starts_with("text/event-stream")),
        "headers {headers:?}"
    );
    assert!(header("transfer-encoding").is_none(), "chunked to an HTTP/1.0 client: {headers:?}");
    assert!(header("content-length").is_none(), "a stream has no Content-Length: {headers:?}");

    let first = server.publish_id("old", "hello");
    let body = conn.read_until(b"data: hello\n\n");
    let text = String::from_utf8_lossy(&body).to_string();
    assert!(
        text.contains(&format!("id: {first}\ndata: hello\n\n")),
        "SSE event not found verbatim in {text:?}"
    );
    assert!(!text.contains("\r\n"), "chunk framing in an HTTP/1.0 body: {text:?}");

    let second = server.publish_id("old", "two");
    let body = conn.read_until(b"data: two\n\n");
    let text = String::from_utf8_lossy(&body).to_string();
    assert_eq!(text, format!("id: {second}\ndata: two\n\n"), "second event, un-chunked");

    let (status, _) = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let rest = conn.read_to_close();
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("\r\n"), "chunk framing at the end of an HTTP/1.0 body: {rest:?}");
}

/// Publishes pipelined on one connection are with the fan-out thread
/// together, yet every answer comes back in request order, interleaved with
/// answers that need no fan-out (a 404, /healthz, a channel query).
#[test]
fn pipelined_publishes_are_in_flight_together_and_answered_in_order() {
    let server = Server::start(&[]);
    let mut conn = HttpConn::new(server.ingest);
    let mut bytes = Vec::new();
    for i in 0..300 {
        bytes.extend(format_request("POST", "/pub/pipe", &[], format!("m{i}").as_bytes()));
        match i {
            100 => bytes.extend(format_request("GET", "/nope", &[], b"")),
            150 => bytes.extend(format_request("GET", "/healthz", &[], b"")),
            200 => bytes.extend(format_request("GET", "/pub/pipe", &[], b"")),
            _ => {}
        }
    }
    conn.send(&bytes);
    let mut last: Option<(u64, u64)> = None;
    for i in 0..300 {
        let resp = conn.response();
        assert_eq!(resp.status, 200, "publish #{i}: {}", resp.text());
        let id = resp.json()["id"].as_str().expect("id").to_string();
        let (ms, seq) = id.split_once('-').expect("ms-seq");
        let key = (ms.parse().unwrap(), seq.parse().unwrap());
        assert!(last.is_none_or(|l| key > l), "publish #{i}: id {id} not after the previous one");
        last = Some(key);
        match i {
            100 => assert_eq!(conn.response().status, 404, "the 404 keeps its place"),
            150 => assert_eq!(conn.response().text(), "ok\n", "healthz keeps its place"),
            200 => {
                let info = conn.response().json();
                assert_eq!(
                    info["published"], 201,
                    "the channel query sees the 201 publishes before it: {info}"
                );
            }
            _ => {}
        }
    }
}
