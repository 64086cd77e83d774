#!/usr/bin/env python3
"""Time `ueb eval` against the Python calls a user would make for the same report.

Build the CLI first:  cargo build --release -p ueb-cli   (binary: target/release/ueb)

The script generates a seeded C=10 problem of --n samples: float64 probabilities [N, C],
int64 labels [N], and two extra float64 scores [N]. It writes them as .npy files to a
temporary directory and then, in the same run, times (best of --repeats after one warm-up,
time.perf_counter):

  python  the calls a Python user would make, with the data already in memory (numpy arrays
          and torch tensors built beforehand):
            numpy: argmax/errors and the three built-in scores (sr, entropy, margin);
            for each of the 5 scores: sklearn roc_auc_score(errors, u) and
                                      average_precision_score(errors, u);
            torchmetrics multiclass_calibration_error, norm l1, l2 and max (15 bins);
            sklearn log_loss.
  ueb     `ueb eval --probs P --labels L --scores S1 --scores S2 --json` as a whole
          subprocess: process start, reading the .npy files, every metric, JSON output.

The ueb report covers more than the Python calls (aupr_success, aurc, e_aurc, prr, ece_score,
ece_em, classwise_ece, ace, brier, accuracy), and its time includes process start and file
reading. The comparison is therefore tilted towards Python. It is not a like-for-like timing
of single functions.

  python bench/metrics_vs_python.py [--n 100000] [--repeats 5] [--ueb PATH] [--json]
"""

from __future__ import annotations

import os

# torch's OpenMP workers spin for a while after each parallel call (the default "active" wait
# policy) and steal a core from the `ueb eval` subprocess timed next; measured here, that made
# ueb look ~1.6x slower and torchmetrics itself ~10x slower. Passive waiting is fair to both.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy
import sklearn
import torch
import torchmetrics
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
from torchmetrics.functional.classification import multiclass_calibration_error

REPO = Path(__file__).resolve().parent.parent
NUM_CLASSES = 10
N_BINS = 15


# ---------------------------------------------------------------------------------------------
# data


def make_problem(n: int, seed: int):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, size=(n, NUM_CLASSES)) * rng.uniform(0.5, 4.0, size=(n, 1))
    z -= z.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    # labels drawn from a flattened p: an overconfident model with a realistic error rate
    q = probs**0.7
    q /= q.sum(axis=1, keepdims=True)
    labels = (rng.uniform(size=(n, 1)) > np.cumsum(q, axis=1)).sum(axis=1)
    labels = np.minimum(labels, NUM_CLASSES - 1).astype(np.int64)
    sr = 1.0 - probs.max(axis=1)
    extra = {
        "noisy_sr": np.clip(sr + rng.normal(0.0, 0.05, n), 0.0, 1.0),
        "random_score": rng.uniform(0.0, 1.0, n),
    }
    return np.ascontiguousarray(probs, dtype=np.float64), labels, extra


# ---------------------------------------------------------------------------------------------
# the Python side


def python_workload(probs, labels, extra, probs_t, labels_t, timings=None):
    """Everything a Python user calls to get the numbers ueb reports (see module docstring)."""
    def lap(key, t0):
        if timings is not None:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0

    t0 = time.perf_counter()
    c = probs.shape[1]
    errors = (probs.argmax(axis=1) != labels).astype(np.int64)
    sr = 1.0 - probs.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(probs > 0, probs * np.log(probs), 0.0)
    entropy = -plogp.sum(axis=1) / np.log(c)
    top2 = np.partition(probs, c - 2, axis=1)[:, c - 2:]
    margin = 1.0 - (top2[:, 1] - top2[:, 0])
    lap("numpy scores", t0)

    out = {}
    t0 = time.perf_counter()
    for name, u in (("sr", sr), ("entropy", entropy), ("margin", margin), *extra.items()):
        out[name] = (roc_auc_score(errors, u), average_precision_score(errors, u))
    lap("sklearn roc_auc + average_precision (5 scores)", t0)

    t0 = time.perf_counter()
    for norm in ("l1", "l2", "max"):
        out[f"ce_{norm}"] = float(
            multiclass_calibration_error(probs_t, labels_t, num_classes=c, n_bins=N_BINS, norm=norm)
        )
    lap("torchmetrics calibration_error l1/l2/max", t0)

    t0 = time.perf_counter()
    out["log_loss"] = log_loss(labels, probs, labels=np.arange(c))
    lap("sklearn log_loss", t0)
    return out


