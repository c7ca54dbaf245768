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

/// Some members of `v`, formatted.
fn fields<const N: usize>(v: &Value, keys: [&str; N]) -> [String; N] {
    keys.map(|k| f(&v[k]))
}

/// The numbers of one step, in the order of the table's columns.
fn step_cells(s: &Value) -> [String; 18] {
    let l = &s["latency_ms"];
    [
        &s["rate"],
        &s["published"],
        &s["publish_errors"],
        &s["expected_deliveries"],
        &s["deliveries"],
        &s["lost"],
        &s["duplicated"],
        &s["out_of_order"],
        &s["deliveries_per_sec"],
        &l["p50"],
        &l["p90"],
        &l["p99"],
        &l["p999"],
        &l["max"],
        &s["first_subscriber_ms_p50"],
        &s["last_subscriber_ms_p50"],
        &s["server_cpu_secs"],
        &s["loadgen_cpu_secs"],
    ]
    .map(f)
}

/// The step table's headings and column widths.
const COLUMNS: [(&str, usize); 18] = [
    ("rate/s", 9),
    ("published", 9),
    ("errors", 7),
    ("expected", 11),
    ("delivered", 11),
    ("lost", 8),
    ("dup", 6),
    ("ooo", 6),
    ("deliv/s", 11),
    ("p50 ms", 8),
    ("p90 ms", 8),
    ("p99 ms", 8),
    ("p999 ms", 8),
    ("max ms", 8),
    ("first", 7),
    ("last", 7),
    ("srv cpu", 7),
    ("lg cpu", 7),
];

/// One table line: every cell right-aligned in its column.
fn table_line<S: AsRef<str>>(t: &mut String, cells: &[S]) {
    let line: Vec<String> =
        cells.iter().zip(COLUMNS).map(|(c, (_, w))| format!("{:>w$}", c.as_ref(), w = w)).collect();
    let _ = writeln!(t, "{}", line.join(" "));
}

/// One line per step (also printed as the steps finish, on stderr).
pub fn step_line(k: usize, s: &Value) -> String {
    let [rate, published, errors, expected, delivered, lost, dup, ooo, per_sec, p50, p90, p99, p999, max, first, last, srv, lg] =
        step_cells(s);
    format!(
        "step {k}: rate {rate}/s published {published} errors {errors} | expected {expected} delivered {delivered} \
         lost {lost} dup {dup} ooo {ooo} | {per_sec} deliveries/s | latency ms p50 {p50} p90 {p90} p99 {p99} \
         p999 {p999} max {max} | first/last subscriber p50 {first}/{last} ms | cpu s: server {srv} loadgen {lg}"
    )
}

pub fn text(out: &Value) -> String {
    let mut t = String::new();
    let label = out["label"].as_str().unwrap_or("");
    let _ = writeln!(
        t,
        "loadgen{}: {} transport{}, {} subscribers ({} connected, {} failed, {} disconnected later), {} worker(s)",
        if label.is_empty() { String::new() } else { format!(" [{label}]") },
        out["transport"].as_str().unwrap_or("?"),
        match out["http2"]["connections"].as_u64() {
            Some(c) => format!(" over HTTP/2 ({c} connections of up to {} streams)", f(&out["http2"]["streams_per_connection"])),
            None => String::new(),
        },
        f(&out["subscribers"]),
        f(&out["connected"]),
        f(&out["connect_failed"]),
        f(&out["disconnected"]),
        f(&out["workers"]),
    );
    let [p50, p99, max, all] = fields(&out["connect_ms"], ["p50", "p99", "max", "all_connected_ms"]);
    let _ = writeln!(t, "connect ms: p50 {p50} p99 {p99} max {max}; all connected after {all} ms");
    let steps = out["steps"].as_array().cloned().unwrap_or_default();
    if !steps.is_empty() {
        table_line(&mut t, &COLUMNS.map(|(h, _)| h));
    }
    for s in &steps {
        table_line(&mut t, &step_cells(s));
    }
    let srv = &out["server"];
    if srv.is_null() {
        let _ = writeln!(t, "server: not sampled (no --pid)");
    } else {
        let [cpu, start, peak, end] =
            fields(srv, ["cpu_secs", "rss_kib_start", "rss_kib_peak", "rss_kib_end"]);
        let _ = writeln!(t, "server: cpu {cpu} s; rss KiB start {start} peak {peak} end {end}");
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
