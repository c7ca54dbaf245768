//! The Pushlet 2 protocol on `/pushlet/pushlet.srv` (and `/pushlet`), for
//! Pushlet-era pages and clients: sessions that join, subscribe to subjects
//! and listen in stream, pull or poll mode, in js, xml or xml-strict format.
//! Subjects are hub channels (`/news/sports` is `news/sports`).
//!
//! Rendering (`event`), request reading (`request`), answers (`reply`),
//! session state (`session`) and the session engine (`engine`, with its
//! delivery half in `engine/deliver.rs`) are pure; one Pushlet thread
//! (`thread`) owns every session, as the Bayeux thread does, so a client's
//! requests may land on any event loop.

pub mod engine;
pub mod event;
mod reply;
mod request;
mod session;
pub mod thread;

use crate::http::query;

/// The most fields one request may carry: Pushlet events are a handful of
/// attributes; the bound keeps one request cheap.
pub const MAX_FIELDS: usize = 64;

/// The fields of a request: query parameters, then a POST body's, which is
/// either form-encoded or the original protocol's single `<event …/>` tag.
/// First value of each name wins, as in the original servlet.
pub fn request_fields(query_string: &str, body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let add = |name: String, value: String, fields: &mut Vec<(String, String)>| {
        if !fields.iter().any(|(n, _)| *n == name) {
            fields.push((name, value));
        }
    };
    for (name, value) in query::params(query_string) {
        add(name, value, &mut fields);
    }
    let body = std::str::from_utf8(body).map_err(|_| "request body is not UTF-8".to_string())?;
    let trimmed = body.trim_start();
    if trimmed.starts_with('<') {
        for (name, value) in xml_event(trimmed)? {
            add(name, value, &mut fields);
        }
    } else if !trimmed.is_empty() {
        query::validate(trimmed.trim_end()).map_err(|e| e.reason())?;
        for (name, value) in query::params(trimmed.trim_end()) {
            add(name, value, &mut fields);
        }
    }
    if fields.len() > MAX_FIELDS {
        return Err(format!("{} fields in one request; the limit is {MAX_FIELDS}", fields.len()));
    }
    Ok(fields)
}

/// Parses `<event name="value" … />`: attribute values in double quotes,
/// `&lt;` `&gt;` `&quot;` `&apos;` `&amp;` and numeric references decoded.
fn xml_event(text: &str) -> Result<Vec<(String, String)>, String> {
    let bad = |why: &str| format!("malformed <event> body: {why}");
    let inner = text.strip_prefix('<').ok_or_else(|| bad("expected '<'"))?;
    let end = inner.find('>').ok_or_else(|| bad("no closing '>'"))?;
    let inner = inner[..end].trim_end().trim_end_matches('/');
    let mut rest = inner.trim_start();
    // The tag name (`event`), then attributes.
    rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let mut fields = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(fields);
        }
        let eq = rest.find('=').ok_or_else(|| bad("attribute without '='"))?;
        let name = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let value_text =
            after.strip_prefix('"').ok_or_else(|| bad("attribute value not in double quotes"))?;
        let close = value_text.find('"').ok_or_else(|| bad("unterminated attribute value"))?;
        fields.push((name, unescape_xml(&value_text[..close])));
        rest = &value_text[close + 1..];
        if fields.len() > MAX_FIELDS {
            return Err(bad("too many attributes"));
        }
    }
}

fn unescape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(semi) = tail.find(';').filter(|s| *s <= 10) else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "amp" => Some('&'),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_from_query_form_and_xml() {
        let got = request_fields("p_event=join&p_format=xml-strict", b"").unwrap();
        assert_eq!(got, vec![("p_event".into(), "join".into()), ("p_format".into(), "xml-strict".into())]);
        let form = request_fields("p_id=abc", b"p_event=publish&p_subject=%2Fnews&msg=hi+there").unwrap();
        assert_eq!(form[1], ("p_event".into(), "publish".into()));
        assert_eq!(form[3], ("msg".into(), "hi there".into()));
        let xml = request_fields(
            "",
            br#"<event p_event="publish" p_subject="/a" msg="x &lt;y&gt; &amp; &#65;" />"#,
        )
        .unwrap();
        assert_eq!(xml[2], ("msg".into(), "x <y> & A".into()));
        assert!(request_fields("", b"<event p_event=join").unwrap_err().contains("malformed"));
        assert!(request_fields("", b"<event p_event=join>").unwrap_err().contains("double quotes"));
        assert!(request_fields("", &[0xff]).is_err());
        let many: String = (0..70).map(|i| format!("f{i}=1&")).collect();
        assert!(request_fields(&many, b"").unwrap_err().contains("limit"));
    }
}
