//! Start-up: bind every loop's listeners, start the fan-out thread and the
//! loops, and hand back what `main` (or a test) needs to stop them.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::index::Index;
use super::mail::{LoopMsg, LoopReplies};
use super::route::{Port, RouteLimits};
use super::worker::{Env, Shared, Worker};
use crate::bayeux::thread::{BayeuxHandle, BayeuxIn};
use crate::config::Config;
use crate::fanout::{self, FanoutConfig, Outlets};
use crate::pushlet::thread::{PushletHandle, PushletIn};
use crate::reactor::mailbox::{mailbox, Mailbox};
use crate::reactor::{Listener, Reactor, ReactorLimits};

/// A started gateway.
pub struct Running {
    pub public_addr: SocketAddr,
    pub ingest_addr: SocketAddr,
    pub resp_addr: SocketAddr,
    pub threads: usize,
    /// The TLS context (to reload its certificate on SIGHUP), if any.
    pub tls: Option<Arc<crate::tls::Tls>>,
    mailboxes: Vec<Mailbox<LoopMsg>>,
    loops: Vec<JoinHandle<()>>,
    fanout: JoinHandle<()>,
    bayeux: BayeuxHandle,
    bayeux_thread: JoinHandle<()>,
    pushlet: PushletHandle,
    pushlet_thread: JoinHandle<()>,
    sampler: crate::dashboard::Sampler,
}

/// Stops a running gateway from another thread (a signal handler's).
#[derive(Clone)]
pub struct Stopper {
    mailboxes: Vec<Mailbox<LoopMsg>>,
}

impl Stopper {
    /// Asks every loop to stop accepting, end its streams and exit.
    pub fn shutdown(&self) {
        for mailbox in &self.mailboxes {
            mailbox.send(LoopMsg::Shutdown);
        }
    }
}

impl Running {
    pub fn stopper(&self) -> Stopper {
        Stopper { mailboxes: self.mailboxes.clone() }
    }

    /// Asks every loop to stop accepting, end its streams and exit.
    pub fn shutdown(&self) {
        self.stopper().shutdown();
    }

    /// Waits for the loops, then stops the engines, then the fan-out thread.
    pub fn wait(self) {
        for handle in self.loops {
            let _ = handle.join();
        }
        drop(self.mailboxes);
        // The engines end when told (the hub still holds their inboxes as
        // outlets) and drop their fan-out handles; with the loops' gone
        // too, the fan-out thread ends.
        self.bayeux.send(BayeuxIn::Stop);
        self.pushlet.send(PushletIn::Stop);
        let _ = self.bayeux_thread.join();
        let _ = self.pushlet_thread.join();
        self.sampler.stop();
        let _ = self.fanout.join();
    }
}

/// Binds one listener with SO_REUSEPORT, so every loop can own one on the same
/// address and the kernel spreads connections across them.
fn bind(addr: SocketAddr, backlog: u32) -> io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

/// Binds `threads` listeners on `addr`. With port 0 the first bind picks the
/// port and the rest join it.
fn bind_all(
    addr: &str,
    threads: usize,
    backlog: u32,
    what: &str,
) -> Result<(SocketAddr, Vec<StdListener>), String> {
    let mut addr: SocketAddr = addr.parse().map_err(|e| format!("{what} address '{addr}': {e}"))?;
    let mut listeners = Vec::with_capacity(threads);
    for _ in 0..threads {
        let listener = bind(addr, backlog).map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?;
        addr = listener.local_addr().map_err(|e| format!("{what}: {e}"))?;
        listeners.push(listener);
    }
    Ok((addr, listeners))
}

/// The demo page, compiled into the binary.
const DEMO_PAGE: &str = include_str!("demo/index.html");

