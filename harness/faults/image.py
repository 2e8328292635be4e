"""The fault sidecar's image: its base (mmdebstrap), the NetfilterQueue wheel, the build.

Everything is prepared on the host, so ``docker build`` needs no network: the base by
``base/build-base.sh`` with iptables, iproute2 and libnetfilter-queue1 added, the wheel
compiled by pip against Debian's ``libnetfilter-queue-dev`` (installed with apt-get if missing
and we are root) into ``faults/sidecar/vendor/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
from docker.client import DockerClient

from harness import images
from harness.images import image_present

ROOT = Path(__file__).resolve().parent.parent.parent
FOLDER = ROOT / "faults" / "sidecar"
VENDOR = FOLDER / "vendor"
BASE_IMAGE = "echolab-faults-base:bookworm"
BUILD_BASE = ROOT / "base" / "build-base.sh"
# What the sidecar needs beyond python3: iptables (NFQUEUE rules), iproute2 (tc), the queue library.
BASE_PACKAGES = "iptables,iproute2,libnetfilter-queue1"
SIDECAR_IMAGE = "echolab-faults-sidecar:latest"
NFQ_REQUIREMENT = "NetfilterQueue==1.1.0"
NFQ_HEADER = Path("/usr/include/libnetfilter_queue/libnetfilter_queue.h")
# The wheel is compiled for the host's Python; the base's python3 is Debian bookworm's 3.11.
IMAGE_PYTHON = (3, 11)

Say = Callable[[str], None]


def ensure_base(client: DockerClient, say: Say) -> str:
    base = os.environ.get("ECHOLAB_FAULTS_BASE", BASE_IMAGE)
    if not image_present(client, base):
        say(f"building {base} with mmdebstrap (about 25-50 s)")
        subprocess.run([str(BUILD_BASE), base, BASE_PACKAGES], check=True)
    return base


def ensure_wheel(say: Say) -> Path:
    VENDOR.mkdir(exist_ok=True)
    found = sorted(VENDOR.glob("netfilterqueue-1.1.0-cp311-*.whl"))
    if found:
        return found[0]
    if sys.version_info[:2] != IMAGE_PYTHON:
        raise RuntimeError(
            f"the NetfilterQueue wheel must be built by Python {IMAGE_PYTHON[0]}.{IMAGE_PYTHON[1]} "
            f"(the sidecar's), this is {sys.version.split()[0]}: run the harness from a 3.11 venv"
        )
    if not NFQ_HEADER.exists() or shutil.which("gcc") is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            say("installing libnetfilter-queue-dev and gcc (apt-get) to build NetfilterQueue")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "libnetfilter-queue-dev", "gcc"],
                check=True,
                env=env,
            )
        else:
            raise RuntimeError(
                "building the NetfilterQueue wheel needs gcc and libnetfilter-queue-dev: "
                "apt-get install gcc libnetfilter-queue-dev"
            )
    say(f"building wheel {NFQ_REQUIREMENT} (about 15 s)")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
            "--wheel-dir", str(VENDOR), NFQ_REQUIREMENT,
        ],
        check=True,
    )  # fmt: skip
    return sorted(VENDOR.glob("netfilterqueue-1.1.0-cp311-*.whl"))[0]


def build(client: DockerClient | None = None, say: Say = print, *, force: bool = False) -> str:
    """Build the sidecar image if missing (or ``force``); returns its tag."""
    client = client or docker.from_env()
    if not force and image_present(client, SIDECAR_IMAGE):
        return SIDECAR_IMAGE
    began = time.monotonic()
    base = ensure_base(client, say)
    ensure_wheel(say)
    images.build(client, str(FOLDER.relative_to(ROOT)), SIDECAR_IMAGE, base, say)
    say(f"built {SIDECAR_IMAGE} in {time.monotonic() - began:.1f} s")
    return SIDECAR_IMAGE


if __name__ == "__main__":
    build(force="--force" in sys.argv, say=lambda m: print(f"echolab faults: {m}", file=sys.stderr))
