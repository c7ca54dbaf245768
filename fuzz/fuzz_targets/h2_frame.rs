//! `halley::h2::frame::decode` and the connection state machine
//! (`halley::h2::Connection::recv`) on arbitrary bytes.
//!
//! Checks, besides "no panic":
//! - `Complete { consumed }`: `9 <= consumed <= len`, consumed = 9 + the
//!   header's length; exactly `data[..consumed]` gives the same, one byte
//!   less is Partial; the incremental feed agrees with the whole buffer;
//! - a frame over the size limit is a FRAME_SIZE_ERROR from its header alone;
//! - the connection, given the preface then the input, fed whole or in
//!   pieces derived from the input, consumes no more than it was given,
//!   reaches the same outcome (its events, or the same connection error),
//!   and every error has a reason.
#![no_main]

use std::time::Instant;

use halley::h2::frame::{decode, Decoded, DEFAULT_MAX_FRAME, HEADER_LEN};
use halley::h2::{Connection, Limits, PREFACE};
use halley_fuzz::{check_exact_length, check_incremental, feed_points, Rng};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limit = if Rng::new(data).below(2) == 0 { DEFAULT_MAX_FRAME } else { Rng::new(data).below(64) };
    let parse = |buf: &[u8]| decode(buf, limit).map(|d| format!("{d:?}"));
    let is_partial = |r: &Result<String, _>| matches!(r, Ok(s) if s == "Partial");
    let full = parse(data);
    check_incremental(data, &feed_points(data, 8), &full, parse, is_partial);
    if let Ok(Decoded::Complete { consumed, .. }) = decode(data, limit) {
        assert!((HEADER_LEN..=data.len()).contains(&consumed));
        let len = (usize::from(data[0]) << 16) | (usize::from(data[1]) << 8) | usize::from(data[2]);
        assert_eq!(consumed, HEADER_LEN + len);
        assert!(len <= limit);
        check_exact_length(data, consumed, &full, parse, is_partial);
    }
    connection(data);
});

/// The outcome of feeding the preface and `data` to a connection, cut at `points`.
fn run(data: &[u8], points: &[usize]) -> (Vec<String>, Option<String>) {
    let limits = Limits { max_resets: 5, max_pings: 5, max_streams: 4, ..Limits::default() };
    let mut c = Connection::new(limits);
    let now = Instant::now();
    let mut input = PREFACE.to_vec();
    let mut events = Vec::new();
    let mut last = 0;
    for &p in points.iter().chain(std::iter::once(&data.len())) {
        input.extend_from_slice(&data[last..p.max(last)]);
        last = p.max(last);
        match c.recv(&input, now) {
            Ok((used, ev)) => {
                assert!(used <= input.len());
                input.drain(..used);
                events.extend(ev.iter().map(|e| format!("{e:?}")));
            }
            Err(e) => {
                assert!(!e.reason.is_empty());
                // A connection error ends the conversation: events read
                // before it in the same call are dropped with it, so only
                // the error is compared.
                return (Vec::new(), Some(e.to_string()));
            }
        }
    }
    (events, None)
}

fn connection(data: &[u8]) {
    let whole = run(data, &[]);
    let pieces = run(data, &feed_points(data, 8));
    assert_eq!(whole, pieces, "the outcome depends on how the bytes arrived");
}
