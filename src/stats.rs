//! Counters and the delivery-latency histogram behind `/stats` and `/metrics`.
//!
//! Every counter has one writer: a loop's counters are written by that loop,
//! the fan-out's by the fan-out thread; readers (a stats request on any loop)
//! load them with relaxed ordering, which is enough for monitoring. Latency
//! is recorded into a loop-local histogram and merged into the shared one once
//! per batch with `try_lock`, so a loop never waits for a reader.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::transport::Transport;

/// Latency is recorded in microseconds up to a minute, three significant
/// digits: a few tens of KiB per histogram.
const LATENCY_MAX_US: u64 = 60_000_000;

fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low,
    // 3 significant figures): this cannot fail at run time.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// One event loop's counters.
pub struct LoopStats {
    pub connections: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub requests: AtomicU64,
    /// Subscribers by transport (index: `Transport::index`).
    pub subscribers: [AtomicU64; Transport::ALL.len()],
    /// Messages queued to subscribers.
    pub deliveries: AtomicU64,
    pub slow_consumers: AtomicU64,
    /// Bytes written to this loop's sockets (responses and streams, all ports).
    pub bytes_out: AtomicU64,
    /// HTTP/2 counters (see [`H2Stats`]).
    pub h2: H2Stats,
    /// Publish-to-write latency merged from the loop's local histogram.
    pub latency: Mutex<Histogram<u64>>,
}

impl Default for LoopStats {
    fn default() -> Self {
        LoopStats {
            connections: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            subscribers: Default::default(),
            deliveries: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            h2: H2Stats::default(),
            latency: Mutex::new(new_histogram()),
        }
    }
}

/// One loop's HTTP/2 counters.
#[derive(Default)]
pub struct H2Stats {
    /// Open HTTP/2 connections (gauge).
    pub connections: AtomicU64,
    /// Streams (requests) opened.
    pub streams: AtomicU64,
    /// WebSockets opened on streams (RFC 8441 extended CONNECT).
    pub websockets: AtomicU64,
    /// Streams we reset: refused over the concurrency limit, cut over their
    /// flow-control window, or malformed.
    pub streams_reset: AtomicU64,
    /// Streams the client reset.
    pub client_resets: AtomicU64,
    /// Connections ended with GOAWAY for an error, by RFC 9113 error code
    /// (index = code; ENHANCE_YOUR_CALM, 11, counts the floods).
    pub goaway_errors: [AtomicU64; 14],
}

/// The fan-out thread's counters.
#[derive(Default)]
pub struct FanoutStats {
    pub published: AtomicU64,
    pub batches: AtomicU64,
    pub channels: AtomicU64,
    pub retained: AtomicU64,
}

/// The protocol engines' subscribers: (session, subscription) pairs, each
/// written by its engine's thread.
#[derive(Default)]
pub struct EngineStats {
    pub bayeux_subscriptions: AtomicU64,
    pub pushlet_subscriptions: AtomicU64,
}

/// One channel's load over the last second, for the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelLoad {
    pub channel: std::sync::Arc<str>,
    pub subscribers: usize,
    pub publishes_per_sec: f64,
    /// Messages times subscribers: what the channel costs the loops.
    pub deliveries_per_sec: f64,
}

/// What the dashboard's sampler reads besides the counters. Written by the
/// fan-out thread once a second, and only while someone watches.
#[derive(Default)]
pub struct DashboardStats {
    /// Open subscriptions to the stats stream (`crate::dashboard::STATS_CHANNEL`).
    pub watchers: AtomicU64,
    /// The busiest channels, busiest first (at most ten).
    pub busiest: Mutex<Vec<ChannelLoad>>,
}

/// Everything `/stats` and `/metrics` read.
pub struct Stats {
    pub started: Instant,
    pub loops: Vec<LoopStats>,
    pub fanout: FanoutStats,
    pub engines: EngineStats,
    /// The Redis backplane's state, when one is configured.
    pub backplane: Option<std::sync::Arc<crate::backplane::BackplaneStats>>,
    /// Handshake counters, when a port speaks TLS.
    pub tls: std::sync::OnceLock<std::sync::Arc<crate::tls::TlsStats>>,
    pub dashboard: DashboardStats,
}

impl Stats {
    pub fn new(loops: usize) -> Stats {
        Stats {
            started: Instant::now(),
            loops: (0..loops).map(|_| LoopStats::default()).collect(),
            fanout: FanoutStats::default(),
            engines: EngineStats::default(),
            backplane: None,
            tls: std::sync::OnceLock::new(),
            dashboard: DashboardStats::default(),
        }
    }

    /// Subscribers by transport name: the loops' transports, then the
    /// protocol engines' subscriptions (`bayeux`, `pushlet`).
    pub fn subscribers_by_transport(&self) -> Vec<(&'static str, u64)> {
        let mut all: Vec<(&'static str, u64)> =
            Transport::ALL.iter().map(|t| (t.name(), self.total(|l| &l.subscribers[t.index()]))).collect();
        all.push(("bayeux", self.engines.bayeux_subscriptions.load(Relaxed)));
        all.push(("pushlet", self.engines.pushlet_subscriptions.load(Relaxed)));
        all
    }

    /// A sum over loops.
    pub fn total(&self, field: impl Fn(&LoopStats) -> &AtomicU64) -> u64 {
        self.loops.iter().map(|l| field(l).load(Relaxed)).sum()
    }

    /// The loops' latency histograms merged.
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for l in &self.loops {
            if let Ok(h) = l.latency.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }
}

/// A loop's local latency recorder.
pub struct LatencyRecorder {
    local: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder { local: new_histogram() }
    }
}

impl LatencyRecorder {
    /// Records `count` deliveries that took `latency`.
    pub fn record(&mut self, latency: Duration, count: u64) {
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        let _ = self.local.record_n(us, count);
    }

    /// Merges into the shared histogram unless a reader holds it (then next time).
    pub fn publish(&mut self, shared: &Mutex<Histogram<u64>>) {
        if self.local.is_empty() {
            return;
        }
        if let Ok(mut h) = shared.try_lock() {
            if h.add(&self.local).is_ok() {
                self.local.reset();
            }
        }
    }
}

/// Increments a counter (one writer: relaxed is enough).
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

pub fn dec(counter: &AtomicU64) {
    counter.fetch_sub(1, Relaxed);
}

pub fn set(counter: &AtomicU64, n: u64) {
    counter.store(n, Relaxed);
}
