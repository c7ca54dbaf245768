//! The listener on a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`, Redis 7).
//!
//! Sharded pub/sub has no patterns, and a shard channel is served only by
//! the master that owns its slot. So the fan-out names the channels it needs
//! (`Watch`), and this listener keeps one connection per master: the
//! coordinator thread (here) reads the slot owners (`CLUSTER SLOTS`), routes
//! each channel to its master's reader thread by the channel's slot
//! (`keys::slot`), and rebuilds everything when the topology changes or a
//! reader loses its master.
//!
//! A reader answers `Watch::Add` with `Event::Watching` only once its master
//! confirmed the `SSUBSCRIBE`: every announcement after that reaches this
//! node, which is what lets the fan-out answer a subscribe then without a
//! window in which a message could be missed. A reader whose master is down
//! answers at once instead: no publish on that slot can be stored until the
//! master is back, and then the reader subscribes again and says
//! `ShardResubscribed` with its channels, so the fan-out reads what they
//! missed.
//!
//! Readers talk RESP3, so that what a subscribed connection receives is a
//! push, which the crate hands over whole even after a read timed out (it
//! would skip the next plain reply). The control channel (channel deletes)
//! is classic pub/sub, broadcast by the cluster to every node: the first
//! master's reader subscribes to it. The wildcard feed (`wild.rs`), also
//! classic pub/sub, has a reader and a connection of its own.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::{IntoConnectionInfo, PushKind, Value};

use super::*;

/// How long a reader waits for a push before it looks at its commands: the
/// most a `Watch` waits for its reader (announcements arrive at once).
const READ_WAIT: Duration = Duration::from_millis(10);
/// A `SSUBSCRIBE` unconfirmed after this means the slot moved (the crate
/// drops the `MOVED` error of a connection that timed out a read before):
/// the topology is read again.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);
/// How often the coordinator reads the slot owners even when nothing failed
/// (a resharding moves slots without failing any connection).
const TOPOLOGY_EVERY: Duration = Duration::from_secs(5);

/// What a reader tells the coordinator.
enum Report {
    Up(usize),
    Down(usize),
    /// The topology is not what this reader was told.
    Moved,
}

/// What the coordinator tells a reader.
enum Order {
    Add(Arc<str>),
    Remove(Arc<str>),
}

/// A master: its address and the slot ranges it owns.
#[derive(Debug, Clone, PartialEq)]
struct Master {
    addr: (String, u16),
    slots: Vec<(u16, u16)>,
}

pub fn spawn(
    seeds: Vec<redis::Client>,
    watch: Receiver<Watch>,
    events: Sender<Event>,
    stats: Arc<BackplaneStats>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (wild, wild_orders) = crossbeam_channel::unbounded();
    let wild_seeds = seeds.iter().map(|s| s.get_connection_info().clone()).collect();
    super::wild::spawn(wild_seeds, wild_orders, events.clone(), stats.clone())?;
    std::thread::Builder::new().name("halley-redis-shards".into()).spawn(move || {
        Coordinator {
            wild,
            seeds,
            events,
            stats,
            channels: HashSet::new(),
            masters: Vec::new(),
            readers: Vec::new(),
        }
        .run(watch)
    })
}

struct Coordinator {
    /// The wildcard feed's reader (`wild.rs`): whether it is wanted. It ends
    /// when this coordinator does.
    wild: Sender<bool>,
    seeds: Vec<redis::Client>,
    events: Sender<Event>,
    stats: Arc<BackplaneStats>,
    /// Every channel the fan-out watches.
    channels: HashSet<Arc<str>>,
    masters: Vec<Master>,
    /// One per master, in `masters`' order: its orders and whether it is up.
    readers: Vec<(Sender<Order>, bool)>,
}

