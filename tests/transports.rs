//! The streaming transports added after SSE and NDJSON, and what every
//! streaming transport shares, through real sockets against the real binary:
//! the iframe ("forever frame") document and its escaping, multipart parts,
//! cache and proxy headers, heartbeats, the maximum stream age with resume,
//! and CORS on the public port (never on the ingest port).
//!
//! Every subscriber reads its response head before anything is published: the
//! head is sent only once the subscription is registered.

mod common;
use common::*;

use std::time::{Duration, Instant};

use serde_json::Value;

// ---------------------------------------------------------------------------
// A transport-aware reader of streaming bodies.

#[derive(Debug, Clone, Copy, PartialEq)]
enum T {
    Sse,
    Stream,
    Iframe,
    Multipart,
}

impl T {
    fn name(self) -> &'static str {
        match self {
            T::Sse => "sse",
            T::Stream => "stream",
            T::Iframe => "iframe",
            T::Multipart => "multipart",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            T::Sse => "text/event-stream",
            T::Stream => "application/x-ndjson",
            T::Iframe => "text/html; charset=utf-8",
            T::Multipart => "multipart/x-mixed-replace; boundary=halley-part",
        }
    }
}

const BOUNDARY_LINE: &str = "--halley-part\r\n";
const DELIMITER: &str = "\r\n--halley-part";

#[derive(Debug, Clone, Copy, PartialEq)]
enum What {
    /// Bytes a transport sends once, right after the head (SSE `retry:`, the
    /// iframe's callback definition, the first multipart boundary).
    Preamble,
    Msg,
    Heartbeat,
    /// The server ends the stream; `Item::end` holds the reason.
    End,
    /// Anything else (an SSE comment other than the heartbeat, say).
    Other,
}

/// One thing a subscriber received.
#[derive(Debug, Clone)]
struct Item {
    what: What,
    id: Option<String>,
    channel: Option<String>,
    event: Option<String>,
    data: String,
    /// Why the stream ended (for `What::End`).
    end: Option<String>,
    /// The decoded body text this item was parsed from (with any text that
    /// preceded it since the previous item).
    raw: String,
    /// Multipart part headers.
    headers: Vec<(String, String)>,
    /// For iframe calls: the called function (`parent.push` or `c`).
    callee: Option<String>,
    /// For ends: the JSON that says why (stream, iframe, multipart).
    json: Option<Value>,
    /// When it was parsed (just after its last byte arrived).
    at: Instant,
}

