//! The security features through real sockets against the real binary:
//! JWT auth on every subscribe path (header, `?token=`, SSE, long-poll,
//! WebSocket and its channel changes, Bayeux `ext.token`), public-side
//! publishes needing a `publish` claim, streams ending at token expiry, the
//! ingest key on HTTP ingest and RESP (also with the real `redis-cli`),
//! CIDR rules for subscribers and publishers (client sockets bound to
//! 127.0.0.2 / 127.0.0.3), and the blocked-word filter in mask and reject
//! mode on every publish path. Connection and rate limits are in
//! tests/limits.rs.
//!
//! Tokens are made with `halley::auth::jwt::sign`. Every subscriber reads its
//! response head (or its WebSocket ack) before anything is published: the
//! server answers only once the subscription is registered.

mod common;
use common::*;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// Channels under `private/` need a token; the rest are public.
const AUTH: &[&str] = &["--auth-secret", SECRET, "--auth-required", "private/"];
const INGEST_KEY: &str = "k3y-for-ingest";

// ---------------------------------------------------------------------------
// Tokens

fn sign(claims: &Value) -> String {
    halley::auth::jwt::sign(claims, SECRET.as_bytes())
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

fn unix_secs_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

/// A token granting `private/**` for subscribing (valid for an hour).
fn private_token() -> String {
    sign(&json!({"sub": "tester", "exp": unix_secs() + 3600, "channels": ["private/**"]}))
}

/// An unsigned token (`alg: none`), as an attacker would forge it.
fn none_alg_token() -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({"channels": ["**"], "publish": ["**"]}).to_string());
    format!("{header}.{claims}.")
}

// ---------------------------------------------------------------------------
// Subscribers

