use super::*;
use crate::h2::frame::*;

fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        out.push(0);
        hpack::encode_integer(&mut out, n.len(), 7, 0);
        out.extend_from_slice(n.as_bytes());
        hpack::encode_integer(&mut out, v.len(), 7, 0);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn get(path: &str) -> Vec<u8> {
    block(&[(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "x")])
}

fn start() -> Vec<u8> {
    let mut b = PREFACE.to_vec();
    b.extend(encode_settings(&[]));
    b
}

/// Feeds `bytes` `step` at a time (as a socket might), like the server does.
fn feed(c: &mut Connection, bytes: &[u8], step: usize) -> Result<Vec<Event>, H2Error> {
    let now = Instant::now();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        let (used, ev) = c.recv(&buf, now)?;
        buf.drain(..used);
        events.extend(ev);
    }
    Ok(events)
}

fn frames(out: &[u8]) -> Vec<String> {
    let mut at = 0;
    let mut v = Vec::new();
    while let Ok(Decoded::Complete { frame, consumed }) = decode(&out[at..], 1 << 20) {
        v.push(format!("{frame:?}"));
        at += consumed;
    }
    v
}

#[test]
fn a_request_whatever_the_split() {
    let mut bytes = start();
    bytes.extend(encode_headers(1, &get("/sub/a"), true, 16384));
    bytes.extend(encode(TYPE_PING, 0, 0, b"pingping"));
    for step in [1, 3, 7, bytes.len()] {
        let mut c = Connection::new(Limits::default());
        let events = feed(&mut c, &bytes, step).unwrap();
        assert_eq!(events.len(), 1, "step {step}: {events:?}");
        let Event::Request { stream: 1, fields, end_stream: true } = &events[0] else { panic!("{events:?}") };
        assert_eq!(fields[2], (b":path".to_vec(), b"/sub/a".to_vec()));
        let out = frames(&c.take_output());
        assert!(out[0].starts_with("Settings { ack: false"), "{out:?}");
        assert!(out[1].starts_with("Settings { ack: true"), "{out:?}");
        assert!(out[2].starts_with("Ping { ack: true"), "{out:?}");
    }
}

/// Each row: what the client sends after the preface and SETTINGS, and the
/// error it must get (code, connection-wide or not, words of the reason).
#[test]
fn protocol_errors_table() {
    let h = |s: u32| encode_headers(s, &get("/"), true, 16384);
    let many_cont = {
        let mut b = encode(TYPE_HEADERS, 0, 1, &get("/"));
        for _ in 0..20 {
            b.extend(encode(TYPE_CONTINUATION, 0, 1, b""));
        }
        b
    };
    let big_list = encode_headers(1, &block(&[(":path", "/"), ("x", &"y".repeat(20_000))]), true, 16384);
    let rows: Vec<(&str, Vec<u8>, ErrorCode, &str)> = vec![
        ("even stream", h(2), ErrorCode::Protocol, "odd"),
        (
            "push",
            encode(TYPE_PUSH_PROMISE, FLAG_END_HEADERS, 1, b"\0\0\0\x02"),
            ErrorCode::Protocol,
            "PUSH_PROMISE",
        ),
        (
            "interrupted block",
            [encode(TYPE_HEADERS, 0, 1, &get("/")), encode_ping_ack([0; 8])].concat(),
            ErrorCode::Protocol,
            "interrupted",
        ),
        ("continuation flood", many_cont, ErrorCode::EnhanceYourCalm, "CONTINUATION"),
        ("oversize headers", big_list, ErrorCode::EnhanceYourCalm, "header block over"),
        ("bad hpack", encode_headers(1, &[0x80], true, 16384), ErrorCode::Compression, "index 0"),
        ("window 0", encode_window_update(0, 0), ErrorCode::Protocol, "WINDOW_UPDATE of 0"),
        ("window overflow", encode_window_update(0, (1 << 31) - 1), ErrorCode::FlowControl, "2^31"),
        ("bad frame size setting", encode_settings(&[(5, 100)]), ErrorCode::Protocol, "MAX_FRAME_SIZE"),
        ("bad window setting", encode_settings(&[(4, 1 << 31)]), ErrorCode::FlowControl, "INITIAL_WINDOW"),
        ("data on idle stream", encode(TYPE_DATA, 0, 9, b"x"), ErrorCode::Protocol, "idle"),
        ("frame too big", encode(TYPE_DATA, 0, 1, &vec![0; 20_000]), ErrorCode::FrameSize, "over our limit"),
    ];
    for (name, bytes, code, words) in rows {
        let mut c = Connection::new(Limits::default());
        let err = feed(&mut c, &[start(), bytes].concat(), 5).unwrap_err();
        assert_eq!((err.code, err.stream), (code, None), "{name}: {err}");
        assert!(err.reason.contains(words), "{name}: {err}");
    }
    let mut c = Connection::new(Limits::default());
    let err = feed(&mut c, b"GET / HTTP/1.1\r\n\r\n", 100).unwrap_err();
    assert!(err.reason.contains("preface"), "{err}");
    let mut c = Connection::new(Limits::default());
    let err = feed(&mut c, &[PREFACE.to_vec(), encode_ping_ack([0; 8])].concat(), 100).unwrap_err();
    assert!(err.reason.contains("first frame"), "{err}");
}

