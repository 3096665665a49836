#!/usr/bin/env bash
# Benchmark: `kcert expiry` over N nodes against the floor of plain OpenSSH in parallel.
#
# One container (the fleet image) runs N sshd on 127.0.0.1 ports of this machine, all over
# the same kubeadm control-plane PKI made with openssl. For N = 5, 20, 50 it times
#   kcert:    kcert expiry -i <N-node inventory> -o json
#   openssh:  xargs -P <concurrency> ssh -p PORT root@127.0.0.1 'openssl x509 -enddate ... each file'
# (one ssh per node reading every cert file, the same files kcert reports), and
#   floor:    xargs -P <concurrency> ssh -o KexAlgorithms=curve25519-sha256 -p PORT root@127.0.0.1 true
# (the SSH handshake alone, the least any tool reaching the nodes can take), and prints the
# median of RUNS runs of each, the ratios, and kcert's peak RSS (GNU time).
#
# usage: bench/expiry.sh [N...]      env: RUNS (default 5), CONCURRENCY (default 10)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
sizes=("${@:-5 20 50}")
read -r -a sizes <<<"${sizes[*]}"
runs=${RUNS:-5}
conc=${CONCURRENCY:-10}
base=23000
max=0; for n in "${sizes[@]}"; do [ "$n" -gt "$max" ] && max=$n; done

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
kcert="$repo/target/release/kcert"
tag=$("$repo/docker/image/build.sh")
work=$(mktemp -d)
name="kcert-bench-$$"
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

"$repo/docker/pki/make-kubeadm-pki.sh" "$work/pki" node:127.0.0.1:cp
ssh-keygen -q -t ed25519 -N "" -f "$work/id_ed25519"
mkdir -p "$work/pki/node/root/.ssh" && cp "$work/id_ed25519.pub" "$work/pki/node/root/.ssh/authorized_keys"
docker create --name "$name" -p "127.0.0.1:$base-$((base + max - 1)):$base-$((base + max - 1))" "$tag" sleep infinity >/dev/null
docker cp "$work/pki/node/." "$name:/" >/dev/null
docker start "$name" >/dev/null
docker exec "$name" sh -c "chown -R root:root /root/.ssh /etc/kubernetes /var/lib/kubelet; mkdir -p /run/sshd && ssh-keygen -A >/dev/null &&
  for p in \$(seq $base $((base + max - 1))); do /usr/sbin/sshd -p \$p -o PidFile=/run/sshd-\$p.pid -o MaxStartups=100; done"
key=$(docker exec "$name" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)
for p in $(seq $base $((base + max - 1))); do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
  echo "[127.0.0.1]:$p $key"
done > "$work/known_hosts"
files=$(docker exec "$name" sh -c 'find -L /etc/kubernetes/pki /var/lib/kubelet/pki -name "*.crt" -o -name "*.pem" | sort | tr "\n" " "')

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }
now() { date +%s.%N; }

printf '%-6s %-9s %-10s %-9s %-13s %-14s %s\n' NODES KCERT_S OPENSSH_S FLOOR_S KCERT/OPENSSH KCERT/FLOOR KCERT_PEAK_RSS
for n in "${sizes[@]}"; do
  inv="$work/inv-$n.yaml"
  {
    printf 'cluster: bench\nssh:\n  user: root\n  identity_file: %s\n  known_hosts: %s\n  config_file: none\nconcurrency: %s\nnodes:\n' "$work/id_ed25519" "$work/known_hosts" "$conc"
    for i in $(seq 0 $((n - 1))); do printf '  - name: n%s\n    host: 127.0.0.1\n    port: %s\n    roles: [control-plane, etcd]\n' "$i" $((base + i)); done
  } > "$inv"
  ports=$(seq $base $((base + n - 1)))
  ktimes=(); otimes=(); ftimes=(); rss=0
  for _ in $(seq "$runs"); do
    t0=$(now)
    /usr/bin/time -f %M -o "$work/rss" "$kcert" expiry -i "$inv" -o json > "$work/out.json" || [ $? -eq 3 ]
    t1=$(now)
    ktimes+=("$(echo "$t1 - $t0" | bc)")
    r=$(tail -n1 "$work/rss"); [ "$r" -gt "$rss" ] && rss=$r
    t0=$(now)
    echo "$ports" | xargs -P "$conc" -I{} ssh -q -p {} -i "$work/id_ed25519" -o UserKnownHostsFile="$work/known_hosts" \
      -o StrictHostKeyChecking=yes -o BatchMode=yes root@127.0.0.1 "for f in $files; do openssl x509 -enddate -noout -in \$f; done" > "$work/openssh.out"
    t1=$(now)
    otimes+=("$(echo "$t1 - $t0" | bc)")
    t0=$(now)
    echo "$ports" | xargs -P "$conc" -I{} ssh -q -p {} -i "$work/id_ed25519" -o UserKnownHostsFile="$work/known_hosts" \
      -o StrictHostKeyChecking=yes -o BatchMode=yes -o KexAlgorithms=curve25519-sha256 root@127.0.0.1 true
    t1=$(now)
    ftimes+=("$(echo "$t1 - $t0" | bc)")
  done
  certs=$(python3 -c "import json; print(len(json.load(open('$work/out.json'))['certificates']))")
  k=$(printf '%s\n' "${ktimes[@]}" | median); o=$(printf '%s\n' "${otimes[@]}" | median); f=$(printf '%s\n' "${ftimes[@]}" | median)
  printf '%-6s %-9s %-10s %-9s %-13s %-14s %s MiB   (%s certs reported by kcert, %s lines by openssl)\n' "$n" "$k" "$o" "$f" \
    "$(echo "scale=2; $k / $o" | bc)" "$(echo "scale=2; $k / $f" | bc)" "$(echo "scale=1; $rss / 1024" | bc)" "$certs" "$(wc -l < "$work/openssh.out")"
done
