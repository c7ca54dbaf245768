//! A real `redis-server` (Debian's package) for the backplane tests: on a
//! free port of its own, in a scratch directory of its own, in the
//! foreground (`--daemonize no`), stopped by its pid (SIGTERM, then SIGKILL
//! after a deadline). `restart` brings it back on the same port and
//! directory, so with `--appendonly yes` the data survives.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::process::require_tool;
use super::DEADLINE;

const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Ports are picked below Linux's ephemeral range (32768 and up), so an
/// outbound connection of a test or of halley never holds the port between
/// a stop and a restart.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;
/// A cluster node's ports: its own and its bus port (10000 above) both in
/// `PORT_RANGE`.
const CLUSTER_PORT_RANGE: std::ops::Range<u16> = 20_000..22_000;

/// Makes ports and directories unique within this test process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running (or stopped, between `stop` and `restart`) redis-server.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// Its working directory (`--dir`): the AOF files and `redis.log`.
    pub dir: PathBuf,
    pub appendonly: bool,
    /// More redis-server flags (a cluster node's).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts redis-server with `--appendonly yes|no` on a free port with a
    /// fresh directory, and waits until it answers PING.
    pub fn start(appendonly: bool) -> RedisServer {
        RedisServer::start_with(appendonly, &[])
    }

    /// `start` with more redis-server flags.
    pub fn start_with(appendonly: bool, extra: &[&str]) -> RedisServer {
        require_tool(REDIS_SERVER, "redis-server");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!("halley-redis-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut seed = std::process::id().wrapping_mul(7919) ^ nanos ^ n.wrapping_mul(104_729);
        // Another process may take the port between our probe and redis
        // binding it: try a few.
        // A cluster node also binds its bus port, 10000 above its own: both
        // below the ephemeral range.
        let cluster = extra.contains(&"--cluster-enabled");
        let range = if cluster { CLUSTER_PORT_RANGE } else { PORT_RANGE };
        for _ in 0..20 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let port = range.start + (seed >> 8) as u16 % (range.end - range.start);
            if TcpListener::bind(("127.0.0.1", port)).is_err()
                || (cluster && TcpListener::bind(("127.0.0.1", port + 10_000)).is_err())
            {
                continue;
            }
            let extra = extra.iter().map(|s| s.to_string()).collect();
            let mut server = RedisServer { child: None, port, dir: dir.clone(), appendonly, extra };
            if server.launch() {
                return server;
            }
        }
        panic!("could not start redis-server on a free port; see {}/redis.log", dir.display());
    }

    /// `redis://127.0.0.1:PORT`, what halley's `--redis` takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Spawns redis-server on `self.port` and `self.dir` and waits for PING;
    /// false if it exited at once (the port was taken).
    fn launch(&mut self) -> bool {
        assert!(self.child.is_none(), "redis-server on port {} is already running", self.port);
        let log = self.dir.join("redis.log");
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--save", "", "--daemonize", "no"])
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            // Every write on disk before Redis answers it: a publish halley
            // acknowledged survives even a crash of Redis.
            .args(["--appendfsync", "always"])
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {REDIS_SERVER}: {e}"));
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if self.ping() {
                return true;
            }
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().expect("wait redis-server") {
                self.child = None;
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Address already in use") {
                    return false;
                }
                panic!("redis-server on port {} exited with {status}; log:\n{text}", self.port);
            }
            if start.elapsed() > DEADLINE {
                self.kill();
                panic!(
                    "redis-server on port {} did not answer PING within {DEADLINE:?}; log:\n{}",
                    self.port,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True when the server answers PING with PONG right now.
    pub fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else { return false };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else { return false };
        let _ = con.set_read_timeout(Some(Duration::from_secs(2)));
        redis::cmd("PING").query::<String>(&mut con).is_ok_and(|p| p == "PONG")
    }

    /// A sync connection from the `redis` crate, with the deadline as read timeout.
    pub fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("redis client");
        let con = client
            .get_connection_with_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("connect to redis-server at {}: {e}", self.addr()));
        con.set_read_timeout(Some(DEADLINE)).unwrap();
        con
    }

    /// SIGTERM (Redis then writes out its AOF and exits), SIGKILL if it has
    /// not exited within the deadline. Waits until the process is gone.
    pub fn stop(&mut self) {
        self.signal_and_wait("TERM");
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(&mut self) {
        self.signal_and_wait("KILL");
    }

    fn signal_and_wait(&mut self, signal: &str) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args([&format!("-{signal}"), &pid]).status();
        let start = Instant::now();
        loop {
            if child.try_wait().expect("wait redis-server").is_some() {
                return;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts it again on the same port and directory (after `stop` or `kill`).
    pub fn restart(&mut self) {
        let port = self.port;
        let start = Instant::now();
        // A restart right after a stop may find the port still held for a
        // moment (a socket lingering in the kernel): retry until the deadline.
        while !self.launch() {
            assert!(
                start.elapsed() < DEADLINE,
                "redis-server could not bind port {port} again within {DEADLINE:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
