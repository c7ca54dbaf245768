//! The readable summary.

use serde_json::Value;
use std::fmt::Write;

fn f(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{}", x as i64)
            } else if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else if x.abs() >= 10.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.2}")
            }
        }
        other => other.to_string(),
    }
}

/// One line per step (also printed as the steps finish, on stderr).
pub fn step_line(k: usize, s: &Value) -> String {
    let l = &s["latency_ms"];
    format!(
        "step {k}: rate {}/s published {} errors {} | expected {} delivered {} lost {} dup {} ooo {} | {} deliveries/s | \
         latency ms p50 {} p90 {} p99 {} p999 {} max {} | first/last subscriber p50 {}/{} ms | cpu s: server {} loadgen {}",
        f(&s["rate"]),
        f(&s["published"]),
        f(&s["publish_errors"]),
        f(&s["expected_deliveries"]),
        f(&s["deliveries"]),
        f(&s["lost"]),
        f(&s["duplicated"]),
        f(&s["out_of_order"]),
        f(&s["deliveries_per_sec"]),
        f(&l["p50"]),
        f(&l["p90"]),
        f(&l["p99"]),
        f(&l["p999"]),
        f(&l["max"]),
        f(&s["first_subscriber_ms_p50"]),
        f(&s["last_subscriber_ms_p50"]),
        f(&s["server_cpu_secs"]),
        f(&s["loadgen_cpu_secs"]),
    )
}

pub fn text(out: &Value) -> String {
    let mut t = String::new();
    let label = out["label"].as_str().unwrap_or("");
    let _ = writeln!(
        t,
        "loadgen{}: {} transport, {} subscribers ({} connected, {} failed, {} disconnected later), {} worker(s)",
        if label.is_empty() { String::new() } else { format!(" [{label}]") },
        out["transport"].as_str().unwrap_or("?"),
        f(&out["subscribers"]),
        f(&out["connected"]),
        f(&out["connect_failed"]),
        f(&out["disconnected"]),
        f(&out["workers"]),
    );
    let c = &out["connect_ms"];
    let _ = writeln!(
        t,
        "connect ms: p50 {} p99 {} max {}; all connected after {} ms",
        f(&c["p50"]),
        f(&c["p99"]),
        f(&c["max"]),
        f(&c["all_connected_ms"])
    );
    let steps = out["steps"].as_array().cloned().unwrap_or_default();
    if !steps.is_empty() {
        let _ = writeln!(
        t,
        "{:>9} {:>9} {:>7} {:>11} {:>11} {:>8} {:>6} {:>6} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7}",
        "rate/s",
        "published",
        "errors",
        "expected",
        "delivered",
        "lost",
        "dup",
        "ooo",
        "deliv/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p999 ms",
        "max ms",
        "first",
        "last",
        "srv cpu",
        "lg cpu"
    );
    }
    for s in &steps {
        let l = &s["latency_ms"];
        let _ = writeln!(
            t,
            "{:>9} {:>9} {:>7} {:>11} {:>11} {:>8} {:>6} {:>6} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7}",
            f(&s["rate"]),
            f(&s["published"]),
            f(&s["publish_errors"]),
            f(&s["expected_deliveries"]),
            f(&s["deliveries"]),
            f(&s["lost"]),
            f(&s["duplicated"]),
            f(&s["out_of_order"]),
            f(&s["deliveries_per_sec"]),
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["p999"]),
            f(&l["max"]),
            f(&s["first_subscriber_ms_p50"]),
            f(&s["last_subscriber_ms_p50"]),
            f(&s["server_cpu_secs"]),
            f(&s["loadgen_cpu_secs"]),
        );
    }
    let srv = &out["server"];
    if srv.is_null() {
        let _ = writeln!(t, "server: not sampled (no --pid)");
    } else {
        let _ = writeln!(
            t,
            "server: cpu {} s; rss KiB start {} peak {} end {}",
            f(&srv["cpu_secs"]),
            f(&srv["rss_kib_start"]),
            f(&srv["rss_kib_peak"]),
            f(&srv["rss_kib_end"])
        );
    }
    let lg = &out["loadgen"];
    let _ = writeln!(
        t,
        "loadgen: cpu {} s (parent {}, workers {}); rss peak {} KiB; wall {} s",
        f(&lg["cpu_secs"]),
        f(&lg["parent_cpu_secs"]),
        lg["worker_cpu_secs"],
        f(&lg["rss_kib_peak"]),
        f(&out["wall_secs"])
    );
    for e in out["errors"].as_array().into_iter().flatten() {
        let _ = writeln!(t, "error x{}: {}", f(&e["count"]), e["error"].as_str().unwrap_or(""));
    }
    t
}
