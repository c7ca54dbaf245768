//! The one publish screen every publish path calls: [`Guard::screen`].
//!
//! The rules, in this order (the first refusal wins; a refused batch is
//! refused whole and nothing in it is published):
//! 1. the publisher address rules (403), for origins that have an address;
//! 2. the size limit, the same on every path: 413 "message over N bytes";
//! 3. the rate: per address on the public side, per connection on the ingest
//!    side (429, with the seconds to wait); one token per call, whatever the
//!    batch size, as the HTTP publish counts today;
//! 4. the channel rules: a token whose `publish` claim grants each channel
//!    that needs one (401/403), when the origin carries the token;
//! 5. the blocked words: masked in place, or the batch refused (422).
//!
//! Size comes before the rate so a refused oversized message costs no token;
//! the rate comes before the token check so a flood of bad tokens is cut by
//! the rate before each is verified.

use std::net::IpAddr;
use std::time::Instant;

use super::{Guard, TokenBucket};
use crate::auth::Denied;
use crate::fanout::NewMessage;

/// Where a publish comes from, with what the rules for that path need.
#[derive(Debug)]
pub enum Origin<'a> {
    /// An HTTP publish on the public port: the publisher's address (address
    /// rules, per-address rate) and the request's token (`Authorization:
    /// Bearer` or `?token=`), checked for channels that need one.
    Public { ip: Option<IpAddr>, token: Option<&'a str> },
    /// A Bayeux or Pushlet client's publish: the publisher's address. The
    /// protocol engine has applied the channel rules with the session's
    /// token, so none are applied here.
    Session { ip: Option<IpAddr> },
    /// The ingest side (an HTTP publish on the ingest port, or RESP
    /// `PUBLISH`): the connection's bucket when per-connection rates are on.
    /// The ingest side is trusted: no address or channel rules.
    Ingest { bucket: Option<&'a mut TokenBucket> },
}

impl Guard {
    /// Screens messages about to be published from `origin`: `Ok` when they
    /// may go (possibly masked in place), else the refusal for the whole
    /// batch. See the module doc for the rules and their order.
    pub fn screen(
        &self,
        messages: &mut [NewMessage],
        origin: Origin<'_>,
        now: Instant,
    ) -> Result<(), Denied> {
        let (ip, token, bucket) = match origin {
            Origin::Public { ip, token } => (ip, Some(token), None),
            Origin::Session { ip } => (ip, None, None),
            Origin::Ingest { bucket } => (None, None, bucket),
        };
        self.admit_publisher(ip)?;
        self.check_size(messages)?;
        self.take_ip_token(ip, now)?;
        if let Some(bucket) = bucket {
            self.take_connection_token(bucket, now)?;
        }
        if let Some(token) = token {
            self.check_channels(messages, token)?;
        }
        self.filter_messages(messages)
    }

    /// The size limit every path shares (413).
    fn check_size(&self, messages: &[NewMessage]) -> Result<(), Denied> {
        if messages.iter().any(|m| m.data.len() > self.max_message_bytes) {
            return Err(Denied {
                status: 413,
                reason: format!("message over {} bytes", self.max_message_bytes),
            });
        }
        Ok(())
    }

    /// One token from an ingest connection's bucket (429).
    fn take_connection_token(&self, bucket: &mut TokenBucket, now: Instant) -> Result<(), Denied> {
        bucket.take(now).map_err(|retry| Denied {
            status: 429,
            reason: format!(
                "more than {} publishes per second on this connection; retry in {retry} s",
                self.rate_per_connection
            ),
        })
    }

    /// Channels that need a token need one granting them (401/403); with
    /// auth off nothing needs one.
    fn check_channels(&self, messages: &[NewMessage], token: Option<&str>) -> Result<(), Denied> {
        let Some(policy) = &self.auth else { return Ok(()) };
        let now_secs = crate::clock::unix_secs();
        for m in messages.iter().filter(|m| policy.requires(&m.channel)) {
            policy.publish(token, &m.channel, now_secs)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::super::{GuardConfig, IpRules, WordFilter, WordMode};
    use super::*;
    use crate::auth::Policy;

    fn config() -> GuardConfig {
        GuardConfig {
            auth: Policy::new("k", "private/"),
            ingest_key: None,
            subscribers: IpRules::parse("", "").unwrap(),
            publishers: IpRules::parse("", "10.0.0.0/8").unwrap(),
            words: WordFilter::new("darn", WordMode::Mask),
            max_per_ip: 0,
            rate_per_ip: 2,
            rate_per_connection: 1,
            max_message_bytes: 8,
        }
    }

    fn message(channel: &str, data: &str) -> NewMessage {
        NewMessage { channel: Arc::from(channel), event: None, data: data.into(), ext: None }
    }

    /// The origin of a case; `Ingest` gets a fresh bucket.
    #[derive(Clone, Copy)]
    enum From<'a> {
        Public(&'static str, Option<&'a str>),
        Session(Option<&'static str>),
        Ingest,
        IngestUnlimited,
    }

    /// Screens one message from `from` on a fresh guard: the data as it
    /// would be published, or the status and reason.
    fn screen_one(
        guard: &Guard,
        from: From,
        channel: &str,
        data: &str,
        now: Instant,
    ) -> Result<String, Denied> {
        let mut bucket = TokenBucket::new(1, now);
        let ip = |text: &str| text.parse::<IpAddr>().ok();
        let origin = match from {
            From::Public(addr, token) => Origin::Public { ip: ip(addr), token },
            From::Session(addr) => Origin::Session { ip: addr.and_then(ip) },
            From::Ingest => Origin::Ingest { bucket: Some(&mut bucket) },
            From::IngestUnlimited => Origin::Ingest { bucket: None },
        };
        let mut messages = vec![message(channel, data)];
        guard.screen(&mut messages, origin, now).map(|()| messages[0].data.to_string())
    }

    /// The data as published, or the status and a fragment of the reason.
    type Want = Result<&'static str, (u16, &'static str)>;

    #[test]
    fn screens_each_path() {
        let token = crate::auth::jwt::sign(&json!({"publish": ["private/a"]}), b"k");
        let (ok, no) =
            (|data: &'static str| Ok(data), |status: u16, reason: &'static str| Err((status, reason)));
        let public = |token| From::Public("1.2.3.4", token);
        #[rustfmt::skip]
        let cases: Vec<(&str, From, &str, &str, Want)> = vec![
            ("public, clean", public(None), "news", "hi", ok("hi")),
            ("public, masked", public(None), "news", "oh darn", ok("oh ****")),
            ("public, over size", public(None), "news", "123456789", no(413, "message over 8 bytes")),
            ("public, exactly the size", public(None), "news", "12345678", ok("12345678")),
            ("public, denied address", From::Public("10.1.1.1", None), "news", "hi", no(403, "may not publish")),
            ("public, no token", public(None), "private/a", "hi", no(401, "token is required")),
            ("public, token for another channel", public(Some(&token)), "private/b", "hi", no(403, "does not grant")),
            ("public, granting token", public(Some(&token)), "private/a", "hi", ok("hi")),
            ("session, engine checked channels", From::Session(Some("1.2.3.4")), "private/b", "hi", ok("hi")),
            ("session, denied address", From::Session(Some("10.0.0.1")), "news", "hi", no(403, "may not publish")),
            ("session, no address", From::Session(None), "news", "darn", ok("****")),
            ("session, over size", From::Session(None), "news", "123456789", no(413, "message over 8 bytes")),
            ("ingest, trusted address and channels", From::Ingest, "private/b", "hi", ok("hi")),
            ("ingest, over size", From::Ingest, "news", "123456789", no(413, "message over 8 bytes")),
            ("ingest, no per-connection rate", From::IngestUnlimited, "news", "darn", ok("****")),
        ];
        let now = Instant::now();
        for (name, from, channel, data, want) in cases {
            let guard = Guard::new(config());
            let got = screen_one(&guard, from, channel, data, now);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(denied), Err((status, fragment))) => {
                    assert!(denied.status == status && denied.reason.contains(fragment), "{name}: {denied:?}")
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn rates_count_calls_and_skip_refused_sizes() {
        let now = Instant::now();
        let guard = Guard::new(config());
        let public = From::Public("1.2.3.4", None);
        // An oversized message is refused before the rate: it costs no token.
        assert_eq!(screen_one(&guard, public, "news", "123456789", now).unwrap_err().status, 413);
        assert!(screen_one(&guard, public, "news", "a", now).is_ok());
        assert!(screen_one(&guard, public, "news", "b", now).is_ok());
        let third = screen_one(&guard, public, "news", "c", now).unwrap_err();
        assert_eq!(
            (third.status, third.reason.contains("per second from 1.2.3.4")),
            (429, true),
            "{third:?}"
        );
        assert!(screen_one(&guard, From::Public("1.2.3.5", None), "news", "d", now).is_ok());
        assert!(screen_one(&guard, public, "news", "e", now + Duration::from_secs(1)).is_ok());

        let mut bucket = TokenBucket::new(1, now);
        let mut batch = vec![message("a", "1"), message("b", "2")];
        assert!(guard.screen(&mut batch, Origin::Ingest { bucket: Some(&mut bucket) }, now).is_ok());
        let second = guard.screen(&mut batch, Origin::Ingest { bucket: Some(&mut bucket) }, now).unwrap_err();
        assert_eq!(second.status, 429);
        assert_eq!(second.reason, "more than 1 publishes per second on this connection; retry in 1 s");
    }

    #[test]
    fn a_refused_batch_is_refused_whole() {
        let guard = Guard::new(GuardConfig { words: WordFilter::new("darn", WordMode::Reject), ..config() });
        let now = Instant::now();
        let mut batch = vec![message("a", "fine"), message("b", "darn")];
        let denied = guard.screen(&mut batch, Origin::Session { ip: None }, now).unwrap_err();
        assert_eq!(denied, Denied { status: 422, reason: "the message contains a blocked word".into() });
        let mut batch = vec![message("a", "fine"), message("b", "123456789")];
        assert_eq!(guard.screen(&mut batch, Origin::Ingest { bucket: None }, now).unwrap_err().status, 413);
    }
}
