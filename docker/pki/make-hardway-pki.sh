#!/usr/bin/env bash
# Makes a binary ("Kubernetes the hard way") PKI and layout for the test fleet with openssl
# only (never with kcert), per node as that node's filesystem: OUT/<node>/var/lib/kubernetes/...
# As the binary guides do (Kelsey Hightower's kubernetes-the-hard-way and those after it):
#   * ONE CA for everything: /var/lib/kubernetes/ca.pem + ca-key.pem on control-plane nodes,
#     ca.pem alone on workers, a copy at /etc/etcd/ca.pem for etcd;
#   * one kubernetes.pem (CN=kubernetes, every control-plane address and name) serving the
#     apiserver and etcd (server and peer), and the apiserver's client cert to etcd and kubelets;
#   * the CA key doubling as the service-account key (--service-account-key-file,
#     --service-account-signing-key-file, --service-account-private-key-file = ca-key.pem);
#   * kubeconfigs with embedded data as `kubectl config set-credentials --embed-certs` writes
#     them; the kubelet's kubeconfig naming a TLS-bootstrapped client cert file instead, and
#     its bootstrap kubeconfig (a token and the CA); a copy of the admin kubeconfig in the SSH
#     user ops's ~/.kube/config;
#   * a CA-signed kubelet serving cert /var/lib/kubelet/<node>.pem per node;
#   * systemd units in /etc/systemd/system: the apiserver's flags in an EnvironmentFile
#     (KUBE_APISERVER_OPTS, as the binary-install guides write /opt/kubernetes/cfg/*.conf), its
#     port in a drop-in, etcd configured by ETCD_* variables, the controller-manager, scheduler,
#     kubelet and kube-proxy flags in ExecStart= continuation lines.
#
# usage: make-hardway-pki.sh OUT NAME:IP:ROLE [NAME:IP:ROLE ...]   (ROLE: cp or worker)
set -euo pipefail
umask 022
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
out=$1; shift
nodes=("$@")
ca_dir="$out/.ca"
mkdir -p "$ca_dir"

# The guides' csr subjects: C=US, L=Portland, O=<group>, OU=Kubernetes The Hard Way, ST=Oregon.
subj() { echo "/C=US/ST=Oregon/L=Portland/O=$1/OU=Kubernetes The Hard Way/CN=$2"; }

# leaf BASE SUBJECT EKU [SANS]: BASE-key.pem (PKCS#1, as cfssl, the guides' tool, writes keys)
# and BASE.pem, signed by the one CA.
leaf() {
  leaf_ext "$3" "${4:-}" subjectKeyIdentifier=hash |
    sign "$1-key.pem" "$1.pem" "$ca_dir/ca.pem" "$ca_dir/ca-key.pem" "$2" -sha256
}

# kubeconfig FILE SERVER USER CERT KEY: as `kubectl config set-cluster kubernetes-the-hard-way
# --certificate-authority=ca.pem --embed-certs=true --server=...`, `set-credentials USER
# --client-certificate=... --client-key=... --embed-certs=true`, `set-context default` and
# `use-context default` write it.
kubeconfig() { embedded_kubeconfig "$1" kubernetes-the-hard-way default "$3" "$2" "$ca_dir/ca.pem" "$4" "$5"; }

# unit FILE DESCRIPTION DOCUMENTATION [LINE...] < SERVICE: a systemd service unit as the guides
# write them: [Unit] with DESCRIPTION, DOCUMENTATION and each LINE, [Service] with the lines read
# from stdin and Restart=on-failure, RestartSec=5, and [Install] WantedBy=multi-user.target.
unit() {
  local file=$1 description=$2 documentation=$3 line; shift 3
  {
    echo "[Unit]"
    echo "Description=$description"
    echo "Documentation=$documentation"
    for line in "$@"; do echo "$line"; done
    echo
    echo "[Service]"
    cat
    echo "Restart=on-failure"
    echo "RestartSec=5"
    echo
    echo "[Install]"
    echo "WantedBy=multi-user.target"
  } > "$file"
}

# The one CA.
self_signed "$ca_dir/ca-key.pem" "$ca_dir/ca.pem" 3650 "/C=US/ST=Oregon/L=Portland/O=Kubernetes/OU=CA/CN=Kubernetes" -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash"

