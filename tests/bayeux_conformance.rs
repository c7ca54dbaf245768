//! Bayeux 1.0 on `/bayeux`, spoken as raw JSON over HTTP against the real
//! binary: every meta channel (handshake, connect, subscribe, unsubscribe,
//! disconnect), every error a client can earn (402 unknown client, 400 bad
//! channel or subscription, 403 meta subscriptions and denied publishes, 301
//! unsupported connection types, unknown meta channels), session expiry, the
//! per-session queue bound, `/service/**` staying private, and malformed
//! input (not JSON, wrong types, missing fields, too many messages, deep
//! nesting, binary garbage, bad JSONP names), after which a control client
//! must still be served. The real CometD client is exercised in
//! tests/bayeux/ (Node).
//!
//! Most tests run halley with `--bayeux-timeout-ms 1500`, so a held
//! `/meta/connect` ends on its own soon. The ones that must tell "answered
//! because something happened" from "answered because the hold timed out" use
//! 60 s, longer than any wait here ([`DEADLINE`]).

mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Held connects end after 1.5 s.
const SHORT: &[&str] = &["--bayeux-timeout-ms", "1500"];
/// Held connects outlast every wait of a test.
const LONG: &[&str] = &["--bayeux-timeout-ms", "60000"];

// ---------------------------------------------------------------------------
// Helpers

/// POSTs `body` to /bayeux on a fresh connection.
fn post_raw(addr: SocketAddr, body: &[u8]) -> Response {
    request(addr, "POST", "/bayeux", &[("Content-Type", "application/json;charset=UTF-8")], body)
}

/// POSTs Bayeux messages; asserts a 200 JSON array answer and returns it.
fn exchange(addr: SocketAddr, messages: &Value) -> Vec<Value> {
    answer_of(&post_raw(addr, messages.to_string().as_bytes()), messages)
}

/// The messages of a Bayeux answer to `sent` (asserting 200 and a JSON array).
fn answer_of(resp: &Response, sent: &Value) -> Vec<Value> {
    assert_eq!(resp.status, 200, "POST /bayeux {sent}: {} {}", resp.status, resp.text());
    let content_type = resp.header("content-type").unwrap_or("");
    assert!(content_type.starts_with("application/json"), "Content-Type {content_type:?} for {sent}");
    match resp.json() {
        Value::Array(items) => items,
        other => panic!("answer to {sent} is not a JSON array: {other}"),
    }
}

/// Sends one message; asserts exactly one reply and returns it.
fn one(server: &Server, message: Value) -> Value {
    let replies = exchange(server.public, &json!([message]));
    assert_eq!(replies.len(), 1, "one reply expected to {message}: {replies:?}");
    replies.into_iter().next().unwrap()
}

fn handshake_msg(id: &str) -> Value {
    json!({
        "channel": "/meta/handshake",
        "version": "1.0",
        "minimumVersion": "1.0",
        "supportedConnectionTypes": ["long-polling", "callback-polling"],
        "id": id,
    })
}

/// Handshakes; returns the clientId.
fn handshake(server: &Server) -> String {
    let reply = one(server, handshake_msg("hs"));
    assert_eq!(reply["successful"], true, "handshake: {reply}");
    reply["clientId"].as_str().expect("clientId").to_string()
}

fn connect_msg(cid: &str, id: &str) -> Value {
    json!({ "channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling", "id": id })
}

/// One `/meta/connect`; returns the whole answer (deliveries, then the reply).
fn connect(server: &Server, cid: &str) -> Vec<Value> {
    exchange(server.public, &json!([connect_msg(cid, "c")]))
}

/// The first connect after a handshake (answered at once); asserts success.
fn first_connect(server: &Server, cid: &str) {
    let answer = connect(server, cid);
    let reply = answer.last().expect("a reply");
    assert_eq!(reply["channel"], "/meta/connect", "{answer:?}");
    assert_eq!(reply["successful"], true, "first connect: {answer:?}");
}

fn subscribe(server: &Server, cid: &str, subscription: Value) -> Value {
    one(
        server,
        json!({ "channel": "/meta/subscribe", "clientId": cid, "subscription": subscription, "id": "sub" }),
    )
}

fn unsubscribe(server: &Server, cid: &str, subscription: Value) -> Value {
    one(
        server,
        json!({ "channel": "/meta/unsubscribe", "clientId": cid, "subscription": subscription, "id": "unsub" }),
    )
}

fn publish_as(server: &Server, cid: &str, channel: &str, data: Value) -> Value {
    one(server, json!({ "channel": channel, "clientId": cid, "data": data, "id": "pub" }))
}

/// Whether the server still knows `cid`, asked without refreshing the
/// session: a publish to a service channel (never broadcast).
fn known(server: &Server, cid: &str) -> bool {
    let reply = publish_as(server, cid, "/service/probe", json!("probe"));
    match reply["successful"].as_bool() {
        Some(true) => true,
        Some(false) => {
            assert_unknown_client(&reply, "probe of an unknown client");
            false
        }
        None => panic!("probe reply without successful: {reply}"),
    }
}

/// Asserts a failed reply whose error has the Bayeux code `code` (`"400"`).
fn assert_error(reply: &Value, code: &str, what: &str) {
    assert_eq!(reply["successful"], false, "{what}: {reply}");
    let error = reply["error"].as_str().unwrap_or_else(|| panic!("{what}: no error string in {reply}"));
    assert!(error.starts_with(&format!("{code}::")), "{what}: error {error:?}, want {code}::…");
}

fn assert_unknown_client(reply: &Value, what: &str) {
    assert_error(reply, "402", what);
    assert_eq!(reply["advice"]["reconnect"], "handshake", "{what}: advice in {reply}");
}

