"""The lab's images: choose a base, fetch the client's wheels, build server and client.

The base is ``python:3.12-slim`` where it can be had; on machines that reach no registry the
base is built locally (``base/build-base.sh``: mmdebstrap + docker import). Builds never pull
and need no network: the client's pure-Python dependencies are wheels fetched on the host.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
from docker.client import DockerClient

from harness import labels

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = "python:3.12-slim"
LOCAL_BASE = "echolab-base:bookworm"
SERVER_IMAGE = "echolab-server:latest"
CLIENT_IMAGE = "echolab-client:latest"
CLIENT_WHEELS = ("tenacity",)
# uvloop makes the server about as fast in its container as natively (see make bench).
SERVER_WHEELS = ("uvloop",)

Say = Callable[[str], None]


def image_present(client: DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def resolve_base(client: DockerClient, say: Say) -> str:
    """``BASE_IMAGE`` if set; else python:3.12-slim if here or pullable; else the local base."""
    requested = os.environ.get("BASE_IMAGE")
    if requested:
        if not image_present(client, requested):
            raise RuntimeError(f"BASE_IMAGE={requested} is not present; build or pull it first")
        return requested
    if image_present(client, DEFAULT_BASE):
        return DEFAULT_BASE
    if image_present(client, LOCAL_BASE):
        return LOCAL_BASE
    try:
        say(f"pulling {DEFAULT_BASE}")
        client.images.pull(DEFAULT_BASE)
        return DEFAULT_BASE
    except docker.errors.APIError as error:
        say(
            f"{DEFAULT_BASE} cannot be pulled ({error.explanation or error}); building {LOCAL_BASE}"
        )
    subprocess.run([str(ROOT / "base" / "build-base.sh"), LOCAL_BASE], check=True)
    return LOCAL_BASE


def base_python(client: DockerClient, base: str) -> str:
    """The base image's Python as "3.11": binary wheels must match it, not the host's."""
    output = client.containers.run(
        base,
        ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        remove=True,
        network_mode="none",
        labels={labels.PROJECT: labels.PROJECT_VALUE, labels.ROLE: "probe"},
    )
    return output.decode().strip()


def fetch_wheels(folder: str, names: tuple[str, ...], python: str, say: Say) -> Path:
    """Put wheels of ``names``, at the versions this venv has, for the image's ``python``
    (and this machine's architecture) into ``<folder>/vendor``; nothing is fetched twice."""
    vendor = ROOT / folder / "vendor"
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
    return vendor


def build(client: DockerClient, folder: str, tag: str, base: str, say: Say) -> None:
    say(f"building {tag} from {folder}/ on {base}")
    try:
        client.images.build(
            path=str(ROOT / folder),
            tag=tag,
            buildargs={"BASE_IMAGE": base},
            pull=False,
            rm=True,
            forcerm=True,
            labels={labels.PROJECT: labels.PROJECT_VALUE},
        )
    except docker.errors.BuildError as error:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in error.build_log)
        raise RuntimeError(f"building {tag} failed: {error.msg}\n{log[-3000:]}") from error


def build_all(client: DockerClient | None = None, say: Say = print) -> str:
    """Build both images (layer cache makes an unchanged rebuild take about a second)."""
    client = client or docker.from_env()
    base = resolve_base(client, say)
    python = base_python(client, base)
    fetch_wheels("server", SERVER_WHEELS, python, say)
    fetch_wheels("client", CLIENT_WHEELS, python, say)
    build(client, "server", SERVER_IMAGE, base, say)
    build(client, "client", CLIENT_IMAGE, base, say)
    return base
