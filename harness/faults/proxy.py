"""``toxic_proxy(lab, toxics=[...])``: a toxic proxy in front of the lab's server for a ``with``.

The proxy (``faults/proxy``) runs in its own container on the lab network under the DNS alias
``name`` (default ``"proxy"``), listening on 8899 and forwarding to the server. Clients that
should go through it connect to ``proxy.host`` instead of ``server``; the others are not
affected. Toxics are changed at run time through the sidecars' one control protocol
(``proxy.add(...)``, ``proxy.remove(name)``), so nothing is published or reachable from
outside. Leaving the ``with`` stops and removes the container (it carries the lab's labels, so
``Lab.close()`` and the orphan sweep remove it too).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import docker.errors
from docker import DockerClient
from docker.models.containers import Container
from echolab_proxy.toxics import ToxicSpec

from harness import images, labels, session, sidecars
from harness.errors import ProxyError
from harness.faults.toxic import Toxic

PORT = 8899
ToxicLike = Toxic | Mapping[str, Any]


def as_toxic(toxic: ToxicLike) -> Toxic:
    return toxic if isinstance(toxic, Toxic) else Toxic.from_dict(toxic)


@dataclass
class Proxy:
    """A running proxy: ``host``/``port`` for the clients, toxics changeable while it runs."""

    container: Container
    host: str
    port: int = PORT

    def add(self, toxic: ToxicLike) -> Toxic:
        found = as_toxic(toxic)
        self._ctl({"op": "add", "toxic": found.wire().as_dict()})
        return found

    def remove(self, name: str) -> None:
        self._ctl({"op": "remove", "name": name})

    def clear(self) -> None:
        self._ctl({"op": "clear"})

    def toxics(self) -> list[ToxicSpec]:
        """The toxics in force, as the proxy holds them (in its units)."""
        return [ToxicSpec.from_dict(t) for t in self._ctl({"op": "list"})["toxics"]]

    def stats(self) -> dict[str, Any]:
        """Connections accepted, resets, bytes and writes per direction, per connection."""
        return self._ctl({"op": "stats"})

    def client_args(self) -> list[str]:
        """The client flags that send a client through this proxy."""
        return ["--host", self.host, "--port", str(self.port)]

    def _ctl(self, message: dict[str, Any]) -> dict[str, Any]:
        return sidecars.request(self.container, message, ProxyError)


class ProxyLab(Protocol):
    """What a proxy needs of a lab (``Lab`` and ``SwarmLab`` are ones): a proxy is a
    container of its own on the lab's network (an attachable overlay on a swarm)."""

    @property
    def id(self) -> str: ...

    @property
    def docker(self) -> DockerClient: ...

    @property
    def session(self) -> str | None: ...

    @property
    def network(self) -> str: ...


@contextmanager
def toxic_proxy(
    lab: ProxyLab,
    toxics: Iterable[ToxicLike] = (),
    *,
    name: str = "proxy",
    upstream: str = "server",
    seed: int = 0,
    image: str | None = None,
) -> Iterator[Proxy]:
    """Run a proxy to ``upstream:8899`` as ``name:8899`` on the lab network inside the ``with``;
    ``image``: the proxy's image as the lab's engine has it (default: built there)."""
    wire = [as_toxic(t).wire() for t in toxics]  # validated before anything exists
    client = lab.docker
    image = image or images.tag_for(client, "proxy")
    command = ["serve", "--upstream", f"{upstream}:{PORT}", "--seed", str(seed)]
    for spec in wire:
        command += ["--toxic", json.dumps(spec.as_dict())]
    container: Container | None = None
    try:
        owner = session.owning(client, image, lab.session)
        container = client.containers.create(
            image,
            command=command,
            name=f"{lab.id}-{name}",
            hostname=name,
            labels={**labels.lab_labels(lab.id, "proxy", owner), labels.ALIASES: name},
            network=lab.network,
            networking_config={lab.network: client.api.create_endpoint_config(aliases=[name])},
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            tmpfs={"/tmp": "size=1m"},  # the control socket
            mem_limit="128m",
            pids_limit=32,
        )
        container.start()
        sidecars.wait_ready(container, f"toxic proxy {container.name}", ProxyError)
        yield Proxy(container, host=name)
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
