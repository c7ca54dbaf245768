//! multipart/x-mixed-replace (or multipart/mixed): each message is one part
//! whose body is the payload, with `Content-Type`, `X-Channel` and
//! `X-Message-Id` part headers (`X-Event` when set).
//!
//! Each part is followed at once by the next boundary, so a reader knows the
//! part is complete without waiting for the next message.

use super::{Encoding, EndReason, Row, Transport};
use crate::hub::Message;

pub const BOUNDARY: &str = "halley-part";
pub const CONTENT_TYPE_REPLACE: &str = "multipart/x-mixed-replace; boundary=halley-part";
pub const CONTENT_TYPE_MIXED: &str = "multipart/mixed; boundary=halley-part";

/// An empty part marked `X-Heartbeat: 1`: multipart has no comment syntax, so
/// a heartbeat is a part that readers skip (it has no `X-Message-Id`).
pub const HEARTBEAT: &[u8] = b"Content-Type: text/plain\r\nX-Heartbeat: 1\r\n\r\n\r\n--halley-part\r\n";

/// The first boundary.
pub fn preamble() -> Vec<u8> {
    format!("--{BOUNDARY}\r\n").into_bytes()
}

pub fn frame(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.data.len() + 160);
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nX-Channel: ");
    out.extend_from_slice(message.channel.as_bytes());
    out.extend_from_slice(b"\r\nX-Message-Id: ");
    out.extend_from_slice(message.id.to_string().as_bytes());
    if let Some(event) = &message.event {
        out.extend_from_slice(b"\r\nX-Event: ");
        out.extend_from_slice(event.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(message.data.as_bytes());
    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(BOUNDARY.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// A last JSON part saying why the stream ends, then the closing boundary.
pub fn finish(reason: EndReason) -> Vec<u8> {
    format!(
        "Content-Type: application/json\r\nX-Halley-End: {r}\r\n\r\n{{\"end\":\"{r}\",\"reconnect\":true}}\r\n--{BOUNDARY}--\r\n",
        r = reason.as_str()
    )
    .into_bytes()
}

/// The table row (see `transport::Row`).
pub const ROW: Row =
    Row::new(Transport::Multipart, "multipart", CONTENT_TYPE_REPLACE, |_| Encoding::Multipart)
        .preamble(|_| preamble())
        .heartbeat(HEARTBEAT)
        .finish(|reason, _| finish(reason));

/// The same parts as `multipart/mixed`, when the Accept header asks for it.
pub const MIXED_ROW: Row =
    Row { transport: Transport::MultipartMixed, content_type: CONTENT_TYPE_MIXED, ..ROW };

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_support::message;

    #[test]
    fn frames_parts() {
        let got = String::from_utf8(frame(&message(2, 5, "a/b", Some("up"), "x\r\ny"))).unwrap();
        assert_eq!(
            got,
            "Content-Type: text/plain; charset=utf-8\r\nX-Channel: a/b\r\nX-Message-Id: 2-5\r\nX-Event: up\r\n\r\nx\r\ny\r\n--halley-part\r\n"
        );
        let end = String::from_utf8(finish(EndReason::MaxAge)).unwrap();
        assert!(end.ends_with("\r\n--halley-part--\r\n"), "{end}");
    }
}
