//! The ingest port's operator endpoints against the real binary: channel
//! info (`GET /pub/{channel}`), channel deletion (`DELETE /pub/{channel}`),
//! NDJSON batch publishing (`POST /pub`), `/metrics` read by a real
//! Prometheus text-format parser (Python's prometheus_client, which tests/run
//! installs; a missing parser fails the test, it never skips it), `/stats`
//! checked against a schema, and `--print-config` round trips.
//!
//! Every subscriber reads its response head before anything is published:
//! the head is sent only once the subscription is registered.

mod common;
use common::*;

use std::process::Command;

use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers.

fn sse(server: &Server, path: &str) -> StreamClient {
    let sub = StreamClient::open(server.public, path, &[("Accept", "text/event-stream")]);
    assert_eq!(sub.status, 200, "SSE {path}: headers {:?}", sub.headers);
    sub
}

fn stream(server: &Server, path: &str) -> StreamClient {
    let sub = StreamClient::open(server.public, path, &[]);
    assert_eq!(sub.status, 200, "stream {path}: headers {:?}", sub.headers);
    sub
}

fn next_sse(sub: &mut StreamClient, what: &str) -> SseEvent {
    sub.next_event().unwrap_or_else(|| panic!("{what}: the SSE stream ended"))
}

fn next_json(sub: &mut StreamClient, what: &str) -> Value {
    sub.next_json().unwrap_or_else(|| panic!("{what}: the NDJSON stream ended"))
}

/// Everything left in a chunked stream up to its terminator, decoded.
fn rest_of_stream(sub: &mut StreamClient) -> String {
    let mut text = String::new();
    while let Some(chunk) = sub.next_raw_chunk() {
        text.push_str(&chunk);
    }
    text
}

// ---------------------------------------------------------------------------
// GET /pub/{channel}

#[test]
fn channel_info_reports_subscribers_peak_retained_messages_and_last_id() {
    let server = Server::start(&["--history-size", "2"]);
    let before = get(server.ingest, "/pub/info");
    assert_json_error(&before, 404, "no such channel", "GET /pub/info before anything happened");
    let bad = get(server.ingest, "/pub//info");
    assert_json_error(&bad, 400, "channel name", "GET /pub//info");

    let mut first = sse(&server, "/sub/info");
    let info = channel_info(&server, "info");
    assert_eq!(
        info,
        json!({"channel":"info","subscribers":1,"peak_subscribers":1,"messages":0,"published":0,"last_id":null}),
        "one subscriber, nothing published"
    );

    let ids: Vec<String> = (0..3).map(|i| server.publish_id("info", &format!("m{i}"))).collect();
    for (i, id) in ids.iter().enumerate() {
        let ev = next_sse(&mut first, "first subscriber");
        assert_eq!((ev.id.as_deref(), ev.data.as_str()), (Some(id.as_str()), format!("m{i}").as_str()));
    }
    let second = stream(&server, "/sub/info?transport=stream");
    let info = channel_info(&server, "info");
    assert_eq!(
        info,
        json!({
            "channel": "info",
            "subscribers": 2,
            "peak_subscribers": 2,
            "messages": 2, // history_size 2 of the 3 published
            "published": 3,
            "last_id": ids[2],
        }),
        "two subscribers after three publishes"
    );

    drop(second);
    wait_until("GET /pub/info to count one subscriber after the second left", || {
        channel_info(&server, "info")["subscribers"] == 1
    });
    let info = channel_info(&server, "info");
    assert_eq!(info["peak_subscribers"], 2, "the peak stays: {info}");
    assert!(
        info["peak_subscribers"].as_u64() >= info["subscribers"].as_u64(),
        "peak_subscribers below subscribers: {info}"
    );

    // A publish over the RESP port counts the same way.
    let mut resp = HttpConn::new(server.resp);
    resp.send(b"PUBLISH info m3\r\n");
    assert_eq!(resp.read_until(b"\r\n"), b":1\r\n", "RESP publish to info");
    let ev = next_sse(&mut first, "first subscriber, RESP publish");
    let info = channel_info(&server, "info");
    assert_eq!((info["published"].clone(), info["messages"].clone()), (json!(4), json!(2)), "{info}");
    assert_eq!(info["last_id"].as_str(), ev.id.as_deref(), "last_id is the RESP publish's id: {info}");
}

// ---------------------------------------------------------------------------
// DELETE /pub/{channel}

