//! A WebSocket session, whatever carries it: an HTTP/1.1 connection after
//! its upgrade (`ws_conn.rs`) or an HTTP/2 stream after its extended
//! CONNECT (`h2_ws.rs`). It decodes client frames (the sans-IO codec in
//! `crate::ws`), answers control frames, runs the close handshake, and
//! does what the text messages carry: channel commands with
//! acknowledgements (`/sub/...?transport=ws`), or Bayeux messages for the
//! Bayeux thread (`/bayeux`). Envelopes reach it through the delivery index
//! as the message's shared WebSocket frame.
//!
//! The session writes nothing itself: each call puts the frames to send in
//! an [`Out`], which the carrier writes in its own framing (as they are on
//! HTTP/1.1, as DATA on HTTP/2) and, when [`Out::end`] is set, ends (a
//! close once written on HTTP/1.1; END_STREAM on HTTP/2). The carrier then
//! calls [`WsSession::leave`].

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::conn::{Cx, Mail};
use super::subscription::Subscription;
use super::ws_command::{names, parse_command, Command};
use crate::bayeux::engine::Transport as BayeuxTransport;
use crate::bayeux::message::parse_body;
use crate::bayeux::thread::BayeuxIn;
use crate::chunk::Chunk;
use crate::fanout::{Control, Listen, Start, Subscribe, Subscribed};
use crate::hub::{Message, Part};
use crate::transport::{Encoding, EndReason, Transport};
use crate::ws::{self, close_frame, encode_frame, Decoded, Event, Opcode};

/// "Unsupported data" (RFC 6455 7.4.1): we take text commands only.
const CLOSE_UNSUPPORTED: u16 = 1003;

/// What a session asks its carrier to write, in order.
#[derive(Default)]
pub struct Out {
    /// Frames, each with whether it is exempt from the slow-consumer cap
    /// (the catch-up and the close, as a response's start is).
    pub frames: Vec<(Chunk, bool)>,
    /// The session is over after these frames: end the connection or stream.
    pub end: bool,
}

impl Out {
    fn send(&mut self, chunk: Chunk) {
        self.frames.push((chunk, false));
    }

    fn send_exempt(&mut self, chunk: Chunk) {
        self.frames.push((chunk, true));
    }

    /// One JSON text frame (acks and errors; messages use shared frames).
    fn json(&mut self, value: &Value) {
        self.send(Chunk::Owned(encode_frame(Opcode::Text, value.to_string().as_bytes())));
    }
}

pub struct WsSession {
    /// The HTTP/2 stream it is on; 0 on an HTTP/1.1 connection.
    stream: u32,
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

impl WsSession {
    /// A channel socket whose subscribe the hub has answered: the catch-up
    /// goes out, then it listens (on the subscription's stream).
    pub fn channels(
        cx: &mut Cx,
        mut sub: Subscription,
        claims: Option<crate::auth::Claims>,
        catchup: &[Arc<Message>],
        out: &mut Out,
    ) -> WsSession {
        let max_age_at = cx.io.now() + cx.env.shared.max_stream_age;
        let (ends_at, end_reason) = super::stream_conn::ends(max_age_at, sub.token_expires);
        for message in catchup {
            out.send_exempt(sub.frame_chunk(message));
            sub.last_id = message.id;
        }
        if sub.registered {
            sub.enlist(cx);
        }
        let stream = sub.stream;
        let channels = Box::new(Channels { sub, pending: Vec::new(), cancelled: Vec::new(), claims });
        WsSession::new(stream, ends_at, end_reason, Carries::Channels(channels))
    }

    /// A socket that carries Bayeux messages.
    pub fn bayeux(cx: &mut Cx, stream: u32) -> WsSession {
        let ends_at = cx.io.now() + cx.env.shared.max_stream_age;
        WsSession::new(stream, ends_at, EndReason::MaxAge, Carries::Bayeux)
    }

