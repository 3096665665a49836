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

# field FILE KEY -> value of `KEY: value` at any depth (kubelet config keys are unique), one
# layer of YAML quotes taken off
field() {
  sed -n "s/^[[:space:]]*$2:[[:space:]]*\(.*\)$/\1/p" "$1" | head -n1 |
    sed "s/[[:space:]]*\$//; s/^\"\(.*\)\"\$/\1/; s/^'\(.*\)'\$/\1/"
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

# go_chain FILE: the path of FILE's certificates in the order a Go peer's verifier would use
# them: the self-signed ones after the rest (FILE itself when that is its order already). The
# stand-ins here are nginx and curl (OpenSSL) in place of Go programs (the apiserver, kubelet,
# k3s): Go's verifier tries every candidate issuer, OpenSSL takes the first that matches and
# stops at an untrusted self-signed one, so a cross-signed CA bundle (intermediate, new root,
# the new root cross-signed by the old, old root: k3s's rotate-ca layout) after a leaf would
# fail with OpenSSL against the old root where Go succeeds through the cross-signed copy.
go_chain() {
  local src=$1 out t
  # Kept by the content it was made from (a file replaced while it is read cannot leave a stale
  # copy behind), each caller writing its own temp (the probes and a render may ask at once).
  mkdir -p /run/kcert/chains
  t=$(mktemp /run/kcert/chains/.tmp.XXXXXX)
  cat "$src" > "$t" 2>/dev/null || { rm -f "$t"; echo "$src"; return; }
  out=/run/kcert/chains/$(sha256sum < "$t" | cut -c1-32).pem
  if [ -f "$out" ]; then rm -f "$t"; echo "$out"; return; fi
  issuer_order "$t" > "$t.o" || { rm -f "$t" "$t.o"; echo "$src"; return; }
  mv "$t.o" "$out"
  rm -f "$t"
  echo "$out"
}

# issuer_order FILE: FILE's certificates, the first first, then the others with the
# self-signed ones last (see go_chain).
issuer_order() {
  local t n i
  t=$(mktemp -d)
  n=$(awk -v d="$t" '/BEGIN CERTIFICATE/{n++; f=d"/"n".pem"} f{print > f} /END CERTIFICATE/{close(f); f=""} END{print n+0}' "$1")
  : > "$t/first"; : > "$t/last"
  for i in $(seq 1 "$n"); do
    if [ "$i" -gt 1 ] && [ "$(openssl x509 -in "$t/$i.pem" -noout -subject | cut -d= -f2-)" = "$(openssl x509 -in "$t/$i.pem" -noout -issuer | cut -d= -f2-)" ]; then
      cat "$t/$i.pem" >> "$t/last"
    else
      cat "$t/$i.pem" >> "$t/first"
    fi
  done
  cat "$t/first" "$t/last"
  rm -rf "$t"
}

# proxy_tls CERT KEY CA: the lines of an nginx location that passes requests on over mTLS, as a
# client with CERT/KEY, verifying the server against CA.
proxy_tls() {
  cat <<LOC
      proxy_ssl_certificate $(go_chain "$1");
      proxy_ssl_certificate_key $2;
      proxy_ssl_trusted_certificate $3;
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 4;
      # nginx matches DNS SANs only; the servers' certs here carry DNS:localhost.
      proxy_ssl_name localhost;
      # A reused session would hide a broken trust file after a rotation.
      proxy_ssl_session_reuse off;
LOC
}

# serve_nginx DIR RENDER: the stand-ins' supervisord program. RENDER writes DIR/nginx.conf
# from the component's flags and files; nginx runs as a child. On SIGHUP the config is
# rendered again and nginx reloads gracefully (open connections finish on the old files, new
# ones get the new), as the real apiserver reloads its serving cert and client CA from disk.
# SIGTERM stops nginx; if nginx dies the wrapper exits, so supervisord restarts it.
# With STRICT (a binary node's units, whose restart is systemd's stop-and-start), a SIGHUP whose
# new configuration does not load (a path that is not there, a key that does not match: `nginx
# -t` loads every certificate and key) ends the stand-in, as the real component would fail to
# start, instead of nginx keeping its old configuration; supervisord then retries the start.
serve_nginx() {
  dir=$1 render=$2 strict=${3:-}
  "$render"
  /usr/sbin/nginx -c "$dir/nginx.conf" -g 'daemon off;' &
  child=$!
  if [ -n "$strict" ]; then
    trap 'if "$render" && /usr/sbin/nginx -q -t -c "$dir/nginx.conf" -g "daemon off;"; then /usr/sbin/nginx -c "$dir/nginx.conf" -g "daemon off;" -s reload; else echo "reload: the new configuration does not load: stopping" >&2; kill -KILL $child 2>/dev/null; fi' HUP
  else
    trap '"$render" && /usr/sbin/nginx -c "$dir/nginx.conf" -g "daemon off;" -s reload' HUP
  fi
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

# --- systemd units, read as systemd would (binary "hard way" nodes) ---------------------------

# Where systemd looks for a unit, most important first (systemd.unit(5) "Unit File Load Path").
UNIT_DIRS="/etc/systemd/system /run/systemd/system /usr/lib/systemd/system /lib/systemd/system"

# unit_files UNIT -> the unit file systemd would load (the first UNIT.service of UNIT_DIRS),
# then its drop-ins: every UNIT.service.d/*.conf of those dirs, one of a name in an earlier dir
# hiding the same name in a later one, in the order of their names (systemd.unit(5)). An empty
# unit file or a link to /dev/null is a masked unit (systemd.unit(5)): it does not run at all.
unit_files() {
  main=""
  for d in $UNIT_DIRS; do
    f="$d/$1.service"
    if [ -L "$f" ] || [ -e "$f" ]; then
      if [ ! -s "$f" ]; then echo "unit_files: $1 is masked ($f)" >&2; return 1; fi
      main=$f; break
    fi
  done
  [ -n "$main" ] || { echo "unit_files: no $1.service in $UNIT_DIRS" >&2; return 1; }
  echo "$main"
  for d in $UNIT_DIRS; do
    for f in "$d/$1.service.d"/*.conf; do
      [ -f "$f" ] && printf '%s %s\n' "${f##*/}" "$f"
    done
  done | sort -s -k1,1 | awk '!seen[$1]++ { print $2 }'
}

# The parser behind unit_flags and unit_env: reads the unit files given as arguments and
# prints either the command line's arguments after the binary (MODE=args, one per line) or the
# process environment (MODE=env, NAME=value per line). What it follows:
#  * systemd.syntax(7): a line ending in a backslash goes on on the next line (comment lines in
#    between are skipped); `#`/`;` lines are comments; only [Service] counts here.
#  * systemd.service(5) ExecStart=: the last assignment wins, an empty one resets it; the first
#    word is the binary (with any `-`, `@`, `:`, `+`, `!` prefix) and is left out. Words split at
#    whitespace, "..."/'...' quote, a backslash escapes. "Command lines": `$VAR` as a whole
#    word is replaced by the variable's value split at whitespace, `${VAR}` (and `$VAR` inside
#    a word) by its value as it is; an unset variable is empty.
#  * systemd.exec(5) Environment=: space-separated (quotable) NAME=value assignments, an empty
#    one resets the list. EnvironmentFile=: files read at each start, a leading `-` making one
#    optional (a missing required file fails the start); their settings override Environment=.
#    Their syntax (systemd's env-file parser): NAME=value lines, `#`/`;` comments, "..." values
#    in which a backslash-newline is removed and `\"`, `\\`, `\$`, `` \` `` unescape, '...'
#    literal, an unquoted value's trailing whitespace dropped and backslash-newline joined.
#    No variable is expanded inside an environment file.
# shellcheck disable=SC2016 # an awk program: its $ are awk's
UNIT_AWK='
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
# words(S, A) -> number of words of S in A[1..n], systemd command-line style.
function words(s, a,    n, i, c, q, cur, inw) {
  n = 0; cur = ""; inw = 0
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (c == " " || c == "\t" || c == "\n" || c == "\r") {
      if (inw) { a[++n] = cur; cur = ""; inw = 0 }
    } else if (c == "\"" || c == "\047") {
      inw = 1; q = c
      for (i++; i <= length(s) && substr(s, i, 1) != q; i++) cur = cur substr(s, i, 1)
    } else if (c == "\\") {
      inw = 1; i++; cur = cur substr(s, i, 1)
    } else { inw = 1; cur = cur c }
  }
  if (inw) a[++n] = cur
  return n
}
# expand(W): ${NAME} and $NAME inside a word replaced by their values.
function expand(w,    out, rest, i, name, j) {
  out = ""; rest = w
  while ((i = index(rest, "$")) > 0) {
    out = out substr(rest, 1, i - 1); rest = substr(rest, i + 1)
    if (substr(rest, 1, 1) == "{" && (j = index(rest, "}")) > 0) {
      name = substr(rest, 2, j - 2); rest = substr(rest, j + 1)
    } else if (match(rest, /^[A-Za-z0-9_]+/)) {
      name = substr(rest, 1, RLENGTH); rest = substr(rest, RLENGTH + 1)
    } else { out = out "$"; continue }
    if (name in env) out = out env[name]
  }
  return out rest
}
function setenv(k, v) { if (!(k in env)) order[++nenv] = k; env[k] = v }
# envfile(PATH) -> 1 when read, 0 when missing.
function envfile(path,    text, line, r, i, c, st, key, val) {
  text = ""; r = 0
  while ((r = (getline line < path)) > 0) text = text line "\n"
  if (r < 0) return 0
  close(path)
  st = "prekey"; key = ""; val = ""
  for (i = 1; i <= length(text); i++) {
    c = substr(text, i, 1)
    if (st == "prekey") {
      if (c == "#" || c == ";") st = "comment"
      else if (c != " " && c != "\t" && c != "\n" && c != "\r") { st = "key"; key = c }
    } else if (st == "key") {
      if (c == "\n") { st = "prekey"; key = "" }
      else if (c == "=") { st = "prevalue"; val = ""; key = trim(key) }
      else key = key c
    } else if (st == "prevalue") {
      if (c == "\n") { setenv(key, val); st = "prekey"; key = "" }
      else if (c == "\047") st = "single"
      else if (c == "\"") st = "double"
      else if (c == "\\") st = "escape"
      else if (c != " " && c != "\t") { st = "value"; val = val c }
    } else if (st == "value") {
      if (c == "\n") { sub(/[ \t\r]+$/, "", val); setenv(key, val); st = "prekey"; key = "" }
      else if (c == "\\") st = "escape"
      else val = val c
    } else if (st == "escape") {
      st = "value"; if (c != "\n") val = val c
    } else if (st == "single") {
      if (c == "\047") st = "prevalue"; else val = val c
    } else if (st == "double") {
      if (c == "\"") st = "prevalue"
      else if (c == "\\") st = "dqescape"
      else val = val c
    } else if (st == "dqescape") {
      st = "double"
      if (c == "\"" || c == "\\" || c == "`" || c == "$") val = val c
      else if (c != "\n") val = val "\\" c
    } else if (st == "comment") {
      if (c == "\\") st = "cescape"; else if (c == "\n") st = "prekey"
    } else if (st == "cescape") st = "comment"
  }
  if (key != "" && st != "key" && st != "prekey" && st != "comment" && st != "cescape") setenv(key, val)
  return 1
}
FNR == 1 { section = ""; pending = "" }
{
  line = $0; sub(/\r$/, "", line); t = line; sub(/^[ \t]+/, "", t)
  if (t ~ /^[#;]/) next
  if (pending == "" && t ~ /^\[/) { section = trim(t); next }
  if (line ~ /\\$/) { pending = pending substr(line, 1, length(line) - 1) " "; next }
  logical = pending line; pending = ""
  if (section != "[Service]" || (i = index(logical, "=")) == 0) next
  k = trim(substr(logical, 1, i - 1)); v = trim(substr(logical, i + 1))
  if (k == "ExecStart") exec = v
  else if (k == "Environment") {
    if (v == "") { split("", uenv); nuenv = 0 }
    else { n = words(v, w); for (j = 1; j <= n; j++) if ((e = index(w[j], "=")) > 1) { uk[++nuenv] = substr(w[j], 1, e - 1); uenv[nuenv] = substr(w[j], e + 1) } }
  } else if (k == "EnvironmentFile") {
    if (v == "") nfiles = 0; else files[++nfiles] = v
  }
}
END {
  for (j = 1; j <= nuenv; j++) setenv(uk[j], uenv[j])
  for (j = 1; j <= nfiles; j++) {
    p = files[j]; optional = sub(/^-/, "", p)
    if (!envfile(p) && !optional) { print "unit: environment file " p " is missing" > "/dev/stderr"; exit 1 }
  }
  if (mode == "env") { for (j = 1; j <= nenv; j++) print order[j] "=" env[order[j]]; exit 0 }
  if (exec == "") { print "unit: no ExecStart=" > "/dev/stderr"; exit 1 }
  n = words(exec, w)
  for (j = 2; j <= n; j++) {
    if (w[j] ~ /^\$[A-Za-z0-9_]+$/) {
      name = substr(w[j], 2)
      if (name in env) { m = words(env[name], x); for (l = 1; l <= m; l++) print x[l] }
    } else print expand(w[j])
  }
}'

# unit_flags UNIT -> the arguments systemd would start UNIT with (after the binary), one per
# line: `--flag=value` as written, after joining, environment loading and expansion.
unit_flags() {
  files=$(unit_files "$1") || return 1
  # shellcheck disable=SC2086
  (IFS='
'; exec awk -v mode=args "$UNIT_AWK" $files)
}

# unit_env UNIT -> the environment systemd would give UNIT's process (Environment= and the
# EnvironmentFile= files), NAME=value per line.
unit_env() {
  files=$(unit_files "$1") || return 1
  # shellcheck disable=SC2086
  (IFS='
'; exec awk -v mode=env "$UNIT_AWK" $files)
}

# pick NAME < FLAGS -> the value of --NAME=value or `--NAME value` among unit_flags' lines, the
# last one winning as pflag's does; `--NAME` alone is "true".
pick() {
  awk -v f="--$1" '
    want { want = 0; if ($0 !~ /^-/) { v = $0; next }; v = "true" }
    index($0, f "=") == 1 { v = substr($0, length(f) + 2); next }
    $0 == f { want = 1 }
    END { if (want) v = "true"; if (v != "") print v }'
}
