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
  t0=$(date +%s.%N)
  "$kcert" renew -i "$state/inventory.yaml" --certs all --yes -o json --state-dir "$journal" > "$journal/out.json"
  t1=$(date +%s.%N)
  # Wall time is the whole command (connect, discover, sign, plan, apply); waiting is what the
  # run spent in restarts and gates; the rest is kcert's own work.
  python3 - "$i" "$journal/out.json" "$t0" "$t1" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
assert r["failure"] is None, r["failure"]
wall = float(sys.argv[4]) - float(sys.argv[3])
print("%-4s %9.2fs %9.2fs %9.2fs" % (sys.argv[1], wall, r["wait_seconds"], wall - r["wait_seconds"]))
PY
done
rm -rf "$journal"
