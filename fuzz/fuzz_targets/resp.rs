//! `halley::resp::parse_command` on arbitrary bytes, and array/inline
//! round trips of arguments derived from the input.
//!
//! Checks, besides "no panic", under `Limits::default()` and under small
//! limits derived from the input:
//! - `Complete { consumed }` has `0 < consumed <= len`, and in array form
//!   at most `max_args` arguments, each within `max_bulk`; parsing exactly
//!   `data[..consumed]` gives the same and one byte less is Partial;
//! - the module's split-independence promise: feeding the bytes as
//!   successive reads gives Partial until the first non-Partial, which
//!   equals the whole-buffer result (same command or same error);
//! - the module's buffering bound: a buffer longer than
//!   `34 + max_args × (max_bulk + 36)` (array form) or `max_inline + 2`
//!   (inline form) is never Partial;
//! - pipelined commands after the first are checked the same way;
//! - round trips: arguments encoded as a RESP array (with
//!   `halley::resp::reply`'s `array_header`/`bulk`, as a client library
//!   sends them) and as an inline line with every byte `\xHH`-escaped inside
//!   double quotes both parse back to the same arguments.
#![no_main]

use halley::resp::{parse_command, reply, Command, Limits, Parsed, ProtocolError};
use halley_fuzz::{check_exact_length, check_incremental, feed_points, Rng};
use libfuzzer_sys::fuzz_target;

const MAX_PIPELINED: usize = 8;

/// Longest `*<n>\r\n` or `$<len>\r\n` line the parser waits for.
const MAX_HEADER: usize = 34;

fuzz_target!(|data: &[u8]| {
    check_stream(data, &Limits::default());
    let mut rng = Rng::new(data);
    let small = Limits { max_bulk: rng.below(64), max_args: rng.below(8), max_inline: rng.below(64) };
    check_stream(data, &small);
    round_trips(data);
});

fn check_stream(data: &[u8], limits: &Limits) {
    let mut rest = data;
    for _ in 0..MAX_PIPELINED {
        match check_one(rest, limits) {
            Some(consumed) => rest = &rest[consumed..],
            None => return,
        }
    }
}

fn check_one(data: &[u8], limits: &Limits) -> Option<usize> {
    let parse = |buf: &[u8]| parse_command(buf, limits);
    let is_partial = |r: &Result<Parsed, ProtocolError>| matches!(r, Ok(Parsed::Partial));
    let full = parse(data);
    check_incremental(data, &feed_points(data, 8), &full, parse, is_partial);
    let array = data.first() == Some(&b'*');
    match &full {
        Ok(Parsed::Complete { command, consumed }) => {
            check_exact_length(data, *consumed, &full, parse, is_partial);
            let name = command.name_upper();
            assert!(!name.bytes().any(|b| b.is_ascii_lowercase()), "name_upper gave {name:?}");
            if array {
                let (n, max) = (command.args.len(), limits.max_args);
                assert!(n <= max, "{n} arguments over the limit of {max}");
                for arg in &command.args {
                    assert!(
                        arg.len() <= limits.max_bulk,
                        "bulk of {} bytes over {}",
                        arg.len(),
                        limits.max_bulk
                    );
                }
            } else {
                assert!(*consumed <= limits.max_inline + 2, "inline line of {consumed} bytes");
            }
            Some(*consumed)
        }
        Ok(Parsed::Partial) => {
            let bound = if array {
                MAX_HEADER + limits.max_args * (MAX_HEADER + limits.max_bulk + 2)
            } else {
                limits.max_inline + 2
            };
            assert!(data.len() <= bound, "still Partial after {} bytes (bound {bound})", data.len());
            None
        }
        Err(err) => {
            let text = err.reply_text();
            assert!(text.starts_with("ERR Protocol error: "), "{text:?}");
            assert!(!text.contains(['\r', '\n']), "error reply with a line break: {text:?}");
            None
        }
    }
}

fn round_trips(data: &[u8]) {
    // Arguments: the input cut at points derived from it (empty ones too).
    let mut rng = Rng::new(data);
    let mut args = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && args.len() < 16 {
        let take = rng.below(rest.len() + 1);
        let (arg, after) = rest.split_at(take);
        args.push(arg.to_vec());
        rest = after;
    }
    let limits = Limits::default();
    let want = Command { args: args.clone() };

    let mut wire = Vec::new();
    reply::array_header(&mut wire, args.len());
    for arg in &args {
        reply::bulk(&mut wire, arg);
    }
    let encoded = wire.len();
    wire.extend_from_slice(b"*1\r\n");
    let got = parse_command(&wire, &limits);
    if args.is_empty() {
        // `*0` is the empty request.
        assert_eq!(got, Ok(Parsed::Complete { command: Command::default(), consumed: encoded }));
    } else {
        assert_eq!(
            got,
            Ok(Parsed::Complete { command: want.clone(), consumed: encoded }),
            "array round trip"
        );
    }

    let mut line = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push(if rng.below(2) == 0 { b' ' } else { b'\t' });
        }
        line.push(b'"');
        for byte in arg {
            line.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        }
        line.push(b'"');
    }
    line.extend_from_slice(if rng.below(2) == 0 { b"\r\n" } else { b"\n" });
    let encoded = line.len();
    line.extend_from_slice(b"PING\r\n");
    let got = parse_command(&line, &limits);
    if encoded <= limits.max_inline + 2 {
        assert_eq!(got, Ok(Parsed::Complete { command: want, consumed: encoded }), "inline round trip");
    }
}
