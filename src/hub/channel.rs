//! Channel names: 1 to 128 bytes of `A-Z a-z 0-9 _ - . : @ /`, not starting with `/`.

use std::fmt;
use std::sync::Arc;

/// The longest channel name. Long enough for `tenant:room/sub-topic@v2` shapes,
/// short enough that names never dominate per-message memory.
pub const MAX_CHANNEL_BYTES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    Empty,
    TooLong(usize),
    LeadingSlash,
    BadByte(u8),
    TooMany { given: usize, limit: usize },
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RULE: &str = "a channel name is 1 to 128 bytes of A-Z a-z 0-9 _ - . : @ /, not starting with /";
        match self {
            ChannelError::Empty => write!(f, "empty channel name; {RULE}"),
            ChannelError::TooLong(n) => write!(f, "channel name is {n} bytes; {RULE}"),
            ChannelError::LeadingSlash => write!(f, "channel name starts with /; {RULE}"),
            ChannelError::BadByte(b) if b.is_ascii_graphic() || *b == b' ' => {
                write!(f, "channel name contains '{}'; {RULE}", *b as char)
            }
            ChannelError::BadByte(b) => write!(f, "channel name contains byte 0x{b:02x}; {RULE}"),
            ChannelError::TooMany { given, limit } => {
                write!(f, "{given} channels in one subscription; the limit is {limit}")
            }
        }
    }
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@' | b'/')
}

/// Whether `name` is one of the node's own channels (the dashboard's stats
/// stream). Their names start with `/`, which no client can name: every
/// path in validates names, and Bayeux strips its leading `/`. They match no
/// engine pattern, so no wildcard or prefix subscription takes them in.
pub fn is_internal(name: &str) -> bool {
    name.starts_with('/')
}

/// Checks one channel name against the rule above.
pub fn validate_channel(name: &str) -> Result<(), ChannelError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(ChannelError::Empty);
    }
    if bytes.len() > MAX_CHANNEL_BYTES {
        return Err(ChannelError::TooLong(bytes.len()));
    }
    if bytes[0] == b'/' {
        return Err(ChannelError::LeadingSlash);
    }
    match bytes.iter().find(|b| !allowed(**b)) {
        Some(b) => Err(ChannelError::BadByte(*b)),
        None => Ok(()),
    }
}

/// Splits `a,b/c,d` into validated, de-duplicated channel names (first
/// occurrence order kept), at most `limit` of them.
pub fn parse_channel_list(list: &str, limit: usize) -> Result<Vec<Arc<str>>, ChannelError> {
    let mut channels: Vec<Arc<str>> = Vec::new();
    for name in list.split(',') {
        validate_channel(name)?;
        if !channels.iter().any(|c| &**c == name) {
            channels.push(Arc::from(name));
        }
    }
    if channels.len() > limit {
        return Err(ChannelError::TooMany { given: channels.len(), limit });
    }
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        let long = "a".repeat(129);
        let max = "a".repeat(128);
        let cases: &[(&str, Option<ChannelError>)] = &[
            ("news", None),
            ("a/b/c", None),
            ("user@host:room-1_x.y", None),
            (&max, None),
            ("", Some(ChannelError::Empty)),
            (&long, Some(ChannelError::TooLong(129))),
            ("/abs", Some(ChannelError::LeadingSlash)),
            ("sp ace", Some(ChannelError::BadByte(b' '))),
            ("semi;colon", Some(ChannelError::BadByte(b';'))),
            ("caf\u{e9}", Some(ChannelError::BadByte(0xc3))),
        ];
        for (name, want) in cases {
            assert_eq!(validate_channel(name).err(), *want, "validating {name:?}");
        }
    }

    #[test]
    fn parses_lists() {
        let got = parse_channel_list("a,b/c,a", 8).unwrap();
        assert_eq!(got.iter().map(|c| &**c).collect::<Vec<_>>(), ["a", "b/c"]);
        assert_eq!(parse_channel_list("a,,b", 8), Err(ChannelError::Empty));
        assert_eq!(parse_channel_list("a,b,c", 2), Err(ChannelError::TooMany { given: 3, limit: 2 }));
        assert!(ChannelError::BadByte(b' ').to_string().contains("1 to 128 bytes"));
    }
}