    fn new(stream: u32, ends_at: Instant, end_reason: EndReason, carries: Carries) -> WsSession {
        WsSession {
            stream,
            assembler: ws::Assembler::new(ws::MAX_FRAME_PAYLOAD),
            closing: false,
            ends_at,
            end_reason,
            carries,
        }
    }

    /// When the carrier should call [`WsSession::tick`] next.
    pub fn due(&self, cx: &Cx) -> Instant {
        (cx.io.now() + cx.env.shared.heartbeat).min(self.ends_at)
    }

    /// The channel subscription, for the delivery index.
    pub fn channels_mut(&mut self) -> Option<&mut Subscription> {
        match &mut self.carries {
            Carries::Channels(channels) => Some(&mut channels.sub),
            Carries::Bayeux => None,
        }
    }

    /// Decodes every complete client frame in `input` (consumed as read;
    /// a partial frame stays, at most `ws::MAX_FRAME_PAYLOAD` and its header).
    pub fn read(&mut self, cx: &mut Cx, input: &mut Vec<u8>, out: &mut Out) {
        while !self.closing {
            let event = match ws::decode(input, ws::MAX_FRAME_PAYLOAD) {
                Ok(Decoded::Partial) => return,
                Ok(Decoded::Frame { frame, consumed }) => {
                    input.drain(..consumed);
                    self.assembler.push(frame)
                }
                Err(e) => Err(e),
            };
            match event {
                Ok(None) => {}
                Ok(Some(event)) => self.event(cx, event, out),
                Err(e) => self.close(e.code, &e.reason, out),
            }
        }
        input.clear();
    }

    fn event(&mut self, cx: &mut Cx, event: Event, out: &mut Out) {
        match event {
            Event::Text(text) => match &mut self.carries {
                Carries::Bayeux => bayeux_frame(cx, self.stream, &text, out),
                Carries::Channels(channels) => {
                    match parse_command(&text, cx.env.shared.limits.max_channels) {
                        Ok(Command::Subscribe(list)) => channels.subscribe(cx, list, out),
                        Ok(Command::Unsubscribe(list)) => channels.unsubscribe(cx, list, out),
                        Err(message) => out.json(&serde_json::json!({ "error": message })),
                    }
                }
            },
            Event::Binary(_) => self.close(CLOSE_UNSUPPORTED, "binary messages are not accepted", out),
            Event::Ping(payload) => out.send(Chunk::Owned(encode_frame(Opcode::Pong, &payload))),
            Event::Pong(_) => {}
            Event::Close { code, .. } => self.close(code.unwrap_or(ws::frame::CLOSE_NORMAL), "", out),
        }
    }

    /// Sends a close frame and ends; later input is ignored.
    fn close(&mut self, code: u16, reason: &str, out: &mut Out) {
        if !self.closing {
            self.closing = true;
            out.send_exempt(Chunk::Owned(close_frame(code, reason)));
            out.end = true;
        }
    }

    /// Ends the socket with a close frame naming why (shutdown, maximum
    /// age, a deleted channel).
    pub fn end(&mut self, reason: EndReason, out: &mut Out) {
        if !self.closing {
            self.closing = true;
            out.send_exempt(Chunk::Owned(Transport::Ws.finish(reason, Encoding::Ws)));
            out.end = true;
        }
    }

    /// Mail for the socket: subscribe answers, Bayeux replies, ends.
    pub fn mail(&mut self, cx: &mut Cx, mail: Mail, out: &mut Out) {
        match mail {
            Mail::Subscribed(reply) => match &mut self.carries {
                Carries::Channels(channels) => channels.subscribed(cx, reply, out),
                Carries::Bayeux => {}
            },
            Mail::Engine(Part::Whole { body, .. }) if !self.closing => {
                out.send(Chunk::Owned(encode_frame(Opcode::Text, &body)));
            }
            Mail::ChannelDeleted { .. } => self.end(EndReason::ChannelDeleted, out),
            Mail::Shutdown => self.end(EndReason::Shutdown, out),
            _ => {}
        }
    }

