"""What the engine uses of NetfilterQueue, as Protocols: the binding is compiled and ships no
type information where the packages are type-checked, and the loop is tested with fakes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Packet(Protocol):
    """A queued packet: one verdict each (``get_timestamp`` is read where it exists)."""

    def accept(self) -> None: ...

    def drop(self) -> None: ...


class Queue(Protocol):
    def bind(
        self,
        queue_num: int,
        user_callback: Callable[[Packet], None],
        max_len: int = 1024,
        mode: int = 2,
    ) -> None: ...

    def get_fd(self) -> int: ...

    def run(self, block: bool = True) -> None: ...

    def unbind(self) -> None: ...


def stamp_of(packet: Packet) -> float:
    """The kernel's receive stamp (wall-clock seconds), 0.0 when the packet carries none."""
    get_timestamp = getattr(packet, "get_timestamp", None)
    return float(get_timestamp()) if get_timestamp is not None else 0.0


def bind(queue_num: int, on_packet: Callable[[Packet], None], max_len: int = 1024) -> Queue:
    """Bind NFQUEUE ``queue_num`` with metadata only (the engine never reads a payload).

    ``ImportError`` without the binding, ``OSError`` when the kernel refuses the queue.
    """
    # Compiled (Cython) and not installed where mypy runs; typed by ``Queue`` above.
    from netfilterqueue import COPY_META, NetfilterQueue  # type: ignore[import-not-found]

    queue: Queue = NetfilterQueue()
    queue.bind(queue_num, on_packet, max_len=max_len, mode=COPY_META)
    return queue
