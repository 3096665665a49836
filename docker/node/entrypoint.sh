#!/bin/sh
# PID 1 of a test-fleet node: host keys on first start (the image ships none, so no two
# nodes share one), then supervisord running sshd and whichever components this node has
# (kube-controller-manager, kube-scheduler and kube-proxy never run here: see docker/fleet).
set -eu
mkdir -p /run/sshd /run/kcert
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A
conf=/etc/supervisor/supervisord.conf
cat > "$conf" <<CONF
[supervisord]
nodaemon=true
user=root
logfile=/var/log/supervisord.log
pidfile=/run/supervisord.pid

[unix_http_server]
file=/run/supervisor.sock
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix:///run/supervisor.sock

[program:sshd]
command=/usr/sbin/sshd -D -e
autorestart=true
CONF
program() {
  cat >> "$conf" <<CONF

[program:$1]
command=/opt/kcert-fleet/$2
autorestart=true
startsecs=1
startretries=100
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=/var/log/$1.log
CONF
}
# A component runs where its kubeadm file is, (a binary "hard way" node) its systemd unit, or
# (a k3s node) the file k3s writes for it: the embedded etcd's config, the apiserver's serving
# cert, the supervisor's dynamic-cert.json, the agent's kubelet kubeconfig, and on an agent
# the load balancer its kubeconfigs reach the servers through.
unit() { [ -f "/etc/systemd/system/$1.service" ]; }
K3S=/var/lib/rancher/k3s
if [ -f /etc/kubernetes/manifests/etcd.yaml ] || unit etcd || [ -f $K3S/server/db/etcd/config ]; then program etcd run-etcd.sh; fi
if [ -f /etc/kubernetes/manifests/kube-apiserver.yaml ] || unit kube-apiserver || [ -f $K3S/server/tls/serving-kube-apiserver.crt ]; then program kube-apiserver run-apiserver.sh; fi
if [ -f $K3S/server/tls/dynamic-cert.json ]; then program supervisor run-supervisor.sh; program k3s-certs k3s-certs.py; fi
if [ -f /var/lib/kubelet/config.yaml ] || unit kubelet || [ -f $K3S/agent/kubelet.kubeconfig ]; then program kubelet run-kubelet.sh; fi
if [ -f /etc/systemd/system/k3s-agent.service.env ]; then program agent-lb run-agent-lb.sh; fi
exec /usr/bin/supervisord -n -c "$conf"
