//! HPACK (RFC 7541), our own: the Rust crates for it are either unkept
//! since 2015 (`hpack`) or tied to an async stack. Sans-IO: a header block
//! in, a header list out.
//!
//! The decoder keeps the connection's dynamic table and bounds everything a
//! peer controls: the table's size (our SETTINGS_HEADER_TABLE_SIZE), each
//! string's length (never more than the bytes left in the block, so no
//! allocation follows from a length alone), Huffman output, and the decoded
//! list's size (name + value + 32 per field, as SETTINGS_MAX_HEADER_LIST_SIZE
//! counts it), so a small block cannot expand into a large list (the "HPACK
//! bomb": one big table entry referenced by one-byte indexes).
//!
//! The encoder writes literals without indexing (`:status` by its static
//! name index): responses are a few short headers, so a dynamic table
//! would save little and cost state per connection.

pub mod huffman;
mod table;

use std::fmt;

pub use table::STATIC;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HpackError {
    /// An integer or string runs past the block's end, or overflows.
    Truncated,
    /// An index that names no entry.
    BadIndex(u64),
    Huffman(&'static str),
    /// A table size update above the limit we announced, or in the wrong place.
    TableSize(u64),
    /// The decoded list (or one string) is over the limit.
    TooLong,
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            HpackError::Truncated => write!(f, "header block truncated or an integer overflows"),
            HpackError::BadIndex(i) => write!(f, "header index {i} names no entry"),
            HpackError::Huffman(why) => write!(f, "bad Huffman string: {why}"),
            HpackError::TableSize(n) => write!(f, "dynamic table size update to {n} not allowed"),
            HpackError::TooLong => write!(f, "header list over the size limit"),
        }
    }
}

/// A decoded header field.
pub type Field = (Vec<u8>, Vec<u8>);

/// The per-field overhead RFC 7541 §4.1 counts in a table entry's size.
const ENTRY_OVERHEAD: usize = 32;

/// The decoding context of one connection.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first.
    dynamic: std::collections::VecDeque<Field>,
    size: usize,
    /// The size the peer's encoder may use now (at most `limit`).
    max_size: usize,
    /// Our SETTINGS_HEADER_TABLE_SIZE.
    limit: usize,
}

impl Decoder {
    pub fn new(limit: usize) -> Decoder {
        Decoder { dynamic: Default::default(), size: 0, max_size: limit, limit }
    }

    /// Decodes one complete header block; the list may be at most
    /// `max_list` bytes as SETTINGS_MAX_HEADER_LIST_SIZE counts them.
    /// An error leaves the table unusable: the connection must end
    /// (COMPRESSION_ERROR), as RFC 9113 §4.3 requires.
    pub fn decode(&mut self, mut block: &[u8], max_list: usize) -> Result<Vec<Field>, HpackError> {
        let mut list = Vec::new();
        let mut list_size = 0usize;
        let mut first = true;
        while let Some(&byte) = block.first() {
            let field = if byte & 0x80 != 0 {
                let index = integer(&mut block, 7)?;
                self.get(index)?
            } else if byte & 0xc0 == 0x40 {
                let field = self.literal(&mut block, 6, max_list)?;
                self.insert(field.clone());
                field
            } else if byte & 0xe0 == 0x20 {
                // Only at the start of a block (§4.2).
                let size = integer(&mut block, 5)?;
                if !first || size > self.limit as u64 {
                    return Err(HpackError::TableSize(size));
                }
                self.max_size = size as usize;
                self.evict(0);
                continue;
            } else {
                // Without indexing (0000) or never indexed (0001): 4-bit prefix.
                self.literal(&mut block, 4, max_list)?
            };
            first = false;
            list_size += field.0.len() + field.1.len() + ENTRY_OVERHEAD;
            if list_size > max_list {
                return Err(HpackError::TooLong);
            }
            list.push(field);
        }
        Ok(list)
    }

