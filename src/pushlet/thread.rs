//! The Pushlet thread: runs the session engine. Requests come from the event
//! loops, every published batch from a fan-out tap, and answers go back
//! through the loops' mailboxes.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender};

use super::engine::{Config, ConnRef, Engine, Output, Request};
use crate::fanout::{FanoutHandle, LoopMsg, Loops, Publish};
use crate::hub::Message;

/// The longest the thread sleeps without looking at timers. Heartbeats and
/// pull timeouts are seconds long.
const MAX_SLEEP: Duration = Duration::from_millis(250);

/// Mail for the Pushlet thread.
pub enum PushletIn {
    Request {
        from: ConnRef,
        fields: Vec<(String, String)>,
        path: String,
        remote: Option<std::net::IpAddr>,
    },
    /// A loop is shutting down: end its streams and answer its held pulls.
    Shutdown {
        loop_id: usize,
    },
    /// A held or streaming connection went away.
    Closed(ConnRef),
}

#[derive(Clone)]
pub struct PushletHandle {
    tx: Sender<PushletIn>,
}

impl PushletHandle {
    pub fn send(&self, msg: PushletIn) {
        let _ = self.tx.send(msg);
    }
}

pub fn spawn(
    config: Config,
    loops: Loops,
    fanout: FanoutHandle,
    taps: Receiver<Vec<Arc<Message>>>,
    guard: Arc<crate::guard::Guard>,
    max_message_bytes: usize,
) -> std::io::Result<(PushletHandle, JoinHandle<()>)> {
    // Unbounded: each connection has at most one Pushlet request in flight.
    let (tx, rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("halley-pushlet".into())
        .spawn(move || run(Engine::new(config), rx, taps, loops, fanout, guard, max_message_bytes))?;
    Ok((PushletHandle { tx }, thread))
}

fn run(
    mut engine: Engine,
    rx: Receiver<PushletIn>,
    taps: Receiver<Vec<Arc<Message>>>,
    loops: Loops,
    fanout: FanoutHandle,
    guard: Arc<crate::guard::Guard>,
    max_message_bytes: usize,
) {
    let mut out = Vec::new();
    loop {
        let now = Instant::now();
        let deadline = engine.next_deadline().map_or(now + MAX_SLEEP, |d| d.min(now + MAX_SLEEP));
        let mut select = Select::new();
        let requests = select.recv(&rx);
        let published = select.recv(&taps);
        let ready = select.select_deadline(deadline);
        let now = Instant::now();
        match ready {
            Ok(op) if op.index() == requests => match op.recv(&rx) {
                Ok(PushletIn::Request { from, fields, path, remote }) => {
                    // Every Pushlet publish passes the same rules as any
                    // public-side publish: address, rate, size, blocked words.
                    let mut publish = |message: &mut crate::fanout::NewMessage, to_hub: bool| {
                        guard.public_publish(remote, now).map_err(|d| d.reason)?;
                        if message.data.len() > max_message_bytes {
                            return Err(format!("message over {max_message_bytes} bytes"));
                        }
                        guard.filter_messages(std::slice::from_mut(message)).map_err(|d| d.reason)?;
                        if !to_hub {
                            return Ok(());
                        }
                        let publish =
                            Publish { messages: vec![message.clone()], reply: None, received_at: now };
                        fanout
                            .try_publish(publish)
                            .map_err(|_| "publish queue is full; retry shortly".to_string())
                    };
                    engine.request(Request { from, fields, path }, now, &mut publish, &mut out);
                }
                Ok(PushletIn::Shutdown { loop_id }) => engine.shutdown(loop_id, now, &mut out),
                Ok(PushletIn::Closed(conn)) => engine.closed(conn, now),
                Err(_) => return,
            },
            Ok(op) if op.index() == published => match op.recv(&taps) {
                Ok(batch) => engine.deliver(&batch, now, &mut out),
                Err(_) => return,
            },
            _ => {}
        }
        engine.tick(now, &mut out);
        for output in out.drain(..) {
            let (to, msg) = match output {
                Output::Whole { to, content_type, body } => {
                    (to, LoopMsg::Pushlet { conn: to.conn, part: Part::Whole { content_type, body } })
                }
                Output::Open { to, content_type, body } => {
                    (to, LoopMsg::Pushlet { conn: to.conn, part: Part::Open { content_type, body } })
                }
                Output::More { to, body } => (to, LoopMsg::Pushlet { conn: to.conn, part: Part::More(body) }),
                Output::End { to, body } => (to, LoopMsg::Pushlet { conn: to.conn, part: Part::End(body) }),
            };
            if let Some(mailbox) = loops.get(to.loop_id) {
                mailbox.send(msg);
            }
        }
    }
}

/// One piece of a Pushlet response for a loop to write.
#[derive(Debug)]
pub enum Part {
    Whole { content_type: &'static str, body: Vec<u8> },
    Open { content_type: &'static str, body: Vec<u8> },
    More(Vec<u8>),
    End(Vec<u8>),
}
