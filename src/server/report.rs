//! `/stats` (JSON) and `/metrics` (Prometheus text format 0.0.4), built from
//! the counters in `crate::stats`.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};

use crate::fanout::FanoutHandle;
use crate::stats::Stats;

/// Latency quantiles reported in both forms, with their /stats names.
const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];
const QUANTILE_NAMES: [&str; 5] = ["p50", "p90", "p99", "p999", "max"];

pub fn stats_json(stats: &Stats, fanout: &FanoutHandle, queue_capacity: usize) -> Value {
    let by_transport: serde_json::Map<String, Value> =
        stats.subscribers_by_transport().into_iter().map(|(name, n)| (name.to_string(), json!(n))).collect();
    let loops: Vec<Value> = stats
        .loops
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({
                "loop": i,
                "connections": l.connections.load(Relaxed),
                "subscribers": l.subscribers.iter().map(|c| c.load(Relaxed)).sum::<u64>(),
                "deliveries": l.deliveries.load(Relaxed),
            })
        })
        .collect();
    let latency = stats.latency();
    let quantiles: serde_json::Map<String, Value> = QUANTILES
        .iter()
        .zip(QUANTILE_NAMES)
        .map(|(q, n)| (n.to_string(), json!(latency.value_at_quantile(*q))))
        .collect();
    let mut value = json!({
        "uptime_secs": stats.started.elapsed().as_secs(),
        "connections": {
            "open": stats.total(|l| &l.connections),
            "accepted": stats.total(|l| &l.accepted),
            "refused": stats.total(|l| &l.refused),
            "subscribers_by_transport": by_transport,
        },
        "requests": stats.total(|l| &l.requests),
        "channels": stats.fanout.channels.load(Relaxed),
        "retained_messages": stats.fanout.retained.load(Relaxed),
        "publishes": stats.fanout.published.load(Relaxed),
        "batches": stats.fanout.batches.load(Relaxed),
        "deliveries": stats.total(|l| &l.deliveries),
        "slow_consumers_dropped": stats.total(|l| &l.slow_consumers),
        "bytes_out": stats.total(|l| &l.bytes_out),
        "h2": {
            "connections": stats.total(|l| &l.h2.connections),
            "streams": stats.total(|l| &l.h2.streams),
            "streams_reset": stats.total(|l| &l.h2.streams_reset),
            "client_resets": stats.total(|l| &l.h2.client_resets),
            "connection_errors": (1..14).map(|i| stats.total(|l| &l.h2.goaway_errors[i])).sum::<u64>(),
        },
        "queues": { "publish_depth": fanout.queue_depth(), "publish_capacity": queue_capacity },
        "delivery_latency_us": { "count": latency.len(), "quantiles": quantiles },
        "loops": loops,
    });
    if let (Some(b), Some(map)) = (&stats.backplane, value.as_object_mut()) {
        map.insert("backplane".into(), backplane_json(b));
    }
    value
}

/// The Redis backplane's state, as `/stats` and the dashboard show it.
pub fn backplane_json(b: &crate::backplane::BackplaneStats) -> Value {
    json!({
        "connected": b.connected.load(Relaxed),
        "listening": b.listening.load(Relaxed),
        "rtt_us": b.rtt_us.load(Relaxed),
        "queued": b.queued.load(Relaxed),
        "errors": b.errors.load(Relaxed),
        "reconnects": b.reconnects.load(Relaxed),
        "wild_feed": b.wild_feed.load(Relaxed),
        "wild_announced": b.wild_announced.load(Relaxed),
    })
}