impl Item {
    fn new(what: What, raw: &str) -> Item {
        Item {
            what,
            id: None,
            channel: None,
            event: None,
            data: String::new(),
            end: None,
            raw: raw.to_string(),
            headers: Vec::new(),
            callee: None,
            json: None,
            at: Instant::now(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A published message as a subscriber should see it.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    id: String,
    channel: String,
    event: Option<String>,
    data: String,
}

fn publish(server: &Server, channel: &str, data: &str) -> Sent {
    let id = server.publish_id(channel, data);
    Sent { id, channel: channel.to_string(), event: None, data: data.to_string() }
}

fn publish_event(server: &Server, channel: &str, event: &str, data: &str) -> Sent {
    let path = format!("/pub/{channel}?event={event}");
    let resp = request(server.ingest, "POST", &path, &[], data.as_bytes());
    assert_eq!(resp.status, 200, "POST {path}: {}", resp.text());
    let json = resp.json();
    let id = json["id"].as_str().unwrap_or_else(|| panic!("POST {path}: no id in {json}")).to_string();
    Sent { id, channel: channel.to_string(), event: Some(event.to_string()), data: data.to_string() }
}

/// An envelope (`{"id","channel","data"[,"event"]}`) or an end notice as an item.
fn json_item(json: Value, raw: &str, ctx: &str) -> Item {
    let mut item = Item::new(What::Msg, raw);
    if let Some(end) = json.get("end") {
        item.what = What::End;
        item.end =
            Some(end.as_str().unwrap_or_else(|| panic!("{ctx}: \"end\" is not a string: {json}")).into());
        item.json = Some(json);
        return item;
    }
    let field = |name: &str| {
        json.get(name).map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{ctx}: envelope field {name:?} is not a string: {json}"))
                .to_string()
        })
    };
    item.id = Some(field("id").unwrap_or_else(|| panic!("{ctx}: envelope without id: {json}")));
    item.channel =
        Some(field("channel").unwrap_or_else(|| panic!("{ctx}: envelope without channel: {json}")));
    item.data = field("data").unwrap_or_else(|| panic!("{ctx}: envelope without data: {json}"));
    item.event = field("event");
    item
}

/// Parses the next complete item of `t` from `text`; None when more bytes are needed.
fn parse_one(t: T, text: &str, ctx: &str) -> Option<(Item, usize)> {
    match t {
        T::Sse => {
            let end = text.find("\n\n")?;
            let block = &text[..end];
            let raw = &text[..end + 2];
            let lines: Vec<&str> = block.split('\n').collect();
            let mut item = Item::new(What::Other, raw);
            if lines.iter().all(|l| l.starts_with("retry:")) {
                item.what = What::Preamble;
            } else if block == ":" {
                item.what = What::Heartbeat;
            } else if let Some(reason) = block.strip_prefix(": end ") {
                item.what = What::End;
                item.end = Some(reason.to_string());
            } else if lines.iter().all(|l| l.starts_with(':')) {
                item.what = What::Other;
            } else {
                item.what = What::Msg;
                let mut data = Vec::new();
                for line in lines {
                    if let Some(v) = line.strip_prefix("id: ") {
                        item.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        item.event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v);
                    } else {
                        panic!("{ctx}: unexpected SSE line {line:?} in {block:?}");
                    }
                }
                item.data = data.join("\n");
            }
            Some((item, end + 2))
        }
        T::Stream => {
            let end = text.find('\n')?;
            let line = &text[..end];
            let raw = &text[..end + 1];
            if line.trim().is_empty() {
                return Some((Item::new(What::Heartbeat, raw), end + 1));
            }
            let json: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{ctx}: bad NDJSON line {line:?}: {e}"));
            Some((json_item(json, raw, ctx), end + 1))
        }
        T::Iframe => {
            let open = text.find("<script>")?;
            let close = open + text[open..].find("</script>")?;
            let inner = &text[open + "<script>".len()..close];
            let consumed = close + "</script>".len();
            let raw = &text[..consumed];
            if inner.trim() == ";" {
                return Some((Item::new(What::Heartbeat, raw), consumed));
            }
            if inner.starts_with("function") {
                return Some((Item::new(What::Preamble, raw), consumed));
            }
            let (callee, args) =
                inner.split_once('(').unwrap_or_else(|| panic!("{ctx}: script is not a call: {inner:?}"));
            let json_text = args
                .strip_suffix(')')
                .unwrap_or_else(|| panic!("{ctx}: call does not end with `)`: {inner:?}"));
            let json: Value = serde_json::from_str(json_text)
                .unwrap_or_else(|e| panic!("{ctx}: call argument is not JSON ({e}): {json_text:?}"));
            let mut item = json_item(json, raw, ctx);
            item.callee = Some(callee.to_string());
            Some((item, consumed))
        }
        T::Multipart => {
            // A part starts with its headers; only the first boundary starts with `-`.
            if text.starts_with(BOUNDARY_LINE) {
                return Some((Item::new(What::Preamble, BOUNDARY_LINE), BOUNDARY_LINE.len()));
            }
            if BOUNDARY_LINE.starts_with(text) {
                return None;
            }
            let head_end = text.find("\r\n\r\n")?;
            let body_start = head_end + 4;
            let body_len = text[body_start..].find(DELIMITER)?;
            let after = body_start + body_len + DELIMITER.len();
            let (last, consumed) = if text[after..].starts_with("\r\n") {
                (false, after + 2)
            } else if text[after..].starts_with("--\r\n") {
                (true, after + 4)
            } else if text.len() - after < 4 {
                return None;
            } else {
                panic!(
                    "{ctx}: boundary not followed by CRLF or `--`: {:?}",
                    &text[..text.len().min(after + 40)]
                );
            };
            let raw = &text[..consumed];
            let headers: Vec<(String, String)> = text[..head_end]
                .split("\r\n")
                .map(|l| {
                    let (n, v) = l
                        .split_once(':')
                        .unwrap_or_else(|| panic!("{ctx}: bad part header line {l:?} in {raw:?}"));
                    (n.trim().to_string(), v.trim().to_string())
                })
                .collect();
            let mut item = Item::new(What::Other, raw);
            item.headers = headers;
            item.data = text[body_start..body_start + body_len].to_string();
            if item.header("x-heartbeat").is_some() {
                item.what = What::Heartbeat;
            } else if let Some(reason) = item.header("x-halley-end").map(str::to_string) {
                item.what = What::End;
                item.end = Some(reason);
                item.json = serde_json::from_str(&item.data).ok();
            } else if let Some(id) = item.header("x-message-id").map(str::to_string) {
                item.what = What::Msg;
                item.id = Some(id);
                item.channel = item.header("x-channel").map(str::to_string);
                item.event = item.header("x-event").map(str::to_string);
            }
            if last {
                assert_eq!(
                    item.what,
                    What::End,
                    "{ctx}: the closing boundary `--halley-part--` followed a part that is not an end notice: {raw:?}"
                );
            }
            if item.what == What::End {
                assert!(
                    last,
                    "{ctx}: end part not followed by the closing boundary `--halley-part--`: {raw:?}"
                );
            }
            Some((item, consumed))
        }
    }
}

/// A streaming subscription read item by item.
struct Sub {
    t: T,
    ctx: String,
    client: StreamClient,
    /// Decoded body text not yet parsed into items.
    text: String,
    /// Every decoded body byte so far.
    all: String,
    /// The terminating chunk arrived.
    ended: bool,
    /// When the head had been read.
    head_at: Instant,
}

