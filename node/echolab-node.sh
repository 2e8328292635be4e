#!/bin/sh
# Starts a Docker Engine inside this container (a simulated Swarm node).
#
# The node runs with every capability the host's engine can grant (not --privileged: that asks
# for CAP_SYS_RESOURCE too, which some hosts' engines lack) and its own cgroup namespace. Docker
# mounts the cgroup hierarchies read-only into a container that is not privileged; the inner
# engine must create cgroups, so they are mounted again, writable, rooted at the node's own.
#
# ECHOLAB_INSECURE_REGISTRIES: comma-separated registries reached over plain HTTP (the lab's).
# The engine answers on /var/run/docker.sock, and on /run/echolab-node/docker.sock when the
# harness mounts a folder there (how it drives the node from the host).
set -eu

if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    mount -o remount,rw /sys/fs/cgroup
    # cgroup v2 allows no process in a cgroup that delegates controllers: move ours aside.
    mkdir -p /sys/fs/cgroup/init
    while read -r pid; do echo "$pid" >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true; done \
        </sys/fs/cgroup/cgroup.procs
    sed 's/\([^ ]*\)/+\1/g' /sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control
else
    mount -o remount,rw /sys/fs/cgroup
    for hierarchy in /sys/fs/cgroup/*; do
        [ -L "$hierarchy" ] && continue
        name=$(basename "$hierarchy")
        umount "$hierarchy"
        mkdir -p "$hierarchy"
        case "$name" in
            systemd) mount -t cgroup -o none,name=systemd cgroup "$hierarchy" ;;
            *) mount -t cgroup -o "$name" cgroup "$hierarchy" ;;
        esac
    done
fi

mkdir -p /etc/docker
registries=""
if [ -n "${ECHOLAB_INSECURE_REGISTRIES:-}" ]; then
    registries=$(printf '"%s",' $(echo "$ECHOLAB_INSECURE_REGISTRIES" | tr ',' ' '))
fi
printf '{"insecure-registries": [%s], "log-driver": "json-file"}\n' "${registries%,}" \
    >/etc/docker/daemon.json

set -- --host unix:///var/run/docker.sock
if [ -d /run/echolab-node ]; then
    set -- "$@" --host unix:///run/echolab-node/docker.sock
fi
exec dockerd "$@"
