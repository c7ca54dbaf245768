//! `Chunk`: a piece of outbound bytes, either owned by one connection or
//! shared by many (an encoded message). Outbound queues hold these, so a message
//! sent to 10,000 subscribers costs 10,000 reference counts, not 10,000 copies.

use std::ops::Range;
use std::sync::Arc;

use crate::hub::Frame;

#[derive(Debug, Clone)]
pub enum Chunk {
    Static(&'static [u8]),
    Owned(Vec<u8>),
    Shared(Arc<[u8]>, Range<usize>),
}

impl Chunk {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Chunk::Static(b) => b,
            Chunk::Owned(v) => v,
            // The range is checked when the chunk is made; `get` keeps this total.
            Chunk::Shared(buf, range) => buf.get(range.clone()).unwrap_or(&[]),
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole framed form of `frame`.
    pub fn framed(frame: &Frame) -> Chunk {
        Chunk::Shared(frame.bytes.clone(), 0..frame.bytes.len())
    }

    /// Only the body of `frame`, without chunk framing (HTTP/1.0 streams).
    pub fn body(frame: &Frame) -> Chunk {
        Chunk::Shared(frame.bytes.clone(), frame.body.clone())
    }
}

impl From<Vec<u8>> for Chunk {
    fn from(v: Vec<u8>) -> Chunk {
        Chunk::Owned(v)
    }
}

impl From<&'static [u8]> for Chunk {
    fn from(b: &'static [u8]) -> Chunk {
        Chunk::Static(b)
    }
}