#[test]
fn delete_ends_the_channels_streams_and_forgets_its_history() {
    let server = Server::start(&[]);
    let mut sse_sub = sse(&server, "/sub/doomed");
    let mut ndjson_sub = stream(&server, "/sub/doomed?transport=stream");
    let mut bystander = sse(&server, "/sub/kept");
    let ids: Vec<String> = ["a", "b"].iter().map(|d| server.publish_id("doomed", d)).collect();
    for id in &ids {
        assert_eq!(next_sse(&mut sse_sub, "SSE before delete").id.as_ref(), Some(id));
        assert_eq!(next_json(&mut ndjson_sub, "NDJSON before delete")["id"], json!(id));
    }

    let resp = request(server.ingest, "DELETE", "/pub/doomed", &[], b"");
    assert_eq!(resp.status, 200, "DELETE /pub/doomed: {}", resp.text());
    assert_eq!(resp.json(), json!({"channel":"doomed","deleted":true,"subscribers":2}), "DELETE answer");

    // Both streams end cleanly: the end marker, the chunked terminator, close.
    let rest = rest_of_stream(&mut sse_sub);
    assert!(
        rest.contains(": end channel-deleted\n"),
        "SSE subscriber's last bytes lack the end marker: {rest:?}"
    );
    assert!(!rest.contains("data:"), "no message after the delete: {rest:?}");
    assert!(sse_sub.conn.closed(), "SSE connection closed after the terminator");
    let end = next_json(&mut ndjson_sub, "NDJSON end marker");
    assert_eq!(end, json!({"end":"channel-deleted","reconnect":true}), "NDJSON subscriber's last line");
    assert!(ndjson_sub.next_json().is_none(), "NDJSON stream ends after its marker");
    assert!(ndjson_sub.conn.closed(), "NDJSON connection closed after the terminator");

    let after = get(server.ingest, "/pub/doomed");
    assert_json_error(&after, 404, "no such channel", "GET /pub/doomed after DELETE");
    let again = request(server.ingest, "DELETE", "/pub/doomed", &[], b"");
    assert_json_error(&again, 404, "no such channel", "DELETE /pub/doomed twice");
    let unknown = request(server.ingest, "DELETE", "/pub/never-was", &[], b"");
    assert_json_error(&unknown, 404, "no such channel", "DELETE of an unknown channel");

    // History is gone: resuming from the first id reports a gap and gets
    // only what is published from now on.
    let mut resumed = sse(&server, &format!("/sub/doomed?last_id={}", ids[0]));
    assert_eq!(
        resumed.header("x-halley-gap"),
        Some("1"),
        "resume after DELETE: headers {:?}",
        resumed.headers
    );
    let fresh = server.publish_id("doomed", "fresh");
    let ev = next_sse(&mut resumed, "resumed subscriber");
    assert_eq!((ev.id, ev.data.as_str()), (Some(fresh), "fresh"), "the old message b is not replayed");

    // Other channels are untouched.
    server.publish_id("kept", "still here");
    assert_eq!(next_sse(&mut bystander, "subscriber of another channel").data, "still here");
}

// ---------------------------------------------------------------------------
// POST /pub (NDJSON batch)

