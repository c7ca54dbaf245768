//! Bayeux request bodies: a JSON array of message objects (or one object),
//! checked into [`Incoming`] messages. Pure; every bad input becomes an error
//! value, never a panic.

use serde_json::{Map, Value};

/// The most messages one request may carry. CometD batches a handful; a
/// bound keeps one request from making the Bayeux thread work for long.
pub const MAX_MESSAGES: usize = 100;

/// One message from a client, with the fields the server reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub channel: String,
    pub client_id: Option<String>,
    /// Echoed in the reply as given (CometD sends a string).
    pub id: Option<Value>,
    pub data: Option<Value>,
    pub ext: Option<Value>,
    /// `/meta/subscribe` and `/meta/unsubscribe`: one channel or several.
    pub subscription: Vec<String>,
    pub connection_type: Option<String>,
    pub supported_connection_types: Vec<String>,
    pub version: Option<String>,
}

/// A message the server cannot read: answered with a Bayeux error in its place.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub channel: Option<String>,
    pub id: Option<Value>,
    pub error: String,
}

/// Why a whole request body is refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

/// Parses a request body. A message object that is malformed gets an
/// `Unreadable` in its place so the rest of the batch still runs.
pub fn parse_body(body: &[u8]) -> Result<Vec<Result<Incoming, Unreadable>>, BodyError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BodyError(format!("Bayeux body is not JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(_) => vec![value],
        _ => return Err(BodyError("Bayeux body must be a JSON array of message objects".into())),
    };
    if items.is_empty() {
        return Err(BodyError("Bayeux body is an empty array".into()));
    }
    if items.len() > MAX_MESSAGES {
        return Err(BodyError(format!(
            "{} messages in one request; the limit is {MAX_MESSAGES}",
            items.len()
        )));
    }
    Ok(items.into_iter().map(parse_message).collect())
}

fn parse_message(value: Value) -> Result<Incoming, Unreadable> {
    let Value::Object(mut map) = value else {
        return Err(Unreadable {
            channel: None,
            id: None,
            error: "400::message is not a JSON object".into(),
        });
    };
    let id = map.remove("id").filter(|v| v.is_string() || v.is_number());
    let channel = match map.remove("channel") {
        Some(Value::String(c)) => c,
        _ => {
            return Err(Unreadable { channel: None, id, error: "400::message has no channel string".into() })
        }
    };
    let bad = |field: &str| Unreadable {
        channel: Some(channel.clone()),
        id: id.clone(),
        error: format!("400::{field} has the wrong type"),
    };
    let client_id = optional_string(&mut map, "clientId").map_err(|_| bad("clientId"))?;
    let connection_type = optional_string(&mut map, "connectionType").map_err(|_| bad("connectionType"))?;
    let version = optional_string(&mut map, "version").map_err(|_| bad("version"))?;
    let subscription = string_or_list(&mut map, "subscription").map_err(|_| bad("subscription"))?;
    let supported_connection_types =
        string_or_list(&mut map, "supportedConnectionTypes").map_err(|_| bad("supportedConnectionTypes"))?;
    Ok(Incoming {
        client_id,
        id,
        data: map.remove("data"),
        ext: map.remove("ext").filter(Value::is_object),
        subscription,
        connection_type,
        supported_connection_types,
        version,
        channel,
    })
}

fn optional_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ()> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

fn string_or_list(map: &mut Map<String, Value>, key: &str) -> Result<Vec<String>, ()> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) if items.len() <= MAX_MESSAGES => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(()),
            })
            .collect(),
        Some(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bodies() {
        let got = parse_body(br#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]"#).unwrap();
        let m = got[0].clone().unwrap();
        assert_eq!((m.channel.as_str(), m.version.as_deref()), ("/meta/handshake", Some("1.0")));
        assert_eq!(m.supported_connection_types, vec!["long-polling"]);
        assert_eq!(m.id, Some(Value::from("1")));
        let one =
            parse_body(br#"{"channel":"/meta/subscribe","clientId":"c","subscription":"/a/*"}"#).unwrap();
        assert_eq!(one[0].clone().unwrap().subscription, vec!["/a/*"]);
    }

    #[test]
    fn refuses_bad_bodies_and_messages() {
        for (body, needle) in
            [(&b"nope"[..], "not JSON"), (b"42", "must be a JSON array"), (b"[]", "empty array")]
        {
            assert!(parse_body(body).unwrap_err().0.contains(needle), "{:?}", String::from_utf8_lossy(body));
        }
        let many = format!("[{}]", vec![r#"{"channel":"/a"}"#; MAX_MESSAGES + 1].join(","));
        assert!(parse_body(many.as_bytes()).unwrap_err().0.contains("limit"));
        let got = parse_body(br#"[1, {"id":"2"}, {"channel":"/meta/connect","clientId":5,"id":"3"}, {"channel":"/meta/subscribe","subscription":[1]}]"#).unwrap();
        let errors: Vec<String> = got.into_iter().map(|r| r.unwrap_err().error).collect();
        assert_eq!(
            errors,
            [
                "400::message is not a JSON object",
                "400::message has no channel string",
                "400::clientId has the wrong type",
                "400::subscription has the wrong type"
            ]
        );
    }
}
