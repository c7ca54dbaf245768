//! WebSocket (RFC 6455) through real sockets against the real binary, using the
//! raw-socket client of tests/common/ws.rs: the opening handshake and
//! its refusals, delivery as text frames, subscribe/unsubscribe commands,
//! resume after a dropped connection, control frames and the heartbeat, every
//! framing rule a client can break (with the close code it earns), and the
//! close frame on graceful shutdown.
//!
//! The client masks every frame with a fresh random-ish key (unless a test
//! wants an unmasked one) and checks every server frame it reads: unmasked,
//! no reserved bits, a known opcode, the shortest length form, final, and
//! control frames of at most 125 bytes.

mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Wire constants (RFC 6455 §5.2, §1.3).

/// The RFC 6455 §1.3 example key and the accept value it must produce.
const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The largest client message halley accepts (docs/api.md: "at most 64 KiB").
const MAX_CLIENT_PAYLOAD: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Client frames.

/// A masked frame with a fresh key and the shortest length form.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    encode(first, payload, Some(Rng::new().mask()), Len::Minimal)
}

/// A JSON command padded with whitespace (inside the object, before `}`) to
/// exactly `total` bytes.
fn padded_command(command: &str, total: usize) -> String {
    let body = command.strip_suffix('}').expect("command is a JSON object");
    assert!(body.len() < total, "{command} is longer than {total}");
    format!("{body}{}}}", " ".repeat(total - body.len() - 1))
}

// ---------------------------------------------------------------------------
// Server frames and the client.

/// One delivered message.
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    id: String,
    channel: String,
    data: String,
    event: Option<String>,
}

/// Parses an envelope, refusing anything that is not exactly
/// `{"id","channel","data"[,"event"]}` with string values.
fn envelope(v: &Value, ctx: &str) -> Msg {
    let obj = v.as_object().unwrap_or_else(|| panic!("{ctx}: envelope is not an object: {v}"));
    for key in obj.keys() {
        assert!(
            ["id", "channel", "data", "event"].contains(&key.as_str()),
            "{ctx}: unexpected field {key:?} in envelope {v}"
        );
    }
    let field = |name: &str| -> String {
        v[name].as_str().unwrap_or_else(|| panic!("{ctx}: envelope without string {name:?}: {v}")).to_string()
    };
    let event = obj
        .get("event")
        .map(|e| e.as_str().unwrap_or_else(|| panic!("{ctx}: event is not a string in {v}")).to_string());
    Msg { id: field("id"), channel: field("channel"), data: field("data"), event }
}

fn assert_strictly_increasing(ctx: &str, msgs: &[Msg]) {
    for pair in msgs.windows(2) {
        assert!(
            id_key(&pair[0].id) < id_key(&pair[1].id),
            "{ctx}: ids not strictly increasing: {:?} then {:?}\nall ids: {:?}",
            pair[0],
            pair[1],
            msgs.iter().map(|m| &m.id).collect::<Vec<_>>()
        );
    }
}

/// Asserts `got` equals `want`, message for message, with a readable diff.
fn assert_same_sequence(ctx: &str, got: &[Msg], want: &[Msg]) {
    if got != want {
        let first_diff = got.iter().zip(want).position(|(g, w)| g != w);
        let short = |v: &[Msg]| v.iter().map(|m| format!("{}:{}", m.channel, m.id)).collect::<Vec<_>>();
        panic!(
            "{ctx}: delivered sequence differs from the published one\n  got {} messages, want {}\n  \
             first difference at index {first_diff:?}: got {:?}, want {:?}\n  got:  {:?}\n  want: {:?}",
            got.len(),
            want.len(),
            first_diff.and_then(|i| got.get(i)),
            first_diff.and_then(|i| want.get(i)),
            short(got),
            short(want),
        );
    }
}

/// Publishes through the ingest port (usable from any thread).
fn publish_at(ingest: SocketAddr, channel: &str, data: &str) -> Msg {
    publish_event(ingest, channel, data, None)
}

fn publish_event(ingest: SocketAddr, channel: &str, data: &str, event: Option<&str>) -> Msg {
    let path = match event {
        Some(e) => format!("/pub/{channel}?event={e}"),
        None => format!("/pub/{channel}"),
    };
    let resp = request(ingest, "POST", &path, &[], data.as_bytes());
    assert_eq!(resp.status, 200, "POST {path}: {}", resp.text());
    let id = resp.json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("POST {path}: no id: {}", resp.text()))
        .to_string();
    Msg { id, channel: channel.to_string(), data: data.to_string(), event: event.map(String::from) }
}

/// The envelopes a raw client reads (the client itself is `common::ws`).
impl Ws {
    fn next_envelope(&mut self, ctx: &str) -> Msg {
        let v = self.next_json(ctx);
        envelope(&v, &format!("{}: {ctx}", self.what()))
    }

    fn read_envelopes(&mut self, n: usize, ctx: &str) -> Vec<Msg> {
        (0..n).map(|i| self.next_envelope(&format!("{ctx} (message {} of {n})", i + 1))).collect()
    }
}

