//! The fan-out thread with the Redis backplane: publishes are stored and
//! announced by Redis (which assigns their ids), every message reaches this
//! node as an announcement, and history comes from the streams. The rest of
//! the fan-out (channels, encoding, routing, one batch per outlet) is the
//! same as without it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::run::Fanout;
use super::*;
use crate::backplane::{Backplane, ChannelFacts, Event, Job, Range, StoreItem, Stored, Watch};

/// The backplane and what the fan-out waits for from it, by job tag.
pub struct Remote {
    pub backplane: Backplane,
    next_tag: u64,
    /// Publishes being stored: who waits for each, and its channels.
    storing: HashMap<u64, Vec<Waiting>>,
    /// History being read: for a subscribe, or to catch up after the
    /// listener was down.
    fetching: HashMap<u64, Fetching>,
    counting: HashMap<u64, (ConnRef, Arc<str>)>,
    deleting: HashMap<u64, (ConnRef, Arc<str>, usize)>,
    /// Channels catching up after a reconnect: announcements that arrive
    /// meanwhile wait here, so nothing is delivered out of order.
    resyncing: HashMap<Arc<str>, Vec<Stored>>,
    /// The newest id announced to this node (the resume point a fresh
    /// subscriber gets), and its value when the listener went down.
    last_seen: MessageId,
    last_seen_at_down: Option<MessageId>,
    /// Messages taken in this turn, per outlet: one batch each per turn.
    round: Vec<Vec<Arc<Message>>>,
    /// A catch-up that failed (the command connection was not back yet):
    /// tried again each second until it succeeds; its channels keep holding
    /// their announcements meanwhile.
    retry_resync: Option<Vec<(Arc<str>, Range)>>,
    /// Redis Cluster (sharded pub/sub): the channels whose announcements the
    /// listener confirmed it receives, those asked for and not yet
    /// confirmed, and the subscribes waiting for them. A subscribe is
    /// answered only once all its channels are confirmed, so no message
    /// published after the answer can miss this node.
    watched: HashSet<Arc<str>>,
    asked: HashSet<Arc<str>>,
    parked: Vec<Subscribe>,
    /// Redis Cluster: whether the wildcard feed was asked for (this node has
    /// engine patterns).
    wild: bool,
    /// Redis Cluster: channels for which a second feed just started (see
    /// `Handover`).
    handovers: HashMap<Arc<str>, Handover>,
}

/// Which feed an announcement came on (Redis Cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Shard,
    Wild,
}

/// A channel on which a second feed just started while the other one may
/// still carry older messages of it: the new feed's messages wait until the
/// old feed has brought one at or past the first of them (then it has
/// brought everything below it, in order), or until `HANDOVER_WAIT` has
/// passed (the old feed is down or quiet). Without this, the new feed's
/// first message could be taken before older ones still on the old feed,
/// and those would then be dropped as already had.
struct Handover {
    newer: Feed,
    held: Vec<Stored>,
    since: Instant,
}

/// How long a handover may hold a channel's messages: well above a
/// cluster-bus hop, and checked once a heartbeat (so up to twice this).
const HANDOVER_WAIT: Duration = Duration::from_secs(1);

/// One publish being stored: who waits for its answer, and its channels.
struct Waiting {
    reply: Option<ConnRef>,
    done: Option<crossbeam_channel::Sender<Result<Vec<PublishAck>, String>>>,
    channels: Vec<Arc<str>>,
}

enum Fetching {
    Subscribe(Subscribe),
    Resync(Vec<(Arc<str>, Range)>),
}

impl Remote {
    pub fn new(backplane: Backplane, outlets: usize) -> Remote {
        Remote {
            backplane,
            next_tag: 0,
            storing: HashMap::new(),
            fetching: HashMap::new(),
            counting: HashMap::new(),
            deleting: HashMap::new(),
            resyncing: HashMap::new(),
            last_seen: MessageId::ZERO,
            last_seen_at_down: None,
            round: vec![Vec::new(); outlets],
            retry_resync: None,
            watched: HashSet::new(),
            asked: HashSet::new(),
            parked: Vec::new(),
            wild: false,
            handovers: HashMap::new(),
        }
    }

    fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }
}

