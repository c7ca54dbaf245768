//! The hub's vocabulary: message ids, channel names and patterns, messages,
//! connection references and engine answers. Shared by the
//! fan-out thread, the transports and the event loops; no I/O here.

pub mod channel;
pub mod conn;
pub mod id;
pub mod message;
pub mod pattern;

pub use channel::{is_internal, parse_channel_list, validate_channel, ChannelError};
pub use conn::{ConnRef, Part, Replies};
pub use id::{IdGenerator, MessageId};
pub use message::{Frame, Message};
pub use pattern::Pattern;