impl Sub {
    /// Opens `path` and asserts a 200 streaming head with the transport's content type.
    fn open(server: &Server, t: T, path: &str, headers: &[(&str, &str)]) -> Sub {
        let sub = Sub::open_any(server, t, path, headers);
        let ct = sub.client.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with(t.content_type()),
            "{}: Content-Type {ct:?}, want {:?}; headers {:?}",
            sub.ctx,
            t.content_type(),
            sub.client.headers
        );
        sub
    }

    /// Opens `path` and asserts a 200 chunked head, whatever its content type.
    fn open_any(server: &Server, t: T, path: &str, headers: &[(&str, &str)]) -> Sub {
        let ctx = format!("{} GET {path} {headers:?}", t.name());
        let client = StreamClient::open(server.public, path, headers);
        let head_at = Instant::now();
        assert_eq!(client.status, 200, "{ctx}: status; headers {:?}", client.headers);
        let te = client.header("transfer-encoding").unwrap_or("");
        assert!(te.contains("chunked"), "{ctx}: want a chunked body; headers {:?}", client.headers);
        Sub { t, ctx, client, text: String::new(), all: String::new(), ended: false, head_at }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.client.header(name)
    }

    /// Reads one more chunk; false at the terminating chunk.
    fn fill(&mut self) -> bool {
        match self.client.next_raw_chunk() {
            Some(chunk) => {
                self.text.push_str(&chunk);
                self.all.push_str(&chunk);
                true
            }
            None => {
                self.ended = true;
                false
            }
        }
    }

    /// The next item; None once the stream ended cleanly (terminating chunk)
    /// with nothing but trailing text (see `rest`) left.
    fn next_item(&mut self) -> Option<Item> {
        let start = Instant::now();
        loop {
            if let Some((item, consumed)) = parse_one(self.t, &self.text, &self.ctx) {
                self.text.drain(..consumed);
                return Some(item);
            }
            if self.ended {
                return None;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{}: no complete item within {DEADLINE:?}; unparsed {:?}",
                self.ctx,
                self.text
            );
            self.fill();
        }
    }

    /// The next item that is not a preamble; panics if the stream ends.
    fn next_live(&mut self, what: &str) -> Item {
        loop {
            let item = self.next_item().unwrap_or_else(|| {
                panic!("{}: stream ended while waiting for {what}; body so far {:?}", self.ctx, self.all)
            });
            if item.what != What::Preamble {
                return item;
            }
        }
    }

    /// The next message, skipping preambles and heartbeats.
    fn next_msg(&mut self, what: &str) -> Item {
        loop {
            let item = self.next_live(what);
            match item.what {
                What::Msg => return item,
                What::Heartbeat => continue,
                _ => panic!("{}: want {what}, got {item:?}", self.ctx),
            }
        }
    }

    /// Every remaining item, up to the terminating chunk; also returns the
    /// trailing text that is no item (the iframe's `</body></html>`).
    fn rest(&mut self) -> (Vec<Item>, String) {
        let start = Instant::now();
        let mut items = Vec::new();
        while let Some(item) = self.next_item() {
            items.push(item);
            assert!(
                start.elapsed() < DEADLINE,
                "{}: stream did not end within {DEADLINE:?}; got {items:?}",
                self.ctx
            );
        }
        (items, std::mem::take(&mut self.text))
    }
}

/// Request headers as the harness takes them.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// The last `<script>…</script>` of an iframe item's raw text.
fn last_script(raw: &str) -> &str {
    &raw[raw.rfind("<script>").unwrap_or(0)..]
}

fn sub_path(t: T, channel: &str, extra: &str) -> String {
    let mut path = format!("/sub/{channel}?transport={}", t.name());
    if !extra.is_empty() {
        path.push('&');
        path.push_str(extra);
    }
    path
}

/// Asserts the received messages are exactly `want`, in order, with their
/// ids, data, and (where the transport carries them) channel and event.
fn assert_messages(ctx: &str, got: &[Item], want: &[Sent]) {
    let got_ids: Vec<&str> = got.iter().map(|m| m.id.as_deref().unwrap_or("<none>")).collect();
    let want_ids: Vec<&str> = want.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{ctx}: got {} messages, want {}\n  got ids:  {got_ids:?}\n  want ids: {want_ids:?}\n  got: {got:#?}",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.what, What::Msg, "{ctx}: item {i} is not a message: {g:?}");
        assert_eq!(
            g.id.as_deref(),
            Some(w.id.as_str()),
            "{ctx}: message {i} has the wrong id\n  got ids:  {got_ids:?}\n  want ids: {want_ids:?}"
        );
        assert_eq!(g.data, w.data, "{ctx}: message {i} ({}) payload differs; raw {:?}", w.id, g.raw);
        if let Some(channel) = &g.channel {
            assert_eq!(channel, &w.channel, "{ctx}: message {i} ({}) channel; raw {:?}", w.id, g.raw);
        }
        assert_eq!(g.event, w.event, "{ctx}: message {i} ({}) event; raw {:?}", w.id, g.raw);
    }
}

