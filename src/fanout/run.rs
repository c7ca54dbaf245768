//! The fan-out thread's loop.

use std::collections::HashMap;
use std::mem;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Select, TryRecvError};

use super::channel::Channel;
use super::*;
use crate::clock::unix_ms;
use crate::hub::IdGenerator;
use crate::transport::Encoding;

/// How often retained messages are checked against their age limit and idle
/// channel records dropped. History age is an hour by default; a second of
/// slack is invisible next to it and keeps the sweep off the hot path.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// An engine's sessions on one pattern.
struct Watch {
    pattern: Pattern,
    outlet: usize,
    sessions: u32,
}

pub(super) struct Fanout {
    pub(super) config: FanoutConfig,
    queues: Queues,
    pub(super) outlets: Outlets,
    pub(super) channels: HashMap<Arc<str>, Channel>,
    /// Engines' pattern subscriptions. Few (one per distinct wildcard or
    /// prefix in use), so each message is checked against all of them.
    watches: Vec<Watch>,
    ids: IdGenerator,
    /// Every id at or below this may have been forgotten: ids from before this
    /// process started, and the history of channel records dropped since. A
    /// new channel record's history is complete only after this mark.
    forgotten_through: MessageId,
    /// Publishes taken from the queue, waiting for the window to close.
    pending: Vec<Publish>,
    /// Mail per outlet, sent at the end of each turn.
    outbox: Vec<Vec<HubMail>>,
    next_flush: Instant,
    next_housekeeping: Instant,
    pub(super) stats: Arc<crate::stats::Stats>,
    /// The last round published a batch: poll a little before sleeping.
    spin_after_batch: bool,
    /// The Redis backplane, when configured (see `remote.rs`).
    pub(super) remote: Option<super::remote::Remote>,
    /// The dashboard's busiest channels, ranked in housekeeping while watched.
    busiest: super::busiest::Busiest,
}

/// Starts the fan-out thread. It runs until every producer has dropped its handle.
pub fn spawn(
    config: FanoutConfig,
    outlets: Outlets,
    stats: Arc<crate::stats::Stats>,
    backplane: Option<crate::backplane::Backplane>,
) -> std::io::Result<(FanoutHandle, JoinHandle<()>)> {
    let (handle, queues) = queues(config.publish_queue);
    let outlets_len = outlets.len();
    let start = MessageId::new(unix_ms(), 0);
    let now = Instant::now();
    let fanout = Fanout {
        outbox: outlets.iter().map(|_| Vec::new()).collect(),
        config,
        queues,
        outlets,
        channels: HashMap::new(),
        watches: Vec::new(),
        ids: IdGenerator::starting_after(start),
        forgotten_through: start,
        pending: Vec::new(),
        next_flush: now,
        next_housekeeping: now + HOUSEKEEPING_EVERY,
        stats,
        spin_after_batch: false,
        remote: backplane.map(|b| super::remote::Remote::new(b, outlets_len)),
        busiest: Default::default(),
    };
    let thread = std::thread::Builder::new().name("halley-fanout".into()).spawn(move || fanout.run())?;
    Ok((handle, thread))
}

impl Fanout {
    fn run(mut self) {
        loop {
            // Publishes first, then control: a subscription sent before a
            // publish that is taken now (an engine's subscribe, answered to its
            // client before the client publishes) is registered before that
            // publish goes out.
            self.take_publishes();
            if !self.take_control() {
                return;
            }
            self.take_events();
            let now = Instant::now();
            self.spin_after_batch = false;
            if !self.pending.is_empty() && now >= self.next_flush {
                self.publish_batch();
                self.next_flush = now + self.config.batch_window;
                self.spin_after_batch = !self.config.spin.is_zero();
            }
            if now >= self.next_housekeeping {
                self.housekeep(now);
                self.heartbeat();
                self.next_housekeeping = now + HOUSEKEEPING_EVERY;
            }
            self.flush_round();
            self.send_outbox();
            self.wait();
        }
    }

