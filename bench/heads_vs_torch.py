#!/usr/bin/env python3
"""Time ueb's uncertainty heads against the same heads in PyTorch on CPU, side by side in one run.

Build the timing binary first:

    cargo build --release -p ueb-heads --example heads_timing

The script, in one run:

  ueb    runs that binary (``--bin``, default ``target/release/examples/heads_timing``, or under
         ``$CARGO_TARGET_DIR``) as a subprocess. It builds seeded synthetic caches, fits every
         head once, writes caches and fitted heads to a temporary directory (``--dump``), and
         prints JSON timings:
           inference: ``Head::score`` on batches of 1, 32, 128 rows at (d=768, C=2, mlp/tanh),
             (d=768, C=20, mlp/tanh) and (d=4096, C=4, linear) for sr, entropy, margin,
             temperature, vector_scaling, mahalanobis, relative_mahalanobis, adue, alien;
             f64 on the host, ueb's default; and the heads whose products dominate
             (mahalanobis, relative_mahalanobis, adue, alien) once more with
             ``score_precision: f32`` (the same fit; f32 matrix products, as float32 PyTorch);
           training: the whole ``alien`` fit (one grid point: lr 1e-4, alpha 0.1, beta 0.01;
             3 epochs, batch 128, N = 10^4 fit rows, 2 500 selection rows, d = 768, C = 2,
             mlp head with dropout 0.1), f32: on the host engine (the default on a CPU
             device) and through burn's autodiff (``engine: burn``) on ``flex`` and ``ndarray``.
  torch  loads those caches and fitted heads and runs the same work:
           inference, twice: in float32 (PyTorch's default) and in float64 (the precision of
             ueb's host arithmetic, and of ALIEN's reference implementation): eval-mode
             ``nn.Module`` heads under ``torch.inference_mode()`` on the same rows: softmax scores of the logits (sr, entropy, margin); softmax(z/T) and
             softmax(v*z + b) (temperature, vector scaling); Mahalanobis in matrix form,
             x P x^T - 2 x P mu^T + mu P mu^T, with P, mu P and mu P mu^T precomputed as buffers;
             dense -> tanh -> out_proj then the score (adue, alien; out_proj alone for the
             linear d=4096 head);
           training (float32, as ueb trains here): the same alien fit from the same initial
             weights and data: Adam +
             OneCycleLR (pct_start 0.1, cos, div 25, final_div 1e4, momentum cycling on),
             dropout 0.1 before dense and before out_proj, loss BCE(u, e) + alpha mean((u -
             anchor)^2) + beta sum ||theta - theta_0||^2, a fresh permutation per epoch, an
             evaluation on the selection split before training and after each epoch (sklearn
             ROC-AUC), the best epoch's weights kept, as ueb does.

Both sides time alike: one call to size a loop of at least ``--min-ms``, one warm-up loop, then
the median over ``--repeats`` loops (ms per call); training: one warm-up fit, then the median of
``--train-repeats`` fits. Inference runs ``--rounds`` times (3 by default), ueb and torch
alternating, and each cell is the median over the rounds: on a shared machine a slow spell then
falls on both sides instead of on whichever ran during it. ``torch.set_num_threads(--threads)`` (2 by default: this project's
build machine has 2 cores; ueb uses all cores through rayon). The table gives torch ms (float32
and float64), ueb ms and torch/ueb for each (> 1: ueb faster), and the largest |u_torch - u_ueb|
on the 128-row batch (float32 torch vs ueb, then vs ueb's f32 variant; the float64 agreement
is in ``--json``). ``ueb f32`` and its ratio compare the f32 variant with torch float32. ueb's inference is timed twice (see examples/heads_timing.rs): from a clean
vector-register state, and right after a faer product, whose AVX-512 kernels leave the upper
register state dirty and slow every later glibc libm call on the thread.

    python bench/heads_vs_torch.py [--bin PATH] [--repeats 7] [--train-repeats 3] [--rounds 3]
                                   [--epochs 3] [--min-ms 20] [--threads 2] [--no-train] [--json]
"""

from __future__ import annotations

import os

