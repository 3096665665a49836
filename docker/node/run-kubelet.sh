#!/bin/sh
# STAND-IN for the kubelet's TLS port (no real kubelet can run here): nginx on 10250,
# configured at each (re)start and on SIGHUP (a graceful reload, see serve_nginx) from
# /var/lib/kubelet/config.yaml as the kubelet reads it:
# it serves tlsCertFile/tlsPrivateKeyFile (default /var/lib/kubelet/pki/kubelet.{crt,key})
# and demands client certificates from authentication.x509.clientCAFile. /healthz answers ok.
set -eu
. /opt/kcert-fleet/lib.sh
c=/var/lib/kubelet/config.yaml
dir=/run/kcert/kubelet
render() {
cert=$(field "$c" tlsCertFile); cert=${cert:-/var/lib/kubelet/pki/kubelet.crt}
key=$(field "$c" tlsPrivateKeyFile); key=${key:-/var/lib/kubelet/pki/kubelet.key}
ca=$(field "$c" clientCAFile)
mkdir -p "$dir/tmp"
cat > "$dir/nginx.conf" <<CONF
$(nginx_head "$dir")
  server {
    listen 10250 ssl;
    ssl_certificate $cert;
    ssl_certificate_key $key;
    ssl_client_certificate $ca;
    ssl_verify_client on;
    ssl_verify_depth 4;
    location = /healthz { default_type text/plain; return 200 "ok"; }
    location / { return 404; }
  }
}
CONF
}
serve_nginx "$dir" render
