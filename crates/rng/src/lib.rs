//! ueb's own deterministic random numbers: SplitMix64, xoshiro256**, an unbiased bounded draw,
//! a unit float and a Fisher–Yates shuffle.
//!
//! They are written out here, with no `rand` dependency, so that a published split, synthetic
//! dataset or bootstrap interval can never change because a dependency changed its algorithm.
//! Every definition is short enough to re-implement in a few lines of Python (the data crate's
//! reference scripts do), and each generator is checked against its authors' test vectors.

/// A source of 64 random bits, with the draws every ueb component builds on.
pub trait Rng64 {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64;

    /// A uniform integer in `0..n` (Lemire's multiply-and-reject method, unbiased); `n = 0`
    /// returns 0.
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// A uniform index in `0..n` (see [`Rng64::below`]).
    fn index(&mut self, n: usize) -> usize {
        // usize → u64 is lossless on every supported target, and the draw is < n.
        self.below(n as u64) as usize
    }

    /// A uniform float in `[0, 1)`: the top 53 bits of [`Rng64::next_u64`] times 2⁻⁵³.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Fisher–Yates shuffle: for `i` from `len − 1` down to 1, swap `items[i]` with
    /// `items[below(i + 1)]`.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014), the generator of Java's `SplittableRandom`.
///
/// `state ← state + 0x9E3779B97F4A7C15` (wrapping), then the output is the state mixed by
/// `z ← (z ^ (z >> 30)) · 0xBF58476D1CE4E5B9; z ← (z ^ (z >> 27)) · 0x94D049BB133111EB;
/// z ^ (z >> 31)` (wrapping products).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl Rng64 for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The seed of stream `stream` derived from `seed`: the first output of
/// `SplitMix64::new(seed + stream · 0x9E3779B97F4A7C15)`.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    SplitMix64::new(seed.wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))).next_u64()
}

/// xoshiro256** (Blackman & Vigna 2018): a small, fast generator with a 256-bit state, seeded
/// from SplitMix64 as its authors recommend.
#[derive(Clone, Debug)]
pub struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    /// The generator for stream `stream` of `seed`: its state is four outputs of
    /// `SplitMix64::new(derive_seed(seed, stream))`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut sm = SplitMix64::new(derive_seed(seed, stream));
        Self {
            s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()],
        }
    }

    /// A generator with an explicit state (for test vectors); the state must not be all zero.
    pub fn from_state(s: [u64; 4]) -> Self {
        Self { s }
    }
}

impl Rng64 for Xoshiro256 {
    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_output() {
        // Seed 0: the published SplitMix64 test vector.
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn xoshiro_reference_output() {
        // xoshiro256** from state {1, 2, 3, 4} (the authors' C code).
        let mut r = Xoshiro256::from_state([1, 2, 3, 4]);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, vec![11520, 0, 1509978240]);
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut r = Xoshiro256::new(7, 0);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            seen[r.below(5) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(r.below(0), 0);
    }
}