def best_of(fn, repeats: int):
    fn()  # warm-up (imports, allocator, page cache)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ---------------------------------------------------------------------------------------------
# machine and versions


def cpu_info():
    model, physical = platform.processor() or platform.machine(), None
    try:
        text = Path("/proc/cpuinfo").read_text()
        names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
        if names:
            model = names[0]
        cores = set()
        phys = core = None
        for line in text.splitlines() + [""]:
            if line.startswith("physical id"):
                phys = line.split(":", 1)[1].strip()
            elif line.startswith("core id"):
                core = line.split(":", 1)[1].strip()
            elif not line.strip():
                if core is not None:
                    cores.add((phys, core))
                phys = core = None
        physical = len(cores) or None
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                   text=True, check=True).stdout.strip() or model
        except (OSError, subprocess.CalledProcessError):
            pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"model": model, "logical_cpus": os.cpu_count(), "physical_cores": physical, "usable_cpus": usable}


def versions(ueb: Path | None):
    v = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": torch.__version__,
        "torchmetrics": torchmetrics.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if ueb is not None:
        try:
            r = subprocess.run([str(ueb), "--version"], capture_output=True, text=True, timeout=30)
            v["ueb"] = (r.stdout or r.stderr).strip() or f"exit {r.returncode}"
        except (OSError, subprocess.TimeoutExpired) as e:
            v["ueb"] = f"unknown ({e})"
    return v


# ---------------------------------------------------------------------------------------------
# agreement (informational): a few numbers both sides compute with the same definition


def _value(x):
    if isinstance(x, dict):
        x = x.get("value")
    return x if isinstance(x, (int, float)) else None


