//! A published message and its shared, encode-once frames.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::MessageId;
use crate::transport::{self, Encoding};

/// A message encoded for one encoding: bytes ready to be written to many
/// sockets. It carries no connection framing: an HTTP/1.1 writer wraps it in
/// a chunk (`http::chunked::frame`), an HTTP/1.0 stream writes it as it is,
/// and a later TLS or HTTP/2 writer frames the same bytes its own way.
#[derive(Debug, Clone)]
pub struct Frame {
    pub bytes: Arc<[u8]>,
}

impl Frame {
    pub fn new(bytes: Vec<u8>) -> Frame {
        Frame { bytes: bytes.into() }
    }
}

/// One message as the hub keeps it: in history, in batches, in outbound queues.
/// Shared by `Arc`; never copied per subscriber.
#[derive(Debug)]
pub struct Message {
    pub id: MessageId,
    pub channel: Arc<str>,
    /// The publisher's event type, if it set one.
    pub event: Option<Box<str>>,
    /// The payload, checked UTF-8 at ingest.
    pub data: Box<str>,
    /// When the fan-out thread accepted it; history expiry uses it.
    pub accepted_at: Instant,
    /// When the publish request arrived; delivery latency is measured from it.
    pub received_at: Instant,
    /// Bayeux `ext` of the publish, if any (a JSON object's text).
    pub ext: Option<Box<str>>,
    /// One lazily filled slot per encoding. The fan-out thread fills the slots
    /// that have subscribers before it hands the message out, so loops only read.
    frames: [OnceLock<Frame>; Encoding::COUNT],
}

impl Message {
    pub fn new(id: MessageId, channel: Arc<str>, event: Option<Box<str>>, data: Box<str>) -> Message {
        let now = Instant::now();
        Message {
            id,
            channel,
            event,
            data,
            accepted_at: now,
            received_at: now,
            ext: None,
            frames: Default::default(),
        }
    }

    /// The same, carrying a Bayeux `ext`.
    pub fn with_ext(mut self, ext: Option<Box<str>>) -> Message {
        self.ext = ext;
        self
    }

    /// The same, with the time the publish arrived at ingest.
    pub fn received(mut self, at: Instant) -> Message {
        self.received_at = at;
        self
    }

    /// This message encoded for `encoding`, encoded at most once per process.
    pub fn frame(&self, encoding: Encoding) -> &Frame {
        self.frames[encoding as usize].get_or_init(|| transport::encode(encoding, self))
    }
}
