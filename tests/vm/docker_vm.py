"""A QEMU virtual machine with a netem kernel running Docker Engine with the lab's own images.

Why: ``netem_vm`` proves the netem plans' argument vectors between two namespaces. What it does
not prove is the path a user takes: the harness on the host (``Lab``, ``lab.impair(...,
backend="netem")``) talking to a Docker engine whose kernel has netem, the fault sidecar image
exec'ing those argv in a real container's namespace, the clients measuring. This host's kernel
has no ``sch_netem``, so that engine runs here in a VM: Debian bookworm's stock kernel, Debian's
``docker.io`` (dockerd 20.10, the same major as this host's; dockerd starts its own containerd
under its data root), driven from the host over TCP.

The image (``netem_vm``'s builder: mmdebstrap, a read-only ext4 root, cached under
``.cache/docker-vm/<recipe hash>/``) holds the kernel and its modules, iproute2, iptables and
docker.io. PID 1 is ``INIT_SCRIPT``: it mounts tmpfs on /run (= /var/run), /tmp and /etc/docker
(dockerd 20.10 writes its key.json there), cgroup2 on /sys/fs/cgroup and the data disk on
/var/lib/docker; loads the modules Docker and the faults need (a container cannot load one);
starts dockerd; prints ``ECHOLAB-DOCKER-READY``.

The images are the host's: the server, the client and the fault engine, each first made current
on the host (``images.ensure_all``), and every base their definitions name (the lab's, the
faults', the engine's builder stage). Image ids survive ``docker save`` and ``docker load``, so
the harness's builder finds every image current in the VM (its context hashes take the bases'
ids) and builds nothing there; ``forbid_builds`` makes a build or a pull through the VM's client
an error (the VM has no registry, and an image built there would not be the one tested).

Loading is the slow part when emulated (about 4 minutes for 750 MiB), so it is done once per set
of images, into a data disk cached in ``.cache/docker-vm/data/`` (``prepared_disk``): a sparse
ext4 made here by ``mkfs.ext4``, the VM booted with the ``docker save`` tar as a third,
read-only disk (the tar itself, no file system) to ``docker load`` it, stop dockerd and power
off. When images change, the next disk starts from the last one and loads only those. A run
boots with the prepared disk behind a copy-on-write overlay (QEMU's ``snapshot=on``, in a
temporary folder removed after): each run starts from the same state, and nothing it does
stays.

Network: one NIC on QEMU's user networking with ``restrict=on`` (the guest reaches nothing
outside), and one forward, host ``127.0.0.1:<free port>`` -> guest ``10.0.2.15:2375``, where
dockerd listens without TLS. Plain TCP is acceptable only because of that: the port is on the
host's loopback, and in the guest it is bound to the NIC's address alone, which the lab's
containers (internal networks, no default route) cannot reach; dockerd makes no default bridge.

    .venv/bin/python -m tests.vm.docker_vm build   # build (or reuse) the image, print its path
    .venv/bin/python -m tests.vm.docker_vm boot    # prepare the data disk, boot, print timings
    .venv/bin/python -m tests.vm.docker_vm shell   # the same, then kept up (Ctrl-C ends it)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import docker
import docker.errors
import requests

from harness import images, paths
from tests.vm import netem_vm
from tests.vm.netem_vm import VmImage

NAME = "docker-vm"
CACHE = paths.CACHE / NAME
PACKAGES = ("linux-image-amd64", "initramfs-tools", "kmod", "iproute2", "iptables", "docker.io")
# Made in the read-only root, as mount points or for what writes there at start-up:
# containerd's "opt" plugin makes /opt/containerd/{bin,lib} (warns and is skipped if it cannot).
MOUNT_POINTS = ("/var/lib/docker", "/etc/docker", "/opt/containerd/bin", "/opt/containerd/lib")
GUEST_IP = "10.0.2.15"  # QEMU user networking's first guest address
DOCKER_PORT = 2375
# Docker's (overlay, bridge, veth, netfilter for its bridge networks and iptables-nft) and the
# faults' (netem, tbf, ingress + ifb + u32 + mirred, NFQUEUE): loaded at boot, whichever exist.
MODULES = (
    "virtio_net virtio_rng overlay bridge br_netfilter veth "
    "nf_tables nft_compat nft_chain_nat nf_nat nf_conntrack xt_conntrack xt_addrtype "
    "xt_MASQUERADE xt_nat xt_mark xt_comment ip_tables iptable_filter iptable_nat "
    "iptable_mangle ip6_tables ip6table_filter ip6table_nat "
    "sch_netem sch_tbf sch_ingress act_mirred cls_u32 nfnetlink_queue xt_NFQUEUE"
)
READY = "ECHOLAB-DOCKER-READY"
PREPARED = "ECHOLAB-DOCKER-PREPARED"
FAILED = "ECHOLAB-DOCKER-FAILED"
STAGE = "ECHOLAB-DOCKER-STAGE "
MARKER = ".echolab-images"  # on the data disk: the images are loaded (a prepared disk)
PREPARE_ARG = "echolab.prepare"  # on the kernel's command line: load the images, power off
INIT_SCRIPT = f"""\
#!/bin/sh
# PID 1 of the echolab Docker VM: mounts, modules, dockerd. Booted to prepare a data disk
# ({PREPARE_ARG}), it loads the images from /dev/vdc, stops dockerd and powers off; else it
# prints a ready line on the console and waits on dockerd (the host powers the VM off).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/tmp
stage() {{ read -r up _ < /proc/uptime; echo "{STAGE}$1 $up"; }}
fail() {{
    echo "{FAILED} $*"
    echo o > /proc/sysrq-trigger
    sleep 30
}}
# The initramfs has moved /proc, /sys, /dev and /run here already; mount what is missing.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mountpoint -q /run || mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=700 tmpfs /etc/docker
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount -o noatime /dev/vdb /var/lib/docker || fail "cannot mount the data disk /dev/vdb"
prepare=no
case " $(cat /proc/cmdline) " in *" {PREPARE_ARG} "*) prepare=yes ;; esac
[ "$prepare" = yes ] || [ -e /var/lib/docker/{MARKER} ] || fail "the data disk has no images"
stage mounted
# One modprobe for all (a process costs in an emulated guest); which failed, only if one did.
if ! modprobe -qa {MODULES}; then
    for module in {MODULES}; do
        modprobe -q "$module" || echo "ECHOLAB-DOCKER-NO-MODULE $module"
    done
