//! Socket helpers shared by loadgen's clients.

use std::io::{self, Write};

/// Writes as much of `buf` as the non-blocking socket takes now and drops
/// what was written from `buf`; what is left waits for the next writable
/// event. An error is the reason the connection is unusable.
pub fn write_pending<W: Write>(socket: &mut W, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut done = 0;
    let mut failed = None;
    while done < buf.len() {
        match socket.write(&buf[done..]) {
            Ok(0) => {
                failed = Some("write: connection closed".to_string());
                break;
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                failed = Some(format!("write: {e}"));
                break;
            }
        }
    }
    buf.drain(..done);
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `room` bytes, then would block.
    struct Limited {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Limited {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.room).min(3);
            self.room -= n;
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keeps_what_the_socket_did_not_take() {
        let mut s = Limited { got: Vec::new(), room: 7 };
        let mut buf = b"0123456789".to_vec();
        assert_eq!(write_pending(&mut s, &mut buf), Ok(()));
        assert_eq!((s.got.as_slice(), buf.as_slice()), (&b"0123456"[..], &b"789"[..]));
    }

    #[test]
    fn a_zero_write_is_a_closed_connection() {
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut buf = b"x".to_vec();
        assert_eq!(write_pending(&mut Zero, &mut buf), Err("write: connection closed".into()));
        assert_eq!(buf, b"x");
    }
}
