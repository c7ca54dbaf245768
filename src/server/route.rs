//! Routing: from a parsed request to what the worker should do, or a refusal
//! with its status and one-line reason. Pure: no sockets, no channels state.

use std::sync::Arc;
use std::time::Duration;

use crate::bayeux::message::{parse_body, Incoming, Unreadable};
use crate::fanout::{NewMessage, Start};
use crate::http::{Method, Request};
use crate::hub::{parse_channel_list, validate_channel, MessageId};
use crate::transport::{longpoll, Transport};

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Subscribers, facing the internet.
    Public,
    /// Publishers and operators, trusted side.
    Ingest,
    /// Redis-protocol publishers, trusted side.
    Resp,
}

/// The limits routing enforces.
#[derive(Debug, Clone)]
pub struct RouteLimits {
    pub max_channels: usize,
    pub history_size: usize,
    pub longpoll_default: Duration,
    pub longpoll_max: Duration,
    /// Whether `POST /demo/pub/{channel}` publishes (see `demo_publish`).
    pub demo_publish: bool,
    /// One payload's limit (a batch line's too).
    pub max_message_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeRequest {
    pub channels: Vec<Arc<str>>,
    pub transport: Transport,
    pub start: Start,
    /// Long-poll hold time.
    pub timeout: Duration,
    /// JSONP or iframe callback name.
    pub callback: Option<String>,
    /// WebSocket: how it was asked for (HTTP/1.1 upgrade or HTTP/2
    /// extended CONNECT), which says how it is answered.
    pub ws: Option<crate::ws::Opening>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Subscribe(SubscribeRequest),
    /// One message (`POST /pub/{channel}`) or an NDJSON batch (`POST /pub`).
    Publish {
        messages: Vec<NewMessage>,
        batch: bool,
    },
    /// `GET /pub/{channel}`.
    ChannelInfo(Arc<str>),
    /// `DELETE /pub/{channel}`.
    DeleteChannel(Arc<str>),
    /// `GET /stats`.
    Stats,
    /// `GET /metrics`.
    Metrics,
    /// `GET /dashboard`: the live dashboard page.
    Dashboard,
    /// `GET /dashboard/stream`: the stats stream, an SSE subscription to
    /// the internal stats channel (no token: the ingest key admits it).
    StatsStream(SubscribeRequest),
    Health,
    /// A CORS preflight (`OPTIONS /sub/...`).
    Preflight,
    /// The demo page.
    Demo,
    /// `204 No Content` (a browser's `/favicon.ico`, so the demo page logs no error).
    NoContent,
    /// Bayeux messages by long-polling (POST) or callback-polling (GET, JSONP).
    Bayeux {
        messages: Vec<Result<Incoming, Unreadable>>,
        jsonp: Option<String>,
    },
    /// A WebSocket carrying Bayeux.
    BayeuxSocket {
        opening: crate::ws::Opening,
    },
    /// A Pushlet request: its fields and the path (for refresh URLs).
    Pushlet {
        fields: Vec<(String, String)>,
        path: String,
    },
}

/// A request refused before it reaches the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    /// Headers the refusal must carry: `Allow` on a 405,
    /// `Sec-WebSocket-Version` on a 426.
    pub header: Option<(&'static str, &'static str)>,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into(), header: None }
    }

    fn method(allow: &'static str) -> Refusal {
        Refusal {
            status: 405,
            message: format!("method not allowed here; use {allow}"),
            header: Some(("Allow", allow)),
        }
    }
}

/// The longest event type a publisher may set.
const MAX_EVENT_LEN: usize = 64;

pub fn route(req: &Request, port: Port, limits: &RouteLimits) -> Result<Route, Refusal> {
    match port {
        Port::Public => route_public(req, limits),
        Port::Ingest => route_ingest(req, limits),
        Port::Resp => Err(Refusal::new(400, "this port speaks the Redis protocol, not HTTP")),
    }
}

