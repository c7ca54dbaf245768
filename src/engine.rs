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

/// Publishes for an engine's client: queued for the hub; with the Redis
/// backplane, also waits until Redis has stored them (a round trip), so the
/// client's answer never claims a message Redis does not hold, and a publish
/// the client sends next (anywhere) comes after it. `Err` is the reason.
pub fn publish(
    fanout: &FanoutHandle,
    stats: &crate::stats::Stats,
    messages: Vec<crate::fanout::NewMessage>,
    now: std::time::Instant,
) -> Result<(), String> {
    let backplane = stats.backplane.is_some();
    let (done, acked) = if backplane {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let publish = crate::fanout::Publish { messages, reply: None, received_at: now, done };
    fanout.try_publish(publish).map_err(|_| "publish queue is full; retry shortly".to_string())?;
    let Some(acked) = acked else { return Ok(()) };
    // The backplane's own timeouts answer within this; the margin is a guard.
    let wait = crate::backplane::COMMAND_TIMEOUT + crate::backplane::CONNECT_TIMEOUT * 2;
    match acked.recv_timeout(wait) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("the Redis backplane is unavailable ({e}); retry shortly")),
        Err(_) => Err("the Redis backplane did not answer; retry shortly".to_string()),
    }
}
