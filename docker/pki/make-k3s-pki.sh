#!/usr/bin/env bash
# Makes a k3s PKI and layout with openssl only (never with kcert), per node as that node's
# filesystem: OUT/<node>/var/lib/rancher/k3s/..., OUT/<node>/etc/rancher/k3s/... As k3s lays
# them out (k3s pkg/daemons/control/deps/deps.go, pkg/agent/config/config.go, the install
# script), for a cluster with k3s's default self-signed CAs:
#   * five CAs, ECDSA P-256 with "EC PRIVATE KEY" keys, valid 10 years, named
#     k3s-client-ca@T, k3s-server-ca@T, k3s-request-header-ca@T, etcd-server-ca@T and
#     etcd-peer-ca@T, in server/tls (etcd's in server/tls/etcd); client-ca.nochain.crt and
#     server-ca.nochain.crt beside them; service.key (RSA) for service-account tokens and
#     service.current.key, the one they are signed with;
#   * leaves valid 365 days, each .crt holding the leaf then its CA (as k3s writes them);
#   * server/cred/*.kubeconfig naming files (certificate-authority: server/tls/server-ca.crt,
#     client-certificate/-key), as deps.go's kubeconfig template, on https://127.0.0.1:6444;
#   * /etc/rancher/k3s/k3s.yaml: the admin kubeconfig with everything embedded, on :6443;
#   * server/tls/dynamic-cert.json: the supervisor's serving cert for :6443 (CN=k3s, O=k3s)
#     as dynamiclistener's file storage keeps it (a kubernetes.io/tls Secret as JSON, named
#     k3s-serving in kube-system);
#   * every node an agent too: agent/client-ca.crt, server-ca.crt, client-kubelet,
#     serving-kubelet, client-kube-proxy, client-k3s-controller and the kubeconfigs naming them;
#   * the join token: server/token (node-token a link to it) "K10<hash>::server:<secret>", the
#     hash being the sha256 of server-ca.crt's bytes (one certificate; k3s's hashCA); joining
#     servers and agents carry it as K3S_TOKEN in /etc/systemd/system/k3s(-agent).service.env,
#     as k3s's install script writes it.
#
#   * on servers, the embedded etcd's config as k3s writes it (server/db/etcd/config, etcd's
#     YAML config file: pkg/etcd/etcd.go), every server a member;
#
# With PRODUCT=rke2 (as k3s's contrib/util/rotate-default-ca-certs.sh takes it), an RKE2
# cluster's: RKE2 runs k3s's code with version.Program = rke2, so the same files under
# /var/lib/rancher/rke2, rke2 in the names k3s builds from the program, and RKE2's ports and
# units: the apiserver itself on :6443 (the servers' kubeconfigs, and an agent's through its
# load balancer on 127.0.0.1:6443), the supervisor on :9345 (rke2 pkg/cli/defaults), the join
# token in /etc/rancher/rke2/config.yaml (rke2's docs), units rke2-server and rke2-agent.
# usage: [PRODUCT=k3s|rke2] make-k3s-pki.sh OUT NAME:IP:ROLE [NAME:IP:ROLE ...]   (ROLE: server
#        or agent, or the test fleet's cp or worker; the first server is the one the others join)
set -euo pipefail
umask 022
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=k3s-lib.sh
. "$(dirname "$0")/k3s-lib.sh"
P=${PRODUCT:-k3s}
case $P in
  k3s) api_port=6444 sup_port=6443 server_unit=k3s agent_unit=k3s-agent ;;
  rke2) api_port=6443 sup_port=9345 server_unit=rke2-server agent_unit=rke2-agent ;;
  *) echo "make-k3s-pki.sh: PRODUCT is k3s or rke2, not $P" >&2; exit 2 ;;
esac
out=$1; shift
nodes=("$@")
ca_dir="$out/.ca"
mkdir -p "$ca_dir/etcd"
ts=$(date +%s)


# ca BASE CN: BASE.key and the self-signed BASE.crt.
ca() {
  eckey "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.crt" -days 3650 -subj "/CN=$2" -set_serial "$(serial)" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null
}