fn assert_no_cors(ctx: &str, headers: &[(String, String)]) {
    let cors: Vec<_> =
        headers.iter().filter(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-")).collect();
    assert!(cors.is_empty(), "{ctx}: want no CORS headers, got {cors:?}; all headers {headers:?}");
}

/// True when the comma-separated header value lists `token` (case-insensitive).
fn lists(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

// ---------------------------------------------------------------------------
// 1. iframe

#[test]
fn iframe_sends_a_padded_html_preamble_then_one_parent_push_script_per_message_in_order() {
    const N: usize = 20;
    let server = Server::start(&[]);
    let mut sub = Sub::open(&server, T::Iframe, "/sub/frame?transport=iframe", &[]);
    assert_eq!(
        sub.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{}: headers {:?}",
        sub.ctx,
        sub.client.headers
    );
    let sent: Vec<Sent> = (0..N).map(|i| publish(&server, "frame", &format!("m{i} \"q\" é ✓"))).collect();
    let got: Vec<Item> = (0..N).map(|i| sub.next_msg(&format!("message {i} of {N}"))).collect();
    assert_messages(&sub.ctx, &got, &sent);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.callee.as_deref(), Some("parent.push"), "{}: message {i} frame {:?}", sub.ctx, g.raw);
        let frame = last_script(&g.raw);
        assert!(
            frame.starts_with("<script>parent.push({") && frame.ends_with("})</script>"),
            "{}: message {i}: want <script>parent.push(ENVELOPE)</script>, got {frame:?}",
            sub.ctx
        );
    }

    let first = sub.all.find("<script>parent.push(").expect("a frame");
    let preamble = &sub.all[..first];
    assert!(
        preamble.len() >= 1024,
        "{}: only {} bytes before the first message (browsers need ~1 KiB to start rendering): {preamble:?}",
        sub.ctx,
        preamble.len()
    );
    assert!(
        preamble.to_ascii_lowercase().contains("<html"),
        "{}: preamble is no HTML document: {preamble:?}",
        sub.ctx
    );
    assert!(
        preamble.contains("parent.push"),
        "{}: preamble does not define the default callback (parent.push): {preamble:?}",
        sub.ctx
    );
}

#[test]
fn iframe_with_a_custom_callback_calls_c_defined_by_its_own_preamble() {
    let server = Server::start(&[]);
    // Two custom callbacks and the default on one channel: the custom ones
    // share `c(...)` frames, each with its own definition of `c`.
    let mut on_msg = Sub::open(&server, T::Iframe, "/sub/cb?transport=iframe&callback=onMsg", &[]);
    let mut other = Sub::open(&server, T::Iframe, "/sub/cb?transport=iframe&callback=$other_1", &[]);
    let mut default = Sub::open(&server, T::Iframe, "/sub/cb?transport=iframe", &[]);
    let mut explicit_push = Sub::open(&server, T::Iframe, "/sub/cb?transport=iframe&callback=push", &[]);
    let sent: Vec<Sent> = (0..5).map(|i| publish(&server, "cb", &format!("c{i}"))).collect();

    for (sub, callee, definition) in [
        (&mut on_msg, "c", Some("function c(m){parent.onMsg(m)}")),
        (&mut other, "c", Some("function c(m){parent.$other_1(m)}")),
        (&mut default, "parent.push", None),
        (&mut explicit_push, "parent.push", None),
    ] {
        let got: Vec<Item> = (0..sent.len()).map(|i| sub.next_msg(&format!("message {i}"))).collect();
        assert_messages(&sub.ctx, &got, &sent);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.callee.as_deref(), Some(callee), "{}: message {i} frame {:?}", sub.ctx, g.raw);
            let frame = last_script(&g.raw);
            let prefix = format!("<script>{callee}({{");
            assert!(
                frame.starts_with(&prefix) && frame.ends_with("})</script>"),
                "{}: message {i}: want {prefix}ENVELOPE)</script>, got {frame:?}",
                sub.ctx
            );
        }
        if let Some(definition) = definition {
            let first = sub.all.find("<script>c(").expect("a frame");
            let preamble = &sub.all[..first];
            assert!(
                preamble.contains(definition),
                "{}: preamble lacks {definition:?}: {preamble:?}",
                sub.ctx
            );
            assert!(preamble.len() >= 1024, "{}: preamble only {} bytes", sub.ctx, preamble.len());
            assert!(
                !sub.all.contains("parent.push("),
                "{}: a custom-callback frame calls parent.push: {:?}",
                sub.ctx,
                sub.all
            );
        } else {
            assert!(!sub.all.contains("<script>c("), "{}: default frames call c(): {:?}", sub.ctx, sub.all);
        }
    }
}

