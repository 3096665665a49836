#!/usr/bin/env bash
# Benchmark: `kcert renew --certs all` on the five-node test fleet, with the stand-ins'
# reloads and etcd's real restarts, printing the wall time split into time spent waiting for
# restarts and health gates and kcert's own work (connect, discover, sign, back up, write).
#
# usage: bench/renew.sh [RUNS]        (default 3 runs; each renews every leaf again)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-3}
name="kcert-bench-renew-$$"
state="$repo/target/fleet/$name"
cleanup() { "$repo/docker/fleet" down "$name" >/dev/null 2>&1 || true; rm -rf "$state"; }
trap cleanup EXIT

cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
kcert="$repo/target/release/kcert"
"$repo/docker/fleet" up "$name" --state "$state" >/dev/null 2>&1
journal=$(mktemp -d)

printf '%-4s %10s %10s %10s\n' RUN WALL WAITING OWN
for i in $(seq 1 "$runs"); do
  "$kcert" renew -i "$state/inventory.yaml" --certs all --yes -o json --state-dir "$journal" > "$journal/out.json"
  python3 - "$i" "$journal/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
assert r["failure"] is None, r["failure"]
print("%-4s %9.2fs %9.2fs %9.2fs" % (sys.argv[1], r["wall_seconds"], r["wait_seconds"], r["own_seconds"]))
PY
done
rm -rf "$journal"
