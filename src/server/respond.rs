//! Response bytes the worker sends. Pure functions over the HTTP builder.

use crate::fanout::{ChannelInfo, PublishAck};
use crate::http::response::{json_error, BodyKind};
use crate::http::{Response, Version};
use crate::transport::Transport;

use super::route::Refusal;

pub fn refusal(r: &Refusal, version: Version, keep_alive: bool) -> Vec<u8> {
    let headers: Vec<(&str, &str)> = r.header.iter().copied().collect();
    json_error(r.status, &r.message, &headers, version, keep_alive)
}

/// 503 for a full publish queue: retry in a second.
pub fn busy(version: Version, keep_alive: bool) -> Vec<u8> {
    json_error(503, "publish queue is full; retry shortly", &[("Retry-After", "1")], version, keep_alive)
}

/// 503 when the Redis backplane cannot store or answer: nothing of the
/// request took effect; retry in a second.
pub fn unavailable(error: &str, version: Version, keep_alive: bool) -> Vec<u8> {
    let message = format!("backplane unavailable ({error}); nothing was published, retry shortly");
    json_error(503, &message, &[("Retry-After", "1")], version, keep_alive)
}

/// One publish: `{"id","channel","subscribers"}`. A batch: `{"ids":[…]}` in
/// line order, with each message's `subscribers` alongside.
pub fn published(acks: &[PublishAck], batch: bool, version: Version, keep_alive: bool) -> Vec<u8> {
    let body = match (batch, acks.first()) {
        (false, Some(ack)) => serde_json::json!({
            "id": ack.id.to_string(),
            "channel": &*ack.channel,
            "subscribers": ack.subscribers,
        }),
        _ => serde_json::json!({
            "ids": acks.iter().map(|a| a.id.to_string()).collect::<Vec<_>>(),
            "subscribers": acks.iter().map(|a| a.subscribers).collect::<Vec<_>>(),
        }),
    };
    json(200, &body, version, keep_alive)
}

/// `GET /pub/{channel}`, or 404.
pub fn channel_info(info: Option<&ChannelInfo>, version: Version, keep_alive: bool) -> Vec<u8> {
    let Some(info) = info else { return json_error(404, "no such channel", &[], version, keep_alive) };
    let body = serde_json::json!({
        "channel": &*info.channel,
        "subscribers": info.subscribers,
        "peak_subscribers": info.peak_subscribers,
        "messages": info.retained,
        "published": info.published,
        "last_id": info.last_id.map(|id| id.to_string()),
    });
    let mut body = body;
    if let Some(cluster) = info.cluster_subscribers {
        body["cluster_subscribers"] = serde_json::json!(cluster);
    }
    json(200, &body, version, keep_alive)
}

/// `DELETE /pub/{channel}`, or 404.
pub fn deleted(channel: &str, subscribers: Option<usize>, version: Version, keep_alive: bool) -> Vec<u8> {
    let Some(subscribers) = subscribers else {
        return json_error(404, "no such channel", &[], version, keep_alive);
    };
    let body = serde_json::json!({ "channel": channel, "deleted": true, "subscribers": subscribers });
    json(200, &body, version, keep_alive)
}

/// A JSON body and its newline.
pub fn json(status: u16, body: &serde_json::Value, version: Version, keep_alive: bool) -> Vec<u8> {
    let mut text = body.to_string();
    text.push('\n');
    Response::new(status).header("Content-Type", "application/json").with_body(
        text.as_bytes(),
        version,
        keep_alive,
    )
}

/// `ok`, or `degraded` with the reason while the Redis backplane is
/// unreachable: still 200, since every node shares the Redis and taking them
/// all out of a load balancer would drop every subscriber at once.
pub fn health(
    backplane: Option<&crate::backplane::BackplaneStats>,
    version: Version,
    keep_alive: bool,
) -> Vec<u8> {
    use std::sync::atomic::Ordering::Relaxed;
    let body: &[u8] = match backplane {
        Some(b) if !b.connected.load(Relaxed) => b"degraded: the Redis backplane is unreachable\n",
        Some(b) if !b.listening.load(Relaxed) => b"degraded: not subscribed to the Redis backplane\n",
        _ => b"ok\n",
    };
    Response::new(200).header("Content-Type", "text/plain").with_body(body, version, keep_alive)
}

