//! Bayeux 1.0 (CometD): the protocol on `/bayeux`, served from the same hub,
//! channels and ids as every other transport. Channel rules and message
//! parsing are pure (`channel`, `message`); sessions live in a state machine
//! (`engine`) that one Bayeux thread runs (`thread`).

pub mod channel;
pub mod engine;
pub mod message;
pub mod thread;
