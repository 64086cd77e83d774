#!/usr/bin/env bash
# The GPU check: one command on a GPU machine, no network and no Rust toolchain needed there.
#
#   bench/gpu_check.sh [UEB_BINARY] [OUT_DIR]
#
# UEB_BINARY is a release `ueb` built beforehand with the GPU features this machine should try
# (`cargo build --release -p ueb-cli --features wgpu`, plus `cuda` where it could be built:
# docs/backbones.md, "GPU backends"); default target/release/ueb. OUT_DIR (default
# gpu-check) receives gpu-check.json, gpu-check.md and every run's results directory.
#
# It reports which GPU backends the machine offers (a Vulkan ICD, the CUDA driver) and which
# the binary was built with; runs the quickstart on each device and compares its summary
# (ROC-AUC × 100 and ECE × 100 per head, mean over 3 seeds) with the same run on flex; times a
# RoBERTa-base-sized encoder (768 wide, 12 layers, trained from scratch on the synthetic task:
# one fine-tuning epoch and the feature export) and an ALIEN fit on it, per device; and, when
# a CUDA PyTorch is installed, the same encoder's forward and training step in PyTorch
# (bench/encoder_vs_torch.py, which builds that model with torch itself). Sized to finish
# within 8 minutes on one H100. The quickstart and the base-sized run are f32 (they train, and
# training stays f32); a TinyLlama-shaped decoder is extracted in f32, bf16 and f16 per device
# (bench/half_precision_check.py), with each half pass's deviation from f32.
set -uo pipefail

UEB="${1:-target/release/ueb}"
OUT="${2:-gpu-check}"
TOL_AUC="${UEB_GPU_CHECK_TOL_AUC:-2.0}"   # ROC-AUC × 100, GPU vs flex, per head
TOL_ECE="${UEB_GPU_CHECK_TOL_ECE:-2.0}"   # ECE × 100
mkdir -p "$OUT"
JSON="$OUT/gpu-check.json"
MD="$OUT/gpu-check.md"

if [ ! -x "$UEB" ]; then
    echo "gpu_check: no ueb binary at $UEB (build one with cargo build --release -p ueb-cli --features wgpu)" >&2
    exit 2
fi

# --- What the machine and the binary offer ------------------------------------------------
gpu_name="none"
if command -v nvidia-smi >/dev/null 2>&1; then
    gpu_name="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
fi
vulkan_icds="$(ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | grep -E '\.json$' | tr '\n' ' ')"
cuda_driver="no"
if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so'; then cuda_driver="yes"; fi

# A device is tried when the binary accepts its name (a plan names it) and it opens.
devices=("flex")
for d in wgpu cuda; do
    if "$UEB" run --device "$d" --dry-run >/dev/null 2>&1; then devices+=("$d"); fi
done
echo "gpu_check: GPU: $gpu_name; Vulkan ICDs: ${vulkan_icds:-none}; CUDA driver: $cuda_driver; devices built: ${devices[*]}" >&2

# --- The quickstart on every device ---------------------------------------------------------
declare -A qs_seconds qs_status
summary_of() { # the `| head | …: ROC-AUC×100 | ECE×100 |` table ueb run prints
    grep -E '^\| [a-z_]+ \|' "$1" | grep -v '^| head |' | sed -E 's/ ± [0-9.]+//g' |
        awk -F'|' '{gsub(/ /,"",$2); gsub(/ /,"",$3); gsub(/ /,"",$4); print $2, $3, $4}'
}
for d in "${devices[@]}"; do
    t0=$(date +%s.%N)
    timeout 240 "$UEB" run --device "$d" --out "$OUT/quickstart-$d" >"$OUT/quickstart-$d.log" 2>"$OUT/quickstart-$d.err"
    case $? in
        0) qs_status[$d]="ok" ;;
        124) qs_status[$d]="timed out after 240 s" ;;
        *) qs_status[$d]="failed (see quickstart-$d.err)" ;;
    esac
    qs_seconds[$d]=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
    summary_of "$OUT/quickstart-$d.log" >"$OUT/quickstart-$d.summary"
done

