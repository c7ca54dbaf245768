//! The opening handshake (RFC 6455 §4.2): validating a client's upgrade
//! request and rendering the `101 Switching Protocols` head.
//!
//! SHA-1 and base64 come from the RustCrypto `sha1` crate and the `base64`
//! crate: both are widely used, well-kept crates, and hand-rolling either
//! would only add code to audit. (SHA-1 is not used for security here; the
//! RFC merely uses it to prove the server read the client's key.)

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The fixed GUID that RFC 6455 §1.3 appends to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this server speaks (RFC 6455 §4.1).
const VERSION: &str = "13";

/// Length of a valid `Sec-WebSocket-Key` once base64-decoded (§4.1).
const KEY_LEN: usize = 16;

/// `Sec-WebSocket-Accept` for a client key: `base64(sha1(key + GUID))`.
///
/// The key is used exactly as given (callers pass the trimmed header value);
/// validating it is [`check_upgrade`]'s job.
pub fn accept_key(client_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(client_key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Why an upgrade request was refused.
///
/// Each variant maps to one status ([`UpgradeError::status`]): 426 for an
/// unsupported version, whose answer must carry [`UpgradeError::headers`]
/// so the client can retry, and 400 for everything else. Reasons are one
/// line and never echo client input, so they are safe to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeError {
    /// The method is not GET (§4.1 requires GET).
    NotGet,
    /// The request is not HTTP/1.1 (§4.1 requires 1.1 or higher; we speak 1.1).
    NotHttp11,
    /// No `Upgrade` header.
    MissingUpgrade,
    /// `Upgrade` is present but has no `websocket` token.
    UpgradeNotWebSocket,
    /// No `Connection` header.
    MissingConnection,
    /// `Connection` is present but has no `upgrade` token.
    ConnectionNotUpgrade,
    /// No `Sec-WebSocket-Version` header.
    MissingVersion,
    /// `Sec-WebSocket-Version` is not 13.
    UnsupportedVersion,
    /// No `Sec-WebSocket-Key` header.
    MissingKey,
    /// `Sec-WebSocket-Key` is not base64 of exactly 16 bytes.
    InvalidKey,
    /// An HTTP/2 extended CONNECT whose `:protocol` is not `websocket`.
    UnknownProtocol,
}

impl UpgradeError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            UpgradeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// A one-line, client-safe reason.
    pub fn reason(&self) -> String {
        let reason = match self {
            UpgradeError::NotGet => "WebSocket upgrade requires GET",
            UpgradeError::NotHttp11 => "WebSocket upgrade requires HTTP/1.1",
            UpgradeError::MissingUpgrade => "WebSocket upgrade without an Upgrade header",
            UpgradeError::UpgradeNotWebSocket => "Upgrade header does not name websocket",
            UpgradeError::MissingConnection => "WebSocket upgrade without a Connection header",
            UpgradeError::ConnectionNotUpgrade => "Connection header does not contain upgrade",
            UpgradeError::MissingVersion => "WebSocket upgrade without Sec-WebSocket-Version",
            UpgradeError::UnsupportedVersion => "unsupported Sec-WebSocket-Version; only 13 is supported",
            UpgradeError::MissingKey => "WebSocket upgrade without Sec-WebSocket-Key",
            UpgradeError::InvalidKey => "Sec-WebSocket-Key is not base64 of 16 bytes",
            UpgradeError::UnknownProtocol => "extended CONNECT for a :protocol other than websocket",
        };
        reason.to_string()
    }

    /// Header fields the refusal must carry: for 426 the version we do
    /// speak (§4.2.2 says the server MUST say which versions it supports).
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            UpgradeError::UnsupportedVersion => &[("Sec-WebSocket-Version", VERSION)],
            _ => &[],
        }
    }
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for UpgradeError {}

