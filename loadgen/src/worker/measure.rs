//! What a worker measures: every delivery's latency and sequence check, the
//! first and last receive time of each message, per step.

use serde_json::{json, Value};

use crate::parse::{self, Seen, SeqTrack};
use crate::stats::StepCounts;

/// Per channel, at most this many messages' first/last receive times are kept per step.
const MAX_FL_PER_CHANNEL: usize = 20_000_000;

/// First and last receive latency (µs) of each message of one channel,
/// indexed by `seq - base`.
#[derive(Default)]
struct FirstLast {
    base: u64,
    v: Vec<(u32, u32)>,
}

/// The counters of the current step (reset at each snapshot).
pub struct Stats {
    counts: StepCounts,
    /// Per channel, the first seq of the current step.
    step_start: Vec<u64>,
    fl: Vec<FirstLast>,
    /// Unique deliveries over the whole run (for progress reports).
    pub unique_total: u64,
    /// Messages with `t=` before this worker started are from an older run.
    run_start_ns: u64,
}

impl Stats {
    pub fn new(channels: usize) -> Stats {
        Stats {
            counts: StepCounts::new(),
            step_start: vec![0; channels],
            fl: (0..channels).map(|_| FirstLast::default()).collect(),
            unique_total: 0,
            run_start_ns: parse::realtime_ns().saturating_sub(1_000_000_000),
        }
    }

    /// Message `seq` of channel `ch`, sent at `t` (unix ns; `u` as in
    /// `SeqTrack::record`), arrived at `now` on the subscriber with `track`.
    pub fn deliver(&mut self, track: &mut SeqTrack, ch: u32, seq: u64, t: u64, u: u64, now: u64) {
        let st = &mut self.counts;
        if t < self.run_start_ns {
            st.stale += 1;
            return;
        }
        if seq < self.step_start[ch as usize] {
            // Its step was already reported (it came after the settle time).
            track.record(seq, u);
            st.late += 1;
            return;
        }
        let lat_us = now.saturating_sub(t) / 1000;
        st.deliveries += 1;
        match track.record(seq, u) {
            Seen::New { out_of_order } => {
                st.unique += 1;
                self.unique_total += 1;
                st.ooo += out_of_order as u64;
            }
            Seen::Duplicate => st.dup += 1,
        }
        st.hist.saturating_record(lat_us.max(1));
        let f = &mut self.fl[ch as usize];
        if seq < f.base {
            return;
        }
        let idx = (seq - f.base) as usize;
        if idx >= f.v.len() {
            if idx >= MAX_FL_PER_CHANNEL {
                return;
            }
            f.v.resize(idx + 1, (u32::MAX, 0));
        }
        let lat = lat_us.min(u32::MAX as u64 - 1) as u32;
        let e = &mut f.v[idx];
        e.0 = e.0.min(lat);
        e.1 = e.1.max(lat);
    }

    /// Ends a step: its counters and first/last times (`fl`) as JSON, then
    /// all reset. `next` lists `[channel, first seq of the next step]`: seqs
    /// below it arriving from now on are late.
    pub fn snapshot(&mut self, next: &Value) -> serde_json::Map<String, Value> {
        let mut fl = Vec::new();
        for (c, f) in self.fl.iter_mut().enumerate() {
            if f.v.is_empty() {
                continue;
            }
            let mins: Vec<u64> =
                f.v.iter().map(|e| if e.0 == u32::MAX { u64::MAX } else { e.0 as u64 }).collect();
            let maxs: Vec<u32> = f.v.iter().map(|e| e.1).collect();
            fl.push(json!([c, f.base, mins, maxs]));
            f.base += f.v.len() as u64;
            f.v.clear();
        }
        for pair in next.as_array().into_iter().flatten() {
            let (Some(c), Some(seq)) = (pair[0].as_u64(), pair[1].as_u64()) else { continue };
            if let (Some(start), Some(f)) = (self.step_start.get_mut(c as usize), self.fl.get_mut(c as usize))
            {
                *start = seq;
                f.base = seq;
                f.v.clear();
            }
        }
        let mut out = self.counts.to_json();
        out.insert("fl".into(), Value::Array(fl));
        self.counts.reset();
        out
    }
}