# torch's OpenMP workers spin for a while after each parallel call (the default "active" wait
# policy) and would steal a core from the ueb subprocess; see bench/metrics_vs_python.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file
from sklearn.metrics import roc_auc_score
from torch import nn

REPO = Path(__file__).resolve().parent.parent
BATCHES = (1, 32, 128)
HEADS = (
    "sr",
    "entropy",
    "margin",
    "temperature",
    "vector_scaling",
    "mahalanobis",
    "relative_mahalanobis",
    "adue",
    "alien",
)
ALIEN_CLAMP = 1e-9
ADUE_CLAMP = 1e-8


# ---------------------------------------------------------------------------------------------
# timing (the same procedure as examples/heads_timing.rs)


def time_per_call(f, repeats: int, min_ms: float) -> tuple[float, int]:
    t = time.perf_counter()
    f()
    first_ms = (time.perf_counter() - t) * 1e3
    k = min(max(1, math.ceil(min_ms / max(first_ms, 1e-6))), 1_000_000)
    for _ in range(k):
        f()
    per_call = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(k):
            f()
        per_call.append((time.perf_counter() - t) * 1e3 / k)
    return statistics.median(per_call), k


# ---------------------------------------------------------------------------------------------
# the cache and the fitted heads written by heads_timing --dump


def load_cache(d: Path) -> dict:
    meta = json.loads((d / "meta.json").read_text())
    out = {"meta": meta, "classifier": load_file(str(d / "classifier.safetensors"))}
    for split in ("train", "val", "test"):
        out[split] = load_file(str(d / f"{split}.safetensors"))
    return out


def errors_of(split: dict) -> np.ndarray:
    return split["logits"].argmax(axis=1) != split["labels"]


# ---------------------------------------------------------------------------------------------
# the heads in PyTorch (float32, eval mode)


