//! The fan-out thread: the one owner of the channel table.
//!
//! Publishes arrive on a bounded queue (full means "busy": 503 / -ERR, never
//! unbounded memory); loops' subscribe and unsubscribe requests arrive on a
//! control queue. The thread assigns ids, keeps each channel's history,
//! encodes each message once per encoding that has subscribers and hands each
//! interested loop one batch per window through its mailbox, which wakes the
//! loop at most once however many messages the batch holds.
//!
//! Whoever receives mail from the hub is an [`Outlet`]: the event loops
//! first (outlet `i` is loop `i`), then the protocol engines (Bayeux,
//! Pushlet), which subscribe to channels and patterns like any subscriber
//! and are counted like one. The hub knows no protocol and no loop type.

mod busiest;
mod channel;
mod remote;
mod run;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

pub use crate::hub::ConnRef;
use crate::hub::{Message, MessageId, Pattern};

pub use channel::Listen;
pub use run::spawn;

/// Settings the fan-out thread needs.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    pub history_size: usize,
    pub history_ttl: Duration,
    pub batch_window: Duration,
    pub batch_max: usize,
    pub publish_queue: usize,
    /// How long the thread polls for the next publish after a batch before
    /// it sleeps (see `handoff_spin_us`).
    pub spin: Duration,
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub channel: Arc<str>,
    pub event: Option<Box<str>>,
    pub data: Box<str>,
    /// Bayeux `ext` (a JSON object's text), carried to Bayeux subscribers.
    pub ext: Option<Box<str>>,
}

/// One publish request: one message, or an NDJSON batch that is queued (or
/// refused) as a whole, so a publisher never sees half a batch accepted.
#[derive(Debug)]
pub struct Publish {
    pub messages: Vec<NewMessage>,
    /// When the request arrived, for the delivery-latency histogram.
    pub received_at: std::time::Instant,
    /// Where to send the acknowledgements, if anyone waits for them.
    pub reply: Option<ConnRef>,
    /// A thread that waits for the acknowledgements itself (an engine's,
    /// with the Redis backplane: its client's answer must not claim a
    /// publish Redis has not stored, nor overtake a later publish).
    pub done: Option<crossbeam_channel::Sender<Result<Vec<PublishAck>, String>>>,
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only messages published from now on.
    Now,
    /// Every retained message after this id, then live ones.
    After(MessageId),
    /// The last N retained messages, then live ones.
    Backlog(usize),
}

/// A loop asks to subscribe one connection to some channels (or an engine
/// one of its sessions: `reply.conn` is then the engine's own tag).
#[derive(Debug)]
pub struct Subscribe {
    pub reply: ConnRef,
    /// The HTTP/2 stream the subscription is for (0: the whole connection),
    /// echoed in the answer.
    pub stream: u32,
    pub channels: Vec<Arc<str>>,
    /// What the subscriber reads: one encoding's frames, or whole messages.
    pub listen: Listen,
    pub start: Start,
    /// Long-polls that already have something to answer (catch-up or a gap)
    /// leave at once, so registering them would only be undone.
    pub only_if_nothing_to_send: bool,
}

/// Requests from the loops and engines, handled as they arrive (never batched).
#[derive(Debug)]
pub enum Control {
    Subscribe(Subscribe),
    /// Undoes a registered subscription (same outlet, channels and listen).
    Unsubscribe {
        outlet: usize,
        channels: Vec<Arc<str>>,
        listen: Listen,
    },
    /// An engine's sessions on a pattern: `delta` more (or fewer) of them.
    Watch {
        outlet: usize,
        pattern: Pattern,
        delta: i32,
    },
    /// Asks for one channel's counters.
    ChannelInfo {
        reply: ConnRef,
        channel: Arc<str>,
    },
    /// Drops a channel's history and ends its subscribers' streams.
    DeleteChannel {
        reply: ConnRef,
        channel: Arc<str>,
    },
}

/// One channel's counters, as `GET /pub/{channel}` shows them.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    pub channel: Arc<str>,
    pub subscribers: usize,
    pub peak_subscribers: usize,
    /// Messages retained in history now.
    pub retained: usize,
    /// Messages published since the channel record was created.
    pub published: u64,
    pub last_id: Option<MessageId>,
    /// Subscribers on every node (with the Redis backplane).
    pub cluster_subscribers: Option<usize>,
}

