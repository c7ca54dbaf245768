//! The fan-out thread's loop.

use std::collections::HashMap;
use std::mem;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Select, TryRecvError};

use super::channel::Channel;
use super::*;
use crate::hub::id::unix_ms;
use crate::hub::IdGenerator;

/// How often retained messages are checked against their age limit and idle
/// channel records dropped. History age is an hour by default; a second of
/// slack is invisible next to it and keeps the sweep off the hot path.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

struct Fanout {
    config: FanoutConfig,
    queues: Queues,
    loops: Loops,
    channels: HashMap<Arc<str>, Channel>,
    ids: IdGenerator,
    /// Every id at or below this may have been forgotten: ids from before this
    /// process started, and the history of channel records dropped since. A
    /// new channel record's history is complete only after this mark.
    forgotten_through: MessageId,
    /// Publishes taken from the queue, waiting for the window to close.
    pending: Vec<Publish>,
    /// Mail per loop, sent at the end of each turn.
    outbox: Vec<Vec<LoopMsg>>,
    next_flush: Instant,
    next_housekeeping: Instant,
    stats: Arc<crate::stats::Stats>,
    /// This batch's messages, for the tap.
    tapped: Vec<Arc<Message>>,
}

/// Starts the fan-out thread. It runs until every loop has dropped its handle.
pub fn spawn(
    config: FanoutConfig,
    loops: Loops,
    stats: Arc<crate::stats::Stats>,
) -> std::io::Result<(FanoutHandle, JoinHandle<()>)> {
    let (handle, queues) = queues(config.publish_queue);
    let start = MessageId::new(unix_ms(), 0);
    let now = Instant::now();
    let fanout = Fanout {
        outbox: loops.iter().map(|_| Vec::new()).collect(),
        config,
        queues,
        loops,
        channels: HashMap::new(),
        ids: IdGenerator::starting_after(start),
        forgotten_through: start,
        pending: Vec::new(),
        next_flush: now,
        next_housekeeping: now + HOUSEKEEPING_EVERY,
        stats,
        tapped: Vec::new(),
    };
    let thread = std::thread::Builder::new().name("halley-fanout".into()).spawn(move || fanout.run())?;
    Ok((handle, thread))
}

impl Fanout {
    fn run(mut self) {
        loop {
            if !self.take_control() {
                return;
            }
            self.take_publishes();
            let now = Instant::now();
            if !self.pending.is_empty() && now >= self.next_flush {
                self.publish_batch();
                self.next_flush = now + self.config.batch_window;
            }
            if now >= self.next_housekeeping {
                self.housekeep(now);
                self.next_housekeeping = now + HOUSEKEEPING_EVERY;
            }
            self.send_outbox();
            self.wait();
        }
    }

