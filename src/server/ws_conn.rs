//! The WebSocket handler: client frames in (the sans-IO codec in
//! `crate::ws` does the framing), control frames and the close handshake,
//! and what the text messages carry: channel commands with
//! acknowledgements (`/sub/...?transport=ws`), or Bayeux messages for the
//! Bayeux thread (`/bayeux`). Envelopes arrive through the delivery index.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::conn::{Cx, Handle, Handler, Mail};
use super::respond;
use super::subscription::Subscription;
use crate::bayeux::engine::Transport as BayeuxTransport;
use crate::bayeux::message::parse_body;
use crate::bayeux::thread::BayeuxIn;
use crate::chunk::Chunk;
use crate::fanout::{Control, Listen, Start, Subscribe, Subscribed};
use crate::hub::{validate_channel, Message, Part};
use crate::reactor::{CloseReason, ConnKey, Io};
use crate::transport::{Encoding, EndReason, Transport};
use crate::ws::{self, close_frame, encode_frame, Decoded, Event, Opcode};

/// "Unsupported data" (RFC 6455 7.4.1): we take text commands only.
const CLOSE_UNSUPPORTED: u16 = 1003;

/// What a client's text message asks for.
enum Command {
    Subscribe(Vec<Arc<str>>),
    Unsubscribe(Vec<Arc<str>>),
}

pub struct WsConn {
    /// Reassembles fragmented client messages (bounded).
    assembler: ws::Assembler,
    /// A close frame was sent; input is ignored from now on.
    closing: bool,
    /// When the socket ends with a close frame (maximum age or token expiry).
    ends_at: Instant,
    end_reason: EndReason,
    carries: Carries,
}

/// What the socket's text messages are.
enum Carries {
    /// Channel commands; envelopes flow out.
    Channels(Box<Channels>),
    /// Bayeux messages, answered by the Bayeux thread.
    Bayeux,
}

struct Channels {
    sub: Subscription,
    /// Channels asked for with `subscribe` and not yet registered.
    pending: Vec<Arc<str>>,
    /// Pending channels unsubscribed before their registration came back.
    cancelled: Vec<Arc<str>>,
    /// The token that admitted the socket, for channels added later.
    claims: Option<crate::auth::Claims>,
}

impl WsConn {
    /// The 101 answer, the catch-up, then frames as they come.
    pub fn open(
        cx: &mut Cx,
        sub: Subscription,
        accept: String,
        claims: Option<crate::auth::Claims>,
        catchup: &[Arc<Message>],
    ) -> Handler {
        cx.io.send_exempt(cx.key, Chunk::Owned(respond::ws_head(&accept, sub.gap)));
        let max_age_at = cx.io.now() + cx.env.shared.max_stream_age;
        let (ends_at, end_reason) = super::stream_conn::ends(max_age_at, sub.token_expires);
        let mut channels = Box::new(Channels { sub, pending: Vec::new(), cancelled: Vec::new(), claims });
        for message in catchup {
            cx.io.send_exempt(cx.key, channels.sub.frame_chunk(message));
            channels.sub.last_id = message.id;
        }
        let registered = channels.sub.registered;
        let mut ws = Box::new(WsConn {
            assembler: ws::Assembler::new(ws::MAX_FRAME_PAYLOAD),
            closing: false,
            ends_at,
            end_reason,
            carries: Carries::Channels(channels),
        });
        if cx.io.shutting_down() {
            return ws.end(cx, EndReason::Shutdown);
        }
        ws.start(cx, registered)
    }

    /// Upgrades to a WebSocket that carries Bayeux messages.
    pub fn open_bayeux(cx: &mut Cx, accept: String) -> Handler {
        cx.io.send_exempt(cx.key, Chunk::Owned(respond::ws_head(&accept, false)));
        let ends_at = cx.io.now() + cx.env.shared.max_stream_age;
        let ws = Box::new(WsConn {
            assembler: ws::Assembler::new(ws::MAX_FRAME_PAYLOAD),
            closing: false,
            ends_at,
            end_reason: EndReason::MaxAge,
            carries: Carries::Bayeux,
        });
        ws.start(cx, false)
    }

    fn start(mut self: Box<Self>, cx: &mut Cx, enlist: bool) -> Handler {
        if let (true, Carries::Channels(channels)) = (enlist, &mut self.carries) {
            channels.sub.enlist(cx);
        }
        cx.io.set_deadline(cx.key, (cx.io.now() + cx.env.shared.heartbeat).min(self.ends_at));
        // Frames may have arrived with the upgrade request.
        self.input(cx)
    }

    /// The channel subscription, for the delivery index.
    pub fn channels_mut(&mut self) -> Option<&mut Subscription> {
        match &mut self.carries {
            Carries::Channels(channels) => Some(&mut channels.sub),
            Carries::Bayeux => None,
        }
    }

