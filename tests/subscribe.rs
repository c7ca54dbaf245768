//! Subscriber behaviour through real sockets against the real binary: order on
//! every transport, multi-channel subscriptions, resume by `last_id` and
//! `Last-Event-ID` across forced reconnects, backlog, history bounds and the
//! gap signal, long-poll timeouts, malformed ids, a thousand concurrent
//! subscribers, and slow-consumer cut-off.

mod common;
use common::*;

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

// ---------------------------------------------------------------------------
// Transport-independent view of what a subscriber receives.

/// One delivered message. SSE carries no channel, so it is optional.
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    id: String,
    channel: Option<String>,
    data: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    LongPoll,
    Jsonp,
    Sse,
    Stream,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::LongPoll => "longpoll",
            Kind::Jsonp => "jsonp",
            Kind::Sse => "sse",
            Kind::Stream => "stream",
        }
    }

    /// The query parameters that select this transport.
    fn query(self) -> &'static str {
        match self {
            Kind::LongPoll => "transport=longpoll",
            // The interface says `?callback=` alone selects JSONP.
            Kind::Jsonp => "callback=cb",
            Kind::Sse => "transport=sse",
            Kind::Stream => "transport=stream",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::LongPoll => "application/json",
            Kind::Jsonp => "application/javascript",
            Kind::Sse => "text/event-stream",
            Kind::Stream => "application/x-ndjson",
        }
    }

    fn streaming(self) -> bool {
        matches!(self, Kind::Sse | Kind::Stream)
    }
}

/// How a resuming subscriber names the last id it saw.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Resume {
    Query,
    Header,
}

fn assert_strictly_increasing(what: &str, msgs: &[Msg]) {
    for pair in msgs.windows(2) {
        assert!(
            id_key(&pair[0].id) < id_key(&pair[1].id),
            "{what}: ids not strictly increasing: {:?} then {:?}\nall ids: {:?}",
            pair[0],
            pair[1],
            msgs.iter().map(|m| &m.id).collect::<Vec<_>>()
        );
    }
}

/// Asserts that `got` is exactly `want` (ids and data, and channel where the
/// transport carries it), with a diff-friendly message.
fn assert_same_sequence(what: &str, got: &[Msg], want: &[Msg]) {
    let ids = |v: &[Msg]| v.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    if got.len() != want.len() || got.iter().zip(want).any(|(g, w)| g.id != w.id || g.data != w.data) {
        let first_diff = got.iter().zip(want).position(|(g, w)| g.id != w.id || g.data != w.data);
        panic!(
            "{what}: delivered sequence differs from published one\n  got {} messages, want {}\n  first difference at index {:?}: got {:?}, want {:?}\n  got ids:  {:?}\n  want ids: {:?}",
            got.len(),
            want.len(),
            first_diff,
            first_diff.and_then(|i| got.get(i)),
            first_diff.and_then(|i| want.get(i)),
            ids(got),
            ids(want),
        );
    }
    for (g, w) in got.iter().zip(want) {
        if let (Some(gc), Some(wc)) = (&g.channel, &w.channel) {
            assert_eq!(gc, wc, "{what}: channel of message {}", g.id);
        }
    }
}

fn sub_path(kind: Kind, channels: &str, extra: &str) -> String {
    if extra.is_empty() {
        format!("/sub/{channels}?{}", kind.query())
    } else {
        format!("/sub/{channels}?{}&{extra}", kind.query())
    }
}

fn envelope(v: &Value) -> Msg {
    let field = |name: &str| -> String {
        v[name].as_str().unwrap_or_else(|| panic!("envelope without string {name:?}: {v}")).to_string()
    };
    Msg { id: field("id"), channel: Some(field("channel")), data: field("data") }
}

/// Publishes and returns the message as a subscriber should see it.
fn publish(server: &Server, channel: &str, data: &str) -> Msg {
    let id = server.publish_id(channel, data);
    Msg { id, channel: Some(channel.to_string()), data: data.to_string() }
}

/// Payloads that exercise JSON escaping without line breaks (which SSE splits).
fn payload(i: usize) -> String {
    format!("m-{i} \"q\" \\ é ✓ </script>")
}

// ---------------------------------------------------------------------------
// Streaming transports (sse, stream).

/// Opens a streaming subscription, asserting 200 and the content type. The
/// head arrives only after registration, so publishing afterwards is safe.
fn open(server: &Server, kind: Kind, channels: &str, extra: &str, headers: &[(&str, &str)]) -> StreamClient {
    assert!(kind.streaming());
    let path = sub_path(kind, channels, extra);
    let client = StreamClient::open(server.public, &path, headers);
    assert_eq!(client.status, 200, "GET {path} {headers:?}: status; headers {:?}", client.headers);
    let ct = client.header("content-type").unwrap_or("").to_string();
    assert!(
        ct.starts_with(kind.content_type()),
        "GET {path}: content-type {ct:?}, want {}",
        kind.content_type()
    );
    client
}

