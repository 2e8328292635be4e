"""The host's Python does not matter to the fault engine: the harness, run by a Python that is
not the engine's (Debian trixie's 3.13 in a container, the Docker socket mounted), builds the
engine image, and its NetfilterQueue extension imports there, compiled for the image's Python.

Everything is built under tags of this test's own and removed at the end; the bases (the
engine's two, and trixie's) are built once and kept, as the lab's.
"""

from __future__ import annotations

import contextlib
import json
import uuid

import docker
import docker.errors
import pytest

from harness import images, labels
from tests.e2e import harness_image

pytestmark = pytest.mark.timeout(900)

# Run in the container, its tree's harness as /src's: build the engine under the prefix argv[1].
BUILD_ENGINE = """
import sys
import docker
from harness import images, paths
print("python", "%d.%d.%d" % sys.version_info[:3], "root", paths.ROOT, flush=True)
engine = images.definitions(prefix=sys.argv[1])["engine"]
print("tag", images.ensure(docker.from_env(), engine, lambda line: print(line, flush=True)))
"""
# Run in the engine image: the extension is there, built for this Python.
IMPORT_CHECK = """
import json, sys, sysconfig
import netfilterqueue
from netfilterqueue import _impl
print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "extension": _impl.__file__,
                  "suffix": sysconfig.get_config_var("EXT_SUFFIX")}))
"""


def _wheel_stages(client: docker.DockerClient) -> set[str]:
    """The engine's first build stages (untagged images): a build may leave a new one."""
    found = client.images.list(filters=labels.project_filter(**{labels.ROLE: "engine-wheels"}))
    return {str(image.id) for image in found}


def test_a_harness_on_another_python_builds_an_engine_whose_extension_imports(
    docker_client: docker.DockerClient,
) -> None:
    say: list[str] = []
    # What the container's harness needs ready: the engine's bases (it has no mmdebstrap) and the
    # sdist (it has no pip), both as `make images` leaves them.
    images.faults_base(docker_client, say.append)
    images.builder_base(docker_client, say.append)
    images.definitions()["engine"].prepare(docker_client, "", say.append)
    prefix = f"echolab-enginetest-{uuid.uuid4().hex[:8]}-"
    engine_tag = f"{prefix}{images.ENGINE_IMAGE}"
    stages = _wheel_stages(docker_client)
    harness_tag = None
    try:
        harness_tag = harness_image.build_harness_image(
            docker_client, harness_image.trixie_base(docker_client)
        )
        code, output = harness_image.run_harness(
            docker_client, harness_tag, ["python3", "-c", BUILD_ENGINE, prefix]
        )
        print(output)
        assert code == 0, output
        lines = output.splitlines()
        (python,) = [line.split()[1] for line in lines if line.startswith("python ")]
        print(f"the harness that built {engine_tag} ran on Python {python} (host-independent)")
        assert not python.startswith("3.11."), "the harness must run on a Python not the engine's"
        assert "root /src" in output and f"tag {engine_tag}" in lines
        assert any(line.startswith(f"built {engine_tag}") for line in lines)

        found = json.loads(
            docker_client.containers.run(
                engine_tag,
                ["-c", IMPORT_CHECK],
                entrypoint=["python3"],
                remove=True,
                network_mode="none",
                labels={labels.PROJECT: labels.PROJECT_VALUE, labels.ROLE: "probe"},
            )
        )
        print(f"the engine's Python {found['python']} imports {found['extension']}")
        assert found["python"] != python.rsplit(".", 1)[0]
        assert found["extension"].endswith(found["suffix"])

        probe = json.loads(
            docker_client.containers.run(
                engine_tag,
                ["probe"],
                remove=True,
                network_mode="none",
                cap_drop=["ALL"],
                cap_add=["NET_ADMIN"],
                labels={labels.PROJECT: labels.PROJECT_VALUE, labels.ROLE: "probe"},
            )
        )
        print(f"probe: nfqueue {probe['nfqueue']}")
        assert "no NetfilterQueue binding" not in probe["nfqueue"]["detail"]
    finally:
        harness_image.remove_image(docker_client, engine_tag)
        if harness_tag is not None:
            harness_image.remove_image(docker_client, harness_tag)
        for stage in _wheel_stages(docker_client) - stages:
            with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                docker_client.images.remove(stage, force=True)
