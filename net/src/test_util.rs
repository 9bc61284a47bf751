//! Test-only helpers shared by the unit tests of several modules.
//!
//! Owns a fixed-seed xorshift64 generator: the everyday stand-in for the fuzz targets,
//! so a plain `cargo test` pushes thousands of odd inputs through every decoder without
//! a new dependency, and a failure reproduces exactly.

pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-enough in `0..n`; `n` must be positive.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `seed` with one to four bytes overwritten, sometimes truncated, sometimes with a
    /// copy of itself appended.
    pub(crate) fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut out = seed.to_vec();
        if out.is_empty() {
            return out;
        }
        for _ in 0..1 + self.below(4) {
            let at = self.below(out.len());
            out[at] = self.next() as u8;
        }
        if self.below(4) == 0 {
            out.truncate(self.below(out.len() + 1));
        }
        if self.below(4) == 0 {
            out.extend_from_slice(seed);
        }
        out
    }
}
