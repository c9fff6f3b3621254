#!/usr/bin/env bash
# Every check, as CI runs it: formatting, the docs' links, lints with warnings denied, and all tests
# (unit, integration against the real server, and the DuckDB cross-check, which needs
# the `duckdb` Python package; it is installed here when missing); then the deployment
# files (scripts/check-k8s.sh) and the clients beyond Rust against the demo server
# (scripts/check-clients.sh), with pinned Python tools in a virtual environment of their
# own (scripts/python-tools.sh). Every step counts; the last line sums them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import duckdb" 2>/dev/null; then
    echo "installing the duckdb Python package for the cross-check tests" >&2
    python3 -m pip install --quiet --disable-pip-version-check "duckdb==1.4.4"
fi

cargo fmt --all --check
# Every relative link of README.md and docs/*.md resolves (files and heading anchors).
python3 scripts/check-links.py
cargo clippy --workspace --all-targets --locked -- -D warnings
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
# A test binary that fails to build (or a crash) prints no failed count: count it as one.
if [ "$status" -ne 0 ] && ! grep -Eq "^test result: FAILED" "$log"; then
    echo "cargo test exited $status before reporting a failed test"
    echo "test result: FAILED. 0 passed; 1 failed; (cargo test did not finish)" | tee -a "$log"
fi
# The client checks run the debug server and CLI; cargo test has just built them, so this
# is a no-op unless a test target failed to build.
cargo build -p bedrock-attribution-server -p bedrock-attribution-client --locked || status=$?
# A check script, bounded in time; one that fails without a count of its failures (a
# timeout, a crash) counts one.
check() {
    local name="$1" seconds="$2" script="$3" code=0
    timeout "$seconds" "$script" 2>&1 | tee -a "$log" || code=$?
    if [ "$code" -ne 0 ]; then
        status="$code"
        if ! tail -n 1 "$log" | grep -Eq "^$name checks: [0-9]+ passed, [1-9][0-9]* failed$"; then
            echo "$script exited $code"
            echo "$name checks: 0 passed, 1 failed" | tee -a "$log"
        fi
    fi
}
# A first run also creates the tools' environment (~30 s).
check k8s 300 scripts/check-k8s.sh
check client 420 scripts/check-clients.sh
# cargo ends on the (empty) doc-test runs; close with the count over every test binary
# and every check script ("k8s checks: N passed, M failed", "client checks: ...").
awk '
    /^test result:/ { cargo_p += $4; cargo_f += $6 }
    /^(k8s|client) checks: [0-9]+ passed, [0-9]+ failed$/ { checks_p += $3; checks_f += $5 }
    END {
        printf "cargo tests: %d passed, %d failed; checks: %d passed, %d failed\n", cargo_p, cargo_f, checks_p, checks_f
        printf "tests: %d passed, %d failed\n", cargo_p + checks_p, cargo_f + checks_f
    }' "$log"
exit "$status"
