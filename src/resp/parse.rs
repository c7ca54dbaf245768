//! Request parsing: one client command from the front of a byte buffer.
//!
//! Two request forms exist, told apart by the first byte as Redis does:
//!
//! - `*` starts a RESP array of bulk strings, the form every client library
//!   sends: `*<n>\r\n` then n × `$<len>\r\n<bytes>\r\n`. Binary safe.
//! - anything else is an inline command, one line ended by `\n` (an optional
//!   `\r` before it is dropped), split on blanks with Redis-style quoting. This
//!   is what a human types into `telnet` or `nc`.
//!
//! The parser is stateless: it is called with everything buffered so far and
//! either finds a whole command, asks for more bytes, or reports an error.
//! Invariants the caller may rely on:
//!
//! - the outcome depends only on the bytes, never on how they were split into
//!   reads: once some prefix of a stream yields `Complete` or an error, every
//!   longer prefix yields exactly the same result;
//! - `Complete { consumed }` always has `0 < consumed <= buf.len()`;
//! - every limit is enforced from a header or a bounded look-ahead, so the
//!   caller never has to buffer more than about
//!   `max_args × (max_bulk + 32)` bytes (array form) or `max_inline + 2`
//!   bytes (inline form) before getting an answer;
//! - a pending bulk payload is never scanned, only its length compared, so
//!   re-parsing a slowly arriving array command costs O(args), not O(bytes);
//!   a pending inline line is re-scanned for its newline (as in Redis), at
//!   most `max_inline + 2` bytes per call, with a fast byte search.

use std::fmt;

/// Longest accepted length header (`*` or `$` plus its digits) before the
/// CRLF. The longest meaningful one, `$-9223372036854775808`, is 21 bytes;
/// anything past 32 bytes without a CR is garbage, so we stop waiting.
pub const MAX_LENGTH_LINE: usize = 32;

/// Upper bound on argument slots reserved up front, whatever the header
/// claims, so a huge (if allowed) count cannot force a huge allocation before
/// the arguments actually arrive.
const MAX_PREALLOC_ARGS: usize = 64;

const INVALID_MULTIBULK: &str = "invalid multibulk length";
const INVALID_BULK: &str = "invalid bulk length";
const TOO_BIG_MULTIBULK: &str = "too big mbulk count string";
const TOO_BIG_BULK: &str = "too big bulk count string";
const MISSING_CRLF: &str = "expected CRLF after bulk string";
const UNBALANCED_QUOTES: &str = "unbalanced quotes in request";
const TOO_BIG_INLINE: &str = "too big inline request";

/// Size limits applied while parsing; exceeding any of them is a
/// [`ProtocolError`], detected as early as the bytes allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted bulk string payload, in bytes (checked against the
    /// `$<len>` header, before the payload arrives).
    pub max_bulk: usize,
    /// Largest accepted argument count, command name included (checked
    /// against the `*<n>` header).
    pub max_args: usize,
    /// Longest accepted inline line, in bytes, not counting its `\r\n`/`\n`.
    pub max_inline: usize,
}

impl Default for Limits {
    /// 64 KiB payloads, 16 arguments, and inline lines long enough to carry
    /// one maximal payload plus a command name and a channel.
    fn default() -> Self {
        Limits { max_bulk: 64 * 1024, max_args: 16, max_inline: 65 * 1024 }
    }
}

/// One client command: its arguments as raw bytes (`args[0]` is the command
/// name, any case). An empty `args` means "nothing to run" (`*0`, `*-1`, or
/// an empty inline line); the caller skips it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    pub args: Vec<Vec<u8>>,
}

impl Command {
    /// The command name (`args[0]`) ASCII-uppercased for dispatch; invalid
    /// UTF-8 is replaced lossily, and an empty command gives `""`.
    pub fn name_upper(&self) -> String {
        self.args.first().map(|name| String::from_utf8_lossy(name).to_ascii_uppercase()).unwrap_or_default()
    }
}

/// The outcome of a successful [`parse_command`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole command sits at the front of the buffer; drop `consumed`
    /// bytes before parsing the next one.
    Complete { command: Command, consumed: usize },
    /// The buffer holds only the start of a command; read more and retry
    /// with the same (grown) buffer.
    Partial,
}