#[test]
fn flow_control_per_stream_and_connection() {
    let mut c = Connection::new(Limits::default());
    let mut bytes = start();
    bytes.extend(encode_settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 10)]));
    bytes.extend(encode_headers(1, &get("/a"), true, 16384));
    bytes.extend(encode_headers(3, &get("/b"), true, 16384));
    feed(&mut c, &bytes, 100).unwrap();
    assert_eq!((c.window(1), c.window(3)), (10, 10));
    c.data(1, 10, false);
    assert_eq!((c.window(1), c.window(3)), (0, 10), "a full stream does not stall another");
    let ev = feed(&mut c, &encode_window_update(1, 5), 100).unwrap();
    assert_eq!(ev, vec![Event::WindowOpened]);
    assert_eq!(c.window(1), 5);
    // The connection window (65,535) binds every stream.
    let mut c2 = Connection::new(Limits::default());
    feed(
        &mut c2,
        &[start(), encode_settings(&[(4, 1 << 20)]), encode_headers(1, &get("/"), true, 16384)].concat(),
        100,
    )
    .unwrap();
    assert_eq!(c2.window(1), 65_535);
    c2.data(1, 65_535, false);
    assert_eq!(c2.window(1), 0);
    feed(&mut c2, &encode_window_update(0, 100), 100).unwrap();
    assert_eq!(c2.window(1), 100);
    // A smaller SETTINGS_INITIAL_WINDOW_SIZE may push a window below zero;
    // a larger one opens the windows (and says so).
    let ev = feed(&mut c2, &encode_settings(&[(4, 10)]), 100).unwrap();
    assert_eq!((c2.window(1), ev.len()), (0, 0));
    let ev = feed(&mut c2, &encode_settings(&[(4, 1 << 21)]), 100).unwrap();
    assert_eq!((c2.window(1), ev), (100, vec![Event::WindowOpened]));
    // Request body bytes are credited back at once.
    let mut c3 = Connection::new(Limits::default());
    let post = block(&[(":method", "POST"), (":scheme", "http"), (":path", "/bayeux")]);
    let ev = feed(
        &mut c3,
        &[
            start(),
            encode_headers(1, &post, false, 16384),
            encode(TYPE_DATA, 0, 1, b"[{}]"),
            encode(TYPE_DATA, FLAG_END_STREAM, 1, b""),
        ]
        .concat(),
        3,
    )
    .unwrap();
    assert_eq!(ev[1], Event::Data { stream: 1, data: b"[{}]".to_vec(), end_stream: false });
    assert_eq!(ev[2], Event::Data { stream: 1, data: vec![], end_stream: true });
    let out = frames(&c3.take_output());
    assert!(out.iter().any(|f| f == "WindowUpdate { stream: 0, increment: 4 }"), "{out:?}");
}

