#!/bin/sh
# STAND-IN for kube-apiserver (no real one can be installed here): nginx, configured at each
# (re)start and on SIGHUP (a graceful reload, see serve_nginx) from the same flags and files the
# real apiserver reads: a kubeadm node's static pod manifest, or on a binary ("hard way") node
# the kube-apiserver systemd unit as systemd would start it (its drop-ins and environment files
# read again each time, see unit_flags in lib.sh), or on a k3s server the flags k3s gives its
# embedded apiserver. It serves --tls-cert-file on --secure-port,
# demands client certificates from --client-ca-file, and answers /healthz and /readyz by calling
# etcd's /health with --etcd-certfile/--etcd-keyfile, verifying etcd against --etcd-cafile, the
# way the apiserver's storage health check does (over every --etcd-servers URL, as its etcd
# client balances them). /livez answers without etcd, as in kube-apiserver >= 1.28.
set -eu
. /opt/kcert-fleet/lib.sh
m=/etc/kubernetes/manifests/kube-apiserver.yaml
dir=/run/kcert/apiserver
strict=""
k3s=/var/lib/rancher/k3s/server/tls
if [ -f "$m" ]; then
  load() { :; }
  f() { flag "$m" "$1"; }
elif [ -f "$k3s/serving-kube-apiserver.crt" ]; then
  # A k3s server: the flags k3s computes for its embedded apiserver (k3s
  # pkg/daemons/control/server.go: :6444, the paths of deps.go, etcd on loopback).
  load() { :; }
  f() {
    case $1 in
      secure-port) echo 6444 ;;
      tls-cert-file) echo "$k3s/serving-kube-apiserver.crt" ;;
      tls-private-key-file) echo "$k3s/serving-kube-apiserver.key" ;;
      client-ca-file) echo "$k3s/client-ca.crt" ;;
      etcd-servers) echo https://127.0.0.1:2379 ;;
      etcd-certfile) echo "$k3s/etcd/client.crt" ;;
      etcd-keyfile) echo "$k3s/etcd/client.key" ;;
      etcd-cafile) echo "$k3s/etcd/server-ca.crt" ;;
    esac
  }
else
  strict=1
  load() { flags=$(unit_flags kube-apiserver); }
  f() { printf '%s\n' "$flags" | pick "$1"; }
fi
render() {
load
port=$(f secure-port); port=${port:-6443}
etcd=$(f etcd-servers | tr ',' '\n' | sed -n 's|^https://\(.*\)$|      server \1;|p')
mkdir -p "$dir/tmp"
cat > "$dir/nginx.conf" <<CONF
$(nginx_head "$dir")
  upstream etcd {
$etcd
  }
  server {
    listen $port ssl;
    ssl_certificate $(go_chain "$(f tls-cert-file)");
    ssl_certificate_key $(f tls-private-key-file);
    ssl_client_certificate $(f client-ca-file);
    ssl_verify_client on;
    ssl_verify_depth 4;
    location = /livez { default_type text/plain; return 200 "ok"; }
$(for path in healthz readyz; do cat <<LOC
    location = /$path {
      proxy_pass https://etcd/health;
$(proxy_tls "$(f etcd-certfile)" "$(f etcd-keyfile)" "$(f etcd-cafile)")
    }
LOC
done)
    location / { return 404; }
  }
}
CONF
}
serve_nginx "$dir" render "$strict"
