//! The Redis-protocol publisher handler, installed at accept on the RESP
//! port (it never parses HTTP). Commands are parsed by the
//! sans-IO codec in `crate::resp`; publishes go to the fan-out thread many at
//! a time (so `redis-cli --pipe` is not bound by round trips), and replies are
//! written strictly in command order.

use std::collections::VecDeque;
use std::sync::Arc;

use super::conn::{Cx, Handle, Handler, Mail};
use crate::chunk::Chunk;
use crate::fanout::{NewMessage, Publish, PublishAck};
use crate::guard::Origin;
use crate::hub::validate_channel;
use crate::resp::{self, reply, Command, Parsed};

/// Publishes (messages) one RESP connection may have with the fan-out
/// thread at once: also the largest group one round hands over. A
/// pipelined burst keeps the fan-out's batches full without letting one
/// connection take the whole publish queue.
const MAX_IN_FLIGHT: usize = 256;

/// A RESP connection's state.
#[derive(Default)]
pub struct RespConn {
    /// Replies in command order; a publish's slot fills when its ack arrives.
    replies: VecDeque<Pending>,
    in_flight: usize,
    /// A protocol error or QUIT: parse nothing more, close once the replies are written.
    closing: bool,
    /// The peer half-closed: answer every command already received, then close.
    peer_done: bool,
    /// `AUTH` was given (or no key is configured).
    authed: bool,
    /// Publishes read in this round, handed to the hub as one `Publish`
    /// when the round ends: a pipeline of PUBLISH commands is one batch
    /// entry, acknowledged in one mail and answered in one write.
    group: Vec<NewMessage>,
    /// The sizes of the groups with the hub, oldest first: an answer fills
    /// that many waiting slots.
    groups: VecDeque<usize>,
}

enum Pending {
    Ready(Vec<u8>),
    Publish,
}

impl RespConn {
    /// Parses and handles commands while publish slots are free.
    fn read_commands(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        // An inline command is a line: the payload plus room for the command
        // and channel name. Tied to the message limit so that it always fits
        // the connection's input buffer.
        let max_message = cx.env.shared.max_message_bytes;
        let limits =
            resp::Limits { max_bulk: max_message, max_inline: max_message + 1024, ..resp::Limits::default() };
        loop {
            let Some((_, input)) = cx.io.conn_and_input(cx.key) else { return Handler::Closing };
            if self.closing || self.in_flight >= MAX_IN_FLIGHT || input.is_empty() {
                break;
            }
            match resp::parse_command(input, &limits) {
                Ok(Parsed::Partial) => {
                    // A command cut short by the peer's end will never complete.
                    self.closing |= self.peer_done;
                    break;
                }
                Ok(Parsed::Complete { command, consumed }) => {
                    input.drain(..consumed);
                    cx.io.resume_read(cx.key);
                    if !command.args.is_empty() {
                        crate::stats::inc(&cx.env.stats().requests);
                        self.command(cx, command);
                    }
                }
                Err(e) => {
                    crate::log::debug(format_args!("RESP protocol error: {e}"));
                    self.replies.push_back(Pending::Ready(error_reply(&e.reply_text())));
                    self.closing = true;
                    break;
                }
            }
        }
        self.send_group(cx);
        self.flush(cx)
    }

    fn command(&mut self, cx: &mut Cx, command: Command) {
        let name = command.name_upper();
        let args = &command.args[1..];
        if !self.authed && !matches!(name.as_str(), "AUTH" | "QUIT" | "HELLO") {
            return self.replies.push_back(Pending::Ready(error_reply("NOAUTH Authentication required.")));
        }
        let ready = match (name.as_str(), args.len()) {
            ("AUTH", 1 | 2) => self.auth(cx, args.last().map_or(&[][..], |a| a.as_slice())),
            ("PUBLISH", 2) => return self.publish(cx, &args[0], &args[1]),
            ("PING", 0) => simple("PONG"),
            ("PING", 1) | ("ECHO", 1) => bulk(&args[0]),
            ("QUIT", 0) => {
                self.closing = true;
                simple("OK")
            }
            // redis-cli asks for command docs at start and redis-benchmark
            // for a few config values: an empty answer satisfies both.
            ("COMMAND", _) | ("CONFIG", _) => {
                let mut out = Vec::new();
                reply::empty_array(&mut out);
                out
            }
            ("PUBLISH" | "PING" | "ECHO" | "QUIT" | "AUTH", n) => error_reply(&format!(
                "ERR wrong number of arguments for '{}' command ({n} given)",
                name.to_lowercase()
            )),
            _ => error_reply(&format!("ERR unknown command '{}'", printable(&command.args[0]))),
        };
        self.replies.push_back(Pending::Ready(ready));
    }