#[test]
fn ndjson_batch_publishes_in_line_order_all_or_nothing() {
    let server = Server::start(&[]);
    let mut one = stream(&server, "/sub/batch:one?transport=stream");
    let mut two = sse(&server, "/sub/batch:two");
    let body = concat!(
        r#"{"channel":"batch:one","data":"first"}"#,
        "\n",
        r#"{"channel":"batch:two","data":"second","event":"tick"}"#,
        "\n\n",
        r#"{"channel":"batch:one","data":"third"}"#,
        "\r\n",
        r#"{"channel":"batch:nobody","data":"fourth"}"#,
        "\n",
    );
    let resp =
        request(server.ingest, "POST", "/pub", &[("Content-Type", "application/x-ndjson")], body.as_bytes());
    assert_eq!(resp.status, 200, "POST /pub: {}", resp.text());
    let ack = resp.json();
    assert_eq!(ack["subscribers"], json!([1, 1, 1, 0]), "subscribers per line: {ack}");
    let ids: Vec<String> = ack["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no ids array: {ack}"))
        .iter()
        .map(|v| v.as_str().expect("id string").to_string())
        .collect();
    assert_eq!(ids.len(), 4, "one id per non-blank line: {ack}");
    assert!(ids.windows(2).all(|w| id_key(&w[0]) < id_key(&w[1])), "ids in line order: {ids:?}");

    for (id, data) in [(&ids[0], "first"), (&ids[2], "third")] {
        let m = next_json(&mut one, "batch:one subscriber");
        assert_eq!(m, json!({"id": id, "channel": "batch:one", "data": data}), "batch:one subscriber");
    }
    let ev = next_sse(&mut two, "batch:two subscriber");
    assert_eq!(ev, SseEvent { id: Some(ids[1].clone()), event: Some("tick".into()), data: "second".into() });

    // A bad line refuses the whole batch, naming the line.
    let good = r#"{"channel":"batch:one","data":"must not appear"}"#;
    let oversize = format!("{{\"channel\":\"batch:one\",\"data\":\"{}\"}}", "x".repeat(64 * 1024 + 1));
    let bad_batches: [(String, u16, &str); 6] = [
        (format!("{good}\n{good}\n{{\"channel\":\"batch:one\"\n"), 400, "line 3: invalid JSON"),
        (format!("{good}\n{{\"channel\":\"/x\",\"data\":\"y\"}}\n"), 400, "line 2: channel name"),
        (format!("{{\"channel\":\"batch:one\"}}\n{good}\n"), 400, "line 1: expected"),
        (
            format!("{good}\n\n{{\"channel\":\"batch:one\",\"data\":\"z\",\"event\":\"a b\"}}\n"),
            400,
            "line 3: event",
        ),
        (format!("{good}\n{{\"channel\":\"batch:one\",\"data\":7}}\n"), 400, "line 2: expected"),
        (format!("{good}\n{oversize}\n"), 413, "line 2: data over 65536 bytes"),
    ];
    for (body, status, needle) in &bad_batches {
        let resp = request(server.ingest, "POST", "/pub", &[], body.as_bytes());
        let shown: String = body.chars().take(200).collect();
        assert_json_error(&resp, *status, needle, &format!("batch {shown:?}"));
    }
    let empty = request(server.ingest, "POST", "/pub", &[], b"\n\n");
    assert_json_error(&empty, 400, "empty batch", "a batch of blank lines");

    let info = channel_info(&server, "batch:one");
    assert_eq!(info["published"], 2, "nothing of the refused batches was published: {info}");
    let sentinel = server.publish_id("batch:one", "sentinel");
    let m = next_json(&mut one, "batch:one subscriber after the refused batches");
    assert_eq!((m["id"].as_str(), m["data"].as_str()), (Some(sentinel.as_str()), Some("sentinel")), "{m}");
}

// ---------------------------------------------------------------------------
// /metrics through prometheus_client

const PARSE_METRICS: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    sys.exit("prometheus_client is missing (%s): run `python3 -m pip install prometheus_client`; tests/run installs it" % e)
families = [
    {"name": f.name, "type": f.type, "help": f.documentation,
     "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
    for f in text_string_to_metric_families(sys.stdin.read())
]
print(json.dumps(families))
"#;

/// Fails with what to install when python3 or prometheus_client is missing
/// (never skips).
fn require_prometheus_client() {
    let out = run(Command::new("python3").args(["-c", "import prometheus_client"]), Vec::new());
    assert!(
        out.status.success(),
        "python3 with prometheus_client is required: run `python3 -m pip install prometheus_client` \
         (tests/run installs it when missing):\n{}",
        show(&out)
    );
}

/// Parses Prometheus text with prometheus_client; fails with the parser's error.
fn parse_metrics(text: &str) -> Vec<Value> {
    let out = run(Command::new("python3").args(["-c", PARSE_METRICS]), text.as_bytes().to_vec());
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics:\n{}\nbody:\n{text}",
        show(&out)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("parser output is not JSON ({e}):\n{}", show(&out)));
    parsed.as_array().expect("families").clone()
}

/// The value of the sample `name` with exactly `labels`.
fn sample(families: &[Value], name: &str, labels: Value) -> f64 {
    families
        .iter()
        .flat_map(|f| f["samples"].as_array().expect("samples"))
        .find(|s| s["name"] == name && s["labels"] == labels)
        .and_then(|s| s["value"].as_f64())
        .unwrap_or_else(|| panic!("no sample {name}{labels} in {}", Value::from(families.to_vec())))
}