fn next_msg(client: &mut StreamClient, kind: Kind, ctx: &str) -> Msg {
    match kind {
        Kind::Sse => {
            let ev = client.next_event().unwrap_or_else(|| panic!("{ctx}: SSE stream ended early"));
            let id = ev.id.unwrap_or_else(|| panic!("{ctx}: SSE event without id: {:?}", ev.data));
            Msg { id, channel: None, data: ev.data }
        }
        Kind::Stream => {
            let v = client.next_json().unwrap_or_else(|| panic!("{ctx}: NDJSON stream ended early"));
            envelope(&v)
        }
        _ => unreachable!("{ctx}: {kind:?} is not a streaming transport"),
    }
}

fn read_n(client: &mut StreamClient, kind: Kind, n: usize, ctx: &str) -> Vec<Msg> {
    (0..n).map(|i| next_msg(client, kind, &format!("{ctx} (message {i} of {n})"))).collect()
}

// ---------------------------------------------------------------------------
// Polling transports (longpoll, jsonp).

struct Polled {
    resp: Response,
    msgs: Vec<Msg>,
    last_id: String,
    gap: bool,
    body: Value,
}

fn jsonp_inner(resp: &Response, ctx: &str) -> Value {
    let text = resp.text();
    let inner = text
        .trim_end()
        .strip_prefix("cb(")
        .and_then(|s| s.strip_suffix(");"))
        .unwrap_or_else(|| panic!("{ctx}: JSONP body is not cb(…);: {text:?}"));
    serde_json::from_str(inner)
        .unwrap_or_else(|e| panic!("{ctx}: JSONP argument is not JSON ({e}): {inner:?}"))
}

fn poll_kind(server: &Server, kind: Kind, channels: &str, extra: &str, headers: &[(&str, &str)]) -> Polled {
    assert!(!kind.streaming());
    let path = sub_path(kind, channels, extra);
    let ctx = format!("GET {path} {headers:?}");
    let resp = request(server.public, "GET", &path, headers, b"");
    assert_eq!(resp.status, 200, "{ctx}: {}", resp.text());
    let ct = resp.header("content-type").unwrap_or("");
    assert!(ct.starts_with(kind.content_type()), "{ctx}: content-type {ct:?}, want {}", kind.content_type());
    let body = match kind {
        Kind::Jsonp => jsonp_inner(&resp, &ctx),
        _ => resp.json(),
    };
    let msgs = body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{ctx}: no messages array: {body}"))
        .iter()
        .map(envelope)
        .collect();
    let last_id = body["last_id"].as_str().unwrap_or_else(|| panic!("{ctx}: no last_id: {body}")).to_string();
    id_key(&last_id);
    let gap = match body.get("gap") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => panic!("{ctx}: gap is not a boolean: {other}"),
    };
    Polled { resp, msgs, last_id, gap, body }
}

/// The channel's current position, for starting long-polls without a window
/// in which a publish could be missed.
fn current_last_id(server: &Server, channels: &str) -> String {
    let p = poll_kind(server, Kind::LongPoll, channels, "timeout=0", &[]);
    assert!(p.msgs.is_empty(), "timeout=0 on a fresh subscription returned messages: {}", p.body);
    p.last_id
}

/// Polls from `last` until `n` messages arrived, following `last_id`.
fn poll_n(server: &Server, kind: Kind, channels: &str, mut last: String, n: usize) -> (Vec<Msg>, String) {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            before_deadline(start),
            "{kind:?} on {channels}: only {} of {n} messages within {DEADLINE:?}: {got:?}",
            got.len()
        );
        let p = poll_kind(server, kind, channels, &format!("last_id={last}&timeout=5"), &[]);
        assert!(!p.gap, "{kind:?} on {channels}: unexpected gap resuming from {last}: {}", p.body);
        if let Some(m) = p.msgs.last() {
            assert_eq!(p.last_id, m.id, "{kind:?}: last_id should be the last message's id: {}", p.body);
        }
        got.extend(p.msgs);
        last = p.last_id;
    }
    (got, last)
}

// ---------------------------------------------------------------------------
// 1. Every transport delivers messages in publish order.

fn delivers_in_publish_order(kind: Kind) {
    const N: usize = 50;
    let server = Server::start(&[]);
    let channel = format!("order-{}", kind.name());
    let ctx = format!("{kind:?} on {channel}");
    let (got, published) = if kind.streaming() {
        let mut sub = open(&server, kind, &channel, "", &[]);
        thread::scope(|s| {
            let publisher =
                s.spawn(|| (0..N).map(|i| publish(&server, &channel, &payload(i))).collect::<Vec<_>>());
            let got = read_n(&mut sub, kind, N, &ctx);
            (got, publisher.join().unwrap())
        })
    } else {
        let last = current_last_id(&server, &channel);
        thread::scope(|s| {
            let publisher =
                s.spawn(|| (0..N).map(|i| publish(&server, &channel, &payload(i))).collect::<Vec<_>>());
            let (got, _) = poll_n(&server, kind, &channel, last, N);
            (got, publisher.join().unwrap())
        })
    };
    assert_strictly_increasing(&ctx, &got);
    assert_same_sequence(&ctx, &got, &published);
}

