//! The Redis backplane (issue 13): several halley processes started with
//! `--redis redis://127.0.0.1:PORT` on one real `redis-server` share one set
//! of channels. Each test starts its own redis-server (tests/common/
//! redis_server.rs: a free port, its own directory, stopped by pid) and two
//! or three halley nodes, and stops them all when it ends.
//!
//! What is checked, test by test:
//! - the helper itself: redis-server starts, answers PING through the
//!   `redis` crate, and with AOF keeps its data over a stop and restart;
//! - delivery across nodes on SSE, NDJSON stream, WebSocket and long-poll,
//!   publishing by HTTP, NDJSON batch and RESP through every node in turn:
//!   every subscriber gets every message once, in publish order, under the
//!   same Redis stream id, which is the id the publish answered;
//! - resume on another node (by `last_id`, by `Last-Event-ID`, on a node
//!   started after the messages were published), `backlog=N` there, and a
//!   multi-channel resume with one `last_id`;
//! - history surviving a restart of every node;
//! - Redis stopped mid-stream and restarted with AOF: publishes answer 503
//!   with a JSON error and `Retry-After` within a few seconds, `/healthz`
//!   says degraded, `/stats` and `/metrics` show the backplane down; after
//!   the restart publishes work again without restarting halley, and the
//!   SSE subscribers that stayed connected get every acknowledged message
//!   once and in order, including what went through the other node while
//!   their own node was still reconnecting;
//! - a node started while Redis is down: degraded, refuses publishes, and
//!   works (its subscribers included) once Redis is up;
//! - Redis SIGKILLed and restarted (AOF, fsync always): nothing
//!   acknowledged is lost, ids go on increasing;
//! - one node cut off from Redis (through a TCP proxy the test cuts) while
//!   another keeps publishing: the cut-off node refuses publishes (503) and
//!   says degraded, the other does not; once it is back, its subscriber,
//!   connected all along, gets what the other node published meanwhile,
//!   also when its listener is back 2 s before its command connection;
//! - concurrent publishers on three nodes (HTTP, pipelined RESP, NDJSON
//!   batches): one order, the same on every node;
//! - history trimmed by `--history-size`: the retained tail and the gap
//!   signal, on other nodes too;
//! - Pushlet publishes and poll-mode listeners across nodes;
//! - a node SIGKILLed under an SSE and a WebSocket client: both resume on
//!   the other node and lose nothing acknowledged meanwhile;
//! - `DELETE /pub/{ch}` on one node ends the channel's streams on every node
//!   and a later resume reports a gap;
//! - `cluster_subscribers` in `GET /pub/{ch}` sums the nodes' subscribers;
//! - Bayeux sessions on different nodes (raw JSON) share channels with each
//!   other and with plain subscribers;
//! - a WebSocket `{"subscribe":…}` ack covers publishes on other nodes.
//!
//! Subscribers are opened with `last_id=` of a message published before
//! them wherever the test is not about fresh subscriptions: a node may
//! subscribe to Redis a moment after it answered its client, and a resume
//! point makes "everything after it" well defined.

mod common;
use common::cluster::*;
use common::*;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a publish may take to be refused while Redis is down ("within a
/// few seconds", with room for a loaded 2-core machine).
const REFUSAL_WITHIN: Duration = Duration::from_secs(10);

fn path_with(channel: &str, query: &str) -> String {
    format!("/sub/{channel}?{query}")
}

/// Reads `n` envelopes from an NDJSON stream.
fn stream_take(sub: &mut StreamClient, n: usize, what: &str) -> Vec<Msg> {
    let start = Instant::now();
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        assert!(before_deadline(start), "{what}: only {} of {n}: {got:?}", got.len());
        match sub.next_json() {
            Some(v) => got.push(Msg::from_envelope(&v, what)),
            None => panic!("{what}: stream ended after {} of {n}: {got:?}", got.len()),
        }
    }
    got
}

/// Reads `n` envelopes from a WebSocket.
fn ws_take(ws: &mut Ws, n: usize, what: &str) -> Vec<Msg> {
    (0..n).map(|i| Msg::from_envelope(&ws.next_json(&format!("{what} #{i}")), what)).collect()
}

/// Reads WebSocket envelopes until the connection ends (its node died).
fn ws_to_end(ws: &mut Ws, what: &str) -> Vec<Msg> {
    let mut got = Vec::new();
    while let Some(frame) = ws.data_frame(what) {
        if frame.opcode == OP_TEXT {
            let v: Value = serde_json::from_str(frame.text()).unwrap_or_else(|e| panic!("{what}: {e}"));
            got.push(Msg::from_envelope(&v, what));
        } else if frame.opcode == OP_CLOSE {
            break;
        }
    }
    got
}

/// Reads WebSocket envelopes until one has payload `last`.
fn ws_until(ws: &mut Ws, last: &str, what: &str) -> Vec<Msg> {
    let mut got = Vec::new();
    loop {
        let msg = Msg::from_envelope(&ws.next_json(what), what);
        let done = msg.data == last;
        got.push(msg);
        if done {
            return got;
        }
        assert!(got.len() < 10_000, "{what}: no {last:?} among {} messages", got.len());
    }
}

/// Asserts that `got` is `want` exactly (payloads and ids).
fn assert_same(what: &str, got: &[Msg], want: &[Msg]) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} messages, want {}; first difference at #{first}: got {:?} want {:?}\n\
             got:  {got:?}\nwant: {want:?}",
            got.len(),
            want.len(),
            got.get(first),
            want.get(first)
        );
    }
}

fn datas(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// One long-poll answered at once (`timeout=0`): the body.
fn poll_now(addr: SocketAddr, channels: &str, query: &str) -> Value {
    let (_, body) = poll(addr, &format!("/sub/{channels}?transport=longpoll&timeout=0&{query}"));
    body
}

fn envelopes(body: &Value, what: &str) -> Vec<Msg> {
    body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no messages array in {body}"))
        .iter()
        .map(|m| Msg::from_envelope(m, what))
        .collect()
}

fn kill_9(server: &Server) {
    let status = Command::new("kill").args(["-KILL", &server.pid().to_string()]).status().expect("kill");
    assert!(status.success(), "kill -KILL {}", server.pid());
}

// ---------------------------------------------------------------------------
// The redis-server helper

#[test]
fn redis_server_helper_starts_answers_and_keeps_aof_data_over_a_restart() {
    let mut redis = RedisServer::start(true);
    let mut con = redis.connection();
    let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
    assert_eq!(pong, "PONG");
    let _: () = redis::cmd("SET").arg("halley:test").arg("kept").query(&mut con).expect("SET");
    let id: String =
        redis::cmd("XADD").arg("halley:stream").arg("*").arg("d").arg("x").query(&mut con).expect("XADD");
    assert_stream_id(&id, "XADD answer");
    drop(con);

    let pid = redis.pid().expect("running");
    redis.stop();
    assert!(!redis.ping(), "redis-server still answers after stop");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| s.contains("State:\tZ")),
        "redis-server {pid} still running after stop"
    );

    redis.restart();
    let mut con = redis.connection();
    let kept: String = redis::cmd("GET").arg("halley:test").query(&mut con).expect("GET");
    assert_eq!(kept, "kept", "AOF keeps data over a restart");
    let len: u64 = redis::cmd("XLEN").arg("halley:stream").query(&mut con).expect("XLEN");
    assert_eq!(len, 1);

    // Two servers at once get different ports and directories.
    let other = RedisServer::start(false);
    assert_ne!(other.port, redis.port);
    assert_ne!(other.dir, redis.dir);
    assert!(other.ping());
    let dir = other.dir.clone();
    drop(other);
    assert!(!dir.exists(), "the scratch directory is removed on drop");
}

