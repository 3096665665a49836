#!/bin/sh
# Probes of the test fleet, run inside a node: real mTLS handshakes along every edge that
# starts on this node, one line per attempt in /run/kcert/probe.log: EPOCH EDGE ok|fail DETAIL.
#   probe.sh loop|once|edges NODE CP(0|1) ETCD_ENDPOINTS "IP=NAME IP=NAME ..."
# `edges` only lists the edges a round would try, so the report can show an edge that never ran.
# The loop is started by `docker exec -d`, which makes it a process-group leader: its pid file
# names the group, so stopping it also ends a kubectl or etcdctl still in flight.
# Any failed exchange counts (nginx answers a rejected client cert with HTTP 400, so curl -f
# and kubectl both fail on it).
# A kubeadm node's paths are kubeadm's; on a binary ("hard way") node (a kubelet systemd unit)
# every path is read, at each round, from the component units the way the components read them
# (unit_flags in lib.sh), so the probes follow what kcert changes there.
mode=$1 node=$2 cp=$3 eps=$4 peers=$5
log=/run/kcert/probe.log
pki=/etc/kubernetes/pki
mkdir -p /run/kcert
[ "$mode" = loop ] && echo $$ > /run/kcert/probe.pid
hardway=0
# A k3s node stops all of k3s at once (its unit), so while it is down (the stand-in's systemctl
# marks it) or an edge's far end is refused, an attempt counts as down, not as a failed
# handshake: a certificate error still fails.
k3s=0
[ -d /var/lib/rancher/k3s ] && k3s=1
. /opt/kcert-fleet/lib.sh
if [ -f /etc/systemd/system/kubelet.service ]; then
  hardway=1
fi

attempt() {
  edge=$1; shift
  if [ "$mode" = edges ]; then echo "$edge"; return; fi
  was_down=0; [ -f /run/kcert/unit-down ] && was_down=1
  if out=$("$@" 2>&1); then
    echo "$(date +%s) $edge ok" >> "$log"
  elif [ "$k3s" = 1 ] && { [ "$was_down" = 1 ] || [ -f /run/kcert/unit-down ] || refused "$out"; }; then
    printf '%s %s down %s\n' "$(date +%s)" "$edge" "$(printf '%s' "$out" | tr '\r\n' '  ' | cut -c1-200)" >> "$log"
  else
    # printf, not echo: dash's echo would turn a \n in the text (an HTML page kubectl quotes) into a line break.
    printf '%s %s fail %s\n' "$(date +%s)" "$edge" "$(printf '%s' "$out" | tr '\r\n' '  ' | cut -c1-300)" >> "$log"
  fi
}

# refused OUTPUT: nothing listened, or the far end went away mid-exchange (a k3s unit stopped on
# purpose, every component with it; an agent's load balancer passing on a server that stops).
# A certificate a peer rejects is an HTTP 400 or a TLS alert, never this (curl's
# SSL_ERROR_SYSCALL and "Empty reply" are the connection cut under a handshake or a request).
# Matched without regard to case: curl says "Connection reset by peer", Go's net package (kubectl,
# etcdctl) "read: connection reset by peer".
refused() {
  case $(printf '%s' "$1" | tr '[:upper:]' '[:lower:]') in
    *"connection refused"*|*"failed to connect"*|*"could not connect"*|*"couldn't connect"*|*"connection reset by peer"*|*"unable to connect to the server: eof"*|*"ssl_error_syscall"*|*"empty reply from server"*) return 0 ;;
  esac
  return 1
}

etcd() {
  # etcd's own balanced client over every member, as the apiserver's storage client fails over.
  # A request cut by a member's restart (code Unknown) or slowed past its deadline by a leader
  # election on a loaded machine is tried again, up to five times (about 25 s): etcdctl gives
  # up after one deadline, the apiserver gives a request up to --request-timeout (1m0s by
  # default, see the kube-apiserver reference). A certificate error is not tried again, and a
  # broken trust, which lasts, fails every try.
  #   etcd CACERT CERT KEY ETCDCTL-ARGS...
  cacert=$1 cert=$2 key=$3; shift 3
  set -- --endpoints="$eps" --cacert "$cacert" --cert "$cert" --key "$key" \
    --dial-timeout=3s --command-timeout=5s "$@"
  # A fast refusal ("raft proposal dropped" while a leader is elected) waits a little more
  # each time before the next try, so five tries span an election, not a blink.
  for try in 1 2 3 4 5; do
    if err=$(ETCDCTL_API=3 etcdctl "$@" 2>&1 >/dev/null); then return 0; fi
    case $err in *x509*|*certificate*|*"tls:"*|*handshake*) break ;; esac
    [ "$try" = 5 ] || sleep "$try"
  done
  printf '%s\n' "$err" >&2
  return 1
}

# kc KUBECONFIG: kubectl's own request with that kubeconfig (a path that could not be read
# from the units fails the attempt instead of falling back to kubectl's default).
kc() {
  [ -n "$1" ] || { echo "no kubeconfig path found in the units" >&2; return 1; }
  kubectl --kubeconfig "$1" get --raw /livez --request-timeout=5s
}

