"""The one image builder: the bases, the server, the client, the fault engine and the proxy.

Each image is described (``ImageDef``: its folder, the extra packages its context takes, its
bases, what must be prepared on the host first) and built from a tar context this module
assembles. The image carries the hash of that context and of its bases' ids as the label
``org.echolab.context``: ``ensure`` reuses an image whose label matches and rebuilds it when a
source or a base changed, so a test never runs against a stale engine. Builds never pull and
need no network: what they take is downloaded on the host into the image's ``vendor/`` (binary
wheels for the image's Python, or a source distribution that a build stage compiles).

The base is ``python:3.12-slim`` where it can be had; on machines that reach no registry it is
built locally (``base/build-base.sh``: mmdebstrap + docker import). The fault engine always
runs on a Debian base with iptables, iproute2 and libnetfilter-queue; its C extensions
(NetfilterQueue, and the engine's own packet loop, faults/engine/fastloop) are compiled in the
first stage of its Dockerfile, on a builder base of the same Debian (gcc, python3-dev,
libnetfilter-queue-dev, libmnl-dev), so they match the engine's Python whatever Python runs the
harness, and nothing is installed on the host.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
from docker.client import DockerClient

from harness import labels, paths
from harness.errors import ImageError
from harness.vendor import Say, netfilterqueue_sdist, wheels_for

log = logging.getLogger(__name__)

DEFAULT_BASE = "python:3.12-slim"
LOCAL_BASE = "echolab-base:bookworm"
FAULTS_BASE = "echolab-faults-base:bookworm"
# What the engine needs beyond python3: iptables (NFQUEUE rules), iproute2 (tc), the queue library.
FAULTS_BASE_PACKAGES = "iptables,iproute2,libnetfilter-queue1"
# The engine's first build stage: the same Debian as FAULTS_BASE (so the same Python), with what
# compiles NetfilterQueue's sdist offline (pip wheel --no-build-isolation: Debian's setuptools).
# Cython too: the sdist's generated _impl.c (Cython 0.29.26) predates Python 3.11 and does not
# compile against its headers, so the Dockerfile regenerates it from the .pyx. libmnl-dev: the
# engine's own packet loop (faults/engine/fastloop) speaks netlink through libmnl.
BUILDER_BASE = "echolab-engine-builder:bookworm"
BUILDER_BASE_PACKAGES = (
    "python3-dev,python3-setuptools,python3-wheel,python3-pip,cython3,"
    "gcc,libc6-dev,libnetfilter-queue-dev,libmnl-dev"
)
SERVER_IMAGE = "echolab-server:latest"
CLIENT_IMAGE = "echolab-client:latest"
ENGINE_IMAGE = "echolab-faults-engine:latest"
PROXY_IMAGE = "echolab-faults-proxy:latest"
REGISTRY_IMAGE = "echolab-registry:latest"
REGISTRY_BASE = "echolab-registry-base:bookworm"
NODE_IMAGE = "echolab-node:latest"
NODE_BASE = "echolab-node-base:bookworm"
# A simulated Swarm node's engine: Debian's Docker (the host's own version), and what it needs.
NODE_BASE_PACKAGES = "docker.io,iptables,iproute2,procps,ca-certificates"
AGENT_IMAGE = "echolab-faults-agent:latest"
# The agent's Docker SDK and what it needs: pure Python, at this venv's versions.
AGENT_WHEELS = ("docker", "requests", "urllib3", "idna", "certifi", "charset_normalizer")
CONTEXT_LABEL = "org.echolab.context"
_SKIP = ("__pycache__", ".pyc", ".dockerignore", ".gitkeep", ".partial")


def _no_preparation(client: DockerClient, base: str, say: Say) -> None:
    return None


@dataclass(frozen=True)
class ImageDef:
    """One image: built from ``folder`` (its Dockerfile and package), plus ``include``
    (other folders copied into the context under a name), on ``bases``.

    ``bases`` says which build argument of the Dockerfile gets which base: "lab"
    (python:3.12-slim or the local base), "faults" (the engine's base) or "builder" (the
    engine's compiler stage). The first is the image's own base, the one ``prepare`` is given."""

    name: str
    tag: str
    folder: Path
    include: tuple[tuple[Path, str], ...] = ()
    bases: tuple[tuple[str, str], ...] = (("BASE_IMAGE", "lab"),)
    prepare: Callable[[DockerClient, str, Say], None] = field(default=_no_preparation)

    def files(self) -> list[tuple[str, Path]]:
        """(name in the context, file on disk), sorted: what the build sees, nothing else."""
        found = [(p.relative_to(self.folder).as_posix(), p) for p in _walk(self.folder)]
        for folder, name in self.include:
            found += [(f"{name}/{p.relative_to(folder).as_posix()}", p) for p in _walk(folder)]
        return sorted(found)


def _walk(folder: Path) -> Iterable[Path]:
    for path in folder.rglob("*"):
        if path.is_file() and not any(part in path.as_posix() for part in _SKIP):
            yield path


def context_hash(files: list[tuple[str, Path]], base_id: str) -> str:
    """What an image is built from, as a hash: names, contents, modes and the bases' ids (pure
    but for reading the files; mtimes do not count, so a fresh clone reuses its images).
    ``base_id``: the base's id, or the ids of all its bases joined by NULs (``ensure``)."""
    digest = hashlib.sha256(base_id.encode() + b"\0")
    for name, path in files:
        executable = b"x" if os.access(path, os.X_OK) else b"-"
        digest.update(name.encode() + b"\0" + executable + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def context_tar(files: list[tuple[str, Path]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in files:
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with path.open("rb") as content:
                tar.addfile(info, content)
    buffer.seek(0)
    return buffer


def image_present(client: DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


# -- the images ---------------------------------------------------------------------------------


def definitions(root: Path = paths.ROOT, prefix: str = "") -> dict[str, ImageDef]:
    """Every image of the lab, by name. ``root`` and ``prefix`` exist for the test that edits
    a copy of the sources and builds under other tags; everything else uses the defaults."""
    server, client = root / "server", root / "client"
    engine, proxy, control = root / "faults/engine", root / "faults/proxy", root / "faults/control"
    agent = root / "faults/agent"
    shared = ((control / "echolab_control", "echolab_control"),)

    def tag(default: str) -> str:
        return f"{prefix}{default}" if prefix else default

    return {
        "server": ImageDef(
            "server", tag(SERVER_IMAGE), server, prepare=wheels_for(server, "uvloop")
        ),
        "client": ImageDef(
            "client", tag(CLIENT_IMAGE), client, prepare=wheels_for(client, "tenacity")
        ),
        "engine": ImageDef(
            "engine",
            tag(ENGINE_IMAGE),
            engine,
            include=shared,
            bases=(("BASE_IMAGE", "faults"), ("BUILDER_IMAGE", "builder")),
            prepare=netfilterqueue_sdist(engine),
        ),
        "proxy": ImageDef("proxy", tag(PROXY_IMAGE), proxy, include=shared),
        # Built when a Swarm lab needs them (harness.swarm), not by ``make images``.
        "registry": ImageDef(
            "registry", tag(REGISTRY_IMAGE), root / "registry", bases=(("BASE_IMAGE", "registry"),)
        ),
        "node": ImageDef("node", tag(NODE_IMAGE), root / "node", bases=(("BASE_IMAGE", "node"),)),
        # The Swarm lab's fault agent (harness.swarm.agent), built when a Swarm lab needs it.
        "agent": ImageDef(
            "agent", tag(AGENT_IMAGE), agent, prepare=wheels_for(agent, *AGENT_WHEELS)
        ),
    }


LAB_IMAGES = ("server", "client")
ALL_IMAGES = ("server", "client", "engine", "proxy")


def base_hash(packages: str, suite: str = "bookworm") -> str:
    """A local base's sources: the script that builds it, the packages it adds and its Debian
    suite (bookworm, the default, counts as nothing: the hashes of existing bases stay)."""
    payload = paths.BUILD_BASE.read_bytes() + b"\0" + packages.encode()
    if suite != "bookworm":
        payload += b"\0" + suite.encode()
    return hashlib.sha256(payload).hexdigest()[:20]


def local_base(
    client: DockerClient, image: str, packages: str, say: Say, *, suite: str = "bookworm"
) -> str:
    """A base built here by mmdebstrap (Debian ``suite``), rebuilt when its script, packages or
    suite changed; labelled as the project's, so ``make clean`` removes it."""
    wanted = base_hash(packages, suite)
    if _label_of(client, image) == wanted:
        return image
    say(f"building {image} with mmdebstrap (about 25-50 s)")
    argv = [str(paths.BUILD_BASE), image, *([packages] if packages else [])]
    env = {**os.environ, "ECHOLAB_BASE_CONTEXT": wanted, "ECHOLAB_BASE_SUITE": suite}
    subprocess.run(argv, check=True, env=env)
    return image


def lab_base(client: DockerClient, say: Say) -> str:
    """``BASE_IMAGE`` if set; else python:3.12-slim if here or pullable; else the local base."""
    requested = os.environ.get("BASE_IMAGE")
    if requested:
        if not image_present(client, requested):
            raise ImageError(f"BASE_IMAGE={requested} is not present; build or pull it first")
        return requested
    if image_present(client, DEFAULT_BASE):
        return DEFAULT_BASE
    if image_present(client, LOCAL_BASE):
        return local_base(client, LOCAL_BASE, "", say)
    try:
        say(f"pulling {DEFAULT_BASE}")
        client.images.pull(DEFAULT_BASE)
        return DEFAULT_BASE
    except docker.errors.APIError as error:
        say(
            f"{DEFAULT_BASE} cannot be pulled ({error.explanation or error}); building {LOCAL_BASE}"
        )
    return local_base(client, LOCAL_BASE, "", say)


def _requested(client: DockerClient, variable: str) -> str | None:
    requested = os.environ.get(variable)
    if requested and not image_present(client, requested):
        raise ImageError(f"{variable}={requested} is not present; build it first")
    return requested or None


def faults_base(client: DockerClient, say: Say) -> str:
    """The engine's base: Debian with iptables, iproute2 and libnetfilter-queue (local)."""
    requested = _requested(client, "ECHOLAB_FAULTS_BASE")
    return requested or local_base(client, FAULTS_BASE, FAULTS_BASE_PACKAGES, say)


def builder_base(client: DockerClient, say: Say) -> str:
    """The engine's build stage: the faults base's Debian with gcc, python3-dev, pip, Cython and
    libnetfilter-queue-dev (local), where NetfilterQueue is compiled for that Debian's Python.
    ``ECHOLAB_BUILDER_BASE`` names another, to go with another ``ECHOLAB_FAULTS_BASE``: the two
    must have the same Python (the engine's build imports the extension, and fails if not)."""
    requested = _requested(client, "ECHOLAB_BUILDER_BASE")
    return requested or local_base(client, BUILDER_BASE, BUILDER_BASE_PACKAGES, say)


def registry_base(client: DockerClient, say: Say) -> str:
    """The registry's base: Debian with its docker-registry package (local)."""
    requested = _requested(client, "ECHOLAB_REGISTRY_BASE")
    return requested or local_base(client, REGISTRY_BASE, "docker-registry", say)


def node_base(client: DockerClient, say: Say) -> str:
    """A simulated Swarm node's base: Debian with its docker.io package (local)."""
    requested = _requested(client, "ECHOLAB_NODE_BASE")
    return requested or local_base(client, NODE_BASE, NODE_BASE_PACKAGES, say)


# The bases an ImageDef may name, each resolved once per ``ensure_all``.
BASES: dict[str, Callable[[DockerClient, Say], str]] = {
    "lab": lab_base,
    "faults": faults_base,
    "builder": builder_base,
    "registry": registry_base,
    "node": node_base,
}


def ensure(
    client: DockerClient,
    image: ImageDef,
    say: Say = log.info,
    *,
    force: bool = False,
    bases: dict[str, str] | None = None,
) -> str:
    """The image's tag, built first if it is missing, its sources changed or one of its bases
    was rebuilt (or ``force``).

    ``bases`` caches the resolved bases across calls (``ensure_all``)."""
    bases = {} if bases is None else bases
    buildargs: dict[str, str] = {}
    for argument, kind in image.bases:
        if kind not in bases:
            if kind not in BASES:
                raise ImageError(f"{image.name}: no base named {kind!r} (one of {sorted(BASES)})")
            bases[kind] = BASES[kind](client, say)
        buildargs[argument] = bases[kind]
    if not buildargs:
        raise ImageError(f"{image.name}: an image needs a base")
    base = next(iter(buildargs.values()))
    image.prepare(client, base, say)
    files = image.files()
    wanted = context_hash(files, "\0".join(_image_id(client, b) for b in buildargs.values()))
    if not force and _label_of(client, image.tag) == wanted:
        return image.tag
    began = time.monotonic()
    say(f"building {image.tag} from {_shown(image.folder)}/ on {' + '.join(buildargs.values())}")
    try:
        client.images.build(
            fileobj=context_tar(files),
            custom_context=True,
            tag=image.tag,
            buildargs=buildargs,
            pull=False,
            rm=True,
            forcerm=True,
            labels={labels.PROJECT: labels.PROJECT_VALUE, CONTEXT_LABEL: wanted},
        )
    except docker.errors.BuildError as error:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in error.build_log)
        raise ImageError(f"building {image.tag} failed: {error.msg}\n{log[-3000:]}") from error
    say(f"built {image.tag} in {time.monotonic() - began:.1f} s")
    return image.tag


def _image_id(client: DockerClient, tag: str) -> str:
    found = client.images.get(tag).id
    if found is None:  # typed optional by the SDK; an image the engine found has one
        raise ImageError(f"the engine gave no id for the base image {tag}")
    return found


def _shown(folder: Path) -> str:
    return str(folder.relative_to(paths.ROOT)) if folder.is_relative_to(paths.ROOT) else str(folder)


def _label_of(client: DockerClient, tag: str) -> str | None:
    try:
        found = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    return (found.labels or {}).get(CONTEXT_LABEL)


def ensure_all(
    client: DockerClient | None = None,
    names: Iterable[str] = ALL_IMAGES,
    say: Say = log.info,
    *,
    force: bool = False,
) -> dict[str, str]:
    """Every image named (default: all), each built if missing or stale; name -> tag."""
    client = client or docker.from_env()
    found = definitions()
    bases: dict[str, str] = {}
    return {name: ensure(client, found[name], say, force=force, bases=bases) for name in names}


def tag_for(client: DockerClient, name: str, say: Say = log.info) -> str:
    """The tag of the lab's image ``name``, built first when missing or stale: what every
    command that needs an image calls."""
    return ensure(client, definitions()[name], say)
