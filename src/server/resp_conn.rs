//! The Redis-protocol publish port on the worker. Commands are parsed by the
//! sans-IO codec in `crate::resp`; publishes go to the fan-out thread many at
//! a time (so `redis-cli --pipe` is not bound by round trips), and replies are
//! written strictly in command order.

use std::collections::VecDeque;
use std::sync::Arc;

use super::conn::{Conn, Phase};
use super::worker::Worker;
use crate::chunk::Chunk;
use crate::fanout::{NewMessage, Publish, PublishAck, ReplyTo};
use crate::hub::validate_channel;
use crate::reactor::{ConnKey, Io};
use crate::resp::{self, reply, Command, Parsed};

/// Publishes one RESP connection may have with the fan-out thread at once.
/// A pipelined burst keeps the fan-out's batches full without letting one
/// connection take the whole publish queue.
const MAX_IN_FLIGHT: usize = 256;

/// A RESP connection's state.
#[derive(Default)]
pub struct RespState {
    /// Replies in command order; a publish's slot fills when its ack arrives.
    replies: VecDeque<Pending>,
    in_flight: usize,
    /// A protocol error or QUIT: parse nothing more, close once the replies are written.
    closing: bool,
    /// The peer half-closed: answer every command already received, then close.
    peer_done: bool,
    /// `AUTH` was given (or no key is configured).
    authed: bool,
}

enum Pending {
    Ready(Vec<u8>),
    Publish,
}

impl Worker {
    /// Parses and handles commands while publish slots are free.
    pub(super) fn resp_input(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        // An inline command is a line: the payload plus room for the command
        // and channel name. Tied to the message limit so that it always fits
        // the connection's input buffer.
        let max_message = self.shared.max_message_bytes;
        let limits =
            resp::Limits { max_bulk: max_message, max_inline: max_message + 1024, ..resp::Limits::default() };
        loop {
            let Some((conn, input)) = io.conn_and_input(key) else { return };
            let Phase::Resp(state) = &mut conn.phase else { return };
            if state.closing || state.in_flight >= MAX_IN_FLIGHT || input.is_empty() {
                break;
            }
            match resp::parse_command(input, &limits) {
                Ok(Parsed::Partial) => {
                    // A command cut short by the peer's end will never complete.
                    state.closing |= state.peer_done;
                    break;
                }
                Ok(Parsed::Complete { command, consumed }) => {
                    input.drain(..consumed);
                    io.resume_read(key);
                    if !command.args.is_empty() {
                        crate::stats::inc(&self.shared.stats.loops[self.loop_index()].requests);
                        self.resp_command(io, key, command);
                    }
                }
                Err(e) => {
                    crate::log::debug(format_args!("RESP protocol error: {e}"));
                    state.replies.push_back(Pending::Ready(error_reply(&e.reply_text())));
                    state.closing = true;
                    break;
                }
            }
        }
        self.resp_flush(io, key);
    }

