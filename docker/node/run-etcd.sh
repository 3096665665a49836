#!/bin/sh
# Real etcd (Debian's etcd 3.4). On a kubeadm node it starts with exactly the flags of the
# static pod manifest; on a binary ("hard way") node as systemd would start the etcd unit: with
# the unit's environment (Environment=, EnvironmentFile=: the ETCD_* variables etcd reads
# itself, each ETCD_FLAG_NAME standing for --flag-name, see etcd's "Configuration options")
# and the unit's ExecStart= arguments (see unit_flags in lib.sh). Either way both are read
# again at each start, so a changed manifest, unit, environment file or changed files take
# effect on `supervisorctl restart etcd`, and only then. On a k3s server, the config file k3s
# writes for its embedded etcd (below).
set -eu
. /opt/kcert-fleet/lib.sh
manifest=/etc/kubernetes/manifests/etcd.yaml
# A k3s server: k3s runs etcd embedded, from the config file it writes (k3s pkg/etcd); the
# STAND-IN for k3s runs Debian's etcd with that same file.
k3s=/var/lib/rancher/k3s/server/db/etcd/config
if [ -f "$k3s" ]; then
  exec /usr/bin/etcd --config-file "$k3s"
fi
if [ -f "$manifest" ]; then
  # shellcheck disable=SC2046
  set -- $(all_flags "$manifest")
  exec /usr/bin/etcd "$@"
fi
env=$(unit_env etcd)
args=$(unit_flags etcd)
while IFS= read -r kv; do
  [ -n "$kv" ] && export "${kv?}"
done <<ENV
$env
ENV
# One argument per line; the unit's binary (the guides' /usr/local/bin/etcd) is Debian's
# /usr/bin/etcd here.
IFS='
'
set -f
# shellcheck disable=SC2086
set -- $args
exec /usr/bin/etcd "$@"
