//! The live dashboard's data: a stats stream the node publishes to itself.
//!
//! A small sampler thread wakes once a second. While nobody watches (the
//! fan-out thread counts the subscribers of [`STATS_CHANNEL`] in its
//! housekeeping) it reads nothing but that count. While somebody does, it
//! reads the counters, builds one JSON sample (schema in docs/api.md) and
//! publishes it to [`STATS_CHANNEL`] through the ordinary publish queue, so
//! `GET /dashboard/stream` is an ordinary SSE subscription: the dashboard is
//! a live proof of the path it measures, with ids, history and resume.
//! The page itself (`index.html`) is compiled into the binary.

mod sample;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use serde_json::Value;

use crate::fanout::{FanoutHandle, NewMessage, Publish};
use crate::stats::Stats;

pub use sample::{node_info, Counters};

/// The internal channel of the stats stream. Its leading `/` is what no
/// client can name (see `hub::is_internal`): only `/dashboard/stream` on
/// the ingest port subscribes to it, and only the sampler publishes to it.
pub const STATS_CHANNEL: &str = "/halley/stats";

/// One sample a second: the dashboard's charts move every second, and
/// per-second rates are what operators read.
const INTERVAL: Duration = Duration::from_secs(1);

/// The dashboard page, compiled into the binary.
pub const PAGE: &str = include_str!("index.html");

/// The running sampler; dropping the stop sender ends it.
pub struct Sampler {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Sampler {
    /// Starts the sampler. `node` is the static part of every sample
    /// (version, addresses, settings; see [`node_info`]).
    pub fn spawn(stats: Arc<Stats>, fanout: FanoutHandle, node: Value) -> std::io::Result<Sampler> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new().name("halley-sampler".into()).spawn(move || {
            let mut state = sample::State::new(node);
            let mut next = Instant::now() + INTERVAL;
            loop {
                match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                // A thread that fell behind (a stopped process, a starved
                // machine) takes up the beat from now, with no burst of samples.
                let now = Instant::now();
                next = if next + INTERVAL > now { next + INTERVAL } else { now + INTERVAL };
                if let Some(data) = state.tick(&stats, &fanout) {
                    let message = NewMessage {
                        channel: Arc::from(STATS_CHANNEL),
                        event: None,
                        data: data.into(),
                        ext: None,
                    };
                    // A full queue drops this sample: the gap in the charts
                    // is itself the sign of a node under pressure.
                    let _ = fanout.try_publish(Publish {
                        messages: vec![message],
                        received_at: Instant::now(),
                        reply: None,
                        done: None,
                    });
                }
            }
        })?;
        Ok(Sampler { stop, thread })
    }

    /// Stops the sampler and waits for it (it holds a fan-out handle, which
    /// must go before the fan-out thread can end).
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}
