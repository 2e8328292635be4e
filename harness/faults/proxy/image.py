"""The proxy's image: ``faults/proxy/Dockerfile`` plus the pure modules of this package, copied
into the build context as ``echolab_proxy`` (so one copy of the code serves the harness's unit
tests and the container). Built on the same base as the server and the client; no network.

The image carries a hash of its sources (label ``org.echolab.proxy-sources``): ``build()``
rebuilds when the code changed, not only when the image is missing.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
from docker.client import DockerClient

from harness import labels
from harness.images import resolve_base

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent.parent.parent
DOCKERFILE = ROOT / "faults" / "proxy" / "Dockerfile"
PROXY_IMAGE = "echolab-faults-proxy:latest"
SOURCES_LABEL = "org.echolab.proxy-sources"
HOST_ONLY = {"image.py", "api.py"}  # Docker-side modules: not part of the image

Say = Callable[[str], None]


def sources() -> list[tuple[str, bytes]]:
    """(path in the context, content) of the Dockerfile and the package, in a stable order."""
    files = [("Dockerfile", DOCKERFILE.read_bytes())]
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.as_posix() in HOST_ONLY:
            continue
        files.append((f"echolab_proxy/{relative.as_posix()}", path.read_bytes()))
    return files


def sources_hash(files: list[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, content in files:
        digest.update(name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:16]


def context(files: list[tuple[str, bytes]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer


def current(client: DockerClient, wanted: str) -> bool:
    try:
        image = client.images.get(PROXY_IMAGE)
    except docker.errors.ImageNotFound:
        return False
    return (image.labels or {}).get(SOURCES_LABEL) == wanted


def build(client: DockerClient | None = None, say: Say = print, *, force: bool = False) -> str:
    """Build the proxy image if missing or stale (or ``force``); returns its tag."""
    client = client or docker.from_env()
    files = sources()
    wanted = sources_hash(files)
    if not force and current(client, wanted):
        return PROXY_IMAGE
    began = time.monotonic()
    base = resolve_base(client, say)
    say(f"building {PROXY_IMAGE} on {base}")
    try:
        client.images.build(
            fileobj=context(files),
            custom_context=True,
            tag=PROXY_IMAGE,
            buildargs={"BASE_IMAGE": base},
            pull=False,
            rm=True,
            forcerm=True,
            labels={labels.PROJECT: labels.PROJECT_VALUE, SOURCES_LABEL: wanted},
        )
    except docker.errors.BuildError as error:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in error.build_log)
        raise RuntimeError(f"building {PROXY_IMAGE} failed: {error.msg}\n{log[-3000:]}") from error
    say(f"built {PROXY_IMAGE} in {time.monotonic() - began:.1f} s")
    return PROXY_IMAGE


if __name__ == "__main__":
    build(force="--force" in sys.argv, say=lambda m: print(f"echolab proxy: {m}", file=sys.stderr))
