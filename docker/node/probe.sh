#!/bin/sh
# Probes of the test fleet, run inside a node: real mTLS handshakes along every edge that
# starts on this node, one line per attempt in /run/kcert/probe.log: EPOCH EDGE ok|fail DETAIL.
#   probe.sh loop|once|edges NODE CP(0|1) ETCD_ENDPOINTS "IP=NAME IP=NAME ..."
# `edges` only lists the edges a round would try, so the report can show an edge that never ran.
# The loop is started by `docker exec -d`, which makes it a process-group leader: its pid file
# names the group, so stopping it also ends a kubectl or etcdctl still in flight.
# Any failed exchange counts (nginx answers a rejected client cert with HTTP 400, so curl -f
# and kubectl both fail on it).
mode=$1 node=$2 cp=$3 eps=$4 peers=$5
log=/run/kcert/probe.log
pki=/etc/kubernetes/pki
mkdir -p /run/kcert
[ "$mode" = loop ] && echo $$ > /run/kcert/probe.pid

attempt() {
  edge=$1; shift
  if [ "$mode" = edges ]; then echo "$edge"; return; fi
  if out=$("$@" 2>&1); then
    echo "$(date +%s) $edge ok" >> "$log"
  else
    echo "$(date +%s) $edge fail $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-300)" >> "$log"
  fi
}

etcd() {
  # etcd's own balanced client over every member, as the apiserver's storage client fails over.
  # A request cut by a member's restart (code Unknown) or slowed past its deadline by a leader
  # election on a loaded machine is tried again, up to three times: etcdctl gives up after one
  # deadline, the apiserver gives a request up to --request-timeout (1m0s by default, see the
  # kube-apiserver reference). A certificate error is not tried again, and a broken trust,
  # which lasts, fails every try.
  cert=$1; shift
  set -- --endpoints="$eps" --cacert "$pki/etcd/ca.crt" --cert "$pki/$cert.crt" --key "$pki/$cert.key" \
    --dial-timeout=3s --command-timeout=5s "$@"
  for try in 1 2 3; do
    if err=$(ETCDCTL_API=3 etcdctl "$@" 2>&1 >/dev/null); then return 0; fi
    case $err in *x509*|*certificate*|*"tls:"*|*handshake*) break ;; esac
  done
  printf '%s\n' "$err" >&2
  return 1
}

n=0
round() {
  for k in admin super-admin controller-manager scheduler kubelet; do
    f=/etc/kubernetes/$k.conf
    [ -f "$f" ] && attempt "$k.conf->apiserver@$node" kubectl --kubeconfig "$f" get --raw /livez --request-timeout=5s
  done
  [ "$cp" = 1 ] || return 0
  attempt "apiserver->etcd@$node" etcd apiserver-etcd-client get kcert-probe
  attempt "healthcheck->etcd@$node" etcd etcd/healthcheck-client get kcert-probe
  n=$((n + 1))
  # A write needs quorum: the etcd peers trust each other.
  attempt "etcd-peers@$node" etcd etcd/healthcheck-client put "kcert-probe-$node" "$n"
  # The apiserver checks a kubelet's serving cert only with --kubelet-certificate-authority.
  kca=$(sed -n 's/^[[:space:]]*- --kubelet-certificate-authority=\(.*\)$/\1/p' /etc/kubernetes/manifests/kube-apiserver.yaml)
  if [ -n "$kca" ]; then verify="--cacert $kca"; else verify=-k; fi
  for p in $peers; do
    # shellcheck disable=SC2086
    attempt "apiserver->kubelet@$node->${p#*=}" curl -sSf -o /dev/null --max-time 5 $verify \
      --cert "$pki/apiserver-kubelet-client.crt" --key "$pki/apiserver-kubelet-client.key" "https://${p%%=*}:10250/healthz"
  done
}

if [ "$mode" != loop ]; then round; exit 0; fi
while :; do round; done
