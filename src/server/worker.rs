//! The worker: the service one event loop runs. It owns nothing protocol-
//! specific: it installs a handler per connection at accept, hands each
//! event to the installed handler, routes mail to connections, and gives
//! batches to the delivery index.

use std::mem;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::conn::{Conn, Cx, Event, Handler, Mail};
use super::index::Index;
use super::mail::LoopMsg;
use super::route::{Port, RouteLimits};
use crate::chunk::Chunk;
use crate::fanout::{Acked, FanoutHandle, HubMail};
use crate::http::Version;
use crate::reactor::mailbox::Inbox;
use crate::reactor::{begin_shutdown, CloseReason, ConnKey, Io, Service};

/// Settings every worker reads, and the one counter they share.
pub struct Shared {
    pub limits: RouteLimits,
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    pub max_message_bytes: usize,
    pub head_timeout: Duration,
    pub heartbeat: Duration,
    pub sse_retry_ms: u64,
    pub max_outbound: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub max_stream_age: Duration,
    pub cors: super::cors::CorsPolicy,
    /// The publish queue's capacity, for /stats.
    pub publish_queue: usize,
    /// The demo page, with the ingest address filled in.
    pub demo_page: Vec<u8>,
    /// Open connections across all loops, for `max_connections`.
    pub connections: AtomicUsize,
    /// Auth, address rules, word filter, limits.
    pub guard: Arc<crate::guard::Guard>,
    /// Counters behind /stats and /metrics.
    pub stats: Arc<crate::stats::Stats>,
    /// Port index (as the reactor knows it) to what the port serves.
    pub ports: Vec<Port>,
    /// How long a loop polls without sleeping after handing a publish to
    /// the hub, expecting its answer (see `Io::expect_wake`).
    pub hub_answer_spin: Duration,
    /// TLS on the public port (and the ingest port with `ingest_tls`).
    pub tls: Option<Arc<crate::tls::Tls>>,
    pub ingest_tls: bool,
}

/// What handlers may use besides their connection: this loop's identity,
/// the settings, the threads it talks to, and its delivery index.
pub struct Env {
    pub loop_id: usize,
    pub shared: Arc<Shared>,
    pub fanout: FanoutHandle,
    pub bayeux: crate::bayeux::thread::BayeuxHandle,
    pub pushlet: crate::pushlet::thread::PushletHandle,
    /// Which of this loop's connections listen on which channel.
    pub index: Index,
}

impl Env {
    /// This loop's counters.
    pub fn stats(&self) -> &crate::stats::LoopStats {
        let loops = &self.shared.stats.loops;
        &loops[self.loop_id.min(loops.len() - 1)]
    }

    /// How other threads name connection `key` of this loop.
    pub fn conn_ref(&self, key: ConnKey) -> crate::hub::ConnRef {
        crate::hub::ConnRef { loop_id: self.loop_id, conn: key.to_u64(), stream: 0 }
    }

    /// How other threads name HTTP/2 stream `stream` of connection `key`.
    pub fn stream_ref(&self, key: ConnKey, stream: u32) -> crate::hub::ConnRef {
        crate::hub::ConnRef { stream, ..self.conn_ref(key) }
    }
}

pub struct Worker {
    env: Env,
    inbox: Inbox<LoopMsg>,
}

impl Worker {
    pub fn new(env: Env, inbox: Inbox<LoopMsg>) -> Worker {
        Worker { env, inbox }
    }

    /// Runs one callback of `key`'s handler and installs the handler it returns.
    fn dispatch(&mut self, io: &mut Io<Conn>, key: ConnKey, call: impl FnOnce(Handler, &mut Cx) -> Handler) {
        let Some(conn) = io.conn(key) else { return };
        let handler = mem::replace(&mut conn.handler, Handler::Busy);
        let mut cx = Cx { io, key, env: &mut self.env };
        let next = call(handler, &mut cx);
        if let Some(conn) = io.conn(key) {
            conn.handler = next;
        }
    }

    fn mail_to(&mut self, io: &mut Io<Conn>, conn: u64, mail: Mail) {
        let key = ConnKey::from_u64(conn);
        if io.conn(key).is_none() {
            // The connection left while the hub worked: undo its registration.
            if let Mail::Subscribed(reply) = mail {
                if reply.registered {
                    self.env.index.unregister(reply.channels, reply.listen);
                }
            }
            return;
        }
        self.dispatch(io, key, |h, cx| h.on(cx, Event::Mail(mail)));
    }

