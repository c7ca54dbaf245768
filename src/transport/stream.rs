//! Chunked NDJSON: one JSON envelope a line; a blank line is the heartbeat.

use super::{envelope, Encoding, EndReason, Row, Transport};
use crate::hub::Message;

pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// A blank line: NDJSON readers skip it.
pub const HEARTBEAT: &[u8] = b"\n";

pub fn frame(message: &Message) -> Vec<u8> {
    let mut out = envelope::encode(message);
    out.push(b'\n');
    out
}

/// A last line that is not an envelope: `{"end":"<reason>","reconnect":true}`.
pub fn finish(reason: EndReason) -> Vec<u8> {
    format!("{{\"end\":\"{}\",\"reconnect\":true}}\n", reason.as_str()).into_bytes()
}

/// The table row (see `transport::Row`).
pub const ROW: Row = Row::new(Transport::Stream, "stream", CONTENT_TYPE, |_| Encoding::Stream)
    .heartbeat(HEARTBEAT)
    .finish(|reason, _| finish(reason));