#[test]
fn iframe_escapes_html_in_payloads_and_the_json_decodes_back_exactly() {
    let server = Server::start(&[]);
    let payloads = [
        "</script><script>alert(1)</script>",
        "<!--",
        "<b>bold</b> & friends",
        "a</SCRIPT>b <!-- c --> d && e <b> \"q\" \\ \n é ✓ \u{2028}",
    ];
    for (channel, path) in
        [("esc", "/sub/esc?transport=iframe"), ("esc2", "/sub/esc2?transport=iframe&callback=onMsg")]
    {
        let mut sub = Sub::open(&server, T::Iframe, path, &[]);
        let sent: Vec<Sent> = payloads.iter().map(|p| publish(&server, channel, p)).collect();
        let got: Vec<Item> = (0..sent.len()).map(|i| sub.next_msg(&format!("payload {i}"))).collect();
        // Decoding the (escaped) JSON gives back every payload exactly.
        assert_messages(&sub.ctx, &got, &sent);
        for (g, p) in got.iter().zip(payloads) {
            let open = g.raw.find("<script>").unwrap() + "<script>".len();
            let close = g.raw.rfind("</script>").unwrap();
            let script = &g.raw[open..close];
            for bad in ['<', '>', '&'] {
                assert!(
                    !script.contains(bad),
                    "{}: raw {bad:?} inside the script for payload {p:?}: {script:?}",
                    sub.ctx
                );
            }
            assert!(
                script.contains("\\u003c") || !p.contains('<'),
                "{}: `<` in {p:?} should be sent as \\u003c: {script:?}",
                sub.ctx
            );
        }
        // Nothing of the payloads appears raw anywhere in the document.
        for needle in ["alert(1)</script>", "<b>", "</SCRIPT>", "&&", "& friends", "<!-- c -->"] {
            assert!(
                !sub.all.contains(needle),
                "{}: {needle:?} appears raw in the body: {:?}",
                sub.ctx,
                sub.all
            );
        }
        let opens = sub.all.matches("<script>").count();
        let closes = sub.all.matches("</script>").count();
        assert_eq!(opens, closes, "{}: <script> and </script> counts differ: {:?}", sub.ctx, sub.all);
        // The preamble's padding comment and the frames: no stray `<!--`
        // beyond the one padding comment the server itself writes.
        let comments = sub.all.matches("<!--").count();
        let first = sub.all.find(")</script>").unwrap();
        assert_eq!(
            comments,
            sub.all[..first].matches("<!--").count(),
            "{}: `<!--` appears after the preamble: {:?}",
            sub.ctx,
            sub.all
        );
    }
}

#[test]
fn iframe_rejects_a_callback_that_is_not_an_identifier() {
    let server = Server::start(&[]);
    for bad in ["a.b", "1x", "parent.x", "a(b)", "x%3Balert(1)"] {
        let path = format!("/sub/frame?transport=iframe&callback={bad}");
        let resp = get(server.public, &path);
        assert_json_error(&resp, 400, "callback", &format!("GET {path}"));
    }
    // The server still serves iframes afterwards.
    let sub = Sub::open(&server, T::Iframe, "/sub/frame?transport=iframe&callback=ok_1", &[]);
    drop(sub);
}

// ---------------------------------------------------------------------------
// 2. multipart

#[test]
fn multipart_parts_carry_headers_and_the_exact_payload_for_each_content_type_choice() {
    let server = Server::start(&[]);
    let cases: [(&str, &str, Headers, &str); 3] = [
        (
            "mp-replace",
            "/sub/mp-replace?transport=multipart",
            vec![],
            "multipart/x-mixed-replace; boundary=halley-part",
        ),
        (
            "mp-accept",
            "/sub/mp-accept",
            vec![("Accept", "multipart/mixed")],
            "multipart/mixed; boundary=halley-part",
        ),
        (
            "mp-both",
            "/sub/mp-both?transport=multipart",
            vec![("Accept", "multipart/mixed")],
            "multipart/mixed; boundary=halley-part",
        ),
    ];
    for (channel, path, headers, content_type) in cases {
        let mut sub = Sub::open_any(&server, T::Multipart, path, &headers);
        assert_eq!(
            sub.header("content-type"),
            Some(content_type),
            "{}: Content-Type; headers {:?}",
            sub.ctx,
            sub.client.headers
        );
        let sent = vec![
            publish(&server, channel, "plain text"),
            publish_event(&server, channel, "update", "with an event"),
            publish(&server, channel, "line one\r\nline two\r\n"),
            publish(&server, channel, "\r\n\r\nblank lines first, é ✓ -- not a boundary"),
            publish(&server, channel, "--halley-part lookalike without CRLF before it"),
        ];
        let first = sub.next_item().unwrap_or_else(|| panic!("{}: stream ended at once", sub.ctx));
        assert_eq!(first.what, What::Preamble, "{}: first item {first:?}", sub.ctx);
        assert!(
            sub.all.starts_with(BOUNDARY_LINE),
            "{}: body must start with `--halley-part\\r\\n`: {:?}",
            sub.ctx,
            sub.all
        );
        let got: Vec<Item> = (0..sent.len()).map(|i| sub.next_msg(&format!("part {i}"))).collect();
        assert_messages(&sub.ctx, &got, &sent);
        for (g, w) in got.iter().zip(&sent) {
            let ctx = format!("{}: part for {}", sub.ctx, w.id);
            assert_eq!(g.header("content-type"), Some("text/plain; charset=utf-8"), "{ctx}: {:?}", g.raw);
            assert_eq!(g.header("x-channel"), Some(channel), "{ctx}: {:?}", g.raw);
            assert_eq!(g.header("x-message-id"), Some(w.id.as_str()), "{ctx}: {:?}", g.raw);
            assert_eq!(g.header("x-event"), w.event.as_deref(), "{ctx}: {:?}", g.raw);
            // Each part is followed at once by the next boundary.
            let want_tail = format!("{}{DELIMITER}\r\n", w.data);
            assert!(
                g.raw.ends_with(&want_tail),
                "{ctx}: part should end with payload + boundary: {:?}",
                g.raw
            );
        }
        assert!(sub.text.is_empty(), "{}: unexpected bytes after the parts: {:?}", sub.ctx, sub.text);
    }
}

