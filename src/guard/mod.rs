//! Admission rules applied at the edges: IP allow/deny lists, the blocked-word
//! filter and publish rate limits. Pure values built from the config; the
//! worker and the Bayeux thread consult them.

pub mod ip;
pub mod rate;
pub mod words;

pub use ip::IpRules;
pub use rate::TokenBucket;
pub use words::{WordFilter, WordMode};
