//! The Pushlet thread: runs the session engine. Requests come from the event
//! loops; the hub sends it the messages of the subjects its sessions
//! subscribe to (it is one of the fan-out's outlets, counted like any
//! subscriber); answers go back through the loops' mailboxes.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::engine::{Config, ConnRef, Engine, Output, Request};
use crate::fanout::{Control, HubMail};
use crate::guard::Origin;
use crate::hub::Part;

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
    /// Mail from the hub: the messages of subscribed subjects.
    Hub(HubMail),
    /// Every loop has exited: end the thread.
    Stop,
}

impl From<HubMail> for PushletIn {
    fn from(mail: HubMail) -> PushletIn {
        PushletIn::Hub(mail)
    }
}

/// What the loops (and the hub, as an outlet) hold to reach the Pushlet thread.
pub type PushletHandle = crate::engine::EngineHandle<PushletIn>;

/// Everything the thread works with besides its engine.
pub type Wiring = crate::engine::Wiring<PushletIn>;

pub fn spawn(config: Config, wiring: Wiring) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("halley-pushlet".into()).spawn(move || run(Engine::new(config), wiring))
}

fn run(mut engine: Engine, w: Wiring) {
    let mut out = Vec::new();
    loop {
        let now = Instant::now();
        let deadline = engine.next_deadline().map_or(now + MAX_SLEEP, |d| d.min(now + MAX_SLEEP));
        let received = w.inbox.recv_timeout(deadline.saturating_duration_since(now));
        let now = Instant::now();
        match received {
            Ok(PushletIn::Request { from, fields, path, remote }) => {
                // Every Pushlet publish (multicast or `p_to`) passes the one
                // publish screen: address, size, rate, blocked words.
                let mut publish = |message: &mut crate::fanout::NewMessage, to_hub: bool| {
                    let origin = Origin::Session { ip: remote };
                    w.guard.screen(std::slice::from_mut(message), origin, now).map_err(|d| d.reason)?;
                    if !to_hub {
                        return Ok(());
                    }
                    crate::engine::publish(&w.fanout, &w.stats, vec![message.clone()], now)
                };
                engine.request(Request { from, fields, path }, now, &mut publish, &mut out);
            }
            Ok(PushletIn::Shutdown { loop_id }) => engine.shutdown(loop_id, now, &mut out),
            Ok(PushletIn::Closed(conn)) => engine.closed(conn, now),
            Ok(PushletIn::Hub(HubMail::Batch(batch))) => engine.deliver(&batch, now, &mut out),
            Ok(PushletIn::Hub(_)) => {}
            Ok(PushletIn::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        engine.tick(now, &mut out);
        for (pattern, delta) in engine.take_hub_changes() {
            w.fanout.control(Control::Watch { outlet: w.outlet, pattern, delta });
        }
        // The gauge before the answers (see the Bayeux thread).
        crate::stats::set(&w.stats.engines.pushlet_subscriptions, engine.subscriptions() as u64);
        for output in out.drain(..) {
            let (to, part) = match output {
                Output::Whole { to, content_type, body } => (to, Part::Whole { content_type, body }),
                Output::Open { to, content_type, body } => (to, Part::Open { content_type, body }),
                Output::More { to, body } => (to, Part::More(body)),
                Output::End { to, body } => (to, Part::End(body)),
            };
            w.replies.reply(to, part);
        }
    }
}