fi
modprobe -q ifb numifbs=0 || echo "ECHOLAB-DOCKER-NO-MODULE ifb"
stage modules
ip link set lo up
ip addr add {GUEST_IP}/24 dev eth0 && ip link set eth0 up || fail "no eth0"
ulimit -n 1048576
# Its warnings go to the console (kept by the host in .cache/docker-vm/last-console.txt).
# --tls=false: said explicitly, else dockerd 20.10 sleeps 15 s to warn about a TCP socket.
# --bridge=none: no default bridge, whose containers could reach that socket (the lab's
# networks are internal: no route to it).
dockerd -H unix:///var/run/docker.sock -H tcp://{GUEST_IP}:{DOCKER_PORT} --tls=false \\
    --bridge=none --storage-driver overlay2 --log-level warn &
dockerd=$!
tries=0
until [ -S /var/run/docker.sock ] && docker version > /dev/null 2>&1; do
    kill -0 "$dockerd" 2> /dev/null || fail "dockerd exited"
    tries=$((tries + 1))
    [ "$tries" -lt 600 ] || fail "dockerd did not answer"
    sleep 1
done
stage dockerd
if [ "$prepare" = yes ]; then
    docker load -q -i /dev/vdc || fail "docker load failed"
    stage loaded
    docker image prune -f > /dev/null || fail "docker image prune failed"  # those replaced
    touch /var/lib/docker/{MARKER}
    kill "$dockerd"
    wait "$dockerd"
    sync
    umount /var/lib/docker || fail "cannot unmount the data disk"
    stage stopped
    echo "{PREPARED}"
    echo o > /proc/sysrq-trigger
    sleep 30
