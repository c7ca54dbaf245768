//! One TLS connection as a stream filter: ciphertext in, plaintext out, and
//! the reverse. rustls' `ServerConnection` is sans-IO, so this is a thin
//! adapter plus the accounting of how handshakes end.

use std::any::Any;
use std::io::{self, IoSlice, Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use rustls::ServerConnection;

use super::Tls;
use crate::reactor::filter::{Decoded, Filter, FilterError};

/// Ciphertext (or, before the handshake completes, plaintext) rustls may
/// hold for writing. Two full records: the loop encrypts a flush's plaintext
/// in rounds and writes each round before taking more, so this bounds the
/// per-connection memory of a fast flush; the rest waits, uncopied, in the
/// outbound queue, where the slow-consumer cap sees it.
const OUT_LIMIT: usize = 32 * 1024;

/// The first byte of every TLS handshake record (content type 22).
const HANDSHAKE_RECORD: u8 = 0x16;

/// The answer to a plain HTTP request on a TLS port, sent in clear so that
/// the person with curl learns what happened (as nginx does).
const PLAIN_HTTP_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 51\r\nConnection: close\r\n\r\n\
This port speaks HTTPS only: use https:// or wss://";

pub struct TlsFilter {
    conn: ServerConnection,
    tls: Arc<Tls>,
    /// Whether any byte arrived yet (the first one tells TLS from not).
    started: bool,
    /// Whether this connection's handshake is already counted, as done or failed.
    counted: bool,
    /// Clear text to send before closing: the refusal of plain HTTP.
    refusal: Option<&'static [u8]>,
    /// The service gave up waiting for the handshake (its head timeout).
    timed_out: bool,
}

impl TlsFilter {
    pub(super) fn new(tls: Arc<Tls>, config: Arc<rustls::ServerConfig>) -> Result<TlsFilter, String> {
        let mut conn = ServerConnection::new(config).map_err(|e| format!("TLS: {e}"))?;
        conn.set_buffer_limit(Some(OUT_LIMIT));
        Ok(TlsFilter { conn, tls, started: false, counted: false, refusal: None, timed_out: false })
    }

    /// Whether the handshake is still under way.
    pub fn handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The service's deadline passed before the handshake completed; it
    /// closes the connection, and the failure is counted as a timeout.
    pub fn time_out(&mut self) {
        self.timed_out = true;
    }

    fn fail(&mut self, reason: &'static str) -> FilterError {
        if !self.counted && self.conn.is_handshaking() {
            self.counted = true;
            self.tls.stats.fail(reason);
        }
        FilterError(reason)
    }

    /// Feeds `wire` to rustls a record buffer at a time, moving plaintext out
    /// after each step so rustls' own plaintext buffer never fills.
    fn take(&mut self, mut wire: &[u8], plain: &mut Vec<u8>) -> Result<Decoded, FilterError> {
        while !wire.is_empty() {
            match self.conn.read_tls(&mut wire) {
                Ok(0) => return Ok(Decoded::Closed),
                Ok(_) => {}
                Err(_) => return Err(self.fail("bad_message")),
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => return Err(self.fail(reason(&e))),
            };
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                if self.conn.reader().read_exact(&mut plain[start..]).is_err() {
                    return Err(self.fail("other"));
                }
            }
            if state.peer_has_closed() {
                return Ok(Decoded::Closed);
            }
        }
        Ok(Decoded::Open)
    }
}

/// A handshake failure's `/metrics` reason.
fn reason(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidMessage(_) | rustls::Error::PeerMisbehaved(_) => "bad_message",
        rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => "incompatible",
        rustls::Error::AlertReceived(_) => "alert",
        _ => "other",
    }
}

impl Filter for TlsFilter {
    fn decode(&mut self, wire: &[u8], plain: &mut Vec<u8>) -> Result<Decoded, FilterError> {
        if !self.started {
            self.started = true;
            match wire.first() {
                Some(&HANDSHAKE_RECORD) | None => {}
                Some(b) => {
                    if b.is_ascii_uppercase() {
                        self.refusal = Some(PLAIN_HTTP_REFUSAL);
                    }
                    return Err(self.fail("not_tls"));
                }
            }
        }
        let handshaking = self.conn.is_handshaking();
        let decoded = self.take(wire, plain);
        if handshaking && !self.conn.is_handshaking() && !self.counted {
            self.counted = true;
            self.tls.stats.handshakes.fetch_add(1, Relaxed);
        }
        decoded
    }

    fn ready(&self) -> bool {
        !self.conn.is_handshaking()
    }

    fn encode(&mut self, plain: &[IoSlice<'_>]) -> usize {
        self.conn.writer().write_vectored(plain).unwrap_or(0)
    }

    fn wants_write(&self) -> bool {
        self.refusal.is_some() || self.conn.wants_write()
    }

    fn write_to(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        match self.refusal {
            Some(bytes) => {
                let n = out.write(bytes)?;
                self.refusal = bytes.get(n..).filter(|rest| !rest.is_empty());
                Ok(n)
            }
            None => self.conn.write_tls(out),
        }
    }

    fn close(&mut self) {
        if !self.conn.is_handshaking() {
            self.conn.send_close_notify();
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Drop for TlsFilter {
    fn drop(&mut self) {
        if !self.counted && self.conn.is_handshaking() {
            self.tls.stats.fail(if self.timed_out { "timeout" } else { "closed" });
        }
    }
}