def alien_score(z: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(z, dim=-1)
    h = -(logp.exp() * logp).sum(-1) / math.log(z.shape[-1])
    return h.clamp(ALIEN_CLAMP, 1.0 - ALIEN_CLAMP)


def adue_score(z: torch.Tensor, lam: float) -> torch.Tensor:
    c = z.shape[-1]
    p = F.softmax(z, dim=-1)
    u = (1.0 - torch.logsumexp(lam * p, dim=-1) / lam) / (1.0 - 1.0 / c)
    return u.clamp(ADUE_CLAMP, 1.0 - ADUE_CLAMP)


class BuiltinHead(nn.Module):
    """sr, entropy or margin of softmax(z)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "sr":
            return 1.0 - F.softmax(z, dim=-1).amax(-1)
        if self.kind == "entropy":
            logp = F.log_softmax(z, dim=-1)
            return -(logp.exp() * logp).sum(-1) / math.log(z.shape[-1])
        top = F.softmax(z, dim=-1).topk(2, dim=-1).values
        return 1.0 - (top[:, 0] - top[:, 1])


class VectorScalingHead(nn.Module):
    """1 - max softmax(scale * z + bias)."""

    def __init__(self, scale, bias, dtype=torch.float32):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=dtype))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=dtype))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.softmax(z * self.scale + self.bias, dim=-1).amax(-1)


class TemperatureHead(nn.Module):
    """1 - max softmax(z / T)."""

    def __init__(self, t: float):
        super().__init__()
        self.t = float(t)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.softmax(z / self.t, dim=-1).amax(-1)


class MahalanobisHead(nn.Module):
    """min_k (x - mu_k) P (x - mu_k)^T in matrix form; relative: minus the distance to the
    global mean under the global precision."""

    def __init__(self, means, precision, global_mean=None, global_precision=None, dtype=torch.float32):
        super().__init__()
        # The saved means and precisions are float64; float32 rounds them, as a float32 user would.
        f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
        self.register_buffer("means", f32(means))
        self.register_buffer("precision", f32(precision))
        self.register_buffer("mp", self.means @ self.precision)
        self.register_buffer("mpm", (self.mp * self.means).sum(-1))
        self.relative = global_mean is not None
        if self.relative:
            self.register_buffer("mu0", f32(global_mean))
            self.register_buffer("p0", f32(global_precision))
            mp0 = self.mu0 @ self.p0
            self.register_buffer("mp0", mp0)
            self.register_buffer("mpm0", (mp0 * self.mu0).sum(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp = x @ self.precision
        dist = (xp * x).sum(-1, keepdim=True) - 2.0 * (x @ self.mp.T) + self.mpm
        u = dist.amin(-1)
        if self.relative:
            xp0 = x @ self.p0
            u = u - ((xp0 * x).sum(-1) - 2.0 * (x @ self.mp0.T)[:, 0] + self.mpm0)
        return u


class ClassifierHead(nn.Module):
    """The classifier's head (dense -> tanh -> out_proj, or out_proj alone), dropout before
    dense and before out_proj (RoBERTa/ELECTRA), and the adue or alien score."""

    def __init__(self, tensors: dict, method: str, lam: float, dropout: float):
        super().__init__()
        out_w = torch.from_numpy(tensors["out_proj.weight"].copy())
        c, d = out_w.shape
        self.method, self.lam = method, lam
        self.dropout = nn.Dropout(dropout)
        self.dense = None
        if "dense.weight" in tensors:
            self.dense = nn.Linear(d, d)
            self.dense.weight.data.copy_(torch.from_numpy(tensors["dense.weight"]))
            self.dense.bias.data.copy_(torch.from_numpy(tensors["dense.bias"]))
        has_bias = "out_proj.bias" in tensors
        self.out_proj = nn.Linear(d, c, bias=has_bias)
        self.out_proj.weight.data.copy_(out_w)
        if has_bias:
            self.out_proj.bias.data.copy_(torch.from_numpy(tensors["out_proj.bias"]))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        if self.dense is not None:
            x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)

    def score(self, z: torch.Tensor) -> torch.Tensor:
        return alien_score(z) if self.method == "alien" else adue_score(z, self.lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.logits(x))


def torch_head(name: str, head_dir: Path, dtype: torch.dtype) -> tuple[nn.Module, str]:
    """The torch module of a head saved by ueb, in `dtype`, and its input ("logits" or
    "features")."""
    if name in ("sr", "entropy", "margin"):
        return BuiltinHead(name), "logits"
    saved = json.loads((head_dir / "head.json").read_text())
    if name == "temperature":
        return TemperatureHead(saved["temperature"]), "logits"
    if name == "vector_scaling":
        return VectorScalingHead(saved["scale"], saved["bias"], dtype), "logits"
    t = load_file(str(head_dir / "head.safetensors"))
    if name in ("mahalanobis", "relative_mahalanobis"):
        if saved["config"]["features"] != "input" or saved["config"]["l2_normalize"]:
            raise SystemExit(f"{head_dir}: only features: input without l2_normalize is mirrored")
        glob = (t["global_mean"], t["global_precision"]) if name == "relative_mahalanobis" else (None, None)
        return MahalanobisHead(t["means"], t["precision"], *glob, dtype=dtype), "features"
    # The saved weights are float32; float64 widens them exactly, as ueb's host path does.
    return ClassifierHead(t, name, float(saved["lambda"]), dropout=0.0).to(dtype), "features"


def torch_inference(dump: Path, ueb: dict, repeats: int, min_ms: float, dtype: torch.dtype) -> tuple[dict, dict]:
    """ms per call of every (config, head, batch) in `dtype`, and max |u_torch - u_ueb| at
    batch 128 (absolute and relative)."""
    timings, agreement = {}, {}
    configs = list(dict.fromkeys(r["config"] for r in ueb["inference"]))
    with torch.inference_mode():
        for config in configs:
            cache = load_cache(dump / config / "cache")
            test = cache["test"]
            # The cache stores float32 rows; float64 widens them exactly, as ueb does.
            inputs = {
                "logits": torch.from_numpy(test["logits"].copy()).to(dtype),
                "features": torch.from_numpy(test["features"].copy()).to(dtype),
            }
            for name in HEADS:
                module, kind = torch_head(name, dump / config / "heads" / name, dtype)
                module.eval()
                u = module(inputs[kind][: max(BATCHES)]).double().numpy()
                for label in (name, f"{name}:f32"):
                    if label not in ueb["scores_batch128"][config]:
                        continue
                    ref = np.asarray(ueb["scores_batch128"][config][label])
                    diff = np.abs(u - ref)
                    agreement[(config, label)] = (float(diff.max()), float((diff / np.maximum(np.abs(ref), 1e-300)).max()))
                for b in BATCHES:
                    x = inputs[kind][:b].contiguous()
                    ms, _ = time_per_call(lambda: module(x), repeats, min_ms)
                    timings[(config, name, b)] = ms
    return timings, agreement


# ---------------------------------------------------------------------------------------------
# training


def train_alien(cache: dict, lr: float, alpha: float, beta: float, epochs: int, batch: int, seed: int) -> dict:
    """The alien fit of one grid point, as ueb's trainer does it (see the module docstring)."""
    train, val = cache["train"], cache["val"]
    x = torch.from_numpy(train["features"])
    e = torch.from_numpy(errors_of(train).astype(np.float32))
    z0 = torch.from_numpy(train["logits"]).double()
    anchor = alien_score(z0).float()  # the model's own normalised entropy
    xv = torch.from_numpy(val["features"])
    ev = errors_of(val)
    model = ClassifierHead(cache["classifier"], "alien", 100.0, dropout=0.1)
    init = [p.detach().clone() for p in model.parameters()]
    n = x.shape[0]
    steps = epochs * math.ceil(n / batch)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=steps, pct_start=0.1, anneal_strategy="cos", div_factor=25.0, final_div_factor=1e4
    )
    gen = torch.Generator().manual_seed(seed)

    def select_auc() -> float:
        model.eval()
        with torch.no_grad():
            u = model(xv).numpy()
        model.train()
        return float(roc_auc_score(ev, u))

    init_auc = select_auc()
    best, best_state, curve = None, None, []
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        loss_sum = torch.zeros(())
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            u = model(x[idx])
            bce = F.binary_cross_entropy(u, e[idx])
            reg = ((u - anchor[idx]) ** 2).mean()
            l2sp = sum(((p - p0) ** 2).sum() for p, p0 in zip(model.parameters(), init))
            loss = bce + alpha * reg + beta * l2sp
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * idx.numel()
        auc = select_auc()
        curve.append({"train_loss": float(loss_sum) / n, "val_roc_auc": auc})
        if best is None or auc > best:
            best = auc
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return {"init_val_roc_auc": init_auc, "val_roc_auc": best, "curve": curve}


