//! One inbox per event loop: an unbounded crossbeam channel plus a flag, so a
//! sender wakes the loop only when the inbox goes from empty to non-empty.
//! Unbounded is safe here because every sender is bounded elsewhere: the fan-out
//! thread sends at most one batch per loop per window, and replies are one per
//! request that a connection is waiting on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

/// The sending side; cheap to clone.
pub struct Mailbox<T> {
    tx: Sender<T>,
    waker: Arc<mio::Waker>,
    wake_pending: Arc<AtomicBool>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox { tx: self.tx.clone(), waker: self.waker.clone(), wake_pending: self.wake_pending.clone() }
    }
}

/// The loop's side.
pub struct Inbox<T> {
    rx: Receiver<T>,
    wake_pending: Arc<AtomicBool>,
}

pub fn mailbox<T>(waker: Arc<mio::Waker>) -> (Mailbox<T>, Inbox<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let wake_pending = Arc::new(AtomicBool::new(false));
    (Mailbox { tx, waker, wake_pending: wake_pending.clone() }, Inbox { rx, wake_pending })
}

impl<T> Mailbox<T> {
    /// Queues `msg`; wakes the loop unless a wake is already pending. Returns
    /// false when the loop has exited.
    pub fn send(&self, msg: T) -> bool {
        if self.tx.send(msg).is_err() {
            return false;
        }
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // A failed wake means the poll is gone, i.e. the loop is exiting.
            let _ = self.waker.wake();
        }
        true
    }
}

impl<T> Inbox<T> {
    /// Takes everything queued. The flag is cleared before draining, so a
    /// message sent during the drain either is drained now or wakes us again.
    pub fn drain(&self, into: &mut Vec<T>) {
        self.wake_pending.store(false, Ordering::Release);
        loop {
            match self.rx.try_recv() {
                Ok(msg) => into.push(msg),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }
}
