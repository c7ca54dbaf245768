//! Transports: how messages are framed for each kind of subscriber.
//!
//! Every transport is a module of pure functions behind one small interface:
//! a response head (content type plus preamble), `frame(message)`, a heartbeat
//! and `finish`. Nothing here touches a socket. Messages are encoded once per
//! [`Encoding`] (not per transport, not per subscriber) and the bytes shared.

pub mod envelope;
pub mod iframe;
pub mod longpoll;
pub mod multipart;
pub mod sse;
pub mod stream;
pub mod ws;

use crate::hub::{Frame, Message};

/// How a subscriber receives messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One JSON response per poll.
    LongPoll,
    /// Long-poll wrapped in `callback(...);` for script-tag polling.
    Jsonp,
    /// Server-Sent Events (`text/event-stream`).
    Sse,
    /// Chunked NDJSON, one envelope a line.
    Stream,
    /// A hidden iframe's endless HTML document of `<script>` calls.
    Iframe,
    /// `multipart/x-mixed-replace`, one part per message.
    Multipart,
    /// The same parts as `multipart/mixed`, when the Accept header asks for it.
    MultipartMixed,
    /// RFC 6455 WebSocket: envelopes as text frames; the client may change
    /// its channels with `{"subscribe":[…]}` and `{"unsubscribe":[…]}`.
    Ws,
}

impl Transport {
    pub fn from_name(name: &str) -> Option<Transport> {
        Some(match name {
            "longpoll" => Transport::LongPoll,
            "jsonp" => Transport::Jsonp,
            "sse" => Transport::Sse,
            "stream" => Transport::Stream,
            "iframe" => Transport::Iframe,
            "multipart" => Transport::Multipart,
            "ws" => Transport::Ws,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::LongPoll => "longpoll",
            Transport::Jsonp => "jsonp",
            Transport::Sse => "sse",
            Transport::Stream => "stream",
            Transport::Iframe => "iframe",
            Transport::Multipart | Transport::MultipartMixed => "multipart",
            Transport::Ws => "ws",
        }
    }

    /// Every transport, for stats.
    pub const ALL: [Transport; 7] = [
        Transport::Ws,
        Transport::LongPoll,
        Transport::Jsonp,
        Transport::Sse,
        Transport::Stream,
        Transport::Iframe,
        Transport::Multipart,
    ];

    /// Position in `ALL` (both multipart flavours count as multipart).
    pub fn index(self) -> usize {
        let named = if self == Transport::MultipartMixed { Transport::Multipart } else { self };
        Transport::ALL.iter().position(|t| *t == named).unwrap_or(0)
    }

    /// Streaming transports keep one response open; the others answer per poll.
    pub fn is_streaming(self) -> bool {
        !matches!(self, Transport::LongPoll | Transport::Jsonp)
    }

    /// The shared encoding this transport's subscribers read; `callback` is
    /// the iframe subscriber's callback (see `iframe` for why it matters).
    pub fn encoding(self, callback: Option<&str>) -> Encoding {
        match self {
            Transport::LongPoll | Transport::Jsonp => Encoding::Envelope,
            Transport::Sse => Encoding::Sse,
            Transport::Stream => Encoding::Stream,
            Transport::Iframe if callback.is_none_or(|c| c == iframe::DEFAULT_CALLBACK) => {
                Encoding::IframePush
            }
            Transport::Iframe => Encoding::IframeLocal,
            Transport::Multipart | Transport::MultipartMixed => Encoding::Multipart,
            Transport::Ws => Encoding::Ws,
        }
    }

    /// Content-Type of a streaming response.
    pub fn content_type(self) -> &'static str {
        match self {
            Transport::Sse => sse::CONTENT_TYPE,
            Transport::Stream => stream::CONTENT_TYPE,
            Transport::Iframe => iframe::CONTENT_TYPE,
            Transport::Multipart => multipart::CONTENT_TYPE_REPLACE,
            Transport::MultipartMixed => multipart::CONTENT_TYPE_MIXED,
            Transport::Ws => "",
            Transport::LongPoll => longpoll::CONTENT_TYPE,
            Transport::Jsonp => longpoll::JSONP_CONTENT_TYPE,
        }
    }

    /// Body bytes sent right after the head of a streaming response.
    pub fn preamble(self, options: &StreamOptions) -> Vec<u8> {
        match self {
            Transport::Sse => sse::preamble(options),
            Transport::Iframe => iframe::preamble(options),
            Transport::Multipart | Transport::MultipartMixed => multipart::preamble(),
            _ => Vec::new(),
        }
    }

