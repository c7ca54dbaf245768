//! WebSocket connections on the worker: client frames in, channel changes
//! with acknowledgements, control frames, and the close handshake. Framing is
//! the sans-IO codec in `crate::ws`; this file only decides what to do.

use std::sync::Arc;

use serde_json::Value;

use super::conn::{Conn, Phase, Subscription};
use super::worker::{set_phase, Worker};
use crate::chunk::Chunk;
use crate::fanout::{Control, ReplyTo, Start, Subscribe, Subscribed};
use crate::hub::validate_channel;
use crate::reactor::{ConnKey, Io};
use crate::transport::Encoding;
use crate::ws::{self, close_frame, encode_frame, Decoded, Event, Opcode};

/// "Unsupported data" (RFC 6455 7.4.1): we take text commands only.
const CLOSE_UNSUPPORTED: u16 = 1003;

/// What a client's text message asks for.
enum Command {
    Subscribe(Vec<Arc<str>>),
    Unsubscribe(Vec<Arc<str>>),
}

impl Worker {
    /// Decodes every complete client frame in the input buffer.
    pub(super) fn ws_input(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        loop {
            let Some((conn, input)) = io.conn_and_input(key) else { return };
            let Phase::Streaming(sub) = &mut conn.phase else { return };
            let Some(session) = sub.ws.as_mut() else { return };
            if session.closing {
                input.clear();
                return;
            }
            let event = match ws::decode(input, ws::MAX_FRAME_PAYLOAD) {
                Ok(Decoded::Partial) => return,
                Ok(Decoded::Frame { frame, consumed }) => {
                    input.drain(..consumed);
                    session.assembler.push(frame)
                }
                Err(e) => Err(e),
            };
            io.resume_read(key);
            match event {
                Ok(None) => {}
                Ok(Some(event)) => self.ws_event(io, key, event),
                Err(e) => return self.ws_close(io, key, e.code, &e.reason),
            }
        }
    }

    fn ws_event(&mut self, io: &mut Io<Conn>, key: ConnKey, event: Event) {
        let bayeux = matches!(io.conn(key).map(|c| &c.phase), Some(Phase::Streaming(sub)) if sub.ws.as_ref().is_some_and(|w| w.bayeux));
        match event {
            Event::Text(text) if bayeux => self.bayeux_frame(io, key, &text),
            Event::Text(text) => match parse_command(&text, self.shared.limits.max_channels) {
                Ok(Command::Subscribe(channels)) => self.ws_subscribe(io, key, channels),
                Ok(Command::Unsubscribe(channels)) => self.ws_unsubscribe(io, key, channels),
                Err(message) => ws_send_json(io, key, &serde_json::json!({ "error": message })),
            },
            Event::Binary(_) => self.ws_close(io, key, CLOSE_UNSUPPORTED, "binary messages are not accepted"),
            Event::Ping(payload) => {
                io.send(key, Chunk::Owned(encode_frame(Opcode::Pong, &payload)));
            }
            Event::Pong(_) => {}
            Event::Close { code, .. } => self.ws_close(io, key, code.unwrap_or(ws::frame::CLOSE_NORMAL), ""),
        }
    }

    /// Sends a close frame and closes once it is written; later input is ignored.
    pub(super) fn ws_close(&mut self, io: &mut Io<Conn>, key: ConnKey, code: u16, reason: &str) {
        let Some(conn) = io.conn(key) else { return };
        if let Phase::Streaming(sub) = &mut conn.phase {
            if let Some(session) = sub.ws.as_mut() {
                if session.closing {
                    return;
                }
                session.closing = true;
            }
        }
        io.send_exempt(key, Chunk::Owned(close_frame(code, reason)));
        io.close_after_flush(key);
    }

    fn ws_subscribe(&mut self, io: &mut Io<Conn>, key: ConnKey, channels: Vec<Arc<str>>) {
        let max = self.shared.limits.max_channels;
        let Some(Phase::Streaming(sub)) = io.conn(key).map(|c| &mut c.phase) else { return };
        let Some(session) = sub.ws.as_mut() else { return };
        let fresh: Vec<Arc<str>> = channels
            .iter()
            .filter(|c| !sub.channels.contains(c) && !session.pending.contains(c))
            .cloned()
            .collect();
        if sub.channels.len() + session.pending.len() + fresh.len() > max {
            let message = format!("a WebSocket may listen to at most {max} channels");
            return ws_send_json(io, key, &serde_json::json!({ "error": message }));
        }
        // Channels that need a token must be granted by the one the socket opened with.
        if let Some(policy) = &self.shared.guard.auth {
            let now_secs = crate::hub::id::unix_ms() / 1000;
            let claims = session.claims.as_ref().filter(|c| c.exp.is_none_or(|exp| now_secs < exp));
            let denied = fresh.iter().find(|c| {
                policy.requires(c)
                    && !claims
                        .is_some_and(|cl| cl.channels.iter().any(|p| crate::auth::pattern_matches(p, c)))
            });
            if let Some(channel) = denied {
                let message = format!("the connection's token does not grant channel '{channel}'");
                return ws_send_json(io, key, &serde_json::json!({ "error": message }));
            }
        }
        if fresh.is_empty() {
            return ws_send_json(io, key, &serde_json::json!({ "subscribed": names(&channels) }));
        }
        session.cancelled.retain(|c| !fresh.contains(c));
        session.pending.extend(fresh.iter().cloned());
        self.fanout.control(Control::Subscribe(Subscribe {
            reply: ReplyTo { loop_id: self.loop_id, conn: key.to_u64() },
            channels: fresh,
            encoding: Encoding::Ws,
            start: Start::Now,
            only_if_nothing_to_send: false,
        }));
    }

