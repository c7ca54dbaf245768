//! The command thread: owns one Redis connection and runs the fan-out
//! thread's jobs in order (store, fetch, count, delete, heartbeat), each as
//! one pipelined round trip. A job that finds Redis down fails at once (the
//! publisher gets 503), and the thread reconnects with backoff.
//!
//! On a Redis Cluster the connection is the crate's `ClusterConnection`
//! (it routes each script call by its first key and follows MOVED/ASK),
//! the scripts go as `EVAL` with their source (no `SCRIPT LOAD` on every
//! master to keep in step), and the last-id and count keys are the
//! channel's own, so every call touches one slot.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use redis::Value;

use super::*;

struct Commander {
    client: Target,
    config: BackplaneConfig,
    node: String,
    events: Sender<Event>,
    stats: Arc<BackplaneStats>,
    con: Option<Connected>,
    /// No connection attempt before this (backoff after a failure).
    retry_at: Instant,
    backoff: Duration,
}

/// A live connection: to one Redis with the scripts loaded (their SHA1s),
/// or to a cluster (the scripts sent whole).
enum Connected {
    Single {
        con: redis::Connection,
        store: String,
        delete: String,
        fetch: String,
        count: String,
    },
    /// Boxed: one per thread, and the cluster connection is large.
    Cluster {
        con: Box<redis::cluster::ClusterConnection>,
        reported: Vec<Arc<str>>,
    },
}

/// The scripts, by name.
#[derive(Clone, Copy)]
enum Script {
    Store,
    Delete,
    Fetch,
    Count,
}

impl Connected {
    fn cluster(&self) -> bool {
        matches!(self, Connected::Cluster { .. })
    }

    /// A script call: `EVALSHA` of the loaded script, or `EVAL` of its
    /// source on a cluster (`COUNT` is the cluster's own variant there).
    fn script(&self, which: Script) -> redis::Cmd {
        match self {
            Connected::Single { store, delete, fetch, count, .. } => {
                let sha = match which {
                    Script::Store => store,
                    Script::Delete => delete,
                    Script::Fetch => fetch,
                    Script::Count => count,
                };
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(sha);
                cmd
            }
            Connected::Cluster { .. } => {
                let source = match which {
                    Script::Store => script::STORE,
                    Script::Delete => script::DELETE,
                    Script::Fetch => script::FETCH,
                    Script::Count => script::COUNT_CLUSTER,
                };
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(source);
                cmd
            }
        }
    }

    /// Sends the commands in one pipeline (per master on a cluster).
    fn pipeline<T: redis::FromRedisValue>(&mut self, cmds: Vec<redis::Cmd>) -> redis::RedisResult<T> {
        match self {
            Connected::Single { con, .. } => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(con)
            }
            Connected::Cluster { con, .. } => {
                let mut pipe = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(con)
            }
        }
    }

    fn query<T: redis::FromRedisValue>(&mut self, cmd: redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Connected::Single { con, .. } => cmd.query(con),
            Connected::Cluster { con, .. } => cmd.query(&mut **con),
        }
    }
}

/// What the command thread connects to.
#[derive(Clone)]
pub enum Target {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

pub fn spawn(
    client: Target,
    config: BackplaneConfig,
    node: String,
    jobs: Receiver<Job>,
    events: Sender<Event>,
    stats: Arc<BackplaneStats>,
) -> std::io::Result<JoinHandle<()>> {
    let mut commander = Commander {
        client,
        config,
        node,
        events,
        stats,
        con: None,
        retry_at: Instant::now(),
        backoff: BACKOFF_MIN,
    };
    std::thread::Builder::new().name("halley-redis-cmd".into()).spawn(move || {
        // Connect at once so /healthz and /stats tell the truth from the start.
        let _ = commander.connection();
        while let Ok(job) = jobs.recv() {
            crate::stats::dec(&commander.stats.queued);
            commander.run(job);
        }
    })
}

fn load(con: &mut redis::Connection, source: &str) -> redis::RedisResult<String> {
    redis::cmd("SCRIPT").arg("LOAD").arg(source).query(con)
}

impl Commander {
    /// The connection, connecting if it is time to try; `Err` says why not.
    fn connection(&mut self) -> Result<&mut Connected, String> {
        if self.stats.reset.swap(false, std::sync::atomic::Ordering::Relaxed) && self.con.is_some() {
            // The listener saw Redis go away: this connection is dead too.
            self.lost();
            self.retry_at = Instant::now();
        }
        if self.con.is_none() {
            if Instant::now() < self.retry_at {
                return Err("Redis is unavailable; reconnecting".into());
            }
            match self.connect() {
                Ok(connected) => {
                    self.backoff = BACKOFF_MIN;
                    self.stats.connected.store(true, std::sync::atomic::Ordering::Relaxed);
                    crate::log::info(format_args!("backplane: connected to {}", self.config.url));
                    self.con = Some(connected);
                }
                Err(e) => {
                    self.stats.connected.store(false, std::sync::atomic::Ordering::Relaxed);
                    self.retry_at = Instant::now() + self.backoff;
                    self.backoff = next_backoff(self.backoff);
                    crate::stats::inc(&self.stats.errors);
                    crate::log::warn(format_args!("backplane: cannot reach Redis: {e}"));
                    return Err(format!("Redis is unavailable: {e}"));
                }
            }
        }
        self.con.as_mut().ok_or_else(|| "Redis is unavailable".to_string())
    }

