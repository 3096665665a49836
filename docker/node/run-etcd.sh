#!/bin/sh
# Real etcd (Debian's etcd 3.4), started with exactly the flags of the kubeadm manifest, so a
# changed manifest or changed files take effect on `supervisorctl restart etcd`.
set -eu
. /opt/kcert-fleet/lib.sh
manifest=/etc/kubernetes/manifests/etcd.yaml
# shellcheck disable=SC2046
set -- $(all_flags "$manifest")
exec /usr/bin/etcd "$@"