fn shared(config: &Config, public_addr: SocketAddr, ingest_addr: SocketAddr) -> Result<Shared, String> {
    let guard = Arc::new(crate::guard::Guard::new(config.guard_config()?));
    let tls = load_tls(config)?;
    let stats = Arc::new(crate::stats::Stats::new(config.threads_effective()));
    if let Some(tls) = &tls {
        let _ = stats.tls.set(tls.stats.clone());
    }
    Ok(Shared {
        limits: RouteLimits {
            max_channels: config.max_channels_per_subscription,
            history_size: config.history_size,
            longpoll_default: Duration::from_secs(config.longpoll_timeout_secs),
            longpoll_max: Duration::from_secs(config.longpoll_timeout_max_secs),
            max_message_bytes: config.max_message_bytes,
            demo_publish: match config.demo_publish.as_str() {
                "on" => true,
                "off" => false,
                _ => public_addr.ip().is_loopback(),
            },
        },
        max_head_bytes: config.max_head_bytes,
        max_body_bytes: config.max_body_bytes,
        max_message_bytes: config.max_message_bytes,
        head_timeout: Duration::from_secs(config.head_timeout_secs),
        heartbeat: Duration::from_secs(config.heartbeat_secs),
        sse_retry_ms: config.sse_retry_ms,
        max_outbound: config.max_outbound_bytes,
        max_connections: config.max_connections,
        shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
        max_stream_age: Duration::from_secs(config.max_stream_age_secs),
        cors: super::cors::CorsPolicy::parse(&config.cors_origins),
        stats,
        guard,
        publish_queue: config.publish_queue,
        demo_page: DEMO_PAGE.replace("{{INGEST}}", &ingest_addr.to_string()).into_bytes(),
        connections: AtomicUsize::new(0),
        ports: vec![Port::Public, Port::Ingest, Port::Resp],
        hub_answer_spin: Duration::from_micros(config.handoff_spin_us),
        tls,
        ingest_tls: config.ingest_tls,
    })
}

/// The TLS context, when `tls_cert` and `tls_key` are set (validated as a pair).
pub fn load_tls(config: &Config) -> Result<Option<Arc<crate::tls::Tls>>, String> {
    if config.tls_cert.is_empty() {
        return Ok(None);
    }
    crate::tls::Tls::load(&config.tls_cert, &config.tls_key).map(|t| Some(Arc::new(t)))
}

fn bayeux_config(config: &Config) -> crate::bayeux::engine::Config {
    crate::bayeux::engine::Config {
        timeout: Duration::from_millis(config.bayeux_timeout_ms),
        interval: Duration::ZERO,
        max_interval: Duration::from_millis(config.bayeux_max_interval_ms),
        max_queue: config.bayeux_max_queue,
        publish_allow: config
            .bayeux_publish_allow
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        add_fields: config.bayeux_add_fields,
        history_on_subscribe: config.bayeux_history_on_subscribe,
        auth: crate::auth::Policy::new(&config.auth_secret, &config.auth_required),
    }
}

fn pushlet_config(config: &Config) -> crate::pushlet::engine::Config {
    crate::pushlet::engine::Config {
        lease: Duration::from_secs(config.pushlet_lease_secs),
        max_queue: config.pushlet_max_queue,
        read_timeout: Duration::from_secs(config.pushlet_read_timeout_secs),
        auth: crate::auth::Policy::new(&config.auth_secret, &config.auth_required),
        // Pushlet's own refresh waits: pull 2–6 s, poll 6–10 s.
        pull_wait_ms: (2000, 6000),
        poll_wait_ms: (6000, 10_000),
        publish_allow: config
            .pushlet_publish_allow
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
    }
}

/// The Redis backplane's threads, when `redis` is set. The node's name in
/// the cluster-wide counts: its time of start and a random part.
fn backplane(config: &Config) -> Result<Option<crate::backplane::Backplane>, String> {
    if config.redis.is_empty() {
        return Ok(None);
    }
    let node =
        format!("{:x}-{:08x}", crate::clock::unix_ms(), crate::random::Random::new().next_u64() as u32);
    let settings = crate::backplane::BackplaneConfig {
        url: config.redis.clone(),
        history_size: config.history_size,
        history_ttl: Duration::from_secs(config.history_ttl_secs),
    };
    crate::backplane::start(settings, node).map(Some)
}

