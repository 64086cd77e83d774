#!/usr/bin/env python3
"""Generate the golden cases that `ueb-metrics` is tested against.

Every expected number comes from an implementation that does not share code with the Rust
crate:

* scikit-learn: ``roc_auc_score`` and ``average_precision_score``;
* torchmetrics: ``binary_calibration_error`` / ``multiclass_calibration_error``
  (norm ``l1`` -> ece, ``max`` -> mce, ``l2`` -> rmsce);
* plain numpy written directly from the text of spec §11 (the method spec, summarised in ``docs/metrics.md``)
  for everything else, and for ece/mce/rmsce wherever torchmetrics deliberately differs.

Where two sources apply to the same number they are computed both ways and asserted to agree
(1e-12 unless a comment says why not). Where torchmetrics follows a different convention
(bins ``[lo, hi)`` instead of ``(lo, hi]``; a confidence of exactly 1.0 in an extra bin) the
§11 numpy value goes into ``expected`` and the torchmetrics value into ``peer_values``.

Each case also carries ``curves``: reliability bins (equal width and equal mass, with Wilson
intervals cross-checked against scipy), risk-coverage curves and the oracle rejection curve,
all written from the definitions in numpy (layout: README.md, section "Curves").

The script also checks that every case is *robust*: the expected values must not depend on
how an implementation rounds in the places §11 leaves open (summation order of the softmax
normaliser and of the entropy, which ``exp``/``ln`` it calls, ``exp(z - logsumexp)`` versus
``exp(z - max) / sum``). Ties, ranks, bin assignments and the ``[0, 1]`` test of a score are
recomputed under several such variants and must not change.

Usage::

    .venv/bin/python crates/metrics/tests/golden/generate.py          # (re)write cases/
    .venv/bin/python crates/metrics/tests/golden/generate.py --check  # compare, write nothing

The output is deterministic: running the script twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import importlib
import gzip
import itertools
import json
import math
import sys
import warnings
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import numpy as np
import scipy
import scipy.stats
import sklearn
import torch
import torchmetrics
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import average_precision_score, roc_auc_score
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

# the per-bin (accuracy, confidence, proportion) helper behind binary_calibration_error; the module
# name is shadowed by the function of the same name, hence importlib
_tm_binning_bucketize = importlib.import_module(
    "torchmetrics.functional.classification.calibration_error"
)._binning_bucketize

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
GZIP_OVER_BYTES = 1_000_000
AGREE = 1e-12  # two independent float64 sources of one number must agree this closely
FRAGILE = 1e-12  # a gap this small between distinct values (or to a bin edge) is fragile
EXHAUSTIVE_MAX_N = 8  # cases this small get their tie expectations checked by enumeration

torch.set_num_threads(1)  # deterministic reductions

# ---------------------------------------------------------------------------------------------
# helpers


class CheckFailed(AssertionError):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def agree(a: float | None, b: float | None, what: str, tol: float = AGREE) -> None:
    """Assert two sources agree (absolute tolerance, relative above 1)."""
    if a is None or b is None:
        check(a is None and b is None, f"{what}: one source undefined: {a!r} vs {b!r}")
        return
    scale = max(1.0, abs(a), abs(b))
    check(abs(a - b) <= tol * scale, f"{what}: sources disagree: {a!r} vs {b!r} (diff {a - b:.3e})")


def seq_sum_cols(a: np.ndarray) -> np.ndarray:
    """Row sums accumulated left to right over the columns (the obvious loop)."""
    s = a[:, 0].copy()
    for k in range(1, a.shape[1]):
        s = s + a[:, k]
    return s


def clean_zero(x: np.ndarray) -> np.ndarray:
    """Turn -0.0 into 0.0 so that JSON never carries a negative zero."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x == 0.0, 0.0, x)


# ---------------------------------------------------------------------------------------------
# probabilities and built-in scores (§11), reference computation


def softmax_ref(z: np.ndarray) -> np.ndarray:
    """Stable softmax in float64: subtract the row max, exp, divide by the row sum."""
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    return e / seq_sum_cols(e)[:, None]


