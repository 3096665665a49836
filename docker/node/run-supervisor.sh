#!/bin/sh
# STAND-IN for the k3s supervisor's listener on :6443 (no k3s binary can be installed here):
# nginx, configured at each (re)start and on SIGHUP (a graceful reload, see serve_nginx). What it
# does, and where k3s does it:
#   * serves the certificate dynamiclistener keeps in server/tls/dynamic-cert.json (a
#     kubernetes.io/tls Secret as JSON; rancher/dynamiclistener storage/file), read at start: a
#     stale one stays served until the file is removed and k3s restarted (k3s issues 3144,
#     8762). Where the file is missing, a new one is made from the server CA (CN=k3s, O=k3s,
#     the node's names), as dynamiclistener does for a listener with no stored cert;
#   * answers /cacerts with server/tls/server-ca.crt and /ping with pong, to anyone (k3s
#     pkg/server/router.go: what a joining node fetches before it trusts the server);
#   * makes a new certificate when `k3s certificate rotate` left its trigger file
#     (dynamic-cert-regenerate) and removes the trigger;
#   * passes /v1-k3s/ (agents asking for their certificates) to k3s-certs.py;
#   * everything else needs a client certificate from the client CA, as the apiserver behind
#     it would demand (k3s hands such requests to its apiserver): /healthz, /readyz and /livez
#     are passed to the apiserver (:6444) with the supervisor's own client cert
#     (client-supervisor.crt), verifying the apiserver with the server CA.
set -eu
. /opt/kcert-fleet/lib.sh
tls=/var/lib/rancher/k3s/server/tls
json=$tls/dynamic-cert.json
dir=/run/kcert/supervisor

# field_b64 KEY: the base64 of data[KEY] in dynamic-cert.json.
field_b64() { sed -n "s/.*\"$1\":\"\([A-Za-z0-9+\/=]*\)\".*/\1/p" "$json"; }

make_cert() {
  t=$(mktemp -d)
  openssl ecparam -name prime256v1 -genkey -noout -out "$t/k" 2>/dev/null
  host=$(hostname)
  ip=$(hostname -i | awk '{print $1}')
  printf 'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:localhost,DNS:%s,IP:127.0.0.1,IP:%s,IP:10.43.0.1\n' "$host" "$ip" > "$t/ext"
  openssl req -new -key "$t/k" -subj "/O=k3s/CN=k3s" 2>/dev/null |
    openssl x509 -req -CA "$tls/server-ca.crt" -CAkey "$tls/server-ca.key" -set_serial "0x$(openssl rand -hex 8)" -days 365 -sha256 -extfile "$t/ext" -out "$t/c" 2>/dev/null
  cat "$tls/server-ca.crt" >> "$t/c"
  printf '{"kind":"Secret","apiVersion":"v1","metadata":{"name":"k3s-serving","namespace":"kube-system","creationTimestamp":null},"data":{"tls.crt":"%s","tls.key":"%s"},"type":"kubernetes.io/tls"}\n' \
    "$(base64 -w0 < "$t/c")" "$(base64 -w0 < "$t/k")" > "$json.tmp"
  chmod 600 "$json.tmp"
  mv "$json.tmp" "$json"
  rm -rf "$t"
}

render() {
  # `k3s certificate rotate` asks for a new one with a trigger file (k3s pkg/cli/cert/cert.go).
  if [ ! -f "$json" ] || [ -f "$tls/dynamic-cert-regenerate" ]; then
    make_cert
    rm -f "$tls/dynamic-cert-regenerate"
  fi
  mkdir -p "$dir/tmp"
  umask 077
  field_b64 tls.crt | base64 -d > "$dir/tls.crt"
  field_b64 tls.key | base64 -d > "$dir/tls.key"
  cat > "$dir/nginx.conf" <<CONF
$(nginx_head "$dir")
  server {
    listen 6443 ssl;
    ssl_certificate $(go_chain "$dir/tls.crt");
    ssl_certificate_key $dir/tls.key;
    ssl_client_certificate $tls/client-ca.crt;
    ssl_verify_client optional;
    ssl_verify_depth 4;
    location = /cacerts { default_type text/plain; alias $tls/server-ca.crt; }
    location = /ping { default_type text/plain; return 200 "pong"; }
    # Agents' certificates, for the node's credentials (k3s-certs.py).
    location /v1-k3s/ { proxy_pass http://127.0.0.1:6446; }
$(for path in healthz readyz livez; do cat <<LOC
    location = /$path {
      if (\$ssl_client_verify != SUCCESS) { return 401; }
      proxy_pass https://127.0.0.1:6444/$path;
$(proxy_tls "$tls/client-supervisor.crt" "$tls/client-supervisor.key" "$tls/server-ca.crt")
    }
LOC
done)
    location / { if (\$ssl_client_verify != SUCCESS) { return 401; } return 404; }
  }
}
CONF
}
serve_nginx "$dir" render
