"""A tiny QEMU virtual machine with a stock Debian kernel, to run the netem plans for real.

Why a VM: the development machine's kernel has no ``sch_netem`` ("Specified qdisc kind is
unknown"), so ``harness.faults.netem``'s argument vectors were only ever compared as lists. A
Debian bookworm kernel has netem, ifb, u32, mirred and tbf as modules. QEMU runs it with KVM
(``-enable-kvm -cpu host``) where /dev/kvm can, else emulated (TCG): see ``accelerator()``.

How: ``mmdebstrap`` (Debian packages only, no image registry) builds a minbase rootfs with
``linux-image-amd64``, iproute2 and python3; its kernel and initrd are booted directly by QEMU
(``-kernel``/``-initrd``, ``root=/dev/vda``), the rootfs being an ext4 image made by
``mkfs.ext4 -d`` and attached read-only, so one image serves any number of runs. PID 1 is a
small shell script baked into the image; the test payload (``netem_payload.py``) and the plans
(JSON made here, on the host, by the real ``plan``/``update`` functions) come in through QEMU's
``fw_cfg`` (``/sys/firmware/qemu_fw_cfg``), so changing either needs no rebuild. The VM has no
NIC (``-nic none``): traffic runs between two network namespaces inside it. Results come back as
``ECHOLAB-NETEM {json}`` lines on the serial console.

The image is cached under ``.cache/netem-vm/<recipe hash>/`` in the repository root: a change
to the recipe below (packages, init script, initramfs settings) builds a new one.

    .venv/bin/python -m tests.vm.netem_vm build    # build (or reuse) the image, print its path
    .venv/bin/python -m tests.vm.netem_vm run      # build/reuse, boot, print the result lines
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import paths
from harness.faults import bandwidth, netem
from harness.faults import engine as nfqueue
from harness.faults.model import Impairment

CACHE = paths.CACHE / "netem-vm"
PAYLOAD = Path(__file__).with_name("netem_payload.py")
QEMU = "qemu-system-x86_64"
RESULT_PREFIX = "ECHOLAB-NETEM "
DEV = "eth0"  # the target's interface, as the harness assumes

SUITE = "bookworm"
PACKAGES = ("linux-image-amd64", "initramfs-tools", "kmod", "iproute2", "python3")
# Not needed to boot a virtio guest or to shape traffic: less to unpack, a smaller image.
EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/locale/*",
    "/usr/lib/modules/*/kernel/drivers/gpu/*",
    "/usr/lib/modules/*/kernel/drivers/media/*",
    "/usr/lib/modules/*/kernel/drivers/net/wireless/*",
    "/usr/lib/modules/*/kernel/drivers/net/ethernet/*",
    "/usr/lib/modules/*/kernel/drivers/infiniband/*",
    "/usr/lib/modules/*/kernel/drivers/staging/*",
    "/usr/lib/modules/*/kernel/drivers/usb/*",
    "/usr/lib/modules/*/kernel/drivers/scsi/*",
    "/usr/lib/modules/*/kernel/drivers/bluetooth/*",
    "/usr/lib/modules/*/kernel/drivers/iio/*",
    "/usr/lib/modules/*/kernel/drivers/hid/*",
    "/usr/lib/modules/*/kernel/drivers/input/*",
    "/usr/lib/modules/*/kernel/sound/*",
    "/usr/lib/modules/*/kernel/net/wireless/*",
    "/usr/lib/modules/*/kernel/net/mac80211/*",
    "/usr/lib/modules/*/kernel/net/bluetooth/*",
)
# The initrd only has to find an ext4 root on virtio-blk: a short module list, not "most"
# (smaller and faster to build and to boot). Written before the kernel's postinst runs.
INITRAMFS_CONF = "MODULES=list\nCOMPRESS=gzip\n"
INITRAMFS_MODULES = "virtio_pci\nvirtio_blk\next4\n"
INIT_SCRIPT = """\
#!/bin/sh
# PID 1 of the echolab netem VM: mount the basics, fetch the payload and the plans from QEMU's
# fw_cfg, run the payload, power off (QEMU runs with -no-reboot, so the VM process exits).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
# The initramfs has moved /proc, /sys, /dev and /run here already; mount what is missing.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mountpoint -q /run || mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /tmp
modprobe qemu_fw_cfg
fw=/sys/firmware/qemu_fw_cfg/by_name/opt/echolab
if cp "$fw/payload/raw" /run/payload.py && cp "$fw/plans/raw" /run/plans.json; then
    python3 -u /run/payload.py /run/plans.json
    echo "ECHOLAB-NETEM-EXIT $?"