fn family<'a>(families: &'a [Value], name: &str) -> &'a Value {
    families.iter().find(|f| f["name"] == name).unwrap_or_else(|| {
        let names: Vec<&Value> = families.iter().map(|f| &f["name"]).collect();
        panic!("no metric family {name}; have {names:?}")
    })
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    require_prometheus_client();
    let server = Server::start(&["--threads", "2"]);
    let mut sse_subs: Vec<StreamClient> = (0..3).map(|_| sse(&server, "/sub/metered")).collect();
    let mut ndjson = stream(&server, "/sub/metered?transport=stream");
    const HTTP: usize = 4;
    const RESP: usize = 3;
    for i in 0..HTTP {
        server.publish_id("metered", &format!("h{i}"));
    }
    let mut resp = HttpConn::new(server.resp);
    for i in 0..RESP {
        resp.send(format!("PUBLISH metered r{i}\r\n").as_bytes());
        assert_eq!(resp.read_until(b"\r\n"), b":4\r\n", "RESP publish #{i} reaches the four subscribers");
    }
    for sub in &mut sse_subs {
        for _ in 0..HTTP + RESP {
            next_sse(sub, "SSE subscriber");
        }
    }
    for _ in 0..HTTP + RESP {
        next_json(&mut ndjson, "NDJSON subscriber");
    }
    // One SSE subscriber leaves: the gauge follows.
    drop(sse_subs.pop());
    let deliveries = (HTTP + RESP) * 4;
    wait_until("/stats to show 2 SSE subscribers, every delivery and some latency samples", || {
        let s = stats(&server);
        s["connections"]["subscribers_by_transport"]["sse"] == 2
            && s["deliveries"] == deliveries
            && s["delivery_latency_us"]["count"].as_u64() > Some(0)
    });

    let resp = get(server.ingest, "/metrics");
    assert_eq!(resp.status, 200, "GET /metrics: {}", resp.text());
    let content_type = resp.header("content-type").unwrap_or("");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "Content-Type {content_type:?}");
    let text = resp.text();
    let families = parse_metrics(&text);

    for f in &families {
        assert!(!f["help"].as_str().unwrap_or("").is_empty(), "no HELP for {}", f["name"]);
        assert!(
            f["name"].as_str().unwrap_or("").starts_with("halley_"),
            "family {} lacks the prefix",
            f["name"]
        );
    }
    let kinds = [
        ("halley_publishes", "counter"),
        ("halley_deliveries", "counter"),
        ("halley_requests", "counter"),
        ("halley_subscribers", "gauge"),
        ("halley_connections", "gauge"),
        ("halley_delivery_latency_seconds", "summary"),
    ];
    for (name, kind) in kinds {
        assert_eq!(family(&families, name)["type"], kind, "type of {name}");
    }
    let none = json!({});
    let total = (HTTP + RESP) as f64;
    assert_eq!(sample(&families, "halley_publishes_total", none.clone()), total, "halley_publishes_total");
    assert_eq!(sample(&families, "halley_deliveries_total", none.clone()), deliveries as f64);
    assert!(
        sample(&families, "halley_connections", none.clone()) >= 4.0,
        "3 subscribers + the RESP publisher"
    );
    let by_transport = [("sse", 2.0), ("stream", 1.0), ("longpoll", 0.0), ("jsonp", 0.0)];
    for (transport, want) in by_transport {
        let got = sample(&families, "halley_subscribers", json!({ "transport": transport }));
        assert_eq!(got, want, "halley_subscribers{{transport=\"{transport}\"}}");
    }
    for transport in ["ws", "iframe", "multipart"] {
        sample(&families, "halley_subscribers", json!({ "transport": transport }));
    }

    // The latency summary: quantiles, in order, plus _sum and _count.
    let quantiles: Vec<f64> = ["0.5", "0.9", "0.99", "0.999", "1"]
        .iter()
        .map(|q| sample(&families, "halley_delivery_latency_seconds", json!({ "quantile": q })))
        .collect();
    assert!(quantiles.windows(2).all(|w| w[0] <= w[1]), "quantiles not increasing: {quantiles:?}");
    assert!(quantiles.iter().all(|q| (0.0..60.0).contains(q)), "latencies in seconds: {quantiles:?}");
    let count = sample(&families, "halley_delivery_latency_seconds_count", none.clone());
    assert!(count >= 1.0 && count <= deliveries as f64, "latency _count {count}, deliveries {deliveries}");
    assert!(sample(&families, "halley_delivery_latency_seconds_sum", none) >= 0.0);
}

