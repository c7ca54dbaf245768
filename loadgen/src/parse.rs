//! Allocation-free parsing of what every message carries, whatever the
//! transport: the `s=<seq> t=<nanos> u=<seq>` payload fields, and the
//! per-subscriber sequence check. The transports' framing is in `decode`.

/// Wall-clock time in unix nanoseconds (what payloads carry in `t=`).
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn digits(hay: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = at;
    while i < hay.len() && hay[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add((hay[i] - b'0') as u64)?;
        i += 1;
    }
    (i > at).then_some((v, i))
}

/// Finds every `s=<seq> t=<nanos>` in `hay` (an `s=` at the start or after a
/// space, quote, colon or brace) and calls `f(seq, t, u)`, where `u` is the
/// optional `u=<seq>` that may follow `c=<channel>` (the lowest seq of the
/// channel still unanswered when this one was published; `seq` when absent).
/// Returns how many.
pub fn extract(hay: &[u8], f: &mut impl FnMut(u64, u64, u64)) -> usize {
    let mut found = 0;
    let mut from = 0;
    while let Some(p) = memchr::memchr(b's', &hay[from..]) {
        let p = from + p;
        from = p + 1;
        if hay.get(p + 1) != Some(&b'=')
            || (p > 0 && !matches!(hay[p - 1], b' ' | b'"' | b':' | b'{' | b'\n'))
        {
            continue;
        }
        let Some((seq, mut q)) = digits(hay, p + 2) else { continue };
        while q < hay.len() && hay[q] == b' ' {
            q += 1;
        }
        if hay.get(q) != Some(&b't') || hay.get(q + 1) != Some(&b'=') {
            continue;
        }
        let Some((t, end)) = digits(hay, q + 2) else { continue };
        f(seq, t, unanswered_from(hay, end).unwrap_or(seq));
        found += 1;
        from = end;
    }
    found
}

/// Reads ` c=<channel> u=<seq>` right after the `t=` field.
fn unanswered_from(hay: &[u8], mut i: usize) -> Option<u64> {
    let skip_spaces = |mut i: usize| {
        while hay.get(i) == Some(&b' ') {
            i += 1;
        }
        i
    };
    i = skip_spaces(i);
    if hay.get(i) == Some(&b'c') && hay.get(i + 1) == Some(&b'=') {
        while i < hay.len() && !matches!(hay[i], b' ' | b'"' | b'\n') {
            i += 1;
        }
        i = skip_spaces(i);
    }
    if hay.get(i) == Some(&b'u') && hay.get(i + 1) == Some(&b'=') {
        return digits(hay, i + 2).map(|(u, _)| u);
    }
    None
}

/// Per-subscriber bookkeeping of the sequence numbers seen: every seq below
/// `base` is settled (received, or given up once 256 later ones arrived),
/// `bits` marks received ones in `base..base+256`.
#[derive(Clone, Debug, Default)]
pub struct SeqTrack {
    base: u64,
    /// Highest seq seen + 1 (0: none yet).
    top: u64,
    /// The `u` of the highest seq seen: seqs below it were answered by the
    /// server before that message was published, so they must come first.
    top_u: u64,
    bits: [u64; 4],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    New { out_of_order: bool },
    Duplicate,
}

impl SeqTrack {
    /// Records seq `s` (published while `u..s` were unanswered). Out of order
    /// means: a higher seq arrived first although `s` had been answered
    /// before that one was published. Without `u=` (u == s) any reversal is.
    pub fn record(&mut self, s: u64, u: u64) -> Seen {
        if s < self.base {
            return Seen::Duplicate;
        }
        let out_of_order = s + 1 < self.top && s < self.top_u;
        // In order with nothing pending: the common case.
        if s == self.base && self.bits == [0; 4] {
            self.base += 1;
            if s + 1 > self.top {
                self.top = s + 1;
                self.top_u = u;
            }
            return Seen::New { out_of_order };
        }
        let mut off = s - self.base;
        if off >= 256 {
            self.shift(off - 255);
            off = 255;
        }
        let (w, b) = ((off / 64) as usize, off % 64);
        if self.bits[w] >> b & 1 == 1 {
            return Seen::Duplicate;
        }
        self.bits[w] |= 1 << b;
        loop {
            let ones = self.bits[0].trailing_ones() as u64;
            if ones == 0 {
                break;
            }
            self.shift(ones);
            if ones < 64 {
                break;
            }
        }
        if s + 1 > self.top {
            self.top = s + 1;
            self.top_u = u;
        }
        Seen::New { out_of_order }
    }

    fn shift(&mut self, n: u64) {
        self.base += n;
        if n >= 256 {
            self.bits = [0; 4];
            return;
        }
        let (words, bits) = ((n / 64) as usize, (n % 64) as u32);
        let old = self.bits;
        for i in 0..4 {
            let src = i + words;
            let lo = if src < 4 { old[src] >> bits } else { 0 };
            let hi = if bits > 0 && src + 1 < 4 { old[src + 1] << (64 - bits) } else { 0 };
            self.bits[i] = lo | hi;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_in_envelopes() {
        let body = br#"{"messages":[{"id":"1-0","channel":"ch1","data":"s=0 t=5 c=ch1 xx"},{"id":"1-1","channel":"ch1","data":"s=1 t=6 c=ch1 u=0 xxx"}],"last_id":"1-1"}"#;
        let mut got = Vec::new();
        assert_eq!(extract(body, &mut |s, t, u| got.push((s, t, u))), 2);
        assert_eq!(got, [(0, 5, 0), (1, 6, 0)]);
        assert_eq!(extract(b"xs=1 t=2 sas=3 t=", &mut |_, _, _| panic!()), 0);
    }

    #[test]
    fn seq_tracking() {
        let mut t = SeqTrack::default();
        let mut log = Vec::new();
        for s in [0, 1, 3, 2, 2, 4, 1, 600, 400, 900, 700, 5] {
            log.push(t.record(s, s));
        }
        use Seen::*;
        let n = |o| New { out_of_order: o };
        assert_eq!(
            log,
            [
                n(false),
                n(false),
                n(false),
                n(true),
                Duplicate,
                n(false),
                Duplicate,
                n(false),
                n(true),
                n(false),
                n(true),
                Duplicate
            ]
        );
        let mut t = SeqTrack::default();
        for s in 0..1000 {
            assert_eq!(t.record(s, s), n(false));
        }
        assert_eq!(t.record(999, 999), Duplicate);
        // 11 and 12 were in flight together: the server may order them either way.
        let mut t = SeqTrack::default();
        assert_eq!(t.record(10, 10), n(false));
        assert_eq!(t.record(12, 11), n(false));
        assert_eq!(t.record(11, 11), n(false));
        // 13 was answered before 14 was published: 14 first is out of order.
        assert_eq!(t.record(14, 14), n(false));
        assert_eq!(t.record(13, 12), n(true));
    }
}
