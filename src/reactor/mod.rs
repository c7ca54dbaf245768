//! The event loop. One per thread: a mio `Poll`, this loop's own listeners
//! (SO_REUSEPORT, so the kernel spreads accepts over loops), a `Slab` of
//! connections, one `Waker` and coarse timers.
//!
//! It knows sockets, readiness and time, and nothing of HTTP or channels: a
//! [`Service`] gets told of accepts, input, end of input, deadlines, wake-ups
//! and closes, and acts through [`Io`]. Edge-triggered: reads and writes go on
//! until `WouldBlock` or a per-wake budget, and connections left over a budget
//! go on a pending list that the next turn serves first.

pub mod filter;
pub mod mailbox;
pub mod outq;
pub mod timers;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token, Waker};
use slab::Slab;

use crate::chunk::Chunk;
use filter::Filter;
use outq::{Flushed, OutQueue};
use timers::Timers;

/// Bytes read per `read` call. Requests are small; 16 KiB takes a whole
/// pipelined burst or a publish body in one or two calls.
const READ_CHUNK: usize = 16 * 1024;
/// Reads per connection per wake-up before yielding to other connections.
const MAX_READS_PER_WAKE: usize = 16;
/// `writev` calls per connection per flush (Redis' NET_MAX_WRITES_PER_EVENT idea).
const MAX_WRITES_PER_FLUSH: usize = 16;
/// Accepts per listener per wake-up, so a connect storm cannot starve
/// connections already established.
const MAX_ACCEPTS_PER_WAKE: usize = 256;
/// Readiness events taken per poll.
const EVENTS_CAPACITY: usize = 1024;

const WAKER_TOKEN: Token = Token(usize::MAX);
/// Listener i has token `LISTENER_BASE - i`; connections use the low range.
const LISTENER_BASE: usize = usize::MAX - 1;

/// Identifies a connection: slab index plus the generation of the slot, so an
/// event or reply for a closed connection never reaches a newer one that
/// reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    index: u32,
    generation: u32,
}

impl ConnKey {
    fn token(self) -> Token {
        Token(((self.generation as usize) << 32) | self.index as usize)
    }

    fn from_token(token: Token) -> ConnKey {
        ConnKey { index: token.0 as u32, generation: (token.0 >> 32) as u32 }
    }

    /// A compact form to send through other threads and back.
    pub fn to_u64(self) -> u64 {
        ((self.generation as u64) << 32) | self.index as u64
    }

    pub fn from_u64(v: u64) -> ConnKey {
        ConnKey { index: v as u32, generation: (v >> 32) as u32 }
    }
}

/// Why a connection closed, for the service's accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The service asked for it.
    Requested,
    /// The peer closed or reset the connection.
    Peer,
    /// The outbound queue passed its cap: a slow consumer.
    SlowConsumer,
    /// A socket error.
    Error,
    /// The connection's filter refused its input (say, a failed TLS handshake).
    Filter(&'static str),
    /// The loop stopped with the connection still open.
    Shutdown,
}

/// What the loop tells the service. `C` is the service's per-connection state.
pub trait Service {
    type Conn;

    /// A connection arrived on listener `port`. `None` refuses it (closed at once).
    fn on_accept(
        &mut self,
        io: &mut Io<Self::Conn>,
        key: ConnKey,
        port: usize,
        peer: SocketAddr,
    ) -> Option<Self::Conn>;
    /// New bytes are in `io.input(key)`.
    fn on_input(&mut self, io: &mut Io<Self::Conn>, key: ConnKey);
    /// The peer will send nothing more.
    fn on_eof(&mut self, io: &mut Io<Self::Conn>, key: ConnKey);
    /// The deadline set with `io.set_deadline` passed.
    fn on_deadline(&mut self, io: &mut Io<Self::Conn>, key: ConnKey);
    /// The loop's Waker fired (the service's inbox has mail).
    fn on_wake(&mut self, io: &mut Io<Self::Conn>);
    /// The connection is gone; its state is handed back for cleanup.
    fn on_closed(&mut self, io: &mut Io<Self::Conn>, key: ConnKey, conn: Self::Conn, reason: CloseReason);
}

