//! Redis Cluster: the wildcard feed's reader.
//!
//! Sharded pub/sub has no patterns, so engines' wildcard subscriptions
//! (Bayeux `/a/*`, `/a/**`, Pushlet prefixes) cannot be served by the shard
//! readers. The store script also announces every message of a channel an
//! engine pattern can take in on one classic channel (`keys::WILD`), which
//! the cluster broadcasts to every node over its bus; this reader holds a
//! classic `SUBSCRIBE` to it, on a connection of its own, while the fan-out
//! wants it (`Watch::Wild`), and hands every announcement over as
//! `Event::Wild`. The fan-out keeps those its patterns take in.
//!
//! Any cluster node serves classic pub/sub, so the reader connects to the
//! configured node URLs in turn (no topology needed) and reconnects with the
//! same backoff as the shard readers. When the fan-out no longer wants the
//! feed, the reader closes its connection (which unsubscribes) and waits.

use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use redis::{PushKind, Value};

use super::*;

/// How long a read waits before the reader looks at its orders.
const READ_WAIT: Duration = Duration::from_millis(10);

pub(super) fn spawn(
    seeds: Vec<redis::ConnectionInfo>,
    orders: Receiver<bool>,
    events: Sender<Event>,
    stats: Arc<BackplaneStats>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("halley-redis-wild".into())
        .spawn(move || WildReader { seeds, next_seed: 0, wanted: false, orders, events, stats }.run())
}

struct WildReader {
    /// The configured nodes, in RESP3 (what a subscribed connection receives
    /// is then a push, handed over whole even after a read timed out).
    seeds: Vec<redis::ConnectionInfo>,
    next_seed: usize,
    /// The fan-out's last order.
    wanted: bool,
    orders: Receiver<bool>,
    events: Sender<Event>,
    /// Unreadable announcements count as backplane errors.
    stats: Arc<BackplaneStats>,
}

/// Why a session ends.
enum Stop {
    /// The listener (or the fan-out) is gone.
    Ended,
    /// The fan-out no longer wants the feed.
    Unwanted,
    /// The connection failed; whether it had been subscribed.
    Failed(String, bool),
}

impl WildReader {
    fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            while !self.wanted {
                match self.orders.recv() {
                    Ok(wanted) => self.wanted = wanted,
                    Err(_) => return,
                }
            }
            match self.session() {
                Stop::Ended => return,
                Stop::Unwanted => continue,
                Stop::Failed(e, subscribed) => {
                    crate::log::warn(format_args!("backplane: wildcard feed: {e}"));
                    if subscribed {
                        backoff = BACKOFF_MIN;
                    }
                }
            }
            // The next node, after the backoff (orders still taken).
            self.next_seed = self.next_seed.wrapping_add(1);
            let until = Instant::now() + backoff;
            while let Some(wait) = until.checked_duration_since(Instant::now()) {
                match self.orders.recv_timeout(wait) {
                    Ok(wanted) => self.wanted = wanted,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            backoff = next_backoff(backoff);
        }
    }

    /// Subscribes on one node and reads until the feed is not wanted any
    /// more or the connection fails.
    fn session(&mut self) -> Stop {
        let Some(info) = self.seeds.get(self.next_seed % self.seeds.len().max(1)).cloned() else {
            return Stop::Ended;
        };
        let mut con = match connect(info) {
            Ok(con) => con,
            Err(e) => return Stop::Failed(e.to_string(), false),
        };
        let mut subscribed = false;
        loop {
            loop {
                match self.orders.try_recv() {
                    Ok(wanted) => self.wanted = wanted,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Stop::Ended,
                }
            }
            if !self.wanted {
                return Stop::Unwanted;
            }
            let value = match con.recv_response() {
                Ok(value) => value,
                Err(e) if e.is_timeout() => continue,
                Err(e) => return Stop::Failed(e.to_string(), subscribed),
            };
            let Value::Push { kind, data } = value else { continue };
            match kind {
                PushKind::Subscribe => {
                    subscribed = true;
                    if self.events.send(Event::WildUp).is_err() {
                        return Stop::Ended;
                    }
                }
                PushKind::Message => {
                    let stored = match data.get(1) {
                        Some(Value::BulkString(payload)) => super::listen::parse_wild(payload),
                        _ => None,
                    };
                    let Some(stored) = stored else {
                        crate::stats::inc(&self.stats.errors);
                        continue;
                    };
                    if self.events.send(Event::Wild(stored)).is_err() {
                        return Stop::Ended;
                    }
                }
                _ => {}
            }
        }
    }
}

fn connect(info: redis::ConnectionInfo) -> redis::RedisResult<redis::Connection> {
    let settings = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let mut con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    con.send_packed_command(&redis::cmd("SUBSCRIBE").arg(keys::WILD).get_packed_command())?;
    con.set_read_timeout(Some(READ_WAIT))?;
    Ok(con)
}
