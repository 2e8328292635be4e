"""The lab's images: choose a base, fetch the client's wheels, build server and client.

The base is ``python:3.12-slim`` where it can be had; on machines that reach no registry the
base is built locally (``base/build-base.sh``: mmdebstrap + docker import). Builds never pull
and need no network: the client's pure-Python dependencies are wheels fetched on the host.
"""

from __future__ import annotations

import importlib.metadata
import os
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

Say = Callable[[str], None]


def _present(client: DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def resolve_base(client: DockerClient, say: Say) -> str:
    """``BASE_IMAGE`` if set; else python:3.12-slim if here or pullable; else the local base."""
    requested = os.environ.get("BASE_IMAGE")
    if requested:
        if not _present(client, requested):
            raise RuntimeError(f"BASE_IMAGE={requested} is not present; build or pull it first")
        return requested
    if _present(client, DEFAULT_BASE):
        return DEFAULT_BASE
    if _present(client, LOCAL_BASE):
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


def fetch_wheels(say: Say) -> Path:
    """Put the client's dependency wheels, at the versions this venv has, into client/vendor."""
    vendor = ROOT / "client" / "vendor"
    vendor.mkdir(exist_ok=True)
    for name in CLIENT_WHEELS:
        version = importlib.metadata.version(name)
        wanted = f"{name}-{version}-"
        stale = [w for w in vendor.glob(f"{name}-*.whl") if not w.name.startswith(wanted)]
        for wheel in stale:
            wheel.unlink()
        if not any(vendor.glob(f"{wanted}*.whl")):
            say(f"fetching wheel {name}=={version}")
            subprocess.run(
                [
                    sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "--dest", str(vendor), f"{name}=={version}",
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
    fetch_wheels(say)
    build(client, "server", SERVER_IMAGE, base, say)
    build(client, "client", CLIENT_IMAGE, base, say)
    return base