def torch_training(dump: Path, ueb_train: dict, repeats: int) -> tuple[float, list[float], dict]:
    cache = load_cache(dump / ueb_train["config"] / "cache")
    cfg = ueb_train["chosen"]
    args = dict(lr=cfg["lr"], alpha=cfg["alpha"], beta=cfg["beta"], epochs=ueb_train["epochs"], batch=ueb_train["batch_size"])
    result = train_alien(cache, seed=0, **args)  # warm-up
    runs = []
    for r in range(repeats):
        t = time.perf_counter()
        result = train_alien(cache, seed=r + 1, **args)
        runs.append((time.perf_counter() - t) * 1e3)
    return statistics.median(runs), runs, result


# ---------------------------------------------------------------------------------------------
# machine and report


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rustc = "unknown"
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "rustc": rustc,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }


def median_rounds(rounds):
    """Each cell's median over the rounds: ueb's inference rows (``ms``, ``ms_after_product``,
    ``ms_f32``) and torch's float32 and float64 times; the rows also keep every round's ms."""
    first, _, _ = rounds[0]
    key = lambda r: (r["config"], r["head"], r["batch"])  # noqa: E731
    for rd in rounds[1:]:
        if [key(r) for r in rd[0]] != [key(r) for r in first]:
            raise SystemExit("heads_timing timed different cells in two rounds")
    rows = []
    for i, r in enumerate(first):
        row = dict(r)
        for field in ("ms", "ms_after_product", "ms_f32"):
            if r.get(field) is not None:
                row[f"rounds_{field}"] = [rd[0][i][field] for rd in rounds]
                row[field] = statistics.median(row[f"rounds_{field}"])
        rows.append(row)
    torch_ms = {k: statistics.median(rd[1][k] for rd in rounds) for k in rounds[0][1]}
    torch64_ms = {k: statistics.median(rd[2][k] for rd in rounds) for k in rounds[0][2]}
    return rows, torch_ms, torch64_ms


