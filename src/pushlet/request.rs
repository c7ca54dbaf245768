//! Reading a Pushlet request: its command (`p_event`), mode, subscription
//! and the fields of a publish. Pure functions of the request's fields; the
//! engine acts on what they return.

use std::sync::Arc;

use serde_json::Value;

use super::engine::ConnRef;
use super::event::{clip, field, valid_name, Format};
use crate::fanout::NewMessage;
use crate::hub::validate_channel;

/// One Pushlet request.
pub struct Request {
    pub from: ConnRef,
    /// Every parameter, first value of each name.
    pub fields: Vec<(String, String)>,
    /// The request path, for `p_url`.
    pub path: String,
}

/// Subjects in one subscription's comma-separated list.
pub(super) const MAX_SUBJECTS: usize = 32;

/// Length of one subscription's subject text.
pub(super) const MAX_SUBJECT_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Stream,
    Pull,
    Poll,
}

impl Mode {
    pub(super) fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "stream" => Ok(Mode::Stream),
            "pull" => Ok(Mode::Pull),
            "poll" => Ok(Mode::Poll),
            other => Err(format!("unknown mode '{}'; use stream, pull or poll", clip(other))),
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::Stream => "stream",
            Mode::Pull => "pull",
            Mode::Poll => "poll",
        }
    }
}

/// A request's `p_event`, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    /// `join` (false) or `join-listen` (true): makes a new session.
    Join { listen: bool },
    /// Everything else acts on the session named by `p_id`.
    OnSession(Action),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Listen,
    Refresh,
    Leave,
    Subscribe,
    Unsubscribe,
    Publish,
    Hb,
}

impl Command {
    pub(super) fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "join" => Command::Join { listen: false },
            "join-listen" => Command::Join { listen: true },
            "listen" => Command::OnSession(Action::Listen),
            "refresh" => Command::OnSession(Action::Refresh),
            "leave" => Command::OnSession(Action::Leave),
            "subscribe" => Command::OnSession(Action::Subscribe),
            "unsubscribe" => Command::OnSession(Action::Unsubscribe),
            "publish" => Command::OnSession(Action::Publish),
            "hb" => Command::OnSession(Action::Hb),
            _ => return None,
        })
    }
}

/// A subscription as requested, before it has an id.
#[derive(Debug, Clone)]
pub(super) struct SubscriptionSpec {
    /// The subject text as sent, echoed in acks.
    pub(super) text: String,
    /// Trimmed, non-empty entries; at least one.
    pub(super) subjects: Vec<String>,
    pub(super) label: Option<String>,
}

impl SubscriptionSpec {
    /// Reads `p_subject` (a comma-separated list) and `p_label`; `None` when
    /// there is no `p_subject`.
    pub(super) fn read(fields: &[(String, String)]) -> Option<Result<SubscriptionSpec, String>> {
        let text = field(fields, "p_subject")?;
        let label = field(fields, "p_label").map(str::to_string);
        Some(parse_subjects(text).map(|subjects| SubscriptionSpec {
            text: text.to_string(),
            subjects,
            label,
        }))
    }
}

/// Splits a subject list on `,`, trimming entries and dropping empty ones.
pub(super) fn parse_subjects(text: &str) -> Result<Vec<String>, String> {
    if text.len() > MAX_SUBJECT_BYTES {
        return Err(format!("subject list is {} bytes; the limit is {MAX_SUBJECT_BYTES}", text.len()));
    }
    let subjects: Vec<String> =
        text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    if subjects.is_empty() {
        return Err("no subject provided".into());
    }
    if subjects.len() > MAX_SUBJECTS {
        return Err(format!("{} subjects in one subscription; the limit is {MAX_SUBJECTS}", subjects.len()));
    }
    Ok(subjects)
}

/// What `listen` (or `join-listen`) asks for, read before anything changes
/// so that a bad request changes nothing.
pub(super) struct ListenPlan {
    pub(super) mode: Mode,
    pub(super) subscription: Option<SubscriptionSpec>,
}

impl ListenPlan {
    pub(super) fn read(fields: &[(String, String)]) -> Result<ListenPlan, String> {
        let mode = Mode::parse(field(fields, "p_mode").unwrap_or("stream"))?;
        let subscription = SubscriptionSpec::read(fields).transpose()?;
        Ok(ListenPlan { mode, subscription })
    }
}

/// The format of an answer without a session: `p_format` if valid, else
/// `xml-strict`.
pub(super) fn loose_format(fields: &[(String, String)]) -> Format {
    field(fields, "p_format").and_then(|f| Format::parse(f).ok()).unwrap_or(Format::XmlStrict)
}

/// A Pushlet multicast as a hub message: channel = subject without its `/`
/// (halley's channel rule applies), payload = a JSON object of the fields.
pub(super) fn hub_message(subject: &str, attributes: Vec<(String, String)>) -> Result<NewMessage, String> {
    let Some(channel) = subject.strip_prefix('/') else {
        return Err(format!("subject {} must start with /", clip(subject)));
    };
    validate_channel(channel).map_err(|e| format!("subject {}: {e}", clip(subject)))?;
    let object: serde_json::Map<String, Value> =
        attributes.into_iter().map(|(name, value)| (name, Value::String(value))).collect();
    let data = serde_json::to_string(&Value::Object(object)).map_err(|e| format!("unexpected error: {e}"))?;
    Ok(NewMessage { channel: Arc::from(channel), event: None, data: data.into_boxed_str(), ext: None })
}

/// A JSON object payload gives one field per member (strings as they are,
/// anything else as its JSON text), skipping names that are invalid or in
/// the protocol's `p_` space; any other payload is one `data` field.
pub(super) fn payload_fields(data: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(object)) => object
            .into_iter()
            .filter(|(name, _)| valid_name(name) && !name.starts_with("p_"))
            .map(|(name, value)| match value {
                Value::String(text) => (name, text),
                other => (name, other.to_string()),
            })
            .collect(),
        _ => vec![("data".into(), data.to_string())],
    }
}
