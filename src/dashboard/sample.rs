//! One stats sample: the counters now, rates against the previous sample,
//! delivery latency over the last interval, the busiest channels, memory.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::fanout::FanoutHandle;
use crate::stats::Stats;

/// The counters a sample reads: a few dozen relaxed loads, cheap enough to
/// take every second whether or not anyone watches, so the first sample a
/// new viewer gets already has rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub connections: u64,
    pub accepted: u64,
    pub refused: u64,
    pub subscribers: Vec<(&'static str, u64)>,
    pub channels: u64,
    pub publishes: u64,
    pub deliveries: u64,
    pub slow_consumers: u64,
    pub bytes_out: u64,
    pub queue_depth: u64,
    pub queue_capacity: u64,
}

impl Counters {
    pub fn read(stats: &Stats, fanout: &FanoutHandle) -> Counters {
        Counters {
            connections: stats.total(|l| &l.connections),
            accepted: stats.total(|l| &l.accepted),
            refused: stats.total(|l| &l.refused),
            subscribers: stats.subscribers_by_transport(),
            channels: stats.fanout.channels.load(Relaxed),
            publishes: stats.fanout.published.load(Relaxed),
            deliveries: stats.total(|l| &l.deliveries),
            slow_consumers: stats.total(|l| &l.slow_consumers),
            bytes_out: stats.total(|l| &l.bytes_out),
            queue_depth: fanout.queue_depth() as u64,
            queue_capacity: fanout.queue_capacity() as u64,
        }
    }
}

/// What the sampler carries from one tick to the next.
pub struct State {
    node: Value,
    prev: Option<(Instant, Counters)>,
    /// The merged latency histogram at the last watched tick: the next
    /// sample's quantiles are over what was recorded since.
    prev_latency: Option<Histogram<u64>>,
}

impl State {
    pub fn new(node: Value) -> State {
        State { node, prev: None, prev_latency: None }
    }

    /// Reads the counters; while someone watches, returns the sample's JSON.
    pub fn tick(&mut self, stats: &Stats, fanout: &FanoutHandle) -> Option<String> {
        let now = Instant::now();
        let counters = Counters::read(stats, fanout);
        let prev = self.prev.replace((now, counters.clone()));
        if stats.dashboard.watchers.load(Relaxed) == 0 {
            self.prev_latency = None;
            return None;
        }
        let latency = stats.latency();
        let window = self.prev_latency.replace(latency.clone()).and_then(|before| {
            let mut window = latency;
            window.subtract(&before).ok().map(|_| window)
        });
        let busiest = stats.dashboard.busiest.lock().map(|b| b.clone()).unwrap_or_default();
        let busiest: Vec<Value> = busiest
            .iter()
            .map(|c| {
                json!({
                    "channel": &*c.channel,
                    "subscribers": c.subscribers,
                    "publishes_per_sec": round(c.publishes_per_sec),
                    "deliveries_per_sec": round(c.deliveries_per_sec),
                })
            })
            .collect();
        let elapsed = prev.as_ref().map(|(at, _)| now.saturating_duration_since(*at).as_secs_f64());
        let base = prev.map(|(_, c)| c);
        let sample = build(&counters, base.as_ref(), elapsed, window.as_ref(), busiest, stats, &self.node);
        Some(sample.to_string())
    }
}

