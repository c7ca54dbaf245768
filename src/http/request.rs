//! Parsing one HTTP/1.x request (head and body) from the front of a buffer.

use super::chunked::{self, Decoded};
use super::query;
use super::HttpError;

/// Most header fields accepted in one request; more is `Malformed`.
pub const MAX_HEADERS: usize = 64;

/// A request method. Methods are case-sensitive (RFC 9110 §9.1), so
/// `get` is `Other("get")`, not `Get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Other(String),
}

impl Method {
    /// The method named by a request-line token.
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method's token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(token) => token,
        }
    }
}

/// The only two protocol versions accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// One parsed request.
///
/// Invariants: `path` starts with `/` and is percent-decoded valid UTF-8;
/// `query` is the raw text after the first `?`; header names are lowercase
/// and in the order received; `body` is the decoded body (empty if none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub version: Version,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// The `:protocol` of an HTTP/2 extended CONNECT (RFC 8441), which
    /// opens a WebSocket on a stream; `None` for every other request.
    pub protocol: Option<String>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_slice())
    }

    /// The first header named `name`, trimmed, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        let value = std::str::from_utf8(self.header(name)?).ok()?;
        Some(value.trim())
    }

    /// The first query parameter `name`, decoded (`+` as space).
    /// A parameter present without a value (`?a` or `?a=`) gives `Some("")`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query::params(&self.query).find(|(key, _)| key == name).map(|(_, value)| value)
    }

    /// Whether any `name` header lists `token` in its comma-separated value
    /// (case-insensitive), as with `Connection: keep-alive, Upgrade`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .filter_map(|(_, value)| std::str::from_utf8(value).ok())
            .flat_map(|value| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    /// HTTP/1.1 is persistent unless told `close`; HTTP/1.0 only if asked.
    fn wants_keep_alive(&self) -> bool {
        let close = self.header_has_token("connection", "close");
        match self.version {
            Version::Http11 => !close,
            Version::Http10 => !close && self.header_has_token("connection", "keep-alive"),
        }
    }
}

/// Outcome of [`parse_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A whole request; it took exactly `consumed` bytes from the front of
    /// the buffer, and whatever follows is the next (pipelined) request.
    Complete { request: Request, consumed: usize },
    /// Valid so far but incomplete: call again once more bytes arrived.
    Partial,
}

/// How the body of a request is delimited.
enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

/// Parses one request from the front of `buf`.
///
/// The head may not exceed `max_head_bytes`; this is detected before the
/// head is complete as soon as `buf` holds more than that without a full
/// head. Once the head is parsed, and only if it announces a body,
/// `body_limit(method, path)` gives the largest body allowed; a larger
/// Content-Length is refused before any body byte arrives, and a chunked
/// body as soon as a chunk size pushes it over.
///
/// The parser keeps no state: on `Partial` call again with the longer
/// buffer. Re-parsing is bounded by `max_head_bytes` plus the body limit.
pub fn parse_request(
    buf: &[u8],
    max_head_bytes: usize,
    body_limit: &dyn Fn(&Method, &str) -> usize,
) -> Result<Parse, HttpError> {
    let Some((mut request, head_len)) = parse_head(buf, max_head_bytes)? else {
        return Ok(Parse::Partial);
    };
    let rest = buf.get(head_len..).unwrap_or_default();
    let Some((body, body_len)) = read_body(&request, rest, body_limit)? else {
        return Ok(Parse::Partial);
    };
    request.body = body;
    // Both lengths are offsets within `buf`, so the sum cannot overflow.
    let consumed = head_len + body_len;
    Ok(Parse::Complete { request, consumed })
}