// ---------------------------------------------------------------------------
// /stats schema

#[derive(Debug, Clone, Copy, PartialEq)]
enum Type {
    Object,
    Array,
    /// A non-negative integer.
    Count,
}

/// Every key of `/stats` (as in src/server/report.rs) and its JSON type;
/// `loops` entries are checked through `/loops/0`.
const STATS_SCHEMA: &[(&str, Type)] = &[
    ("/uptime_secs", Type::Count),
    ("/connections", Type::Object),
    ("/connections/open", Type::Count),
    ("/connections/accepted", Type::Count),
    ("/connections/refused", Type::Count),
    ("/connections/subscribers_by_transport", Type::Object),
    ("/connections/subscribers_by_transport/longpoll", Type::Count),
    ("/connections/subscribers_by_transport/jsonp", Type::Count),
    ("/connections/subscribers_by_transport/sse", Type::Count),
    ("/connections/subscribers_by_transport/stream", Type::Count),
    ("/connections/subscribers_by_transport/iframe", Type::Count),
    ("/connections/subscribers_by_transport/multipart", Type::Count),
    ("/connections/subscribers_by_transport/ws", Type::Count),
    ("/connections/subscribers_by_transport/bayeux", Type::Count),
    ("/connections/subscribers_by_transport/pushlet", Type::Count),
    ("/requests", Type::Count),
    ("/channels", Type::Count),
    ("/retained_messages", Type::Count),
    ("/publishes", Type::Count),
    ("/batches", Type::Count),
    ("/deliveries", Type::Count),
    ("/slow_consumers_dropped", Type::Count),
    ("/bytes_out", Type::Count),
    ("/h2", Type::Object),
    ("/h2/connections", Type::Count),
    ("/h2/streams", Type::Count),
    ("/h2/streams_reset", Type::Count),
    ("/h2/client_resets", Type::Count),
    ("/h2/connection_errors", Type::Count),
    ("/queues", Type::Object),
    ("/queues/publish_depth", Type::Count),
    ("/queues/publish_capacity", Type::Count),
    ("/delivery_latency_us", Type::Object),
    ("/delivery_latency_us/count", Type::Count),
    ("/delivery_latency_us/quantiles", Type::Object),
    ("/delivery_latency_us/quantiles/p50", Type::Count),
    ("/delivery_latency_us/quantiles/p90", Type::Count),
    ("/delivery_latency_us/quantiles/p99", Type::Count),
    ("/delivery_latency_us/quantiles/p999", Type::Count),
    ("/delivery_latency_us/quantiles/max", Type::Count),
    ("/loops", Type::Array),
    ("/loops/0", Type::Object),
    ("/loops/0/loop", Type::Count),
    ("/loops/0/connections", Type::Count),
    ("/loops/0/subscribers", Type::Count),
    ("/loops/0/deliveries", Type::Count),
];

fn type_of(v: &Value) -> Option<Type> {
    match v {
        Value::Object(_) => Some(Type::Object),
        Value::Array(_) => Some(Type::Array),
        Value::Number(n) if n.is_u64() => Some(Type::Count),
        _ => None,
    }
}

/// Every JSON pointer in `v`, with every array index written as 0 (the
/// entries of an array share one shape).
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match v {
        Value::Object(map) => map.iter().map(|(k, child)| (format!("{at}/{k}"), child)).collect(),
        Value::Array(items) => items.iter().map(|child| (format!("{at}/0"), child)).collect(),
        _ => Vec::new(),
    };
    for (pointer, child) in children {
        pointers(child, &pointer, out);
        out.push(pointer);
    }
}

