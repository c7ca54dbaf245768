//! Tests of the client connection: server frames in (cut at every point),
//! events and answering frames out.

use super::*;
use crate::h2::frame::{write_head, DATA, GOAWAY, HEADERS, PING, SETTINGS};

/// Events as owned values, for comparing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Response(u32, u16, Vec<u8>),
    Bad(u32, String),
    Data(u32, Vec<u8>),
    End(u32),
    Reset(u32, u32),
    GoAway(u32, u32, Vec<u8>),
}

fn own(e: Event<'_>) -> Ev {
    match e {
        Event::Response { stream, head } => Ev::Response(stream, head.status, head.content_type().to_vec()),
        Event::BadResponse { stream, why } => Ev::Bad(stream, why),
        Event::Data { stream, data } => Ev::Data(stream, data.to_vec()),
        Event::End { stream } => Ev::End(stream),
        Event::Reset { stream, code } => Ev::Reset(stream, code),
        Event::GoAway { last_stream, code, debug } => Ev::GoAway(last_stream, code, debug.to_vec()),
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_head(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

/// Feeds `pieces` the way the worker does (unused bytes carried over).
fn feed(c: &mut Client, pieces: &[&[u8]]) -> Result<Vec<Ev>, String> {
    let mut carry = Vec::new();
    let mut evs = Vec::new();
    for p in pieces {
        carry.extend_from_slice(p);
        let used = c.recv(&carry, &mut |e| evs.push(own(e)))?;
        carry.drain(..used);
    }
    assert!(carry.is_empty(), "bytes left over: {carry:?}");
    Ok(evs)
}

/// A client with streams 1 and 3 requested, its output taken, that has
/// seen the server's SETTINGS.
fn client() -> Client {
    let mut c = Client::new();
    c.recv(&frame(SETTINGS, 0, 0, b""), &mut |_| {}).unwrap();
    assert!(c.out.starts_with(frame::PREFACE));
    assert_eq!(c.request(b"\x82").unwrap(), 1);
    assert_eq!(c.request(b"\x82").unwrap(), 3);
    c.out.clear();
    c
}

const SSE_HEAD: &[u8] = b"\x08\x03200\x00\x0ccontent-type\x11text/event-stream";

#[test]
fn preface_and_settings() {
    let c = Client::new();
    let rest = &c.out[frame::PREFACE.len()..];
    let h = frame::head(rest).unwrap();
    assert_eq!((h.kind, h.len), (SETTINGS, 18));
    let settings = &rest[HEADER_LEN..HEADER_LEN + 18];
    assert_eq!(settings, [0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 4, 0, 0x80, 0, 0]);
    let wu = &rest[HEADER_LEN + 18..];
    assert_eq!(frame::head(wu).unwrap().kind, frame::WINDOW_UPDATE);
    assert_eq!(u32::from_be_bytes(wu[9..13].try_into().unwrap()), CONN_WINDOW - 65_535);
}

#[test]
fn a_stream_split_anywhere() {
    let mut input = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    input.extend(frame(SETTINGS, FLAG_ACK, 0, b""));
    input.extend(frame(HEADERS, FLAG_END_HEADERS, 1, SSE_HEAD));
    input.extend(frame(DATA, 0, 1, b"data: s=1 t=2\n\n"));
    input.extend(frame(PING, 0, 0, b"abcdefgh"));
    // Padded DATA, then a header block in two pieces, ending the stream.
    input.extend(frame(DATA, frame::FLAG_PADDED, 3, b"\x00"));
    input.extend(frame(HEADERS, frame::FLAG_PADDED, 3, b"\x02\x88xx"));
    input.extend(frame(frame::CONTINUATION, FLAG_END_HEADERS, 3, b"\x5f\x01x"));
    input.extend(frame(DATA, frame::FLAG_PADDED | FLAG_END_STREAM, 3, b"\x01{}p"));
    let want = vec![
        Ev::Response(1, 200, b"text/event-stream".to_vec()),
        Ev::Data(1, b"data: s=1 t=2\n\n".to_vec()),
        Ev::Response(3, 200, b"x".to_vec()),
        Ev::Data(3, b"{}".to_vec()),
        Ev::End(3),
    ];
    for cut in 0..=input.len() {
        let mut c = client();
        // DATA on stream 3 before its headers: the stream is reset and
        // what follows on it is dropped.
        let (a, b) = input.split_at(cut);
        let evs = feed(&mut c, &[a, b]);
        let evs = evs.unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let mut early = want[..2].to_vec();
        early.push(Ev::Bad(3, "HTTP/2: DATA before the response headers".into()));
        assert_eq!(evs, early, "cut {cut}");
        assert_eq!(c.max_streams, Some(100));
        // SETTINGS ack, PING ack, RST_STREAM of 3, in that order.
        let mut acks = Vec::new();
        frame::write_settings_ack(&mut acks);
        frame::write_ping_ack(&mut acks, b"abcdefgh");
        frame::write_rst_stream(&mut acks, 3, frame::PROTOCOL_ERROR);
        assert_eq!(c.out, acks, "cut {cut}");
    }
    // Without the early DATA on 3, every event arrives.
    let early = frame(DATA, frame::FLAG_PADDED, 3, b"\x00");
    let at = input.windows(early.len()).position(|w| w == early).unwrap();
    input.drain(at..at + early.len());
    for size in 1..8 {
        let mut c = client();
        let pieces: Vec<&[u8]> = input.chunks(size).collect();
        assert_eq!(feed(&mut c, &pieces).unwrap(), want, "pieces of {size}");
        assert_eq!(c.open_streams(), 1);
    }
}

#[test]
fn windows_are_given_back() {
    let mut c = client();
    let mut input = frame(HEADERS, FLAG_END_HEADERS, 1, SSE_HEAD);
    let chunk = vec![b'x'; MAX_FRAME];
    let frames = (STREAM_WINDOW / 2) as usize / MAX_FRAME;
    for _ in 0..frames {
        input.extend(frame(DATA, 0, 1, &chunk));
    }
    let evs = feed(&mut c, &[&input]).unwrap();
    assert_eq!(evs.len(), 1 + frames);
    let mut want = Vec::new();
    frame::write_window_update(&mut want, 1, STREAM_WINDOW / 2);
    assert_eq!(c.out, want);
    // The connection's window is given back at half of CONN_WINDOW.
    c.out.clear();
    c.conn_unacked = CONN_WINDOW / 2 - 1;
    feed(&mut c, &[&frame(DATA, 0, 1, b"ab")]).unwrap();
    let mut want = Vec::new();
    frame::write_window_update(&mut want, 0, CONN_WINDOW / 2 + 1);
    assert_eq!(c.out, want);
}

#[test]
fn resets_goaway_and_unreadable_heads() {
    let mut c = client();
    let mut input = frame(frame::RST_STREAM, 0, 1, &frame::REFUSED_STREAM.to_be_bytes());
    // Huffman-coded :status: stream 3 fails with the reason, and is reset.
    input.extend(frame(HEADERS, FLAG_END_HEADERS, 3, b"\x08\x83abc"));
    input.extend(frame(GOAWAY, 0, 0, b"\x00\x00\x00\x03\x00\x00\x00\x0bcalm"));
    let evs = feed(&mut c, &[&input]).unwrap();
    assert_eq!(evs[0], Ev::Reset(1, frame::REFUSED_STREAM));
    assert!(matches!(&evs[1], Ev::Bad(3, why) if why.contains("Huffman")), "{evs:?}");
    assert_eq!(evs[2], Ev::GoAway(3, 11, b"calm".to_vec()));
    let mut want = Vec::new();
    frame::write_rst_stream(&mut want, 3, frame::CANCEL);
    assert_eq!(c.out, want);
    assert_eq!(c.open_streams(), 0);
    // Frames of a stream already gone are dropped.
    assert_eq!(feed(&mut c, &[&frame(DATA, FLAG_END_STREAM, 3, b"late")]).unwrap(), []);
}

#[test]
fn informational_heads_and_trailers() {
    let mut c = client();
    let mut input = frame(HEADERS, FLAG_END_HEADERS, 1, b"\x08\x03103");
    input.extend(frame(HEADERS, FLAG_END_HEADERS, 1, b"\x8b"));
    input.extend(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, b"\x00\x01x\x01y"));
    input.extend(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, b"\x8d"));
    let evs = feed(&mut c, &[&input]).unwrap();
    assert_eq!(evs, [Ev::Response(1, 304, vec![]), Ev::End(1), Ev::Response(3, 404, vec![]), Ev::End(3)]);
}

#[test]
fn connection_errors() {
    let cases: &[(Vec<u8>, &str)] = &[
        (frame(frame::PUSH_PROMISE, 0, 1, b"\x00\x00\x00\x02"), "PUSH_PROMISE"),
        (frame(DATA, 0, 0, b"x"), "stream 0"),
        (frame(PING, 0, 0, b"short"), "PING"),
        (frame(SETTINGS, 0, 0, b"12345"), "SETTINGS"),
        (frame(frame::CONTINUATION, FLAG_END_HEADERS, 1, b"\x88"), "CONTINUATION without"),
        ([frame(HEADERS, 0, 1, b"\x88"), frame(PING, 0, 0, b"12345678")].concat(), "interrupted"),
        (frame(DATA, frame::FLAG_PADDED, 1, b"\x09abc"), "padding"),
    ];
    for (input, want) in cases {
        let e = feed(&mut client(), &[input]).unwrap_err();
        assert!(e.contains(want), "{want}: {e}");
    }
    // The first frame must be SETTINGS: an HTTP/1.1 answer is named as such.
    for (input, want) in [
        (&b"HTTP/1.1 400 Bad Request\r\n\r\n"[..], "answered in HTTP/1.x ('HTTP/1.1 400 Bad Request"),
        (&frame(PING, 0, 0, b"12345678"), "first frame is not SETTINGS"),
    ] {
        let e = Client::new().recv(input, &mut |_| {}).unwrap_err();
        assert!(e.contains(want), "{e}");
    }
    let mut big = Vec::new();
    write_head(&mut big, MAX_FRAME + 1, DATA, 0, 1);
    let e = client().recv(&big, &mut |_| {}).unwrap_err();
    assert!(e.contains("over the 16384"), "{e}");
}
