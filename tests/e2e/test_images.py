"""The one image builder: an image is rebuilt when its sources change, and only that image.

The sources are copied to a temporary tree and built under tags of this test's own, so the
project's images and checkout are never touched; the tags are removed at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from harness import images, paths

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for folder in ("server", "client", "faults", "base"):
        shutil.copytree(paths.ROOT / folder, tmp_path / folder, symlinks=True)
    return tmp_path


@pytest.fixture
def prefix(docker_client: docker.DockerClient) -> Iterator[str]:
    prefix = f"echolab-buildtest-{uuid.uuid4().hex[:8]}-"
    try:
        yield prefix
    finally:
        for default in images.definitions().values():
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(f"{prefix}{default.tag}", force=True)


def _build_all(
    client: docker.DockerClient, tree: Path, prefix: str
) -> tuple[dict[str, str], list[str]]:
    said: list[str] = []
    every = images.definitions(tree, prefix)
    found = {name: every[name] for name in images.ALL_IMAGES}  # what ``make images`` builds
    bases: dict[str, str] = {}
    for image in found.values():
        images.ensure(client, image, said.append, bases=bases)
    ids = {name: str(client.images.get(image.tag).id) for name, image in found.items()}
    return ids, [line for line in said if line.startswith("built ")]


def test_editing_one_source_rebuilds_that_image_and_only_that_one(
    docker_client: docker.DockerClient, tree: Path, prefix: str
) -> None:
    first, _ = _build_all(docker_client, tree, prefix)
    again, built = _build_all(docker_client, tree, prefix)
    assert built == [] and again == first  # nothing changed: every image reused
    source = tree / "faults" / "engine" / "echolab_fault_engine" / "spin.py"
    source.write_text(source.read_text() + "\n# an edit\n")
    after, built = _build_all(docker_client, tree, prefix)
    assert [line.split()[1] for line in built] == [f"{prefix}{images.ENGINE_IMAGE}"]
    assert after["engine"] != first["engine"]
    assert {k: v for k, v in after.items() if k != "engine"} == {
        k: v for k, v in first.items() if k != "engine"
    }
    shared = tree / "faults" / "control" / "echolab_control" / "__init__.py"
    shared.write_text(shared.read_text() + "\n# an edit\n")
    _, built = _build_all(docker_client, tree, prefix)  # both sidecars speak it: both rebuilt
    assert sorted(line.split()[1] for line in built) == sorted(
        f"{prefix}{tag}" for tag in (images.ENGINE_IMAGE, images.PROXY_IMAGE)
    )