# kubelets CERT KEY CA: the apiserver's calls to every kubelet's 10250. The apiserver checks a
# kubelet's serving cert only with --kubelet-certificate-authority.
kubelets() {
  if [ -n "$3" ]; then verify="--cacert $3"; else verify=-k; fi
  for p in $peers; do
    # shellcheck disable=SC2086
    attempt "apiserver->kubelet@$node->${p#*=}" curl -sSf -o /dev/null --max-time 5 $verify \
      --cert "$(go_chain "$1")" --key "$2" "https://${p%%=*}:10250/healthz"
  done
}

n=0
round_kubeadm() {
  for k in admin super-admin controller-manager scheduler kubelet; do
    f=/etc/kubernetes/$k.conf
    [ -f "$f" ] && attempt "$k.conf->apiserver@$node" kc "$f"
  done
  [ "$cp" = 1 ] || return 0
  e="$pki/etcd/ca.crt"
  attempt "apiserver->etcd@$node" etcd "$e" "$pki/apiserver-etcd-client.crt" "$pki/apiserver-etcd-client.key" get kcert-probe
  attempt "healthcheck->etcd@$node" etcd "$e" "$pki/etcd/healthcheck-client.crt" "$pki/etcd/healthcheck-client.key" get kcert-probe
  n=$((n + 1))
  # A write needs quorum: the etcd peers trust each other.
  attempt "etcd-peers@$node" etcd "$e" "$pki/etcd/healthcheck-client.crt" "$pki/etcd/healthcheck-client.key" put "kcert-probe-$node" "$n"
  kca=$(sed -n 's/^[[:space:]]*- --kubelet-certificate-authority=\(.*\)$/\1/p' /etc/kubernetes/manifests/kube-apiserver.yaml)
  kubelets "$pki/apiserver-kubelet-client.crt" "$pki/apiserver-kubelet-client.key" "$kca"
}

# unit FLAG -> the flag's value in the unit whose flags are in $flags.
uf() { printf '%s\n' "$flags" | pick "$1"; }

round_hardway() {
  flags=$(unit_flags kubelet 2>&1); attempt "kubelet.kubeconfig->apiserver@$node" kc "$(uf kubeconfig)"
  flags=$(unit_flags kube-proxy 2>&1); attempt "kube-proxy.kubeconfig->apiserver@$node" kc "$(uf kubeconfig)"
  [ "$cp" = 1 ] || return 0
  attempt "admin.kubeconfig->apiserver@$node" kc /root/admin.kubeconfig
  flags=$(unit_flags kube-controller-manager 2>&1); attempt "kube-controller-manager.kubeconfig->apiserver@$node" kc "$(uf kubeconfig)"
  flags=$(unit_flags kube-scheduler 2>&1)
  sk=$(uf kubeconfig); cfg=$(uf config)
  [ -z "$sk" ] && [ -n "$cfg" ] && sk=$(field "$cfg" kubeconfig)
  attempt "kube-scheduler.kubeconfig->apiserver@$node" kc "$sk"
  flags=$(unit_flags kube-apiserver 2>&1)
  e=$(uf etcd-cafile) c=$(uf etcd-certfile) k=$(uf etcd-keyfile)
  attempt "apiserver->etcd@$node" etcd "$e" "$c" "$k" get kcert-probe
  n=$((n + 1))
  # A write needs quorum: the etcd peers trust each other.
  attempt "etcd-peers@$node" etcd "$e" "$c" "$k" put "kcert-probe-$node" "$n"
  kubelets "$(uf kubelet-client-certificate)" "$(uf kubelet-client-key)" "$(uf kubelet-certificate-authority)"
}

round_k3s() {
  A=/var/lib/rancher/k3s/agent T=/var/lib/rancher/k3s/server/tls
  for k in kubelet kubeproxy k3scontroller; do attempt "$k.kubeconfig->apiserver@$node" kc "$A/$k.kubeconfig"; done
  [ "$cp" = 1 ] || return 0
  attempt "k3s.yaml->supervisor@$node" kc /etc/rancher/k3s/k3s.yaml
  for k in admin supervisor controller scheduler api-server cloud-controller; do
    attempt "$k.kubeconfig->apiserver@$node" kc "/var/lib/rancher/k3s/server/cred/$k.kubeconfig"
  done
  attempt "apiserver->etcd@$node" etcd "$T/etcd/server-ca.crt" "$T/etcd/client.crt" "$T/etcd/client.key" get kcert-probe
  n=$((n + 1))
  # A write needs quorum: the etcd peers trust each other.
  attempt "etcd-peers@$node" etcd "$T/etcd/server-ca.crt" "$T/etcd/client.crt" "$T/etcd/client.key" put "kcert-probe-$node" "$n"
  kubelets "$T/client-kube-apiserver.crt" "$T/client-kube-apiserver.key" "$T/server-ca.crt"
}

round() { if [ "$k3s" = 1 ]; then round_k3s; elif [ "$hardway" = 1 ]; then round_hardway; else round_kubeadm; fi; }

if [ "$mode" != loop ]; then round; exit 0; fi
while :; do round; done
