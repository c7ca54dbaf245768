//! Bayeux channel names: `/segment/segment`, meta (`/meta/…`), service
//! (`/service/…`) and broadcast channels, wildcards `/a/*` (one segment) and
//! `/a/**` (any depth), and the mapping to hub channels (`/a/b` is `a/b`).

use crate::hub::validate_channel;

/// Why a Bayeux channel name is refused (the text of a `400::` error).
pub fn check(name: &str) -> Result<(), String> {
    let Some(rest) = name.strip_prefix('/') else {
        return Err(format!("channel '{}' must start with /", short(name)));
    };
    if rest.is_empty() || rest.split('/').any(str::is_empty) {
        return Err(format!("channel '{}' has an empty segment", short(name)));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if (*seg == "*" || *seg == "**") && !last {
            return Err(format!("channel '{}': a wildcard may only be the last segment", short(name)));
        }
    }
    Ok(())
}

pub fn is_meta(name: &str) -> bool {
    name.starts_with("/meta/")
}

pub fn is_service(name: &str) -> bool {
    name == "/service" || name.starts_with("/service/")
}

pub fn is_wildcard(name: &str) -> bool {
    name.ends_with("/*") || name.ends_with("/**")
}

/// Whether `pattern` (a channel or a wildcard) matches the concrete `channel`.
pub fn matches(pattern: &str, channel: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix("/**") {
        return channel.len() > prefix.len() + 1
            && channel.starts_with(prefix)
            && channel.as_bytes().get(prefix.len()) == Some(&b'/');
    }
    if let Some(prefix) = pattern.strip_suffix("/*") {
        return match channel.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
            Some(last) => !last.is_empty() && !last.contains('/'),
            None => false,
        };
    }
    pattern == channel
}

/// The hub channel of a concrete broadcast channel, if its name fits the hub's rules.
pub fn to_hub(name: &str) -> Result<&str, String> {
    let hub = name.strip_prefix('/').unwrap_or(name);
    validate_channel(hub).map_err(|e| format!("channel '{}' cannot be published: {e}", short(name)))?;
    Ok(hub)
}

/// The Bayeux channel of a hub channel.
pub fn from_hub(hub: &str) -> String {
    format!("/{hub}")
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_wildcards() {
        let cases: &[(&str, &str, bool)] = &[
            ("/a/b", "/a/b", true),
            ("/a/b", "/a/c", false),
            ("/a/*", "/a/b", true),
            ("/a/*", "/a/b/c", false),
            ("/a/*", "/a", false),
            ("/a/*", "/ab/c", false),
            ("/a/**", "/a/b", true),
            ("/a/**", "/a/b/c", true),
            ("/a/**", "/a", false),
            ("/a/**", "/ab/c", false),
            ("/**", "/x/y", true),
            ("/*", "/x", true),
            ("/*", "/x/y", false),
        ];
        for (pattern, channel, want) in cases {
            assert_eq!(matches(pattern, channel), *want, "{pattern} vs {channel}");
        }
    }

    #[test]
    fn checks_names() {
        for ok in ["/a", "/a/b", "/a/*", "/a/**", "/meta/connect", "/service/x"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "/", "/a//b", "/a/", "/*/b", "/a/**/c"] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert_eq!(to_hub("/chat/room"), Ok("chat/room"));
        assert!(to_hub("/chat room").is_err());
        assert_eq!(from_hub("a/b"), "/a/b");
        assert!(is_meta("/meta/handshake") && !is_meta("/metax"));
        assert!(is_service("/service/echo") && !is_service("/services"));
        assert!(is_wildcard("/a/*") && is_wildcard("/a/**") && !is_wildcard("/a/b"));
    }
}