    /// Takes effect at once: the channels leave the index before the ack.
    fn ws_unsubscribe(&mut self, io: &mut Io<Conn>, key: ConnKey, channels: Vec<Arc<str>>) {
        let Some(Phase::Streaming(sub)) = io.conn(key).map(|c| &mut c.phase) else { return };
        let Some(session) = sub.ws.as_mut() else { return };
        let mut leaving = Vec::new();
        for channel in &channels {
            if let Some(i) = sub.channels.iter().position(|c| c == channel) {
                leaving.push(sub.channels.swap_remove(i));
            } else if let Some(i) = session.pending.iter().position(|c| c == channel) {
                session.cancelled.push(session.pending.swap_remove(i));
            }
        }
        self.delist_channels(key, leaving, Encoding::Ws);
        ws_send_json(io, key, &serde_json::json!({ "unsubscribed": names(&channels) }));
    }

    /// The fan-out thread registered channels a WebSocket asked for.
    pub(super) fn ws_subscribed(
        &mut self,
        io: &mut Io<Conn>,
        key: ConnKey,
        mut sub: Box<Subscription>,
        reply: Subscribed,
    ) {
        let mut added = Vec::new();
        let mut undo = Vec::new();
        if let Some(session) = sub.ws.as_mut() {
            for channel in reply.channels {
                session.pending.retain(|c| *c != channel);
                let cancelled = session.cancelled.iter().position(|c| *c == channel);
                if let Some(i) = cancelled {
                    session.cancelled.swap_remove(i);
                    undo.push(channel);
                } else if sub.channels.contains(&channel) {
                    undo.push(channel);
                } else {
                    sub.channels.push(channel.clone());
                    added.push(channel);
                }
            }
        }
        self.enlist_channels(key, &added);
        self.unregister(undo, Encoding::Ws);
        set_phase(io, key, Phase::Streaming(sub));
        ws_send_json(io, key, &serde_json::json!({ "subscribed": names(&added) }));
    }
}

fn names(channels: &[Arc<str>]) -> Vec<&str> {
    channels.iter().map(|c| &**c).collect()
}

/// Sends one JSON text frame (acks and errors; messages use shared frames).
fn ws_send_json(io: &mut Io<Conn>, key: ConnKey, value: &Value) {
    io.send(key, Chunk::Owned(encode_frame(Opcode::Text, value.to_string().as_bytes())));
}

/// `{"subscribe":[…]}` or `{"unsubscribe":[…]}` with valid channel names.
fn parse_command(text: &str, max: usize) -> Result<Command, String> {
    const SHAPE: &str = r#"expected {"subscribe":["channel",…]} or {"unsubscribe":["channel",…]}"#;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON ({e}); {SHAPE}"))?;
    let Value::Object(map) = value else { return Err(SHAPE.into()) };
    let mut entries = map.into_iter();
    let (Some((op, Value::Array(list))), None) = (entries.next(), entries.next()) else {
        return Err(SHAPE.into());
    };
    if list.len() > max {
        return Err(format!("{} channels in one command; the limit is {max}", list.len()));
    }
    let mut channels: Vec<Arc<str>> = Vec::with_capacity(list.len());
    for item in list {
        let Value::String(name) = item else { return Err(SHAPE.into()) };
        validate_channel(&name).map_err(|e| e.to_string())?;
        if !channels.iter().any(|c| **c == *name) {
            channels.push(Arc::from(name));
        }
    }
    match op.as_str() {
        "subscribe" => Ok(Command::Subscribe(channels)),
        "unsubscribe" => Ok(Command::Unsubscribe(channels)),
        _ => Err(SHAPE.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let ok: &[(&str, bool, &[&str])] = &[
            (r#"{"subscribe":["a","b/c","a"]}"#, true, &["a", "b/c"]),
            (r#"{"unsubscribe":[]}"#, false, &[]),
        ];
        for (text, sub, want) in ok {
            match parse_command(text, 4) {
                Ok(Command::Subscribe(c)) if *sub => assert_eq!(names(&c), *want),
                Ok(Command::Unsubscribe(c)) if !*sub => assert_eq!(names(&c), *want),
                _ => panic!("{text} misparsed"),
            }
        }
        let bad: &[(&str, &str)] = &[
            ("nope", "invalid JSON"),
            ("[1]", "expected"),
            (r#"{"subscribe":"a"}"#, "expected"),
            (r#"{"subscribe":[1]}"#, "expected"),
            (r#"{"subscribe":["a"],"x":1}"#, "expected"),
            (r#"{"join":["a"]}"#, "expected"),
            (r#"{"subscribe":["/a"]}"#, "starts with /"),
            (r#"{"subscribe":["a","b","c","d","e"]}"#, "limit is 4"),
        ];
        for (text, needle) in bad {
            let err = parse_command(text, 4).err().unwrap_or_else(|| panic!("{text} accepted"));
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
