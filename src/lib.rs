//! halley: a C10K HTTP push ("Comet") gateway.
//!
//! Shape (see docs/architecture.md): a pool of event loops ([`reactor`]), each
//! owning its sockets, feeds subscribe requests and publishes to one fan-out
//! thread ([`fanout`]), which owns channels, ids and history and hands each
//! loop pre-encoded batches. [`server`] is the HTTP service the loops run;
//! [`transport`] frames messages; [`http`] parses requests. Protocol code is
//! sans-IO throughout.

pub mod auth;
pub mod backplane;
pub mod bayeux;
pub mod chunk;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod engine;
pub mod fanout;
pub mod guard;
pub mod h2;
pub mod http;
pub mod hub;
pub mod log;
pub mod pushlet;
pub mod random;
pub mod reactor;
pub mod resp;
pub mod server;
pub mod stats;
pub mod tls;
pub mod transport;
pub mod ws;
