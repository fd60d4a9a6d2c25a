#!/usr/bin/env bash
# The project's one test command: installs what is missing, builds the control-plane binaries
# (cached outside the repository), then runs formatting and lint checks and every unit,
# integration and end-to-end test against a real etcd + kube-apiserver.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

step() { printf '\n==> %s\n' "$*" >&2; }
started=$(date +%s)

step "toolchain components"
if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
for tool in cargo go; do
    command -v "$tool" >/dev/null 2>&1 || { echo "tools/test.sh: $tool is not installed" >&2; exit 1; }
done

step "Debian packages (tools/apt-packages.txt)"
if [ -s tools/apt-packages.txt ]; then
    missing=()
    while read -r pkg; do
        pkg=${pkg%%#*}; pkg=${pkg// /}
        [ -n "$pkg" ] || continue
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done < tools/apt-packages.txt
    if [ ${#missing[@]} -gt 0 ]; then
        sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

step "control-plane binaries (kube-apiserver, kubectl, etcd, helm)"
tools/ensure-tools.sh >/dev/null
set -a; . "${SPARKJOBRUN_CACHE:-$HOME/.cache/sparkjobrun-operator}/tools.env"; set +a

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "OCI image (tools/image.sh: static binary, one layer, crane), for tests/image.rs"
tools/image.sh >/dev/null

step "cargo test (unit, integration, end-to-end)"
# The end-to-end suite refuses to skip: missing binaries or a control plane that does not
# start is a failure.
cargo test --all-targets --no-fail-fast 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}

step "summary"
# libtest's "test result:" lines plus the end-to-end harness's own "N passed, N failed" line.
read -r passed failed < <(awk '
    /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
    /^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3 }
    END { print p + 0, f + 0 }' target/test-output.log)
e2e=$(grep -cE '^e2e .* \.\.\. ok' target/test-output.log || true)
e2e_planned=$(sed -nE 's/^running ([0-9]+) end-to-end tests$/\1/p' target/test-output.log | head -n1)
echo "end-to-end tests passed: $e2e of ${e2e_planned:-?}; wall time $(( $(date +%s) - started ))s" >&2
if [ "$e2e" -eq 0 ] || [ "$e2e" != "${e2e_planned:-}" ]; then
    echo "tools/test.sh: not every end-to-end test ran and passed" >&2
    status=1
fi
echo "${passed:-0} passed, ${failed:-0} failed"
exit "$status"
