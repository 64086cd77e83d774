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

# The README's main command: a metric report on the shipped example.
example:
    cargo run --release -p ueb-cli -- eval --probs examples/eval/probs.npy --labels examples/eval/labels.npy --scores examples/eval/feature_distance.npy

# Regenerate the golden metric fixtures (needs crates/metrics/tests/golden/requirements.txt).
golden:
    python crates/metrics/tests/golden/generate.py
    python crates/cli/tests/fixtures/make_fixtures.py
