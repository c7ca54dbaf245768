//! The Redis backplane on a Redis Cluster (issue 13, item 3): halley nodes
//! started with `--redis URL1,URL2,URL3` on a real three-master cluster
//! (tests/common/redis_cluster.rs) keep each channel on the shard that owns
//! its hash tag, and deliver through sharded pub/sub.
//!
//! What is checked, test by test:
//! - channels spread over all three shards (each channel's stream is on the
//!   master its slot names, and only there); SSE on one node and WebSocket
//!   on the other get every message of every channel once, in order, under
//!   the id the publish answered, the same on both; a fresh WebSocket
//!   subscription's ack covers a publish on the other node right after it
//!   (the node answers only once its shard confirmed the `SSUBSCRIBE`);
//! - resume on another node by `last_id` and `Last-Event-ID`, and a
//!   multi-channel resume with one `last_id` over channels on different
//!   shards;
//! - `cluster_subscribers` sums both nodes; `DELETE /pub/{ch}` on one node
//!   ends the channel's streams on both and a later resume reports a gap;
//! - one master killed (no replicas, so no failover): publishes on its
//!   channels answer 503 within seconds, the other shards' channels keep
//!   working across nodes; once it is restarted, its channel works again
//!   and a subscriber connected all along gets what is published then;
//! - a node is `SSUBSCRIBE`d to a channel before it answers the channel's
//!   first subscriber, unsubscribes once the channel has none, and
//!   subscribes again for the next.
//! - engine wildcards (Bayeux `/chat/*` and `/chat/**`) on one node get,
//!   through the wildcard feed (`halley:wild`), what the other node publishes
//!   on channels of several shards, once each and in each channel's order
//!   (channels on different shards and feeds are ordered only by time), and
//!   so does a Pushlet listener on the subject prefix `/chat`, while an
//!   exact subscriber of one of those channels on the same node also gets
//!   each once;
//!   channels no wildcard takes in are not delivered to them; only a
//!   node with patterns subscribes to the feed, and it leaves it once they
//!   are gone.

mod common;
use common::cluster::*;
use common::redis_cluster::RedisCluster;
use common::*;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a publish may take to be refused while its master is down.
const REFUSAL_WITHIN: Duration = Duration::from_secs(10);

fn cluster_node(cluster: &RedisCluster) -> Server {
    let url = cluster.url();
    let server = Server::start(&["--redis", url.as_str()]);
    wait_ready(&server);
    server
}

fn ws_take(ws: &mut Ws, n: usize, what: &str) -> Vec<Msg> {
    (0..n).map(|i| Msg::from_envelope(&ws.next_json(&format!("{what} #{i}")), what)).collect()
}

fn path_with(channel: &str, query: &str) -> String {
    format!("/sub/{channel}?{query}")
}

/// Whether `master` holds `key` itself (a key of another master's slot is
/// answered with MOVED, an error here).
fn holds(cluster: &RedisCluster, master: usize, key: &str) -> bool {
    let mut con = cluster.masters[master].connection();
    redis::cmd("EXISTS").arg(key).query::<i64>(&mut con).is_ok_and(|n| n == 1)
}

