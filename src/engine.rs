//! What the protocol engines' threads (Bayeux, Pushlet) share: an inbox that
//! both the loops and the hub write to (the hub sees it as an [`Outlet`]),
//! and the wiring a thread gets at start-up.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::fanout::{FanoutHandle, HubMail, Outlet};
use crate::hub::Replies;

/// The sending side of an engine's inbox; `M` is the engine's mail type.
pub struct EngineHandle<M> {
    tx: Sender<M>,
}

impl<M> Clone for EngineHandle<M> {
    fn clone(&self) -> Self {
        EngineHandle { tx: self.tx.clone() }
    }
}

impl<M> EngineHandle<M> {
    /// Queues `msg`; a stopped engine drops it.
    pub fn send(&self, msg: M) {
        let _ = self.tx.send(msg);
    }
}

impl<M: From<HubMail> + Send> Outlet for EngineHandle<M> {
    fn send(&self, mail: HubMail) -> bool {
        self.tx.send(M::from(mail)).is_ok()
    }
}

/// An engine's inbox. Unbounded: each connection has at most one request in
/// flight with an engine, and the hub sends it at most one batch per round.
pub fn inbox<M>() -> (EngineHandle<M>, Receiver<M>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (EngineHandle { tx }, rx)
}

/// Everything an engine's thread works with besides its engine.
pub struct Wiring<M> {
    /// The thread's outlet index at the hub.
    pub outlet: usize,
    pub inbox: Receiver<M>,
    /// The way back to connections on the loops.
    pub replies: Box<dyn Replies>,
    pub fanout: FanoutHandle,
    pub guard: Arc<crate::guard::Guard>,
    pub stats: Arc<crate::stats::Stats>,
}
