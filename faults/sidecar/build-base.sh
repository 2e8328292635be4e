#!/usr/bin/env bash
# Builds the fault sidecar's base image locally (no registry needed): Debian bookworm with
# python3, iptables, iproute2 (tc) and libnetfilter-queue1, by mmdebstrap + docker import.
#
# Why not base/build-base.sh: the lab's base holds python3 only, and the server and client must
# not carry network tools. The sidecar is the one image that needs them.
set -euo pipefail

image=${1:?usage: build-base.sh IMAGE[:TAG]}
suite=${ECHOLAB_BASE_SUITE:-bookworm}

if ! command -v mmdebstrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "faults build-base: installing mmdebstrap (Debian package)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
    else
        echo "faults build-base: mmdebstrap is missing; install it (apt-get install mmdebstrap)" >&2
        exit 1
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "faults build-base: mmdebstrap $suite -> $image (about 25 s)" >&2
mmdebstrap --quiet --variant=minbase \
    --include=python3,iptables,iproute2,libnetfilter-queue1 \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$suite" "$work/rootfs.tar"
docker import \
    --change 'ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1' \
    --change 'CMD ["python3"]' \
    --change 'LABEL org.echolab.project=echolab org.echolab.role=base' \
    "$work/rootfs.tar" "$image" >/dev/null
echo "faults build-base: built $image" >&2