cp_ips="" cp_names="" etcd_servers="" initial_cluster="" first_cp_ip=""
for spec in "${nodes[@]}"; do
  IFS=: read -r name ip role <<<"$spec"
  [ "$role" = cp ] || continue
  [ -n "$first_cp_ip" ] || first_cp_ip=$ip
  cp_ips="$cp_ips,IP:$ip"
  cp_names="$cp_names,DNS:$name"
  etcd_servers="${etcd_servers:+$etcd_servers,}https://$ip:2379"
  initial_cluster="${initial_cluster:+$initial_cluster,}$name=https://$ip:2380"
done
[ -n "$first_cp_ip" ] || { echo "make-hardway-pki.sh: no control-plane node given" >&2; exit 2; }

# kubernetes.pem: the apiserver's serving cert (every control-plane address, the service IP,
# loopback and the default service names; localhost also lets nginx, which matches DNS names
# only, verify etcd with it), and the same cert as client and as etcd's server and peer cert.
t=$(mktemp -d)
leaf "$t/kubernetes" "$(subj Kubernetes kubernetes)" serverAuth,clientAuth \
  "IP:10.32.0.1${cp_ips},IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local${cp_names}"
leaf "$t/admin" "$(subj system:masters admin)" clientAuth
leaf "$t/cm" "$(subj system:kube-controller-manager system:kube-controller-manager)" clientAuth
leaf "$t/sched" "$(subj system:kube-scheduler system:kube-scheduler)" clientAuth
leaf "$t/proxy" "$(subj system:node-proxier system:kube-proxy)" clientAuth

for spec in "${nodes[@]}"; do
  IFS=: read -r name ip role <<<"$spec"
  root="$out/$name"
  lib="$root/var/lib/kubernetes"
  units="$root/etc/systemd/system"
  mkdir -p "$lib" "$units" "$root/var/lib/kubelet/pki" "$root/var/lib/kube-proxy"
  cp "$ca_dir/ca.pem" "$lib/ca.pem"
  server="https://127.0.0.1:6443"
  [ "$role" = cp ] || server="https://$first_cp_ip:6443"

  # --- kubelet (every node: the apiserver reaches 10250 everywhere) ---
  kl="$root/var/lib/kubelet"
  leaf "$kl/$name" "$(subj system:nodes "system:node:$name")" serverAuth,clientAuth "DNS:$name,IP:$ip"
  # The client cert as TLS bootstrapping leaves it: the CSR signed by the controller-manager
  # (--cluster-signing-cert-file = ca.pem), cert and key in one file, a -current link to it.
  leaf "$t/client-$name" "/O=system:nodes/CN=system:node:$name" clientAuth
  kubelet_client_pem "$kl/pki" "$t/client-$name.pem" "$t/client-$name-key.pem"
  write_kubeconfig "$kl/kubeconfig" kubernetes-the-hard-way default "system:node:$name" "$server" \
    "certificate-authority: /var/lib/kubernetes/ca.pem" \
    "client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem" \
    "client-key: /var/lib/kubelet/pki/kubelet-client-current.pem"
  # The bootstrap kubeconfig TLS bootstrapping started from: a token and the CA, no client cert
  # (the kubelet reads it again only when its own client cert is gone or expired).
  write_kubeconfig "$kl/bootstrap-kubeconfig" kubernetes-the-hard-way default kubelet-bootstrap "$server" \
    "certificate-authority-data: $(b64 "$ca_dir/ca.pem")" "token: 07401b.f395accd246ae52d" ""
  cat > "$kl/kubelet-config.yaml" <<CFG
kind: KubeletConfiguration
apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: "/var/lib/kubernetes/ca.pem"
authorization:
  mode: Webhook
clusterDomain: "cluster.local"
clusterDNS:
  - "10.32.0.10"
resolvConf: "/run/systemd/resolve/resolv.conf"
runtimeRequestTimeout: "15m"
rotateCertificates: false
tlsCertFile: "/var/lib/kubelet/$name.pem"
tlsPrivateKeyFile: "/var/lib/kubelet/$name-key.pem"
CFG
  unit "$units/kubelet.service" "Kubernetes Kubelet" https://github.com/kubernetes/kubernetes After=containerd.service Requires=containerd.service <<UNIT
