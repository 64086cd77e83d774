#!/usr/bin/env python3
"""Loading memory and extraction speed of ueb's decoders against PyTorch + transformers on CPU.

The model is a Qwen2.5-0.5B-sized Qwen2ForSequenceClassification with random weights (24
layers, d = 896, 14 heads / 2 key-value heads, FFN 4864, vocabulary 151 936, tied embeddings,
2 classes: 494 M parameters), saved once under ``--work`` in ``--dtype`` (bf16 by default, as
the released checkpoint) with the tiny byte-level BPE ``tokenizer.json`` of
``crates/backbones/tests/fixtures/qwen2`` (every text is cut to ``--seq`` tokens, so only the
sequence length matters for speed).

Measured, each in a fresh process:

  load        peak resident memory (``ru_maxrss`` of the child) of loading the model and
              extracting one short text: ``ueb extract`` (f32 weights, tensors streamed from the
              memory-mapped file) and transformers ``from_pretrained(dtype=float32)``.
  extraction  tokens/s over ``--n`` texts of ``--seq`` tokens in batches of ``--batch``: ueb's
              own "model pass ... tokens/s" line; for torch the median of ``--repeats`` passes
              of the whole ``AutoModelForSequenceClassification`` under
              ``torch.inference_mode()``, float32, on pre-tokenized inputs (one warm-up batch).

Usage (from the repository root, after building the binary)::

    cargo build -p ueb-cli --bin ueb            # or --release, then pass --ueb
    .venv/bin/python bench/decoder_vs_torch.py --ueb target/debug/ueb
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "crates/backbones/tests/fixtures/qwen2/tokenizer.json"

WORDS = (
    "the model reads a long document about machine learning and uncertainty estimation where every "
    "sentence adds more words so that the tokenizer must truncate the input"
).split()


def make_model(work: Path, dtype: str) -> Path:
    out = work / f"qwen2-0.5b-random-{dtype}"
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rope_parameters={"rope_theta": 1000000.0, "rope_type": "default"}, tie_word_embeddings=True,
        rms_norm_eps=1e-6, num_labels=2, pad_token_id=0,
    )
    model = Qwen2ForSequenceClassification(cfg).eval()
    model.to({"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[dtype])
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(TOKENIZER, out / "tokenizer.json")
    print(f"made {out} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters)", file=sys.stderr)
    return out


def texts(n: int) -> list[str]:
    return [" ".join(WORDS[(i + j * 3) % len(WORDS)] for j in range(200)) for i in range(n)]


def child_peak(cmd: list[str]) -> tuple[float, str]:
    """Runs cmd; returns its own peak RSS in MiB (``os.wait4`` gives the rusage of that child
    alone; ``RUSAGE_CHILDREN`` would be the largest of every child so far) and its stderr."""
    with tempfile.TemporaryFile(mode="w+") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{stderr}")
    return usage.ru_maxrss / 1024, stderr


TORCH_LOAD = """
import sys, torch
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast
m = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
tok = PreTrainedTokenizerFast(tokenizer_file=sys.argv[1] + "/tokenizer.json", pad_token="<pad>")
with torch.inference_mode():
    m(**tok(["a short text"], return_tensors="pt"))
"""

TORCH_SPEED = """
import json, statistics, sys, time, torch
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast
d, seq, batch, repeats, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
m = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32).eval()
tok = PreTrainedTokenizerFast(tokenizer_file=d + "/tokenizer.json", pad_token="<pad>")
lines = open(path).read().splitlines()
enc = [tok(lines[i:i + batch], truncation=True, max_length=seq, padding=True, return_tensors="pt")
       for i in range(0, len(lines), batch)]
tokens = sum(int(e["attention_mask"].sum()) for e in enc)
with torch.inference_mode():
    m(**enc[0])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for e in enc:
            m(**e)
        times.append(time.perf_counter() - t0)
print(json.dumps({"tokens_per_s": tokens / statistics.median(times), "threads": torch.get_num_threads()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ueb", default=str(ROOT / "target/debug/ueb"))
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "ueb-decoder-bench"))
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="flex")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = make_model(work, args.dtype)
    one = work / "one.txt"
    one.write_text("a short text\n")
    many = work / f"texts-{args.n}.txt"
    many.write_text("\n".join(texts(args.n)) + "\n")
    out = work / "out.safetensors"
    size = (model / "model.safetensors").stat().st_size / 2**20
    with open(model / "model.safetensors", "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    params = sum(
        math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__"
    )

    # Loads first, each in its own process: the children's high-water mark only grows.
    ueb_peak, _ = child_peak([args.ueb, "extract", "--model", str(model), "--input", str(one),
                              "--device", args.device, "--out", str(out)])
    torch_peak, _ = child_peak([sys.executable, "-c", TORCH_LOAD, str(model)])

    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        p = subprocess.run([args.ueb, "extract", "--model", str(model), "--input", str(many), "--max-length",
                            str(args.seq), "--batch-size", str(args.batch), "--device", args.device,
                            "--out", str(out)], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(p.stderr)
        m = re.search(r"([0-9.]+) tokens/s", p.stderr)
        runs.append(float(m.group(1)) if m else float("nan"))
    runs.sort()
    ueb_tps = runs[len(runs) // 2]
    t = subprocess.run([sys.executable, "-c", TORCH_SPEED, str(model), str(args.seq), str(args.batch),
                        str(args.repeats), str(many)], capture_output=True, text=True)
    if t.returncode != 0:
        sys.exit(t.stderr)
    torch_res = json.loads(t.stdout.strip().splitlines()[-1])
    print(json.dumps({
        "model": "Qwen2.5-0.5B-sized random Qwen2ForSequenceClassification", "file_dtype": args.dtype,
        "file_MiB": round(size), "parameters": params, "params_f32_MiB": round(params * 4 / 2**20),
        "peak_rss_MiB": {"ueb": round(ueb_peak), "torch": round(torch_peak)},
        "tokens_per_s": {"ueb": round(ueb_tps, 1), "torch": round(torch_res["tokens_per_s"], 1)},
        "ratio_ueb_over_torch": round(ueb_tps / torch_res["tokens_per_s"], 3),
        "torch_threads": torch_res["threads"], "cpus": os.cpu_count(),
        "n": args.n, "seq": args.seq, "batch": args.batch, "device": args.device, "ueb": args.ueb,
    }, indent=2))


if __name__ == "__main__":
    main()
