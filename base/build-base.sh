#!/usr/bin/env bash
# Builds a Debian base image locally when python:3.12-slim cannot be pulled (no registry).
#   build-base.sh IMAGE[:TAG] [EXTRA,DEBIAN,PACKAGES]
# The lab's base holds python3 only (the server and client carry no network tools); the fault
# engine's base adds iptables, iproute2 and libnetfilter-queue1 (harness/images.py, which also
# labels the result with the hash of this script and the packages, to rebuild when they change).
#
# Why mmdebstrap + docker import: it needs only Debian's package mirror (reachable from the
# host), not an image registry, and the result is an ordinary image that the Dockerfiles
# take as BASE_IMAGE. Debian's python3 is 3.11; the project's code runs on 3.11 and 3.12.
set -euo pipefail

image=${1:?usage: build-base.sh IMAGE[:TAG] [EXTRA,PACKAGES]}
include=python3${2:+,$2}
suite=${ECHOLAB_BASE_SUITE:-bookworm}

if ! command -v mmdebstrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "build-base: installing mmdebstrap (Debian package)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
    else
        echo "build-base: mmdebstrap is missing; install it (apt-get install mmdebstrap) or set BASE_IMAGE to an image you have" >&2
        exit 1
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "build-base: mmdebstrap $suite ($include) -> $image (about 30 s)" >&2
mmdebstrap --quiet --variant=minbase --include="$include" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$suite" "$work/rootfs.tar"
docker import \
    --change 'ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.echolab.project=echolab org.echolab.role=base org.echolab.context=${ECHOLAB_BASE_CONTEXT:-}" \
    "$work/rootfs.tar" "$image" >/dev/null
echo "build-base: built $image" >&2
