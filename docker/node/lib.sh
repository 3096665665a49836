# Helpers for the component wrappers: read flags from a static pod manifest and fields
# from the kubelet's config, the way the real components would get them.

# flag MANIFEST NAME -> the value of `- --NAME=value` in the container command
flag() {
  sed -n "s/^[[:space:]]*- --$2=\(.*\)$/\1/p" "$1" | head -n1
}

# all_flags MANIFEST -> every `--flag=value` line of the command, one per line
all_flags() {
  sed -n 's/^[[:space:]]*- \(--[a-z0-9-]*=.*\)$/\1/p' "$1"
}

# field FILE KEY -> value of `KEY: value` at any depth (kubelet config keys are unique)
field() {
  sed -n "s/^[[:space:]]*$2:[[:space:]]*\(.*\)$/\1/p" "$1" | head -n1
}

# nginx_head DIR -> the start of an nginx config whose pid and temp files live in DIR, so
# several nginx instances coexist in one container; the caller closes the http block.
nginx_head() {
  mkdir -p "$1/tmp"
  cat <<CONF
worker_processes 1;
pid $1/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
CONF
}

# serve_nginx DIR RENDER: the stand-ins' supervisord program. RENDER writes DIR/nginx.conf
# from the component's flags and files; nginx runs as a child. On SIGHUP the config is
# rendered again and nginx reloads gracefully (open connections finish on the old files, new
# ones get the new), as the real apiserver reloads its serving cert and client CA from disk.
# SIGTERM stops nginx; if nginx dies the wrapper exits, so supervisord restarts it.
serve_nginx() {
  dir=$1 render=$2
  "$render"
  /usr/sbin/nginx -c "$dir/nginx.conf" -g 'daemon off;' &
  child=$!
  trap '"$render" && /usr/sbin/nginx -c "$dir/nginx.conf" -g "daemon off;" -s reload' HUP
  trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM INT
  # `wait` returns early when a trapped signal arrives: keep waiting while nginx lives.
  while kill -0 "$child" 2>/dev/null; do
    wait "$child" || true
  done
  # A master killed outright leaves its workers running, holding the port, and every restart
  # would then fail to bind. supervisord made this wrapper a process-group leader, so end the
  # rest of the group (the wrapper itself ignores the signal) before handing over.
  trap '' TERM
  kill -TERM 0 2>/dev/null || true
  exit 1
}
