//! Gateway configuration: the `Config` struct, TOML loading, validation and
//! setting one value by name (which is what command-line flags use).
//!
//! Every setting is a flat key in the TOML file, and every key is also a
//! command-line flag (see `cli.rs`). Setting by name goes through the TOML
//! representation of `Config`, so adding a field here is all it takes to get
//! a file key, a flag, a `--help` line and `--print-config` output for it.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::num::IntErrorKind;
use std::path::Path;

/// The accepted values of `log_level`, least to most verbose.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// All tunable settings of the gateway.
///
/// Unknown keys are rejected rather than ignored so that a misspelt setting
/// in a file fails loudly instead of silently keeping its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the public (subscriber) port. Loopback by default so that a
    /// fresh install exposes nothing until the operator chooses to.
    pub listen: String,
    /// Address of the trusted publish/admin port. Loopback by default because
    /// anyone who reaches it can publish to every channel.
    pub ingest: String,
    /// Address of the Redis-protocol ingest port. Loopback and 6380 (not
    /// 6379) to avoid clashing with a local Redis.
    pub resp: String,
    /// The Redis backplane (`redis://host:port`): every node given the same
    /// Redis shares one set of channels, history in Redis streams. Empty
    /// (the default) is the single-process mode with no outside service.
    /// A comma-separated list of node URLs is a Redis Cluster (Redis 7:
    /// sharded pub/sub), see docs/scaling.md.
    pub redis: String,
    /// Event-loop threads. 0 means one per core, which is what a push
    /// gateway that is mostly I/O-bound wants; capped at 256 by validation.
    pub threads: usize,
    /// Listen backlog per listener: pending connections the kernel queues
    /// before accept. 4096 (Linux's default `somaxconn`, which caps it)
    /// absorbs a reconnect storm of thousands of clients; a queue that
    /// overflows drops SYNs, and clients retry only after a second.
    pub backlog: u32,
    /// Maximum open client connections per process, over all ports. 19000
    /// leaves 1000 descriptors of the host's 20000 hard limit for listeners,
    /// the poller, logs and other files.
    pub max_connections: usize,
    /// Largest accepted request head (request line plus headers) in bytes;
    /// beyond it the request gets 431. 8 KiB matches common servers and is
    /// plenty for subscription URLs while bounding per-connection memory.
    pub max_head_bytes: usize,
    /// Largest request body in bytes for requests other than a single
    /// publish (e.g. batch publishes); beyond it the request gets 413.
    /// 1 MiB fits a batch of default-size messages with room to spare.
    pub max_body_bytes: usize,
    /// Largest single published payload in bytes; beyond it 413. 64 KiB
    /// keeps fan-out cost per message bounded (it is copied to every
    /// subscriber's queue) while fitting typical notification payloads.
    pub max_message_bytes: usize,
    /// Seconds a client has to send a complete request head before the
    /// connection is closed. 10 s defeats slow-loris clients without
    /// hurting slow mobile links.
    pub head_timeout_secs: u64,
    /// Seconds a long-poll request is held when it gives no `?timeout=`.
    /// 30 s stays under the idle timeouts of most proxies and load balancers.
    pub longpoll_timeout_secs: u64,
    /// Upper bound on a client's `?timeout=` in seconds, so clients cannot
    /// pin connections for arbitrarily long. 120 s is still proxy-friendly.
    pub longpoll_timeout_max_secs: u64,
    /// Seconds between heartbeats on streaming transports. 25 s keeps
    /// connections alive through intermediaries with 30 s idle timeouts.
    pub heartbeat_secs: u64,
    /// Value of the SSE `retry:` field in milliseconds: how long browsers
    /// wait before reconnecting. 2 s spreads reconnects without long gaps.
    pub sse_retry_ms: u64,
    /// Most channels one subscription request may name. 64 bounds the
    /// per-request work of subscribing while covering realistic clients.
    pub max_channels_per_subscription: usize,
    /// Messages retained per channel for catch-up after reconnects. 100
    /// covers typical reconnect gaps at modest memory per channel.
    pub history_size: usize,
    /// Seconds after which retained messages are dropped from history, so
    /// idle channels do not keep memory forever. One hour by default.
    pub history_ttl_secs: u64,
    /// Extra coalescing delay for fan-out batches, in microseconds: at most
    /// one batch per window. 0 (the default) is pure group commit: an idle
    /// fan-out takes a publish at once, and a busy one takes everything that
    /// queued meanwhile as its next batch, so batches grow with load by
    /// themselves. A window trades latency for fewer, larger batches.
    pub batch_window_us: u64,
    /// Most publishes delivered in one batch, which bounds the latency one
    /// batch can add to the next. 1024 matches the default backlog scale.
    pub batch_max: usize,
    /// Microseconds a thread keeps polling, instead of sleeping, right after
    /// it handed work to another thread and expects its answer: the fan-out
    /// after a batch (the next publish of a sequential publisher), a loop
    /// after a publish (its acknowledgement). A sleep and a wake-up cost tens
    /// of microseconds on a VM; 50 µs covers one hand-off and round trip.
    /// Only work in flight starts a spin, so an idle node never spins. 0 = off.
    pub handoff_spin_us: u64,
    /// Capacity of the bounded ingest-to-fan-out queue; when it is full,
    /// publishers get 503 with Retry-After instead of unbounded memory
    /// growth. 4096 absorbs bursts of a few batches.
    pub publish_queue: usize,
    /// Per-connection outbound queue cap in bytes; a connection over it is
    /// closed as a slow consumer so one stalled client cannot hoard memory.
    /// 1 MiB holds many default-size messages for a briefly slow client.
    pub max_outbound_bytes: usize,
    /// Milliseconds given to flush and close connections on SIGTERM before
    /// exit. 3 s is enough to flush queues yet short enough for deploys.
    pub shutdown_grace_ms: u64,
    /// Seconds after which a streaming response ends cleanly with a reconnect
    /// hint; proxies and firewalls cut long connections anyway, and a planned
    /// end lets the client resume by id at a moment of our choosing. An hour
    /// is past most idle cut-offs yet bounds how long any one stream lives.
    pub max_stream_age_secs: u64,
    /// Origins allowed to subscribe cross-origin (CORS): `*` for any, a
    /// comma-separated list of origins (`https://a.example,https://b.example`),
    /// or empty for none. Any by default: subscriber data is public by design
    /// until auth is configured.
    pub cors_origins: String,
    /// PEM certificate chain for TLS on the public port (leaf first). With
    /// `tls_key`, the public port speaks TLS only; empty: plain HTTP.
    pub tls_cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: String,
    /// TLS on the ingest port too, with the same certificate. Off by
    /// default: the ingest port is the trusted side.
    pub ingest_tls: bool,
    /// The demo page's same-origin publish helper (`POST /demo/pub/{channel}`
    /// on the public port): `auto` turns it on only when the public address is
    /// a loopback address (a developer's machine), `on` or `off` say so. The
    /// page at `/` is always served; without the helper it shows a curl line.
    pub demo_publish: String,
    /// Bayeux: how long a `/meta/connect` is held (`advice.timeout`), ms.
    /// CometD's default; under the 60 s idle cut-off of common proxies.
    pub bayeux_timeout_ms: u64,
    /// Bayeux: a session with no `/meta/connect` for this long after its last
    /// connect answer expires (CometD's `maxInterval`), ms.
    pub bayeux_max_interval_ms: u64,
    /// Bayeux: messages one session may have queued before it is dropped.
    pub bayeux_max_queue: usize,
    /// Bayeux: channel patterns clients may publish to, comma-separated
    /// (`/**` = every broadcast channel, CometD's default policy).
    pub bayeux_publish_allow: String,
    /// Bayeux: add `ext.halley` (publish time, subscriber count) to delivered
    /// messages, as the seed application's chat did.
    pub bayeux_add_fields: bool,
    /// Bayeux: retained messages sent to a new subscriber of a channel (the
    /// seed chat's "recent history"); 0 sends none, as CometD does.
    pub bayeux_history_on_subscribe: usize,
    /// HS256 secret for subscriber and public-side publisher tokens (JWT);
    /// empty turns auth off. Use at least 32 random bytes.
    pub auth_secret: String,
    /// Channel name prefixes that need a token, comma-separated; `*` means
    /// every channel (the default once a secret is set).
    pub auth_required: String,
    /// A key the ingest and RESP ports require (`Authorization: Bearer KEY`,
    /// RESP `AUTH KEY`); empty means none (they are on a trusted network).
    pub ingest_key: String,
    /// CIDR blocks allowed / denied to subscribe (public port), comma-separated.
    pub ip_allow_subscribers: String,
    pub ip_deny_subscribers: String,
    /// CIDR blocks allowed / denied to publish (every publish path).
    pub ip_allow_publishers: String,
    pub ip_deny_publishers: String,
    /// Blocked words, comma-separated, filtered on every publish path.
    pub blocked_words: String,
    /// `mask` (replace with asterisks) or `reject` (422).
    pub blocked_words_mode: String,
    /// Connections per client address; 0 = no limit (the default: behind a
    /// load balancer every connection comes from its address).
    pub max_connections_per_ip: usize,
    /// Public-side publishes (Bayeux, the demo helper) per second per
    /// address; 0 = no limit.
    pub publish_rate_per_ip: u32,
    /// Publishes per second per ingest (HTTP or RESP) connection; 0 = no limit.
    pub publish_rate_per_connection: u32,
    /// Pushlet: a session with no request and no open stream for this long is
    /// dropped (Pushlet's `session.timeout.mins`, 5 minutes).
    pub pushlet_lease_secs: u64,
    /// Pushlet: events one session may have queued; over it the session is
    /// dropped, as Pushlet did (its own bound was 23 events). Above
    /// `batch_max`, so one full fan-out batch cannot overflow a listener.
    pub pushlet_max_queue: usize,
    /// Pushlet: how long a pull request is held, and the stream heartbeat
    /// interval (Pushlet's `queue.read.timeout.millis`, 20 s).
    pub pushlet_read_timeout_secs: u64,
    /// Pushlet: subject prefixes clients may publish to, comma-separated;
    /// empty (the default) turns Pushlet publishing off.
    pub pushlet_publish_allow: String,
    /// Log verbosity: one of error, warn, info, debug, trace. `info` logs
    /// lifecycle events without per-request noise.
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".to_string(),
            ingest: "127.0.0.1:8081".to_string(),
            resp: "127.0.0.1:6380".to_string(),
            redis: String::new(),
            threads: 0,
            backlog: 4096,
            max_connections: 19000,
            max_head_bytes: 8192,
            max_body_bytes: 1_048_576,
            max_message_bytes: 65_536,
            head_timeout_secs: 10,
            longpoll_timeout_secs: 30,
            longpoll_timeout_max_secs: 120,
            heartbeat_secs: 25,
            sse_retry_ms: 2000,
            max_channels_per_subscription: 64,
            history_size: 100,
            history_ttl_secs: 3600,
            batch_window_us: 0,
            batch_max: 1024,
            handoff_spin_us: 50,
            publish_queue: 4096,
            max_outbound_bytes: 1_048_576,
            shutdown_grace_ms: 3000,
            max_stream_age_secs: 3600,
            cors_origins: "*".to_string(),
            tls_cert: String::new(),
            tls_key: String::new(),
            ingest_tls: false,
            demo_publish: "auto".to_string(),
            bayeux_timeout_ms: 30_000,
            bayeux_max_interval_ms: 10_000,
            bayeux_max_queue: 1000,
            bayeux_publish_allow: "/**".to_string(),
            bayeux_add_fields: false,
            bayeux_history_on_subscribe: 0,
            auth_secret: String::new(),
            auth_required: "*".to_string(),
            ingest_key: String::new(),
            ip_allow_subscribers: String::new(),
            ip_deny_subscribers: String::new(),
            ip_allow_publishers: String::new(),
            ip_deny_publishers: String::new(),
            blocked_words: String::new(),
            blocked_words_mode: "mask".to_string(),
            max_connections_per_ip: 0,
            publish_rate_per_ip: 0,
            publish_rate_per_connection: 0,
            pushlet_lease_secs: 300,
            pushlet_max_queue: 2048,
            pushlet_read_timeout_secs: 20,
            pushlet_publish_allow: String::new(),
            log_level: "info".to_string(),
        }
    }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
