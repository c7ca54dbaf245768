//! The little of HPACK (RFC 7541) a subscriber needs.
//!
//! Requests: every field a literal without indexing, strings raw (no
//! Huffman), so loadgen never adds to the server's decoder table.
//!
//! Responses: loadgen reads `:status` and `content-type` only, and keeps no
//! dynamic table: it sends SETTINGS_HEADER_TABLE_SIZE = 0, so a server may
//! not index anything for it (an entry added anyway is evicted at once).
//! What it can read: static-table entries (`0x88`.. for the common
//! statuses), and literals whose name is a static index or a raw string and
//! whose value is raw. A Huffman-coded `:status` or `content-type`, or a
//! reference into a dynamic table, is an error that says so: the subscriber
//! fails with that reason rather than being counted on a guess.

/// Static table indexes (RFC 7541 appendix A) used here.
const AUTHORITY: usize = 1;
const METHOD: usize = 2;
const PATH: usize = 4;
const SCHEME: usize = 6;
const STATUS: usize = 8;
const CONTENT_TYPE: usize = 31;
const STATIC_LEN: usize = 61;

/// The statuses of static entries 8..=14.
const STATIC_STATUS: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];

/// Longest content-type kept (as `decode::head` keeps it).
const CT_MAX: usize = 64;

/// Writes an integer with an `n`-bit prefix; `flags` fill the bits above it.
pub fn write_int(out: &mut Vec<u8>, value: usize, n: u32, flags: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    write_int(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// A literal without indexing whose name is static entry `index`.
fn write_indexed_name(out: &mut Vec<u8>, index: usize, value: &[u8]) {
    write_int(out, index, 4, 0);
    write_str(out, value);
}

/// A literal without indexing with a new name, lowercased as HTTP/2 needs.
fn write_new_name(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    write_int(out, name.len(), 7, 0);
    out.extend(name.iter().map(u8::to_ascii_lowercase));
    write_str(out, value);
}

/// The header block of a GET: the pseudo-headers, then `fields`.
pub fn write_request<'a>(
    out: &mut Vec<u8>,
    scheme: &str,
    authority: &str,
    path: &[u8],
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) {
    write_indexed_name(out, METHOD, b"GET");
    write_indexed_name(out, SCHEME, scheme.as_bytes());
    write_indexed_name(out, AUTHORITY, authority.as_bytes());
    write_indexed_name(out, PATH, path);
    for (name, value) in fields {
        write_new_name(out, name, value);
    }
}

/// What loadgen reads of a response's header block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    ct: [u8; CT_MAX],
    ct_len: usize,
}

impl Response {
    pub fn content_type(&self) -> &[u8] {
        &self.ct[..self.ct_len]
    }
}