/// Reads the body framed as the head says from `rest` (the bytes after the
/// head): the decoded body and how many bytes of `rest` it took, or `None`
/// if it has not fully arrived.
fn read_body(
    request: &Request,
    rest: &[u8],
    body_limit: &dyn Fn(&Method, &str) -> usize,
) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    match framing(request)? {
        Framing::Empty => Ok(Some((Vec::new(), 0))),
        Framing::Length(len) => {
            let limit = body_limit(&request.method, &request.path);
            if len > limit {
                return Err(HttpError::BodyTooLarge { limit });
            }
            Ok(rest.get(..len).map(|body| (body.to_vec(), len)))
        }
        Framing::Chunked => {
            let limit = body_limit(&request.method, &request.path);
            Ok(match chunked::decode(rest, limit)? {
                Decoded::Complete { body, consumed } => Some((body, consumed)),
                Decoded::Partial => None,
            })
        }
    }
}

/// Parses the head; returns the request (body still empty) and the head's
/// length, or `None` if the head is incomplete but still within `max`.
fn parse_head(buf: &[u8], max: usize) -> Result<Option<(Request, usize)>, HttpError> {
    // Only the first `max` bytes are ever parsed as a head: a head must fit
    // in them, and whatever lies beyond cannot change the answer, so it is
    // the same (431) however the bytes arrived.
    let window = buf.get(..buf.len().min(max)).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > max => return Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) => return version_error(window, buf.len() > max),
        Err(err) => return Err(head_error(err)),
    };
    if head_len > max {
        return Err(HttpError::HeadTooLarge);
    }
    build_request(&parsed).map(|request| Some((request, head_len)))
}

/// Turns a complete httparse head into a [`Request`] with an empty body.
fn build_request(parsed: &httparse::Request) -> Result<Request, HttpError> {
    let incomplete = || HttpError::malformed("incomplete request line");
    let method = Method::from_token(parsed.method.ok_or_else(incomplete)?);
    let version = match parsed.version.ok_or_else(incomplete)? {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(HttpError::UnsupportedVersion),
    };
    let (path, query) = split_target(parsed.path.ok_or_else(incomplete)?)?;
    let headers = parsed.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect();
    let mut request = Request {
        method,
        path,
        query,
        version,
        headers,
        body: Vec::new(),
        keep_alive: false,
        protocol: None,
    };
    request.keep_alive = request.wants_keep_alive();
    Ok(request)
}

/// Maps an httparse error (other than `Version`) to a 400 with a reason.
fn head_error(err: httparse::Error) -> HttpError {
    HttpError::malformed(match err {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending in request head",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::Status | httparse::Error::Token => "invalid request line",
    })
}

/// httparse refuses any version but 1.0/1.1 as soon as it sees the first
/// wrong byte. To tell a well-formed other version (505) from garbage (400)
/// this waits for the whole request line and looks at its last word.
fn version_error(buf: &[u8], over_limit: bool) -> Result<Option<(Request, usize)>, HttpError> {
    let start = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let line = buf.get(start..).unwrap_or_default();
    let Some(end) = line.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if over_limit { Err(HttpError::HeadTooLarge) } else { Ok(None) };
    };
    let line = line.get(..end).unwrap_or_default();
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    let number = version.strip_prefix(b"HTTP/").unwrap_or_default();
    let well_formed = number.first().is_some_and(u8::is_ascii_digit)
        && number.iter().all(|&b| b.is_ascii_digit() || b == b'.');
    Err(if well_formed {
        HttpError::UnsupportedVersion
    } else {
        HttpError::malformed("invalid HTTP version")
    })
}

/// Splits a request target into (decoded path, raw query).
///
/// Absolute-form targets (`http://host/p?q`, which proxies send and
/// servers must accept) are reduced to their path and query first.
fn split_target(target: &str) -> Result<(String, String), HttpError> {
    let target = origin_form(target)?;
    let (raw_path, query) = target.split_once('?').unwrap_or((&target, ""));
    if !raw_path.starts_with('/') {
        return Err(HttpError::malformed("request target must start with '/'"));
    }
    let path = query::percent_decode(raw_path, false)?;
    query::validate(query)?;
    Ok((path, query.to_string()))
}