// ---------------------------------------------------------------------------
// 1. The opening handshake.

#[test]
fn handshake_with_the_rfc_example_key_gets_the_rfc_accept_value() {
    let server = Server::start(&[]);
    assert_eq!(accept_for(RFC_KEY), RFC_ACCEPT, "the test's own accept computation");
    let mut ws =
        Ws::open_raw(server.public, "/sub/a", &upgrade_request("/sub/a", RFC_KEY, &[]), RFC_KEY, Rng::new());
    assert_eq!(ws.header("sec-websocket-accept"), Some(RFC_ACCEPT), "headers {:?}", ws.headers);
    assert_eq!(ws.header("x-halley-gap"), None, "fresh subscription has no gap: {:?}", ws.headers);
    assert!(
        ws.conn.buf.is_empty(),
        "bytes right after the 101 before anything was published: {:02x?}",
        ws.conn.buf
    );
    // The upgraded connection is live.
    let sent = publish_at(server.ingest, "a", "after the 101");
    assert_eq!(ws.next_envelope("first message"), sent);
}

#[test]
fn handshake_via_transport_query_and_with_token_lists() {
    let server = Server::start(&[]);
    // `?transport=ws` with the upgrade headers.
    let mut ws = Ws::open(server.public, "/sub/a?transport=ws");
    // Firefox-style `Connection: keep-alive, Upgrade` and mixed-case tokens.
    let mut rng = Rng::new();
    let key = rng.key();
    let request = format!(
        "GET /sub/b HTTP/1.1\r\nHost: test\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nOrigin: http://example.com\r\n\r\n"
    );
    let mut ws_b = Ws::open_raw(server.public, "/sub/b", request.as_bytes(), &key, rng);
    let a = publish_at(server.ingest, "a", "to a");
    let b = publish_at(server.ingest, "b", "to b");
    assert_eq!(ws.next_envelope("?transport=ws"), a);
    assert_eq!(ws_b.next_envelope("keep-alive, Upgrade"), b);
}

/// Valid upgrade headers with `skip` left out and `replace` put in instead.
fn upgrade_headers<'a>(
    key: &'a str,
    skip: &str,
    replace: Option<(&'a str, &'a str)>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers: Vec<(&str, &str)> = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", key),
    ]
    .into_iter()
    .filter(|(n, _)| !n.eq_ignore_ascii_case(skip))
    .collect();
    if let Some((name, value)) = replace {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name, value));
    }
    headers
}

/// A handshake that must be refused.
struct BadHandshake<'a> {
    what: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    status: u16,
    /// Words the error message must contain.
    needle: &'a str,
}

