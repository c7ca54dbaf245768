//! A connection's outbound queue: chunks (mostly shared message frames) written
//! with one vectored write per flush, partially written chunks resumed by offset.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use super::filter::Filter;
use crate::chunk::Chunk;

/// Slices handed to one `writev`. Linux allows 1024; 64 covers a whole batch of
/// small messages for one subscriber while keeping the slice array on the stack.
const MAX_IOVECS: usize = 64;

/// How a flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued was written.
    Drained,
    /// The socket would block; wait for writability.
    Blocked,
    /// The per-flush write budget ran out first; flush again soon.
    Budget,
}

#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    offset: usize,
    /// Bytes queued and not yet written.
    queued: usize,
    /// Of `queued`, bytes exempt from the slow-consumer cap (a resume's
    /// catch-up, bounded by history size rather than by the client's speed).
    exempt: usize,
}

impl OutQueue {
    pub fn push(&mut self, chunk: Chunk, exempt: bool) {
        let len = chunk.len();
        if len == 0 {
            return;
        }
        self.queued += len;
        if exempt {
            self.exempt += len;
        }
        self.chunks.push_back(chunk);
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Bytes that count against the slow-consumer cap.
    pub fn counted(&self) -> usize {
        self.queued - self.exempt
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes until drained, blocked, or `max_writes` calls have been made.
    pub fn flush_to<W: Write>(&mut self, out: &mut W, max_writes: usize) -> io::Result<Flushed> {
        for _ in 0..max_writes {
            if self.chunks.is_empty() {
                return Ok(Flushed::Drained);
            }
            match self.write_once(out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(if self.chunks.is_empty() { Flushed::Drained } else { Flushed::Budget })
    }

    /// Writes through `filter`: pending encoded bytes first, then the queue's
    /// plaintext encoded (up to 64 slices per round, so a batch becomes as few
    /// records and `writev` calls as the filter allows), until drained,
    /// blocked, or `max_writes` rounds. Plaintext moves into the filter only
    /// when its previous output is written and it is `ready`, so bytes beyond
    /// the filter's small bound wait here, counted against the queue's cap.
    pub fn flush_through<W: Write>(
        &mut self,
        filter: &mut dyn Filter,
        out: &mut W,
        max_writes: usize,
    ) -> io::Result<Flushed> {
        for _ in 0..max_writes {
            if !filter.wants_write() {
                if self.chunks.is_empty() || !filter.ready() {
                    return Ok(Flushed::Drained);
                }
                let taken = self.with_slices(|slices| filter.encode(slices));
                self.advance(taken);
                if !filter.wants_write() {
                    return Ok(Flushed::Drained);
                }
            }
            match filter.write_to(out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let done = self.chunks.is_empty() && !filter.wants_write();
        Ok(if done { Flushed::Drained } else { Flushed::Budget })
    }

    fn write_once<W: Write>(&self, out: &mut W) -> io::Result<usize> {
        self.with_slices(|slices| out.write_vectored(slices))
    }

    /// Calls `f` with up to `MAX_IOVECS` slices of what is queued, in order.
    fn with_slices<R>(&self, f: impl FnOnce(&[IoSlice<'_>]) -> R) -> R {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        // The front chunk's first `offset` bytes are written already.
        let mut skip = self.offset;
        'chunks: for chunk in &self.chunks {
            for part in chunk.parts() {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                let part = part.get(skip..).unwrap_or(&[]);
                skip = 0;
                if count == MAX_IOVECS {
                    break 'chunks;
                }
                slices[count] = IoSlice::new(part);
                count += 1;
            }
        }
        f(&slices[..count])
    }

    fn advance(&mut self, mut written: usize) {
        self.queued -= written.min(self.queued);
        self.exempt -= written.min(self.exempt);
        while written > 0 {
            let Some(front) = self.chunks.front() else { return };
            let left = front.len() - self.offset;
            if written < left {
                self.offset += written;
                return;
            }
            written -= left;
            self.offset = 0;
            self.chunks.pop_front();
        }
        if self.chunks.is_empty() && self.chunks.capacity() > KEEP_CHUNKS {
            // A burst (a catch-up, an HTTP/2 connection answering 100
            // streams) must not pin its queue's size on an idle connection.
            self.chunks = VecDeque::new();
        }
    }
}

/// Queue slots an empty queue keeps: a few batches' worth for a subscriber
/// (one chunk per message); a larger queue is released once drained.
const KEEP_CHUNKS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer that takes at most `step` bytes per call and blocks every other call.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(2) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_everything_in_order_a_few_bytes_at_a_time() {
        let shared: Arc<[u8]> = Arc::from(&b"0123456789"[..]);
        for step in [1, 2, 3, 7, 100] {
            let mut q = OutQueue::default();
            q.push(Chunk::Static(b"head:"), false);
            q.push(Chunk::wrapped(b"2", shared.clone(), b"|"), true);
            q.push(Chunk::Owned(Vec::new()), false);
            q.push(Chunk::Owned(b"-tail".to_vec()), false);
            assert_eq!(q.queued(), 22);
            assert_eq!(q.counted(), 10);
            let mut w = Trickle { got: Vec::new(), step, calls: 0 };
            let mut rounds = 0;
            while q.flush_to(&mut w, 4).unwrap() != Flushed::Drained {
                rounds += 1;
                assert!(rounds < 100, "no progress with step {step}");
            }
            assert_eq!(w.got, b"head:20123456789|-tail", "step {step}");
            assert_eq!((q.queued(), q.counted()), (0, 0));
        }
    }

    /// A filter that "encodes" by upper-casing, holding at most `limit`
    /// encoded bytes, and is ready only once `ready` is set.
    struct Upper {
        pending: Vec<u8>,
        limit: usize,
        ready: bool,
    }

    impl Filter for Upper {
        fn decode(
            &mut self,
            _: &[u8],
            _: &mut Vec<u8>,
        ) -> Result<super::super::filter::Decoded, super::super::filter::FilterError> {
            unreachable!()
        }
        fn ready(&self) -> bool {
            self.ready
        }
        fn encode(&mut self, plain: &[IoSlice<'_>]) -> usize {
            let mut taken = 0;
            for s in plain {
                let n = s.len().min(self.limit - self.pending.len());
                self.pending.extend(s[..n].iter().map(u8::to_ascii_uppercase));
                taken += n;
            }
            taken
        }
        fn wants_write(&self) -> bool {
            !self.pending.is_empty()
        }
        fn write_to(&mut self, out: &mut dyn Write) -> io::Result<usize> {
            let n = out.write(&self.pending)?;
            self.pending.drain(..n);
            Ok(n)
        }
        fn close(&mut self) {}
        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
    }

    #[test]
    fn a_filter_gets_everything_in_order_and_holds_little() {
        let shared: Arc<[u8]> = Arc::from(&b"shared-frame"[..]);
        for (step, limit) in [(1, 1), (3, 5), (7, 4), (100, 1000)] {
            let mut q = OutQueue::default();
            q.push(Chunk::Static(b"head:"), false);
            q.push(Chunk::wrapped(b"c", shared.clone(), b"|"), false);
            q.push(Chunk::Owned(b"-tail".to_vec()), false);
            let mut f = Upper { pending: Vec::new(), limit, ready: false };
            let mut w = Trickle { got: Vec::new(), step, calls: 0 };
            // Not ready: nothing moves.
            assert_eq!(q.flush_through(&mut f, &mut w, 4).unwrap(), Flushed::Drained);
            assert_eq!((q.queued(), w.got.len()), (24, 0));
            f.ready = true;
            let mut rounds = 0;
            while q.flush_through(&mut f, &mut w, 4).unwrap() != Flushed::Drained {
                assert!(f.pending.len() <= limit, "the filter holds at most its limit");
                rounds += 1;
                assert!(rounds < 200, "no progress with step {step}");
            }
            assert_eq!(w.got, b"HEAD:CSHARED-FRAME|-TAIL", "step {step} limit {limit}");
            assert!(q.is_empty() && !f.wants_write());
        }
    }
}
