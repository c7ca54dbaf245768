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

/// Redis Cluster: the wildcard feed. Sharded pub/sub has no patterns, so the
/// store script also announces, with a classic `PUBLISH` here, every message
/// of a channel an engine pattern can take in; nodes with engine wildcard
/// subscriptions listen to it.
pub const WILD: &str = "halley:wild";

/// Redis Cluster: the nodes whose engines have wildcard subscriptions, scored
/// by their last heartbeat (ms). While one is alive, every node also puts
/// its publishes on the wildcard feed; while none is, nobody pays for it.
pub const WILD_NODES: &str = "halley:wildnodes";

/// Whether an engine pattern (Bayeux `/**`, Pushlet `/`) can take in a
/// channel, so that its messages must go to the wildcard feed: every channel
/// but the internal ones (`hub::is_internal`), which patterns never match.
pub fn wild(channel: &str) -> bool {
    !crate::hub::is_internal(channel)
}

/// The last id handed out on this Redis: ids increase across all channels,
/// so one `last_id` resumes a multi-channel subscription (single Redis only).
pub const LAST_ID: &str = "halley:lastid";

/// The last id handed out on one channel (Redis Cluster: a script may touch
/// only one slot's keys, so ids increase per channel only).
pub fn last_id(channel: &str) -> String {
    format!("halley:l:{{{channel}}}")
}

/// Cluster-wide subscriber counts of one channel (Redis Cluster): field =
/// node, value = `"<count> <ms of the heartbeat>"`.
pub fn channel_counts(channel: &str) -> String {
    format!("halley:c:{{{channel}}}")
}

/// The Redis Cluster hash slot of a channel's keys: CRC16 (XMODEM) of the
/// hash tag, which is exactly the channel, mod 16384.
pub fn slot(channel: &str) -> u16 {
    crc16(channel.as_bytes()) % 16384
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis Cluster
/// computes it. Bitwise: a channel name is short, a table is not worth it.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

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
        assert_eq!(last_id("a/b"), "halley:l:{a/b}");
        assert_eq!(channel_counts("a/b"), "halley:c:{a/b}");
    }

    #[test]
    fn the_wildcard_feed_carries_every_channel_a_pattern_can_take_in() {
        // Bayeux `/chat/a` is the hub channel `chat/a`; `/**` and the Pushlet
        // subject `/` take in top-level channels too; internal ones never.
        for channel in ["chat/a", "plainch", "a"] {
            assert!(wild(channel), "{channel}");
        }
        assert!(!wild("/halley/stats"));
    }

    #[test]
    fn slots_are_redis_cluster_slots() {
        // The check value of CRC16/XMODEM, and slots as `CLUSTER KEYSLOT` gives.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
    }
}
