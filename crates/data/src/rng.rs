//! The crate's own deterministic random numbers: SplitMix64, an unbiased bounded draw and a
//! Fisher–Yates shuffle.
//!
//! These are written out here (no `rand` dependency) so that a split or a synthetic dataset
//! can never change because a dependency changed its algorithm. The exact definitions, which a
//! few lines of Python reproduce, are in `docs/datasets.md`.

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

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (Lemire's multiply-and-reject method, unbiased).
    ///
    /// `n = 0` returns 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        let mut low = m as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// A uniform index in `0..n` (see [`SplitMix64::below`]).
    pub fn index(&mut self, n: usize) -> usize {
        // usize → u64 is lossless on every supported target, and the draw is < n.
        self.below(n as u64) as usize
    }

    /// A uniform float in `[0, 1)`: the top 53 bits of [`SplitMix64::next_u64`] times 2⁻⁵³.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Fisher–Yates shuffle: for `i` from `len − 1` down to 1, swap `items[i]` with
    /// `items[below(i + 1)]`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

/// The seed of stream `stream` derived from `seed`: the `(stream + 1)`-th output of
/// `SplitMix64::new(seed)`.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    SplitMix64::new(seed.wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))).next_u64()
}
