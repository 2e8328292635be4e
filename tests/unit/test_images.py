"""The image builder's pure parts: what a context holds, the hash that says it changed, the
engine's two bases and its NetfilterQueue source (no Docker: a fake client stands for it)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from harness import images, paths
from harness import vendor as vendoring
from harness.errors import ImageError
from harness.images import ImageDef, context_hash, context_tar


def _image(tmp_path: Path) -> ImageDef:
    (tmp_path / "app" / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "app" / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "app" / "pkg" / "a.py").write_text("a = 1\n")
    (tmp_path / "app" / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "s.py").write_text("s = 1\n")
    return ImageDef("app", "t:latest", tmp_path / "app", include=((tmp_path / "shared", "shared"),))


def test_the_context_is_the_folder_and_its_includes_without_caches(tmp_path: Path) -> None:
    image = _image(tmp_path)
    assert [name for name, _ in image.files()] == ["Dockerfile", "pkg/a.py", "shared/s.py"]
    with tarfile.open(fileobj=context_tar(image.files())) as tar:
        assert tar.getnames() == ["Dockerfile", "pkg/a.py", "shared/s.py"]


def test_the_hash_follows_contents_modes_and_base_not_mtimes(tmp_path: Path) -> None:
    image = _image(tmp_path)
    before = context_hash(image.files(), "sha256:base")
    source = tmp_path / "app" / "pkg" / "a.py"
    os.utime(source, (1, 1))
    assert context_hash(image.files(), "sha256:base") == before
    assert context_hash(image.files(), "sha256:other") != before
    source.chmod(0o755)
    assert context_hash(image.files(), "sha256:base") != before
    source.chmod(0o644)
    (tmp_path / "shared" / "s.py").write_text("s = 2\n")
    assert context_hash(image.files(), "sha256:base") != before


# -- the fault engine: two bases, and only the NetfilterQueue sdist in its context ---------------


def _engine_tree(tmp_path: Path) -> Path:
    """A copy of the engine's folder and the control package it includes."""
    for folder in ("faults/engine", "faults/control"):
        shutil.copytree(
            paths.ROOT / folder,
            tmp_path / folder,
            ignore=shutil.ignore_patterns("vendor", "__pycache__"),
        )
    return tmp_path