// ---------------------------------------------------------------------------
// 3. Cache headers and heartbeats on every streaming transport.

fn heartbeats(t: T) {
    let server = Server::start(&["--heartbeat-secs", "1"]);
    let path = sub_path(t, "beat", "");
    let mut sub = Sub::open(&server, t, &path, &[]);
    let cache = sub.header("cache-control").unwrap_or("");
    assert!(
        cache.to_ascii_lowercase().contains("no-cache"),
        "{}: Cache-Control {cache:?} lacks no-cache; headers {:?}",
        sub.ctx,
        sub.client.headers
    );
    assert_eq!(
        sub.header("x-accel-buffering"),
        Some("no"),
        "{}: X-Accel-Buffering; headers {:?}",
        sub.ctx,
        sub.client.headers
    );

    let mut beats: Vec<Item> = Vec::new();
    while beats.len() < 2 {
        let item = sub.next_live("a heartbeat");
        assert_eq!(item.what, What::Heartbeat, "{}: with nothing published, got {item:?}", sub.ctx);
        beats.push(item);
    }
    let want = match t {
        T::Sse => ":\n\n",
        T::Stream => "\n",
        T::Iframe => "<script>;</script>",
        T::Multipart => "X-Heartbeat: 1\r\n",
    };
    for (i, beat) in beats.iter().enumerate() {
        match t {
            T::Sse | T::Stream => {
                assert_eq!(beat.raw, want, "{}: heartbeat {i} should be exactly {want:?}", sub.ctx)
            }
            T::Iframe => assert!(
                i == 0
                    || (beat.raw.ends_with(want)
                        && beat.raw[..beat.raw.len() - want.len()].trim().is_empty()),
                "{}: heartbeat {i} should be {want:?} alone, got {:?}",
                sub.ctx,
                beat.raw
            ),
            T::Multipart => {
                assert!(beat.raw.contains(want), "{}: heartbeat {i} {:?} lacks {want:?}", sub.ctx, beat.raw)
            }
        }
        assert!(beat.raw.contains(want), "{}: heartbeat {i} {:?} lacks {want:?}", sub.ctx, beat.raw);
        if t == T::Multipart {
            assert_eq!(
                beat.header("x-message-id"),
                None,
                "{}: heartbeat part has an id: {:?}",
                sub.ctx,
                beat.raw
            );
        }
    }
    let first = beats[0].at - sub.head_at;
    let second = beats[1].at - sub.head_at;
    assert!(
        first >= Duration::from_millis(800),
        "{}: first heartbeat {first:?} after the head, before the 1 s interval",
        sub.ctx
    );
    assert!(
        second >= Duration::from_millis(1600),
        "{}: second heartbeat {second:?} after the head (first at {first:?}), before two 1 s intervals",
        sub.ctx
    );
    // A message still goes through after the heartbeats.
    let sent = publish(&server, "beat", "after the beats");
    let got = sub.next_msg("a message after heartbeats");
    assert_messages(&sub.ctx, &[got], &[sent]);
}

#[test]
fn sse_sends_no_cache_headers_and_heartbeats_every_interval() {
    heartbeats(T::Sse);
}

#[test]
fn stream_sends_no_cache_headers_and_heartbeats_every_interval() {
    heartbeats(T::Stream);
}

#[test]
fn iframe_sends_no_cache_headers_and_heartbeats_every_interval() {
    heartbeats(T::Iframe);
}

#[test]
fn multipart_sends_no_cache_headers_and_heartbeats_every_interval() {
    heartbeats(T::Multipart);
}

// ---------------------------------------------------------------------------
// 4. Maximum stream age, then resume.

/// Checks the end notice of `t` (`items` ends with it) and what follows it.
fn assert_max_age_end(ctx: &str, t: T, items: &[Item], tail: &str, all: &str) {
    let end = items.last().unwrap_or_else(|| panic!("{ctx}: stream ended with nothing; body {all:?}"));
    assert_eq!(end.what, What::End, "{ctx}: last item is not an end notice: {end:?}; body {all:?}");
    assert_eq!(end.end.as_deref(), Some("max-age"), "{ctx}: end reason; {end:?}");
    let want_json = serde_json::json!({"end": "max-age", "reconnect": true});
    match t {
        T::Sse => assert!(end.raw.contains(": end max-age\n\n"), "{ctx}: SSE end {:?}", end.raw),
        T::Stream => assert_eq!(end.raw, "{\"end\":\"max-age\",\"reconnect\":true}\n", "{ctx}: NDJSON end"),
        T::Iframe => {
            assert!(end.raw.contains("\"end\":\"max-age\""), "{ctx}: iframe end script {:?}", end.raw);
            assert_eq!(end.json.as_ref(), Some(&want_json), "{ctx}: iframe end notice {:?}", end.raw);
            assert!(tail.contains("</html>"), "{ctx}: no </html> after the end script: tail {tail:?}");
        }
        T::Multipart => {
            assert_eq!(end.header("x-halley-end"), Some("max-age"), "{ctx}: {:?}", end.raw);
            assert!(end.raw.ends_with("\r\n--halley-part--\r\n"), "{ctx}: closing boundary: {:?}", end.raw);
        }
    }
    if t != T::Iframe {
        assert!(tail.trim().is_empty(), "{ctx}: bytes after the end notice: {tail:?}");
    }
    let others: Vec<&Item> =
        items.iter().filter(|i| !matches!(i.what, What::Msg | What::Preamble | What::End)).collect();
    assert!(others.is_empty(), "{ctx}: unexpected items (heartbeats are 25 s apart): {others:?}");
}

