#!/usr/bin/env bash
# Scale benchmark: builds the server binary and the `scale` example in release mode, then
# runs the example with the given arguments (see server/examples/scale.rs), e.g.
#   scripts/bench-scale.sh --rows 1M
#   scripts/bench-scale.sh --rows 1M,5M,10M,20M --load-seconds 30
#   scripts/bench-scale.sh --rows 1M --months 24
# Respects CARGO_TARGET_DIR. The DuckDB comparison needs python3 with duckdb
# (pip install duckdb==1.4.4); --skip-duckdb runs without it.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$(pwd)/target}"
cargo build --release -p bedrock-attribution-server \
  --bin bedrock-attribution-server --example scale
exec "$target_dir/release/examples/scale" "$@"