/// The origin-form (`/path?query`) of an origin- or absolute-form target.
fn origin_form(target: &str) -> Result<String, HttpError> {
    for scheme in ["http://", "https://"] {
        let has_scheme = target.get(..scheme.len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme));
        if !has_scheme {
            continue;
        }
        let after = target.get(scheme.len()..).unwrap_or_default();
        let authority_len = after.find(['/', '?']).unwrap_or(after.len());
        if authority_len == 0 {
            return Err(HttpError::malformed("absolute-form target without a host"));
        }
        let rest = after.get(authority_len..).unwrap_or_default();
        return Ok(if rest.starts_with('/') { rest.to_string() } else { format!("/{rest}") });
    }
    Ok(target.to_string())
}

/// Decides how the body is delimited (RFC 9112 §6.3), refusing anything
/// ambiguous: a front proxy that reads the framing differently from us is
/// how request smuggling happens.
fn framing(request: &Request) -> Result<Framing, HttpError> {
    let length = content_length(request)?;
    let has_te = request.header("transfer-encoding").is_some();
    if has_te && length.is_some() {
        return Err(HttpError::malformed("both Content-Length and Transfer-Encoding"));
    }
    if has_te {
        return transfer_encoding(request);
    }
    Ok(match length {
        None | Some(0) => Framing::Empty,
        // A length beyond usize can never be buffered: report it as too large
        // by saturating, since every body limit is below usize::MAX.
        Some(len) => Framing::Length(usize::try_from(len).unwrap_or(usize::MAX)),
    })
}

/// Accepts only a Transfer-Encoding that is exactly `chunked`, in HTTP/1.1.
fn transfer_encoding(request: &Request) -> Result<Framing, HttpError> {
    if request.version == Version::Http10 {
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has
        // faulty framing; refusing it is the safe reading.
        return Err(HttpError::malformed("Transfer-Encoding in an HTTP/1.0 request"));
    }
    let mut codings = Vec::new();
    for (_, value) in request.headers.iter().filter(|(name, _)| name == "transfer-encoding") {
        let value =
            std::str::from_utf8(value).map_err(|_| HttpError::malformed("invalid Transfer-Encoding"))?;
        codings.extend(value.split(',').map(str::trim).filter(|c| !c.is_empty()));
    }
    match codings.as_slice() {
        [only] if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
        _ => Err(HttpError::UnsupportedTransferEncoding),
    }
}

/// The Content-Length, if any. Repeated fields or comma lists are accepted
/// only when every value is the same number (RFC 9112 §6.3 item 5).
fn content_length(request: &Request) -> Result<Option<u64>, HttpError> {
    let mut found = None;
    for (_, value) in request.headers.iter().filter(|(name, _)| name == "content-length") {
        for item in value.split(|&b| b == b',') {
            let len = parse_decimal(item.trim_ascii())?;
            if found.is_some_and(|prev| prev != len) {
                return Err(HttpError::malformed("conflicting Content-Length values"));
            }
            found = Some(len);
        }
    }
    Ok(found)
}