#[test]
fn bad_handshakes_are_refused_with_json_errors() {
    let server = Server::start(&[]);
    let key = Rng::new().key();
    let case = |what, path, skip, replace, status, needle| BadHandshake {
        what,
        path,
        headers: upgrade_headers(&key, skip, replace),
        status,
        needle,
    };
    let cases = [
        case("missing Sec-WebSocket-Key", "/sub/a", "Sec-WebSocket-Key", None, 400, "Sec-WebSocket-Key"),
        case(
            "key of 15 bytes",
            "/sub/a",
            "",
            Some(("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA")),
            400,
            "Sec-WebSocket-Key",
        ),
        case(
            "key of 17 bytes",
            "/sub/a",
            "",
            Some(("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA=")),
            400,
            "Sec-WebSocket-Key",
        ),
        case(
            "key not base64",
            "/sub/a",
            "",
            Some(("Sec-WebSocket-Key", "not base64 at all!!!!!==")),
            400,
            "Sec-WebSocket-Key",
        ),
        case("version 8", "/sub/a", "", Some(("Sec-WebSocket-Version", "8")), 426, "version"),
        case("missing version", "/sub/a", "Sec-WebSocket-Version", None, 400, "version"),
        case(
            "Connection without upgrade",
            "/sub/a",
            "",
            Some(("Connection", "keep-alive")),
            400,
            "Connection",
        ),
        case("?transport=ws without Upgrade", "/sub/a?transport=ws", "Upgrade", None, 400, "Upgrade"),
    ];
    let mut version_hint = None;
    for BadHandshake { what, path, headers, status, needle } in &cases {
        let resp = request(server.public, "GET", path, headers, b"");
        let ctx = format!("{what}: GET {path} {headers:?}");
        let message = assert_json_error(&resp, *status, needle, &ctx);
        if *status == 426 {
            // RFC 6455 §4.4: the refusal MUST carry `Sec-WebSocket-Version`
            // naming what the server speaks. Checked last, so the other cases
            // still run if this one fails.
            version_hint = Some((
                ctx,
                resp.header("sec-websocket-version").map(String::from),
                resp.headers.clone(),
                message,
            ));
        }
    }

    // POST with valid upgrade headers: a 4xx JSON error, never a 101.
    let headers = upgrade_headers(&key, "", None);
    let resp = request(server.public, "POST", "/sub/a", &headers, b"");
    assert!(
        (400..500).contains(&resp.status),
        "POST upgrade: want a 4xx, got {} headers {:?} body {:?}",
        resp.status,
        resp.headers,
        resp.text()
    );
    assert_json_error(&resp, resp.status, "GET", "POST upgrade");

    // HTTP/1.0 upgrade.
    let mut conn = HttpConn::new(server.public);
    conn.send(
        format!(
            "GET /sub/a HTTP/1.0\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
        .as_bytes(),
    );
    let resp = conn.response();
    assert_json_error(&resp, 400, "HTTP/1.1", "HTTP/1.0 upgrade");

    // After all that, a correct handshake still works.
    let mut ws = Ws::open(server.public, "/sub/a");
    let sent = publish_at(server.ingest, "a", "still fine");
    assert_eq!(ws.next_envelope("after the refusals"), sent);

    let (ctx, version, headers, message) = version_hint.expect("the version-8 case ran");
    assert_eq!(
        version.as_deref(),
        Some("13"),
        "{ctx}: a 426 must carry `Sec-WebSocket-Version: 13` (RFC 6455 §4.4); headers {headers:?} ({message})"
    );
}

// ---------------------------------------------------------------------------
// 2. Delivery.

fn payload(i: usize) -> String {
    match i % 5 {
        0 => format!("m-{i}"),
        1 => format!("m-{i} \"quoted\" \\ back\\slash"),
        2 => format!("m-{i} é ✓ 😀"),
        3 => format!("m-{i}\nline two\r\nline three"),
        _ => format!("m-{i} </script> {{\"json\":true}} \u{0}\u{1f}"),
    }
}

#[test]
fn published_messages_arrive_as_text_frames_in_order() {
    const N: usize = 50;
    let server = Server::start(&[]);
    let mut ws = Ws::open(server.public, "/sub/a");
    let mut published: Vec<Msg> = (0..N).map(|i| publish_at(server.ingest, "a", &payload(i))).collect();
    // An event type, a payload needing the 16-bit length form, and one at the
    // 64 KiB publish limit whose envelope needs the 64-bit form.
    published.push(publish_event(server.ingest, "a", "with an event", Some("update")));
    published.push(publish_at(server.ingest, "a", &"x".repeat(200)));
    published.push(publish_at(server.ingest, "a", &"y".repeat(64 * 1024)));
    let got = ws.read_envelopes(published.len(), "in-order delivery");
    assert_strictly_increasing("/sub/a", &got);
    assert_same_sequence("/sub/a", &got, &published);
}

#[test]
fn multi_channel_subscription_gets_its_channels_in_publish_order() {
    let server = Server::start(&[]);
    let mut ws = Ws::open(server.public, "/sub/a,b");
    let mut want = Vec::new();
    for i in 0..30 {
        let channel = ["a", "b", "other"][i % 3];
        let m = publish_at(server.ingest, channel, &format!("{channel}-{i}"));
        if channel != "other" {
            want.push(m);
        }
    }
    let got = ws.read_envelopes(want.len(), "/sub/a,b");
    assert_strictly_increasing("/sub/a,b", &got);
    assert_same_sequence("/sub/a,b (nothing from `other`)", &got, &want);
}

// ---------------------------------------------------------------------------
// 3. Subscribe and unsubscribe commands.

/// A publisher thread on `channel` that records whether each publish started
/// after `flag` was set, and stops when told.
struct Publisher {
    stop: Arc<AtomicBool>,
    flag: Arc<AtomicBool>,
    after_flag: Arc<AtomicUsize>,
    count: Arc<AtomicUsize>,
    handle: thread::JoinHandle<Vec<(Msg, bool)>>,
}

impl Publisher {
    fn start(ingest: SocketAddr, channel: &'static str) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::new(AtomicBool::new(false));
        let after_flag = Arc::new(AtomicUsize::new(0));
        let count = Arc::new(AtomicUsize::new(0));
        let (s, f, a, c) = (stop.clone(), flag.clone(), after_flag.clone(), count.clone());
        let handle = thread::spawn(move || {
            let mut log = Vec::new();
            // The cap only bounds a runaway loop; tests stop it long before.
            for i in 0..20_000 {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let after = f.load(Ordering::SeqCst);
                let m = publish_at(ingest, channel, &format!("{channel}-{i}"));
                log.push((m, after));
                c.fetch_add(1, Ordering::SeqCst);
                if after {
                    a.fetch_add(1, Ordering::SeqCst);
                }
            }
            log
        });
        Publisher { stop, flag, after_flag, count, handle }
    }

    fn finish(self) -> Vec<(Msg, bool)> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("publisher thread panicked")
    }
}