    fn get(&self, index: u64) -> Result<Field, HpackError> {
        let i = usize::try_from(index).map_err(|_| HpackError::BadIndex(index))?;
        match i {
            0 => Err(HpackError::BadIndex(0)),
            1..=61 => {
                let (n, v) = STATIC.get(i - 1).ok_or(HpackError::BadIndex(index))?;
                Ok((n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            }
            _ => self.dynamic.get(i - 62).cloned().ok_or(HpackError::BadIndex(index)),
        }
    }

    fn literal(&mut self, block: &mut &[u8], prefix: u32, max_list: usize) -> Result<Field, HpackError> {
        let index = integer(block, prefix)?;
        let name = if index == 0 { string(block, max_list)? } else { self.get(index)?.0 };
        let value = string(block, max_list)?;
        Ok((name, value))
    }

    fn insert(&mut self, field: Field) {
        let size = field.0.len() + field.1.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            // An entry larger than the table empties it (§4.4).
            self.dynamic.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.dynamic.push_front(field);
    }

    /// Evicts until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some((n, v)) = self.dynamic.pop_back() else { break };
            self.size -= n.len() + v.len() + ENTRY_OVERHEAD;
        }
    }

    /// The dynamic table's size now (for tests).
    pub fn table_size(&self) -> usize {
        self.size
    }
}

/// Reads an integer with an `n`-bit prefix (§5.1); at most 2^62.
fn integer(block: &mut &[u8], n: u32) -> Result<u64, HpackError> {
    let (&first, rest) = block.split_first().ok_or(HpackError::Truncated)?;
    *block = rest;
    let max_prefix = (1u64 << n) - 1;
    let mut value = u64::from(first) & max_prefix;
    if value < max_prefix {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let (&b, rest) = block.split_first().ok_or(HpackError::Truncated)?;
        *block = rest;
        if shift > 56 {
            return Err(HpackError::Truncated);
        }
        value += u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// Reads a string literal (§5.2), at most `max` bytes once decoded.
fn string(block: &mut &[u8], max: usize) -> Result<Vec<u8>, HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, 7)?;
    let len = usize::try_from(len).map_err(|_| HpackError::Truncated)?;
    if len > block.len() {
        return Err(HpackError::Truncated);
    }
    let (bytes, rest) = block.split_at(len);
    *block = rest;
    if huffman {
        let mut out = Vec::with_capacity(len.min(max));
        huffman::decode(bytes, max, &mut out)?;
        Ok(out)
    } else if len > max {
        Err(HpackError::TooLong)
    } else {
        Ok(bytes.to_vec())
    }
}