    /// Ends the socket with a close frame naming why.
    fn end(&mut self, cx: &mut Cx, reason: EndReason) -> Handler {
        cx.io.send_exempt(cx.key, Chunk::Owned(Transport::Ws.finish(reason, Encoding::Ws)));
        cx.io.close_after_flush(cx.key);
        self.leave(cx);
        Handler::Closing
    }

    /// Undoes what the socket registered: its channels, or its Bayeux sessions' link.
    fn leave(&mut self, cx: &mut Cx) {
        match &mut self.carries {
            Carries::Channels(channels) => channels.sub.leave(cx),
            Carries::Bayeux => cx.env.bayeux.send(BayeuxIn::Closed(cx.env.conn_ref(cx.key))),
        }
    }

    /// Sends a close frame and closes once it is written; later input is ignored.
    fn close(&mut self, cx: &mut Cx, code: u16, reason: &str) {
        if !self.closing {
            self.closing = true;
            cx.io.send_exempt(cx.key, Chunk::Owned(close_frame(code, reason)));
            cx.io.close_after_flush(cx.key);
        }
    }

    fn event(&mut self, cx: &mut Cx, event: Event) {
        match event {
            Event::Text(text) => match &mut self.carries {
                Carries::Bayeux => bayeux_frame(cx, &text),
                Carries::Channels(channels) => {
                    match parse_command(&text, cx.env.shared.limits.max_channels) {
                        Ok(Command::Subscribe(list)) => channels.subscribe(cx, list),
                        Ok(Command::Unsubscribe(list)) => channels.unsubscribe(cx, list),
                        Err(message) => send_json(cx.io, cx.key, &serde_json::json!({ "error": message })),
                    }
                }
            },
            Event::Binary(_) => self.close(cx, CLOSE_UNSUPPORTED, "binary messages are not accepted"),
            Event::Ping(payload) => {
                cx.io.send(cx.key, Chunk::Owned(encode_frame(Opcode::Pong, &payload)));
            }
            Event::Pong(_) => {}
            Event::Close { code, .. } => self.close(cx, code.unwrap_or(ws::frame::CLOSE_NORMAL), ""),
        }
    }
}

impl Handle for WsConn {
    fn stay(self: Box<Self>) -> Handler {
        Handler::Ws(self)
    }

    /// Decodes every complete client frame in the input buffer.
    fn input(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        loop {
            let Some((_, input)) = cx.io.conn_and_input(cx.key) else { return Handler::Ws(self) };
            if self.closing {
                input.clear();
                return Handler::Ws(self);
            }
            let event = match ws::decode(input, ws::MAX_FRAME_PAYLOAD) {
                Ok(Decoded::Partial) => return Handler::Ws(self),
                Ok(Decoded::Frame { frame, consumed }) => {
                    input.drain(..consumed);
                    self.assembler.push(frame)
                }
                Err(e) => Err(e),
            };
            cx.io.resume_read(cx.key);
            match event {
                Ok(None) => {}
                Ok(Some(event)) => self.event(cx, event),
                Err(e) => {
                    self.close(cx, e.code, &e.reason);
                    return Handler::Ws(self);
                }
            }
        }
    }

