//! A stream filter: a sans-IO layer between a connection's socket and its
//! service (TLS is one). The loop passes the bytes it reads through the
//! filter into the connection's input buffer, and its outbound queue through
//! the filter before writing; services and the loop see only plaintext and
//! know nothing of what the filter does.

use std::any::Any;
use std::io::{self, IoSlice, Write};

/// What decoding some input left the filter in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// The session goes on.
    Open,
    /// The peer ended the session cleanly (a TLS close_notify): treat as end of input.
    Closed,
}

/// Why a filter gave up on its connection (a short, static reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterError(pub &'static str);

/// The interface the loop drives. Invariants: `decode` consumes every byte it
/// is given (buffering partial records itself); plaintext handed to `encode`
/// is owned by the filter once accepted; `write_to` only ever writes bytes the
/// filter produced, in order.
pub trait Filter: Send {
    /// Takes `wire` (bytes read from the socket) and appends the plaintext
    /// they complete to `plain`. Any reply the filter must send (a handshake
    /// message) becomes pending output: see `wants_write`.
    fn decode(&mut self, wire: &[u8], plain: &mut Vec<u8>) -> Result<Decoded, FilterError>;
    /// Whether plaintext may be encoded now (a TLS handshake is complete).
    /// Until then the loop keeps the outbound queue as it is.
    fn ready(&self) -> bool;
    /// Encodes a prefix of `plain` (the outbound queue's slices, in order)
    /// and returns how many bytes it took; fewer than offered when its own
    /// bounded buffer is full.
    fn encode(&mut self, plain: &[IoSlice<'_>]) -> usize;
    /// Whether encoded bytes wait to be written.
    fn wants_write(&self) -> bool;
    /// Writes pending encoded bytes to `out` (vectored where it can).
    fn write_to(&mut self, out: &mut dyn Write) -> io::Result<usize>;
    /// Ends the session from our side (a TLS close_notify) before the
    /// socket's write side shuts; the loop writes what this produces.
    fn close(&mut self);
    /// For the service that installed the filter, to reach its own type.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}