// ---------------------------------------------------------------------------
// Delivery across nodes

#[test]
fn every_transport_on_every_node_gets_the_same_ids_in_order() {
    let redis = RedisServer::start(false);
    let n = nodes(&redis, 3, &[]);
    let ch = "bp/all";
    let start = n[0].publish_id(ch, "start");
    assert_stream_id(&start, "first publish answer");
    let resume = format!("last_id={start}");

    let mut sse = SseFeed::open_ok(n[0].public, &path_with(ch, &resume), &[]);
    let mut ndjson =
        StreamClient::open(n[1].public, &path_with(ch, &format!("transport=stream&{resume}")), &[]);
    assert_eq!(ndjson.status, 200, "NDJSON subscribe: {:?}", ndjson.headers);
    let mut ws = Ws::open(n[2].public, &path_with(ch, &resume));

    // 27 single publishes: node i % 3, path (i / 3) % 3, so every node
    // publishes by every path; then one NDJSON batch of two lines.
    const SINGLE: usize = 27;
    const TOTAL: usize = SINGLE + 2;
    let sse_reader = thread::spawn(move || sse.take(TOTAL, "SSE on node 0"));
    let ndjson_reader = thread::spawn(move || stream_take(&mut ndjson, TOTAL, "NDJSON on node 1"));
    let ws_reader = thread::spawn(move || ws_take(&mut ws, TOTAL, "WebSocket on node 2"));
    let pollers: Vec<_> = [1, 2]
        .into_iter()
        .map(|i| {
            let addr = n[i].public;
            let start = start.clone();
            thread::spawn(move || {
                longpoll_collect(addr, ch, &start, TOTAL, &format!("long-poll on node {i}"))
            })
        })
        .collect();

    let mut acked: Vec<Option<String>> = Vec::new();
    for i in 0..SINGLE {
        let node = &n[i % 3];
        let data = format!("m{i}");
        let id = match (i / 3) % 3 {
            0 => Some(node.publish_id(ch, &data)),
            1 => {
                let reply = resp_publish(node, ch, &data);
                assert!(reply.starts_with(':'), "RESP PUBLISH {ch} {data} on node {}: {reply:?}", i % 3);
                None
            }
            _ => Some(publish_ndjson(node, &[(ch, &data)]).remove(0)),
        };
        acked.push(id);
    }
    let batch = publish_ndjson(&n[1], &[(ch, &format!("m{SINGLE}")), (ch, &format!("m{}", SINGLE + 1))]);
    acked.extend(batch.into_iter().map(Some));

    let want = datas("m", 0..TOTAL);
    let reference = assert_sequence("SSE on node 0", &join(sse_reader, "SSE reader"), &want);
    for (i, id) in acked.iter().enumerate() {
        if let Some(id) = id {
            assert_eq!(id, &reference[i], "m{i}: the publish answer's id is the id subscribers see");
        }
    }
    assert!(id_key(&reference[0]) > id_key(&start), "ids after the resume point: {start} then {reference:?}");
    let others = [
        ("NDJSON on node 1", join(ndjson_reader, "NDJSON reader")),
        ("WebSocket on node 2", join(ws_reader, "WebSocket reader")),
    ];
    let polled = pollers.into_iter().enumerate().map(|(i, h)| (i + 1, join(h, "long-poll loop")));
    for (what, got) in others
        .into_iter()
        .map(|(w, g)| (w.to_string(), g))
        .chain(polled.map(|(i, g)| (format!("long-poll on node {i}"), g)))
    {
        let ids = assert_sequence(&what, &got, &want);
        assert_eq!(ids, reference, "{what}: ids differ from the SSE subscriber's on node 0");
    }
}

#[test]
fn websocket_subscribe_ack_covers_publishes_on_other_nodes() {
    let redis = RedisServer::start(false);
    let n = nodes(&redis, 2, &[]);
    let mut ws = Ws::open(n[0].public, "/sub/bp/first");
    // The ack promises every message published after it, wherever.
    for round in 0..5 {
        let ch = format!("bp/acked-{round}");
        ws.send_text(&json!({ "subscribe": [ch] }).to_string());
        ws.expect_json(&json!({ "subscribed": [ch] }), "subscribe ack");
        let id = n[1].publish_id(&ch, &format!("after-ack-{round}"));
        let got = ws.next_json(&format!("first message on {ch} after the ack"));
        assert_eq!(
            got,
            json!({"id": id, "channel": ch, "data": format!("after-ack-{round}")}),
            "a message published on node 1 right after node 0 acked the subscription"
        );
    }
}

// ---------------------------------------------------------------------------
// Resume

