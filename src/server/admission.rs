//! Admission for HTTP requests: address rules and the ingest key per request,
//! tokens for subscriptions and public-side publishes, the word filter and
//! publish rates. The rules themselves live in `crate::guard` and `crate::auth`.

use super::conn::Cx;
use super::route::{Port, Refusal, SubscribeRequest};
use super::worker::Shared;
use crate::auth::{Claims, Denied};
use crate::fanout::NewMessage;
use crate::guard::Origin;
use crate::http::Request;

fn refusal(d: Denied) -> Refusal {
    let mut r = Refusal::new(d.status, d.reason);
    r.header = match d.status {
        401 => Some(("WWW-Authenticate", "Bearer")),
        429 => Some(("Retry-After", "1")),
        _ => None,
    };
    r
}

/// The bearer token of a request: `Authorization: Bearer …` (the scheme
/// is case-insensitive, RFC 7235), else `?token=`.
pub fn token(req: &Request) -> Option<String> {
    req.header_str("authorization")
        .and_then(bearer)
        .map(String::from)
        .or_else(|| req.query_param("token").filter(|t| !t.is_empty()))
}

pub use crate::auth::bearer;

/// Per-request address rules, and the ingest key on the ingest port.
pub fn admit(shared: &Shared, cx: &mut Cx, port: Port, req: &Request) -> Result<(), Refusal> {
    let Some(ip) = cx.conn().map(|c| c.ip) else { return Ok(()) };
    let guard = &shared.guard;
    match port {
        Port::Public if !guard.subscribers.admits(ip) => {
            Err(Refusal::new(403, format!("address {ip} may not subscribe here")))
        }
        Port::Ingest if req.path != "/healthz" => {
            if !guard.publishers.admits(ip) {
                return Err(Refusal::new(403, format!("address {ip} may not publish")));
            }
            if !guard.ingest_authorized(req.header_str("authorization")) {
                let mut refused = refusal(Denied {
                    status: 401,
                    reason: "the ingest port needs its key: Authorization: Bearer <ingest_key>".into(),
                });
                // A browser cannot add a bearer header to a page load or an
                // EventSource, but it asks for Basic credentials and then
                // sends them with every same-origin request (the stream too).
                if req.path.starts_with("/dashboard") {
                    refused.header =
                        Some(("WWW-Authenticate", "Basic realm=\"halley ingest\", charset=\"UTF-8\""));
                }
                return Err(refused);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Browsers send `Origin` with every WebSocket and apply no CORS to it, so a
/// `cors_origins` list is enforced here (for HTTP/1.1 upgrades and HTTP/2
/// extended CONNECTs alike); `*` or empty lets any origin in.
pub fn check_websocket_origin(shared: &Shared, request: &Request) -> Result<(), Refusal> {
    let allowed = match &shared.cors {
        super::cors::CorsPolicy::List(_) => match request.header_str("origin") {
            Some(origin) => shared.cors.allow(Some(origin)).is_some(),
            None => true,
        },
        _ => true,
    };
    match allowed {
        true => Ok(()),
        false => Err(Refusal::new(403, "WebSocket from an origin that cors_origins does not list")),
    }
}

/// Tokens for the channels that need one.
pub fn check_subscribe(
    shared: &Shared,
    req: &Request,
    sub: &SubscribeRequest,
) -> Result<Option<Claims>, Refusal> {
    let Some(policy) = &shared.guard.auth else { return Ok(None) };
    let token = token(req);
    let claims = policy
        .subscribe(token.as_deref(), sub.channels.iter().map(|c| &**c), crate::clock::unix_secs())
        .map_err(refusal)?;
    // A WebSocket keeps the token it opened with for channels it adds later,
    // even when its first channels needed none.
    if claims.is_none() && sub.ws.is_some() && token.is_some() {
        return policy.verify(token.as_deref(), crate::clock::unix_secs()).map(Some).map_err(refusal);
    }
    Ok(claims)
}

/// An HTTP publish through the one publish screen: the public side with
/// its address and token, the ingest side with its connection's rate.
pub fn check_publish(
    shared: &Shared,
    cx: &mut Cx,
    port: Port,
    req: &Request,
    messages: &mut [NewMessage],
) -> Result<(), Refusal> {
    let now = cx.io.now();
    let token = token(req);
    let Some(conn) = cx.conn() else { return Ok(()) };
    let origin = match port {
        Port::Public => Origin::Public { ip: Some(conn.ip), token: token.as_deref() },
        Port::Ingest | Port::Resp => Origin::Ingest { bucket: conn.bucket.as_mut() },
    };
    shared.guard.screen(messages, origin, now).map_err(refusal)
}
