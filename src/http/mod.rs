//! Sans-IO HTTP/1.1: request parsing, chunked coding, response heads.
//!
//! Nothing in this module touches a socket. The connection code feeds it
//! bytes and writes out the bytes it returns, which keeps every rule about
//! framing, limits and error statuses testable without a network.
//!
//! Invariant for the whole module: no input can make it panic. Bytes come
//! straight from untrusted clients, so indexing, `unwrap` and friends are
//! denied here (tests excepted) and every failure is an [`HttpError`].
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;

pub mod chunked;
pub mod query;
pub mod request;
pub mod response;

pub use request::{parse_request, Method, Parse, Request, Version};
pub use response::{reason_phrase, Response};

/// Why a request was refused.
///
/// Each variant maps to exactly one status code ([`HttpError::status`]) and a
/// one-line, client-safe reason ([`HttpError::reason`]). After any of these
/// the connection's framing can no longer be trusted, so callers should
/// answer and close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// 431: the head (request line, headers, blank line) exceeds the limit.
    HeadTooLarge,
    /// 413: the body (announced or accumulated) exceeds `limit` bytes.
    BodyTooLarge { limit: usize },
    /// 400: the request is not valid HTTP/1.x; the string says why.
    Malformed(String),
    /// 505: a version other than HTTP/1.0 or HTTP/1.1.
    UnsupportedVersion,
    /// 501: a Transfer-Encoding other than exactly `chunked`.
    UnsupportedTransferEncoding,
}

impl HttpError {
    /// Convenience constructor for [`HttpError::Malformed`].
    pub fn malformed(reason: &str) -> HttpError {
        HttpError::Malformed(reason.to_string())
    }

    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::Malformed(_) => 400,
            HttpError::UnsupportedVersion => 505,
            HttpError::UnsupportedTransferEncoding => 501,
        }
    }

    /// A single-line reason suitable for the client (no CR/LF, no secrets).
    pub fn reason(&self) -> String {
        match self {
            HttpError::HeadTooLarge => "request head too large".to_string(),
            HttpError::BodyTooLarge { limit } => {
                format!("request body larger than {limit} bytes")
            }
            HttpError::Malformed(why) => why.clone(),
            HttpError::UnsupportedVersion => "only HTTP/1.0 and HTTP/1.1 are supported".to_string(),
            HttpError::UnsupportedTransferEncoding => {
                "only Transfer-Encoding: chunked is supported".to_string()
            }
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_reason_per_variant() {
        let cases = [
            (HttpError::HeadTooLarge, 431, "request head too large"),
            (HttpError::BodyTooLarge { limit: 10 }, 413, "request body larger than 10 bytes"),
            (HttpError::malformed("invalid header name"), 400, "invalid header name"),
            (HttpError::UnsupportedVersion, 505, "only HTTP/1.0 and HTTP/1.1 are supported"),
            (HttpError::UnsupportedTransferEncoding, 501, "only Transfer-Encoding: chunked is supported"),
        ];
        for (err, status, reason) in cases {
            assert_eq!(err.status(), status, "{err:?}");
            assert_eq!(err.reason(), reason, "{err:?}");
            assert_eq!(err.to_string(), format!("{status} {reason}"));
        }
    }
}
