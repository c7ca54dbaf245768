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

/// A request from a stream's header list and body (§8.3.1). A malformed
/// list is an error that says why (the stream is reset with PROTOCOL_ERROR).
pub fn request(fields: Vec<Field>, body: Vec<u8>) -> Result<Request, String> {
    let (mut method, mut path, mut scheme, mut authority) = (None, None, None, None);
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in fields {
        let name = String::from_utf8(name).map_err(|_| "a header name that is not UTF-8".to_string())?;
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("header name {name:?} is not lowercase"));
        }
        if let Some(pseudo) = name.strip_prefix(':') {
            if !headers.is_empty() {
                return Err(format!("pseudo-header {name} after a regular header"));
            }
            let value = String::from_utf8(value).map_err(|_| format!("{name} is not UTF-8"))?;
            let slot = match pseudo {
                "method" => &mut method,
                "path" => &mut path,
                "scheme" => &mut scheme,
                "authority" => &mut authority,
                _ => return Err(format!("unknown pseudo-header {name}")),
            };
            if slot.replace(value).is_some() {
                return Err(format!("{name} twice"));
            }
            continue;
        }
        if CONNECTION_FIELDS.contains(&name.as_str()) || (name == "te" && value != b"trailers") {
            return Err(format!("connection-specific header {name}"));
        }
        headers.push((name, value));
    }
    let method = method.ok_or("no :method")?;
    if method == "CONNECT" {
        return Err("CONNECT (and WebSocket over HTTP/2) is not served: use HTTP/1.1".into());
    }
    let target = path.filter(|p| !p.is_empty()).ok_or("no :path")?;
    scheme.ok_or("no :scheme")?;
    if let Some(authority) = authority {
        if !headers.iter().any(|(n, _)| n == "host") {
            headers.push(("host".into(), authority.into_bytes()));
        }
    }
    let (raw_path, query) = target.split_once('?').unwrap_or((&target, ""));
    if !raw_path.starts_with('/') {
        return Err(format!(":path {target:?} does not start with '/'"));
    }
    let path = crate::http::query::percent_decode(raw_path, false).map_err(|e| e.reason().to_string())?;
    crate::http::query::validate(query).map_err(|e| e.reason().to_string())?;
    Ok(Request {
        method: Method::from_token(&method),
        path,
        query: query.to_string(),
        version: Version::Http11,
        headers,
        body,
        keep_alive: true,
    })
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
        let bad: [(&[(&str, &str)], &str); 8] = [
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
            (
                &[(":method", "CONNECT"), (":authority", "h"), (":protocol", "websocket")],
                "pseudo-header :protocol",
            ),
        ];
        for (fields, words) in bad {
            let err = request(f(fields), vec![]).unwrap_err();
            assert!(err.contains(words), "{fields:?}: {err}");
        }
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