fn is_delivery(m: &Value) -> bool {
    let channel = m["channel"].as_str().unwrap_or("");
    !channel.starts_with("/meta/") && m.get("data").is_some() && m.get("successful").is_none()
}

/// Connects again and again, collecting deliveries, until `done` holds.
/// Every connect reply must be successful.
fn collect_until(server: &Server, cid: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    let mut got: Vec<Value> = Vec::new();
    while !done(&got) {
        assert!(before_deadline(start), "timed out collecting {what}; have {got:?}");
        for m in connect(server, cid) {
            if m["channel"] == "/meta/connect" {
                assert_eq!(m["successful"], true, "connect while collecting {what}: {m}; have {got:?}");
            } else {
                assert!(is_delivery(&m), "not a delivery in a connect answer: {m}");
                got.push(m);
            }
        }
    }
    got
}

/// `(channel, data)` of deliveries, for comparisons.
fn pairs(deliveries: &[Value]) -> Vec<(String, Value)> {
    deliveries.iter().map(|m| (m["channel"].as_str().unwrap().to_string(), m["data"].clone())).collect()
}

fn has_data(deliveries: &[Value], data: &Value) -> bool {
    deliveries.iter().any(|m| &m["data"] == data)
}

/// A control client: handshake, subscribe, a message published on the
/// ingest port arrives, disconnect. Proves the server still serves Bayeux.
fn assert_serves(server: &Server, after: &str) {
    let cid = handshake(server);
    let reply = subscribe(server, &cid, json!("/control/check"));
    assert_eq!(reply["successful"], true, "control subscribe after {after}: {reply}");
    first_connect(server, &cid);
    server.publish("control/check", r#"{"after":"control"}"#);
    let got = collect_until(server, &cid, "the control message", |d| !d.is_empty());
    assert_eq!(pairs(&got), [("/control/check".to_string(), json!({"after": "control"}))], "after {after}");
    let bye = one(server, json!({ "channel": "/meta/disconnect", "clientId": cid }));
    assert_eq!(bye["successful"], true, "control disconnect after {after}: {bye}");
    assert!(!server.log_text().contains("panicked"), "halley panicked:\n{}", server.log_text());
}

/// An answer that comes later: `(label, messages)`.
type Later = mpsc::Receiver<(&'static str, Vec<Value>)>;

/// Sends `messages` on its own thread (held connects answer later). The
/// answer comes through the returned channel, checked as by [`exchange`].
fn send_async(addr: SocketAddr, label: &'static str, messages: Value) -> Later {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let resp = post_raw(addr, messages.to_string().as_bytes());
        let _ = tx.send((label, resp, messages));
    });
    let (out, later) = mpsc::channel();
    thread::spawn(move || {
        if let Ok((label, resp, sent)) = rx.recv() {
            let _ = out.send((label, answer_of(&resp, &sent)));
        }
    });
    later
}

/// Two `/meta/connect`s of `cid` at once (ids "A" and "B"), answers merged
/// into one channel in arrival order.
fn two_connects(server: &Server, cid: &str) -> Later {
    let (tx, rx) = mpsc::channel();
    for label in ["A", "B"] {
        let later = send_async(server.public, label, json!([connect_msg(cid, label)]));
        let tx = tx.clone();
        thread::spawn(move || {
            if let Ok(x) = later.recv() {
                let _ = tx.send(x);
            }
        });
    }
    rx
}

// ---------------------------------------------------------------------------
// /meta/handshake

#[test]
fn handshake_reply_has_every_field() {
    let server = Server::start(SHORT);
    let reply = one(&server, handshake_msg("hs-1"));
    assert_eq!(reply["channel"], "/meta/handshake", "{reply}");
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["version"], "1.0", "{reply}");
    assert_eq!(reply["id"], "hs-1", "id echoed: {reply}");
    let types: Vec<&str> = reply["supportedConnectionTypes"]
        .as_array()
        .expect("types")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in ["long-polling", "callback-polling", "websocket"] {
        assert!(types.contains(&t), "{t} missing from {reply}");
    }
    let cid = reply["clientId"].as_str().expect("clientId string");
    assert!(cid.len() >= 16 && cid.bytes().all(|b| b.is_ascii_alphanumeric()), "clientId {cid:?}");
    assert_eq!(reply["advice"]["reconnect"], "retry", "{reply}");
    assert!(reply["advice"]["interval"].is_u64(), "advice.interval: {reply}");
    assert_eq!(reply["advice"]["timeout"], 1500, "advice.timeout is --bayeux-timeout-ms: {reply}");

    // A numeric id is echoed as a number; a lone message object (not in an
    // array) is answered as an array; client ids never repeat.
    let other = exchange(
        server.public,
        &json!({"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"], "id": 17}),
    );
    assert_eq!(other.len(), 1, "{other:?}");
    assert_eq!(other[0]["successful"], true, "{other:?}");
    assert_eq!(other[0]["id"], 17, "{other:?}");
    let mut ids: Vec<String> = (0..20).map(|_| handshake(&server)).collect();
    ids.push(cid.to_string());
    ids.push(other[0]["clientId"].as_str().unwrap().to_string());
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "repeated client ids");

    // One supported type among unsupported ones is enough.
    let mixed = one(
        &server,
        json!({"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["flash", "iframe", "long-polling"]}),
    );
    assert_eq!(mixed["successful"], true, "{mixed}");
}

#[test]
fn handshake_without_a_supported_connection_type_is_301() {
    let server = Server::start(SHORT);
    for types in [json!(["flash"]), json!(["flash", "iframe"]), json!("flash")] {
        let reply = one(
            &server,
            json!({"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": types, "id": "t"}),
        );
        assert_error(&reply, "301", &format!("handshake offering {types}"));
        assert_eq!(reply["channel"], "/meta/handshake", "{reply}");
        assert_eq!(reply["id"], "t", "{reply}");
        assert_eq!(reply["advice"]["reconnect"], "none", "{reply}");
        let offered = reply["supportedConnectionTypes"].as_array().expect("the server's types");
        assert!(offered.contains(&json!("long-polling")), "{reply}");
        assert!(reply.get("clientId").is_none(), "no session for a refused handshake: {reply}");
    }
    assert_serves(&server, "301 handshakes");
}

// ---------------------------------------------------------------------------
// /meta/connect

#[test]
fn connect_first_answered_at_once_later_held_until_advice_timeout() {
    let server = Server::start(SHORT);
    let cid = handshake(&server);
    let answer = connect(&server, &cid);
    assert_eq!(answer.len(), 1, "{answer:?}");
    let reply = &answer[0];
    assert_eq!(reply["channel"], "/meta/connect", "{reply}");
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["clientId"], cid.as_str(), "{reply}");
    assert_eq!(reply["id"], "c", "{reply}");
    assert_eq!(reply["advice"]["reconnect"], "retry", "{reply}");
    assert_eq!(reply["advice"]["timeout"], 1500, "{reply}");

    // Nothing to deliver: held for advice.timeout, then a successful reply.
    for round in 0..2 {
        let start = Instant::now();
        let answer = connect(&server, &cid);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1500),
            "round {round}: connect answered after {took:?}, before advice.timeout: {answer:?}"
        );
        assert_eq!(answer.len(), 1, "round {round}: {answer:?}");
        assert_eq!(answer[0]["successful"], true, "round {round}: {answer:?}");
        assert_eq!(answer[0]["advice"]["reconnect"], "retry", "round {round}: {answer:?}");
    }
}

