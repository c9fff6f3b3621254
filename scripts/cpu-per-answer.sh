#!/usr/bin/env bash
# Server CPU per answer under load: runs the scale bench's questions and 64-caller load
# against a server already running (`scale --attach`) and divides the server process's
# CPU time (utime + stime from /proc) by the answers it gave.
#   scripts/cpu-per-answer.sh URL PID [scale args...]
# e.g. (server started on the 1M dataset with --listen 127.0.0.1:50999)
#   scripts/cpu-per-answer.sh http://127.0.0.1:50999 "$(pgrep -f 'listen 127.0.0.1:50999')" \
#     --rows 1M --data-dir /work/scale-final --load-seconds 15 --runs 3
# Needs the release `scale` example (scripts/bench-scale.sh builds it); respects
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
url=$1 pid=$2
shift 2
target_dir="${CARGO_TARGET_DIR:-$(pwd)/target}"
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(cpu)
out=$("$target_dir/release/examples/scale" --attach "$url" \
  --server-bin "$target_dir/release/bedrock-attribution-server" "$@" 2>&1)
after=$(cpu)
echo "$out" | tail -7
python3 - "$before" "$after" "$tick" "$(echo "$out" | tail -1)" "$@" <<'PY'
import re, sys
before, after, tick, line = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
m = re.search(r"x (\d+) s: ([0-9.]+) answers/s", line)
if not m:
    sys.exit(f"no load line in the output: {line!r}")
seconds, rate = float(m.group(1)), float(m.group(2))
cpu = (after - before) / tick
print(f"server cpu {cpu:.1f} s over ~{rate * seconds:.0f} load answers: "
      f"~{cpu / (rate * seconds) * 1000:.1f} ms per answer (the single questions before the load included)")
PY
