//! Placeholder until the Pushlet renderers land.

pub type Event = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Js,
    Xml,
    XmlStrict,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        "text/xml;charset=UTF-8"
    }
}

pub fn render_start(_format: Format) -> Vec<u8> {
    b"<pushlet>".to_vec()
}

pub fn render_event(_format: Format, event: &Event) -> Vec<u8> {
    let mut out = b"<event".to_vec();
    for (n, v) in event {
        out.extend(
            format!(" {n}=\"{}\"", v.replace('&', "&amp;").replace('<', "&lt;").replace('"', "&quot;"))
                .bytes(),
        );
    }
    out.extend(b" />");
    out
}

pub fn render_end(_format: Format) -> Vec<u8> {
    b"</pushlet>".to_vec()
}