/// Reads an integer with an `n`-bit prefix at the start of `buf`: (value,
/// bytes used). Values over 2^28 are refused (no header needs them).
fn read_int(buf: &[u8], n: u32) -> Result<(usize, usize), String> {
    let max = (1usize << n) - 1;
    let first = *buf.first().ok_or("HPACK: block ends inside an integer")? as usize & max;
    if first < max {
        return Ok((first, 1));
    }
    let mut value = max;
    for (i, &b) in buf.iter().enumerate().skip(1) {
        let shift = 7 * (i - 1);
        if shift > 21 {
            return Err("HPACK: integer too large".into());
        }
        value += ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err("HPACK: block ends inside an integer".into())
}

/// A string at the start of `buf`: (raw bytes, or None if Huffman-coded;
/// bytes used).
fn read_str(buf: &[u8]) -> Result<(Option<&[u8]>, usize), String> {
    let huffman = buf.first().is_some_and(|b| b & 0x80 != 0);
    let (len, at) = read_int(buf, 7)?;
    let s = buf.get(at..at + len).ok_or("HPACK: block ends inside a string")?;
    Ok(((!huffman).then_some(s), at + len))
}

/// A name given by index: what loadgen knows of it.
fn static_name(index: usize) -> Result<usize, String> {
    match index {
        1..=STATIC_LEN => Ok(index),
        0 => Err("HPACK: index 0".into()),
        _ => Err(format!(
            "HPACK: the server referred to dynamic table entry {index}, but loadgen keeps no dynamic \
             table (it sent SETTINGS_HEADER_TABLE_SIZE 0)"
        )),
    }
}

/// Reads `:status` and `content-type` from a response header block.
pub fn read_response(mut block: &[u8]) -> Result<Response, String> {
    let mut status = None;
    let mut resp = Response { status: 0, ct: [0; CT_MAX], ct_len: 0 };
    while let Some(&b) = block.first() {
        if b & 0x80 != 0 {
            // Indexed field.
            let (index, used) = read_int(block, 7)?;
            block = &block[used..];
            // Statuses are entries 8..=14; content-type's (31) has an empty value.
            if let i @ 8..=14 = static_name(index)? {
                status = Some(STATIC_STATUS[i - 8]);
            }
            continue;
        }
        if b & 0xe0 == 0x20 {
            // Dynamic table size update: loadgen keeps no table anyway.
            let (_, used) = read_int(block, 5)?;
            block = &block[used..];
            continue;
        }
        // Literal: with incremental indexing (6-bit index), or without /
        // never indexed (4-bit index). An indexed one would be evicted at
        // once from a table of size 0.
        let prefix = if b & 0xc0 == 0x40 { 6 } else { 4 };
        let (index, mut used) = read_int(block, prefix)?;
        let name: Option<&[u8]> = if index == 0 {
            let (name, n) = read_str(&block[used..])?;
            used += n;
            name
        } else {
            static_name(index)?;
            None
        };
        let (value, n) = read_str(&block[used..])?;
        block = &block[used + n..];
        let known = if index != 0 {
            index
        } else if name == Some(b"content-type") {
            CONTENT_TYPE
        } else {
            0
        };
        match known {
            STATUS => {
                let v = value.ok_or("HPACK: :status is Huffman-coded (loadgen reads raw strings only)")?;
                let s = std::str::from_utf8(v).ok().and_then(|s| s.parse::<u16>().ok());
                status = Some(s.ok_or_else(|| format!("bad :status '{}'", String::from_utf8_lossy(v)))?);
            }
            CONTENT_TYPE => {
                let v =
                    value.ok_or("HPACK: content-type is Huffman-coded (loadgen reads raw strings only)")?;
                resp.ct_len = v.len().min(CT_MAX);
                resp.ct[..resp.ct_len].copy_from_slice(&v[..resp.ct_len]);
            }
            _ => {}
        }
    }
    resp.status = status.ok_or("response headers without :status")?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        // RFC 7541 C.1: 10 and 1337 with a 5-bit prefix, 42 with 8 bits.
        for (value, n, bytes) in
            [(10, 5, &[0x0a][..]), (1337, 5, &[0x1f, 0x9a, 0x0a]), (42, 8, &[0x2a]), (15, 4, &[0x0f, 0x00])]
        {
            let mut out = Vec::new();
            write_int(&mut out, value, n, 0);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(read_int(bytes, n), Ok((value, bytes.len())), "{value}");
        }
        assert!(read_int(&[0x1f, 0x9a], 5).is_err());
        assert!(read_int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f], 5).is_err());
    }

    #[test]
    fn request_block() {
        let mut out = Vec::new();
        let extra: [(&[u8], &[u8]); 1] = [(b"Accept", b"text/event-stream")];
        write_request(&mut out, "http", "127.0.0.1:8080", b"/sub/ch0", extra);
        let mut want = vec![0x02, 3];
        want.extend_from_slice(b"GET");
        want.extend_from_slice(&[0x06, 4]);
        want.extend_from_slice(b"http");
        want.extend_from_slice(&[0x01, 14]);
        want.extend_from_slice(b"127.0.0.1:8080");
        want.extend_from_slice(&[0x04, 8]);
        want.extend_from_slice(b"/sub/ch0");
        want.extend_from_slice(&[0x00, 6]);
        want.extend_from_slice(b"accept");
        want.push(17);
        want.extend_from_slice(b"text/event-stream");
        assert_eq!(out, want);
    }

    #[test]
    fn responses() {
        // halley's own encoding: `:status` literal with name index 8, the rest new names.
        let halley = b"\x08\x03200\x00\x0ccontent-type\x11text/event-stream\x00\x0dcache-control\x08no-cache";
        // (block, status, content-type)
        let cases: &[(&[u8], u16, &[u8])] = &[
            (halley, 200, b"text/event-stream"),
            (b"\x88", 200, b""),
            (b"\x8d\x5f\x10application/json", 404, b"application/json"),
            (b"\x20\x18\x03304\x0f\x10\x04text", 304, b"text"),
            (b"\x48\x03408", 408, b""),
            // A Huffman-coded value of another header is skipped.
            (b"\x88\x00\x01x\x83abc", 200, b""),
        ];
        for &(block, status, ct) in cases {
            let r = read_response(block).unwrap_or_else(|e| panic!("{block:?}: {e}"));
            assert_eq!((r.status, r.content_type()), (status, ct), "{block:?}");
        }
        for (block, err) in [
            (&b"\x08\x83abc"[..], "Huffman"),
            (b"\xbe", "dynamic table entry 62"),
            (b"\x5f\x10\x05ab", "ends inside a string"),
            (b"\x5f", "ends inside an integer"),
            (b"\x0f\x10\x04text", "without :status"),
            (b"\x08\x02ok", "bad :status"),
            (b"\x80", "index 0"),
        ] {
            let e = read_response(block).unwrap_err();
            assert!(e.contains(err), "{block:?}: {e}");
        }
    }
}
