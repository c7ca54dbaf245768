//! The live dashboard against the real binary: `GET /dashboard/stream`
//! samples checked against their schema while a publisher runs (the busy
//! channel among the busiest, deliveries per second above zero), the stream
//! resumes and starts with retained samples, nothing is sampled while nobody
//! watches, the internal stats channel is out of every client's reach, the
//! page is self-contained, and the ingest key guards both routes.

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Type {
    Object,
    Array,
    /// A whole number.
    Count,
    /// Any number (rates carry two decimals).
    Number,
    /// A number, or null when there is nothing to measure yet.
    NumberOrNull,
    Text,
    /// The backplane's state: null while there is none; its fields are its own.
    ObjectOrNull,
}

const SAMPLE_SCHEMA: &[(&str, Type)] = &[
    ("/t", Type::Count),
    ("/uptime_secs", Type::Count),
    ("/connections", Type::Object),
    ("/connections/open", Type::Count),
    ("/connections/accepted_per_sec", Type::NumberOrNull),
    ("/connections/refused_per_sec", Type::NumberOrNull),
    ("/subscribers", Type::Object),
    ("/subscribers/total", Type::Count),
    ("/subscribers/by_transport", Type::Object),
    ("/subscribers/by_transport/longpoll", Type::Count),
    ("/subscribers/by_transport/jsonp", Type::Count),
    ("/subscribers/by_transport/sse", Type::Count),
    ("/subscribers/by_transport/stream", Type::Count),
    ("/subscribers/by_transport/iframe", Type::Count),
    ("/subscribers/by_transport/multipart", Type::Count),
    ("/subscribers/by_transport/ws", Type::Count),
    ("/subscribers/by_transport/bayeux", Type::Count),
    ("/subscribers/by_transport/pushlet", Type::Count),
    ("/channels", Type::Count),
    ("/publishes_per_sec", Type::NumberOrNull),
    ("/deliveries_per_sec", Type::NumberOrNull),
    ("/bytes_out_per_sec", Type::NumberOrNull),
    ("/latency_us", Type::Object),
    ("/latency_us/p50", Type::NumberOrNull),
    ("/latency_us/p99", Type::NumberOrNull),
    ("/latency_us/max", Type::NumberOrNull),
    ("/latency_us/count", Type::Count),
    ("/publish_queue", Type::Object),
    ("/publish_queue/depth", Type::Count),
    ("/publish_queue/capacity", Type::Count),
    ("/slow_consumers", Type::Object),
    ("/slow_consumers/total", Type::Count),
    ("/slow_consumers/per_sec", Type::NumberOrNull),
    ("/rss_bytes", Type::Count),
    ("/busiest", Type::Array),
    ("/busiest/0", Type::Object),
    ("/busiest/0/channel", Type::Text),
    ("/busiest/0/subscribers", Type::Count),
    ("/busiest/0/publishes_per_sec", Type::Number),
    ("/busiest/0/deliveries_per_sec", Type::Number),
    ("/node", Type::Object),
    ("/node/version", Type::Text),
    ("/node/pid", Type::Count),
    ("/node/started_unix_ms", Type::Count),
    ("/node/threads", Type::Count),
    ("/node/public", Type::Text),
    ("/node/ingest", Type::Text),
    ("/node/resp", Type::Text),
    ("/node/settings", Type::Object),
    ("/backplane", Type::ObjectOrNull),
];

fn has_type(v: &Value, want: Type) -> bool {
    match want {
        Type::Object => v.is_object(),
        Type::Array => v.is_array(),
        Type::Count => v.is_u64(),
        Type::Number => v.is_number(),
        Type::NumberOrNull => v.is_number() || v.is_null(),
        Type::Text => v.is_string(),
        Type::ObjectOrNull => v.is_object() || v.is_null(),
    }
}

/// Every JSON pointer in `v` (array indexes as 0), not descending into the
/// objects whose fields are free (settings, the backplane's state).
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    if at == "/node/settings" || at == "/backplane" {
        return;
    }
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

