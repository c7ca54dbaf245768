//! What a `publish-rate` run measured, as a readable summary or JSON.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::stats::Errors;

pub struct Outcome {
    pub label: String,
    pub protocol: &'static str,
    pub target: String,
    pub connections: usize,
    pub pipeline: usize,
    pub payload_bytes: usize,
    pub warmup_secs: f64,
    /// Length of the measured window.
    pub secs: f64,
    /// Successful answers (HTTP 2xx, RESP `:N`) in the window.
    pub ok: u64,
    /// Refused publishes (other answers) and requests lost with a connection.
    pub errors: u64,
    pub error_samples: Errors,
    /// Requests still unanswered when the window closed (counted nowhere else).
    pub in_flight_at_end: u64,
    pub reconnects: u64,
    /// Answer time of every answered request, µs (write to complete answer).
    pub hist: Histogram<u64>,
    /// CPU seconds of the --pid processes during the window.
    pub server_cpu_secs: Option<f64>,
    pub server_pids: Vec<u32>,
    pub loadgen_cpu_secs: f64,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            0.0
        }
    }

    fn pct(&self, q: f64) -> Option<u64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(q))
    }

    pub fn to_json(&self) -> Value {
        let round = |x: f64, d: f64| (x * d).round() / d;
        let us = if self.hist.is_empty() {
            json!({"p50": null, "p90": null, "p99": null, "p999": null, "max": null, "mean": null})
        } else {
            json!({
                "p50": self.pct(0.5), "p90": self.pct(0.9), "p99": self.pct(0.99), "p999": self.pct(0.999),
                "max": self.hist.max(), "mean": round(self.hist.mean(), 10.0),
            })
        };
        json!({
            "mode": "publish-rate",
            "label": self.label,
            "protocol": self.protocol,
            "target": self.target,
            "connections": self.connections,
            "pipeline": self.pipeline,
            "payload_bytes": self.payload_bytes,
            "warmup_secs": self.warmup_secs,
            "duration_secs": round(self.secs, 1000.0),
            "ok": self.ok,
            "errors": self.errors,
            "error_samples": self.error_samples.to_json(),
            "in_flight_at_end": self.in_flight_at_end,
            "reconnects": self.reconnects,
            "publishes_per_sec": round(self.rate(), 10.0),
            "answer_us": us,
            "server": if self.server_pids.is_empty() { Value::Null } else {
                json!({"pids": self.server_pids, "cpu_secs": self.server_cpu_secs.map(|c| round(c, 100.0))})
            },
            "loadgen": {"cpu_secs": round(self.loadgen_cpu_secs, 100.0)},
        })
    }

    pub fn summary(&self) -> String {
        let n = |x: Option<u64>| x.map_or("-".to_string(), thousands);
        let mut s = format!(
            "publish-rate {}{}: {} connection{} x pipeline {}, {}-byte payload, {:.2} s measured\n",
            if self.label.is_empty() { String::new() } else { format!("[{}] ", self.label) },
            self.target,
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            self.pipeline,
            self.payload_bytes,
            self.secs
        );
        s += &format!("  publishes/s  {}\n", thousands(self.rate().round() as u64));
        s += &format!(
            "  answers      ok {}, errors {}, in flight at the end {}, reconnects {}\n",
            thousands(self.ok),
            thousands(self.errors),
            self.in_flight_at_end,
            self.reconnects
        );
        s += &format!(
            "  answer µs    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
            n(self.pct(0.5)),
            n(self.pct(0.9)),
            n(self.pct(0.99)),
            n(self.pct(0.999)),
            n((!self.hist.is_empty()).then(|| self.hist.max()))
        );
        if let Some(c) = self.server_cpu_secs {
            s += &format!("  CPU s        server {c:.2}, loadgen {:.2}\n", self.loadgen_cpu_secs);
        }
        for (what, count) in &self.error_samples.items {
            s += &format!("  error        {}x {what}\n", thousands(*count));
        }
        s
    }
}

fn thousands(x: u64) -> String {
    let d = x.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    fn outcome() -> Outcome {
        Outcome {
            label: "t".into(),
            protocol: "resp",
            target: "127.0.0.1:6380".into(),
            connections: 1,
            pipeline: 1,
            payload_bytes: 64,
            warmup_secs: 0.5,
            secs: 2.0,
            ok: 50_001,
            errors: 2,
            error_samples: Errors { items: vec![("RESP -ERR".into(), 2)] },
            in_flight_at_end: 1,
            reconnects: 0,
            hist: new_hist(),
            server_cpu_secs: None,
            server_pids: vec![],
            loadgen_cpu_secs: 0.5,
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        let mut o = outcome();
        let j = o.to_json();
        assert_eq!(j["publishes_per_sec"], 25000.5);
        assert_eq!(j["answer_us"]["p50"], Value::Null);
        assert_eq!(j["server"], Value::Null);
        assert_eq!(j["error_samples"][0]["count"], 2);
        for v in [10, 20, 30, 40, 1000] {
            o.hist.record(v).unwrap();
        }
        o.server_pids = vec![7];
        o.server_cpu_secs = Some(1.234);
        let j = o.to_json();
        assert_eq!((j["answer_us"]["p50"].as_u64(), j["answer_us"]["max"].as_u64()), (Some(30), Some(1000)));
        assert_eq!(j["server"]["cpu_secs"], 1.23);
        let s = o.summary();
        assert!(s.contains("publishes/s  25,001"), "{s}");
        assert!(s.contains("ok 50,001, errors 2, in flight at the end 1"), "{s}");
        assert!(s.contains("p50 30 "), "{s}");
        assert!(s.contains("2x RESP -ERR"), "{s}");
        o.secs = 0.0;
        assert_eq!(o.rate(), 0.0);
    }
}
