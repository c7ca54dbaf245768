//! The HTTP service the event loops run, and the start-up that wires loops,
//! listeners and the fan-out thread together.

mod admission;
mod bayeux_conn;
mod conn;
pub mod cors;
mod pushlet_conn;
mod report;
mod resp_conn;
mod respond;
pub mod route;
mod start;
mod websocket;
mod worker;

pub use admission::bearer;
pub use start::{start, Running, Stopper};
