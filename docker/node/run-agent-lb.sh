#!/bin/sh
# STAND-IN for a k3s agent's client load balancer (no k3s binary can be installed here): a TCP
# proxy on 127.0.0.1:6444 to the supervisor port of the server the agent joined (K3S_URL in
# its unit's environment file), which the agent's kubeconfigs (agent/*.kubeconfig) name, and
# to every other server when that one does not answer. k3s pkg/agent/loadbalancer does this
# (its --lb-server-port, 6444 by default; the other servers it learns from the cluster, here
# from /etc/rancher/k3s/kcert-fleet-servers, which the fleet writes); TLS passes through it
# untouched, so the agent's clients meet the supervisor's certificate. nginx's stream module.
set -eu
. /opt/kcert-fleet/lib.sh
dir=/run/kcert/agent-lb
render() {
  url=$(sed -n "s/^K3S_URL='\{0,1\}https:\/\/\([^']*\)'\{0,1\}$/\1/p" /etc/systemd/system/k3s-agent.service.env)
  [ -n "$url" ] || { echo "agent-lb: no K3S_URL in /etc/systemd/system/k3s-agent.service.env" >&2; return 1; }
  mkdir -p "$dir/tmp"
  cat > "$dir/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
pid $dir/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
stream {
  upstream servers {
    server $url;
$(grep -vx "$url" /etc/rancher/k3s/kcert-fleet-servers 2>/dev/null | sed 's/.*/    server & backup;/')
  }
  server {
    listen 127.0.0.1:6444;
    proxy_connect_timeout 2s;
    proxy_pass servers;
  }
}
CONF
}
serve_nginx "$dir" render