ExecStart=/usr/local/bin/kubelet \\
  --config=/var/lib/kubelet/kubelet-config.yaml \\
  --container-runtime-endpoint=unix:///var/run/containerd/containerd.sock \\
  --kubeconfig=/var/lib/kubelet/kubeconfig \\
  --bootstrap-kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig \\
  --register-node=true \\
  --v=2
UNIT

  # --- kube-proxy (every node) ---
  kubeconfig "$root/var/lib/kube-proxy/kubeconfig" "$server" system:kube-proxy "$t/proxy.pem" "$t/proxy-key.pem"
  unit "$units/kube-proxy.service" "Kubernetes Kube Proxy" https://github.com/kubernetes/kubernetes <<UNIT
ExecStart=/usr/local/bin/kube-proxy \\
  --cluster-cidr=10.200.0.0/16 \\
  --kubeconfig=/var/lib/kube-proxy/kubeconfig \\
  --proxy-mode=iptables
UNIT

  [ "$role" = cp ] || continue

  # --- control plane ---
  cp -p "$ca_dir/ca-key.pem" "$lib/ca-key.pem"
  cp "$t/kubernetes.pem" "$lib/kubernetes.pem"
  cp -p "$t/kubernetes-key.pem" "$lib/kubernetes-key.pem"
  mkdir -p "$root/etc/etcd" "$root/var/lib/etcd" "$root/opt/kubernetes/cfg" "$root/etc/kubernetes/config" "$root/root"
  chmod 700 "$root/var/lib/etcd"
  cp "$ca_dir/ca.pem" "$root/etc/etcd/ca.pem"
  cp "$t/kubernetes.pem" "$root/etc/etcd/kubernetes.pem"
  cp -p "$t/kubernetes-key.pem" "$root/etc/etcd/kubernetes-key.pem"
  kubeconfig "$root/root/admin.kubeconfig" "$server" admin "$t/admin.pem" "$t/admin-key.pem"
  # The SSH user ops keeps a copy of the admin kubeconfig as kubectl's default (its owner
  # set by docker/fleet): kcert reads it when it logs in as ops.
  mkdir -p "$root/home/ops/.kube"
  kubeconfig "$root/home/ops/.kube/config" "$server" admin "$t/admin.pem" "$t/admin-key.pem"
  kubeconfig "$lib/kube-controller-manager.kubeconfig" "$server" system:kube-controller-manager "$t/cm.pem" "$t/cm-key.pem"
  kubeconfig "$lib/kube-scheduler.kubeconfig" "$server" system:kube-scheduler "$t/sched.pem" "$t/sched-key.pem"

  # etcd: everything from ETCD_* variables (etcd maps each --flag-name to ETCD_FLAG_NAME,
  # etcd docs "Configuration options"), read from an optional environment file.
  unit "$units/etcd.service" etcd https://github.com/etcd-io/etcd <<UNIT
Type=notify
EnvironmentFile=-/etc/etcd/etcd.conf
ExecStart=/usr/local/bin/etcd
UNIT
  cat > "$root/etc/etcd/etcd.conf" <<ENV
# etcd reads its configuration from these variables (see the etcd.service unit).
ETCD_NAME=$name
ETCD_DATA_DIR=/var/lib/etcd
ETCD_LISTEN_CLIENT_URLS="https://$ip:2379,https://127.0.0.1:2379"
ETCD_ADVERTISE_CLIENT_URLS=https://$ip:2379
ETCD_LISTEN_PEER_URLS=https://$ip:2380
ETCD_INITIAL_ADVERTISE_PEER_URLS=https://$ip:2380
ETCD_INITIAL_CLUSTER="$initial_cluster"
ETCD_INITIAL_CLUSTER_TOKEN=etcd-cluster-0
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_CERT_FILE=/etc/etcd/kubernetes.pem
ETCD_KEY_FILE=/etc/etcd/kubernetes-key.pem
ETCD_TRUSTED_CA_FILE=/etc/etcd/ca.pem
ETCD_CLIENT_CERT_AUTH=true
ETCD_PEER_CERT_FILE=/etc/etcd/kubernetes.pem
ETCD_PEER_KEY_FILE=/etc/etcd/kubernetes-key.pem
ETCD_PEER_TRUSTED_CA_FILE=/etc/etcd/ca.pem
ETCD_PEER_CLIENT_CERT_AUTH=true
ENV

  # kube-apiserver: flags in an environment file, the port from a drop-in's Environment=.
  unit "$units/kube-apiserver.service" "Kubernetes API Server" https://github.com/kubernetes/kubernetes <<'UNIT'
