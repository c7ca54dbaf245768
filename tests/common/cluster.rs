//! Helpers for several halley nodes on one Redis (tests/backplane.rs):
//! starting nodes with `--redis`, publishing by every path with the answer
//! and its timing, subscribers that survive their node dying (an SSE reader
//! and a long-poll loop that report the end instead of failing), and
//! comparing what each subscriber got.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{esc, format_request, get, header, request, Dechunk, HttpConn, Response};
use super::redis_server::RedisServer;
use super::resp::publish_cmd;
use super::stream::SseEvent;
use super::{bayeux, id_key, Server, DEADLINE};

/// One delivered message: its id and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub id: String,
    pub data: String,
}

impl Msg {
    /// From an envelope `{"id","channel","data"}` (stream, ws, long-poll).
    pub fn from_envelope(v: &Value, what: &str) -> Msg {
        let field = |name: &str| -> String {
            v[name].as_str().unwrap_or_else(|| panic!("{what}: envelope without {name}: {v}")).to_string()
        };
        Msg { id: field("id"), data: field("data") }
    }

    pub fn from_sse(ev: &SseEvent, what: &str) -> Msg {
        let id = ev.id.clone().unwrap_or_else(|| panic!("{what}: SSE event without id: {ev:?}"));
        Msg { id, data: ev.data.clone() }
    }
}

/// Starts one halley node on `redis` (plus `extra` flags) and waits until
/// it is ready, as a load balancer's health check would: `/healthz` 200 and
/// not degraded (its backplane connections are up).
pub fn node(redis: &RedisServer, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    wait_ready(&server);
    server
}

