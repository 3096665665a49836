# shellcheck shell=bash
# The leaves of a k3s node as k3s makes them (an RKE2 node's with PRODUCT=rke2: k3s's code
# names them from version.Program), with openssl: the table of k3s's
# pkg/daemons/control/deps/deps.go (genClientCerts, genServerCerts, genETCDCerts) and, for the
# agent's files, pkg/agent/config. Shared by make-k3s-pki.sh (a new cluster's files) and the k3s
# STAND-IN's start (docker/node/k3s-unit), which makes again, as k3s does at every start, each
# leaf that is missing or within K3S_RENEW_DAYS days of expiry (config.CertificateRenewDays),
# keeping a key that is there (certutil.LoadOrGenerateKeyFile). Needs lib.sh (leaf_ext, serial).

K3S_RENEW_DAYS=120

# eckey FILE: a new ECDSA P-256 key, SEC1 ("BEGIN EC PRIVATE KEY", as k3s writes them), mode 600.
eckey() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; chmod 600 "$1"; }

# k3s_leaf BASE CA_BASE SUBJECT EKU [SANS]: BASE.crt (the leaf, then its CA) for the key
# BASE.key (made when missing). With K3S_ONLY_STALE=1, a leaf in date for K3S_RENEW_DAYS more
# days is left as it is.
k3s_leaf() {
  if [ "${K3S_ONLY_STALE:-0}" = 1 ] && [ -f "$1.crt" ] && [ -f "$1.key" ] &&
    openssl x509 -in "$1.crt" -noout -checkend $((K3S_RENEW_DAYS * 86400)) >/dev/null 2>&1 &&
    k3s_signed_by_first "$1.crt" "$2.crt"; then
    return 0
  fi
  [ -f "$1.key" ] || eckey "$1.key"
  local ext; ext=$(mktemp)
  leaf_ext "$4" "${5:-}" > "$ext"
  openssl req -new -key "$1.key" -subj "$3" 2>/dev/null |
    openssl x509 -req -CA "$2.crt" -CAkey "$2.key" -set_serial "$(serial)" -days 365 -sha256 -extfile "$ext" -out "$1.crt.tmp" 2>/dev/null
  rm -f "$ext"
  # The leaf, then its CA file, as k3s writes it; on the fleet in issuer order (the stand-ins'
  # OpenSSL verifiers, unlike k3s's Go ones, stop at a self-signed root met before the
  # cross-signed one: docker/node/lib.sh, go_chain).
  if command -v issuer_order >/dev/null 2>&1; then issuer_order "$2.crt" >> "$1.crt.tmp"; else cat "$2.crt" >> "$1.crt.tmp"; fi
  mv "$1.crt.tmp" "$1.crt"
}

# k3s_signed_by_first LEAF CA: whether LEAF's certificate is signed by the first certificate of
# the CA file (after a CA rotation the first is the new intermediate: deps.go re-issues the rest).
k3s_signed_by_first() {
  local t ok=1
  t=$(mktemp)
  openssl x509 -in "$2" -out "$t" 2>/dev/null && openssl x509 -in "$1" 2>/dev/null | openssl verify -partial_chain -CAfile "$t" >/dev/null 2>&1 && ok=0
  rm -f "$t"
  return $ok
}

# k3s_apiserver_sans NAME IP: the apiserver's (and the supervisor's) names.
k3s_apiserver_sans() {
  echo "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$1,IP:127.0.0.1,IP:::1,IP:$2,IP:10.43.0.1"
}

# k3s_server_leaves TLS NAME IP: every leaf of a server's server/tls, from the CAs there.
k3s_server_leaves() {
  local tls=$1 name=$2 ip=$3 spec base subject
  for spec in "admin|/O=system:masters/CN=system:admin" \
              "supervisor|/O=system:masters/CN=system:${PRODUCT:-k3s}-supervisor" \
              "controller|/CN=system:kube-controller-manager" \
              "scheduler|/CN=system:kube-scheduler" \
              "kube-apiserver|/O=system:masters/CN=system:apiserver" \
              "kube-proxy|/CN=system:kube-proxy" \
              "${PRODUCT:-k3s}-controller|/CN=system:${PRODUCT:-k3s}-controller" \
              "${PRODUCT:-k3s}-cloud-controller|/CN=${PRODUCT:-k3s}-cloud-controller-manager"; do
    IFS="|" read -r base subject <<<"$spec"
    k3s_leaf "$tls/client-$base" "$tls/client-ca" "$subject" clientAuth
  done
  # The keys every agent's kubelet certificates are made for (router.go hands them out).
  [ -f "$tls/client-kubelet.key" ] || eckey "$tls/client-kubelet.key"
  [ -f "$tls/serving-kubelet.key" ] || eckey "$tls/serving-kubelet.key"
  k3s_leaf "$tls/serving-kube-apiserver" "$tls/server-ca" "/CN=kube-apiserver" serverAuth "$(k3s_apiserver_sans "$name" "$ip")"
  k3s_leaf "$tls/client-auth-proxy" "$tls/request-header-ca" "/CN=system:auth-proxy" clientAuth
  k3s_leaf "$tls/etcd/client" "$tls/etcd/server-ca" "/CN=etcd-client" clientAuth
  k3s_leaf "$tls/etcd/server-client" "$tls/etcd/server-ca" "/CN=etcd-server" serverAuth,clientAuth "DNS:kine.sock,DNS:localhost,DNS:$name,IP:127.0.0.1,IP:::1,IP:$ip"
  k3s_leaf "$tls/etcd/peer-server-client" "$tls/etcd/peer-ca" "/CN=etcd-peer" serverAuth,clientAuth "DNS:kine.sock,DNS:localhost,DNS:$name,IP:127.0.0.1,IP:::1,IP:$ip"
}

# k3s_agent_leaves AGENT CAS NAME IP: an agent's own leaves in AGENT, signed by the CAs in CAS
# (a server's server/tls: what the supervisor signs them with when the agent asks at start).
k3s_agent_leaves() {
  local agent=$1 cas=$2 name=$3 ip=$4
  k3s_leaf "$agent/client-kubelet" "$cas/client-ca" "/O=system:nodes/CN=system:node:$name" clientAuth
  k3s_leaf "$agent/serving-kubelet" "$cas/server-ca" "/CN=$name" serverAuth "DNS:$name,DNS:localhost,IP:127.0.0.1,IP:$ip"
  k3s_leaf "$agent/client-kube-proxy" "$cas/client-ca" "/CN=system:kube-proxy" clientAuth
  k3s_leaf "$agent/client-${PRODUCT:-k3s}-controller" "$cas/client-ca" "/CN=system:${PRODUCT:-k3s}-controller" clientAuth
}
