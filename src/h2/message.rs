//! Requests and responses between HTTP/2 header lists and the server's
//! HTTP/1.1 vocabulary, pure: a stream's header list becomes the same
//! [`Request`] the HTTP/1.1 parser produces (so `route()` serves both), and
//! a response head built by the HTTP/1.1 writers becomes a header block
//! without the connection-specific fields HTTP/2 forbids.

use super::hpack::{self, Field};
use crate::http::{Method, Request, Version};

/// Fields RFC 9113 §8.2.2 forbids in HTTP/2 (connection-specific).
const CONNECTION_FIELDS: [&str; 5] =
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];

/// Why a stream's header list is not a request halley serves.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Malformed (RFC 9113 §8.1.1): the stream is reset with PROTOCOL_ERROR.
    Malformed(String),
    /// Well-formed, but not served here: answered with this status.
    Status(u16, String),
}

impl Refused {
    fn malformed(why: impl Into<String>) -> Refused {
        Refused::Malformed(why.into())
    }
}

/// A request from a stream's header list and body (§8.3.1). An extended
/// CONNECT (RFC 8441 §4: `:protocol`, with `:scheme` and `:path`) becomes a
/// request with its `protocol` set, for `route()` to open a WebSocket; a
/// plain CONNECT (§8.5, a proxy's tunnel) is not served.
pub fn request(fields: Vec<Field>, body: Vec<u8>) -> Result<Request, Refused> {
    let (mut method, mut path, mut scheme, mut authority, mut protocol) = (None, None, None, None, None);
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in fields {
        let name =
            String::from_utf8(name).map_err(|_| Refused::malformed("a header name that is not UTF-8"))?;
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Refused::malformed(format!("header name {name:?} is not lowercase")));
        }
        if let Some(pseudo) = name.strip_prefix(':') {
            if !headers.is_empty() {
                return Err(Refused::malformed(format!("pseudo-header {name} after a regular header")));
            }
            let value =
                String::from_utf8(value).map_err(|_| Refused::malformed(format!("{name} is not UTF-8")))?;
            let slot = match pseudo {
                "method" => &mut method,
                "path" => &mut path,
                "scheme" => &mut scheme,
                "authority" => &mut authority,
                "protocol" => &mut protocol,
                _ => return Err(Refused::malformed(format!("unknown pseudo-header {name}"))),
            };
            if slot.replace(value).is_some() {
                return Err(Refused::malformed(format!("{name} twice")));
            }
            continue;
        }
        if CONNECTION_FIELDS.contains(&name.as_str()) || (name == "te" && value != b"trailers") {
            return Err(Refused::malformed(format!("connection-specific header {name}")));
        }
        headers.push((name, value));
    }
    let method = method.ok_or_else(|| Refused::malformed("no :method"))?;
    match (method.as_str(), &protocol) {
        ("CONNECT", None) if path.is_some() || scheme.is_some() => {
            return Err(Refused::malformed(
                "a CONNECT without :protocol carries no :scheme or :path (RFC 9113 8.5)",
            ));
        }
        ("CONNECT", None) => {
            return Err(Refused::Status(
                405,
                "CONNECT tunnels are not served (halley is no proxy); a WebSocket is an extended CONNECT with :protocol websocket (RFC 8441)".into(),
            ));
        }
        ("CONNECT", Some(p)) if p.is_empty() => return Err(Refused::malformed("an empty :protocol")),
        ("CONNECT", Some(_)) => {}
        (_, Some(_)) => {
            return Err(Refused::malformed(format!(
                ":protocol on a {method} request (only an extended CONNECT has it, RFC 8441 4)"
            )));
        }
        (_, None) => {}
    }
    let target = path.filter(|p| !p.is_empty()).ok_or_else(|| Refused::malformed("no :path"))?;
    scheme.ok_or_else(|| Refused::malformed("no :scheme"))?;
    if let Some(authority) = authority {
        if !headers.iter().any(|(n, _)| n == "host") {
            headers.push(("host".into(), authority.into_bytes()));
        }
    }
    let (raw_path, query) = target.split_once('?').unwrap_or((&target, ""));
    if !raw_path.starts_with('/') {
        return Err(Refused::malformed(format!(":path {target:?} does not start with '/'")));
    }
    let path =
        crate::http::query::percent_decode(raw_path, false).map_err(|e| Refused::malformed(e.reason()))?;
    crate::http::query::validate(query).map_err(|e| Refused::malformed(e.reason()))?;
    Ok(Request {
        method: Method::from_token(&method),
        path,
        query: query.to_string(),
        version: Version::Http11,
        headers,
        body,
        keep_alive: true,
        protocol,
    })
}

