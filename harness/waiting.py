"""The one way the project waits: poll a check with tenacity until it passes or time runs out.

Every wait names what it waits for, so a timeout reads "timed out after 30.0 s waiting for
server healthy (last: status=starting)" instead of a bare "Timeout reached".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from harness.errors import WaitTimeout

T = TypeVar("T")
__all__ = ["NotReady", "WaitTimeout", "wait_for"]


class NotReady(Exception):
    """Raised by a check to say "not yet"; its message becomes the 'last' state on timeout."""


def wait_for(
    what: str,
    check: Callable[[], T],
    *,
    timeout: float,
    transient: tuple[type[BaseException], ...] = (),
    first: float = 0.02,
    most: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``check`` until it returns instead of raising ``NotReady`` (or a ``transient`` error).

    Backoff starts short (``first``) because most things we wait for are ready within a second,
    and is capped (``most``) so a slow start is still noticed promptly. ``sleep`` is a parameter
    so the waiting logic is tested without sleeping.
    """
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=first, min=first, max=most),
        retry=retry_if_exception_type((NotReady, *transient)),
        sleep=sleep,
    )
    try:
        return retrying(check)
    except RetryError as error:
        last = error.last_attempt.exception()
        raise WaitTimeout(what, timeout, str(last) or type(last).__name__) from last
