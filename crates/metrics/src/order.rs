//! Sorting f64 keys: one O(N) radix sort shared by every ranking metric and equal-mass binning.
//!
//! Keys are mapped to `u64` so that unsigned order equals numeric order (−0.0 and +0.0 are
//! mapped to the same key, so they tie as `==` says they do), then sorted with a payload by an
//! LSD radix sort that is stable: equal keys keep their input order, which is exactly the
//! "index breaks ties" rule of equal-mass binning. Two keys are equal exactly when the values
//! are `==`, so tie groups can be read off the sorted keys without touching the values again.

/// Maps a finite f64 to a u64 whose unsigned order is the numeric order.
#[inline]
pub fn sortable_key(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits(); // + 0.0 turns −0.0 into +0.0
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

/// Inverse of [`sortable_key`] (−0.0 comes back as +0.0).
#[inline]
pub fn key_value(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Below this size a comparison sort beats the radix passes' fixed cost.
const SMALL: usize = 512;

/// Sorts `(key, payload)` pairs by key, stably (equal keys keep their order).
pub fn sort_pairs(pairs: &mut Vec<(u64, u32)>) {
    if pairs.len() <= SMALL {
        pairs.sort_by_key(|p| p.0);
        return;
    }
    let n = pairs.len();
    // All eight byte histograms in one read pass.
    let mut hist = [[0usize; 256]; 8];
    for &(k, _) in pairs.iter() {
        for (d, h) in hist.iter_mut().enumerate() {
            h[((k >> (8 * d)) & 0xff) as usize] += 1;
        }
    }
    let mut buf = vec![(0u64, 0u32); n];
    for (d, h) in hist.iter_mut().enumerate() {
        // A digit shared by every key would only copy: skip its pass.
        if h.contains(&n) {
            continue;
        }
        let mut offset = 0;
        for c in h.iter_mut() {
            let here = *c;
            *c = offset;
            offset += here;
        }
        let shift = 8 * d;
        for &p in pairs.iter() {
            let slot = &mut h[((p.0 >> shift) & 0xff) as usize];
            buf[*slot] = p;
            *slot += 1;
        }
        std::mem::swap(pairs, &mut buf);
    }
}

/// `(key, index)` pairs of `keys` sorted by key; equal keys keep ascending index order.
pub fn sorted_with_index(keys: &[f64]) -> Vec<(u64, u32)> {
    let mut pairs: Vec<(u64, u32)> = keys
        .iter()
        .enumerate()
        .map(|(i, &k)| (sortable_key(k), i as u32))
        .collect();
    sort_pairs(&mut pairs);
    pairs
}

/// Indices `0..N` ordered by ascending key; equal keys keep ascending index order.
///
/// `keys` must be finite (validated by the caller).
pub fn stable_argsort(keys: &[f64]) -> Vec<u32> {
    sorted_with_index(keys).into_iter().map(|(_, i)| i).collect()
}

/// Calls `f(start, end)` for each maximal run of equal keys in sorted `pairs`.
#[inline]
pub fn for_each_run(pairs: &[(u64, u32)], mut f: impl FnMut(usize, usize)) {
    let mut start = 0;
    while start < pairs.len() {
        let k = pairs[start].0;
        let mut end = start + 1;
        while end < pairs.len() && pairs[end].0 == k {
            end += 1;
        }
        f(start, end);
        start = end;
    }
}

/// `M` contiguous equal-mass groups over `n` sorted items: sizes differ by at most 1 and the
/// first `n mod M` groups are the larger ones (spec §11). Yields `(start, end)`; groups are
/// empty when `n < M`.
pub fn equal_mass_groups(n: usize, bins: usize) -> impl Iterator<Item = (usize, usize)> {
    let (q, r) = (n / bins, n % bins);
    (0..bins).scan(0usize, move |start, g| {
        let size = q + usize::from(g < r);
        let range = (*start, *start + size);
        *start += size;
        Some(range)
    })
}

/// Reorders `pairs` so that each equal-mass group of their (key, payload) order occupies its
/// [`equal_mass_groups`] range; the order inside a group is unspecified. With distinct pairs
/// (payload = index) the groups are exactly those of a stable sort, found by recursive
/// selection in O(N log M) instead of a full sort.
pub fn partition_equal_mass(pairs: &mut [(u64, u32)], bins: usize) {
    let n = pairs.len();
    let mut ends: Vec<usize> = equal_mass_groups(n, bins)
        .map(|(_, e)| e)
        .filter(|&e| e > 0 && e < n)
        .collect();
    ends.dedup();
    multi_select(pairs, &ends, 0);
}

/// Puts the element of absolute rank `r` in place for every `r` in `ranks` (sorted), with
/// smaller elements before it and larger after.
fn multi_select(pairs: &mut [(u64, u32)], ranks: &[usize], offset: usize) {
    if ranks.is_empty() || pairs.len() <= 1 {
        return;
    }
    let mid = ranks.len() / 2;
    let r = ranks[mid] - offset;
    pairs.select_nth_unstable(r);
    let (left, right) = pairs.split_at_mut(r);
    multi_select(left, &ranks[..mid], offset);
    multi_select(right, &ranks[mid + 1..], offset + r);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_matches_comparison_sort_and_is_stable() {
        for n in [10usize, 600, 5000] {
            let mut keys = Vec::new();
            let mut x: u64 = 12345;
            for _ in 0..n {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let v = ((x >> 40) % 97) as f64 / 7.0 - 5.0; // many ties, negatives
                keys.push(if v == 0.0 { -0.0 } else { v });
            }
            keys.extend([
                f64::MAX,
                f64::MIN,
                0.0,
                -0.0,
                f64::MIN_POSITIVE,
                -f64::MIN_POSITIVE,
                1e-300,
            ]);
            let got = stable_argsort(&keys);
            let mut want: Vec<u32> = (0..keys.len() as u32).collect();
            want.sort_by(|&a, &b| keys[a as usize].partial_cmp(&keys[b as usize]).unwrap().then(a.cmp(&b)));
            assert_eq!(got, want, "n = {n}");
        }
    }

    #[test]
    fn equal_mass_partition_matches_sorted_groups() {
        let mut x: u64 = 99;
        for (n, bins) in [(1000usize, 15usize), (17, 5), (3, 5), (1, 1), (64, 64), (500, 7)] {
            let keys: Vec<f64> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((x >> 40) % 13) as f64 / 13.0
                })
                .collect();
            let sorted = sorted_with_index(&keys);
            let mut part: Vec<(u64, u32)> = keys
                .iter()
                .enumerate()
                .map(|(i, &k)| (sortable_key(k), i as u32))
                .collect();
            partition_equal_mass(&mut part, bins);
            for (s, e) in equal_mass_groups(n, bins) {
                let mut a: Vec<u32> = sorted[s..e].iter().map(|p| p.1).collect();
                let mut b: Vec<u32> = part[s..e].iter().map(|p| p.1).collect();
                a.sort_unstable();
                b.sort_unstable();
                assert_eq!(a, b, "n {n}, bins {bins}, group {s}..{e}");
            }
        }
    }

    #[test]
    fn key_round_trip() {
        for v in [0.0, -0.0, 1.0, -1.0, 0.3, f64::MAX, f64::MIN, 1e-310] {
            assert_eq!(key_value(sortable_key(v)), v + 0.0);
        }
    }

    #[test]
    fn equal_mass_group_sizes() {
        let sizes: Vec<usize> = equal_mass_groups(17, 5).map(|(a, b)| b - a).collect();
        assert_eq!(sizes, vec![4, 4, 3, 3, 3]);
        let sizes: Vec<usize> = equal_mass_groups(3, 5).map(|(a, b)| b - a).collect();
        assert_eq!(sizes, vec![1, 1, 1, 0, 0]);
    }
}