/// The fan-out thread's answer to a subscribe.
#[derive(Debug)]
pub struct Subscribed {
    pub conn: u64,
    /// The HTTP/2 stream it answers (0: the whole connection).
    pub stream: u32,
    /// The subscription's channels and listen, so that a loop whose
    /// connection vanished meanwhile can undo the registration.
    pub channels: Vec<Arc<str>>,
    pub listen: Listen,
    /// Retained messages to deliver first, in id order.
    pub catchup: Vec<Arc<Message>>,
    /// History could not prove that nothing after the resume point was dropped.
    pub gap: bool,
    /// The newest id at the moment of subscribing: a resume point that loses nothing.
    pub last_id: MessageId,
    /// Whether live messages will follow (see `only_if_nothing_to_send`).
    pub registered: bool,
}

/// What a publisher learns.
#[derive(Debug, Clone)]
pub struct PublishAck {
    pub id: MessageId,
    pub channel: Arc<str>,
    /// Subscribers the message was handed to.
    pub subscribers: usize,
}

/// The acknowledgements of one `Publish`, in its order, for one connection;
/// or why it was not stored (the Redis backplane is down): nothing of it
/// was published.
#[derive(Debug)]
pub struct Acked {
    pub conn: u64,
    pub acks: Result<Vec<PublishAck>, String>,
}

/// Mail from the hub to an outlet.
#[derive(Debug)]
pub enum HubMail {
    /// Messages for channels with subscribers behind this outlet, in id order.
    Batch(Vec<Arc<Message>>),
    Subscribed(Subscribed),
    /// Acknowledgements for every `Publish` of one batch that came from
    /// this outlet's connections: one mail (and at most one wake-up) per
    /// batch, however many publishers wait.
    Published(Vec<Acked>),
    /// The answer to `ChannelInfo`; `None` for an unknown channel.
    ChannelInfo {
        conn: u64,
        info: Option<ChannelInfo>,
    },
    /// The answer to `DeleteChannel`: subscribers it had, `None` if unknown.
    Deleted {
        conn: u64,
        channel: Arc<str>,
        subscribers: Option<usize>,
    },
    /// A channel was deleted: its subscribers behind this outlet are done.
    ChannelDeleted(Arc<str>),
    /// A channel query or delete could not be carried out (the Redis
    /// backplane is down).
    Failed {
        conn: u64,
        error: String,
    },
}

/// Where the hub's mail goes: an event loop's mailbox or an engine's inbox.
/// `send` must not block (both are unbounded queues, bounded by what feeds
/// them: one batch per outlet per round, one reply per request).
pub trait Outlet: Send {
    /// Hands `mail` over; false when the receiver has gone.
    fn send(&self, mail: HubMail) -> bool;
}

/// The outlets, indexed as [`ConnRef::loop_id`] indexes them.
pub type Outlets = Vec<Box<dyn Outlet>>;

/// The publish queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// What loops and ingest hold to talk to the fan-out thread.
#[derive(Clone)]
pub struct FanoutHandle {
    publish_tx: Sender<Publish>,
    control_tx: Sender<Control>,
}

impl FanoutHandle {
    /// Queues a publish, or says the queue is full.
    pub fn try_publish(&self, publish: Publish) -> Result<(), Busy> {
        match self.publish_tx.try_send(publish) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// Sends a control request. The control queue is unbounded because each
    /// connection has at most one subscribe and one unsubscribe in flight.
    pub fn control(&self, control: Control) {
        let _ = self.control_tx.send(control);
    }

    /// Publishes waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.publish_tx.len()
    }

    /// The publish queue's capacity.
    pub fn queue_capacity(&self) -> usize {
        self.publish_tx.capacity().unwrap_or(0)
    }
}

/// The receiving ends, owned by the fan-out thread.
struct Queues {
    publish_rx: Receiver<Publish>,
    control_rx: Receiver<Control>,
}

/// Creates the queues: the handle for producers and the receivers for the thread.
fn queues(capacity: usize) -> (FanoutHandle, Queues) {
    let (publish_tx, publish_rx) = crossbeam_channel::bounded(capacity);
    let (control_tx, control_rx) = crossbeam_channel::unbounded();
    (FanoutHandle { publish_tx, control_tx }, Queues { publish_rx, control_rx })
}