/// One day in seconds; the upper bound for most timeouts, which keeps
/// `Instant + Duration` arithmetic elsewhere far from overflowing.
const DAY_SECS: u64 = 24 * 60 * 60;

impl Config {
    /// Parses a TOML document. Missing keys keep their defaults; an unknown
    /// key or a value of the wrong type is an error naming the key. The
    /// result is not validated: call [`Config::validate`] once every source
    /// (file, environment, flags) has been applied.
    pub fn from_toml_str(s: &str) -> Result<Config, String> {
        let table: toml::Table =
            s.parse().map_err(|e: toml::de::Error| format!("invalid TOML: {}", e.to_string().trim()))?;
        Self::from_table(table)
    }

    /// Reads and parses a TOML file; errors name the path. Not validated,
    /// for the same reason as [`Config::from_toml_str`].
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Self::from_toml_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// Renders the configuration as TOML that [`Config::from_toml_str`]
    /// accepts back unchanged. Never panics: a value TOML cannot hold (an
    /// integer above `i64::MAX`, only reachable by building the struct in
    /// code) yields a TOML comment describing the problem instead.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render configuration as TOML: {e}\n"))
    }

    /// The number of event-loop threads to start: `threads`, or one per
    /// available core when it is 0 (falling back to 1 if the core count
    /// cannot be determined, e.g. in a restricted sandbox).
    pub fn threads_effective(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1)
    }

    /// The guard's rules (auth, address lists, words, rates, the message
    /// size); `Err` names a bad address list.
    pub fn guard_config(&self) -> Result<crate::guard::GuardConfig, String> {
        use crate::guard::{IpRules, WordFilter, WordMode};
        let mode = if self.blocked_words_mode == "reject" { WordMode::Reject } else { WordMode::Mask };
        Ok(crate::guard::GuardConfig {
            auth: crate::auth::Policy::new(&self.auth_secret, &self.auth_required),
            ingest_key: Some(self.ingest_key.clone()).filter(|k| !k.is_empty()),
            subscribers: IpRules::parse(&self.ip_allow_subscribers, &self.ip_deny_subscribers)?,
            publishers: IpRules::parse(&self.ip_allow_publishers, &self.ip_deny_publishers)?,
            words: WordFilter::new(&self.blocked_words, mode),
            max_per_ip: self.max_connections_per_ip,
            rate_per_ip: self.publish_rate_per_ip,
            rate_per_connection: self.publish_rate_per_connection,
            max_message_bytes: self.max_message_bytes,
        })
    }

    /// Sets one setting by its key (e.g. `max_head_bytes`) from its textual
    /// value, parsed according to the type the setting already has.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.set_labeled(key, value, key)
    }

    /// Like [`Config::set`], but error messages name `label` (a flag such as
    /// `--threads` or a variable such as `HALLEY_LOG`) rather than the key,
    /// so the user sees the spelling they actually typed.
    ///
    /// Works generically through the TOML table form so no per-field code is
    /// needed: the key's current value says which type to parse as, and
    /// deserializing the updated table enforces the field's real type (e.g.
    /// rejecting a negative number for an unsigned setting).
    pub(crate) fn set_labeled(&mut self, key: &str, value: &str, label: &str) -> Result<(), String> {
        let mut table = self.to_table()?;
        let current = table.get(key).ok_or_else(|| unknown_key_message(key, &table))?;
        let parsed = parse_like(current, value, label)?;
        table.insert(key.to_string(), parsed);
        *self = table
            .try_into()
            .map_err(|e: toml::de::Error| format!("{label}: cannot use '{value}': {}", e.message()))?;
        Ok(())
    }

    /// A one-line description of a setting, for `--help`.
    pub fn describe(key: &str) -> &'static str {
        SETTING_HELP.iter().find(|(k, _)| *k == key).map_or("", |(_, d)| d)
    }

    /// The names of all settings (alphabetical unless a crate in the build
    /// enables toml's `preserve_order`, which keeps declaration order).
    pub fn keys() -> Vec<String> {
        Config::default().to_table().map(|t| t.keys().cloned().collect()).unwrap_or_default()
    }

    /// Checks every setting against its allowed range and reports all
    /// problems at once (joined by "; "), each naming the setting, so an
    /// operator can fix a config in one pass.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            check_addr("listen", &self.listen),
            check_addr("ingest", &self.ingest),
            check_addr("resp", &self.resp),
            check_redis_url(&self.redis),
            check_range("threads", self.threads, 0, 256),
            check_range("backlog", self.backlog, 1, 65_535),
            check_range("max_connections", self.max_connections, 1, 1_000_000),
            check_range("max_head_bytes", self.max_head_bytes, KIB, MIB),
            check_range("max_body_bytes", self.max_body_bytes, 1, 64 * MIB),
            check_range("max_message_bytes", self.max_message_bytes, 1, 64 * MIB),
            check_not_above(
                ("max_message_bytes", wide(self.max_message_bytes)),
                ("max_body_bytes", wide(self.max_body_bytes)),
            ),
            check_range("head_timeout_secs", self.head_timeout_secs, 1, 3600),
            check_range("longpoll_timeout_secs", self.longpoll_timeout_secs, 1, DAY_SECS),
            check_range("longpoll_timeout_max_secs", self.longpoll_timeout_max_secs, 1, DAY_SECS),
            check_not_above(
                ("longpoll_timeout_secs", self.longpoll_timeout_secs),
                ("longpoll_timeout_max_secs", self.longpoll_timeout_max_secs),
            ),
            check_range("heartbeat_secs", self.heartbeat_secs, 1, 3600),
            check_range("sse_retry_ms", self.sse_retry_ms, 1, DAY_SECS * 1000),
            check_range("max_channels_per_subscription", self.max_channels_per_subscription, 1, 65_536),
            check_range("history_size", self.history_size, 1, 100_000),
            check_range("history_ttl_secs", self.history_ttl_secs, 1, 365 * DAY_SECS),
            check_range("batch_window_us", self.batch_window_us, 0, 10_000_000),
            check_range("batch_max", self.batch_max, 1, 65_536),
            check_range("handoff_spin_us", self.handoff_spin_us, 0, 1_000),
            check_range("publish_queue", self.publish_queue, 1, 1_000_000),
            check_range("max_outbound_bytes", self.max_outbound_bytes, 4 * KIB, GIB),
            check_range("shutdown_grace_ms", self.shutdown_grace_ms, 1, 600_000),
            check_range("max_stream_age_secs", self.max_stream_age_secs, 1, 7 * 86_400),
            check_one_of("demo_publish", &self.demo_publish, &["auto", "on", "off"]),
            check_tls(self),
            check_range("bayeux_timeout_ms", self.bayeux_timeout_ms, 0, 600_000),
            check_range("bayeux_max_interval_ms", self.bayeux_max_interval_ms, 1000, 3_600_000),
            check_range("bayeux_max_queue", self.bayeux_max_queue, 1, 1_000_000),
            check_range("bayeux_history_on_subscribe", self.bayeux_history_on_subscribe, 0, 100_000),
            check_one_of("blocked_words_mode", &self.blocked_words_mode, &["mask", "reject"]),
            check_range("pushlet_lease_secs", self.pushlet_lease_secs, 1, 86_400),
            check_range("pushlet_max_queue", self.pushlet_max_queue, 1, 1_000_000),
            check_range("pushlet_read_timeout_secs", self.pushlet_read_timeout_secs, 1, 3600),
            crate::guard::IpRules::parse(&self.ip_allow_subscribers, &self.ip_deny_subscribers)
                .map(|_| ())
                .map_err(|e| format!("ip_allow_subscribers / ip_deny_subscribers: {e}")),
            crate::guard::IpRules::parse(&self.ip_allow_publishers, &self.ip_deny_publishers)
                .map(|_| ())
                .map_err(|e| format!("ip_allow_publishers / ip_deny_publishers: {e}")),
            check_log_level("log_level", &self.log_level),
        ];
        let problems: Vec<String> = checks.into_iter().filter_map(Result::err).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The configuration as a TOML table, the common form used by `set`,
    /// key listing and file loading.
    fn to_table(&self) -> Result<toml::Table, String> {
        toml::Table::try_from(self).map_err(|e| format!("cannot represent configuration as TOML: {e}"))
    }

    /// Builds a `Config` from a parsed table. Keys are checked one by one
    /// against the defaults so that the error names the offending key (a
    /// whole-table deserialization error from serde does not).
    fn from_table(table: toml::Table) -> Result<Config, String> {
        let defaults = Config::default().to_table()?;
        let mut problems = Vec::new();
        for (key, value) in &table {
            if !defaults.contains_key(key) {
                problems.push(unknown_key_message(key, &defaults));
                continue;
            }
            // Probe this key alone on top of the defaults to attribute errors.
            let mut probe = defaults.clone();
            probe.insert(key.clone(), value.clone());
            if let Err(e) = probe.try_into::<Config>() {
                problems.push(format!("{key}: {}", e.message()));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        table.try_into().map_err(|e: toml::de::Error| e.message().to_string())
    }
}

/// The message for a key that is not a setting, listing the valid ones
/// because the usual cause is a typo.
fn unknown_key_message(key: &str, known: &toml::Table) -> String {
    let names: Vec<&str> = known.keys().map(String::as_str).collect();
    format!("unknown setting '{key}' (known settings: {})", names.join(", "))
}

/// Parses `raw` into a TOML value of the same type as `current`. `label`
/// names the setting in error messages.
fn parse_like(current: &toml::Value, raw: &str, label: &str) -> Result<toml::Value, String> {
    use toml::Value;
    let text = raw.trim();
    match current {
        Value::String(_) => Ok(Value::String(raw.to_string())),
        Value::Integer(_) => text.parse::<i64>().map(Value::Integer).map_err(|e| match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                format!("{label}: '{raw}' is too large")
            }
            _ => format!("{label}: expected a whole number, got '{raw}'"),
        }),
        Value::Float(_) => text
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("{label}: expected a number, got '{raw}'")),
        Value::Boolean(_) => match text {
            "true" => Ok(Value::Boolean(true)),
            "false" => Ok(Value::Boolean(false)),
            _ => Err(format!("{label}: expected true or false, got '{raw}'")),
        },
        Value::Datetime(_) | Value::Array(_) | Value::Table(_) => {
            Err(format!("{label}: this setting can only be given in the config file"))
        }
    }
}

