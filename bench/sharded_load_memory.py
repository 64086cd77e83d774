#!/usr/bin/env python3
"""Peak memory of loading a sharded bf16 decoder checkpoint with random weights.

Writes a LLaMA-shaped `LlamaForSequenceClassification` checkpoint of random bf16 weights
(shape chosen by --shape; the tokenizer is the tiny LLaMA fixture's, whose ids all lie inside
the vocabulary), split into shards of --shard-mb with a `model.safetensors.index.json` as
transformers writes it, then runs `ueb extract` on two short texts under `/usr/bin/time -v`
and reports the peak resident memory against the weights' size on disk (bf16) and as the
model holds them after the load's cast (f32 by default; half with --precision bf16/f16 on a
GPU device, whose memory lavapipe keeps in the process). Needs numpy only; no torch, no
network.

    python bench/sharded_load_memory.py --ueb target/release/ueb --shape 1b --work /tmp/sharded
    python bench/sharded_load_memory.py --ueb target/debug/ueb --shape 7b --shard-mb 1024 \
        --device wgpu --precision f16
"""

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "crates/backbones/tests/fixtures/llama"

SHAPES = {
    # hidden, layers, heads, kv heads, intermediate, vocab
    "tiny": (256, 2, 4, 2, 688, 32000),
    "1b": (2048, 22, 32, 4, 5632, 32000),  # TinyLlama-1.1B
    "7b": (4096, 32, 32, 32, 11008, 32000),  # Llama-2-7b
}


def tensors(shape):
    hidden, layers, heads, kv, inter, vocab = shape
    head_dim = hidden // heads
    yield "model.embed_tokens.weight", (vocab, hidden)
    for i in range(layers):
        p = f"model.layers.{i}."
        yield p + "self_attn.q_proj.weight", (hidden, hidden)
        yield p + "self_attn.k_proj.weight", (kv * head_dim, hidden)
        yield p + "self_attn.v_proj.weight", (kv * head_dim, hidden)
        yield p + "self_attn.o_proj.weight", (hidden, hidden)
        yield p + "mlp.gate_proj.weight", (inter, hidden)
        yield p + "mlp.up_proj.weight", (inter, hidden)
        yield p + "mlp.down_proj.weight", (hidden, inter)
        yield p + "input_layernorm.weight", (hidden,)
        yield p + "post_attention_layernorm.weight", (hidden,)
    yield "model.norm.weight", (hidden,)
    yield "score.weight", (2, hidden)


def bf16(rng, shape, norm):
    if norm:
        f = np.ones(shape, dtype=np.float32)
    else:
        f = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
    return (f.view(np.uint32) >> 16).astype(np.uint16)  # truncation to bf16


def write_safetensors(path, entries):
    """entries: list of (name, shape, uint16 array) in bf16."""
    header, offset = {}, 0
    for name, shape, arr in entries:
        n = arr.nbytes
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for _, _, arr in entries:
            f.write(arr.tobytes())


def make(work: Path, shape_name: str, shard_mb: int) -> int:
    hidden, layers, heads, kv, inter, vocab = SHAPES[shape_name]
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    config = json.loads((FIXTURE / "config.json").read_text())
    config.update(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        vocab_size=vocab,
        head_dim=hidden // heads,
        dtype="bfloat16",
        id2label={"0": "a", "1": "b"},
        label2id={"a": 0, "b": 1},
    )
    (work / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copy(FIXTURE / "tokenizer.json", work / "tokenizer.json")
    rng = np.random.default_rng(0)
    limit = shard_mb << 20
    shards, current, size, weight_map, total = [], [], 0, {}, 0
    for name, shp in tensors(SHAPES[shape_name]):
        arr = bf16(rng, shp, name.endswith("norm.weight"))
        if current and size + arr.nbytes > limit:
            shards.append(current)
            current, size = [], 0
        current.append((name, shp, arr))
        size += arr.nbytes
        total += arr.nbytes
    shards.append(current)
    n = len(shards)
    for i, entries in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        write_safetensors(work / file, entries)
        for name, _, _ in entries:
            weight_map[name] = file
        del entries[:]
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (work / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ueb", default="target/release/ueb")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1b")
    ap.add_argument("--shard-mb", type=int, default=1024)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ueb-sharded-bf16"))
    ap.add_argument("--device", default="flex")
    ap.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32")
    ap.add_argument("--reuse", action="store_true", help="keep the checkpoint already in --work")
    args = ap.parse_args()
    if args.reuse and (args.work / "model.safetensors.index.json").is_file():
        index = json.loads((args.work / "model.safetensors.index.json").read_text())
        total = index["metadata"]["total_size"]
    else:
        total = make(args.work, args.shape, args.shard_mb)
    texts = args.work / "texts.txt"
    texts.write_text("a short text\nanother one\n")
    cmd = ["/usr/bin/time", "-v", args.ueb, "extract", "--model", str(args.work), "--input", str(texts),
           "--device", args.device, "--precision", args.precision, "--out", str(args.work / "out.safetensors")]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(run.stderr)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", run.stderr).group(1)
    shards = len(list(args.work.glob("model-*.safetensors")))
    gib = 1 << 30
    # The model's weights as loaded: f32 doubles the bf16 file; bf16/f16 keep its size (unless
    # the device refused the precision: ueb then says so and computes in f32).
    half = args.precision != "f32" and "computes in f32" not in run.stderr
    loaded = total if half else 2 * total
    print(json.dumps({
        "shape": args.shape,
        "shards": shards,
        "device": args.device,
        "precision": args.precision if half else "f32",
        "weights_bf16_gib": round(total / gib, 3),
        "weights_loaded_gib": round(loaded / gib, 3),
        "peak_rss_gib": round(rss_kb * 1024 / gib, 3),
        "peak_over_loaded": round(rss_kb * 1024 / loaded, 3),
        "wall": wall,
    }, indent=2))


if __name__ == "__main__":
    main()