fn check_schema(sample: &Value) {
    for (pointer, want) in SAMPLE_SCHEMA {
        if pointer.starts_with("/busiest/") && sample["busiest"].as_array().is_some_and(|b| b.is_empty()) {
            continue;
        }
        let value = sample.pointer(pointer).unwrap_or_else(|| panic!("sample lacks {pointer}: {sample}"));
        assert!(has_type(value, *want), "sample {pointer} = {value}: want {want:?}");
    }
    let mut found = Vec::new();
    pointers(sample, "", &mut found);
    for pointer in found {
        assert!(
            SAMPLE_SCHEMA.iter().any(|(p, _)| *p == pointer),
            "sample has {pointer}, which the schema does not list: {sample}"
        );
    }
}

fn stats_stream(server: &Server, headers: &[(&str, &str)]) -> StreamClient {
    let sub = StreamClient::open(server.ingest, "/dashboard/stream", headers);
    assert_eq!(sub.status, 200, "GET /dashboard/stream: headers {:?}", sub.headers);
    assert!(
        sub.header("content-type").is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        sub.headers
    );
    sub
}

fn next_sample(sub: &mut StreamClient) -> (String, Value) {
    let ev = sub.next_event().expect("the stats stream ended");
    let sample: Value =
        serde_json::from_str(&ev.data).unwrap_or_else(|e| panic!("sample is not JSON ({e}): {}", ev.data));
    (ev.id.expect("every sample has an id"), sample)
}

/// Publishes to `channel` every 10 ms until dropped.
struct Publisher {
    running: Arc<AtomicBool>,
}

