#!/usr/bin/env bash
# Makes a kubeadm-layout PKI for the test fleet with openssl only (never with kcert), laid out
# per node as that node's filesystem: OUT/<node>/etc/kubernetes/..., OUT/<node>/var/lib/kubelet/...
# Subjects, SANs, usages, file names and static pod flags follow kubeadm v1.29.
#
# usage: make-kubeadm-pki.sh OUT NAME:IP:ROLE [NAME:IP:ROLE ...]   (ROLE: cp or worker)
set -euo pipefail
umask 022
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
out=$1; shift
nodes=("$@")
ca_dir="$out/.ca"
mkdir -p "$ca_dir"

# ca BASE CN
ca() {
  self_signed "$1.key" "$1.crt" 3650 "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
    -addext "subjectKeyIdentifier=hash" -addext "subjectAltName=DNS:$2"
}

# leaf BASE CA_BASE SUBJECT EKU [SANS]: BASE.key and BASE.crt, signed by CA_BASE.crt/CA_BASE.key.
leaf() { leaf_ext "$4" "${5:-}" | sign "$1.key" "$1.crt" "$2.crt" "$2.key" "$3"; }

# kubeconfig FILE SERVER CA_CRT USER CERT KEY
kubeconfig() { embedded_kubeconfig "$1" kubernetes "$4@kubernetes" "$4" "$2" "$3" "$5" "$6"; }

# Cluster-wide: the three CAs and the service-account key pair.
ca "$ca_dir/ca" kubernetes
mkdir -p "$ca_dir/etcd"
ca "$ca_dir/etcd/ca" etcd-ca
ca "$ca_dir/front-proxy-ca" front-proxy-ca
key "$ca_dir/sa.key"
openssl rsa -in "$ca_dir/sa.key" -pubout -out "$ca_dir/sa.pub" 2>/dev/null

first_cp_ip=""
initial_cluster=""
for spec in "${nodes[@]}"; do
  IFS=: read -r name ip role <<<"$spec"
  if [ "$role" = cp ]; then
    [ -n "$first_cp_ip" ] || first_cp_ip=$ip
    initial_cluster="${initial_cluster:+$initial_cluster,}$name=https://$ip:2380"
  fi
done

for spec in "${nodes[@]}"; do
  IFS=: read -r name ip role <<<"$spec"
  root="$out/$name"
  k="$root/etc/kubernetes"
  pki="$k/pki"
  mkdir -p "$pki/etcd" "$k/manifests" "$root/var/lib/kubelet/pki" "$root/var/lib/etcd"
  cp "$ca_dir/ca.crt" "$pki/ca.crt"

  # Kubelet: config, self-signed serving cert (client-go style: leaf then its own CA), client cert.
  ts=$(date +%s)
  kp="$root/var/lib/kubelet/pki"
  self_signed "$kp/kubelet-selfsigned-ca.key" "$kp/kubelet-selfsigned-ca.crt" 365 "/CN=$name-ca@$ts" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign"
  leaf "$kp/kubelet" "$kp/kubelet-selfsigned-ca" "/CN=$name@$ts" serverAuth "DNS:$name"
  cat "$kp/kubelet-selfsigned-ca.crt" >> "$kp/kubelet.crt"
  rm -f "$kp"/kubelet-selfsigned-ca.*
  leaf "$kp/client" "$ca_dir/ca" "/O=system:nodes/CN=system:node:$name" clientAuth
  kubelet_client_pem "$kp" "$kp/client.crt" "$kp/client.key"
  rm -f "$kp/client.crt" "$kp/client.key"
  cat > "$root/var/lib/kubelet/config.yaml" <<CFG
apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
kind: KubeletConfiguration
rotateCertificates: true
staticPodPath: /etc/kubernetes/manifests
CFG
  server_ip=$ip
  [ "$role" = cp ] || server_ip=$first_cp_ip
  write_kubeconfig "$k/kubelet.conf" kubernetes "system:node:$name@kubernetes" "system:node:$name" "https://$server_ip:6443" \
    "certificate-authority-data: $(b64 "$ca_dir/ca.crt")" \
    "client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem" \
    "client-key: /var/lib/kubelet/pki/kubelet-client-current.pem"

  if [ "$role" != cp ]; then
    rmdir "$k/manifests" "$pki/etcd" "$root/var/lib/etcd"
    continue
  fi

  for f in ca.key front-proxy-ca.crt front-proxy-ca.key sa.key sa.pub etcd/ca.crt etcd/ca.key; do
    cp -p "$ca_dir/$f" "$pki/$f"
  done
  leaf "$pki/apiserver" "$ca_dir/ca" "/CN=kube-apiserver" serverAuth \
    "DNS:$name,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1,IP:$ip,IP:127.0.0.1"
  leaf "$pki/apiserver-kubelet-client" "$ca_dir/ca" "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client" clientAuth
  leaf "$pki/apiserver-etcd-client" "$ca_dir/etcd/ca" "/CN=kube-apiserver-etcd-client" clientAuth
  leaf "$pki/front-proxy-client" "$ca_dir/front-proxy-ca" "/CN=front-proxy-client" clientAuth
  leaf "$pki/etcd/server" "$ca_dir/etcd/ca" "/CN=$name" serverAuth,clientAuth "DNS:$name,DNS:localhost,IP:$ip,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"
  leaf "$pki/etcd/peer" "$ca_dir/etcd/ca" "/CN=$name" serverAuth,clientAuth "DNS:$name,DNS:localhost,IP:$ip,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"
  leaf "$pki/etcd/healthcheck-client" "$ca_dir/etcd/ca" "/CN=kube-etcd-healthcheck-client" clientAuth

  t=$(mktemp -d)
  leaf "$t/admin" "$ca_dir/ca" "/O=kubeadm:cluster-admins/CN=kubernetes-admin" clientAuth
  kubeconfig "$k/admin.conf" "https://$ip:6443" "$ca_dir/ca.crt" kubernetes-admin "$t/admin.crt" "$t/admin.key"
  leaf "$t/super" "$ca_dir/ca" "/O=system:masters/CN=kubernetes-super-admin" clientAuth
  kubeconfig "$k/super-admin.conf" "https://$ip:6443" "$ca_dir/ca.crt" kubernetes-super-admin "$t/super.crt" "$t/super.key"
  leaf "$t/cm" "$ca_dir/ca" "/CN=system:kube-controller-manager" clientAuth
  kubeconfig "$k/controller-manager.conf" "https://$ip:6443" "$ca_dir/ca.crt" system:kube-controller-manager "$t/cm.crt" "$t/cm.key"
  leaf "$t/sched" "$ca_dir/ca" "/CN=system:kube-scheduler" clientAuth
  kubeconfig "$k/scheduler.conf" "https://$ip:6443" "$ca_dir/ca.crt" system:kube-scheduler "$t/sched.crt" "$t/sched.key"
  rm -rf "$t"

  cat > "$k/manifests/etcd.yaml" <<M
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://$ip:2379
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://$ip:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://$ip:2380
    - --initial-cluster=$initial_cluster
    - --initial-cluster-state=new
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=https://127.0.0.1:2379,https://$ip:2379
    - --listen-metrics-urls=http://127.0.0.1:2381
    - --listen-peer-urls=https://$ip:2380
    - --name=$name
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
    - --peer-client-cert-auth=true
    - --peer-key-file=/etc/kubernetes/pki/etcd/peer.key
    - --peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    - --snapshot-count=10000
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    image: registry.k8s.io/etcd:3.5.10-0
    name: etcd
  hostNetwork: true
M
  cat > "$k/manifests/kube-apiserver.yaml" <<M
apiVersion: v1
kind: Pod
metadata:
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=$ip
    - --allow-privileged=true
    - --authorization-mode=Node,RBAC
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
    - --enable-admission-plugins=NodeRestriction
    - --enable-bootstrap-token-auth=true
    - --etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt
    - --etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt
    - --etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key
    - --etcd-servers=https://127.0.0.1:2379
    - --kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt
    - --kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key
    - --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname
    - --proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt
    - --proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key
    - --requestheader-allowed-names=front-proxy-client
    - --requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt
    - --requestheader-extra-headers-prefix=X-Remote-Extra-
    - --requestheader-group-headers=X-Remote-Group
    - --requestheader-username-headers=X-Remote-User
    - --secure-port=6443
    - --service-account-issuer=https://kubernetes.default.svc.cluster.local
    - --service-account-key-file=/etc/kubernetes/pki/sa.pub
    - --service-account-signing-key-file=/etc/kubernetes/pki/sa.key
    - --service-cluster-ip-range=10.96.0.0/12
    - --tls-cert-file=/etc/kubernetes/pki/apiserver.crt
    - --tls-private-key-file=/etc/kubernetes/pki/apiserver.key
    image: registry.k8s.io/kube-apiserver:v1.29.0
    name: kube-apiserver
  hostNetwork: true
M
  cat > "$k/manifests/kube-controller-manager.yaml" <<M
apiVersion: v1
kind: Pod
metadata:
  labels:
    component: kube-controller-manager
    tier: control-plane
  name: kube-controller-manager
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-controller-manager
    - --authentication-kubeconfig=/etc/kubernetes/controller-manager.conf
    - --authorization-kubeconfig=/etc/kubernetes/controller-manager.conf
    - --bind-address=127.0.0.1
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
    - --cluster-name=kubernetes
    - --cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt
    - --cluster-signing-key-file=/etc/kubernetes/pki/ca.key
    - --controllers=*,bootstrapsigner,tokencleaner
    - --kubeconfig=/etc/kubernetes/controller-manager.conf
    - --leader-elect=true
    - --requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt
    - --root-ca-file=/etc/kubernetes/pki/ca.crt
    - --service-account-private-key-file=/etc/kubernetes/pki/sa.key
    - --use-service-account-credentials=true
    image: registry.k8s.io/kube-controller-manager:v1.29.0
    name: kube-controller-manager
  hostNetwork: true
M
  cat > "$k/manifests/kube-scheduler.yaml" <<M
apiVersion: v1
kind: Pod
metadata:
  labels:
    component: kube-scheduler
    tier: control-plane
  name: kube-scheduler
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-scheduler
    - --authentication-kubeconfig=/etc/kubernetes/scheduler.conf
    - --authorization-kubeconfig=/etc/kubernetes/scheduler.conf
    - --bind-address=127.0.0.1
    - --kubeconfig=/etc/kubernetes/scheduler.conf
    - --leader-elect=true
    image: registry.k8s.io/kube-scheduler:v1.29.0
    name: kube-scheduler
  hostNetwork: true
M
done
rm -rf "$ca_dir"