EnvironmentFile=-/opt/kubernetes/cfg/kube-apiserver.conf
ExecStart=/usr/local/bin/kube-apiserver $KUBE_APISERVER_OPTS --secure-port=${SECURE_PORT}
UNIT
  mkdir -p "$units/kube-apiserver.service.d"
  cat > "$units/kube-apiserver.service.d/10-port.conf" <<'UNIT'
[Service]
Environment="SECURE_PORT=6443"
UNIT
  cat > "$root/opt/kubernetes/cfg/kube-apiserver.conf" <<ENV
KUBE_APISERVER_OPTS="--advertise-address=$ip \\
  --allow-privileged=true \\
  --apiserver-count=3 \\
  --audit-log-maxage=30 \\
  --audit-log-path=/var/log/audit.log \\
  --authorization-mode=Node,RBAC \\
  --bind-address=0.0.0.0 \\
  --client-ca-file=/var/lib/kubernetes/ca.pem \\
  --enable-admission-plugins=NamespaceLifecycle,NodeRestriction,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota \\
  --etcd-cafile=/var/lib/kubernetes/ca.pem \\
  --etcd-certfile=/var/lib/kubernetes/kubernetes.pem \\
  --etcd-keyfile=/var/lib/kubernetes/kubernetes-key.pem \\
  --etcd-servers=$etcd_servers \\
  --event-ttl=1h \\
  --kubelet-certificate-authority=/var/lib/kubernetes/ca.pem \\
  --kubelet-client-certificate=/var/lib/kubernetes/kubernetes.pem \\
  --kubelet-client-key=/var/lib/kubernetes/kubernetes-key.pem \\
  --runtime-config=api/all=true \\
  --service-account-issuer=https://$first_cp_ip:6443 \\
  --service-account-key-file=/var/lib/kubernetes/ca-key.pem \\
  --service-account-signing-key-file=/var/lib/kubernetes/ca-key.pem \\
  --service-cluster-ip-range=10.32.0.0/24 \\
  --service-node-port-range=30000-32767 \\
  --tls-cert-file=/var/lib/kubernetes/kubernetes.pem \\
  --tls-private-key-file=/var/lib/kubernetes/kubernetes-key.pem \\
  --v=2"
ENV

  unit "$units/kube-controller-manager.service" "Kubernetes Controller Manager" https://github.com/kubernetes/kubernetes <<'UNIT'
ExecStart=/usr/local/bin/kube-controller-manager \
  --bind-address=0.0.0.0 \
  --cluster-cidr=10.200.0.0/16 \
  --cluster-name=kubernetes \
  --cluster-signing-cert-file=/var/lib/kubernetes/ca.pem \
  --cluster-signing-key-file=/var/lib/kubernetes/ca-key.pem \
  --kubeconfig=/var/lib/kubernetes/kube-controller-manager.kubeconfig \
  --leader-elect=true \
  --root-ca-file=/var/lib/kubernetes/ca.pem \
  --service-account-private-key-file=/var/lib/kubernetes/ca-key.pem \
  --service-cluster-ip-range=10.32.0.0/24 \
  --use-service-account-credentials=true \
  --v=2
UNIT

  unit "$units/kube-scheduler.service" "Kubernetes Scheduler" https://github.com/kubernetes/kubernetes <<'UNIT'
ExecStart=/usr/local/bin/kube-scheduler \
  --config=/etc/kubernetes/config/kube-scheduler.yaml \
  --v=2
UNIT
  cat > "$root/etc/kubernetes/config/kube-scheduler.yaml" <<'CFG'
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: "/var/lib/kubernetes/kube-scheduler.kubeconfig"
leaderElection:
  leaderElect: true
CFG
done
rm -rf "$t" "$ca_dir"