    /// Copies the loop's bytes-written count into its counters. The loop
    /// writes after the callbacks of a turn, so the count trails by a turn:
    /// enough for a rate per second.
    fn note_written(&self, io: &Io<Conn>) {
        crate::stats::set(&self.env.stats().bytes_out, io.bytes_written());
    }

    /// Ends every stream cleanly, answers parked polls, lets the loop drain.
    fn shutdown(&mut self, io: &mut Io<Conn>) {
        for key in io.keys() {
            self.dispatch(io, key, |h, cx| h.on(cx, Event::Mail(Mail::Shutdown)));
        }
        // Streams and held requests owned by the engines end now too.
        let loop_id = self.env.loop_id;
        self.env.pushlet.send(crate::pushlet::thread::PushletIn::Shutdown { loop_id });
        self.env.bayeux.send(crate::bayeux::thread::BayeuxIn::Shutdown { loop_id });
        begin_shutdown(io, self.env.shared.shutdown_grace);
    }

    /// Puts TLS between the socket and the handler, on the ports that speak it.
    fn install_tls(&self, io: &mut Io<Conn>, key: ConnKey, port: Port) {
        let shared = &self.env.shared;
        let Some(tls) = shared.tls.as_ref() else { return };
        if port == Port::Public || (port == Port::Ingest && shared.ingest_tls) {
            match tls.accept(port == Port::Public) {
                Ok(filter) => io.set_filter(key, Box::new(filter)),
                Err(e) => {
                    crate::log::error(format_args!("{e}"));
                    io.close(key);
                }
            }
        }
    }

    /// Over a limit at accept: the client learns why and when to retry.
    fn refusal(&self, port: Port, peer: SocketAddr, ip_counted: bool, open: usize) -> Option<(u16, String)> {
        let shared = &self.env.shared;
        if open >= shared.max_connections {
            let limit = shared.max_connections;
            Some((503, format!("server is at its limit of {limit} connections; retry shortly")))
        } else if !ip_counted {
            Some((429, format!("too many connections from {}; retry shortly", peer.ip())))
        } else if port == Port::Resp && !shared.guard.publishers.admits(peer.ip()) {
            Some((403, format!("address {} may not publish", peer.ip())))
        } else {
            None
        }
    }
}

impl Service for Worker {
    type Conn = Conn;

    fn on_accept(&mut self, io: &mut Io<Conn>, key: ConnKey, port: usize, peer: SocketAddr) -> Option<Conn> {
        let shared = self.env.shared.clone();
        let open = shared.connections.fetch_add(1, Ordering::Relaxed);
        crate::stats::inc(&self.env.stats().accepted);
        crate::stats::inc(&self.env.stats().connections);
        let port = shared.ports.get(port).copied().unwrap_or(Port::Public);
        self.install_tls(io, key, port);
        let mut conn = Conn::new(port, peer.ip(), Handler::Closing);
        conn.ip_counted = shared.guard.connect(peer.ip());
        if port != Port::Public && shared.guard.rate_per_connection > 0 {
            conn.bucket = Some(crate::guard::TokenBucket::new(shared.guard.rate_per_connection, io.now()));
        }
        io.set_input_cap(key, super::http_conn::input_cap(&shared, port));
        if let Some((status, message)) = self.refusal(port, peer, conn.ip_counted, open) {
            crate::stats::inc(&self.env.stats().refused);
            crate::log::debug(format_args!("refusing {peer}: {message}"));
            let bytes = match port {
                Port::Resp => format!("-ERR {message}\r\n").into_bytes(),
                _ => crate::http::response::json_error(
                    status,
                    &message,
                    &[("Retry-After", "1")],
                    Version::Http11,
                    false,
                ),
            };
            io.send_exempt(key, Chunk::Owned(bytes));
            io.close_after_flush(key);
            return Some(conn);
        }
        conn.handler = match port {
            // Publishers keep RESP connections open and idle, as with Redis.
            Port::Resp => {
                Handler::Resp(Box::new(super::resp_conn::RespConn::new(shared.guard.ingest_key.is_none())))
            }
            Port::Public | Port::Ingest => {
                io.set_deadline(key, io.now() + shared.head_timeout);
                Handler::Http(Box::default())
            }
        };
        Some(conn)
    }

