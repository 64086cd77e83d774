"""Writes the small example that the README's first command evaluates.

A synthetic 4-class classifier on 2,000 samples: logits are the true class's evidence plus noise,
scaled by 1.6 so the model is overconfident (as fine-tuned LMs tend to be), and one extra score,
`feature_distance`, that is informative but noisy (a stand-in for a distance-based head such as
Mahalanobis). Deterministic; run from the repository root: python examples/eval/make_example.py
"""

from pathlib import Path

import numpy as np

out = Path(__file__).resolve().parent
rng = np.random.default_rng(20250521)
n, c = 2000, 4
labels = rng.integers(0, c, size=n)
evidence = rng.normal(0.0, 1.0, size=(n, c))
evidence[np.arange(n), labels] += rng.gamma(2.0, 0.9, size=n)
logits = 1.6 * evidence
z = logits - logits.max(axis=1, keepdims=True)
probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
wrong = probs.argmax(axis=1) != labels
feature_distance = np.abs(rng.normal(1.0 + 0.8 * wrong, 0.7))

np.save(out / "probs.npy", probs.astype(np.float32))
np.save(out / "labels.npy", labels.astype(np.int64))
np.save(out / "feature_distance.npy", feature_distance)
print(f"accuracy {1 - wrong.mean():.3f}, wrote probs.npy, labels.npy, feature_distance.npy")
