#!/usr/bin/env bash
# A local stand-in for the official python:3.11-slim-bookworm image, for machines that reach
# Debian's mirror and PyPI but no container registry. Debian bookworm's python3 is 3.11, as in the
# official image. Usage: scripts/container/local_base.sh [TAG] (default local/python:3.11-slim-bookworm)
# Needs root, debootstrap and a running Docker engine (scripts/container/dockerd.sh start).
set -euo pipefail
TAG=${1:-local/python:3.11-slim-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/bibsnet-rootfs.XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT

debootstrap --variant=minbase \
  --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
  bookworm "$ROOTFS" "$MIRROR" >/dev/null
# HTTPS may go through an intercepting proxy whose CA this machine trusts: the image trusts it too.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
  chroot "$ROOTFS" update-ca-certificates >/dev/null
fi
# The official image's python is not Debian-managed; pip installs into it as it does there.
rm -f "$ROOTFS"/usr/lib/python3.*/EXTERNALLY-MANAGED
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "$TAG"