/// Writes an integer with an `n`-bit prefix; `flags` fill the bits above it.
pub fn encode_integer(out: &mut Vec<u8>, value: usize, n: u32, flags: u8) {
    let max_prefix = (1usize << n) - 1;
    if value < max_prefix {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_integer(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// A response header block: `:status`, then `headers` (names lowercase),
/// all literals without indexing.
pub fn encode_response(status: u16, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    // `:status` is static entry 8; its literal with that name index.
    encode_integer(&mut out, 8, 4, 0);
    encode_string(&mut out, status.to_string().as_bytes());
    for (name, value) in headers {
        out.push(0);
        encode_string(&mut out, name.as_bytes());
        encode_string(&mut out, value);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn strs(list: &[Field]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (String::from_utf8_lossy(n).into(), String::from_utf8_lossy(v).into()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// RFC 7541 C.3 (requests, plain) and C.4 (the same with Huffman): one
    /// decoder per series, the table carried over.
    #[test]
    fn rfc7541_appendix_c3_c4() {
        let want = [
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ]),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ]),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ]),
        ];
        let series = [
            [
                "828684410f7777772e6578616d706c652e636f6d",
                "828684be58086e6f2d6361636865",
                "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
            ],
            [
                "828684418cf1e3c2e5f23a6ba0ab90f4ff",
                "828684be5886a8eb10649cbf",
                "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
            ],
        ];
        for blocks in series {
            let mut d = Decoder::new(4096);
            let sizes = [57, 110, 164];
            for ((hex, want), size) in blocks.iter().zip(&want).zip(sizes) {
                assert_eq!(strs(&d.decode(&unhex(hex), 65536).unwrap()), *want);
                assert_eq!(d.table_size(), size);
            }
        }
    }

    /// RFC 7541 C.6: responses with Huffman and a 256-byte table, so
    /// entries are evicted along the way.
    #[test]
    fn rfc7541_appendix_c6_eviction() {
        let blocks = [
            "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
            "4883640effc1c0bf",
            "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
        ];
        let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
        let want = [
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ]),
            pairs(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ]),
            pairs(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                ("location", "https://www.example.com"),
                ("content-encoding", "gzip"),
                ("set-cookie", cookie),
            ]),
        ];
        let mut d = Decoder::new(256);
        for ((hex, want), size) in blocks.iter().zip(&want).zip([222, 222, 215]) {
            assert_eq!(strs(&d.decode(&unhex(hex), 65536).unwrap()), *want);
            assert_eq!(d.table_size(), size);
        }
    }

    /// RFC 7541 C.1: integers.
    #[test]
    fn rfc7541_integers() {
        for (value, n, bytes) in
            [(10usize, 5, vec![0x0a]), (1337, 5, vec![0x1f, 0x9a, 0x0a]), (42, 8, vec![0x2a])]
        {
            let mut out = Vec::new();
            encode_integer(&mut out, value, n, 0);
            assert_eq!(out, bytes);
            assert_eq!(integer(&mut &bytes[..], n).unwrap(), value as u64);
        }
        assert_eq!(integer(&mut &[0x1f, 0xff, 0xff][..], 5), Err(HpackError::Truncated));
        let huge = [0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(integer(&mut &huge[..], 5), Err(HpackError::Truncated));
    }

    #[test]
    fn encoder_output_reads_back() {
        let block = encode_response(200, &[("content-type", b"text/event-stream"), ("x-long", &[b'a'; 300])]);
        let list = Decoder::new(4096).decode(&block, 65536).unwrap();
        assert_eq!(
            strs(&list),
            vec![
                (":status".into(), "200".into()),
                ("content-type".into(), "text/event-stream".into()),
                ("x-long".into(), "a".repeat(300)),
            ]
        );
    }

    #[test]
    fn bad_blocks_are_errors() {
        let cases: [(&str, HpackError); 6] = [
            ("80", HpackError::BadIndex(0)),
            ("be", HpackError::BadIndex(62)),
            ("0003616263", HpackError::Truncated),
            ("3fe21f", HpackError::TableSize(4097)),
            ("8220", HpackError::TableSize(0)),
            ("0081ff0161", HpackError::Huffman("padding that is not a prefix of EOS")),
        ];
        for (hex, want) in cases {
            assert_eq!(Decoder::new(4096).decode(&unhex(hex), 65536), Err(want), "{hex}");
        }
    }

    /// One 4 KiB entry, then 1-byte references to it: the list limit stops
    /// the expansion long before memory grows.
    #[test]
    fn hpack_bomb_is_refused() {
        let mut block = vec![0x40];
        encode_string(&mut block, b"x");
        encode_string(&mut block, &[b'y'; 4000]);
        block.extend(std::iter::repeat_n(0xbe, 1000));
        let err = Decoder::new(4096).decode(&block, 16 * 1024).unwrap_err();
        assert_eq!(err, HpackError::TooLong);
        // A size update to 0 at the start is allowed and empties the table.
        let mut d = Decoder::new(4096);
        d.decode(&unhex("4001610162"), 100).unwrap();
        assert_eq!(d.table_size(), 34);
        d.decode(&unhex("2082"), 100).unwrap();
        assert_eq!(d.table_size(), 0);
    }
}