struct Slot<C> {
    stream: TcpStream,
    generation: u32,
    peer: SocketAddr,
    input: Vec<u8>,
    /// Reading pauses when `input` holds this much; the service raises or
    /// lowers it by what the current request may carry.
    input_cap: usize,
    read_paused: bool,
    out: OutQueue,
    /// Between the socket and `input` / `out` (TLS), if the service installed one.
    filter: Option<Box<dyn Filter>>,
    state: Option<C>,
    /// The tick of the armed deadline, if any (see `timers`).
    deadline_tick: Option<u64>,
    close_after_flush: bool,
    close_reason: Option<CloseReason>,
    /// The peer has closed its side; nothing more will be read.
    eof: bool,
    /// Our side is shut down; reading and discarding until the peer closes.
    lingering: bool,
}

/// The connections and the operations a service may perform on them. Changes
/// that need the loop (writes, closes, resumed reads) are queued and carried
/// out when the service's callback returns.
pub struct Io<C> {
    slots: Slab<Slot<C>>,
    registry: mio::Registry,
    timers: Timers<ConnKey>,
    next_generation: u32,
    now: Instant,
    max_outbound: usize,
    default_input_cap: usize,
    to_flush: Vec<ConnKey>,
    to_read: Vec<ConnKey>,
    to_close: Vec<ConnKey>,
    shutdown_deadline: Option<Instant>,
    /// Until then the loop polls without sleeping: the service expects a
    /// wake-up very soon (see [`Io::expect_wake`]).
    busy_poll_until: Option<Instant>,
    /// Bytes written to this loop's sockets since it started.
    written: u64,
}

impl<C> Io<C> {
    /// Bytes written to this loop's sockets since it started (for a
    /// service's bytes-out counter; the loop keeps no statistics itself).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    fn slot(&mut self, key: ConnKey) -> Option<&mut Slot<C>> {
        self.slots.get_mut(key.index as usize).filter(|s| s.generation == key.generation)
    }

    /// The service's state for `key`, if the connection still exists.
    pub fn conn(&mut self, key: ConnKey) -> Option<&mut C> {
        self.slot(key)?.state.as_mut()
    }

    /// State and input buffer together. The service drains what it consumed.
    pub fn conn_and_input(&mut self, key: ConnKey) -> Option<(&mut C, &mut Vec<u8>)> {
        let slot = self.slot(key)?;
        Some((slot.state.as_mut()?, &mut slot.input))
    }

    pub fn peer(&mut self, key: ConnKey) -> Option<SocketAddr> {
        self.slot(key).map(|s| s.peer)
    }

    /// The time at the start of this loop turn.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The service expects its mailbox to wake the loop within `within`
    /// (an answer from another thread that takes microseconds): until then,
    /// or until the wake-up, the loop polls without sleeping, saving the
    /// cost of being put to sleep and woken for it.
    pub fn expect_wake(&mut self, within: Duration) {
        let until = self.now + within;
        self.busy_poll_until = Some(self.busy_poll_until.map_or(until, |u| u.max(until)));
    }

    /// Whether the loop is draining for shutdown.
    pub fn shutting_down(&self) -> bool {
        self.shutdown_deadline.is_some()
    }

    /// Every live connection (for shutdown sweeps).
    pub fn keys(&self) -> Vec<ConnKey> {
        self.slots.iter().map(|(i, s)| ConnKey { index: i as u32, generation: s.generation }).collect()
    }

    /// Queues bytes for `key`. Returns false (and closes the connection as a
    /// slow consumer) when its queue passes the cap.
    pub fn send(&mut self, key: ConnKey, chunk: Chunk) -> bool {
        self.enqueue(key, chunk, false)
    }

    /// Queues bytes that do not count against the slow-consumer cap: a
    /// response head or a resume's catch-up, bounded by other limits.
    pub fn send_exempt(&mut self, key: ConnKey, chunk: Chunk) -> bool {
        self.enqueue(key, chunk, true)
    }

    fn enqueue(&mut self, key: ConnKey, chunk: Chunk, exempt: bool) -> bool {
        let cap = self.max_outbound;
        let Some(slot) = self.slot(key) else { return false };
        if slot.close_reason.is_some() {
            return false;
        }
        let was_empty = slot.out.is_empty();
        slot.out.push(chunk, exempt);
        if slot.out.counted() > cap {
            slot.close_reason = Some(CloseReason::SlowConsumer);
            self.to_close.push(key);
            return false;
        }
        if was_empty {
            self.to_flush.push(key);
        }
        true
    }

    /// Bytes queued and unwritten for `key`.
    pub fn queued(&mut self, key: ConnKey) -> usize {
        self.slot(key).map_or(0, |s| s.out.queued())
    }

    /// Puts `filter` between `key`'s socket and its buffers (at accept,
    /// before any byte is read).
    pub fn set_filter(&mut self, key: ConnKey, filter: Box<dyn Filter>) {
        if let Some(slot) = self.slot(key) {
            slot.filter = Some(filter);
        }
    }

    /// `key`'s filter, for the service that installed it.
    pub fn filter(&mut self, key: ConnKey) -> Option<&mut dyn Filter> {
        Some(self.slot(key)?.filter.as_mut()?.as_mut())
    }

    /// Closes at once; queued output is dropped.
    pub fn close(&mut self, key: ConnKey) {
        if let Some(slot) = self.slot(key) {
            if slot.close_reason.is_none() {
                slot.close_reason = Some(CloseReason::Requested);
                self.to_close.push(key);
            }
        }
    }

    /// Closes once everything queued is written.
    pub fn close_after_flush(&mut self, key: ConnKey) {
        if let Some(slot) = self.slot(key) {
            slot.close_after_flush = true;
            // A flush of an empty queue finds nothing to write and starts the
            // lingering close at once.
            self.to_flush.push(key);
        }
    }

    /// Arms the connection's single deadline (replacing any earlier one).
    pub fn set_deadline(&mut self, key: ConnKey, at: Instant) {
        if self.slot(key).is_none() {
            return;
        }
        let tick = self.timers.schedule(key, at);
        if let Some(slot) = self.slot(key) {
            slot.deadline_tick = Some(tick);
        }
    }

    pub fn clear_deadline(&mut self, key: ConnKey) {
        if let Some(slot) = self.slot(key) {
            slot.deadline_tick = None;
        }
    }

    /// How many input bytes may be buffered before reading pauses. Raising it
    /// resumes a paused read.
    pub fn set_input_cap(&mut self, key: ConnKey, cap: usize) {
        let Some(slot) = self.slot(key) else { return };
        slot.input_cap = cap;
        let resume = slot.read_paused && slot.input.len() < cap;
        if resume {
            self.to_read.push(key);
        }
    }

    /// Asks the loop to read again if reading had paused on a full input
    /// buffer (call it after consuming input).
    pub fn resume_read(&mut self, key: ConnKey) {
        if self.slot(key).is_some_and(|s| s.read_paused) {
            self.to_read.push(key);
        }
    }
}

