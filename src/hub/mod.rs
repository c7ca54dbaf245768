//! The hub's vocabulary: message ids, channel names and messages. Shared by the
//! fan-out thread, the transports and the event loops; no I/O here.

pub mod channel;
pub mod id;
pub mod message;

pub use channel::{parse_channel_list, validate_channel, ChannelError};
pub use id::{IdGenerator, MessageId};
pub use message::{Frame, Message};
