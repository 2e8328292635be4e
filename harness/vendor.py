"""What an image's build context takes that is fetched on the host first, into its folder's
``vendor/``: binary wheels for the base image's Python (not the host's), or NetfilterQueue's
source distribution, which the engine's Dockerfile compiles. Builds themselves have no network;
nothing is compiled or installed on the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import docker.errors
from docker.client import DockerClient

from harness import labels
from harness.errors import ImageError

Say = Callable[[str], None]
# NetfilterQueue's source distribution, downloaded on the host by any Python (pinned by hash)
# and compiled in the engine's Dockerfile, from its .pyx (by the builder base's Cython).
NFQ_VERSION = "1.1.0"
NFQ_SDIST = f"NetfilterQueue-{NFQ_VERSION}.tar.gz"
NFQ_SHA256 = "e30eff999325617f54bd95b3d8d3353214cc77b5e3188f90ec3a6f6288888d72"


def base_python(client: DockerClient, base: str) -> str:
    """The base image's Python as "3.11": binary wheels must match it, not the host's."""
    # Not ``containers.run(remove=True)``: a Ctrl-C between its create and its start left the
    # container behind, unowned. Removed in ``finally``, whatever happens after the create; and
    # by its name when the create itself fails, since a busy engine may create a container
    # after the client gave up waiting for its answer (CI runs left such ones, "Created").
    name = f"echolab-probe-{uuid.uuid4().hex[:12]}"
    try:
        probe = client.containers.create(
            base,
            ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            name=name,
            network_mode="none",
            labels={labels.PROJECT: labels.PROJECT_VALUE, labels.ROLE: "probe"},
        )
    except BaseException:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.api.remove_container(name, force=True)
        raise
    try:
        probe.start()
        status = probe.wait(timeout=120)
        output = probe.logs(stdout=True, stderr=True)
    finally:
        probe.remove(force=True)
    if status.get("StatusCode") != 0:
        raise ImageError(f"{base}: python3 did not run: {output.decode(errors='replace')}")
    return bytes(output).decode().strip()


def fetch_wheels(vendor: Path, names: tuple[str, ...], python: str, say: Say) -> None:
    """Put wheels of ``names``, at the versions this venv has, for the image's ``python`` (and
    this machine's architecture) into ``vendor``; nothing is fetched twice."""
    vendor.mkdir(exist_ok=True)
    marker = vendor / ".python"
    if not marker.exists() or marker.read_text().strip() != python:
        for wheel in vendor.glob("*.whl"):
            wheel.unlink()
        marker.write_text(python + "\n")
    for name in names:
        version = importlib.metadata.version(name)
        wanted = f"{name}-{version}-"
        for wheel in vendor.glob(f"{name}-*.whl"):
            if not wheel.name.startswith(wanted):
                wheel.unlink()
        if not any(vendor.glob(f"{wanted}*.whl")):
            say(f"fetching wheel {name}=={version} for Python {python}")
            subprocess.run(
                [
                    sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
                    "--platform", f"manylinux2014_{platform.machine()}",
                    "--dest", str(vendor), f"{name}=={version}",
                ],
                check=True,
            )  # fmt: skip


def wheels_for(folder: Path, *names: str) -> Callable[[DockerClient, str, Say], None]:
    """A ``prepare`` step that fetches ``names``' wheels into ``folder/vendor``."""

    def prepare(client: DockerClient, base: str, say: Say) -> None:
        fetch_wheels(folder / "vendor", names, base_python(client, base), say)

    return prepare


def netfilterqueue_sdist(folder: Path) -> Callable[[DockerClient, str, Say], None]:
    """A ``prepare`` step that downloads NetfilterQueue's source distribution into
    ``folder/vendor`` (once; a pure download, by whatever Python runs the harness). The
    Dockerfile compiles it on the builder base: nothing is compiled or installed on the host."""

    def prepare(client: DockerClient, base: str, say: Say) -> None:
        vendor = folder / "vendor"
        vendor.mkdir(exist_ok=True)
        sdist = vendor / NFQ_SDIST
        for stale in [*vendor.glob("*.whl"), *vendor.glob("*.tar.gz")]:
            if stale != sdist:  # a wheel compiled on the host by an older harness, an old sdist
                stale.unlink(missing_ok=True)
        if sdist.exists() and _sha256(sdist) == NFQ_SHA256:
            return
        say(f"downloading the source of NetfilterQueue=={NFQ_VERSION}")
        # Into a directory of its own, then renamed into vendor/ whole: a harness that builds
        # at the same time sees the sdist complete or not at all, never half of it.
        with tempfile.TemporaryDirectory(prefix="echolab-sdist-") as temporary:
            subprocess.run(
                [
                    sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    # Only this package as source: its build dependencies (pip prepares the
                    # metadata) may be wheels, or pip compiles Cython from source for minutes.
                    "--no-binary", "NetfilterQueue", "--dest", temporary,
                    f"NetfilterQueue=={NFQ_VERSION}",
                ],
                check=True,
            )  # fmt: skip
            fetched = Path(temporary) / NFQ_SDIST
            if not fetched.exists() or _sha256(fetched) != NFQ_SHA256:
                found = ", ".join(p.name for p in Path(temporary).iterdir()) or "nothing"
                raise ImageError(
                    f"pip download gave {found}, not {NFQ_SDIST} (sha256 {NFQ_SHA256})"
                )
            partial = vendor / f".{NFQ_SDIST}.{os.getpid()}.partial"  # skipped by contexts
            shutil.copyfile(fetched, partial)
            os.replace(partial, sdist)

    return prepare


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
