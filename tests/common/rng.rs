//! xorshift64* for masks, keys and jitter: seeded from the clock and a counter,
//! or from a given seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

static SEED_COUNTER: AtomicU64 = AtomicU64::new(1);

pub struct Rng(u64);

impl Rng {
    /// A fresh generator: different on every call.
    pub fn new() -> Rng {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let n = SEED_COUNTER.fetch_add(1, Ordering::Relaxed);
        Rng((nanos ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    /// A generator that repeats for the same seed.
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn millis(&mut self, min: u64, max: u64) -> Duration {
        Duration::from_millis(min + self.below(max - min + 1))
    }

    /// A non-zero masking key (a zero key would leave masking untested).
    pub fn mask(&mut self) -> [u8; 4] {
        loop {
            let key = ((self.next() >> 16) as u32).to_be_bytes();
            if key != [0; 4] {
                return key;
            }
        }
    }

    /// A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes.
    pub fn key(&mut self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next().to_be_bytes());
        STANDARD.encode(bytes)
    }
}
