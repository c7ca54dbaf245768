//! Channel patterns: how a protocol engine subscribes to many channels at
//! once (Bayeux `/a/*` and `/a/**`, Pushlet subject prefixes), so that the
//! fan-out thread sends it only the messages it needs and counts it.

/// A set of hub channels, by name. Hub names have no leading `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Channels one segment below `parent` (`a/*`: `a/b`, not `a/b/c`);
    /// an empty parent means the top-level channels.
    Children(Box<str>),
    /// Channels any depth below `parent` (`a/**`); empty means every channel.
    Descendants(Box<str>),
    /// Channels whose name starts with these bytes (Pushlet's subject rule:
    /// `news` matches `news`, `news/sports` and `newsroom`).
    Prefix(Box<str>),
}

impl Pattern {
    pub fn matches(&self, channel: &str) -> bool {
        if super::is_internal(channel) {
            return false;
        }
        match self {
            Pattern::Children(parent) => match below(parent, channel) {
                Some(rest) => !rest.is_empty() && !rest.contains('/'),
                None => false,
            },
            Pattern::Descendants(parent) => below(parent, channel).is_some_and(|rest| !rest.is_empty()),
            Pattern::Prefix(prefix) => channel.starts_with(&**prefix),
        }
    }
}

/// What follows `parent/` in `channel` (all of it for the empty parent).
fn below<'a>(parent: &str, channel: &'a str) -> Option<&'a str> {
    if parent.is_empty() {
        return Some(channel);
    }
    channel.strip_prefix(parent)?.strip_prefix('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_bayeux_and_pushlet() {
        let cases: &[(Pattern, &str, bool)] = &[
            (Pattern::Children("a".into()), "a/b", true),
            (Pattern::Children("a".into()), "a/b/c", false),
            (Pattern::Children("a".into()), "a", false),
            (Pattern::Children("a".into()), "ab/c", false),
            (Pattern::Children("".into()), "top", true),
            (Pattern::Children("".into()), "top/x", false),
            (Pattern::Descendants("a".into()), "a/b/c", true),
            (Pattern::Descendants("a".into()), "a", false),
            (Pattern::Descendants("a".into()), "ab", false),
            (Pattern::Descendants("".into()), "x/y", true),
            (Pattern::Prefix("news".into()), "newsroom", true),
            (Pattern::Prefix("news".into()), "new", false),
            (Pattern::Prefix("".into()), "anything", true),
            (Pattern::Prefix("".into()), "/halley/stats", false),
            (Pattern::Descendants("".into()), "/halley/stats", false),
        ];
        for (pattern, channel, want) in cases {
            assert_eq!(pattern.matches(channel), *want, "{pattern:?} ~ {channel}");
        }
    }
}
