//! Per-transport decoding of what subscribers receive, sans-IO: every decoder
//! takes the bytes as they came off a socket, cut anywhere, and gives back the
//! `s=<seq> t=<nanos> u=<seq>` fields of the messages it found (through a
//! callback, so nothing is allocated per message) and a [`Status`]. None of
//! them reads a socket, writes one or looks at a clock; the worker does.
//!
//! - [`head`]: a response head (status, framing, keep-alive, Content-Type);
//! - [`chunked`]: body framing (chunked, Content-Length, until close);
//! - [`lines`]: a framed body split into lines (shared by SSE and NDJSON);
//! - [`sse`], [`stream`]: Server-Sent Events and NDJSON streams;
//! - [`longpoll`]: long-poll answers, halley style (`last_id`) and Nchan
//!   style (Last-Modified / Etag);
//! - [`ws`]: WebSocket frames.

pub mod chunked;
pub mod head;
pub mod lines;
pub mod longpoll;
pub mod sse;
pub mod stream;
pub mod ws;

pub use chunked::{Body, CHUNK_START};

/// What a decoder says after a piece of input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// More may follow.
    More,
    /// The body (or the WebSocket) ended.
    Ended,
}

/// Helpers of the table-driven tests of every decoder.
#[cfg(test)]
pub mod testutil {
    /// The ways the split-independence tests cut `input`: whole, at every
    /// single point, and in pieces of 1 to 7 bytes.
    pub fn splits(input: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut out = vec![vec![input]];
        for cut in 0..=input.len() {
            out.push(vec![&input[..cut], &input[cut..]]);
        }
        for size in 1..=7 {
            out.push(input.chunks(size).collect());
        }
        out
    }

    /// The fields `(seq, t, u)` a decoder reported.
    pub type Found = Vec<(u64, u64, u64)>;
}