/// A message as the hub keeps it, from what Redis holds. Its delivery
/// latency is measured from the time in its id.
fn message_of(stored: &Stored) -> Arc<Message> {
    let age = crate::clock::unix_ms().saturating_sub(stored.id.ms);
    let received = Instant::now().checked_sub(Duration::from_millis(age)).unwrap_or_else(Instant::now);
    Arc::new(
        Message::new(stored.id, stored.channel.clone(), stored.event.clone(), stored.data.clone())
            .received(received)
            .with_ext(stored.ext.clone()),
    )
}

impl Fanout {
    /// Hands the pending publishes to Redis; their answers wait for `Stored`.
    pub(super) fn store_batch(&mut self, batch: Vec<Publish>) {
        let Some(remote) = self.remote.as_mut() else { return };
        let mut items = Vec::new();
        let mut waiting = Vec::with_capacity(batch.len());
        for publish in batch {
            let channels = publish.messages.iter().map(|m| m.channel.clone()).collect();
            items.extend(publish.messages.into_iter().map(|m| StoreItem {
                channel: m.channel,
                data: m.data,
                event: m.event,
                ext: m.ext,
            }));
            waiting.push(Waiting { reply: publish.reply, done: publish.done, channels });
        }
        let tag = remote.tag();
        remote.storing.insert(tag, waiting);
        remote.backplane.send(Job::Store { tag, items });
    }

    /// Everything the backplane has said since the last turn.
    pub(super) fn take_events(&mut self) {
        loop {
            let Some(event) = self.remote.as_ref().and_then(|r| r.backplane.events.try_recv().ok()) else {
                return;
            };
            self.on_event(event);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            // Both feeds, the same way: see `take_in` for why a message on
            // both comes once, and `Handover` for when a feed starts.
            Event::Message(stored) => self.fed(Feed::Shard, stored),
            Event::Wild(stored) => self.fed(Feed::Wild, stored),
            Event::WildUp => {
                // Channels already received by their shards now come on the
                // wildcard feed too.
                let Some(remote) = self.remote.as_mut() else { return };
                let channels: Vec<Arc<str>> = remote.watched.iter().cloned().collect();
                for channel in channels {
                    self.hand_over(channel, Feed::Wild);
                }
            }
            Event::Stored { tag, result } => self.stored(tag, result),
            Event::Fetched { tag, result } => self.fetched(tag, result),
            Event::Counted { tag, result } => self.counted(tag, result),
            Event::DeleteDone { tag, result } => {
                let Some((reply, channel, subscribers)) =
                    self.remote.as_mut().and_then(|r| r.deleting.remove(&tag))
                else {
                    return;
                };
                let mail = match result {
                    Ok(()) => HubMail::Deleted { conn: reply.conn, channel, subscribers: Some(subscribers) },
                    Err(error) => HubMail::Failed { conn: reply.conn, error },
                };
                self.mail(reply.loop_id, mail);
            }
            Event::Deleted(channel) => {
                // Every node ends its subscribers' streams; the stream in
                // Redis remembers what it dropped, for later gaps.
                let placeholder = ConnRef { loop_id: usize::MAX, conn: 0, stream: 0 };
                self.delete(placeholder, channel);
            }
            Event::ListenerDown => {
                if let Some(remote) = self.remote.as_mut() {
                    remote.last_seen_at_down.get_or_insert(remote.last_seen);
                }
            }
            Event::Resubscribed => self.resync(None),
            Event::ShardResubscribed(channels) => {
                let only: HashSet<Arc<str>> = channels.into_iter().collect();
                self.resync(Some(&only))
            }
            Event::Watching(channel) => self.watching_confirmed(channel),
        }
    }

    /// Redis Cluster: parks a subscribe until the listener receives every
    /// channel of it (asking for those it does not yet). False when the
    /// subscribe can go on now (or on one Redis).
    fn park_unwatched(&mut self, sub: Subscribe) -> Option<Subscribe> {
        let Some(remote) = self.remote.as_mut() else { return Some(sub) };
        let Some(watch) = &remote.backplane.watch else { return Some(sub) };
        let mut missing = false;
        for channel in &sub.channels {
            if remote.watched.contains(channel) {
                continue;
            }
            missing = true;
            if remote.asked.insert(channel.clone()) {
                let _ = watch.send(Watch::Add(channel.clone()));
            }
        }
        if !missing {
            return Some(sub);
        }
        remote.parked.push(sub);
        None
    }

