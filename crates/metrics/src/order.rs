//! Sorting f64 keys: one O(N) radix sort shared by every ranking metric and equal-mass binning.
//!
//! Keys are mapped to `u64` so that unsigned order equals numeric order (−0.0 and +0.0 are
//! mapped to the same key, so they tie as `==` says they do), then sorted by an LSD radix sort
//! that is stable: equal keys keep their index order, which is exactly the "index breaks ties"
//! rule of equal-mass binning.

/// Maps a finite f64 to a u64 whose unsigned order is the numeric order.
#[inline]
fn sortable(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits(); // + 0.0 turns −0.0 into +0.0
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

const RADIX_BITS: u32 = 11;
const RADIX: usize = 1 << RADIX_BITS;
/// Below this size a comparison sort beats the radix passes' fixed cost.
const SMALL: usize = 256;

/// Indices `0..N` ordered by ascending key; equal keys keep ascending index order.
///
/// `keys` must be finite (validated by the caller). Allocates O(N) scratch once per call.
pub fn stable_argsort(keys: &[f64]) -> Vec<u32> {
    let mut pairs: Vec<(u64, u32)> = keys.iter().enumerate().map(|(i, &k)| (sortable(k), i as u32)).collect();
    if pairs.len() <= SMALL {
        pairs.sort_unstable(); // (key, index) pairs are distinct, so this is stable by index
    } else {
        radix_sort(&mut pairs);
    }
    pairs.into_iter().map(|(_, i)| i).collect()
}

fn radix_sort(pairs: &mut Vec<(u64, u32)>) {
    let mut buf = vec![(0u64, 0u32); pairs.len()];
    let mut shift = 0;
    while shift < 64 {
        let mut counts = [0usize; RADIX];
        for &(k, _) in pairs.iter() {
            counts[((k >> shift) as usize) & (RADIX - 1)] += 1;
        }
        // A pass where every key has the same digit would only copy: skip it.
        if counts.contains(&pairs.len()) {
            shift += RADIX_BITS;
            continue;
        }
        let mut offset = 0;
        for c in counts.iter_mut() {
            let here = *c;
            *c = offset;
            offset += here;
        }
        for &(k, i) in pairs.iter() {
            let d = ((k >> shift) as usize) & (RADIX - 1);
            buf[counts[d]] = (k, i);
            counts[d] += 1;
        }
        std::mem::swap(pairs, &mut buf);
        shift += RADIX_BITS;
    }
}

/// Calls `f(start, end)` for each maximal run `order[start..end]` of equal keys.
#[inline]
pub fn for_each_tie_group(keys: &[f64], order: &[u32], mut f: impl FnMut(usize, usize)) {
    let mut start = 0;
    while start < order.len() {
        let k = keys[order[start] as usize];
        let mut end = start + 1;
        while end < order.len() && keys[order[end] as usize] == k {
            end += 1;
        }
        f(start, end);
        start = end;
    }
}

/// Sizes of `M` contiguous equal-mass groups over `n` sorted items: sizes differ by at most 1
/// and the first `n mod M` groups are the larger ones (spec §11). Yields `(start, end)`; groups
/// are empty when `n < M`.
pub fn equal_mass_groups(n: usize, bins: usize) -> impl Iterator<Item = (usize, usize)> {
    let (q, r) = (n / bins, n % bins);
    (0..bins).scan(0usize, move |start, g| {
        let size = q + usize::from(g < r);
        let range = (*start, *start + size);
        *start += size;
        Some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_matches_comparison_sort_and_is_stable() {
        let mut keys = Vec::new();
        let mut x: u64 = 12345;
        for _ in 0..5000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = ((x >> 40) % 97) as f64 / 7.0 - 5.0; // many ties, negatives
            keys.push(if v == 0.0 { -0.0 } else { v });
        }
        keys.extend([f64::MAX, f64::MIN, 0.0, -0.0, f64::MIN_POSITIVE, -f64::MIN_POSITIVE]);
        let got = stable_argsort(&keys);
        let mut want: Vec<u32> = (0..keys.len() as u32).collect();
        want.sort_by(|&a, &b| keys[a as usize].partial_cmp(&keys[b as usize]).unwrap().then(a.cmp(&b)));
        assert_eq!(got, want);
    }

    #[test]
    fn equal_mass_group_sizes() {
        let sizes: Vec<usize> = equal_mass_groups(17, 5).map(|(a, b)| b - a).collect();
        assert_eq!(sizes, vec![4, 4, 3, 3, 3]);
        let sizes: Vec<usize> = equal_mass_groups(3, 5).map(|(a, b)| b - a).collect();
        assert_eq!(sizes, vec![1, 1, 1, 0, 0]);
    }
}