# Per head: |device − flex| of ROC-AUC × 100 and ECE × 100.
compare_json="["
first=1
for d in "${devices[@]}"; do
    [ "$d" = flex ] && continue
    [ "${qs_status[$d]}" = ok ] || continue
    while read -r head auc ece; do
        read -r _ fauc fece < <(grep "^$head " "$OUT/quickstart-flex.summary")
        ok=$(awk -v a="$auc" -v fa="$fauc" -v e="$ece" -v fe="$fece" -v ta="$TOL_AUC" -v te="$TOL_ECE" \
            'function abs(x) { return x < 0 ? -x : x } BEGIN { print (abs(a - fa) <= ta && abs(e - fe) <= te) ? 1 : 0 }')
        [ $first = 1 ] || compare_json+=","
        first=0
        compare_json+="{\"device\":\"$d\",\"head\":\"$head\",\"roc_auc_x100\":$auc,\"flex_roc_auc_x100\":$fauc,\"ece_x100\":$ece,\"flex_ece_x100\":$fece,\"within_tolerance\":$([ "$ok" = 1 ] && echo true || echo false)}"
    done <"$OUT/quickstart-$d.summary"
done
compare_json+="]"

# --- A RoBERTa-base-sized encoder: fine-tuning epoch, export, ALIEN fit ---------------------
cat >"$OUT/base-sized.yaml" <<'EOF'
name: base-sized
seeds: [0]
device: flex
backbones:
  - name: base-sized
    model: scratch
    scratch: {hidden_size: 768, layers: 12, heads: 12, intermediate_size: 3072, max_positions: 128, max_vocab: 8000}
    finetune: {mode: full, epochs: 1, lr: 5.0e-5, batch_size: 32, max_length: 128}
datasets:
  - name: synthetic
    synthetic: {train: 2048, val: 512, test: 512, min_len: 60, max_len: 120}
heads:
  - sr
  - alien: {grid: {lr: [1.0e-3], alpha: [0.1], beta: [0.01]}, max_epochs: 10}
metrics: {bins: 15, bootstrap: 0}
EOF
declare -A base_cache base_alien base_status
for d in "${devices[@]}"; do
    [ "$d" = flex ] && continue   # minutes on a CPU: not what this check measures
    timeout 300 "$UEB" run "$OUT/base-sized.yaml" --device "$d" --out "$OUT/base-$d" >"$OUT/base-$d.log" 2>"$OUT/base-$d.err"
    case $? in
        0) base_status[$d]="ok" ;;
        124) base_status[$d]="timed out after 300 s" ;;
        *) base_status[$d]="failed (see base-$d.err)" ;;
    esac
    stage_seconds() { grep -o '"seconds": *[0-9.e+-]*' "$1" 2>/dev/null | head -1 | sed 's/.*: *//'; }
    base_cache[$d]=$(stage_seconds "$OUT/base-$d/caches/base-sized/synthetic/seed-0/stage.json")
    base_alien[$d]=$(stage_seconds "$OUT/base-$d/cells/base-sized/synthetic/seed-0/alien/stage.json")
done

# --- Half precision: a TinyLlama-shaped decoder (random bf16 weights) in f32, bf16 and f16 ---
# Model-pass seconds per device and precision, and each half pass's deviation from the same
# device's f32 pass (bench/half_precision_check.py; needs numpy, writes 1.9 GB).
half_json="null"
if [ -n "$(printf '%s\n' "${devices[@]}" | grep -v '^flex$')" ] && python3 -c 'import numpy' 2>/dev/null; then
    gpus=$(printf '%s\n' "${devices[@]}" | grep -v '^flex$' | paste -sd, -)
    if timeout 200 python3 bench/half_precision_check.py --ueb "$UEB" --devices "$gpus" --shape 1b \
        --texts 256 --timeout 60 --work "$OUT/half-precision-model" >"$OUT/half-precision.json" 2>"$OUT/half-precision.err"; then
        half_json="$(cat "$OUT/half-precision.json")"
    else
        half_json="\"failed: see half-precision.err\""
    fi
    rm -rf "$OUT/half-precision-model"
fi

# --- PyTorch, when torch and transformers are installed -------------------------------------
# bench/encoder_vs_torch.py builds its RoBERTa-base-sized model with torch itself (no
# download) and times `ueb extract` on the GPU devices beside PyTorch.
torch_json="null"
gpu_devices=$(printf '%s\n' "${devices[@]}" | grep -v '^flex$' | paste -sd, -)
if [ -n "$gpu_devices" ] && python3 -c 'import torch, transformers' 2>/dev/null; then
    if timeout 150 python3 bench/encoder_vs_torch.py --models roberta --devices "$gpu_devices" --n 512 --repeats 2 \
        >"$OUT/torch.log" 2>&1; then
        torch_json="\"see torch.log\""
    else
        torch_json="\"failed: see torch.log\""
    fi