    /// The listener receives a channel's announcements now: the subscribes
    /// that waited only for it go on.
    fn watching_confirmed(&mut self, channel: Arc<str>) {
        let Some(remote) = self.remote.as_mut() else { return };
        remote.asked.remove(&channel);
        if remote.watched.insert(channel.clone()) && remote.wild {
            // It may already come on the wildcard feed.
            self.hand_over(channel, Feed::Shard);
        }
        let Some(remote) = self.remote.as_mut() else { return };
        let watched = &remote.watched;
        let (ready, waiting): (Vec<Subscribe>, Vec<Subscribe>) = std::mem::take(&mut remote.parked)
            .into_iter()
            .partition(|sub| sub.channels.iter().all(|c| watched.contains(c)));
        remote.parked = waiting;
        for sub in ready {
            self.fetch_for(sub);
        }
    }

    /// Redis Cluster: stops receiving channels nobody here needs any more
    /// (no subscriber, no engine pattern taking it in, no parked subscribe).
    fn unwatch_idle(&mut self) {
        let Some(remote) = self.remote.as_ref() else { return };
        if remote.backplane.watch.is_none() {
            return;
        }
        let idle: Vec<Arc<str>> = remote
            .watched
            .iter()
            .filter(|c| self.channels.get(*c).map_or(0, |ch| ch.subscribers) == 0)
            .filter(|c| self.watching(c) == 0)
            .filter(|c| !remote.parked.iter().any(|sub| sub.channels.contains(*c)))
            .cloned()
            .collect();
        let patterns = self.has_watches();
        let Some(remote) = self.remote.as_mut() else { return };
        let Some(watch) = &remote.backplane.watch else { return };
        for channel in &idle {
            remote.watched.remove(channel);
            let _ = watch.send(Watch::Remove(channel.clone()));
        }
        // The wildcard feed goes with the last engine pattern, at the next
        // heartbeat (as a channel does): a node whose engines have no
        // wildcard subscription is not sent every message of the cluster.
        if remote.wild && !patterns {
            remote.wild = false;
            let _ = watch.send(Watch::Wild(false));
        }
        let ended: Vec<Arc<str>> = remote
            .handovers
            .iter()
            .filter(|(c, h)| idle.contains(*c) || !remote.wild || h.since.elapsed() >= HANDOVER_WAIT)
            .map(|(c, _)| c.clone())
            .collect();
        for channel in ended {
            self.end_handover(&channel);
        }
    }

    /// A second feed starts for a channel: hold its messages (`Handover`).
    /// Not for channels the wildcard feed never carries (internal ones).
    fn hand_over(&mut self, channel: Arc<str>, newer: Feed) {
        let Some(remote) = self.remote.as_mut() else { return };
        if !crate::backplane::keys::wild(&channel) {
            return;
        }
        remote.handovers.entry(channel).or_insert_with(|| Handover {
            newer,
            held: Vec::new(),
            since: Instant::now(),
        });
    }

    /// An announcement from one feed; held while the channel is handed over
    /// and this is the newer feed.
    fn fed(&mut self, feed: Feed, stored: Stored) {
        let Some(remote) = self.remote.as_mut() else { return };
        if remote.handovers.is_empty() {
            return self.announced(stored);
        }
        let Some(handover) = remote.handovers.get_mut(&stored.channel) else { return self.announced(stored) };
        if feed == handover.newer {
            handover.held.push(stored);
            return;
        }
        let passed = handover.held.first().is_some_and(|first| stored.id >= first.id);
        let channel = stored.channel.clone();
        self.announced(stored);
        if passed {
            self.end_handover(&channel);
        }
    }

    /// Both feeds are complete for the channel from here: what was held is
    /// taken in (in its feed's order; what the other feed brought is
    /// dropped as already had).
    fn end_handover(&mut self, channel: &Arc<str>) {
        let Some(handover) = self.remote.as_mut().and_then(|r| r.handovers.remove(channel)) else { return };
        for stored in handover.held {
            self.announced(stored);
        }
    }

