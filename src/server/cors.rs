//! CORS for subscriber responses: which origins may read them from a page of
//! another origin (EventSource, XHR long-polls and fetch streams need it;
//! JSONP, iframes and WebSocket do not).

use std::sync::Arc;

/// Headers a page's script may read from a subscriber response.
pub const EXPOSE: &str = "X-Halley-Gap";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    /// No CORS headers at all.
    Off,
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// Echo the request's Origin when it is one of these.
    List(Vec<String>),
}

impl CorsPolicy {
    /// `*`, a comma-separated origin list, or empty for off.
    pub fn parse(setting: &str) -> CorsPolicy {
        let setting = setting.trim();
        if setting.is_empty() {
            return CorsPolicy::Off;
        }
        if setting == "*" {
            return CorsPolicy::Any;
        }
        let list = setting.split(',').map(|o| o.trim().trim_end_matches('/').to_string());
        CorsPolicy::List(list.filter(|o| !o.is_empty()).collect())
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`.
    pub fn allow(&self, origin: Option<&str>) -> Option<Arc<str>> {
        match self {
            CorsPolicy::Off => None,
            CorsPolicy::Any => Some(Arc::from("*")),
            CorsPolicy::List(list) => {
                let origin = origin?;
                list.iter().any(|o| o.eq_ignore_ascii_case(origin)).then(|| Arc::from(origin))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_origins() {
        let list = CorsPolicy::parse("https://a.example, https://b.example/");
        let cases: &[(&CorsPolicy, Option<&str>, Option<&str>)] = &[
            (&CorsPolicy::Any, Some("https://x"), Some("*")),
            (&CorsPolicy::Any, None, Some("*")),
            (&CorsPolicy::Off, Some("https://x"), None),
            (&list, Some("https://b.example"), Some("https://b.example")),
            (&list, Some("https://evil.example"), None),
            (&list, None, None),
        ];
        for (policy, origin, want) in cases {
            assert_eq!(policy.allow(*origin).as_deref(), *want, "{policy:?} {origin:?}");
        }
        assert_eq!(CorsPolicy::parse(""), CorsPolicy::Off);
        assert_eq!(CorsPolicy::parse("*"), CorsPolicy::Any);
    }
}
