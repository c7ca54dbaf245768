//! The HTTP service the event loops run, and the start-up that wires loops,
//! listeners, the fan-out thread and the protocol engines together.
//!
//! A connection's phase is its installed handler (`conn.rs`): one file per
//! kind of connection, each with the same callbacks.

mod admission;
mod bayeux_held;
mod conn;
pub mod cors;
mod h2_conn;
mod h2_stream;
mod h2_ws;
mod http_conn;
mod index;
pub mod mail;
mod pipeline;
mod poll_conn;
mod pushlet_conn;
pub mod report;
mod resp_conn;
mod respond;
pub mod route;
mod start;
mod stream_conn;
mod subscription;
mod worker;
mod ws_command;
mod ws_conn;
mod ws_session;

pub use admission::bearer;
pub use start::{load_tls, start, Running, Stopper};