/// A protocol error: the connection answers `-ERR Protocol error: <message>`
/// and closes (as Redis does). The field holds `<message>` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn new(message: &str) -> Self {
        ProtocolError(message.to_owned())
    }

    /// The full error reply text, ready for [`super::reply::error`]:
    /// `ERR Protocol error: <message>`.
    pub fn reply_text(&self) -> String {
        format!("ERR {self}")
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Parses one command from the front of `buf`, in either request form (see
/// the module docs). Returns `Partial` when more bytes are needed, and never
/// panics, whatever `buf` holds.
pub fn parse_command(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    match buf.first() {
        None => Ok(Parsed::Partial),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

// ---------------------------------------------------------------------------
// Array form
// ---------------------------------------------------------------------------

/// Parses `*<n>\r\n` followed by n bulk strings, starting at `buf[0] == '*'`.
fn parse_multibulk(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    let Some((count, mut pos)) = length_line(buf, 0, TOO_BIG_MULTIBULK, INVALID_MULTIBULK)? else {
        return Ok(Parsed::Partial);
    };
    // Redis treats every count <= 0 (`*0`, `*-1`, even `*-10`) as an empty
    // request: consumed, nothing run, connection kept.
    if count <= 0 {
        return Ok(Parsed::Complete { command: Command::default(), consumed: pos });
    }
    let count = checked_limit(count, limits.max_args, INVALID_MULTIBULK)?;
    // Borrow the payloads first and copy only once the whole command is
    // here, so a Partial re-parse allocates next to nothing.
    let mut payloads: Vec<&[u8]> = Vec::with_capacity(count.min(MAX_PREALLOC_ARGS));
    while payloads.len() < count {
        let Some((payload, next)) = parse_bulk(buf, pos, limits)? else {
            return Ok(Parsed::Partial);
        };
        payloads.push(payload);
        pos = next;
    }
    let args = payloads.into_iter().map(<[u8]>::to_vec).collect();
    Ok(Parsed::Complete { command: Command { args }, consumed: pos })
}

/// Parses one `$<len>\r\n<payload>\r\n` element starting at `pos`. Returns
/// the payload and the position just past its CRLF, or `None` if more bytes
/// are needed.
fn parse_bulk<'a>(
    buf: &'a [u8],
    pos: usize,
    limits: &Limits,
) -> Result<Option<(&'a [u8], usize)>, ProtocolError> {
    match buf.get(pos) {
        None => return Ok(None),
        Some(b'$') => {}
        Some(&other) => return Err(expected_dollar(other)),
    }
    let Some((len, start)) = length_line(buf, pos, TOO_BIG_BULK, INVALID_BULK)? else {
        return Ok(None);
    };
    // Checked here, from the header alone: an oversize payload is refused
    // before any of it has to be buffered.
    let len = checked_limit(len, limits.max_bulk, INVALID_BULK)?;
    bulk_payload(buf, start, len)
}

/// Splits `len` payload bytes at `start` and checks the CRLF after them.
/// Each terminator byte is checked as soon as it arrives, so a wrong length
/// fails without waiting for more input.
fn bulk_payload(buf: &[u8], start: usize, len: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = buf.get(start..).unwrap_or_default();
    let Some((payload, tail)) = rest.split_at_checked(len) else {
        return Ok(None);
    };
    match tail {
        [] | [b'\r'] => Ok(None),
        [b'\r', b'\n', ..] => Ok(Some((payload, start + len + 2))),
        _ => Err(ProtocolError::new(MISSING_CRLF)),
    }
}

/// The Redis message for a non-`$` byte where a bulk string must start.
/// Non-printable bytes are shown escaped (`\r`, `\x00`) rather than raw, so
/// the message stays one readable line.
fn expected_dollar(got: u8) -> ProtocolError {
    ProtocolError(format!("expected '$', got '{}'", got.escape_ascii()))
}

/// Converts a header value to a size within `limit`, or fails with
/// `message` (negative, too large for `usize`, or over the limit).
fn checked_limit(value: i64, limit: usize, message: &str) -> Result<usize, ProtocolError> {
    usize::try_from(value).ok().filter(|&n| n <= limit).ok_or_else(|| ProtocolError::new(message))
}

/// Reads the length header whose type byte (`*` or `$`) is at `buf[start]`:
/// the decimal digits up to the first CR, which must be followed by LF.
/// Returns the value and the position after the LF, or `None` if the CRLF
/// has not arrived yet.
///
/// Fails with `too_long` once [`MAX_LENGTH_LINE`] bytes have arrived with no
/// CR among them, and with `invalid` if the digits are not a strict decimal
/// or the CR is followed by something other than LF.
fn length_line(
    buf: &[u8],
    start: usize,
    too_long: &str,
    invalid: &str,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let line = buf.get(start..).unwrap_or_default();
    // Only the first MAX_LENGTH_LINE + 1 bytes may hold the CR; looking no
    // further keeps the result independent of how much else is buffered.
    let window = line.get(..=MAX_LENGTH_LINE).unwrap_or(line);
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if line.len() > MAX_LENGTH_LINE { Err(ProtocolError::new(too_long)) } else { Ok(None) };
    };
    match line.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => {
            let value = line.get(1..cr).and_then(parse_decimal).ok_or_else(|| ProtocolError::new(invalid))?;
            Ok(Some((value, start + cr + 2)))
        }
        Some(_) => Err(ProtocolError::new(invalid)),
    }
}

/// Parses a strict decimal integer the way Redis' `string2ll` does: an
/// optional `-`, then `0` alone or digits without a leading zero; no `+`, no
/// blanks, no `-0`, and the magnitude must fit in an `i64`.
fn parse_decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    match digits {
        [] => return None,
        [b'0'] => return (!negative).then_some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let magnitude = digits.iter().try_fold(0i64, |acc, &b| {
        let digit = i64::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        acc.checked_mul(10)?.checked_add(digit)
    })?;
    if negative {
        magnitude.checked_neg()
    } else {
        Some(magnitude)
    }
}

// ---------------------------------------------------------------------------
// Inline form
// ---------------------------------------------------------------------------

/// Parses one inline line: everything up to the first `\n`, minus an
/// optional `\r` before it.
///
/// The line limit applies whether or not the newline has arrived yet, so a
/// too-long line fails the same way however it was split into reads.
fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    // A line within the limit has its '\n' at index max_inline + 1 at the
    // latest (after a '\r'), so there is no point looking further.
    let window = buf.get(..limits.max_inline.saturating_add(2)).unwrap_or(buf);
    // A line trickling in is re-scanned on every read; `contains` uses the
    // standard library's word-at-a-time byte search, keeping that repeated
    // "no newline yet" answer cheap. `position` runs once the line is whole.
    let newline = if window.contains(&b'\n') { window.iter().position(|&b| b == b'\n') } else { None };
    let Some(newline) = newline else {
        // No newline yet: what is buffered is the line so far, except that a
        // trailing '\r' may turn out to be part of the terminator.
        return if strip_cr(buf).len() > limits.max_inline {
            Err(ProtocolError::new(TOO_BIG_INLINE))
        } else {
            Ok(Parsed::Partial)
        };
    };
    let line = strip_cr(window.get(..newline).unwrap_or_default());
    if line.len() > limits.max_inline {
        return Err(ProtocolError::new(TOO_BIG_INLINE));
    }
    let args = split_args(line)?;
    Ok(Parsed::Complete { command: Command { args }, consumed: newline + 1 })
}