# file_kubeconfig FILE SERVER CA CERT KEY: deps.go's kubeconfig template (mode 600).
file_kubeconfig() {
  cat > "$1" <<KC
apiVersion: v1
clusters:
- cluster:
    server: $2
    certificate-authority: $3
  name: local
contexts:
- context:
    cluster: local
    namespace: default
    user: user
  name: Default
current-context: Default
kind: Config
preferences: {}
users:
- name: user
  user:
    client-certificate: $4
    client-key: $5
KC
  chmod 600 "$1"
}

ca "$ca_dir/client-ca" "$P-client-ca@$ts"
ca "$ca_dir/server-ca" "$P-server-ca@$ts"
ca "$ca_dir/request-header-ca" "$P-request-header-ca@$ts"
ca "$ca_dir/etcd/server-ca" "etcd-server-ca@$ts"
ca "$ca_dir/etcd/peer-ca" "etcd-peer-ca@$ts"
openssl genrsa -traditional -out "$ca_dir/service.key" 2048 2>/dev/null
secret=$(openssl rand -hex 16)
token="K10$(sha256sum < "$ca_dir/server-ca.crt" | cut -d' ' -f1)::server:$secret"
first_server_ip=""
initial_cluster=""
role_of() { case $1 in server|cp) echo server ;; agent|worker) echo agent ;; *) echo "make-k3s-pki.sh: unknown role $1" >&2; exit 2 ;; esac; }
for spec in "${nodes[@]}"; do
  IFS=: read -r name ip role <<<"$spec"
  role=$(role_of "$role")
  if [ "$role" = server ]; then
    [ -n "$first_server_ip" ] || first_server_ip=$ip
    initial_cluster="${initial_cluster:+$initial_cluster,}$name-$ip=https://$ip:2380"
  fi
done

for spec in "${nodes[@]}"; do
  IFS=: read -r name ip role <<<"$spec"
  role=$(role_of "$role")
  root="$out/$name"
  data="$root/var/lib/rancher/$P"
  agent="$data/agent"
  mkdir -p "$agent" "$root/etc/rancher/$P" "$root/etc/systemd/system"
  unit=$agent_unit
  [ "$role" = server ] && unit=$server_unit

  if [ "$role" = server ]; then
    tls="$data/server/tls"
    cred="$data/server/cred"
    mkdir -p "$tls/etcd" "$cred"
    for f in client-ca server-ca request-header-ca etcd/server-ca etcd/peer-ca; do
      cp -p "$ca_dir/$f.crt" "$ca_dir/$f.key" "$tls/$(dirname "$f")/"
    done
    cp "$ca_dir/client-ca.crt" "$tls/client-ca.nochain.crt"
    cp "$ca_dir/server-ca.crt" "$tls/server-ca.nochain.crt"
    cp -p "$ca_dir/service.key" "$tls/service.key"
    cp -p "$ca_dir/service.key" "$tls/service.current.key"
    api=https://127.0.0.1:$api_port
    T=/var/lib/rancher/$P/server/tls
    k3s_server_leaves "$tls" "$name" "$ip"
    for spec2 in "admin|admin" "supervisor|supervisor" "controller|controller" "scheduler|scheduler" \
                 "kube-apiserver|api-server" "$P-cloud-controller|cloud-controller"; do
      IFS="|" read -r base kc <<<"$spec2"
      file_kubeconfig "$cred/$kc.kubeconfig" "$api" "$T/server-ca.crt" "$T/client-$base.crt" "$T/client-$base.key"
    done
    apisans=$(k3s_apiserver_sans "$name" "$ip")

    # The supervisor's dynamic listener cert for its port, signed by the server CA.
    t=$(mktemp -d)
    k3s_leaf "$t/serving" "$tls/server-ca" "/O=$P/CN=$P" serverAuth "$apisans"
    cat > "$tls/dynamic-cert.json" <<J
{"kind":"Secret","apiVersion":"v1","metadata":{"name":"$P-serving","namespace":"kube-system","creationTimestamp":null,"annotations":{"listener.cattle.io/cn-127.0.0.1":"127.0.0.1","listener.cattle.io/cn-$ip":"$ip","listener.cattle.io/cn-kubernetes":"kubernetes","listener.cattle.io/cn-localhost":"localhost","listener.cattle.io/cn-$name":"$name","listener.cattle.io/fingerprint":"SHA1=$(openssl x509 -in "$t/serving.crt" -noout -fingerprint -sha1 | cut -d= -f2 | tr -d :)"}},"data":{"tls.crt":"$(b64 "$t/serving.crt")","tls.key":"$(b64 "$t/serving.key")"},"type":"kubernetes.io/tls"}
J
    chmod 600 "$tls/dynamic-cert.json"

    # The admin kubeconfig, everything embedded, on :6443 (k3s's supervisor, rke2's apiserver).
    embedded_kubeconfig "$root/etc/rancher/$P/$P.yaml" default default default https://127.0.0.1:6443 \
      "$tls/server-ca.crt" "$tls/client-admin.crt" "$tls/client-admin.key"
    rm -rf "$t"

    # The embedded etcd's config (k3s's pkg/etcd: member name <node>-<ip>, data in db/etcd).
    mkdir -p "$data/server/db/etcd"
    cat > "$data/server/db/etcd/config" <<E