else
    echo "ECHOLAB-NETEM-EXIT fw_cfg"
fi
echo o > /proc/sysrq-trigger
sleep 30
"""
INIT_PATH = "/usr/local/sbin/echolab-init"
KERNEL_CMDLINE = (
    "console=ttyS0 root=/dev/vda ro rootfstype=ext4 fastboot quiet loglevel=3 panic=-1 "
    f"init={INIT_PATH}"
)
BUILD_TIMEOUT = 600.0
INSTALL_TIMEOUT = 300.0
BOOT_TIMEOUT = 600.0  # one boot runs every case in turn, emulated (TCG): minutes on a slow host
SOURCE_DATE_EPOCH = "1700000000"  # fixed timestamps in the rootfs and the file system
FS_UUID = "6e657465-6d00-4000-8000-6563686f6c61"


NOT_OPTED_IN = "boots a VM: opt in with ECHOLAB_VM=1"


def opted_in() -> bool:
    """``ECHOLAB_VM=1``: the VM tests must run, and a VM that cannot be made fails them."""
    return os.environ.get("ECHOLAB_VM") == "1"


class Unavailable(RuntimeError):
    """This machine cannot run the VM (no /dev/kvm, no QEMU and no way to install it): a
    failure under ``ECHOLAB_VM=1`` (``opted_in``), which promises the VM tests ran."""


@dataclass(frozen=True)
class Recipe:
    """What one cached VM image is made of: this module's, or ``docker_vm``'s. The build is
    the same for both: mmdebstrap, the init script at ``INIT_PATH``, a read-only ext4 root."""

    name: str  # the cache folder under .cache/
    label: str  # the root file system's (16 characters at most)
    packages: tuple[str, ...]
    init_script: str
    key: str  # the hash of everything above and of what the caller adds: the cache key
    mount_points: tuple[str, ...] = ()  # empty directories made in the (read-only) root

    @property
    def cache(self) -> Path:
        return paths.CACHE / self.name


@dataclass(frozen=True)
class VmImage:
    """A built image: a kernel, its initrd and the read-only ext4 root file system."""

    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs.img"


@dataclass(frozen=True)
class VmRun:
    """What one boot printed: the payload's results, its exit word and the whole console."""

    results: list[dict[str, Any]]
    exit_status: str | None
    accel: str
    console: str
    seconds: float