impl Publisher {
    fn start(server: &Server, channel: &'static str) -> Publisher {
        let running = Arc::new(AtomicBool::new(true));
        let (flag, ingest) = (running.clone(), server.ingest);
        std::thread::spawn(move || {
            let mut conn = HttpConn::new(ingest);
            while flag.load(Ordering::Relaxed) {
                let resp = conn.request("POST", &format!("/pub/{channel}"), &[], b"tick");
                assert_eq!(resp.status, 200, "publish: {}", resp.text());
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Publisher { running }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

#[test]
fn samples_match_the_schema_and_show_the_busy_channel() {
    let server = Server::start(&["--threads", "2"]);
    let mut sub = StreamClient::open(server.public, "/sub/busy", &[("Accept", "text/event-stream")]);
    assert_eq!(sub.status, 200);
    let _publisher = Publisher::start(&server, "busy");
    let mut stream = stats_stream(&server, &[]);
    let start = Instant::now();
    let mut last_id = (0, 0);
    let mut seen = Vec::new();
    let busy = loop {
        assert!(start.elapsed() < DEADLINE, "no sample showed channel busy among the busiest: {seen:?}");
        let (id, sample) = next_sample(&mut stream);
        check_schema(&sample);
        assert!(id_key(&id) > last_id, "sample ids increase: {id} after {last_id:?}");
        last_id = id_key(&id);
        let busiest = sample["busiest"].as_array().cloned().unwrap_or_default();
        if let Some(entry) = busiest.iter().find(|c| c["channel"] == "busy") {
            break (sample.clone(), entry.clone());
        }
        seen.push(sample);
    };
    let (sample, entry) = busy;
    assert!(sample["deliveries_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{sample}");
    assert!(sample["publishes_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{sample}");
    assert!(sample["bytes_out_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{sample}");
    assert!(sample["rss_bytes"].as_u64().unwrap_or(0) > 1 << 20, "{sample}");
    assert_eq!(entry["subscribers"], 1, "{entry}");
    assert!(entry["deliveries_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{entry}");
    // The dashboard's own stream counts as an SSE subscriber; the internal
    // channel never shows among the busiest.
    assert!(sample["subscribers"]["by_transport"]["sse"].as_u64().unwrap_or(0) >= 2, "{sample}");
    assert!(
        sample["busiest"].as_array().unwrap().iter().all(|c| c["channel"] != "/halley/stats"),
        "{sample}"
    );
    assert_eq!(sample["node"]["ingest"], server.ingest.to_string());
    assert_eq!(sub.next_event().expect("subscriber").data, "tick");

    // A second viewer starts with the retained samples, at once.
    let mut second = stats_stream(&server, &[]);
    let (first_id, _) = next_sample(&mut second);
    assert!(id_key(&first_id) <= last_id, "a new stream starts with history: {first_id} vs {last_id:?}");
    // A resume (EventSource's Last-Event-ID) continues after its id.
    let (resume_from, _) = next_sample(&mut second);
    drop(second);
    let resumed = StreamClient::open(server.ingest, "/dashboard/stream", &[("Last-Event-ID", &resume_from)]);
    let mut resumed = resumed;
    let (next_id, _) = next_sample(&mut resumed);
    assert!(id_key(&next_id) > id_key(&resume_from), "resumed after {resume_from}, got {next_id}");
}

#[test]
fn nothing_is_sampled_while_nobody_watches() {
    let server = Server::start(&[]);
    std::thread::sleep(Duration::from_millis(2500));
    let stats = get(server.ingest, "/stats").json();
    assert_eq!(stats["publishes"], 0, "an unwatched node publishes no samples: {stats}");
    assert_eq!(stats["channels"], 0, "{stats}");

    let mut stream = stats_stream(&server, &[]);
    next_sample(&mut stream);
    drop(stream);
    // The fan-out notices the viewer left within its next housekeeping
    // (a second); a sample or two may still go out meanwhile.
    std::thread::sleep(Duration::from_millis(2500));
    let before = get(server.ingest, "/stats").json()["publishes"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let after = get(server.ingest, "/stats").json()["publishes"].as_u64().unwrap();
    assert_eq!(before, after, "samples went on after the last viewer left");
}

#[test]
fn the_stats_channel_is_out_of_clients_reach() {
    let server = Server::start(&[]);
    let mut stream = stats_stream(&server, &[]);
    next_sample(&mut stream);
    let refused = get(server.public, "/sub//halley/stats");
    assert_json_error(&refused, 400, "starts with /", "subscribing to the internal channel");
    let refused = request(server.ingest, "POST", "/pub//halley/stats", &[], b"{}");
    assert_json_error(&refused, 400, "starts with /", "publishing to the internal channel");
    let refused = request(server.ingest, "DELETE", "/pub//halley/stats", &[], b"");
    assert_json_error(&refused, 400, "starts with /", "deleting the internal channel");
    let mut resp = HttpConn::new(server.resp);
    let answer = resp.resp_call(&["PUBLISH", "/halley/stats", "x"]);
    assert!(answer.starts_with("-ERR"), "RESP publish to the internal channel: {answer}");
    // The public port has no dashboard.
    assert_eq!(get(server.public, "/dashboard").status, 404);
    assert_eq!(get(server.public, "/dashboard/stream").status, 404);
}

#[test]
fn the_page_is_self_contained() {
    let server = Server::start(&[]);
    let page = get(server.ingest, "/dashboard");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{:?}", page.headers);
    let html = page.text();
    assert!(html.contains("new EventSource(\"/dashboard/stream\")"), "the page subscribes to the stream");
    for needle in ["http://", "https://", "src=\"//", "href=\"//", "@import", "url("] {
        assert!(!html.contains(needle), "the page refers to another host or file: {needle}");
    }
    assert!(html.contains("id=\"backplane\""), "a place for the backplane's state");
}

#[test]
fn the_ingest_key_guards_the_dashboard() {
    let server = Server::start(&["--ingest-key", "s3cret"]);
    let refused = get(server.ingest, "/dashboard");
    assert_eq!(refused.status, 401);
    assert!(
        refused.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")),
        "a browser is asked for credentials: {:?}",
        refused.headers
    );
    assert_eq!(get(server.ingest, "/dashboard/stream").status, 401);
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ops:s3cret"));
    let page = request(server.ingest, "GET", "/dashboard", &[("Authorization", &basic)], b"");
    assert_eq!(page.status, 200, "{}", page.text());
    let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ops:nope"));
    assert_eq!(request(server.ingest, "GET", "/dashboard", &[("Authorization", &wrong)], b"").status, 401);
    let mut stream = stats_stream(&server, &[("Authorization", &basic)]);
    check_schema(&next_sample(&mut stream).1);
    let bearer = request(server.ingest, "GET", "/dashboard", &[("Authorization", "Bearer s3cret")], b"");
    assert_eq!(bearer.status, 200);
}