#[test]
fn longpoll_delivers_messages_in_publish_order() {
    delivers_in_publish_order(Kind::LongPoll);
}

#[test]
fn jsonp_delivers_messages_in_publish_order() {
    delivers_in_publish_order(Kind::Jsonp);
}

#[test]
fn sse_delivers_messages_in_publish_order() {
    delivers_in_publish_order(Kind::Sse);
}

#[test]
fn stream_delivers_messages_in_publish_order() {
    delivers_in_publish_order(Kind::Stream);
}

#[test]
fn jsonp_wraps_the_longpoll_body_in_the_callback() {
    let server = Server::start(&[]);
    let sent = publish(&server, "jp", "hello");
    let p = poll_kind(&server, Kind::Jsonp, "jp", "backlog=1&timeout=0", &[]);
    let text = p.resp.text();
    assert!(text.starts_with("cb({"), "JSONP body should start with the callback: {text:?}");
    assert!(text.trim_end().ends_with("});"), "JSONP body should end with `}});`: {text:?}");
    assert_same_sequence("jsonp backlog", &p.msgs, std::slice::from_ref(&sent));
    assert_eq!(p.last_id, sent.id, "jsonp last_id: {}", p.body);

    // `?transport=jsonp&callback=` works the same way.
    let resp = get(server.public, "/sub/jp?transport=jsonp&callback=my_cb$1&backlog=1&timeout=0");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().starts_with("my_cb$1({"), "callback name kept verbatim: {:?}", resp.text());
}