fi
echo "{READY}"
wait "$dockerd"
fail "dockerd exited ($?)"
"""
KERNEL_CMDLINE = (
    "console=ttyS0 root=/dev/vda ro rootfstype=ext4 fastboot quiet loglevel=3 panic=-1 "
    # No AppArmor: Debian's kernel enables it, and dockerd would then want apparmor_parser.
    f"apparmor=0 clocksource=tsc tsc=reliable init={netem_vm.INIT_PATH}"
)
MEMORY_MIB = 2048
CPUS = 1  # dockerd, the server, a client and a sidecar at once; TCG runs one thread per vCPU
DATA_DISK_GIB = 6
# Emulated (TCG) guests run at the host's single-thread speed: on one 2-core build machine the
# preparation took 650 s, on another more than 900 s. The limits leave room for the slower.
BOOT_TIMEOUT = 600.0  # emulated: the kernel, then dockerd (measured in the report)
PREPARE_TIMEOUT = 2400.0  # emulated: the kernel, dockerd and docker load of every image
SAVE_TIMEOUT = 300.0
API_TIMEOUT = 180  # seconds per Docker API call: container starts are slow under TCG
# The images the lab, its faults and its checks run (``harness.images.definitions`` names).
IMAGE_NAMES = ("server", "client", "engine")


def recipe_key() -> str:
    recipe = {
        "suite": netem_vm.SUITE,
        "packages": PACKAGES,
        "excludes": netem_vm.EXCLUDES,
        "initramfs": [netem_vm.INITRAMFS_CONF, netem_vm.INITRAMFS_MODULES],
        "init": INIT_SCRIPT,
        "mount_points": MOUNT_POINTS,
        "format": 1,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def data_key() -> str:
    """What a prepared data disk depends on: the Docker that wrote it (the suite and packages),
    not the init script (which a change of would otherwise make it load every image again)."""
    made_by = {"suite": netem_vm.SUITE, "packages": PACKAGES, "format": 1}
    return hashlib.sha256(json.dumps(made_by, sort_keys=True).encode()).hexdigest()[:16]


def recipe() -> netem_vm.Recipe:
    return netem_vm.Recipe(
        NAME, "echolab-docker", PACKAGES, INIT_SCRIPT, recipe_key(), mount_points=MOUNT_POINTS
    )


def log(message: str) -> None:
    print(f"docker-vm: {message}", file=sys.stderr, flush=True)


def ensure_image() -> VmImage:
    """The cached VM image (kernel, initrd, root), built first if the recipe changed."""
    return netem_vm.build_image(recipe())


# -- the images, from the host's engine ---------------------------------------------------------


@dataclass(frozen=True)
class HostImages:
    """The host's images the VM needs, tag -> image id, made current on the host first."""

    ids: dict[str, str]
    ensure_s: float

    @property
    def tags(self) -> list[str]:
        return sorted(self.ids)


def host_images(client: docker.DockerClient) -> HostImages:
    """``IMAGE_NAMES`` made current on the host (built there if missing or stale), with every
    base their definitions name: the harness's builder resolves those in the VM too (the
    context hash takes each base's id), so they must be there, current, or it would build."""
    started = time.monotonic()
    definitions = images.definitions()
    built = images.ensure_all(client, IMAGE_NAMES, log)
    kinds = sorted({kind for name in IMAGE_NAMES for _, kind in definitions[name].bases})
    bases = [images.BASES[kind](client, log) for kind in kinds]
    ids = {}
    for tag in [*bases, *built.values()]:
        image_id = client.images.get(tag).id
        if image_id is None:
            raise RuntimeError(f"the host's engine gave no id for {tag}")
        ids[tag] = image_id
    return HostImages(ids, time.monotonic() - started)


def _save(client: docker.DockerClient, tags: list[str], tar: Path) -> None:
    """``docker save TAG...`` through the API (``GET /images/get?names=...``: the SDK's
    ``Image.save`` takes one image, and several in one tar store their shared layers once)."""
    response = client.api.get(
        f"{client.api.base_url}/images/get",
        params={"names": tags},
        stream=True,
        timeout=SAVE_TIMEOUT,
    )
    try:
        response.raise_for_status()
        with tar.open("wb") as out:
            for chunk in response.iter_content(1 << 20):
                out.write(chunk)
    finally:
        response.close()
    if tar.stat().st_size % 512:  # a tar is whole 512-byte blocks: a disk as it is
        raise RuntimeError(f"docker save gave {tar.stat().st_size} bytes, not a tar")


# -- the VM -------------------------------------------------------------------------------------


