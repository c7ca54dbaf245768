//! Pushlet events and their three wire formats (`js`, `xml`, `xml-strict`).
//!
//! An [`Event`] is an ordered list of fields, `p_event` first. Rendering is
//! pure and total: any event renders to bytes that cannot break out of their
//! document, whatever its values hold. Unlike Pushlet 2.0.x, which wrote `js`
//! and `xml` values raw, every value is escaped in every format.
//!
//! Field names are rendered only when they are safe as both XML attribute
//! names and (quoted) JavaScript strings ([`valid_name`]); a field with an
//! unsafe name, or a repeat of a name already rendered, is left out, because
//! a duplicate or namespaced attribute makes a whole XML document unreadable.

/// Ordered fields; `p_event` first.
pub type Event = Vec<(String, String)>;

/// The longest field name rendered (`[A-Za-z_][A-Za-z0-9_.-]{0,63}`).
pub const MAX_NAME_LEN: usize = 64;

/// Where a page whose refresh event carries no usable `p_wait` waits (ms).
const DEFAULT_WAIT_MS: u64 = 0;

/// A response format, fixed per session at join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// HTML for a hidden iframe: one `parent.push(...)` script per event.
    Js,
    /// `<event …/>` elements with no document around them (`text/plain`).
    Xml,
    /// A `<pushlet>` document of `<event …/>` elements (`text/xml`).
    XmlStrict,
}

impl Format {
    /// Reads a `p_format` value. `ser` (Java serialization) is refused by
    /// name; the error text is the `nack` reason.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "js" => Ok(Format::Js),
            "xml" => Ok(Format::Xml),
            "xml-strict" => Ok(Format::XmlStrict),
            "ser" => {
                Err("format ser (Java serialization) is not supported; use js, xml or xml-strict".into())
            }
            other => Err(format!("unknown format '{}'; use js, xml or xml-strict", clip(other))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Js => "text/html;charset=UTF-8",
            Format::Xml => "text/plain;charset=UTF-8",
            Format::XmlStrict => "text/xml;charset=UTF-8",
        }
    }

    /// The `p_format` value naming this format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Js => "js",
            Format::Xml => "xml",
            Format::XmlStrict => "xml-strict",
        }
    }
}

/// User text echoed in a reason, cut to 64 characters so an answer stays small.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", s.get(..at).unwrap_or_default()),
        None => s.to_string(),
    }
}

/// Whether `name` may be a field name on the wire:
/// `[A-Za-z_][A-Za-z0-9_.-]{0,63}`, not starting with `xml` in any case.
///
/// This is the brief's `[A-Za-z_][A-Za-z0-9_.:-]{0,63}` without `:`: browsers
/// parse `text/xml` with namespaces, and an attribute like `a:b` (unbound
/// prefix) makes the whole response a parse error for every listener. Names
/// starting with `xml` are reserved by XML (`xmlns` would declare namespaces).
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    let reserved = bytes.len() >= 3 && bytes.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(b"xml"));
    bytes.len() <= MAX_NAME_LEN
        && (first.is_ascii_alphabetic() || *first == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !reserved
}

/// The value of the first field called `name`.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The fields that are rendered: valid names, each name once (first wins).
fn renderable(event: &Event) -> impl Iterator<Item = (&str, &str)> {
    event.iter().enumerate().filter_map(move |(i, (name, value))| {
        let repeated = event.iter().take(i).any(|(earlier, _)| earlier == name);
        (valid_name(name) && !repeated).then_some((name.as_str(), value.as_str()))
    })
}

/// Whether this event is a `refresh`, which in `js` ends the page.
fn is_refresh(event: &Event) -> bool {
    field(event, "p_event") == Some("refresh")
}

const JS_PROLOGUE: &str = concat!(
    r#"<html><head><meta http-equiv="Pragma" content="no-cache">"#,
    r#"<meta http-equiv="Expires" content="Tue, 31 Dec 1997 23:59:59 GMT"></head><body>"#,
    "\n",
    r#"<script language="JavaScript"> var url=" "; "#,
    "\n",
    r#"function refresh() { document.location.href=url; }</script>"#,
);

