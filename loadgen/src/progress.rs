//! Progress on long runs: what is happening (connecting, step k of n at
//! which rate), how long it has run and what is left.
//!
//! On a terminal, one status line redrawn a few times a second; otherwise
//! (a log file, a pipe) one plain line per phase or step as it ends, so a
//! log shows where a run was without the redraws. The line goes to stderr,
//! or to the file `--progress PATH` names (bench/compare.sh passes its own
//! terminal, since it sends loadgen's stderr to a log); `--no-progress`
//! turns it off. stdout (the report) is never touched.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraws per second on a terminal: smooth enough to watch, cheap to draw.
const REDRAW: Duration = Duration::from_millis(250);

enum Out {
    Stderr,
    File(File),
}

pub struct Progress {
    out: Option<Out>,
    tty: bool,
    started: Instant,
    last_draw: Option<Instant>,
    /// What is going on now, and when it started and should end (if known).
    phase: String,
    phase_started: Instant,
    phase_secs: Option<f64>,
    /// Seconds of planned work after the current phase.
    after_secs: f64,
    /// The live line is on screen (a terminal line to clear before printing).
    drawn: bool,
}

impl Progress {
    /// Progress to `path` (stderr when `None`); nothing when `off`.
    pub fn new(path: Option<&str>, off: bool) -> Progress {
        let out = match (off, path) {
            (true, _) => None,
            (false, None) => Some(Out::Stderr),
            (false, Some(p)) => OpenOptions::new().append(true).create(true).open(p).ok().map(Out::File),
        };
        let tty = match &out {
            Some(Out::Stderr) => std::io::stderr().is_terminal(),
            Some(Out::File(f)) => f.is_terminal(),
            None => false,
        };
        let now = Instant::now();
        Progress {
            out,
            tty,
            started: now,
            last_draw: None,
            phase: String::new(),
            phase_started: now,
            phase_secs: None,
            after_secs: 0.0,
            drawn: false,
        }
    }

    /// A new phase: `what`, expected to last `secs` (if known), with
    /// `after` seconds of planned work behind it.
    pub fn phase(&mut self, what: String, secs: Option<f64>, after: f64) {
        self.phase = what;
        self.phase_started = Instant::now();
        self.phase_secs = secs;
        self.after_secs = after;
        self.last_draw = None;
        self.tick();
    }

    /// Redraws the live line (a terminal only, at most every `REDRAW`).
    pub fn tick(&mut self) {
        if !self.tty || self.out.is_none() || self.phase.is_empty() {
            return;
        }
        let now = Instant::now();
        if self.last_draw.is_some_and(|t| now.duration_since(t) < REDRAW) {
            return;
        }
        self.last_draw = Some(now);
        let line = self.status(now);
        // \r and "erase to end of line": the line is redrawn in place.
        self.write(&format!("\r{line}\x1b[K"));
        self.drawn = true;
    }

    /// A line that stays: the end of a phase or step, with where the run is.
    pub fn done(&mut self, what: &str) {
        if self.out.is_none() {
            return;
        }
        let elapsed = clock(self.started.elapsed().as_secs_f64());
        let left = if self.after_secs > 0.0 {
            format!(", about {} left", clock(self.after_secs))
        } else {
            String::new()
        };
        let clear = if self.drawn { "\r\x1b[K" } else { "" };
        self.drawn = false;
        // Between phases (a warm-up, the report) there is nothing to redraw.
        self.phase.clear();
        self.write(&format!("{clear}loadgen: {what} (elapsed {elapsed}{left})\n"));
    }

    /// Clears the live line for good (before the report).
    pub fn finish(&mut self) {
        if self.drawn {
            self.write("\r\x1b[K");
            self.drawn = false;
        }
    }

    fn status(&self, now: Instant) -> String {
        let in_phase = now.duration_since(self.phase_started).as_secs_f64();
        let (of, left) = match self.phase_secs {
            Some(total) => (format!(" {}/{}", clock(in_phase), clock(total)), (total - in_phase).max(0.0)),
            None => (format!(" {}", clock(in_phase)), 0.0),
        };
        let left = left + self.after_secs;
        let left = if left > 0.0 { format!(" | about {} left", clock(left)) } else { String::new() };
        let elapsed = clock(now.duration_since(self.started).as_secs_f64());
        format!("loadgen: {}{of} | elapsed {elapsed}{left}", self.phase)
    }

    fn write(&mut self, text: &str) {
        let _ = match &mut self.out {
            Some(Out::Stderr) => std::io::stderr().write_all(text.as_bytes()),
            Some(Out::File(f)) => f.write_all(text.as_bytes()),
            None => Ok(()),
        };
    }
}

/// Seconds as m:ss (or h:mm:ss).
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks() {
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(59.6), "1:00");
        assert_eq!(clock(754.0), "12:34");
        assert_eq!(clock(3723.0), "1:02:03");
        assert_eq!(clock(-3.0), "0:00");
    }

    #[test]
    fn plain_lines_when_not_a_terminal() {
        let path = std::env::temp_dir().join(format!("loadgen-progress-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut p = Progress::new(path.to_str(), false);
        p.phase("step 1/2: 100 msg/s".into(), Some(13.0), 13.0);
        p.tick();
        p.done("step 1/2: 100 msg/s: delivered 1000 of 1000");
        p.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            text.starts_with(
                "loadgen: step 1/2: 100 msg/s: delivered 1000 of 1000 (elapsed 0:00, about 0:13 left)"
            ),
            "{text:?}"
        );
        assert!(!text.contains('\r'), "no redraws in a file: {text:?}");
    }
}
