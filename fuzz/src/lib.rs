//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every parser fuzzed here is stateless and restartable: the caller keeps
//! the bytes received so far and calls again with the longer buffer after a
//! `Partial`. The checks below hold them to that contract, so a result can
//! never depend on how the bytes were split into reads.

use std::fmt::Debug;

/// A small deterministic generator seeded from the input, so every choice a
/// target makes (split points, limits) is derived from the fuzz data and a
/// crash reproduces from its input alone.
pub struct Rng(u64);

impl Rng {
    pub fn new(data: &[u8]) -> Rng {
        // FNV-1a over the input, then never zero (xorshift needs a non-zero state).
        let hash = data
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Rng(hash | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Increasing end offsets `0 < p1 < p2 < ... < len` (at most `max + 1` of
/// them, `len` always last) at which to cut `data` into successive reads;
/// none for empty `data`.
pub fn feed_points(data: &[u8], max: usize) -> Vec<usize> {
    let len = data.len();
    if len == 0 {
        return Vec::new();
    }
    let mut rng = Rng::new(data);
    let mut points: Vec<usize> = (0..rng.below(max + 1)).map(|_| 1 + rng.below(len)).collect();
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points.retain(|&p| p > 0);
    points
}

/// Feeds `data` to `parse` as a growing buffer cut at `points` (as a
/// connection would, calling again after each `Partial`) and checks the
/// restartable-parser contract against `full`, the result for all of
/// `data`:
///
/// - while a prefix gives `Partial`, keep going;
/// - the first prefix that gives anything else must give exactly `full`
///   (the same request/frame/command and `consumed`, or the same error);
/// - so does every longer prefix after it;
/// - if every prefix is `Partial`, so is `full`.
pub fn check_incremental<T, F, P>(data: &[u8], points: &[usize], full: &T, parse: F, is_partial: P)
where
    T: PartialEq + Debug,
    F: Fn(&[u8]) -> T,
    P: Fn(&T) -> bool,
{
    check_incremental_by(data, points, full, parse, is_partial, |prefix, whole| prefix == whole);
}

/// [`check_incremental`] with `same(prefix_result, whole_result)` deciding
/// whether a settled prefix agrees with the whole.
pub fn check_incremental_by<T, F, P, S>(
    data: &[u8],
    points: &[usize],
    full: &T,
    parse: F,
    is_partial: P,
    same: S,
) where
    T: Debug,
    F: Fn(&[u8]) -> T,
    P: Fn(&T) -> bool,
    S: Fn(&T, &T) -> bool,
{
    let mut settled = false;
    for &end in points {
        let got = parse(&data[..end]);
        if is_partial(&got) && !settled {
            continue;
        }
        settled = true;
        assert!(
            same(&got, full),
            "feeding {} bytes as reads ending at {points:?}: the prefix of {end} bytes disagrees with the whole\n\
             prefix: {got:?}\n whole: {full:?}",
            data.len()
        );
    }
    if !settled && !points.is_empty() {
        assert!(is_partial(full), "every prefix was Partial but the whole gives {full:?}");
    }
}

/// Checks that a `Complete` result that took `consumed` bytes is exactly
/// one message long: parsing `data[..consumed]` alone gives the same result,
/// and one byte less is still `Partial`.
pub fn check_exact_length<T, F, P>(data: &[u8], consumed: usize, full: &T, parse: F, is_partial: P)
where
    T: PartialEq + Debug,
    F: Fn(&[u8]) -> T,
    P: Fn(&T) -> bool,
{
    assert!(consumed > 0, "Complete with consumed == 0: {full:?}");
    assert!(consumed <= data.len(), "consumed {consumed} > input length {}", data.len());
    let alone = parse(&data[..consumed]);
    assert_eq!(&alone, full, "re-parsing exactly the {consumed} consumed bytes gives a different result");
    let short = parse(&data[..consumed - 1]);
    assert!(is_partial(&short), "one byte short of the {consumed} consumed bytes is not Partial: {short:?}");
}
