//! How threads name a connection, and the neutral answer a protocol engine
//! hands back for one. Shared by the fan-out thread, the Bayeux and Pushlet
//! engines and the event loops, so none of them imports another's types.

/// A connection on an event loop, as other threads name it: the loop's index
/// and the loop's own key for the connection (slot and generation, so an
/// answer for a closed connection never reaches a newer one in its slot).
///
/// To the fan-out thread `loop_id` is an outlet index: the loops come first,
/// then the protocol engines, which subscribe like loops do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub loop_id: usize,
    pub conn: u64,
    /// The HTTP/2 stream on that connection; 0 for the whole connection.
    pub stream: u32,
}

/// One piece of an answer a protocol engine (Bayeux, Pushlet) writes to a
/// connection. The connection's handler decides how it goes on the wire: an
/// HTTP response, a chunk of an open stream, or a WebSocket text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A complete answer.
    Whole { content_type: &'static str, body: Vec<u8> },
    /// The head and first bytes of an answer that stays open.
    Open { content_type: &'static str, body: Vec<u8> },
    /// More bytes of an open answer.
    More(Vec<u8>),
    /// The last bytes of an open answer; the connection closes after them.
    End(Vec<u8>),
}

/// Where a protocol engine's answers go: the event loops, by
/// `ConnRef::loop_id`. Implemented by the server over the loops' mailboxes;
/// `reply` never blocks.
pub trait Replies: Send {
    /// Hands `part` to the connection; false when its loop has gone.
    fn reply(&self, to: ConnRef, part: Part) -> bool;
}