    fn resp_command(&mut self, io: &mut Io<Conn>, key: ConnKey, command: Command) {
        let name = command.name_upper();
        let args = &command.args[1..];
        let authed = matches!(io.conn(key).map(|c| &c.phase), Some(Phase::Resp(state)) if state.authed);
        if !authed && !matches!(name.as_str(), "AUTH" | "QUIT" | "HELLO") {
            return push(io, key, Pending::Ready(error_reply("NOAUTH Authentication required.")));
        }
        let ready = match (name.as_str(), args.len()) {
            ("AUTH", 1 | 2) => self.resp_auth(io, key, args.last().map_or(&[][..], |a| a.as_slice())),
            ("PUBLISH", 2) => return self.resp_publish(io, key, &args[0], &args[1]),
            ("PING", 0) => simple("PONG"),
            ("PING", 1) | ("ECHO", 1) => bulk(&args[0]),
            ("QUIT", 0) => {
                if let Some(Phase::Resp(state)) = io.conn(key).map(|c| &mut c.phase) {
                    state.closing = true;
                }
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
        push(io, key, Pending::Ready(ready));
    }

    fn resp_publish(&mut self, io: &mut Io<Conn>, key: ConnKey, channel: &[u8], data: &[u8]) {
        let checked = std::str::from_utf8(channel)
            .map_err(|_| "ERR channel name is not UTF-8".to_string())
            .and_then(|c| validate_channel(c).map(|_| c).map_err(|e| format!("ERR {e}")))
            .and_then(|c| {
                if data.len() > self.shared.max_message_bytes {
                    return Err(format!("ERR message is over {} bytes", self.shared.max_message_bytes));
                }
                let data =
                    std::str::from_utf8(data).map_err(|_| "ERR message is not valid UTF-8".to_string())?;
                Ok(NewMessage { channel: Arc::from(c), event: None, data: data.into(), ext: None })
            });
        let mut message = match checked {
            Ok(m) => m,
            Err(text) => return push(io, key, Pending::Ready(error_reply(&text))),
        };
        let now = io.now();
        let rate = self.shared.guard.rate_per_connection;
        if let Some(Err(retry)) = io.conn(key).and_then(|c| c.bucket.as_mut()).map(|b| b.take(now)) {
            let text =
                format!("ERR more than {rate} publishes per second on this connection; retry in {retry} s");
            return push(io, key, Pending::Ready(error_reply(&text)));
        }
        if let Err(denied) = self.shared.guard.filter_messages(std::slice::from_mut(&mut message)) {
            return push(io, key, Pending::Ready(error_reply(&format!("ERR {}", denied.reason))));
        }
        let reply = Some(ReplyTo { loop_id: self.loop_id, conn: key.to_u64() });
        let publish = Publish { messages: vec![message], reply, received_at: io.now() };
        match self.fanout.try_publish(publish) {
            Ok(()) => {
                if let Some(Phase::Resp(state)) = io.conn(key).map(|c| &mut c.phase) {
                    state.in_flight += 1;
                    state.replies.push_back(Pending::Publish);
                }
            }
            Err(_) => push(io, key, Pending::Ready(error_reply("BUSY publish queue is full; retry shortly"))),
        }
    }

    /// `AUTH [user] key`: compared in constant time with the ingest key.
    fn resp_auth(&mut self, io: &mut Io<Conn>, key: ConnKey, given: &[u8]) -> Vec<u8> {
        let expected = self.shared.guard.ingest_key.as_deref();
        let ok = expected.is_some_and(|k| crate::guard::constant_time_eq(given, k.as_bytes()));
        if ok {
            if let Some(Phase::Resp(state)) = io.conn(key).map(|c| &mut c.phase) {
                state.authed = true;
            }
            return simple("OK");
        }
        match expected {
            None => error_reply("ERR AUTH <password> called without any password configured"),
            Some(_) => error_reply("WRONGPASS invalid username-password pair or user is disabled."),
        }
    }

    /// A publish was taken: its slot (the oldest waiting one) gets `:N`.
    pub(super) fn resp_ack(&mut self, io: &mut Io<Conn>, key: ConnKey, acks: &[PublishAck]) {
        let Some(Phase::Resp(state)) = io.conn(key).map(|c| &mut c.phase) else { return };
        let mut out = Vec::new();
        reply::integer(&mut out, acks.first().map_or(0, |a| a.subscribers as i64));
        if let Some(slot) = state.replies.iter_mut().find(|p| matches!(p, Pending::Publish)) {
            *slot = Pending::Ready(out);
        }
        state.in_flight = state.in_flight.saturating_sub(1);
        self.resp_input(io, key);
    }

    /// Writes the replies that are ready, in order, up to the first one still waiting.
    pub(super) fn resp_flush(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        let Some(Phase::Resp(state)) = io.conn(key).map(|c| &mut c.phase) else { return };
        let mut out = Vec::new();
        while let Some(Pending::Ready(_)) = state.replies.front() {
            if let Some(Pending::Ready(bytes)) = state.replies.pop_front() {
                out.extend_from_slice(&bytes);
            }
        }
        let all_read = state.in_flight == 0 && (state.closing || state.peer_done);
        let done = all_read && state.replies.is_empty();
        if !out.is_empty() {
            io.send_exempt(key, Chunk::Owned(out));
        }
        if done {
            io.close_after_flush(key);
        }
    }

    fn loop_index(&self) -> usize {
        self.loop_id.min(self.shared.stats.loops.len().saturating_sub(1))
    }
}

fn push(io: &mut Io<Conn>, key: ConnKey, pending: Pending) {
    if let Some(Phase::Resp(state)) = io.conn(key).map(|c| &mut c.phase) {
        state.replies.push_back(pending);
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

impl RespState {
    pub fn new(authed: bool) -> RespState {
        RespState { authed, ..RespState::default() }
    }

    /// The peer is done sending: answer everything received, then close.
    pub fn finish(&mut self) {
        self.peer_done = true;
    }
}
