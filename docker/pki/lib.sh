# shellcheck shell=bash
# Helpers shared by make-kubeadm-pki.sh, make-hardway-pki.sh and make-k3s-pki.sh, which source this file from
# their own directory (`. "$(dirname "$0")/lib.sh"`): keys, certificates and kubeconfigs made
# with openssl only. The callers run with `set -euo pipefail`.

# key FILE: a new 2048-bit RSA key in PKCS#1 form ("BEGIN RSA PRIVATE KEY", as kubeadm and
# cfssl write them; so does `openssl genrsa -traditional`), mode 600.
key() { openssl genrsa -traditional -out "$1" 2048 2>/dev/null; chmod 600 "$1"; }

# serial: a random 64-bit serial number for openssl's -set_serial.
serial() { echo "0x$(openssl rand -hex 8)"; }

# b64 FILE: FILE in base64 on one line, as a kubeconfig embeds it.
b64() { base64 -w0 < "$1"; }

# self_signed KEY CRT DAYS SUBJECT [OPTION...]: a new key KEY and a self-signed certificate CRT
# for SUBJECT, valid DAYS days, with a random serial; each OPTION (-sha256, -addext ...) goes to
# `openssl req` as it is.
self_signed() {
  local k=$1 crt=$2 days=$3 subject=$4; shift 4
  key "$k"
  openssl req -x509 -new -key "$k" -out "$crt" -days "$days" -subj "$subject" -set_serial "$(serial)" "$@" 2>/dev/null
}

# leaf_ext EKU SANS [LINE...]: a leaf certificate's extensions, one per line as -extfile reads
# them: not a CA, the key usages digitalSignature and keyEncipherment, extendedKeyUsage=EKU, each
# LINE, the issuer's key id, and subjectAltName=SANS when SANS is not empty.
leaf_ext() {
  local eku=$1 sans=$2 line; shift 2
  echo "basicConstraints=critical,CA:FALSE"
  echo "keyUsage=critical,digitalSignature,keyEncipherment"
  echo "extendedKeyUsage=$eku"
  for line in "$@"; do echo "$line"; done
  echo "authorityKeyIdentifier=keyid"
  if [ -n "$sans" ]; then echo "subjectAltName=$sans"; fi
}

# sign KEY CRT CA_CRT CA_KEY SUBJECT [OPTION...] < EXTENSIONS: a new key KEY and a certificate
# CRT for SUBJECT signed by CA_CRT/CA_KEY, valid 365 days, with a random serial and the
# extensions read from stdin (leaf_ext's lines); each OPTION (-sha256) goes to `openssl x509`.
sign() {
  local k=$1 crt=$2 ca_crt=$3 ca_key=$4 subject=$5; shift 5
  key "$k"
  local ext; ext=$(mktemp)
  cat > "$ext"
  openssl req -new -key "$k" -subj "$subject" 2>/dev/null |
    openssl x509 -req -CA "$ca_crt" -CAkey "$ca_key" -set_serial "$(serial)" -days 365 "$@" -extfile "$ext" -out "$crt" 2>/dev/null
  rm -f "$ext"
}

# write_kubeconfig FILE CLUSTER CONTEXT USER SERVER CA CERT KEY: a kubeconfig (mode 600) with one
# cluster, one user and one context, laid out as kubectl writes it. CA, CERT and KEY are whole
# `name: value` lines: certificate-authority-data (or certificate-authority: PATH),
# client-certificate-data (or client-certificate: PATH), client-key-data (or client-key: PATH).
write_kubeconfig() {
  cat > "$1" <<KC
apiVersion: v1
clusters:
- cluster:
    $6
    server: $5
  name: $2
contexts:
- context:
    cluster: $2
    user: $4
  name: $3
current-context: $3
kind: Config
preferences: {}
users:
- name: $4
  user:
    $7
    $8
KC
  chmod 600 "$1"
}

# embedded_kubeconfig FILE CLUSTER CONTEXT USER SERVER CA_CRT CERT KEY: write_kubeconfig with the
# CA certificate, the client certificate and its key embedded (`--embed-certs`).
embedded_kubeconfig() {
  write_kubeconfig "$1" "$2" "$3" "$4" "$5" "certificate-authority-data: $(b64 "$6")" \
    "client-certificate-data: $(b64 "$7")" "client-key-data: $(b64 "$8")"
}

# kubelet_client_pem PKI_DIR CRT KEY: the kubelet's client certificate as TLS bootstrapping
# leaves it: CRT and KEY in one dated file (mode 600) in PKI_DIR, and kubelet-client-current.pem
# there a link to it by its path on the node (/var/lib/kubelet/pki).
kubelet_client_pem() {
  local dir=$1 stamp; stamp=$(date -u +%Y-%m-%d-%H-%M-%S)
  cat "$2" "$3" > "$dir/kubelet-client-$stamp.pem"
  chmod 600 "$dir/kubelet-client-$stamp.pem"
  ln -s "/var/lib/kubelet/pki/kubelet-client-$stamp.pem" "$dir/kubelet-client-current.pem"
}
