#!/usr/bin/env bash
# The local demo: a real etcd + kube-apiserver, the service simulator and the operator, with three
# SparkJobRunRef objects whose runs succeed, fail and keep running. Ctrl-C stops everything.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
work=${DEMO_DIR:-$(mktemp -d /tmp/sparkjobrun-demo.XXXXXX)}
mkdir -p "$work"
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

pids=()
cleanup() {
    trap - EXIT INT TERM
    say "stopping (operator, simulator, control plane)"
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    say "stopped; logs are in $work"
}
trap cleanup EXIT INT TERM

# Reads KEY from a KEY=VALUE / "WORD value" line of a file once it appears.
await_line() {
    local file=$1 pattern=$2 what=$3
    for _ in $(seq 1 600); do
        if grep -q "$pattern" "$file" 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "demo: $what did not start; see $file" >&2
    exit 1
}

say "building what is missing (first run: kube-apiserver from source, see README)"
tools/ensure-tools.sh --no-helm >/dev/null
set -a; . "${SPARKJOBRUN_CACHE:-$HOME/.cache/sparkjobrun-operator}/tools.env"; set +a
cargo build --quiet --bins
bin=$repo/target/debug

say "starting etcd + kube-apiserver"
"$bin/sparkjobrun-devenv" up --work-dir "$work/control-plane" >"$work/devenv.out" 2>"$work/devenv.log" &
pids+=($!)
await_line "$work/devenv.out" '^READY' "the control plane"
KUBECONFIG=$(sed -n 's/^KUBECONFIG=//p' "$work/devenv.out")
export KUBECONFIG
kubectl() { "$KUBECTL" "$@"; }

say "starting the EMR Serverless Spark simulator"
"$bin/sparkjobrun-operator" simulator --config docs/demo/simulator.yaml >"$work/simulator.out" 2>"$work/simulator.log" &
pids+=($!)
await_line "$work/simulator.out" '^LISTENING' "the simulator"
endpoint=$(sed -n 's/^LISTENING //p' "$work/simulator.out")

say "installing the CRD and the example objects"
kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=30s crd/sparkjobruns.emrspark.io >/dev/null
kubectl create namespace data >/dev/null
kubectl apply -f docs/demo/sparkjobruns.yaml

say "starting the operator against $endpoint"
ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tDemoAccessKey0001 \
ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret-for-the-local-simulator-only \
    "$bin/sparkjobrun-operator" run --endpoint "$endpoint" --default-region cn-hangzhou \
    --poll-queued 2s --poll-running 3s >"$work/operator.log" 2>&1 &
pids+=($!)

say "kubectl get sparkjobruns -n data (every 5 s for a minute)"
for _ in $(seq 1 12); do
    sleep 5
    date +%T
    kubectl get sparkjobruns -n data
    echo
done

cat <<INFO
The demo keeps running. In another terminal:

  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$KUBECTL
  kubectl get sparkjobruns -A -o wide
  kubectl describe sparkjobrun -n data broken-etl
  kubectl wait --for=condition=Finished -n data sjr/nightly-aggregation
  kubectl get events -n data

Logs: $work/operator.log, $work/simulator.log, $work/control-plane/
Press Ctrl-C here to stop everything.
INFO
while true; do sleep 3600; done
