"""One exception hierarchy: everything the harness raises is an ``EcholabError``.

A user's experiment catches ``EcholabError`` to catch them all, or one subclass for one kind of
failure. Every message names what failed and what to do about it.
"""

from __future__ import annotations


class EcholabError(Exception):
    """The base of every error the harness raises on purpose."""


class ConfigError(EcholabError, ValueError):
    """A value the user gave is wrong (a spec, a fault parameter, a target): nothing changed.

    Also a ``ValueError``, so code that validates with ``except ValueError`` keeps working.
    """


class SetupError(EcholabError):
    """This machine lacks something the lab needs (Compose, a tool): says what to install."""


class ImageError(EcholabError):
    """An image is missing or could not be built (says which, and the build's last lines)."""


class LabError(EcholabError):
    """A lab could not do what was asked; carries the lab's container logs for the report."""

    def __init__(self, message: str, logs: dict[str, str] | None = None) -> None:
        self.logs = logs or {}
        tail = "".join(
            f"\n--- {name} (last lines) ---\n" + "\n".join(text.splitlines()[-20:])
            for name, text in self.logs.items()
        )
        super().__init__(message + tail)


class WaitTimeout(EcholabError, TimeoutError):
    """A wait ran out of time: says what it waited for, for how long, and the last state seen."""

    def __init__(self, what: str, timeout: float, last: str) -> None:
        super().__init__(f"timed out after {timeout:.1f} s waiting for {what} (last: {last})")
        self.what = what
        self.timeout = timeout
        self.last = last


class FaultError(EcholabError):
    """A fault could not be applied, changed or removed (says which command failed and why)."""


class FaultUnsupported(FaultError):
    """This host cannot apply the faults asked for (says which and why: the preflight's words)."""


class ProxyError(FaultError):
    """The toxic proxy could not start, or refused a command (carries its answer or its logs)."""


class CheckFailed(EcholabError):
    """A run's replies broke a property the caller asked for (``RunResult.assert_ok``)."""