impl Coordinator {
    fn run(mut self, watch: Receiver<Watch>) {
        let (report_tx, reports) = crossbeam_channel::unbounded();
        let mut backoff = BACKOFF_MIN;
        let mut next_topology = Instant::now();
        loop {
            if Instant::now() >= next_topology {
                match self.topology() {
                    Ok(masters) if masters != self.masters => {
                        crate::log::info(format_args!("backplane: cluster of {} masters", masters.len()));
                        self.rebuild(masters, &report_tx);
                        backoff = BACKOFF_MIN;
                    }
                    Ok(_) => backoff = BACKOFF_MIN,
                    Err(e) => {
                        crate::log::warn(format_args!("backplane: cluster topology: {e}"));
                        backoff = next_backoff(backoff);
                    }
                }
                let every = if self.masters.is_empty() { backoff } else { TOPOLOGY_EVERY };
                next_topology = Instant::now() + every;
            }
            let wait = next_topology.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            crossbeam_channel::select! {
                recv(watch) -> msg => match msg {
                    Ok(w) => self.order(w),
                    Err(_) => return,
                },
                recv(reports) -> msg => match msg {
                    Ok(report) => self.report(report, &mut next_topology),
                    Err(_) => return,
                },
                default(wait) => {
                    // A closed fan-out ends the listener.
                    if self.events.send(Event::Message(super::listen::idle_probe())).is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn report(&mut self, report: Report, next_topology: &mut Instant) {
        match report {
            Report::Up(i) | Report::Down(i) => {
                let up = matches!(report, Report::Up(_));
                if let Some(reader) = self.readers.get_mut(i) {
                    reader.1 = up;
                }
                if !up {
                    // A master down may mean a failover: read the owners again.
                    *next_topology = Instant::now();
                }
            }
            Report::Moved => *next_topology = Instant::now(),
        }
        let all_up = !self.readers.is_empty() && self.readers.iter().all(|r| r.1);
        self.stats.listening.store(all_up, Ordering::Relaxed);
    }

    /// Routes a watch to the reader of the channel's master; with no
    /// topology yet it is answered at once (no master to store on either),
    /// and subscribed once the readers start.
    fn order(&mut self, watch: Watch) {
        let (channel, order) = match watch {
            Watch::Add(c) => {
                self.channels.insert(c.clone());
                (c.clone(), Order::Add(c))
            }
            Watch::Remove(c) => {
                self.channels.remove(&c);
                (c.clone(), Order::Remove(c))
            }
            Watch::Wild(wanted) => {
                let _ = self.wild.send(wanted);
                return;
            }
        };
        match self.owner(&channel) {
            Some(i) => {
                let _ = self.readers[i].0.send(order);
            }
            None => {
                if let Order::Add(c) = order {
                    let _ = self.events.send(Event::Watching(c));
                }
            }
        }
    }

    fn owner(&self, channel: &str) -> Option<usize> {
        let slot = keys::slot(channel);
        let i = self.masters.iter().position(|m| m.slots.iter().any(|&(a, b)| a <= slot && slot <= b))?;
        (i < self.readers.len()).then_some(i)
    }

    /// New readers for a new topology, each with its channels; the old ones
    /// end when their order queue closes. The new readers resubscribe, and
    /// say `ShardResubscribed` (the fan-out catches up) once subscribed.
    fn rebuild(&mut self, masters: Vec<Master>, reports: &Sender<Report>) {
        let was_running = !self.readers.is_empty();
        self.readers.clear();
        self.masters = masters;
        let mut per_master: Vec<Vec<Arc<str>>> = vec![Vec::new(); self.masters.len()];
        for channel in &self.channels {
            if let Some(i) = self.masters.iter().position(|m| {
                let slot = keys::slot(channel);
                m.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
            }) {
                per_master[i].push(channel.clone());
            }
        }
        if was_running {
            let _ = self.events.send(Event::ListenerDown);
        }
        for (i, (master, channels)) in self.masters.iter().zip(per_master).enumerate() {
            // Channels a reader starts with were answered by an earlier
            // reader, or at once while no master was known: what was
            // published before this one subscribes is read from the streams.
            let catch_up = was_running || !channels.is_empty();
            let (tx, rx) = crossbeam_channel::unbounded();
            let reader = Reader {
                index: i,
                info: self.reader_info(master),
                control: i == 0,
                channels: channels.into_iter().collect(),
                pending: HashMap::new(),
                leaving: HashMap::new(),
                orders: rx,
                reports: reports.clone(),
                events: self.events.clone(),
                announce_resubscribed: catch_up,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("halley-redis-shard{i}"))
                .spawn(move || reader.run());
            if let Err(e) = spawned {
                crate::log::warn(format_args!("backplane: shard reader thread: {e}"));
            }
            self.readers.push((tx, false));
        }
        self.stats.listening.store(false, Ordering::Relaxed);
    }

    /// How a reader connects to a master: the first seed's settings
    /// (credentials, database) on the master's address, in RESP3.
    fn reader_info(&self, master: &Master) -> redis::ConnectionInfo {
        let addr = redis::ConnectionAddr::Tcp(master.addr.0.clone(), master.addr.1);
        let base = match self.seeds.first() {
            Some(seed) => seed.get_connection_info().clone(),
            None => addr.clone().into_connection_info().expect("a TCP address is a connection info"),
        };
        let settings = base.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
        base.set_addr(addr).set_redis_settings(settings)
    }

    /// The masters and their slots, from the first seed that answers.
    fn topology(&self) -> Result<Vec<Master>, String> {
        let mut last_error = String::from("no node given");
        for seed in &self.seeds {
            match read_slots(seed) {
                Ok(masters) => return Ok(masters),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(last_error)
    }
}

/// `CLUSTER SLOTS`: `[[start, end, [host, port, id], replicas…], …]`,
/// grouped by master, masters sorted by address (a stable order).
fn read_slots(seed: &redis::Client) -> redis::RedisResult<Vec<Master>> {
    let mut con = seed.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con)?;
    let mut masters: Vec<Master> = Vec::new();
    for range in ranges {
        let Some((start, end, addr)) = parse_range(&range) else { continue };
        match masters.iter_mut().find(|m| m.addr == addr) {
            Some(m) => m.slots.push((start, end)),
            None => masters.push(Master { addr, slots: vec![(start, end)] }),
        }
    }
    masters.sort_by(|a, b| a.addr.cmp(&b.addr));
    for m in &mut masters {
        m.slots.sort_unstable();
    }
    Ok(masters)
}

fn parse_range(range: &Value) -> Option<(u16, u16, (String, u16))> {
    let Value::Array(parts) = range else { return None };
    let int = |v: &Value| match v {
        Value::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    };
    let Value::Array(master) = parts.get(2)? else { return None };
    let host = match master.first()? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
        Value::SimpleString(s) => s.clone(),
        _ => return None,
    };
    Some((int(parts.first()?)?, int(parts.get(1)?)?, (host, int(master.get(1)?)?)))
}

/// One master's subscriptions, on one connection.
struct Reader {
    index: usize,
    info: redis::ConnectionInfo,
    /// Whether this reader also listens to the control channel.
    control: bool,
    /// Channels wanted on this master.
    channels: HashSet<Arc<str>>,
    /// `SSUBSCRIBE`s sent and not yet confirmed, with when they were sent.
    pending: HashMap<Arc<str>, Instant>,
    /// `SUNSUBSCRIBE`s sent and not yet confirmed: their confirmations are
    /// not the master dropping a channel whose slot moved away.
    leaving: HashMap<Arc<str>, usize>,
    orders: Receiver<Order>,
    reports: Sender<Report>,
    events: Sender<Event>,
    /// Say `ShardResubscribed` once subscribed (this reader replaces another, or
    /// reconnected).
    announce_resubscribed: bool,
}

/// Why a reader stops reading.
enum Stop {
    /// The coordinator dropped it (or the fan-out is gone).
    Ended,
    Failed(String),
}

impl Reader {
    fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.session() {
                Stop::Ended => return,
                Stop::Failed(e) => {
                    crate::log::warn(format_args!(
                        "backplane: shard {} ({}): {e}",
                        self.index,
                        self.info.addr()
                    ));
                    let _ = self.reports.send(Report::Down(self.index));
                    let _ = self.events.send(Event::ListenerDown);
                    self.announce_resubscribed = true;
                }
            }
            // Down: orders are answered at once (nothing can be stored on
            // this master either) until it is back.
            let until = Instant::now() + backoff;
            while let Some(wait) = until.checked_duration_since(Instant::now()) {
                match self.orders.recv_timeout(wait) {
                    Ok(order) => {
                        if let Some(channel) = self.apply(order) {
                            let _ = self.events.send(Event::Watching(channel));
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            backoff = next_backoff(backoff);
        }
    }

    /// Records an order; the channel to subscribe, for an `Add`.
    fn apply(&mut self, order: Order) -> Option<Arc<str>> {
        match order {
            Order::Add(c) => {
                self.channels.insert(c.clone());
                Some(c)
            }
            Order::Remove(c) => {
                self.channels.remove(&c);
                self.pending.remove(&c);
                None
            }
        }
    }

    /// Connects, subscribes to every wanted channel, then reads pushes and
    /// carries out orders until something fails.
    fn session(&mut self) -> Stop {
        let mut con = match self.connect() {
            Ok(con) => con,
            Err(e) => return Stop::Failed(e.to_string()),
        };
        self.pending.clear();
        self.leaving.clear();
        let all: Vec<Arc<str>> = self.channels.iter().cloned().collect();
        for channel in &all {
            if let Err(e) = self.subscribe(&mut con, channel) {
                return Stop::Failed(e.to_string());
            }
        }
        let mut resubscribing = std::mem::take(&mut self.announce_resubscribed);
        let mut reported_up = false;
        loop {
            if !reported_up && self.pending.is_empty() {
                reported_up = true;
                let _ = self.reports.send(Report::Up(self.index));
            }
            if resubscribing && self.pending.is_empty() {
                resubscribing = false;
                let channels = self.channels.iter().cloned().collect();
                if self.events.send(Event::ShardResubscribed(channels)).is_err() {
                    return Stop::Ended;
                }
            }
            loop {
                match self.orders.try_recv() {
                    Ok(order) => {
                        if let Err(e) = self.carry_out(&mut con, order) {
                            return Stop::Failed(e.to_string());
                        }
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return Stop::Ended,
                }
            }
            if self.pending.values().any(|sent| sent.elapsed() > CONFIRM_WAIT) {
                let _ = self.reports.send(Report::Moved);
                return Stop::Failed("a subscription was not confirmed; slots moved?".into());
            }
            match con.recv_response() {
                Ok(value) => {
                    if let Some(stop) = self.on_push(value) {
                        return stop;
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Stop::Failed(e.to_string()),
            }
        }
    }

    /// One order on a live connection. An `Add` of a channel already
    /// subscribed is confirmed at once; of one being subscribed, by the
    /// confirmation on its way.
    fn carry_out(&mut self, con: &mut redis::Connection, order: Order) -> redis::RedisResult<()> {
        match order {
            Order::Add(c) if self.channels.contains(&c) => {
                if !self.pending.contains_key(&c) {
                    let _ = self.events.send(Event::Watching(c));
                }
                Ok(())
            }
            Order::Add(c) => {
                self.channels.insert(c.clone());
                self.subscribe(con, &c)
            }
            Order::Remove(c) => {
                self.apply(Order::Remove(c.clone()));
                *self.leaving.entry(c.clone()).or_default() += 1;
                con.send_packed_command(
                    &redis::cmd("SUNSUBSCRIBE").arg(keys::notify(&c)).get_packed_command(),
                )
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.info.clone())?;
        let mut con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        if self.control {
            // A plain reply before the connection is in pub/sub mode.
            con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
            let cmd = redis::cmd("SUBSCRIBE").arg(keys::CONTROL).get_packed_command();
            con.send_packed_command(&cmd)?;
        }
        con.set_read_timeout(Some(READ_WAIT))?;
        Ok(con)
    }

    fn subscribe(&mut self, con: &mut redis::Connection, channel: &Arc<str>) -> redis::RedisResult<()> {
        self.pending.insert(channel.clone(), Instant::now());
        con.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(keys::notify(channel)).get_packed_command())
    }

    /// One push from the master; `Some` stops the session.
    fn on_push(&mut self, value: Value) -> Option<Stop> {
        let Value::Push { kind, data } = value else {
            // A plain reply on a subscribed connection: an error (`MOVED`).
            let _ = self.reports.send(Report::Moved);
            return Some(Stop::Failed(format!("unexpected reply {value:?}")));
        };
        let name = data.first().and_then(|v| match v {
            Value::BulkString(b) => std::str::from_utf8(b).ok(),
            _ => None,
        })?;
        let event = match kind {
            PushKind::SMessage => {
                let Some(Value::BulkString(payload)) = data.get(1) else { return None };
                Event::Message(super::listen::parse_announcement(name, payload)?)
            }
            PushKind::Message if name == keys::CONTROL => {
                let Some(Value::BulkString(payload)) = data.get(1) else { return None };
                let channel = std::str::from_utf8(payload).ok()?.strip_prefix("del ")?;
                Event::Deleted(Arc::from(channel))
            }
            PushKind::SSubscribe => {
                let channel: Arc<str> = Arc::from(keys::channel_of_notify(name)?);
                self.pending.remove(&channel)?;
                Event::Watching(channel)
            }
            PushKind::SUnsubscribe => {
                // Ours, or the master's when the slot moved away from it.
                let channel: Arc<str> = Arc::from(keys::channel_of_notify(name)?);
                if let Some(n) = self.leaving.get_mut(&channel) {
                    *n -= 1;
                    if *n == 0 {
                        self.leaving.remove(&channel);
                    }
                    return None;
                }
                if self.channels.contains(&channel) {
                    let _ = self.reports.send(Report::Moved);
                    return Some(Stop::Failed(format!("unsubscribed from {channel} by the master")));
                }
                return None;
            }
            _ => return None,
        };
        if self.events.send(event).is_err() {
            return Some(Stop::Ended);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_a_cluster_slots_range() {
        let range = Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id0")]),
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(7003), bulk("id3")]),
        ]);
        assert_eq!(parse_range(&range), Some((0, 5460, ("127.0.0.1".to_string(), 7000))));
        assert_eq!(parse_range(&Value::Array(vec![Value::Int(0)])), None);
    }
}