/// Whether a header list asks for a CONNECT: its request is whole at its
/// HEADERS (the stream then carries the tunnel's bytes, not a body).
pub fn is_connect(fields: &[Field]) -> bool {
    fields.iter().any(|(n, v)| n == b":method" && v == b"CONNECT")
}

/// An HTTP/1.1 response (head and maybe body) as a header block and the
/// offset where its body starts; `None` if `h1` holds no whole head.
pub fn response(h1: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = parsed.parse(h1).ok()? else { return None };
    let status = parsed.code?;
    let mut fields: Vec<(String, &[u8])> = Vec::new();
    for h in parsed.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if !CONNECTION_FIELDS.contains(&name.as_str()) {
            fields.push((name, h.value));
        }
    }
    let fields: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    Some((hpack::encode_response(status, &fields), head_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Vec<Field> {
        pairs.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn requests_from_header_lists() {
        let ok = request(
            f(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "h:1"),
                (":path", "/sub/a%20b?x=1"),
                ("accept", "text/event-stream"),
            ]),
            vec![],
        )
        .unwrap();
        assert_eq!(
            (ok.method.clone(), ok.path.as_str(), ok.query.as_str()),
            (Method::Get, "/sub/a b", "x=1")
        );
        assert_eq!(ok.header_str("host"), Some("h:1"));
        assert_eq!(ok.header_str("accept"), Some("text/event-stream"));
        let bad: [(&[(&str, &str)], &str); 11] = [
            (&[(":scheme", "http"), (":path", "/")], "no :method"),
            (&[(":method", "GET"), (":scheme", "http")], "no :path"),
            (&[(":method", "GET"), (":path", "/")], "no :scheme"),
            (&[(":method", "GET"), ("a", "b"), (":path", "/"), (":scheme", "http")], "after a regular"),
            (&[(":method", "GET"), (":method", "GET")], "twice"),
            (
                &[(":method", "GET"), (":path", "/"), (":scheme", "http"), ("connection", "close")],
                "connection-specific",
            ),
            (&[(":method", "GET"), (":path", "/"), (":scheme", "http"), ("X-Up", "1")], "lowercase"),
            (&[(":method", "CONNECT"), (":authority", "h"), (":protocol", "websocket")], "no :path"),
            (
                &[(":method", "GET"), (":protocol", "websocket"), (":path", "/"), (":scheme", "http")],
                "only an extended",
            ),
            (&[(":method", "CONNECT"), (":authority", "h"), (":path", "/")], "RFC 9113 8.5"),
            (
                &[(":method", "CONNECT"), (":protocol", ""), (":path", "/"), (":scheme", "http")],
                "empty :protocol",
            ),
        ];
        for (fields, words) in bad {
            let Err(Refused::Malformed(err)) = request(f(fields), vec![]) else {
                panic!("{fields:?} not malformed")
            };
            assert!(err.contains(words), "{fields:?}: {err}");
        }
        let tunnel = request(f(&[(":method", "CONNECT"), (":authority", "h:443")]), vec![]);
        assert!(matches!(tunnel, Err(Refused::Status(405, _))), "{tunnel:?}");
        let ws = f(&[
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":path", "/sub/a?transport=ws"),
            (":authority", "h"),
        ]);
        assert!(is_connect(&ws));
        let ws = request(ws, vec![]).unwrap();
        assert_eq!((ws.protocol.as_deref(), ws.path.as_str()), (Some("websocket"), "/sub/a"));
    }

    #[test]
    fn responses_lose_connection_fields() {
        let h1 = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\nbody";
        let (block, at) = response(h1).unwrap();
        assert_eq!(&h1[at..], b"body");
        let list = hpack::Decoder::new(4096).decode(&block, 65536).unwrap();
        assert_eq!(list, f(&[(":status", "200"), ("content-type", "text/event-stream")]));
        assert!(response(b"HTTP/1.1 200 OK\r\n").is_none());
    }
}