/// One metric: name, type, help and its samples.
type MetricRow = (&'static str, &'static str, &'static str, Vec<(String, u64)>);

pub fn metrics_text(stats: &Stats, fanout: &FanoutHandle) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP halley_{name} {help}\n# TYPE halley_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "halley_{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![(String::new(), v)];
    metric("uptime_seconds", "gauge", "Seconds since start.", &one(stats.started.elapsed().as_secs()));
    metric("connections", "gauge", "Open connections, all ports.", &one(stats.total(|l| &l.connections)));
    metric(
        "connections_accepted_total",
        "counter",
        "Connections accepted.",
        &one(stats.total(|l| &l.accepted)),
    );
    metric(
        "connections_refused_total",
        "counter",
        "Connections refused at max_connections.",
        &one(stats.total(|l| &l.refused)),
    );
    let by_transport: Vec<(String, u64)> = stats
        .subscribers_by_transport()
        .into_iter()
        .map(|(name, n)| (format!("{{transport=\"{name}\"}}"), n))
        .collect();
    metric("subscribers", "gauge", "Subscribers listening now, by transport.", &by_transport);
    metric("requests_total", "counter", "HTTP requests parsed.", &one(stats.total(|l| &l.requests)));
    metric("channels", "gauge", "Channel records held.", &one(stats.fanout.channels.load(Relaxed)));
    metric(
        "retained_messages",
        "gauge",
        "Messages held in history.",
        &one(stats.fanout.retained.load(Relaxed)),
    );
    metric("publishes_total", "counter", "Messages published.", &one(stats.fanout.published.load(Relaxed)));
    metric("batches_total", "counter", "Fan-out batches flushed.", &one(stats.fanout.batches.load(Relaxed)));
    metric(
        "deliveries_total",
        "counter",
        "Messages queued to subscribers.",
        &one(stats.total(|l| &l.deliveries)),
    );
    metric(
        "slow_consumers_total",
        "counter",
        "Subscribers cut off over max_outbound_bytes.",
        &one(stats.total(|l| &l.slow_consumers)),
    );
    super::h2_conn::metrics(stats, &mut metric);
    metric(
        "bytes_out_total",
        "counter",
        "Bytes written to client sockets, all ports.",
        &one(stats.total(|l| &l.bytes_out)),
    );
    metric(
        "publish_queue_depth",
        "gauge",
        "Publishes waiting for the fan-out thread.",
        &one(fanout.queue_depth() as u64),
    );
    if let Some(b) = &stats.backplane {
        let flag = |v: bool| one(u64::from(v));
        let rows: [MetricRow; 8] = [
            (
                "backplane_connected",
                "gauge",
                "1 while the Redis command connection is up.",
                flag(b.connected.load(Relaxed)),
            ),
            (
                "backplane_listening",
                "gauge",
                "1 while subscribed to Redis announcements.",
                flag(b.listening.load(Relaxed)),
            ),
            (
                "backplane_rtt_microseconds",
                "gauge",
                "The last Redis round trip.",
                one(b.rtt_us.load(Relaxed)),
            ),
            (
                "backplane_queued",
                "gauge",
                "Jobs waiting for the Redis command thread.",
                one(b.queued.load(Relaxed)),
            ),
            (
                "backplane_errors_total",
                "counter",
                "Redis errors (failed commands, unreadable announcements).",
                one(b.errors.load(Relaxed)),
            ),
            (
                "backplane_reconnects_total",
                "counter",
                "Redis command connections lost.",
                one(b.reconnects.load(Relaxed)),
            ),
            (
                "backplane_wild_feed",
                "gauge",
                "Redis Cluster: 1 while some node has engine wildcard subscriptions, so publishes also go on the wildcard feed.",
                flag(b.wild_feed.load(Relaxed)),
            ),
            (
                "backplane_wild_announced_total",
                "counter",
                "Redis Cluster: messages this node put on the wildcard feed.",
                one(b.wild_announced.load(Relaxed)),
            ),
        ];
        for (name, kind, help, samples) in rows {
            metric(name, kind, help, &samples);
        }
    }
    let latency = stats.latency();
    let _ = writeln!(
        out,
        "# HELP halley_delivery_latency_seconds Publish received to message queued for the subscriber's socket.\n\
         # TYPE halley_delivery_latency_seconds summary"
    );
    for q in QUANTILES {
        let secs = latency.value_at_quantile(q) as f64 / 1e6;
        let _ = writeln!(out, "halley_delivery_latency_seconds{{quantile=\"{q}\"}} {secs}");
    }
    let sum_us: u128 = latency
        .iter_recorded()
        .map(|v| u128::from(v.value_iterated_to()) * u128::from(v.count_at_value()))
        .sum();
    let sum = sum_us as f64;
    let _ = writeln!(out, "halley_delivery_latency_seconds_sum {}", sum / 1e6);
    let _ = writeln!(out, "halley_delivery_latency_seconds_count {}", latency.len());
    if let Some(tls) = stats.tls.get() {
        tls.metrics(&mut out);
    }
    out
}
