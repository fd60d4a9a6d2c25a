#!/usr/bin/env bash
# Builds the operator's OCI image without a container engine:
#   1. a statically linked binary (the host's gnu target with a static C runtime; no target to
#      download), built with cargo;
#   2. one filesystem layer holding only that binary, the CA roots and a non-root user (65532);
#   3. an OCI image assembled by crane (built from Go modules by tools/ensure-tools.sh): the layer
#      is appended to an empty OCI base, entrypoint and user are set, and the result is pulled as
#      an OCI layout, all through crane's own in-memory registry on loopback.
# Writes target/image/sparkjobrun-operator-VERSION.oci.tar (an OCI image layout in a tar) and
# prints its path. tests/image.rs unpacks it and runs the entrypoint in a chroot.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
log() { printf 'image.sh: %s\n' "$*" >&2; }

tools/ensure-tools.sh >/dev/null
set -a; . "${SPARKJOBRUN_CACHE:-$HOME/.cache/sparkjobrun-operator}/tools.env"; set +a
version=$(awk -F'"' '/^version/ { print $2; exit }' Cargo.toml)
out=$repo/target/image
mkdir -p "$out"

log "building the static binary (release)"
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$repo/target/static" \
    cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu --bin sparkjobrun-operator
bin=$repo/target/static/x86_64-unknown-linux-gnu/release/sparkjobrun-operator
if readelf -d "$bin" | grep -q NEEDED; then
    log "$bin is dynamically linked"
    exit 1
fi

work=$(mktemp -d)
registry_pid=""
cleanup() {
    [[ -n $registry_pid ]] && kill "$registry_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

root=$work/rootfs
mkdir -p "$root/etc/ssl/certs" "$root/tmp"
install -m 0755 "$bin" "$root/sparkjobrun-operator"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
printf 'nonroot:x:65532:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
# Reproducible: fixed owner, mode bits as set above, mtime 0, sorted names.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$work/layer.tar" .

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$CRANE" registry serve --address "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
ref=127.0.0.1:$port/sparkjobrun-operator:$version
"$CRANE" append --oci-empty-base -f "$work/layer.tar" -t "$ref" >/dev/null
"$CRANE" mutate "$ref" -t "$ref" --set-platform linux/amd64 \
    --entrypoint /sparkjobrun-operator --cmd run --user 65532:65532 --workdir / \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label "org.opencontainers.image.title=sparkjobrun-operator" \
    --label "org.opencontainers.image.version=$version" >/dev/null
"$CRANE" pull --format oci "$ref" "$work/layout"
archive=$out/sparkjobrun-operator-$version.oci.tar
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/layout" -cf "$archive.tmp" .
mv -f "$archive.tmp" "$archive"
log "image digest $("$CRANE" digest "$ref")"
echo "$archive"
