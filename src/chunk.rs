//! `Chunk`: a piece of outbound bytes, either owned by one connection or
//! shared by many (an encoded message). Outbound queues hold these, so a message
//! sent to 10,000 subscribers costs 10,000 reference counts, not 10,000 copies.

use std::sync::Arc;

/// The longest prefix a wrapped chunk carries inline: an HTTP/1.1 chunk-size
/// line is at most 16 hex digits and CRLF.
pub const MAX_PREFIX: usize = 18;

#[derive(Debug, Clone)]
pub enum Chunk {
    Static(&'static [u8]),
    Owned(Vec<u8>),
    /// Shared bytes, whole (an encoded message frame).
    Shared(Arc<[u8]>),
    /// Shared bytes between a short per-connection prefix and a static
    /// suffix: how a connection's writer frames a shared message for its
    /// protocol (HTTP/1.1: the chunk-size line and CRLF) without copying it
    /// and without the shared bytes knowing the framing.
    Wrapped {
        prefix: [u8; MAX_PREFIX],
        prefix_len: u8,
        body: Arc<[u8]>,
        suffix: &'static [u8],
    },
}

impl Chunk {
    /// The chunk's bytes in order, in at most three slices (empty ones included).
    pub fn parts(&self) -> [&[u8]; 3] {
        match self {
            Chunk::Static(b) => [b, &[], &[]],
            Chunk::Owned(v) => [v, &[], &[]],
            Chunk::Shared(bytes) => [bytes, &[], &[]],
            Chunk::Wrapped { prefix, prefix_len, body, suffix } => {
                [prefix.get(..*prefix_len as usize).unwrap_or(&[]), body, suffix]
            }
        }
    }

    pub fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `body` between `prefix` (at most [`MAX_PREFIX`] bytes; longer is cut)
    /// and `suffix`.
    pub fn wrapped(prefix: &[u8], body: Arc<[u8]>, suffix: &'static [u8]) -> Chunk {
        let mut inline = [0; MAX_PREFIX];
        let len = prefix.len().min(MAX_PREFIX);
        inline[..len].copy_from_slice(&prefix[..len]);
        Chunk::Wrapped { prefix: inline, prefix_len: len as u8, body, suffix }
    }

    /// All the bytes in one vector (tests and small answers).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_in_order() {
        let body: Arc<[u8]> = Arc::from(&b"body"[..]);
        let c = Chunk::wrapped(b"4\r\n", body.clone(), b"\r\n");
        assert_eq!(c.to_vec(), b"4\r\nbody\r\n");
        assert_eq!(c.len(), 9);
        assert_eq!(Chunk::Shared(body).to_vec(), b"body");
        let long = [b'x'; 40];
        assert_eq!(Chunk::wrapped(&long, Arc::from(&b""[..]), b"").len(), MAX_PREFIX);
    }
}