/// Waits until `/healthz` on `server` is 200 and does not say degraded.
pub fn wait_ready(server: &Server) {
    let start = Instant::now();
    loop {
        let resp = request(server.ingest, "GET", "/healthz", &[], b"");
        if resp.status == 200 && !resp.text().contains("degraded") {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "node {} not ready within {DEADLINE:?}: /healthz {} {:?}\n{}",
            server.ingest,
            resp.status,
            resp.text(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `n` halley nodes on `redis`.
pub fn nodes(redis: &RedisServer, n: usize, extra: &[&str]) -> Vec<Server> {
    (0..n).map(|_| node(redis, extra)).collect()
}

/// `POST /pub/{channel}` on a fresh connection: the answer, whatever it is,
/// and how long it took.
pub fn try_publish(server: &Server, channel: &str, data: &str) -> (Response, Duration) {
    let start = Instant::now();
    let resp = request(server.ingest, "POST", &format!("/pub/{channel}"), &[], data.as_bytes());
    (resp, start.elapsed())
}

/// `POST /pub` with NDJSON lines `(channel, data)`; asserts 200 and returns the ids.
pub fn publish_ndjson(server: &Server, lines: &[(&str, &str)]) -> Vec<String> {
    let body: String = lines
        .iter()
        .map(|(channel, data)| format!("{}\n", json!({"channel": channel, "data": data})))
        .collect();
    let resp = request(server.ingest, "POST", "/pub", &[], body.as_bytes());
    assert_eq!(resp.status, 200, "NDJSON POST /pub {body:?} on {}: {}", server.ingest, resp.text());
    let json = resp.json();
    let ids: Vec<String> = json["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("NDJSON answer without ids: {json}"))
        .iter()
        .map(|id| id.as_str().unwrap_or_else(|| panic!("id not a string in {json}")).to_string())
        .collect();
    assert_eq!(ids.len(), lines.len(), "one id per NDJSON line: {json}");
    ids
}

/// `PUBLISH channel data` on the RESP port; returns the reply line.
pub fn resp_publish(server: &Server, channel: &str, data: &str) -> String {
    let mut conn = HttpConn::new(server.resp);
    conn.what = format!("RESP PUBLISH {channel} {data} on {}", server.resp);
    conn.send(&publish_cmd(channel, data));
    conn.resp_line()
}

/// Asserts a `ms-seq` id; returns its key.
pub fn assert_stream_id(id: &str, what: &str) -> (u64, u64) {
    let ok = id.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.bytes().all(|b| b.is_ascii_digit())
            && seq.bytes().all(|b| b.is_ascii_digit())
    });
    assert!(ok, "{what}: id {id:?} is not a Redis stream id `<ms>-<seq>`");
    id_key(id)
}

/// Asserts `got` is exactly `want_data` in order (payloads), with strictly
/// increasing stream ids; returns the ids.
pub fn assert_sequence(what: &str, got: &[Msg], want_data: &[String]) -> Vec<String> {
    let datas: Vec<&str> = got.iter().map(|m| m.data.as_str()).collect();
    if datas != want_data {
        let first =
            datas.iter().zip(want_data).position(|(a, b)| a != b).unwrap_or(datas.len().min(want_data.len()));
        panic!(
            "{what}: got {} messages, want {}; first difference at #{first}: got {:?} want {:?}\n\
             got:  {datas:?}\nwant: {want_data:?}",
            datas.len(),
            want_data.len(),
            got.get(first),
            want_data.get(first)
        );
    }
    let mut last = (0, 0);
    for m in got {
        let key = assert_stream_id(&m.id, what);
        assert!(key > last, "{what}: ids not strictly increasing at {m:?}; all: {got:?}");
        last = key;
    }
    got.iter().map(|m| m.id.clone()).collect()
}

/// An SSE subscriber that reads chunk by chunk and reports the end of its
/// stream (the chunked terminator, EOF or a reset: its node may die) as
/// `None` instead of failing. Comment lines are kept in `comments`.
pub struct SseFeed {
    pub conn: HttpConn,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    dechunk: Dechunk,
    text: String,
    /// `: …` comment lines seen so far (heartbeats are empty ones).
    pub comments: Vec<String>,
    /// The stream ended (terminator, EOF or reset).
    pub ended: bool,
    /// It ended with the chunked terminator (a clean end by the server).
    pub clean_end: bool,
}

impl SseFeed {
    /// `GET path` with `Accept: text/event-stream` and extra headers; reads the head.
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseFeed {
        let mut all = vec![("Accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let mut conn = HttpConn::new(addr);
        conn.what = format!("SSE {path} on {addr}");
        conn.send(&format_request("GET", path, &all, b""));
        let (status, headers) = conn.head();
        SseFeed {
            conn,
            status,
            headers,
            dechunk: Dechunk::default(),
            text: String::new(),
            comments: Vec::new(),
            ended: false,
            clean_end: false,
        }
    }

    /// Opens and asserts a 200 SSE head.
    pub fn open_ok(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseFeed {
        let feed = SseFeed::open(addr, path, headers);
        assert_eq!(feed.status, 200, "{}: status; headers {:?}", feed.conn.what, feed.headers);
        feed
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn what(&self) -> &str {
        &self.conn.what
    }

    /// The next event with data; None once the stream has ended. Panics
    /// when nothing arrives within the read timeout.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(i) = self.text.find("\n\n") {
                let block: String = self.text.drain(..i + 2).collect();
                if let Some(ev) = self.parse(&block) {
                    return Some(ev);
                }
            }
            if self.ended {
                return None;
            }
            match self.dechunk.next(&mut self.conn.buf, &self.conn.what) {
                Some(Some(data)) => self.text.push_str(
                    std::str::from_utf8(&data)
                        .unwrap_or_else(|_| panic!("{}: chunk not UTF-8", self.conn.what)),
                ),
                Some(None) => {
                    self.ended = true;
                    self.clean_end = true;
                }
                None => {
                    if !self.conn.fill() {
                        self.ended = true;
                    }
                }
            }
        }
    }

    fn parse(&mut self, block: &str) -> Option<SseEvent> {
        let mut ev = SseEvent::default();
        let mut data: Vec<&str> = Vec::new();
        for line in block.split('\n') {
            if let Some(v) = line.strip_prefix("id: ") {
                ev.id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("event: ") {
                ev.event = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v);
            } else if let Some(v) = line.strip_prefix(':') {
                self.comments.push(v.trim().to_string());
            }
        }
        if data.is_empty() {
            return None;
        }
        ev.data = data.join("\n");
        Some(ev)
    }

    /// Reads `n` messages; fails if the stream ends first or the deadline passes.
    pub fn take(&mut self, n: usize, ctx: &str) -> Vec<Msg> {
        let start = Instant::now();
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            assert!(
                start.elapsed() < DEADLINE,
                "{} ({ctx}): only {} of {n} messages: {got:?}",
                self.what(),
                got.len()
            );
            match self.next_event() {
                Some(ev) => got.push(Msg::from_sse(&ev, ctx)),
                None => panic!(
                    "{} ({ctx}): stream ended after {} of {n} messages: {got:?}; comments {:?}",
                    self.what(),
                    got.len(),
                    self.comments
                ),
            }
        }
        got
    }

    /// Reads messages until one has payload `last` (included); fails if the
    /// stream ends first or the deadline passes.
    pub fn until_data(&mut self, last: &str, ctx: &str) -> Vec<Msg> {
        let start = Instant::now();
        let mut got = Vec::new();
        loop {
            assert!(
                start.elapsed() < DEADLINE,
                "{} ({ctx}): no {last:?} within {DEADLINE:?}; got {got:?}",
                self.what()
            );
            match self.next_event() {
                Some(ev) => {
                    let msg = Msg::from_sse(&ev, ctx);
                    let done = msg.data == last;
                    got.push(msg);
                    if done {
                        return got;
                    }
                }
                None => panic!("{} ({ctx}): stream ended before {last:?}; got {got:?}", self.what()),
            }
        }
    }

    /// Reads until the stream ends (within the deadline); returns the
    /// messages that came first.
    pub fn drain_to_end(&mut self, ctx: &str) -> Vec<Msg> {
        let mut got = Vec::new();
        while let Some(ev) = self.next_event() {
            got.push(Msg::from_sse(&ev, ctx));
        }
        got
    }
}

/// A long-poll loop: polls `/sub/{channel}?last_id=…` on `addr` until
/// `n` messages have come (or the deadline passes), following `last_id`.
pub fn longpoll_collect(addr: SocketAddr, channel: &str, from: &str, n: usize, what: &str) -> Vec<Msg> {
    let start = Instant::now();
    let mut last = from.to_string();
    let mut got = Vec::new();
    while got.len() < n {
        assert!(start.elapsed() < DEADLINE, "{what}: only {} of {n} messages: {got:?}", got.len());
        let path = format!("/sub/{channel}?transport=longpoll&timeout=5&last_id={last}");
        let resp = request(addr, "GET", &path, &[], b"");
        assert_eq!(resp.status, 200, "{what}: GET {path}: {}", resp.text());
        let body = resp.json();
        assert_ne!(body["gap"], true, "{what}: unexpected gap polling {path}: {body}");
        for m in body["messages"].as_array().unwrap_or_else(|| panic!("{what}: no messages in {body}")) {
            got.push(Msg::from_envelope(m, what));
        }
        last = body["last_id"].as_str().unwrap_or_else(|| panic!("{what}: no last_id in {body}")).to_string();
    }
    got
}

/// `GET path` on the ingest port; the text body (any status).
pub fn ingest_text(server: &Server, path: &str) -> (u16, String) {
    let resp = request(server.ingest, "GET", path, &[], b"");
    (resp.status, resp.text())
}

/// The value of a Prometheus sample `name` (no labels) in a /metrics text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(str::trim))
        .and_then(|v| v.parse().ok())
}

/// Describes a response for failure messages.
pub fn describe(resp: &Response) -> String {
    format!("{} {:?} {}", resp.status, resp.headers, esc(&resp.body))
}

// Bayeux over HTTP (raw JSON), for sessions on several nodes.

/// One Bayeux message and its one reply.
pub fn bayeux_one(server: &Server, message: Value) -> Value {
    let replies = bayeux(server, &json!([message]));
    assert_eq!(replies.len(), 1, "one reply to {message}: {replies:?}");
    replies.into_iter().next().unwrap()
}

/// A long-polling session subscribed to `subscription`, after its first
/// (empty) connect.
pub fn bayeux_session(server: &Server, subscription: &str) -> String {
    let hs = bayeux_one(
        server,
        json!({"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"], "id": "hs"}),
    );
    assert_eq!(hs["successful"], true, "handshake: {hs}");
    let cid = hs["clientId"].as_str().expect("clientId").to_string();
    let sub = bayeux_one(
        server,
        json!({"channel": "/meta/subscribe", "clientId": cid, "subscription": subscription, "id": "sub"}),
    );
    assert_eq!(sub["successful"], true, "subscribe: {sub}");
    let first = bayeux_connect(server, &cid);
    assert!(first.is_empty(), "deliveries on the first connect: {first:?}");
    cid
}

/// One `/meta/connect` (held up to `--bayeux-timeout-ms`); its deliveries.
pub fn bayeux_connect(server: &Server, cid: &str) -> Vec<Value> {
    let answer = bayeux(
        server,
        &json!([{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling", "id": "c"}]),
    );
    let mut deliveries = Vec::new();
    for m in answer {
        if m["channel"] == "/meta/connect" {
            assert_eq!(m["successful"], true, "connect: {m}");
        } else {
            deliveries.push(m);
        }
    }
    deliveries
}

/// A Pushlet request in the xml-strict format; its events' attributes.
pub fn pushlet(addr: SocketAddr, params: &[(&str, &str)]) -> Vec<std::collections::HashMap<String, String>> {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", v.replace('/', "%2F"))).collect();
    let path = format!("/pushlet/pushlet.srv?p_format=xml-strict&{}", query.join("&"));
    let resp = get(addr, &path);
    assert_eq!(resp.status, 200, "GET {path}: {}", describe(&resp));
    let text = resp.text();
    let doc =
        roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("GET {path}: not XML ({e}): {text}"));
    doc.root_element()
        .children()
        .filter(|e| e.has_tag_name("event"))
        .map(|e| e.attributes().map(|a| (a.name().to_string(), a.value().to_string())).collect())
        .collect()
}
