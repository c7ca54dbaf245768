//! The turn of the loop: poll, dispatch, settle queued work, fire timers.

use std::io::{self, Read};
use std::mem;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Token};

use super::filter::{Decoded, FilterError};
use super::*;

/// How long a closing connection keeps reading (and discarding) after its
/// last response, so that unread request bytes do not make the kernel send a
/// reset that destroys the response (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);
/// Bytes discarded while lingering before giving up on the peer.
const LINGER_MAX_BYTES: usize = 1 << 20;
/// Pause before accepting again after accept failed (say, out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Work carried over to the next turn because a budget ran out.
#[derive(Default)]
struct Carry {
    reads: Vec<ConnKey>,
    flushes: Vec<ConnKey>,
    accepts: bool,
    accept_retry_at: Option<Instant>,
}

impl<C> Reactor<C> {
    /// Runs until the service calls [`begin_shutdown`] and every connection has
    /// closed or the grace period has passed.
    pub fn run<S: Service<Conn = C>>(mut self, service: &mut S) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut scratch = vec![0u8; READ_CHUNK];
        let mut carry = Carry::default();
        let mut due = Vec::new();
        loop {
            let timeout = self.poll_timeout(&carry);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.io.now = Instant::now();
            self.io.to_read.append(&mut carry.reads);
            self.io.to_flush.append(&mut carry.flushes);
            let retry_due = carry.accept_retry_at.is_some_and(|at| at <= self.io.now);
            if mem::take(&mut carry.accepts) || retry_due {
                carry.accept_retry_at = None;
                for i in 0..self.listeners.len() {
                    self.accept(i, service, &mut carry);
                }
            }
            for event in events.iter() {
                self.dispatch(event, service, &mut carry);
            }
            self.settle(service, &mut scratch, &mut carry);
            self.fire_timers(service, &mut due);
            self.settle(service, &mut scratch, &mut carry);
            if self.shutdown_finished() {
                self.close_all(service);
                return Ok(());
            }
        }
    }

    fn poll_timeout(&self, carry: &Carry) -> Option<Duration> {
        if carry.accepts || !carry.reads.is_empty() || !carry.flushes.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        if self.io.busy_poll_until.is_some_and(|until| now < until) {
            return Some(Duration::ZERO);
        }
        [self.io.timers.next_deadline(), self.io.shutdown_deadline, carry.accept_retry_at]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    fn dispatch<S: Service<Conn = C>>(
        &mut self,
        event: &mio::event::Event,
        service: &mut S,
        carry: &mut Carry,
    ) {
        match event.token() {
            WAKER_TOKEN => {
                self.io.busy_poll_until = None;
                service.on_wake(&mut self.io);
            }
            Token(t) if t > LISTENER_BASE - self.listeners.len() && t <= LISTENER_BASE => {
                self.accept(LISTENER_BASE - t, service, carry);
            }
            token => {
                let key = ConnKey::from_token(token);
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.io.to_read.push(key);
                }
                if event.is_writable() {
                    self.io.to_flush.push(key);
                }
            }
        }
    }

    fn accept<S: Service<Conn = C>>(&mut self, i: usize, service: &mut S, carry: &mut Carry) {
        if self.io.shutdown_deadline.is_some() {
            return;
        }
        for _ in 0..MAX_ACCEPTS_PER_WAKE {
            let Some(listener) = self.listeners.get(i) else { return };
            let port = listener.port;
            match listener.socket.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, port, service),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    crate::log::warn(format_args!("accept failed: {e}; retrying shortly"));
                    carry.accept_retry_at = Some(self.io.now + ACCEPT_RETRY);
                    return;
                }
            }
        }
        carry.accepts = true;
    }

    fn admit<S: Service<Conn = C>>(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        port: usize,
        service: &mut S,
    ) {
        let _ = stream.set_nodelay(true);
        let io = &mut self.io;
        io.next_generation = (io.next_generation + 1) & 0x7fff_ffff;
        let entry = io.slots.vacant_entry();
        let key = ConnKey { index: entry.key() as u32, generation: io.next_generation };
        if io.registry.register(&mut stream, key.token(), Interest::READABLE | Interest::WRITABLE).is_err() {
            return;
        }
        entry.insert(Slot {
            stream,
            generation: key.generation,
            peer,
            input: Vec::new(),
            input_cap: io.default_input_cap,
            read_paused: false,
            out: OutQueue::default(),
            filter: None,
            state: None,
            deadline_tick: None,
            close_after_flush: false,
            close_reason: None,
            eof: false,
            lingering: false,
        });
        match service.on_accept(io, key, port, peer) {
            Some(state) => {
                if let Some(slot) = io.slot(key) {
                    slot.state = Some(state);
                }
                // Data may already be waiting; edge-triggered readiness fires
                // anyway, but reading now saves a turn.
                io.to_read.push(key);
            }
            None => {
                let slot = io.slots.remove(key.index as usize);
                let mut stream = slot.stream;
                let _ = io.registry.deregister(&mut stream);
            }
        }
    }

    /// Carries out reads, flushes and closes queued during callbacks, until none remain.
    fn settle<S: Service<Conn = C>>(&mut self, service: &mut S, scratch: &mut [u8], carry: &mut Carry) {
        loop {
            let reads = mem::take(&mut self.io.to_read);
            for key in reads {
                self.read(key, service, scratch, carry);
            }
            let flushes = mem::take(&mut self.io.to_flush);
            for key in flushes {
                self.flush(key, carry);
            }
            let closes = mem::take(&mut self.io.to_close);
            for key in closes {
                self.close(key, service, None);
            }
            if self.io.to_read.is_empty() && self.io.to_flush.is_empty() && self.io.to_close.is_empty() {
                return;
            }
        }
    }

    fn read<S: Service<Conn = C>>(
        &mut self,
        key: ConnKey,
        service: &mut S,
        scratch: &mut [u8],
        carry: &mut Carry,
    ) {
        let Some(slot) = self.io.slot(key) else { return };
        if slot.close_reason.is_some() || slot.eof {
            return;
        }
        if slot.lingering {
            return self.linger_read(key, scratch);
        }
        let mut got = false;
        let mut eof = false;
        let mut drained = false;
        let mut want_flush = false;
        slot.read_paused = false;
        for _ in 0..MAX_READS_PER_WAKE {
            let room = slot.input_cap.saturating_sub(slot.input.len()).min(scratch.len());
            if room == 0 {
                slot.read_paused = true;
                drained = true;
                break;
            }
            match slot.stream.read(&mut scratch[..room]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => match slot.filter.as_mut() {
                    None => {
                        slot.input.extend_from_slice(&scratch[..n]);
                        got = true;
                    }
                    Some(filter) => {
                        let before = slot.input.len();
                        let decoded = filter.decode(&scratch[..n], &mut slot.input);
                        got |= slot.input.len() > before;
                        // A handshake reply, or output held until the handshake completed.
                        want_flush |= filter.wants_write() || !slot.out.is_empty();
                        match decoded {
                            Ok(Decoded::Open) => {}
                            Ok(Decoded::Closed) => {
                                eof = true;
                                break;
                            }
                            Err(FilterError(why)) => {
                                // Best effort: tell the peer why (a TLS alert).
                                let _ = filter.write_to(&mut slot.stream);
                                slot.close_reason = Some(CloseReason::Filter(why));
                                self.io.to_close.push(key);
                                return;
                            }
                        }
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    slot.close_reason = Some(CloseReason::Error);
                    self.io.to_close.push(key);
                    return;
                }
            }
        }
        if !drained && !eof {
            carry.reads.push(key);
        }
        if want_flush {
            self.io.to_flush.push(key);
        }
        if got {
            service.on_input(&mut self.io, key);
        }
        if eof {
            if let Some(slot) = self.io.slot(key) {
                slot.eof = true;
            }
            service.on_eof(&mut self.io, key);
        }
    }

    fn flush(&mut self, key: ConnKey, carry: &mut Carry) {
        let Some(slot) = self.io.slot(key) else { return };
        if slot.close_reason.is_some() || slot.lingering {
            return;
        }
        let queued = slot.out.queued();
        let flushed = match slot.filter.as_mut() {
            None => slot.out.flush_to(&mut slot.stream, MAX_WRITES_PER_FLUSH),
            // A peer that never finished its handshake cannot be answered.
            Some(filter) if slot.close_after_flush && !filter.ready() => {
                slot.close_reason = Some(CloseReason::Requested);
                self.io.to_close.push(key);
                return;
            }
            Some(filter) => slot.out.flush_through(filter.as_mut(), &mut slot.stream, MAX_WRITES_PER_FLUSH),
        };
        let wrote = queued.saturating_sub(slot.out.queued()) as u64;
        match flushed {
            Ok(Flushed::Drained) if slot.close_after_flush => self.start_linger(key),
            Ok(Flushed::Drained | Flushed::Blocked) => {}
            Ok(Flushed::Budget) => carry.flushes.push(key),
            Err(_) => {
                slot.close_reason = Some(CloseReason::Error);
                self.io.to_close.push(key);
            }
        }
        self.io.written += wrote;
    }

    /// Half-closes our side and waits briefly for the peer's end.
    fn start_linger(&mut self, key: ConnKey) {
        let Some(slot) = self.io.slot(key) else { return };
        if let Some(filter) = slot.filter.as_mut() {
            // Best effort: a peer that is not reading misses the goodbye.
            filter.close();
            let _ = filter.write_to(&mut slot.stream);
        }
        if slot.eof || slot.stream.shutdown(Shutdown::Write).is_err() {
            slot.close_reason = Some(CloseReason::Requested);
            self.io.to_close.push(key);
            return;
        }
        slot.lingering = true;
        slot.input = Vec::new();
        let until = self.io.now + LINGER;
        self.io.set_deadline(key, until);
        self.io.to_read.push(key);
    }

    fn linger_read(&mut self, key: ConnKey, scratch: &mut [u8]) {
        let Some(slot) = self.io.slot(key) else { return };
        let mut discarded = 0;
        loop {
            match slot.stream.read(scratch) {
                Ok(n) if n > 0 && discarded < LINGER_MAX_BYTES => discarded += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
        slot.close_reason = Some(CloseReason::Requested);
        self.io.to_close.push(key);
    }

    fn fire_timers<S: Service<Conn = C>>(&mut self, service: &mut S, due: &mut Vec<(u64, ConnKey)>) {
        self.io.timers.expire(self.io.now, due);
        for (tick, key) in due.drain(..) {
            let Some(slot) = self.io.slot(key) else { continue };
            if slot.deadline_tick != Some(tick) || slot.close_reason.is_some() {
                continue;
            }
            slot.deadline_tick = None;
            if slot.lingering {
                slot.close_reason = Some(CloseReason::Requested);
                self.io.to_close.push(key);
            } else {
                service.on_deadline(&mut self.io, key);
            }
        }
    }

    fn close<S: Service<Conn = C>>(&mut self, key: ConnKey, service: &mut S, forced: Option<CloseReason>) {
        let index = key.index as usize;
        if self.io.slots.get(index).is_none_or(|s| s.generation != key.generation) {
            return;
        }
        let mut slot = self.io.slots.remove(index);
        let _ = self.io.registry.deregister(&mut slot.stream);
        drop(slot.stream);
        let reason = forced.or(slot.close_reason).unwrap_or(CloseReason::Requested);
        if let Some(state) = slot.state {
            service.on_closed(&mut self.io, key, state, reason);
        }
    }

    fn shutdown_finished(&mut self) -> bool {
        let Some(deadline) = self.io.shutdown_deadline else { return false };
        if !self.listeners.is_empty() {
            for mut l in self.listeners.drain(..) {
                let _ = self.poll.registry().deregister(&mut l.socket);
            }
        }
        self.io.slots.is_empty() || self.io.now >= deadline
    }

    fn close_all<S: Service<Conn = C>>(&mut self, service: &mut S) {
        for key in self.io.keys() {
            self.close(key, service, Some(CloseReason::Shutdown));
        }
    }
}
