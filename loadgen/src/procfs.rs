//! CPU and RSS of other processes from /proc/<pid>/stat and /status.

use std::time::{Duration, Instant};

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid` in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    cpu_secs_of(&format!("/proc/{pid}/stat"))
}

/// utime + stime in seconds from a `stat` file (a process's, or a thread's
/// `/proc/self/task/<tid>/stat`).
pub fn cpu_secs_of(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces and parentheses).
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck())
}

/// A `Name:   N kB` field of /proc/<pid>/status, in KiB.
pub fn status_field(pid: u32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Samples a set of processes (summed) every 100 ms, keeping start, peak and
/// latest values.
pub struct Sampler {
    pids: Vec<u32>,
    pub cpu_start: Option<f64>,
    pub cpu_last: Option<f64>,
    pub rss_start: Option<u64>,
    pub rss_peak: u64,
    pub rss_last: Option<u64>,
    /// Pids that disappeared while sampled.
    pub gone: Vec<u32>,
    last_at: Option<Instant>,
}

impl Sampler {
    pub fn new(pids: Vec<u32>) -> Sampler {
        Sampler {
            pids,
            cpu_start: None,
            cpu_last: None,
            rss_start: None,
            rss_peak: 0,
            rss_last: None,
            gone: Vec::new(),
            last_at: None,
        }
    }

    pub fn active(&self) -> bool {
        !self.pids.is_empty()
    }

    /// Samples if 100 ms passed since the last sample (or `force`).
    pub fn tick(&mut self, force: bool) {
        if self.pids.is_empty() {
            return;
        }
        let now = Instant::now();
        if !force && self.last_at.is_some_and(|t| now - t < Duration::from_millis(100)) {
            return;
        }
        self.last_at = Some(now);
        let (mut cpu, mut rss, mut any) = (0.0, 0u64, false);
        for &pid in &self.pids {
            match (cpu_secs(pid), status_field(pid, "VmRSS:")) {
                (Some(c), Some(r)) => {
                    cpu += c;
                    rss += r;
                    any = true;
                }
                _ => {
                    if !self.gone.contains(&pid) {
                        self.gone.push(pid);
                    }
                }
            }
        }
        if !any {
            return;
        }
        self.cpu_start.get_or_insert(cpu);
        self.rss_start.get_or_insert(rss);
        self.cpu_last = Some(cpu);
        self.rss_last = Some(rss);
        self.rss_peak = self.rss_peak.max(rss);
    }

    /// CPU seconds now (sampled on the spot).
    pub fn cpu_now(&mut self) -> Option<f64> {
        self.tick(true);
        self.cpu_last
    }
}
