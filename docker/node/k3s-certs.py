#!/usr/bin/env python3
# STAND-IN for the part of the k3s supervisor that hands agents their certificates (no k3s
# binary can be installed here). The supervisor stand-in (run-supervisor.sh, nginx on :6443)
# passes /v1-k3s/ here. As k3s's pkg/server/router.go does:
#   * a request needs the node's credentials: HTTP basic auth "node" and the join token's
#     password (the part after "server:" in server/token);
#   * /v1-k3s/client-kubelet.crt and /v1-k3s/serving-kubelet.crt: a new certificate for the
#     node named by the k3s-Node-Name header (and its k3s-Node-IP), signed by the client CA or
#     the server CA, for the server's shared key (server/tls/client-kubelet.key,
#     serving-kubelet.key); the answer is the certificate, its CA, then that key;
#   * /v1-k3s/client-kube-proxy.crt and /v1-k3s/client-k3s-controller.crt: the server's own
#     files, certificate then key.
#   * /v1-k3s/client-ca.crt: the client CA bundle an agent trusts its kubelet's clients with;
#   * for servers (HTTP basic auth "server" and the token's password): GET
#     /v1-k3s/server-bootstrap, the datastore's CA files (a tar: a joining server's
#     httpBootstrap), and PUT /v1-k3s/cert/cacerts?force=, a new CA set (a tar of tls/) checked
#     and saved as pkg/server/handlers/cert.go's caCertReplace does (docker/pki/k3s-bootstrap.sh).
# The certificates are made with openssl by docker/pki/k3s-lib.sh, the table make-k3s-pki.sh uses.
import base64
import http.server
import os
import subprocess
import tempfile
import urllib.parse

TLS = "/var/lib/rancher/k3s/server/tls"
LIBS = ". /opt/kcert-fleet/lib.sh; . /opt/kcert-fleet/pki/lib.sh; . /opt/kcert-fleet/pki/k3s-lib.sh; set -e; "
SIGNED = {
    "client-kubelet.crt": ("client-ca", "client-kubelet", "/O=system:nodes/CN=system:node:{name}", "clientAuth", ""),
    "serving-kubelet.crt": ("server-ca", "serving-kubelet", "/CN={name}", "serverAuth", "DNS:{name},DNS:localhost,IP:127.0.0.1,IP:{ip}"),
}
FILES = {"client-kube-proxy.crt": "client-kube-proxy", "client-k3s-controller.crt": "client-k3s-controller"}
BOOT = ". /opt/kcert-fleet/pki/k3s-bootstrap.sh; set -e; "


def password():
    token = open(TLS + "/../token").read().strip()
    return token.split("::", 1)[1].split(":", 1)[1]


def authed(headers, user):
    return headers.get("Authorization") == "Basic " + base64.b64encode((user + ":" + password()).encode()).decode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != "/v1-k3s/cert/cacerts":
            return self.answer(404, b"Not found\n")
        if not authed(self.headers, "server"):
            return self.answer(401, b"Unauthorized\n")
        force = urllib.parse.parse_qs(url.query).get("force", ["false"])[0] == "true"
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["tar", "-C", d, "-xf", "-"], input=body, check=True)
            script = BOOT + 'new="$1/tls"; k3s_ds_init; [ -d "$K3S_DS" ] || { echo "this stand-in keeps the datastore on the first server"; exit 2; }; '
            script += 'if ! why=$(k3s_validate "$new" "$K3S_DS"); then if [ "$2" = true ]; then echo "Save of CA certificates and keys forced, ignoring validation errors: $why"; else echo "$why"; exit 1; fi; fi; '
            script += 'for f in $K3S_BOOT; do if [ -s "$new/$f" ]; then cp -p "$new/$f" "$K3S_DS/$f"; fi; done; echo "Cluster Certificate Authority data has been updated, k3s must be restarted."'
            out = subprocess.run(["bash", "-c", script, "put", d, "true" if force else "false"], capture_output=True)
        self.answer(200 if out.returncode == 0 else 400, out.stdout + out.stderr)

    def do_GET(self):
        if self.path == "/v1-k3s/server-bootstrap":
            if not authed(self.headers, "server"):
                return self.answer(401, b"Unauthorized\n")
            out = subprocess.run(["bash", "-c", BOOT + 'k3s_ds_init; tar -C "$K3S_DS" -cf - .'], capture_output=True)
            return self.answer(200 if out.returncode == 0 else 500, out.stdout if out.returncode == 0 else out.stderr)
        if not authed(self.headers, "node"):
            return self.answer(401, b"Unauthorized\n")
        name = self.path.removeprefix("/v1-k3s/")
        if name == "client-ca.crt":
            return self.answer(200, open(TLS + "/client-ca.crt", "rb").read())
        node, ip = self.headers.get("k3s-Node-Name", ""), self.headers.get("k3s-Node-IP", "")
        if name in SIGNED:
            if not node or not ip or not all(c.isalnum() or c in "-." for c in node + ip):
                return self.answer(400, b"k3s-Node-Name and k3s-Node-IP are needed\n")
            ca, key, subject, eku, sans = SIGNED[name]
            script = LIBS + 't=$(mktemp -d); cp "$1" "$t/leaf.key"; k3s_leaf "$t/leaf" "$2" "$3" "$4" "$5"; cat "$t/leaf.crt" "$t/leaf.key"; rm -rf "$t"'
            args = [f"{TLS}/{key}.key", f"{TLS}/{ca}", subject.format(name=node), eku, sans.format(name=node, ip=ip)]
            out = subprocess.run(["bash", "-c", script, "sign"] + args, capture_output=True)
        elif name in FILES:
            out = subprocess.run(["cat", f"{TLS}/{FILES[name]}.crt", f"{TLS}/{FILES[name]}.key"], capture_output=True)
        else:
            return self.answer(404, b"Not found\n")
        if out.returncode != 0:
            return self.answer(500, out.stderr)
        self.answer(200, out.stdout)

    def answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("127.0.0.1", 6446), Handler).serve_forever()