@dataclass
class DockerVm:
    """A running VM: its Docker engine at ``url``, its console, how long each stage took."""

    process: subprocess.Popen[bytes]
    port: int
    accel: str
    console_path: Path
    stderr_path: Path
    lines: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # guest uptime at each stage, s
    seconds: float = 0.0  # from QEMU's start to the ready (or prepared) line, host clock
    missing_modules: list[str] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def client(self, timeout: int = API_TIMEOUT) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=timeout, max_pool_size=32)

    def _read_console(self) -> None:
        assert self.process.stdout is not None
        with self.console_path.open("w") as copy:
            for raw in self.process.stdout:
                # The firmware's escape sequences may precede a line: look for ours within it.
                line = raw.decode(errors="replace").rstrip("\r\n")
                self.lines.append(line)
                copy.write(line + "\n")
                copy.flush()
                if STAGE in line:
                    name, _, uptime = line.split(STAGE, 1)[1].partition(" ")
                    with contextlib.suppress(ValueError):
                        self.stages[name] = float(uptime)
                elif "ECHOLAB-DOCKER-NO-MODULE " in line:
                    self.missing_modules.append(line.rsplit(" ", 1)[-1])
                elif any(word in line for word in (READY, PREPARED, FAILED)):
                    self._done.set()
        self._done.set()  # QEMU has exited

    def wait_for(self, word: str, timeout: float) -> None:
        """Until the guest prints ``word`` (READY or PREPARED); RuntimeError with the console
        if it fails, QEMU exits or time runs out."""
        started = time.monotonic()
        if not self._done.wait(timeout):
            self._fail(f"no {word} within {timeout:.0f} s")
        if not any(word in line for line in self.lines):
            self._fail(f"the VM did not print {word}")
        self.seconds = time.monotonic() - started

    def _fail(self, why: str) -> NoReturn:
        code = self.process.poll()
        exited = f"; QEMU exited {code}: {self.stderr_path.read_text()[-2000:]}" if code else ""
        raise RuntimeError(
            f"{why}{exited}\nconsole tail ({self.console_path}):\n" + "\n".join(self.lines[-60:])
        )

    def power_off(self, timeout: float = 15.0) -> None:
        """End QEMU (it is the VM: nothing in the guest needs to be kept)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _data_disk(path: Path) -> None:
    """A sparse ext4 for /var/lib/docker (no journal: a prepared disk is only ever read, each
    run writing to its own throw-away overlay)."""
    with path.open("wb") as disk:
        disk.truncate(DATA_DISK_GIB << 30)
    mkfs = [
        "mkfs.ext4", "-q", "-F", "-L", "echolab-data", "-m", "0", "-O", "^has_journal",
        "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", str(path),
    ]  # fmt: skip
    netem_vm._run(mkfs, 60)


def qemu_argv(image: VmImage, accel: str, port: int, data: str, extra: list[str]) -> list[str]:
    """The VM: read-only root, the data disk as ``data`` says, one restricted NIC whose only
    way in is the forward of host ``127.0.0.1:port`` to dockerd (no option ROM: the kernel is
    booted directly)."""
    forward = f"hostfwd=tcp:127.0.0.1:{port}-{GUEST_IP}:{DOCKER_PORT}"
    return [
        netem_vm.QEMU, *netem_vm.accel_args(accel), "-smp", str(CPUS), "-m", str(MEMORY_MIB),
        "-nographic", "-no-reboot",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-drive", f"file={image.rootfs},format=raw,if=virtio,readonly=on",
        "-drive", f"{data},format=raw,if=virtio,cache=unsafe",
        "-netdev", f"user,id=net0,restrict=on,{forward}",
        "-device", "virtio-net-pci,netdev=net0,romfile=",
        "-device", "virtio-rng-pci",
        *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def _running(
    image: VmImage, data: str, work: Path, extra: list[str], append: str = ""
) -> Iterator[DockerVm]:
    """QEMU started with these disks; ended on leaving, whatever happened."""
    accel = netem_vm.check_host()
    stderr = work / "qemu.stderr"
    cmdline = f"{KERNEL_CMDLINE} {append}".strip()
    port = _free_port()
    argv = qemu_argv(image, accel, port, data, ["-append", cmdline, *extra])
    with stderr.open("wb") as errors:  # a file: a pipe nobody reads could stall QEMU
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**os.environ, "TMPDIR": str(work)},  # where snapshot=on keeps its overlay
        )
    vm = DockerVm(process, port, accel, CACHE / "last-console.txt", stderr)
    try:
        threading.Thread(target=vm._read_console, name="docker-vm-console", daemon=True).start()
        yield vm
    finally:
        vm.power_off()


@dataclass(frozen=True)
class Prepared:
    """The data disk with the images loaded (cached), and what preparing it took now."""

    disk: Path
    loaded: list[str]  # the tags loaded now: none when the cached disk had them all
    save_s: float = 0.0
    seconds: float = 0.0  # the preparing boot: kernel, dockerd, docker load, power off
    stages: dict[str, float] = field(default_factory=dict)
    tar_mib: int = 0


def prepared_disk(
    image: VmImage, client: docker.DockerClient, host: HostImages, timeout: float = PREPARE_TIMEOUT
) -> Prepared:
    """The data disk holding ``host``'s images, made by booting the VM to ``docker load``
    them (emulated, the slow part) and cached in .cache/docker-vm/data/. Made from the last
    one when the same Docker wrote it: only the images it lacks are saved and loaded (their
    layers already there are skipped), the images they replace are pruned. Runs never write to
    it (``boot``: a throw-away overlay each)."""
    folder = CACHE / "data"
    wanted = {"docker": data_key(), "images": host.ids}
    key = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]
    with netem_vm._locked(CACHE / ".data.lock"):
        last = _last_disk(folder)
        if last is not None and last[1] == wanted:
            return Prepared(last[0], [])
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="prepare-", dir=CACHE))
        try:
            disk = work / "data.img"
            if last is not None and last[1].get("docker") == wanted["docker"]:
                netem_vm._run(["cp", "--sparse=always", str(last[0]), str(disk)], 300)
                had = last[1]["images"]
                missing = [tag for tag, found in host.ids.items() if had.get(tag) != found]
            else:
                _data_disk(disk)
                missing = host.tags
            saved, seconds, mib, stages = 0.0, 0.0, 0, {}
            if missing:
                tar = work / "images.tar"
                started = time.monotonic()
                _save(client, sorted(missing), tar)
                saved = time.monotonic() - started
                mib = tar.stat().st_size >> 20
                log(f"loading {', '.join(missing)} ({mib} MiB) into the data disk (emulated)")
                started = time.monotonic()
                extra = ["-drive", f"file={tar},format=raw,if=virtio,readonly=on"]
                with _running(image, f"file={disk}", work, extra, PREPARE_ARG) as vm:
                    vm.wait_for(PREPARED, timeout)
                    vm.process.wait(timeout=60)  # it powers itself off: the disk is clean
                seconds, stages = time.monotonic() - started, vm.stages
            target = folder / f"{key}.img"
            disk.rename(target)
            target.with_suffix(".json").write_text(json.dumps(wanted, indent=2) + "\n")
            for old in folder.glob("*"):  # the disk it replaces
                if old.stem != key:
                    old.unlink()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log(f"data disk prepared in {seconds:.0f} s: {target} (guest stages {stages})")
    return Prepared(target, sorted(missing), saved, seconds, stages, mib)


def _last_disk(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The cached data disk and what it holds, if there is one."""
    for manifest in sorted(folder.glob("*.json")):
        disk = manifest.with_suffix(".img")
        if disk.exists():
            return disk, json.loads(manifest.read_text())
    return None