/// The bytes that open a response: Pushlet's iframe page head (`js`),
/// nothing (`xml`), or `<pushlet>` (`xml-strict`).
pub fn render_start(format: Format) -> Vec<u8> {
    match format {
        Format::Js => JS_PROLOGUE.as_bytes().to_vec(),
        Format::Xml => Vec::new(),
        Format::XmlStrict => b"<pushlet>".to_vec(),
    }
}

/// One event. In `js` a `refresh` event becomes the script that navigates
/// the iframe to `p_url` after `p_wait` ms, and it closes the page (so no
/// [`render_end`] follows it; [`render_document`] knows this).
pub fn render_event(format: Format, event: &Event) -> Vec<u8> {
    match format {
        Format::Js if is_refresh(event) => js_refresh(event).into_bytes(),
        Format::Js => js_push(event).into_bytes(),
        Format::Xml | Format::XmlStrict => xml_element(event).into_bytes(),
    }
}

/// The bytes that close a response: `</body></html>` (`js`), nothing
/// (`xml`), `</pushlet>` (`xml-strict`).
pub fn render_end(format: Format) -> Vec<u8> {
    match format {
        Format::Js => b"</body></html>".to_vec(),
        Format::Xml => Vec::new(),
        Format::XmlStrict => b"</pushlet>".to_vec(),
    }
}

/// A whole response: start, the events, end — except that a `js` page whose
/// last event is a `refresh` is already closed by it.
pub fn render_document(format: Format, events: &[Event]) -> Vec<u8> {
    let mut body = render_start(format);
    for event in events {
        body.extend(render_event(format, event));
    }
    let closed = format == Format::Js && events.last().is_some_and(is_refresh);
    if !closed {
        body.extend(render_end(format));
    }
    body
}

/// `<script language="JavaScript">parent.push('n1', "v1",'n2', "v2");</script>`:
/// Pushlet's shape (names single-quoted, values double-quoted, `, ` within a
/// pair and `,` between pairs), every string escaped by [`js_string`].
fn js_push(event: &Event) -> String {
    let pairs: Vec<String> = renderable(event)
        .map(|(name, value)| format!("'{}', \"{}\"", js_string(name), js_string(value)))
        .collect();
    format!("<script language=\"JavaScript\">parent.push({});</script>", pairs.join(","))
}

/// Pushlet's refresh script, with `p_url` escaped and `p_wait` a plain
/// number (a missing or non-numeric `p_wait` waits 0 ms).
fn js_refresh(event: &Event) -> String {
    let url = field(event, "p_url").unwrap_or_default();
    let wait = field(event, "p_wait").and_then(|w| w.parse::<u64>().ok()).unwrap_or(DEFAULT_WAIT_MS);
    format!(
        "\n<script language=\"JavaScript\">url='{}';\n setTimeout(\"refresh()\", {wait});\n</script></body></html>",
        js_string(url)
    )
}

