//! Building response heads (and small complete responses) as bytes.

use super::request::Version;

/// How the body that follows a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Exactly this many bytes follow (`Content-Length`).
    Length(usize),
    /// Chunks follow, ended by `chunked::LAST_CHUNK` (HTTP/1.1 only).
    Chunked,
    /// The body ends when the server closes the connection.
    UntilClose,
}

/// A response status plus extra header fields; renders heads via [`Response::head`].
///
/// Invariants: `status` is a three-digit code; every stored header has a
/// token name and a value without CR or LF, so no caller input can inject
/// header lines; framing headers are never stored (see [`Response::header`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    /// A response with `status`; a code outside 100..=999 (which could not
    /// be written as a valid status line) becomes 500.
    pub fn new(status: u16) -> Response {
        let status = if (100..=999).contains(&status) { status } else { 500 };
        Response { status, headers: Vec::new() }
    }

    /// The status code that will be sent.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Adds a header field (builder style).
    ///
    /// Silently dropped: a value containing CR or LF or a name that is not
    /// an HTTP token (header injection), and `Content-Length` or
    /// `Transfer-Encoding`, which [`Response::head`] alone decides because a
    /// second, disagreeing framing header would desynchronise the client.
    /// `Connection` is allowed (for `Upgrade`); `close`/`keep-alive` are
    /// added by `head` itself.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        let injects = value.contains(['\r', '\n']) || !is_token(name);
        let framing =
            name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding");
        if !injects && !framing {
            self.headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    /// Renders the head: status line (always `HTTP/1.1`, which RFC 9110
    /// allows for 1.0 clients too), `Server`, the added headers, the framing
    /// header, the `Connection` header when needed, and the blank line.
    ///
    /// HTTP/1.0 has no chunked coding, so `Chunked` there becomes
    /// `UntilClose`; `UntilClose` forces the connection to close. Statuses
    /// that never have a body (1xx, 204, 304) get no framing header at all
    /// and are not forced to close.
    pub fn head(&self, body: BodyKind, version: Version, keep_alive: bool) -> Vec<u8> {
        let (framing, keep_alive) = self.framing(body, version, keep_alive);
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason_phrase(self.status));
        out.push_str("Server: halley\r\n");
        for (name, value) in &self.headers {
            push_field(&mut out, name, value);
        }
        match framing {
            Some(BodyKind::Length(len)) => push_field(&mut out, "Content-Length", &len.to_string()),
            Some(BodyKind::Chunked) => push_field(&mut out, "Transfer-Encoding", "chunked"),
            Some(BodyKind::UntilClose) | None => {}
        }
        if !keep_alive {
            push_field(&mut out, "Connection", "close");
        } else if version == Version::Http10 {
            // HTTP/1.0 closes by default; say explicitly that we will not.
            push_field(&mut out, "Connection", "keep-alive");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// The head plus `body`, framed with `Content-Length`. For statuses
    /// that cannot carry a body (1xx, 204, 304) the body is left out.
    pub fn with_body(&self, body: &[u8], version: Version, keep_alive: bool) -> Vec<u8> {
        let mut out = self.head(BodyKind::Length(body.len()), version, keep_alive);
        if self.allows_body() {
            out.extend_from_slice(body);
        }
        out
    }

    /// RFC 9110 §6.4.1: 1xx, 204 and 304 responses never have content.
    fn allows_body(&self) -> bool {
        self.status >= 200 && self.status != 204 && self.status != 304
    }

    /// The framing actually used (`None`: no framing header) and the
    /// effective keep-alive.
    fn framing(&self, body: BodyKind, version: Version, keep_alive: bool) -> (Option<BodyKind>, bool) {
        if !self.allows_body() {
            return (None, keep_alive);
        }
        match (body, version) {
            (BodyKind::Chunked, Version::Http10) | (BodyKind::UntilClose, _) => {
                (Some(BodyKind::UntilClose), false)
            }
            (kind, _) => (Some(kind), keep_alive),
        }
    }
}

fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\n");
}

/// Whether `name` is a non-empty RFC 9110 token (a valid field name).
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A complete JSON error response: `status`, `Content-Type:
/// application/json`, the `extra` headers (e.g. `Retry-After`), and the
/// body `{"error":"<message>"}` plus a newline, with `message` JSON-escaped.
pub fn json_error(
    status: u16,
    message: &str,
    extra: &[(&str, &str)],
    version: Version,
    keep_alive: bool,
) -> Vec<u8> {
    // Display of a serde_json string Value is its escaped JSON literal.
    let body = format!("{{\"error\":{}}}\n", serde_json::Value::from(message));
    let mut response = Response::new(status).header("Content-Type", "application/json");
    for (name, value) in extra {
        response = response.header(name, value);
    }
    response.with_body(body.as_bytes(), version, keep_alive)
}

