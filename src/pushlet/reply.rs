//! The events and documents the engine answers with.

use super::engine::{ConnRef, Output};
use super::event::{render_document, Event, Format};
use super::request::payload_fields;
use crate::hub::Message;

/// `p_url`'s path when the request's path is not a plain absolute path.
pub(super) const DEFAULT_PATH: &str = "/pushlet/pushlet.srv";

/// Where and how one request is answered.
pub(super) struct Reply {
    pub(super) to: ConnRef,
    pub(super) format: Format,
    /// The session's id, for `p_id` on acks and nacks, when there is one.
    pub(super) id: Option<String>,
}

/// A server event: `p_event` and `p_time` (seconds).
pub(super) fn event(kind: &str) -> Event {
    vec![("p_event".into(), kind.into()), ("p_time".into(), crate::clock::unix_secs().to_string())]
}

pub(super) fn with_id(mut event: Event, reply: &Reply) -> Event {
    if let Some(id) = &reply.id {
        event.push(("p_id".into(), id.clone()));
    }
    event
}

pub(super) fn heartbeat(seq: u64) -> Event {
    let mut hb = event("hb");
    hb.push(("p_seq".into(), seq.to_string()));
    hb
}

pub(super) fn refresh_event(wait_ms: u64, url: &str) -> Event {
    let mut refresh = event("refresh");
    refresh.push(("p_wait".into(), wait_ms.to_string()));
    refresh.push(("p_url".into(), url.to_string()));
    refresh
}

/// `<path>?p_id=<id>&p_event=refresh`. A path that is not plain (absolute,
/// not `//`, URL-safe characters only) is replaced by the default one, so
/// `p_url` can never point the iframe at another host or a script.
pub(super) fn refresh_url(path: &str, id: &str) -> String {
    let plain = path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= 256
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~'));
    format!("{}?p_id={id}&p_event=refresh", if plain { path } else { DEFAULT_PATH })
}

pub(super) fn whole(reply: &Reply, events: &[Event]) -> Output {
    Output::Whole {
        to: reply.to,
        content_type: reply.format.content_type(),
        body: render_document(reply.format, events),
    }
}

pub(super) fn nack(reply: &Reply, reason: &str) -> Output {
    let mut nack = with_id(event("nack"), reply);
    nack.push(("p_reason".into(), reason.to_string()));
    whole(reply, &[nack])
}

/// A hub message as a Pushlet `data` event (without the per-receiver
/// `p_seq`, `p_sid`, `p_label`): `p_time` from the message id's clock.
pub(super) fn hub_event(message: &Message, subject: &str) -> Event {
    let mut event: Event = vec![
        ("p_event".into(), "data".into()),
        ("p_time".into(), (message.id.ms / 1000).to_string()),
        ("p_subject".into(), subject.to_string()),
        ("p_mid".into(), message.id.to_string()),
    ];
    event.extend(payload_fields(&message.data));
    event
}
