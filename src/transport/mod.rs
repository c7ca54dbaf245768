//! Transports: how messages are framed for each kind of subscriber.
//!
//! Every transport is a module of pure functions plus one [`Row`] of the
//! [`TABLE`]: name, content type, encoding, streaming or not, preamble,
//! heartbeat and finish. Nothing here touches a socket, and nothing here
//! knows connection framing (HTTP/1.1 chunks are the writer's). Messages are
//! encoded once per [`Encoding`] (not per transport, not per subscriber) and
//! the bytes shared.

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

/// One transport's row in the table: everything the server needs to serve
/// it. A transport is its module plus this row; the server reads rows and
/// never matches on transports.
pub struct Row {
    pub transport: Transport,
    /// The `?transport=` name (both multipart flavours are `multipart`).
    pub name: &'static str,
    /// Content-Type of its response (none for WebSocket's 101).
    pub content_type: &'static str,
    /// One response stays open (else one answer per poll).
    pub streaming: bool,
    /// The shared encoding its subscribers read, given the callback (only
    /// the iframe's matters, see `iframe`).
    pub encoding: fn(Option<&str>) -> Encoding,
    /// Body bytes right after the head of a streaming response.
    pub preamble: fn(&StreamOptions) -> Vec<u8>,
    /// The keep-alive bytes a stream sends when idle.
    pub heartbeat: &'static [u8],
    /// The last bytes of a stream the server ends, for the encoding in use.
    pub finish: fn(EndReason, Encoding) -> Vec<u8>,
}

fn no_preamble(_: &StreamOptions) -> Vec<u8> {
    Vec::new()
}

fn no_finish(_: EndReason, _: Encoding) -> Vec<u8> {
    Vec::new()
}

impl Row {
    /// A streaming transport's row with no preamble, heartbeat or finish yet.
    pub const fn new(
        transport: Transport,
        name: &'static str,
        content_type: &'static str,
        encoding: fn(Option<&str>) -> Encoding,
    ) -> Row {
        Row {
            transport,
            name,
            content_type,
            streaming: true,
            encoding,
            preamble: no_preamble,
            heartbeat: b"",
            finish: no_finish,
        }
    }

    /// Answered once per poll instead of streaming.
    pub const fn polled(self) -> Row {
        Row { streaming: false, ..self }
    }

    pub const fn preamble(self, preamble: fn(&StreamOptions) -> Vec<u8>) -> Row {
        Row { preamble, ..self }
    }

    pub const fn heartbeat(self, heartbeat: &'static [u8]) -> Row {
        Row { heartbeat, ..self }
    }

    pub const fn finish(self, finish: fn(EndReason, Encoding) -> Vec<u8>) -> Row {
        Row { finish, ..self }
    }
}

/// Every row, in `Transport::ALL` order, then multipart's second flavour.
pub const TABLE: [&Row; 8] = [
    &ws::ROW,
    &longpoll::ROW,
    &longpoll::JSONP_ROW,
    &sse::ROW,
    &stream::ROW,
    &iframe::ROW,
    &multipart::ROW,
    &multipart::MIXED_ROW,
];

impl Transport {
    /// This transport's row.
    pub fn row(self) -> &'static Row {
        TABLE.iter().find(|row| row.transport == self).copied().unwrap_or(&longpoll::ROW)
    }

    pub fn from_name(name: &str) -> Option<Transport> {
        Transport::ALL.iter().copied().find(|t| t.name() == name)
    }

    pub fn name(self) -> &'static str {
        self.row().name
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
        self.row().streaming
    }

    /// The shared encoding this transport's subscribers read; `callback` is
    /// the iframe subscriber's callback (see `iframe` for why it matters).
    pub fn encoding(self, callback: Option<&str>) -> Encoding {
        (self.row().encoding)(callback)
    }

    /// Content-Type of its response.
    pub fn content_type(self) -> &'static str {
        self.row().content_type
    }

    /// Body bytes sent right after the head of a streaming response.
    pub fn preamble(self, options: &StreamOptions) -> Vec<u8> {
        (self.row().preamble)(options)
    }

    /// The keep-alive body bytes a streaming transport sends when idle.
    pub fn heartbeat(self) -> &'static [u8] {
        self.row().heartbeat
    }

    /// The last body bytes of a stream that the server ends.
    pub fn finish(self, reason: EndReason, encoding: Encoding) -> Vec<u8> {
        (self.row().finish)(reason, encoding)
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
    Frame::new(match encoding {
        Encoding::Envelope => envelope::encode(message),
        Encoding::Sse => sse::frame(message),
        Encoding::Stream => stream::frame(message),
        Encoding::IframePush => iframe::frame(message, iframe::Callee::ParentPush),
        Encoding::IframeLocal => iframe::frame(message, iframe::Callee::Local),
        Encoding::Multipart => multipart::frame(message),
        Encoding::Ws => ws::frame(message),
    })
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
    fn shared_frames_carry_no_connection_framing() {
        let m = message(1, 2, "c", None, "x");
        let frame = encode(Encoding::Stream, &m);
        assert_eq!(&*frame.bytes, b"{\"id\":\"1-2\",\"channel\":\"c\",\"data\":\"x\"}\n");
    }

    #[test]
    fn every_transport_has_one_row() {
        for t in Transport::ALL.into_iter().chain([Transport::MultipartMixed]) {
            assert_eq!(t.row().transport, t);
            assert_eq!(TABLE.iter().filter(|r| r.transport == t).count(), 1, "{t:?}");
        }
        assert_eq!(Transport::Iframe.encoding(None), Encoding::IframePush);
        assert_eq!(Transport::Iframe.encoding(Some("push")), Encoding::IframePush);
        assert_eq!(Transport::Iframe.encoding(Some("cb")), Encoding::IframeLocal);
        assert!(!Transport::Jsonp.is_streaming() && Transport::Sse.is_streaming());
    }

    #[test]
    fn names_round_trip() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_name(t.name()), Some(t));
        }
        assert_eq!(Transport::from_name("carrier-pigeon"), None);
    }
}