    /// Handles every queued control request. False when every producer is gone.
    fn take_control(&mut self) -> bool {
        loop {
            match self.queues.control_rx.try_recv() {
                Ok(Control::Subscribe(sub)) => self.subscribe(sub),
                Ok(Control::Unsubscribe { outlet, channels, listen }) => {
                    for name in channels {
                        if let Some(ch) = self.channels.get_mut(&name) {
                            ch.remove_subscriber(outlet, listen);
                        }
                    }
                }
                Ok(Control::Watch { outlet, pattern, delta }) => self.watch(outlet, pattern, delta),
                Ok(Control::ChannelInfo { reply, channel }) if self.remote.is_some() => {
                    self.count_for(reply, channel)
                }
                Ok(Control::ChannelInfo { reply, channel }) => {
                    let info = self.local_info(&channel);
                    self.mail(reply.loop_id, HubMail::ChannelInfo { conn: reply.conn, info });
                }
                Ok(Control::DeleteChannel { reply, channel }) if self.remote.is_some() => {
                    self.delete_everywhere(reply, channel)
                }
                Ok(Control::DeleteChannel { reply, channel }) => self.delete(reply, channel),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Moves publishes from the queue into the pending batch, up to its cap.
    /// Past the cap they stay queued, so a full queue pushes back on publishers.
    fn take_publishes(&mut self) {
        while self.pending.len() < self.config.batch_max {
            match self.queues.publish_rx.try_recv() {
                Ok(p) => self.pending.push(p),
                Err(_) => return,
            }
        }
    }

    /// Sleeps until a queue has work or the next flush or sweep is due.
    fn wait(&mut self) {
        if self.spin_after_batch {
            // A sequential publisher's next publish is a round trip away:
            // polling for it is cheaper than sleeping and being woken.
            let until = Instant::now() + self.config.spin;
            while Instant::now() < until {
                let events = self.remote.as_ref().is_some_and(|r| !r.backplane.events.is_empty());
                if !self.queues.publish_rx.is_empty() || !self.queues.control_rx.is_empty() || events {
                    return;
                }
                std::hint::spin_loop();
            }
        }
        let deadline = if self.pending.is_empty() {
            self.next_housekeeping
        } else {
            self.next_flush.min(self.next_housekeeping)
        };
        let mut select = Select::new();
        select.recv(&self.queues.control_rx);
        if self.pending.len() < self.config.batch_max {
            select.recv(&self.queues.publish_rx);
        }
        if let Some(remote) = &self.remote {
            select.recv(&remote.backplane.events);
        }
        let _ = select.ready_deadline(deadline);
    }

    fn channel(&mut self, name: &Arc<str>) -> &mut Channel {
        let outlets = self.outlets.len();
        let mark = self.forgotten_through;
        self.channels.entry(name.clone()).or_insert_with(|| Channel::new(outlets, mark))
    }

    /// This node's counters for a channel; `None` if it has no record.
    pub(super) fn local_info(&mut self, channel: &Arc<str>) -> Option<ChannelInfo> {
        let watching = self.watching(channel);
        self.channels.get_mut(channel).map(|ch| {
            let subscribers = ch.subscribers + watching;
            ch.peak_subscribers = ch.peak_subscribers.max(subscribers);
            ChannelInfo {
                channel: channel.clone(),
                subscribers,
                peak_subscribers: ch.peak_subscribers,
                retained: ch.retained(),
                published: ch.published,
                last_id: ch.last_id(),
                cluster_subscribers: None,
            }
        })
    }

    /// Engine sessions whose patterns take in `channel`.
    pub(super) fn watching(&self, channel: &str) -> usize {
        self.watches.iter().filter(|w| w.pattern.matches(channel)).map(|w| w.sessions as usize).sum()
    }

    /// Whether any engine pattern is registered.
    pub(super) fn has_watches(&self) -> bool {
        !self.watches.is_empty()
    }

    fn watch(&mut self, outlet: usize, pattern: Pattern, delta: i32) {
        if delta > 0 {
            self.want_wild();
        }
        let found = self.watches.iter().position(|w| w.outlet == outlet && w.pattern == pattern);
        let i = match found {
            Some(i) => i,
            None if delta > 0 => {
                self.watches.push(Watch { pattern, outlet, sessions: 0 });
                self.watches.len() - 1
            }
            None => return,
        };
        let watch = &mut self.watches[i];
        watch.sessions = watch.sessions.saturating_add_signed(delta);
        if watch.sessions == 0 {
            self.watches.swap_remove(i);
        }
    }

    fn subscribe(&mut self, sub: Subscribe) {
        if self.remote.is_some() {
            return self.fetch_for(sub);
        }
        let mut catchup: Vec<Arc<Message>> = Vec::new();
        let mut gap = false;
        for name in &sub.channels {
            let ch = self.channel(name);
            match sub.start {
                Start::Now => {}
                Start::After(id) => {
                    let (messages, missing) = ch.after(id);
                    catchup.extend(messages.cloned());
                    gap |= missing;
                }
                Start::Backlog(n) => catchup.extend(ch.last(n).cloned()),
            }
        }
        catchup.sort_unstable_by_key(|m| m.id);
        if let Start::Backlog(n) = sub.start {
            catchup.drain(..catchup.len().saturating_sub(n));
        }
        let last_id = self.ids.last();
        self.register_and_answer(sub, catchup, gap, last_id);
    }

    /// The one step of a subscribe: register (unless a poll that has
    /// something to answer would only undo it) and answer with the catch-up,
    /// on the same mailbox as the batches that follow.
    pub(super) fn register_and_answer(
        &mut self,
        sub: Subscribe,
        catchup: Vec<Arc<Message>>,
        gap: bool,
        newest: MessageId,
    ) {
        let register = !(sub.only_if_nothing_to_send && (gap || !catchup.is_empty()));
        if register {
            for name in &sub.channels {
                self.channel(name).add_subscriber(sub.reply.loop_id, sub.listen);
            }
        }
        if let Listen::Frames(encoding) = sub.listen {
            for m in &catchup {
                m.frame(encoding);
            }
        }
        let mut last_id = newest;
        if let Start::After(id) = sub.start {
            last_id = last_id.max(id);
        }
        let reply = Subscribed {
            conn: sub.reply.conn,
            stream: sub.stream,
            channels: sub.channels,
            listen: sub.listen,
            catchup,
            gap,
            last_id,
            registered: register,
        };
        self.mail(sub.reply.loop_id, HubMail::Subscribed(reply));
    }

    /// Assigns ids, stores history, encodes and routes one batch.
    fn publish_batch(&mut self) {
        let batch = mem::take(&mut self.pending);
        if self.remote.is_some() {
            return self.store_batch(batch);
        }
        let mut per_outlet: Vec<Vec<Arc<Message>>> = vec![Vec::new(); self.outlets.len()];
        let mut acked: Vec<Vec<Acked>> = (0..self.outlets.len()).map(|_| Vec::new()).collect();
        let now_ms = unix_ms();
        for publish in batch {
            let at = publish.received_at;
            let acks: Vec<PublishAck> = publish
                .messages
                .into_iter()
                .map(|new| self.publish_one(new, at, now_ms, &mut per_outlet))
                .collect();
            crate::stats::add(&self.stats.fanout.published, acks.len() as u64);
            if let Some(done) = &publish.done {
                let _ = done.try_send(Ok(acks.clone()));
            }
            if let Some(list) =
                publish.reply.and_then(|reply| acked.get_mut(reply.loop_id).map(|l| (l, reply)))
            {
                list.0.push(Acked { conn: list.1.conn, acks: Ok(acks) });
            }
        }
        // Acks before messages: a loop answers its publishers first, then
        // writes the batch, so a publisher's answer never waits behind a big
        // fan-out (the message is already in history and the batch already
        // mailed: a subscriber that connects after the answer still gets it).
        for (outlet, (batch, acked)) in per_outlet.into_iter().zip(acked).enumerate() {
            if !acked.is_empty() {
                self.mail(outlet, HubMail::Published(acked));
            }
            if !batch.is_empty() {
                self.mail(outlet, HubMail::Batch(batch));
            }
        }
        crate::stats::inc(&self.stats.fanout.batches);
        crate::stats::set(&self.stats.fanout.channels, self.channels.len() as u64);
    }

    /// Gives one message its id and takes it in (see [`Fanout::admit`]).
    fn publish_one(
        &mut self,
        new: NewMessage,
        received_at: Instant,
        now_ms: u64,
        per_outlet: &mut [Vec<Arc<Message>>],
    ) -> PublishAck {
        let id = self.ids.next(now_ms);
        let channel = new.channel.clone();
        let message = Arc::new(
            Message::new(id, new.channel, new.event, new.data).received(received_at).with_ext(new.ext),
        );
        let subscribers = self.admit(message, per_outlet);
        PublishAck { id, channel, subscribers }
    }

    /// Stores a message in its channel's history, encodes it once for each
    /// encoding in use on the channel, and adds it to the batch of every
    /// outlet that listens: on the channel itself, or through an engine's
    /// pattern. Returns how many subscribers it reaches.
    pub(super) fn admit(&mut self, message: Arc<Message>, per_outlet: &mut [Vec<Arc<Message>>]) -> usize {
        let history_size = self.config.history_size;
        let (outlets, mark) = (self.outlets.len(), self.forgotten_through);
        let name = message.channel.clone();
        let ch = self.channels.entry(name.clone()).or_insert_with(|| Channel::new(outlets, mark));
        for (encoding, used) in Encoding::ALL.iter().zip(ch.encodings_in_use()) {
            if used {
                message.frame(*encoding);
            }
        }
        for (outlet, batch) in per_outlet.iter_mut().enumerate() {
            if ch.reaches(outlet) {
                batch.push(message.clone());
            }
        }
        let mut watching = 0;
        for w in self.watches.iter().filter(|w| w.pattern.matches(&name)) {
            watching += w.sessions as usize;
            if let Some(batch) = per_outlet.get_mut(w.outlet) {
                // Once per outlet, however many of its patterns match.
                if batch.last().is_none_or(|m| m.id != message.id) {
                    batch.push(message.clone());
                }
            }
        }
        let subscribers = ch.subscribers + watching;
        ch.peak_subscribers = ch.peak_subscribers.max(subscribers);
        ch.push(message, history_size);
        subscribers
    }

    /// Drops a channel record: its history goes, every outlet with
    /// connections on it is told to end them, and a later resume from before
    /// reports a gap. Engine sessions (whole-message listeners) stay
    /// subscribed on a fresh record, as a stream's client would after it
    /// reconnects; they are counted in the answer.
    pub(super) fn delete(&mut self, reply: ConnRef, channel: Arc<str>) {
        let watching = self.watching(&channel);
        let removed = self.channels.remove(&channel);
        let subscribers = removed.as_ref().map(|ch| ch.subscribers + watching);
        if let Some(ch) = removed {
            self.forgotten_through = self.forgotten_through.max(ch.high_water());
            for outlet in 0..self.outlets.len() {
                if ch.frames_reach(outlet) {
                    self.mail(outlet, HubMail::ChannelDeleted(channel.clone()));
                }
            }
            if let Some(kept) = ch.carry_over(self.forgotten_through) {
                self.channels.insert(channel.clone(), kept);
            }
        }
        self.mail(reply.loop_id, HubMail::Deleted { conn: reply.conn, channel, subscribers });
    }

    fn housekeep(&mut self, now: Instant) {
        let ttl = self.config.history_ttl;
        let mut forgotten = self.forgotten_through;
        self.channels.retain(|_, ch| {
            ch.expire(now, ttl);
            let keep = !ch.is_idle();
            if !keep {
                forgotten = forgotten.max(ch.high_water());
            }
            keep
        });
        self.forgotten_through = forgotten;
        crate::stats::set(&self.stats.fanout.channels, self.channels.len() as u64);
        let retained: usize = self.channels.values().map(Channel::retained).sum();
        crate::stats::set(&self.stats.fanout.retained, retained as u64);
        self.busiest.look(&self.channels, &self.stats, now);
    }

    pub(super) fn mail(&mut self, outlet: usize, msg: HubMail) {
        if let Some(outbox) = self.outbox.get_mut(outlet) {
            outbox.push(msg);
        }
    }

    /// Sends each outlet its mail; a loop's mailbox wakes it at most once.
    fn send_outbox(&mut self) {
        for (outlet, outbox) in self.outlets.iter().zip(self.outbox.iter_mut()) {
            for msg in outbox.drain(..) {
                outlet.send(msg);
            }
        }
    }
}
