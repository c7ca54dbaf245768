//! A WebSocket on an HTTP/2 stream (RFC 8441): an extended CONNECT
//! (`:protocol websocket`) on `/sub/{channels}?transport=ws` or `/bayeux`,
//! admitted and routed as the HTTP/1.1 upgrade is, is answered `200`
//! without END_STREAM, and from then on the stream's DATA in both
//! directions carries WebSocket frames. The session is the one HTTP/1.1
//! WebSockets run (`ws_session.rs`); this file only carries it: client
//! DATA in, the session's frames out as DATA (a delivery is the message's
//! shared WebSocket frame behind a DATA header, see `H2Conn::deliver`), and
//! the session's end as END_STREAM.
//!
//! Flow control: the connection returns credit for client DATA as it reads
//! it, and the session consumes it at once (a partial frame waits, at most
//! one frame); our DATA waits for the client's window like any stream's,
//! and a socket whose window stays shut is cut like a slow consumer.

use std::sync::Arc;

use super::conn::{Cx, Mail};
use super::h2_conn::H2Conn;
use super::h2_stream::Phase;
use super::subscription::Subscription;
use super::ws_session::{Out, WsSession};
use crate::chunk::Chunk;
use crate::h2::ErrorCode;
use crate::hub::Message;
use crate::transport::EndReason;

/// A channel socket whose subscribe is with the hub.
pub struct Pending {
    /// The token that admitted it, for channels it subscribes to later.
    pub claims: Option<crate::auth::Claims>,
    /// Client frames that came before the answer (a client need not wait
    /// for the `200`): read once the session starts.
    pub input: Vec<u8>,
}

/// Client bytes a socket may send before its `200`: one whole frame.
const EARLY_INPUT: usize = crate::ws::MAX_FRAME_PAYLOAD + 14;

/// The `200` that opens the socket (RFC 8441 §5: no Sec-WebSocket-Accept).
fn head(conn: &mut H2Conn, cx: &mut Cx, stream: u32, gap: bool) {
    let fields: &[(&str, &[u8])] = if gap { &[("x-halley-gap", b"1")] } else { &[] };
    let block = crate::h2::hpack::encode_response(200, fields);
    conn.send_headers(cx, stream, &block, false);
    crate::stats::inc(&cx.env.stats().h2.websockets);
}

/// The hub answered a channel socket's subscribe: `200`, the catch-up, then it listens.
pub fn open(
    conn: &mut H2Conn,
    cx: &mut Cx,
    stream: u32,
    sub: Subscription,
    pending: Pending,
    catchup: &[Arc<Message>],
) {
    head(conn, cx, stream, sub.gap);
    let mut out = Out::default();
    let session = WsSession::channels(cx, sub, pending.claims, catchup, &mut out);
    start(conn, cx, stream, session, pending.input, out);
}

/// A Bayeux socket: `200`, then Bayeux messages both ways.
pub fn open_bayeux(conn: &mut H2Conn, cx: &mut Cx, stream: u32) {
    head(conn, cx, stream, false);
    let session = WsSession::bayeux(cx, stream);
    start(conn, cx, stream, session, Vec::new(), Out::default());
}

/// Installs the session on its stream, writes what it has (the catch-up),
/// then reads what the client sent before the `200`.
fn start(conn: &mut H2Conn, cx: &mut Cx, stream: u32, mut session: WsSession, input: Vec<u8>, mut out: Out) {
    if cx.io.shutting_down() || conn.stopping {
        session.end(EndReason::Shutdown, &mut out);
    }
    let Some(s) = conn.streams.get_mut(&stream) else { return session.leave(cx) };
    s.due = Some(session.due(cx));
    s.phase = Phase::Ws { session: Box::new(session), input };
    let ended = out.end;
    write(conn, cx, stream, out);
    if !ended {
        data(conn, cx, stream, Vec::new(), false);
    }
}

/// Runs `f` on `stream`'s session (if it is a socket) and writes what it asks for.
fn with_session(
    conn: &mut H2Conn,
    cx: &mut Cx,
    stream: u32,
    f: impl FnOnce(&mut WsSession, &mut Cx, &mut Vec<u8>, &mut Out) -> Option<std::time::Instant>,
) {
    let Some(s) = conn.streams.get_mut(&stream) else { return };
    let Phase::Ws { session, input } = &mut s.phase else { return };
    let mut out = Out::default();
    if let Some(due) = f(session, cx, input, &mut out) {
        s.due = Some(due);
    }
    write(conn, cx, stream, out);
}

/// Client DATA for a socket (or for one whose subscribe is with the hub);
/// `end`: the client's half is over without a close frame (like a FIN).
pub fn data(conn: &mut H2Conn, cx: &mut Cx, stream: u32, bytes: Vec<u8>, end: bool) {
    let Some(s) = conn.streams.get_mut(&stream) else { return };
    if let Phase::Subscribing { ws: Some(pending), .. } = &mut s.phase {
        pending.input.extend_from_slice(&bytes);
        if end {
            super::h2_stream::reset(conn, cx, stream, ErrorCode::Cancel, "WebSocket ended before its 200");
        } else if pending.input.len() > EARLY_INPUT {
            let why = "WebSocket data over one frame before its 200";
            super::h2_stream::reset(conn, cx, stream, ErrorCode::EnhanceYourCalm, why);
        }
        return;
    }
    with_session(conn, cx, stream, |session, cx, input, out| {
        input.extend_from_slice(&bytes);
        session.read(cx, input, out);
        out.end |= end;
        None
    });
}

/// Mail for a socket: its subscribe commands' answers, Bayeux replies, ends.
pub fn mail(conn: &mut H2Conn, cx: &mut Cx, stream: u32, mail: Mail) {
    with_session(conn, cx, stream, |session, cx, _, out| {
        session.mail(cx, mail, out);
        None
    });
}

/// Ends a socket early (shutdown, a deleted channel) with a close frame naming why.
pub fn end(conn: &mut H2Conn, cx: &mut Cx, stream: u32, reason: EndReason) {
    with_session(conn, cx, stream, |session, _, _, out| {
        session.end(reason, out);
        None
    });
}

/// A socket's timer: a heartbeat (a ping), or its end.
pub fn tick(conn: &mut H2Conn, cx: &mut Cx, stream: u32) {
    with_session(conn, cx, stream, |session, cx, _, out| session.tick(cx, out));
}

/// Writes the session's frames as DATA; when it is over, the last carries
/// END_STREAM and the stream is done (it may stay open on the client's
/// side until the client's own close frame and END_STREAM, RFC 8441 §5).
fn write(conn: &mut H2Conn, cx: &mut Cx, stream: u32, out: Out) {
    if out.end {
        let Some(s) = conn.streams.get_mut(&stream) else { return };
        s.due = None;
        if let Phase::Ws { mut session, .. } = std::mem::replace(&mut s.phase, Phase::Done) {
            session.leave(cx);
        }
    }
    let n = out.frames.len();
    for (i, (chunk, exempt)) in out.frames.into_iter().enumerate() {
        conn.send_data(cx, stream, chunk, out.end && i + 1 == n, exempt);
    }
    if out.end && n == 0 {
        conn.send_data(cx, stream, Chunk::Static(b""), true, true);
    }
}