/// Starts the gateway described by `config` (already validated).
pub fn start(config: &Config) -> Result<Running, String> {
    let threads = config.threads_effective();
    let (public_addr, public) = bind_all(&config.listen, threads, config.backlog, "public")?;
    let (ingest_addr, ingest) = bind_all(&config.ingest, threads, config.backlog, "ingest")?;
    let (resp_addr, resp) = bind_all(&config.resp, threads, config.backlog, "resp")?;
    let backplane = backplane(config)?;
    let mut shared = shared(config, public_addr, ingest_addr)?;
    if let Some(b) = &backplane {
        let mut stats = crate::stats::Stats::new(threads);
        stats.backplane = Some(b.stats.clone());
        shared.stats = Arc::new(stats);
    }
    let shared = Arc::new(shared);
    let limits =
        ReactorLimits { max_outbound: config.max_outbound_bytes, default_input_cap: config.max_head_bytes };
    let mut reactors = Vec::with_capacity(threads);
    let mut mailboxes = Vec::with_capacity(threads);
    let mut inboxes = Vec::with_capacity(threads);
    for ((p, i), r) in public.into_iter().zip(ingest).zip(resp) {
        let listeners = vec![
            Listener { port: 0, socket: mio::net::TcpListener::from_std(p) },
            Listener { port: 1, socket: mio::net::TcpListener::from_std(i) },
            Listener { port: 2, socket: mio::net::TcpListener::from_std(r) },
        ];
        let reactor = Reactor::new(listeners, limits.clone()).map_err(|e| format!("event loop: {e}"))?;
        let (mb, inbox) = mailbox(reactor.waker());
        reactors.push(reactor);
        mailboxes.push(mb);
        inboxes.push(inbox);
    }
    // The hub's outlets: the loops first (outlet i is loop i), then the
    // engines, which subscribe to channels and patterns like any subscriber.
    let (bayeux, bayeux_inbox) = crate::engine::inbox();
    let (pushlet, pushlet_inbox) = crate::engine::inbox();
    let mut outlets: Outlets =
        mailboxes.iter().map(|m| Box::new(m.clone()) as Box<dyn fanout::Outlet>).collect();
    let bayeux_outlet = outlets.len();
    outlets.push(Box::new(bayeux.clone()));
    let pushlet_outlet = outlets.len();
    outlets.push(Box::new(pushlet.clone()));
    let fanout_config = FanoutConfig {
        history_size: config.history_size,
        history_ttl: Duration::from_secs(config.history_ttl_secs),
        batch_window: Duration::from_micros(config.batch_window_us),
        batch_max: config.batch_max,
        publish_queue: config.publish_queue,
        spin: Duration::from_micros(config.handoff_spin_us),
    };
    let (handle, fanout) = fanout::spawn(fanout_config, outlets, shared.stats.clone(), backplane)
        .map_err(|e| format!("fan-out thread: {e}"))?;
    let bayeux_thread = crate::bayeux::thread::spawn(
        bayeux_config(config),
        crate::bayeux::thread::Wiring {
            outlet: bayeux_outlet,
            inbox: bayeux_inbox,
            replies: Box::new(LoopReplies(mailboxes.clone())),
            fanout: handle.clone(),
            guard: shared.guard.clone(),
            stats: shared.stats.clone(),
        },
    )
    .map_err(|e| format!("Bayeux thread: {e}"))?;
    let pushlet_thread = crate::pushlet::thread::spawn(
        pushlet_config(config),
        crate::pushlet::thread::Wiring {
            outlet: pushlet_outlet,
            inbox: pushlet_inbox,
            replies: Box::new(LoopReplies(mailboxes.clone())),
            fanout: handle.clone(),
            guard: shared.guard.clone(),
            stats: shared.stats.clone(),
        },
    )
    .map_err(|e| format!("Pushlet thread: {e}"))?;
    let node = crate::dashboard::node_info(
        config,
        &public_addr.to_string(),
        &ingest_addr.to_string(),
        &resp_addr.to_string(),
        threads,
    );
    let sampler = crate::dashboard::Sampler::spawn(shared.stats.clone(), handle.clone(), node)
        .map_err(|e| format!("sampler thread: {e}"))?;
    let mut loops = Vec::with_capacity(threads);
    for (loop_id, (reactor, inbox)) in reactors.into_iter().zip(inboxes).enumerate() {
        let env = Env {
            loop_id,
            shared: shared.clone(),
            fanout: handle.clone(),
            bayeux: bayeux.clone(),
            pushlet: pushlet.clone(),
            index: Index::new(handle.clone(), loop_id),
        };
        let mut worker = Worker::new(env, inbox);
        let thread = std::thread::Builder::new()
            .name(format!("halley-loop-{loop_id}"))
            .spawn(move || {
                if let Err(e) = reactor.run(&mut worker) {
                    crate::log::error(format_args!("event loop {loop_id} failed: {e}"));
                }
            })
            .map_err(|e| format!("event loop thread: {e}"))?;
        loops.push(thread);
    }
    drop(handle);
    Ok(Running {
        public_addr,
        ingest_addr,
        resp_addr,
        threads,
        tls: shared.tls.clone(),
        mailboxes,
        loops,
        fanout,
        bayeux,
        bayeux_thread,
        pushlet,
        pushlet_thread,
        sampler,
    })
}
