//! Redis key and channel names. Every per-channel key carries the channel in
//! a hash tag (`{news}`), so in a Redis Cluster all of a channel's keys land
//! on one shard. Channel names cannot contain `{` or `}` (see
//! `hub::validate_channel`), so the tag is exactly the channel.

/// The stream holding a channel's history: entries `d` (data), and `e`
/// (event) and `x` (Bayeux ext) when set.
pub fn stream(channel: &str) -> String {
    format!("halley:s:{{{channel}}}")
}

/// The newest id dropped from a channel's stream (by its size or age
/// limits, or a delete): a resume from before it has a gap.
pub fn dropped(channel: &str) -> String {
    format!("halley:d:{{{channel}}}")
}

/// The pub/sub channel a channel's new messages are announced on.
pub fn notify(channel: &str) -> String {
    format!("halley:m:{{{channel}}}")
}

/// The pattern every node's listener subscribes to.
pub const NOTIFY_PATTERN: &str = "halley:m:*";

/// The channel out of a notify channel name.
pub fn channel_of_notify(name: &str) -> Option<&str> {
    name.strip_prefix("halley:m:{")?.strip_suffix('}')
}

/// Control announcements to every node (channel deletes).
pub const CONTROL: &str = "halley:ctl";

/// The last id handed out on this Redis: ids increase across all channels,
/// so one `last_id` resumes a multi-channel subscription (single Redis only).
pub const LAST_ID: &str = "halley:lastid";

/// Nodes alive, scored by their last heartbeat (ms).
pub const NODES: &str = "halley:nodes";

/// One node's subscriber counts per channel (a hash, refreshed each second).
pub fn node_counts(node: &str) -> String {
    format!("halley:n:{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_channel_as_hash_tag() {
        assert_eq!(stream("a/b"), "halley:s:{a/b}");
        assert_eq!(notify("a/b"), "halley:m:{a/b}");
        assert_eq!(channel_of_notify("halley:m:{a/b}"), Some("a/b"));
        assert_eq!(channel_of_notify("halley:s:{a/b}"), None);
    }
}
