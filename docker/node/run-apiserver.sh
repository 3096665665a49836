#!/bin/sh
# STAND-IN for kube-apiserver (no real one can be installed here): nginx, configured at each
# (re)start and on SIGHUP (a graceful reload, see serve_nginx) from the same manifest flags and
# files the real apiserver reads. It serves --tls-cert-file on --secure-port, demands client
# certificates from --client-ca-file, and answers /healthz and /readyz by calling etcd's
# /health with --etcd-certfile/--etcd-keyfile, verifying etcd against --etcd-cafile, the way
# the apiserver's storage health check does. /livez answers without etcd, as in
# kube-apiserver >= 1.28.
set -eu
. /opt/kcert-fleet/lib.sh
m=/etc/kubernetes/manifests/kube-apiserver.yaml
dir=/run/kcert/apiserver
render() {
port=$(flag "$m" secure-port); port=${port:-6443}
etcd=$(flag "$m" etcd-servers | cut -d, -f1 | sed 's|^https://||')
mkdir -p "$dir/tmp"
cat > "$dir/nginx.conf" <<CONF
$(nginx_head "$dir")
  server {
    listen $port ssl;
    ssl_certificate $(flag "$m" tls-cert-file);
    ssl_certificate_key $(flag "$m" tls-private-key-file);
    ssl_client_certificate $(flag "$m" client-ca-file);
    ssl_verify_client on;
    ssl_verify_depth 4;
    location = /livez { default_type text/plain; return 200 "ok"; }
$(for path in healthz readyz; do cat <<LOC
    location = /$path {
      proxy_pass https://$etcd/health;
      proxy_ssl_certificate $(flag "$m" etcd-certfile);
      proxy_ssl_certificate_key $(flag "$m" etcd-keyfile);
      proxy_ssl_trusted_certificate $(flag "$m" etcd-cafile);
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 4;
      # nginx matches DNS SANs only; kubeadm gives etcd's server cert DNS:localhost.
      proxy_ssl_name localhost;
      # A reused session would hide a broken trust file after a rotation.
      proxy_ssl_session_reuse off;
    }
LOC
done)
    location / { return 404; }
  }
}
CONF
}
serve_nginx "$dir" render
