//! A small seeded generator (xorshift64*) for payloads, keys and random partition choice. Not for
//! anything that needs real randomness; a seed reproduces a run's bytes.

pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Zero is the one state xorshift never leaves.
        Rng { state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next_u64() % bound
    }

    /// Fills `out` with lowercase hex digits.
    pub fn fill_hex(&mut self, out: &mut [u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for chunk in out.chunks_mut(16) {
            let mut bits = self.next_u64();
            for byte in chunk {
                *byte = DIGITS[(bits & 0xf) as usize];
                bits >>= 4;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_bounded_choices() {
        let (mut a, mut b) = (Rng::new(5), Rng::new(5));
        let (mut x, mut y) = ([0u8; 40], [0u8; 40]);
        a.fill_hex(&mut x);
        b.fill_hex(&mut y);
        assert_eq!(x, y);
        assert!(x.iter().all(|c| c.is_ascii_hexdigit()));
        assert!((0..1000).all(|_| a.below(7) < 7));
    }
}