/// `line` without one trailing `\r`, if it has one.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whitespace separating inline arguments: C's `isspace` in the "C" locale,
/// which is what Redis' `sdssplitargs` uses.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Splits an inline line into arguments like Redis' `sdssplitargs`: blanks
/// separate arguments; `"..."` understands `\n \r \t \b \a \\ \" \xHH` (any
/// other `\c` is `c`); `'...'` understands only `\'`. A closing quote must be
/// followed by a blank or the end of the line. A blank line gives no
/// arguments.
fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut rest = skip_blanks(line);
    while !rest.is_empty() {
        let (arg, after) = read_arg(rest)?;
        args.push(arg);
        rest = skip_blanks(after);
    }
    Ok(args)
}

/// `s` without its leading blanks.
fn skip_blanks(s: &[u8]) -> &[u8] {
    let blanks = s.iter().take_while(|&&b| is_blank(b)).count();
    s.get(blanks..).unwrap_or_default()
}

/// Reads one argument from `s` (which starts with a non-blank). Bare bytes
/// may run straight into a quoted section (`ab"c d"` is `abc d`, as in
/// Redis), which then ends the argument. Returns the argument and the unread
/// rest, which is empty or starts with a blank.
fn read_arg(mut s: &[u8]) -> Result<(Vec<u8>, &[u8]), ProtocolError> {
    let mut arg = Vec::new();
    loop {
        match s {
            [] => return Ok((arg, s)),
            [b, ..] if is_blank(*b) => return Ok((arg, s)),
            [b'"', rest @ ..] => return double_quoted(rest, arg),
            [b'\'', rest @ ..] => return single_quoted(rest, arg),
            [b, rest @ ..] => {
                arg.push(*b);
                s = rest;
            }
        }
    }
}