    /// Handles every queued control request. False when the loops are gone.
    fn take_control(&mut self) -> bool {
        loop {
            match self.queues.control_rx.try_recv() {
                Ok(Control::Subscribe(sub)) => self.subscribe(sub),
                Ok(Control::Unsubscribe { loop_id, channels, encoding }) => {
                    for name in channels {
                        if let Some(ch) = self.channels.get_mut(&name) {
                            ch.remove_subscriber(loop_id, encoding);
                        }
                    }
                }
                Ok(Control::ChannelInfo { reply, channel }) => {
                    let info = self.channels.get(&channel).map(|ch| ChannelInfo {
                        channel: channel.clone(),
                        subscribers: ch.subscribers,
                        peak_subscribers: ch.peak_subscribers,
                        retained: ch.retained(),
                        published: ch.published,
                        last_id: ch.last_id(),
                    });
                    self.mail(reply.loop_id, LoopMsg::ChannelInfo { conn: reply.conn, info });
                }
                Ok(Control::DeleteChannel { reply, channel }) => self.delete(reply, channel),
                Ok(Control::History { channel, n, reply }) => {
                    let messages = self.channels.get(&channel).map(|ch| ch.last(n).cloned().collect());
                    let _ = reply.send(messages.unwrap_or_default());
                }
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
    fn wait(&self) {
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
        let _ = select.ready_deadline(deadline);
    }

    fn channel(&mut self, name: &Arc<str>) -> &mut Channel {
        let loops = self.loops.len();
        let mark = self.forgotten_through;
        self.channels.entry(name.clone()).or_insert_with(|| Channel::new(loops, mark))
    }

    fn subscribe(&mut self, sub: Subscribe) {
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
        let register = !(sub.only_if_nothing_to_send && (gap || !catchup.is_empty()));
        if register {
            for name in &sub.channels {
                self.channel(name).add_subscriber(sub.reply.loop_id, sub.encoding);
            }
        }
        for m in &catchup {
            m.frame(sub.encoding);
        }
        let mut last_id = self.ids.last();
        if let Start::After(id) = sub.start {
            last_id = last_id.max(id);
        }
        let reply = Subscribed {
            conn: sub.reply.conn,
            channels: sub.channels,
            encoding: sub.encoding,
            catchup,
            gap,
            last_id,
            registered: register,
        };
        self.mail(sub.reply.loop_id, LoopMsg::Subscribed(reply));
    }

    /// Assigns ids, stores history, encodes and routes one batch.
    fn publish_batch(&mut self) {
        let batch = mem::take(&mut self.pending);
        let mut per_loop: Vec<Vec<Arc<Message>>> = vec![Vec::new(); self.loops.len()];
        let now_ms = unix_ms();
        for publish in batch {
            let at = publish.received_at;
            let acks: Vec<PublishAck> = publish
                .messages
                .into_iter()
                .map(|new| self.publish_one(new, at, now_ms, &mut per_loop))
                .collect();
            crate::stats::add(&self.stats.fanout.published, acks.len() as u64);
            if let Some(reply) = publish.reply {
                self.mail(reply.loop_id, LoopMsg::Published { conn: reply.conn, acks });
            }
        }
        for (loop_id, batch) in per_loop.into_iter().enumerate() {
            if !batch.is_empty() {
                self.mail(loop_id, LoopMsg::Batch(batch));
            }
        }
        if !self.config.taps.is_empty() {
            let batch = mem::take(&mut self.tapped);
            for tap in &self.config.taps {
                let _ = tap.send(batch.clone());
            }
        }
        crate::stats::inc(&self.stats.fanout.batches);
        crate::stats::set(&self.stats.fanout.channels, self.channels.len() as u64);
    }

    /// Gives one message its id, stores it, encodes it once for each encoding
    /// in use on its channel, and adds it to the batch of every loop that listens.
    fn publish_one(
        &mut self,
        new: NewMessage,
        received_at: Instant,
        now_ms: u64,
        per_loop: &mut [Vec<Arc<Message>>],
    ) -> PublishAck {
        let id = self.ids.next(now_ms);
        let history_size = self.config.history_size;
        let ch = self.channel(&new.channel);
        let message = Arc::new(
            Message::new(id, new.channel.clone(), new.event, new.data)
                .received(received_at)
                .with_ext(new.ext),
        );
        for (encoding, used) in Encoding::ALL.iter().zip(ch.encodings_in_use()) {
            if used {
                message.frame(*encoding);
            }
        }
        for (batch, counts) in per_loop.iter_mut().zip(&ch.per_loop) {
            if counts.iter().any(|c| *c > 0) {
                batch.push(message.clone());
            }
        }
        let subscribers = ch.subscribers;
        ch.push(message.clone(), history_size);
        if !self.config.taps.is_empty() {
            self.tapped.push(message);
        }
        PublishAck { id, channel: new.channel, subscribers }
    }

    /// Drops a channel record: its history goes, every loop with subscribers
    /// on it is told to end their streams, and a later resume from before
    /// reports a gap.
    fn delete(&mut self, reply: ReplyTo, channel: Arc<str>) {
        let removed = self.channels.remove(&channel);
        let subscribers = removed.as_ref().map(|ch| ch.subscribers);
        if let Some(ch) = removed {
            self.forgotten_through = self.forgotten_through.max(ch.high_water());
            for (loop_id, counts) in ch.per_loop.iter().enumerate() {
                if counts.iter().any(|c| *c > 0) {
                    self.mail(loop_id, LoopMsg::ChannelDeleted(channel.clone()));
                }
            }
        }
        self.mail(reply.loop_id, LoopMsg::Deleted { conn: reply.conn, channel, subscribers });
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
    }

    fn mail(&mut self, loop_id: usize, msg: LoopMsg) {
        if let Some(outbox) = self.outbox.get_mut(loop_id) {
            outbox.push(msg);
        }
    }

    /// Sends each loop its mail; the mailbox wakes a loop at most once.
    fn send_outbox(&mut self) {
        for (mailbox, outbox) in self.loops.iter().zip(self.outbox.iter_mut()) {
            for msg in outbox.drain(..) {
                mailbox.send(msg);
            }
        }
    }
}
