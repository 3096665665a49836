#!/bin/sh
# STAND-IN for the kubelet's TLS port (no real kubelet can run here): nginx on 10250,
# configured at each (re)start and on SIGHUP (a graceful reload, see serve_nginx) from the
# kubelet's config file as the kubelet reads it: /var/lib/kubelet/config.yaml on a kubeadm node;
# on a binary ("hard way") node the file the kubelet systemd unit's --config names, its
# --tls-cert-file, --tls-private-key-file and --client-ca-file flags winning over the fields
# (the unit read as systemd would, see unit_flags in lib.sh); on a k3s node, agent/'s files.
# It serves tlsCertFile/tlsPrivateKeyFile (default /var/lib/kubelet/pki/kubelet.{crt,key})
# and demands client certificates from authentication.x509.clientCAFile. /healthz answers ok.
set -eu
. /opt/kcert-fleet/lib.sh
dir=/run/kcert/kubelet
strict=""
[ -f /etc/systemd/system/kubelet.service ] && strict=1
render() {
a=/var/lib/rancher/k3s/agent
if [ -f $a/kubelet.kubeconfig ]; then
  # A k3s node's agent: the files k3s hands its embedded kubelet (pkg/agent/config).
  cert=$a/serving-kubelet.crt
  key=$a/serving-kubelet.key
  ca=$a/client-ca.crt
elif [ -f /var/lib/kubelet/config.yaml ] && [ ! -f /etc/systemd/system/kubelet.service ]; then
  c=/var/lib/kubelet/config.yaml
  cert=$(field "$c" tlsCertFile)
  key=$(field "$c" tlsPrivateKeyFile)
  ca=$(field "$c" clientCAFile)
else
  flags=$(unit_flags kubelet)
  c=$(printf '%s\n' "$flags" | pick config)
  cert=$(printf '%s\n' "$flags" | pick tls-cert-file)
  key=$(printf '%s\n' "$flags" | pick tls-private-key-file)
  ca=$(printf '%s\n' "$flags" | pick client-ca-file)
  if [ -n "$c" ]; then
    cert=${cert:-$(field "$c" tlsCertFile)}
    key=${key:-$(field "$c" tlsPrivateKeyFile)}
    ca=${ca:-$(field "$c" clientCAFile)}
  fi
fi
cert=${cert:-/var/lib/kubelet/pki/kubelet.crt}
key=${key:-/var/lib/kubelet/pki/kubelet.key}
mkdir -p "$dir/tmp"
cat > "$dir/nginx.conf" <<CONF
$(nginx_head "$dir")
  server {
    listen 10250 ssl;
    ssl_certificate $(go_chain "$cert");
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
serve_nginx "$dir" render "$strict"
