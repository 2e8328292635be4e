"""``toxic_proxy(lab, toxics=[...])``: a toxic proxy in front of the lab's server for a ``with``.

The proxy runs in its own container on the lab network under the DNS alias ``name`` (default
``"proxy"``), listening on 8899 and forwarding to the server. Clients that should go through
it connect to ``proxy.host`` instead of ``server`` (``--host proxy.host``); the others are not
affected. Toxics are changed at run time by exec'ing the control command in the container
(``proxy.add(...)``, ``proxy.remove(name)``), so nothing is published or reachable from
outside. Leaving the ``with`` stops and removes the container (it carries the lab's labels, so
``Lab.close()`` and the orphan sweep remove it too).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import docker.errors
from docker.client import DockerClient
from docker.models.containers import Container

from harness import labels
from harness.faults.proxy.image import PROXY_IMAGE
from harness.faults.proxy.toxics import ToxicSpec
from harness.waiting import NotReady, WaitTimeout, wait_for

PORT = 8899
ALIAS_LABEL = "org.echolab.aliases"


class ProxyError(RuntimeError):
    """The proxy could not start, or refused a command (carries its answer or its logs)."""


class LabLike(Protocol):
    @property
    def docker(self) -> DockerClient: ...

    id: str


ToxicLike = ToxicSpec | dict[str, Any]


def as_spec(toxic: ToxicLike) -> ToxicSpec:
    return toxic if isinstance(toxic, ToxicSpec) else ToxicSpec.from_dict(dict(toxic))


@dataclass
class Proxy:
    """A running proxy: ``host``/``port`` for the clients, toxics changeable while it runs."""

    container: Container
    host: str
    port: int = PORT

    def add(self, toxic: ToxicLike) -> ToxicSpec:
        spec = as_spec(toxic)
        self._ctl({"op": "add", "toxic": spec.as_dict()})
        return spec

    def remove(self, name: str) -> None:
        self._ctl({"op": "remove", "name": name})

    def clear(self) -> None:
        self._ctl({"op": "clear"})

    def toxics(self) -> list[ToxicSpec]:
        return [ToxicSpec.from_dict(t) for t in self._ctl({"op": "list"})["toxics"]]

    def stats(self) -> dict[str, Any]:
        """Connections accepted, resets, bytes and writes per direction, per connection."""
        return self._ctl({"op": "stats"})

    def client_args(self) -> list[str]:
        """The client flags that send a client through this proxy."""
        return ["--host", self.host, "--port", str(self.port)]

    def _ctl(self, message: dict[str, Any]) -> dict[str, Any]:
        code, output = self.container.exec_run(
            ["python3", "-m", "echolab_proxy", "ctl", json.dumps(message)]
        )
        text = output.decode("utf-8", "replace").strip()
        try:
            reply = dict(json.loads(text.splitlines()[-1]))
        except (ValueError, IndexError):
            raise ProxyError(f"proxy control failed ({code}): {text[-2000:]}") from None
        if not reply.get("ok"):
            raise ProxyError(f"proxy refused {message.get('op')}: {reply.get('error')}")
        return reply


@contextmanager
def toxic_proxy(
    lab: LabLike,
    toxics: Iterable[ToxicLike] = (),
    *,
    name: str = "proxy",
    upstream: str = "server",
    seed: int = 0,
    image: str = PROXY_IMAGE,
) -> Iterator[Proxy]:
    """Run a proxy to ``upstream:8899`` as ``name:8899`` on the lab network inside the ``with``."""
    specs = [as_spec(t) for t in toxics]  # validated before anything exists
    client = lab.docker
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound as error:
        raise ProxyError(
            f"image {image} not found: build it with `python -m harness.faults.proxy.image`"
        ) from error
    command = ["serve", "--upstream", f"{upstream}:{PORT}", "--seed", str(seed)]
    for spec in specs:
        command += ["--toxic", json.dumps(spec.as_dict())]
    container: Container | None = None
    try:
        container = client.containers.create(
            image,
            command=command,
            name=f"{lab.id}-{name}",
            hostname=name,
            labels={**labels.lab_labels(lab.id, "proxy"), ALIAS_LABEL: name},
            network=lab.id,
            networking_config={lab.id: client.api.create_endpoint_config(aliases=[name])},
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            mem_limit="128m",
            pids_limit=32,
        )
        container.start()
        _wait_ready(container)
        yield Proxy(container, host=name)
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


def _wait_ready(container: Container) -> None:
    def ready() -> None:
        container.reload()
        if container.status in ("exited", "dead"):
            raise ProxyError(f"proxy exited: {container.logs().decode()[-2000:]}")
        if b'"event": "ready"' not in container.logs(stdout=True, stderr=False):
            raise NotReady(f"status={container.status}")

    try:
        wait_for(f"toxic proxy {container.name}", ready, timeout=20)
    except WaitTimeout as error:
        raise ProxyError(f"{error}: {container.logs().decode()[-2000:]}") from error
