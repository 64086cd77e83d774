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

/// Sorts `items` by `key`, stably, with an LSD radix sort over bytes (all eight histograms in
/// one read pass; a byte shared by every key costs no pass).
pub fn radix_sort_by<T: Copy + Default>(items: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    if items.len() <= SMALL {
        items.sort_by_key(|t| key(t));
        return;
    }
    let n = items.len();
    let mut hist = [[0usize; 256]; 8];
    for t in items.iter() {
        let k = key(t);
        for (d, h) in hist.iter_mut().enumerate() {
            h[((k >> (8 * d)) & 0xff) as usize] += 1;
        }
    }
    let mut buf = vec![T::default(); n];
    for (d, h) in hist.iter_mut().enumerate() {
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
        for t in items.iter() {
            let slot = &mut h[((key(t) >> shift) & 0xff) as usize];
            buf[*slot] = *t;
            *slot += 1;
        }
        std::mem::swap(items, &mut buf);
    }
}

/// Sorts `(key, payload)` pairs by key, stably (equal keys keep their order).
pub fn sort_pairs(pairs: &mut Vec<(u64, u32)>) {
    radix_sort_by(pairs, |p| p.0);
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

/// Sums over one equal-mass group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MassGroup {
    /// Members.
    pub count: usize,
    /// Σ of the members' values.
    pub sum_value: f64,
    /// Σ of the members' outcomes.
    pub sum_outcome: f64,
    /// Smallest and largest key (meaningless when `count == 0`).
    pub key_range: (u64, u64),
}

impl MassGroup {
    const EMPTY: MassGroup = MassGroup {
        count: 0,
        sum_value: 0.0,
        sum_outcome: 0.0,
        key_range: (u64::MAX, 0),
    };

    #[inline]
    fn add(&mut self, k: u64, outcome: f64) {
        self.count += 1;
        self.sum_value += key_value(k);
        self.sum_outcome += outcome;
        self.key_range = (self.key_range.0.min(k), self.key_range.1.max(k));
    }
}

/// Per-group sums over the `bins` equal-mass groups of the samples ordered by (key, index), as
/// [`equal_mass_groups`] cuts them. `keys[i]` is [`sortable_key`] of sample `i`'s value.
///
/// Instead of a full sort, one histogram over the keys' actual range finds the buckets that lie
/// inside a single group (their members are summed directly) and those that straddle a group
/// edge; only the latter are sorted by (key, index), so ties at an edge still split by index.
/// Summation order inside a group differs from a sort's by rounding only.
pub fn equal_mass_sums(keys: &[u64], outcome: impl Fn(usize) -> f64, bins: usize) -> Vec<MassGroup> {
    let n = keys.len();
    let mut groups = vec![MassGroup::EMPTY; bins];
    if n == 0 {
        return groups;
    }
    let (q, r) = (n / bins, n % bins);
    let group_of = |rank: usize| {
        if rank < r * (q + 1) {
            rank / (q + 1)
        } else {
            r + (rank - r * (q + 1)) / q
        }
    };
    if n <= SMALL {
        let mut pairs: Vec<(u64, u32)> = keys.iter().enumerate().map(|(i, &k)| (k, i as u32)).collect();
        pairs.sort_unstable();
        for (rank, &(k, i)) in pairs.iter().enumerate() {
            groups[group_of(rank)].add(k, outcome(i as usize));
        }
        return groups;
    }
    // About four samples a bucket, over the range the keys actually span.
    let bucket_bits = (usize::BITS - n.leading_zeros()).saturating_sub(2).clamp(8, 16);
    let (lo, hi) = keys.iter().fold((u64::MAX, 0), |(lo, hi), &k| (lo.min(k), hi.max(k)));
    let shift = (u64::BITS - (hi - lo).leading_zeros()).saturating_sub(bucket_bits);
    let bucket = |k: u64| ((k - lo) >> shift) as usize;
    let mut start = vec![0usize; (1 << bucket_bits) + 1];
    for &k in keys {
        start[bucket(k) + 1] += 1;
    }
    for b in 1..start.len() {
        start[b] += start[b - 1];
    }
    const MIXED: u32 = u32::MAX;
    // Group ends in rank order; bucket starts are non-decreasing, so one pointer walks both.
    let ends: Vec<usize> = equal_mass_groups(n, bins).map(|(_, e)| e).collect();
    let mut g = 0;
    let owner: Vec<u32> = start
        .windows(2)
        .map(|w| {
            while ends[g] <= w[0] && g + 1 < bins {
                g += 1;
            }
            if w[1] > w[0] && w[1] <= ends[g] {
                g as u32
            } else {
                MIXED
            }
        })
        .collect();
    let mut mixed = Vec::new();
    for (i, &k) in keys.iter().enumerate() {
        match owner[bucket(k)] {
            MIXED => mixed.push((k, i as u32)),
            g => groups[g as usize].add(k, outcome(i)),
        }
    }
    mixed.sort_unstable();
    let mut current = usize::MAX;
    let mut rank = 0;
    for &(k, i) in &mixed {
        let b = bucket(k);
        if b != current {
            current = b;
            rank = start[b];
        }
        groups[group_of(rank)].add(k, outcome(i as usize));
        rank += 1;
    }
    groups
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
    fn equal_mass_sums_match_sorted_groups() {
        let mut x: u64 = 99;
        for (n, bins, levels) in [
            (5000usize, 15usize, 13u64),
            (20000, 15, 1 << 40),
            (17, 5, 3),
            (3, 5, 2),
            (600, 600, 7),
            (4000, 7, 2),
        ] {
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((x >> 20) % levels) as f64 / levels as f64
                })
                .collect();
            let keys: Vec<u64> = values.iter().map(|&v| sortable_key(v)).collect();
            let outcome = |i: usize| (i % 3) as f64;
            let got = equal_mass_sums(&keys, outcome, bins);
            let sorted = sorted_with_index(&values);
            for (g, (s, e)) in equal_mass_groups(n, bins).enumerate() {
                let members = &sorted[s..e];
                assert_eq!(got[g].count, e - s, "n {n} bins {bins} group {g}");
                let want_o: f64 = members.iter().map(|p| outcome(p.1 as usize)).sum();
                let want_v: f64 = members.iter().map(|p| key_value(p.0)).sum();
                assert_eq!(got[g].sum_outcome, want_o, "n {n} bins {bins} group {g}");
                assert!((got[g].sum_value - want_v).abs() <= 1e-9 * want_v.abs().max(1.0));
                if e > s {
                    assert_eq!(got[g].key_range, (members[0].0, members[members.len() - 1].0));
                }
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
