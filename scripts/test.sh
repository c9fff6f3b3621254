#!/usr/bin/env bash
# Every check, as CI runs it: formatting, lints with warnings denied, and all tests
# (unit, integration against the real server, and the DuckDB cross-check, which needs
# the `duckdb` Python package; it is installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import duckdb" 2>/dev/null; then
    echo "installing the duckdb Python package for the cross-check tests" >&2
    python3 -m pip install --quiet --disable-pip-version-check "duckdb==1.4.4"
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
# cargo ends on the (empty) doc-test runs; close with the count over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