#[test]
fn resume_on_another_node_by_last_id_last_event_id_and_backlog() {
    let redis = RedisServer::start(false);
    let n = nodes(&redis, 2, &[]);
    let ch = "bp/resume";
    let mut ids: Vec<String> = (0..10).map(|i| n[i % 2].publish_id(ch, &format!("r{i}"))).collect();
    let want = |from: usize, to: usize| datas("r", from..to);

    // Read r1..r4 on node 0, then continue on node 1 by Last-Event-ID.
    let mut first = SseFeed::open_ok(n[0].public, &path_with(ch, &format!("last_id={}", ids[0])), &[]);
    let got = first.take(4, "SSE on node 0");
    assert_eq!(assert_sequence("SSE on node 0", &got, &want(1, 5)), ids[1..5]);
    drop(first);
    let mut second = SseFeed::open_ok(n[1].public, &format!("/sub/{ch}"), &[("Last-Event-ID", &ids[4])]);
    assert_eq!(second.header("x-halley-gap"), None, "no gap on resume: {:?}", second.headers);
    let got = second.take(5, "SSE resumed on node 1 by Last-Event-ID");
    assert_eq!(assert_sequence("SSE resumed on node 1", &got, &want(5, 10)), ids[5..10]);
    ids.push(n[0].publish_id(ch, "r10"));
    let live = second.take(1, "SSE on node 1, live after the resume");
    assert_eq!(live, [Msg { id: ids[10].clone(), data: "r10".into() }], "published on node 0");

    // Long-poll by last_id on node 1.
    let body = poll_now(n[1].public, ch, &format!("last_id={}", ids[2]));
    assert_ne!(body["gap"], true, "{body}");
    let got = envelopes(&body, "long-poll resume on node 1");
    assert_eq!(assert_sequence("long-poll resume on node 1", &got, &want(3, 11)), ids[3..11]);
    assert_eq!(body["last_id"], json!(ids[10]), "{body}");

    // A node started after all of it: history comes from Redis.
    let late = node(&redis, &[]);
    let mut third = SseFeed::open_ok(late.public, &path_with(ch, &format!("last_id={}", ids[6])), &[]);
    assert_eq!(third.header("x-halley-gap"), None, "no gap on a new node: {:?}", third.headers);
    let got = third.take(4, "SSE resumed on a new node");
    assert_eq!(assert_sequence("SSE on a new node", &got, &want(7, 11)), ids[7..11]);
    let body = poll_now(late.public, ch, "backlog=3");
    let got = envelopes(&body, "backlog=3 on a new node");
    assert_eq!(assert_sequence("backlog=3 on a new node", &got, &want(8, 11)), ids[8..11]);
    let ws_path = path_with(ch, &format!("last_id={}", ids[8]));
    let mut ws = Ws::open(late.public, &ws_path);
    let got = ws_take(&mut ws, 2, "WebSocket resumed on a new node");
    assert_eq!(assert_sequence("WebSocket on a new node", &got, &want(9, 11)), ids[9..11]);

    // Multi-channel resume with one last_id, from a batch that alternates
    // two channels (likely all in one millisecond): everything after the
    // first line of the batch, on another node.
    let (x, y) = ("bp/multi-x", "bp/multi-y");
    let lines: Vec<(&str, String)> =
        (0..8).map(|i| (if i % 2 == 0 { x } else { y }, format!("b{i}"))).collect();
    let refs: Vec<(&str, &str)> = lines.iter().map(|(c, d)| (*c, d.as_str())).collect();
    let batch_ids = publish_ndjson(&n[0], &refs);
    let body = poll_now(n[1].public, &format!("{x},{y}"), &format!("last_id={}", batch_ids[0]));
    let got = envelopes(&body, "two-channel resume");
    let channel_of = |m: &Value| m["channel"].as_str().unwrap_or("").to_string();
    let msgs = body["messages"].as_array().unwrap();
    for (c, want_data) in [(x, ["b2", "b4", "b6"].as_slice()), (y, ["b1", "b3", "b5", "b7"].as_slice())] {
        let of_c: Vec<&str> =
            msgs.iter().filter(|m| channel_of(m) == c).map(|m| m["data"].as_str().unwrap_or("")).collect();
        assert_eq!(of_c, want_data, "{c} in a two-channel resume from {} on node 1: {body}", batch_ids[0]);
    }
    assert_eq!(got.len(), 7, "nothing else in {body}");
}

#[test]
fn history_survives_a_restart_of_every_node() {
    let redis = RedisServer::start(false);
    let ch = "bp/history";
    let mut ids: Vec<String> = {
        let mut old = nodes(&redis, 2, &[]);
        let ids = (0..10).map(|i| old[i % 2].publish_id(ch, &format!("h{i}"))).collect();
        for server in &mut old {
            server.terminate();
        }
        ids
    };
    let n = nodes(&redis, 2, &[]);

    let mut sse = SseFeed::open_ok(n[0].public, &path_with(ch, &format!("last_id={}", ids[3])), &[]);
    assert_eq!(sse.header("x-halley-gap"), None, "nothing was lost: {:?}", sse.headers);
    let got = sse.take(6, "SSE after the restart");
    assert_eq!(assert_sequence("SSE after the restart", &got, &datas("h", 4..10)), ids[4..10]);

    let body = poll_now(n[1].public, ch, &format!("last_id={}", ids[0]));
    assert_ne!(body["gap"], true, "nothing was lost: {body}");
    let got = envelopes(&body, "long-poll after the restart");
    assert_eq!(assert_sequence("long-poll after the restart", &got, &datas("h", 1..10)), ids[1..10]);

    let body = poll_now(n[1].public, ch, "backlog=3");
    let got = envelopes(&body, "backlog=3 after the restart");
    assert_eq!(assert_sequence("backlog=3 after the restart", &got, &datas("h", 7..10)), ids[7..10]);

    // New publishes continue the same streams, after the old ids.
    ids.push(n[1].publish_id(ch, "h10"));
    assert!(id_key(&ids[10]) > id_key(&ids[9]), "new id {} after the old {}", ids[10], ids[9]);
    let live = sse.take(1, "SSE after the restart, live");
    assert_eq!(live, [Msg { id: ids[10].clone(), data: "h10".into() }]);
}

// ---------------------------------------------------------------------------
// Faults

/// Publishes on `server` until a try is acknowledged; returns it. Each try
/// has its own payload (`data`, then `data~1`, `data~2`, …) so a refused
/// one can be told apart should it land after all; refused payloads are
/// recorded in `rejected`.
fn publish_until_ok(server: &Server, ch: &str, data: &str, rejected: &mut HashSet<String>) -> Msg {
    let start = Instant::now();
    for attempt in 0.. {
        let payload = if attempt == 0 { data.to_string() } else { format!("{data}~{attempt}") };
        let (resp, took) = try_publish(server, ch, &payload);
        if resp.status == 200 {
            return Msg { id: resp.json()["id"].as_str().expect("id").to_string(), data: payload };
        }
        assert_eq!(
            resp.status,
            503,
            "publish {payload:?} on {} while Redis comes back: {}",
            server.ingest,
            describe(&resp)
        );
        assert!(took < REFUSAL_WITHIN, "a refusal took {took:?}");
        rejected.insert(payload);
        assert!(
            start.elapsed() < DEADLINE,
            "publishing on {} still refused {DEADLINE:?} after Redis came back: {}",
            server.ingest,
            describe(&resp)
        );
        // The next try is the check; this only spaces the tries (closely: the
        // first accepted publish races the node's catch-up of what it missed).
        thread::sleep(Duration::from_millis(10));
    }
    unreachable!()
}

/// Asserts a refusal while Redis is down: 503, a JSON error, Retry-After.
fn assert_refused(resp: &Response, took: Duration, what: &str) {
    assert_eq!(resp.status, 503, "{what} while Redis is down: {}", describe(resp));
    assert!(took < REFUSAL_WITHIN, "{what}: the refusal took {took:?}");
    let error = resp.json();
    assert!(
        error["error"].as_str().is_some_and(|e| !e.trim().is_empty()),
        "{what}: want a JSON error, got {}",
        describe(resp)
    );
    let retry =
        resp.header("retry-after").unwrap_or_else(|| panic!("{what}: no Retry-After: {}", describe(resp)));
    assert!(retry.trim().parse::<u64>().is_ok(), "{what}: Retry-After {retry:?} is not whole seconds");
}

fn backplane_connected(server: &Server) -> Option<bool> {
    stats(server)["backplane"]["connected"].as_bool()
}