    /// Its time came: the end (maximum age, token expiry), or a heartbeat
    /// and the next time.
    pub fn tick(&mut self, cx: &mut Cx, out: &mut Out) -> Option<Instant> {
        if cx.io.now() >= self.ends_at {
            self.end(self.end_reason, out);
            return None;
        }
        out.send(Chunk::Static(crate::transport::ws::HEARTBEAT));
        Some(self.due(cx))
    }

    /// Undoes what the socket registered: its channels, or its Bayeux sessions' link.
    pub fn leave(&mut self, cx: &mut Cx) {
        match &mut self.carries {
            Carries::Channels(channels) => channels.sub.leave(cx),
            Carries::Bayeux => cx.env.bayeux.send(BayeuxIn::Closed(cx.env.stream_ref(cx.key, self.stream))),
        }
    }
}

impl Channels {
    fn subscribe(&mut self, cx: &mut Cx, channels: Vec<Arc<str>>, out: &mut Out) {
        let max = cx.env.shared.limits.max_channels;
        let fresh: Vec<Arc<str>> = channels
            .iter()
            .filter(|c| !self.sub.channels.contains(c) && !self.pending.contains(c))
            .cloned()
            .collect();
        if self.sub.channels.len() + self.pending.len() + fresh.len() > max {
            let message = format!("a WebSocket may listen to at most {max} channels");
            return out.json(&serde_json::json!({ "error": message }));
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
                return out.json(&serde_json::json!({ "error": message }));
            }
        }
        if fresh.is_empty() {
            return out.json(&serde_json::json!({ "subscribed": names(&channels) }));
        }
        self.cancelled.retain(|c| !fresh.contains(c));
        self.pending.extend(fresh.iter().cloned());
        cx.env.fanout.control(Control::Subscribe(Subscribe {
            stream: self.sub.stream,
            reply: cx.env.conn_ref(cx.key),
            channels: fresh,
            listen: Listen::Frames(Encoding::Ws),
            start: Start::Now,
            only_if_nothing_to_send: false,
        }));
    }

    /// Takes effect at once: the channels leave the index before the ack.
    fn unsubscribe(&mut self, cx: &mut Cx, channels: Vec<Arc<str>>, out: &mut Out) {
        let mut leaving = Vec::new();
        for channel in &channels {
            if let Some(i) = self.sub.channels.iter().position(|c| c == channel) {
                leaving.push(self.sub.channels.swap_remove(i));
            } else if let Some(i) = self.pending.iter().position(|c| c == channel) {
                self.cancelled.push(self.pending.swap_remove(i));
            }
        }
        if self.sub.enlisted {
            cx.env.index.delist(cx.key, self.sub.stream, &leaving);
        }
        cx.env.index.unregister(leaving, Listen::Frames(Encoding::Ws));
        out.json(&serde_json::json!({ "unsubscribed": names(&channels) }));
    }

    /// The hub registered channels the client asked for.
    fn subscribed(&mut self, cx: &mut Cx, reply: Subscribed, out: &mut Out) {
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
            cx.env.index.enlist(cx.key, self.sub.stream, &added);
        } else {
            self.sub.enlist(cx);
        }
        cx.env.index.unregister(undo, Listen::Frames(Encoding::Ws));
        out.json(&serde_json::json!({ "subscribed": names(&added) }));
    }
}

/// A text message on a Bayeux WebSocket: to the Bayeux thread, or a 400 back.
fn bayeux_frame(cx: &mut Cx, stream: u32, text: &str, out: &mut Out) {
    match parse_body(text.as_bytes()) {
        Ok(messages) => {
            let remote = cx.conn().map(|c| c.ip);
            let from = cx.env.stream_ref(cx.key, stream);
            cx.env.bayeux.send(BayeuxIn::Request {
                from,
                transport: BayeuxTransport::WebSocket,
                messages,
                remote,
            });
        }
        Err(e) => {
            let reply = serde_json::json!([{ "channel": "/meta/unknown", "successful": false, "error": format!("400::{}", e.0) }]);
            out.send(Chunk::Owned(encode_frame(Opcode::Text, reply.to_string().as_bytes())));
        }
    }
}