/// Validates an upgrade request and returns the `Sec-WebSocket-Accept` value.
///
/// `is_get` and `http11` describe the request line; `header` looks up a
/// header by lowercase name and returns its first value. Requirements, checked
/// in this order so the first failure is reported: GET, HTTP/1.1, `Upgrade`
/// with the token `websocket`, `Connection` with the token `upgrade` (tokens
/// case-insensitive, in comma-separated lists), `Sec-WebSocket-Version: 13`,
/// and a `Sec-WebSocket-Key` that base64-decodes to exactly 16 bytes.
/// Header values are trimmed of surrounding whitespace first.
pub fn check_upgrade(
    is_get: bool,
    http11: bool,
    header: &dyn Fn(&str) -> Option<String>,
) -> Result<String, UpgradeError> {
    if !is_get {
        return Err(UpgradeError::NotGet);
    }
    if !http11 {
        return Err(UpgradeError::NotHttp11);
    }
    let upgrade = header("upgrade").ok_or(UpgradeError::MissingUpgrade)?;
    if !has_token(&upgrade, "websocket") {
        return Err(UpgradeError::UpgradeNotWebSocket);
    }
    let connection = header("connection").ok_or(UpgradeError::MissingConnection)?;
    if !has_token(&connection, "upgrade") {
        return Err(UpgradeError::ConnectionNotUpgrade);
    }
    let version = header("sec-websocket-version").ok_or(UpgradeError::MissingVersion)?;
    if version.trim() != VERSION {
        return Err(UpgradeError::UnsupportedVersion);
    }
    let key = header("sec-websocket-key").ok_or(UpgradeError::MissingKey)?;
    let key = key.trim();
    if !is_valid_key(key) {
        return Err(UpgradeError::InvalidKey);
    }
    Ok(accept_key(key))
}

/// How a WebSocket was asked for, and so how it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// An HTTP/1.1 upgrade (RFC 6455 §4): `101` with this `Sec-WebSocket-Accept`.
    Upgrade { accept: String },
    /// An HTTP/2 extended CONNECT (RFC 8441 §5): `200` on the stream, no key
    /// (the stream, not a handshake, proves the server took the request).
    Connect,
}

/// Validates an HTTP/2 extended CONNECT (RFC 8441 §4, §5) whose pseudo-headers
/// the HTTP/2 layer has checked: `:protocol` is `websocket` and
/// `Sec-WebSocket-Version` is 13. There is no `Sec-WebSocket-Key` to answer.
pub fn check_connect(protocol: &str, header: &dyn Fn(&str) -> Option<String>) -> Result<(), UpgradeError> {
    if protocol != "websocket" {
        return Err(UpgradeError::UnknownProtocol);
    }
    let version = header("sec-websocket-version").ok_or(UpgradeError::MissingVersion)?;
    if version.trim() != VERSION {
        return Err(UpgradeError::UnsupportedVersion);
    }
    Ok(())
}

