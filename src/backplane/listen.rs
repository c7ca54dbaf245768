//! The listener thread: one Redis connection in pub/sub mode, subscribed to
//! every channel's announcements (a pattern) and to the control channel. It
//! hands what arrives to the fan-out thread in Redis' order, and reconnects
//! with backoff; after a reconnect it says so, so the fan-out reads from the
//! streams what its channels missed while nobody listened.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::*;

/// How long a read waits before the thread checks that the fan-out is
/// still there; a silent Redis is not an error.
const READ_WAIT: Duration = Duration::from_secs(1);

pub fn spawn(
    client: redis::Client,
    events: Sender<Event>,
    stats: Arc<BackplaneStats>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("halley-redis-sub".into()).spawn(move || run(client, events, stats))
}

fn run(client: redis::Client, events: Sender<Event>, stats: Arc<BackplaneStats>) {
    let mut backoff = BACKOFF_MIN;
    let mut was_down = false;
    loop {
        match listen(&client, &events, &stats, &mut was_down) {
            Ok(()) => return,
            Err(e) => {
                stats.reset.store(true, Ordering::Relaxed);
                if stats.listening.swap(false, Ordering::Relaxed) {
                    crate::log::warn(format_args!("backplane: subscription connection lost: {e}"));
                    if events.send(Event::ListenerDown).is_err() {
                        return;
                    }
                }
                was_down = true;
                std::thread::sleep(backoff);
                backoff = next_backoff(backoff);
            }
        }
        if stats.listening.load(Ordering::Relaxed) {
            backoff = BACKOFF_MIN;
        }
    }
}

/// Listens until the connection fails (`Err`) or the fan-out is gone (`Ok`).
fn listen(
    client: &redis::Client,
    events: &Sender<Event>,
    stats: &BackplaneStats,
    was_down: &mut bool,
) -> redis::RedisResult<()> {
    let mut con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    let mut pubsub = con.as_pubsub();
    pubsub.set_read_timeout(Some(READ_WAIT))?;
    pubsub.psubscribe(keys::NOTIFY_PATTERN)?;
    pubsub.subscribe(keys::CONTROL)?;
    stats.listening.store(true, Ordering::Relaxed);
    if std::mem::take(was_down) && events.send(Event::Resubscribed).is_err() {
        return Ok(());
    }
    loop {
        let msg = match pubsub.get_message() {
            Ok(msg) => msg,
            Err(e) if e.is_timeout() => {
                // Nothing announced; a closed fan-out ends the thread.
                if events.send(Event::Message(idle_probe())).is_err() {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let event = if msg.get_channel_name() == keys::CONTROL {
            let text: String = msg.get_payload().unwrap_or_default();
            match text.strip_prefix("del ") {
                Some(channel) => Event::Deleted(Arc::from(channel)),
                None => continue,
            }
        } else {
            match parse_announcement(msg.get_channel_name(), msg.get_payload_bytes()) {
                Some(stored) => Event::Message(stored),
                None => {
                    crate::stats::inc(&stats.errors);
                    continue;
                }
            }
        };
        if events.send(event).is_err() {
            return Ok(());
        }
    }
}

/// An empty message the fan-out drops (id zero): sent when nothing arrived
/// for a while, only so that a send to a closed fan-out ends this thread.
pub(super) fn idle_probe() -> Stored {
    Stored { id: MessageId::ZERO, channel: Arc::from(""), data: "".into(), event: None, ext: None }
}

/// The store script's announcement: `{"id","c","d","e","x"}` (empty `e` and
/// `x` mean none).
pub(super) fn parse_announcement(notify_channel: &str, payload: &[u8]) -> Option<Stored> {
    parse_payload(Some(keys::channel_of_notify(notify_channel)?), payload)
}

/// An announcement of the wildcard feed (`keys::WILD`): the same payload,
/// its channel named by its `c` field.
pub(super) fn parse_wild(payload: &[u8]) -> Option<Stored> {
    parse_payload(None, payload)
}

fn parse_payload(channel: Option<&str>, payload: &[u8]) -> Option<Stored> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let field = |k: &str| value.get(k).and_then(|v| v.as_str());
    let optional = |k: &str| field(k).filter(|s| !s.is_empty()).map(Box::from);
    let channel = match channel {
        Some(c) => c,
        None => field("c").filter(|c| !c.is_empty())?,
    };
    Some(Stored {
        id: field("id")?.parse().ok()?,
        channel: Arc::from(channel),
        data: field("d")?.into(),
        event: optional("e"),
        ext: optional("x"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_announcements() {
        let got = parse_announcement("halley:m:{a/b}", br#"{"id":"5-1","c":"a/b","d":"hi","e":"","x":"{}"}"#);
        assert_eq!(
            got,
            Some(Stored {
                id: MessageId::new(5, 1),
                channel: Arc::from("a/b"),
                data: "hi".into(),
                event: None,
                ext: Some("{}".into()),
            })
        );
        assert_eq!(parse_announcement("other", b"{}"), None);
        assert_eq!(parse_announcement("halley:m:{a}", b"not json"), None);
        let wild = parse_wild(br#"{"id":"5-2","c":"chat/a","d":"hi","e":"","x":""}"#);
        assert_eq!(wild.map(|s| (s.id, s.channel)), Some((MessageId::new(5, 2), Arc::from("chat/a"))));
        assert_eq!(parse_wild(br#"{"id":"5-2","c":"","d":"hi"}"#), None);
    }
}
