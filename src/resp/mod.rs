//! Sans-IO Redis protocol (RESP2) codec: request parsing ([`parse`]) and
//! reply encoding ([`reply`]).
//!
//! Nothing here touches a socket. The connection code hands in the bytes it
//! has buffered and gets back either a complete [`Command`] plus how many
//! bytes it used, a request for more bytes, or a [`ProtocolError`]; replies
//! are appended to an output `Vec<u8>`.
//!
//! Invariant for the whole module: no input can make it panic. Requests come
//! straight from untrusted clients, so indexing, `unwrap` and friends are
//! denied here (tests excepted) and every failure is a value.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod parse;
pub mod reply;

pub use parse::{parse_command, Command, Limits, Parsed, ProtocolError};