fn sse(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> StreamClient {
    let mut all = vec![("Accept", "text/event-stream")];
    all.extend_from_slice(headers);
    let sub = StreamClient::open(addr, path, &all);
    assert_eq!(sub.status, 200, "SSE {path}: status {} headers {:?}", sub.status, sub.headers);
    sub
}

fn next_data(sub: &mut StreamClient, what: &str) -> String {
    sub.next_event().unwrap_or_else(|| panic!("{what}: the stream ended before an event")).data
}

/// A long-poll answered at once with the last retained message.
fn backlog_poll(addr: SocketAddr, channel: &str, query: &str, headers: &[(&str, &str)]) -> Response {
    let path = format!("/sub/{channel}?transport=longpoll&backlog=1&timeout=0{query}");
    request(addr, "GET", &path, headers, b"")
}

fn polled_data(resp: &Response, what: &str) -> Vec<String> {
    assert_eq!(resp.status, 200, "{what}: {} {}", resp.status, resp.text());
    resp.json()["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no messages array in {}", resp.text()))
        .iter()
        .map(|m| m["data"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Asserts a 401 that asks for a Bearer token and whose message mentions `needle`.
fn assert_401(resp: &Response, needle: &str, what: &str) {
    assert_json_error(resp, 401, needle, what);
    assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{what}: headers {:?}", resp.headers);
}

// ---------------------------------------------------------------------------
// Bayeux over long-polling

fn bayeux_one(server: &Server, message: Value) -> Value {
    let replies = bayeux(server, &json!([message]));
    assert_eq!(replies.len(), 1, "one reply expected to {message}: {replies:?}");
    replies.into_iter().next().unwrap()
}

fn handshake_msg(token: Option<&str>) -> Value {
    let mut m = json!({
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "id": "hs",
    });
    if let Some(token) = token {
        m["ext"] = json!({ "token": token });
    }
    m
}

/// Handshakes (with `ext.token` when given) and makes the first connect; returns the clientId.
fn bayeux_session(server: &Server, token: Option<&str>) -> String {
    let reply = bayeux_one(server, handshake_msg(token));
    assert_eq!(reply["successful"], true, "handshake: {reply}");
    let cid = reply["clientId"].as_str().expect("clientId").to_string();
    let answer = bayeux(server, &json!([bayeux_connect_msg(&cid)]));
    assert_eq!(answer.last().map(|r| &r["successful"]), Some(&json!(true)), "first connect: {answer:?}");
    cid
}

fn bayeux_connect_msg(cid: &str) -> Value {
    json!({"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling", "id": "c"})
}

fn bayeux_subscribe(server: &Server, cid: &str, channel: &str) -> Value {
    bayeux_one(
        server,
        json!({"channel": "/meta/subscribe", "clientId": cid, "subscription": channel, "id": "s"}),
    )
}

fn bayeux_publish(server: &Server, cid: &str, channel: &str, data: Value) -> Value {
    bayeux_one(server, json!({"channel": channel, "clientId": cid, "data": data, "id": "p"}))
}

fn assert_bayeux_error(reply: &Value, code: &str, needle: &str, what: &str) {
    assert_eq!(reply["successful"], false, "{what}: {reply}");
    let error = reply["error"].as_str().unwrap_or_else(|| panic!("{what}: no error in {reply}"));
    assert!(error.starts_with(&format!("{code}::")), "{what}: error {error:?}, want {code}::…");
    assert!(
        error.to_lowercase().contains(&needle.to_lowercase()),
        "{what}: error {error:?} lacks {needle:?}"
    );
}

/// Connects until a delivery on `channel` arrives; returns its data.
fn bayeux_await_delivery(server: &Server, cid: &str, channel: &str) -> Value {
    let start = Instant::now();
    loop {
        assert!(before_deadline(start), "no delivery on {channel} for {cid}");
        let answer = bayeux(server, &json!([bayeux_connect_msg(cid)]));
        if let Some(d) = answer.iter().find(|m| m["channel"] == channel && m.get("data").is_some()) {
            return d["data"].clone();
        }
        let reply = answer.last().expect("connect reply");
        assert_eq!(reply["successful"], true, "connect while waiting: {answer:?}");
    }
}

// ---------------------------------------------------------------------------
// 1. Tokens

#[test]
fn public_channels_need_no_token_and_private_ones_refuse_missing_and_bad_tokens() {
    let server = Server::start(AUTH);
    let resp = get(server.public, "/sub/news?transport=longpoll&timeout=0");
    assert_eq!(resp.status, 200, "public channel without a token: {}", resp.text());

    let path = "/sub/private/x?transport=longpoll&timeout=0";
    assert_401(&get(server.public, path), "token is required", "no token");
    // A public channel listed with a private one still needs the token.
    assert_401(
        &get(server.public, "/sub/news,private/x?transport=longpoll&timeout=0"),
        "token",
        "mixed list",
    );

    let wrong_key = halley::auth::jwt::sign(&json!({"channels": ["**"]}), b"not-the-secret");
    let expired = sign(&json!({"channels": ["**"], "exp": unix_secs() - 60}));
    let not_yet = sign(&json!({"channels": ["**"], "nbf": unix_secs() + 3600}));
    let good = private_token();
    let mut tampered: Vec<&str> = good.split('.').collect();
    let forged_claims = URL_SAFE_NO_PAD.encode(json!({"channels": ["**"]}).to_string());
    tampered[1] = &forged_claims;
    let tampered = tampered.join(".");
    let cases: &[(&str, &str, &str)] = &[
        ("wrong signing key", &wrong_key, "signature"),
        ("claims swapped under a valid signature", &tampered, "signature"),
        ("expired", &expired, "expired"),
        ("not yet valid", &not_yet, "not valid yet"),
        ("alg none", &none_alg_token(), "HS256"),
        ("malformed", "not-a-jwt", "malformed"),
    ];
    for (what, token, needle) in cases {
        let bearer = format!("Bearer {token}");
        let resp = request(server.public, "GET", path, &[("Authorization", &bearer)], b"");
        assert_401(&resp, needle, &format!("{what} (header)"));
        let resp = get(server.public, &format!("{path}&token={token}"));
        assert_401(&resp, needle, &format!("{what} (?token=)"));
    }

    // Valid, but for other channels: 403 naming the channel (no WWW-Authenticate).
    let other = sign(&json!({"channels": ["private/y", "private/x/*"], "exp": unix_secs() + 3600}));
    let resp = get(server.public, &format!("{path}&token={other}"));
    let message = assert_json_error(&resp, 403, "private/x", "token not granting private/x");
    assert!(message.contains("'private/x'"), "403 should name the channel: {message}");
    // A token without any `channels` claim grants nothing.
    let empty = sign(&json!({"sub": "nobody"}));
    assert_json_error(
        &get(server.public, &format!("{path}&token={empty}")),
        403,
        "private/x",
        "no channels claim",
    );
}

#[test]
fn granted_tokens_work_by_header_and_query_on_longpoll_sse_and_websocket() {
    let server = Server::start(AUTH);
    let token = private_token();
    let bearer = format!("Bearer {token}");
    let query = format!("&token={token}");

    server.publish("private/x", "retained");
    let resp = backlog_poll(server.public, "private/x", "", &[("Authorization", &bearer)]);
    assert_eq!(polled_data(&resp, "long-poll, header"), ["retained"]);
    let resp = backlog_poll(server.public, "private/x", &query, &[]);
    assert_eq!(polled_data(&resp, "long-poll, ?token="), ["retained"]);
    // A granting pattern: `private/**` covers deeper channels; a public channel rides along.
    server.publish("private/a/b", "deep");
    let resp = backlog_poll(server.public, "private/a/b,news", &query, &[]);
    assert_eq!(polled_data(&resp, "long-poll of private/a/b,news"), ["deep"]);

    let mut by_header = sse(server.public, "/sub/private/x", &[("Authorization", &bearer)]);
    let mut by_query = sse(server.public, &format!("/sub/private/x?token={token}"), &[]);
    let mut ws = Ws::open_with(server.public, &format!("/sub/private/x?token={token}"), &[]);
    let mut ws_header = Ws::open_with(server.public, "/sub/private/x", &[("Authorization", &bearer)]);
    server.publish("private/x", "live");
    assert_eq!(next_data(&mut by_header, "SSE, header"), "live");
    assert_eq!(next_data(&mut by_query, "SSE, ?token="), "live");
    assert_eq!(ws.next_json("WebSocket, ?token=")["data"], "live");
    assert_eq!(ws_header.next_json("WebSocket, header")["data"], "live");

    // Without a token, neither an SSE stream nor a WebSocket starts.
    let resp = request(server.public, "GET", "/sub/private/x", &[("Accept", "text/event-stream")], b"");
    assert_401(&resp, "token", "SSE without a token");
    match Ws::try_open(server.public, "/sub/private/x", &[]) {
        Ok(_) => panic!("WebSocket on private/x without a token was upgraded"),
        Err(resp) => assert_401(&resp, "token", "WebSocket without a token"),
    }
}

#[test]
fn an_sse_stream_ends_when_its_token_expires() {
    let server = Server::start(AUTH);
    // exp is 2 to 3 s away.
    let exp = unix_secs() + 3;
    let token = sign(&json!({"channels": ["private/**"], "exp": exp}));
    let mut sub = sse(server.public, &format!("/sub/private/x?token={token}"), &[]);
    let mut ws = Ws::open_with(server.public, &format!("/sub/private/x?token={token}"), &[]);
    let head_at = Instant::now();
    server.publish("private/x", "before expiry");
    assert_eq!(next_data(&mut sub, "before expiry"), "before expiry");
    let mut tail = String::new();
    while let Some(chunk) = sub.next_raw_chunk() {
        tail.push_str(&chunk);
        assert!(head_at.elapsed() < DEADLINE, "stream still open {:?} after its head", head_at.elapsed());
    }
    let lived = head_at.elapsed();
    let ended_wall = unix_secs_f64();
    assert!(tail.ends_with(": end token-expired\n\n"), "stream end: {tail:?}");
    assert!(lived >= Duration::from_millis(1500), "stream ended after {lived:?}, before its token expired");
    assert!(ended_wall >= exp as f64 - 0.05, "stream ended at {ended_wall:.3}, before the token's exp {exp}");
    assert!(sub.conn.closed(), "connection not closed after the terminating chunk");
    // The WebSocket opened with the same token gets the message, then a 1001 close.
    assert_eq!(ws.next_json("WebSocket before expiry")["data"], "before expiry");
    let frame = ws.next_frame("WebSocket at token expiry");
    let (opcode, payload) = (frame.opcode, frame.payload);
    assert_eq!(opcode, 0x8, "want a close frame at token expiry, got {opcode:#x} {payload:?}");
    assert_eq!(&payload[..2], &1001u16.to_be_bytes(), "close code: {payload:?}");
    assert_eq!(&payload[2..], b"token-expired", "close reason");

    // The same token is now refused.
    let resp = get(server.public, &format!("/sub/private/x?transport=longpoll&timeout=0&token={token}"));
    assert_401(&resp, "expired", "expired token after the stream ended");
}

#[test]
fn websocket_channel_changes_need_a_token_granting_them() {
    let server = Server::start(AUTH);
    // Opened on a public channel without a token: private channels are refused.
    let mut anon = Ws::open_with(server.public, "/sub/news", &[]);
    anon.send_text(r#"{"subscribe":["private/y"]}"#);
    let error = anon.next_json("subscribe private/y without a token");
    let message = error["error"].as_str().unwrap_or_else(|| panic!("want an error frame, got {error}"));
    assert!(message.contains("private/y"), "error should name the channel: {message}");
    anon.send_text(r#"{"subscribe":["sport"]}"#);
    assert_eq!(anon.next_json("public channel added"), json!({"subscribed": ["sport"]}));

    // Opened on private/w with a token for private/w and private/y only.
    let token = sign(&json!({"channels": ["private/w", "private/y"], "exp": unix_secs() + 3600}));
    let mut authed = Ws::open_with(server.public, &format!("/sub/private/w?token={token}"), &[]);
    authed.send_text(r#"{"subscribe":["private/z"]}"#);
    let error = authed.next_json("subscribe private/z, not granted");
    assert!(error["error"].as_str().is_some_and(|m| m.contains("private/z")), "want an error frame: {error}");
    // One refused channel refuses the whole command.
    authed.send_text(r#"{"subscribe":["private/y","private/z"]}"#);
    let error = authed.next_json("subscribe y and z");
    assert!(error["error"].as_str().is_some_and(|m| m.contains("private/z")), "want an error frame: {error}");
    authed.send_text(r#"{"subscribe":["private/y"]}"#);
    assert_eq!(authed.next_json("subscribe private/y"), json!({"subscribed": ["private/y"]}));

    server.publish("private/z", "not for them");
    server.publish("private/y", "for the token holder");
    let got = authed.next_json("delivery on private/y");
    assert_eq!(
        (got["channel"].as_str(), got["data"].as_str()),
        (Some("private/y"), Some("for the token holder"))
    );
    server.publish("sport", "score");
    assert_eq!(anon.next_json("anonymous socket gets the public channel")["data"], "score");
}

/// docs/security.md: "over a WebSocket channel change, an error frame" only
/// when the token does not grant the channel. A socket opened on public
/// channels with a valid token should be able to add the private channels
/// that token grants.
#[test]
fn a_websocket_opened_on_public_channels_keeps_its_token_for_later_private_channels() {
    let server = Server::start(AUTH);
    let token = sign(&json!({"channels": ["private/y"], "exp": unix_secs() + 3600}));
    for (what, path, headers) in [
        ("?token=", format!("/sub/news?token={token}"), vec![]),
        (
            "Authorization",
            "/sub/news".to_string(),
            vec![("Authorization".to_string(), format!("Bearer {token}"))],
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mut ws = Ws::open_with(server.public, &path, &headers);
        ws.send_text(r#"{"subscribe":["private/y"]}"#);
        assert_eq!(
            ws.next_json(what),
            json!({"subscribed": ["private/y"]}),
            "socket opened on a public channel with a token ({what}) granting private/y"
        );
    }
}

#[test]
fn demo_helper_publishes_to_private_channels_only_with_a_publish_claim() {
    let server = Server::start(AUTH);
    let reader = private_token();
    let mut sub = sse(server.public, &format!("/sub/private/room,news?token={reader}"), &[]);

    let path = "/demo/pub/private/room";
    assert_401(&request(server.public, "POST", path, &[], b"x"), "token", "demo helper without a token");
    let resp = request(server.public, "POST", &format!("{path}?token={}", none_alg_token()), &[], b"x");
    assert_401(&resp, "HS256", "demo helper with alg none");
    // `channels` grants subscribing, not publishing.
    let bearer = format!("Bearer {reader}");
    let resp = request(server.public, "POST", path, &[("Authorization", &bearer)], b"x");
    assert_json_error(&resp, 403, "private/room", "demo helper with a subscribe-only token");
    let elsewhere = sign(&json!({"publish": ["private/other"], "exp": unix_secs() + 3600}));
    let resp = request(server.public, "POST", &format!("{path}?token={elsewhere}"), &[], b"x");
    assert_json_error(&resp, 403, "private/room", "demo helper with a token for another channel");

    let writer = sign(&json!({"publish": ["private/*"], "exp": unix_secs() + 3600}));
    let bearer = format!("Bearer {writer}");
    let resp = request(server.public, "POST", path, &[("Authorization", &bearer)], b"granted");
    assert_eq!(resp.status, 200, "demo helper with a publish claim: {}", resp.text());
    // A public channel needs no token.
    let resp = request(server.public, "POST", "/demo/pub/news", &[], b"public");
    assert_eq!(resp.status, 200, "demo helper on a public channel: {}", resp.text());
    assert_eq!(next_data(&mut sub, "granted publish"), "granted");
    assert_eq!(next_data(&mut sub, "public publish"), "public", "a refused publish was delivered");
}

#[test]
fn bayeux_handshake_token_gates_private_subscriptions_and_publishes() {
    let server = Server::start(&[AUTH, &["--bayeux-timeout-ms", "1500"]].concat());

    // A bad token fails the handshake itself.
    for (what, token, needle) in [
        ("expired", sign(&json!({"channels": ["**"], "exp": unix_secs() - 60})), "expired"),
        ("alg none", none_alg_token(), "HS256"),
        ("wrong key", halley::auth::jwt::sign(&json!({"channels": ["**"]}), b"other"), "signature"),
    ] {
        let reply = bayeux_one(&server, handshake_msg(Some(&token)));
        assert_bayeux_error(&reply, "401", needle, &format!("handshake with a {what} token"));
        assert!(reply.get("clientId").is_none_or(Value::is_null), "{what}: a session was made: {reply}");
    }

    // No token: public channels only.
    let anon = bayeux_session(&server, None);
    assert_bayeux_error(
        &bayeux_subscribe(&server, &anon, "/private/x"),
        "401",
        "token",
        "subscribe without a token",
    );
    assert_bayeux_error(
        &bayeux_subscribe(&server, &anon, "/private/**"),
        "401",
        "token",
        "wildcard subscribe without a token",
    );
    assert_eq!(bayeux_subscribe(&server, &anon, "/news")["successful"], true);
    let reply = bayeux_publish(&server, &anon, "/private/x", json!("anon"));
    assert_bayeux_error(&reply, "401", "token", "publish without a token");

    // A token for other channels.
    let other = sign(&json!({"channels": ["private/y"], "exp": unix_secs() + 3600}));
    let limited = bayeux_session(&server, Some(&other));
    assert_bayeux_error(
        &bayeux_subscribe(&server, &limited, "/private/x"),
        "403",
        "/private/x",
        "not granted",
    );

    // A granting token: subscribe and receive; publishing needs the publish claim.
    let reader = bayeux_session(&server, Some(&private_token()));
    assert_eq!(bayeux_subscribe(&server, &reader, "/private/x")["successful"], true);
    let reply = bayeux_publish(&server, &reader, "/private/x", json!("reader"));
    assert_bayeux_error(&reply, "403", "/private/x", "publish with a subscribe-only token");
    server.publish("private/x", "from ingest");
    assert_eq!(bayeux_await_delivery(&server, &reader, "/private/x"), "from ingest");

    let writer_token = sign(&json!({"publish": ["private/**"], "exp": unix_secs() + 3600}));
    let writer = bayeux_session(&server, Some(&writer_token));
    let mut sub = sse(server.public, &format!("/sub/private/x?token={}", private_token()), &[]);
    let reply = bayeux_publish(&server, &writer, "/private/x", json!("from bayeux"));
    assert_eq!(reply["successful"], true, "publish with a publish claim: {reply}");
    assert_eq!(next_data(&mut sub, "Bayeux publish"), "\"from bayeux\"", "a refused publish was delivered");
}

/// A wildcard subscription must not reach channels that need a token: either
/// the subscribe is refused, or deliveries on such channels are withheld.
#[test]
fn bayeux_wildcard_subscriptions_do_not_leak_private_channels() {
    let server = Server::start(&[AUTH, &["--bayeux-timeout-ms", "1500"]].concat());
    let anon = bayeux_session(&server, None);
    let reply = bayeux_subscribe(&server, &anon, "/**");
    if reply["successful"] != true {
        assert_bayeux_error(&reply, "401", "token", "anonymous subscribe to /**");
        return;
    }
    server.publish("private/x", "secret");
    server.publish("news", "sentinel");
    let start = Instant::now();
    let mut got = Vec::new();
    while !got.iter().any(|m: &Value| m["channel"] == "/news") {
        assert!(before_deadline(start), "sentinel not delivered; got {got:?}");
        let answer = bayeux(&server, &json!([bayeux_connect_msg(&anon)]));
        got.extend(answer.into_iter().filter(|m| m.get("data").is_some()));
    }
    let leaked: Vec<&Value> = got.iter().filter(|m| m["channel"] == "/private/x").collect();
    assert!(leaked.is_empty(), "anonymous /** subscriber received private deliveries: {leaked:?}");
}

#[test]
fn a_bayeux_session_ends_when_its_token_expires() {
    let server = Server::start(&[AUTH, &["--bayeux-timeout-ms", "1500"]].concat());
    // exp is 2 to 3 s away.
    let exp = unix_secs() + 3;
    let token = sign(&json!({"channels": ["private/**"], "exp": exp}));
    let cid = bayeux_session(&server, Some(&token));
    assert_eq!(bayeux_subscribe(&server, &cid, "/private/x")["successful"], true);
    server.publish("private/x", "before expiry");
    assert_eq!(bayeux_await_delivery(&server, &cid, "/private/x"), "before expiry");
    // Connect until the session is gone: the client is told to handshake again.
    let start = Instant::now();
    let ended = loop {
        assert!(before_deadline(start), "the session outlived its token (exp {exp})");
        let answer = bayeux(&server, &json!([bayeux_connect_msg(&cid)]));
        let reply = answer.last().expect("connect reply");
        if reply["successful"] == false {
            assert_bayeux_error(reply, "402", "unknown client", "connect after token expiry");
            assert_eq!(reply["advice"]["reconnect"], "handshake", "{reply}");
            break unix_secs_f64();
        }
    };
    assert!(ended >= exp as f64 - 0.05, "session ended at {ended:.3}, before exp {exp}");
    let reply = bayeux_one(&server, handshake_msg(Some(&token)));
    assert_bayeux_error(&reply, "401", "expired", "handshake again with the expired token");
}

/// A long-poll is held up to `longpoll_timeout_max_secs` (120 s): it must not
/// hand over messages published after its token expired.
#[test]
fn a_held_long_poll_delivers_nothing_published_after_its_token_expired() {
    let server = Server::start(AUTH);
    let exp = unix_secs() + 2;
    let token = sign(&json!({"channels": ["private/**"], "exp": exp}));
    let mut poll = HttpConn::new(server.public);
    poll.send(&format_request(
        "GET",
        &format!("/sub/private/x?transport=longpoll&timeout=15&token={token}"),
        &[],
        b"",
    ));
    wait_until("the token has expired", || unix_secs_f64() >= exp as f64 + 0.2);
    server.publish("private/x", "published after expiry");
    let resp = poll.response();
    assert!(
        !resp.text().contains("published after expiry"),
        "held long-poll answered {} {}",
        resp.status,
        resp.text()
    );
}

// ---------------------------------------------------------------------------
// 2. The ingest key

#[test]
fn the_ingest_key_guards_http_ingest_but_not_healthz() {
    let server = Server::start(&["--ingest-key", INGEST_KEY]);
    let mut sub = sse(server.public, "/sub/keyed", &[]);
    let resp = request(server.ingest, "POST", "/pub/keyed", &[], b"no key");
    assert_401(&resp, "ingest", "ingest without a key");
    for bad in ["Bearer wrong", "Bearer ", "Basic aW5nZXN0OmszeQ==", &format!("Bearer {INGEST_KEY}x")] {
        let resp = request(server.ingest, "POST", "/pub/keyed", &[("Authorization", bad)], b"wrong key");
        assert_401(&resp, "ingest", &format!("ingest with Authorization: {bad}"));
    }
    // The batch endpoint, channel info and /stats are guarded too.
    let resp = request(server.ingest, "POST", "/pub", &[], br#"{"channel":"keyed","data":"batch"}"#);
    assert_401(&resp, "ingest", "batch without a key");
    assert_401(&get(server.ingest, "/pub/keyed"), "ingest", "channel info without a key");
    assert_401(&get(server.ingest, "/stats"), "ingest", "stats without a key");

    let resp = get(server.ingest, "/healthz");
    assert_eq!(resp.status, 200, "/healthz needs no key: {}", resp.text());

    let bearer = format!("Bearer {INGEST_KEY}");
    let resp = request(server.ingest, "POST", "/pub/keyed", &[("Authorization", &bearer)], b"with the key");
    assert_eq!(resp.status, 200, "ingest with the key: {}", resp.text());
    assert_eq!(next_data(&mut sub, "keyed publish"), "with the key", "a refused publish was delivered");
}

#[test]
fn resp_needs_auth_before_publish() {
    let server = Server::start(&["--ingest-key", INGEST_KEY]);
    let mut sub = sse(server.public, "/sub/r", &[]);
    let mut conn = HttpConn::new(server.resp);
    let reply = conn.resp_call(&["PUBLISH", "r", "too early"]);
    assert!(reply.starts_with("-NOAUTH"), "PUBLISH before AUTH: {reply:?}");
    let reply = conn.resp_call(&["PING"]);
    assert!(reply.starts_with("-NOAUTH"), "PING before AUTH: {reply:?}");
    let reply = conn.resp_call(&["AUTH", "wrong"]);
    assert!(reply.starts_with("-WRONGPASS"), "AUTH with a wrong key: {reply:?}");
    let reply = conn.resp_call(&["PUBLISH", "r", "still too early"]);
    assert!(reply.starts_with("-NOAUTH"), "PUBLISH after a failed AUTH: {reply:?}");
    assert_eq!(conn.resp_call(&["AUTH", INGEST_KEY]), "+OK");
    assert_eq!(conn.resp_call(&["PUBLISH", "r", "authed"]), ":1");
    assert_eq!(next_data(&mut sub, "RESP publish"), "authed", "a refused publish was delivered");

    // `AUTH username password` (Redis 6 form) works too.
    let mut conn = HttpConn::new(server.resp);
    assert_eq!(conn.resp_call(&["AUTH", "default", INGEST_KEY]), "+OK");
    assert_eq!(conn.resp_call(&["PUBLISH", "r", "acl form"]), ":1");
    assert_eq!(next_data(&mut sub, "RESP publish after AUTH user key"), "acl form");
}

/// Runs `cmd` and returns (success, stdout + stderr); kills it at the deadline.
fn run(cmd: &mut Command) -> (bool, String) {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} (install Debian's redis-tools): {e}"));
    let output = wait_output(child, &what);
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn redis_cli_with_the_key_publishes_and_without_it_is_refused() {
    let server = Server::start(&["--ingest-key", INGEST_KEY]);
    let mut sub = sse(server.public, "/sub/cli", &[]);
    let port = server.resp.port().to_string();
    let (_, out) =
        run(Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &port, "PUBLISH", "cli", "nokey"]));
    assert!(out.contains("NOAUTH"), "redis-cli without -a: {out:?}");
    let (_, out) = run(Command::new("redis-cli").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-a",
        "wrong",
        "--no-auth-warning",
        "PUBLISH",
        "cli",
        "badkey",
    ]));
    assert!(out.contains("WRONGPASS") || out.contains("NOAUTH"), "redis-cli with a wrong key: {out:?}");
    let (ok, out) = run(Command::new("redis-cli").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-a",
        INGEST_KEY,
        "--no-auth-warning",
        "PUBLISH",
        "cli",
        "with key",
    ]));
    assert!(ok && out.trim() == "1", "redis-cli -a KEY PUBLISH: {out:?}");
    assert_eq!(next_data(&mut sub, "redis-cli publish"), "with key", "a refused publish was delivered");
}

// ---------------------------------------------------------------------------
// 3. Address rules

#[test]
fn a_denied_subscriber_address_gets_403_and_others_subscribe() {
    let server = Server::start(&["--ip-deny-subscribers", "127.0.0.3"]);
    let path = "/sub/ipx?transport=longpoll&timeout=0";
    let resp = HttpConn::from_src("127.0.0.3", server.public).request("GET", path, &[], b"");
    assert_json_error(&resp, 403, "127.0.0.3", "long-poll from a denied address");
    let resp = HttpConn::from_src("127.0.0.3", server.public).request(
        "GET",
        "/sub/ipx",
        &[("Accept", "text/event-stream")],
        b"",
    );
    assert_json_error(&resp, 403, "127.0.0.3", "SSE from a denied address");
    let resp = HttpConn::from_src("127.0.0.3", server.public).request(
        "POST",
        "/bayeux",
        &[],
        handshake_msg(None).to_string().as_bytes(),
    );
    assert_json_error(&resp, 403, "127.0.0.3", "Bayeux from a denied address");

    let resp = HttpConn::from_src("127.0.0.2", server.public).request("GET", path, &[], b"");
    assert_eq!(resp.status, 200, "long-poll from 127.0.0.2: {}", resp.text());
    // A stream from an allowed address receives.
    let mut conn = HttpConn::from_src("127.0.0.2", server.public);
    conn.send(&format_request("GET", "/sub/ipx", &[("Accept", "text/event-stream")], b""));
    let (status, _) = conn.head();
    assert_eq!(status, 200, "SSE from 127.0.0.2");
    server.publish("ipx", "hello");
    let mut seen = String::new();
    while !seen.contains("data: hello\n") {
        let chunk = conn.chunk().unwrap_or_else(|| panic!("stream ended; got {seen:?}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[test]
fn only_allowed_publisher_addresses_publish_over_http_resp_bayeux_and_the_demo_helper() {
    let server = Server::start(&["--ip-allow-publishers", "127.0.0.2", "--bayeux-timeout-ms", "1500"]);
    let mut sub = sse(server.public, "/sub/ipp", &[]);

    // 127.0.0.1 is not on the list.
    let resp = request(server.ingest, "POST", "/pub/ipp", &[], b"from .1");
    assert_json_error(&resp, 403, "127.0.0.1", "HTTP ingest from 127.0.0.1");
    let mut resp_conn = HttpConn::new(server.resp);
    let refused = String::from_utf8_lossy(&resp_conn.read_to_close()).into_owned();
    assert!(
        refused.starts_with("-ERR ") && refused.contains("may not publish"),
        "RESP from 127.0.0.1: {refused:?}"
    );
    let resp = request(server.public, "POST", "/demo/pub/ipp", &[], b"from .1");
    assert_json_error(&resp, 403, "127.0.0.1", "demo helper from 127.0.0.1");
    let cid = bayeux_session(&server, None);
    assert_bayeux_error(
        &bayeux_publish(&server, &cid, "/ipp", json!("x")),
        "403",
        "127.0.0.1",
        "Bayeux from .1",
    );

    // 127.0.0.2 is.
    let resp =
        HttpConn::from_src("127.0.0.2", server.ingest).request("POST", "/pub/ipp", &[], b"http from .2");
    assert_eq!(resp.status, 200, "HTTP ingest from 127.0.0.2: {}", resp.text());
    let mut conn = HttpConn::from_src("127.0.0.2", server.resp);
    assert_eq!(conn.resp_call(&["PUBLISH", "ipp", "resp from .2"]), ":1");
    let resp =
        HttpConn::from_src("127.0.0.2", server.public).request("POST", "/demo/pub/ipp", &[], b"demo from .2");
    assert_eq!(resp.status, 200, "demo helper from 127.0.0.2: {}", resp.text());

    for want in ["http from .2", "resp from .2", "demo from .2"] {
        assert_eq!(next_data(&mut sub, want), want, "a refused publish was delivered");
    }
}

// ---------------------------------------------------------------------------
// 4. Blocked words

const WORDS: &[&str] = &["--blocked-words", "darn,坏话", "--bayeux-timeout-ms", "1500"];

#[test]
fn blocked_words_are_masked_on_every_publish_path() {
    let server = Server::start(&[WORDS, &["--blocked-words-mode", "mask"]].concat());
    let mut sub = sse(server.public, "/sub/w", &[]);

    let resp = request(server.ingest, "POST", "/pub/w", &[], "oh darn it".as_bytes());
    assert_eq!(resp.status, 200, "HTTP publish: {}", resp.text());
    let batch =
        concat!(r#"{"channel":"w","data":"说坏话了"}"#, "\n", r#"{"channel":"w","data":"Darn, DARN"}"#, "\n");
    let resp = request(server.ingest, "POST", "/pub", &[], batch.as_bytes());
    assert_eq!(resp.status, 200, "batch: {}", resp.text());
    let mut resp_conn = HttpConn::new(server.resp);
    assert_eq!(resp_conn.resp_call(&["PUBLISH", "w", "resp: oh darn it"]), ":1");
    let cid = bayeux_session(&server, None);
    let reply = bayeux_publish(&server, &cid, "/w", json!("bayeux: 说坏话了"));
    assert_eq!(reply["successful"], true, "Bayeux publish: {reply}");
    let resp = request(server.public, "POST", "/demo/pub/w", &[], "demo: darn".as_bytes());
    assert_eq!(resp.status, 200, "demo helper: {}", resp.text());
    let resp = request(server.ingest, "POST", "/pub/w", &[], b"clean text");
    assert_eq!(resp.status, 200, "clean publish: {}", resp.text());

    let want = [
        "oh **** it",
        "说**了",
        "****, ****",
        "resp: oh **** it",
        "\"bayeux: 说**了\"",
        "demo: ****",
        "clean text",
    ];
    for want in want {
        assert_eq!(next_data(&mut sub, want), want);
    }
}

#[test]
fn blocked_words_in_reject_mode_refuse_every_publish_path_and_nothing_is_delivered() {
    let server = Server::start(&[WORDS, &["--blocked-words-mode", "reject"]].concat());
    let mut sub = sse(server.public, "/sub/w", &[]);

    let resp = request(server.ingest, "POST", "/pub/w", &[], "oh darn it".as_bytes());
    assert_json_error(&resp, 422, "blocked word", "HTTP publish");
    let resp = request(server.ingest, "POST", "/pub/w", &[], "说坏话了".as_bytes());
    assert_json_error(&resp, 422, "blocked word", "HTTP publish (Chinese)");
    // One bad line refuses the whole batch.
    let batch = concat!(r#"{"channel":"w","data":"fine"}"#, "\n", r#"{"channel":"w","data":"DARN"}"#, "\n");
    let resp = request(server.ingest, "POST", "/pub", &[], batch.as_bytes());
    assert_json_error(&resp, 422, "blocked word", "batch");
    let mut resp_conn = HttpConn::new(server.resp);
    let reply = resp_conn.resp_call(&["PUBLISH", "w", "resp: darn"]);
    assert!(reply.starts_with("-ERR") && reply.contains("blocked word"), "RESP: {reply:?}");
    let cid = bayeux_session(&server, None);
    let reply = bayeux_publish(&server, &cid, "/w", json!({"text": "说坏话了"}));
    assert_bayeux_error(&reply, "422", "blocked word", "Bayeux publish");
    let resp = request(server.public, "POST", "/demo/pub/w", &[], "demo: darn".as_bytes());
    assert_json_error(&resp, 422, "blocked word", "demo helper");

    // The RESP connection stays usable; a clean message goes through everywhere.
    assert_eq!(resp_conn.resp_call(&["PUBLISH", "w", "clean resp"]), ":1");
    let resp = request(server.ingest, "POST", "/pub/w", &[], b"clean http");
    assert_eq!(resp.status, 200, "clean publish: {}", resp.text());
    assert_eq!(next_data(&mut sub, "first delivery"), "clean resp", "a rejected publish was delivered");
    assert_eq!(next_data(&mut sub, "second delivery"), "clean http", "a rejected publish was delivered");
}
