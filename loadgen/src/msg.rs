//! What the parent and its publisher thread say to each other: the parent
//! sends `Cmd`s, the publisher answers with `PubMsg`s on the parent's event
//! channel (which also carries the workers' report lines). Kept apart from
//! both so neither module depends on the other's internals.

use std::time::Instant;

use hdrhistogram::Histogram;

use crate::stats::Errors;

/// What the parent's main loop receives.
pub enum Event {
    Line(usize, String),
    Eof(usize),
    Pub(PubMsg),
}

pub enum Cmd {
    Connect,
    Step { rate: f64, duration: f64, settle: f64 },
    Exit,
}

pub enum PubMsg {
    Connected(Result<(), String>),
    Step(Box<StepOutcome>),
}

pub struct StepOutcome {
    /// Messages the schedule produced (rate x duration).
    pub scheduled: u64,
    /// Accepted (2xx / RESP integer) per channel.
    pub accepted: Vec<u64>,
    /// Refused, failed, unanswered or never sent.
    pub errors: u64,
    pub error_samples: Errors,
    /// When the last message was due.
    pub publish_end: Instant,
    /// Largest delay between a message's scheduled time and its write.
    pub max_lag_us: u64,
    /// Time from writing a request to reading its answer.
    pub answer_hist: Histogram<u64>,
    /// The next seq of every channel (the first seq of the next step).
    pub next_seqs: Vec<u64>,
}
