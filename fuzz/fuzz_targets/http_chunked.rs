//! `halley::http::chunked::decode` on arbitrary bytes, and an
//! `encode_into` → `decode` round trip of data derived from the input.
//!
//! Checks, besides "no panic":
//! - `Complete { body, consumed }`: `0 < consumed <= len`, the body is within
//!   the limit and shorter than `consumed`; decoding exactly
//!   `data[..consumed]` gives the same, one byte less is Partial;
//! - the limit is exact: the same bytes decode with `limit = body.len()`,
//!   and fail with BodyTooLarge at `body.len() - 1`;
//! - feeding the bytes as successive reads gives Partial until the first
//!   non-Partial, which equals the whole-buffer result;
//! - round trip: chunks encoded with `encode_into`, then `LAST_CHUNK`, then
//!   arbitrary trailing bytes, decode to the concatenated data and consume
//!   exactly the encoded bytes.
#![no_main]

use halley::http::chunked::{decode, encode_into, Decoded, LAST_CHUNK};
use halley::http::HttpError;
use halley_fuzz::{check_exact_length, check_incremental, feed_points, Rng};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 65536;

fuzz_target!(|data: &[u8]| {
    check_decode(data, LIMIT);
    let small = Rng::new(data).below(64);
    check_decode(data, small);
    round_trip(data);
});

fn check_decode(data: &[u8], limit: usize) {
    let parse = |buf: &[u8]| decode(buf, limit);
    let is_partial = |r: &Result<Decoded, HttpError>| matches!(r, Ok(Decoded::Partial));
    let full = parse(data);
    check_incremental(data, &feed_points(data, 8), &full, parse, is_partial);
    match &full {
        Ok(Decoded::Complete { body, consumed }) => {
            check_exact_length(data, *consumed, &full, parse, is_partial);
            assert!(body.len() <= limit, "body of {} bytes over the {limit} limit", body.len());
            // At least "0\r\n\r\n" besides the data.
            assert!(body.len() + LAST_CHUNK.len() <= *consumed, "body {} vs consumed {consumed}", body.len());
            assert_eq!(decode(data, body.len()), full, "decoding with limit = body length");
            if let Some(less) = body.len().checked_sub(1) {
                assert_eq!(decode(data, less), Err(HttpError::BodyTooLarge { limit: less }));
            }
        }
        Ok(Decoded::Partial) => {}
        Err(HttpError::BodyTooLarge { limit: got }) => assert_eq!(*got, limit),
        Err(HttpError::Malformed(_)) => {}
        Err(other) => panic!("decode returned an error it never should: {other:?}"),
    }
}

/// Splits `data` into chunks (sizes taken from the input), encodes them,
/// then checks they decode back.
fn round_trip(data: &[u8]) {
    let mut rng = Rng::new(data);
    let mut wire = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // Mostly small chunks, sometimes empty ones (encode_into skips them).
        let take = rng.below(rest.len().min(300) + 1);
        let (chunk, after) = rest.split_at(take);
        encode_into(&mut wire, chunk);
        rest = after;
    }
    wire.extend_from_slice(LAST_CHUNK);
    let encoded = wire.len();
    // Whatever follows belongs to the next message and must not be consumed.
    wire.extend_from_slice(&data[..rng.below(data.len().min(16) + 1)]);
    let want = Decoded::Complete { body: data.to_vec(), consumed: encoded };
    assert_eq!(decode(&wire, data.len()), Ok(want), "round trip of {} bytes", data.len());
}