/// Checks that `value` parses as a socket address (`IP:PORT`).
fn check_addr(name: &str, value: &str) -> Result<(), String> {
    value
        .parse::<SocketAddr>()
        .map(|_| ())
        .map_err(|_| format!("{name} must be an IP:PORT address such as 127.0.0.1:8080, got '{value}'"))
}

/// The backplane URL: empty, one the Redis client accepts, or a
/// comma-separated list of them (a Redis Cluster's nodes).
fn check_redis_url(value: &str) -> Result<(), String> {
    if value.is_empty() || value.split(',').all(|url| redis::parse_redis_url(url.trim()).is_some()) {
        return Ok(());
    }
    Err(format!(
        "redis must be a URL such as redis://127.0.0.1:6379, a comma-separated list of a Redis \
         Cluster's node URLs, or empty for none; got '{value}'"
    ))
}

/// Checks `min <= value <= max`. Takes any unsigned integer; a value that
/// does not fit in u64 cannot be in range, so it is treated as too large.
fn check_range(name: &str, value: impl TryInto<u64>, min: u64, max: u64) -> Result<(), String> {
    let value: u64 = value.try_into().unwrap_or(u64::MAX);
    if (min..=max).contains(&value) {
        return Ok(());
    }
    if min == 0 {
        Err(format!("{name} must be at most {max}, got {value}"))
    } else {
        Err(format!("{name} must be between {min} and {max}, got {value}"))
    }
}