fi

# --- Report -----------------------------------------------------------------------------------
{
    echo "{"
    echo "  \"gpu\": \"$gpu_name\","
    echo "  \"vulkan_icds\": \"${vulkan_icds}\","
    echo "  \"cuda_driver\": \"$cuda_driver\","
    echo "  \"devices\": [$(printf '"%s",' "${devices[@]}" | sed 's/,$//')],"
    echo "  \"tolerance\": {\"roc_auc_x100\": $TOL_AUC, \"ece_x100\": $TOL_ECE},"
    echo "  \"quickstart\": {"
    sep=""
    for d in "${devices[@]}"; do
        printf '%s    "%s": {"status": "%s", "seconds": %s}' "$sep" "$d" "${qs_status[$d]}" "${qs_seconds[$d]}"
        sep=$',\n'
    done
    echo ""
    echo "  },"
    echo "  \"quickstart_vs_flex\": $compare_json,"
    echo "  \"base_sized\": {"
    sep=""
    for d in "${devices[@]}"; do
        [ "$d" = flex ] && continue
        printf '%s    "%s": {"status": "%s", "finetune_epoch_and_export_seconds": %s, "alien_fit_seconds": %s}' \
            "$sep" "$d" "${base_status[$d]}" "${base_cache[$d]:-null}" "${base_alien[$d]:-null}"
        sep=$',\n'
    done
    echo ""
    echo "  },"
    echo "  \"pytorch\": $torch_json,"
    echo "  \"half_precision\": $half_json"
    echo "}"
} >"$JSON"

{
    echo "# GPU check"
    echo
    echo "GPU: $gpu_name. Vulkan ICDs: ${vulkan_icds:-none}. CUDA driver: $cuda_driver. Devices built: ${devices[*]}."
    echo
    echo "| device | quickstart | quickstart s | base-sized fine-tuning epoch + export s | ALIEN fit s |"
    echo "|---|---|---|---|---|"
    for d in "${devices[@]}"; do
        echo "| $d | ${qs_status[$d]} | ${qs_seconds[$d]} | ${base_cache[$d]:-–} | ${base_alien[$d]:-–} |"
    done
    echo
    echo "Quickstart per head against flex (ROC-AUC × 100, ECE × 100; tolerance $TOL_AUC and $TOL_ECE):"
    echo
    echo "| device | head | ROC-AUC | flex | ECE | flex |"
    echo "|---|---|---|---|---|---|"
    for d in "${devices[@]}"; do
        [ "$d" = flex ] && continue
        [ -f "$OUT/quickstart-$d.summary" ] || continue
        while read -r head auc ece; do
            read -r _ fauc fece < <(grep "^$head " "$OUT/quickstart-flex.summary")
            echo "| $d | $head | $auc | $fauc | $ece | $fece |"
        done <"$OUT/quickstart-$d.summary"
    done
    if [ "${half_json:0:1}" = "{" ]; then
        echo
        echo "Half precision (TinyLlama-shaped decoder, random bf16 weights, 256 texts); deviation: the"
        echo "largest |difference| from the same device's f32 pass over the largest |f32| value:"
        echo
        python3 - "$OUT/half-precision.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("| device | precision | status | model pass s | tokens/s | features deviation | logits deviation |")
print("|---|---|---|---|---|---|---|")
for x in r["results"]:
    g = lambda k, f="{}": f.format(x[k]) if x.get(k) is not None else "–"
    status = x["status"] + (f" ({x['message']})" if "message" in x else "")
    print(f"| {x['device']} | {x['precision']} | {status} | {g('model_pass_seconds')} | {g('tokens_per_second')} "
          f"| {g('features_deviation', '{:.2e}')} | {g('logits_deviation', '{:.2e}')} |")
PY
    fi
} >"$MD"

cat "$MD"
echo "gpu_check: wrote $JSON and $MD" >&2
# Failing comparisons make the exit status 1.
if echo "$compare_json" | grep -q '"within_tolerance":false'; then exit 1; fi
for d in "${devices[@]}"; do [ "${qs_status[$d]}" = ok ] || exit 1; done
exit 0