#[test]
fn concurrent_stream_limit_refuses_the_extra_stream() {
    let mut c = Connection::new(Limits { max_streams: 2, ..Limits::default() });
    let mut bytes = start();
    for s in [1, 3, 5] {
        bytes.extend(encode_headers(s, &get("/"), true, 16384));
    }
    let ev = feed(&mut c, &bytes, 100).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(c.open_streams(), 2);
    let out = frames(&c.take_output());
    assert!(out.iter().any(|f| f == "RstStream { stream: 5, code: 7 }"), "{out:?}");
    // Its HPACK state stayed in step: the next stream still decodes.
    c.reset(1, ErrorCode::Cancel);
    let ev = feed(&mut c, &encode_headers(7, &get("/x"), true, 16384), 100).unwrap();
    assert!(matches!(ev[..], [Event::Request { stream: 7, .. }]), "{ev:?}");
}

#[test]
fn floods_are_cut() {
    // Rapid reset: open and reset streams in a loop.
    let mut c = Connection::new(Limits { max_resets: 10, ..Limits::default() });
    let mut bytes = start();
    for i in 0..20u32 {
        bytes.extend(encode_headers(2 * i + 1, &get("/"), true, 16384));
        bytes.extend(encode_rst_stream(2 * i + 1, ErrorCode::Cancel));
    }
    let err = feed(&mut c, &bytes, 1000).unwrap_err();
    assert_eq!(err.code, ErrorCode::EnhanceYourCalm);
    assert!(err.reason.contains("rapid reset"), "{err}");
    // Streams over the concurrency limit, again and again: each refusal
    // counts like a reset.
    let mut c = Connection::new(Limits { max_resets: 10, max_streams: 1, ..Limits::default() });
    let mut bytes = start();
    for i in 0..30u32 {
        bytes.extend(encode_headers(2 * i + 1, &get("/"), true, 16384));
    }
    let err = feed(&mut c, &bytes, 1000).unwrap_err();
    assert!(err.reason.contains("stream errors"), "{err}");
    // PING flood.
    let mut c = Connection::new(Limits { max_pings: 5, ..Limits::default() });
    let pings: Vec<u8> = (0..10).flat_map(|_| encode(TYPE_PING, 0, 0, &[1; 8])).collect();
    let err = feed(&mut c, &[start(), pings].concat(), 1000).unwrap_err();
    assert!(err.reason.contains("PING flood"), "{err}");
    // SETTINGS flood.
    let mut c = Connection::new(Limits { max_pings: 5, ..Limits::default() });
    let settings: Vec<u8> = (0..10).flat_map(|_| encode_settings(&[])).collect();
    let err = feed(&mut c, &[start(), settings].concat(), 1000).unwrap_err();
    assert!(err.reason.contains("SETTINGS flood"), "{err}");
    // HPACK bomb: a big entry, then many one-byte references.
    let mut c = Connection::new(Limits::default());
    let mut blk = vec![0x40, 1, b'x'];
    hpack::encode_integer(&mut blk, 4000, 7, 0);
    blk.extend(std::iter::repeat_n(b'y', 4000));
    blk.extend(std::iter::repeat_n(0xbe, 100));
    let err = feed(&mut c, &[start(), encode_headers(1, &blk, true, 16384)].concat(), 1000).unwrap_err();
    assert!(err.reason.contains("header list over"), "{err}");
}

#[test]
fn goaway_stops_new_streams() {
    let mut c = Connection::new(Limits::default());
    feed(&mut c, &[start(), encode_headers(1, &get("/"), true, 16384)].concat(), 100).unwrap();
    c.take_output();
    c.goaway(ErrorCode::NoError, "shutting down");
    assert_eq!(frames(&c.take_output()), vec!["GoAway { last_stream: 1, code: 0 }"]);
    let ev = feed(&mut c, &encode_headers(3, &get("/"), true, 16384), 100).unwrap();
    assert!(ev.is_empty());
    let ev = feed(&mut c, &encode_goaway(0, ErrorCode::NoError, ""), 100).unwrap();
    assert_eq!(ev, vec![Event::GoAway]);
}