/// A sample from the counters, the previous counters and the seconds
/// between them (rates are `null` without them), and the latency recorded
/// over the interval (`null` quantiles when nothing was delivered).
fn build(
    now: &Counters,
    prev: Option<&Counters>,
    elapsed: Option<f64>,
    latency: Option<&Histogram<u64>>,
    busiest: Vec<Value>,
    stats: &Stats,
    node: &Value,
) -> Value {
    let rate = |field: fn(&Counters) -> u64| -> Value {
        match (prev, elapsed) {
            (Some(p), Some(secs)) if secs > 0.0 => {
                json!(round(field(now).saturating_sub(field(p)) as f64 / secs))
            }
            _ => Value::Null,
        }
    };
    let quantile = |q: f64| -> Value {
        match latency {
            Some(h) if !h.is_empty() => json!(h.value_at_quantile(q)),
            _ => Value::Null,
        }
    };
    let by_transport: Map<String, Value> =
        now.subscribers.iter().map(|(name, n)| (name.to_string(), json!(n))).collect();
    let subscribers: u64 = now.subscribers.iter().map(|(_, n)| n).sum();
    json!({
        "t": crate::clock::unix_ms(),
        "uptime_secs": stats.started.elapsed().as_secs(),
        "connections": {
            "open": now.connections,
            "accepted_per_sec": rate(|c| c.accepted),
            "refused_per_sec": rate(|c| c.refused),
        },
        "subscribers": { "total": subscribers, "by_transport": by_transport },
        "channels": now.channels,
        "publishes_per_sec": rate(|c| c.publishes),
        "deliveries_per_sec": rate(|c| c.deliveries),
        "bytes_out_per_sec": rate(|c| c.bytes_out),
        "latency_us": {
            "p50": quantile(0.5),
            "p99": quantile(0.99),
            "max": quantile(1.0),
            "count": latency.map_or(0, |h| h.len()),
        },
        "publish_queue": { "depth": now.queue_depth, "capacity": now.queue_capacity },
        "slow_consumers": { "total": now.slow_consumers, "per_sec": rate(|c| c.slow_consumers) },
        "rss_bytes": rss_bytes(),
        "busiest": busiest,
        "node": node,
        // The Redis backplane's state (an object of its own fields, which
        // the page shows as they are) once the node has one; null alone.
        "backplane": stats.backplane.as_deref().map_or(Value::Null, crate::server::report::backplane_json),
    })
}

/// Two decimals are plenty for a chart and keep samples short.
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Resident memory, from the kernel's own account (`VmRSS` in
/// `/proc/self/status`, in KiB, so no page size is assumed); `null` where
/// there is no `/proc`.
fn rss_bytes() -> Value {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return Value::Null };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(Value::Null, |kib| json!(kib * 1024))
}

/// Setting names whose values are secrets: shown as set or not, never as they are.
const SECRET_WORDS: [&str; 4] = ["secret", "key", "password", "token"];

/// The static part of every sample: version, addresses, threads and the
/// settings (secrets redacted), as the page's settings table shows them.
pub fn node_info(config: &Config, public: &str, ingest: &str, resp: &str, threads: usize) -> Value {
    let mut settings = serde_json::to_value(config).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut settings {
        for (name, value) in map.iter_mut() {
            let secret = SECRET_WORDS.iter().any(|w| name.contains(w));
            if secret && value.as_str().is_some() {
                let set = value.as_str().is_some_and(|s| !s.is_empty());
                *value = json!(if set { "(set)" } else { "" });
            }
        }
    }
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "started_unix_ms": crate::clock::unix_ms(),
        "threads": threads,
        "public": public,
        "ingest": ingest,
        "resp": resp,
        "settings": settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_need_a_previous_sample() {
        let stats = Stats::new(1);
        let now = Counters { publishes: 30, deliveries: 300, bytes_out: 5000, ..Counters::default() };
        let prev = Counters { publishes: 10, deliveries: 100, bytes_out: 1000, ..Counters::default() };
        let first = build(&now, None, None, None, vec![], &stats, &Value::Null);
        assert_eq!(first["publishes_per_sec"], Value::Null);
        assert_eq!(first["latency_us"]["p50"], Value::Null);
        let next = build(&now, Some(&prev), Some(2.0), None, vec![], &stats, &Value::Null);
        assert_eq!(next["publishes_per_sec"], json!(10.0));
        assert_eq!(next["deliveries_per_sec"], json!(100.0));
        assert_eq!(next["bytes_out_per_sec"], json!(2000.0));
        assert_eq!(next["backplane"], Value::Null);
    }

    #[test]
    fn latency_is_over_the_interval() {
        let stats = Stats::new(1);
        let mut before = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        before.record_n(10_000, 100).unwrap();
        let mut after = before.clone();
        after.record_n(200, 50).unwrap();
        after.subtract(&before).unwrap();
        let s = build(&Counters::default(), None, None, Some(&after), vec![], &stats, &Value::Null);
        assert_eq!(s["latency_us"]["count"], json!(50));
        assert_eq!(s["latency_us"]["p99"], json!(200));
    }

    #[test]
    fn secrets_are_redacted() {
        let config = Config { ingest_key: "hunter2".into(), ..Config::default() };
        let node = node_info(&config, "a", "b", "c", 2);
        let text = node.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(node["settings"]["ingest_key"], json!("(set)"));
        assert_eq!(node["settings"]["auth_secret"], json!(""));
    }
}