/// True if the comma-separated `list` contains `token`, ignoring ASCII case
/// and the optional whitespace around elements.
fn has_token(list: &str, token: &str) -> bool {
    list.split(',').any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// True if `key` is canonical padded base64 of exactly 16 bytes (§4.1: "a
/// randomly selected 16-byte value that has been base64-encoded").
fn is_valid_key(key: &str) -> bool {
    STANDARD.decode(key).is_ok_and(|bytes| bytes.len() == KEY_LEN)
}

/// The full `101 Switching Protocols` head for an accepted upgrade.
///
/// `accept` must come from [`check_upgrade`] or [`accept_key`], which only
/// produce base64 characters, so it cannot inject header lines.
pub fn response_head(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// The RFC 6455 §1.3 example key.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// A valid browser-like request's headers, as (lowercase name, value).
    fn valid_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "server.example.com"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", KEY),
            ("sec-websocket-version", "13"),
        ]
    }

    #[test]
    fn extended_connect() {
        let v13 = |name: &str| (name == "sec-websocket-version").then(|| "13".to_string());
        let v8 = |name: &str| (name == "sec-websocket-version").then(|| "8".to_string());
        assert_eq!(check_connect("websocket", &v13), Ok(()));
        assert_eq!(check_connect("websocket", &|_| None), Err(UpgradeError::MissingVersion));
        assert_eq!(check_connect("websocket", &v8), Err(UpgradeError::UnsupportedVersion));
        assert_eq!(check_connect("webtransport", &v13), Err(UpgradeError::UnknownProtocol));
    }

    /// Runs `check_upgrade` on a GET/1.1 request with `headers`.
    fn check(headers: &[(&str, &str)]) -> Result<String, UpgradeError> {
        let lookup =
            |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, value)| value.to_string());
        check_upgrade(true, true, &lookup)
    }

    /// `valid_headers` with `name` replaced by `value`, or removed for `None`.
    fn with(name: &'static str, value: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
        let mut headers: Vec<_> = valid_headers().into_iter().filter(|(n, _)| *n != name).collect();
        headers.extend(value.map(|value| (name, value)));
        headers
    }

    #[test]
    fn rfc_example_accept_key() {
        assert_eq!(accept_key(KEY), ACCEPT);
    }

    #[test]
    fn valid_requests_are_accepted() {
        let cases: &[(&'static str, &'static str)] = &[
            ("upgrade", "websocket"),
            ("upgrade", "WebSocket"),
            ("upgrade", "h2c, websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("connection", "UPGRADE"),
            ("connection", " upgrade ,close"),
            ("sec-websocket-version", " 13 "),
            ("sec-websocket-key", " dGhlIHNhbXBsZSBub25jZQ== "),
        ];
        for &(name, value) in cases {
            assert_eq!(check(&with(name, Some(value))), Ok(ACCEPT.to_string()), "{name}: {value}");
        }
        assert_eq!(check(&valid_headers()), Ok(ACCEPT.to_string()));
    }

    #[test]
    fn request_line_requirements() {
        let lookup = |_: &str| None;
        assert_eq!(check_upgrade(false, true, &lookup), Err(UpgradeError::NotGet));
        assert_eq!(check_upgrade(true, false, &lookup), Err(UpgradeError::NotHttp11));
    }

    /// Header changes to a valid request, each with the refusal it causes.
    fn refusals() -> Vec<(&'static str, Option<&'static str>, UpgradeError)> {
        use UpgradeError::*;
        vec![
            ("upgrade", None, MissingUpgrade),
            ("upgrade", Some(""), UpgradeNotWebSocket),
            ("upgrade", Some("h2c"), UpgradeNotWebSocket),
            ("upgrade", Some("websockets"), UpgradeNotWebSocket),
            ("connection", None, MissingConnection),
            ("connection", Some("keep-alive"), ConnectionNotUpgrade),
            ("connection", Some("upgraded"), ConnectionNotUpgrade),
            ("sec-websocket-version", None, MissingVersion),
            ("sec-websocket-version", Some("8"), UnsupportedVersion),
            ("sec-websocket-version", Some("13, 8"), UnsupportedVersion),
            ("sec-websocket-version", Some(""), UnsupportedVersion),
            ("sec-websocket-key", None, MissingKey),
            ("sec-websocket-key", Some(""), InvalidKey),
            ("sec-websocket-key", Some("not base64!"), InvalidKey),
            // 15 and 17 bytes.
            ("sec-websocket-key", Some("AAAAAAAAAAAAAAAAAAAA"), InvalidKey),
            ("sec-websocket-key", Some("AAAAAAAAAAAAAAAAAAAAAAA="), InvalidKey),
            // 16 bytes but unpadded.
            ("sec-websocket-key", Some("dGhlIHNhbXBsZSBub25jZQ"), InvalidKey),
        ]
    }

    #[test]
    fn missing_or_invalid_headers_are_refused() {
        for (name, value, expected) in refusals() {
            assert_eq!(check(&with(name, value)), Err(expected), "{name}: {value:?}");
        }
    }

    #[test]
    fn error_statuses_reasons_and_hints() {
        // Every error, as the checks produce it: the request-line ones and
        // each header refusal (the count catches a variant left untested).
        let mut all = vec![UpgradeError::NotGet, UpgradeError::NotHttp11];
        for (_, _, error) in refusals() {
            if !all.contains(&error) {
                all.push(error);
            }
        }
        assert_eq!(all.len(), 10, "{all:?}");
        for error in all {
            let (status, hints) = if error == UpgradeError::UnsupportedVersion {
                (426, &[("Sec-WebSocket-Version", "13")][..])
            } else {
                (400, &[][..])
            };
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.headers(), hints, "{error:?}");
            let reason = error.reason();
            assert!(!reason.is_empty() && !reason.contains(['\r', '\n']), "{error:?}");
            assert_eq!(error.to_string(), format!("{status} {reason}"));
        }
    }

    #[test]
    fn response_head_is_exact() {
        let expected = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(response_head(ACCEPT), expected.as_bytes());
    }
}
