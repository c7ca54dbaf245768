//! A minimal HTTP/2 client (RFC 9113), sans-IO, for subscribers that are
//! streams: h2c with prior knowledge, or ALPN `h2` over TLS (the worker
//! owns the sockets and TLS). Written here rather than borrowed from halley
//! so the server's own codec is never what checks it.
//!
//! - [`frame`]: frame headers and the frames a client sends;
//! - [`hpack`]: request header blocks (literals, no Huffman, no table) and
//!   the reading of a response's `:status` and `content-type`;
//! - [`conn`]: one connection: preface and SETTINGS, acks, flow control
//!   (windows given back as data is consumed), stream events.

pub mod conn;
pub mod frame;
pub mod hpack;

pub use conn::{Client, Event};
