#!/usr/bin/env bash
# Builds the test-fleet node image from Debian packages (no registry pull): mmdebstrap writes
# a root filesystem tarball from this machine's own apt sources, `docker import` makes it an
# image. Tagged by a hash of this script, so it is rebuilt only when the script changes.
# Prints the image tag on stdout.
set -euo pipefail

packages="openssh-server passwd sudo openssl etcd-server etcd-client nginx-light libnginx-mod-stream supervisor curl kubernetes-client ca-certificates procps iproute2 graphviz"
hash=$(sha256sum "$0" | cut -c1-12)
tag="kcert-node:$hash"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "build.sh: installing mmdebstrap" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >&2
fi

sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "build.sh: building $tag with mmdebstrap ($suite, from $sources)" >&2
mmdebstrap --quiet --variant=essential --mode=root --include="${packages// /,}" \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='chroot "$1" usermod -p "*" root' \
  --customize-hook='chroot "$1" useradd -m -s /bin/sh -p "*" ops' \
  --customize-hook='echo "ops ALL=(ALL) NOPASSWD:ALL" > "$1/etc/sudoers.d/ops"; chmod 0440 "$1/etc/sudoers.d/ops"' \
  --customize-hook='chroot "$1" useradd -m -s /bin/sh needpw' \
  --customize-hook='echo "needpw:$(head -c 18 /dev/urandom | base64)" | chroot "$1" chpasswd' \
  --customize-hook='echo "needpw ALL=(ALL) ALL" > "$1/etc/sudoers.d/needpw"; chmod 0440 "$1/etc/sudoers.d/needpw"' \
  --customize-hook='printf "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nAllowTcpForwarding yes\nMaxSessions 10\nUseDNS no\n" > "$1/etc/ssh/sshd_config.d/kcert.conf"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
  "$suite" "$work/rootfs.tar" "$sources" >&2
docker import -c 'CMD ["/opt/kcert-fleet/entrypoint.sh"]' "$work/rootfs.tar" "$tag" >/dev/null
echo "$tag"