#[test]
fn stats_match_the_schema_and_the_traffic() {
    let server = Server::start(&["--threads", "2", "--publish-queue", "512"]);
    let mut subs: Vec<StreamClient> = (0..2).map(|_| sse(&server, "/sub/counted")).collect();
    let _ndjson = stream(&server, "/sub/counted?transport=stream");
    const N: usize = 5;
    for i in 0..N {
        server.publish_id("counted", &format!("m{i}"));
    }
    for sub in &mut subs {
        for _ in 0..N {
            next_sse(sub, "SSE subscriber");
        }
    }
    wait_until("/stats to count every delivery", || stats(&server)["deliveries"] == N * 3);
    let s = stats(&server);

    for (pointer, want) in STATS_SCHEMA {
        let value = s.pointer(pointer).unwrap_or_else(|| panic!("/stats lacks {pointer}: {s}"));
        assert_eq!(type_of(value), Some(*want), "/stats {pointer} = {value}: want {want:?}");
    }
    let mut found = Vec::new();
    pointers(&s, "", &mut found);
    for pointer in found {
        assert!(
            STATS_SCHEMA.iter().any(|(p, _)| *p == pointer),
            "/stats has {pointer} (array indexes as 0), which the schema does not list: {s}"
        );
    }

    // The values follow the traffic.
    assert_eq!(s["publishes"], N, "{s}");
    assert_eq!(s["deliveries"], N * 3, "{s}");
    assert_eq!(s["connections"]["subscribers_by_transport"]["sse"], 2, "{s}");
    assert_eq!(s["connections"]["subscribers_by_transport"]["stream"], 1, "{s}");
    assert_eq!(s["queues"]["publish_capacity"], 512, "{s}");
    assert!(s["channels"].as_u64() >= Some(1), "{s}");
    let loops = s["loops"].as_array().expect("loops");
    assert_eq!(loops.len(), 2, "one entry per event loop (--threads 2): {s}");
    for (i, l) in loops.iter().enumerate() {
        assert_eq!(l["loop"], i, "loop numbers: {s}");
    }
    let sum = |field: &str| loops.iter().map(|l| l[field].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("subscribers"), 3, "per-loop subscribers add up: {s}");
    assert_eq!(sum("deliveries"), (N * 3) as u64, "per-loop deliveries add up: {s}");
    // Connections are counted per loop as they open and close, and earlier
    // /stats connections may still be closing: only a lower bound is exact.
    let floor = 4; // three subscribers and this request
    assert!(sum("connections") >= floor, "per-loop connections: {s}");
    assert!(s["connections"]["open"].as_u64() >= Some(floor), "open connections: {s}");
    let q = &s["delivery_latency_us"]["quantiles"];
    let qs: Vec<u64> = ["p50", "p90", "p99", "p999", "max"].iter().map(|k| q[k].as_u64().unwrap()).collect();
    assert!(qs.windows(2).all(|w| w[0] <= w[1]), "quantiles in order: {s}");
}

// ---------------------------------------------------------------------------
// --print-config

fn halley(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_halley"));
    cmd.args(args).env_remove("HALLEY_LOG");
    let out = run(&mut cmd, Vec::new());
    assert!(out.status.success(), "halley {args:?}:\n{}", show(&out));
    String::from_utf8(out.stdout).expect("UTF-8 config")
}

/// A config file removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("halley-ops-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn lines_differing(a: &str, b: &str) -> Vec<(String, String)> {
    a.lines().zip(b.lines()).filter(|(x, y)| x != y).map(|(x, y)| (x.to_string(), y.to_string())).collect()
}

#[test]
fn print_config_round_trips_through_config() {
    let defaults = halley(&["--print-config"]);
    let table: toml::Table =
        defaults.parse().unwrap_or_else(|e| panic!("--print-config is not TOML ({e}):\n{defaults}"));
    assert_eq!(table.get("history_size").and_then(|v| v.as_integer()), Some(100), "{defaults}");

    let file = TempFile::new("defaults", &defaults);
    let again = halley(&["--config", file.path(), "--print-config"]);
    assert_eq!(again, defaults, "--config of --print-config's output prints the same");

    let seven = halley(&["--history-size", "7", "--print-config"]);
    assert_eq!(
        lines_differing(&defaults, &seven),
        [("history_size = 100".to_string(), "history_size = 7".to_string())],
        "--history-size 7 changes only that line:\n{seven}"
    );

    // A config far from the defaults round-trips too, and flags still win.
    let custom = halley(&[
        "--history-size",
        "7",
        "--cors-origins",
        "https://a.example, https://b.example",
        "--demo-publish=off",
        "--batch-window-us",
        "250",
        "--log-level",
        "debug",
        "--print-config",
    ]);
    let file = TempFile::new("custom", &custom);
    assert_eq!(halley(&["--config", file.path(), "--print-config"]), custom, "custom config round trip");
    let overridden = halley(&["--config", file.path(), "--history-size", "9", "--print-config"]);
    assert_eq!(
        lines_differing(&custom, &overridden),
        [("history_size = 7".to_string(), "history_size = 9".to_string())],
        "a flag wins over the file:\n{overridden}"
    );
}