/// The head of a streaming or long-poll response.
pub fn subscriber_head(
    transport: Transport,
    body: BodyKind,
    gap: bool,
    version: Version,
    keep_alive: bool,
) -> Vec<u8> {
    let mut response = Response::new(200)
        .header("Content-Type", transport.content_type())
        .header("Cache-Control", "no-cache, no-store")
        .header("X-Accel-Buffering", "no");
    if gap {
        response = response.header("X-Halley-Gap", "1");
    }
    response.head(body, version, keep_alive)
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Inserts CORS headers into a finished response head (before its blank line).
pub fn add_cors(response: &mut Vec<u8>, origin: &str) {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else { return };
    let mut headers = format!(
        "\r\nAccess-Control-Allow-Origin: {origin}\r\nAccess-Control-Expose-Headers: {}",
        super::cors::EXPOSE
    );
    if origin != "*" {
        headers.push_str("\r\nVary: Origin");
    }
    response.splice(end..end, headers.into_bytes());
}

/// The answer to a CORS preflight for a subscriber URL. Without an allowed
/// origin it is a plain 204 and the browser refuses the real request.
pub fn preflight(origin: Option<&str>, version: Version, keep_alive: bool) -> Vec<u8> {
    let mut response = Response::new(204);
    if origin.is_some() {
        response = response
            .header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            .header(
                "Access-Control-Allow-Headers",
                "Last-Event-ID, Accept, Cache-Control, Content-Type, Authorization",
            )
            .header("Access-Control-Max-Age", "86400");
    }
    response.head(BodyKind::Length(0), version, keep_alive)
}

/// The 101 answer to a WebSocket upgrade, with the gap signal when a resume
/// point was older than history.
pub fn ws_head(accept: &str, gap: bool) -> Vec<u8> {
    let mut head = crate::ws::response_head(accept);
    if gap {
        let end = head.len() - 2;
        head.splice(end..end, b"X-Halley-Gap: 1\r\n".iter().copied());
    }
    head
}

/// A static HTML page.
pub fn page(html: &[u8], version: Version, keep_alive: bool) -> Vec<u8> {
    Response::new(200)
        .header("Content-Type", "text/html; charset=utf-8")
        .header("Cache-Control", "no-cache")
        .with_body(html, version, keep_alive)
}

/// Prometheus text exposition format, version 0.0.4.
pub fn metrics(text: &str, version: Version, keep_alive: bool) -> Vec<u8> {
    Response::new(200).header("Content-Type", "text/plain; version=0.0.4; charset=utf-8").with_body(
        text.as_bytes(),
        version,
        keep_alive,
    )
}

/// A Bayeux answer over HTTP: the JSON array, or `callback([...]);` for
/// callback-polling.
pub fn bayeux(body: &[u8], jsonp: Option<&str>, version: Version, keep_alive: bool) -> Vec<u8> {
    match jsonp {
        None => Response::new(200)
            .header("Content-Type", "application/json;charset=UTF-8")
            .header("Cache-Control", "no-cache, no-store")
            .with_body(body, version, keep_alive),
        Some(callback) => {
            let mut wrapped = Vec::with_capacity(body.len() + callback.len() + 4);
            wrapped.extend_from_slice(callback.as_bytes());
            wrapped.push(b'(');
            wrapped.extend_from_slice(body);
            wrapped.extend_from_slice(b");");
            Response::new(200)
                .header("Content-Type", "text/javascript;charset=UTF-8")
                .header("Cache-Control", "no-cache, no-store")
                .with_body(&wrapped, version, keep_alive)
        }
    }
}
