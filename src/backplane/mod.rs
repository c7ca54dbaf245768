//! The Redis backplane: many halley nodes, one set of channels.
//!
//! With `redis` set, a channel's history is a Redis stream and its messages
//! reach every node through Redis pub/sub. The fan-out thread keeps doing its
//! job (ids aside): it hands each batch of publishes to the backplane's
//! command thread, which stores and announces them in one pipelined round
//! trip (the store-and-notify script, `script.rs`), and every node's listener
//! thread hands what is announced back to its fan-out thread, which delivers
//! it as it delivers local publishes today: one wake-up per loop per batch.
//! The message id is the one Redis assigned, so every node delivers the same
//! message under the same id, per channel in one order.
//!
//! Both threads own their connections and block only themselves (the `redis`
//! crate's sync API, with timeouts); the loops and the fan-out never wait on
//! Redis. Each reconnects with backoff on its own.
//!
//! With `redis` a comma-separated list of node URLs, the Redis is a Redis
//! Cluster: the command thread runs on the crate's cluster connection with
//! per-channel keys only (ids per channel), and the listener is `shard.rs`:
//! sharded pub/sub, one connection per master, subscribed to the channels
//! the fan-out names (`Watch`), plus the wildcard feed (`wild.rs`) while
//! the node has engine wildcard subscriptions.

mod command;
pub mod keys;
mod listen;
pub mod script;
mod shard;
mod wild;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::hub::MessageId;

/// Connect and command timeouts: a Redis that does not answer within them
/// is treated as down, so a publish is refused within a few seconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff: from 100 ms, doubling, at most 2 s.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A node's counts expire unless refreshed: it is counted as gone after this.
pub const NODE_TTL: Duration = Duration::from_secs(3);

/// Settings the backplane needs.
#[derive(Debug, Clone)]
pub struct BackplaneConfig {
    pub url: String,
    pub history_size: usize,
    pub history_ttl: Duration,
}

/// The backplane's state, for `/stats`, `/metrics` and `/healthz`. One
/// writer each: the listener writes `connected`, the command thread the rest.
#[derive(Default)]
pub struct BackplaneStats {
    /// The listener is subscribed (messages from other nodes arrive).
    pub listening: AtomicBool,
    /// The command connection is up (publishes can be stored).
    pub connected: AtomicBool,
    /// The last command round trip, in microseconds.
    pub rtt_us: AtomicU64,
    /// Jobs waiting for the command thread.
    pub queued: AtomicU64,
    pub errors: AtomicU64,
    pub reconnects: AtomicU64,
    /// Redis Cluster: some node has engine wildcard subscriptions, so this
    /// node's publishes also go on the wildcard feed (`keys::WILD`).
    pub wild_feed: AtomicBool,
    /// Redis Cluster: messages this node put on the wildcard feed.
    pub wild_announced: AtomicU64,
    /// Set by the listener when its connection drops (Redis restarted or
    /// gone): the command thread then reconnects before its next job
    /// instead of failing one publish on a dead connection.
    pub reset: AtomicBool,
}

/// One message to store.
#[derive(Debug, Clone)]
pub struct StoreItem {
    pub channel: Arc<str>,
    pub data: Box<str>,
    pub event: Option<Box<str>>,
    pub ext: Option<Box<str>>,
}

/// A message as Redis holds it (from the stream or an announcement).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: MessageId,
    pub channel: Arc<str>,
    pub data: Box<str>,
    pub event: Option<Box<str>>,
    pub ext: Option<Box<str>>,
}

/// What history a fetch wants for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Every entry after this id.
    After(MessageId),
    /// The last N entries.
    Last(usize),
}

/// Work for the command thread.
#[derive(Debug)]
pub enum Job {
    /// Store and announce, in order; answered by `Event::Stored`.
    Store { tag: u64, items: Vec<StoreItem> },
    /// Read history; answered by `Event::Fetched`.
    Fetch { tag: u64, channels: Vec<(Arc<str>, Range)> },
    /// A channel's cluster-wide facts; answered by `Event::Counted`.
    Count { tag: u64, channel: Arc<str> },
    /// Empty a channel everywhere; answered by `Event::DeleteDone`.
    Delete { tag: u64, channel: Arc<str> },
    /// This node's subscriber counts (refreshed about once a second), and
    /// whether its engines have wildcard subscriptions (Redis Cluster: the
    /// nodes' publishes go on the wildcard feed only while some node has).
    Heartbeat { counts: Vec<(Arc<str>, usize)>, wild: bool },
}

/// A channel's cluster-wide facts.
#[derive(Debug, Clone, Default)]
pub struct ChannelFacts {
    pub retained: usize,
    pub last_id: Option<MessageId>,
    pub cluster_subscribers: usize,
    pub exists: bool,
}

