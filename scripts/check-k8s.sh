#!/usr/bin/env bash
# Checks the deployment files offline, without a cluster or a Docker daemon:
# - renders k8s/overlays/{dev,prod} with `kubectl kustomize`;
# - validates every rendered object against the Kubernetes OpenAPI schemas of the oldest
#   and the newest version checked, in strict mode (an unknown or misspelled field fails),
#   with the kubernetes-validate package;
# - checks that every BEDROCK_ATTRIBUTION_* setting of a ConfigMap is one that
#   server/src/config.rs reads;
# - parses k8s/iam-policy.json, and lints the Dockerfile with hadolint.
# Tools come pinned from scripts/python-tools.sh; kubectl from the machine (Debian's
# package). Ends with "k8s checks: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."

# preStop `sleep` (the image has no shell) needs 1.30; the newest the package knows.
versions=(1.30.0 1.37.0)
overlays=(dev prod)

bin="$(scripts/python-tools.sh)"
if ! command -v kubectl >/dev/null && command -v apt-get >/dev/null; then
    echo "installing kubectl (package kubectl)" >&2
    apt-get install -y -qq kubectl >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq kubectl >/dev/null 2>&1; } || true
fi
command -v kubectl >/dev/null || { echo "kubectl is missing (package kubectl)" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAILED: $*" >&2; }

for overlay in "${overlays[@]}"; do
    rendered="$out/$overlay.yaml"
    if ! kubectl kustomize "k8s/overlays/$overlay" >"$rendered"; then
        fail "kubectl kustomize k8s/overlays/$overlay"
        continue
    fi
    objects="$(grep -c '^kind:' "$rendered" || true)"
    if [ "$objects" -lt 8 ]; then
        fail "k8s/overlays/$overlay renders $objects objects, expected 8 or more"
    fi
    for version in "${versions[@]}"; do
        log="$out/$overlay-$version.log"
        status=0
        "$bin/kubernetes-validate" --strict --kubernetes-version "$version" "$rendered" >"$log" 2>&1 || status=$?
        ok="$(grep -c ' passed for resource ' "$log" || true)"
        bad="$(grep -Evc ' passed for resource |^$' "$log" || true)"
        passed=$((passed + ok))
        if [ "$status" -ne 0 ] || [ "$bad" -ne 0 ] || [ "$ok" -ne "$objects" ]; then
            failed=$((failed + (bad > 0 ? bad : 1)))
            echo "FAILED: k8s/overlays/$overlay against Kubernetes $version:" >&2
            grep -v ' passed for resource ' "$log" >&2 || true
        fi
        echo "k8s/overlays/$overlay: $ok of $objects objects valid (strict) against Kubernetes $version"
    done
    # Settings the server does not read would be silently ignored.
    while read -r key; do
        if grep -q "env = \"$key\"" server/src/config.rs; then
            pass
        else
            fail "k8s/overlays/$overlay sets $key, which server/src/config.rs does not read"
        fi
    done < <(grep -oE '^  BEDROCK_ATTRIBUTION_[A-Z_]+' "$rendered" | sort -u)
done

if python3 -m json.tool k8s/iam-policy.json >/dev/null; then pass; else fail "k8s/iam-policy.json is not JSON"; fi
if "$bin/hadolint" --no-color Dockerfile; then pass; else fail "hadolint Dockerfile"; fi

echo "k8s checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
