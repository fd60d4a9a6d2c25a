#!/usr/bin/env bash
# The scale benchmark (issue 10): tools/bench.sh [N] [INTERVAL_SECONDS] [MODES]
#   N          refs over 10 workspaces (default 1000)
#   INTERVAL   poll interval of running refs, seconds (default 30)
#   MODES      batched, per-run or both (default both)
# The service quota is SCALE_QUOTA calls/s (default 20), enforced by the simulator; the operator
# runs at 90% of it. Release build; prints one table per mode (tests/scale.rs has the details).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
n=${1:-1000}
interval=${2:-30}
modes=${3:-both}
tools/ensure-tools.sh >/dev/null
set -a; . "${SPARKJOBRUN_CACHE:-$HOME/.cache/sparkjobrun-operator}/tools.env"; set +a
# Thousands of watches and objects: more open files than the default soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SCALE_N=$n SCALE_INTERVAL_S=$interval SCALE_MODES=$modes SCALE_QUOTA=${SCALE_QUOTA:-20} \
    cargo test --release --test scale 2>&1 | grep -v '^\s*Compiling\|^\s*Finished\|^\s*Running'
