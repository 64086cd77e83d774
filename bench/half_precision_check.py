#!/usr/bin/env python3
"""`ueb extract` of a LLaMA-shaped decoder classifier with random bf16 weights in f32, bf16 and
f16 on each device: model-pass seconds, and the deviation of the half passes from the same
device's f32 pass (the largest |difference| as a fraction of the largest |f32| value, features
and logits). A precision the device cannot compute in is reported as refused, with ueb's
message. Needs numpy only; the checkpoint is written by bench/sharded_load_memory.py's
generator (no torch, no network).

    python bench/half_precision_check.py --ueb target/release/ueb --devices wgpu,cuda --shape 1b
"""

import argparse
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sharded_load_memory import make  # noqa: E402


def read_tensor(path: Path, key: str) -> np.ndarray:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    info = header[key]
    start, end = info["data_offsets"]
    data = np.frombuffer(raw[8 + n + start : 8 + n + end], dtype=np.float32)
    return data.reshape(info["shape"]).astype(np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ueb", default="target/release/ueb")
    ap.add_argument("--devices", default="wgpu")
    ap.add_argument("--shape", default="1b")
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ueb-half-precision"))
    ap.add_argument("--timeout", type=int, default=120, help="seconds per extraction")
    args = ap.parse_args()
    make(args.work, args.shape, 1024)
    words = "the a model of uncertainty estimates reads short and longer texts on every device".split()
    rng = np.random.default_rng(0)
    texts = args.work / "texts.txt"
    texts.write_text("\n".join(" ".join(rng.choice(words, size=rng.integers(8, 64))) for _ in range(args.texts)) + "\n")
    results = []
    for device in [d for d in args.devices.split(",") if d]:
        f32 = None
        for precision in ["f32", "bf16", "f16"]:
            out = args.work / f"{device}-{precision}.safetensors"
            cmd = [args.ueb, "extract", "--model", str(args.work), "--input", str(texts), "--device", device,
                   "--precision", precision, "--batch-size", "32", "--out", str(out)]
            row = {"device": device, "precision": precision}
            try:
                run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                row["status"] = f"timed out after {args.timeout} s"
                results.append(row)
                continue
            if run.returncode != 0:
                last = run.stderr.strip().splitlines()[-1:] or [""]
                row["status"] = "refused" if "cannot compute in" in run.stderr else "failed"
                row["message"] = last[0]
                results.append(row)
                continue
            # A CPU device keeps f32 and says so: the row is then an f32 pass, not a half one.
            row["status"] = "ran in f32 (CPU device)" if "computes in f32" in run.stderr else "ok"
            m = re.search(r"model pass ([0-9.]+) s, ([0-9]+) tokens/s", run.stderr)
            if m:
                row["model_pass_seconds"] = float(m.group(1))
                row["tokens_per_second"] = int(m.group(2))
            got = {k: read_tensor(out, k) for k in ("features", "logits")}
            if precision == "f32":
                f32 = got
            elif f32 is not None:
                for k in ("features", "logits"):
                    scale = np.abs(f32[k]).max()
                    row[f"{k}_deviation"] = float(np.abs(got[k] - f32[k]).max() / scale) if scale > 0 else None
            results.append(row)
    print(json.dumps({"shape": args.shape, "texts": args.texts, "results": results}, indent=2))


if __name__ == "__main__":
    main()
