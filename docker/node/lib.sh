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