/// Reads the body of a `"..."` section (opening quote already taken),
/// appending to `arg`. Returns the finished argument and the rest after the
/// closing quote.
fn double_quoted(mut s: &[u8], mut arg: Vec<u8>) -> Result<(Vec<u8>, &[u8]), ProtocolError> {
    loop {
        if let [b'\\', b'x', high, low, rest @ ..] = s {
            if let Some(byte) = hex_pair(*high, *low) {
                arg.push(byte);
                s = rest;
                continue;
            }
        }
        match s {
            [] => return Err(ProtocolError::new(UNBALANCED_QUOTES)),
            [b'\\', c, rest @ ..] => {
                arg.push(unescape(*c));
                s = rest;
            }
            [b'"', rest @ ..] => return closing_quote(rest).map(|rest| (arg, rest)),
            // Includes a lone trailing backslash, kept literally as Redis
            // does; the missing closing quote then fails on the next turn.
            [b, rest @ ..] => {
                arg.push(*b);
                s = rest;
            }
        }
    }
}

/// Reads the body of a `'...'` section (opening quote already taken),
/// appending to `arg`; only `\'` is an escape in here.
fn single_quoted(mut s: &[u8], mut arg: Vec<u8>) -> Result<(Vec<u8>, &[u8]), ProtocolError> {
    loop {
        match s {
            [] => return Err(ProtocolError::new(UNBALANCED_QUOTES)),
            [b'\\', b'\'', rest @ ..] => {
                arg.push(b'\'');
                s = rest;
            }
            [b'\'', rest @ ..] => return closing_quote(rest).map(|rest| (arg, rest)),
            [b, rest @ ..] => {
                arg.push(*b);
                s = rest;
            }
        }
    }
}

/// Checks what follows a closing quote: Redis rejects `"a"b` (quote glued to
/// more text) with the same message as a missing quote.
fn closing_quote(rest: &[u8]) -> Result<&[u8], ProtocolError> {
    match rest.first() {
        Some(&b) if !is_blank(b) => Err(ProtocolError::new(UNBALANCED_QUOTES)),
        _ => Ok(rest),
    }
}

/// The byte a `\c` escape inside double quotes stands for.
fn unescape(c: u8) -> u8 {
    match c {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    }
}