/// Widens a usize for comparisons; saturating keeps it panic-free on any
/// platform (a value that does not fit is larger than any bound).
fn wide(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Checks that one setting does not exceed another it is bounded by.
fn check_not_above(small: (&str, u64), large: (&str, u64)) -> Result<(), String> {
    if small.1 <= large.1 {
        return Ok(());
    }
    Err(format!("{} ({}) must not exceed {} ({})", small.0, small.1, large.0, large.1))
}

/// Checks that `value` is one of [`LOG_LEVELS`]. `name` is the setting or
/// environment variable it came from, for the message.
pub(crate) fn check_log_level(name: &str, value: &str) -> Result<(), String> {
    if LOG_LEVELS.contains(&value) {
        return Ok(());
    }
    Err(format!("{name} must be one of {}, got '{value}'", LOG_LEVELS.join("|")))
}

fn check_one_of(name: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(format!("{name} must be one of {}, got '{value}'", allowed.join(", ")))
}

/// TLS needs a certificate and its key together; the files themselves are
/// read at start (a missing one is an error there, exit code 2).
fn check_tls(config: &Config) -> Result<(), String> {
    match (config.tls_cert.is_empty(), config.tls_key.is_empty()) {
        (true, true) if config.ingest_tls => Err("ingest_tls needs tls_cert and tls_key".to_string()),
        (true, false) => Err("tls_key is set but tls_cert is not".to_string()),
        (false, true) => Err("tls_cert is set but tls_key is not".to_string()),
        _ => Ok(()),
    }
}

/// What each setting bounds, one line each, for `--help`.
const SETTING_HELP: &[(&str, &str)] = &[
    ("listen", "public (subscriber) address"),
    ("ingest", "trusted publish/admin address"),
    ("resp", "Redis-protocol publish address (trusted side)"),
    (
        "redis",
        "Redis backplane URL shared by every node, e.g. redis://127.0.0.1:6379, or a comma-separated list of Redis Cluster nodes (empty: single process)",
    ),
    ("threads", "event-loop threads; 0 = one per core"),
    ("backlog", "listen backlog per listener"),
    ("max_connections", "open connections per process, all ports"),
    ("max_head_bytes", "request head size limit (431 over it)"),
    ("max_body_bytes", "request body limit other than single publishes (413)"),
    ("max_message_bytes", "published payload limit (413)"),
    ("head_timeout_secs", "time to send a request head; also idle keep-alive time"),
    ("longpoll_timeout_secs", "default long-poll hold"),
    ("longpoll_timeout_max_secs", "cap on ?timeout="),
    ("heartbeat_secs", "streaming heartbeat interval"),
    ("sse_retry_ms", "SSE retry: hint sent to EventSource"),
    ("max_channels_per_subscription", "channels in one /sub request"),
    ("history_size", "messages retained per channel"),
    ("history_ttl_secs", "age after which retained messages are dropped"),
    ("batch_window_us", "extra delay between fan-out batches in µs (0: group commit, no waiting)"),
    ("batch_max", "publishes per fan-out batch"),
    ("handoff_spin_us", "µs a thread polls instead of sleeping while it expects an answer (0: off)"),
    ("publish_queue", "publishes waiting for the fan-out thread (503 when full)"),
    ("max_outbound_bytes", "unwritten bytes per connection before it is cut off"),
    ("shutdown_grace_ms", "time to flush and close on SIGTERM"),
    ("max_stream_age_secs", "streams end cleanly with a reconnect hint after this long"),
    ("cors_origins", "origins allowed cross-origin: *, a comma-separated list, or empty"),
    ("tls_cert", "PEM certificate chain: TLS on the public port (with tls_key)"),
    ("tls_key", "PEM private key of tls_cert"),
    ("ingest_tls", "TLS on the ingest port too (needs tls_cert and tls_key)"),
    ("demo_publish", "the demo page's publish helper: auto (on for loopback), on, off"),
    ("bayeux_timeout_ms", "Bayeux: how long a /meta/connect is held"),
    ("bayeux_max_interval_ms", "Bayeux: session expiry without /meta/connect"),
    ("bayeux_max_queue", "Bayeux: messages queued per session before it is dropped"),
    ("bayeux_publish_allow", "Bayeux: channel patterns clients may publish to, comma-separated"),
    ("bayeux_add_fields", "Bayeux: add ext.halley (publish time, subscribers) to deliveries"),
    ("bayeux_history_on_subscribe", "Bayeux: retained messages sent to a new subscriber"),
    ("auth_secret", "HS256 secret for tokens (JWT); empty turns auth off"),
    ("auth_required", "channel prefixes that need a token, comma-separated; * = all"),
    ("ingest_key", "key the ingest and RESP ports require; empty = none"),
    ("ip_allow_subscribers", "CIDR blocks allowed to subscribe, comma-separated"),
    ("ip_deny_subscribers", "CIDR blocks denied subscribing, comma-separated"),
    ("ip_allow_publishers", "CIDR blocks allowed to publish, comma-separated"),
    ("ip_deny_publishers", "CIDR blocks denied publishing, comma-separated"),
    ("blocked_words", "blocked words, comma-separated, on every publish path"),
    ("blocked_words_mode", "mask (asterisks) or reject (422)"),
    ("max_connections_per_ip", "connections per client address; 0 = no limit"),
    ("publish_rate_per_ip", "public-side publishes per second per address; 0 = no limit"),
    ("publish_rate_per_connection", "publishes per second per ingest connection; 0 = no limit"),
    ("pushlet_lease_secs", "Pushlet: session lease without requests or a stream"),
    ("pushlet_max_queue", "Pushlet: events queued per session before it is dropped"),
    ("pushlet_read_timeout_secs", "Pushlet: pull hold time and stream heartbeat interval"),
    ("pushlet_publish_allow", "Pushlet: subject prefixes clients may publish to; empty = off"),
    ("log_level", "error, warn, info, debug or trace"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn redis_is_one_url_or_a_list_of_cluster_nodes() {
        assert_eq!(check_redis_url(""), Ok(()));
        assert_eq!(check_redis_url("redis://127.0.0.1:6379"), Ok(()));
        assert_eq!(check_redis_url("redis://127.0.0.1:7000,redis://127.0.0.1:7001"), Ok(()));
        assert!(check_redis_url("redis://127.0.0.1:7000,nonsense").is_err());
        assert!(check_redis_url("127.0.0.1:6379").is_err());
    }

    #[test]
    fn empty_document_gives_defaults() {
        assert_eq!(Config::from_toml_str(""), Ok(Config::default()));
    }

    #[test]
    fn round_trip_through_toml() {
        let changed = Config {
            listen: "[::1]:9000".to_string(),
            threads: 7,
            log_level: "trace".to_string(),
            batch_window_us: 0,
            ..Config::default()
        };
        for config in [Config::default(), changed] {
            let text = config.to_toml();
            assert_eq!(Config::from_toml_str(&text), Ok(config), "from:\n{text}");
        }
    }

    #[test]
    fn file_values_override_defaults_and_keep_the_rest() {
        let config = Config::from_toml_str("threads = 4\nlisten = \"0.0.0.0:80\"\n").unwrap();
        assert_eq!(config.threads, 4);
        assert_eq!(config.listen, "0.0.0.0:80");
        assert_eq!(config.backlog, Config::default().backlog);
    }

    #[test]
    fn bad_documents_are_rejected_with_the_key_named() {
        // (document, text the error must contain)
        let cases = [
            ("bogus = 1", "unknown setting 'bogus'"),
            ("[server]\nport = 1", "unknown setting 'server'"),
            ("threads = \"four\"", "threads"),
            ("threads = -1", "threads"),
            ("threads = 1.5", "threads"),
            ("listen = 8080", "listen"),
            ("log_level = true", "log_level"),
            ("threads = ", "invalid TOML"),
            ("threads = 1\nthreads = 2", "invalid TOML"),
        ];
        for (doc, expected) in cases {
            let err = Config::from_toml_str(doc).expect_err(doc);
            assert!(err.contains(expected), "{doc:?}: {err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn load_names_the_path() {
        let path = std::env::temp_dir().join(format!("halley-config-missing-{}.toml", std::process::id()));
        let err = Config::load(&path).unwrap_err();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn load_reads_a_file() {
        let path = std::env::temp_dir().join(format!("halley-config-load-{}.toml", std::process::id()));
        std::fs::write(&path, "history_size = 5\n").unwrap();
        let result = Config::load(&path);
        let bad = std::fs::write(&path, "history_size = \"x\"\n").map(|_| Config::load(&path));
        let _ = std::fs::remove_file(&path);
        assert_eq!(result.unwrap().history_size, 5);
        let err = bad.unwrap().unwrap_err();
        assert!(err.contains("history_size") && err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn set_parses_by_the_existing_type() {
        let mut config = Config::default();
        config.set("max_head_bytes", "4096").unwrap();
        config.set("listen", "127.0.0.1:0").unwrap();
        config.set("threads", " 3 ").unwrap();
        assert_eq!(config.max_head_bytes, 4096);
        assert_eq!(config.listen, "127.0.0.1:0");
        assert_eq!(config.threads, 3);
    }

    #[test]
    fn set_handles_every_toml_scalar_type() {
        let current = [
            toml::Value::Integer(1),
            toml::Value::String(String::new()),
            toml::Value::Boolean(false),
            toml::Value::Float(0.5),
        ];
        let expected = [
            toml::Value::Integer(42),
            toml::Value::String("42".to_string()),
            toml::Value::Boolean(true),
            toml::Value::Float(42.0),
        ];
        let raws = ["42", "42", "true", "42"];
        for ((cur, want), raw) in current.iter().zip(expected).zip(raws) {
            assert_eq!(parse_like(cur, raw, "x"), Ok(want));
        }
        assert!(parse_like(&toml::Value::Boolean(false), "yes", "--flag")
            .unwrap_err()
            .contains("--flag: expected true or false, got 'yes'"));
        assert!(parse_like(&toml::Value::Float(0.0), "abc", "f").is_err());
        assert!(parse_like(&toml::Value::Array(vec![]), "1", "a").is_err());
    }

    #[test]
    fn set_rejects_bad_input_with_clear_messages() {
        // (key, value, text the error must contain)
        let cases = [
            ("threads", "x", "threads: expected a whole number, got 'x'"),
            ("threads", "", "threads: expected a whole number, got ''"),
            ("threads", "1.5", "threads: expected a whole number"),
            ("threads", "-1", "threads: cannot use '-1'"),
            ("backlog", "99999999999", "backlog: cannot use '99999999999'"),
            ("threads", "99999999999999999999", "threads: '99999999999999999999' is too large"),
            ("nope", "1", "unknown setting 'nope'"),
            ("", "1", "unknown setting ''"),
        ];
        for (key, value, expected) in cases {
            let mut config = Config::default();
            let err = config.set(key, value).expect_err(key);
            assert!(err.contains(expected), "{key}={value}: {err:?} lacks {expected:?}");
            assert_eq!(config, Config::default(), "failed set must not change anything");
        }
    }

    #[test]
    fn set_labeled_names_the_label() {
        let err = Config::default().set_labeled("threads", "x", "--threads").unwrap_err();
        assert_eq!(err, "--threads: expected a whole number, got 'x'");
    }

    #[test]
    fn tls_cert_and_key_go_together() {
        let with = |pairs: &[(&str, &str)]| {
            let mut c = Config::default();
            for (k, v) in pairs {
                c.set_labeled(k, v, k).unwrap();
            }
            c.validate()
        };
        assert!(with(&[]).is_ok());
        assert!(with(&[("tls_cert", "c.pem"), ("tls_key", "k.pem"), ("ingest_tls", "true")]).is_ok());
        let err = |pairs: &[(&str, &str)]| with(pairs).unwrap_err();
        assert!(err(&[("tls_cert", "c.pem")]).contains("tls_key"));
        assert!(err(&[("tls_key", "k.pem")]).contains("tls_cert"));
        assert!(err(&[("ingest_tls", "true")]).contains("ingest_tls"));
    }

    #[test]
    fn keys_cover_every_field() {
        let keys = Config::keys();
        assert_eq!(keys.len(), 53);
        assert!(keys.iter().any(|k| k == "max_outbound_bytes"));
    }

    #[test]
    fn each_validation_rule_rejects_with_the_setting_named() {
        // (key, bad value, text the error must contain)
        let cases = [
            ("listen", "localhost", "listen"),
            ("listen", "127.0.0.1", "listen"),
            ("ingest", "nope", "ingest"),
            ("resp", "", "resp"),
            ("threads", "257", "threads"),
            ("backlog", "0", "backlog"),
            ("backlog", "65536", "backlog"),
            ("max_connections", "0", "max_connections"),
            ("max_head_bytes", "1023", "max_head_bytes"),
            ("max_head_bytes", "1048577", "max_head_bytes"),
            ("max_body_bytes", "0", "max_body_bytes"),
            ("max_body_bytes", "67108865", "max_body_bytes"),
            ("max_message_bytes", "0", "max_message_bytes"),
            ("max_message_bytes", "1048577", "max_message_bytes (1048577) must not exceed max_body_bytes"),
            ("head_timeout_secs", "0", "head_timeout_secs"),
            ("longpoll_timeout_secs", "0", "longpoll_timeout_secs"),
            (
                "longpoll_timeout_secs",
                "121",
                "longpoll_timeout_secs (121) must not exceed longpoll_timeout_max_secs",
            ),
            ("longpoll_timeout_max_secs", "0", "longpoll_timeout_max_secs"),
            ("longpoll_timeout_max_secs", "29", "longpoll_timeout_max_secs (29)"),
            ("longpoll_timeout_max_secs", "86401", "longpoll_timeout_max_secs"),
            ("heartbeat_secs", "0", "heartbeat_secs"),
            ("heartbeat_secs", "3601", "heartbeat_secs"),
            ("sse_retry_ms", "0", "sse_retry_ms"),
            ("max_channels_per_subscription", "0", "max_channels_per_subscription"),
            ("history_size", "0", "history_size"),
            ("history_size", "100001", "history_size"),
            ("history_ttl_secs", "0", "history_ttl_secs"),
            ("batch_window_us", "10000001", "batch_window_us"),
            ("batch_max", "0", "batch_max"),
            ("batch_max", "65537", "batch_max"),
            ("publish_queue", "0", "publish_queue"),
            ("publish_queue", "1000001", "publish_queue"),
            ("max_outbound_bytes", "4095", "max_outbound_bytes"),
            ("shutdown_grace_ms", "0", "shutdown_grace_ms"),
            ("log_level", "loud", "log_level must be one of error|warn|info|debug|trace"),
            ("log_level", "INFO", "log_level"),
        ];
        for (key, value, expected) in cases {
            let mut config = Config::default();
            config.set(key, value).unwrap();
            let err = config.validate().expect_err(key);
            assert!(err.contains(expected), "{key}={value}: {err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn boundary_values_validate() {
        let cases = [
            ("listen", "[::1]:0"),
            ("threads", "256"),
            ("max_head_bytes", "1024"),
            ("max_head_bytes", "1048576"),
            ("max_body_bytes", "67108864"),
            ("max_message_bytes", "1048576"),
            ("longpoll_timeout_secs", "120"),
            ("heartbeat_secs", "1"),
            ("heartbeat_secs", "3600"),
            ("history_size", "1"),
            ("history_size", "100000"),
            ("batch_window_us", "0"),
            ("batch_window_us", "10000000"),
            ("batch_max", "65536"),
            ("publish_queue", "1000000"),
            ("max_outbound_bytes", "4096"),
            ("log_level", "error"),
            ("log_level", "trace"),
        ];
        for (key, value) in cases {
            let mut config = Config::default();
            config.set(key, value).unwrap();
            assert_eq!(config.validate(), Ok(()), "{key}={value}");
        }
    }

    #[test]
    fn validate_reports_every_problem() {
        let config = Config { threads: 1000, log_level: "x".to_string(), ..Config::default() };
        let err = config.validate().unwrap_err();
        assert!(err.contains("threads") && err.contains("log_level"), "{err}");
    }

    #[test]
    fn threads_effective_resolves_zero_to_cores() {
        let mut config = Config::default();
        assert!(config.threads_effective() >= 1);
        config.threads = 5;
        assert_eq!(config.threads_effective(), 5);
    }

    #[test]
    fn to_toml_does_not_panic_on_unrepresentable_values() {
        let mut config = Config { history_ttl_secs: u64::MAX, ..Config::default() };
        assert!(config.to_toml().starts_with('#'));
        assert!(config.set("threads", "1").is_err());
    }

    #[test]
    fn every_setting_has_a_description() {
        for key in Config::keys() {
            assert!(!Config::describe(&key).is_empty(), "setting {key} has no --help description");
        }
    }
}