#[test]
fn jsonp_rejects_a_callback_that_is_not_an_identifier() {
    let server = Server::start(&[]);
    for bad in ["1cb", "a-b", "alert%28document.cookie%29", "x%3Balert(1)", "a%20b", ""] {
        for path in
            [format!("/sub/jp?callback={bad}"), format!("/sub/jp?transport=jsonp&callback={bad}&timeout=0")]
        {
            if bad.is_empty() && !path.contains("transport=jsonp") {
                // `?callback=` with no value and no transport: not asserted here.
                continue;
            }
            let resp = get(server.public, &path);
            assert_eq!(resp.status, 400, "GET {path}: want 400, got {} {}", resp.status, resp.text());
            let ct = resp.header("content-type").unwrap_or("");
            assert!(ct.starts_with("application/json"), "GET {path}: error content-type {ct:?}");
            let err = resp.json();
            assert!(err["error"].as_str().is_some_and(|e| !e.is_empty()), "GET {path}: error body {err}");
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Several channels in one request.

fn multi_channel(kind: Kind) {
    const ROUNDS: usize = 15;
    let server = Server::start(&[]);
    let ctx = format!("{kind:?} on a,b");
    let mut stream = if kind.streaming() { Some(open(&server, kind, "a,b", "", &[])) } else { None };
    let start_id = if kind.streaming() { String::new() } else { current_last_id(&server, "a,b") };
    let mut want = Vec::new();
    for i in 0..ROUNDS {
        want.push(publish(&server, "a", &format!("a{i}")));
        want.push(publish(&server, "b", &format!("b{i}")));
        publish(&server, "c", &format!("c{i}"));
        publish(&server, "a2", &format!("a2-{i}"));
    }
    let n = want.len();
    match stream.as_mut() {
        Some(sub) => {
            let got = read_n(sub, kind, n, &ctx);
            assert_strictly_increasing(&ctx, &got);
            assert_same_sequence(&ctx, &got, &want);
            // Nothing from c or a2 is queued behind them: the next one is this.
            let sentinel = publish(&server, "b", "sentinel");
            let next = next_msg(sub, kind, &ctx);
            assert_same_sequence(&format!("{ctx}: after the last round"), &[next], &[sentinel]);
        }
        None => {
            let (got, last) = poll_n(&server, kind, "a,b", start_id, n);
            assert_strictly_increasing(&ctx, &got);
            assert_same_sequence(&ctx, &got, &want);
            let rest = poll_kind(&server, kind, "a,b", &format!("last_id={last}&timeout=0"), &[]);
            assert!(rest.msgs.is_empty(), "{ctx}: messages from other channels leaked: {}", rest.body);
        }
    }
}

#[test]
fn sse_subscription_to_several_channels_gets_exactly_theirs_in_id_order() {
    multi_channel(Kind::Sse);
}

#[test]
fn stream_subscription_to_several_channels_gets_exactly_theirs_in_id_order() {
    multi_channel(Kind::Stream);
}

#[test]
fn longpoll_subscription_to_several_channels_gets_exactly_theirs_in_id_order() {
    multi_channel(Kind::LongPoll);
}

// ---------------------------------------------------------------------------
// 3. Resume after forced reconnects while a publisher keeps publishing.

/// Messages a subscriber reads per connection before dropping it.
const PER_CONNECTION: usize = 17;
/// Reconnects the publisher waits for before it stops.
const RECONNECTS: usize = 5;
const MIN_MESSAGES: usize = 120;
const MAX_MESSAGES: usize = 3000;
const LAST: &str = "the-last-one";

/// Publishes until the subscriber has reconnected `RECONNECTS` times and at
/// least `MIN_MESSAGES` went out (bounded by count and time so a failing
/// subscriber cannot leave it running), then a final `LAST` message.
fn keep_publishing(server: &Server, channel: &str, reconnects: &AtomicUsize) -> Vec<Msg> {
    let start = Instant::now();
    let mut sent = Vec::new();
    while (sent.len() < MIN_MESSAGES || reconnects.load(Ordering::SeqCst) < RECONNECTS)
        && sent.len() < MAX_MESSAGES
        && before_deadline(start)
    {
        sent.push(publish(server, channel, &payload(sent.len())));
    }
    sent.push(publish(server, channel, LAST));
    sent
}

fn resume_headers(mode: Resume, last: &str) -> (String, Vec<(&'static str, String)>) {
    match mode {
        Resume::Query => (format!("last_id={last}"), vec![]),
        Resume::Header => (String::new(), vec![("Last-Event-ID", last.to_string())]),
    }
}

fn resume_streaming(server: &Server, kind: Kind, mode: Resume) {
    let channel = format!("resume-{}-{mode:?}", kind.name());
    let ctx = format!("{kind:?} resume by {mode:?} on {channel}");
    let reconnects = AtomicUsize::new(0);
    let mut sub = open(server, kind, &channel, "", &[]);
    let (got, published) = thread::scope(|s| {
        let publisher = s.spawn(|| keep_publishing(server, &channel, &reconnects));
        let mut got: Vec<Msg> = Vec::new();
        let mut on_this_connection = 0;
        loop {
            let m = next_msg(&mut sub, kind, &format!("{ctx} after {} messages", got.len()));
            let done = m.data == LAST;
            got.push(m);
            on_this_connection += 1;
            if done {
                break;
            }
            if on_this_connection == PER_CONNECTION {
                // Drop the connection (and whatever it had buffered) and resume.
                let last = got.last().unwrap().id.clone();
                let (query, headers) = resume_headers(mode, &last);
                let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                sub = open(server, kind, &channel, &query, &headers);
                assert_eq!(
                    sub.header("x-halley-gap"),
                    None,
                    "{ctx}: gap resuming from {last} with full history"
                );
                on_this_connection = 0;
                reconnects.fetch_add(1, Ordering::SeqCst);
            }
        }
        (got, publisher.join().unwrap())
    });
    assert!(reconnects.load(Ordering::SeqCst) >= RECONNECTS, "{ctx}: too few reconnects happened");
    assert_strictly_increasing(&ctx, &got);
    assert_same_sequence(&ctx, &got, &published);
}

fn resume_polling(server: &Server, kind: Kind, mode: Resume) {
    let channel = format!("resume-{}-{mode:?}", kind.name());
    let ctx = format!("{kind:?} resume by {mode:?} on {channel}");
    let reconnects = AtomicUsize::new(0);
    let mut last = current_last_id(server, &channel);
    let (got, published) = thread::scope(|s| {
        let publisher = s.spawn(|| keep_publishing(server, &channel, &reconnects));
        let start = Instant::now();
        let mut got: Vec<Msg> = Vec::new();
        let mut polls = 0usize;
        while got.last().is_none_or(|m| m.data != LAST) {
            assert!(
                before_deadline(start),
                "{ctx}: {LAST:?} not received within {DEADLINE:?}; got {} messages",
                got.len()
            );
            let (query, headers) = resume_headers(mode, &last);
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let query = if query.is_empty() { "timeout=5".to_string() } else { format!("{query}&timeout=5") };
            polls += 1;
            if polls.is_multiple_of(3) {
                // A poll abandoned mid-wait: whatever it would have carried
                // must come again on the next poll from the same id.
                let mut conn = HttpConn::new(server.public);
                conn.send(&format_request("GET", &sub_path(kind, &channel, &query), &headers, b""));
                drop(conn);
                reconnects.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let p = poll_kind(server, kind, &channel, &query, &headers);
            assert!(!p.gap, "{ctx}: gap resuming from {last} with full history: {}", p.body);
            assert!(
                id_key(&p.last_id) >= id_key(&last),
                "{ctx}: last_id went backwards from {last} to {}",
                p.last_id
            );
            got.extend(p.msgs);
            last = p.last_id;
            reconnects.fetch_add(1, Ordering::SeqCst);
        }
        (got, publisher.join().unwrap())
    });
    assert_strictly_increasing(&ctx, &got);
    assert_same_sequence(&ctx, &got, &published);
}

fn resume_on(kind: Kind) {
    // History large enough that no resume here can legitimately have a gap.
    let server = Server::start(&["--history-size", "10000"]);
    for mode in [Resume::Query, Resume::Header] {
        if kind.streaming() {
            resume_streaming(&server, kind, mode);
        } else {
            resume_polling(&server, kind, mode);
        }
    }
}

#[test]
fn sse_resume_after_forced_reconnects_loses_and_repeats_nothing() {
    resume_on(Kind::Sse);
}

#[test]
fn stream_resume_after_forced_reconnects_loses_and_repeats_nothing() {
    resume_on(Kind::Stream);
}

#[test]
fn longpoll_resume_across_polls_and_abandoned_polls_loses_and_repeats_nothing() {
    resume_on(Kind::LongPoll);
}

#[test]
fn jsonp_resume_across_polls_and_abandoned_polls_loses_and_repeats_nothing() {
    resume_on(Kind::Jsonp);
}

// ---------------------------------------------------------------------------
// 4. backlog=N.

#[test]
fn backlog_gives_the_last_n_retained_messages_then_live_ones() {
    let server = Server::start(&[]);
    for kind in [Kind::Sse, Kind::Stream, Kind::LongPoll, Kind::Jsonp] {
        let channel = format!("backlog-{}", kind.name());
        let ctx = format!("{kind:?} backlog=3 on {channel}");
        let old: Vec<Msg> = (0..10).map(|i| publish(&server, &channel, &format!("old{i}"))).collect();
        if kind.streaming() {
            let mut sub = open(&server, kind, &channel, "backlog=3", &[]);
            let first = read_n(&mut sub, kind, 3, &ctx);
            assert_same_sequence(&ctx, &first, &old[7..]);
            let live: Vec<Msg> = (0..2).map(|i| publish(&server, &channel, &format!("live{i}"))).collect();
            let then = read_n(&mut sub, kind, 2, &ctx);
            assert_same_sequence(&format!("{ctx}: live after backlog"), &then, &live);

            // More than retained: everything retained, oldest first.
            let mut all = open(&server, kind, &channel, "backlog=50", &[]);
            let got = read_n(&mut all, kind, 12, &ctx);
            let want: Vec<Msg> = old.iter().chain(&live).cloned().collect();
            assert_same_sequence(&format!("{kind:?} backlog=50"), &got, &want);
            let sentinel = publish(&server, &channel, "sentinel");
            let next = next_msg(&mut all, kind, &ctx);
            assert_same_sequence(&format!("{kind:?} backlog=50, then live"), &[next], &[sentinel]);
        } else {
            let p = poll_kind(&server, kind, &channel, "backlog=3&timeout=5", &[]);
            assert_same_sequence(&ctx, &p.msgs, &old[7..]);
            assert_eq!(p.last_id, old[9].id, "{ctx}: last_id: {}", p.body);
            let (live, got) = thread::scope(|s| {
                let polled = s.spawn(|| poll_n(&server, kind, &channel, p.last_id.clone(), 2).0);
                let live: Vec<Msg> =
                    (0..2).map(|i| publish(&server, &channel, &format!("live{i}"))).collect();
                (live, polled.join().unwrap())
            });
            assert_same_sequence(&format!("{ctx}: live after backlog"), &got, &live);

            let all = poll_kind(&server, kind, &channel, "backlog=50&timeout=5", &[]);
            let want: Vec<Msg> = old.iter().chain(&live).cloned().collect();
            assert_same_sequence(&format!("{kind:?} backlog=50"), &all.msgs, &want);
        }
    }
}

// ---------------------------------------------------------------------------
// 5. History bounds and the gap signal.

#[test]
fn resume_beyond_bounded_history_reports_a_gap_and_inside_it_does_not() {
    let server = Server::start(&["--history-size", "5"]);
    for kind in [Kind::Sse, Kind::Stream, Kind::LongPoll, Kind::Jsonp] {
        let channel = format!("gap-{}", kind.name());
        let ids: Vec<Msg> = (0..10).map(|i| publish(&server, &channel, &format!("g{i}"))).collect();
        // (resume after, expect a gap, expected messages). ids[4] is the
        // newest dropped one: nothing after it was lost, so no gap.
        let cases: [(usize, bool, &[Msg]); 4] =
            [(0, true, &ids[5..]), (3, true, &ids[5..]), (4, false, &ids[5..]), (6, false, &ids[7..])];
        if kind.streaming() {
            let mut subs = Vec::new();
            for (from, gap, want) in cases {
                for mode in [Resume::Query, Resume::Header] {
                    let ctx = format!("{kind:?} --history-size 5, resume by {mode:?} after message {from}");
                    let (query, headers) = resume_headers(mode, &ids[from].id);
                    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    let mut sub = open(&server, kind, &channel, &query, &headers);
                    let header = sub.header("x-halley-gap").map(str::to_string);
                    if gap {
                        assert_eq!(
                            header.as_deref(),
                            Some("1"),
                            "{ctx}: want X-Halley-Gap: 1; headers {:?}",
                            sub.headers
                        );
                    } else {
                        assert_eq!(header, None, "{ctx}: want no X-Halley-Gap; headers {:?}", sub.headers);
                    }
                    let got = read_n(&mut sub, kind, want.len(), &ctx);
                    assert_same_sequence(&ctx, &got, want);
                    subs.push((ctx, sub));
                }
            }
            // Nothing more was queued after the catch-up: the next is live.
            let sentinel = publish(&server, &channel, "sentinel");
            for (ctx, sub) in &mut subs {
                let next = next_msg(sub, kind, ctx);
                assert_same_sequence(
                    &format!("{ctx}: after catch-up"),
                    &[next],
                    std::slice::from_ref(&sentinel),
                );
            }
        } else {
            for ((from, gap, want), mode) in
                cases.into_iter().flat_map(|c| [(c, Resume::Query), (c, Resume::Header)])
            {
                let ctx = format!("{kind:?} --history-size 5, resume by {mode:?} after message {from}");
                let (query, headers) = resume_headers(mode, &ids[from].id);
                let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let query =
                    if query.is_empty() { "timeout=0".to_string() } else { format!("{query}&timeout=0") };
                let p = poll_kind(&server, kind, &channel, &query, &headers);
                if gap {
                    assert_eq!(
                        p.body.get("gap"),
                        Some(&Value::Bool(true)),
                        "{ctx}: want \"gap\":true: {}",
                        p.body
                    );
                } else {
                    assert_eq!(p.body.get("gap"), None, "{ctx}: want no gap field: {}", p.body);
                }
                assert_same_sequence(&ctx, &p.msgs, want);
                assert_eq!(p.last_id, ids[9].id, "{ctx}: last_id: {}", p.body);
            }
        }
    }
}

#[test]
fn history_expires_after_its_ttl() {
    let server = Server::start(&["--history-ttl-secs", "1"]);
    let before_publish = Instant::now();
    let sent: Vec<Msg> = (0..3).map(|i| publish(&server, "ttl", &format!("t{i}"))).collect();
    // While retained, a resume from the first gets the other two (if the
    // machine was slow enough for them to expire already, skip that check).
    let early = poll_kind(&server, Kind::LongPoll, "ttl", &format!("last_id={}&timeout=0", sent[0].id), &[]);
    if before_publish.elapsed() < Duration::from_millis(900) && !early.gap {
        assert_same_sequence("ttl: before expiry", &early.msgs, &sent[1..]);
    }
    let mut last_seen = Value::Null;
    wait_until("history to expire with --history-ttl-secs 1", || {
        let p = poll_kind(&server, Kind::LongPoll, "ttl", "backlog=10&timeout=0", &[]);
        last_seen = p.body;
        p.msgs.is_empty()
    });
    let took = before_publish.elapsed();
    assert!(took >= Duration::from_secs(1), "history expired after {took:?}, before its 1 s TTL");

    // Resuming from before the expired messages: none come, and it is a gap.
    let p = poll_kind(&server, Kind::LongPoll, "ttl", &format!("last_id={}&timeout=0", sent[0].id), &[]);
    assert!(p.msgs.is_empty(), "ttl: expired messages delivered: {}", p.body);
    assert!(p.gap, "ttl: resume from an expired message should report a gap: {}", p.body);
    let mut sub = open(&server, Kind::Sse, "ttl", &format!("last_id={}", sent[0].id), &[]);
    assert_eq!(
        sub.header("x-halley-gap"),
        Some("1"),
        "ttl: SSE resume after expiry; headers {:?}",
        sub.headers
    );
    let fresh = publish(&server, "ttl", "fresh");
    let next = next_msg(&mut sub, Kind::Sse, "ttl: SSE after expiry");
    assert_same_sequence("ttl: SSE after expiry", &[next], &[fresh]);
}

// ---------------------------------------------------------------------------
// 6. Long-poll timeout.

#[test]
fn longpoll_timeout_answers_empty_with_a_resumable_last_id() {
    let server = Server::start(&[]);
    let started = Instant::now();
    let p = poll_kind(&server, Kind::LongPoll, "quiet", "timeout=1", &[]);
    let took = started.elapsed();
    assert!(p.msgs.is_empty(), "timeout=1 with nothing published: {}", p.body);
    assert_eq!(p.body["messages"], Value::Array(vec![]), "messages should be []: {}", p.body);
    assert!(took >= Duration::from_millis(800), "timeout=1 answered after only {took:?}");

    // Whatever happens between the timeout and the next poll is not lost.
    let (sent, got) = thread::scope(|s| {
        let polled = s.spawn(|| poll_n(&server, Kind::LongPoll, "quiet", p.last_id.clone(), 1).0);
        let sent = publish(&server, "quiet", "after the timeout");
        (sent, polled.join().unwrap())
    });
    assert_same_sequence("poll resumed from the timeout's last_id", &got, &[sent]);

    // Same for JSONP.
    let started = Instant::now();
    let p = poll_kind(&server, Kind::Jsonp, "quiet2", "timeout=1", &[]);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "jsonp timeout=1 answered after {:?}",
        started.elapsed()
    );
    assert!(p.msgs.is_empty(), "jsonp timeout=1: {}", p.body);
    let sent = publish(&server, "quiet2", "x");
    let (got, _) = poll_n(&server, Kind::Jsonp, "quiet2", p.last_id, 1);
    assert_same_sequence("jsonp poll resumed from the timeout's last_id", &got, &[sent]);
}

// ---------------------------------------------------------------------------
// 7. Malformed and empty last_id.

#[test]
fn malformed_last_id_is_a_400_with_a_json_error() {
    let server = Server::start(&[]);
    let bad_ids = ["abc", "1-x", "-1", "1-2-3", "12345678901234567890123-0", "%20"];
    for kind in [Kind::LongPoll, Kind::Jsonp, Kind::Sse, Kind::Stream] {
        for bad in bad_ids {
            let cases: [(String, Vec<(&str, &str)>); 2] = [
                (sub_path(kind, "c", &format!("last_id={bad}&timeout=0")), vec![]),
                (sub_path(kind, "c", "timeout=0"), vec![("Last-Event-ID", bad)]),
            ];
            for (path, headers) in cases {
                if headers.iter().any(|(_, v)| v.contains('%')) {
                    continue; // percent-encoding means nothing in a header
                }
                let resp = request(server.public, "GET", &path, &headers, b"");
                assert_eq!(
                    resp.status,
                    400,
                    "GET {path} {headers:?}: want 400, got {} {}",
                    resp.status,
                    resp.text()
                );
                let ct = resp.header("content-type").unwrap_or("");
                assert!(ct.starts_with("application/json"), "GET {path} {headers:?}: content-type {ct:?}");
                let err = resp.json();
                assert!(err["error"].as_str().is_some_and(|e| !e.is_empty()), "GET {path}: error body {err}");
            }
        }
    }
}

#[test]
fn empty_last_id_counts_as_absent() {
    let server = Server::start(&[]);
    let old: Vec<Msg> = (0..3).map(|i| publish(&server, "e", &format!("old{i}"))).collect();

    // Long-poll: `last_id=` is no resume point, so `backlog` applies.
    let p = poll_kind(&server, Kind::LongPoll, "e", "last_id=&backlog=2&timeout=0", &[]);
    assert_same_sequence("last_id=&backlog=2", &p.msgs, &old[1..]);
    let p = poll_kind(&server, Kind::LongPoll, "e", "last_id=&timeout=0", &[]);
    assert!(p.msgs.is_empty() && !p.gap, "last_id= alone should be a fresh subscription: {}", p.body);
    assert_eq!(p.last_id, old[2].id, "last_id= alone: current last_id: {}", p.body);

    // Streams: no catch-up, no gap, and live messages flow.
    for kind in [Kind::Sse, Kind::Stream] {
        let mut sub = open(&server, kind, "e", "last_id=", &[]);
        assert_eq!(sub.header("x-halley-gap"), None, "{kind:?} last_id=: headers {:?}", sub.headers);
        let mut empty_header = open(&server, kind, "e", "", &[("Last-Event-ID", "")]);
        let live = publish(&server, "e", &format!("live-{}", kind.name()));
        for (what, s) in [("last_id=", &mut sub), ("Last-Event-ID: (empty)", &mut empty_header)] {
            let next = next_msg(s, kind, what);
            assert_same_sequence(
                &format!("{kind:?} {what}: first message"),
                &[next],
                std::slice::from_ref(&live),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 8. A thousand concurrent SSE subscribers.

#[test]
fn a_thousand_sse_subscribers_each_receive_every_message_in_order() {
    const THREADS: usize = 10;
    const PER_THREAD: usize = 100;
    const MESSAGES: usize = 100;
    let server = Server::start(&[]);
    let started = Instant::now();
    // Channels rather than barriers: if either side panics, the other sees a
    // disconnect or a timeout instead of waiting forever.
    let (registered_tx, registered_rx) = std::sync::mpsc::channel::<usize>();
    thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (list_tx, list_rx) = std::sync::mpsc::channel::<std::sync::Arc<Vec<Msg>>>();
                let (server, registered_tx) = (&server, registered_tx.clone());
                let handle = s.spawn(move || {
                    let mut subs: Vec<StreamClient> = (0..PER_THREAD)
                        .map(|i| {
                            let sub = StreamClient::open(server.public, "/sub/crowd", &[("Accept", "text/event-stream")]);
                            assert_eq!(sub.status, 200, "thread {t} subscriber {i}: head {:?}", sub.headers);
                            assert!(
                                sub.header("content-type").unwrap_or("").starts_with("text/event-stream"),
                                "thread {t} subscriber {i}: Accept: text/event-stream should select SSE: {:?}",
                                sub.headers
                            );
                            sub
                        })
                        .collect();
                    registered_tx.send(t).unwrap();
                    let want = list_rx.recv_timeout(DEADLINE * 2).expect("the published list");
                    for (i, sub) in subs.iter_mut().enumerate() {
                        let ctx = format!("thread {t} subscriber {i}");
                        let got = read_n(sub, Kind::Sse, MESSAGES, &ctx);
                        assert_same_sequence(&ctx, &got, &want);
                    }
                });
                (handle, list_tx)
            })
            .collect();
        for n in 0..THREADS {
            registered_rx
                .recv_timeout(DEADLINE * 2)
                .unwrap_or_else(|e| panic!("only {n} of {THREADS} threads opened their subscribers: {e}"));
        }
        let opened = started.elapsed();
        let sent: Vec<Msg> =
            (0..MESSAGES).map(|i| publish(&server, "crowd", &format!("crowd-{i}"))).collect();
        let subscribers = server.publish("crowd", "count")["subscribers"].as_u64();
        let sent = std::sync::Arc::new(sent);
        for (_, list_tx) in &workers {
            list_tx.send(sent.clone()).unwrap();
        }
        for (handle, _) in workers {
            handle.join().unwrap();
        }
        assert_eq!(
            subscribers,
            Some((THREADS * PER_THREAD) as u64),
            "publish ack should count every subscriber"
        );
        eprintln!("1000 subscribers: opened in {opened:?}, all received in {:?}", started.elapsed());
    });
}

// ---------------------------------------------------------------------------
// 9. A subscriber that never reads is cut off; others are unaffected.

#[test]
fn a_subscriber_that_never_reads_is_cut_off_while_others_get_everything() {
    const MESSAGES: usize = 500;
    let server = Server::start(&["--max-outbound-bytes", "65536"]);
    let big = |i: usize| format!("{i:05}:{}", "x".repeat(16 * 1024 - 6));
    let mut slow = open(&server, Kind::Sse, "firehose", "", &[]);
    let mut control = open(&server, Kind::Sse, "firehose", "", &[]);
    // The control reads each message before the next is published, so on a
    // loaded machine it never falls behind the outbound cap itself (a reader
    // thread starved for a few hundred publishes would be cut as slow too).
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    for i in 0..MESSAGES {
        sent.push(publish(&server, "firehose", &big(i)));
        got.push(next_msg(&mut control, Kind::Sse, &format!("control subscriber (message {i})")));
    }
    assert_same_sequence("control subscriber", &got, &sent);

    // The slow one: whatever the kernel buffered, then EOF or reset.
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut tmp = vec![0u8; 1 << 16];
    let outcome = loop {
        match slow.conn.stream.read(&mut tmp) {
            Ok(0) => break "EOF",
            Ok(n) => raw.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!(
                "slow subscriber was not cut off: after {} bytes ({} events) no EOF within {:?}: {e}",
                raw.len(),
                count(&raw, b"id: "),
                started.elapsed()
            ),
        }
    };
    let events = count(&raw, b"id: ");
    assert!(
        events < MESSAGES,
        "slow subscriber got all {events} events before {outcome}; it should have been cut off earlier"
    );
    eprintln!("slow subscriber: {} bytes, {events} events, then {outcome}", raw.len());
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// An EventSource opened with `?last_id=A` keeps that URL on its automatic
/// reconnects while its `Last-Event-ID` header moves on: the later id wins,
/// whichever carries it, so nothing is replayed.
#[test]
fn with_both_last_id_and_last_event_id_the_later_one_wins() {
    let server = Server::start(&[]);
    let a = server.publish_id("both", "one");
    let b = server.publish_id("both", "two");
    let c = server.publish_id("both", "three");
    for (query, header) in [(&a, &b), (&b, &a)] {
        let path = format!("/sub/both?transport=sse&last_id={query}");
        let mut sub = StreamClient::open(server.public, &path, &[("Last-Event-ID", header.as_str())]);
        assert_eq!(sub.status, 200);
        let ev = sub.next_event().expect("an event");
        assert_eq!(ev.id.as_deref(), Some(c.as_str()), "query {query}, header {header}: resume after {b}");
        assert_eq!(ev.data, "three");
    }
}
