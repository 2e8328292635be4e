"""The toxics of one direction of one connection, in the order they were added (pure).

``Chain`` feeds chunks, the end of the stream and the passing of time through its toxics and
returns the actions for the link to carry out, in the order and at the times to carry them out:
``Emit`` and ``Eof`` never go back in time (each is at or after the one before it, so bytes
keep their order), while a ``Close(reset=True)`` keeps its own time (an RST cuts off whatever
is still queued). Which connections a toxic affects is decided per connection by ``affected``:
seeded, so a run with the same seed hits the same connections.
"""

from __future__ import annotations

import random

from .toxics import Action, Close, Emit, Eof, Stream, Toxic, ToxicSpec


def affected(seed: int, name: str, conn: int, toxicity: float) -> bool:
    """Whether toxic ``name`` acts on connection number ``conn`` (0, 1, ... in accept order)."""
    if toxicity >= 1.0:
        return True
    if toxicity <= 0.0:
        return False
    return random.Random(f"{seed}:{name}:{conn}").random() < toxicity


class Chain:
    def __init__(self, stream: Stream, conn: int, seed: int = 0) -> None:
        self.stream = stream
        self.conn = conn
        self.seed = seed
        self.toxics: dict[str, Toxic] = {}
        self._last = float("-inf")

    def add(self, spec: ToxicSpec, now: float) -> bool:
        """Add ``spec`` if it is for this direction and hits this connection; True if added."""
        if spec.stream != self.stream or spec.name in self.toxics:
            return False
        if not affected(self.seed, spec.name, self.conn, spec.toxicity):
            return False
        toxic = spec.build(random.Random(f"{self.seed}:{spec.name}:{self.conn}:rng"))
        toxic.start(now)
        self.toxics[spec.name] = toxic
        return True

    def remove(self, name: str, now: float) -> list[Action]:
        """Remove a toxic; what it held goes on through the toxics after it."""
        names = list(self.toxics)
        if name not in names:
            return []
        position = names.index(name)
        released = self.toxics.pop(name).on_remove(now)
        return self._through(position, released)

    def chunk(self, data: bytes, now: float) -> list[Action]:
        return self._through(0, [Emit(data, now)])

    def eof(self, now: float) -> list[Action]:
        return self._through(0, [Eof(now)])

    def deadline(self) -> float | None:
        times = [t for t in (toxic.deadline() for toxic in self.toxics.values()) if t is not None]
        return min(times) if times else None

    def tick(self, now: float) -> list[Action]:
        """Run the timers that are due; their actions go through the toxics after each."""
        out: list[Action] = []
        for position, toxic in enumerate(list(self.toxics.values())):
            when = toxic.deadline()
            if when is not None and when <= now:
                out += self._through(position + 1, toxic.on_timer(now))
        return out

    def _through(self, position: int, actions: list[Action]) -> list[Action]:
        for toxic in list(self.toxics.values())[position:]:
            passed: list[Action] = []
            for action in actions:
                if isinstance(action, Emit):
                    passed += toxic.on_chunk(action.data, action.at)
                elif isinstance(action, Eof):
                    passed += toxic.on_eof(action.at)
                else:
                    passed += toxic.on_close(action)
            actions = passed
        return self._ordered(actions)

    def _ordered(self, actions: list[Action]) -> list[Action]:
        out: list[Action] = []
        for action in actions:
            if isinstance(action, Close) and action.reset:
                out.append(action)
                continue
            self._last = max(self._last, action.at)
            if isinstance(action, Emit):
                if action.data:
                    out.append(Emit(action.data, self._last))
            elif isinstance(action, Eof):
                out.append(Eof(self._last))
            else:
                out.append(Close(self._last))
        return out