    fn on_input(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        self.note_written(io);
        self.dispatch(io, key, |h, cx| h.on(cx, Event::Input));
    }

    fn on_eof(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        self.dispatch(io, key, |h, cx| h.on(cx, Event::Eof));
    }

    fn on_deadline(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        self.note_written(io);
        // A TLS handshake unfinished by the head timeout: nothing can be said.
        let filter = io.filter(key).and_then(|f| f.as_any_mut().downcast_mut::<crate::tls::TlsFilter>());
        if let Some(tls) = filter.filter(|t| t.handshaking()) {
            tls.time_out();
            io.close(key);
            return;
        }
        self.dispatch(io, key, |h, cx| h.on(cx, Event::Deadline));
    }

    fn on_wake(&mut self, io: &mut Io<Conn>) {
        self.note_written(io);
        let mut mail = Vec::new();
        self.inbox.drain(&mut mail);
        for msg in mail {
            match msg {
                LoopMsg::Hub(HubMail::Batch(batch)) => {
                    let stats = self.env.shared.clone();
                    self.env.index.deliver(io, &batch, stats.stats.loops.get(self.env.loop_id));
                    for key in self.env.index.take_ready_polls() {
                        self.dispatch(io, key, |h, cx| match h {
                            Handler::Poll(poll) => poll.answer_collected(cx),
                            other => other,
                        });
                    }
                    for key in self.env.index.take_h2_followups() {
                        self.dispatch(io, key, |h, cx| match h {
                            Handler::H2(h2) => h2.after_delivery(cx),
                            other => other,
                        });
                    }
                }
                LoopMsg::Hub(HubMail::Subscribed(reply)) => {
                    self.mail_to(io, reply.conn, Mail::Subscribed(reply))
                }
                LoopMsg::Hub(HubMail::Published(acked)) => {
                    for Acked { conn, acks } in acked {
                        self.mail_to(io, conn, Mail::Published(acks));
                    }
                }
                LoopMsg::Hub(HubMail::ChannelInfo { conn, info }) => {
                    self.mail_to(io, conn, Mail::ChannelInfo(info))
                }
                LoopMsg::Hub(HubMail::Deleted { conn, channel, subscribers }) => {
                    self.mail_to(io, conn, Mail::Deleted { channel, subscribers })
                }
                LoopMsg::Hub(HubMail::Failed { conn, error }) => self.mail_to(io, conn, Mail::Failed(error)),
                LoopMsg::Hub(HubMail::ChannelDeleted(channel)) => {
                    for (key, stream) in self.env.index.listeners(&channel) {
                        let mail = Mail::ChannelDeleted { stream };
                        self.dispatch(io, key, |h, cx| h.on(cx, Event::Mail(mail)));
                    }
                }
                LoopMsg::Engine { conn, stream: 0, part } => self.mail_to(io, conn, Mail::Engine(part)),
                LoopMsg::Engine { conn, stream, part } => {
                    self.dispatch(io, ConnKey::from_u64(conn), |h, cx| match h {
                        Handler::H2(h2) => h2.engine(cx, stream, part),
                        other => other,
                    });
                }
                LoopMsg::Shutdown => self.shutdown(io),
            }
        }
    }

    fn on_closed(&mut self, io: &mut Io<Conn>, key: ConnKey, conn: Conn, reason: CloseReason) {
        let shared = &self.env.shared;
        shared.connections.fetch_sub(1, Ordering::Relaxed);
        crate::stats::dec(&self.env.stats().connections);
        if conn.ip_counted {
            shared.guard.disconnect(conn.ip);
        }
        if let CloseReason::Filter(why) = reason {
            crate::log::debug(format_args!("closed a connection whose TLS failed: {why}"));
        }
        if reason == CloseReason::SlowConsumer {
            crate::stats::inc(&self.env.stats().slow_consumers);
            crate::log::debug(format_args!("closed a slow consumer"));
        }
        let mut cx = Cx { io, key, env: &mut self.env };
        conn.handler.closed(&mut cx, reason);
    }
}
