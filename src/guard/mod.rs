//! Admission rules applied at the edges: IP allow/deny lists, the blocked-word
//! filter, the message size limit, publish rate limits and channel rules.
//! Pure values built at start-up from a [`GuardConfig`] (the guard knows
//! nothing of the server's config); every publish path calls
//! [`Guard::screen`].

pub mod ip;
pub mod rate;
pub mod screen;
pub mod words;

pub use ip::IpRules;
pub use rate::TokenBucket;
pub use screen::Origin;
pub use words::{WordFilter, WordMode};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::auth::{Denied, Policy};

/// What the guard is built from: its rules, already parsed from the
/// server's config at start-up (`Config::guard_config`).
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The token policy; `None` = auth off.
    pub auth: Option<Policy>,
    /// The key the ingest side must present; `None` = none needed.
    pub ingest_key: Option<String>,
    pub subscribers: IpRules,
    pub publishers: IpRules,
    pub words: WordFilter,
    /// Open connections per address; 0 = unlimited.
    pub max_per_ip: usize,
    /// Public-side publishes per second per address; 0 = unlimited.
    pub rate_per_ip: u32,
    /// Publishes per second per ingest connection; 0 = unlimited.
    pub rate_per_connection: u32,
    /// The largest message payload any path may publish.
    pub max_message_bytes: usize,
}

/// Every admission rule, built once from the config and shared.
pub struct Guard {
    pub auth: Option<Policy>,
    pub ingest_key: Option<String>,
    pub subscribers: IpRules,
    pub publishers: IpRules,
    pub words: WordFilter,
    max_per_ip: usize,
    rate_per_ip: u32,
    pub rate_per_connection: u32,
    max_message_bytes: usize,
    /// Per-address state, touched on connect, close and public-side publish
    /// only (never per delivered message).
    per_ip: Mutex<HashMap<IpAddr, PerIp>>,
}

/// Addresses tracked before idle ones are pruned (a few MiB at most).
const MAX_TRACKED_ADDRESSES: usize = 50_000;

#[derive(Default)]
struct PerIp {
    connections: usize,
    bucket: Option<TokenBucket>,
}

impl Guard {
    pub fn new(config: GuardConfig) -> Guard {
        Guard {
            auth: config.auth,
            ingest_key: config.ingest_key,
            subscribers: config.subscribers,
            publishers: config.publishers,
            words: config.words,
            max_per_ip: config.max_per_ip,
            rate_per_ip: config.rate_per_ip,
            rate_per_connection: config.rate_per_connection,
            max_message_bytes: config.max_message_bytes,
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection from `ip`; false when its limit is reached.
    pub fn connect(&self, ip: IpAddr) -> bool {
        if self.max_per_ip == 0 && self.rate_per_ip == 0 {
            return true;
        }
        let Ok(mut map) = self.per_ip.lock() else { return true };
        let entry = map.entry(ip).or_default();
        if self.max_per_ip > 0 && entry.connections >= self.max_per_ip {
            return false;
        }
        entry.connections += 1;
        true
    }

    pub fn disconnect(&self, ip: IpAddr) {
        if self.max_per_ip == 0 && self.rate_per_ip == 0 {
            return;
        }
        let Ok(mut map) = self.per_ip.lock() else { return };
        if let Some(entry) = map.get_mut(&ip) {
            entry.connections = entry.connections.saturating_sub(1);
            // A publish rate must hold across reconnects: keep the bucket.
            if entry.connections == 0 && entry.bucket.is_none() {
                map.remove(&ip);
            }
        }
    }

    /// The publisher address rules (403); no address, no rule.
    fn admit_publisher(&self, ip: Option<IpAddr>) -> Result<(), Denied> {
        match ip {
            Some(ip) if !self.publishers.admits(ip) => {
                Err(Denied { status: 403, reason: format!("address {ip} may not publish") })
            }
            _ => Ok(()),
        }
    }

    /// The per-address publish rate (429); no address, no rate.
    fn take_ip_token(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), Denied> {
        let Some(ip) = ip else { return Ok(()) };
        if self.rate_per_ip == 0 {
            return Ok(());
        }
        let Ok(mut map) = self.per_ip.lock() else { return Ok(()) };
        if map.len() > MAX_TRACKED_ADDRESSES {
            // Forget addresses with no connection whose bucket has refilled:
            // they are indistinguishable from new ones.
            map.retain(|_, e| e.connections > 0 || e.bucket.as_ref().is_some_and(|b| !b.is_full(now)));
        }
        let bucket =
            map.entry(ip).or_default().bucket.get_or_insert_with(|| TokenBucket::new(self.rate_per_ip, now));
        bucket.take(now).map_err(|retry| Denied {
            status: 429,
            reason: format!(
                "more than {} publishes per second from {ip}; retry in {retry} s",
                self.rate_per_ip
            ),
        })
    }

    /// The blocked-word filter: the payload to publish, or a 422.
    fn filter<'a>(&self, data: &'a str) -> Result<std::borrow::Cow<'a, str>, Denied> {
        self.words
            .apply(data)
            .map_err(|_| Denied { status: 422, reason: "the message contains a blocked word".into() })
    }

    /// The word filter over messages about to be published: masks in
    /// place, or refuses them all (422).
    fn filter_messages(&self, messages: &mut [crate::fanout::NewMessage]) -> Result<(), Denied> {
        if self.words.is_empty() {
            return Ok(());
        }
        for m in messages.iter_mut() {
            if let std::borrow::Cow::Owned(masked) = self.filter(&m.data)? {
                m.data = masked.into_boxed_str();
            }
        }
        Ok(())
    }

    /// Checks an ingest request's `Authorization` (`Bearer KEY` or `KEY`,
    /// or `Basic` with the key as password and any user name, which is
    /// what a browser sends for the dashboard).
    pub fn ingest_authorized(&self, authorization: Option<&str>) -> bool {
        let Some(key) = &self.ingest_key else { return true };
        let Some(given) = authorization else { return false };
        if let Some(password) = basic_password(given) {
            return constant_time_eq(password.as_bytes(), key.as_bytes());
        }
        let given = crate::auth::bearer(given).unwrap_or(given).trim();
        constant_time_eq(given.as_bytes(), key.as_bytes())
    }
}

/// The password of `Basic base64(user:password)` credentials (RFC 7617).
fn basic_password(authorization: &str) -> Option<String> {
    use base64::Engine;
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, password)| password.to_string())
}

/// Compares secrets without an early exit that would leak their length of match.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_carry_the_key_as_password() {
        // base64("ops:s3cret"), base64(":s3cret"), base64("a:b:c")
        let cases: &[(&str, Option<&str>)] = &[
            ("Basic b3BzOnMzY3JldA==", Some("s3cret")),
            ("basic  b3BzOnMzY3JldA== ", Some("s3cret")),
            ("Basic OnMzY3JldA==", Some("s3cret")),
            ("Basic YTpiOmM=", Some("b:c")),
            ("Basic not-base64!", None),
            ("Basic czNjcmV0", None),
            ("Bearer s3cret", None),
            ("s3cret", None),
        ];
        for (header, want) in cases {
            assert_eq!(basic_password(header).as_deref(), *want, "{header:?}");
        }
    }
}
