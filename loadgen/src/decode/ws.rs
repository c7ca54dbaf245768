//! WebSocket (RFC 6455) on the client side: the upgrade request headers,
//! server frames in, and the few masked client frames loadgen sends (pong,
//! close).

use super::Status;

/// What a WebSocket frame said.
pub enum WsEvent<'a> {
    Message(&'a [u8]),
    Ping(&'a [u8]),
    Close,
}

/// Largest server frame accepted.
const MAX_FRAME: u64 = 16 << 20;

/// The handshake must switch protocols.
pub fn check_status(status: u16) -> Result<(), String> {
    if status != 101 {
        return Err(format!("HTTP {status} instead of 101 Switching Protocols"));
    }
    Ok(())
}

/// Appends the upgrade headers of subscriber `n` (its key is derived from `n`).
pub fn write_upgrade(out: &mut Vec<u8>, n: usize) {
    let mut x = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut key = [0u8; 16];
    for b in key.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    out.extend_from_slice(
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    );
    out.extend_from_slice(base64_16(key).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Parses complete frames from `buf`; returns the bytes consumed (the rest is
/// an incomplete frame, or follows a close). Fragmented messages are gathered
/// in `frag`.
pub fn frames(buf: &[u8], frag: &mut Vec<u8>, on: &mut impl FnMut(WsEvent)) -> Result<usize, &'static str> {
    let mut pos = 0;
    loop {
        let b = &buf[pos..];
        if b.len() < 2 {
            return Ok(pos);
        }
        let fin = b[0] & 0x80 != 0;
        let op = b[0] & 0x0f;
        if b[1] & 0x80 != 0 {
            return Err("masked frame from the server");
        }
        let (len, hlen) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()), 10),
            126 | 127 => return Ok(pos),
            n => (n as u64, 2),
        };
        if len > MAX_FRAME {
            return Err("frame over 16 MiB");
        }
        if ((b.len() - hlen) as u64) < len {
            return Ok(pos);
        }
        let payload = &b[hlen..hlen + len as usize];
        pos += hlen + len as usize;
        match op {
            0x8 => {
                on(WsEvent::Close);
                return Ok(pos);
            }
            0x9 => on(WsEvent::Ping(payload)),
            0xA => {}
            0x1 | 0x2 if fin => on(WsEvent::Message(payload)),
            0x1 | 0x2 => {
                frag.clear();
                frag.extend_from_slice(payload);
            }
            0x0 => {
                frag.extend_from_slice(payload);
                if fin {
                    on(WsEvent::Message(frag));
                    frag.clear();
                }
            }
            _ => return Err("unknown opcode"),
        }
    }
}

/// The frames of one connection: a frame cut by a read waits in `carry`
/// (parsed in place from the read buffer when nothing is carried).
#[derive(Debug, Default)]
pub struct Reader {
    carry: Vec<u8>,
    frag: Vec<u8>,
}

impl Reader {
    /// The upgrade was answered: frames start.
    pub fn start(&mut self) {
        self.carry.clear();
    }

    /// Feeds bytes; `on` gets every message, ping and close. Ended after a close.
    pub fn feed(&mut self, data: &[u8], on: &mut impl FnMut(WsEvent)) -> Result<Status, &'static str> {
        let mut ended = false;
        let mut on = |e: WsEvent| {
            ended |= matches!(e, WsEvent::Close);
            on(e)
        };
        if self.carry.is_empty() {
            let used = frames(data, &mut self.frag, &mut on)?;
            if used < data.len() && !ended {
                self.carry.extend_from_slice(&data[used..]);
            }
        } else {
            self.carry.extend_from_slice(data);
            let used = frames(&self.carry, &mut self.frag, &mut on)?;
            self.carry.drain(..used);
        }
        Ok(if ended { Status::Ended } else { Status::More })
    }
}

