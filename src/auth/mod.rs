//! Who may subscribe to and publish on which channels: HS256 tokens whose
//! `channels` and `publish` claims are channel patterns, required on the
//! channels whose names start with a configured prefix.

pub mod jwt;

pub use jwt::{Claims, JwtError};

/// A refusal with its HTTP status (401 or 403) and a clear reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub status: u16,
    pub reason: String,
}

/// Whether a hub channel pattern matches a channel: `a/b` exactly, `a/*` one
/// more segment, `a/**` any depth below `a`, `*` any one-segment name, `**`
/// every channel.
pub fn pattern_matches(pattern: &str, channel: &str) -> bool {
    if pattern == "**" {
        return true;
    }
    if pattern == "*" {
        return !channel.contains('/');
    }
    if let Some(prefix) = pattern.strip_suffix("/**") {
        return channel.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
    }
    if let Some(prefix) = pattern.strip_suffix("/*") {
        return channel
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|last| !last.is_empty() && !last.contains('/'));
    }
    pattern == channel
}

/// The auth policy: the secret and the channel prefixes that need a token.
#[derive(Debug, Clone)]
pub struct Policy {
    secret: Vec<u8>,
    /// Channels starting with one of these need a token; `*` means every channel.
    required: Vec<String>,
}

impl Policy {
    /// `None` when no secret is configured (auth off).
    pub fn new(secret: &str, required: &str) -> Option<Policy> {
        if secret.is_empty() {
            return None;
        }
        let required =
            required.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect();
        Some(Policy { secret: secret.as_bytes().to_vec(), required })
    }

    pub fn requires(&self, channel: &str) -> bool {
        self.required.iter().any(|p| p == "*" || channel.starts_with(p.as_str()))
    }

    /// Whether some channel starting with `prefix` (a Pushlet-style prefix
    /// subscription) could need a token.
    pub fn may_require_prefix(&self, prefix: &str) -> bool {
        self.required.iter().any(|p| p == "*" || prefix.starts_with(p.as_str()) || p.starts_with(prefix))
    }

    /// Verifies a token (401 on any failure).
    pub fn verify(&self, token: Option<&str>, now_secs: u64) -> Result<Claims, Denied> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(Denied {
                status: 401,
                reason: "a token is required: Authorization: Bearer <jwt> or ?token=<jwt>".into(),
            });
        };
        jwt::verify(token, &self.secret, now_secs).map_err(|e| Denied { status: 401, reason: e.to_string() })
    }

    /// Checks a subscription to `channels`: the token's claims when some
    /// channel needs one. Returns the claims (for the stream's expiry).
    pub fn subscribe<'a>(
        &self,
        token: Option<&str>,
        channels: impl IntoIterator<Item = &'a str> + Clone,
        now_secs: u64,
    ) -> Result<Option<Claims>, Denied> {
        if !channels.clone().into_iter().any(|c| self.requires(c)) {
            return Ok(None);
        }
        let claims = self.verify(token, now_secs)?;
        for channel in channels.into_iter().filter(|c| self.requires(c)) {
            if !claims.channels.iter().any(|p| pattern_matches(p, channel)) {
                return Err(Denied {
                    status: 403,
                    reason: format!("the token does not grant channel '{channel}'"),
                });
            }
        }
        Ok(Some(claims))
    }

    /// Checks a publish from the public side: a token whose `publish` claim
    /// grants the channel (every public-side publish needs one when auth is on).
    pub fn publish(&self, token: Option<&str>, channel: &str, now_secs: u64) -> Result<(), Denied> {
        let claims = self.verify(token, now_secs)?;
        if claims.publish.iter().any(|p| pattern_matches(p, channel)) {
            return Ok(());
        }
        Err(Denied { status: 403, reason: format!("the token does not grant publishing to '{channel}'") })
    }
}

/// The credentials of `Bearer <credentials>`, any case of the scheme.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("a/b", "a/b", true),
            ("a/b", "a/bc", false),
            ("a/*", "a/b", true),
            ("a/*", "a/b/c", false),
            ("a/**", "a/b/c", true),
            ("a/**", "a", false),
            ("a/**", "ab/c", false),
            ("*", "top", true),
            ("*", "a/b", false),
            ("**", "a/b/c", true),
        ];
        for (p, c, want) in cases {
            assert_eq!(pattern_matches(p, c), *want, "{p} vs {c}");
        }
    }

    #[test]
    fn decides_subscriptions_and_publishes() {
        let policy = Policy::new("k", "private/,user:").unwrap();
        assert!(Policy::new("", "*").is_none());
        let token = jwt::sign(&json!({"channels":["private/a/*"],"publish":["chat/*"],"exp":100}), b"k");
        assert_eq!(policy.subscribe(None, ["news"], 0), Ok(None));
        assert_eq!(policy.subscribe(None, ["private/a/x"], 0).unwrap_err().status, 401);
        assert!(policy.subscribe(Some(&token), ["private/a/x", "news"], 0).unwrap().is_some());
        let denied = policy.subscribe(Some(&token), ["private/b/x"], 0).unwrap_err();
        assert_eq!((denied.status, denied.reason.contains("private/b/x")), (403, true));
        assert_eq!(policy.subscribe(Some(&token), ["private/a/x"], 100).unwrap_err().status, 401);
        assert_eq!(policy.publish(Some(&token), "chat/x", 0), Ok(()));
        assert_eq!(policy.publish(Some(&token), "news", 0).unwrap_err().status, 403);
        assert_eq!(policy.publish(None, "chat/x", 0).unwrap_err().status, 401);
    }
}
