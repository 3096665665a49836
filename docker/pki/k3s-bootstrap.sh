# shellcheck shell=bash
# The k3s STAND-IN's datastore copy of the CAs ("bootstrap data"), sourced by the stand-in's
# systemctl (a server's start), its k3s command (`certificate rotate-ca`) and k3s-certs.py.
# What k3s does, and where:
#   * the CA certificates and keys and service.key live in the datastore; the first server
#     puts its own there when the cluster is made (pkg/cluster/bootstrap.go). Here the datastore
#     is a folder on the first server (K3S_DS); the other servers read it through the first
#     one's /v1-k3s/server-bootstrap, as a joining server's httpBootstrap does;
#   * at every server start the datastore's files are written to server/tls, keeping the
#     datastore's time stamps; a file on disk that differs and is newer by 3 s or more stops the
#     start ("newer than datastore and could cause a cluster outage": ReconcileBootstrapData);
#   * `certificate rotate-ca --path DIR` PUTs DIR/tls to /v1-k3s/cert/cacerts; the server checks
#     the new set unless forced (pkg/server/handlers/cert.go, validateBootstrap): each new bundle
#     holds more than one certificate and its first verifies against the old chain, each key
#     matches its certificate, the old first service-account key is among the new; then saves it;
#   * the join token pins hashCA of server-ca.crt (pkg/clientaccess/token.go), and server/token
#     is written again at every start (pkg/server/server.go, printTokens).

K3S_TLS=/var/lib/rancher/k3s/server/tls
K3S_DS=/var/lib/rancher/k3s/server/kcert-fleet-datastore
K3S_BOOT="server-ca.crt server-ca.key client-ca.crt client-ca.key request-header-ca.crt request-header-ca.key etcd/peer-ca.crt etcd/peer-ca.key etcd/server-ca.crt etcd/server-ca.key service.key"

# k3s_certs FILE DIR: each certificate of FILE as DIR/0.pem, DIR/1.pem, ...; prints how many.
k3s_certs() {
  awk -v d="$2" '/BEGIN CERTIFICATE/{n++; f=d"/"(n-1)".pem"} f{print > f} /END CERTIFICATE/{close(f); f=""} END{print n+0}' "$1"
}

# k3s_ca_hash FILE: hashCA: one certificate, the sha256 of the file; more, the sha256 of the DER
# of the self-signed root (tried before the others) the first certificate verifies to.
k3s_ca_hash() {
  local t n i
  t=$(mktemp -d)
  n=$(k3s_certs "$1" "$t")
  if [ "$n" -le 1 ]; then sha256sum < "$1" | cut -d' ' -f1; rm -rf "$t"; return; fi
  for i in $(seq 1 $((n - 1))); do
    if [ "$(openssl x509 -in "$t/$i.pem" -noout -subject | cut -d= -f2-)" = "$(openssl x509 -in "$t/$i.pem" -noout -issuer | cut -d= -f2-)" ] &&
      openssl verify -CAfile "$t/$i.pem" -untrusted "$1" "$t/0.pem" >/dev/null 2>&1; then
      openssl x509 -in "$t/$i.pem" -outform DER | sha256sum | cut -d' ' -f1
      rm -rf "$t"
      return
    fi
  done
  sha256sum < "$1" | cut -d' ' -f1
  rm -rf "$t"
}