#[test]
fn subscribe_command_is_acked_and_everything_published_after_the_ack_arrives() {
    let server = Server::start(&[]);
    let mut ws = Ws::open(server.public, "/sub/a");
    let publisher = Publisher::start(server.ingest, "c");
    wait_until("publisher to publish to c before the subscribe command", || {
        publisher.count.load(Ordering::SeqCst) >= 3
    });
    ws.send_text(r#"{"subscribe":["c"]}"#);
    let mut got = Vec::new();
    loop {
        let v = ws.next_json("waiting for the subscribe ack");
        if v.get("subscribed").is_some() {
            assert_eq!(v, json!({"subscribed":["c"]}), "subscribe ack");
            break;
        }
        // Messages of c may only come once c is registered, i.e. never before
        // the ack in practice; tolerate them, but they must be envelopes of c.
        let m = envelope(&v, "before the ack");
        assert_eq!(m.channel, "c", "before the ack: only c was published: {v}");
        got.push(m);
    }
    publisher.flag.store(true, Ordering::SeqCst);
    wait_until("20 publishes to c started after the ack", || {
        publisher.after_flag.load(Ordering::SeqCst) >= 20
    });
    let log = publisher.finish();
    let marker = publish_at(server.ingest, "a", "marker");
    loop {
        let m = ws.next_envelope("reading c until the marker on a");
        if m == marker {
            break;
        }
        assert_eq!(m.channel, "c", "unexpected message {m:?}");
        got.push(m);
    }
    let published: Vec<Msg> = log.iter().map(|(m, _)| m.clone()).collect();
    let after_ack = log.iter().filter(|(_, after)| *after).count();
    // What arrived is a contiguous run of c ending at the last publish (no
    // gap once registered), and covers everything published after the ack.
    let first = got
        .first()
        .map(|m| published.iter().position(|p| p == m).unwrap_or_else(|| panic!("{m:?} was never published")))
        .unwrap_or(published.len());
    assert_same_sequence("c after subscribe", &got, &published[first..]);
    let first_after_ack = log.iter().position(|(_, after)| *after).expect("publishes after the ack");
    assert!(
        first <= first_after_ack,
        "c-messages published after the ack are missing: the first to arrive was {:?} (index {first}), \
         but publishes from index {first_after_ack} ({:?}) on started after the ack ({after_ack} of them)",
        got.first(),
        log[first_after_ack].0
    );
}

#[test]
fn unsubscribe_command_is_acked_and_nothing_of_the_channel_arrives_after_it() {
    let server = Server::start(&[]);
    let mut ws = Ws::open(server.public, "/sub/a,m");
    let publisher = Publisher::start(server.ingest, "a");
    let mut got = Vec::new();
    // Prove a flows before unsubscribing.
    for _ in 0..3 {
        got.push(ws.next_envelope("a before the unsubscribe"));
    }
    ws.send_text(r#"{"unsubscribe":["a"]}"#);
    loop {
        let v = ws.next_json("waiting for the unsubscribe ack");
        if v.get("unsubscribed").is_some() {
            assert_eq!(v, json!({"unsubscribed":["a"]}), "unsubscribe ack");
            break;
        }
        got.push(envelope(&v, "a before the ack"));
    }
    publisher.flag.store(true, Ordering::SeqCst);
    wait_until("20 publishes to a started after the ack", || {
        publisher.after_flag.load(Ordering::SeqCst) >= 20
    });
    let log = publisher.finish();
    let late = publish_at(server.ingest, "a", "after the ack");
    let marker = publish_at(server.ingest, "m", "marker");
    let next = ws.next_envelope("first message after the unsubscribe ack");
    assert_eq!(
        next,
        marker,
        "after {{\"unsubscribed\":[\"a\"]}} the next frame must be the marker on m; a message of a arrived \
         instead ({} publishes to a started after the ack, the last {late:?})",
        log.iter().filter(|(_, after)| *after).count()
    );
    // Everything of a before the ack arrived, in order, with no gap.
    let published: Vec<Msg> = log.iter().map(|(m, _)| m.clone()).collect();
    assert_same_sequence("a up to the unsubscribe ack", &got, &published[..got.len()]);
    // And m keeps flowing.
    let m2 = publish_at(server.ingest, "m", "still subscribed");
    assert_eq!(ws.next_envelope("m after the unsubscribe"), m2);
}

#[test]
fn bad_commands_get_error_frames_and_the_connection_stays_usable() {
    let server = Server::start(&["--max-channels-per-subscription", "4"]);
    let mut ws = Ws::open(server.public, "/sub/a,b");
    let bad: &[(&str, &str)] = &[
        ("invalid JSON", "nope"),
        ("truncated JSON", r#"{"subscribe":["c""#),
        ("an array", r#"["subscribe","c"]"#),
        ("a string instead of a list", r#"{"subscribe":"c"}"#),
        ("a number in the list", r#"{"subscribe":[1]}"#),
        ("unknown command", r#"{"join":["c"]}"#),
        ("two commands in one object", r#"{"subscribe":["c"],"unsubscribe":["a"]}"#),
        ("empty object", "{}"),
        ("channel starting with /", r#"{"subscribe":["/c"]}"#),
        ("channel with a space", r#"{"subscribe":["c d"]}"#),
        ("empty channel name", r#"{"subscribe":[""]}"#),
        ("channel of 129 bytes", &format!(r#"{{"subscribe":["{}"]}}"#, "c".repeat(129))),
        ("good and bad channel together", r#"{"subscribe":["good","bad name"]}"#),
        ("over the channel limit (2 + 3 > 4)", r#"{"subscribe":["c","d","e"]}"#),
        ("empty text message", ""),
    ];
    for (what, text) in bad {
        ws.send_text(text);
        let v = ws.next_json(&format!("answer to {what}: {text:?}"));
        let obj = v.as_object().unwrap_or_else(|| panic!("{what}: answer is not an object: {v}"));
        assert_eq!(obj.len(), 1, "{what} ({text:?}): want only {{\"error\":…}}, got {v}");
        let message =
            v["error"].as_str().unwrap_or_else(|| panic!("{what} ({text:?}): want an error, got {v}"));
        assert!(!message.trim().is_empty(), "{what}: empty error message");
    }
    // A refused command changed nothing: `good` (refused together with a bad
    // name) is not subscribed, a and b still are, and commands still work.
    publish_at(server.ingest, "good", "must not arrive");
    let a = publish_at(server.ingest, "a", "a still flows");
    assert_eq!(ws.next_envelope("a after the refusals (not `good`)"), a);
    ws.send_text(r#"{"subscribe":["c","d"]}"#);
    ws.expect_json(&json!({"subscribed":["c","d"]}), "subscribe up to the limit");
    let c = publish_at(server.ingest, "c", "c now flows");
    assert_eq!(ws.next_envelope("c after subscribing"), c);
}

// ---------------------------------------------------------------------------
// 4. Resume after a dropped connection.

#[test]
fn resume_with_last_id_after_dropped_connections_loses_and_repeats_nothing() {
    const TOTAL: usize = 300;
    let server = Server::start(&["--history-size", "1000"]);
    let ingest = server.ingest;
    let published = Arc::new(Mutex::new(Vec::<Msg>::new()));
    let drops = Arc::new(AtomicUsize::new(0));
    let index = |m: &Msg| -> usize {
        m.data.strip_prefix("r-").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not r-N: {m:?}"))
    };

    let mut ws = Ws::open(server.public, "/sub/r");
    let publisher = {
        let (published, drops) = (published.clone(), drops.clone());
        // Gates make the drops happen mid-stream: the publisher waits for
        // drop 1 at 60 and drop 2 at 160, so it is publishing across both.
        thread::spawn(move || {
            for i in 0..TOTAL {
                if i == 60 || i == 160 {
                    let want = if i == 60 { 1 } else { 2 };
                    wait_until("the subscriber to drop its connection", || {
                        drops.load(Ordering::SeqCst) >= want
                    });
                }
                let m = publish_at(ingest, "r", &format!("r-{i}"));
                published.lock().unwrap().push(m);
            }
        })
    };
    let mut got: Vec<Msg> = Vec::new();
    for (cycle, (until, wait_for)) in [(29, 80), (129, 180), (TOTAL - 1, 0)].into_iter().enumerate() {
        loop {
            let m = ws.next_envelope(&format!("cycle {cycle}: reading up to r-{until}"));
            let i = index(&m);
            got.push(m);
            if i >= until {
                break;
            }
        }
        if wait_for == 0 {
            break;
        }
        ws.drop_tcp();
        drops.fetch_add(1, Ordering::SeqCst);
        // Let messages be published while nobody is connected.
        wait_until("publishes while disconnected", || published.lock().unwrap().len() >= wait_for);
        let last = got.last().unwrap().id.clone();
        ws = Ws::open(server.public, &format!("/sub/r?last_id={last}"));
        assert_eq!(ws.header("x-halley-gap"), None, "resume from {last} within history: {:?}", ws.headers);
    }
    publisher.join().expect("publisher thread panicked");
    let published = published.lock().unwrap().clone();
    assert_eq!(published.len(), TOTAL);
    assert_strictly_increasing("resumed stream", &got);
    assert_same_sequence("union of the three connections", &got, &published);
}

#[test]
fn last_id_gap_and_backlog_on_the_upgrade() {
    let server = Server::start(&["--history-size", "5"]);
    let ids: Vec<Msg> = (0..10).map(|i| publish_at(server.ingest, "h", &format!("h-{i}"))).collect();
    // Resuming from before what history holds: the gap signal, then the 5 retained.
    let mut ws = Ws::open(server.public, &format!("/sub/h?last_id={}", ids[0].id));
    assert_eq!(ws.header("x-halley-gap"), Some("1"), "resume from a dropped id: {:?}", ws.headers);
    assert_same_sequence("retained after a gap", &ws.read_envelopes(5, "catch-up"), &ids[5..]);
    let live = publish_at(server.ingest, "h", "h-10");
    assert_eq!(ws.next_envelope("live after catch-up"), live);
    // Within history: no gap.
    let mut ws = Ws::open(server.public, &format!("/sub/h?last_id={}", ids[6].id));
    assert_eq!(ws.header("x-halley-gap"), None, "resume within history: {:?}", ws.headers);
    let mut want = ids[7..].to_vec();
    want.push(live.clone());
    assert_same_sequence("resume within history", &ws.read_envelopes(4, "catch-up"), &want);
    // backlog=3: the last three.
    let mut ws = Ws::open(server.public, "/sub/h?backlog=3");
    assert_same_sequence("backlog=3", &ws.read_envelopes(3, "backlog"), &want[1..]);
}

// ---------------------------------------------------------------------------
// 5. Control frames, heartbeat, client close.

#[test]
fn ping_is_answered_with_a_pong_carrying_the_same_payload() {
    let server = Server::start(&[]);
    let mut ws = Ws::open(server.public, "/sub/a");
    let max: Vec<u8> = (0..125u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    for payload in [b"hello-ping".to_vec(), b"x".to_vec(), max] {
        ws.send(OP_PING, &payload);
        let frame = ws.read_frame(&format!("pong for a {}-byte ping", payload.len()));
        assert_eq!(frame.opcode, OP_PONG, "answer to ping {payload:02x?}: {}", frame.describe());
        assert_eq!(frame.payload, payload, "pong payload must echo the ping's");
    }
    ws.send(OP_PING, b"");
    let frame = ws.read_frame("pong for an empty ping");
    assert_eq!(
        (frame.opcode, frame.payload.len()),
        (OP_PONG, 0),
        "answer to an empty ping: {}",
        frame.describe()
    );
    // An unsolicited pong is ignored: the next frame is the next message.
    ws.send(OP_PONG, b"unsolicited");
    let sent = publish_at(server.ingest, "a", "after pings");
    assert_eq!(ws.next_envelope("message after the pings"), sent);
}

#[test]
fn server_sends_heartbeat_pings_every_heartbeat_secs() {
    let server = Server::start(&["--heartbeat-secs", "1"]);
    let mut ws = Ws::open(server.public, "/sub/a");
    for n in 1..=2 {
        let frame = ws.read_frame(&format!("heartbeat ping {n} (heartbeat_secs=1)"));
        assert_eq!(frame.opcode, OP_PING, "heartbeat {n}: want a ping, got {}", frame.describe());
        ws.send(OP_PONG, &frame.payload);
    }
    let sent = publish_at(server.ingest, "a", "after heartbeats");
    assert_eq!(ws.next_envelope("message after heartbeats"), sent);
}

#[test]
fn client_close_is_answered_with_a_close_then_tcp_close() {
    let server = Server::start(&[]);
    let mut ws = Ws::open(server.public, "/sub/a");
    ws.send(OP_CLOSE, &close_payload(1000, "bye"));
    ws.expect_close(1000, "answer to close 1000 \"bye\"");

    // An empty close payload (no code) is answered with a close too.
    let mut ws = Ws::open(server.public, "/sub/a");
    ws.send(OP_CLOSE, b"");
    let frame = ws.next_frame("answer to an empty close");
    assert_eq!(frame.opcode, OP_CLOSE, "answer to an empty close: {}", frame.describe());
    let (code, _) = frame.close();
    assert!(matches!(code, None | Some(1000)), "answer to an empty close: code {code:?}");
    ws.expect_eof("after the close answer");

    // The server still serves.
    let mut ws = Ws::open(server.public, "/sub/a");
    let sent = publish_at(server.ingest, "a", "after closes");
    assert_eq!(ws.next_envelope("new connection after closes"), sent);
}

// ---------------------------------------------------------------------------
// 6. Framing edge cases, each watched by a control SSE subscriber on `ctl`.

/// A server with an SSE subscriber on `ctl` that must keep receiving every
/// message while WebSocket clients misbehave.
struct Watched {
    server: Server,
    ctl: StreamClient,
    n: usize,
}

impl Watched {
    fn start() -> Watched {
        let server = Server::start(&[]);
        let ctl = StreamClient::open(server.public, "/sub/ctl", &[("Accept", "text/event-stream")]);
        assert_eq!(ctl.status, 200, "control SSE subscriber: headers {:?}", ctl.headers);
        let mut w = Watched { server, ctl, n: 0 };
        w.ctl_check("control subscriber before any WebSocket");
        w
    }

    /// Publishes to ctl; the SSE subscriber must get exactly that next.
    fn ctl_check(&mut self, ctx: &str) {
        let data = format!("ctl-{}", self.n);
        self.n += 1;
        let id = self.server.publish_id("ctl", &data);
        let ev = self.ctl.next_event().unwrap_or_else(|| panic!("{ctx}: the control SSE stream ended"));
        assert_eq!(
            (ev.id.as_deref(), ev.data.as_str()),
            (Some(id.as_str()), data.as_str()),
            "{ctx}: the control SSE subscriber must get every ctl message, in order"
        );
    }

    /// A WebSocket on /sub/a that has just delivered a message.
    fn ws(&mut self, ctx: &str) -> Ws {
        let mut ws = Ws::open(self.server.public, "/sub/a");
        let sent = publish_at(self.server.ingest, "a", ctx);
        assert_eq!(ws.next_envelope(&format!("{ctx}: warm-up message")), sent);
        ws
    }

    /// Sends `bytes` on a fresh WebSocket and expects a close with `code` and
    /// the TCP close, with ctl flowing before and after. Returns the reason.
    fn violation(&mut self, what: &str, bytes: &[u8], code: u16) -> String {
        self.ctl_check(&format!("{what}: before"));
        let mut ws = self.ws(what);
        ws.send_raw(bytes);
        let ctx = format!("{what}: sent {:02x?}", &bytes[..bytes.len().min(24)]);
        let reason = ws.expect_close(code, &ctx);
        self.ctl_check(&format!("{what}: after"));
        reason
    }
}

#[test]
fn unmasked_client_frame_closes_with_1002() {
    let mut w = Watched::start();
    w.violation(
        "unmasked text frame",
        &encode(FIN | OP_TEXT, br#"{"subscribe":["c"]}"#, None, Len::Minimal),
        1002,
    );
    w.violation("unmasked empty ping", &encode(FIN | OP_PING, b"", None, Len::Minimal), 1002);
}

#[test]
fn reserved_bits_close_with_1002() {
    let mut w = Watched::start();
    for (name, rsv) in [("RSV1", 0x40u8), ("RSV2", 0x20), ("RSV3", 0x10)] {
        w.violation(&format!("text frame with {name}"), &masked(FIN | rsv | OP_TEXT, b"{}"), 1002);
    }
}

#[test]
fn unknown_opcodes_close_with_1002() {
    let mut w = Watched::start();
    for op in [0x3u8, 0x7, 0xB, 0xF] {
        w.violation(&format!("opcode {op:#x}"), &masked(FIN | op, b"x"), 1002);
    }
}

#[test]
fn fragmented_control_frames_close_with_1002() {
    let mut w = Watched::start();
    w.violation("ping without FIN", &masked(OP_PING, b"p"), 1002);
    w.violation("pong without FIN", &masked(OP_PONG, b"p"), 1002);
    w.violation("close without FIN", &masked(OP_CLOSE, &close_payload(1000, "")), 1002);
}

#[test]
fn control_payload_over_125_bytes_closes_with_1002() {
    let mut w = Watched::start();
    w.violation("126-byte ping", &masked(FIN | OP_PING, &[b'p'; 126]), 1002);
    w.violation("126-byte pong", &masked(FIN | OP_PONG, &[b'p'; 126]), 1002);
}

#[test]
fn broken_fragmentation_and_close_payloads_close_with_1002() {
    let mut w = Watched::start();
    w.violation("continuation with no message open", &masked(FIN | OP_CONTINUATION, b"x"), 1002);
    let mut both = masked(OP_TEXT, b"{\"sub");
    both.extend(masked(FIN | OP_TEXT, b"{}"));
    w.violation("new text frame while a message is open", &both, 1002);
    w.violation("close with a 1-byte payload", &masked(FIN | OP_CLOSE, &[0x03]), 1002);
    w.violation("close with reserved code 1005", &masked(FIN | OP_CLOSE, &close_payload(1005, "")), 1002);
}

#[test]
fn text_message_in_three_fragments_with_a_ping_between_is_a_command() {
    let mut w = Watched::start();
    w.ctl_check("before the fragmented command");
    let mut ws = w.ws("fragmented command");
    ws.send_frame(OP_TEXT, br#"{"subscri"#, Len::Minimal);
    ws.send_frame(FIN | OP_PING, b"mid", Len::Minimal);
    ws.send_frame(OP_CONTINUATION, br#"be":["x"#, Len::Minimal);
    ws.send_frame(FIN | OP_CONTINUATION, br#""]}"#, Len::Minimal);
    // The pong answers the ping at once; the ack follows the whole message.
    let (mut pong, mut ack) = (false, false);
    for _ in 0..2 {
        let frame = ws.next_frame("pong and ack for the fragmented command");
        match frame.opcode {
            OP_PONG if !pong => {
                assert_eq!(frame.payload, b"mid", "pong for the ping between fragments");
                pong = true;
            }
            OP_TEXT if !ack => {
                let v: Value = serde_json::from_str(frame.text()).expect("ack is JSON");
                assert_eq!(v, json!({"subscribed":["x"]}), "ack for the reassembled command");
                ack = true;
            }
            _ => panic!("want one pong \"mid\" and one ack; got {}", frame.describe()),
        }
    }
    let sent = publish_at(w.server.ingest, "x", "to x");
    assert_eq!(ws.next_envelope("message on x after the fragmented subscribe"), sent);
    w.ctl_check("after the fragmented command");
}

#[test]
fn frame_announcing_100_kib_closes_with_1009_before_the_payload_is_sent() {
    let mut w = Watched::start();
    // Only the header goes out: the close must come without the payload.
    let reason = w.violation(
        "text frame announcing 100 KiB",
        &header_only_64(FIN | OP_TEXT, 100 * 1024, Rng::new().mask()),
        1009,
    );
    assert!(!reason.is_empty(), "a 1009 close should say why");
    w.violation(
        "binary frame announcing 64 KiB + 1",
        &header_only_64(FIN | OP_BINARY, MAX_CLIENT_PAYLOAD as u64 + 1, Rng::new().mask()),
        1009,
    );
    // Two fragments of 40 KiB: each frame fits, the message does not.
    let mut two = masked(OP_TEXT, &[b' '; 40 * 1024]);
    two.extend(masked(FIN | OP_CONTINUATION, &[b' '; 40 * 1024]));
    w.violation("text message of 80 KiB in two fragments", &two, 1009);
}

#[test]
fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let mut w = Watched::start();
    w.violation("text frame with 0xC3 0x28", &masked(FIN | OP_TEXT, b"{\"subscribe\":[\"\xC3\x28\"]}"), 1007);
    w.violation("text frame with 0xFF", &masked(FIN | OP_TEXT, b"\xFF"), 1007);
    w.violation("text frame ending mid-character", &masked(FIN | OP_TEXT, b"abc\xE2\x82"), 1007);
    let mut frags = masked(OP_TEXT, b"ok\xE2");
    frags.extend(masked(FIN | OP_CONTINUATION, b"\x28"));
    w.violation("UTF-8 broken across fragments", &frags, 1007);
}

#[test]
fn binary_frame_closes_with_1003() {
    let mut w = Watched::start();
    w.violation("binary frame", &masked(FIN | OP_BINARY, b"\x00\x01binary"), 1003);
    w.violation("empty binary frame", &masked(FIN | OP_BINARY, b""), 1003);
}

#[test]
fn sixteen_and_sixty_four_bit_lengths_and_split_frames_are_accepted() {
    let mut w = Watched::start();
    w.ctl_check("before the long commands");
    let mut ws = w.ws("long commands");

    let cmd16 = padded_command(r#"{"subscribe":["y"]}"#, 200);
    let frame16 = encode(FIN | OP_TEXT, cmd16.as_bytes(), Some(Rng::new().mask()), Len::Minimal);
    assert_eq!(frame16[1] & 0x7f, 126, "self-check: a 200-byte frame uses the 16-bit form");
    ws.send_raw(&frame16);
    ws.expect_json(&json!({"subscribed":["y"]}), "200-byte command, 16-bit length");

    // 64-bit form: a command of exactly the 64 KiB limit.
    let cmd64 = padded_command(r#"{"subscribe":["z"]}"#, MAX_CLIENT_PAYLOAD);
    let frame64 = encode(FIN | OP_TEXT, cmd64.as_bytes(), Some(Rng::new().mask()), Len::Minimal);
    assert_eq!(frame64[1] & 0x7f, 127, "self-check: a 64 KiB frame uses the 64-bit form");
    ws.send_raw(&frame64);
    ws.expect_json(&json!({"subscribed":["z"]}), "64 KiB command, 64-bit length");

    // A frame written one byte at a time (16-bit length, to split the header too).
    let split = encode(
        FIN | OP_TEXT,
        padded_command(r#"{"subscribe":["s"]}"#, 130).as_bytes(),
        Some(Rng::new().mask()),
        Len::Bits16,
    );
    for byte in &split {
        ws.send_raw(std::slice::from_ref(byte));
    }
    ws.expect_json(&json!({"subscribed":["s"]}), "command written one byte at a time");

    let sent: Vec<Msg> =
        ["y", "z", "s"].iter().map(|c| publish_at(w.server.ingest, c, &format!("to {c}"))).collect();
    assert_same_sequence("after the long commands", &ws.read_envelopes(3, "y, z, s"), &sent);
    w.ctl_check("after the long commands");
}

// ---------------------------------------------------------------------------
// 7. Graceful shutdown.

#[test]
fn shutdown_sends_close_1001_then_eof_and_exits_0() {
    let server = Server::start(&[]);
    let mut ws = Ws::open(server.public, "/sub/a");
    let sent = publish_at(server.ingest, "a", "before shutdown");
    assert_eq!(ws.next_envelope("message before shutdown"), sent);
    // Terminate on another thread so this one reads the close as it comes.
    let terminator = thread::spawn(move || {
        let mut server = server;
        let (status, took) = server.terminate();
        (status, took, server.log_text())
    });
    let reason = ws.expect_close(1001, "after SIGTERM");
    assert_eq!(reason, "shutdown", "close reason on shutdown");
    drop(ws);
    let (status, took, log) = terminator.join().expect("terminate thread panicked");
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM ({took:?}); log:\n{log}");
}

#[test]
fn origin_is_checked_against_a_cors_origins_list() {
    let server = Server::start(&["--cors-origins", "https://ok.example"]);
    let mut rng = Rng::new();
    let key = rng.key();
    let allowed = upgrade_request("/sub/o", &key, &[("Origin", "https://ok.example")]);
    let _ws = Ws::open_raw(server.public, "/sub/o", &allowed, &key, rng);
    let refused =
        upgrade_request("/sub/o", "dGhlIHNhbXBsZSBub25jZQ==", &[("Origin", "https://evil.example")]);
    let mut conn = HttpConn::new(server.public);
    conn.send(&refused);
    let resp = conn.response();
    assert_json_error(&resp, 403, "origin", "WebSocket from an unlisted origin");
    // With the default `*`, any origin may connect.
    let open = Server::start(&[]);
    let mut rng = Rng::new();
    let key = rng.key();
    let any = upgrade_request("/sub/o", &key, &[("Origin", "https://evil.example")]);
    let _ws = Ws::open_raw(open.public, "/sub/o", &any, &key, rng);
}
