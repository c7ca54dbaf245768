//! Histograms and small helpers shared by the parent and the workers.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Microseconds from 1 µs to one hour, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// The recorded buckets as `[[value, count], ...]` (what workers send).
pub fn hist_to_json(h: &Histogram<u64>) -> Value {
    Value::Array(h.iter_recorded().map(|v| json!([v.value_iterated_to(), v.count_at_value()])).collect())
}

/// Adds buckets sent by `hist_to_json` into `h`.
pub fn merge_json(h: &mut Histogram<u64>, v: &Value) {
    for pair in v.as_array().into_iter().flatten() {
        let (Some(val), Some(n)) = (pair.get(0).and_then(Value::as_u64), pair.get(1).and_then(Value::as_u64))
        else {
            continue;
        };
        h.saturating_record_n(val.max(1), n);
    }
}

pub fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// p50/p90/p99/p999/max of a microsecond histogram, in milliseconds.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"p50": null, "p90": null, "p99": null, "p999": null, "max": null});
    }
    json!({
        "p50": ms(h.value_at_quantile(0.5)),
        "p90": ms(h.value_at_quantile(0.9)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}

/// The delivery counters of one step: each worker counts its own and the
/// parent adds up what they report (`to_json` and `add_json` use the same keys).
pub struct StepCounts {
    pub deliveries: u64,
    pub unique: u64,
    pub dup: u64,
    pub ooo: u64,
    pub stale: u64,
    /// Messages of an earlier step (already reported) arriving now.
    pub late: u64,
    /// Delivery latency, µs.
    pub hist: Histogram<u64>,
}

impl StepCounts {
    pub fn new() -> StepCounts {
        StepCounts { deliveries: 0, unique: 0, dup: 0, ooo: 0, stale: 0, late: 0, hist: new_hist() }
    }

    pub fn to_json(&self) -> serde_json::Map<String, Value> {
        let v = json!({
            "deliveries": self.deliveries,
            "unique": self.unique,
            "duplicated": self.dup,
            "out_of_order": self.ooo,
            "stale": self.stale,
            "late": self.late,
            "hist": hist_to_json(&self.hist),
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        }
    }

    pub fn add_json(&mut self, v: &Value) {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        self.deliveries += n("deliveries");
        self.unique += n("unique");
        self.dup += n("duplicated");
        self.ooo += n("out_of_order");
        self.stale += n("stale");
        self.late += n("late");
        merge_json(&mut self.hist, &v["hist"]);
    }

    pub fn reset(&mut self) {
        self.deliveries = 0;
        self.unique = 0;
        self.dup = 0;
        self.ooo = 0;
        self.stale = 0;
        self.late = 0;
        self.hist.reset();
    }
}

/// A few distinct error texts with counts, so a failure says what it was.
#[derive(Default, Debug)]
pub struct Errors {
    pub items: Vec<(String, u64)>,
}

impl Errors {
    pub fn add(&mut self, what: &str) {
        if let Some(e) = self.items.iter_mut().find(|(w, _)| w == what) {
            e.1 += 1;
        } else if self.items.len() < 8 {
            self.items.push((what.to_string(), 1));
        }
    }

    pub fn add_n(&mut self, what: &str, n: u64) {
        if let Some(e) = self.items.iter_mut().find(|(w, _)| w == what) {
            e.1 += n;
        } else if self.items.len() < 8 {
            self.items.push((what.to_string(), n));
        }
    }

    pub fn to_json(&self) -> Value {
        Value::Array(self.items.iter().map(|(w, n)| json!({"error": w, "count": n})).collect())
    }

    pub fn merge_json(&mut self, v: &Value) {
        for e in v.as_array().into_iter().flatten() {
            if let (Some(w), Some(n)) = (e["error"].as_str(), e["count"].as_u64()) {
                self.add_n(w, n);
            }
        }
    }
}

/// User + system CPU seconds of this process (`who` = RUSAGE_SELF) or of its
/// waited-for children (RUSAGE_CHILDREN).
pub fn rusage_cpu(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises the soft open-file limit to the hard one.
pub fn raise_nofile() {
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

/// `VmHWM` (peak RSS) of this process in KiB.
pub fn own_rss_peak_kib() -> u64 {
    crate::procfs::status_field(std::process::id(), "VmHWM:").unwrap_or(0)
}
