"""What the engine uses of its compiled packet path, ``echolab_fastloop`` (``fastloop/``).

The extension is built in the image's first stage from ``faults/engine/fastloop/fastloop.c``
against Debian's libnetfilter-queue and libmnl, so it matches the image's Python. It binds
the queue itself (no NetfilterQueue on this path) and runs the whole per-packet loop in C,
calling back into Python once per batch of packets read (to decide), once per 32 timer
wake-ups (to learn the spin) and when the control socket is readable. While the schedule
draws nothing (``Schedule.fixed``: a delay, no jitter, no loss) the loop applies the delay
itself (``set_fixed``) and calls no Python per packet. Typed here as mypy sees
it: the module is compiled and is not installed where mypy runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

OnBatch = Callable[[list[float]], Sequence[float | None]]
OnWakes = Callable[[list[float]], float]


class Loop(Protocol):
    def run(
        self,
        on_batch: OnBatch,
        on_wakes: OnWakes,
        control_fd: int = -1,
        serve: Callable[[], None] | None = None,
    ) -> None: ...

    def set_fixed(self, delay_s: float | None, last_release: float) -> None: ...

    def last_release(self) -> float: ...

    def release_all(self) -> None: ...

    def drain(self) -> dict[str, Any]: ...

    def fileno(self) -> int: ...

    def close(self) -> None: ...


def bind(
    queue: int,
    *,
    max_len: int = 10000,
    keep_order: bool = True,
    kernel_clock: bool = False,
    spin_s: float = 0.0,
) -> Loop:
    """Bind NFQUEUE ``queue`` (metadata only). ``ImportError`` without the extension,
    ``OSError`` when the kernel refuses the queue."""
    from echolab_fastloop import Loop as Compiled  # type: ignore[import-not-found]

    loop: Loop = Compiled(
        queue=queue,
        max_len=max_len,
        keep_order=keep_order,
        kernel_clock=kernel_clock,
        spin_s=spin_s,
    )
    return loop
