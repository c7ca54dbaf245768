//! The wall clock as Unix time. Deadlines use `Instant`; these are for what
//! leaves the process or comes from outside: message ids, token expiry, the
//! `p_time` of Pushlet events.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Whole seconds since the Unix epoch (JWT `exp` and `nbf` are in seconds).
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_follow_milliseconds() {
        let (ms, secs) = (unix_ms(), unix_secs());
        // After 2020 and consistent with each other (allowing a tick between).
        assert!(ms > 1_577_836_800_000, "{ms}");
        assert!(secs >= ms / 1000 && secs <= ms / 1000 + 1, "{secs} vs {ms}");
    }
}