def recipe_key() -> str:
    """A hash of everything that goes into the image: a new recipe means a new image."""
    recipe = {
        "suite": SUITE,
        "packages": PACKAGES,
        "excludes": EXCLUDES,
        "initramfs": [INITRAMFS_CONF, INITRAMFS_MODULES],
        "init": INIT_SCRIPT,
        "format": 2,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def recipe() -> Recipe:
    return Recipe("netem-vm", "echolab-netem", PACKAGES, INIT_SCRIPT, recipe_key())


def log(message: str) -> None:
    print(f"netem-vm: {message}", file=sys.stderr, flush=True)


def _apt_install(package: str) -> None:
    """Install a Debian package on the host, as build-base.sh does (root and apt-get only)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable(f"{package} is missing and this is not root on Debian: install it")
    log(f"installing {package} on the host (apt-get install {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if done.returncode != 0:
        # The package lists may be stale or absent: refresh once, then try again.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=INSTALL_TIMEOUT)
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
        )
    if done.returncode != 0:
        raise Unavailable(f"apt-get install {package} failed: {done.stderr.strip()[-500:]}")


def accelerator() -> str:
    """``kvm`` where /dev/kvm can run a stock kernel, else ``tcg`` (QEMU's own emulator).

    ``ECHOLAB_VM_ACCEL=kvm|tcg`` forces one. Found on the development machine: its /dev/kvm is
    PVM (``kvm_pvm``, KVM without hardware virtualisation, for nested sandboxes), which runs
    only PVM-enabled guest kernels at speed; Debian's kernel there crawls through KVM's
    instruction emulator (minutes to decompress itself) and ``-cpu host`` aborts on MSR 0x10a.
    TCG boots the same image in about 10 s, and netem's timers follow the host's clock.
    """
    forced = os.environ.get("ECHOLAB_VM_ACCEL", "")
    if forced in ("kvm", "tcg"):
        return forced
    if forced:
        raise Unavailable(f"ECHOLAB_VM_ACCEL must be kvm or tcg, got {forced!r}")
    return "tcg" if Path("/sys/module/kvm_pvm").exists() else "kvm"


def accel_args(accel: str) -> list[str]:
    """QEMU's arguments for ``accelerator()``'s choice."""
    if accel == "kvm":
        return ["-enable-kvm", "-cpu", "host"]
    return ["-accel", "tcg,tb-size=256", "-cpu", "max"]


def check_host() -> str:
    """/dev/kvm present, QEMU and mmdebstrap installed (from Debian if missing); the
    accelerator to use."""
    accel = accelerator()
    if accel == "kvm" or not os.environ.get("ECHOLAB_VM_ACCEL"):
        if not os.path.exists("/dev/kvm"):
            raise Unavailable(
                "/dev/kvm is missing: no hardware virtualisation here "
                "(ECHOLAB_VM_ACCEL=tcg runs the VM emulated)"
            )
        if accel == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
            raise Unavailable("/dev/kvm is not readable and writable by this user")
    if not shutil.which(QEMU):
        _apt_install("qemu-system-x86")
    if not shutil.which("mmdebstrap") or not shutil.which("mkfs.ext4"):
        _apt_install("mmdebstrap")
    if not shutil.which(QEMU):
        raise Unavailable(f"{QEMU} is still missing after installing qemu-system-x86")
    return accel


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time (two test sessions in the same checkout share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _mmdebstrap(rootfs: Path, packages: tuple[str, ...] = PACKAGES) -> None:
    """Debian bookworm, minbase plus the packages; the initramfs settings go in before the
    kernel is installed (essential hook), so its postinst builds the small initrd directly."""
    conf = "$1/etc/initramfs-tools/conf.d/echolab"
    modules = "$1/usr/share/initramfs-tools/modules.d/echolab"
    hook = (
        'mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"'
        f" && printf %s '{INITRAMFS_CONF}' > \"{conf}\""
        f" && printf %s '{INITRAMFS_MODULES}' > \"{modules}\""
    )
    argv = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        '--aptopt=APT::Install-Recommends "false"',
        *[f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDES],
        f"--essential-hook={hook}",
        SUITE,
        str(rootfs),
    ]
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    _run(argv, BUILD_TIMEOUT, env)


def _newest(directory: Path, prefix: str) -> Path:
    found = sorted(directory.glob(prefix + "*"))
    if not found:
        raise RuntimeError(f"no {prefix}* in {directory}: did the kernel package install?")
    return found[-1]


def _size_mib(path: Path) -> int:
    done = subprocess.run(
        ["du", "-s", "--block-size=1M", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.split()[0])


def _clamp_times(tree: Path, epoch: int) -> None:
    """No time later than ``epoch`` (what mmdebstrap and this builder wrote just now), so the
    file system image is the same byte for byte when the packages are."""
    for directory, names, files in os.walk(tree):
        for name in [*names, *files, "."]:
            path = os.path.join(directory, name)
            if os.lstat(path).st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)


def _build(target: Path, recipe: Recipe) -> None:
    work = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    try:
        rootfs = work / "rootfs"
        started = time.monotonic()
        log(f"mmdebstrap {SUITE} ({', '.join(recipe.packages)}), a minute or two")
        _mmdebstrap(rootfs, recipe.packages)
        log(f"rootfs ready in {time.monotonic() - started:.0f} s")
        init = rootfs / INIT_PATH.lstrip("/")
        init.parent.mkdir(parents=True, exist_ok=True)
        init.write_text(recipe.init_script)
        init.chmod(0o755)
        for directory in recipe.mount_points:
            (rootfs / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        _clamp_times(rootfs, int(SOURCE_DATE_EPOCH))
        out = work / "image"
        out.mkdir()
        shutil.copy2(_newest(rootfs / "boot", "vmlinuz-"), out / "vmlinuz")
        shutil.copy2(_newest(rootfs / "boot", "initrd.img-"), out / "initrd.img")
        kernel_version = _newest(rootfs / "boot", "vmlinuz-").name.removeprefix("vmlinuz-")
        size = _size_mib(rootfs) * 5 // 4 + 64
        env = {**os.environ, "E2FSPROGS_FAKE_TIME": SOURCE_DATE_EPOCH}
        # A fixed UUID and hash seed (and time): the same tree gives the same image.
        mkfs = [
            "mkfs.ext4", "-q", "-F", "-L", recipe.label, "-O", "^has_journal",
            "-U", FS_UUID, "-E", f"hash_seed={FS_UUID}",
            "-d", str(rootfs), str(out / "rootfs.img"), f"{size}M",
        ]  # fmt: skip
        _run(mkfs, 120, env)
        manifest = {"key": recipe.key, "kernel": kernel_version, "rootfs_mib": size}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        out.rename(target)
        log(
            f"image ready in {time.monotonic() - started:.0f} s: {target} (kernel {kernel_version})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_image(recipe: Recipe) -> VmImage:
    """The cached image of ``recipe``, built first if it is not there (one builder at a time)."""
    check_host()
    target = recipe.cache / recipe.key
    with _locked(recipe.cache / ".lock"):
        if not (target / "manifest.json").exists():
            shutil.rmtree(target, ignore_errors=True)
            _build(target, recipe)
            for old in recipe.cache.glob("*/manifest.json"):  # earlier recipes' (a GiB each)
                if old.parent != target:
                    shutil.rmtree(old.parent, ignore_errors=True)
    return VmImage(target)


def ensure_image() -> VmImage:
    """The cached image for the current recipe, built first if it is not there."""
    return build_image(recipe())


def expectation(impairment: Impairment) -> dict[str, Any]:
    """What a round trip through the target should show. Each impaired direction adds
    ``delay`` once and drops with ``loss`` once (a probe goes in, its echo comes out); the
    rate is the target's egress, which the echo's way back crosses."""
    legs = 2 if impairment.direction == "both" else 1
    return {
        "delay_ms": impairment.delay * 1e3 * legs,
        "jitter_ms": impairment.jitter * 1e3,
        "loss": 1 - (1 - impairment.loss) ** legs,
        "rate_bps": impairment.rate,
        "keep_order": impairment.keep_order,
    }


def _case(name: str, probe: str, before: Impairment, after: Impairment) -> dict[str, Any]:
    plan = netem.plan(before, DEV)
    return {
        "name": name,
        "backend": "netem",
        "probe": probe,
        "impairment": before.words(),
        "updated_to": after.words(),
        "apply": plan.apply,
        "update": netem.update(after, DEV),
        "remove": plan.remove,
        "expect": {"applied": expectation(before), "updated": expectation(after)},
    }


def _tbf_case(name: str, before: Impairment, after: Impairment) -> dict[str, Any]:
    """The nfqueue backend's rate-only plan is pure ``tc`` too (tbf): worth the same proof.
    Its ``remove`` also deletes iptables rules, which this VM has no binary for (ignored)."""
    plan = nfqueue.plan(before, DEV)
    _, update = nfqueue.update(after, DEV)
    if plan.engine is not None:
        raise AssertionError("a rate-only nfqueue plan runs no user-space engine")
    return {
        "name": name,
        "backend": plan.mechanism,
        "probe": "rate",
        "impairment": before.words(),
        "updated_to": after.words(),
        "apply": plan.apply,
        "update": update,
        "remove": plan.remove,
        "expect": {"applied": expectation(before), "updated": expectation(after)},
        "burst_bytes": bandwidth.burst_bytes(before.rate or 0),
    }


def cases() -> list[dict[str, Any]]:
    """The impairments proven in the VM, with the argv the harness itself generates."""
    parse = Impairment.parse
    return [
        _case(
            "egress-delay",
            "delay",
            parse(delay="20ms", direction="egress"),
            parse(delay="60ms", direction="egress"),
        ),
        _case(
            "ingress-delay",
            "delay",
            parse(delay="20ms", direction="ingress"),
            parse(delay="60ms", direction="ingress"),
        ),
        _case(
            "both-delay",
            "delay",
            parse(delay="20ms", direction="both"),
            parse(delay="30ms", direction="both"),
        ),
        _case(
            "egress-jitter-normal",
            "jitter",
            parse(delay="20ms", jitter="5ms", distribution="normal"),
            parse(delay="40ms", jitter="2ms", distribution="normal"),
        ),
        _case(
            "egress-loss",
            "loss",
            parse(loss="10%", direction="egress"),
            parse(loss="30%", direction="egress"),
        ),
        _case(
            "ingress-loss",
            "loss",
            parse(loss="10%", direction="ingress"),
            parse(loss="20%", direction="ingress"),
        ),
        _case(
            "both-loss",
            "loss",
            parse(loss="10%", direction="both"),
            parse(loss="5%", direction="both"),
        ),
        _case("egress-rate-netem", "rate", parse(rate="1mbit"), parse(rate="2mbit")),
        _tbf_case("egress-rate-tbf", parse(rate="1mbit"), parse(rate="2mbit")),
    ]


def run_vm(image: VmImage, plans: list[dict[str, Any]], timeout: float = BOOT_TIMEOUT) -> VmRun:
    """Boot the image once with these plans; the VM runs them all and powers off."""
    accel = check_host()
    with tempfile.TemporaryDirectory(prefix="netem-vm-") as work:
        plans_file = Path(work) / "plans.json"
        plans_file.write_text(json.dumps({"dev": DEV, "cases": plans}))
        argv = [
            QEMU, *accel_args(accel), "-smp", "1", "-m", "512",
            "-nographic", "-no-reboot", "-nic", "none",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", KERNEL_CMDLINE,
            "-drive", f"file={image.rootfs},format=raw,if=virtio,readonly=on",
            "-fw_cfg", f"name=opt/echolab/payload,file={PAYLOAD}",
            "-fw_cfg", f"name=opt/echolab/plans,file={plans_file}",
        ]  # fmt: skip
        started = time.monotonic()
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as error:
            console = (error.stdout or b"").decode(errors="replace")
            raise RuntimeError(
                f"the VM did not power off within {timeout:.0f} s; console tail:\n"
                + console[-4000:]
            ) from error
        seconds = time.monotonic() - started
    console = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(
            f"{QEMU} exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}"
        )
    results: list[dict[str, Any]] = []
    exit_status = None
    for line in console.splitlines():
        line = line.strip("\r")
        if line.startswith(RESULT_PREFIX):
            results.append(json.loads(line[len(RESULT_PREFIX) :]))
        elif line.startswith("ECHOLAB-NETEM-EXIT "):
            exit_status = line.split(" ", 1)[1].strip()
    return VmRun(results, exit_status, accel, console, seconds)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "run"
    started = time.monotonic()
    image = ensure_image()
    log(f"image {image.directory} ({time.monotonic() - started:.1f} s)")
    if command == "build":
        print(image.directory)
        return 0
    if command == "plans":
        print(json.dumps(cases(), indent=2))
        return 0
    run = run_vm(image, cases())
    for result in run.results:
        print(json.dumps(result))
    log(
        f"VM ({run.accel}) ran {len(run.results)} records in {run.seconds:.1f} s, "
        f"exit {run.exit_status}"
    )
    if run.exit_status != "0":
        print(run.console[-4000:], file=sys.stderr)
    return 0 if run.exit_status == "0" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