/// Parses 1*DIGIT, saturating at `u64::MAX` (any such length is too large).
fn parse_decimal(digits: &[u8]) -> Result<u64, HttpError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::malformed("Content-Length is not a number"));
    }
    Ok(digits.iter().fold(0u64, |acc, &d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

/// True when `buf` starts with a complete request head that carries
/// `Expect: 100-continue` (curl sends it before bodies over 1 KiB and waits a
/// second for the interim answer unless it gets one).
pub fn expects_continue(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    matches!(req.parse(buf), Ok(httparse::Status::Complete(_)))
        && req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue"))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const MAX_HEAD: usize = 1024;

    /// Bodies up to 64 bytes on /publish, 8 elsewhere.
    fn limit(_: &Method, path: &str) -> usize {
        if path == "/publish" {
            64
        } else {
            8
        }
    }

    fn parse(buf: &[u8]) -> Result<Parse, HttpError> {
        parse_request(buf, MAX_HEAD, &limit)
    }

    fn req(
        method: Method,
        target: (&str, &str),
        version: Version,
        headers: &[(&str, &str)],
        body: &str,
        keep_alive: bool,
    ) -> Request {
        Request {
            method,
            path: target.0.to_string(),
            query: target.1.to_string(),
            version,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect(),
            body: body.as_bytes().to_vec(),
            keep_alive,
            protocol: None,
        }
    }

    /// Valid requests, each exactly one request long, and what they parse to.
    fn valid() -> Vec<(&'static str, Request)> {
        use Method::*;
        use Version::*;
        let chunked = "POST /publish HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
                       5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        let te = [("transfer-encoding", "Chunked")];
        let with_length = "POST /publish?channel=a HTTP/1.1\r\nContent-Type: text/plain\r\n\
                           Content-Length: 5\r\n\r\nhello";
        let ct_cl = [("content-type", "text/plain"), ("content-length", "5")];
        let patch = "PATCH /x HTTP/1.1\r\nContent-Length: 2, 2\r\ncontent-length: 2\r\n\r\nhi";
        let cl_cl = [("content-length", "2, 2"), ("content-length", "2")];
        let absolute = "GET http://example.com:8080/sub?x=1 HTTP/1.1\r\nHost: h\r\n\r\n";
        vec![
            (
                "GET /sub/chan?id=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                req(Get, ("/sub/chan", "id=1"), Http11, &[("host", "x")], "", true),
            ),
            (
                "GET /a%20b/%E2%82%AC?q=hello+world&x=%41 HTTP/1.1\r\n\r\n",
                req(Get, ("/a b/\u{20ac}", "q=hello+world&x=%41"), Http11, &[], "", true),
            ),
            (with_length, req(Post, ("/publish", "channel=a"), Http11, &ct_cl, "hello", true)),
            (chunked, req(Post, ("/publish", ""), Http11, &te, "hello world", true)),
            ("GET / HTTP/1.0\r\n\r\n", req(Get, ("/", ""), Http10, &[], "", false)),
            (
                "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                req(Get, ("/", ""), Http10, &[("connection", "Keep-Alive")], "", true),
            ),
            (
                "HEAD / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n",
                req(Head, ("/", ""), Http11, &[("connection", "foo, Close")], "", false),
            ),
            (absolute, req(Get, ("/sub", "x=1"), Http11, &[("host", "h")], "", true)),
            (
                "OPTIONS HTTPS://example.com?x HTTP/1.1\r\n\r\n",
                req(Options, ("/", "x"), Http11, &[], "", true),
            ),
            (patch, req(Other("PATCH".into()), ("/x", ""), Http11, &cl_cl, "hi", true)),
            (
                "\r\nDELETE /x HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
                req(Delete, ("/x", ""), Http11, &[("x-a", "1"), ("x-a", "2")], "", true),
            ),
            (
                "PUT /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                req(Put, ("/x", ""), Http11, &[("content-length", "0")], "", true),
            ),
        ]
    }

    #[test]
    fn parses_valid_requests() {
        for (raw, want) in valid() {
            let got = parse(raw.as_bytes());
            let want = Parse::Complete { request: want, consumed: raw.len() };
            assert_eq!(got, Ok(want), "{raw:?}");
        }
    }

    /// Every proper prefix is Partial, and the whole gives the same request.
    #[test]
    fn few_bytes_at_a_time() {
        for (raw, want) in valid() {
            let raw = raw.as_bytes();
            for step in [1, 3] {
                let mut end = step.min(raw.len());
                while end < raw.len() {
                    assert_eq!(parse(&raw[..end]), Ok(Parse::Partial), "{raw:?} at {end}");
                    end = (end + step).min(raw.len());
                }
                let whole = Parse::Complete { request: want.clone(), consumed: raw.len() };
                assert_eq!(parse(raw), Ok(whole));
            }
        }
    }

    #[test]
    fn pipelined_requests_consume_exactly_one_each() {
        let all: Vec<(&str, Request)> = valid();
        let wire: String = all.iter().map(|(raw, _)| *raw).collect();
        let mut buf = wire.as_bytes();
        for (raw, want) in all {
            match parse(buf) {
                Ok(Parse::Complete { request, consumed }) => {
                    assert_eq!(request, want);
                    assert_eq!(consumed, raw.len());
                    buf = &buf[consumed..];
                }
                other => panic!("{raw:?}: {other:?}"),
            }
        }
        assert!(buf.is_empty());
    }

    fn malformed(why: &str) -> HttpError {
        HttpError::malformed(why)
    }

    /// A POST to /publish with the given header lines and body.
    fn post(headers: &str, body: &str) -> String {
        format!("POST /publish HTTP/1.1\r\n{headers}\r\n{body}")
    }

    #[test]
    fn rejects_bad_request_lines() {
        let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(65));
        let bad_line = malformed("invalid request line");
        let no_slash = malformed("request target must start with '/'");
        let bad_version = malformed("invalid HTTP version");
        let cases: Vec<(&str, HttpError)> = vec![
            ("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", malformed("invalid header name")),
            ("GET / HTTP/1.1\r\n: x\r\n\r\n", malformed("invalid header name")),
            ("GET / HTTP/1.1\r\nA: \x01\r\n\r\n", malformed("invalid header value")),
            ("GET / HTTP/1.1\rX\r\n\r\n", malformed("invalid line ending in request head")),
            (&many_headers, malformed("too many headers")),
            ("G(T / HTTP/1.1\r\n\r\n", bad_line.clone()),
            ("GET  / HTTP/1.1\r\n\r\n", bad_line),
            ("GET foo HTTP/1.1\r\n\r\n", no_slash.clone()),
            ("OPTIONS * HTTP/1.1\r\n\r\n", no_slash.clone()),
            ("GET ftp://host/x HTTP/1.1\r\n\r\n", no_slash),
            ("GET http:///x HTTP/1.1\r\n\r\n", malformed("absolute-form target without a host")),
            ("GET /%zz HTTP/1.1\r\n\r\n", malformed("bad percent-escape")),
            ("GET /%ff HTTP/1.1\r\n\r\n", malformed("percent-decoded text is not valid UTF-8")),
            ("GET / FOO/1.1\r\n\r\n", bad_version.clone()),
            ("GET / HTTP/x\r\n\r\n", bad_version),
            ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", HttpError::UnsupportedVersion),
            ("GET / HTTP/1.2\r\n\r\n", HttpError::UnsupportedVersion),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HttpError::UnsupportedVersion),
            ("GET / HTTP/3\r\n\r\n", HttpError::UnsupportedVersion),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw.as_bytes()), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn rejects_bad_body_framing() {
        let nan = malformed("Content-Length is not a number");
        let conflict = malformed("conflicting Content-Length values");
        let unsupported = HttpError::UnsupportedTransferEncoding;
        let te = "Transfer-Encoding: chunked\r\n";
        let cases: Vec<(String, HttpError)> = vec![
            (post("Content-Length: abc\r\n", ""), nan.clone()),
            (post("Content-Length: -1\r\n", ""), nan.clone()),
            (post("Content-Length: +1\r\n", ""), nan.clone()),
            (post("Content-Length:\r\n", ""), nan.clone()),
            (post("Content-Length: 1,\r\n", ""), nan),
            (post("Content-Length: 1\r\nContent-Length: 2\r\n", ""), conflict.clone()),
            (post("Content-Length: 1, 2\r\n", ""), conflict),
            (
                post(&format!("Content-Length: 1\r\n{te}"), ""),
                malformed("both Content-Length and Transfer-Encoding"),
            ),
            (post(te, "").replace("1.1", "1.0"), malformed("Transfer-Encoding in an HTTP/1.0 request")),
            (post(te, "zz\r\n"), malformed("chunk size is not a hex number")),
            (post(te, "1\nx"), malformed("bare LF in chunked body")),
            (post("Transfer-Encoding: gzip\r\n", ""), unsupported.clone()),
            (post("Transfer-Encoding: gzip, chunked\r\n", ""), unsupported.clone()),
            (post(&te.repeat(2), ""), unsupported.clone()),
            (post("Transfer-Encoding:\r\n", ""), unsupported),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw.as_bytes()), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn refuses_large_heads_and_bodies_early() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        let long_version = format!("GET / HTTP/2.0{}", "0".repeat(MAX_HEAD));
        let big_headers = "X-Pad: 0123456789012345678901234567890123456789\r\n".repeat(30);
        let complete_big = format!("GET / HTTP/1.1\r\n{big_headers}\r\n");
        let incomplete_big = format!("GET / HTTP/1.1\r\n{big_headers}");
        let too_large = |limit| HttpError::BodyTooLarge { limit };
        let cases: Vec<(&str, HttpError)> = vec![
            (&long_line[..MAX_HEAD + 1], HttpError::HeadTooLarge),
            (&long_line, HttpError::HeadTooLarge),
            (&long_version, HttpError::HeadTooLarge),
            (&complete_big, HttpError::HeadTooLarge),
            (&incomplete_big, HttpError::HeadTooLarge),
            ("POST /x HTTP/1.1\r\nContent-Length: 9\r\n\r\n", too_large(8)),
            ("POST /publish HTTP/1.1\r\nContent-Length: 65\r\n\r\n", too_large(64)),
            ("POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", too_large(8)),
            ("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n", too_large(8)),
            ("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n4\r\n", too_large(8)),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw.as_bytes()), Err(want), "{raw:?}");
        }
        // Exactly at the limits is fine.
        let at_limit = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD - 18));
        assert_eq!(at_limit.len(), MAX_HEAD);
        assert!(matches!(parse(at_limit.as_bytes()), Ok(Parse::Complete { .. })));
        let body_at_limit = "POST /x HTTP/1.1\r\nContent-Length: 8\r\n\r\n12345678";
        assert!(matches!(parse(body_at_limit.as_bytes()), Ok(Parse::Complete { .. })));
    }

    #[test]
    fn body_limit_sees_method_and_decoded_path() {
        let seen = std::cell::RefCell::new(Vec::new());
        let record = |method: &Method, path: &str| {
            seen.borrow_mut().push((method.clone(), path.to_string()));
            100
        };
        let raw = b"PUT /a%2Fb?x HTTP/1.1\r\nContent-Length: 1\r\n\r\nz";
        assert!(matches!(parse_request(raw, MAX_HEAD, &record), Ok(Parse::Complete { .. })));
        assert_eq!(seen.into_inner(), vec![(Method::Put, "/a/b".to_string())]);
    }

    fn parsed(raw: &[u8]) -> Request {
        match parse(raw) {
            Ok(Parse::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn accessors() {
        let request = parsed(
            b"GET /?a=1&b=hello+world&c=%E2%82%AC&empty=&flag&a=2 HTTP/1.1\r\n\
              Connection: keep-alive, Upgrade\r\nX-Value:  padded \r\nX-Bin: \xff\r\n\r\n",
        );
        let params = [
            ("a", Some("1")),
            ("b", Some("hello world")),
            ("c", Some("\u{20ac}")),
            ("empty", Some("")),
            ("flag", Some("")),
            ("missing", None),
        ];
        for (name, want) in params {
            assert_eq!(request.query_param(name).as_deref(), want, "{name}");
        }
        // A parameter that does not decode refuses the whole request (400),
        // rather than being served as if it were absent.
        let bad = parse(b"GET /?a=1&bad=%zz HTTP/1.1\r\n\r\n");
        assert!(matches!(bad, Err(HttpError::Malformed(_))), "{bad:?}");
        assert_eq!(request.header("x-value"), Some(b"padded".as_slice()));
        assert_eq!(request.header("X-Value"), Some(b"padded".as_slice()));
        assert_eq!(request.header_str("x-value"), Some("padded"));
        assert_eq!(request.header("x-bin"), Some(b"\xff".as_slice()));
        assert_eq!(request.header_str("x-bin"), None);
        assert_eq!(request.header_str("missing"), None);
        assert!(request.header_has_token("connection", "upgrade"));
        assert!(request.header_has_token("Connection", "KEEP-ALIVE"));
        assert!(!request.header_has_token("connection", "close"));
        assert!(!request.header_has_token("upgrade", "websocket"));
    }

    #[test]
    fn method_tokens_round_trip() {
        for token in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"] {
            assert_eq!(Method::from_token(token).as_str(), token);
        }
        assert_eq!(Method::from_token("get"), Method::Other("get".into()));
    }
}
