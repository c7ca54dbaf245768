//! `halley::bayeux::message::parse_body` on arbitrary bytes.
//!
//! Checks, besides "no panic":
//! - `Ok` exactly when the body is JSON (as serde_json reads it, used here
//!   as the reference) that is an object or an array of 1 to 100 values, and
//!   then there is one result per message (so at most 100), in order;
//! - each message's result agrees with its JSON: an `Incoming` comes from
//!   an object whose `channel` is that string, with `clientId`,
//!   `connectionType` and `version` the same strings (or absent/null),
//!   `subscription`/`supportedConnectionTypes` the same string or strings,
//!   `data` as given, `ext` only if an object, `id` only if a string or
//!   number; an `Unreadable` has a `400::` error, no channel unless the
//!   message had a channel string, and the same `id` rule.
#![no_main]

use halley::bayeux::message::{parse_body, Incoming, Unreadable, MAX_MESSAGES};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let got = parse_body(data);
    let reference: Option<Value> = serde_json::from_slice(data).ok();
    let items = match reference {
        Some(Value::Array(items)) if (1..=MAX_MESSAGES).contains(&items.len()) => items,
        Some(object @ Value::Object(_)) => vec![object],
        other => {
            let err = got.expect_err("parse_body accepted a body that is not an object or 1-100 values");
            assert!(!err.0.is_empty());
            let _ = other;
            return;
        }
    };
    let messages = got.unwrap_or_else(|e| panic!("parse_body refused a valid body: {e:?}"));
    assert!(messages.len() <= MAX_MESSAGES);
    assert_eq!(messages.len(), items.len(), "one result per message");
    for (item, result) in items.iter().zip(&messages) {
        match result {
            Ok(incoming) => check_incoming(item, incoming),
            Err(unreadable) => check_unreadable(item, unreadable),
        }
    }
});

fn id_of(item: &Value) -> Option<Value> {
    item.get("id").filter(|v| v.is_string() || v.is_number()).cloned()
}

fn optional_string(item: &Value, key: &str) -> Option<Option<String>> {
    match item.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

fn string_or_list(item: &Value, key: &str) -> Option<Vec<String>> {
    match item.get(key) {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(list)) => list.iter().map(|v| v.as_str().map(String::from)).collect(),
        Some(_) => None,
    }
}

fn check_incoming(item: &Value, got: &Incoming) {
    assert!(item.is_object(), "Incoming from a non-object {item}");
    assert_eq!(item.get("channel").and_then(Value::as_str), Some(got.channel.as_str()));
    assert_eq!(got.id, id_of(item));
    assert_eq!(Some(got.client_id.clone()), optional_string(item, "clientId"));
    assert_eq!(Some(got.connection_type.clone()), optional_string(item, "connectionType"));
    assert_eq!(Some(got.version.clone()), optional_string(item, "version"));
    assert_eq!(Some(got.subscription.clone()), string_or_list(item, "subscription"));
    assert_eq!(
        Some(got.supported_connection_types.clone()),
        string_or_list(item, "supportedConnectionTypes")
    );
    assert_eq!(got.data.as_ref(), item.get("data"));
    assert_eq!(got.ext.as_ref(), item.get("ext").filter(|v| v.is_object()));
}

fn check_unreadable(item: &Value, got: &Unreadable) {
    assert!(got.error.starts_with("400::"), "error {:?}", got.error);
    match item.get("channel").and_then(Value::as_str) {
        Some(channel) if item.is_object() => {
            assert_eq!(got.channel.as_deref(), Some(channel));
            // With a channel string, only a mistyped field makes it unreadable.
            let typed = optional_string(item, "clientId").is_some()
                && optional_string(item, "connectionType").is_some()
                && optional_string(item, "version").is_some()
                && string_or_list(item, "subscription").is_some()
                && string_or_list(item, "supportedConnectionTypes").is_some();
            let list_too_long =
                |key: &str| item.get(key).and_then(Value::as_array).is_some_and(|l| l.len() > MAX_MESSAGES);
            assert!(
                !typed || list_too_long("subscription") || list_too_long("supportedConnectionTypes"),
                "message refused ({}) although every field is well typed: {item}",
                got.error
            );
        }
        _ => assert_eq!(got.channel, None),
    }
    if item.is_object() {
        assert_eq!(got.id, id_of(item));
    }
}
