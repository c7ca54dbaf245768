//! Message ids in the shape of Redis stream entry ids: `<milliseconds>-<sequence>`.
//!
//! One generator per node hands out ids that strictly increase across *all*
//! channels, so a single `last_id` can resume a multi-channel subscription, and
//! a later Redis-streams backplane can produce ids of the same form.

use std::fmt;
use std::str::FromStr;

/// An ordered message id. Ordering is by milliseconds, then sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MessageId {
    pub ms: u64,
    pub seq: u64,
}

impl MessageId {
    /// The id before every id: resuming after it delivers everything retained.
    pub const ZERO: MessageId = MessageId { ms: 0, seq: 0 };
    /// Above every id ever issued.
    pub const MAX: MessageId = MessageId { ms: u64::MAX, seq: u64::MAX };

    pub fn new(ms: u64, seq: u64) -> MessageId {
        MessageId { ms, seq }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Why a string is not a message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadId(pub String);

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed message id '{}': expected <milliseconds>-<sequence>, both decimal", self.0)
    }
}

impl FromStr for MessageId {
    type Err = BadId;

    /// Accepts exactly `digits-digits` (each at most 20 digits, fitting u64).
    /// A bare `digits` is accepted as `digits-0`, as Redis does for stream ids.
    fn from_str(s: &str) -> Result<MessageId, BadId> {
        let bad = || BadId(s.chars().take(64).collect());
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        let number = |part: &str| -> Result<u64, BadId> {
            if part.is_empty() || part.len() > 20 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        Ok(MessageId::new(number(ms)?, number(seq)?))
    }
}

/// Hands out strictly increasing ids from a millisecond clock. If the clock
/// steps back, ids keep the last millisecond and count up the sequence, so
/// order never breaks.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: MessageId,
}

impl IdGenerator {
    /// Starts after `floor`, so ids never repeat ones this node could have issued before.
    pub fn starting_after(floor: MessageId) -> IdGenerator {
        IdGenerator { last: floor }
    }

    pub fn next(&mut self, now_ms: u64) -> MessageId {
        self.last = if now_ms > self.last.ms {
            MessageId::new(now_ms, 0)
        } else {
            MessageId::new(self.last.ms, self.last.seq + 1)
        };
        self.last
    }

    /// The newest id handed out (or the floor it started after).
    pub fn last(&self) -> MessageId {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let cases: &[(&str, Option<(u64, u64)>)] = &[
            ("1-0", Some((1, 0))),
            ("1700000000000-42", Some((1700000000000, 42))),
            ("17", Some((17, 0))),
            ("0-0", Some((0, 0))),
            ("", None),
            ("-1", None),
            ("1-", None),
            ("a-1", None),
            ("1-2-3", None),
            ("+1-2", None),
            ("99999999999999999999999-0", None),
            ("18446744073709551616-0", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<MessageId>().ok().map(|id| (id.ms, id.seq));
            assert_eq!(got, *want, "parsing {text:?}");
        }
        assert_eq!(MessageId::new(5, 7).to_string(), "5-7");
    }

    #[test]
    fn generator_is_strictly_increasing_even_when_clock_steps_back() {
        let mut ids = IdGenerator::default();
        let a = ids.next(100);
        let b = ids.next(100);
        let c = ids.next(90);
        let d = ids.next(101);
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        assert_eq!(c, MessageId::new(100, 2));
        assert_eq!(d, MessageId::new(101, 0));
    }
}