#[test]
fn client_reset_and_bad_priority_are_stream_errors() {
    let mut c = Connection::new(Limits::default());
    let mut bytes = start();
    bytes.extend(encode_headers(1, &get("/"), false, 16384));
    bytes.extend(encode(TYPE_PRIORITY, 0, 1, b"\0\0\0\x01\x10"));
    bytes.extend(encode_headers(3, &get("/"), false, 16384));
    bytes.extend(encode_rst_stream(3, ErrorCode::Cancel));
    let ev = feed(&mut c, &bytes, 4).unwrap();
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert_eq!(ev[1], Event::Reset { stream: 1 });
    assert_eq!(ev[3], Event::Reset { stream: 3 });
    assert_eq!(c.open_streams(), 0);
}

#[test]
fn extended_connect_is_offered() {
    let mut c = Connection::new(Limits::default());
    let out = frames(&c.take_output());
    assert!(out[0].contains(&format!("({SETTINGS_ENABLE_CONNECT_PROTOCOL}, 1)")), "{out:?}");
}

/// A stream whose client half stays open (a WebSocket) outlives our
/// END_STREAM: the client's close frame still arrives as DATA, its
/// END_STREAM forgets the stream, and DATA after that is STREAM_CLOSED.
#[test]
fn half_closed_local_until_the_client_ends() {
    let mut c = Connection::new(Limits::default());
    let connect =
        block(&[(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/")]);
    let mut bytes = start();
    bytes.extend(encode_headers(1, &connect, false, 16384));
    feed(&mut c, &bytes, bytes.len()).unwrap();
    c.take_output();
    let _ = c.headers(1, b"\x88", false);
    let _ = c.data(1, 2, true);
    assert_eq!((c.open_streams(), c.is_open(1)), (1, false), "half-closed (local) still counts");
    let close = feed(&mut c, &encode(TYPE_DATA, 0, 1, b"\x88\x80"), 64).unwrap();
    assert_eq!(close, [Event::Data { stream: 1, data: b"\x88\x80".to_vec(), end_stream: false }]);
    let end = feed(&mut c, &encode(TYPE_DATA, FLAG_END_STREAM, 1, b""), 64).unwrap();
    assert_eq!(end, [Event::Data { stream: 1, data: Vec::new(), end_stream: true }]);
    assert_eq!(c.open_streams(), 0, "both halves ended");
    c.take_output();
    feed(&mut c, &encode(TYPE_DATA, 0, 1, b"x"), 64).unwrap();
    let out = frames(&c.take_output());
    let closed = format!("RstStream {{ stream: 1, code: {} }}", ErrorCode::StreamClosed as u32);
    assert!(out.contains(&closed), "{out:?}");
}

/// At the concurrency limit, a new stream takes the slot of the oldest
/// stream we ended whose client never ended its half (reset with
/// NO_ERROR); with none such, the new stream is refused.
#[test]
fn a_new_stream_takes_the_slot_of_a_half_closed_local_one() {
    let mut c = Connection::new(Limits { max_streams: 2, ..Limits::default() });
    let connect =
        block(&[(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/")]);
    let mut bytes = start();
    bytes.extend(encode_headers(1, &connect, false, 16384));
    bytes.extend(encode_headers(3, &connect, false, 16384));
    feed(&mut c, &bytes, bytes.len()).unwrap();
    c.take_output();
    // Both open: a third is refused.
    feed(&mut c, &encode_headers(5, &get("/"), true, 16384), 64).unwrap();
    let refused = format!("RstStream {{ stream: 5, code: {} }}", ErrorCode::RefusedStream as u32);
    assert!(frames(&c.take_output()).contains(&refused));
    // We end stream 3; its client does not. The next stream takes its slot.
    let _ = c.headers(3, b"\x88", true);
    let ev = feed(&mut c, &encode_headers(7, &get("/"), true, 16384), 64).unwrap();
    assert!(matches!(ev.as_slice(), [Event::Request { stream: 7, .. }]), "{ev:?}");
    let reaped = format!("RstStream {{ stream: 3, code: {} }}", ErrorCode::NoError as u32);
    assert!(frames(&c.take_output()).contains(&reaped));
    assert_eq!(c.open_streams(), 2);
    assert!(c.is_open(1) && c.is_open(7));
}