    /// The connection is gone: the next job reconnects.
    fn lost(&mut self) {
        self.con = None;
        self.stats.connected.store(false, std::sync::atomic::Ordering::Relaxed);
        crate::stats::inc(&self.stats.reconnects);
    }

    fn connect(&self) -> redis::RedisResult<Connected> {
        let client = match &self.client {
            Target::Single(client) => client,
            Target::Cluster(client) => {
                let con = client.get_connection()?;
                con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
                con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
                return Ok(Connected::Cluster { con: Box::new(con), reported: Vec::new() });
            }
        };
        let mut con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        Ok(Connected::Single {
            store: load(&mut con, script::STORE)?,
            delete: load(&mut con, script::DELETE)?,
            fetch: load(&mut con, script::FETCH)?,
            count: load(&mut con, script::COUNT)?,
            con,
        })
    }

    /// Runs `f` on the connection; a failure drops the connection (the next
    /// job reconnects) and is counted.
    fn with<T>(&mut self, f: impl FnOnce(&mut Connected) -> redis::RedisResult<T>) -> Result<T, String> {
        let started = Instant::now();
        let connected = self.connection()?;
        // A cluster connection too is dropped on a connection error: the
        // crate's sync cluster connection keeps a broken connection to a
        // master that restarted, so a fresh one (slots read again) is what
        // brings that master's channels back.
        match f(connected) {
            Ok(value) => {
                crate::stats::set(&self.stats.rtt_us, started.elapsed().as_micros() as u64);
                Ok(value)
            }
            Err(e) => {
                crate::stats::inc(&self.stats.errors);
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
                {
                    self.con = None;
                    self.stats.connected.store(false, std::sync::atomic::Ordering::Relaxed);
                    crate::stats::inc(&self.stats.reconnects);
                    self.retry_at = Instant::now();
                }
                crate::log::warn(format_args!("backplane: {e}"));
                Err(format!("Redis: {e}"))
            }
        }
    }

    fn run(&mut self, job: Job) {
        let event = match job {
            Job::Store { tag, items } => Event::Stored { tag, result: self.store(&items) },
            Job::Fetch { tag, channels } => Event::Fetched { tag, result: self.fetch(&channels) },
            Job::Count { tag, channel } => Event::Counted { tag, result: self.count(&channel) },
            Job::Delete { tag, channel } => Event::DeleteDone { tag, result: self.delete(&channel) },
            Job::Heartbeat { counts, wild } => {
                let _ = self.heartbeat(&counts, wild);
                return;
            }
        };
        let _ = self.events.send(event);
    }

