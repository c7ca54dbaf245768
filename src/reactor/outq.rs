//! A connection's outbound queue: chunks (mostly shared message frames) written
//! with one vectored write per flush, partially written chunks resumed by offset.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

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

    fn write_once<W: Write>(&self, out: &mut W) -> io::Result<usize> {
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
        out.write_vectored(&slices[..count])
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
}