    /// Redis Cluster: asks for the wildcard feed when the first engine
    /// pattern arrives.
    pub(super) fn want_wild(&mut self) {
        let counts = self.local_counts();
        let Some(remote) = self.remote.as_mut() else { return };
        let Some(watch) = &remote.backplane.watch else { return };
        if !remote.wild {
            remote.wild = true;
            let _ = watch.send(Watch::Wild(true));
            // A heartbeat now rather than within the second: it tells the
            // other nodes to put their publishes on the wildcard feed.
            remote.backplane.send(Job::Heartbeat { counts, wild: true });
        }
    }

    /// An announced message: taken in, unless this node already has it (a
    /// catch-up and an announcement may both bring it) or nobody here wants it.
    fn announced(&mut self, stored: Stored) {
        if stored.id == MessageId::ZERO {
            return;
        }
        let Some(remote) = self.remote.as_mut() else { return };
        remote.last_seen = remote.last_seen.max(stored.id);
        if let Some(waiting) = remote.resyncing.get_mut(&stored.channel) {
            waiting.push(stored);
            return;
        }
        self.take_in(&stored);
    }

    /// Takes a message in unless this node already has it. On a Redis
    /// Cluster a channel can reach this node on two feeds: by sharded
    /// pub/sub (it has subscribers or a parked subscribe here) and by the
    /// wildcard feed (this node has engine patterns); a catch-up read is a
    /// third source. Each feed brings a channel's messages in the order of
    /// their ids (ids increase per channel in store order, and a feed is one
    /// connection, read in order), so while both feeds are subscribed, the
    /// first arrival of an id comes after every lower id arrived on the same
    /// feed: taking only ids above the channel's last loses nothing and
    /// doubles nothing. That needs both feeds subscribed over the span: when
    /// one starts for a channel while the other may still carry older
    /// messages of it, the new feed's messages wait (`Handover`) until the
    /// old feed has passed the first of them, so none can overtake an older
    /// one and have it dropped. A channel known only through the wildcard
    /// feed gets a record when its first message is taken in (`admit`), so
    /// its ids are checked against that record's last one like any other's.
    fn take_in(&mut self, stored: &Stored) {
        let known = self.channels.get(&stored.channel);
        let watched = self.watching(&stored.channel) > 0;
        if known.is_none() && !watched {
            return;
        }
        if known.and_then(|ch| ch.last_id()).is_some_and(|last| stored.id <= last) {
            return;
        }
        let Some(mut round) = self.remote.as_mut().map(|r| std::mem::take(&mut r.round)) else { return };
        self.admit(message_of(stored), &mut round);
        if let Some(remote) = self.remote.as_mut() {
            remote.round = round;
        }
    }

    /// Mails each outlet what this turn took in: one batch each.
    pub(super) fn flush_round(&mut self) {
        let Some(remote) = self.remote.as_mut() else { return };
        let round: Vec<Vec<Arc<Message>>> = remote.round.iter_mut().map(std::mem::take).collect();
        for (outlet, batch) in round.into_iter().enumerate() {
            if !batch.is_empty() {
                self.mail(outlet, HubMail::Batch(batch));
            }
        }
    }

    /// Redis stored a batch: its publishers learn their ids, or that it
    /// failed (nothing of it was published).
    fn stored(&mut self, tag: u64, result: Result<Vec<MessageId>, String>) {
        let Some(waiting) = self.remote.as_mut().and_then(|r| r.storing.remove(&tag)) else { return };
        let mut ids = match &result {
            Ok(ids) => ids.iter(),
            Err(_) => [].iter(),
        };
        let mut acked: Vec<Vec<Acked>> = (0..self.outlets.len()).map(|_| Vec::new()).collect();
        for Waiting { reply, done, channels } in waiting {
            let acks = match &result {
                Ok(_) => {
                    let acks: Vec<PublishAck> = channels
                        .into_iter()
                        .zip(ids.by_ref())
                        .map(|(channel, id)| {
                            let subscribers = self.channels.get(&channel).map_or(0, |ch| ch.subscribers)
                                + self.watching(&channel);
                            PublishAck { id: *id, channel, subscribers }
                        })
                        .collect();
                    crate::stats::add(&self.stats.fanout.published, acks.len() as u64);
                    Ok(acks)
                }
                Err(e) => Err(e.clone()),
            };
            if let Some(done) = done {
                let _ = done.try_send(acks.clone());
            }
            if let Some(reply) = reply {
                if let Some(list) = acked.get_mut(reply.loop_id) {
                    list.push(Acked { conn: reply.conn, acks });
                }
            }
        }
        for (outlet, list) in acked.into_iter().enumerate() {
            if !list.is_empty() {
                self.mail(outlet, HubMail::Published(list));
            }
        }
    }

