//! The JSON envelope every non-SSE transport carries:
//! `{"id":"…","channel":"…","data":"…"}` plus `"event":"…"` when set.

use crate::hub::Message;

/// Encodes the envelope. JSON string escaping is serde_json's, so any UTF-8
/// payload (quotes, control characters, `</script>`) comes out valid JSON.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.data.len() + message.channel.len() + 64);
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(message.id.to_string().as_bytes());
    out.extend_from_slice(b"\",\"channel\":");
    push_json_string(&mut out, &message.channel);
    out.extend_from_slice(b",\"data\":");
    push_json_string(&mut out, &message.data);
    if let Some(event) = &message.event {
        out.extend_from_slice(b",\"event\":");
        push_json_string(&mut out, event);
    }
    out.push(b'}');
    out
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail; fall back to an empty string anyway.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_support::message;

    #[test]
    fn encodes_envelopes() {
        let cases: &[(Option<&str>, &str, &str)] = &[
            (None, "hi", r#"{"id":"7-1","channel":"a/b","data":"hi"}"#),
            (Some("tick"), "", r#"{"id":"7-1","channel":"a/b","data":"","event":"tick"}"#),
            (None, "q\"\n\u{1}", r#"{"id":"7-1","channel":"a/b","data":"q\"\n\u0001"}"#),
        ];
        for (event, data, want) in cases {
            let got = encode(&message(7, 1, "a/b", *event, data));
            assert_eq!(String::from_utf8(got).unwrap(), *want);
        }
    }
}