    /// Stores and announces every item in one pipelined round trip.
    fn store(&mut self, items: &[StoreItem]) -> Result<Vec<MessageId>, String> {
        let size = self.config.history_size.max(1);
        let age_ms = self.config.history_ttl.as_millis() as u64;
        let feed = self.stats.wild_feed.load(std::sync::atomic::Ordering::Relaxed);
        let ids: Vec<String> = self.with(|c| {
            let cluster = c.cluster();
            let cmds = items
                .iter()
                .map(|item| {
                    let (last_id, announce, wild) = match cluster {
                        true => {
                            let wild = if feed && keys::wild(&item.channel) { keys::WILD } else { "" };
                            (keys::last_id(&item.channel), "SPUBLISH", wild)
                        }
                        false => (keys::LAST_ID.to_string(), "PUBLISH", ""),
                    };
                    let mut cmd = c.script(Script::Store);
                    cmd.arg(3)
                        .arg(keys::stream(&item.channel))
                        .arg(last_id)
                        .arg(keys::dropped(&item.channel))
                        .arg(size)
                        .arg(age_ms)
                        .arg(&*item.data)
                        .arg(item.event.as_deref().unwrap_or(""))
                        .arg(item.ext.as_deref().unwrap_or(""))
                        .arg(keys::notify(&item.channel))
                        .arg(&*item.channel)
                        .arg(announce)
                        .arg(wild);
                    cmd
                })
                .collect();
            c.pipeline(cmds)
        })?;
        if feed {
            let on_feed = items.iter().filter(|item| keys::wild(&item.channel)).count() as u64;
            crate::stats::add(&self.stats.wild_announced, on_feed);
        }
        ids.iter().map(|id| id.parse().map_err(|e| format!("Redis gave a bad id: {e}"))).collect()
    }

    fn fetch(&mut self, channels: &[(Arc<str>, Range)]) -> Result<Vec<(Vec<Stored>, bool)>, String> {
        let replies: Vec<Value> = self.with(|c| {
            let cmds = channels
                .iter()
                .map(|(channel, range)| {
                    let (mode, arg) = match range {
                        Range::After(id) => ("after", id.to_string()),
                        Range::Last(n) => ("last", n.to_string()),
                    };
                    let mut cmd = c.script(Script::Fetch);
                    cmd.arg(2).arg(keys::stream(channel)).arg(keys::dropped(channel)).arg(mode).arg(arg);
                    cmd
                })
                .collect();
            c.pipeline(cmds)
        })?;
        channels
            .iter()
            .zip(replies)
            .map(|((channel, range), reply)| {
                let (entries, dropped) = parse_fetch(channel, reply)?;
                let gap = match range {
                    Range::After(id) => *id < dropped,
                    Range::Last(_) => false,
                };
                let mut entries = entries;
                if let Range::Last(_) = range {
                    entries.reverse();
                }
                Ok((entries, gap))
            })
            .collect()
    }

    fn count(&mut self, channel: &Arc<str>) -> Result<ChannelFacts, String> {
        let alive_since = crate::clock::unix_ms().saturating_sub(NODE_TTL.as_millis() as u64);
        let reply: (usize, u8, usize, String) = self.with(|c| {
            let mut cmd = c.script(Script::Count);
            match c.cluster() {
                true => {
                    cmd.arg(2).arg(keys::stream(channel)).arg(keys::channel_counts(channel)).arg(alive_since)
                }
                false => {
                    cmd.arg(2).arg(keys::stream(channel)).arg(keys::NODES).arg(alive_since).arg(&**channel)
                }
            };
            c.query(cmd)
        })?;
        let (cluster_subscribers, exists, retained, last) = reply;
        Ok(ChannelFacts { cluster_subscribers, exists: exists == 1, retained, last_id: last.parse().ok() })
    }

    fn delete(&mut self, channel: &Arc<str>) -> Result<(), String> {
        self.with(|c| {
            let mut cmd = c.script(Script::Delete);
            cmd.arg(2)
                .arg(keys::stream(channel))
                .arg(keys::dropped(channel))
                .arg(keys::CONTROL)
                .arg(&**channel);
            c.query::<i64>(cmd)
        })
        .map(|_| ())
    }