# k3s_validate NEW OLD: validateBootstrap of the set in NEW (laid out like server/tls) against
# OLD's; prints why not and fails, for each file NEW has.
k3s_validate() {
  local new=$1 old=$2 f t n i bad=0
  for f in server-ca client-ca request-header-ca etcd/peer-ca etcd/server-ca; do
    [ -f "$new/$f.crt" ] || continue
    t=$(mktemp -d)
    n=$(k3s_certs "$new/$f.crt" "$t")
    if [ "$n" -le 1 ]; then echo "$f.crt: new CA bundle contains only a single certificate but should include root or intermediate CA certificates"; bad=1; fi
    # The old bundle's certificates and the new one's others are the chain the first must reach.
    cat "$old/$f.crt" > "$t/roots"
    # (openssl, unlike Go, does not go back on an untrusted self-signed issuer: those are left out)
    for i in $(seq 1 $((n - 1))); do
      [ "$(openssl x509 -in "$t/$i.pem" -noout -subject | cut -d= -f2-)" = "$(openssl x509 -in "$t/$i.pem" -noout -issuer | cut -d= -f2-)" ] || cat "$t/$i.pem" >> "$t/chain"
    done
    local untrusted=()
    [ -s "$t/chain" ] && untrusted=(-untrusted "$t/chain")
    if [ "$n" -gt 1 ] && ! openssl verify -CAfile "$t/roots" "${untrusted[@]}" "$t/0.pem" >/dev/null 2>&1; then
      echo "$f.crt: new CA cert cannot be verified using old CA chain"; bad=1
    fi
    if [ -f "$new/$f.key" ] && [ "$(openssl x509 -in "$t/0.pem" -noout -pubkey)" != "$(openssl pkey -in "$new/$f.key" -pubout 2>/dev/null)" ]; then
      echo "$f.key: private key does not match the CA certificate"; bad=1
    fi
    rm -rf "$t"
  done
  if [ -f "$new/service.key" ]; then
    local first k found=0
    first=$(openssl pkey -in "$old/service.key" -pubout 2>/dev/null | tr -d '\n')
    t=$(mktemp -d)
    awk -v d="$t" '/BEGIN .*PRIVATE KEY/{n++; f=d"/"n".key"} f{print > f} /END .*PRIVATE KEY/{close(f); f=""}' "$new/service.key"
    for k in "$t"/*.key; do
      [ "$(openssl pkey -in "$k" -pubout 2>/dev/null | tr -d '\n')" = "$first" ] && found=1
    done
    if [ $found = 0 ]; then
      echo "service.key: old ServiceAccount signing key not in new ServiceAccount key list"; bad=1
    fi
    rm -rf "$t"
  fi
  return $bad
}

# k3s_bootstrap_get DIR: the datastore's files into DIR, with their time stamps.
k3s_bootstrap_get() {
  local env=/etc/systemd/system/k3s.service.env url token secret
  if [ -d "$K3S_DS" ]; then
    tar -C "$K3S_DS" -cf - . | tar -C "$1" -xf -
    return
  fi
  url=$(sed -n "s/^K3S_URL='\(.*\)'$/\1/p" "$env")
  token=$(sed -n "s/^K3S_TOKEN='\(.*\)'$/\1/p" "$env")
  secret=${token#*::}; secret=${secret#*:}
  curl -sf --max-time 10 -k -u "server:$secret" "$url/v1-k3s/server-bootstrap" | tar -C "$1" -xf - ||
    { echo "k3s (stand-in): cannot read the bootstrap data from $url" >&2; return 1; }
}

# k3s_ds_init: on the first server (no K3S_URL: it joined no one), its CA files become the
# datastore's when there is none yet, as a new cluster's first server stores its own.
k3s_ds_init() {
  local f
  if [ ! -d "$K3S_DS" ] && ! grep -q "^K3S_URL=" /etc/systemd/system/k3s.service.env 2>/dev/null; then
    mkdir -p "$K3S_DS.tmp/etcd"; chmod 700 "$K3S_DS.tmp"
    for f in $K3S_BOOT; do cp -p "$K3S_TLS/$f" "$K3S_DS.tmp/$f"; done
    mv "$K3S_DS.tmp" "$K3S_DS"
  fi
}

# k3s_reconcile: the datastore's CA files onto server/tls.
k3s_reconcile() {
  local t f ds disk
  k3s_ds_init
  t=$(mktemp -d)
  k3s_bootstrap_get "$t" || { rm -rf "$t"; return 1; }
  for f in $K3S_BOOT; do
    [ -f "$t/$f" ] || continue
    if [ -f "$K3S_TLS/$f" ] && ! cmp -s "$t/$f" "$K3S_TLS/$f"; then
      ds=$(stat -c %Y "$t/$f"); disk=$(stat -c %Y "$K3S_TLS/$f")
      if [ $((disk - ds)) -ge 3 ]; then
        echo "k3s (stand-in): $K3S_TLS/$f is newer than datastore and could cause a cluster outage. Remove the file(s) from disk and restart the server." >&2
        rm -rf "$t"; return 1
      fi
    fi
    if ! cmp -s "$t/$f" "$K3S_TLS/$f" 2>/dev/null; then
      case $f in *.key) umask 077 ;; *) umask 022 ;; esac
      cp -p "$t/$f" "$K3S_TLS/$f.tmp" && mv "$K3S_TLS/$f.tmp" "$K3S_TLS/$f"
    fi
  done
  umask 022
  rm -rf "$t"
}

# k3s_print_token: server/token pinning the server CA's hash as it now is.
k3s_print_token() {
  local tok=/var/lib/rancher/k3s/server/token creds
  creds=$(sed 's/^K10[0-9a-f]*:://' "$tok")
  umask 077
  echo "K10$(k3s_ca_hash "$K3S_TLS/server-ca.crt")::$creds" > "$tok.tmp"
  mv "$tok.tmp" "$tok"
  umask 022
}