/// Appends a masked client frame (RFC 6455 5.3) with a payload under 126 bytes.
pub fn client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let payload = &payload[..payload.len().min(125)];
    out.push(0x80 | opcode);
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// Standard base64 of 16 bytes (a Sec-WebSocket-Key).
pub fn base64_16(bytes: [u8; 16]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(24);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testutil::splits;

    fn decode(pieces: &[&[u8]]) -> (Vec<String>, Result<Status, &'static str>) {
        let mut r = Reader::default();
        r.start();
        let mut got = Vec::new();
        let mut st = Ok(Status::More);
        for p in pieces {
            st = r.feed(p, &mut |e| {
                got.push(match e {
                    WsEvent::Message(m) => String::from_utf8_lossy(m).into_owned(),
                    WsEvent::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                    WsEvent::Close => "close".into(),
                })
            });
            if st != Ok(Status::More) {
                break;
            }
        }
        (got, st)
    }

    fn frame(head: &[u8], payload: &[u8]) -> Vec<u8> {
        [head, payload].concat()
    }

    #[test]
    fn table() {
        let big = vec![b'z'; 300];
        let z300 = "z".repeat(300);
        // A 64-bit length (not the shortest form: still accepted).
        let long = frame(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5], b"yyyyy");
        // (wire, events, status)
        type Case<'a> = (Vec<u8>, Vec<&'a str>, Result<Status, &'a str>);
        let cases: Vec<Case> = vec![
            (frame(&[0x81, 3], b"abc"), vec!["abc"], Ok(Status::More)),
            (frame(&[0x89, 1], b"p"), vec!["ping p"], Ok(Status::More)),
            (frame(&[0x8A, 1], b"p"), vec![], Ok(Status::More)),
            (
                [frame(&[0x01, 2], b"de"), frame(&[0x00, 1], b"f"), frame(&[0x80, 1], b"g")].concat(),
                vec!["defg"],
                Ok(Status::More),
            ),
            (frame(&[0x81, 126, 1, 44], &big), vec![&z300], Ok(Status::More)),
            (long, vec!["yyyyy"], Ok(Status::More)),
            ([frame(&[0x88, 0], b""), frame(&[0x81, 1], b"x")].concat(), vec!["close"], Ok(Status::Ended)),
            (frame(&[0x81, 0x83, 1, 2, 3, 4], b"abc"), vec![], Err("masked frame from the server")),
            (frame(&[0x83, 0], b""), vec![], Err("unknown opcode")),
            (vec![0x82, 127, 0, 0, 0, 0, 2, 0, 0, 0], vec![], Err("frame over 16 MiB")),
        ];
        for (wire, events, status) in &cases {
            for pieces in splits(wire) {
                let (got, st) = decode(&pieces);
                assert_eq!(&got, events, "{:?}", pieces.iter().map(|p| p.len()).collect::<Vec<_>>());
                assert_eq!(&st, status);
            }
        }
    }

    #[test]
    fn split_independence() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&[0x81, 3]);
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&[0x89, 1, b'p']);
        wire.extend_from_slice(&[0x01, 2, b'd', b'e']);
        wire.extend_from_slice(&[0x80, 1, b'f']);
        wire.extend_from_slice(&[0x81, 126, 1, 44]);
        wire.extend_from_slice(&[b'z'; 300]);
        wire.extend_from_slice(&[0x88, 0]);
        for pieces in splits(&wire) {
            let (got, st) = decode(&pieces);
            assert_eq!(got, ["abc", "ping p", "def", &"z".repeat(300), "close"]);
            assert_eq!(st, Ok(Status::Ended));
        }
    }

    #[test]
    fn client_frames_and_key() {
        let mut out = Vec::new();
        client_frame(&mut out, 0xA, b"hi", [1, 2, 3, 4]);
        assert_eq!(out, [0x8A, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        assert_eq!(base64_16(*b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        let mut req = Vec::new();
        write_upgrade(&mut req, 0);
        assert!(req.starts_with(b"Upgrade: websocket\r\n") && req.ends_with(b"==\r\n"));
        assert_eq!(check_status(200), Err("HTTP 200 instead of 101 Switching Protocols".into()));
    }
}
