//! The Redis-protocol (RESP) publish port through real clients against the
//! real binary: Debian's `redis-cli` (one publish and `--pipe` with 10,000),
//! `redis-benchmark`, the `redis` crate over a sync connection, raw sockets
//! with every kind of malformed request, pipelining, and `-BUSY` when the
//! publish queue is full.
//!
//! `redis-cli` and `redis-benchmark` come from Debian's redis-tools, which
//! tests/run installs; a missing tool fails the test, it never skips it.
//! Every subscriber reads its response head before anything is published:
//! the head is sent only once the subscription is registered.

mod common;
use common::*;

use std::net::Shutdown;
use std::process::Command;
use std::thread::{self, JoinHandle};
use std::time::Instant;

// ---------------------------------------------------------------------------
// External programs.

fn redis_cli(server: &Server) -> Command {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &server.resp.port().to_string()]);
    cmd
}

// ---------------------------------------------------------------------------
// A raw RESP connection.

fn esc(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------
// Subscribers that read in the background.

/// A subscriber reading on a thread: `finish` returns what it read (and
/// the still open subscriber) or re-raises its failure.
struct Reader<T>(JoinHandle<(T, StreamClient)>, String);

impl<T> Reader<T> {
    fn finish_open(self) -> (T, StreamClient) {
        let Reader(handle, what) = self;
        join(handle, &what)
    }

    /// What it read; the subscriber disconnects.
    fn finish(self) -> T {
        self.finish_open().0
    }
}

/// Opens an SSE subscriber (registered when this returns) and reads `n`
/// events on a thread.
fn sse_reader(server: &Server, channel: &str, n: usize) -> Reader<Vec<SseEvent>> {
    let mut sub = StreamClient::open(server.public, &format!("/sub/{channel}?transport=sse"), &[]);
    assert_eq!(sub.status, 200, "SSE subscribe to {channel}: headers {:?}", sub.headers);
    let what = format!("SSE subscriber on {channel} expecting {n} events");
    let label = what.clone();
    Reader(
        thread::spawn(move || {
            let start = Instant::now();
            let mut events = Vec::with_capacity(n);
            while events.len() < n {
                assert!(before_deadline(start), "{label}: only {} after {DEADLINE:?}", events.len());
                match sub.next_event() {
                    Some(ev) => events.push(ev),
                    None => panic!("{label}: stream ended after {}; last {:?}", events.len(), events.last()),
                }
            }
            (events, sub)
        }),
        what,
    )
}

/// Opens an NDJSON stream subscriber and reads `n` envelopes on a thread.
fn stream_reader(server: &Server, channel: &str, n: usize) -> Reader<Vec<serde_json::Value>> {
    let mut sub = StreamClient::open(server.public, &format!("/sub/{channel}?transport=stream"), &[]);
    assert_eq!(sub.status, 200, "stream subscribe to {channel}: headers {:?}", sub.headers);
    let what = format!("NDJSON subscriber on {channel} expecting {n} messages");
    let label = what.clone();
    Reader(
        thread::spawn(move || {
            let start = Instant::now();
            let mut got = Vec::with_capacity(n);
            while got.len() < n {
                assert!(before_deadline(start), "{label}: only {} after {DEADLINE:?}", got.len());
                match sub.next_json() {
                    Some(v) => got.push(v),
                    None => panic!("{label}: stream ended after {}; last {:?}", got.len(), got.last()),
                }
            }
            (got, sub)
        }),
        what,
    )
}

/// Asserts the events carry exactly `want` in order, with increasing ids.
fn assert_sse_sequence(what: &str, events: &[SseEvent], want: &[String]) {
    let datas: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    if datas != want {
        let first_diff =
            datas.iter().zip(want).position(|(a, b)| a != b).unwrap_or(datas.len().min(want.len()));
        panic!(
            "{what}: got {} events, want {}; first difference at #{first_diff}: got {:?} want {:?}",
            datas.len(),
            want.len(),
            datas.get(first_diff),
            want.get(first_diff)
        );
    }
    let ids: Vec<(u64, u64)> = events
        .iter()
        .map(|e| id_key(e.id.as_deref().unwrap_or_else(|| panic!("{what}: event without id"))))
        .collect();
    if let Some(i) = ids.windows(2).position(|w| w[0] >= w[1]) {
        panic!("{what}: ids not increasing at #{i}: {:?} then {:?}", events[i].id, events[i + 1].id);
    }
}

// ---------------------------------------------------------------------------
// 1. redis-cli

#[test]
fn redis_cli_publish_prints_subscriber_count_and_reaches_an_sse_subscriber() {
    require_tool("redis-cli", "redis-tools");
    let server = Server::start(&[]);
    let reader = sse_reader(&server, "cli:news", 1);

    let out = run(redis_cli(&server).args(["PUBLISH", "cli:news", "hello from redis-cli"]), Vec::new());
    assert!(out.status.success(), "redis-cli PUBLISH failed:\n{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "subscribers reached:\n{}", show(&out));

    let events = reader.finish();
    assert_eq!(events[0].data, "hello from redis-cli", "{events:?}");
    let info = channel_info(&server, "cli:news");
    assert_eq!(
        events[0].id.as_deref(),
        info["last_id"].as_str(),
        "the event's id is the publish's id: {info}"
    );

    let out = run(redis_cli(&server).args(["PUBLISH", "cli:nobody", "x"]), Vec::new());
    assert!(out.status.success(), "redis-cli PUBLISH to an empty channel failed:\n{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "nobody listens:\n{}", show(&out));

    let out = run(redis_cli(&server).arg("PING"), Vec::new());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG", "redis-cli PING:\n{}", show(&out));
}

#[test]
fn redis_cli_pipe_delivers_10000_publishes_in_order() {
    require_tool("redis-cli", "redis-tools");
    const N: usize = 10_000;
    // Room for the whole burst in the subscriber's queue even if this reader
    // is descheduled for a while: slow-consumer cut-off is not under test.
    let server = Server::start(&["--max-outbound-bytes", "16777216"]);
    let reader = sse_reader(&server, "pipe", N);
    let want: Vec<String> = (0..N).map(|i| format!("message {i}")).collect();
    let input: Vec<u8> = want.iter().flat_map(|d| publish_cmd("pipe", d)).collect();

    let out = run(redis_cli(&server).arg("--pipe"), input);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-cli --pipe failed:\n{}", show(&out));
    assert!(
        stdout.contains(&format!("errors: 0, replies: {N}")),
        "redis-cli --pipe summary:\n{}",
        show(&out)
    );

    let events = reader.finish();
    assert_sse_sequence("SSE subscriber of redis-cli --pipe", &events, &want);
    let info = channel_info(&server, "pipe");
    assert_eq!(info["published"], N, "GET /pub/pipe after the pipe: {info}");
    assert_eq!(info["last_id"].as_str(), events[N - 1].id.as_deref(), "{info}");

    // The inline form, as docs/api.md pipes it from a shell loop.
    const M: usize = 1000;
    let reader = sse_reader(&server, "pipe", M);
    let want: Vec<String> = (0..M).map(|i| format!("m{i}")).collect();
    let input: Vec<u8> = want.iter().flat_map(|d| format!("PUBLISH pipe {d}\r\n").into_bytes()).collect();
    let out = run(redis_cli(&server).arg("--pipe"), input);
    assert!(out.status.success(), "redis-cli --pipe (inline) failed:\n{}", show(&out));
    let summary = format!("errors: 0, replies: {M}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&summary),
        "inline --pipe summary:\n{}",
        show(&out)
    );
    let later = reader.finish();
    assert_sse_sequence("SSE subscriber of the inline --pipe", &later, &want);
    assert!(id_key(later[0].id.as_deref().unwrap()) > id_key(events[N - 1].id.as_deref().unwrap()));
}

// ---------------------------------------------------------------------------
// 2. redis-benchmark

#[test]
fn redis_benchmark_publishes_all_arrive_and_the_server_stays_healthy() {
    require_tool("redis-benchmark", "redis-tools");
    const N: usize = 2000;
    let server = Server::start(&["--max-outbound-bytes", "16777216"]);
    let reader = stream_reader(&server, "bench", N);

    let port = server.resp.port().to_string();
    let out = run(
        Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port, "-n", "2000", "-q"])
            .args(["PUBLISH", "bench", "hello"]),
        Vec::new(),
    );
    assert!(out.status.success(), "redis-benchmark failed:\n{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("requests per second"),
        "redis-benchmark printed no result:\n{}",
        show(&out)
    );

    // The benchmark saw every reply, so every publish was taken.
    let info = channel_info(&server, "bench");
    assert_eq!(info["published"], N, "exactly the benchmark's publishes: {info}");
    assert_eq!(info["subscribers"], 1, "{info}");
    let (got, _subscriber) = reader.finish_open();
    for (i, m) in got.iter().enumerate() {
        assert_eq!((m["channel"].as_str(), m["data"].as_str()), (Some("bench"), Some("hello")), "#{i}: {m}");
    }
    let ids: Vec<(u64, u64)> = got.iter().map(|m| id_key(m["id"].as_str().expect("id"))).collect();
    if let Some(i) = ids.windows(2).position(|w| w[0] >= w[1]) {
        panic!("benchmark messages out of id order at #{i}: {} then {}", got[i], got[i + 1]);
    }

    // Healthy afterwards: health check, a RESP round trip, and a publish.
    let health = get(server.ingest, "/healthz");
    assert_eq!((health.status, health.text().trim()), (200, "ok"), "healthz after the benchmark");
    let mut conn = HttpConn::new(server.resp);
    assert_eq!(esc(&conn.resp_exchange(b"PING\r\n")), "+PONG\\r\\n");
    let reader = sse_reader(&server, "bench", 1);
    assert_eq!(
        esc(&conn.resp_exchange(&publish_cmd("bench", "after"))),
        ":2\\r\\n",
        "both subscribers reached"
    );
    assert_eq!(reader.finish()[0].data, "after");
}

// ---------------------------------------------------------------------------
// 3. A Redis client library

#[test]
fn redis_crate_publishes_over_a_sync_connection() {
    let server = Server::start(&[]);
    let first = sse_reader(&server, "lib", 4);
    let second = sse_reader(&server, "lib", 4);

    let client = redis::Client::open(format!("redis://{}/", server.resp)).expect("redis client");
    let mut con = client.get_connection_with_timeout(DEADLINE).expect("connect with the redis crate");
    con.set_read_timeout(Some(DEADLINE)).unwrap();

    let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
    assert_eq!(pong, "PONG");
    let reached: i64 = redis::cmd("PUBLISH").arg("lib").arg("one").query(&mut con).expect("PUBLISH");
    assert_eq!(reached, 2, "PUBLISH answers the subscribers reached");

    // A pipeline: replies in command order.
    let reached: Vec<i64> = redis::pipe()
        .cmd("PUBLISH")
        .arg("lib")
        .arg("two")
        .cmd("PUBLISH")
        .arg("lib:other")
        .arg("elsewhere")
        .cmd("PUBLISH")
        .arg("lib")
        .arg("three")
        .query(&mut con)
        .expect("pipelined PUBLISH");
    assert_eq!(reached, [2, 0, 2], "pipelined PUBLISH replies in order");

    // An error reply is an error, and the connection stays usable.
    let err = redis::cmd("GET").arg("k").query::<String>(&mut con).expect_err("GET is not served");
    assert!(err.to_string().contains("unknown command"), "GET: {err}");
    let reached: i64 =
        redis::cmd("PUBLISH").arg("lib").arg("four").query(&mut con).expect("PUBLISH after error");
    assert_eq!(reached, 2);

    let want: Vec<String> = ["one", "two", "three", "four"].map(String::from).to_vec();
    assert_sse_sequence("first subscriber", &first.finish(), &want);
    assert_sse_sequence("second subscriber", &second.finish(), &want);
}

// ---------------------------------------------------------------------------
// 4. Malformed requests and pipelining over raw sockets

/// How a malformed request must be answered.
enum Expect {
    /// This reply, then the server closes the connection.
    Close(&'static [u8]),
    /// This reply, and the connection keeps serving (a PING gets PONG).
    Open(&'static [u8]),
    /// The client half-closes after sending: no reply, the server closes.
    NothingAfterEof,
}

#[test]
fn malformed_resp_is_refused_while_a_control_publisher_keeps_working() {
    let server = Server::start(&["--max-message-bytes", "1024"]);
    let mut too_many_args = b"*17\r\n".to_vec();
    for _ in 0..17 {
        too_many_args.extend_from_slice(b"$1\r\na\r\n");
    }
    let mut long_length = b"*".to_vec();
    long_length.extend_from_slice(&[b'1'; 40]);
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "bad type byte inside an array",
            b"*1\r\n+x\r\n".to_vec(),
            Expect::Close(b"-ERR Protocol error: expected '$', got '+'\r\n"),
        ),
        (
            "non-numeric bulk length",
            b"*3\r\n$7\r\nPUBLISH\r\n$abc\r\n".to_vec(),
            Expect::Close(b"-ERR Protocol error: invalid bulk length\r\n"),
        ),
        (
            "negative bulk length",
            b"*1\r\n$-5\r\n".to_vec(),
            Expect::Close(b"-ERR Protocol error: invalid bulk length\r\n"),
        ),
        (
            "huge bulk length",
            b"*1\r\n$99999999999\r\n".to_vec(),
            Expect::Close(b"-ERR Protocol error: invalid bulk length\r\n"),
        ),
        (
            // Refused from the header alone, before any of the payload.
            "bulk over max_message_bytes (2048 > 1024)",
            b"*3\r\n$7\r\nPUBLISH\r\n$3\r\nctl\r\n$2048\r\n".to_vec(),
            Expect::Close(b"-ERR Protocol error: invalid bulk length\r\n"),
        ),
        (
            "more arguments than the limit",
            too_many_args,
            Expect::Close(b"-ERR Protocol error: invalid multibulk length\r\n"),
        ),
        (
            "non-numeric array length",
            b"*x\r\n".to_vec(),
            Expect::Close(b"-ERR Protocol error: invalid multibulk length\r\n"),
        ),
        (
            "array length that never ends",
            long_length,
            Expect::Close(b"-ERR Protocol error: too big mbulk count string\r\n"),
        ),
        (
            "payload longer than its length",
            b"*2\r\n$4\r\nECHO\r\n$2\r\nabc\r\n".to_vec(),
            Expect::Close(b"-ERR Protocol error: expected CRLF after bulk string\r\n"),
        ),
        (
            "binary garbage after the array type byte",
            b"*\xff\xfe\x00\x01\r\n".to_vec(),
            Expect::Close(b"-ERR Protocol error: invalid multibulk length\r\n"),
        ),
        (
            "unbalanced quotes inline",
            b"PUBLISH ctl \"abc\r\n".to_vec(),
            Expect::Close(b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        ),
        (
            "a closing quote glued to the next argument",
            b"PUBLISH ctl 'a'b\r\n".to_vec(),
            Expect::Close(b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        ),
        (
            // Inline garbage is a command name nobody knows, shown printable.
            "binary garbage inline",
            b"\x00\xff\xfe\x01garbage\r\n".to_vec(),
            Expect::Open(b"-ERR unknown command '?\xef\xbf\xbd\xef\xbf\xbd?garbage'\r\n"),
        ),
        (
            "non-UTF-8 channel",
            b"*3\r\n$7\r\nPUBLISH\r\n$2\r\n\xff\xfe\r\n$1\r\nx\r\n".to_vec(),
            Expect::Open(b"-ERR channel name is not UTF-8\r\n"),
        ),
        (
            "non-UTF-8 message",
            b"*3\r\n$7\r\nPUBLISH\r\n$3\r\nctl\r\n$2\r\n\xc3\x28\r\n".to_vec(),
            Expect::Open(b"-ERR message is not valid UTF-8\r\n"),
        ),
        (
            "unknown command",
            resp_cmd(&[b"SUBSCRIBE", b"ctl"]),
            Expect::Open(b"-ERR unknown command 'SUBSCRIBE'\r\n"),
        ),
        (
            "PUBLISH without a message",
            resp_cmd(&[b"publish", b"ctl"]),
            Expect::Open(b"-ERR wrong number of arguments for 'publish' command (1 given)\r\n"),
        ),
        (
            "PING with two arguments",
            b"PING a b\r\n".to_vec(),
            Expect::Open(b"-ERR wrong number of arguments for 'ping' command (2 given)\r\n"),
        ),
        (
            "truncated frame, then the client closes",
            publish_cmd("ctl", "hello")[..30].to_vec(),
            Expect::NothingAfterEof,
        ),
    ];

    let mut control = HttpConn::new(server.resp);
    let reader = sse_reader(&server, "ctl", cases.len() + 1);
    let mut want = Vec::new();
    let mut control_publish = |label: String, want: &mut Vec<String>| {
        let reply = control.resp_exchange(&publish_cmd("ctl", &label));
        assert_eq!(esc(&reply), ":1\\r\\n", "control publish {label:?}: the subscriber is reached");
        want.push(label);
    };
    control_publish("before".into(), &mut want);

    for (what, bytes, expect) in &cases {
        let mut conn = HttpConn::new(server.resp);
        conn.send(bytes);
        match expect {
            Expect::Close(reply) => {
                let got = conn.read_to_close();
                assert_eq!(esc(&got), esc(reply), "{what}: sent {}; want the reply then a close", esc(bytes));
            }
            Expect::Open(reply) => {
                let got = conn.resp_reply();
                assert_eq!(esc(&got), esc(reply), "{what}: sent {}", esc(bytes));
                let pong = conn.resp_exchange(b"PING\r\n");
                assert_eq!(esc(&pong), "+PONG\\r\\n", "{what}: the connection keeps serving after the error");
            }
            Expect::NothingAfterEof => {
                conn.stream.shutdown(Shutdown::Write).unwrap();
                let got = conn.read_to_close();
                assert_eq!(esc(&got), "", "{what}: sent {} and closed; nothing is owed", esc(bytes));
            }
        }
        control_publish(format!("after {what}"), &mut want);
    }

    // The control subscriber saw the control messages and nothing else: no
    // refused or truncated publish got through.
    assert_sse_sequence("control subscriber", &reader.finish(), &want);
    let info = channel_info(&server, "ctl");
    assert_eq!(info["published"], want.len(), "only the control publishes reached ctl: {info}");
}

#[test]
fn pipelined_commands_in_one_write_are_answered_in_order() {
    let server = Server::start(&[]);
    // Every kind of command, both request forms, ending with QUIT.
    let pipeline = |channel: &str| -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(b"PING\r\n");
        p.extend_from_slice(&publish_cmd(channel, "first"));
        p.extend_from_slice(b"ECHO \"hi there\"\r\n");
        p.extend_from_slice(b"NOPE x\r\n");
        p.extend_from_slice(format!("publish {channel} \"second one\"\r\n").as_bytes());
        p.extend_from_slice(&resp_cmd(&[b"PING", b"msg"]));
        p.extend_from_slice(&resp_cmd(&[b"COMMAND", b"DOCS"]));
        p.extend_from_slice(&resp_cmd(&[b"CONFIG", b"GET", b"save"]));
        p.extend_from_slice(b"*0\r\n\r\n"); // an empty array and a blank line: no replies
        p.extend_from_slice(&publish_cmd("pipe:nobody", "nobody"));
        p.extend_from_slice(&publish_cmd(channel, "third"));
        p.extend_from_slice(b"QUIT\r\n");
        p
    };
    let want: &[u8] = b"+PONG\r\n:1\r\n$8\r\nhi there\r\n-ERR unknown command 'NOPE'\r\n:1\r\n$3\r\nmsg\r\n\
                        *0\r\n*0\r\n:0\r\n:1\r\n+OK\r\n";
    let want_data: Vec<String> = ["first", "second one", "third"].map(String::from).to_vec();

    // In one write, with a command after QUIT that is never answered.
    let reader = sse_reader(&server, "pipe:one", 3);
    let mut bytes = pipeline("pipe:one");
    bytes.extend_from_slice(b"PING\r\n");
    let mut conn = HttpConn::new(server.resp);
    conn.send(&bytes);
    let got = conn.read_to_close();
    assert_eq!(esc(&got), esc(want), "replies to the pipeline {}, then a close after QUIT", esc(&bytes));
    assert_sse_sequence("subscriber of the pipelined publishes", &reader.finish(), &want_data);

    // One byte per write (up to QUIT: writing past it could meet the closed
    // socket): the same replies.
    let reader = sse_reader(&server, "pipe:bytes", 3);
    let mut conn = HttpConn::new(server.resp);
    for byte in &pipeline("pipe:bytes") {
        conn.send(std::slice::from_ref(byte));
    }
    let got = conn.read_to_close();
    assert_eq!(esc(&got), esc(want), "the pipeline sent one byte per write");
    assert_sse_sequence("subscriber of the byte-by-byte pipeline", &reader.finish(), &want_data);
}

#[test]
fn a_payload_of_exactly_max_message_bytes_is_published() {
    let server = Server::start(&["--max-message-bytes", "1024"]);
    let reader = sse_reader(&server, "edge", 1);
    let payload = "x".repeat(1024);
    let mut conn = HttpConn::new(server.resp);
    assert_eq!(
        esc(&conn.resp_exchange(&publish_cmd("edge", &payload))),
        ":1\\r\\n",
        "a 1024-byte payload at the limit"
    );
    assert_eq!(reader.finish()[0].data.len(), 1024);
}

// ---------------------------------------------------------------------------
// Regressions for server bugs these tests found (fixed).

#[test]
fn inline_publish_over_max_message_bytes_is_refused() {
    let server = Server::start(&["--max-message-bytes", "1024"]);
    let mut conn = HttpConn::new(server.resp);
    let line = format!("PUBLISH big {}\r\n", "x".repeat(3000));
    let reply = conn.resp_exchange(line.as_bytes());
    assert!(
        reply.starts_with(b"-ERR"),
        "a 3000-byte inline payload with --max-message-bytes 1024 was answered {} (HTTP answers 413)",
        esc(&reply)
    );
    let resp = get(server.ingest, "/pub/big");
    assert_eq!(resp.status, 404, "nothing published to big: {}", resp.text());
}

#[test]
fn inline_line_longer_than_the_input_buffer_is_refused() {
    // max_head_bytes + 2 × max_message_bytes + 4096 = 14,336 bytes of input
    // cap, under the 65 KiB inline limit: the line neither completes nor fails.
    let server = Server::start(&["--max-message-bytes", "1024"]);
    let mut conn = HttpConn::new(server.resp);
    conn.send(format!("PUBLISH big {}", "x".repeat(20_000)).as_bytes());
    let got = conn.read_to_close();
    assert!(
        got.starts_with(b"-ERR Protocol error"),
        "a 20,000-byte inline line without a newline: want a protocol error and a close, got {}",
        esc(&got)
    );
}

#[test]
fn pipelined_publishes_then_half_close_are_all_answered() {
    const N: usize = 2000;
    let server = Server::start(&[]);
    let mut conn = HttpConn::new(server.resp);
    let pipeline: Vec<u8> = (0..N).flat_map(|i| publish_cmd("half", &format!("m{i}"))).collect();
    conn.send(&pipeline);
    conn.stream.shutdown(Shutdown::Write).unwrap();
    let got = conn.read_to_close();
    let replies = got.windows(4).filter(|w| w == b":0\r\n").count();
    let tail = esc(&got[got.len().saturating_sub(40)..]);
    assert_eq!(replies, N, "replies to {N} pipelined PUBLISH then EOF, before the close; the last: {tail}");
    let info = channel_info(&server, "half");
    assert_eq!(info["published"], N, "{info}");
}

// ---------------------------------------------------------------------------
// 5. A full publish queue

/// The documented refusal when the publish queue is full.
const BUSY: &str = "-BUSY publish queue is full; retry shortly\r\n";

#[test]
fn full_publish_queue_answers_busy_on_the_resp_port() {
    let server = Server::start(&["--publish-queue", "1", "--batch-max", "1", "--batch-window-us", "5000000"]);
    const CONNS: usize = 6;
    let mut conns: Vec<HttpConn> = (0..CONNS).map(|_| HttpConn::new(server.resp)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(&publish_cmd("busy", &format!("p{i}")));
    }
    // At most three are taken (one flushed, one pending, one queued); their
    // answers come as the 5 s batch window allows, so read all at once.
    let readers: Vec<JoinHandle<(HttpConn, Vec<u8>)>> = conns
        .into_iter()
        .map(|mut conn| {
            thread::spawn(move || {
                let reply = conn.resp_reply();
                (conn, reply)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for (i, r) in readers.into_iter().enumerate() {
        let (mut conn, reply) = r.join().unwrap_or_else(|_| panic!("publisher #{i} got no reply"));
        let text = String::from_utf8_lossy(&reply).into_owned();
        assert!(text == ":0\r\n" || text == BUSY, "publisher #{i}: want :0 or {BUSY:?}, got {text:?}");
        if text == BUSY {
            // A refusal keeps the connection.
            assert_eq!(esc(&conn.resp_exchange(b"PING\r\n")), "+PONG\\r\\n", "publisher #{i} after -BUSY");
        }
        answers.push(text);
    }
    assert!(
        answers.iter().any(|a| a == BUSY),
        "no -BUSY with a queue of 1 and a 5 s batch window: {answers:?}"
    );
    assert!(answers.iter().any(|a| a == ":0\r\n"), "nothing accepted at all: {answers:?}");
    let accepted = answers.iter().filter(|a| *a == ":0\r\n").count();
    let info = channel_info(&server, "busy");
    assert_eq!(info["published"], accepted, "every :0 was published, no -BUSY was: {info} vs {answers:?}");
}

#[test]
fn sequential_publishes_from_one_connection_arrive_complete_and_in_order() {
    let server = Server::start(&[]);
    const N: usize = 2000;
    let http_sub = sse_reader(&server, "seq-http", N);
    let resp_sub = stream_reader(&server, "seq-resp", N);
    // Two publishers at once, each strictly one request at a time: the
    // next goes out only when the last is answered.
    let ingest = server.ingest;
    let http = thread::spawn(move || {
        let mut conn = HttpConn::new(ingest);
        let mut last = (0, 0);
        for i in 0..N {
            conn.send(&format_request("POST", "/pub/seq-http", &[], i.to_string().as_bytes()));
            let resp = conn.response();
            assert_eq!(resp.status, 200, "HTTP publish {i}: {}", resp.text());
            let id = resp.json()["id"].as_str().expect("id").to_string();
            assert!(id_key(&id) > last, "HTTP publish {i}: id {id} after {last:?}");
            last = id_key(&id);
        }
    });
    let resp_addr = server.resp;
    let resp = thread::spawn(move || {
        let mut conn = HttpConn::new(resp_addr);
        for i in 0..N {
            assert_eq!(conn.resp_call(&["PUBLISH", "seq-resp", &i.to_string()]), ":1", "RESP publish {i}");
        }
    });
    http.join().expect("HTTP publisher");
    resp.join().expect("RESP publisher");
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let events = http_sub.finish();
    assert_eq!(
        events.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        want,
        "SSE: every HTTP publish, in order"
    );
    let envelopes = resp_sub.finish();
    let got: Vec<String> = envelopes.iter().map(|e| e["data"].as_str().unwrap_or("?").to_string()).collect();
    assert_eq!(got, want, "NDJSON: every RESP publish, in order");
}

#[test]
fn a_pipelined_group_meeting_a_full_queue_is_refused_whole_and_in_place() {
    let server = Server::start(&["--publish-queue", "1", "--batch-max", "1", "--batch-window-us", "5000000"]);
    // One publish goes out at once and opens a 5 s window; what follows waits.
    let mut first = HttpConn::new(server.resp);
    assert_eq!(first.resp_call(&["PUBLISH", "group", "first"]), ":0");
    const CONNS: usize = 5;
    let readers: Vec<JoinHandle<Vec<String>>> = (0..CONNS)
        .map(|i| {
            let mut conn = HttpConn::new(server.resp);
            let mut bytes = resp_args(&["PING"]);
            bytes.extend(publish_cmd("group", &format!("c{i}a")));
            bytes.extend(publish_cmd("group", &format!("c{i}b")));
            bytes.extend(resp_args(&["PING"]));
            conn.send(&bytes);
            thread::spawn(move || (0..4).map(|_| conn.resp_line()).collect())
        })
        .collect();
    let mut accepted = 0;
    let mut refused = 0;
    for (i, r) in readers.into_iter().enumerate() {
        let lines = r.join().unwrap_or_else(|_| panic!("connection #{i} got no replies"));
        match lines.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["+PONG", ":0", ":0", "+PONG"] => accepted += 1,
            ["+PONG", b1, b2, "+PONG"] if b1.starts_with("-BUSY") && b2.starts_with("-BUSY") => refused += 1,
            _ => panic!("connection #{i}: a group is accepted or refused whole, in place: {lines:?}"),
        }
    }
    assert!(refused > 0, "a queue of 1 refused no group");
    assert!(accepted > 0, "a queue of 1 took no group");
    let info = channel_info(&server, "group");
    assert_eq!(info["published"], 1 + 2 * accepted, "every :0 was published, no -BUSY was: {info}");
}