def default_bin() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "examples" / "heads_timing"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, default=None, help="heads_timing binary (default: target/release/examples/heads_timing)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--train-repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--min-ms", type=float, default=20.0, help="shortest timed loop, ms")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--no-train", action="store_true", help="inference only")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="inference rounds, ueb and torch alternating; each cell is the median over the rounds (default 3)",
    )
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    binary = args.bin or default_bin()
    if not binary.exists():
        print(f"{binary} not found; build it with: cargo build --release -p ueb-heads --example heads_timing", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="ueb-heads-bench-") as tmp:
        dump = Path(tmp)
        cmd = [str(binary), "--dump", str(dump), "--repeats", str(args.repeats), "--min-ms", str(args.min_ms)]
        cmd += ["--epochs", str(args.epochs), "--train-repeats", str(args.train_repeats)]
        if args.no_train:
            cmd.append("--no-train")
        t = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            print(f"{binary} failed with status {proc.returncode}", file=sys.stderr)
            return 1
        ueb = json.loads(proc.stdout)
        print(f"ueb side: {time.perf_counter() - t:.1f} s", file=sys.stderr)
        t = time.perf_counter()
        torch_ms, agreement = torch_inference(dump, ueb, args.repeats, args.min_ms, torch.float32)
        print(f"torch inference (float32): {time.perf_counter() - t:.1f} s", file=sys.stderr)
        t = time.perf_counter()
        torch64_ms, agreement64 = torch_inference(dump, ueb, args.repeats, args.min_ms, torch.float64)
        print(f"torch inference (float64): {time.perf_counter() - t:.1f} s", file=sys.stderr)
        # Further rounds, alternating the two sides, so that a slow spell of a shared machine
        # falls on both; every cell is then the median over the rounds.
        rounds = [(ueb["inference"], torch_ms, torch64_ms)]
        for i in range(1, max(1, args.rounds)):
            t = time.perf_counter()
            again = [str(binary), "--repeats", str(args.repeats), "--min-ms", str(args.min_ms), "--no-train"]
            proc = subprocess.run(again, stdout=subprocess.PIPE, text=True, check=False)
            if proc.returncode != 0:
                print(f"{binary} failed with status {proc.returncode}", file=sys.stderr)
                return 1
            more = json.loads(proc.stdout)["inference"]
            more_torch, _ = torch_inference(dump, ueb, args.repeats, args.min_ms, torch.float32)
            more_torch64, _ = torch_inference(dump, ueb, args.repeats, args.min_ms, torch.float64)
            rounds.append((more, more_torch, more_torch64))
            print(f"round {i + 1}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
        ueb["inference"], torch_ms, torch64_ms = median_rounds(rounds)
        train_rows = []
        if not args.no_train and ueb["training"]:
            t = time.perf_counter()
            t_ms, t_runs, t_result = torch_training(dump, ueb["training"][0], args.train_repeats)
            print(f"torch training: {time.perf_counter() - t:.1f} s", file=sys.stderr)
            for tr in ueb["training"]:
                train_rows.append(
                    {
                        "config": f"alien fit N={tr['n_train']} d={tr['d']} C={tr['c']} {tr['epochs']} epochs",
                        "ueb_device": tr["device"],
                        "torch_ms": t_ms,
                        "ueb_ms": tr["ms"],
                        "ratio": t_ms / tr["ms"],
                        "torch_runs_ms": t_runs,
                        "ueb_runs_ms": tr["runs_ms"],
                        "ueb_chosen": tr["chosen"],
                        "torch_result": t_result,
                    }
                )

    rows = []
    for r in ueb["inference"]:
        key = (r["config"], r["head"], r["batch"])
        rows.append(
            {
                "config": r["config"],
                "classifier": r["classifier"],
                "head": r["head"],
                "batch": r["batch"],
                "torch_ms": torch_ms[key],
                "ueb_ms": r["ms"],
                "ratio": torch_ms[key] / r["ms"],
                "torch64_ms": torch64_ms[key],
                "ratio64": torch64_ms[key] / r["ms"],
                "ueb_ms_after_product": r["ms_after_product"],
                "ratio_after_product": torch_ms[key] / r["ms_after_product"],
                "max_abs_diff_b128": agreement[(r["config"], r["head"])][0],
                "max_rel_diff_b128": agreement[(r["config"], r["head"])][1],
                "max_abs_diff64_b128": agreement64[(r["config"], r["head"])][0],
                "max_rel_diff64_b128": agreement64[(r["config"], r["head"])][1],
            }
        )
        if r.get("ms_f32") is not None:
            f32 = (r["config"], f"{r['head']}:f32")
            rows[-1].update(
                {
                    "ueb_f32_ms": r["ms_f32"],
                    "ratio_f32": torch_ms[key] / r["ms_f32"],
                    "max_abs_diff_f32_b128": agreement[f32][0],
                    "max_rel_diff_f32_b128": agreement[f32][1],
                }
            )
    report = {
        "machine": machine(),
        "settings": {
            "repeats": args.repeats,
            "train_repeats": args.train_repeats,
            "epochs": args.epochs,
            "min_ms": args.min_ms,
            "rounds": max(1, args.rounds),
            "ueb_threads": ueb["threads"],
        },
        "ueb_fit_seconds": ueb["fit_seconds"],
        "inference": rows,
        "training": train_rows,
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0

    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['platform']}")
    print(
        f"versions: Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads, "
        f"OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}), numpy {m['numpy']}, scikit-learn {m['scikit-learn']}; {m['rustc']}"
    )
    print(
        f"median of {args.repeats} loops of >= {args.min_ms:g} ms after a warm-up, then the median over "
        f"{max(1, args.rounds)} rounds (ueb and torch alternating); ratio = torch / ueb (> 1: ueb faster)"
    )
    print("torch eval-mode heads in float32 (ratio) and float64 (ratio64); ueb Head::score (f64 on the host)")
    print("ueb f32: the same head with score_precision: f32 (f32 products), against torch float32")
    print("ueb ms: from a clean vector-register state; after product: right after a faer product (see heads_timing.rs)\n")
    hdr = (
        f"{'config':<18} {'head':<21} {'batch':>5} {'torch ms':>10} {'torch64 ms':>10} {'ueb ms':>10} {'ratio':>8}"
        f" {'ratio64':>8} {'after product':>13} {'ratio':>8} {'ueb f32 ms':>10} {'ratio':>8} {'max|du| B=128':>14}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        cfg = f"{r['config']} {r['classifier']}"
        diff = f"{r['max_abs_diff_b128']:.1e}" if r["batch"] == max(BATCHES) else ""
        if "ueb_f32_ms" in r:
            f32 = f"{r['ueb_f32_ms']:>10.4f} {r['ratio_f32']:>7.2f}x"
            if diff:
                diff += f" / {r['max_abs_diff_f32_b128']:.1e}"
        else:
            f32 = f"{'':>10} {'':>8}"
        print(
            f"{cfg:<18} {r['head']:<21} {r['batch']:>5} {r['torch_ms']:>10.4f} {r['torch64_ms']:>10.4f} {r['ueb_ms']:>10.4f} "
            f"{r['ratio']:>7.2f}x {r['ratio64']:>7.2f}x {r['ueb_ms_after_product']:>13.4f} {r['ratio_after_product']:>7.2f}x {f32} {diff:>14}"
        )
    if train_rows:
        print()
        hdr = f"{'training':<40} {'ueb device':<10} {'torch ms':>10} {'ueb ms':>10} {'ratio':>8}"
        print(hdr)
        print("-" * len(hdr))
        for r in train_rows:
            print(f"{r['config']:<40} {r['ueb_device']:<10} {r['torch_ms']:>10.1f} {r['ueb_ms']:>10.1f} {r['ratio']:>7.2f}x")
        r = train_rows[0]
        print(
            f"selection ROC-AUC of the kept epoch: torch {r['torch_result']['val_roc_auc']:.4f}, "
            + ", ".join(f"ueb {t['ueb_device']} {t['ueb_chosen']['val_roc_auc']:.4f}" for t in train_rows)
            + f"; epochs run: ueb {r['ueb_chosen']['epochs_run']}, torch {len(r['torch_result']['curve'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
