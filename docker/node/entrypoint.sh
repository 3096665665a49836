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
# A component runs where its kubeadm file is, or (a binary "hard way" node) its systemd unit.
unit() { [ -f "/etc/systemd/system/$1.service" ]; }
if [ -f /etc/kubernetes/manifests/etcd.yaml ] || unit etcd; then program etcd run-etcd.sh; fi
if [ -f /etc/kubernetes/manifests/kube-apiserver.yaml ] || unit kube-apiserver; then program kube-apiserver run-apiserver.sh; fi
if [ -f /var/lib/kubelet/config.yaml ] || unit kubelet; then program kubelet run-kubelet.sh; fi
exec /usr/bin/supervisord -n -c "$conf"