fn route_public(req: &Request, limits: &RouteLimits) -> Result<Route, Refusal> {
    if req.path == "/bayeux" || req.path.starts_with("/bayeux/") {
        return bayeux(req);
    }
    if req.path == "/pushlet" || req.path == "/pushlet/pushlet.srv" {
        return pushlet(req);
    }
    if req.path == "/favicon.ico" {
        return Ok(Route::NoContent);
    }
    if req.path == "/" || req.path == "/index.html" {
        return match req.method {
            Method::Get => Ok(Route::Demo),
            _ => Err(Refusal::method("GET")),
        };
    }
    if let Some(channel) = req.path.strip_prefix("/demo/pub/") {
        if !limits.demo_publish {
            return Err(Refusal::new(404, "demo publishing is off here; publish on the ingest port"));
        }
        return publish(req, channel);
    }
    let Some(list) = req.path.strip_prefix("/sub/") else {
        return Err(Refusal::new(
            404,
            format!("no such endpoint: {}; subscribe with GET /sub/{{channels}}", req.path),
        ));
    };
    if req.method == Method::Options {
        return Ok(Route::Preflight);
    }
    if req.method != Method::Get && req.protocol.is_none() {
        return Err(Refusal::method("GET, OPTIONS"));
    }
    let channels =
        parse_channel_list(list, limits.max_channels).map_err(|e| Refusal::new(400, e.to_string()))?;
    let transport = pick_transport(req)?;
    if req.protocol.is_some() && transport != Transport::Ws {
        return Err(Refusal::new(400, "an extended CONNECT opens a WebSocket: use transport=ws"));
    }
    let callback = match transport {
        Transport::Jsonp => Some(callback(req, "callback")?),
        Transport::Iframe => Some(callback(req, crate::transport::iframe::DEFAULT_CALLBACK)?),
        _ => None,
    };
    let ws = match transport {
        Transport::Ws => Some(websocket(req)?),
        _ => None,
    };
    Ok(Route::Subscribe(SubscribeRequest {
        ws,
        channels,
        transport,
        start: start_point(req, limits)?,
        timeout: poll_timeout(req, limits)?,
        callback,
    }))
}

/// `?transport=` wins; then the headers; then `?callback=` means JSONP.
fn pick_transport(req: &Request) -> Result<Transport, Refusal> {
    let accept = req.header_str("accept").unwrap_or("");
    let mixed = accept.contains("multipart/mixed");
    if let Some(name) = req.query_param("transport").filter(|n| !n.is_empty()) {
        return match Transport::from_name(&name) {
            Some(Transport::Multipart) if mixed => Ok(Transport::MultipartMixed),
            Some(t) => Ok(t),
            None => Err(Refusal::new(
                400,
                format!(
                    "unknown transport '{}'; use longpoll, jsonp, sse, stream, iframe, multipart or ws",
                    short(&name)
                ),
            )),
        };
    }
    if asks_websocket(req) {
        return Ok(Transport::Ws);
    }
    if accept.contains("text/event-stream") {
        return Ok(Transport::Sse);
    }
    if mixed {
        return Ok(Transport::MultipartMixed);
    }
    if req.query_param("callback").is_some() {
        return Ok(Transport::Jsonp);
    }
    Ok(Transport::LongPoll)
}

/// `/bayeux`: POST (long-polling), GET with `message=` (callback-polling,
/// `jsonp=` naming the callback), a WebSocket upgrade, or a CORS preflight.
fn bayeux(req: &Request) -> Result<Route, Refusal> {
    if req.method == Method::Options {
        return Ok(Route::Preflight);
    }
    if asks_websocket(req) {
        return Ok(Route::BayeuxSocket { opening: websocket(req)? });
    }
    let bad_body = |e: crate::bayeux::message::BodyError| Refusal::new(400, e.0);
    match req.method {
        Method::Post => Ok(Route::Bayeux { messages: parse_body(&req.body).map_err(bad_body)?, jsonp: None }),
        Method::Get => {
            let Some(message) = req.query_param("message") else {
                let present = crate::http::query::params(&req.query).any(|(k, _)| k == "message")
                    || req.query.contains("message=");
                let why = if present {
                    "message= is not valid percent-encoded UTF-8"
                } else {
                    "callback-polling needs message=[…] (URL-encoded Bayeux JSON)"
                };
                return Err(Refusal::new(400, why));
            };
            let jsonp = callback(req, "jsonpcallback")?;
            Ok(Route::Bayeux {
                messages: parse_body(message.as_bytes()).map_err(bad_body)?,
                jsonp: Some(jsonp),
            })
        }
        _ => Err(Refusal::method("POST, GET, OPTIONS")),
    }
}