    /// A subscribe that resumes or asks for a backlog reads history from
    /// Redis first; `fetched` then registers it and answers, in one step.
    pub(super) fn fetch_for(&mut self, sub: Subscribe) {
        let Some(sub) = self.park_unwatched(sub) else { return };
        let range = match sub.start {
            Start::After(id) => Range::After(id),
            Start::Backlog(n) => Range::Last(n),
            Start::Now => return self.subscribe_now(sub),
        };
        let Some(remote) = self.remote.as_mut() else { return };
        let channels = sub.channels.iter().map(|c| (c.clone(), range)).collect();
        let tag = remote.tag();
        remote.fetching.insert(tag, Fetching::Subscribe(sub));
        remote.backplane.send(Job::Fetch { tag, channels });
    }

    fn subscribe_now(&mut self, sub: Subscribe) {
        let last = self.remote.as_ref().map_or(MessageId::ZERO, |r| r.last_seen);
        self.register_and_answer(sub, Vec::new(), false, last);
    }

    fn fetched(&mut self, tag: u64, result: Result<Vec<(Vec<Stored>, bool)>, String>) {
        let Some(fetching) = self.remote.as_mut().and_then(|r| r.fetching.remove(&tag)) else { return };
        match fetching {
            Fetching::Subscribe(sub) => self.answer_fetched(sub, result),
            Fetching::Resync(channels) => self.caught_up(channels, result),
        }
    }

    /// Merges what Redis held with what arrived here since (announcements
    /// after the read), registers the subscriber and answers it.
    fn answer_fetched(&mut self, sub: Subscribe, result: Result<Vec<(Vec<Stored>, bool)>, String>) {
        let after = match sub.start {
            Start::After(id) => id,
            _ => MessageId::ZERO,
        };
        let mut catchup: Vec<Arc<Message>> = Vec::new();
        let mut gap = false;
        match result {
            Ok(per_channel) => {
                for (name, (entries, missing)) in sub.channels.iter().zip(per_channel) {
                    gap |= missing;
                    let read_through = entries.last().map_or(after, |e| e.id);
                    catchup.extend(entries.iter().map(message_of));
                    if let Some(ch) = self.channels.get(name) {
                        catchup.extend(ch.after(read_through.max(after)).0.cloned());
                    }
                }
            }
            Err(e) => {
                // Redis cannot be read: what this node holds, flagged as a
                // possible gap so the client knows it may have missed some.
                crate::log::warn(format_args!("backplane: history for a subscriber: {e}"));
                gap = true;
                for name in &sub.channels {
                    if let Some(ch) = self.channels.get(name) {
                        catchup.extend(ch.after(after).0.cloned());
                    }
                }
            }
        }
        catchup.sort_unstable_by_key(|m| m.id);
        catchup.dedup_by_key(|m| m.id);
        if let Start::Backlog(n) = sub.start {
            catchup.drain(..catchup.len().saturating_sub(n));
        }
        let last = self.remote.as_ref().map_or(MessageId::ZERO, |r| r.last_seen).max(after);
        self.register_and_answer(sub, catchup, gap, last);
    }

    /// The listener is back: every channel with subscribers here (or those
    /// of `only`: one cluster master's) reads what it missed, and holds
    /// announcements until then.
    fn resync(&mut self, only: Option<&HashSet<Arc<str>>>) {
        let Some(remote) = self.remote.as_mut() else { return };
        let floor = remote.last_seen_at_down.take().unwrap_or(remote.last_seen);
        let channels: Vec<(Arc<str>, Range)> = self
            .channels
            .iter()
            .filter(|(name, ch)| ch.subscribers > 0 && only.is_none_or(|only| only.contains(*name)))
            .map(|(name, ch)| (name.clone(), Range::After(ch.last_id().unwrap_or(floor))))
            .collect();
        if channels.is_empty() {
            return;
        }
        crate::log::info(format_args!("backplane: catching up {} channels", channels.len()));
        let Some(remote) = self.remote.as_mut() else { return };
        for (name, _) in &channels {
            remote.resyncing.entry(name.clone()).or_default();
        }
        let tag = remote.tag();
        remote.fetching.insert(tag, Fetching::Resync(channels.clone()));
        remote.backplane.send(Job::Fetch { tag, channels });
    }