fn max_age_then_resume(t: T) {
    let server = Server::start(&["--max-stream-age-secs", "2"]);
    let channel = format!("age-{}", t.name());
    let mut first = Sub::open(&server, t, &sub_path(t, &channel, ""), &[]);
    let before: Vec<Sent> = (0..3).map(|i| publish(&server, &channel, &format!("before {i}"))).collect();
    let (items, tail) = first.rest();
    let lived = Instant::now() - first.head_at;
    assert!(first.ended, "{}: no terminating chunk", first.ctx);
    assert!(
        lived >= Duration::from_millis(1500),
        "{}: stream ended {lived:?} after the head, before --max-stream-age-secs 2",
        first.ctx
    );
    assert_max_age_end(&first.ctx, t, &items, &tail, &first.all);
    let msgs: Vec<Item> = items.iter().filter(|i| i.what == What::Msg).cloned().collect();
    assert_messages(&first.ctx, &msgs, &before);

    // Published while the client is away; it reconnects from the last it saw.
    let last = msgs.last().and_then(|m| m.id.clone()).expect("a last id");
    let meanwhile: Vec<Sent> =
        (0..3).map(|i| publish(&server, &channel, &format!("meanwhile {i}"))).collect();
    let mut second = Sub::open(&server, t, &sub_path(t, &channel, &format!("last_id={last}")), &[]);
    assert_eq!(
        second.header("x-halley-gap"),
        None,
        "{}: gap; headers {:?}",
        second.ctx,
        second.client.headers
    );
    let sentinel = publish(&server, &channel, "sentinel");
    // Everything up to the sentinel (or to this stream's own max-age end, on
    // a very slow machine) must be exactly the messages published meanwhile.
    let mut got = Vec::new();
    let start = Instant::now();
    loop {
        assert!(before_deadline(start), "{}: sentinel not received; got {got:?}", second.ctx);
        let Some(item) = second.next_item() else {
            panic!("{}: stream ended without an end notice; got {got:?}", second.ctx)
        };
        match item.what {
            What::Msg if item.id.as_deref() == Some(sentinel.id.as_str()) => break,
            What::Msg => got.push(item),
            What::End => {
                eprintln!("{}: stream reached its max age before the sentinel", second.ctx);
                break;
            }
            What::Preamble => {}
            _ => panic!("{}: unexpected {item:?}", second.ctx),
        }
    }
    assert_messages(&format!("{} (resumed after {last})", second.ctx), &got, &meanwhile);
}

#[test]
fn sse_ends_at_max_age_with_a_notice_and_resumes_from_last_id() {
    max_age_then_resume(T::Sse);
}

#[test]
fn stream_ends_at_max_age_with_a_notice_and_resumes_from_last_id() {
    max_age_then_resume(T::Stream);
}

#[test]
fn iframe_ends_at_max_age_with_a_notice_and_resumes_from_last_id() {
    max_age_then_resume(T::Iframe);
}

#[test]
fn multipart_ends_at_max_age_with_a_notice_and_resumes_from_last_id() {
    max_age_then_resume(T::Multipart);
}

// ---------------------------------------------------------------------------
// 5. CORS

/// The heads of an SSE, an NDJSON and a long-poll response for `channel`.
fn subscriber_heads(
    server: &Server,
    channel: &str,
    headers: &[(&str, &str)],
) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for t in [T::Sse, T::Stream] {
        let sub = Sub::open(server, t, &sub_path(t, channel, ""), headers);
        out.push((sub.ctx.clone(), sub.client.headers.clone()));
    }
    let path = format!("/sub/{channel}?transport=longpoll&timeout=0");
    let resp = request(server.public, "GET", &path, headers, b"");
    let ctx = format!("longpoll GET {path} {headers:?}");
    assert_eq!(resp.status, 200, "{ctx}: {}", resp.text());
    out.push((ctx, resp.headers));
    out
}

