//! The event loops' mail: what the hub and the protocol engines send a loop,
//! and the two adapters that let them send it without knowing the loop's
//! types (the hub sees an [`Outlet`], an engine sees [`Replies`]).

use crate::fanout::{HubMail, Outlet};
use crate::hub::{ConnRef, Part, Replies};
use crate::reactor::mailbox::Mailbox;

/// Mail for an event loop.
#[derive(Debug)]
pub enum LoopMsg {
    /// From the fan-out thread: batches, subscribe answers, acks, queries.
    Hub(HubMail),
    /// A piece of a protocol engine's answer for one connection.
    /// For a connection, or one of its HTTP/2 streams (`stream` > 0).
    Engine { conn: u64, stream: u32, part: Part },
    /// Stop accepting, end streams, exit.
    Shutdown,
}

impl Outlet for Mailbox<LoopMsg> {
    fn send(&self, mail: HubMail) -> bool {
        Mailbox::send(self, LoopMsg::Hub(mail))
    }
}

/// The loops' mailboxes, as an engine's way back to its connections.
pub struct LoopReplies(pub Vec<Mailbox<LoopMsg>>);

impl Replies for LoopReplies {
    fn reply(&self, to: ConnRef, part: Part) -> bool {
        self.0
            .get(to.loop_id)
            .is_some_and(|mailbox| mailbox.send(LoopMsg::Engine { conn: to.conn, stream: to.stream, part }))
    }
}