def log_softmax_ref(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    s = seq_sum_cols(np.exp(z - m))
    return z - m - np.log(s)[:, None]


def score_sr(p: np.ndarray) -> np.ndarray:
    return 1.0 - p.max(axis=1)


def score_entropy(p: np.ndarray) -> np.ndarray:
    """-sum_k p ln p / ln C with 0 ln 0 = 0, summed over classes in order."""
    safe = np.where(p > 0, p, 1.0)
    t = np.where(p > 0, -p * np.log(safe), 0.0)
    return seq_sum_cols(t) / np.log(p.shape[1])


def score_margin(p: np.ndarray) -> np.ndarray:
    """1 - (p(1) - p(2)), the two largest probabilities (equal when the max is tied)."""
    s = np.sort(p, axis=1)
    return 1.0 - (s[:, -1] - s[:, -2])


BUILTINS = ("sr", "entropy", "margin")


def builtin_scores(p: np.ndarray) -> dict[str, np.ndarray]:
    return {"sr": score_sr(p), "entropy": score_entropy(p), "margin": score_margin(p)}


# ---------------------------------------------------------------------------------------------
# binning (§11)


def equal_width_bin(x: np.ndarray, M: int) -> np.ndarray:
    """0-based §11 bin: smallest m in 1..M with x <= m/M (m/M one f64 division); x <= 0 -> 1."""
    edges = np.array([m / M for m in range(1, M + 1)], dtype=np.float64)
    idx = np.searchsorted(edges, x, side="left")  # first edge >= x
    return np.minimum(idx, M - 1)  # x > 1 would clamp to the last bin (never happens here)


def equal_mass_groups(x: np.ndarray, M: int) -> list[np.ndarray]:
    """Stable sort by value (index breaks ties), M contiguous groups, first N mod M larger."""
    order = np.argsort(x, kind="stable")
    n = len(x)
    base, extra = divmod(n, M)
    groups, start = [], 0
    for g in range(M):
        size = base + (1 if g < extra else 0)
        groups.append(order[start:start + size])
        start += size
    assert start == n
    return groups


def bin_rows(values: np.ndarray, outcome: np.ndarray, bin_idx: np.ndarray, nbins: int):
    """(count, mean outcome, mean value) for each non-empty bin, in bin order."""
    rows = []
    for b in range(nbins):
        mask = bin_idx == b
        n = int(mask.sum())
        if n:
            rows.append((n, float(outcome[mask].mean()), float(values[mask].mean())))
    return rows


def l1_of(rows, n):
    return math.fsum(c / n * abs(a - v) for c, a, v in rows)


def max_of(rows):
    return max(abs(a - v) for _, a, v in rows)


def l2_of(rows, n):
    return math.sqrt(math.fsum(c / n * (a - v) ** 2 for c, a, v in rows))


# torchmetrics' convention, re-implemented in numpy to *explain* its numbers exactly:
# boundaries torch.linspace(0, 1, M + 1) (float64), bucketize(right=True) - 1, i.e. bins
# [b_{m-1}, b_m), and x == 1.0 lands in an extra (M+1)-th bin.
def torch_convention_bin(x: np.ndarray, M: int, dtype=torch.float64) -> np.ndarray:
    b = torch.linspace(0, 1, M + 1, dtype=dtype).numpy().astype(np.float64)
    return np.searchsorted(b, x, side="right") - 1


# ---------------------------------------------------------------------------------------------
# ranking metrics (§11), numpy


def roc_auc_numpy(err: np.ndarray, u: np.ndarray) -> float | None:
    """Mann-Whitney U / (n1 n0) with average ranks = P(u_err > u_ok) + 1/2 P(=)."""
    n1 = int(err.sum())
    n0 = len(err) - n1
    if n1 == 0 or n0 == 0:
        return None
    r = scipy.stats.rankdata(u, method="average")
    return float((r[err].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def average_precision_numpy(pos: np.ndarray, s: np.ndarray) -> float | None:
    """Step-function AP over distinct thresholds of s (descending), tied scores grouped."""
    npos = int(pos.sum())
    if npos == 0:
        return None
    order = np.argsort(-s, kind="stable")
    ss, ps = s[order], pos[order]
    tp = np.cumsum(ps)
    fp = np.cumsum(~ps)
    last = np.r_[np.nonzero(ss[1:] != ss[:-1])[0], len(ss) - 1]
    tp, fp = tp[last].astype(float), fp[last].astype(float)
    prec = tp / (tp + fp)
    rec = tp / npos
    rec_prev = np.r_[0.0, rec[:-1]]
    return float(math.fsum((rec - rec_prev) * prec))


def expected_cumulative(u: np.ndarray, x: np.ndarray) -> np.ndarray:
    """E[sum of x over the k least-uncertain samples], k = 0..N, under uniformly random
    tie-breaking: exact at tie-group boundaries, linear in between (np.interp)."""
    n = len(u)
    order = np.argsort(u, kind="stable")
    us = u[order]
    cum = np.r_[0, np.cumsum(x[order].astype(np.int64))].astype(np.float64)  # exact integers
    bounds = np.r_[0, np.nonzero(us[1:] != us[:-1])[0] + 1, n]
    return np.interp(np.arange(n + 1, dtype=np.float64), bounds.astype(np.float64), cum[bounds])


def aurc_numpy(err: np.ndarray, u: np.ndarray) -> tuple[float, float]:
    """(aurc, e_aurc): mean over k = 1..N of E[risk(k)]; oracle = all correct first."""
    n = len(u)
    k = np.arange(1, n + 1, dtype=np.float64)
    ecum = expected_cumulative(u, err)[1:]
    aurc = float(np.mean(ecum / k))
    n_ok = n - int(err.sum())
    oracle = float(np.mean(np.maximum(0.0, k - n_ok) / k))
    return aurc, aurc - oracle


def prr_numpy(err: np.ndarray, u: np.ndarray) -> float | None:
    """(PR(u) - PR(random)) / (PR(oracle) - PR(random)) with s_j over the N - j least uncertain."""
    n = len(u)
    q = (~err).astype(np.int64)
    ecum_q = expected_cumulative(u, q)
    kept = np.arange(n, 0, -1)  # N - j for j = 0..N-1
    pr_u = float(np.mean(ecum_q[kept] / kept))
    n_ok = int(q.sum())
    pr_oracle = float(np.mean(np.minimum(kept, n_ok) / kept))
    pr_random = n_ok / n  # mean quality, exactly
    denom = pr_oracle - pr_random
    if denom == 0.0:
        return None
    return (pr_u - pr_random) / denom


def exhaustive_tie_expectation(err: np.ndarray, u: np.ndarray) -> tuple[Fraction, Fraction]:
    """Exact E[AURC] and E[PR(u)] by enumerating every order consistent with the scores."""
    n = len(u)
    order = np.argsort(u, kind="stable")
    us = u[order]
    groups, start = [], 0
    for i in range(1, n + 1):
        if i == n or us[i] != us[i - 1]:
            groups.append(list(order[start:i]))
            start = i
    total_aurc, total_pr, count = Fraction(0), Fraction(0), 0
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        seq = [i for g in perms for i in g]
        cum_e, aurc, risks = 0, Fraction(0), []
        for k, i in enumerate(seq, start=1):
            cum_e += int(err[i])
            risks.append(Fraction(cum_e, k))
        aurc = sum(risks, Fraction(0)) / n
        pr = sum((1 - r for r in risks), Fraction(0)) / n  # s_j = 1 - risk(N - j)
        total_aurc += aurc
        total_pr += pr
        count += 1
    return total_aurc / count, total_pr / count


# ---------------------------------------------------------------------------------------------
# torchmetrics wrappers (float64 tensors)


def tm_binary(conf: np.ndarray, outcome: np.ndarray, M: int, norm: str) -> float:
    """torchmetrics binary_calibration_error in float64 (keeps the dtype of `preds`)."""
    check(bool(np.all((conf >= 0) & (conf <= 1))), "binary_calibration_error needs preds in [0,1]")
    v = binary_calibration_error(
        torch.from_numpy(np.ascontiguousarray(conf, dtype=np.float64)),
        torch.from_numpy(outcome.astype(np.int64)),
        n_bins=M,
        norm=norm,
    )
    return float(v)


def tm_multiclass(p: np.ndarray, labels: np.ndarray, M: int, norm: str) -> float:
    """torchmetrics multiclass_calibration_error.  NOTE: `_multiclass_calibration_error_update`
    casts the confidences to float32 (`confidences.float()`) even for float64 input, so this
    route is only float32-accurate; the float64 source for top-label ECE is
    binary_calibration_error(conf, correct), which is the same computation in float64."""
    v = multiclass_calibration_error(
        torch.from_numpy(np.ascontiguousarray(p, dtype=np.float64)),
        torch.from_numpy(labels.astype(np.int64)),
        num_classes=p.shape[1],
        n_bins=M,
        norm=norm,
    )
    return float(v)


# ---------------------------------------------------------------------------------------------
# robustness against rounding choices that §11 does not fix


def _entropy_variants(p: np.ndarray):
    C = p.shape[1]
    safe = np.where(p > 0, p, 1.0)
    t_np = np.where(p > 0, -p * np.log(safe), 0.0)
    mlog = np.vectorize(math.log, otypes=[np.float64])
    t_libm = np.where(p > 0, -p * mlog(safe), 0.0)
    lnC = np.log(C)
    yield "entropy:seq-np.log", seq_sum_cols(t_np) / lnC
    yield "entropy:seq-libm", seq_sum_cols(t_libm) / math.log(C)
    yield "entropy:reversed", seq_sum_cols(t_libm[:, ::-1]) / lnC
    yield "entropy:fsum", np.array([math.fsum(r) for r in t_libm]) / lnC
    yield "entropy:numpy-pairwise", t_np.sum(axis=1) / lnC
    yield "entropy:termwise", seq_sum_cols(t_libm / lnC)
    yield "entropy:negzero", np.where(seq_sum_cols(t_libm) == 0, -0.0, seq_sum_cols(t_libm)) / lnC


def _softmax_variants(z: np.ndarray):
    m = z.max(axis=1, keepdims=True)
    mexp = np.vectorize(math.exp, otypes=[np.float64])
    mlog = np.vectorize(math.log, otypes=[np.float64])
    e_np = np.exp(z - m)
    e_libm = mexp(z - m)
    yield "softmax:ref", e_np / seq_sum_cols(e_np)[:, None]
    yield "softmax:libm", e_libm / seq_sum_cols(e_libm)[:, None]
    yield "softmax:reciprocal", e_libm * (1.0 / seq_sum_cols(e_libm))[:, None]
    yield "softmax:fsum", e_libm / np.array([math.fsum(r) for r in e_libm])[:, None]
    yield "softmax:reversed-sum", e_np / seq_sum_cols(e_np[:, ::-1])[:, None]
    yield "softmax:numpy-pairwise", e_np / e_np.sum(axis=1, keepdims=True)
    log_norm = m[:, 0] + mlog(seq_sum_cols(e_libm))  # exp(z - (max + ln sum))
    yield "softmax:exp-minus-logsumexp", mexp(z - log_norm[:, None])


def _fingerprint(p, scores, labels, M):
    """Everything discrete the expected values depend on."""
    fp = {}
    pred = np.argmax(p, axis=1)
    fp["pred"] = pred
    conf = p.max(axis=1)
    vectors = {"conf": conf}
    for k in range(p.shape[1]):
        vectors[f"p[:,{k}]"] = p[:, k]
    vectors.update({f"score:{k}": v for k, v in scores.items()})
    for name, v in vectors.items():
        order = np.argsort(v, kind="stable")
        fp[f"order:{name}"] = order
        fp[f"ties:{name}"] = v[order][1:] == v[order][:-1]
    for name in ["conf"] + [f"p[:,{k}]" for k in range(p.shape[1])]:
        fp[f"bins:{name}"] = equal_width_bin(vectors[name], M)
    for k, u in scores.items():
        inrange = bool(np.all((u >= 0) & (u <= 1)))
        fp[f"inrange:{k}"] = np.array([inrange])
        if inrange:
            fp[f"bins:1-{k}"] = equal_width_bin(1.0 - u, M)
    return fp


def _gap_problems(v: np.ndarray, name: str, relative: bool = False) -> list[str]:
    """Distinct values so close that another rounding could tie them or swap them.  Probabilities
    from a softmax carry a *relative* rounding error (tiny ones stay accurate), scores such as
    1 - max p an *absolute* one."""
    out = []
    s = np.unique(v)
    if len(s) > 1:
        d = np.diff(s)
        scale = np.abs(s[1:]) if relative else np.maximum(1.0, np.abs(s[1:]))
        bad = d < FRAGILE * scale
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            out.append(f"{name}: distinct values {s[i]!r} and {s[i + 1]!r} closer than {FRAGILE}")
    return out


def _edge_problems(v: np.ndarray, M: int, name: str) -> list[str]:
    # 0 and 1 are not boundaries between two §11 bins (x <= 0 and x in (0, 1/M] share bin 1)
    edges = np.array([m / M for m in range(1, M)])
    d = np.abs(v[:, None] - edges[None, :])
    bad = (d > 0) & (d < FRAGILE)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        return [f"{name}: value {v[i]!r} within {FRAGILE} of (but not on) edge {edges[j]!r}"]
    return []


def robustness_check(case_name, input_kind, values, labels, M, custom):
    """Raise if some expected value could change under a different but valid rounding."""
    problems = []
    if input_kind == "logits":
        p_variants = list(_softmax_variants(values))
    else:
        p_variants = [("probs:as-given", values)]
    ref = None
    for pname, p in p_variants:
        for ename, ent in _entropy_variants(p):
            scores = {"sr": score_sr(p), "entropy": ent, "margin": score_margin(p)}
            fp = _fingerprint(p, scores, labels, M)
            if ref is None:
                ref = (pname + "/" + ename, fp)
                continue
            for key, val in fp.items():
                if not np.array_equal(val, ref[1][key]):
                    problems.append(f"{key} differs between {ref[0]} and {pname}/{ename}")
    # tolerance-based checks on the reference
    p = softmax_ref(values) if input_kind == "logits" else values
    sc = builtin_scores(p)
    vecs = {"conf": p.max(axis=1), **{f"p[:,{k}]": p[:, k] for k in range(p.shape[1])}}
    if input_kind == "logits":
        for name, v in vecs.items():
            problems += _gap_problems(v, name, relative=True)
            problems += _edge_problems(v, M, name)
    # sr and margin of given probabilities are single IEEE operations on exact inputs, and custom
    # scores are given: only the entropy (and, from logits, everything) can move by an ulp
    movable = dict(sc) if input_kind == "logits" else {"entropy": sc["entropy"]}
    for k, u in movable.items():
        # the entropy is a sum of non-negative terms: its rounding error is relative to its size
        problems += _gap_problems(u, k, relative=(k == "entropy"))
        near1 = (np.abs(u - 1.0) < FRAGILE) & (u != 1.0)
        near0 = (np.abs(u) < FRAGILE) & (u != 0.0) & (k != "entropy")
        if near1.any() or near0.any():
            problems.append(f"{k}: a score within {FRAGILE} of 0 or 1 but not on it")
        problems += _edge_problems(1.0 - u, M, f"1-{k}")
    if input_kind == "logits" and np.any((p > 0) & (p < 1e-300)):
        problems.append("a probability is (nearly) subnormal: flush-to-zero would change it to 0")
    # dedupe, keep it short
    problems = list(dict.fromkeys(problems))
    check(not problems, f"case {case_name} is fragile:\n  " + "\n  ".join(problems[:10]))


# ---------------------------------------------------------------------------------------------
# curves (reliability bins, risk-coverage, oracle rejection), numpy from §11 and docs/metrics.md

Z95 = 1.959963984540054  # two-sided 95% normal quantile, as an f64
ORACLE_MAX_POINTS = 7  # the thinned oracle curve; 0 (every step) is always written too
RC_SKIP_N, RC_SKIP_DISTINCT = 10_000, 10_000  # N > this and a score with more distinct values: no curve


def wilson_formula(k: int, n: int) -> tuple[float, float]:
    """Wilson score interval, written from the formula: centre ± half, clipped to [0, 1]."""
    p = k / n
    z2 = Z95 * Z95
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = Z95 / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_decimal(k: int, n: int) -> tuple[Decimal, Decimal]:
    """The same interval in 50-digit decimal arithmetic (z is the exact value of the f64 Z95)."""
    with localcontext() as ctx:
        ctx.prec = 50
        z = Decimal(Z95)
        p = Decimal(k) / Decimal(n)
        z2 = z * z
        denom = 1 + z2 / n
        centre = (p + z2 / (2 * n)) / denom
        half = z / denom * (p * (1 - p) / n + z2 / (4 * n * n)).sqrt()
        lo, hi = max(Decimal(0), centre - half), min(Decimal(1), centre + half)
        # algebraically centre = half at k = 0 and centre + half = 1 at k = n; 50 digits leave ~1e-50
        check((k > 0 or lo < Decimal("1e-45")) and (k < n or hi > 1 - Decimal("1e-45")), "wilson decimal ends")
        return (Decimal(0) if k == 0 else lo), (Decimal(1) if k == n else hi)


_WILSON_CACHE: dict[tuple[int, int], tuple[float, float]] = {}


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval of k successes in n trials. The stored value is the 50-digit decimal
    interval rounded once to f64 (so k = n gives exactly 1.0 and k = 0 exactly 0.0, where the f64
    formula can land one ulp inside); it must agree with the f64 formula (1e-15) and with
    scipy.stats.binomtest(k, n).proportion_ci(method='wilson') (Newcombe's form, 1e-12)."""
    if (k, n) not in _WILSON_CACHE:
        dlo, dhi = wilson_decimal(k, n)
        lo, hi = float(dlo), float(dhi)
        flo, fhi = wilson_formula(k, n)
        agree(lo, flo, f"wilson({k}, {n}) low: decimal vs f64 formula", tol=1e-15)
        agree(hi, fhi, f"wilson({k}, {n}) high: decimal vs f64 formula", tol=1e-15)
        ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        agree(lo, float(ci.low), f"wilson({k}, {n}) low: decimal vs scipy")
        agree(hi, float(ci.high), f"wilson({k}, {n}) high: decimal vs scipy")
        check(0.0 <= lo <= k / n <= hi <= 1.0, f"wilson({k}, {n}) = {(lo, hi)} does not contain {k}/{n}")
        _WILSON_CACHE[(k, n)] = (lo, hi)
    return _WILSON_CACHE[(k, n)]


def bin_record(lower: float | None, upper: float | None, c: np.ndarray, h: np.ndarray) -> dict:
    """One ReliabilityBin: c the confidences in the bin, h their correctness (0/1)."""
    n = len(c)
    if n == 0:
        return {"lower": lower, "upper": upper, "count": 0, "mean_confidence": None, "accuracy": None, "wilson": None}
    k = int(h.sum())
    return {
        "lower": lower,
        "upper": upper,
        "count": n,
        "mean_confidence": math.fsum(c) / n,
        "accuracy": k / n,
        "wilson": list(wilson(k, n)),
    }


def equal_width_bin_loop(x: np.ndarray, M: int) -> np.ndarray:
    """Second implementation of the §11 bin rule: the first m in 1..M with x <= m/M, else bin M."""
    out = np.full(len(x), M - 1)
    done = np.zeros(len(x), dtype=bool)
    for m in range(1, M + 1):
        hit = ~done & (x <= m / M)
        out[hit] = m - 1
        done |= hit
    return out


def reliability_equal_width(conf: np.ndarray, hit: np.ndarray, M: int) -> list[dict]:
    b = equal_width_bin(conf, M)
    check(np.array_equal(b, equal_width_bin_loop(conf, M)), f"equal-width bins: searchsorted vs loop (M={M})")
    return [bin_record(m / M, (m + 1) / M, conf[b == m], hit[b == m]) for m in range(M)]


def reliability_equal_mass(conf: np.ndarray, hit: np.ndarray, M: int) -> list[dict]:
    n = len(conf)
    groups = equal_mass_groups(conf, M)
    # second implementation: Python's (stable) sort on (value, index), group g starts at g*base + min(g, extra)
    order = sorted(range(n), key=lambda i: (float(conf[i]), i))
    base, extra = divmod(n, M)
    for g in range(M):
        start = g * base + min(g, extra)
        size = base + (g < extra)
        check(list(groups[g]) == order[start:start + size], f"equal-mass group {g} of {M}: numpy vs sorted()")
    out = []
    for g in groups:
        c = conf[g]
        lo, hi = (float(c.min()), float(c.max())) if len(g) else (None, None)
        out.append(bin_record(lo, hi, c, hit[g]))
    return out


def reliability_vs_metrics(rows: list[dict], n: int, what: str, ece: float, mce: float | None = None,
                           rmsce: float | None = None) -> None:
    """The bins must reproduce the case's ece (or ece_em), mce and rmsce."""
    full = [r for r in rows if r["count"]]
    check(sum(r["count"] for r in rows) == n, f"{what}: counts do not add up to N")
    agree(math.fsum(r["count"] / n * abs(r["accuracy"] - r["mean_confidence"]) for r in full), ece, f"{what}: ece")
    if mce is not None:
        agree(max(abs(r["accuracy"] - r["mean_confidence"]) for r in full), mce, f"{what}: mce")
    if rmsce is not None:
        rms = math.sqrt(math.fsum(r["count"] / n * (r["accuracy"] - r["mean_confidence"]) ** 2 for r in full))
        agree(rms, rmsce, f"{what}: rmsce")


def reliability_vs_torchmetrics(rows: list[dict], conf: np.ndarray, hit: np.ndarray, M: int, what: str) -> bool:
    """Where torchmetrics' bins coincide with §11's, its per-bin accuracy/confidence/proportion
    (``_binning_bucketize``, float64) must agree. Returns whether the comparison was made."""
    if not np.array_equal(equal_width_bin(conf, M), torch_convention_bin(conf, M)):
        return False
    bounds = torch.linspace(0, 1, M + 1, dtype=torch.float64)
    acc_b, conf_b, prop_b = _tm_binning_bucketize(torch.from_numpy(conf), torch.from_numpy(hit), bounds)
    acc_b, conf_b, prop_b = acc_b.numpy(), conf_b.numpy(), prop_b.numpy()
    n = len(conf)
    check(prop_b[M] == 0.0, f"{what}: torchmetrics' extra bin is not empty")
    for m, r in enumerate(rows):
        check(round(float(prop_b[m]) * n) == r["count"], f"{what}: bin {m} count vs torchmetrics")
        if r["count"]:
            agree(r["accuracy"], float(acc_b[m]), f"{what}: bin {m} accuracy vs torchmetrics")
            agree(r["mean_confidence"], float(conf_b[m]), f"{what}: bin {m} mean confidence vs torchmetrics")
    return True


def risk_coverage_numpy(err: np.ndarray, u: np.ndarray) -> dict[str, list]:
    """One point at the end of each tie group of u, ascending: coverage k/N, risk errors/k,
    threshold = the group's value. Computed from a stable sort and, again, by thresholding."""
    n = len(u)
    order = np.argsort(u, kind="stable")
    us = u[order]
    cum = np.cumsum(err[order].astype(np.int64))
    ends = np.r_[np.nonzero(us[1:] != us[:-1])[0], n - 1]
    kept = ends + 1
    cov = [int(k) / n for k in kept]
    risk = [int(e) / int(k) for e, k in zip(cum[ends], kept)]
    thr = [float(t) for t in us[ends]]
    # second route: for each distinct value t, the samples with u <= t
    distinct = np.unique(u)
    check(np.array_equal(distinct, us[ends]), "risk-coverage: thresholds vs np.unique")
    for i, t in enumerate(distinct):
        mask = u <= t
        k = int(mask.sum())
        check(k == int(kept[i]) and int(err[mask].sum()) == int(cum[ends[i]]), f"risk-coverage at u <= {t!r}")
    return {"coverage": cov, "risk": risk, "threshold": [t + 0.0 for t in thr]}  # + 0.0: no -0.0 in JSON


def oracle_rejection_numpy(err: np.ndarray, max_points: int) -> dict:
    """Errors rejected first; at j = 0, step, 2 step, ... < N: rejection j/N and quality =
    1 - max(n_err - j, 0)/(N - j), the latter exactly (Fraction) and rounded once."""
    n = len(err)
    n_err = int(err.sum())
    step = 1 if max_points == 0 or n <= max_points else -(-n // max_points)
    js = list(range(0, n, step))
    rejection = [j / n for j in js]
    quality = [float(1 - Fraction(max(n_err - j, 0), n - j)) for j in js]
    # second route: sort the samples errors-first, drop the first j, mean correctness of the rest
    oracle = np.sort((~err).astype(np.int64), kind="stable")  # 0 (error) first
    ok_tail = np.r_[np.cumsum(oracle[::-1])[::-1], 0]  # ok_tail[j] = correct among samples j..N-1
    for j, q in zip(js, quality):
        agree(q, int(ok_tail[j]) / (n - j), f"oracle quality at j={j}: formula vs sorted")
    if max_points != 0:
        check(len(js) <= max_points, "thinned oracle curve has more than max_points points")
    return {"max_points": max_points, "rejection": rejection, "quality": quality}


def compute_curves(name, conf, hit, err, M, cal, scores, custom) -> tuple[dict, int, bool]:
    """The `curves` object of one case, and the number of numbers in it."""
    n = len(conf)
    rel = []
    ew = reliability_equal_width(conf, hit, M)
    reliability_vs_metrics(ew, n, f"{name}: equal-width reliability", cal["ece"], cal["mce"], cal["rmsce"])
    tm_done = reliability_vs_torchmetrics(ew, conf, hit, M, f"{name}: equal-width reliability")
    rel.append({"binning": "equal_width", "bins": M, "out": ew})
    for m in dict.fromkeys((M, 10)):
        em = reliability_equal_mass(conf, hit, m)
        if m == M:
            reliability_vs_metrics(em, n, f"{name}: equal-mass reliability", cal["ece_em"])
        rel.append({"binning": "equal_mass", "bins": m, "out": em})

    rc, skipped = {}, []
    for sname in ["sr", *custom]:
        u = scores[sname]
        if n > RC_SKIP_N and len(np.unique(u)) > RC_SKIP_DISTINCT:
            skipped.append(sname)
            continue
        rc[sname] = risk_coverage_numpy(err, u)
        # the curve's mean risk, linearly interpolated inside tie groups, is the aurc
        k = np.arange(1, n + 1, dtype=np.float64)
        cum_at_ends = np.r_[0.0, np.round(np.array(rc[sname]["risk"]) * np.array(rc[sname]["coverage"]) * n)]
        ends = np.r_[0.0, np.round(np.array(rc[sname]["coverage"]) * n)]
        agree(float(np.mean(np.interp(k, ends, cum_at_ends) / k)), aurc_numpy(err, u)[0], f"{name}/{sname}: aurc from curve")

    orc = [oracle_rejection_numpy(err, 0), oracle_rejection_numpy(err, ORACLE_MAX_POINTS)]
    # PR(oracle) of prr is the mean quality of the full oracle curve
    n_ok = n - int(err.sum())
    kept = np.arange(n, 0, -1)
    agree(math.fsum(orc[0]["quality"]) / n, float(np.mean(np.minimum(kept, n_ok) / kept)), f"{name}: PR(oracle)")

    curves = {"reliability": rel, "risk_coverage": rc}
    if skipped:
        curves["risk_coverage_skipped"] = skipped
    curves["oracle_rejection"] = orc
    count = sum(7 * len(r["out"]) for r in rel)  # lower, upper, count, mean, accuracy, 2 wilson ends
    count += sum(3 * len(c["coverage"]) for c in rc.values())
    count += sum(2 * len(o["quality"]) for o in orc)
    return curves, count, tm_done


# ---------------------------------------------------------------------------------------------
# one case


def compute_case(spec: dict) -> tuple[dict, dict]:
    name = spec["name"]
    C = spec["num_classes"]
    kind = spec["input"]
    M = spec.get("bins", 15)
    values = clean_zero(np.asarray(spec["values"], dtype=np.float64).reshape(-1, C))
    labels = np.asarray(spec["labels"], dtype=np.int64)
    custom = {k: clean_zero(v) for k, v in spec.get("scores", {}).items()}
    n = len(labels)
    check(values.shape == (n, C), f"{name}: shape")
    check(bool(np.all((labels >= 0) & (labels < C))), f"{name}: labels out of range")
    check(bool(np.all(np.isfinite(values))), f"{name}: non-finite values")
    for k, v in custom.items():
        check(v.shape == (n,) and bool(np.all(np.isfinite(v))), f"{name}: bad custom score {k}")
        check(k not in BUILTINS, f"{name}: custom score may not shadow a built-in")

    if kind == "probs":
        p = values
        check(bool(np.all((p >= 0) & (p <= 1))), f"{name}: probabilities outside [0,1]")
        check(bool(np.all(np.abs(p.sum(axis=1) - 1.0) <= 1e-4)), f"{name}: rows must sum to 1 within 1e-4")
        logp_true = np.log(np.maximum(p[np.arange(n), labels], 1e-12))
    else:
        p = softmax_ref(values)
        logp_true = log_softmax_ref(values)[np.arange(n), labels]

    robustness_check(name, kind, values, labels, M, custom)

    pred = np.argmax(p, axis=1)  # lowest index on ties
    err = pred != labels
    hit = (~err).astype(np.float64)
    conf = p.max(axis=1)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), labels] = 1.0

    sources: dict[str, str] = {}
    peer: dict[str, dict] = {}
    notes: list[str] = []

    # ---- calibration, numpy from §11
    cal = {}
    cal["accuracy"] = float(hit.mean())
    cal["nll"] = float(-np.mean(logp_true))
    cal["brier"] = float(np.mean(seq_sum_cols((p - onehot) ** 2)))
    rows = bin_rows(conf, hit, equal_width_bin(conf, M), M)
    cal["ece"], cal["mce"], cal["rmsce"] = l1_of(rows, n), max_of(rows), l2_of(rows, n)
    em = []
    for g in equal_mass_groups(conf, M):
        if len(g):
            em.append((len(g), float(hit[g].mean()), float(conf[g].mean())))
    cal["ece_em"] = l1_of(em, n)
    cw_terms = []
    ace_terms, nonempty = [], 0
    for k in range(C):
        yk = (labels == k).astype(np.float64)
        pk = p[:, k]
        r = bin_rows(pk, yk, equal_width_bin(pk, M), M)
        cw_terms.append(l1_of(r, n))
        groups = [g for g in equal_mass_groups(pk, M) if len(g)]
        nonempty = len(groups)  # same for every class: min(N, M)
        ace_terms += [abs(float(yk[g].mean()) - float(pk[g].mean())) for g in groups]
    cal["classwise_ece"] = math.fsum(cw_terms) / C
    cal["ace"] = math.fsum(ace_terms) / (C * nonempty)
    sources.update(
        accuracy="numpy (§11: mean(1 - e), argmax lowest index on ties)",
        nll=(
            "numpy (§11: -mean log p[i,y_i], clipped at 1e-12, no renormalisation)"
            if kind == "probs"
            else "numpy (§11: -mean log-softmax[i,y_i] from the logits)"
        ),
        brier="numpy (§11: mean over i of sum_k (p_ik - 1[y_i=k])^2)",
        ece_em="numpy (§11: stable sort, M groups sizes differ <= 1, first N mod M larger)",
        ace="numpy (§11: equal-mass groups per class, divided by C x number of non-empty groups)",
    )

    # ---- calibration, torchmetrics
    tm_bins_equal = np.array_equal(equal_width_bin(conf, M), torch_convention_bin(conf, M))
    for metric, norm in (("ece", "l1"), ("mce", "max"), ("rmsce", "l2")):
        tm64 = tm_binary(conf, hit.astype(np.int64), M, norm)
        # numpy re-implementation of torchmetrics' own convention: must match it exactly
        trows = bin_rows(conf, hit, torch_convention_bin(conf, M), M + 1)
        tnp = {"l1": l1_of(trows, n), "max": max_of(trows), "l2": l2_of(trows, n)}[norm]
        agree(tm64, tnp, f"{name}: torchmetrics {norm} vs numpy-with-torchmetrics-convention")
        # the public multiclass route computes in float32 (see tm_multiclass), so it can only
        # be held to ~1e-6, and only when float32 rounding moves no confidence across an edge
        tm32 = tm_multiclass(p, labels, M, norm)
        conf32 = conf.astype(np.float32).astype(np.float64)
        b32 = torch_convention_bin(conf32, M, dtype=torch.float32)
        if np.array_equal(b32, torch_convention_bin(conf, M)):
            agree(tm32, tm64, f"{name}: torchmetrics multiclass(float32) vs binary(float64) {norm}", tol=1e-6)
        if tm_bins_equal:
            agree(cal[metric], tm64, f"{name}: numpy §11 vs torchmetrics {metric}")
            sources[metric] = (
                f"torchmetrics binary_calibration_error(conf, correct, n_bins={M}, norm='{norm}') in float64 "
                f"== numpy §11 (agree to {AGREE}); multiclass_calibration_error agrees to float32 precision"
            )
        else:
            sources[metric] = f"numpy §11 (torchmetrics uses other bin edges on this case: see peer_values)"
            if abs(tm64 - cal[metric]) > AGREE:
                peer[f"calibration.{metric}"] = {
                    "torchmetrics": tm64,
                    "torchmetrics_multiclass_float32": tm32,
                    "source": f"torchmetrics {torchmetrics.__version__} binary_calibration_error(conf, correct, "
                    f"n_bins={M}, norm='{norm}'), float64; multiclass_calibration_error (float32 inside)",
                    "why": "torchmetrics bins are [lo, hi) over torch.linspace edges and conf == 1.0 goes to an "
                    "extra bin; §11 bins are (lo, hi] with edges m/M",
                }
            else:
                notes.append(f"{metric}: torchmetrics bins differ but the value agrees")

    # classwise_ece: second source = mean over classes of torchmetrics binary ECE of (p_k, 1[y=k])
    cw_tm, cw_same_bins = [], True
    for k in range(C):
        pk = p[:, k]
        yk = (labels == k).astype(np.int64)
        tmv = tm_binary(pk, yk, M, "l1")
        trows = bin_rows(pk, yk.astype(float), torch_convention_bin(pk, M), M + 1)
        agree(tmv, l1_of(trows, n), f"{name}: classwise torchmetrics vs numpy-torch-convention, class {k}")
        cw_tm.append(tmv)
        cw_same_bins &= bool(np.array_equal(equal_width_bin(pk, M), torch_convention_bin(pk, M)))
    cw_tm_v = math.fsum(cw_tm) / C
    if cw_same_bins:
        agree(cal["classwise_ece"], cw_tm_v, f"{name}: classwise_ece numpy vs torchmetrics")
        sources["classwise_ece"] = (
            "numpy §11 == (1/C) sum_k torchmetrics binary_calibration_error(p_k, 1[y=k], norm='l1') in float64"
        )
    else:
        sources["classwise_ece"] = "numpy §11 (torchmetrics uses other bin edges on this case: see peer_values)"
        if abs(cw_tm_v - cal["classwise_ece"]) > AGREE:
            peer["calibration.classwise_ece"] = {
                "torchmetrics": cw_tm_v,
                "source": "(1/C) sum_k torchmetrics binary_calibration_error(p_k, 1[y=k], norm='l1'), float64",
                "why": "torchmetrics bins are [lo, hi) and p == 1.0 goes to an extra bin",
            }

    # ---- error detection
    scores = {**builtin_scores(p), **custom}
    n_err = int(err.sum())
    ed = {}
    ece_score_tm_ok, ece_score_tm_diff = [], []
    exhaustive_done = False
    for sname, u in scores.items():
        m = {}
        if n_err == 0 or n_err == n:
            m["roc_auc"] = None
        else:
            m["roc_auc"] = float(roc_auc_score(err.astype(int), u))
            agree(m["roc_auc"], roc_auc_numpy(err, u), f"{name}/{sname}: roc_auc sklearn vs Mann-Whitney")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            warnings.simplefilter("ignore", UserWarning)
            m["aupr_error"] = None if n_err == 0 else float(average_precision_score(err.astype(int), u))
            m["aupr_success"] = None if n_err == n else float(average_precision_score((~err).astype(int), -u))
        agree(m["aupr_error"], average_precision_numpy(err, u), f"{name}/{sname}: aupr_error sklearn vs numpy")
        agree(m["aupr_success"], average_precision_numpy(~err, -u), f"{name}/{sname}: aupr_success sklearn vs numpy")
        m["aurc"], m["e_aurc"] = aurc_numpy(err, u)
        m["prr"] = prr_numpy(err, u)
        # PR(u) = 1 - AURC algebraically; the two codes share only expected_cumulative
        if m["prr"] is not None:
            n_ok = n - n_err
            k = np.arange(1, n + 1, dtype=np.float64)
            pr_or = float(np.mean(np.minimum(k, n_ok) / k))
            agree(m["prr"], ((1 - m["aurc"]) - n_ok / n) / (pr_or - n_ok / n), f"{name}/{sname}: prr via aurc")
        if n <= EXHAUSTIVE_MAX_N:
            ex_aurc, ex_pr = exhaustive_tie_expectation(err, u)
            agree(m["aurc"], float(ex_aurc), f"{name}/{sname}: aurc interp vs exhaustive enumeration")
            if m["prr"] is not None:
                n_ok = n - n_err
                k = np.arange(1, n + 1, dtype=np.float64)
                pr_or = float(np.mean(np.minimum(k, n_ok) / k))
                agree(m["prr"], (float(ex_pr) - n_ok / n) / (pr_or - n_ok / n), f"{name}/{sname}: prr exhaustive")
            exhaustive_done = True
        if bool(np.all((u >= 0) & (u <= 1))):
            c = 1.0 - u
            r = bin_rows(c, hit, equal_width_bin(c, M), M)
            m["ece_score"] = l1_of(r, n)
            tmv = tm_binary(c, hit.astype(np.int64), M, "l1")
            trows = bin_rows(c, hit, torch_convention_bin(c, M), M + 1)
            agree(tmv, l1_of(trows, n), f"{name}/{sname}: ece_score torchmetrics vs numpy-torch-convention")
            if np.array_equal(equal_width_bin(c, M), torch_convention_bin(c, M)):
                agree(m["ece_score"], tmv, f"{name}/{sname}: ece_score numpy vs torchmetrics")
                ece_score_tm_ok.append(sname)
            else:
                ece_score_tm_diff.append(sname)
                if abs(tmv - m["ece_score"]) > AGREE:
                    peer[f"error_detection.{sname}.ece_score"] = {
                        "torchmetrics": tmv,
                        "source": f"torchmetrics binary_calibration_error(1 - u, correct, n_bins={M}, norm='l1'), float64",
                        "why": "torchmetrics bins are [lo, hi) and 1 - u == 1.0 goes to an extra bin",
                    }
        else:
            m["ece_score"] = None
        ed[sname] = {k: m[k] for k in ("roc_auc", "aupr_error", "aupr_success", "aurc", "e_aurc", "prr", "ece_score")}

    sources.update(
        roc_auc="sklearn.metrics.roc_auc_score(e, u) == numpy Mann-Whitney with average ranks (agree to 1e-12)",
        aupr_error="sklearn.metrics.average_precision_score(e, u) == numpy step AP over distinct thresholds",
        aupr_success="sklearn.metrics.average_precision_score(1 - e, -u) == numpy step AP over distinct thresholds",
        aurc="numpy (§11: mean_k E[risk(k)], ties by linear interpolation of cumulative errors between "
        "tie-group boundaries" + ("; checked against exhaustive enumeration of tie orders)" if exhaustive_done else ")"),
        e_aurc="numpy (aurc - aurc of the oracle order, all correct first)",
        prr="numpy (§11, s_j directly; PR(random) = mean quality; == formula via aurc to 1e-12)",
        ece_score=(
            "numpy §11 (binary ECE of 1 - u vs correctness, same bins as ece); torchmetrics "
            f"binary_calibration_error(1 - u, correct) agrees to {AGREE} for scores "
            f"{ece_score_tm_ok or 'none'}"
            + (f"; uses other bin edges for {ece_score_tm_diff} (see peer_values if the value differs)" if ece_score_tm_diff else "")
        ),
        scores="sr/entropy/margin: numpy float64 from the probabilities"
        + (" (softmax of the logits, row max subtracted)" if kind == "logits" else ""),
    )

    curves, curve_values, rel_tm = compute_curves(name, conf, hit, err, M, cal, scores, custom)
    sources["curves"] = (
        "numpy from §11/docs/metrics.md: reliability bins (mean confidence by math.fsum; reproduce ece, mce, "
        "rmsce and ece_em"
        + (f"; per-bin accuracy/confidence == torchmetrics _binning_bucketize to {AGREE}" if rel_tm else "")
        + "); Wilson 95%: 50-digit decimal rounded once == f64 formula (1e-15) == "
        f"scipy.stats.binomtest(k, n).proportion_ci(method='wilson') ({AGREE}); risk-coverage: stable sort == "
        "thresholding u <= t, and reproduces aurc; oracle rejection: exact quality (Fraction) == errors-first sort, "
        "and its mean is PR(oracle) of prr"
    )

    out = {
        "name": name,
        "description": spec["description"],
        "num_classes": C,
        "input": kind,
        "values": [float(x) for x in values.ravel()],
        "labels": [int(x) for x in labels],
        "bins": M,
        "scores": {k: [float(x) for x in v] for k, v in custom.items()},
        "expected": {"calibration": cal, "error_detection": ed},
        "curves": curves,
        "sources": sources,
    }
    if peer:
        out["peer_values"] = peer
    all_notes = ([spec["notes"]] if spec.get("notes") else []) + notes
    if all_notes:
        out["notes"] = "; ".join(all_notes)
    summary = {
        "name": name, "n": n, "C": C, "input": kind, "bins": M, "acc": cal["accuracy"], "ece": cal["ece"],
        "roc_sr": ed["sr"]["roc_auc"], "aurc_sr": ed["sr"]["aurc"], "peers": len(peer),
        "exhaustive": exhaustive_done, "curve_values": curve_values,
    }
    return out, summary


# ---------------------------------------------------------------------------------------------
# case definitions


def dirichlet_probs(rng, n, C, alpha=1.0):
    return rng.dirichlet(np.full(C, alpha), size=n)


def sample_labels(rng, p, sharpen=1.0):
    """Labels drawn from p**sharpen (renormalised): sharpen < 1 makes the model overconfident."""
    q = p**sharpen
    q = q / q.sum(axis=1, keepdims=True)
    cum = np.cumsum(q, axis=1)
    r = rng.uniform(size=(len(p), 1))
    return np.minimum((r > cum).sum(axis=1), p.shape[1] - 1)


def quantize_rows(rng, p, denom):
    """Round rows to multiples of 1/denom that sum to exactly denom/denom (largest remainder)."""
    x = p * denom
    fl = np.floor(x).astype(np.int64)
    rem = x - fl
    short = denom - fl.sum(axis=1)
    order = np.argsort(-rem, axis=1, kind="stable")
    for i in range(len(p)):
        fl[i, order[i, : short[i]]] += 1
    return fl / denom


def canonical_layout(p):
    """Give every multiset of row values ONE column order (chosen by the multiset itself), so
    that equal-entropy rows are identical rows. Rows that are permutations of one another have
    entropies that differ in the last bit depending on the summation order, which would make a
    tie in one implementation a strict order in another."""
    out = np.empty_like(p)
    C = p.shape[1]
    perms = list(itertools.permutations(range(C)))
    for i, row in enumerate(p):
        s = np.sort(row)[::-1]
        key = int(round(float(np.dot(s, np.arange(1, C + 1)) * 1024)))
        out[i] = s[list(perms[key % len(perms)])]
    return out


def case_specs():
    specs = []

    # 1. random C=3 probabilities
    rng = np.random.default_rng(1001)
    n = 300
    p = softmax_ref(rng.normal(0, 1.5, size=(n, 3)))
    y = sample_labels(rng, p, sharpen=0.7)
    specs.append(dict(
        name="random_c3_probs",
        description="Random C=3 probabilities (softmax of N(0,1.5) logits, stored as probabilities), N=300, "
        "labels drawn from a flattened version of p (an overconfident model). Two continuous custom scores.",
        num_classes=3, input="probs", values=p, labels=y,
        scores={
            "noisy_sr": np.clip(score_sr(p) + rng.normal(0, 0.05, n), 0.0, 1.0),
            "uniform_random": rng.uniform(0, 1, n),
        },
    ))

    # 2. random C=2 logits
    rng = np.random.default_rng(1002)
    n = 250
    z = rng.normal(0, 2.0, size=(n, 2))
    y = sample_labels(rng, softmax_ref(z), sharpen=0.8)
    specs.append(dict(
        name="random_c2_logits",
        description="Random C=2 logits N(0,2), N=250; probabilities and NLL come from the logits.",
        num_classes=2, input="logits", values=z, labels=y,
        scores={"inv_logit_gap": 1.0 / (1.0 + np.abs(z[:, 0] - z[:, 1]))},
    ))

    # 3. heavy ties: quantized probabilities and quantized custom scores
    rng = np.random.default_rng(1003)
    protos = np.array([
        [0.7, 0.2, 0.1], [0.15, 0.75, 0.1], [0.1, 0.25, 0.65],
        [0.5, 0.3, 0.2], [0.25, 0.55, 0.2], [0.3, 0.15, 0.55],
        [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9],
        [0.4, 0.4, 0.2], [0.6, 0.4, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0],
    ])
    n = 400
    p = protos[rng.integers(0, len(protos), n)]
    y = sample_labels(rng, p, sharpen=0.6)
    specs.append(dict(
        name="heavy_ties_c3",
        description="N=400 rows drawn from 13 prototype probability rows (so sr/entropy/margin have only a few "
        "distinct values; rows that are permutations of one another are only used "
        "where every summation order gives the same entropy), quantized custom scores with 5 and 2 "
        "distinct values. Exercises the random-tie-breaking expectation of aurc/prr, tie grouping in AP/ROC, "
        "and tied confidences in the equal-mass groups.",
        num_classes=3, input="probs", values=p, labels=y,
        scores={
            "quarters": rng.integers(0, 5, n) / 4,
            "binary_flag": (rng.uniform(size=n) < 0.3).astype(float),
        },
    ))

    # 4. bin edges, C=2
    rows, labels = [], []
    for k in range(16):
        a = k / 15
        for j in range(3):
            b = (15 - k) / 15
            rows.append([a, b] if j != 1 else [b, a])
            labels.append((k + j) % 2)
    rows += [[1.0, 0.0], [0.0, 1.0], [0.2, 0.8], [0.8, 0.2], [1.0, 0.0], [0.0, 1.0]]
    labels += [0, 0, 1, 1, 1, 1]
    n = len(rows)
    rng = np.random.default_rng(1004)
    specs.append(dict(
        name="bin_edges_c2",
        description="C=2 rows [k/15, (15-k)/15] for k=0..15 (Python k/15), their mirror images, and exact "
        "[1.0, 0.0]/[0.2, 0.8] rows: many confidences lie exactly on the edges m/15, including 1.0, and "
        "probabilities 0.0 go to bin 1. The custom score k/15 puts 1-u on (or next to) edges too. "
        "torchmetrics bins these differently ([lo,hi), extra bin for 1.0): see peer_values.",
        num_classes=2, input="probs", values=np.array(rows), labels=np.array(labels),
        scores={"edge_score": np.array([rng.integers(0, 16) / 15 for _ in range(n)])},
    ))

    # 5. bin edges, C=3, bins=10
    rows, labels = [], []
    for k in range(4, 11):
        a = k / 10
        r = 10 - k
        # three layouts with the maximum in each position; no two rows are permutations of one
        # another unless every summation order gives the same entropy
        for j, row in enumerate(([a, r / 10, 0.0], [r / 20, a, r / 20], [r / 40, 3 * r / 40, a])):
            rows.append(row)
            labels.append((k + 2 * j) % 3)
    rows += [[0.3, 0.3, 0.4], [0.55, 0.15, 0.3], [0.15, 0.55, 0.3], [0.7, 0.0, 0.3]]
    labels += [2, 0, 2, 1]
    specs.append(dict(
        name="bin_edges_c3_bins10",
        description="bins=10. C=3 rows whose confidence is exactly k/10 (k=4..10, incl. 1.0) and whose other "
        "probabilities are often on edges too (0.3, 0.1, 0.0...). torch.linspace(0,1,11)[3] != 0.3, so "
        "torchmetrics also differs on the 0.3 edge.",
        num_classes=3, input="probs", values=np.array(rows), labels=np.array(labels), bins=10,
        scores={"tenths": np.array([(i % 11) / 10 for i in range(len(rows))])},
    ))

    # 6. one class only
    rng = np.random.default_rng(1006)
    n = 200
    p = dirichlet_probs(rng, n, 3, alpha=1.0)
    specs.append(dict(
        name="one_class_only_c3",
        description="C=3, every label is class 0 (classes 1 and 2 never occur), Dirichlet(1) probabilities: "
        "classwise_ece/ace for classes with no positives; a mix of correct and wrong predictions.",
        num_classes=3, input="probs", values=p, labels=np.zeros(n, dtype=np.int64), scores={},
    ))

    # 7. all correct
    rng = np.random.default_rng(1007)
    n = 150
    p = dirichlet_probs(rng, n, 3, alpha=0.7)
    specs.append(dict(
        name="all_correct_c3",
        description="C=3, label = argmax for every row: no errors, so roc_auc, aupr_error and prr are undefined "
        "(null); aupr_success = 1, aurc = e_aurc = 0.",
        num_classes=3, input="probs", values=p, labels=np.argmax(p, axis=1),
        scores={"uniform_random": rng.uniform(0, 1, n)},
    ))

    # 8. all wrong
    rng = np.random.default_rng(1008)
    n = 150
    p = dirichlet_probs(rng, n, 3, alpha=0.7)
    y = (np.argmax(p, axis=1) + 1 + rng.integers(0, 2, n)) % 3
    specs.append(dict(
        name="all_wrong_c3",
        description="C=3, no prediction is correct: roc_auc, aupr_success and prr are undefined (null); "
        "aupr_error = 1, aurc = 1, e_aurc = 0.",
        num_classes=3, input="probs", values=p, labels=y,
        scores={"uniform_random": rng.uniform(0, 1, n)},
    ))

    # 9. binary probabilities
    rng = np.random.default_rng(1009)
    n = 500
    a = rng.beta(0.6, 0.6, n)
    p = np.stack([a, 1.0 - a], axis=1)
    y = (rng.uniform(size=n) < (0.15 + 0.7 * p[:, 1])).astype(np.int64)
    specs.append(dict(
        name="random_c2_probs",
        description="C=2, p1 = 1 - p0 with p0 ~ Beta(0.6,0.6), N=500, labels from a miscalibrated model.",
        num_classes=2, input="probs", values=p, labels=y,
        scores={"rounded_sr": np.round(score_sr(p), 2)},
    ))

    # 10. C=20
    rng = np.random.default_rng(1010)
    n, C = 2000, 20
    z = rng.normal(0, 1, size=(n, C)) * rng.uniform(0.5, 4.0, size=(n, 1))
    p = softmax_ref(z)
    y = sample_labels(rng, p, sharpen=0.6)
    specs.append(dict(
        name="random_c20_probs",
        description="C=20, N=2000, probabilities = softmax of scaled normal logits (stored as probabilities), "
        "labels from a flattened p.",
        num_classes=C, input="probs", values=p, labels=y,
        scores={"uniform_random": rng.uniform(0, 1, n)},
    ))

    # 11/12. N = 1
    specs.append(dict(
        name="single_sample_wrong_c3",
        description="N=1, a wrong prediction: roc_auc, aupr_success and prr undefined; one equal-mass group, "
        "14 empty ones (ace divides by C x 1).",
        num_classes=3, input="probs", values=np.array([[0.2, 0.5, 0.3]]), labels=np.array([2]),
        scores={"custom": np.array([0.7])},
    ))
    specs.append(dict(
        name="single_sample_correct_logits_c2",
        description="N=1 from logits, a correct prediction: roc_auc, aupr_error and prr undefined.",
        num_classes=2, input="logits", values=np.array([[0.25, 2.0]]), labels=np.array([1]), scores={},
    ))

    # 13. N = 100000
    rng = np.random.default_rng(1013)
    n, C = 100_000, 4
    p = canonical_layout(quantize_rows(rng, dirichlet_probs(rng, n, C, alpha=0.5), 32))
    y = sample_labels(rng, p, sharpen=0.8)
    specs.append(dict(
        name="large_n100000_c4",
        description="N=100000, C=4, probabilities quantized to multiples of 1/32 (dyadic, rows sum to exactly 1; "
        "each multiset of values always appears in the same column order; "
        "keeps the file small and makes ties everywhere), custom score quantized to multiples of 1/1000. "
        "Stored gzipped.",
        num_classes=C, input="probs", values=p, labels=y,
        scores={"milli_noise": np.round(np.clip(score_sr(p) + rng.normal(0, 0.1, n), 0, 1) * 1000) / 1000},
    ))

    # 14. zeros on the true class
    rng = np.random.default_rng(1014)
    n = 40
    p = dirichlet_probs(rng, n, 3, alpha=0.8)
    y = sample_labels(rng, p)
    for i in range(0, n, 3):  # put an exact zero on the true class of every third row
        k = y[i]
        mass = p[i, k]
        p[i, k] = 0.0
        p[i, (k + 1) % 3] += mass
    p[1] = [1e-13, 0.5 - 1e-13, 0.5]
    y[1] = 0
    p[2] = [1e-12, 1.0 - 1e-12, 0.0]
    y[2] = 0
    specs.append(dict(
        name="zero_prob_true_class_c3",
        description="C=3, every third row has probability exactly 0 on its true class, one row has 1e-13 and "
        "one exactly 1e-12 there: NLL clips at 1e-12 (each such term is -ln 1e-12), with no renormalisation.",
        num_classes=3, input="probs", values=p, labels=y, scores={},
    ))

    # 15. extreme logits
    rng = np.random.default_rng(1015)
    fixed = np.array([
        [1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0], [1000.0, 1000.0, -1000.0],
        [999.5, 1000.0, -1000.0], [-1000.0, -1000.0, -1000.0 + 3.0], [800.0, -900.0, 799.0],
        [0.0, 1000.0, -1000.0], [-1000.0, 0.0, 1000.0],
    ])
    fy = np.array([2, 0, 1, 0, 2, 1, 0, 0])
    # random rows: the largest logit either dominates so much that every softmax rounds the
    # maximum to exactly 1.0 (all other gaps >= 40), or the top two are within 8 so the
    # confidence is far from 1. In between, max p = 1 - 1e-14 in one valid implementation and
    # exactly 1.0 in another (exp(z - logsumexp) loses it in the ulp of a logit of ~1000),
    # which would turn a tie of sr = 0 into a strict order.  Also keep every probability either
    # exactly 0 (exp underflows) or a normal number (a flush-to-zero libm could drop subnormals).
    zr = []
    while len(zr) < 52:
        row = rng.normal(0, 1, 3) * 600.0
        gaps = np.sort(row.max() - row)[1:]
        # and no probability near the subnormal range: every other gap < 650 or > 750
        if (gaps[0] <= 8.0 or gaps[0] >= 40.0) and not np.any((gaps > 650.0) & (gaps < 750.0)):
            zr.append(row)
    zr = np.array(zr)
    z = np.vstack([fixed, zr])
    y = np.r_[fy, rng.integers(0, 3, 52)]
    specs.append(dict(
        name="extreme_logits_c3",
        description="C=3 logits with magnitudes ~1000 (needs the max-subtracted softmax; probabilities underflow "
        "to exactly 0 and 1.0). NLL comes from the log-softmax, so terms of ~2000 appear (no clipping). "
        "Includes a tied-maximum row [1000, 1000, -1000].",
        num_classes=3, input="logits", values=z, labels=y, scores={},
    ))

    # 16. bins = 10, random
    rng = np.random.default_rng(1016)
    n = 500
    p = dirichlet_probs(rng, n, 4, alpha=0.6)
    y = sample_labels(rng, p, sharpen=0.7)
    specs.append(dict(
        name="random_c4_bins10",
        description="C=4 Dirichlet(0.6) probabilities, N=500, bins=10 (He et al. use 10): every binned metric "
        "(ece, mce, rmsce, classwise_ece, ece_em, ace, ece_score) uses 10 bins/groups.",
        num_classes=4, input="probs", values=p, labels=y, bins=10,
        scores={"uniform_random": rng.uniform(0, 1, n)},
    ))

    # 17. N < bins
    specs.append(dict(
        name="n_less_than_bins_c3",
        description="N=7 < bins=15: 7 equal-mass groups of one sample and 8 empty ones (ece_em; ace divides by "
        "C x 7). Tied scores; aurc/prr checked against exhaustive enumeration of tie orders.",
        num_classes=3, input="probs",
        values=np.array([
            [0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8],
            [0.6, 0.3, 0.1], [0.3, 0.3, 0.4], [0.2, 0.5, 0.3],
        ]),
        labels=np.array([0, 1, 1, 2, 2, 2, 0]),
        scores={"two_levels": np.array([0.25, 0.75, 0.25, 0.25, 0.75, 0.75, 0.25])},
    ))

    # 18. scores outside [0, 1]
    rng = np.random.default_rng(1018)
    n = 120
    p = dirichlet_probs(rng, n, 3, alpha=1.0)
    y = sample_labels(rng, p, sharpen=0.7)
    above = score_sr(p).copy()
    above[5] = 1.0000001
    specs.append(dict(
        name="score_out_of_range_c3",
        description="Custom scores outside [0,1] (a positive distance, a shifted score with negatives, and one "
        "value 1.0000001): ece_score is undefined (null) for them, every ranking metric is still defined.",
        num_classes=3, input="probs", values=p, labels=y,
        scores={
            "distance_like": rng.gamma(2.0, 10.0, n) + 20.0 * score_sr(p),
            "shifted_negative": score_sr(p) - 0.5,
            "slightly_above_one": above,
        },
    ))

    # 19. constant score
    rng = np.random.default_rng(1019)
    n = 90
    p = dirichlet_probs(rng, n, 3, alpha=1.0)
    y = sample_labels(rng, p)
    specs.append(dict(
        name="constant_score_c3",
        description="Custom scores that are constant (all tied): roc_auc = 0.5, aupr_error = error rate, "
        "aupr_success = accuracy, aurc = error rate, prr = 0 (up to rounding).",
        num_classes=3, input="probs", values=p, labels=y,
        scores={"constant_half": np.full(n, 0.5), "constant_zero": np.zeros(n), "constant_one": np.ones(n)},
    ))

    # 20. tied maximum probability
    rows = [
        [0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.1, 0.45, 0.45], [0.1, 0.45, 0.45], [0.45, 0.1, 0.45],
        [0.45, 0.1, 0.45], [0.35, 0.35, 0.3], [0.28, 0.36, 0.36], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5],
        [0.6, 0.2, 0.2], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25],
    ]
    labels = [0, 1, 1, 2, 0, 2, 0, 2, 1, 1, 0, 1, 2, 1]
    specs.append(dict(
        name="tied_max_c3",
        description="Rows whose maximum probability is tied between two classes: the prediction is the lowest "
        "tied index (label = that index is correct, label = the other tied index is an error); margin = 1 on "
        "those rows.",
        num_classes=3, input="probs", values=np.array(rows), labels=np.array(labels), scores={},
    ))

    # 21. float32-representable probabilities
    rng = np.random.default_rng(1021)
    n = 300
    p = dirichlet_probs(rng, n, 5, alpha=0.5).astype(np.float32).astype(np.float64)
    y = sample_labels(rng, p, sharpen=0.8)
    specs.append(dict(
        name="float32_probs_c5",
        description="C=5, N=300 probabilities that are exactly float32 values (rows sum to 1 only within ~1e-7, "
        "used as given, not renormalised); also a float32-representable custom score.",
        num_classes=5, input="probs", values=p, labels=y,
        scores={"f32_random": rng.uniform(0, 1, n).astype(np.float32).astype(np.float64)},
    ))

    # 22. tiny case with ties everywhere (exhaustive enumeration)
    specs.append(dict(
        name="tiny_ties_exhaustive_c2",
        description="N=8, C=2, scores with tie groups that mix errors and correct predictions; the aurc/prr "
        "tie expectation is verified against all tie-breaking permutations in the generator.",
        num_classes=2, input="probs",
        values=np.array([
            [0.75, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5],
            [0.75, 0.25], [0.875, 0.125], [0.125, 0.875], [0.5, 0.5],
        ]),
        labels=np.array([0, 1, 1, 1, 1, 0, 0, 0]),
        scores={"three_levels": np.array([0.5, 0.0, 0.5, 1.0, 0.5, 0.0, 1.0, 0.5])},
    ))

    # 23. logits with C=5 and moderate values, bins = 15, logits tied exactly
    rng = np.random.default_rng(1023)
    n = 400
    # 16 prototype rows of half-integer logits (a few with a tied maximum), repeated verbatim.
    # Not shifted: exp(z - (max + ln sum)) is a valid softmax that is not exactly shift-invariant.
    # Not permuted: entropies of permuted rows can differ in the last bit with the summation order.
    protos = np.round(rng.normal(0, 2, size=(16, 5)) * 2) / 2
    protos[[0, 1, 2], :2] = protos[[0, 1, 2], :2].max(axis=1, keepdims=True) + 1.0  # tied max in 0, 1
    protos[3, [1, 3]] = protos[3].max() + 0.5  # tied max in 1 and 3
    check(len({tuple(np.sort(r - r.max())) for r in protos}) == len(protos), "quantized_logits protos")
    z = protos[rng.integers(0, len(protos), n)]
    y = sample_labels(rng, softmax_ref(z), sharpen=0.8)
    specs.append(dict(
        name="quantized_logits_c5",
        description="C=5, N=400 logits: 16 half-integer prototype rows repeated verbatim (exactly tied "
        "scores computed from logits), some with tied maximum logits (argmax lowest index).",
        num_classes=5, input="logits", values=z, labels=y, scores={},
    ))
    return specs


# ---------------------------------------------------------------------------------------------
# self-tests of the tie formula on random tiny cases (not written out)


def selftest_ties():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 8))
        u = rng.integers(0, 3, n) / 2
        err = rng.uniform(size=n) < 0.5
        ex_aurc, ex_pr = exhaustive_tie_expectation(err, u)
        aurc, _ = aurc_numpy(err, u)
        agree(aurc, float(ex_aurc), "selftest aurc vs enumeration")
        prr = prr_numpy(err, u)
        n_ok = n - int(err.sum())
        k = np.arange(1, n + 1, dtype=np.float64)
        if prr is not None:
            pr_or = float(np.mean(np.minimum(k, n_ok) / k))
            agree(prr, (float(ex_pr) - n_ok / n) / (pr_or - n_ok / n), "selftest prr vs enumeration")
    # the bin rule: Python k/15 lands in bin k, a hair above in bin k+1
    for M in (10, 15):
        for k in range(1, M + 1):
            b = equal_width_bin(np.array([k / M, np.nextafter(k / M, 2.0), np.nextafter(k / M, -1.0)]), M)
            check(b[0] == k - 1 and (k == M or b[1] == k) and b[2] == k - 1, f"bin rule at {k}/{M}")
    check(equal_width_bin(np.array([0.0]), 15)[0] == 0, "0 -> bin 1")


