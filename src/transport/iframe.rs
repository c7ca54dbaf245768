//! The hidden "forever frame" (htmlfile) transport: a chunked HTML document
//! that never ends, one `<script>` per message calling a function in the
//! parent page.
//!
//! With the default callback `push` each message is literally
//! `<script>parent.push(ENVELOPE)</script>`. A custom callback cannot be baked
//! into a frame shared by every subscriber, so those subscribers get frames
//! calling a local `c(...)` that their own preamble defines as
//! `parent.CALLBACK(...)`, as Socket.IO's htmlfile transport does. Either way a
//! message is encoded once.

use super::{envelope, Encoding, EndReason, Row, StreamOptions, Transport};
use crate::hub::Message;

pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";
pub const DEFAULT_CALLBACK: &str = "push";

/// Browsers render (and run scripts of) a streamed document only after some
/// bytes; Internet Explorer and older WebKit wanted about 1 KiB first.
const PADDING: usize = 1024;

/// A script that does nothing: keeps proxies from timing out an idle frame.
pub const HEARTBEAT: &[u8] = b"<script>;</script>\n";

/// Who a frame calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callee {
    /// `parent.push(...)`.
    ParentPush,
    /// `c(...)`, defined by the subscriber's preamble.
    Local,
}

pub fn preamble(options: &StreamOptions) -> Vec<u8> {
    let mut out = String::with_capacity(PADDING + 256);
    out.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>halley</title></head><body>\n");
    let callback = options.callback.as_deref().unwrap_or(DEFAULT_CALLBACK);
    // The callback was checked to be a plain identifier, so it is safe here.
    out.push_str(&format!("<script>function c(m){{parent.{callback}(m)}}</script>\n"));
    out.push_str("<!--");
    out.push_str(&" ".repeat(PADDING));
    out.push_str("-->\n");
    out.into_bytes()
}

pub fn frame(message: &Message, callee: Callee) -> Vec<u8> {
    script(&envelope::encode(message), callee)
}

/// The last script: tells the page why the stream ends and that it should
/// reconnect, then closes the document.
pub fn finish(reason: EndReason, callee: Callee) -> Vec<u8> {
    let body = format!("{{\"end\":\"{}\",\"reconnect\":true}}", reason.as_str());
    let mut out = script(body.as_bytes(), callee);
    out.extend_from_slice(b"</body></html>\n");
    out
}

fn script(json: &[u8], callee: Callee) -> Vec<u8> {
    let call: &[u8] = match callee {
        Callee::ParentPush => b"<script>parent.push(",
        Callee::Local => b"<script>c(",
    };
    let mut out = Vec::with_capacity(json.len() + 32);
    out.extend_from_slice(call);
    escape_into(&mut out, json);
    out.extend_from_slice(b")</script>\n");
    out
}

/// Escapes `<`, `>` and `&` inside the JSON as `\u003c` and so on. They can
/// only occur inside JSON strings, where the escape means the same character,
/// and without a literal `<` no `</script>` or `<!--` can end the script early.
fn escape_into(out: &mut Vec<u8>, json: &[u8]) {
    for &b in json {
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            _ => out.push(b),
        }
    }
}

/// The table row (see `transport::Row`). A custom callback reads its own
/// encoding (see the module doc), the default one the shared `parent.push`.
pub const ROW: Row = Row::new(Transport::Iframe, "iframe", CONTENT_TYPE, encoding)
    .preamble(preamble)
    .heartbeat(HEARTBEAT)
    .finish(|reason, encoding| finish(reason, callee(encoding)));

fn encoding(callback: Option<&str>) -> Encoding {
    match callback {
        Some(c) if c != DEFAULT_CALLBACK => Encoding::IframeLocal,
        _ => Encoding::IframePush,
    }
}

fn callee(encoding: Encoding) -> Callee {
    if encoding == Encoding::IframePush {
        Callee::ParentPush
    } else {
        Callee::Local
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_support::message;

    #[test]
    fn frames_escape_breakouts() {
        let cases: &[(&str, Callee, &str)] = &[
            (
                "hi",
                Callee::ParentPush,
                r#"<script>parent.push({"id":"1-0","channel":"c","data":"hi"})</script>"#,
            ),
            ("hi", Callee::Local, r#"<script>c({"id":"1-0","channel":"c","data":"hi"})</script>"#),
            (
                "</script><!--&>",
                Callee::ParentPush,
                r#"<script>parent.push({"id":"1-0","channel":"c","data":"\u003c/script\u003e\u003c!--\u0026\u003e"})</script>"#,
            ),
        ];
        for (data, callee, want) in cases {
            let got = String::from_utf8(frame(&message(1, 0, "c", None, data), *callee)).unwrap();
            assert_eq!(got.trim_end(), *want);
            let json =
                got.trim_end().trim_start_matches("<script>parent.push(").trim_start_matches("<script>c(");
            let json = json.trim_end_matches(")</script>");
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(value["data"], *data, "escaped JSON must decode to the payload");
        }
    }

    #[test]
    fn preamble_pads_and_defines_the_callback() {
        let pre = preamble(&StreamOptions { retry_ms: 0, callback: Some("onMsg".into()) });
        let text = String::from_utf8(pre).unwrap();
        assert!(text.len() > 1024);
        assert!(text.contains("function c(m){parent.onMsg(m)}"));
        let default = String::from_utf8(preamble(&StreamOptions::default())).unwrap();
        assert!(default.contains("parent.push(m)"));
    }
}
