//! Sans-IO WebSocket (RFC 6455), server side: the opening handshake
//! ([`handshake`]), the frame codec ([`frame`]) and message assembly
//! ([`assemble`]).
//!
//! Nothing here touches a socket. The connection code hands in request
//! headers or received bytes and writes out the bytes it gets back, so every
//! protocol rule (masking, lengths, close codes, UTF-8) is testable without a
//! network.
//!
//! Invariant for the whole module: no input can make it panic. Frames come
//! straight from untrusted clients, so indexing, `unwrap` and friends are
//! denied here (tests excepted) and every failure is a value: an
//! [`UpgradeError`] before the switch, a [`WsError`] (with the close code to
//! send) after it.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod assemble;
pub mod frame;
pub mod handshake;

pub use assemble::{Assembler, Event};
pub use frame::{
    close_frame, decode, encode_frame, text_header, Decoded, Frame, Opcode, WsError, MAX_FRAME_PAYLOAD,
};
pub use handshake::{accept_key, check_connect, check_upgrade, response_head, Opening, UpgradeError};