/// `/pushlet/pushlet.srv` (or `/pushlet`): GET, or POST with a form body or
/// the original protocol's `<event …/>` body. `p_event` is required.
fn pushlet(req: &Request) -> Result<Route, Refusal> {
    if !matches!(req.method, Method::Get | Method::Post) {
        return Err(Refusal::method("GET, POST"));
    }
    let fields = crate::pushlet::request_fields(&req.query, &req.body).map_err(|e| Refusal::new(400, e))?;
    if !fields.iter().any(|(n, v)| n == "p_event" && !v.is_empty()) {
        return Err(Refusal::new(400, "p_event is required (join, listen, subscribe, publish, …)"));
    }
    Ok(Route::Pushlet { fields, path: req.path.clone() })
}

/// An HTTP/1.1 upgrade to websocket, or an HTTP/2 extended CONNECT.
fn asks_websocket(req: &Request) -> bool {
    req.protocol.is_some() || req.header_has_token("upgrade", "websocket")
}

/// Checks the WebSocket opening: an HTTP/2 extended CONNECT (RFC 8441), or
/// an HTTP/1.1 upgrade and its accept key (RFC 6455).
fn websocket(req: &Request) -> Result<crate::ws::Opening, Refusal> {
    let header = |name: &str| req.header_str(name).map(String::from);
    let opening = match &req.protocol {
        Some(protocol) => crate::ws::check_connect(protocol, &header).map(|()| crate::ws::Opening::Connect),
        None => crate::ws::check_upgrade(
            req.method == Method::Get,
            req.version == crate::http::Version::Http11,
            &header,
        )
        .map(|accept| crate::ws::Opening::Upgrade { accept }),
    };
    opening.map_err(|e| Refusal {
        status: e.status(),
        message: format!("WebSocket handshake: {}", e.reason()),
        header: e.headers().first().copied(),
    })
}

/// `?callback=`, or `default`; a JavaScript identifier of at most 64 characters.
fn callback(req: &Request, default: &str) -> Result<String, Refusal> {
    let param = if default == "jsonpcallback" { "jsonp" } else { "callback" };
    let name = req.query_param(param).unwrap_or_else(|| default.into());
    if !longpoll::valid_callback(&name) {
        return Err(Refusal::new(400, "callback must be a JavaScript identifier of at most 64 characters"));
    }
    Ok(name)
}

/// `last_id` (query) or `Last-Event-ID` (header) resume; else `backlog=N`; else now.
/// An empty value counts as absent. With both, the later id wins: an
/// EventSource opened with `?last_id=` keeps that URL on every automatic
/// reconnect while its header moves on, and replaying from the URL's id would
/// deliver duplicates.
fn start_point(req: &Request, limits: &RouteLimits) -> Result<Start, Refusal> {
    let parse = |text: &str| -> Result<MessageId, Refusal> {
        text.parse().map_err(|e: crate::hub::id::BadId| Refusal::new(400, e.to_string()))
    };
    let query = req.query_param("last_id").filter(|s| !s.is_empty());
    let header = req.header_str("last-event-id").filter(|s| !s.is_empty());
    let query = query.as_deref().map(parse).transpose()?;
    let header = header.map(parse).transpose()?;
    if let Some(id) = query.max(header) {
        return Ok(Start::After(id));
    }
    match req.query_param("backlog").filter(|s| !s.is_empty()) {
        None => Ok(Start::Now),
        Some(n) => match n.parse::<usize>() {
            Ok(n) => Ok(Start::Backlog(n.min(limits.history_size))),
            Err(_) => Err(Refusal::new(400, "backlog must be a whole number of messages")),
        },
    }
}

fn poll_timeout(req: &Request, limits: &RouteLimits) -> Result<Duration, Refusal> {
    match req.query_param("timeout").filter(|s| !s.is_empty()) {
        None => Ok(limits.longpoll_default),
        Some(t) => match t.parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs).min(limits.longpoll_max)),
            Err(_) => Err(Refusal::new(400, "timeout must be a whole number of seconds")),
        },
    }
}