#[test]
fn channels_spread_over_the_shards_and_both_nodes_deliver_the_same_ids_in_order() {
    let cluster = RedisCluster::start();
    let n = [cluster_node(&cluster), cluster_node(&cluster)];
    let channels = cluster.channel_per_master("cl/spread-");
    let starts: Vec<String> = channels.iter().map(|c| n[0].publish_id(c, "start")).collect();

    // Every stream on its own master, and on no other.
    for (m, ch) in channels.iter().enumerate() {
        let key = format!("halley:s:{{{ch}}}");
        for other in 0..3 {
            assert_eq!(holds(&cluster, other, &key), m == other, "{key} on master {other} (slot owner {m})");
        }
    }

    const PER_CHANNEL: usize = 12;
    let mut readers = Vec::new();
    for (ch, start) in channels.iter().zip(&starts) {
        let resume = format!("last_id={start}");
        let mut sse = SseFeed::open_ok(n[0].public, &path_with(ch, &resume), &[]);
        let mut ws = Ws::open(n[1].public, &path_with(ch, &resume));
        let what = format!("SSE on node 0, {ch}");
        readers.push(thread::spawn(move || sse.take(PER_CHANNEL, &what)));
        let what = format!("WebSocket on node 1, {ch}");
        readers.push(thread::spawn(move || ws_take(&mut ws, PER_CHANNEL, &what)));
    }
    let mut acked: Vec<Vec<String>> = vec![Vec::new(); channels.len()];
    for i in 0..PER_CHANNEL {
        for (c, ch) in channels.iter().enumerate() {
            acked[c].push(n[(i + c) % 2].publish_id(ch, &format!("m{i}")));
        }
    }
    let want: Vec<String> = (0..PER_CHANNEL).map(|i| format!("m{i}")).collect();
    let got: Vec<Vec<Msg>> = readers.into_iter().map(|h| h.join().expect("reader")).collect();
    for (c, ch) in channels.iter().enumerate() {
        let sse_ids = assert_sequence(&format!("SSE on node 0, {ch}"), &got[2 * c], &want);
        let ws_ids = assert_sequence(&format!("WebSocket on node 1, {ch}"), &got[2 * c + 1], &want);
        assert_eq!(sse_ids, acked[c], "{ch}: the ids subscribers see are the publish answers' ids");
        assert_eq!(ws_ids, sse_ids, "{ch}: both nodes deliver the same ids");
    }

    // A fresh subscription: the ack covers what the other node publishes next.
    let mut ws = Ws::open(n[0].public, "/sub/cl/first");
    for (round, base) in ["cl/ack-a", "cl/ack-b", "cl/ack-c"].iter().enumerate() {
        let ch = base.to_string();
        ws.send_text(&json!({ "subscribe": [ch] }).to_string());
        ws.expect_json(&json!({ "subscribed": [ch] }), "subscribe ack");
        let id = n[1].publish_id(&ch, &format!("after-ack-{round}"));
        let got = ws.next_json(&format!("first message on {ch} after the ack"));
        assert_eq!(got, json!({"id": id, "channel": ch, "data": format!("after-ack-{round}")}));
    }
}

#[test]
fn resume_on_another_node_and_multi_channel_resume_over_shards() {
    let cluster = RedisCluster::start();
    let n = [cluster_node(&cluster), cluster_node(&cluster)];
    let ch = "cl/resume";
    let ids: Vec<String> = (0..8).map(|i| n[i % 2].publish_id(ch, &format!("r{i}"))).collect();
    let want = |a: usize, b: usize| (a..b).map(|i| format!("r{i}")).collect::<Vec<_>>();

    let mut first = SseFeed::open_ok(n[0].public, &path_with(ch, &format!("last_id={}", ids[0])), &[]);
    let got = first.take(3, "SSE on node 0");
    assert_eq!(assert_sequence("SSE on node 0", &got, &want(1, 4)), ids[1..4]);
    drop(first);
    let mut second = SseFeed::open_ok(n[1].public, &format!("/sub/{ch}"), &[("Last-Event-ID", &ids[3])]);
    assert_eq!(second.header("x-halley-gap"), None, "no gap on resume: {:?}", second.headers);
    let got = second.take(4, "SSE resumed on node 1");
    assert_eq!(assert_sequence("SSE resumed on node 1", &got, &want(4, 8)), ids[4..8]);
    let live = n[0].publish_id(ch, "r8");
    assert_eq!(second.take(1, "live on node 1"), [Msg { id: live, data: "r8".into() }]);

    // Channels on three shards, one publish each after a mark, a
    // millisecond apart at least: one last_id resumes all of them.
    let channels = cluster.channel_per_master("cl/multi-");
    let mark = n[0].publish_id(&channels[0], "mark");
    let mut later = Vec::new();
    for (i, c) in channels.iter().enumerate() {
        let start = Instant::now();
        while id_key(&n[0].publish_id("cl/tick", "tick")).0 <= id_key(&mark).0 {
            assert!(start.elapsed() < DEADLINE, "the clock does not move");
        }
        later.push((c.clone(), n[1].publish_id(c, &format!("after-{i}"))));
    }
    let (_, body) = poll(
        n[1].public,
        &format!("/sub/{}?transport=longpoll&timeout=0&last_id={mark}", channels.join(",")),
    );
    let msgs = body["messages"].as_array().unwrap_or_else(|| panic!("no messages in {body}"));
    let got: Vec<(String, String)> = msgs
        .iter()
        .map(|m| {
            (m["channel"].as_str().unwrap_or("").to_string(), m["id"].as_str().unwrap_or("").to_string())
        })
        .collect();
    let mut want_ids = later.clone();
    want_ids.sort_by_key(|(_, id)| id_key(id));
    assert_eq!(got, want_ids, "multi-channel resume from {mark} on node 1: {body}");
}