/// What the backplane's threads tell the fan-out thread.
#[derive(Debug)]
pub enum Event {
    Stored {
        tag: u64,
        result: Result<Vec<MessageId>, String>,
    },
    /// Per channel of the fetch, in its order: the entries (oldest first)
    /// and whether Redis had already dropped some that were asked for.
    Fetched {
        tag: u64,
        result: Result<Vec<(Vec<Stored>, bool)>, String>,
    },
    Counted {
        tag: u64,
        result: Result<ChannelFacts, String>,
    },
    DeleteDone {
        tag: u64,
        result: Result<(), String>,
    },
    /// Announced by some node (this one included), in Redis' order.
    Message(Stored),
    /// A channel was deleted (by any node).
    Deleted(Arc<str>),
    /// The listener is subscribed again after being down: what was missed
    /// meanwhile must be read from the streams.
    Resubscribed,
    /// The listener lost its connection.
    ListenerDown,
    /// Redis Cluster: the listener is subscribed to this channel's
    /// announcements (the answer to `Watch::Add`).
    Watching(Arc<str>),
    /// Redis Cluster: one master's reader is subscribed again after being
    /// down: these channels (that master's) must be read from the streams.
    /// Only they: the other masters' channels lost nothing, and a master
    /// still down would fail a read of them all.
    ShardResubscribed(Vec<Arc<str>>),
    /// Redis Cluster: announced on the wildcard feed (`keys::WILD`, asked
    /// for with `Watch::Wild`), in Redis' order per channel. A channel the
    /// listener also receives by sharded pub/sub can come on both feeds.
    Wild(Stored),
    /// Redis Cluster: the wildcard feed is subscribed (again): from now on
    /// channels this node has records of can come on both feeds.
    WildUp,
}

/// The fan-out thread's side of the backplane.
pub struct Backplane {
    pub jobs: Sender<Job>,
    pub events: Receiver<Event>,
    pub stats: Arc<BackplaneStats>,
    /// Redis Cluster only: the channels this node needs announcements of
    /// (sharded pub/sub has no patterns), for the listener.
    pub watch: Option<Sender<Watch>>,
}

/// What the fan-out tells a cluster listener.
#[derive(Debug)]
pub enum Watch {
    /// Subscribe to the channel's announcements; answered by
    /// `Event::Watching` once the shard confirmed the `SSUBSCRIBE` (every
    /// announcement after that reaches this node).
    Add(Arc<str>),
    /// Nobody here needs the channel any more.
    Remove(Arc<str>),
    /// Whether this node has engine wildcard subscriptions, so needs the
    /// wildcard feed (sharded pub/sub has no patterns).
    Wild(bool),
}

impl Backplane {
    /// Hands a job to the command thread.
    pub fn send(&self, job: Job) {
        crate::stats::inc(&self.stats.queued);
        let _ = self.jobs.send(job);
    }
}

/// Starts the command and listener threads. `node` names this node in the
/// cluster-wide counts.
pub fn start(config: BackplaneConfig, node: String) -> Result<Backplane, String> {
    let nodes = cluster_nodes(&config.url);
    if !nodes.is_empty() {
        return start_cluster(config, node, nodes);
    }
    let client =
        redis::Client::open(config.url.as_str()).map_err(|e| format!("redis URL '{}': {e}", config.url))?;
    let stats = Arc::new(BackplaneStats::default());
    // Unbounded: jobs come from the fan-out thread (one store per batch),
    // events at most one per announced message, drained every fan-out turn.
    let (jobs, job_rx) = crossbeam_channel::unbounded();
    let (event_tx, events) = crossbeam_channel::unbounded();
    command::spawn(
        command::Target::Single(client.clone()),
        config,
        node,
        job_rx,
        event_tx.clone(),
        stats.clone(),
    )
    .map_err(|e| format!("backplane command thread: {e}"))?;
    listen::spawn(client, event_tx, stats.clone()).map_err(|e| format!("backplane listener thread: {e}"))?;
    Ok(Backplane { jobs, events, stats, watch: None })
}

/// The node URLs of a cluster setting (`redis` as a comma-separated list);
/// empty for one URL (one Redis).
pub fn cluster_nodes(setting: &str) -> Vec<String> {
    if !setting.contains(',') {
        return Vec::new();
    }
    setting.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// Redis Cluster: the command thread on the crate's cluster connection, the
/// listener on one connection per master (sharded pub/sub).
fn start_cluster(config: BackplaneConfig, node: String, nodes: Vec<String>) -> Result<Backplane, String> {
    let clients = nodes
        .iter()
        .map(|url| redis::Client::open(url.as_str()).map_err(|e| format!("redis URL '{url}': {e}")))
        .collect::<Result<Vec<_>, String>>()?;
    // Few, short retries: a master that is down must turn into a 503 within
    // a few seconds, not wait out the crate's default backoff.
    let cluster = redis::cluster::ClusterClient::builder(nodes.clone())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(COMMAND_TIMEOUT)
        .retries(2)
        .min_retry_wait(50)
        .max_retry_wait(500)
        .build()
        .map_err(|e| format!("redis cluster {nodes:?}: {e}"))?;
    let stats = Arc::new(BackplaneStats::default());
    let (jobs, job_rx) = crossbeam_channel::unbounded();
    let (event_tx, events) = crossbeam_channel::unbounded();
    let (watch, watch_rx) = crossbeam_channel::unbounded();
    command::spawn(command::Target::Cluster(cluster), config, node, job_rx, event_tx.clone(), stats.clone())
        .map_err(|e| format!("backplane command thread: {e}"))?;
    shard::spawn(clients, watch_rx, event_tx, stats.clone())
        .map_err(|e| format!("backplane listener thread: {e}"))?;
    Ok(Backplane { jobs, events, stats, watch: Some(watch) })
}

/// Doubles a backoff up to its ceiling.
fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_urls_is_a_cluster_and_one_url_is_not() {
        assert!(cluster_nodes("redis://127.0.0.1:6379").is_empty());
        assert_eq!(
            cluster_nodes("redis://a:7000, redis://b:7000,"),
            ["redis://a:7000".to_string(), "redis://b:7000".to_string()]
        );
    }
}