    fn publish(&mut self, cx: &mut Cx, channel: &[u8], data: &[u8]) {
        let shared = cx.env.shared.clone();
        let checked = std::str::from_utf8(channel)
            .map_err(|_| "ERR channel name is not UTF-8".to_string())
            .and_then(|c| validate_channel(c).map(|_| c).map_err(|e| format!("ERR {e}")))
            .and_then(|c| {
                let data =
                    std::str::from_utf8(data).map_err(|_| "ERR message is not valid UTF-8".to_string())?;
                Ok(NewMessage { channel: Arc::from(c), event: None, data: data.into(), ext: None })
            });
        let mut message = match checked {
            Ok(m) => m,
            Err(text) => return self.replies.push_back(Pending::Ready(error_reply(&text))),
        };
        let now = cx.io.now();
        let bucket = cx.conn().and_then(|c| c.bucket.as_mut());
        let screened =
            shared.guard.screen(std::slice::from_mut(&mut message), Origin::Ingest { bucket }, now);
        if let Err(denied) = screened {
            return self.replies.push_back(Pending::Ready(error_reply(&format!("ERR {}", denied.reason))));
        }
        self.group.push(message);
        self.in_flight += 1;
        self.replies.push_back(Pending::Publish);
    }

    /// Hands this round's publishes to the hub as one `Publish`; a full
    /// queue refuses them all (`-BUSY`, in their places).
    fn send_group(&mut self, cx: &mut Cx) {
        if self.group.is_empty() {
            return;
        }
        let messages = std::mem::take(&mut self.group);
        let count = messages.len();
        let publish =
            Publish { messages, reply: Some(cx.env.conn_ref(cx.key)), received_at: cx.io.now(), done: None };
        if cx.env.fanout.try_publish(publish).is_ok() {
            self.groups.push_back(count);
            cx.io.expect_wake(cx.env.shared.hub_answer_spin);
            return;
        }
        // The group's slots are the last `count` waiting ones.
        let waiting = self.replies.iter_mut().rev().filter(|p| matches!(p, Pending::Publish));
        for slot in waiting.take(count) {
            *slot = Pending::Ready(error_reply("BUSY publish queue is full; retry shortly"));
        }
        self.in_flight -= count;
    }

    /// `AUTH [user] key`: compared in constant time with the ingest key.
    fn auth(&mut self, cx: &mut Cx, given: &[u8]) -> Vec<u8> {
        let expected = cx.env.shared.guard.ingest_key.as_deref();
        let ok = expected.is_some_and(|k| crate::guard::constant_time_eq(given, k.as_bytes()));
        if ok {
            self.authed = true;
            return simple("OK");
        }
        match expected {
            None => error_reply("ERR AUTH <password> called without any password configured"),
            Some(_) => error_reply("WRONGPASS invalid username-password pair or user is disabled."),
        }
    }

    /// A group was answered: its slots (the oldest waiting ones) get `:N`
    /// each, or the error that kept them all from being published.
    fn ack(mut self: Box<Self>, cx: &mut Cx, acks: Result<Vec<PublishAck>, String>) -> Handler {
        let count = self.groups.pop_front().unwrap_or(0);
        let waiting = self.replies.iter_mut().filter(|p| matches!(p, Pending::Publish)).take(count);
        for (i, slot) in waiting.enumerate() {
            let mut out = Vec::new();
            match &acks {
                Ok(acks) => reply::integer(&mut out, acks.get(i).map_or(0, |a| a.subscribers as i64)),
                Err(e) => out = error_reply(&format!("ERR backplane unavailable ({e}); retry shortly")),
            }
            *slot = Pending::Ready(out);
        }
        self.in_flight = self.in_flight.saturating_sub(count);
        self.read_commands(cx)
    }

    /// Writes the replies that are ready, in order, up to the first one still
    /// waiting; closes once everything is answered after QUIT, an error or EOF.
    fn flush(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        let mut out = Vec::new();
        while let Some(Pending::Ready(_)) = self.replies.front() {
            if let Some(Pending::Ready(bytes)) = self.replies.pop_front() {
                out.extend_from_slice(&bytes);
            }
        }
        let all_read = self.in_flight == 0 && (self.closing || self.peer_done);
        let done = all_read && self.replies.is_empty();
        if !out.is_empty() {
            cx.io.send_exempt(cx.key, Chunk::Owned(out));
        }
        if done {
            cx.io.close_after_flush(cx.key);
            return Handler::Closing;
        }
        Handler::Resp(self)
    }
}

impl Handle for RespConn {
    fn stay(self: Box<Self>) -> Handler {
        Handler::Resp(self)
    }

    fn input(self: Box<Self>, cx: &mut Cx) -> Handler {
        self.read_commands(cx)
    }

    fn mail(mut self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler {
        match mail {
            Mail::Published(acks) => self.ack(cx, acks),
            Mail::Shutdown => {
                self.peer_done = true;
                self.flush(cx)
            }
            _ => Handler::Resp(self),
        }
    }

    /// Every command received before the end is still answered (a
    /// pipelining publisher may half-close right after its last write).
    fn eof(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        self.peer_done = true;
        self.read_commands(cx)
    }
}

fn simple(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    reply::simple(&mut out, text);
    out
}

fn bulk(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    reply::bulk(&mut out, bytes);
    out
}

fn error_reply(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    reply::error(&mut out, text);
    out
}

/// A command name for an error message: at most 40 printable characters.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(40).map(|c| if c.is_control() { '?' } else { c }).collect()
}

impl RespConn {
    pub fn new(authed: bool) -> RespConn {
        RespConn { authed, ..RespConn::default() }
    }
}
