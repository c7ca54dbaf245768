//! Long-poll and JSONP answers: `{"messages":[…],"last_id":"…"}` (plus
//! `"gap":true` when history had already dropped messages the client wanted),
//! for JSONP wrapped as `callback(…);`. The envelopes inside are the shared
//! encoded frames; only the few bytes around them are built per response.

use std::sync::Arc;

use super::{Encoding, Row, Transport};
use crate::chunk::Chunk;
use crate::hub::{Message, MessageId};

pub const CONTENT_TYPE: &str = "application/json";
pub const JSONP_CONTENT_TYPE: &str = "application/javascript; charset=utf-8";

/// The longest JSONP callback name we accept.
pub const MAX_CALLBACK_LEN: usize = 64;

/// True for a plain JavaScript identifier of at most 64 characters; anything
/// else could inject script into the response.
pub fn valid_callback(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'$');
    first_ok
        && name.len() <= MAX_CALLBACK_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
}

/// The body of one answer, as chunks ready for a vectored write.
pub fn body(messages: &[Arc<Message>], last_id: MessageId, gap: bool, callback: Option<&str>) -> Vec<Chunk> {
    let mut chunks = Vec::with_capacity(messages.len() * 2 + 2);
    let mut open = Vec::with_capacity(80);
    if let Some(cb) = callback {
        open.extend_from_slice(cb.as_bytes());
        open.push(b'(');
    }
    open.extend_from_slice(b"{\"messages\":[");
    chunks.push(Chunk::Owned(open));
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            chunks.push(Chunk::Static(b","));
        }
        chunks.push(Chunk::Shared(message.frame(Encoding::Envelope).bytes.clone()));
    }
    let mut close = format!("],\"last_id\":\"{last_id}\"");
    if gap {
        close.push_str(",\"gap\":true");
    }
    close.push('}');
    if callback.is_some() {
        close.push_str(");");
    }
    close.push('\n');
    chunks.push(Chunk::Owned(close.into_bytes()));
    chunks
}

/// The table row (see `transport::Row`). Polls are answered whole, so they
/// have no preamble, heartbeat or finish.
pub const ROW: Row = Row::new(Transport::LongPoll, "longpoll", CONTENT_TYPE, |_| Encoding::Envelope).polled();

/// Long-poll wrapped in `callback(...);` for script-tag polling.
pub const JSONP_ROW: Row =
    Row { transport: Transport::Jsonp, name: "jsonp", content_type: JSONP_CONTENT_TYPE, ..ROW };

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_support::message;

    fn join(chunks: &[Chunk]) -> String {
        chunks.iter().map(|c| String::from_utf8_lossy(&c.to_vec()).into_owned()).collect()
    }

    #[test]
    fn builds_bodies() {
        let a = Arc::new(message(5, 0, "a", None, "1"));
        let b = Arc::new(message(5, 1, "b", Some("e"), "2"));
        type Case<'a> = (Vec<Arc<Message>>, bool, Option<&'a str>, &'a str);
        let cases: Vec<Case> = vec![
            (vec![], false, None, "{\"messages\":[],\"last_id\":\"9-9\"}\n"),
            (
                vec![a.clone(), b.clone()],
                true,
                None,
                "{\"messages\":[{\"id\":\"5-0\",\"channel\":\"a\",\"data\":\"1\"},{\"id\":\"5-1\",\"channel\":\"b\",\"data\":\"2\",\"event\":\"e\"}],\"last_id\":\"9-9\",\"gap\":true}\n",
            ),
            (
                vec![a],
                false,
                Some("cb"),
                "cb({\"messages\":[{\"id\":\"5-0\",\"channel\":\"a\",\"data\":\"1\"}],\"last_id\":\"9-9\"});\n",
            ),
        ];
        for (messages, gap, callback, want) in cases {
            let got = join(&body(&messages, MessageId::new(9, 9), gap, callback));
            assert_eq!(got, want);
            let json = want.trim_end().trim_start_matches("cb(").trim_end_matches(");");
            assert!(serde_json::from_str::<serde_json::Value>(json).is_ok(), "{json}");
        }
    }

    #[test]
    fn checks_callbacks() {
        for ok in ["cb", "_x1", "$", "jQuery123_456", &"a".repeat(64)] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in ["", "1a", "a.b", "a(b)", "alert(1);x", "a b", &"a".repeat(65)] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }
}
