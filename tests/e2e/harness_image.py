"""An image of the harness in a container, on the base of your choice: the project's tree
(``harness/``, ``server/``, ``client/``, ``faults/``, ``base/``) under ``/src``, the harness's root
there, over wheels of its pure-Python dependencies at this venv's versions, fetched on the host
for that base's Python (``harness.vendor.fetch_wheels``, as the lab's images). Built with the
SDK, no network and ``pull=False``; labelled as the project's (``make clean`` removes what a
failed run left). Run it with the Docker socket mounted (``run_harness``) to drive Docker from a
Python that is not the host's.

``test_engine_image.py`` runs it on Debian trixie (Python 3.13: ``trixie_base``); the session
tests run their owner (``session_owner/owner.py``) in it on the lab's base.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable
from pathlib import Path

import docker
import docker.errors

from harness import images, labels, paths
from harness import vendor as vendoring
from harness.errors import ImageError

FOLDER = Path(__file__).parent / "harness_tree"
TREE = ("harness", "server", "client", "faults", "base")
ROLE = "test-harness-image"
TRIXIE_BASE = "echolab-test-base:trixie"
DOCKER_SOCKET = "/var/run/docker.sock"
# The harness's dependencies (docker, requests and its own, tenacity): pure Python, at the
# versions this venv has, for the base's Python (harness.vendor.fetch_wheels, as the lab's images).
WHEELS = ("docker", "requests", "urllib3", "idna", "certifi", "charset_normalizer", "tenacity")
log = logging.getLogger(__name__)


def trixie_base(client: docker.DockerClient) -> str:
    """Debian trixie with python3 (3.13), built by base/build-base.sh once and reused while its
    script is the same (keyed by label, as the lab's local bases)."""
    return images.local_base(client, TRIXIE_BASE, "", log.info, suite="trixie")


def build_harness_image(
    client: docker.DockerClient,
    base: str,
    tree: Iterable[str] = TREE,
    root: Path = paths.ROOT,
) -> str:
    """A fresh tag (unique per call) of the harness image on ``base``, holding ``tree`` (folders
    of ``root``) under /src; the caller removes it (``remove_image``)."""
    python = vendoring.base_python(client, base)
    vendor = paths.CACHE / "harness-image-wheels" / python
    vendor.mkdir(parents=True, exist_ok=True)
    vendoring.fetch_wheels(vendor, WHEELS, python, log.info)
    wheels = [(f"vendor/{wheel.name}", wheel) for wheel in sorted(vendor.glob("*.whl"))]
    include = tuple((root / folder, f"src/{folder}") for folder in tree)
    files = images.ImageDef(ROLE, "", FOLDER, include=include).files() + wheels
    tag = f"echolab-test-harness:{uuid.uuid4().hex[:8]}"
    try:
        client.images.build(
            fileobj=images.context_tar(files),
            custom_context=True,
            tag=tag,
            buildargs={"BASE_IMAGE": base},
            pull=False,
            network_mode="none",
            rm=True,
            forcerm=True,
            labels={labels.PROJECT: labels.PROJECT_VALUE, labels.ROLE: ROLE},
        )
    except docker.errors.BuildError as error:
        text = "".join(str(c.get("stream", c.get("error", ""))) for c in error.build_log)
        raise ImageError(f"building {tag} failed: {error.msg}\n{text[-3000:]}") from error
    return tag


def run_harness(
    client: docker.DockerClient, tag: str, argv: list[str], timeout: float = 600.0
) -> tuple[int, str]:
    """Run ``argv`` in the harness image with the Docker socket mounted and no network (the
    socket is all it talks to); its exit code and output. The container is removed."""
    container = client.containers.run(
        tag,
        argv,
        detach=True,
        network_mode="none",
        volumes={DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"}},
        labels={labels.PROJECT: labels.PROJECT_VALUE, labels.ROLE: ROLE},
    )
    try:
        code = int(container.wait(timeout=timeout)["StatusCode"])
        return code, bytes(container.logs()).decode(errors="replace")
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def remove_image(client: docker.DockerClient, tag: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(tag, force=True)
