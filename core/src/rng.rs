//! Seeded randomness. The core has no randomness source of its own: every
//! random choice (backoff jitter, uuids, load spreading) comes from a
//! [`Prng`] seeded at construction, so equal inputs give equal outputs.

use alloc::string::String;

/// A small deterministic pseudo-random generator (SplitMix64).
///
/// Not cryptographic: it spreads load and makes unique-enough ids; it must
/// never protect a secret.
#[derive(Clone, Debug)]
pub struct Prng {
    state: u64,
}

impl Prng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Prng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..=max` (inclusive), uniform up to a negligible bias.
    pub fn below_inclusive(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        // Multiply-shift reduction: bias ≤ max / 2^64, irrelevant here.
        ((u128::from(self.next_u64()) * u128::from(max + 1)) >> 64) as u64
    }

    /// A random version-4 UUID in its canonical lower-case text form.
    pub fn uuid_v4(&mut self) -> String {
        let hi = self.next_u64();
        let lo = self.next_u64();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_be_bytes());
        bytes[8..].copy_from_slice(&lo.to_be_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(36);
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Prng::new(7);
        let mut b = Prng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Prng::new(1).next_u64(), Prng::new(2).next_u64());
    }

    #[test]
    fn below_inclusive_stays_in_range() {
        let mut r = Prng::new(3);
        let mut seen_max = false;
        for _ in 0..10_000 {
            let v = r.below_inclusive(20);
            assert!(v <= 20);
            seen_max |= v == 20;
        }
        assert!(seen_max);
    }

    #[test]
    fn uuid_has_v4_shape() {
        let u = Prng::new(42).uuid_v4();
        assert_eq!(u.len(), 36);
        let b: alloc::vec::Vec<char> = u.chars().collect();
        assert_eq!(b[14], '4');
        assert!(matches!(b[19], '8' | '9' | 'a' | 'b'));
        assert_eq!(u.matches('-').count(), 4);
    }
}
