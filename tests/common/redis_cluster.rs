//! A real three-master Redis Cluster (Debian's redis-server 7 and
//! redis-cli) for the cluster backplane tests: three redis-servers with
//! `--cluster-enabled yes`, each on a free port in its own directory (see
//! redis_server.rs, which stops each by its pid), joined by
//! `redis-cli --cluster create … --cluster-replicas 0`, ready once every
//! node says `cluster_state:ok` and sees three masters.
//!
//! No replicas, so a master killed is not replaced; the nodes run with
//! `cluster-require-full-coverage no`, so the other masters keep serving
//! their slots meanwhile (what the fault test checks).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::require_tool;
use super::redis_server::RedisServer;
use super::DEADLINE;

const REDIS_CLI: &str = "/usr/bin/redis-cli";

pub struct RedisCluster {
    pub masters: Vec<RedisServer>,
    /// Each master's slot ranges, in `masters`' order.
    pub slots: Vec<Vec<(u16, u16)>>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        require_tool(REDIS_CLI, "redis-tools");
        let flags = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--cluster-require-full-coverage",
            "no",
        ];
        let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_with(false, &flags)).collect();
        let addrs: Vec<String> = masters.iter().map(|m| format!("127.0.0.1:{}", m.port)).collect();
        let out = Command::new(REDIS_CLI)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {REDIS_CLI}: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create {addrs:?}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cluster = RedisCluster { masters, slots: Vec::new() };
        cluster.wait_ok();
        cluster
    }

    /// Waits until every node says `cluster_state:ok` and lists the three
    /// masters with all 16384 slots; records who owns which slots.
    fn wait_ok(&mut self) {
        let start = Instant::now();
        loop {
            let states: Vec<String> = self.masters.iter().map(cluster_info).collect();
            let ok = states.iter().all(|s| s.contains("cluster_state:ok"));
            if ok {
                let views: Vec<Vec<(u16, u16, u16)>> = self.masters.iter().map(cluster_slots).collect();
                let full =
                    |v: &Vec<(u16, u16, u16)>| v.iter().map(|r| (r.1 - r.0) as u32 + 1).sum::<u32>() == 16384;
                if views.iter().all(full) && views.windows(2).all(|w| w[0] == w[1]) {
                    self.slots = self
                        .masters
                        .iter()
                        .map(|m| views[0].iter().filter(|r| r.2 == m.port).map(|r| (r.0, r.1)).collect())
                        .collect();
                    if self.slots.iter().all(|s| !s.is_empty()) {
                        return;
                    }
                }
            }
            assert!(start.elapsed() < DEADLINE, "cluster not ok within {DEADLINE:?}: {states:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What halley's `--redis` takes for a cluster: every node's URL.
    pub fn url(&self) -> String {
        self.masters.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }

    /// The index (in `masters`) of the master owning a channel's keys.
    pub fn master_of(&self, channel: &str) -> usize {
        let slot = slot(channel);
        self.slots
            .iter()
            .position(|ranges| ranges.iter().any(|&(a, b)| a <= slot && slot <= b))
            .unwrap_or_else(|| panic!("no master owns slot {slot} ({channel}): {:?}", self.slots))
    }

    /// One channel per master: `{prefix}{i}` for the first i that lands there.
    pub fn channel_per_master(&self, prefix: &str) -> Vec<String> {
        (0..self.masters.len())
            .map(|m| {
                (0..10_000)
                    .map(|i| format!("{prefix}{i}"))
                    .find(|c| self.master_of(c) == m)
                    .unwrap_or_else(|| panic!("no {prefix}N lands on master {m}"))
            })
            .collect()
    }
}

fn cluster_info(server: &RedisServer) -> String {
    let Ok(client) = redis::Client::open(server.url()) else { return String::new() };
    let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = con.set_read_timeout(Some(Duration::from_secs(2)));
    redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut con).unwrap_or_default()
}

/// `CLUSTER SLOTS` as (start, end, master port).
fn cluster_slots(server: &RedisServer) -> Vec<(u16, u16, u16)> {
    let mut con = server.connection();
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap_or_default();
    let mut out: Vec<(u16, u16, u16)> = ranges
        .iter()
        .filter_map(|r| {
            let redis::Value::Array(parts) = r else { return None };
            let int = |v: Option<&redis::Value>| match v {
                Some(redis::Value::Int(n)) => Some(*n as u16),
                _ => None,
            };
            let redis::Value::Array(master) = parts.get(2)? else { return None };
            Some((int(parts.first())?, int(parts.get(1))?, int(master.get(1))?))
        })
        .collect();
    out.sort_unstable();
    out
}

/// A channel's slot: CRC16/XMODEM of the hash tag (the channel) mod 16384.
pub fn slot(channel: &str) -> u16 {
    let mut crc: u16 = 0;
    for &b in channel.as_bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16384
}
