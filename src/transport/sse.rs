//! Server-Sent Events: `id:`, `event:` (only when set) and one `data:` line per
//! payload line, then a blank line. Heartbeats are comments.

use super::{Encoding, EndReason, Row, StreamOptions, Transport};
use crate::hub::Message;

pub const CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";

/// A comment line: ignored by EventSource, keeps proxies from timing out.
pub const HEARTBEAT: &[u8] = b":\n\n";

/// The reconnection delay hint, so a dropped client comes back promptly.
pub fn preamble(options: &StreamOptions) -> Vec<u8> {
    format!("retry: {}\n\n", options.retry_ms).into_bytes()
}

/// One SSE event. Payload lines split on CRLF, CR or LF, as the SSE parser does,
/// so a payload with newlines arrives intact in `event.data`.
pub fn frame(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.data.len() + 48);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(message.id.to_string().as_bytes());
    out.push(b'\n');
    if let Some(event) = &message.event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    for line in split_lines(&message.data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Ends the stream with a comment naming why; EventSource reconnects on its own
/// with `Last-Event-ID`, so nothing is lost.
pub fn finish(reason: EndReason) -> Vec<u8> {
    format!(": end {}\n\n", reason.as_str()).into_bytes()
}

fn split_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(text)
            }
            Some(i) => {
                let skip = if text[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[i + skip..]);
                Some(&text[..i])
            }
        }
    })
}

/// The table row (see `transport::Row`).
pub const ROW: Row = Row::new(Transport::Sse, "sse", CONTENT_TYPE, |_| Encoding::Sse)
    .preamble(preamble)
    .heartbeat(HEARTBEAT)
    .finish(|reason, _| finish(reason));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_support::message;

    #[test]
    fn frames_events() {
        let cases: &[(Option<&str>, &str, &str)] = &[
            (None, "hello", "id: 3-0\ndata: hello\n\n"),
            (Some("up"), "x", "id: 3-0\nevent: up\ndata: x\n\n"),
            (None, "", "id: 3-0\ndata: \n\n"),
            (None, "a\nb\r\nc\rd", "id: 3-0\ndata: a\ndata: b\ndata: c\ndata: d\n\n"),
            (None, "end\n", "id: 3-0\ndata: end\ndata: \n\n"),
        ];
        for (event, data, want) in cases {
            let got = frame(&message(3, 0, "c", *event, data));
            assert_eq!(String::from_utf8(got).unwrap(), *want, "data {data:?}");
        }
        assert_eq!(preamble(&StreamOptions { retry_ms: 1500, callback: None }), b"retry: 1500\n\n");
    }
}