# ---------------------------------------------------------------------------------------------
# output


def render(case: dict) -> bytes:
    """JSON with the big arrays on one line each; floats via repr (round-trip exact). Inside
    `curves`, every list of numbers and every reliability bin is one line too."""
    inline: dict[str, str] = {}

    def put(obj) -> str:
        key = f"@@INLINE:{len(inline)}@@"
        inline[key] = json.dumps(obj, allow_nan=False)
        return key

    def flatten(obj):
        if isinstance(obj, dict):
            if "count" in obj:  # a reliability bin
                return put(obj)
            return {k: flatten(v) for k, v in obj.items()}
        if isinstance(obj, list):
            if all(not isinstance(x, (list, dict)) for x in obj):
                return put(obj)
            return [flatten(x) for x in obj]
        return obj

    skel = dict(case)
    skel["values"] = put(case["values"])
    skel["labels"] = put(case["labels"])
    skel["scores"] = {k: put(v) for k, v in case["scores"].items()}
    if "curves" in case:
        skel["curves"] = flatten(case["curves"])
    text = json.dumps(skel, indent=1, allow_nan=False)
    for key, val in inline.items():
        quoted = json.dumps(key)
        check(text.count(quoted) == 1, f"render: placeholder {key}")
        text = text.replace(quoted, val)
    back = json.loads(text)
    check(back == case, f"{case['name']}: JSON does not round-trip")
    return (text + "\n").encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="regenerate in memory and compare with cases/")
    args = ap.parse_args()

    selftest_ties()
    outputs, summaries = {}, []
    for spec in case_specs():
        case, summary = compute_case(spec)
        data = render(case)
        if len(data) > GZIP_OVER_BYTES:
            outputs[f"{case['name']}.json.gz"] = gzip.compress(data, compresslevel=9, mtime=0)
        else:
            outputs[f"{case['name']}.json"] = data
        summary["file"] = next(k for k in outputs if k.startswith(case["name"] + ".json"))
        summary["bytes"] = len(outputs[summary["file"]])
        summaries.append(summary)
    check(len(outputs) >= 18, "at least 18 cases")

    if args.check:
        bad = []
        for fname, data in outputs.items():
            path = CASES_DIR / fname
            if not path.exists() or path.read_bytes() != data:
                bad.append(fname)
        extra = sorted(p.name for p in CASES_DIR.glob("*.json*") if p.name not in outputs)
        if bad or extra:
            print(f"out of date: {bad}; stale: {extra}")
            return 1
        print(f"all {len(outputs)} case files are up to date")
    else:
        CASES_DIR.mkdir(parents=True, exist_ok=True)
        for p in CASES_DIR.glob("*.json*"):
            if p.name not in outputs:
                p.unlink()
        for fname, data in outputs.items():
            (CASES_DIR / fname).write_bytes(data)

    def fmt(x):
        return "null" if x is None else f"{x:.6f}"

    print(f"\nversions: numpy {np.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, "
          f"torch {torch.__version__}, torchmetrics {torchmetrics.__version__}")
    hdr = f"{'case':34} {'N':>6} {'C':>3} {'input':6} {'M':>3} {'acc':>9} {'ece':>9} {'roc(sr)':>9} " \
          f"{'aurc(sr)':>9} {'peers':>5} {'exh':>3}  file"
    print(hdr)
    print("-" * len(hdr))
    for s in summaries:
        print(f"{s['name']:34} {s['n']:>6} {s['C']:>3} {s['input']:6} {s['bins']:>3} {fmt(s['acc']):>9} "
              f"{fmt(s['ece']):>9} {fmt(s['roc_sr']):>9} {fmt(s['aurc_sr']):>9} {s['peers']:>5} "
              f"{'yes' if s['exhaustive'] else '':>3}  {s['file']} ({s['bytes']} B)")
    print(f"{len(summaries)} cases, {sum(s['curve_values'] for s in summaries)} curve values; "
          f"all cross-source checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