/// Escapes `s` for the inside of a JavaScript string literal in either
/// quote style, inside an HTML `<script>` element: backslash, both quotes,
/// line terminators (including U+2028/U+2029) and other control characters
/// are escaped, and `<` becomes `\x3C`, so neither `</script>` nor `<!--`
/// can appear in the output and the literal always ends where we end it.
pub fn js_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '<' => out.push_str("\\x3C"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if c.is_control() && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `<event n1="v1" n2="v2" />`: each attribute followed by one space, as
/// Pushlet wrote it; values escaped by [`xml_attr`].
fn xml_element(event: &Event) -> String {
    let mut out = String::from("<event ");
    for (name, value) in renderable(event) {
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(&xml_attr(value));
        out.push_str("\" ");
    }
    out.push_str("/>");
    out
}

/// Escapes an attribute value: Pushlet's `forHTMLTag` table (`<` `>` `"` `'`
/// `\` `&`), then control characters as `&#N;` — tab, newline and carriage
/// return (kept through attribute normalization) and DEL/C1. XML 1.0 cannot
/// carry the other C0 controls or U+FFFE/U+FFFF even as references (a
/// parser rejects the document), so those become U+FFFD.
pub fn xml_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#039;"),
            '\\' => out.push_str("&#092;"),
            '&' => out.push_str("&amp;"),
            '\t' | '\n' | '\r' | '\u{7f}'..='\u{9f}' => out.push_str(&format!("&#{};", c as u32)),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ev(fields: &[(&str, &str)]) -> Event {
        fields.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// Decodes a JavaScript string literal's body (what `js_string` may
    /// produce), failing on anything that would end or break the literal.
    fn js_unescape(body: &str, quote: char) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let e = chars.next().ok_or("dangling backslash")?;
                    match e {
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        '\\' | '\'' | '"' => out.push(e),
                        'x' | 'u' => {
                            let n = if e == 'x' { 2 } else { 4 };
                            let hex: String = chars.by_ref().take(n).collect();
                            let code =
                                u32::from_str_radix(&hex, 16).map_err(|_| format!("bad \\{e}{hex}"))?;
                            out.push(char::from_u32(code).ok_or("bad code point")?);
                        }
                        other => return Err(format!("unexpected escape \\{other}")),
                    }
                }
                c if c == quote => return Err("unescaped quote inside a literal".into()),
                '\n' | '\r' | '\u{2028}' | '\u{2029}' => {
                    return Err("raw line terminator in a literal".into())
                }
                c => out.push(c),
            }
        }
        Ok(out)
    }

    /// Reads the literals of `parent.push(...)`: quoted strings separated by
    /// `,` and spaces.
    fn js_arguments(args: &str) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        let mut rest = args.trim_start_matches([',', ' ']);
        while !rest.is_empty() {
            let quote = rest.chars().next().ok_or("empty")?;
            if quote != '\'' && quote != '"' {
                return Err(format!("expected a quote at {rest:?}"));
            }
            let body = &rest[1..];
            let mut end = None;
            let mut escaped = false;
            for (i, c) in body.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    c if c == quote => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unterminated literal")?;
            values.push(js_unescape(&body[..end], quote)?);
            rest = body[end + 1..].trim_start_matches([',', ' ']);
        }
        Ok(values)
    }

    /// Decodes an XML attribute value as a parser would, refusing raw
    /// characters that `xml_attr` must have escaped.
    fn xml_unescape(value: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = value;
        while let Some(c) = rest.chars().next() {
            if c == '&' {
                let semi = rest.find(';').ok_or("unterminated reference")?;
                let name = &rest[1..semi];
                out.push(match name {
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "amp" => '&',
                    "apos" => '\'',
                    _ => {
                        let n: u32 = name
                            .strip_prefix('#')
                            .ok_or("unknown entity")?
                            .parse()
                            .map_err(|_| "bad number")?;
                        if n < 0x20 && ![9, 10, 13].contains(&n) {
                            return Err(format!("&#{n}; is not allowed in XML 1.0"));
                        }
                        char::from_u32(n).ok_or("bad code point")?
                    }
                });
                rest = &rest[semi + 1..];
            } else {
                if c == '<' || c == '"' || ((c as u32) < 0x20) || c == '\u{fffe}' || c == '\u{ffff}' {
                    return Err(format!("raw {c:?} in an attribute value"));
                }
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        Ok(out)
    }

    /// Reads `<event n="v" … />` elements back, in order.
    fn xml_events(mut text: &str) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        loop {
            text = text.trim_start();
            if text.is_empty() {
                return Ok(events);
            }
            let mut rest =
                text.strip_prefix("<event ").ok_or_else(|| format!("expected <event at {text:?}"))?;
            let mut event = Event::new();
            loop {
                if let Some(after) = rest.strip_prefix("/>") {
                    text = after;
                    break;
                }
                let eq = rest.find("=\"").ok_or("attribute without =\"")?;
                let name = &rest[..eq];
                if !valid_name(name) {
                    return Err(format!("invalid attribute name {name:?}"));
                }
                if event.iter().any(|(n, _)| n == name) {
                    return Err(format!("duplicate attribute {name}"));
                }
                let value_start = &rest[eq + 2..];
                let close = value_start.find('"').ok_or("unterminated value")?;
                event.push((name.to_string(), xml_unescape(&value_start[..close])?));
                rest = value_start[close + 1..].strip_prefix(' ').ok_or("no space after attribute")?;
            }
            events.push(event);
        }
    }

    /// Decodes a response (or part of one) in `format` back into events,
    /// checking that nothing broke out of its place. A `js` refresh script
    /// reads as a `refresh` event with `p_url` and `p_wait`.
    pub(crate) fn decode(format: Format, bytes: &[u8]) -> Result<Vec<Event>, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        match format {
            Format::Xml => xml_events(text),
            Format::XmlStrict => {
                let text = text.strip_prefix("<pushlet>").unwrap_or(text);
                let text = text.strip_suffix("</pushlet>").unwrap_or(text);
                if text.contains("<pushlet>") || text.contains("</pushlet>") {
                    return Err("nested document".into());
                }
                xml_events(text)
            }
            Format::Js => decode_js(text),
        }
    }

    fn decode_js(text: &str) -> Result<Vec<Event>, String> {
        let mut rest = text.strip_prefix(JS_PROLOGUE).unwrap_or(text);
        let mut events = Vec::new();
        if rest.contains("<!--") {
            return Err("<!-- in a page".into());
        }
        loop {
            if rest.is_empty() || rest == "</body></html>" {
                return Ok(events);
            }
            if let Some(after) = rest.strip_prefix("<script language=\"JavaScript\">parent.push(") {
                let end = after.find(");</script>").ok_or("unterminated push script")?;
                let args = js_arguments(&after[..end])?;
                if args.len() % 2 != 0 {
                    return Err("odd number of push arguments".into());
                }
                events.push(args.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect());
                rest = &after[end + ");</script>".len()..];
            } else if let Some(after) = rest.strip_prefix("\n<script language=\"JavaScript\">url='") {
                let end = after.find("';\n setTimeout(\"refresh()\", ").ok_or("bad refresh script")?;
                let url = js_unescape(&after[..end], '\'')?;
                let after = &after[end + "';\n setTimeout(\"refresh()\", ".len()..];
                let close = after.find(");\n</script></body></html>").ok_or("bad refresh end")?;
                let wait = &after[..close];
                if !wait.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("p_wait {wait:?} is not a number"));
                }
                events.push(ev(&[("p_event", "refresh"), ("p_url", &url), ("p_wait", wait)]));
                rest = &after[close + ");\n</script></body></html>".len()..];
                if !rest.is_empty() {
                    return Err("bytes after the refresh script".into());
                }
            } else {
                return Err(format!("unexpected page text {rest:?}"));
            }
        }
    }

    #[test]
    fn parses_formats() {
        let ser = "format ser (Java serialization) is not supported; use js, xml or xml-strict";
        let cases: &[(&str, Result<Format, &str>)] = &[
            ("js", Ok(Format::Js)),
            ("xml", Ok(Format::Xml)),
            ("xml-strict", Ok(Format::XmlStrict)),
            ("ser", Err(ser)),
            ("json", Err("unknown format 'json'; use js, xml or xml-strict")),
            ("", Err("unknown format ''; use js, xml or xml-strict")),
            ("XML", Err("unknown format 'XML'; use js, xml or xml-strict")),
        ];
        for (text, want) in cases {
            assert_eq!(Format::parse(text), want.map_err(str::to_string), "parsing {text:?}");
        }
        let long = "x".repeat(100);
        let reason = Format::parse(&long).unwrap_err();
        assert!(reason.len() < 120, "echo is clipped: {reason}");
        for (format, name, content_type) in [
            (Format::Js, "js", "text/html;charset=UTF-8"),
            (Format::Xml, "xml", "text/plain;charset=UTF-8"),
            (Format::XmlStrict, "xml-strict", "text/xml;charset=UTF-8"),
        ] {
            assert_eq!(format.name(), name);
            assert_eq!(format.content_type(), content_type);
            assert_eq!(Format::parse(name), Ok(format));
        }
    }

    #[test]
    fn validates_names() {
        let long = format!("a{}", "b".repeat(63));
        let too_long = format!("a{}", "b".repeat(64));
        let cases: &[(&str, bool)] = &[
            ("p_event", true),
            ("msg", true),
            ("_x", true),
            ("a.b-c_9", true),
            (&long, true),
            (&too_long, false),
            ("", false),
            ("9a", false),
            ("-a", false),
            ("a b", false),
            ("a:b", false),
            ("xmlns", false),
            ("XmlThing", false),
            ("xm", true),
            ("a\"b", false),
            ("caf\u{e9}", false),
            ("a=b", false),
        ];
        for (name, want) in cases {
            assert_eq!(valid_name(name), *want, "{name:?}");
        }
    }

    #[test]
    fn renders_exact_bytes() {
        let small = ev(&[("p_event", "data"), ("p_subject", "/a"), ("msg", "hi")]);
        let hostile = ev(&[("p_event", "data"), ("msg", "a\"b'c\\d</script><!--&e\nf\u{2028}g>")]);
        let cases: &[(Format, &Event, &str)] = &[
            (
                Format::Js,
                &small,
                r#"<script language="JavaScript">parent.push('p_event', "data",'p_subject', "/a",'msg', "hi");</script>"#,
            ),
            (Format::Xml, &small, r#"<event p_event="data" p_subject="/a" msg="hi" />"#),
            (Format::XmlStrict, &small, r#"<event p_event="data" p_subject="/a" msg="hi" />"#),
            (
                Format::Js,
                &hostile,
                concat!(
                    r#"<script language="JavaScript">parent.push('p_event', "data",'msg', "#,
                    r#""a\"b\'c\\d\x3C/script>\x3C!--&e\nf\u2028g>");</script>"#
                ),
            ),
            (
                Format::XmlStrict,
                &hostile,
                "<event p_event=\"data\" msg=\"a&quot;b&#039;c&#092;d&lt;/script&gt;&lt;!--&amp;e&#10;f\u{2028}g&gt;\" />",
            ),
        ];
        for (format, event, want) in cases {
            let got = String::from_utf8(render_event(*format, event)).unwrap();
            assert_eq!(got, *want, "{format:?}");
            assert_eq!(
                decode(*format, got.as_bytes()).unwrap(),
                vec![(*event).clone()],
                "{format:?} round trip"
            );
        }
    }

    #[test]
    fn documents_open_and_close() {
        assert_eq!(render_start(Format::Js), JS_PROLOGUE.as_bytes());
        assert_eq!(
            JS_PROLOGUE,
            "<html><head><meta http-equiv=\"Pragma\" content=\"no-cache\"><meta http-equiv=\"Expires\" \
             content=\"Tue, 31 Dec 1997 23:59:59 GMT\"></head><body>\n<script language=\"JavaScript\"> \
             var url=\" \"; \nfunction refresh() { document.location.href=url; }</script>"
        );
        let ack = ev(&[("p_event", "hb-ack"), ("p_time", "5")]);
        let cases: &[(Format, &str)] = &[
            (Format::Xml, r#"<event p_event="hb-ack" p_time="5" />"#),
            (Format::XmlStrict, r#"<pushlet><event p_event="hb-ack" p_time="5" /></pushlet>"#),
        ];
        for (format, want) in cases {
            assert_eq!(
                String::from_utf8(render_document(*format, std::slice::from_ref(&ack))).unwrap(),
                *want
            );
        }
        let js = String::from_utf8(render_document(Format::Js, std::slice::from_ref(&ack))).unwrap();
        assert!(js.starts_with(JS_PROLOGUE) && js.ends_with("</script></body></html>"), "{js}");
        assert_eq!(render_document(Format::XmlStrict, &[]), b"<pushlet></pushlet>");
        assert_eq!(render_end(Format::Xml), b"");
    }

    #[test]
    fn js_refresh_navigates_and_ends_the_page() {
        let refresh = ev(&[
            ("p_event", "refresh"),
            ("p_time", "1"),
            ("p_wait", "3000"),
            ("p_url", "/p?p_id=x&p_event=refresh"),
        ]);
        let want = "\n<script language=\"JavaScript\">url='/p?p_id=x&p_event=refresh';\n setTimeout(\"refresh()\", 3000);\n</script></body></html>";
        assert_eq!(String::from_utf8(render_event(Format::Js, &refresh)).unwrap(), want);
        let page = render_document(Format::Js, &[ev(&[("p_event", "refresh-ack")]), refresh.clone()]);
        assert!(String::from_utf8(page.clone()).unwrap().ends_with(want), "no second </html>");
        assert_eq!(decode(Format::Js, &page).unwrap().len(), 2);
        // Hostile url and wait: escaped, and the wait stays a number.
        let evil =
            ev(&[("p_event", "refresh"), ("p_wait", "1);alert(1"), ("p_url", "';alert(1)//</script>")]);
        let got = String::from_utf8(render_event(Format::Js, &evil)).unwrap();
        assert!(
            got.contains(r"url='\';alert(1)//\x3C/script>';") && got.contains("\"refresh()\", 0);"),
            "{got}"
        );
        let back = decode(Format::Js, got.as_bytes()).unwrap();
        assert_eq!(field(&back[0], "p_url"), Some("';alert(1)//</script>"));
        // In XML a refresh is an ordinary element; `&` in p_url is escaped.
        let xml = String::from_utf8(render_event(Format::XmlStrict, &refresh)).unwrap();
        assert!(xml.contains(r#"p_url="/p?p_id=x&amp;p_event=refresh""#), "{xml}");
    }

    #[test]
    fn hostile_values_round_trip_in_every_format() {
        let values = [
            "plain",
            "",
            "\"double\" 'single' \\back\\",
            "</script><script>alert(1)</script>",
            "<!-- comment --> <![CDATA[x]]>",
            "a & b &amp; &#60; &lt;",
            "line\nbreak\r\nand\ttab",
            "sep\u{2028}ara\u{2029}tors",
            "\u{7f}\u{85}\u{9f} c1",
            "caf\u{e9} \u{1f600} \u{fffd}",
            "')+alert(1)+('",
            "\");alert(1);//",
        ];
        for format in [Format::Js, Format::Xml, Format::XmlStrict] {
            for value in values {
                let event = ev(&[("p_event", "data"), ("v", value)]);
                let bytes = render_document(format, std::slice::from_ref(&event));
                let text = String::from_utf8(bytes.clone()).unwrap();
                if format == Format::Js {
                    let scripts = text.matches("</script>").count();
                    assert_eq!(scripts, 2, "only our own script ends: {text}");
                    assert!(!text.contains("<!--"), "{text}");
                }
                assert_eq!(decode(format, &bytes).unwrap(), vec![event], "{format:?} {value:?}");
            }
        }
    }

    #[test]
    fn unrepresentable_characters_and_names() {
        let event = ev(&[("p_event", "data"), ("v", "a\u{0}b\u{1b}c\u{fffe}")]);
        let xml = String::from_utf8(render_event(Format::XmlStrict, &event)).unwrap();
        assert_eq!(xml, "<event p_event=\"data\" v=\"a\u{fffd}b\u{fffd}c\u{fffd}\" />");
        let js = String::from_utf8(render_event(Format::Js, &event)).unwrap();
        assert!(js.contains(r#""a\x00b\x1Bc"#), "{js}");
        assert_eq!(
            field(&decode(Format::Js, js.as_bytes()).unwrap()[0], "v"),
            Some("a\u{0}b\u{1b}c\u{fffe}")
        );
        // Invalid and repeated names are left out, in every format.
        let messy =
            ev(&[("p_event", "data"), ("a:b", "1"), ("bad name", "2"), ("ok", "3"), ("ok", "4"), ("", "5")]);
        for format in [Format::Js, Format::Xml, Format::XmlStrict] {
            let back = decode(format, &render_event(format, &messy)).unwrap();
            assert_eq!(back, vec![ev(&[("p_event", "data"), ("ok", "3")])], "{format:?}");
        }
    }

    #[test]
    fn clips_echoed_text() {
        assert_eq!(clip("short"), "short");
        let long: String = "\u{e9}".repeat(70);
        assert_eq!(clip(&long).chars().count(), 65);
    }
}