fn route_ingest(req: &Request, limits: &RouteLimits) -> Result<Route, Refusal> {
    let report = match req.path.as_str() {
        "/stats" => Some(Route::Stats),
        "/metrics" => Some(Route::Metrics),
        "/dashboard" | "/dashboard/" => Some(Route::Dashboard),
        "/dashboard/stream" => Some(stats_stream(req, limits)?),
        _ => None,
    };
    if let Some(report) = report {
        return match req.method {
            Method::Get => Ok(report),
            _ => Err(Refusal::method("GET")),
        };
    }
    if req.path == "/pub" {
        return match req.method {
            Method::Post => batch(req, limits),
            _ => Err(Refusal::method("POST")),
        };
    }
    if req.path == "/healthz" {
        return match req.method {
            Method::Get | Method::Head => Ok(Route::Health),
            _ => Err(Refusal::method("GET")),
        };
    }
    let Some(channel) = req.path.strip_prefix("/pub/") else {
        return Err(Refusal::new(
            404,
            format!("no such endpoint: {}; publish with POST /pub/{{channel}}", req.path),
        ));
    };
    match req.method {
        Method::Post => publish(req, channel),
        Method::Get => {
            validate_channel(channel).map_err(|e| Refusal::new(400, e.to_string()))?;
            Ok(Route::ChannelInfo(Arc::from(channel)))
        }
        Method::Delete => {
            validate_channel(channel).map_err(|e| Refusal::new(400, e.to_string()))?;
            Ok(Route::DeleteChannel(Arc::from(channel)))
        }
        _ => Err(Refusal::method("POST, GET, DELETE")),
    }
}

/// How many past samples a new stats stream starts with: five minutes, the
/// dashboard's window (history keeps `history_size` of them).
const STATS_BACKLOG: usize = 300;

/// `GET /dashboard/stream`: SSE on the internal stats channel. A resume
/// (`Last-Event-ID`, as EventSource sends on reconnect) continues after its
/// id; a new stream starts with the retained samples (`?backlog=N` or five
/// minutes' worth), so the charts fill at once.
fn stats_stream(req: &Request, limits: &RouteLimits) -> Result<Route, Refusal> {
    let start = match start_point(req, limits)? {
        Start::Now => Start::Backlog(STATS_BACKLOG.min(limits.history_size)),
        other => other,
    };
    Ok(Route::StatsStream(SubscribeRequest {
        channels: vec![Arc::from(crate::dashboard::STATS_CHANNEL)],
        transport: Transport::Sse,
        start,
        timeout: limits.longpoll_default,
        callback: None,
        ws: None,
    }))
}

/// The most lines one NDJSON batch may hold: with 1 MiB bodies, small
/// messages fit; the bound keeps one request from filling a whole fan-out batch many times over.
const MAX_BATCH_LINES: usize = 10_000;

/// `POST /pub` with NDJSON lines `{"channel":"…","data":"…","event":"…"}`.
/// Every line is checked before anything is queued: all or nothing.
fn batch(req: &Request, limits: &RouteLimits) -> Result<Route, Refusal> {
    let body = std::str::from_utf8(&req.body).map_err(|e| {
        Refusal::new(400, format!("body is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()))
    })?;
    let mut messages = Vec::new();
    for (i, line) in body.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if messages.len() == MAX_BATCH_LINES {
            return Err(Refusal::new(413, format!("more than {MAX_BATCH_LINES} messages in one batch")));
        }
        messages.push(
            batch_line(line, limits)
                .map_err(|e| Refusal::new(e.status, format!("line {}: {}", i + 1, e.message)))?,
        );
    }
    if messages.is_empty() {
        return Err(Refusal::new(400, "empty batch: send one JSON object per line"));
    }
    Ok(Route::Publish { messages, batch: true })
}

fn batch_line(line: &str, limits: &RouteLimits) -> Result<NewMessage, Refusal> {
    const SHAPE: &str = r#"expected {"channel":"…","data":"…"} with an optional "event""#;
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| Refusal::new(400, format!("invalid JSON ({e}); {SHAPE}")))?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str());
    let (Some(channel), Some(data)) = (field("channel"), field("data")) else {
        return Err(Refusal::new(400, SHAPE));
    };
    validate_channel(channel).map_err(|e| Refusal::new(400, e.to_string()))?;
    if data.len() > limits.max_message_bytes {
        return Err(Refusal::new(413, format!("data over {} bytes", limits.max_message_bytes)));
    }
    let event = match value.get("event") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(e)) if e.is_empty() => None,
        Some(serde_json::Value::String(e)) => Some(check_event(e)?),
        Some(_) => return Err(Refusal::new(400, "event must be a string")),
    };
    Ok(NewMessage { channel: Arc::from(channel), event, data: data.into(), ext: None })
}

