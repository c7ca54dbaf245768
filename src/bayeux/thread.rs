//! The Bayeux thread: runs the session engine. Requests come from the event
//! loops; the hub sends it the messages of the channels and wildcards its
//! sessions subscribe to (it is one of the fan-out's outlets, counted like
//! any subscriber), and answers go back through the loops' mailboxes. One
//! thread owns all sessions, so a client's requests may land on any loop.

use std::net::IpAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::engine::{Config, ConnRef, Engine, Output, Request, Transport};
use super::message::{Incoming, Unreadable};
use crate::fanout::{Control, HubMail, Listen, Start, Subscribe};
use crate::guard::Origin;
use crate::hub::Part;

/// How often held connects and session expiry are checked. Timeouts are
/// seconds long; a quarter second of slack is invisible.
const TICK: Duration = Duration::from_millis(250);

/// The content type of every Bayeux answer (callback-polling wraps it).
pub const CONTENT_TYPE: &str = "application/json";

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
    /// Mail from the hub: messages, history, deleted channels.
    Hub(HubMail),
    /// Every loop has exited: end the thread.
    Stop,
}

impl From<HubMail> for BayeuxIn {
    fn from(mail: HubMail) -> BayeuxIn {
        BayeuxIn::Hub(mail)
    }
}

/// What the loops (and the hub, as an outlet) hold to reach the Bayeux thread.
pub type BayeuxHandle = crate::engine::EngineHandle<BayeuxIn>;

/// Everything the thread works with besides its engine.
pub type Wiring = crate::engine::Wiring<BayeuxIn>;

/// Starts the thread.
pub fn spawn(config: Config, wiring: Wiring) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("halley-bayeux".into()).spawn(move || run(Engine::new(config), wiring))
}

fn run(mut engine: Engine, w: Wiring) {
    let mut out = Vec::new();
    let mut next_tick = Instant::now() + TICK;
    loop {
        let received = w.inbox.recv_timeout(next_tick.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        match received {
            Ok(BayeuxIn::Request { from, transport, messages, remote }) => {
                let mut publish = |message: crate::fanout::NewMessage, remote: Option<IpAddr>| {
                    let bayeux_error = |d: crate::auth::Denied| format!("{}::{}", d.status, d.reason);
                    let mut messages = vec![message];
                    w.guard
                        .screen(&mut messages, Origin::Session { ip: remote }, now)
                        .map_err(bayeux_error)?;
                    crate::engine::publish(&w.fanout, &w.stats, messages, now)
                        .map_err(|e| format!("503::{e}"))
                };
                engine.request(Request { from, transport, messages, remote }, now, &mut publish, &mut out);
            }
            Ok(BayeuxIn::Closed(conn)) => engine.closed(conn, now),
            Ok(BayeuxIn::Shutdown { loop_id }) => engine.shutdown(loop_id, &mut out),
            Ok(BayeuxIn::Hub(mail)) => match mail {
                HubMail::Batch(batch) => engine.deliver(&batch, now, &mut out),
                HubMail::Subscribed(reply) => {
                    engine.deliver_history(reply.conn, &reply.catchup, now, &mut out)
                }
                HubMail::ChannelDeleted(_)
                | HubMail::Failed { .. }
                | HubMail::Published(_)
                | HubMail::ChannelInfo { .. }
                | HubMail::Deleted { .. } => {}
            },
            Ok(BayeuxIn::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if now >= next_tick {
            engine.tick(now, &mut out);
            next_tick = now + TICK;
        }
        // The gauge before the answers: a client that has its answer sees
        // the count that follows from it in /metrics.
        crate::stats::set(&w.stats.engines.bayeux_subscriptions, engine.subscriptions() as u64);
        for output in out.drain(..) {
            carry_out(&w, output);
        }
    }
}

/// Sends an answer to its loop, or a subscription change to the hub.
fn carry_out(w: &Wiring, output: Output) {
    match output {
        Output::Reply { to, messages } => {
            let body = serde_json::to_vec(&messages).unwrap_or_else(|_| b"[]".to_vec());
            w.replies.reply(to, Part::Whole { content_type: CONTENT_TYPE, body });
        }
        Output::Listen { channel, backlog, tag } => {
            let start = if backlog > 0 { Start::Backlog(backlog) } else { Start::Now };
            w.fanout.control(Control::Subscribe(Subscribe {
                stream: 0,
                reply: ConnRef { loop_id: w.outlet, conn: tag, stream: 0 },
                channels: vec![channel],
                listen: Listen::Messages,
                start,
                only_if_nothing_to_send: false,
            }));
        }
        Output::Unlisten { channel } => {
            w.fanout.control(Control::Unsubscribe {
                outlet: w.outlet,
                channels: vec![channel],
                listen: Listen::Messages,
            });
        }
        Output::Watch { pattern, delta } => {
            w.fanout.control(Control::Watch { outlet: w.outlet, pattern, delta });
        }
    }
}
