//! A published message and its shared, encode-once frames.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::MessageId;
use crate::transport::{self, Encoding};

/// Bytes ready to be written to many sockets. `bytes` is the framed form
/// (HTTP chunk framing included where the transport streams); `body` is the
/// range without chunk framing, for HTTP/1.0 clients that read until close.
#[derive(Debug, Clone)]
pub struct Frame {
    pub bytes: Arc<[u8]>,
    pub body: std::ops::Range<usize>,
}

impl Frame {
    /// A frame with no framing around its body.
    pub fn plain(bytes: Vec<u8>) -> Frame {
        let len = bytes.len();
        Frame { bytes: bytes.into(), body: 0..len }
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
