//! What a channel WebSocket's text messages ask for: `{"subscribe":[…]}`
//! or `{"unsubscribe":[…]}` with valid channel names. Pure.

use std::sync::Arc;

use serde_json::Value;

use crate::hub::validate_channel;

/// A client's command.
pub enum Command {
    Subscribe(Vec<Arc<str>>),
    Unsubscribe(Vec<Arc<str>>),
}

/// Parses one text message; an error says what was wrong and what is expected.
pub fn parse_command(text: &str, max: usize) -> Result<Command, String> {
    const SHAPE: &str = r#"expected {"subscribe":["channel",…]} or {"unsubscribe":["channel",…]}"#;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON ({e}); {SHAPE}"))?;
    let Value::Object(map) = value else { return Err(SHAPE.into()) };
    let mut entries = map.into_iter();
    let (Some((op, Value::Array(list))), None) = (entries.next(), entries.next()) else {
        return Err(SHAPE.into());
    };
    if list.len() > max {
        return Err(format!("{} channels in one command; the limit is {max}", list.len()));
    }
    let mut channels: Vec<Arc<str>> = Vec::with_capacity(list.len());
    for item in list {
        let Value::String(name) = item else { return Err(SHAPE.into()) };
        validate_channel(&name).map_err(|e| e.to_string())?;
        if !channels.iter().any(|c| **c == *name) {
            channels.push(Arc::from(name));
        }
    }
    match op.as_str() {
        "subscribe" => Ok(Command::Subscribe(channels)),
        "unsubscribe" => Ok(Command::Unsubscribe(channels)),
        _ => Err(SHAPE.into()),
    }
}

/// Channel names as `&str`, for JSON acknowledgements.
pub fn names(channels: &[Arc<str>]) -> Vec<&str> {
    channels.iter().map(|c| &**c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let ok: &[(&str, bool, &[&str])] = &[
            (r#"{"subscribe":["a","b/c","a"]}"#, true, &["a", "b/c"]),
            (r#"{"unsubscribe":[]}"#, false, &[]),
        ];
        for (text, sub, want) in ok {
            match parse_command(text, 4) {
                Ok(Command::Subscribe(c)) if *sub => assert_eq!(names(&c), *want),
                Ok(Command::Unsubscribe(c)) if !*sub => assert_eq!(names(&c), *want),
                _ => panic!("{text} misparsed"),
            }
        }
        let bad: &[(&str, &str)] = &[
            ("nope", "invalid JSON"),
            ("[1]", "expected"),
            (r#"{"subscribe":"a"}"#, "expected"),
            (r#"{"subscribe":[1]}"#, "expected"),
            (r#"{"subscribe":["a"],"x":1}"#, "expected"),
            (r#"{"join":["a"]}"#, "expected"),
            (r#"{"subscribe":["/a"]}"#, "starts with /"),
            (r#"{"subscribe":["a","b","c","d","e"]}"#, "limit is 4"),
        ];
        for (text, needle) in bad {
            let err = parse_command(text, 4).err().unwrap_or_else(|| panic!("{text} accepted"));
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
