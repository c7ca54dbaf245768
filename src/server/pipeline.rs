//! The answers of one HTTP connection, in request order, while some are
//! with the hub: pipelined publishes need not wait for each other's acks.

use std::collections::VecDeque;

use crate::http::Version;

/// The most requests one connection may have with the hub at once. Enough to
/// keep batches full for a pipelining publisher (as on RESP), without letting
/// one connection take the whole publish queue.
pub const MAX_PIPELINE: usize = 64;

/// What a waiting slot waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting {
    /// `POST /pub/{channel}`: answered with the one ack.
    Publish,
    /// `POST /pub` (NDJSON): answered with every id, in order.
    Batch,
    /// `GET /pub/{channel}`.
    Info,
    /// `DELETE /pub/{channel}`.
    Delete,
}

/// One answer's place in the order.
pub enum Slot {
    /// With the hub; answered in the request's version.
    Waiting { awaiting: Awaiting, version: Version, keep_alive: bool },
    /// Built, waiting for the answers before it.
    Ready(Vec<u8>),
}

#[derive(Default)]
pub struct Pipeline {
    slots: VecDeque<Slot>,
}

impl Pipeline {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.slots.len() >= MAX_PIPELINE
    }

    pub fn push(&mut self, slot: Slot) {
        self.slots.push_back(slot);
    }

    /// Fills the oldest slot waiting for one of `kinds`; false if none waits.
    pub fn fill(
        &mut self,
        kinds: &[Awaiting],
        build: impl FnOnce(Awaiting, Version, bool) -> Vec<u8>,
    ) -> bool {
        let found = self
            .slots
            .iter_mut()
            .find(|s| matches!(s, Slot::Waiting { awaiting, .. } if kinds.contains(awaiting)));
        let Some(slot) = found else { return false };
        if let Slot::Waiting { awaiting, version, keep_alive } = *slot {
            *slot = Slot::Ready(build(awaiting, version, keep_alive));
        }
        true
    }

    /// The answers now in order, joined for one write.
    pub fn take_ready(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(Slot::Ready(_)) = self.slots.front() {
            if let Some(Slot::Ready(bytes)) = self.slots.pop_front() {
                out.extend_from_slice(&bytes);
            }
        }
        out
    }
}
