#!/usr/bin/env bash
# Make a local Debian bookworm base image with Python 3.11 for the Dockerfile, without pulling
# from a registry: `mmdebstrap` builds a minimal root filesystem from the Debian mirror and a
# `FROM scratch` build adds it as the image's only layer. Idempotent: does nothing when the
# image exists.
#
#   docker/make-base.sh [IMAGE]        # default edgesep-base:bookworm, this machine's arch
#   docker build --build-arg BASE=edgesep-base:bookworm --build-arg OFFLINE=1 -t edgesep .
#   ARCH=arm64 docker/make-base.sh edgesep-base:bookworm-arm64   # another one, under emulation
#                                                                # (qemu-user-static)
#
# Needs root, mmdebstrap and a docker daemon (`apt-get install -y mmdebstrap docker.io`).
# Where a registry is reachable, skip this and use the Dockerfile's default BASE.
set -euo pipefail
image="${1:-edgesep-base:bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "make-base: $image exists"
  exit 0
fi
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
arch="${ARCH:-$(dpkg --print-architecture)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# python3-venv brings ensurepip's pip; ca-certificates lets pip reach an index over HTTPS.
mmdebstrap --variant=minbase --architectures="$arch" \
  --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='Acquire::Languages "none"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$tmp/rootfs.tar" "$mirror"
# Not `docker import`: docker 20.10 ignores its --platform, labelling an arm64 tree amd64.
printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/bash"]\n' > "$tmp/Dockerfile"
docker build -q --platform "linux/$arch" -t "$image" "$tmp"
echo "make-base: built $image (linux/$arch)"