def _fake_sdist(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Stands for the real sdist: its pinned hash is made this content's."""
    content = b"not really a tarball"
    monkeypatch.setattr(vendoring, "NFQ_SHA256", hashlib.sha256(content).hexdigest())
    return content


def test_the_engine_is_built_on_its_base_and_on_the_builder_base(tmp_path: Path) -> None:
    engine = images.definitions(_engine_tree(tmp_path))["engine"]
    assert engine.bases == (("BASE_IMAGE", "faults"), ("BUILDER_IMAGE", "builder"))
    assert {kind for _, kind in engine.bases} <= set(images.BASES)
    dockerfile = (paths.ENGINE / "Dockerfile").read_text()
    for argument, _ in engine.bases:  # each build argument is declared and is a stage's base
        assert re.search(rf"^ARG {argument}=", dockerfile, re.M), argument
        assert re.search(rf"^FROM \$\{{{argument}\}}", dockerfile, re.M), argument
    # The other images keep their one base.
    for name in ("server", "client", "proxy"):
        assert images.definitions(tmp_path)[name].bases == (("BASE_IMAGE", "lab"),)


def test_the_engine_context_holds_the_sdist_not_a_compiled_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _engine_tree(tmp_path)
    vendor = root / "faults/engine/vendor"
    vendor.mkdir()
    # What an older harness left: a wheel compiled on the host, and another version's sdist.
    (vendor / "netfilterqueue-1.1.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"compiled")
    (vendor / "NetfilterQueue-1.0.9.tar.gz").write_bytes(b"old")
    (vendor / vendoring.NFQ_SDIST).write_bytes(_fake_sdist(monkeypatch))

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"nothing is to be run on the host: {args}")

    monkeypatch.setattr(images.subprocess, "run", no_subprocess)
    engine = images.definitions(root)["engine"]
    engine.prepare(FakeClient(), "unused", lambda _: None)
    names = [name for name, _ in engine.files()]
    assert [n for n in names if n.startswith("vendor/")] == [f"vendor/{vendoring.NFQ_SDIST}"]
    assert not any(n.endswith(".whl") for n in names)
    assert "Dockerfile" in names and "echolab_control/__init__.py" in names


def test_the_sdist_is_downloaded_by_any_python_never_compiled_on_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _engine_tree(tmp_path)
    content = _fake_sdist(monkeypatch)
    ran: list[list[str]] = []

    def pip(argv: list[str], **kwargs: object) -> None:
        ran.append(argv)
        destination = Path(argv[argv.index("--dest") + 1])
        (destination / vendoring.NFQ_SDIST).write_bytes(content)

    monkeypatch.setattr(images.subprocess, "run", pip)
    said: list[str] = []
    images.definitions(root)["engine"].prepare(FakeClient(), "unused", said.append)
    (argv,) = ran
    assert argv[1:4] == ["-m", "pip", "download"]
    # The package as source, never a wheel; its build dependencies may come as wheels.
    assert "--no-deps" in argv and argv[argv.index("--no-binary") + 1] == "NetfilterQueue"
    assert argv[-1] == f"NetfilterQueue=={vendoring.NFQ_VERSION}"
    assert not any("apt-get" in part or part == "wheel" for part in argv)
    vendor = root / "faults/engine/vendor"
    assert [p.name for p in vendor.iterdir()] == [vendoring.NFQ_SDIST]  # whole, nothing partial
    images.definitions(root)["engine"].prepare(FakeClient(), "unused", said.append)
    assert len(ran) == 1  # downloaded once, then reused


def test_an_sdist_whose_hash_is_not_the_pinned_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _engine_tree(tmp_path)
    _fake_sdist(monkeypatch)

    def pip(argv: list[str], **kwargs: object) -> None:
        (Path(argv[argv.index("--dest") + 1]) / vendoring.NFQ_SDIST).write_bytes(b"tampered")

    monkeypatch.setattr(images.subprocess, "run", pip)
    with pytest.raises(ImageError, match="sha256"):
        images.definitions(root)["engine"].prepare(FakeClient(), "unused", lambda _: None)


# -- ensure: every base is a build argument, and a rebuilt base rebuilds the image ---------------


@dataclass
class FakeImage:
    id: str
    labels: dict[str, str] = field(default_factory=dict)


class FakeImages:
    def __init__(self, found: dict[str, FakeImage]) -> None:
        self.found = found
        self.builds: list[dict[str, object]] = []

    def get(self, tag: str) -> FakeImage:
        if tag not in self.found:
            raise docker.errors.ImageNotFound(tag)
        return self.found[tag]

    def build(self, **kwargs: object) -> None:
        self.builds.append(kwargs)
        tag, built_labels = kwargs["tag"], kwargs["labels"]
        assert isinstance(tag, str) and isinstance(built_labels, dict)
        self.found[tag] = FakeImage(f"sha256:{tag}-{len(self.builds)}", dict(built_labels))


class FakeClient:
    def __init__(self, found: dict[str, FakeImage] | None = None) -> None:
        self.images = FakeImages(found or {})


def test_every_base_is_a_build_argument_and_its_id_is_in_the_context_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = ImageDef(
        "app",
        "app:latest",
        _image(tmp_path).folder,
        bases=(("BASE_IMAGE", "faults"), ("BUILDER_IMAGE", "builder")),
    )
    client = FakeClient({"run:base": FakeImage("sha256:run"), "cc:base": FakeImage("sha256:cc")})
    resolved: list[str] = []

    def resolver(tag: str) -> object:
        return lambda client, say: resolved.append(tag) or tag

    monkeypatch.setitem(images.BASES, "faults", resolver("run:base"))
    monkeypatch.setitem(images.BASES, "builder", resolver("cc:base"))
    fake: Any = client  # duck-typed stand-in for the SDK's client

    images.ensure(fake, image, lambda _: None)
    (build,) = client.images.builds
    assert build["buildargs"] == {"BASE_IMAGE": "run:base", "BUILDER_IMAGE": "cc:base"}
    assert build["pull"] is False

    cache: dict[str, str] = {}
    images.ensure(fake, image, lambda _: None, bases=cache)  # nothing changed: reused
    assert len(client.images.builds) == 1
    assert cache == {"faults": "run:base", "builder": "cc:base"}
    images.ensure(fake, image, lambda _: None, bases=cache)  # bases resolved once per cache
    assert resolved.count("cc:base") == 2

    client.images.found["cc:base"] = FakeImage("sha256:cc-rebuilt")  # only the builder changed
    images.ensure(fake, image, lambda _: None)
    assert len(client.images.builds) == 2


def test_one_base_hashes_as_before(tmp_path: Path) -> None:
    """Images with one base keep the hash they had, so this change rebuilt none of them."""
    image = _image(tmp_path)
    assert image.bases == (("BASE_IMAGE", "lab"),)
    files = image.files()
    assert context_hash(files, "\0".join(["sha256:base"])) == context_hash(files, "sha256:base")


def test_a_local_base_is_keyed_by_its_suite_and_bookworm_keeps_its_key() -> None:
    before = hashlib.sha256(paths.BUILD_BASE.read_bytes() + b"\0pkgs").hexdigest()[:20]
    assert images.base_hash("pkgs") == images.base_hash("pkgs", "bookworm") == before
    assert images.base_hash("pkgs", "trixie") != before
    assert images.base_hash(images.BUILDER_BASE_PACKAGES) != images.base_hash(
        images.FAULTS_BASE_PACKAGES
    )