/// The standard reason phrase for `status` (RFC 9110 names), or
/// `"Unknown"` for codes without one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        _ => error_reason_phrase(status),
    }
}

/// Reason phrases for 4xx and 5xx (split out to keep functions short).
fn error_reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use Version::{Http10, Http11};

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn framing_and_connection_headers() {
        use BodyKind::{Chunked, Length, UntilClose};
        let plain = Response::new(200).header("Content-Type", "text/plain");
        let ok = "HTTP/1.1 200 OK\r\nServer: halley\r\nContent-Type: text/plain\r\n";
        let cases = [
            (Length(2), Http11, true, "Content-Length: 2\r\n"),
            (Length(2), Http11, false, "Content-Length: 2\r\nConnection: close\r\n"),
            (Length(0), Http10, true, "Content-Length: 0\r\nConnection: keep-alive\r\n"),
            (Length(0), Http10, false, "Content-Length: 0\r\nConnection: close\r\n"),
            (Chunked, Http11, true, "Transfer-Encoding: chunked\r\n"),
            (Chunked, Http11, false, "Transfer-Encoding: chunked\r\nConnection: close\r\n"),
            // HTTP/1.0 has no chunked coding: close-delimited instead.
            (Chunked, Http10, true, "Connection: close\r\n"),
            (UntilClose, Http11, true, "Connection: close\r\n"),
            (UntilClose, Http10, true, "Connection: close\r\n"),
        ];
        for (kind, version, keep_alive, tail) in cases {
            let got = text(plain.head(kind, version, keep_alive));
            assert_eq!(got, format!("{ok}{tail}\r\n"), "{kind:?} {version:?} {keep_alive}");
        }
        let got = text(plain.with_body(b"hi", Http11, true));
        assert_eq!(got, format!("{ok}Content-Length: 2\r\n\r\nhi"));
    }

    #[test]
    fn bodyless_statuses_exact_bytes() {
        let upgrade = Response::new(101).header("Upgrade", "websocket").header("Connection", "Upgrade");
        let cases = [
            (
                Response::new(204).with_body(b"ignored", Http11, true),
                "HTTP/1.1 204 No Content\r\nServer: halley\r\n\r\n",
            ),
            (
                Response::new(304).head(BodyKind::Chunked, Http10, true),
                "HTTP/1.1 304 Not Modified\r\nServer: halley\r\nConnection: keep-alive\r\n\r\n",
            ),
            (
                upgrade.head(BodyKind::UntilClose, Http11, true),
                "HTTP/1.1 101 Switching Protocols\r\nServer: halley\r\n\
                 Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            ),
            (
                Response::new(299).head(BodyKind::Length(0), Http11, true),
                "HTTP/1.1 299 Unknown\r\nServer: halley\r\nContent-Length: 0\r\n\r\n",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(text(got), want);
        }
    }

    #[test]
    fn drops_injected_and_framing_headers() {
        let response = Response::new(200)
            .header("X-A", "a\r\nSet-Cookie: evil=1")
            .header("X-B", "b\nc")
            .header("X-C", "c\rd")
            .header("X-D\r\nEvil", "v")
            .header("Bad Name", "v")
            .header("", "v")
            .header("Content-Length", "5")
            .header("transfer-encoding", "chunked")
            .header("X-Ok", "fine");
        let want = "HTTP/1.1 200 OK\r\nServer: halley\r\nX-Ok: fine\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(text(response.with_body(b"", Http11, true)), want);
    }

    #[test]
    fn invalid_status_becomes_500() {
        for status in [0, 99, 1000, u16::MAX] {
            assert_eq!(Response::new(status).status(), 500, "{status}");
        }
        assert_eq!(Response::new(100).status(), 100);
        assert_eq!(Response::new(999).status(), 999);
    }

    #[test]
    fn json_error_exact_bytes() {
        let got = json_error(429, "slow \"down\"\n", &[("Retry-After", "1")], Http11, true);
        let body = "{\"error\":\"slow \\\"down\\\"\\n\"}\n";
        let want = format!(
            "HTTP/1.1 429 Too Many Requests\r\nServer: halley\r\nContent-Type: application/json\r\n\
             Retry-After: 1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(text(got), want);
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(parsed["error"], "slow \"down\"\n");
    }

    #[test]
    fn reason_phrases() {
        let cases = [
            (101, "Switching Protocols"),
            (200, "OK"),
            (204, "No Content"),
            (304, "Not Modified"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (411, "Length Required"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (415, "Unsupported Media Type"),
            (422, "Unprocessable Content"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
            (299, "Unknown"),
        ];
        for (status, want) in cases {
            assert_eq!(reason_phrase(status), want, "{status}");
        }
    }
}
