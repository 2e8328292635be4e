"""Small facts about the lab's containers: the hardening every one gets, and what the Docker
SDK types loosely (its stubs say a name may be ``None``; a container it listed has one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, TypedDict

import docker.errors
from docker.models.containers import Container
from docker.types import LogConfig, Ulimit

from harness.errors import LabError


class Hardening(TypedDict):
    """Keywords of ``containers.create``, typed as the SDK takes them."""

    read_only: bool
    cap_drop: list[str]
    security_opt: list[str]
    tmpfs: dict[str, str]


# Hardening that costs nothing: what compose.yaml applies to the same images.
HARDENING: Hardening = {
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "tmpfs": {"/tmp": "size=16m"},
}


def file_limit(role: Literal["server", "client"], connections: int) -> list[Ulimit]:
    """``ulimits=`` for a server admitting ``connections``, or a client opening that many. Set,
    never inherited: a container's default is whatever its daemon was started with (20,000 on
    one machine here, 1,024 soft where containerd sets it), and a lab must hold the same
    everywhere. The headroom covers the server's refused connections, held while it says why
    (past it, asyncio pauses accepting for a second: no crash), and a client's own reserve
    (``echo_client.batch``) and reconnects. Not more: a daemon without CAP_SYS_RESOURCE
    cannot give a container more than its own limit (``start`` says so)."""
    files = connections + (1024 if role == "server" else 256)
    return [Ulimit(name="nofile", soft=files, hard=files)]


class ClientLimits(TypedDict):
    """Keywords of ``containers.create`` for a client, typed as the SDK takes them."""

    ulimits: list[Ulimit]
    log_config: LogConfig | None


def client_limits(connections: int, output_bytes: int | None) -> ClientLimits:
    """A client's file limit, and a log that holds all ``output_bytes`` it writes: its records
    are read back from that log, and a daemon's rotation (10 MB x 3 on one machine here) would
    drop the first ones of a long run, to be read as replies the network lost. Docker stores
    each line with its stream and time, escaped: twice the bytes is room enough. ``None``
    (a command of unknown output) keeps the daemon's default."""
    log = None
    if output_bytes is not None:
        config = {"max-size": str(2 * output_bytes), "max-file": "1"}
        log = LogConfig(type="json-file", config=config)
    return {"ulimits": file_limit("client", connections), "log_config": log}


def start(container: Container) -> None:
    """Start a created container; a file limit the daemon may not grant is a ``LabError``
    that says what to change, not runc's "error setting rlimit type 7"."""
    try:
        container.start()
    except docker.errors.APIError as error:
        if "rlimit" not in str(error):
            raise
        limits = container.attrs.get("HostConfig", {}).get("Ulimits") or []
        asked = ", ".join(f"{u['Name']}={u['Hard']}" for u in limits)
        raise LabError(
            f"the Docker daemon cannot give {name_of(container)} {asked}: its own limit is "
            "lower (raise LimitNOFILE of docker.service and containerd.service), or ask for "
            f"fewer connections ({error.explanation or error})"
        ) from error


def name_of(container: Container) -> str:
    """The container's name (its id when the engine gave none)."""
    return container.name or str(container.id)


def output_of(output: bytes | Iterator[bytes]) -> bytes:
    """What ``exec_run`` printed: bytes, as it returns them unless asked to stream (the stubs
    type both forms; a stream is read to its end)."""
    return output if isinstance(output, bytes) else b"".join(output)
