#!/usr/bin/env bash
# The clients beyond Rust, against the real server: starts the demo server (the debug
# binary, on 127.0.0.1, data in a temporary folder) once, then runs
# server/tests/clients with pytest: grpcurl 1.8.6 through reflection (list, describe,
# health, every RPC with a JSON body, invalid requests, the docs' grpcurl transcripts)
# and a Python client generated from proto/ with grpcio-tools, whose answers to every RPC
# must equal the Rust CLI's to the last decimal.
#
# Needs the debug binaries: cargo build -p bedrock-attribution-server -p bedrock-attribution-client
# (scripts/test.sh builds them). Tools come pinned from scripts/python-tools.sh.
# Ends with "client checks: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."

bin="$(scripts/python-tools.sh)"
target="${CARGO_TARGET_DIR:-$PWD/target}"
export BEDROCK_ATTRIBUTION_SERVER_BIN="${BEDROCK_ATTRIBUTION_SERVER_BIN:-$target/debug/bedrock-attribution-server}"
export BEDROCK_ATTRIBUTION_CLI_BIN="${BEDROCK_ATTRIBUTION_CLI_BIN:-$target/debug/bedrock-attribution}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
# -p no:cacheprovider: no .pytest_cache in the tree.
"$bin/python" -m pytest -p no:cacheprovider -q -rfE --color=no server/tests/clients "$@" \
    2>&1 | tee "$log" || status=$?
summary="$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$log" | tail -1 || true)"
count() { echo "$summary" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' || echo 0; }
passed="$(count passed)"
failed=$(( $(count failed) + $(count error) ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
fi
echo "client checks: $passed passed, $failed failed"
exit "$status"
