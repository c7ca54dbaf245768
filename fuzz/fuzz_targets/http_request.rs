//! `halley::http::parse_request` on arbitrary bytes.
//!
//! Checks, besides "no panic", under the server's limits (8 KiB head, 64 KiB
//! body) and under small limits derived from the input (so the limit paths
//! are reachable with short inputs):
//! - `Complete { consumed }` has `0 < consumed <= len`; re-parsing exactly
//!   `data[..consumed]` gives the same request, and one byte less is Partial;
//! - the request's own invariants: path starts with `/`, header names are
//!   lowercase, the body is within the limit, a Content-Length body has
//!   exactly that length; `expects_continue` agrees with the headers, and
//!   `query_param` / `header_has_token` do not panic;
//! - feeding the same bytes as successive reads (cut at points derived from
//!   the input) gives Partial until the first non-Partial, which equals the
//!   whole-buffer result;
//! - pipelined requests after the first are parsed the same way.
#![no_main]

use halley::http::request::expects_continue;
use halley::http::{parse_request, HttpError, Method, Parse};
use halley_fuzz::{check_exact_length, check_incremental_by, feed_points, Rng};
use libfuzzer_sys::fuzz_target;

/// At most this many pipelined requests are checked per input.
const MAX_PIPELINED: usize = 8;

fuzz_target!(|data: &[u8]| {
    // The limits the brief (and the server's defaults) use.
    check_stream(data, 8192, 65536);
    // Small limits, so head and body limits are hit by short inputs.
    let mut rng = Rng::new(data);
    let max_head = 1 + rng.below(256);
    let max_body = rng.below(64);
    check_stream(data, max_head, max_body);
});

/// Parses up to MAX_PIPELINED requests from the front of `data`, checking each.
fn check_stream(data: &[u8], max_head: usize, max_body: usize) {
    let mut rest = data;
    for _ in 0..MAX_PIPELINED {
        match check_one(rest, max_head, max_body) {
            Some(consumed) => rest = &rest[consumed..],
            None => return,
        }
    }
}

/// Checks one request at the front of `data`; returns its length if Complete.
fn check_one(data: &[u8], max_head: usize, max_body: usize) -> Option<usize> {
    let limit = move |_: &Method, _: &str| max_body;
    let parse = |buf: &[u8]| parse_request(buf, max_head, &limit);
    let is_partial = |r: &Result<Parse, HttpError>| matches!(r, Ok(Parse::Partial));
    let full = parse(data);

    check_incremental_by(data, &feed_points(data, 8), &full, parse, is_partial, same_outcome);

    match &full {
        Ok(Parse::Complete { request, consumed }) => {
            check_exact_length(data, *consumed, &full, parse, is_partial);
            assert!(request.path.starts_with('/'), "path {:?}", request.path);
            for (name, _) in &request.headers {
                assert!(!name.is_empty(), "empty header name");
                assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "header name not lowercase: {name:?}");
            }
            assert!(
                request.body.len() <= max_body,
                "body of {} bytes over the {max_body} limit",
                request.body.len()
            );
            assert!(request.body.len() < *consumed, "body longer than the bytes consumed");
            if let Some(length) = request.header_str("content-length") {
                // A (consistent) Content-Length delimits the body exactly.
                let first = length.split(',').next().unwrap_or_default().trim();
                if let Ok(length) = first.parse::<usize>() {
                    assert_eq!(request.body.len(), length, "body length differs from Content-Length");
                }
            }
            // The accessors the server uses on every request.
            let expect = request
                .headers
                .iter()
                .any(|(name, value)| name == "expect" && value.eq_ignore_ascii_case(b"100-continue"));
            assert_eq!(expects_continue(data), expect, "expects_continue disagrees with the parsed headers");
            for pair in request.query.split('&') {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                let _ = request.query_param(name);
            }
            let _ = request.header_has_token("connection", "upgrade");
            assert_eq!(Method::from_token(request.method.as_str()), request.method);
            Some(*consumed)
        }
        Ok(Parse::Partial) => None,
        Err(err) => {
            // Every error maps to a status and a one-line reason.
            assert!(matches!(err.status(), 400 | 413 | 431 | 501 | 505), "{err:?}");
            assert!(!err.reason().contains(['\r', '\n']), "reason has a line break: {err:?}");
            if let HttpError::BodyTooLarge { limit } = err {
                assert_eq!(*limit, max_body);
            }
            None
        }
    }
}

/// Whether a prefix's settled result agrees with the whole buffer's:
/// exactly equal. (This target found that a head over the limit with an
/// error past the limit was 431 in pieces but 400/505 whole; the parser now
/// looks at no more than `max_head_bytes`, so it is 431 either way.)
fn same_outcome(prefix: &Result<Parse, HttpError>, whole: &Result<Parse, HttpError>) -> bool {
    prefix == whole
}