name: $name-$ip
data-dir: /var/lib/rancher/$P/server/db/etcd
listen-client-urls: https://127.0.0.1:2379,https://$ip:2379
advertise-client-urls: https://$ip:2379
listen-peer-urls: https://127.0.0.1:2380,https://$ip:2380
initial-advertise-peer-urls: https://$ip:2380
initial-cluster: $initial_cluster
initial-cluster-state: new
client-transport-security:
  cert-file: $T/etcd/server-client.crt
  key-file: $T/etcd/server-client.key
  trusted-ca-file: $T/etcd/server-ca.crt
  client-cert-auth: true
peer-transport-security:
  cert-file: $T/etcd/peer-server-client.crt
  key-file: $T/etcd/peer-server-client.key
  trusted-ca-file: $T/etcd/peer-ca.crt
  client-cert-auth: true
E
    chmod 600 "$data/server/db/etcd/config"

    echo "$token" > "$data/server/token"
    chmod 600 "$data/server/token"
    ln -s "/var/lib/rancher/$P/server/token" "$data/server/node-token"
  fi

  # Every node runs the agent: kubelet, kube-proxy and the k3s (rke2) controller's files.
  A=/var/lib/rancher/$P/agent
  cp "$ca_dir/client-ca.crt" "$ca_dir/server-ca.crt" "$agent/"
  k3s_agent_leaves "$agent" "$ca_dir" "$name" "$ip"
  file_kubeconfig "$agent/kubelet.kubeconfig" "https://127.0.0.1:$api_port" "$A/server-ca.crt" "$A/client-kubelet.crt" "$A/client-kubelet.key"
  file_kubeconfig "$agent/kubeproxy.kubeconfig" "https://127.0.0.1:$api_port" "$A/server-ca.crt" "$A/client-kube-proxy.crt" "$A/client-kube-proxy.key"
  file_kubeconfig "$agent/${P}controller.kubeconfig" "https://127.0.0.1:$api_port" "$A/server-ca.crt" "$A/client-$P-controller.crt" "$A/client-$P-controller.key"

  # Every node but the first server joined with the secure token.
  if [ "$P" = rke2 ]; then
    if [ "$ip" != "$first_server_ip" ]; then
      printf "server: https://%s:%s\ntoken: %s\n" "$first_server_ip" "$sup_port" "$token" > "$root/etc/rancher/rke2/config.yaml"
      chmod 600 "$root/etc/rancher/rke2/config.yaml"
    fi
  elif [ "$ip" != "$first_server_ip" ]; then
    printf "K3S_TOKEN='%s'\nK3S_URL='https://%s:%s'\n" "$token" "$first_server_ip" "$sup_port" > "$root/etc/systemd/system/$unit.service.env"
    chmod 600 "$root/etc/systemd/system/$unit.service.env"
  else
    : > "$root/etc/systemd/system/$unit.service.env"
  fi
done
