#!/bin/sh
# PID 1 of a test-fleet node: host keys on first start (the image ships none, so no two
# nodes share one), then supervisord running sshd and whichever components this node has.
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
[ -f /etc/kubernetes/manifests/etcd.yaml ] && program etcd run-etcd.sh
[ -f /etc/kubernetes/manifests/kube-apiserver.yaml ] && program kube-apiserver run-apiserver.sh
[ -f /var/lib/kubelet/config.yaml ] && program kubelet run-kubelet.sh
exec /usr/bin/supervisord -n -c "$conf"
