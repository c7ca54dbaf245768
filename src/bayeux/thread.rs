//! The Bayeux thread: runs the session engine. Requests come from the event
//! loops, every published batch comes from the fan-out thread's tap, answers
//! go back through the loops' mailboxes. One thread owns all sessions, so a
//! client's requests may land on any loop.

use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender};

use super::engine::{Config, ConnRef, Engine, Output, Request, Transport};
use super::message::{Incoming, Unreadable};
use crate::fanout::{FanoutHandle, LoopMsg, Loops, Publish};
use crate::hub::Message;

/// How often held connects and session expiry are checked. Timeouts are
/// seconds long; a quarter second of slack is invisible.
const TICK: Duration = Duration::from_millis(250);
/// How long to wait for the fan-out thread's history answer; it answers
/// control requests at once, so this is only a guard.
const HISTORY_WAIT: Duration = Duration::from_secs(2);

/// Mail for the Bayeux thread.
pub enum BayeuxIn {
    Request {
        from: ConnRef,
        transport: Transport,
        messages: Vec<Result<Incoming, Unreadable>>,
        remote: Option<IpAddr>,
    },
    /// A WebSocket that carried Bayeux closed.
    Closed(ConnRef),
    /// A loop is shutting down: answer its held connects.
    Shutdown { loop_id: usize },
}

/// What the loops hold to reach the Bayeux thread.
#[derive(Clone)]
pub struct BayeuxHandle {
    tx: Sender<BayeuxIn>,
}

impl BayeuxHandle {
    pub fn send(&self, msg: BayeuxIn) {
        let _ = self.tx.send(msg);
    }
}

/// Starts the thread. `taps` carries every batch the fan-out thread publishes.
pub fn spawn(
    config: Config,
    loops: Loops,
    fanout: FanoutHandle,
    taps: Receiver<Vec<Arc<Message>>>,
    guard: Arc<crate::guard::Guard>,
) -> std::io::Result<(BayeuxHandle, JoinHandle<()>)> {
    // Unbounded: each connection has at most one Bayeux request in flight.
    let (tx, rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("halley-bayeux".into())
        .spawn(move || run(Engine::new(config), rx, taps, loops, fanout, guard))?;
    Ok((BayeuxHandle { tx }, thread))
}

fn run(
    mut engine: Engine,
    rx: Receiver<BayeuxIn>,
    taps: Receiver<Vec<Arc<Message>>>,
    loops: Loops,
    fanout: FanoutHandle,
    guard: Arc<crate::guard::Guard>,
) {
    let mut out = Vec::new();
    let mut next_tick = Instant::now() + TICK;
    loop {
        let mut select = Select::new();
        let requests = select.recv(&rx);
        let published = select.recv(&taps);
        let ready = select.select_deadline(next_tick);
        let now = Instant::now();
        match ready {
            Ok(op) if op.index() == requests => match op.recv(&rx) {
                Ok(BayeuxIn::Request { from, transport, messages, remote }) => {
                    let mut publish = |message: crate::fanout::NewMessage, remote: Option<IpAddr>| {
                        let bayeux_error = |d: crate::auth::Denied| format!("{}::{}", d.status, d.reason);
                        guard.public_publish(remote, now).map_err(bayeux_error)?;
                        let mut messages = vec![message];
                        guard.filter_messages(&mut messages).map_err(bayeux_error)?;
                        let publish = Publish { messages, reply: None, received_at: now };
                        fanout
                            .try_publish(publish)
                            .map_err(|_| "503::publish queue is full; retry shortly".to_string())
                    };
                    engine.request(
                        Request { from, transport, messages, remote },
                        now,
                        &mut publish,
                        &mut out,
                    );
                }
                Ok(BayeuxIn::Closed(conn)) => engine.closed(conn, now),
                Ok(BayeuxIn::Shutdown { loop_id }) => engine.shutdown(loop_id, &mut out),
                Err(_) => return,
            },
            Ok(op) if op.index() == published => match op.recv(&taps) {
                Ok(batch) => engine.deliver(&batch, now, &mut out),
                Err(_) => return,
            },
            _ => {}
        }
        if now >= next_tick {
            engine.tick(now, &mut out);
            next_tick = now + TICK;
        }
        // Replies first (a subscribe's answer before its history), then the
        // history fetches, which may produce more replies.
        while !out.is_empty() {
            let mut histories = Vec::new();
            for output in out.drain(..) {
                match output {
                    Output::Reply { to, messages } => {
                        let body = serde_json::to_vec(&messages).unwrap_or_else(|_| b"[]".to_vec());
                        if let Some(mailbox) = loops.get(to.loop_id) {
                            mailbox.send(LoopMsg::Bayeux { conn: to.conn, body });
                        }
                    }
                    Output::History { client, channel, n } => histories.push((client, channel, n)),
                }
            }
            for (client, channel, n) in histories {
                let messages = fanout.history(channel, n, HISTORY_WAIT);
                engine.deliver_history(&client, &messages, now, &mut out);
            }
        }
    }
}