#[test]
fn cluster_subscribers_and_delete_reach_both_nodes() {
    let cluster = RedisCluster::start();
    let n = [cluster_node(&cluster), cluster_node(&cluster)];
    let ch = "cl/count";
    let start = n[0].publish_id(ch, "exists");
    let resume = format!("last_id={start}");
    let mut on_a: Vec<SseFeed> =
        (0..2).map(|_| SseFeed::open_ok(n[0].public, &path_with(ch, &resume), &[])).collect();
    let mut on_b = Ws::open(n[1].public, &path_with(ch, &resume));
    for (i, server) in n.iter().enumerate() {
        wait_until(&format!("node {i}: cluster_subscribers 3 on {ch}"), || {
            channel_info(server, ch)["cluster_subscribers"] == json!(3)
        });
    }
    let d0 = n[1].publish_id(ch, "d0");
    for (i, sse) in on_a.iter_mut().enumerate() {
        assert_eq!(sse.take(1, &format!("SSE {i} on node 0")), [Msg { id: d0.clone(), data: "d0".into() }]);
    }
    assert_eq!(ws_take(&mut on_b, 1, "WebSocket on node 1"), [Msg { id: d0.clone(), data: "d0".into() }]);
    drop(on_a.pop());
    for (i, server) in n.iter().enumerate() {
        wait_until(&format!("node {i}: cluster_subscribers 2 on {ch} after one left"), || {
            channel_info(server, ch)["cluster_subscribers"] == json!(2)
        });
    }

    let resp = request(n[1].ingest, "DELETE", &format!("/pub/{ch}"), &[], b"");
    assert_eq!(resp.status, 200, "DELETE /pub/{ch} on node 1: {}", describe(&resp));
    for (i, sse) in on_a.iter_mut().enumerate() {
        let rest = sse.drain_to_end(&format!("SSE {i} on node 0 after the delete"));
        assert!(rest.is_empty(), "no message after the delete: {rest:?}");
        assert!(sse.comments.iter().any(|c| c == "end channel-deleted"), "comments {:?}", sse.comments);
    }
    on_b.expect_close(1001, "WebSocket on node 1 after the delete");
    let mut resumed = SseFeed::open_ok(n[0].public, &path_with(ch, &resume), &[]);
    assert_eq!(resumed.header("x-halley-gap"), Some("1"), "resume after DELETE: {:?}", resumed.headers);
    let fresh = n[1].publish_id(ch, "fresh");
    assert_eq!(resumed.take(1, "resumed after the delete"), [Msg { id: fresh, data: "fresh".into() }]);
}

