#!/usr/bin/env python3
"""Recompute a results directory's metrics independently and compare them with metrics.parquet.

For every finished head stage ``cells/<backbone>/<dataset>/seed-<k>/<head>/`` this reads the
saved test-split outputs (``scores.parquet``: label, prediction, correct, score;
``probs.safetensors``: the probabilities the calibration metrics use) and recomputes, with
scikit-learn and numpy only (no ueb code):

  roc_auc   sklearn.metrics.roc_auc_score(errors, u)
  accuracy  mean(correct)
  nll       -mean log p[i, y_i] (p clipped at 1e-12)
  brier     mean_i sum_k (p_ik - 1[y_i = k])^2
  ece       top-label, M equal-width bins ((m-1)/M, m/M] (0 in the first), empty bins skipped
  aurc      mean over k of the error rate of the k least uncertain, ties at expected value
  prr       (r - aurc) / (r - aurc_oracle), r = error rate

and prints the largest absolute difference per metric against the point values of
``metrics.parquet`` (written by ``ueb run``). Definitions: docs/metrics.md.

    python bench/verify_results.py results/minilm-cpu [--bins 15]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file
from sklearn.metrics import roc_auc_score


def ece(conf: np.ndarray, correct: np.ndarray, bins: int) -> float:
    # Smallest m with conf <= m/M, computed as one division per edge as docs/metrics.md says.
    edges = np.array([m / bins for m in range(1, bins + 1)])
    idx = np.searchsorted(edges, conf, side="left")
    idx = np.clip(idx, 0, bins - 1)
    total = 0.0
    n = len(conf)
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() / n * abs(correct[sel].mean() - conf[sel].mean())
    return total


def aurc(u: np.ndarray, err: np.ndarray) -> float:
    # Expected risk under random tie-breaking: inside a tie group of size g with m errors, the
    # first t rows hold t*m/g errors in expectation.
    order = np.argsort(u, kind="stable")
    u_s, e_s = u[order], err[order].astype(float)
    n = len(u)
    cum = np.zeros(n)
    i = 0
    done_errors = 0.0
    while i < n:
        j = i
        while j + 1 < n and u_s[j + 1] == u_s[i]:
            j += 1
        g = j - i + 1
        m = e_s[i : j + 1].sum()
        for t in range(1, g + 1):
            cum[i + t - 1] = done_errors + t * m / g
        done_errors += m
        i = j + 1
    k = np.arange(1, n + 1)
    return float(np.mean(cum / k))


def recompute(stage: pathlib.Path, bins: int) -> dict[str, float]:
    t = pq.read_table(stage / "scores.parquet").to_pydict()
    y = np.asarray(t["label"], dtype=np.int64)
    correct = np.asarray(t["correct"], dtype=bool)
    u = np.asarray(t["score"], dtype=np.float64)
    p = load_file(str(stage / "probs.safetensors"))["probs"].astype(np.float64)
    err = (~correct).astype(int)
    out = {
        "accuracy": float(correct.mean()),
        "nll": float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)))),
        "brier": float(np.mean(np.sum((p - np.eye(p.shape[1])[y]) ** 2, axis=1))),
        "ece": ece(p.max(axis=1), correct.astype(float), bins),
        "aurc": aurc(u, err),
    }
    if 0 < err.sum() < len(err):
        out["roc_auc"] = float(roc_auc_score(err, u))
        r = err.mean()
        oracle = aurc(err.astype(float), err)
        out["prr"] = (r - out["aurc"]) / (r - oracle)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=pathlib.Path)
    ap.add_argument("--bins", type=int, default=15)
    args = ap.parse_args()
    m = pq.read_table(args.results / "metrics.parquet").to_pydict()
    ours = {}
    for b, d, s, h, name, v in zip(m["backbone"], m["dataset"], m["seed"], m["head"], m["metric"], m["value"]):
        ours[(b, d, s, h, name)] = v
    worst: dict[str, float] = {}
    stages = sorted((args.results / "cells").glob("*/*/seed-*/*/scores.parquet"))
    for f in stages:
        stage = f.parent
        h = stage.name
        s = int(stage.parent.name.removeprefix("seed-"))
        d = stage.parent.parent.name
        b = stage.parent.parent.parent.name
        for name, v in recompute(stage, args.bins).items():
            ref = ours.get((b, d, s, h, name))
            if ref is None:
                print(f"missing in metrics.parquet: {b}/{d}/seed-{s}/{h} {name}", file=sys.stderr)
                worst[name] = float("inf")
                continue
            worst[name] = max(worst.get(name, 0.0), abs(ref - v))
    print(f"{len(stages)} head stages recomputed with scikit-learn/numpy")
    for name in sorted(worst):
        print(f"  {name:9s} largest |ueb - independent| = {worst[name]:.3g}")
    return 0 if all(w < 1e-9 for w in worst.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