    /// This node's counts, replaced whole, with an expiry; the node set
    /// scored by the time, so the dead drop out of the sums.
    fn heartbeat(&mut self, counts: &[(Arc<str>, usize)], wild: bool) -> Result<(), String> {
        let key = keys::node_counts(&self.node);
        let now = crate::clock::unix_ms();
        let node = self.node.clone();
        let stats = self.stats.clone();
        self.with(|c| {
            let con = match c {
                Connected::Cluster { con, reported } => {
                    cluster_heartbeat(con, reported, &node, now, counts)?;
                    let feed = wild_feed_wanted(con, &node, now, wild)?;
                    stats.wild_feed.store(feed, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                Connected::Single { con, .. } => con,
            };
            let mut pipe = redis::pipe();
            pipe.cmd("DEL").arg(&key).ignore();
            if !counts.is_empty() {
                let hset = pipe.cmd("HSET").arg(&key);
                for (channel, n) in counts {
                    hset.arg(&**channel).arg(*n);
                }
                hset.ignore();
            }
            pipe.cmd("PEXPIRE").arg(&key).arg(NODE_TTL.as_millis() as u64).ignore();
            pipe.cmd("ZADD").arg(keys::NODES).arg(now).arg(&node).ignore();
            let stale = now.saturating_sub(10 * NODE_TTL.as_millis() as u64);
            pipe.cmd("ZREMRANGEBYSCORE").arg(keys::NODES).arg("-inf").arg(stale).ignore();
            pipe.query::<()>(con)
        })
    }
}

/// A cluster's heartbeat: this node's count in each of its channels' own
/// hash (`"<count> <ms>"`, so a dead node's field is ignored once stale;
/// the hash expires when no node refreshes it), and the field removed from
/// channels it no longer has subscribers on.
fn cluster_heartbeat(
    con: &mut redis::cluster::ClusterConnection,
    reported: &mut Vec<Arc<str>>,
    node: &str,
    now: u64,
    counts: &[(Arc<str>, usize)],
) -> redis::RedisResult<()> {
    let mut pipe = redis::cluster::cluster_pipe();
    for (channel, n) in counts {
        let key = keys::channel_counts(channel);
        pipe.cmd("HSET").arg(&key).arg(node).arg(format!("{n} {now}")).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(10 * NODE_TTL.as_millis() as u64).ignore();
    }
    for gone in reported.iter().filter(|c| !counts.iter().any(|(n, _)| n == *c)) {
        pipe.cmd("HDEL").arg(keys::channel_counts(gone)).arg(node).ignore();
    }
    if pipe.cmd_iter().next().is_some() {
        pipe.query::<()>(con)?;
    }
    *reported = counts.iter().map(|(c, _)| c.clone()).collect();
    Ok(())
}

/// Redis Cluster: records whether this node's engines have wildcard
/// subscriptions (`keys::WILD_NODES`) and answers whether any live node's
/// have, i.e. whether publishes must go on the wildcard feed. Read each
/// heartbeat, so a node's first wildcard reaches the other nodes'
/// publishes within about a second (docs/scaling.md).
fn wild_feed_wanted(
    con: &mut redis::cluster::ClusterConnection,
    node: &str,
    now: u64,
    wild: bool,
) -> redis::RedisResult<bool> {
    let alive_since = now.saturating_sub(NODE_TTL.as_millis() as u64);
    let mut pipe = redis::cluster::cluster_pipe();
    match wild {
        true => pipe.cmd("ZADD").arg(keys::WILD_NODES).arg(now).arg(node).ignore(),
        false => pipe.cmd("ZREM").arg(keys::WILD_NODES).arg(node).ignore(),
    };
    pipe.cmd("ZREMRANGEBYSCORE").arg(keys::WILD_NODES).arg("-inf").arg(format!("({alive_since}")).ignore();
    pipe.cmd("ZCARD").arg(keys::WILD_NODES);
    let (alive,): (u64,) = pipe.query(con)?;
    Ok(alive > 0)
}

/// `{entries, dropped}` of the fetch script.
fn parse_fetch(channel: &Arc<str>, reply: Value) -> Result<(Vec<Stored>, MessageId), String> {
    let bad = || format!("Redis: unexpected history reply for {channel}");
    let Value::Array(mut parts) = reply else { return Err(bad()) };
    if parts.len() != 2 {
        return Err(bad());
    }
    let dropped = parts.pop().and_then(|v| text(&v)).and_then(|t| t.parse().ok()).unwrap_or_default();
    let Some(Value::Array(entries)) = parts.pop() else { return Err(bad()) };
    let stored =
        entries.iter().map(|e| parse_entry(channel, e)).collect::<Option<Vec<_>>>().ok_or_else(bad)?;
    Ok((stored, dropped))
}

/// One stream entry: `[id, [field, value, …]]`.
fn parse_entry(channel: &Arc<str>, entry: &Value) -> Option<Stored> {
    let Value::Array(pair) = entry else { return None };
    let id: MessageId = text(pair.first()?)?.parse().ok()?;
    let Value::Array(fields) = pair.get(1)? else { return None };
    let mut stored = Stored { id, channel: channel.clone(), data: "".into(), event: None, ext: None };
    for kv in fields.chunks(2) {
        let (Some(k), Some(v)) = (kv.first().and_then(text), kv.get(1).and_then(text)) else { continue };
        match k.as_str() {
            "d" => stored.data = v.into(),
            "e" => stored.event = Some(v.into()),
            "x" => stored.ext = Some(v.into()),
            _ => {}
        }
    }
    Some(stored)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}