/// The byte written as two hex digits, if both are hex digits.
fn hex_pair(high: u8, low: u8) -> Option<u8> {
    Some((hex_digit(high)? << 4) | hex_digit(low)?)
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits { max_bulk: 8, max_args: 3, max_inline: 16 }
    }

    fn parse(buf: &[u8]) -> Result<Parsed, ProtocolError> {
        parse_command(buf, &Limits::default())
    }

    fn complete(args: &[&[u8]], consumed: usize) -> Result<Parsed, ProtocolError> {
        let args = args.iter().map(|a| a.to_vec()).collect();
        Ok(Parsed::Complete { command: Command { args }, consumed })
    }

    fn err(message: &str) -> Result<Parsed, ProtocolError> {
        Err(ProtocolError(message.to_owned()))
    }

    /// Valid single commands: (input, expected args). Each input is exactly
    /// one command, so `consumed` must be its whole length.
    const VALID: &[(&[u8], &[&[u8]])] = &[
        // Array form.
        (b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$5\r\nhello\r\n", &[b"PUBLISH", b"news", b"hello"]),
        (b"*1\r\n$4\r\nPING\r\n", &[b"PING"]),
        (b"*2\r\n$4\r\nping\r\n$3\r\nhi!\r\n", &[b"ping", b"hi!"]),
        (b"*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n", &[b"ECHO", b"hello world"]),
        (b"*1\r\n$4\r\nQUIT\r\n", &[b"QUIT"]),
        (b"*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n", &[b"COMMAND", b"DOCS"]),
        // Binary safe: CR, LF, CRLF, NUL and high bytes inside a payload.
        (b"*2\r\n$4\r\nECHO\r\n$8\r\na\r\nb\0\r\xff\n\r\n", &[b"ECHO", b"a\r\nb\0\r\xff\n"]),
        (b"*2\r\n$4\r\nECHO\r\n$2\r\n\r\n\r\n", &[b"ECHO", b"\r\n"]),
        // Empty payloads.
        (b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", &[b"ECHO", b""]),
        (b"*1\r\n$0\r\n\r\n", &[b""]),
        // Empty requests: consumed, no arguments.
        (b"*0\r\n", &[]),
        (b"*-1\r\n", &[]),
        (b"*-10\r\n", &[]),
        // Inline form.
        (b"PING\r\n", &[b"PING"]),
        (b"PING\n", &[b"PING"]),
        (b"ping hello\r\n", &[b"ping", b"hello"]),
        (b"  PUBLISH \t news   hi \r\n", &[b"PUBLISH", b"news", b"hi"]),
        (b"COMMAND DOCS\n", &[b"COMMAND", b"DOCS"]),
        (b"ECHO \"hello world\"\r\n", &[b"ECHO", b"hello world"]),
        (b"ECHO 'it\\'s' x\r\n", &[b"ECHO", b"it's", b"x"]),
        (b"ECHO 'a\\nb'\r\n", &[b"ECHO", b"a\\nb"]),
        (b"ECHO \"a\\nb\\r\\tc\\\\d\\\"e\"\r\n", &[b"ECHO", b"a\nb\r\tc\\d\"e"]),
        (b"ECHO \"\\x41\\x6a\\xFF\\x00\"\n", &[b"ECHO", b"Aj\xff\0"]),
        (b"ECHO \"\\xZZ\\b\\a\\q\"\n", &[b"ECHO", b"xZZ\x08\x07q"]),
        (b"ECHO \"\"\n", &[b"ECHO", b""]),
        (b"ECHO ''\n", &[b"ECHO", b""]),
        (b"ECHO ab\"c d\"\n", &[b"ECHO", b"abc d"]),
        (b"ECHO \"a\"\t'b'\n", &[b"ECHO", b"a", b"b"]),
        (b"ECHO a\rb\n", &[b"ECHO", b"a", b"b"]),
        // Empty and blank lines: consumed, no arguments.
        (b"\r\n", &[]),
        (b"\n", &[]),
        (b"   \t \r\n", &[]),
    ];

    #[test]
    fn valid_commands_parse_whole() {
        for (input, args) in VALID {
            assert_eq!(
                parse(input),
                complete(args, input.len()),
                "input {:?}",
                input.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn valid_commands_byte_at_a_time() {
        for (input, args) in VALID {
            for end in 0..input.len() {
                assert_eq!(
                    parse(&input[..end]),
                    Ok(Parsed::Partial),
                    "prefix {end} of {:?}",
                    input.escape_ascii().to_string()
                );
            }
            assert_eq!(parse(input), complete(args, input.len()));
        }
    }

    #[test]
    fn consumed_is_exact_with_trailing_bytes() {
        for (input, args) in VALID {
            for trailer in [&b"*"[..], b"x", b"\r\n", b"*1\r\n$4\r\nPING\r\n"] {
                let buf = [*input, trailer].concat();
                assert_eq!(parse(&buf), complete(args, input.len()));
            }
        }
    }

    #[test]
    fn pipelined_commands_parse_in_order() {
        let stream: Vec<u8> = VALID.iter().flat_map(|(input, _)| input.iter().copied()).collect();
        let mut pos = 0;
        for (input, args) in VALID {
            assert_eq!(parse(&stream[pos..]), complete(args, input.len()));
            pos += input.len();
        }
        assert_eq!(pos, stream.len());
        assert_eq!(parse(&stream[pos..]), Ok(Parsed::Partial));
    }

    #[test]
    fn pipelined_mixed_forms_in_one_buffer() {
        let buf = b"PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*0\r\nQUIT\n*1\r\n$4\r\nPI";
        let expected: &[(&[&[u8]], usize)] =
            &[(&[b"PING"], 6), (&[b"ECHO", b"hi"], 22), (&[], 4), (&[b"QUIT"], 5)];
        let mut pos = 0;
        for (args, consumed) in expected {
            assert_eq!(parse(&buf[pos..]), complete(args, *consumed));
            pos += consumed;
        }
        assert_eq!(parse(&buf[pos..]), Ok(Parsed::Partial));
    }

    #[test]
    fn empty_buffer_is_partial() {
        assert_eq!(parse(b""), Ok(Parsed::Partial));
    }

    /// Invalid input: (input, limits, message). Each must fail as soon as
    /// the input ends (no more bytes needed to see the error).
    fn error_cases() -> Vec<(Vec<u8>, Limits, &'static str)> {
        let d = Limits::default();
        let mut cases: Vec<(Vec<u8>, Limits, &'static str)> = vec![
            // Wrong type byte where a bulk string must start.
            (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nf".to_vec(), d, "expected '$', got 'f'"),
            (b"*1\r\n:".to_vec(), d, "expected '$', got ':'"),
            (b"*1\r\n*".to_vec(), d, "expected '$', got '*'"),
            (b"*1\r\n\r".to_vec(), d, "expected '$', got '\\r'"),
            (b"*1\r\n\0".to_vec(), d, "expected '$', got '\\x00'"),
            // Bad multibulk counts.
            (b"*\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*abc\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*+1\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*01\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*-0\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*-\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"* 1\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*1 \r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*1.0\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*9223372036854775808\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*99999999999999999999999999999\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*9223372036854775807\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*17\r\n".to_vec(), d, INVALID_MULTIBULK),
            (b"*4\r\n".to_vec(), small(), INVALID_MULTIBULK),
            (b"*1\rx".to_vec(), d, INVALID_MULTIBULK),
            (b"*1\r\r".to_vec(), d, INVALID_MULTIBULK),
            // Bad bulk lengths.
            (b"*1\r\n$\r\n".to_vec(), d, INVALID_BULK),
            (b"*1\r\n$abc\r\n".to_vec(), d, INVALID_BULK),
            (b"*1\r\n$-1\r\n".to_vec(), d, INVALID_BULK),
            (b"*1\r\n$-5\r\n".to_vec(), d, INVALID_BULK),
            (b"*1\r\n$04\r\n".to_vec(), d, INVALID_BULK),
            (b"*1\r\n$+4\r\n".to_vec(), d, INVALID_BULK),
            (b"*1\r\n$99999999999999999999\r\n".to_vec(), d, INVALID_BULK),
            (b"*1\r\n$65537\r\n".to_vec(), d, INVALID_BULK),
            (b"*2\r\n$4\r\nECHO\r\n$9\r\n".to_vec(), small(), INVALID_BULK),
            (b"*1\r\n$4\rP".to_vec(), d, INVALID_BULK),
            // Payload not followed by CRLF (length disagrees with the data).
            (b"*1\r\n$3\r\nPING".to_vec(), d, MISSING_CRLF),
            (b"*1\r\n$4\r\nPING\rx".to_vec(), d, MISSING_CRLF),
            (b"*1\r\n$4\r\nPING\n".to_vec(), d, MISSING_CRLF),
            (b"*2\r\n$4\r\nECHO\r\n$1\r\nab".to_vec(), d, MISSING_CRLF),
            // Unbalanced or glued quotes in inline commands.
            (b"ECHO \"hello\n".to_vec(), d, UNBALANCED_QUOTES),
            (b"ECHO 'hello\r\n".to_vec(), d, UNBALANCED_QUOTES),
            (b"ECHO \"a\"b\n".to_vec(), d, UNBALANCED_QUOTES),
            (b"ECHO 'a'b\n".to_vec(), d, UNBALANCED_QUOTES),
            (b"ECHO \"a\\\"\n".to_vec(), d, UNBALANCED_QUOTES),
            (b"ECHO \"a\\\n".to_vec(), d, UNBALANCED_QUOTES),
            (b"ECHO 'a\\'\n".to_vec(), d, UNBALANCED_QUOTES),
            (b"\"\n".to_vec(), d, UNBALANCED_QUOTES),
            (b"ECHO 'it''s'\r\n".to_vec(), d, UNBALANCED_QUOTES),
            // Over-long inline lines fail before their newline arrives.
            (b"PUBLISH news 1234".to_vec(), small(), TOO_BIG_INLINE),
            (vec![b'a'; d.max_inline + 1], d, TOO_BIG_INLINE),
        ];
        // Length headers that never end.
        let mut long_count = b"*".to_vec();
        long_count.extend_from_slice(&[b'1'; MAX_LENGTH_LINE]);
        cases.push((long_count, d, TOO_BIG_MULTIBULK));
        let mut long_bulk = b"*1\r\n$".to_vec();
        long_bulk.extend_from_slice(&[b'0'; MAX_LENGTH_LINE]);
        cases.push((long_bulk, d, TOO_BIG_BULK));
        cases
    }

    #[test]
    fn errors_have_redis_messages() {
        for (input, limits, message) in error_cases() {
            let shown = input.escape_ascii().to_string();
            assert_eq!(parse_command(&input, &limits), err(message), "input {shown:?}");
        }
    }

    #[test]
    fn errors_detected_exactly_when_the_input_shows_them() {
        // No strict prefix fails: the error cases are minimal, so each error
        // appears exactly at its last byte, and appending bytes keeps it.
        for (input, limits, message) in error_cases() {
            let shown = input.escape_ascii().to_string();
            for end in 0..input.len() {
                let prefix = parse_command(&input[..end], &limits);
                assert_eq!(prefix, Ok(Parsed::Partial), "prefix {end} of {shown:?}");
            }
            let longer = [&input[..], b"\r\n$4\r\nPING\r\n\n"].concat();
            assert_eq!(parse_command(&longer, &limits), err(message), "extended {shown:?}");
        }
    }

    #[test]
    fn too_big_inline_fails_with_newline_present() {
        // Whether the newline is already buffered must not matter.
        for line in [&b"PUBLISH news 1234\n"[..], b"PUBLISH news 1234\r\n", b"PUBLISH news 12345\n"] {
            assert_eq!(parse_command(line, &small()), err(TOO_BIG_INLINE));
        }
        assert_eq!(
            parse_command(b"PUBLISH news 123\r\n", &small()),
            complete(&[b"PUBLISH", b"news", b"123"], 18)
        );
    }

    #[test]
    fn oversize_detected_from_header_alone() {
        let d = Limits::default();
        // Headers only; no payload bytes buffered.
        assert_eq!(parse_command(b"*1\r\n$65537\r\n", &d), err(INVALID_BULK));
        assert_eq!(parse_command(b"*1\r\n$9223372036854775807\r\n", &d), err(INVALID_BULK));
        assert_eq!(parse_command(b"*17\r\n", &d), err(INVALID_MULTIBULK));
        assert_eq!(parse_command(b"*1000000\r\n", &d), err(INVALID_MULTIBULK));
        // Exactly at the limits is fine, and still waits for the payload.
        assert_eq!(parse_command(b"*1\r\n$65536\r\n", &d), Ok(Parsed::Partial));
        assert_eq!(parse_command(b"*16\r\n", &d), Ok(Parsed::Partial));
    }

    #[test]
    fn payload_at_limits_is_accepted() {
        let d = Limits::default();
        let payload = vec![b'x'; d.max_bulk];
        let mut buf = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", payload.len()).into_bytes();
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse_command(&buf, &d), complete(&[b"ECHO", &payload], buf.len()));

        let mut sixteen = b"*16\r\n".to_vec();
        for _ in 0..16 {
            sixteen.extend_from_slice(b"$1\r\na\r\n");
        }
        let args: Vec<&[u8]> = vec![b"a"; 16];
        assert_eq!(parse_command(&sixteen, &d), complete(&args, sixteen.len()));

        let mut line = vec![b'a'; d.max_inline];
        line.extend_from_slice(b"\r\n");
        assert_eq!(parse_command(&line, &d), complete(&[&line[..d.max_inline]], line.len()));
        // Exactly max_inline bytes then a lone '\r': the '\r' may still be
        // the terminator, so this waits rather than failing.
        assert_eq!(parse_command(&line[..d.max_inline + 1], &d), Ok(Parsed::Partial));
    }

    #[test]
    fn huge_limits_do_not_preallocate() {
        let unlimited = Limits { max_bulk: usize::MAX, max_args: usize::MAX, max_inline: usize::MAX };
        assert_eq!(parse_command(b"*9223372036854775807\r\n$1\r\na\r\n", &unlimited), Ok(Parsed::Partial));
        assert_eq!(parse_command(b"*1\r\n$9223372036854775807\r\nab", &unlimited), Ok(Parsed::Partial));
        assert_eq!(parse_command(b"PING", &unlimited), Ok(Parsed::Partial));
    }

    #[test]
    fn name_upper_is_case_insensitive_and_lossy() {
        let cases: &[(&[&[u8]], &str)] = &[
            (&[b"publish", b"x"], "PUBLISH"),
            (&[b"PiNg"], "PING"),
            (&[b"caf\xc3\xa9"], "CAF\u{e9}"),
            (&[b"a\xffb"], "A\u{fffd}B"),
            (&[], ""),
        ];
        for (args, upper) in cases {
            let command = Command { args: args.iter().map(|a| a.to_vec()).collect() };
            assert_eq!(command.name_upper(), *upper);
        }
    }

    #[test]
    fn protocol_error_formats_redis_reply() {
        let e = ProtocolError::new(INVALID_BULK);
        assert_eq!(e.to_string(), "Protocol error: invalid bulk length");
        assert_eq!(e.reply_text(), "ERR Protocol error: invalid bulk length");
    }

    #[test]
    fn parse_decimal_is_strict() {
        let cases: &[(&[u8], Option<i64>)] = &[
            (b"0", Some(0)),
            (b"7", Some(7)),
            (b"-1", Some(-1)),
            (b"65536", Some(65536)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775807", Some(-i64::MAX)),
            (b"9223372036854775808", None),
            (b"", None),
            (b"-", None),
            (b"-0", None),
            (b"00", None),
            (b"+1", None),
            (b" 1", None),
            (b"1x", None),
            (b"\xff", None),
        ];
        for (text, value) in cases {
            assert_eq!(parse_decimal(text), *value, "{:?}", text.escape_ascii().to_string());
        }
    }

    /// xorshift64*: a tiny deterministic generator, so the garbage test
    /// needs no dependency and every failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Bytes that steer random input into the parser's interesting paths.
    const ALPHABET: &[u8] = b"*$\r\n\r\n0123456789-+ \t\"'\\xAfPING";

    fn garbage(rng: &mut Rng) -> Vec<u8> {
        let len = rng.below(48);
        let mut buf: Vec<u8> = (0..len)
            .map(|_| if rng.below(5) == 0 { rng.next() as u8 } else { ALPHABET[rng.below(ALPHABET.len())] })
            .collect();
        // Half the time, start from a valid command with a few bytes changed,
        // which reaches deeper than pure noise.
        if rng.below(2) == 0 {
            let (valid, _) = VALID[rng.below(VALID.len())];
            let mut mutated = valid.to_vec();
            for _ in 0..rng.below(3) {
                let at = rng.below(mutated.len());
                mutated[at] = ALPHABET[rng.below(ALPHABET.len())];
            }
            mutated.truncate(rng.below(mutated.len() + 1));
            buf.splice(0..0, mutated);
        }
        buf
    }

    #[test]
    fn garbage_never_panics_and_is_split_independent() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let limits = Limits { max_bulk: 8, max_args: 4, max_inline: 24 };
        for _ in 0..20_000 {
            let buf = garbage(&mut rng);
            let shown = buf.escape_ascii().to_string();
            // Walk every prefix: Partial until some prefix decides, and from
            // then on every longer prefix decides exactly the same.
            let mut decided: Option<Result<Parsed, ProtocolError>> = None;
            for end in 0..=buf.len() {
                let result = parse_command(&buf[..end], &limits);
                if let Ok(Parsed::Complete { consumed, .. }) = &result {
                    assert!(*consumed > 0 && *consumed <= end, "consumed {consumed} of {end}: {shown:?}");
                }
                match &decided {
                    Some(earlier) => assert_eq!(&result, earlier, "prefix {end} of {shown:?}"),
                    None if result != Ok(Parsed::Partial) => decided = Some(result),
                    None => {}
                }
            }
        }
    }
}