@contextlib.contextmanager
def boot(image: VmImage, disk: Path, timeout: float = BOOT_TIMEOUT) -> Iterator[DockerVm]:
    """A VM whose dockerd runs with the prepared ``disk``'s images, ready to use; written
    through a throw-away overlay (QEMU's ``snapshot=on``, in a temporary folder). Powered off
    and the folder removed on leaving, whatever happened."""
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE))
    try:
        with _running(image, f"file={disk},snapshot=on", work, []) as vm:
            vm.wait_for(READY, timeout)
            yield vm
    finally:
        shutil.rmtree(work, ignore_errors=True)


def wait_engine(client: docker.DockerClient, timeout: float = 60.0) -> float:
    """Seconds until the VM's engine answers through the forwarded port."""
    started = time.monotonic()
    while True:
        try:
            client.ping()
            return time.monotonic() - started
        except (docker.errors.DockerException, requests.RequestException):
            if time.monotonic() - started > timeout:
                raise
            time.sleep(0.5)


def forbid_builds(client: docker.DockerClient) -> None:
    """Any image build or pull through ``client`` raises: in the VM every image must be the
    host's, loaded (there is no registry, and a build there would test another image)."""

    def refuse(what: str) -> Callable[..., NoReturn]:
        def refused(*args: Any, **kwargs: Any) -> NoReturn:
            raise AssertionError(
                f"the harness tried to {what} in the VM ({args[:1]}): an image loaded from the "
                "host is missing or not current there"
            )

        return refused

    client.api.build = refuse("build an image")  # type: ignore[method-assign]
    client.api.pull = refuse("pull an image")  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "boot"
    started = time.monotonic()
    image = ensure_image()
    log(f"image {image.directory} ({time.monotonic() - started:.1f} s)")
    if command == "build":
        print(image.directory)
        return 0
    client = docker.from_env()
    host = host_images(client)
    log(f"host images current in {host.ensure_s:.1f} s")
    prepared = prepared_disk(image, client, host)
    client.close()
    with boot(image, prepared.disk) as vm:
        client = vm.client()
        wait_engine(client)
        log(f"ready in {vm.seconds:.1f} s ({vm.accel}); guest stages {vm.stages}")
        log(f"missing modules: {vm.missing_modules or 'none'}; engine at {vm.url}")
        loaded = {tag: client.images.get(tag).id for tag in host.tags}
        print(json.dumps({"stages": vm.stages, "ready_s": vm.seconds, "loaded": loaded}))
        if command == "shell":  # kept up for a look: docker -H <url> ... (Ctrl-C ends it)
            with contextlib.suppress(KeyboardInterrupt):
                while vm.process.poll() is None:
                    time.sleep(1)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