#[test]
fn a_master_killed_refuses_its_channels_and_the_other_shards_keep_working() {
    let mut cluster = RedisCluster::start();
    let n = [cluster_node(&cluster), cluster_node(&cluster)];
    let channels = cluster.channel_per_master("cl/fault-");
    let starts: Vec<String> = channels.iter().map(|c| n[0].publish_id(c, "start")).collect();
    let mut subs: Vec<SseFeed> = channels
        .iter()
        .zip(&starts)
        .map(|(c, s)| SseFeed::open_ok(n[1].public, &path_with(c, &format!("last_id={s}")), &[]))
        .collect();
    let pid = cluster.masters[0].pid();
    cluster.masters[0].kill();
    assert!(pid.is_some());

    // The dead master's channel: 503 within seconds, on both nodes.
    for (i, server) in n.iter().enumerate() {
        let (resp, took) = try_publish(server, &channels[0], "lost");
        assert_eq!(resp.status, 503, "node {i}, {} on the dead master: {}", channels[0], describe(&resp));
        assert!(took < REFUSAL_WITHIN, "node {i}: refused only after {took:?}");
        assert!(resp.header("retry-after").is_some(), "503 with Retry-After: {}", describe(&resp));
    }
    // The others: published on node 0, delivered on node 1.
    for (c, ch) in channels.iter().enumerate().skip(1) {
        let start = Instant::now();
        let id = loop {
            let (resp, _) = try_publish(&n[0], ch, "alive");
            if resp.status == 200 {
                break resp.json()["id"].as_str().unwrap_or_default().to_string();
            }
            assert!(start.elapsed() < DEADLINE, "{ch} (master {c}, alive): {}", describe(&resp));
            thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(subs[c].take(1, &format!("SSE on node 1, {ch}")), [Msg { id, data: "alive".into() }]);
    }

    // The master back (same port and node id): its channel works again, and
    // the subscriber connected all along gets what is published now.
    cluster.masters[0].restart();
    let start = Instant::now();
    let id = loop {
        let (resp, _) = try_publish(&n[0], &channels[0], "back");
        if resp.status == 200 {
            break resp.json()["id"].as_str().unwrap_or_default().to_string();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{} after its master restarted: {}",
            channels[0],
            describe(&resp)
        );
        thread::sleep(Duration::from_millis(100));
    };
    let got = subs[0].take(1, &format!("SSE on node 1, {}, after the restart", channels[0]));
    assert_eq!(got, [Msg { id, data: "back".into() }]);
    for server in &n {
        wait_ready(server);
    }
}

/// Subscribers of a shard channel on `master` (`PUBSUB SHARDNUMSUB`).
fn shard_subscribers(cluster: &RedisCluster, master: usize, channel: &str) -> i64 {
    let mut con = cluster.masters[master].connection();
    let reply: (String, i64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(format!("halley:m:{{{channel}}}"))
        .query(&mut con)
        .unwrap_or_else(|e| panic!("PUBSUB SHARDNUMSUB on master {master}: {e}"));
    reply.1
}

#[test]
fn a_node_receives_a_channel_only_while_it_has_subscribers_there() {
    let cluster = RedisCluster::start();
    let n = [cluster_node(&cluster), cluster_node(&cluster)];
    let ch = "cl/idle";
    let m = cluster.master_of(ch);
    assert_eq!(shard_subscribers(&cluster, m, ch), 0, "nobody subscribed yet");
    let mut first = SseFeed::open_ok(n[0].public, &format!("/sub/{ch}"), &[]);
    assert_eq!(shard_subscribers(&cluster, m, ch), 1, "subscribed before the subscriber was answered");
    let id = n[1].publish_id(ch, "one");
    assert_eq!(first.take(1, "first subscriber"), [Msg { id, data: "one".into() }]);
    drop(first);
    wait_until("node 0 counts no subscriber", || channel_info(&n[0], ch)["subscribers"] == json!(0));
    wait_until("node 0 unsubscribes from the idle channel", || shard_subscribers(&cluster, m, ch) == 0);
    // Back again: subscribed again before the answer.
    let mut again = SseFeed::open_ok(n[0].public, &format!("/sub/{ch}"), &[]);
    assert_eq!(shard_subscribers(&cluster, m, ch), 1, "subscribed again before the answer");
    let id = n[1].publish_id(ch, "two");
    assert_eq!(again.take(1, "second subscriber"), [Msg { id, data: "two".into() }]);
}

/// Subscribers of the wildcard feed on every master (classic pub/sub counts
/// only a node's own subscribers).
fn wild_subscribers(cluster: &RedisCluster) -> i64 {
    (0..cluster.masters.len())
        .map(|m| {
            let mut con = cluster.masters[m].connection();
            let counts: Vec<(String, i64)> =
                redis::cmd("PUBSUB").arg("NUMSUB").arg("halley:wild").query(&mut con).expect("PUBSUB NUMSUB");
            counts.iter().map(|(_, n)| n).sum::<i64>()
        })
        .sum()
}

/// Deliveries grouped by channel, each channel's in their order.
fn per_channel<T: Clone>(items: &[(String, T)]) -> std::collections::BTreeMap<String, Vec<T>> {
    let mut out: std::collections::BTreeMap<String, Vec<T>> = Default::default();
    for (channel, item) in items {
        out.entry(channel.clone()).or_default().push(item.clone());
    }
    out
}

fn wait_wild_subscribers(cluster: &RedisCluster, want: i64, what: &str) {
    let begun = Instant::now();
    loop {
        let have = wild_subscribers(cluster);
        if have == want {
            return;
        }
        assert!(before_deadline(begun), "{what}: {have} subscribers of halley:wild, want {want}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bayeux_wildcards_are_served_across_shards_by_the_wildcard_feed() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let n: Vec<Server> = (0..2)
        .map(|_| {
            let server = Server::start(&["--redis", url.as_str(), "--bayeux-timeout-ms", "1000"]);
            wait_ready(&server);
            server
        })
        .collect();
    let chat = ["chat/a", "chat/b", "chat/x/y"];
    let masters: std::collections::HashSet<usize> = chat.iter().map(|c| cluster.master_of(c)).collect();
    assert!(masters.len() >= 2, "the chat channels should be on different masters: {masters:?}");
    assert_eq!(wild_subscribers(&cluster), 0, "no node has engine patterns yet");

    // Exact subscribers on node 0: SSE on chat/a (a shard subscription on
    // the channel the wildcards also take in) and on plainch.
    let exact: Vec<SseFeed> = ["chat/a", "plainch"]
        .iter()
        .map(|ch| {
            let start = n[1].publish_id(ch, r#"{"start":true}"#);
            SseFeed::open_ok(n[0].public, &path_with(ch, &format!("last_id={start}")), &[])
        })
        .collect();
    // With no wildcard anywhere, nobody's publishes go on the feed.
    let feed = |node: &Server| stats(node)["backplane"].clone();
    assert_eq!(feed(&n[1])["wild_feed"], false, "{}", feed(&n[1]));
    assert_eq!(feed(&n[1])["wild_announced"], 0, "node 1 published with no wildcard anywhere");
    let star = bayeux_session(&n[0], "/chat/*");
    let deep = bayeux_session(&n[0], "/chat/**");
    let cids = [star, deep];
    // And a Pushlet listener (poll mode) on the subject prefix `/chat`.
    let listen =
        pushlet(n[0].public, &[("p_event", "join-listen"), ("p_mode", "poll"), ("p_subject", "/chat")]);
    assert_eq!(listen[0]["p_event"], "join-listen-ack", "{listen:?}");
    let lid = listen[0]["p_id"].clone();
    let mut pushlet_got: Vec<(String, String, String)> = Vec::new();
    let poll_pushlet = |into: &mut Vec<(String, String, String)>| {
        for ev in pushlet(n[0].public, &[("p_event", "refresh"), ("p_id", &lid)]) {
            if ev.get("p_event").map(String::as_str) == Some("data") {
                let attr = |k: &str| ev.get(k).cloned().unwrap_or_default();
                into.push((attr("p_subject"), attr("ch"), attr("round")));
            }
        }
    };
    // Node 0 holds the feed; node 1, without patterns, does not.
    wait_wild_subscribers(&cluster, 1, "two wildcard sessions on node 0");

    // The feed's SUBSCRIBE is not waited for by a Bayeux subscribe: warm up
    // until both sessions get a message published on node 1.
    let is_warm = |m: &Value| m["data"].get("warm").is_some();
    let mut got: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    let begun = Instant::now();
    for k in 0.. {
        assert!(before_deadline(begun), "the wildcard sessions saw no warm-up message: {got:?}");
        n[1].publish("chat/b", &json!({ "warm": k }).to_string());
        for (i, cid) in cids.iter().enumerate() {
            if !got[i].iter().any(is_warm) {
                got[i].extend(bayeux_connect(&n[0], cid));
            }
        }
        if got.iter().all(|g| g.iter().any(is_warm)) {
            break;
        }
    }
    // Node 1 learned from node 0's heartbeat that the feed is wanted.
    assert_eq!(feed(&n[1])["wild_feed"], true, "{}", feed(&n[1]));
    assert!(feed(&n[1])["wild_announced"].as_u64().is_some_and(|k| k > 0), "{}", feed(&n[1]));
    // Garbage on the feed (not an announcement) is counted as a backplane
    // error on node 0 and harms nobody: the rounds below still arrive.
    let errors = |node: &Server| feed(node)["errors"].as_u64().unwrap_or(0);
    let errors_before = errors(&n[0]);
    for junk in ["not json", r#"{"id":"nope","c":"chat/a"}"#, r#"{"id":"1-1"}"#] {
        let mut con = cluster.masters[0].connection();
        let _: i64 =
            redis::cmd("PUBLISH").arg("halley:wild").arg(junk).query(&mut con).expect("PUBLISH junk");
    }
    let begun = Instant::now();
    while errors(&n[0]) < errors_before + 3 {
        assert!(before_deadline(begun), "junk on the wildcard feed not counted: {}", feed(&n[0]));
        thread::sleep(Duration::from_millis(50));
    }
    // The Pushlet listener on the same node, by then on the feed too.
    poll_pushlet(&mut pushlet_got);
    pushlet_got.clear();

    // Rounds on node 1 over channels on several shards, and channels no
    // wildcard takes in.
    let mut want_star = Vec::new();
    let mut want_deep = Vec::new();
    let mut want_exact: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for round in 0..6 {
        for ch in ["chat/a", "other", "chat/b", "plainch", "chat/x/y"] {
            let data = json!({ "ch": ch, "round": round });
            n[1].publish(ch, &data.to_string());
            let delivered = (format!("/{ch}"), data.clone());
            if ch == "chat/a" || ch == "chat/b" {
                want_star.push(delivered.clone());
            }
            if ch.starts_with("chat/") {
                want_deep.push(delivered);
            }
            match ch {
                "chat/a" => want_exact[0].push(data.to_string()),
                "plainch" => want_exact[1].push(data.to_string()),
                _ => {}
            }
        }
    }
    // An end marker on chat/a: a copy of any message before it would show.
    let end = json!({ "end": true });
    n[1].publish("chat/a", &end.to_string());
    want_star.push(("/chat/a".to_string(), end.clone()));
    want_deep.push(("/chat/a".to_string(), end.clone()));
    want_exact[0].push(end.to_string());

    let want_deep_copy = want_deep.clone();
    for (i, want) in [want_star, want_deep].iter().enumerate() {
        let real = |got: &[Value]| -> Vec<(String, Value)> {
            got.iter()
                .filter(|m| !is_warm(m))
                .map(|m| (m["channel"].as_str().unwrap_or_default().to_string(), m["data"].clone()))
                .collect()
        };
        let begun = Instant::now();
        while real(&got[i]).len() < want.len() {
            assert!(before_deadline(begun), "wildcard session {i}: have {:?}", real(&got[i]));
            got[i].extend(bayeux_connect(&n[0], &cids[i]));
        }
        // Each channel in its order (channels on different shards and feeds
        // are ordered only by time), each message once.
        let have = real(&got[i]);
        assert_eq!(have.len(), want.len(), "wildcard session {i} on node 0: {have:?}");
        assert_eq!(
            per_channel(&have),
            per_channel(want),
            "wildcard session {i} on node 0: each message once, in order"
        );
    }
    // The Pushlet prefix: every chat message, in order, once.
    let want_pushlet: Vec<(String, String, String)> = want_deep_copy
        .iter()
        .filter(|(_, d)| d.get("ch").is_some())
        .map(|(c, d)| (c.clone(), d["ch"].as_str().unwrap_or_default().to_string(), d["round"].to_string()))
        .collect();
    let begun = Instant::now();
    loop {
        let real: Vec<_> = pushlet_got.iter().filter(|e| !e.1.is_empty()).cloned().collect();
        if real.len() >= want_pushlet.len() {
            assert_eq!(real.len(), want_pushlet.len(), "Pushlet listener on /chat on node 0: {real:?}");
            let pairs = |v: &[(String, String, String)]| -> Vec<(String, (String, String))> {
                v.iter().map(|(s, c, r)| (s.clone(), (c.clone(), r.clone()))).collect()
            };
            assert_eq!(
                per_channel(&pairs(&real)),
                per_channel(&pairs(&want_pushlet)),
                "Pushlet listener on /chat on node 0"
            );
            break;
        }
        assert!(before_deadline(begun), "Pushlet listener on node 0: have {pushlet_got:?}");
        poll_pushlet(&mut pushlet_got);
        thread::sleep(Duration::from_millis(100));
    }
    for (mut sse, want) in exact.into_iter().zip(want_exact) {
        let what = format!("exact {}", sse.what());
        let got = sse.until_data(want.last().expect("a last message"), &what);
        let data: Vec<String> = got.iter().map(|m| m.data.clone()).collect();
        assert_eq!(data, want, "{what}: each message once, in order");
    }

    // The feed goes with the last pattern (at the node's next heartbeat).
    for cid in &cids {
        let bye = bayeux_one(&n[0], json!({"channel": "/meta/disconnect", "clientId": cid, "id": "bye"}));
        assert_eq!(bye["successful"], true, "disconnect: {bye}");
    }
    let left = pushlet(n[0].public, &[("p_event", "leave"), ("p_id", &lid)]);
    assert_eq!(left[0]["p_event"], "leave-ack", "{left:?}");
    wait_wild_subscribers(&cluster, 0, "the wildcard sessions and the Pushlet listener gone");
    // And the other nodes stop putting their publishes on it.
    let begun = Instant::now();
    while feed(&n[1])["wild_feed"] != false {
        assert!(before_deadline(begun), "node 1 still feeds the wildcard feed: {}", feed(&n[1]));
        thread::sleep(Duration::from_millis(100));
    }
    let announced = feed(&n[1])["wild_announced"].clone();
    n[1].publish("chat/a", "after the wildcards");
    assert_eq!(feed(&n[1])["wild_announced"], announced, "a publish with no wildcard anywhere");
}