/// A CORS preflight for `/sub/ch`. A 204 has no body and no Content-Length,
/// so only the head is read; a second request on the same connection then
/// checks that nothing followed it.
fn preflight(server: &Server, origin: &str) -> Response {
    let headers = [
        ("Origin", origin),
        ("Access-Control-Request-Method", "GET"),
        ("Access-Control-Request-Headers", "last-event-id"),
    ];
    let ctx = format!("OPTIONS /sub/ch {headers:?}");
    let mut conn = HttpConn::new(server.public);
    conn.send(&format_request("OPTIONS", "/sub/ch", &headers, b""));
    let (status, response_headers) = conn.head();
    if status == 204 {
        conn.send(&format_request("GET", "/sub/ch?transport=longpoll&timeout=0", &[], b""));
        let next = conn.response();
        assert_eq!(
            next.status,
            200,
            "{ctx}: the request after the 204 on the same connection got {} {:?} (bytes after the 204?)",
            next.status,
            next.text()
        );
    }
    Response { status, headers: response_headers, body: Vec::new() }
}

#[test]
fn cors_default_allows_any_origin_and_exposes_the_gap_header() {
    let server = Server::start(&[]);
    for (ctx, headers) in subscriber_heads(&server, "cors", &[("Origin", "https://any.example")]) {
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"), "{ctx}: headers {headers:?}");
        assert!(
            lists(header(&headers, "access-control-expose-headers"), "X-Halley-Gap"),
            "{ctx}: Access-Control-Expose-Headers should list X-Halley-Gap; headers {headers:?}"
        );
    }
    let resp = preflight(&server, "https://any.example");
    let ctx = "OPTIONS /sub/ch (default policy)";
    assert_eq!(resp.status, 204, "{ctx}: headers {:?} body {:?}", resp.headers, resp.text());
    assert!(
        lists(resp.header("access-control-allow-methods"), "GET"),
        "{ctx}: Access-Control-Allow-Methods should list GET; headers {:?}",
        resp.headers
    );
    assert!(
        lists(resp.header("access-control-allow-headers"), "Last-Event-ID"),
        "{ctx}: Access-Control-Allow-Headers should list Last-Event-ID; headers {:?}",
        resp.headers
    );
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"), "{ctx}: headers {:?}", resp.headers);
}

#[test]
fn cors_origin_list_echoes_allowed_origins_only() {
    let server = Server::start(&["--cors-origins", "https://ok.example"]);
    for (ctx, headers) in subscriber_heads(&server, "cors", &[("Origin", "https://ok.example")]) {
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some("https://ok.example"),
            "{ctx}: the allowed origin should be echoed; headers {headers:?}"
        );
        assert!(lists(header(&headers, "vary"), "Origin"), "{ctx}: want Vary: Origin; headers {headers:?}");
        assert!(
            lists(header(&headers, "access-control-expose-headers"), "X-Halley-Gap"),
            "{ctx}: Access-Control-Expose-Headers; headers {headers:?}"
        );
    }
    for (ctx, headers) in subscriber_heads(&server, "cors", &[("Origin", "https://evil.example")]) {
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            None,
            "{ctx}: an origin not in the list must not be allowed; headers {headers:?}"
        );
    }

    let ok = preflight(&server, "https://ok.example");
    let ctx = "OPTIONS /sub/ch from https://ok.example";
    assert_eq!(ok.status, 204, "{ctx}: headers {:?}", ok.headers);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://ok.example"),
        "{ctx}: {:?}",
        ok.headers
    );
    assert!(lists(ok.header("access-control-allow-methods"), "GET"), "{ctx}: {:?}", ok.headers);
    assert!(lists(ok.header("access-control-allow-headers"), "Last-Event-ID"), "{ctx}: {:?}", ok.headers);

    let evil = preflight(&server, "https://evil.example");
    let ctx = "OPTIONS /sub/ch from https://evil.example";
    assert_eq!(evil.status, 204, "{ctx}: headers {:?}", evil.headers);
    assert_eq!(evil.header("access-control-allow-origin"), None, "{ctx}: headers {:?}", evil.headers);
}

#[test]
fn cors_off_sends_no_cors_headers_at_all() {
    let server = Server::start(&["--cors-origins", ""]);
    for (ctx, headers) in subscriber_heads(&server, "cors", &[("Origin", "https://any.example")]) {
        assert_no_cors(&ctx, &headers);
    }
    let resp = preflight(&server, "https://any.example");
    assert_no_cors("OPTIONS /sub/ch with --cors-origins \"\"", &resp.headers);
}

#[test]
fn ingest_port_never_sends_cors_headers() {
    let server = Server::start(&[]);
    let origin = [("Origin", "https://any.example")];
    let resp = request(server.ingest, "POST", "/pub/cors", &origin, b"x");
    assert_eq!(resp.status, 200, "POST /pub/cors: {}", resp.text());
    assert_no_cors("POST /pub/cors with Origin", &resp.headers);
    let resp = request(server.ingest, "GET", "/healthz", &origin, b"");
    assert_eq!(resp.status, 200, "GET /healthz: {}", resp.text());
    assert_no_cors("GET /healthz with Origin", &resp.headers);
    for (method, path) in [("OPTIONS", "/pub/cors"), ("OPTIONS", "/sub/cors"), ("GET", "/sub/cors")] {
        let headers = [("Origin", "https://any.example"), ("Access-Control-Request-Method", "POST")];
        let resp = request(server.ingest, method, path, &headers, b"");
        assert_no_cors(
            &format!("{method} {path} on the ingest port (status {})", resp.status),
            &resp.headers,
        );
    }
}