/// One listener of a loop and the port index the service knows it by.
pub struct Listener {
    pub port: usize,
    pub socket: TcpListener,
}

/// Limits the loop enforces on its own.
#[derive(Debug, Clone)]
pub struct ReactorLimits {
    /// Outbound bytes a connection may have queued (exempt bytes aside).
    pub max_outbound: usize,
    /// Input bytes buffered before reading pauses, until the service says otherwise.
    pub default_input_cap: usize,
}

pub struct Reactor<C> {
    poll: Poll,
    listeners: Vec<Listener>,
    io: Io<C>,
    waker: Arc<Waker>,
}

impl<C> Reactor<C> {
    pub fn new(listeners: Vec<Listener>, limits: ReactorLimits) -> io::Result<Reactor<C>> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        let mut listeners = listeners;
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry().register(&mut l.socket, Token(LISTENER_BASE - i), Interest::READABLE)?;
        }
        let now = Instant::now();
        let io = Io {
            slots: Slab::new(),
            registry: poll.registry().try_clone()?,
            timers: Timers::new(now),
            next_generation: 0,
            now,
            max_outbound: limits.max_outbound,
            default_input_cap: limits.default_input_cap,
            to_flush: Vec::new(),
            to_read: Vec::new(),
            to_close: Vec::new(),
            shutdown_deadline: None,
            busy_poll_until: None,
            written: 0,
        };
        Ok(Reactor { poll, listeners, io, waker })
    }

    /// The Waker that makes this loop call `Service::on_wake`.
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }
}

/// How a service asks the loop to stop: stop accepting, then run until every
/// connection has closed or `grace` has passed.
pub fn begin_shutdown<C>(io: &mut Io<C>, grace: Duration) {
    if io.shutdown_deadline.is_none() {
        io.shutdown_deadline = Some(io.now + grace);
    }
}

mod run;
