"""The harness's own error, shared by the lab and its client runs."""

from __future__ import annotations


class LabError(RuntimeError):
    """A lab could not do what was asked; carries the lab's container logs for the report."""

    def __init__(self, message: str, logs: dict[str, str] | None = None) -> None:
        self.logs = logs or {}
        tail = "".join(
            f"\n--- {name} (last lines) ---\n" + "\n".join(text.splitlines()[-20:])
            for name, text in self.logs.items()
        )
        super().__init__(message + tail)