#[test]
fn connect_held_until_a_message_and_a_newer_connect_releases_the_older() {
    // Held connects last 60 s here, longer than DEADLINE: anything answered
    // within a wait was answered because of what the test did.
    let server = Server::start(LONG);
    let cid = handshake(&server);
    assert_eq!(subscribe(&server, &cid, json!("/h/x"))["successful"], true);
    first_connect(&server, &cid); // within DEADLINE, so not held

    // Two connects at once: whichever the server saw second releases the
    // other, so exactly one is answered now, with nothing but its reply.
    let rx = two_connects(&server, &cid);
    let (first, answer) = rx.recv_timeout(DEADLINE).expect("one of two outstanding connects released");
    assert_eq!(answer.len(), 1, "released connect {first}: {answer:?}");
    assert_eq!(answer[0]["channel"], "/meta/connect", "{answer:?}");
    assert_eq!(answer[0]["id"], first, "{answer:?}");
    assert_eq!(answer[0]["successful"], true, "released connect {first}: {answer:?}");
    // Both reached the server (one released the other), so the other is held
    // now: a message ends it, and comes before its reply.
    let id = server.publish_id("h/x", r#"{"k":1}"#);
    let (second, answer) = rx.recv_timeout(DEADLINE).expect("the held connect answered with the message");
    assert_ne!(first, second);
    assert_eq!(answer.len(), 2, "held connect {second}: {answer:?}");
    assert_eq!(answer[0], json!({"channel": "/h/x", "data": {"k": 1}, "id": id}), "delivery: {answer:?}");
    assert_eq!(answer[1]["channel"], "/meta/connect", "{answer:?}");
    assert_eq!(answer[1]["id"], second, "{answer:?}");
    assert_eq!(answer[1]["successful"], true, "{answer:?}");

    // Messages queued while no connect is out come with the next one.
    let ids: Vec<String> = (0..3).map(|i| server.publish_id("h/x", &i.to_string())).collect();
    let got = collect_until(&server, &cid, "three queued messages", |d| d.len() >= 3);
    assert_eq!(got.iter().map(|m| m["id"].as_str().unwrap().to_string()).collect::<Vec<_>>(), ids);
    assert_eq!(got.iter().map(|m| m["data"].clone()).collect::<Vec<_>>(), [json!(0), json!(1), json!(2)]);
}

// ---------------------------------------------------------------------------
// /meta/subscribe, /meta/unsubscribe

#[test]
fn subscribe_exact_and_wildcards_then_unsubscribe() {
    let server = Server::start(SHORT);
    let cid = handshake(&server);
    let list = json!(["/w/exact", "/w/one/*", "/w/deep/**"]);
    let reply = subscribe(&server, &cid, list.clone());
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["channel"], "/meta/subscribe", "{reply}");
    assert_eq!(reply["clientId"], cid.as_str(), "{reply}");
    assert_eq!(reply["subscription"], list, "subscription echoed: {reply}");
    assert_eq!(reply["id"], "sub", "{reply}");
    let solo = subscribe(&server, &cid, json!("/w/solo"));
    assert_eq!(solo["successful"], true, "{solo}");
    assert_eq!(solo["subscription"], "/w/solo", "{solo}");
    first_connect(&server, &cid);

    let plan: &[(&str, bool)] = &[
        ("w/exact", true),
        ("w/exact/sub", false),
        ("w/one/a", true),
        ("w/one/a/b", false),
        ("w/one", false),
        ("w/deep/a", true),
        ("w/deep/a/b/c", true),
        ("w/deep", false),
        ("w/deeper/a", false),
        ("w/other", false),
        ("w/solo", true),
        ("w/one/b", true),
        ("w/exact", true), // the last one, so all the rest came before it
    ];
    let mut want = Vec::new();
    for (i, (channel, matches)) in plan.iter().enumerate() {
        let id = server.publish_id(channel, &json!({ "i": i }).to_string());
        if *matches {
            want.push(json!({ "channel": format!("/{channel}"), "data": { "i": i }, "id": id }));
        }
    }
    let last = want.last().unwrap()["data"].clone();
    let got = collect_until(&server, &cid, "the wildcard deliveries", |d| has_data(d, &last));
    assert_eq!(got, want, "exactly the matching messages, in order, once each");

    let off = json!(["/w/one/*", "/w/solo"]);
    let reply = unsubscribe(&server, &cid, off.clone());
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["channel"], "/meta/unsubscribe", "{reply}");
    assert_eq!(reply["subscription"], off, "{reply}");
    assert_eq!(reply["id"], "unsub", "{reply}");
    server.publish("w/one/a", r#""after unsubscribe""#);
    server.publish("w/solo", r#""after unsubscribe""#);
    server.publish("w/deep/x", r#""still subscribed""#);
    server.publish("w/exact", r#""marker""#);
    let got = collect_until(&server, &cid, "the marker", |d| has_data(d, &json!("marker")));
    assert_eq!(
        pairs(&got),
        [("/w/deep/x".to_string(), json!("still subscribed")), ("/w/exact".to_string(), json!("marker"))],
        "nothing of the unsubscribed channels"
    );
}

#[test]
fn subscription_errors() {
    let server = Server::start(SHORT);
    let cid = handshake(&server);
    for bad in ["a/b", "/a//b", "/", "/a/", "/a/**/c", "/*/b", ""] {
        let reply = subscribe(&server, &cid, json!(bad));
        assert_error(&reply, "400", &format!("subscribe {bad:?}"));
        assert_eq!(reply["channel"], "/meta/subscribe", "{reply}");
        assert_eq!(reply["id"], "sub", "{reply}");
        assert_error(&unsubscribe(&server, &cid, json!(bad)), "400", &format!("unsubscribe {bad:?}"));
    }
    for meta in ["/meta/connect", "/meta/*", "/meta/**", "/meta/subscribe"] {
        assert_error(&subscribe(&server, &cid, json!(meta)), "403", &format!("subscribe {meta}"));
    }
    // Missing, empty and mistyped subscriptions.
    let missing = one(&server, json!({"channel": "/meta/subscribe", "clientId": cid, "id": "m"}));
    assert_error(&missing, "400", "subscribe without subscription");
    assert_eq!(missing["id"], "m", "{missing}");
    assert_error(&subscribe(&server, &cid, json!([])), "400", "subscribe to []");
    assert_error(&subscribe(&server, &cid, json!(42)), "400", "subscribe to 42");
    assert_error(&subscribe(&server, &cid, json!([1, 2])), "400", "subscribe to [1,2]");
    assert_error(&subscribe(&server, &cid, json!({"c": "/x"})), "400", "subscribe to an object");
    let missing = one(&server, json!({"channel": "/meta/unsubscribe", "clientId": cid}));
    assert_error(&missing, "400", "unsubscribe without subscription");
    // One bad name refuses the whole list: the good one is not subscribed.
    assert_error(&subscribe(&server, &cid, json!(["/e/good", "bad"])), "400", "a list with one bad name");
    assert_eq!(subscribe(&server, &cid, json!("/e/marker"))["successful"], true);
    first_connect(&server, &cid);
    server.publish("e/good", r#""not subscribed""#);
    server.publish("e/marker", r#""marker""#);
    let got = collect_until(&server, &cid, "the marker", |d| has_data(d, &json!("marker")));
    assert_eq!(pairs(&got), [("/e/marker".to_string(), json!("marker"))]);
    assert_serves(&server, "subscription errors");
}

// ---------------------------------------------------------------------------
// /meta/disconnect

#[test]
fn disconnect_ends_the_session() {
    let server = Server::start(SHORT);
    let cid = handshake(&server);
    assert_eq!(subscribe(&server, &cid, json!("/d/x"))["successful"], true);
    first_connect(&server, &cid);
    let reply = one(&server, json!({"channel": "/meta/disconnect", "clientId": cid, "id": "bye"}));
    assert_eq!(reply["channel"], "/meta/disconnect", "{reply}");
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["clientId"], cid.as_str(), "{reply}");
    assert_eq!(reply["id"], "bye", "{reply}");
    assert_unknown_client(&connect(&server, &cid)[0], "connect after disconnect");
    assert_unknown_client(&subscribe(&server, &cid, json!("/d/y")), "subscribe after disconnect");
    assert_unknown_client(&publish_as(&server, &cid, "/d/x", json!(1)), "publish after disconnect");
    let again = one(&server, json!({"channel": "/meta/disconnect", "clientId": cid}));
    assert_unknown_client(&again, "a second disconnect");
}

#[test]
fn disconnect_answers_a_held_connect_without_asking_for_a_handshake() {
    let server = Server::start(LONG);
    let cid = handshake(&server);
    first_connect(&server, &cid);
    // Two connects: one releases the other, so one is surely held (see
    // connect_held_until_a_message_and_a_newer_connect_releases_the_older).
    let rx = two_connects(&server, &cid);
    let (first, _) = rx.recv_timeout(DEADLINE).expect("one of two outstanding connects released");
    let bye = one(&server, json!({"channel": "/meta/disconnect", "clientId": cid, "id": "bye"}));
    assert_eq!(bye["successful"], true, "{bye}");
    let (held, answer) = rx.recv_timeout(DEADLINE).expect("the held connect answered on disconnect");
    assert_ne!(first, held);
    let reply = answer.last().expect("a reply");
    assert_eq!(reply["channel"], "/meta/connect", "{answer:?}");
    assert_eq!(reply["id"], held, "{answer:?}");
    // The client asked to leave: telling it to handshake again (402 with
    // advice reconnect=handshake) makes the CometD client abort its own
    // in-flight /meta/disconnect (see tests/bayeux/). CometD's server answers
    // successful with advice reconnect=none.
    assert_eq!(reply["advice"]["reconnect"], "none", "held connect answered on disconnect: {reply}");
    assert_eq!(reply["successful"], true, "held connect answered on disconnect: {reply}");
}

#[test]
fn a_batch_with_a_held_connect_and_a_disconnect_is_answered() {
    let server = Server::start(LONG);
    let cid = handshake(&server);
    first_connect(&server, &cid);
    let rx = send_async(
        server.public,
        "batch",
        json!([connect_msg(&cid, "c2"), {"channel": "/meta/disconnect", "clientId": cid, "id": "bye"}]),
    );
    // Answered at once by a correct server; half the deadline keeps this
    // file short when it is not.
    let wait = DEADLINE / 2;
    let (_, answer) = rx.recv_timeout(wait).unwrap_or_else(|_| {
        panic!("POST /bayeux [connect, disconnect] of a connected client got no answer within {wait:?}")
    });
    let bye =
        answer.iter().find(|m| m["channel"] == "/meta/disconnect").unwrap_or_else(|| panic!("{answer:?}"));
    assert_eq!(bye["successful"], true, "{answer:?}");
    assert!(answer.iter().any(|m| m["channel"] == "/meta/connect" && m["id"] == "c2"), "{answer:?}");
    assert!(!known(&server, &cid));
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn unknown_clients_get_402_with_advice_to_handshake() {
    let server = Server::start(SHORT);
    let messages = |cid: Option<&str>| {
        let mut list = vec![
            json!({"channel": "/meta/connect", "connectionType": "long-polling", "id": "1"}),
            json!({"channel": "/meta/subscribe", "subscription": "/a", "id": "2"}),
            json!({"channel": "/meta/unsubscribe", "subscription": "/a", "id": "3"}),
            json!({"channel": "/a/b", "data": {"x": 1}, "id": "4"}),
            json!({"channel": "/service/x", "data": {}, "id": "5"}),
            json!({"channel": "/meta/disconnect", "id": "6"}),
        ];
        if let Some(cid) = cid {
            for m in &mut list {
                m["clientId"] = json!(cid);
            }
        }
        list
    };
    for cid in [Some("no-such-client"), Some(""), None] {
        let sent = messages(cid);
        let replies = exchange(server.public, &json!(sent));
        assert_eq!(replies.len(), sent.len(), "{replies:?}");
        for (m, reply) in sent.iter().zip(&replies) {
            let what = format!("{} with clientId {cid:?}", m["channel"]);
            assert_unknown_client(reply, &what);
            assert_eq!(reply["channel"], m["channel"], "{what}: {reply}");
            assert_eq!(reply["id"], m["id"], "{what}: {reply}");
        }
    }
    // None of that disturbed the server.
    assert_serves(&server, "402s");
}

#[test]
fn publish_errors_and_unknown_meta_channels() {
    let server = Server::start(SHORT);
    let cid = handshake(&server);
    for bad in ["/a/*", "/a/**", "/*", "/a//b", "/a/", "no-slash", "/chat room", "/a/\u{e9}"] {
        let reply = publish_as(&server, &cid, bad, json!("x"));
        assert_error(&reply, "400", &format!("publish to {bad:?}"));
        assert_eq!(reply["id"], "pub", "{reply}");
    }
    for meta in ["/meta/foo", "/meta/connect/x", "/meta/handshakes"] {
        let reply = one(&server, json!({"channel": meta, "clientId": cid, "id": "m"}));
        assert_error(&reply, "400", &format!("message on {meta}"));
        assert_eq!(reply["channel"], meta, "{reply}");
        assert_eq!(reply["id"], "m", "{reply}");
    }
    // A publish without data is fine (data null).
    assert_eq!(subscribe(&server, &cid, json!("/p/x"))["successful"], true);
    first_connect(&server, &cid);
    let reply = one(&server, json!({"channel": "/p/x", "clientId": cid, "id": "nodata"}));
    assert_eq!(reply["successful"], true, "{reply}");
    let got = collect_until(&server, &cid, "the null message", |d| !d.is_empty());
    assert_eq!(pairs(&got), [("/p/x".to_string(), Value::Null)]);
    assert_serves(&server, "publish errors");
}

#[test]
fn publish_allow_limits_client_publishes() {
    let server = Server::start(&["--bayeux-timeout-ms", "1500", "--bayeux-publish-allow", "/allowed/**"]);
    let publisher = handshake(&server);
    let subscriber = handshake(&server);
    let reply = subscribe(&server, &subscriber, json!(["/other/x", "/allowed/x", "/allowed"]));
    assert_eq!(reply["successful"], true, "{reply}");
    first_connect(&server, &subscriber);
    for denied in ["/other/x", "/allowed", "/allowedx/y", "/x/allowed/y"] {
        let reply = publish_as(&server, &publisher, denied, json!({"denied": denied}));
        assert_error(&reply, "403", &format!("publish to {denied}"));
        assert_eq!(reply["channel"], denied, "{reply}");
        assert_eq!(reply["id"], "pub", "{reply}");
    }
    for allowed in ["/allowed/deep/er", "/allowed/x"] {
        let reply = publish_as(&server, &publisher, allowed, json!({"allowed": allowed}));
        assert_eq!(reply["successful"], true, "publish to {allowed}: {reply}");
        assert_eq!(reply["channel"], allowed, "{reply}");
        assert_eq!(reply["id"], "pub", "{reply}");
    }
    let got = collect_until(&server, &subscriber, "the allowed publish", |d| !d.is_empty());
    assert_eq!(pairs(&got), [("/allowed/x".to_string(), json!({"allowed": "/allowed/x"}))]);
    // The ingest port is not limited by it.
    server.publish("other/x", r#""from ingest""#);
    let got = collect_until(&server, &subscriber, "the ingest publish", |d| !d.is_empty());
    assert_eq!(pairs(&got), [("/other/x".to_string(), json!("from ingest"))]);
}

#[test]
fn service_channels_are_not_broadcast() {
    let server = Server::start(SHORT);
    let listener = handshake(&server);
    assert_eq!(subscribe(&server, &listener, json!("/**"))["successful"], true);
    // Whether a subscription to a service channel is accepted is up to the
    // server; either way nothing published there may come back.
    let _ = subscribe(&server, &listener, json!(["/service/echo", "/service/**"]));
    first_connect(&server, &listener);
    let mut sse =
        StreamClient::open(server.public, "/sub/service/echo,marker/x", &[("Accept", "text/event-stream")]);
    assert_eq!(sse.status, 200);
    let sender = handshake(&server);
    for channel in ["/service/echo", "/service/a/b", "/service"] {
        let reply = publish_as(&server, &sender, channel, json!({"private": channel}));
        assert_eq!(reply["successful"], true, "publish to {channel}: {reply}");
        assert!(reply.get("data").is_none(), "{reply}");
    }
    assert_eq!(publish_as(&server, &sender, "/marker/x", json!("marker"))["successful"], true);
    let got = collect_until(&server, &listener, "the marker", |d| has_data(d, &json!("marker")));
    assert_eq!(pairs(&got), [("/marker/x".to_string(), json!("marker"))], "no /service message delivered");
    let ev = sse.next_event().expect("an SSE event");
    assert_eq!(ev.data, r#""marker""#, "the SSE subscriber of service/echo got {ev:?}");
}

// ---------------------------------------------------------------------------
// Sessions: expiry and the queue bound

#[test]
fn sessions_expire_without_connects() {
    let server = Server::start(&["--bayeux-timeout-ms", "1500", "--bayeux-max-interval-ms", "1000"]);
    // A client that keeps connecting stays, across more than
    // timeout + max-interval (2.5 s).
    let keeper = handshake(&server);
    first_connect(&server, &keeper);
    let addr = server.public;
    let keeper_id = keeper.clone();
    let kept = thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(3200) {
            let answer = exchange(addr, &json!([connect_msg(&keeper_id, "k")]));
            assert_eq!(answer.last().unwrap()["successful"], true, "keeper connect: {answer:?}");
        }
    });

    // Connected once, then silent: unknown within the deadline, and not
    // before max-interval passed.
    let quiet = handshake(&server);
    let since = Instant::now();
    first_connect(&server, &quiet);
    // Handshaken, never connected: unknown within the deadline as well.
    let never = handshake(&server);
    wait_until("the silent sessions to expire", || {
        let quiet_known = known(&server, &quiet);
        if !quiet_known {
            assert!(since.elapsed() >= Duration::from_millis(1000), "expired after {:?}", since.elapsed());
        }
        !quiet_known && !known(&server, &never)
    });
    assert_unknown_client(&connect(&server, &quiet)[0], "connect of an expired session");
    // Its connects kept succeeding (an expired session's would be 402s).
    kept.join().expect("keeper thread");
}

#[test]
fn a_session_over_its_queue_bound_is_dropped() {
    let server = Server::start(&["--bayeux-timeout-ms", "1500", "--bayeux-max-queue", "5"]);
    let within = handshake(&server);
    let over = handshake(&server);
    assert_eq!(subscribe(&server, &within, json!("/q/within"))["successful"], true);
    assert_eq!(subscribe(&server, &over, json!("/q/over"))["successful"], true);
    first_connect(&server, &within);
    first_connect(&server, &over);
    // No connect is out for either: their messages queue.
    for i in 0..5 {
        server.publish("q/within", &i.to_string());
    }
    for i in 0..6 {
        server.publish("q/over", &i.to_string());
    }
    wait_until("the session with 6 queued messages to be dropped", || !known(&server, &over));
    let answer = connect(&server, &over);
    assert_eq!(answer.len(), 1, "a dropped session gets no messages: {answer:?}");
    assert_unknown_client(&answer[0], "connect of a dropped session");
    let got = collect_until(&server, &within, "5 queued messages", |d| d.len() >= 5);
    assert_eq!(
        got.iter().map(|m| m["data"].clone()).collect::<Vec<_>>(),
        (0..5).map(|i| json!(i)).collect::<Vec<_>>()
    );
    assert!(known(&server, &within), "5 queued messages (the bound) dropped the session");
}

// ---------------------------------------------------------------------------
// Malformed Bayeux

#[test]
fn malformed_bodies_get_http_400_with_a_json_error() {
    let server = Server::start(SHORT);
    let many = |n: usize| json!(vec![json!({"channel": "/meta/connect", "clientId": "x"}); n]).to_string();
    let nested = format!("{}{}", "[".repeat(32 * 1024), "]".repeat(32 * 1024));
    assert_eq!(nested.len(), 64 * 1024);
    let mut garbage = Vec::with_capacity(4096);
    let mut x: u32 = 0x2545_f491;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push((x >> 24) as u8);
    }
    garbage[0] = 0xff;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"hello, bayeux".to_vec(), "not JSON"),
        ("an empty body", Vec::new(), "not JSON"),
        ("truncated JSON", br#"[{"channel":"/meta/handshake""#.to_vec(), "not JSON"),
        ("a number", b"42".to_vec(), "array"),
        ("a string", br#""/meta/handshake""#.to_vec(), "array"),
        ("null", b"null".to_vec(), "array"),
        ("an empty array", b"[]".to_vec(), "empty"),
        ("101 messages", many(101).into_bytes(), "100"),
        ("64 KiB of nested arrays", nested.into_bytes(), "not JSON"),
        ("binary garbage", garbage, "not JSON"),
        (
            "UTF-16",
            "[{\"channel\":\"/meta/handshake\"}]".encode_utf16().flat_map(u16::to_le_bytes).collect(),
            "not JSON",
        ),
    ];
    for (what, body, needle) in &cases {
        let resp = post_raw(server.public, body);
        assert_json_error(&resp, 400, needle, what);
    }
    // The limit itself is fine: 100 messages, 100 replies.
    let replies = exchange(server.public, &serde_json::from_str(&many(100)).unwrap());
    assert_eq!(replies.len(), 100);
    assert!(
        replies.iter().all(|r| r["error"].as_str().is_some_and(|e| e.starts_with("402::"))),
        "{replies:?}"
    );
    assert_serves(&server, "malformed bodies");
}

#[test]
fn malformed_messages_get_bayeux_errors_in_place() {
    let server = Server::start(SHORT);
    let cid = handshake(&server);
    let sent = json!([
        1,
        "text",
        null,
        [],
        {"id": "no-channel"},
        {"channel": 42, "id": "channel-number"},
        {"channel": null, "id": "channel-null"},
        {"channel": "/meta/connect", "clientId": 5, "id": "cid-number"},
        {"channel": "/meta/connect", "clientId": cid, "connectionType": ["long-polling"], "id": "type-list"},
        {"channel": "/meta/subscribe", "clientId": cid, "subscription": [1], "id": "sub-number"},
        {"channel": "/meta/handshake", "supportedConnectionTypes": 5, "id": "types-number"},
        {"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling"], "version": 1, "id": "version-number"},
        {"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling", 7], "id": "types-mixed"},
        {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"], "id": "good"},
    ]);
    let replies = exchange(server.public, &sent);
    let sent = sent.as_array().unwrap();
    assert_eq!(replies.len(), sent.len(), "one reply per message, in order: {replies:?}");
    let (bad, good) = replies.split_at(sent.len() - 1);
    for (m, reply) in sent.iter().zip(bad) {
        assert_error(reply, "400", &format!("message {m}"));
        if let Some(id) = m.get("id") {
            assert_eq!(&reply["id"], id, "id echoed for {m}: {reply}");
        }
        assert!(reply["channel"].is_string(), "reply channel for {m}: {reply}");
    }
    assert_eq!(good[0]["successful"], true, "the good handshake after the bad ones: {:?}", good[0]);
    assert_eq!(good[0]["id"], "good");
    assert!(known(&server, &cid), "the session survived the bad messages");
    assert_serves(&server, "malformed messages");
}

#[test]
fn callback_polling_answers_jsonp_and_refuses_bad_callbacks() {
    let server = Server::start(SHORT);
    let message = |m: &Value| -> String {
        let text = m.to_string();
        let mut out = String::new();
        for b in text.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    let hs = message(&json!([handshake_msg("j")]));

    // The default callback, and a named one.
    for (query, callback) in
        [(format!("message={hs}"), "jsonpcallback"), (format!("message={hs}&jsonp=my_Cb$1"), "my_Cb$1")]
    {
        let resp = get(server.public, &format!("/bayeux?{query}"));
        assert_eq!(resp.status, 200, "{query}: {}", resp.text());
        let content_type = resp.header("content-type").unwrap_or("");
        assert!(content_type.starts_with("text/javascript"), "Content-Type {content_type:?}");
        let text = resp.text();
        let inner = text
            .strip_prefix(&format!("{callback}("))
            .and_then(|t| t.trim_end().strip_suffix(");"))
            .unwrap_or_else(|| panic!("not a call of {callback}: {text}"));
        let replies: Value = serde_json::from_str(inner).unwrap_or_else(|e| panic!("{e}: {inner}"));
        assert_eq!(replies[0]["successful"], true, "{replies}");
        assert_eq!(replies[0]["id"], "j", "{replies}");
    }

    let long = "a".repeat(65);
    let refusals: Vec<(String, &str)> = vec![
        (format!("message={hs}&jsonp=alert(1)"), "JavaScript identifier"),
        (format!("message={hs}&jsonp=a-b"), "JavaScript identifier"),
        (format!("message={hs}&jsonp=1abc"), "JavaScript identifier"),
        (format!("message={hs}&jsonp=a%3Bb"), "JavaScript identifier"),
        (format!("message={hs}&jsonp=%3C%2Fscript%3E"), "JavaScript identifier"),
        (format!("message={hs}&jsonp={long}"), "JavaScript identifier"),
        (format!("message={hs}&jsonp="), "JavaScript identifier"),
        ("jsonp=cb".to_string(), "message"),
        ("message=not%20json&jsonp=cb".to_string(), "not JSON"),
        ("message=%5B%5D&jsonp=cb".to_string(), "empty"),
        ("message=%FF%FE&jsonp=cb".to_string(), ""),
    ];
    for (query, needle) in &refusals {
        let resp = get(server.public, &format!("/bayeux?{query}"));
        assert_json_error(&resp, 400, needle, &format!("GET /bayeux?{query}"));
    }
    assert_serves(&server, "bad JSONP requests");
}

// ---------------------------------------------------------------------------
// Sessions as subscribers of the hub

#[test]
fn sessions_are_counted_like_every_subscriber_and_survive_a_delete() {
    let server = Server::start(SHORT);
    let exact = handshake(&server);
    assert_eq!(subscribe(&server, &exact, json!("/room/a"))["successful"], true);
    first_connect(&server, &exact);
    let wild = handshake(&server);
    assert_eq!(subscribe(&server, &wild, json!("/room/*"))["successful"], true);
    first_connect(&server, &wild);
    // The subscribe answers came after the hub was asked: a publish now
    // counts both, over HTTP and RESP alike.
    let answer = server.publish("room/a", "\"one\"");
    assert_eq!(answer["subscribers"], 2, "exact and wildcard sessions: {answer}");
    let mut resp = HttpConn::new(server.resp);
    assert_eq!(resp.resp_call(&["PUBLISH", "room/a", "\"two\""]), ":2");
    assert_eq!(channel_info(&server, "room/a")["subscribers"], 2);
    assert_eq!(metric_sample(&server, "halley_subscribers{transport=\"bayeux\"}"), 2.0);
    for cid in [&exact, &wild] {
        let got = collect_until(&server, cid, "both messages", |d| d.len() >= 2);
        assert_eq!(
            pairs(&got),
            [("/room/a".to_string(), json!("one")), ("/room/a".to_string(), json!("two"))]
        );
    }
    // A channel no session asked for counts nobody.
    assert_eq!(server.publish("hall", "\"x\"")["subscribers"], 0);
    // DELETE counts them; the sessions stay subscribed (as a stream's
    // client would after reconnecting), and the next message reaches both.
    let deleted = request(server.ingest, "DELETE", "/pub/room/a", &[], b"");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["subscribers"], 2, "{}", deleted.text());
    assert_eq!(server.publish("room/a", "\"three\"")["subscribers"], 2);
    for cid in [&exact, &wild] {
        let got = collect_until(&server, cid, "the message after the delete", |d| !d.is_empty());
        assert_eq!(pairs(&got), [("/room/a".to_string(), json!("three"))]);
    }
    assert_eq!(unsubscribe(&server, &exact, json!("/room/a"))["successful"], true);
    assert_eq!(server.publish("room/a", "\"four\"")["subscribers"], 1, "only the wildcard is left");
    let bye = one(&server, json!({ "channel": "/meta/disconnect", "clientId": wild }));
    assert_eq!(bye["successful"], true);
    assert_eq!(server.publish("room/a", "\"five\"")["subscribers"], 0);
    assert_eq!(metric_sample(&server, "halley_subscribers{transport=\"bayeux\"}"), 0.0);
}

#[test]
fn history_on_subscribe_comes_once_and_not_after_an_unsubscribe() {
    let server = Server::start(&["--bayeux-timeout-ms", "1500", "--bayeux-history-on-subscribe", "3"]);
    for n in 0..3 {
        server.publish("h", &n.to_string());
    }
    let sub = |cid: &str| json!({ "channel": "/meta/subscribe", "clientId": cid, "subscription": "/h" });
    let unsub = |cid: &str| json!({ "channel": "/meta/unsubscribe", "clientId": cid, "subscription": "/h" });
    // Subscribed, unsubscribed and subscribed again in one request: the
    // history once.
    let again = handshake(&server);
    first_connect(&server, &again);
    let replies = exchange(server.public, &json!([sub(&again), unsub(&again), sub(&again)]));
    assert!(replies.iter().all(|r| r["successful"] == true), "{replies:?}");
    let got = collect_until(&server, &again, "the history", |d| d.len() >= 3);
    assert_eq!(got.iter().map(|m| m["data"].clone()).collect::<Vec<_>>(), [json!(0), json!(1), json!(2)]);
    // Subscribed and unsubscribed at once: no history afterwards. A live
    // message to a channel it does subscribe proves the connect was served.
    let gone = handshake(&server);
    first_connect(&server, &gone);
    let replies = exchange(server.public, &json!([sub(&gone), unsub(&gone)]));
    assert!(replies.iter().all(|r| r["successful"] == true), "{replies:?}");
    assert_eq!(subscribe(&server, &gone, json!("/marker"))["successful"], true);
    server.publish("marker", "\"m\"");
    let got = collect_until(&server, &gone, "the marker", |d| has_data(d, &json!("m")));
    assert_eq!(pairs(&got), [("/marker".to_string(), json!("m"))], "no history of /h after the unsubscribe");
    // The first session gets a live message once, after its history.
    server.publish("h", "3");
    let got = collect_until(&server, &again, "the live message", |d| !d.is_empty());
    assert_eq!(pairs(&got), [("/h".to_string(), json!(3))]);
}

#[test]
fn a_publish_over_max_message_bytes_is_refused_like_on_every_path() {
    // Over HTTP the request body limit (max_message_bytes on the public port)
    // refuses it first; a WebSocket frame may be larger, so the publish
    // screen refuses it: 413 in Bayeux's own error.
    let server = Server::start(&["--bayeux-timeout-ms", "1500", "--max-message-bytes", "1000"]);
    let cid = handshake(&server);
    let mut ws = Ws::open(server.public, "/bayeux");
    let publish =
        |data: &str| json!([{ "channel": "/big", "clientId": cid, "data": data, "id": "pub" }]).to_string();
    ws.send_text(&publish(&"x".repeat(2000)));
    let reply = ws.next_json("the answer to a 2,000-byte publish");
    assert_error(&reply[0], "413", "a 2,000-byte publish with a 1,000-byte limit");
    let error = reply[0]["error"].as_str().unwrap();
    assert!(error.contains("message over 1000 bytes"), "{reply}");
    ws.send_text(&publish("small"));
    let reply = ws.next_json("the answer to a small publish");
    assert_eq!(reply[0]["successful"], true, "{reply}");
    assert_serves(&server, "an oversize publish");
}
