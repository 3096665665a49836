#!/usr/bin/env bash
# Benchmark: `kcert rotate-ca` of all three CAs on the five-node test fleet (etcd restarted for
# real, the stand-ins reloaded, every gate passed), RUNS times (each run rotates the CAs the one
# before made), printing each run's wall time split into time spent waiting for restarts and
# health gates and kcert's own work (connect, discover, plan and prove, sign, back up, write,
# journal). Then the planner alone on a simulated NODES-node cluster (cargo bench --bench planner).
#
# usage: bench/rotate.sh [RUNS] [NODES]        (defaults: 3 runs, 5000 nodes)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-3}
nodes=${2:-5000}
name="kcert-bench-rotate-$$"
state="$repo/target/fleet/$name"
journal=$(mktemp -d)
cleanup() { "$repo/docker/fleet" down "$name" >/dev/null 2>&1 || true; rm -rf "$state" "$journal"; }
trap cleanup EXIT

cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
kcert="$repo/target/release/kcert"
"$repo/docker/fleet" up "$name" --state "$state" >/dev/null 2>&1

echo "rotate-ca, all three CAs, five-node fleet (3 control plane + etcd, 2 workers, batch size 1):"
printf '%-4s %10s %10s %10s %8s %9s\n' RUN WALL WAITING OWN FILES RESTARTS
for i in $(seq 1 "$runs"); do
  t0=$(date +%s.%N)
  "$kcert" rotate-ca -i "$state/inventory.yaml" --yes -o json --state-dir "$journal" > "$journal/out.json"
  t1=$(date +%s.%N)
  python3 - "$i" "$journal/out.json" "$t0" "$t1" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
assert r["failure"] is None, r["failure"]
wall = float(sys.argv[4]) - float(sys.argv[3])
files = sum(s["files"] for s in r["stages"])
restarts = sum(s["restarts"] for s in r["stages"])
print("%-4s %9.1fs %9.1fs %9.1fs %8d %9d" % (sys.argv[1], wall, r["wait_seconds"], wall - r["wait_seconds"], files, restarts))
PY
done
echo
echo "planner, simulated cluster (no SSH):"
cargo bench --quiet --manifest-path "$repo/Cargo.toml" --bench planner -- "$nodes"