def agreement(report: dict, py: dict, extra_paths: dict[str, Path]):
    """Largest abs difference of roc_auc / aupr_error between ueb and sklearn, per score found."""
    det = report.get("error_detection", {}) or {}
    diffs, missing = {}, []
    for name in ["sr", "entropy", "margin", *extra_paths]:
        key = name
        if key not in det:  # the CLI may name a score file by its stem or by its path
            cands = [k for k in det if k == extra_paths.get(name, Path("")).stem or name in k]
            key = cands[0] if cands else None
        if key is None:
            missing.append(name)
            continue
        roc, ap = py[name]
        got_roc, got_ap = _value(det[key].get("roc_auc")), _value(det[key].get("aupr_error"))
        if got_roc is not None:
            diffs[f"{name}.roc_auc"] = abs(got_roc - roc)
        if got_ap is not None:
            diffs[f"{name}.aupr_error"] = abs(got_ap - ap)
    return {"max_abs_diff": max(diffs.values()) if diffs else None, "compared": len(diffs), "missing": missing}


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description="Time `ueb eval` against the equivalent Python calls.")
    ap.add_argument("--n", type=int, default=100_000, help="number of samples (default 100000)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions, best is reported (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated problem (default 0)")
    ap.add_argument("--ueb", type=Path, default=REPO / "target" / "release" / "ueb",
                    help="ueb binary (default: target/release/ueb of this repository)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if args.n < 2 or args.repeats < 1:
        ap.error("--n must be >= 2 and --repeats >= 1")

    ueb = args.ueb if args.ueb.is_absolute() else (Path.cwd() / args.ueb)
    if not ueb.exists():
        found = shutil.which(str(args.ueb))
        if found is None:
            sys.exit(f"ueb binary not found at {ueb}; build it with `cargo build --release -p ueb-cli` "
                     f"or pass --ueb PATH")
        ueb = Path(found)

    probs, labels, extra = make_problem(args.n, args.seed)
    probs_t = torch.from_numpy(probs)
    labels_t = torch.from_numpy(labels)

    with tempfile.TemporaryDirectory(prefix="ueb-bench-") as tmp:
        tmp = Path(tmp)
        p_path, l_path = tmp / "probs.npy", tmp / "labels.npy"
        np.save(p_path, probs)
        np.save(l_path, labels)
        extra_paths = {}
        for name, v in extra.items():
            extra_paths[name] = tmp / f"{name}.npy"
            np.save(extra_paths[name], v)

        # python
        py_result = python_workload(probs, labels, extra, probs_t, labels_t)
        py_time = best_of(lambda: python_workload(probs, labels, extra, probs_t, labels_t), args.repeats)
        breakdown: dict[str, float] = {}
        python_workload(probs, labels, extra, probs_t, labels_t, timings=breakdown)  # one more, itemised

        # ueb
        cmd = [str(ueb), "eval", "--probs", str(p_path), "--labels", str(l_path)]
        for path in extra_paths.values():
            cmd += ["--scores", str(path)]
        cmd.append("--json")

        def run_ueb():
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` failed with exit code {r.returncode}:\n{r.stderr.strip()}")
            return r.stdout

        try:
            report = json.loads(run_ueb())
        except (RuntimeError, json.JSONDecodeError) as e:
            sys.exit(f"ueb eval did not produce a JSON report: {e}")
        for key in ("n", "num_classes", "calibration", "error_detection"):
            if key not in report:
                sys.exit(f"ueb JSON report lacks the key {key!r}")
        if report["n"] != args.n or report["num_classes"] != NUM_CLASSES:
            sys.exit(f"ueb reports n={report['n']}, num_classes={report['num_classes']}; "
                     f"expected {args.n}, {NUM_CLASSES}")
        ueb_time = best_of(run_ueb, args.repeats)

    result = {
        "n": args.n,
        "num_classes": NUM_CLASSES,
        "bins": N_BINS,
        "scores": 3 + len(extra),
        "repeats": args.repeats,
        "seed": args.seed,
        "python_s": py_time,
        "ueb_s": ueb_time,
        "ratio_python_over_ueb": py_time / ueb_time if ueb_time > 0 else None,
        "python_breakdown_s": breakdown,
        "ueb_command": " ".join(["ueb", *cmd[1:]]).replace(str(tmp), "$TMP"),
        "agreement_with_sklearn": agreement(report, py_result, extra_paths),
        "machine": {**cpu_info(), "os": platform.platform()},
        "versions": versions(ueb),
    }

    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    m, v = result["machine"], result["versions"]
    print(f"metrics_vs_python: N={args.n}, C={NUM_CLASSES}, {result['scores']} scores, {N_BINS} bins, "
          f"best of {args.repeats} after 1 warm-up")
    print(f"machine : {m['model']}; {m['physical_cores']} physical cores, {m['logical_cpus']} logical CPUs "
          f"({m['usable_cpus']} usable); {m['os']}")
    print(f"versions: python {v['python']}, numpy {v['numpy']}, scipy {v['scipy']}, scikit-learn "
          f"{v['scikit-learn']}, torch {v['torch']} ({v['torch_threads']} threads), torchmetrics "
          f"{v['torchmetrics']}; ueb --version: {v.get('ueb', '?')}")
    print()
    print(f"python (in-memory calls)           {py_time * 1e3:10.2f} ms")
    for k, t in breakdown.items():
        print(f"  {k:<44} {t * 1e3:8.2f} ms")
    print(f"ueb eval (subprocess, incl. I/O)   {ueb_time * 1e3:10.2f} ms")
    ratio = result["ratio_python_over_ueb"]
    print(f"ratio python / ueb                 {ratio:10.2f}x" if ratio else "ratio python / ueb: n/a")
    agr = result["agreement_with_sklearn"]
    if agr["max_abs_diff"] is not None:
        print(f"\nroc_auc/aupr_error, ueb vs sklearn: max abs diff {agr['max_abs_diff']:.3e} over {agr['compared']} "
              f"numbers" + (f" (scores not found in the report: {agr['missing']})" if agr["missing"] else ""))
    print("\nNote: the ueb report also contains metrics the Python side does not compute "
          "(aurc, prr, ece_em, ace, ...).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