/// `POST …/{channel}` with the payload as body.
fn publish(req: &Request, channel: &str) -> Result<Route, Refusal> {
    if req.method != Method::Post {
        return Err(Refusal::method("POST"));
    }
    validate_channel(channel).map_err(|e| Refusal::new(400, e.to_string()))?;
    let data = std::str::from_utf8(&req.body).map_err(|e| {
        Refusal::new(400, format!("payload is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()))
    })?;
    let message =
        NewMessage { channel: Arc::from(channel), event: event_type(req)?, data: data.into(), ext: None };
    Ok(Route::Publish { messages: vec![message], batch: false })
}

/// `?event=TYPE`: 1 to 64 bytes of `A-Z a-z 0-9 _ - . :` (it becomes an SSE
/// `event:` line, so no line breaks can get in).
fn event_type(req: &Request) -> Result<Option<Box<str>>, Refusal> {
    let Some(event) = req.query_param("event").filter(|e| !e.is_empty()) else { return Ok(None) };
    check_event(&event).map(Some)
}

fn check_event(event: &str) -> Result<Box<str>, Refusal> {
    let ok = event.len() <= MAX_EVENT_LEN
        && event.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if !ok {
        return Err(Refusal::new(400, "event must be 1 to 64 bytes of A-Z a-z 0-9 _ - . :"));
    }
    Ok(event.into())
}

/// At most 40 characters of user input, for echoing in an error.
fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Parse};

    fn req(raw: impl AsRef<[u8]>) -> Request {
        let raw = raw.as_ref();
        match parse_request(raw, 8192, &|_, _| 1 << 20) {
            Ok(Parse::Complete { request, .. }) => request,
            other => panic!("test request did not parse: {raw:?}: {:?}", other.err()),
        }
    }

    /// An HTTP/2 extended CONNECT (as `h2::message::request` makes it).
    fn connect(path: &str, protocol: &str, version: Option<&str>) -> Request {
        let mut r = req(format!("GET {path} HTTP/1.1\r\n\r\n"));
        r.method = Method::Other("CONNECT".into());
        r.protocol = Some(protocol.into());
        r.headers.extend(version.map(|v| ("sec-websocket-version".to_string(), v.as_bytes().to_vec())));
        r
    }

    #[test]
    fn routes_extended_connects() {
        let at = |r: &Request| route(r, Port::Public, &limits());
        let Ok(Route::Subscribe(sub)) = at(&connect("/sub/a?transport=ws", "websocket", Some("13"))) else {
            panic!("not a subscribe")
        };
        assert_eq!((sub.transport, sub.ws), (Transport::Ws, Some(crate::ws::Opening::Connect)));
        let Ok(Route::Subscribe(sub)) = at(&connect("/sub/a", "websocket", Some("13"))) else { panic!() };
        assert_eq!(sub.transport, Transport::Ws, "an extended CONNECT picks ws");
        assert_eq!(
            at(&connect("/bayeux", "websocket", Some("13"))),
            Ok(Route::BayeuxSocket { opening: crate::ws::Opening::Connect })
        );
        let refused: [(Request, u16, &str); 5] = [
            (connect("/sub/a?transport=sse", "websocket", Some("13")), 400, "use transport=ws"),
            (connect("/sub/a", "chat", Some("13")), 400, "other than websocket"),
            (connect("/sub/a", "websocket", None), 400, "Sec-WebSocket-Version"),
            (connect("/sub/a", "websocket", Some("8")), 426, "only 13"),
            (connect("/", "websocket", Some("13")), 405, "use GET"),
        ];
        for (r, status, words) in refused {
            let got = at(&r).expect_err("refused");
            assert!(got.status == status && got.message.contains(words), "{} {}: {got:?}", r.path, r.query);
        }
    }

    fn limits() -> RouteLimits {
        RouteLimits {
            max_channels: 4,
            history_size: 100,
            longpoll_default: Duration::from_secs(30),
            longpoll_max: Duration::from_secs(120),
            demo_publish: false,
            max_message_bytes: 64,
        }
    }

    fn sub(raw: &str) -> SubscribeRequest {
        match route(&req(raw), Port::Public, &limits()) {
            Ok(Route::Subscribe(s)) => s,
            other => panic!("{raw:?} routed to {other:?}"),
        }
    }

    fn refused(raw: &str, port: Port) -> (u16, String) {
        match route(&req(raw), port, &limits()) {
            Err(r) => (r.status, r.message),
            Ok(other) => panic!("{raw:?} was accepted as {other:?}"),
        }
    }

    #[test]
    fn picks_transports() {
        let cases: &[(&str, Transport)] = &[
            ("GET /sub/a HTTP/1.1\r\n\r\n", Transport::LongPoll),
            ("GET /sub/a?transport=sse HTTP/1.1\r\n\r\n", Transport::Sse),
            ("GET /sub/a?transport=stream HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n", Transport::Stream),
            ("GET /sub/a HTTP/1.1\r\nAccept: text/html, text/event-stream\r\n\r\n", Transport::Sse),
            ("GET /sub/a?callback=cb HTTP/1.1\r\n\r\n", Transport::Jsonp),
            ("GET /sub/a?transport=jsonp HTTP/1.1\r\n\r\n", Transport::Jsonp),
        ];
        for (raw, want) in cases {
            assert_eq!(sub(raw).transport, *want, "{raw:?}");
        }
        assert_eq!(sub("GET /sub/a?transport=jsonp HTTP/1.1\r\n\r\n").callback.as_deref(), Some("callback"));
    }

    #[test]
    fn reads_start_points_and_timeouts() {
        let id = MessageId::new(17, 3);
        let cases: &[(&str, Start)] = &[
            ("GET /sub/a HTTP/1.1\r\n\r\n", Start::Now),
            ("GET /sub/a?last_id=17-3 HTTP/1.1\r\n\r\n", Start::After(id)),
            ("GET /sub/a?last_id= HTTP/1.1\r\n\r\n", Start::Now),
            ("GET /sub/a HTTP/1.1\r\nLast-Event-ID: 17-3\r\n\r\n", Start::After(id)),
            ("GET /sub/a?last_id=17-3 HTTP/1.1\r\nLast-Event-ID: 1-1\r\n\r\n", Start::After(id)),
            ("GET /sub/a?last_id=1-1 HTTP/1.1\r\nLast-Event-ID: 17-3\r\n\r\n", Start::After(id)),
            ("GET /sub/a?backlog=5 HTTP/1.1\r\n\r\n", Start::Backlog(5)),
            ("GET /sub/a?backlog=5000 HTTP/1.1\r\n\r\n", Start::Backlog(100)),
        ];
        for (raw, want) in cases {
            assert_eq!(sub(raw).start, *want, "{raw:?}");
        }
        assert_eq!(sub("GET /sub/a?timeout=5 HTTP/1.1\r\n\r\n").timeout, Duration::from_secs(5));
        assert_eq!(sub("GET /sub/a?timeout=999 HTTP/1.1\r\n\r\n").timeout, Duration::from_secs(120));
        assert_eq!(sub("GET /sub/a HTTP/1.1\r\n\r\n").timeout, Duration::from_secs(30));
        let channels = sub("GET /sub/a/b,c:d,a/b HTTP/1.1\r\n\r\n").channels;
        assert_eq!(channels.iter().map(|c| &**c).collect::<Vec<_>>(), ["a/b", "c:d"]);
    }

    #[test]
    fn refuses_with_reasons() {
        let cases: &[(&str, Port, u16, &str)] = &[
            ("GET /nope HTTP/1.1\r\n\r\n", Port::Public, 404, "no such endpoint"),
            ("POST /sub/a HTTP/1.1\r\n\r\n", Port::Public, 405, "use GET"),
            ("GET /sub/a%20b HTTP/1.1\r\n\r\n", Port::Public, 400, "1 to 128 bytes"),
            ("GET /sub/a,b,c,d,e HTTP/1.1\r\n\r\n", Port::Public, 400, "limit is 4"),
            ("GET /sub/a?transport=pigeon HTTP/1.1\r\n\r\n", Port::Public, 400, "unknown transport"),
            ("GET /sub/a?last_id=abc HTTP/1.1\r\n\r\n", Port::Public, 400, "malformed message id"),
            ("GET /sub/a?backlog=x HTTP/1.1\r\n\r\n", Port::Public, 400, "backlog"),
            ("GET /sub/a?timeout=-1 HTTP/1.1\r\n\r\n", Port::Public, 400, "timeout"),
            ("GET /sub/a?callback=alert(1) HTTP/1.1\r\n\r\n", Port::Public, 400, "JavaScript identifier"),
            ("GET /sub/a HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", Port::Public, 400, "WebSocket handshake"),
            ("PUT /pub/a HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Port::Ingest, 405, "use POST, GET, DELETE"),
            ("GET /pub HTTP/1.1\r\n\r\n", Port::Ingest, 405, "use POST"),
            ("POST /pub HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Port::Ingest, 400, "empty batch"),
            (
                "POST /pub HTTP/1.1\r\nContent-Length: 5\r\n\r\n\n\n{}\n",
                Port::Ingest,
                400,
                "line 3: expected",
            ),
            (
                "POST /pub HTTP/1.1\r\nContent-Length: 26\r\n\r\n{\"channel\":\"/x\",\"data\":\"\"}",
                Port::Ingest,
                400,
                "line 1: channel name starts",
            ),
            (
                "POST /pub HTTP/1.1\r\nContent-Length: 4\r\n\r\nnope",
                Port::Ingest,
                400,
                "line 1: invalid JSON",
            ),
            ("POST /elsewhere HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Port::Ingest, 404, "no such endpoint"),
            ("POST /pub//a HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", Port::Ingest, 400, "starts with /"),
            ("POST /pub/a?event=a%0Ab HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", Port::Ingest, 400, "event"),
        ];
        for (raw, port, status, needle) in cases {
            let (got, message) = refused(raw, *port);
            assert_eq!(got, *status, "{raw:?}: {message}");
            assert!(message.contains(needle), "{raw:?}: {message:?} lacks {needle:?}");
        }
    }

    #[test]
    fn routes_the_dashboard() {
        let stream = |raw: &str| match route(&req(raw), Port::Ingest, &limits()) {
            Ok(Route::StatsStream(s)) => s,
            other => panic!("{raw:?} routed to {other:?}"),
        };
        let fresh = stream("GET /dashboard/stream HTTP/1.1\r\n\r\n");
        assert_eq!(fresh.transport, Transport::Sse);
        assert_eq!(
            fresh.channels.iter().map(|c| &**c).collect::<Vec<_>>(),
            [crate::dashboard::STATS_CHANNEL]
        );
        assert_eq!(fresh.start, Start::Backlog(100), "five minutes of samples, capped by history");
        let resumed = stream("GET /dashboard/stream HTTP/1.1\r\nLast-Event-ID: 17-3\r\n\r\n");
        assert_eq!(resumed.start, Start::After(MessageId::new(17, 3)));
        assert_eq!(stream("GET /dashboard/stream?backlog=0 HTTP/1.1\r\n\r\n").start, Start::Backlog(0));
        assert_eq!(
            route(&req("GET /dashboard HTTP/1.1\r\n\r\n"), Port::Ingest, &limits()),
            Ok(Route::Dashboard)
        );
        assert_eq!(refused("GET /dashboard HTTP/1.1\r\n\r\n", Port::Public).0, 404);
        assert_eq!(
            refused("POST /dashboard/stream HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Port::Ingest).0,
            405
        );
    }

    #[test]
    fn routes_publishes() {
        let r = route(
            &req("POST /pub/a/b?event=up HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
            Port::Ingest,
            &limits(),
        );
        let message =
            NewMessage { channel: Arc::from("a/b"), event: Some("up".into()), data: "hi".into(), ext: None };
        assert_eq!(r, Ok(Route::Publish { messages: vec![message], batch: false }));
        assert_eq!(route(&req("GET /healthz HTTP/1.1\r\n\r\n"), Port::Ingest, &limits()), Ok(Route::Health));
        let not_utf8 = req(b"POST /pub/a HTTP/1.1\r\nContent-Length: 2\r\n\r\n\xff\xfe");
        let refusal = route(&not_utf8, Port::Ingest, &limits()).unwrap_err();
        assert_eq!(refusal.status, 400);
        assert!(refusal.message.contains("UTF-8"), "{}", refusal.message);
    }
}
