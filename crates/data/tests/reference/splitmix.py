"""Independent reference for ueb-data's SplitMix64, bounded draw, shuffle and holdout.

Run `python3 splitmix.py`; tests/protocol.rs holds its output. Definitions: docs/datasets.md.
"""
import math

M64 = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & M64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def below(self, n):
        # Lemire's multiply-and-reject.
        m = self.next_u64() * n
        low = m & M64
        if low < n:
            threshold = ((1 << 64) - n) % n
            while low < threshold:
                m = self.next_u64() * n
                low = m & M64
        return m >> 64

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def holdout_count(n, k, seed):
    """A holdout of exactly k rows (ToxiGen's `test_holdout`): the same permutation."""
    order = list(range(n))
    SplitMix64(seed).shuffle(order)
    return sorted(order[k:]), sorted(order[:k])


# Mixed into the seed of a test holdout (ASCII "test").
TEST_STREAM = 0x74657374


def holdout(n, fraction, seed):
    n_val = math.ceil(fraction * n)
    order = list(range(n))
    SplitMix64(seed).shuffle(order)
    return sorted(order[n_val:]), sorted(order[:n_val])


if __name__ == "__main__":
    g = SplitMix64(42)
    print("first outputs of seed 42:", [g.next_u64() for _ in range(3)])
    g = SplitMix64(0)
    print("first outputs of seed 0:", [g.next_u64() for _ in range(2)])
    g = SplitMix64(7)
    print("below(10) x8, seed 7:", [g.below(10) for _ in range(8)])
    order = list(range(10))
    SplitMix64(42).shuffle(order)
    print("shuffle(0..10), seed 42:", order)
    train, val = holdout(10, 0.2, 42)
    print("holdout(10, 0.2, 42): train", train, "val", val)
    train, val = holdout(23, 0.2, 1)
    print("holdout(23, 0.2, 1): val", val)
    for n in [5, 6, 8]:
        print(f"holdout({n}, 0.2, 42): val", holdout(n, 0.2, 42)[1])
    print("holdout(10, 0.2, 7): val", holdout(10, 0.2, 7)[1])
    print("holdout(10, 0.5, 42): val", holdout(10, 0.5, 42)[1])
    for n in [5, 10, 67349, 8551, 11314, 8960, 5452, 10001, 1542, 294]:
        print("val_size", n, math.ceil(0.2 * n))
    rest, test = holdout_count(10, 3, 42 ^ TEST_STREAM)
    train, val = holdout(len(rest), 0.2, 42)
    print("toxigen test_holdout 3 of 10, seed 42: test", test, "val", [rest[i] for i in val])
