//! The fan-out thread: the one owner of the channel table.
//!
//! Publishes arrive on a bounded queue (full means "busy": 503 / -ERR, never
//! unbounded memory); loops' subscribe and unsubscribe requests arrive on a
//! control queue. The thread assigns ids, keeps each channel's history,
//! encodes each message once per encoding that has subscribers and hands each
//! interested loop one batch per window through its mailbox, which wakes the
//! loop at most once however many messages the batch holds.

mod channel;
mod run;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::hub::{Message, MessageId};
use crate::reactor::mailbox::Mailbox;
use crate::transport::Encoding;

pub use run::spawn;

/// Settings the fan-out thread needs.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    pub history_size: usize,
    pub history_ttl: Duration,
    pub batch_window: Duration,
    pub batch_max: usize,
    pub publish_queue: usize,
    /// Receive every published batch: the Bayeux and Pushlet threads, which
    /// match subscriptions (wildcards, prefixes) themselves.
    pub taps: Vec<crossbeam_channel::Sender<Vec<Arc<Message>>>>,
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
    pub reply: Option<ReplyTo>,
}

/// A connection on a loop, waiting for an answer.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub loop_id: usize,
    pub conn: u64,
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

/// A loop asks to subscribe one connection to some channels.
#[derive(Debug)]
pub struct Subscribe {
    pub reply: ReplyTo,
    pub channels: Vec<Arc<str>>,
    pub encoding: Encoding,
    pub start: Start,
    /// Long-polls that already have something to answer (catch-up or a gap)
    /// leave at once, so registering them would only be undone.
    pub only_if_nothing_to_send: bool,
}

/// Requests from the loops, handled as they arrive (never batched).
#[derive(Debug)]
pub enum Control {
    Subscribe(Subscribe),
    /// Undoes a registered subscription (same channels and encoding).
    Unsubscribe {
        loop_id: usize,
        channels: Vec<Arc<str>>,
        encoding: Encoding,
    },
    /// Asks for one channel's counters.
    ChannelInfo {
        reply: ReplyTo,
        channel: Arc<str>,
    },
    /// Drops a channel's history and ends its subscribers' streams.
    DeleteChannel {
        reply: ReplyTo,
        channel: Arc<str>,
    },
    /// The last `n` retained messages of a channel, for a thread that is not a loop.
    History {
        channel: Arc<str>,
        n: usize,
        reply: crossbeam_channel::Sender<Vec<Arc<Message>>>,
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
}

/// The fan-out thread's answer to a subscribe.
#[derive(Debug)]
pub struct Subscribed {
    pub conn: u64,
    /// The subscription's channels and encoding, so that a loop whose
    /// connection vanished meanwhile can undo the registration.
    pub channels: Vec<Arc<str>>,
    pub encoding: Encoding,
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

/// Mail for an event loop.
#[derive(Debug)]
pub enum LoopMsg {
    /// Messages for channels with subscribers on this loop, in id order.
    Batch(Vec<Arc<Message>>),
    Subscribed(Subscribed),
    /// Acknowledgements for one `Publish`, in its order.
    Published {
        conn: u64,
        acks: Vec<PublishAck>,
    },
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
    /// A channel was deleted: end the streams of its subscribers here.
    ChannelDeleted(Arc<str>),
    /// The Bayeux thread's answer for a connection: a JSON array of messages.
    Bayeux {
        conn: u64,
        body: Vec<u8>,
    },
    /// A piece of the Pushlet thread's answer for a connection.
    Pushlet {
        conn: u64,
        part: crate::pushlet::thread::Part,
    },
    /// Stop accepting, end streams, exit.
    Shutdown,
}

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

    /// The last `n` retained messages of `channel` (empty if it answers too late).
    pub fn history(&self, channel: Arc<str>, n: usize, wait: std::time::Duration) -> Vec<Arc<Message>> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.control(Control::History { channel, n, reply });
        answer.recv_timeout(wait).unwrap_or_default()
    }

    /// Publishes waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.publish_tx.len()
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

/// The loops' mailboxes, indexed by loop id.
pub type Loops = Vec<Mailbox<LoopMsg>>;