    /// The keep-alive body bytes a streaming transport sends when idle.
    pub fn heartbeat(self) -> &'static [u8] {
        match self {
            Transport::Sse => sse::HEARTBEAT,
            Transport::Iframe => iframe::HEARTBEAT,
            Transport::Multipart | Transport::MultipartMixed => multipart::HEARTBEAT,
            Transport::Ws => ws::HEARTBEAT,
            _ => stream::HEARTBEAT,
        }
    }

    /// The last body bytes of a stream that the server ends.
    pub fn finish(self, reason: EndReason, encoding: Encoding) -> Vec<u8> {
        match self {
            Transport::Sse => sse::finish(reason),
            Transport::Iframe if encoding == Encoding::IframePush => {
                iframe::finish(reason, iframe::Callee::ParentPush)
            }
            Transport::Iframe => iframe::finish(reason, iframe::Callee::Local),
            Transport::Multipart | Transport::MultipartMixed => multipart::finish(reason),
            Transport::Ws => ws::finish(reason),
            _ => stream::finish(reason),
        }
    }
}

/// Per-subscription options a streaming preamble may use.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// SSE reconnection delay hint, in milliseconds.
    pub retry_ms: u64,
    /// The iframe subscriber's callback name (already checked).
    pub callback: Option<String>,
}

/// Why the server ends a stream; told to the client in the stream's last bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Shutdown,
    ChannelDeleted,
    MaxAge,
    TokenExpired,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Shutdown => "shutdown",
            EndReason::ChannelDeleted => "channel-deleted",
            EndReason::MaxAge => "max-age",
            EndReason::TokenExpired => "token-expired",
        }
    }
}

/// The shared wire forms of a message. Several transports may read one encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Encoding {
    /// The JSON envelope alone (long-poll and JSONP bodies are built from it).
    Envelope = 0,
    /// An SSE event inside one HTTP chunk.
    Sse = 1,
    /// An NDJSON line inside one HTTP chunk.
    Stream = 2,
    /// `<script>parent.push(…)</script>` inside one chunk.
    IframePush = 3,
    /// `<script>c(…)</script>` inside one chunk (custom iframe callbacks).
    IframeLocal = 4,
    /// One multipart part and the boundary after it, inside one chunk.
    Multipart = 5,
    /// A WebSocket text frame holding the envelope (no HTTP chunking).
    Ws = 6,
}

impl Encoding {
    pub const COUNT: usize = 7;
    pub const ALL: [Encoding; Encoding::COUNT] = [
        Encoding::Envelope,
        Encoding::Sse,
        Encoding::Stream,
        Encoding::IframePush,
        Encoding::IframeLocal,
        Encoding::Multipart,
        Encoding::Ws,
    ];
}

/// Encodes `message` for `encoding`. Pure; called at most once per pair.
pub fn encode(encoding: Encoding, message: &Message) -> Frame {
    match encoding {
        Encoding::Envelope => Frame::plain(envelope::encode(message)),
        Encoding::Sse => chunked(sse::frame(message)),
        Encoding::Stream => chunked(stream::frame(message)),
        Encoding::IframePush => chunked(iframe::frame(message, iframe::Callee::ParentPush)),
        Encoding::IframeLocal => chunked(iframe::frame(message, iframe::Callee::Local)),
        Encoding::Multipart => chunked(multipart::frame(message)),
        Encoding::Ws => Frame::plain(ws::frame(message)),
    }
}

/// Wraps a body in one HTTP/1.1 chunk, remembering where the body sits.
fn chunked(body: Vec<u8>) -> Frame {
    let mut bytes = format!("{:x}\r\n", body.len()).into_bytes();
    let start = bytes.len();
    bytes.extend_from_slice(&body);
    let end = bytes.len();
    bytes.extend_from_slice(b"\r\n");
    Frame { bytes: bytes.into(), body: start..end }
}

/// Wraps bytes that are not a shared message (preambles, heartbeats, finishes)
/// as one chunk, or returns them as they are for a close-delimited HTTP/1.0 body.
pub fn chunk_of(body: &[u8], chunked_encoding: bool) -> Vec<u8> {
    if !chunked_encoding {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    if !body.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::hub::MessageId;
    use std::sync::Arc;

    pub fn message(ms: u64, seq: u64, channel: &str, event: Option<&str>, data: &str) -> Message {
        Message::new(MessageId::new(ms, seq), Arc::from(channel), event.map(Into::into), data.into())
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::message;
    use super::*;

    #[test]
    fn chunk_framing_wraps_the_body() {
        let m = message(1, 2, "c", None, "x");
        let frame = encode(Encoding::Stream, &m);
        let body = &frame.bytes[frame.body.clone()];
        assert_eq!(body, b"{\"id\":\"1-2\",\"channel\":\"c\",\"data\":\"x\"}\n");
        let expected = format!("{:x}\r\n{}\r\n", body.len(), std::str::from_utf8(body).unwrap());
        assert_eq!(&*frame.bytes, expected.as_bytes());
        assert_eq!(chunk_of(b"", true), b"");
        assert_eq!(chunk_of(b"ab", true), b"2\r\nab\r\n");
        assert_eq!(chunk_of(b"ab", false), b"ab");
    }

    #[test]
    fn names_round_trip() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_name(t.name()), Some(t));
        }
        assert_eq!(Transport::from_name("carrier-pigeon"), None);
    }
}
