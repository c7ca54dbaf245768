//! halley's TLS stream filter (`halley::tls::TlsFilter`, rustls underneath)
//! on arbitrary client bytes, as the event loop feeds it.
//!
//! Checks, besides "no panic":
//! - no plaintext ever comes out: a client that cannot finish a handshake
//!   (and arbitrary bytes cannot) never reaches the HTTP code;
//! - split independence: the bytes fed as one read or as successive reads
//!   (split points from the input) end the same way: still open, closed,
//!   or refused with the same reason;
//! - what the filter writes back is bounded by its own buffer limit plus
//!   one handshake flight.
#![no_main]

use std::sync::{Arc, OnceLock};

use halley::reactor::filter::{Decoded, Filter, FilterError};
use halley::tls::Tls;
use halley_fuzz::feed_points;
use libfuzzer_sys::fuzz_target;

/// A throwaway self-signed P-256 certificate for the fuzzer only.
const CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBdDCCARugAwIBAgIUO6fAd5V4S700Isdhb7kUUVgeTIQwCgYIKoZIzj0EAwIw\n\
DzENMAsGA1UEAwwEZnV6ejAgFw0yNjEyMDYyMTEwMDBaGA8yMTI2MTExMjIxMTAw\n\
MFowDzENMAsGA1UEAwwEZnV6ejBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABLGV\n\
7VLc//c6wYc/0uZUANpFh0d1pCyxPmrL2q9SnnuvvunpuFfQ8kTCxr+hW53HIPmq\n\
4OiHxUhPF9S4rO7WoeajUzBRMB0GA1UdDgQWBBT4GpFljdRO/xbXUzS4/b4iqG54\n\
ZDAfBgNVHSMEGDAWgBT4GpFljdRO/xbXUzS4/b4iqG54ZDAPBgNVHRMBAf8EBTAD\n\
AQH/MAoGCCqGSM49BAMCA0cAMEQCIHJKDLgqPrY/tqT/hgPj5diPNcOYpCwomeO0\n\
T3zchGaCAiAd9CAPvCKz6MfHJBAJiYkvJCMhoMEchyNoerv1FBOOrQ==\n\
-----END CERTIFICATE-----";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDBijJ43Ilw7ZU6SX\n\
jiOmnST8PCxZ27jm/efjQjt/f5+hRANCAASxle1S3P/3OsGHP9LmVADaRYdHdaQs\n\
sT5qy9qvUp57r77p6bhX0PJEwsa/oVudxyD5quDoh8VITxfUuKzu1qHm\n\
-----END PRIVATE KEY-----";

/// Output bound: rustls' send buffer limit in the filter plus a server
/// flight (certificate and all) that may go beyond it.
const MAX_OUT: usize = 64 * 1024;

fn tls() -> &'static Arc<Tls> {
    static TLS: OnceLock<Arc<Tls>> = OnceLock::new();
    TLS.get_or_init(|| Arc::new(Tls::from_pem(CERT.as_bytes(), KEY.as_bytes()).expect("fuzz certificate")))
}

/// Feeds `pieces` in order; returns how the session ended.
fn run(pieces: &[&[u8]]) -> Result<Decoded, FilterError> {
    let mut filter = tls().accept(true).expect("filter");
    let mut plain = Vec::new();
    let mut end = Ok(Decoded::Open);
    for piece in pieces {
        if piece.is_empty() {
            continue;
        }
        end = filter.decode(piece, &mut plain);
        assert!(plain.is_empty(), "plaintext without a handshake: {plain:?}");
        let mut out = Vec::new();
        while filter.wants_write() {
            let n = filter.write_to(&mut out).expect("write to a Vec");
            assert!(n > 0 && out.len() <= MAX_OUT, "output {} bytes", out.len());
        }
        if end != Ok(Decoded::Open) {
            break;
        }
    }
    end
}

fuzz_target!(|data: &[u8]| {
    let whole = run(&[data]);
    let mut pieces = Vec::new();
    let mut from = 0;
    for to in feed_points(data, 16) {
        pieces.push(&data[from..to]);
        from = to;
    }
    let split = run(&pieces);
    assert_eq!(whole, split, "one read and {} reads end differently", pieces.len());
});
