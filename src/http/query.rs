//! Percent-decoding and query-string splitting.

use super::HttpError;

/// Decodes `%XX` escapes in `s` (and `+` as a space when `plus_as_space`,
/// the form-encoding rule used in query strings but not in paths).
///
/// Errors: a `%` not followed by two hex digits, or a result that is not
/// valid UTF-8, is `Malformed`. Decoding is done on bytes and validated once
/// at the end because a multi-byte character may be split over escapes.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Result<String, HttpError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(hex_value);
                let lo = bytes.next().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(HttpError::malformed("bad percent-escape")),
                }
            }
            b'+' if plus_as_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| HttpError::malformed("percent-decoded text is not valid UTF-8"))
}

/// The value of one hex digit, or `None` if `b` is not one.
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks that every name and value of a query decodes, so a request with a
/// broken parameter is refused (400) rather than served as if it were absent.
pub fn validate(query: &str) -> Result<(), HttpError> {
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        percent_decode(name, true)?;
        percent_decode(value, true)?;
    }
    Ok(())
}

/// Iterates the `name=value` pairs of a raw query string (without `?`).
///
/// Pairs are split on `&`; a pair without `=` has an empty value; empty
/// pairs (`a=1&&b=2`) are ignored. Names and values are percent-decoded
/// with `+` as space. A pair that does not decode is skipped rather than
/// failing the whole query, so one bad parameter cannot hide the others.
pub fn params(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|pair| !pair.is_empty()).filter_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name, true).ok()?;
        let value = percent_decode(value, true).ok()?;
        Some((name, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decode_table() {
        let ok = [
            ("", false, ""),
            ("/plain", false, "/plain"),
            ("/a%20b", false, "/a b"),
            ("a+b", false, "a+b"),
            ("a+b", true, "a b"),
            ("%2B", true, "+"),
            ("%e2%82%AC", false, "\u{20ac}"),
            ("caf%C3%A9", true, "caf\u{e9}"),
        ];
        for (input, plus, want) in ok {
            assert_eq!(percent_decode(input, plus), Ok(want.to_string()), "{input}");
        }
        let bad = [
            ("%", "bad percent-escape"),
            ("%2", "bad percent-escape"),
            ("%zz", "bad percent-escape"),
            ("%g0", "bad percent-escape"),
            ("%ff", "percent-decoded text is not valid UTF-8"),
            ("%C3", "percent-decoded text is not valid UTF-8"),
        ];
        for (input, why) in bad {
            assert_eq!(percent_decode(input, false), Err(HttpError::malformed(why)), "{input}");
        }
    }

    #[test]
    fn params_table() {
        let cases: [(&str, &[(&str, &str)]); 6] = [
            ("", &[]),
            ("a=1", &[("a", "1")]),
            ("a=1&b=x+y&c", &[("a", "1"), ("b", "x y"), ("c", "")]),
            ("a=&&b=%41", &[("a", ""), ("b", "A")]),
            ("bad=%zz&ok=1", &[("ok", "1")]),
            ("k%20ey=v=w", &[("k ey", "v=w")]),
        ];
        for (query, want) in cases {
            let got: Vec<(String, String)> = params(query).collect();
            let want: Vec<(String, String)> =
                want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(got, want, "{query}");
        }
    }
}