    fn caught_up(
        &mut self,
        channels: Vec<(Arc<str>, Range)>,
        result: Result<Vec<(Vec<Stored>, bool)>, String>,
    ) {
        let fetched = match result {
            Ok(per_channel) => per_channel,
            Err(e) => {
                // Most likely the command connection is not back yet: keep
                // holding the announcements and try again in a second.
                crate::log::warn(format_args!("backplane: catch-up failed, retrying: {e}"));
                if let Some(remote) = self.remote.as_mut() {
                    remote.retry_resync = Some(channels);
                }
                return;
            }
        };
        for ((name, _), (mut entries, _)) in channels.into_iter().zip(fetched) {
            let waiting = self.remote.as_mut().and_then(|r| r.resyncing.remove(&name)).unwrap_or_default();
            entries.extend(waiting);
            entries.sort_by_key(|e| e.id);
            for entry in &entries {
                self.take_in(entry);
            }
        }
    }

    /// `GET /pub/{channel}`: this node's record and Redis' facts.
    pub(super) fn count_for(&mut self, reply: ConnRef, channel: Arc<str>) {
        let Some(remote) = self.remote.as_mut() else { return };
        let tag = remote.tag();
        remote.counting.insert(tag, (reply, channel.clone()));
        remote.backplane.send(Job::Count { tag, channel });
    }

    fn counted(&mut self, tag: u64, result: Result<ChannelFacts, String>) {
        let Some((reply, channel)) = self.remote.as_mut().and_then(|r| r.counting.remove(&tag)) else {
            return;
        };
        let local = self.local_info(&channel);
        let info = match result {
            Ok(facts) if local.is_some() || facts.exists => {
                let mut info = local.unwrap_or(ChannelInfo {
                    channel: channel.clone(),
                    subscribers: 0,
                    peak_subscribers: 0,
                    retained: 0,
                    published: 0,
                    last_id: None,
                    cluster_subscribers: None,
                });
                info.retained = facts.retained;
                info.last_id = facts.last_id.or(info.last_id);
                info.cluster_subscribers = Some(facts.cluster_subscribers);
                Some(info)
            }
            Ok(_) => None,
            Err(error) => return self.mail(reply.loop_id, HubMail::Failed { conn: reply.conn, error }),
        };
        self.mail(reply.loop_id, HubMail::ChannelInfo { conn: reply.conn, info });
    }

    /// `DELETE /pub/{channel}`: emptied in Redis and announced; every node
    /// (this one too) ends its subscribers' streams when it hears it.
    pub(super) fn delete_everywhere(&mut self, reply: ConnRef, channel: Arc<str>) {
        let subscribers =
            self.channels.get(&channel).map_or(0, |ch| ch.subscribers) + self.watching(&channel);
        let Some(remote) = self.remote.as_mut() else { return };
        let tag = remote.tag();
        remote.deleting.insert(tag, (reply, channel.clone(), subscribers));
        remote.backplane.send(Job::Delete { tag, channel });
    }

    /// Subscribers per channel on this node.
    fn local_counts(&self) -> Vec<(Arc<str>, usize)> {
        self.channels
            .iter()
            .filter(|(_, ch)| ch.subscribers > 0)
            .map(|(name, ch)| (name.clone(), ch.subscribers))
            .collect()
    }

    /// This node's subscriber counts, for the cluster-wide sums.
    pub(super) fn heartbeat(&mut self) {
        let counts = self.local_counts();
        self.unwatch_idle();
        let Some(remote) = self.remote.as_mut() else { return };
        let wild = remote.wild;
        remote.backplane.send(Job::Heartbeat { counts, wild });
        if let Some(channels) = remote.retry_resync.take() {
            let tag = remote.tag();
            remote.fetching.insert(tag, Fetching::Resync(channels.clone()));
            remote.backplane.send(Job::Fetch { tag, channels });
        }
    }
}