/// Waits up to `within` for `/stats` `backplane.connected` and `/metrics`
/// `halley_backplane_connected` to say `up`; a problem report if they do not.
fn check_backplane_state(server: &Server, up: bool, within: Duration, what: &str) -> Option<String> {
    let start = Instant::now();
    loop {
        let stats = stats(server)["backplane"].clone();
        let metric = metric(&ingest_text(server, "/metrics").1, "halley_backplane_connected");
        if stats["connected"].as_bool() == Some(up) && metric == Some(if up { 1.0 } else { 0.0 }) {
            return None;
        }
        if start.elapsed() > within {
            return Some(format!(
                "{what}: want /stats backplane.connected = {up} and halley_backplane_connected {} within \
                 {within:?}; last /stats backplane {stats}, metric {metric:?}",
                up as u8
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn assert_backplane_state(server: &Server, up: bool, what: &str) {
    if let Some(problem) = check_backplane_state(server, up, DEADLINE, what) {
        panic!("{problem}");
    }
}

/// Checks what a subscriber got after the outage: every acknowledged message
/// exactly once, in order, under its acknowledged id. A refused payload may
/// have landed (a refusal can come from a timeout after Redis stored it) but
/// at most once.
fn assert_acked_once(what: &str, got: &[Msg], acked: &[Msg], rejected: &HashSet<String>) {
    let mut seen = HashSet::new();
    for m in got {
        assert!(seen.insert(m.data.clone()), "{what}: {:?} delivered twice; got {got:?}", m.data);
    }
    let kept: Vec<Msg> = got.iter().filter(|m| !rejected.contains(&m.data)).cloned().collect();
    assert_same(what, &kept, acked);
    let mut last = (0, 0);
    for m in got {
        let key = assert_stream_id(&m.id, what);
        assert!(key > last, "{what}: ids not increasing at {m:?}");
        last = key;
    }
}

#[test]
fn redis_outage_refuses_publishes_then_recovers_with_nothing_acknowledged_lost() {
    let mut redis = RedisServer::start(true);
    let n = nodes(&redis, 2, &[]);
    let ch = "bp/outage";
    let start = n[0].publish_id(ch, "start");
    let resume = format!("last_id={start}");
    let mut subs = [
        SseFeed::open_ok(n[0].public, &path_with(ch, &resume), &[]),
        SseFeed::open_ok(n[1].public, &path_with(ch, &resume), &[]),
    ];
    let mut acked: Vec<Msg> = Vec::new();
    for i in 0..6 {
        let data = format!("before{i}");
        acked.push(Msg { id: n[i % 2].publish_id(ch, &data), data });
    }
    for (i, sub) in subs.iter_mut().enumerate() {
        let got = sub.take(6, &format!("SSE on node {i} before the outage"));
        assert_same(&format!("SSE on node {i} before the outage"), &got, &acked);
    }
    for server in &n {
        assert_backplane_state(server, true, "before the outage");
        let (status, body) = ingest_text(server, "/healthz");
        assert!(status == 200 && !body.contains("degraded"), "healthz before the outage: {status} {body:?}");
    }

    redis.stop();
    let mut problems: Vec<String> = Vec::new();
    let mut rejected: HashSet<String> = HashSet::new();
    for k in 0..4 {
        let data = format!("during{k}");
        let (resp, took) = try_publish(&n[k % 2], ch, &data);
        assert_refused(&resp, took, &format!("POST /pub/{ch} {data:?} on node {}", k % 2));
        rejected.insert(data);
    }
    let ndjson = request(
        n[0].ingest,
        "POST",
        "/pub",
        &[],
        format!("{}\n", json!({"channel": ch, "data": "during-batch"})).as_bytes(),
    );
    assert_eq!(ndjson.status, 503, "NDJSON publish while Redis is down: {}", describe(&ndjson));
    rejected.insert("during-batch".into());
    let reply = resp_publish(&n[1], ch, "during-resp");
    assert!(reply.starts_with('-'), "RESP PUBLISH while Redis is down answered {reply:?}, want an error");
    rejected.insert("during-resp".into());
    for (i, server) in n.iter().enumerate() {
        wait_until(&format!("node {i}: /healthz says degraded"), || {
            ingest_text(server, "/healthz").1.contains("degraded")
        });
        // Checked to the end of the test, so one report shows every failure.
        problems.extend(check_backplane_state(
            server,
            false,
            REFUSAL_WITHIN,
            &format!("node {i} during the outage"),
        ));
    }

    redis.restart();
    // Node 1 first, as soon as it takes publishes again, then more through
    // it at once: node 0 may still be reconnecting, and must read these
    // from Redis when it is back.
    let mut publish = |node: usize, data: String, acked: &mut Vec<Msg>| {
        acked.push(publish_until_ok(&n[node], ch, &data, &mut rejected));
    };
    publish(1, "after-b0".into(), &mut acked);
    for i in 1..6 {
        publish(1, format!("after-b{i}"), &mut acked);
    }
    publish(0, "after-a0".into(), &mut acked);
    for i in 0..6 {
        publish(i % 2, format!("after{i}"), &mut acked);
    }
    publish(0, "end".into(), &mut acked);
    let last = acked.last().unwrap().data.clone();
    for (i, server) in n.iter().enumerate() {
        wait_until(&format!("node {i}: /healthz no longer degraded"), || {
            let (status, body) = ingest_text(server, "/healthz");
            status == 200 && !body.contains("degraded")
        });
        assert_backplane_state(server, true, &format!("node {i} after the outage"));
    }

    // The subscribers never reconnected: the same connections carry it all.
    for (i, sub) in subs.iter_mut().enumerate() {
        let what = format!("SSE on node {i}, connected through the outage");
        let mut got = acked[..6].to_vec();
        got.extend(sub.until_data(&last, &what));
        assert_acked_once(&what, &got, &acked, &rejected);
    }

    // With AOF the acknowledged history survived the restart of Redis: a
    // new node resumes from before the outage.
    let late = node(&redis, &[]);
    let got = longpoll_collect(
        late.public,
        ch,
        &start,
        acked.len(),
        "long-poll on a new node from before the outage",
    );
    let got: Vec<Msg> = got.into_iter().filter(|m| !rejected.contains(&m.data)).collect();
    assert_same("history after the Redis restart, read on a new node", &got, &acked);
    assert!(problems.is_empty(), "during the outage:\n{}", problems.join("\n"));
}

#[test]
fn acknowledged_publishes_survive_a_redis_crash_with_aof() {
    let mut redis = RedisServer::start(true);
    let n = nodes(&redis, 2, &[]);
    let ch = "bp/crash";
    let start = n[0].publish_id(ch, "start");
    let mut sub = SseFeed::open_ok(n[1].public, &path_with(ch, &format!("last_id={start}")), &[]);
    let mut acked: Vec<Msg> = (0..10)
        .map(|i| {
            let data = format!("c{i}");
            Msg { id: n[i % 2].publish_id(ch, &data), data }
        })
        .collect();
    assert_same("SSE before the crash", &sub.take(10, "before the crash"), &acked);

    redis.kill();
    let (resp, took) = try_publish(&n[0], ch, "refused");
    assert_refused(&resp, took, "POST /pub after Redis crashed");
    let mut rejected: HashSet<String> = ["refused".to_string()].into();
    redis.restart();
    for i in 0..4 {
        acked.push(publish_until_ok(&n[i % 2], ch, &format!("again{i}"), &mut rejected));
    }
    let (before, after) = (&acked[9], &acked[10]);
    assert!(
        id_key(&after.id) > id_key(&before.id),
        "ids go on increasing after the crash: {before:?} then {after:?}"
    );
    let last = acked.last().unwrap().data.clone();
    let mut got = acked[..10].to_vec();
    got.extend(sub.until_data(&last, "SSE connected through the crash"));
    assert_acked_once("SSE connected through the crash", &got, &acked, &rejected);
    let late = node(&redis, &[]);
    let got =
        longpoll_collect(late.public, ch, &start, acked.len(), "long-poll on a new node after the crash");
    let got: Vec<Msg> = got.into_iter().filter(|m| !rejected.contains(&m.data)).collect();
    assert_same("history after the crash, on a new node", &got, &acked);
}

#[test]
fn a_node_started_while_redis_is_down_refuses_publishes_then_works_once_it_is_up() {
    let mut redis = RedisServer::start(false);
    redis.stop();
    // It starts (an operator's fleet may come up before its Redis), says
    // degraded, and refuses publishes instead of taking them.
    let server = Server::start(&["--redis", &redis.url()]);
    wait_until("/healthz says degraded while Redis is down", || {
        ingest_text(&server, "/healthz").1.contains("degraded")
    });
    let (resp, took) = try_publish(&server, "bp/early", "refused");
    assert_refused(&resp, took, "POST /pub before Redis is up");
    let mut sub = SseFeed::open_ok(server.public, "/sub/bp/early", &[]);

    redis.restart();
    wait_ready(&server);
    let mut rejected: HashSet<String> = ["refused".to_string()].into();
    let msg = publish_until_ok(&server, "bp/early", "first", &mut rejected);
    let other = node(&redis, &[]);
    let second = Msg { id: other.publish_id("bp/early", "second"), data: "second".into() };
    let mut got = sub.until_data("second", "SSE opened while Redis was down");
    got.retain(|m| !rejected.contains(&m.data));
    assert_same("SSE opened while Redis was down", &got, &[msg, second]);
}

#[test]
fn a_node_cut_off_from_redis_catches_up_what_other_nodes_published_meanwhile() {
    partition_and_return(false);
}

#[test]
fn a_node_whose_listener_returns_before_its_command_connection_still_catches_up() {
    partition_and_return(true);
}

/// One node reaches Redis through a proxy the test cuts while another node
/// publishes; then the proxy lets it back (with `uneven`, its listener at
/// once and its command connection 2 s later).
fn partition_and_return(uneven: bool) {
    let redis = RedisServer::start(false);
    let direct = node(&redis, &[]);
    let proxy = common::tcp_proxy::TcpProxy::start(redis.addr());
    let cut = Server::start(&["--redis", &proxy.url()]);
    wait_ready(&cut);
    let ch = "bp/partition";
    let start = direct.publish_id(ch, "start");
    let resume = format!("last_id={start}");
    let mut on_cut = SseFeed::open_ok(cut.public, &path_with(ch, &resume), &[]);
    let mut on_direct = SseFeed::open_ok(direct.public, &path_with(ch, &resume), &[]);
    let mut acked: Vec<Msg> = Vec::new();
    for (i, server) in [&cut, &direct, &cut].into_iter().enumerate() {
        let data = format!("before{i}");
        acked.push(Msg { id: server.publish_id(ch, &data), data });
    }
    assert_same("SSE on the node to be cut off", &on_cut.take(3, "before the cut"), &acked);
    assert_same("SSE on the other node", &on_direct.take(3, "before the cut"), &acked);

    // Only this node loses Redis.
    proxy.cut();
    let mut rejected: HashSet<String> = HashSet::new();
    let (resp, took) = try_publish(&cut, ch, "refused");
    assert_refused(&resp, took, "POST /pub on the node cut off from Redis");
    rejected.insert("refused".into());
    wait_until("the cut-off node's /healthz says degraded", || {
        ingest_text(&cut, "/healthz").1.contains("degraded")
    });
    let (status, body) = ingest_text(&direct, "/healthz");
    assert!(status == 200 && !body.contains("degraded"), "the other node's /healthz: {status} {body:?}");

    // The other node goes on, and its own subscriber sees it live.
    let during: Vec<Msg> = (0..10)
        .map(|i| {
            let data = format!("during{i}");
            Msg { id: direct.publish_id(ch, &data), data }
        })
        .collect();
    assert_same("SSE on the other node during the cut", &on_direct.take(10, "during the cut"), &during);
    acked.extend(during);

    // Unevenly: its listener at once, its command connection (which
    // publishes and reads history) 2 s later, as when Redis returns and one
    // connection's backoff is longer than the other's. What it missed must
    // still be read once it can.
    if uneven {
        proxy.refuse_commands_for(Duration::from_secs(2));
    }
    proxy.restore();
    acked.push(publish_until_ok(&cut, ch, "back", &mut rejected));
    for i in 0..3 {
        let data = format!("after{i}");
        acked.push(Msg { id: direct.publish_id(ch, &data), data });
    }
    let last = acked.last().unwrap().data.clone();
    // The subscriber on the cut-off node never reconnected: its node read
    // from Redis what it missed.
    let mut got = acked[..3].to_vec();
    got.extend(on_cut.until_data(&last, "SSE on the node that was cut off"));
    assert_acked_once("SSE on the node that was cut off", &got, &acked, &rejected);
    let mut got = acked[..13].to_vec();
    got.extend(on_direct.until_data(&last, "SSE on the other node"));
    assert_acked_once("SSE on the other node", &got, &acked, &rejected);
    wait_until("the cut-off node's /healthz no longer degraded", || {
        let (status, body) = ingest_text(&cut, "/healthz");
        status == 200 && !body.contains("degraded")
    });
}

#[test]
fn clients_of_a_sigkilled_node_resume_on_another_and_lose_nothing() {
    let redis = RedisServer::start(false);
    let mut n = nodes(&redis, 2, &[]);
    let ch = "bp/kill";
    let start = n[1].publish_id(ch, "start");
    let resume = format!("last_id={start}");
    let mut sse = SseFeed::open_ok(n[0].public, &path_with(ch, &resume), &[]);
    let mut ws = Ws::open(n[0].public, &path_with(ch, &resume));
    let mut acked: Vec<Msg> = Vec::new();
    for i in 0..5 {
        let data = format!("k{i}");
        acked.push(Msg { id: n[i % 2].publish_id(ch, &data), data });
    }
    let mut sse_got = sse.take(5, "SSE on node 0 before the kill");
    assert_same("SSE before the kill", &sse_got, &acked);
    let mut ws_got = ws_take(&mut ws, 5, "WebSocket on node 0 before the kill");
    assert_same("WebSocket before the kill", &ws_got, &acked);

    // Publishing continues through node 1 while node 0 dies.
    const MORE: usize = 30;
    let ingest = n[1].ingest;
    let publisher = thread::spawn(move || {
        (5..5 + MORE)
            .map(|i| {
                let data = format!("k{i}");
                let resp = request(ingest, "POST", &format!("/pub/{ch}"), &[], data.as_bytes());
                assert_eq!(resp.status, 200, "publish {data} on node 1: {}", describe(&resp));
                Msg { id: resp.json()["id"].as_str().expect("id").to_string(), data }
            })
            .collect::<Vec<_>>()
    });
    kill_9(&n[0]);
    drop(n.remove(0));
    sse_got.extend(sse.drain_to_end("SSE on node 0 as it dies"));
    assert!(!sse.clean_end, "a SIGKILLed node cannot end its streams cleanly");
    ws_got.extend(ws_to_end(&mut ws, "WebSocket on node 0 as it dies"));
    acked.extend(join(publisher, "publisher on node 1"));
    let last = acked.last().unwrap().data.clone();

    let sse_last = sse_got.last().unwrap().id.clone();
    let mut again = SseFeed::open_ok(n[0].public, &format!("/sub/{ch}"), &[("Last-Event-ID", &sse_last)]);
    assert_eq!(again.header("x-halley-gap"), None, "nothing was lost: {:?}", again.headers);
    sse_got.extend(again.until_data(&last, "SSE resumed on node 1 by Last-Event-ID"));
    assert_same("SSE across the kill", &sse_got, &acked);

    let ws_last = ws_got.last().unwrap().id.clone();
    let mut ws_again = Ws::open(n[0].public, &path_with(ch, &format!("last_id={ws_last}")));
    ws_got.extend(ws_until(&mut ws_again, &last, "WebSocket resumed on node 1 by last_id"));
    assert_same("WebSocket across the kill", &ws_got, &acked);
}

// ---------------------------------------------------------------------------
// Channel operations across nodes

#[test]
fn delete_on_one_node_ends_the_channels_streams_on_every_node() {
    let redis = RedisServer::start(false);
    let n = nodes(&redis, 3, &[]);
    let (ch, kept) = ("bp/doomed", "bp/kept");
    let start = n[0].publish_id(ch, "start");
    let kept_start = n[0].publish_id(kept, "kept-start");
    let resume = format!("last_id={start}");
    let mut sse = SseFeed::open_ok(n[0].public, &path_with(ch, &resume), &[]);
    let mut ndjson =
        StreamClient::open(n[1].public, &path_with(ch, &format!("transport=stream&{resume}")), &[]);
    assert_eq!(ndjson.status, 200, "NDJSON subscribe: {:?}", ndjson.headers);
    let mut ws = Ws::open(n[2].public, &path_with(ch, &resume));
    let mut bystander =
        SseFeed::open_ok(n[1].public, &path_with(kept, &format!("last_id={kept_start}")), &[]);
    let d0 = n[0].publish_id(ch, "d0");
    let d1 = n[1].publish_id(ch, "d1");
    let want = [Msg { id: d0.clone(), data: "d0".into() }, Msg { id: d1.clone(), data: "d1".into() }];
    assert_same("SSE on node 0", &sse.take(2, "SSE on node 0"), &want);
    assert_same("NDJSON on node 1", &stream_take(&mut ndjson, 2, "NDJSON on node 1"), &want);
    assert_same("WebSocket on node 2", &ws_take(&mut ws, 2, "WebSocket on node 2"), &want);
    // A long-poll held on node 2 (its hold outlasts every wait here).
    let addr = n[2].public;
    let held_path = format!("/sub/{ch}?transport=longpoll&timeout=60&last_id={d1}");
    let held = thread::spawn(move || request(addr, "GET", &held_path, &[], b""));
    // Parked once node 2 counts it beside the WebSocket.
    wait_until("the long-poll parked on node 2 (GET /pub/{ch} subscribers 2)", || {
        channel_info(&n[2], ch)["subscribers"] == json!(2)
    });

    let resp = request(n[2].ingest, "DELETE", &format!("/pub/{ch}"), &[], b"");
    assert_eq!(resp.status, 200, "DELETE /pub/{ch} on node 2: {}", describe(&resp));
    assert_eq!(resp.json()["deleted"], json!(true), "{}", resp.text());

    let rest = sse.drain_to_end("SSE on node 0 after the delete");
    assert!(rest.is_empty(), "no message after the delete: {rest:?}");
    assert!(sse.clean_end, "SSE on node 0 ends with the chunked terminator");
    assert!(
        sse.comments.iter().any(|c| c == "end channel-deleted"),
        "SSE on node 0: no `: end channel-deleted`; comments {:?}",
        sse.comments
    );
    let end = ndjson.next_json().expect("NDJSON end marker on node 1");
    assert_eq!(end, json!({"end":"channel-deleted","reconnect":true}), "NDJSON on node 1");
    assert!(ndjson.next_json().is_none(), "NDJSON on node 1 ends after its marker");
    ws.expect_close(1001, "WebSocket on node 2 after the delete");
    let answered = join(held, "held long-poll on node 2");
    assert_eq!(answered.status, 200, "held long-poll answered after the delete: {}", describe(&answered));

    // History is gone everywhere: a resume reports a gap and gets only what
    // comes next.
    let mut resumed = SseFeed::open_ok(n[1].public, &path_with(ch, &format!("last_id={d0}")), &[]);
    assert_eq!(resumed.header("x-halley-gap"), Some("1"), "resume after DELETE: {:?}", resumed.headers);
    let fresh = n[0].publish_id(ch, "fresh");
    assert_same(
        "resumed after the delete",
        &resumed.take(1, "resumed"),
        &[Msg { id: fresh, data: "fresh".into() }],
    );
    let body = poll_now(n[0].public, ch, &format!("last_id={d0}"));
    assert_eq!(body["gap"], json!(true), "long-poll resume after DELETE on node 0: {body}");

    // Other channels are untouched.
    let id = n[2].publish_id(kept, "still here");
    assert_same("bystander", &bystander.take(1, "bystander"), &[Msg { id, data: "still here".into() }]);
}

#[test]
fn cluster_subscribers_sum_over_nodes_and_backplane_state_is_reported() {
    let redis = RedisServer::start(false);
    let n = nodes(&redis, 3, &[]);
    let ch = "bp/count";
    n[0].publish_id(ch, "exists");
    let mut on_a: Vec<SseFeed> =
        (0..3).map(|_| SseFeed::open_ok(n[0].public, &format!("/sub/{ch}"), &[])).collect();
    let on_b = StreamClient::open(n[1].public, &format!("/sub/{ch}?transport=stream"), &[]);
    assert_eq!(on_b.status, 200);
    let on_c = Ws::open(n[2].public, &format!("/sub/{ch}"));

    let counts = |local: [u64; 3], cluster: u64| {
        for (i, server) in n.iter().enumerate() {
            let start = Instant::now();
            loop {
                let info = channel_info(server, ch);
                if info["subscribers"] == json!(local[i]) && info["cluster_subscribers"] == json!(cluster) {
                    break;
                }
                assert!(
                    start.elapsed() < DEADLINE,
                    "node {i}: want subscribers {} and cluster_subscribers {cluster}; last GET /pub/{ch}: {info}",
                    local[i]
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    };
    counts([3, 1, 1], 5);
    on_a.truncate(1);
    counts([1, 1, 1], 3);
    // (Every node keeps a subscriber: a node with neither subscribers nor
    // history of its own may answer 404 for the channel.)
    let more_on_c: Vec<Ws> = (0..2).map(|_| Ws::open(n[2].public, &format!("/sub/{ch}"))).collect();
    counts([1, 1, 3], 5);
    drop(more_on_c);
    drop(on_b);
    let on_b_again = SseFeed::open_ok(n[1].public, &format!("/sub/{ch}"), &[]);
    counts([1, 1, 1], 3);
    drop((on_a, on_b_again, on_c));

    for server in &n {
        assert_eq!(
            backplane_connected(server),
            Some(true),
            "/stats backplane: {}",
            stats(server)["backplane"]
        );
        assert_eq!(
            metric(&ingest_text(server, "/metrics").1, "halley_backplane_connected"),
            Some(1.0),
            "/metrics halley_backplane_connected"
        );
    }
}

// ---------------------------------------------------------------------------
// Bayeux across nodes (raw JSON)

#[test]
fn bayeux_sessions_on_different_nodes_share_channels() {
    let redis = RedisServer::start(false);
    let n = nodes(&redis, 2, &["--bayeux-timeout-ms", "1500"]);
    let ch = "bp/chat";
    let start = n[0].publish_id(ch, r#""start""#);
    let mut sse = SseFeed::open_ok(n[0].public, &path_with(ch, &format!("last_id={start}")), &[]);
    let cids = [bayeux_session(&n[0], "/bp/chat"), bayeux_session(&n[1], "/bp/chat")];

    // A Bayeux subscription is fresh (no resume point): publish warm-up
    // messages until both sessions see one, so both nodes listen to the
    // channel; warm-ups are left out of the comparison below.
    let is_warm = |m: &Value| m["data"].get("warm").is_some();
    let mut seen = [false, false];
    let mut got: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    let begun = Instant::now();
    for k in 0.. {
        assert!(before_deadline(begun), "Bayeux sessions saw no warm-up message: {seen:?}");
        n[k % 2].publish(ch, &json!({ "warm": k }).to_string());
        for i in 0..2 {
            if !seen[i] {
                let d = bayeux_connect(&n[i], &cids[i]);
                seen[i] = d.iter().any(is_warm);
                got[i].extend(d);
            }
        }
        if seen == [true, true] {
            break;
        }
    }

    // A Bayeux publish on each node and an ingest publish.
    for (i, cid) in cids.iter().enumerate() {
        let reply = bayeux_one(
            &n[i],
            json!({"channel": "/bp/chat", "clientId": cid, "data": {"n": i + 1}, "id": "p"}),
        );
        assert_eq!(reply["successful"], true, "Bayeux publish on node {i}: {reply}");
    }
    n[1].publish(ch, r#"{"n":3}"#);
    let mut want = vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})];
    // Then rounds of a Bayeux publish on one node, acknowledged, followed by
    // an ingest publish on the other: acknowledged first, ordered first.
    for round in 0..8 {
        let (i, other) = (round % 2, 1 - round % 2);
        let reply = bayeux_one(
            &n[i],
            json!({"channel": "/bp/chat", "clientId": cids[i], "data": {"round": round, "via": "bayeux"}, "id": "p"}),
        );
        assert_eq!(reply["successful"], true, "Bayeux publish on node {i}: {reply}");
        n[other].publish(ch, &json!({"round": round, "via": "ingest"}).to_string());
        want.push(json!({"round": round, "via": "bayeux"}));
        want.push(json!({"round": round, "via": "ingest"}));
    }
    for i in 0..2 {
        let begun = Instant::now();
        let real = |got: &[Value]| -> Vec<Value> {
            got.iter().filter(|m| !is_warm(m)).map(|m| m["data"].clone()).collect()
        };
        while real(&got[i]).len() < want.len() {
            assert!(before_deadline(begun), "Bayeux session on node {i}: have {:?}", got[i]);
            got[i].extend(bayeux_connect(&n[i], &cids[i]));
        }
        assert_eq!(real(&got[i]), want, "Bayeux session on node {i}: {:?}", got[i]);
        for m in &got[i] {
            assert_eq!(m["channel"], "/bp/chat", "node {i}: {m}");
        }
    }
    let events = sse.until_data(r#"{"round":7,"via":"ingest"}"#, "SSE on node 0");
    let real: Vec<Value> = events
        .iter()
        .map(|m| {
            serde_json::from_str::<Value>(&m.data).unwrap_or_else(|e| panic!("SSE data {:?}: {e}", m.data))
        })
        .filter(|v| v.get("warm").is_none())
        .collect();
    assert_eq!(real, want, "SSE subscriber on node 0 sees Bayeux publishes of both nodes");
}

// ---------------------------------------------------------------------------
// One order under concurrent publishers, trimmed history, Pushlet

#[test]
fn concurrent_publishers_on_every_node_give_one_order_everywhere() {
    let redis = RedisServer::start(false);
    let n = nodes(&redis, 3, &[]);
    let ch = "bp/race";
    let start = n[0].publish_id(ch, "start");
    const EACH: usize = 60;
    let subs: Vec<SseFeed> = n
        .iter()
        .map(|s| SseFeed::open_ok(s.public, &path_with(ch, &format!("last_id={start}")), &[]))
        .collect();
    let readers: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(i, mut sub)| thread::spawn(move || sub.take(3 * EACH, &format!("SSE on node {i}"))))
        .collect();

    // Node 0: HTTP one by one; node 1: RESP, pipelined 10 at a time; node
    // 2: NDJSON batches of 10. All at once.
    let (ingest0, resp1, ingest2) = (n[0].ingest, n[1].resp, n[2].ingest);
    let http = thread::spawn(move || {
        for i in 0..EACH {
            let resp = request(ingest0, "POST", &format!("/pub/{ch}"), &[], format!("a{i}").as_bytes());
            assert_eq!(resp.status, 200, "a{i} on node 0: {}", describe(&resp));
        }
    });
    let resp = thread::spawn(move || {
        let mut conn = HttpConn::new(resp1);
        for group in 0..EACH / 10 {
            let mut bytes = Vec::new();
            for i in group * 10..group * 10 + 10 {
                bytes.extend(publish_cmd(ch, &format!("b{i}")));
            }
            conn.send(&bytes);
            for i in group * 10..group * 10 + 10 {
                let line = conn.resp_line();
                assert!(line.starts_with(':'), "RESP PUBLISH b{i} on node 1: {line:?}");
            }
        }
    });
    let ndjson = thread::spawn(move || {
        for group in 0..EACH / 10 {
            let body: String = (group * 10..group * 10 + 10)
                .map(|i| format!("{}\n", json!({"channel": ch, "data": format!("c{i}")})))
                .collect();
            let resp = request(ingest2, "POST", "/pub", &[], body.as_bytes());
            assert_eq!(resp.status, 200, "NDJSON batch {group} on node 2: {}", describe(&resp));
        }
    });
    for (h, what) in [(http, "HTTP publisher"), (resp, "RESP publisher"), (ndjson, "NDJSON publisher")] {
        join(h, what);
    }
    let got: Vec<Vec<Msg>> = readers.into_iter().map(|h| join(h, "SSE reader")).collect();
    for (i, msgs) in got.iter().enumerate() {
        let what = format!("SSE on node {i}");
        let mut last = (0, 0);
        for m in msgs {
            let key = assert_stream_id(&m.id, &what);
            assert!(key > last, "{what}: ids not increasing at {m:?}");
            last = key;
        }
        for prefix in ["a", "b", "c"] {
            let mine: Vec<String> =
                msgs.iter().filter(|m| m.data.starts_with(prefix)).map(|m| m.data.clone()).collect();
            assert_eq!(mine, datas(prefix, 0..EACH), "{what}: one publisher's messages in its order");
        }
        assert_same(&format!("{what} against node 0"), msgs, &got[0]);
    }
}

#[test]
fn trimmed_history_gives_the_retained_tail_and_the_gap_signal_on_other_nodes() {
    let redis = RedisServer::start(false);
    let n = nodes(&redis, 2, &["--history-size", "5"]);
    let ch = "bp/trim";
    let ids: Vec<String> = (0..20).map(|i| n[i % 2].publish_id(ch, &format!("t{i}"))).collect();
    let late = node(&redis, &["--history-size", "5"]);
    for (what, addr) in [("node 1", n[1].public), ("a new node", late.public)] {
        // backlog is capped at the history size.
        let body = poll_now(addr, ch, "backlog=50");
        let got = envelopes(&body, what);
        assert_eq!(assert_sequence(&format!("backlog=50 on {what}"), &got, &datas("t", 15..20)), ids[15..20]);

        // A resume from the first id: whatever is retained, as a tail of
        // what was published, and a gap exactly when something was dropped.
        let body = poll_now(addr, ch, &format!("last_id={}", ids[0]));
        let got = envelopes(&body, what);
        assert!(!got.is_empty() && got.len() <= 19, "resume from t0 on {what}: {body}");
        let from = 20 - got.len();
        assert_eq!(
            assert_sequence(&format!("resume from t0 on {what}"), &got, &datas("t", from..20)),
            ids[from..20],
            "{body}"
        );
        assert_eq!(
            body["gap"] == json!(true),
            from > 1,
            "gap flag on {what} with t{from}.. retained: {body}"
        );
        let mut sse = SseFeed::open_ok(addr, &path_with(ch, &format!("last_id={}", ids[0])), &[]);
        assert_eq!(
            sse.header("x-halley-gap") == Some("1"),
            from > 1,
            "SSE head on {what}: {:?}",
            sse.headers
        );
        let got = sse.take(20 - from, &format!("SSE resume from t0 on {what}"));
        assert_eq!(got.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids[from..20]);
        // And a resume inside what is retained has no gap.
        let body = poll_now(addr, ch, &format!("last_id={}", ids[17]));
        assert_ne!(body["gap"], true, "resume from t17 on {what}: {body}");
        assert_eq!(
            assert_sequence("resume from t17", &envelopes(&body, what), &datas("t", 18..20)),
            ids[18..20]
        );
    }
}

#[test]
fn pushlet_publishes_and_listeners_work_across_nodes() {
    let redis = RedisServer::start(false);
    let n = nodes(&redis, 2, &["--pushlet-publish-allow", "/bp"]);
    let ch = "bp/pl";
    let start = n[0].publish_id(ch, "start");
    let mut sse = SseFeed::open_ok(n[0].public, &path_with(ch, &format!("last_id={start}")), &[]);

    // A Pushlet publish on node 1 reaches an SSE subscriber on node 0.
    let publisher = pushlet(n[1].public, &[("p_event", "join")]);
    let pid = publisher[0]["p_id"].clone();
    let ack = pushlet(
        n[1].public,
        &[("p_event", "publish"), ("p_id", &pid), ("p_subject", "/bp/pl"), ("msg", "hi")],
    );
    assert_eq!(ack[0]["p_event"], "publish-ack", "{ack:?}");
    let got = sse.take(1, "SSE on node 0");
    assert_eq!(serde_json::from_str::<Value>(&got[0].data).ok(), Some(json!({"msg": "hi"})), "{got:?}");
    // Acknowledged first, ordered first: rounds of a Pushlet publish on node
    // 1 (publish-ack), then an ingest publish on node 0.
    let mut want = Vec::new();
    for round in 0..6 {
        let r = round.to_string();
        let ack = pushlet(
            n[1].public,
            &[
                ("p_event", "publish"),
                ("p_id", &pid),
                ("p_subject", "/bp/pl"),
                ("round", &r),
                ("via", "pushlet"),
            ],
        );
        assert_eq!(ack[0]["p_event"], "publish-ack", "{ack:?}");
        n[0].publish(ch, &json!({"round": r, "via": "ingest"}).to_string());
        want.push(json!({"round": r, "via": "pushlet"}));
        want.push(json!({"round": r, "via": "ingest"}));
    }
    let got: Vec<Value> = sse
        .take(want.len(), "SSE on node 0, Pushlet and ingest rounds")
        .iter()
        .map(|m| serde_json::from_str(&m.data).unwrap_or_else(|e| panic!("SSE data {:?}: {e}", m.data)))
        .collect();
    assert_eq!(got, want, "SSE on node 0: a Pushlet publish acknowledged on node 1 comes before the ingest publish sent after it");

    // A Pushlet listener (poll mode) on node 0 gets what node 1 publishes.
    let listen =
        pushlet(n[0].public, &[("p_event", "join-listen"), ("p_mode", "poll"), ("p_subject", "/bp/pl")]);
    assert_eq!(listen[0]["p_event"], "join-listen-ack", "{listen:?}");
    let lid = listen[0]["p_id"].clone();
    let mut data_events = Vec::new();
    let poll_events = |data_events: &mut Vec<std::collections::HashMap<String, String>>| {
        for ev in pushlet(n[0].public, &[("p_event", "refresh"), ("p_id", &lid)]) {
            if ev.get("p_event").map(String::as_str) == Some("data") {
                data_events.push(ev);
            }
        }
    };
    // A fresh subscription: warm up until node 0 delivers node 1's messages.
    let begun = Instant::now();
    for k in 0.. {
        assert!(before_deadline(begun), "the Pushlet listener on node 0 got nothing from node 1");
        n[1].publish(ch, &json!({ "warm": k }).to_string());
        poll_events(&mut data_events);
        if !data_events.is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let ids: Vec<String> = (0..3).map(|i| n[1].publish_id(ch, &json!({ "x": i }).to_string())).collect();
    let begun = Instant::now();
    loop {
        let real: Vec<(String, String)> = data_events
            .iter()
            .filter(|e| e.contains_key("x"))
            .map(|e| (e.get("p_mid").cloned().unwrap_or_default(), e["x"].clone()))
            .collect();
        if real.len() >= 3 {
            let want: Vec<(String, String)> =
                ids.iter().enumerate().map(|(i, id)| (id.clone(), i.to_string())).collect();
            assert_eq!(real, want, "Pushlet listener on node 0: (p_mid, x) of node 1's publishes");
            break;
        }
        assert!(before_deadline(begun), "Pushlet listener on node 0: have {data_events:?}");
        poll_events(&mut data_events);
        thread::sleep(Duration::from_millis(100));
    }
}
