//! The delivery index: which of this loop's connections listen on which
//! channel, and the hot path that hands a batch to them (one shared frame
//! per subscriber, no encoding here).

use std::collections::{HashMap, HashSet};
use std::mem;
use std::sync::Arc;

use super::conn::{Conn, Handler};
use crate::chunk::Chunk;
use crate::fanout::{Control, FanoutHandle, Listen};
use crate::hub::Message;
use crate::reactor::{ConnKey, Io};

/// A listener: a connection, and its HTTP/2 stream (0 for HTTP/1).
pub type Listener = (ConnKey, u32);

pub struct Index {
    channels: HashMap<Arc<str>, HashSet<Listener>>,
    /// Long-polls that got messages in the batch being delivered.
    ready_polls: Vec<ConnKey>,
    /// HTTP/2 connections with work after the batch (polls to answer,
    /// streams over their window to cut).
    h2_followups: Vec<ConnKey>,
    latency: crate::stats::LatencyRecorder,
    fanout: FanoutHandle,
    loop_id: usize,
}

impl Index {
    pub fn new(fanout: FanoutHandle, loop_id: usize) -> Index {
        Index {
            channels: HashMap::new(),
            ready_polls: Vec::new(),
            h2_followups: Vec::new(),
            latency: Default::default(),
            fanout,
            loop_id,
        }
    }

    /// Adds a connection (or one of its HTTP/2 streams) on `channels`.
    pub fn enlist(&mut self, key: ConnKey, stream: u32, channels: &[Arc<str>]) {
        for channel in channels {
            self.channels.entry(channel.clone()).or_default().insert((key, stream));
        }
    }

    /// Removes a connection (or one of its HTTP/2 streams) from `channels`.
    pub fn delist(&mut self, key: ConnKey, stream: u32, channels: &[Arc<str>]) {
        for channel in channels {
            if let Some(keys) = self.channels.get_mut(channel) {
                keys.remove(&(key, stream));
                if keys.is_empty() {
                    self.channels.remove(channel);
                }
            }
        }
    }

    /// Tells the hub to stop counting this loop on `channels` (undoing a
    /// registration it made).
    pub fn unregister(&self, channels: Vec<Arc<str>>, listen: Listen) {
        if !channels.is_empty() {
            self.fanout.control(Control::Unsubscribe { outlet: self.loop_id, channels, listen });
        }
    }

    /// The connections listening on `channel` now.
    pub fn listeners(&self, channel: &str) -> Vec<Listener> {
        self.channels.get(channel).map(|k| k.iter().copied().collect()).unwrap_or_default()
    }

    /// Long-polls to answer after a delivery.
    pub fn take_ready_polls(&mut self) -> Vec<ConnKey> {
        mem::take(&mut self.ready_polls)
    }

    /// HTTP/2 connections to call back after a delivery (each once).
    pub fn take_h2_followups(&mut self) -> Vec<ConnKey> {
        let mut keys = mem::take(&mut self.h2_followups);
        keys.sort_unstable_by_key(|k| k.to_u64());
        keys.dedup();
        keys
    }

    /// Hands a batch to this loop's subscribers: one shared frame each,
    /// skipping what a subscriber already has (its resume point is later).
    pub fn deliver(
        &mut self,
        io: &mut Io<Conn>,
        batch: &[Arc<Message>],
        stats: Option<&crate::stats::LoopStats>,
    ) {
        let now = io.now();
        let mut delivered = 0u64;
        for message in batch {
            let Some(keys) = self.channels.get(&message.channel) else { continue };
            self.latency.record(now.saturating_duration_since(message.received_at), keys.len() as u64);
            delivered += keys.len() as u64;
            for &(key, stream) in keys {
                let Some(conn) = io.conn(key) else { continue };
                let chunk = match &mut conn.handler {
                    Handler::H2(h2) => {
                        let (chunks, followup) = h2.deliver(stream, message);
                        if followup {
                            self.h2_followups.push(key);
                        }
                        for chunk in chunks {
                            io.send(key, chunk);
                        }
                        continue;
                    }
                    Handler::Stream(stream) => match stream.sub.take(message) {
                        Some(sub) => sub.frame_chunk(message),
                        None => continue,
                    },
                    Handler::Ws(ws) => match ws.channels_mut().and_then(|sub| sub.take(message)) {
                        Some(sub) => sub.frame_chunk(message),
                        None => continue,
                    },
                    Handler::Poll(poll) => {
                        if poll.collect(message) {
                            self.ready_polls.push(key);
                        }
                        continue;
                    }
                    _ => continue,
                };
                io.send(key, chunk);
            }
        }
        if let Some(stats) = stats {
            crate::stats::add(&stats.deliveries, delivered);
            self.latency.publish(&stats.latency);
        }
    }
}

/// The shared bytes of `message` for a subscriber reading `encoding`, framed
/// by its connection's writer: an HTTP/1.1 chunk, or as they are (HTTP/1.0
/// streams, WebSocket frames).
pub fn frame_chunk(message: &Message, encoding: crate::transport::Encoding, chunked: bool) -> Chunk {
    let frame = message.frame(encoding);
    if chunked {
        crate::http::chunked::frame(&frame.bytes)
    } else {
        Chunk::Shared(frame.bytes.clone())
    }
}