    fn mail(mut self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler {
        match mail {
            Mail::Subscribed(reply) => match &mut self.carries {
                Carries::Channels(channels) => channels.subscribed(cx, reply),
                Carries::Bayeux => {}
            },
            Mail::Engine(Part::Whole { body, .. }) if !self.closing => {
                cx.io.send(cx.key, Chunk::Owned(encode_frame(Opcode::Text, &body)));
            }
            Mail::ChannelDeleted { .. } => return self.end(cx, EndReason::ChannelDeleted),
            Mail::Shutdown => return self.end(cx, EndReason::Shutdown),
            _ => {}
        }
        Handler::Ws(self)
    }

    fn deadline(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        let now = cx.io.now();
        if now >= self.ends_at {
            let reason = self.end_reason;
            return self.end(cx, reason);
        }
        cx.io.send(cx.key, Chunk::Static(crate::transport::ws::HEARTBEAT));
        cx.io.set_deadline(cx.key, (now + cx.env.shared.heartbeat).min(self.ends_at));
        Handler::Ws(self)
    }

    fn eof(self: Box<Self>, cx: &mut Cx) -> Handler {
        cx.io.close(cx.key);
        Handler::Ws(self)
    }

    fn closed(mut self: Box<Self>, cx: &mut Cx, _reason: CloseReason) {
        self.leave(cx);
    }
}

impl Channels {
    fn subscribe(&mut self, cx: &mut Cx, channels: Vec<Arc<str>>) {
        let max = cx.env.shared.limits.max_channels;
        let fresh: Vec<Arc<str>> = channels
            .iter()
            .filter(|c| !self.sub.channels.contains(c) && !self.pending.contains(c))
            .cloned()
            .collect();
        if self.sub.channels.len() + self.pending.len() + fresh.len() > max {
            let message = format!("a WebSocket may listen to at most {max} channels");
            return send_json(cx.io, cx.key, &serde_json::json!({ "error": message }));
        }
        // Channels that need a token must be granted by the one the socket opened with.
        if let Some(policy) = &cx.env.shared.guard.auth {
            let now_secs = crate::clock::unix_secs();
            let claims = self.claims.as_ref().filter(|c| c.exp.is_none_or(|exp| now_secs < exp));
            let denied = fresh.iter().find(|c| {
                policy.requires(c)
                    && !claims
                        .is_some_and(|cl| cl.channels.iter().any(|p| crate::auth::pattern_matches(p, c)))
            });
            if let Some(channel) = denied {
                let message = format!("the connection's token does not grant channel '{channel}'");
                return send_json(cx.io, cx.key, &serde_json::json!({ "error": message }));
            }
        }
        if fresh.is_empty() {
            return send_json(cx.io, cx.key, &serde_json::json!({ "subscribed": names(&channels) }));
        }
        self.cancelled.retain(|c| !fresh.contains(c));
        self.pending.extend(fresh.iter().cloned());
        cx.env.fanout.control(Control::Subscribe(Subscribe {
            stream: 0,
            reply: cx.env.conn_ref(cx.key),
            channels: fresh,
            listen: Listen::Frames(Encoding::Ws),
            start: Start::Now,
            only_if_nothing_to_send: false,
        }));
    }

    /// Takes effect at once: the channels leave the index before the ack.
    fn unsubscribe(&mut self, cx: &mut Cx, channels: Vec<Arc<str>>) {
        let mut leaving = Vec::new();
        for channel in &channels {
            if let Some(i) = self.sub.channels.iter().position(|c| c == channel) {
                leaving.push(self.sub.channels.swap_remove(i));
            } else if let Some(i) = self.pending.iter().position(|c| c == channel) {
                self.cancelled.push(self.pending.swap_remove(i));
            }
        }
        if self.sub.enlisted {
            cx.env.index.delist(cx.key, 0, &leaving);
        }
        cx.env.index.unregister(leaving, Listen::Frames(Encoding::Ws));
        send_json(cx.io, cx.key, &serde_json::json!({ "unsubscribed": names(&channels) }));
    }

    /// The hub registered channels the client asked for.
    fn subscribed(&mut self, cx: &mut Cx, reply: Subscribed) {
        let mut added = Vec::new();
        let mut undo = Vec::new();
        for channel in reply.channels {
            self.pending.retain(|c| *c != channel);
            if let Some(i) = self.cancelled.iter().position(|c| *c == channel) {
                self.cancelled.swap_remove(i);
                undo.push(channel);
            } else if self.sub.channels.contains(&channel) {
                undo.push(channel);
            } else {
                self.sub.channels.push(channel.clone());
                added.push(channel);
            }
        }
        self.sub.registered = true;
        if self.sub.enlisted {
            cx.env.index.enlist(cx.key, 0, &added);
        } else {
            self.sub.enlist(cx);
        }
        cx.env.index.unregister(undo, Listen::Frames(Encoding::Ws));
        send_json(cx.io, cx.key, &serde_json::json!({ "subscribed": names(&added) }));
    }
}

/// A text message on a Bayeux WebSocket: to the Bayeux thread, or a 400 back.
fn bayeux_frame(cx: &mut Cx, text: &str) {
    match parse_body(text.as_bytes()) {
        Ok(messages) => {
            let remote = cx.conn().map(|c| c.ip);
            let from = cx.env.conn_ref(cx.key);
            cx.env.bayeux.send(BayeuxIn::Request {
                from,
                transport: BayeuxTransport::WebSocket,
                messages,
                remote,
            });
        }
        Err(e) => {
            let reply = serde_json::json!([{ "channel": "/meta/unknown", "successful": false, "error": format!("400::{}", e.0) }]);
            cx.io.send(cx.key, Chunk::Owned(encode_frame(Opcode::Text, reply.to_string().as_bytes())));
        }
    }
}

fn names(channels: &[Arc<str>]) -> Vec<&str> {
    channels.iter().map(|c| &**c).collect()
}

/// Sends one JSON text frame (acks and errors; messages use shared frames).
fn send_json(io: &mut Io<super::conn::Conn>, key: ConnKey, value: &Value) {
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
