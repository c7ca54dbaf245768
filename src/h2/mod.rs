//! Sans-IO HTTP/2 (RFC 9113), server side: the frame codec ([`frame`]),
//! header compression ([`hpack`], RFC 7541) and the connection state
//! machine ([`conn`]: settings, flow control, stream limits, floods).
//!
//! Nothing here touches a socket: the server hands in received bytes and
//! the time, and writes out the bytes it gets back. Invariant for the whole
//! module: no input can make it panic (indexing and `unwrap` are denied,
//! tests excepted); every failure is an [`H2Error`] that says what broke.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod conn;
pub mod error;
pub mod frame;
pub mod hpack;
pub mod message;

pub use conn::{Connection, Event, Limits, PREFACE};
pub use error::{ErrorCode, H2Error};
