"""Two experiments side by side: per matching run, the difference of the median and of the
p99 round trip with a bootstrap confidence interval, and warnings where the two manifests say
the experiments are not comparable (kernel, Docker, backend, echolab version, fidelity).

Runs match by their settings (every key of the grid point); the repetitions of a point are
pooled, so ``B - A`` is between all of A's replies and all of B's at those settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.experiment.stats import Difference, Floats, bootstrap_difference
from harness.experiment.store import Results

MAX_SAMPLE = 50_000  # larger samples are bootstrapped from a seeded random subsample this big


@dataclass(frozen=True)
class Row:
    settings: Mapping[str, Any]
    replies: tuple[int, int]
    differences: tuple[Difference, ...]


def _key(settings: Mapping[str, Any]) -> str:
    return json.dumps(dict(settings), sort_keys=True)


def pooled(results: Results) -> dict[str, tuple[Mapping[str, Any], Floats]]:
    """Round trips of every finished run, pooled per settings."""
    found: dict[str, tuple[Mapping[str, Any], list[Floats]]] = {}
    for run_id in results.done():
        settings = results.run_record(run_id)["settings"]
        entry = found.setdefault(_key(settings), (settings, []))
        entry[1].append(results.exchanges(run_id).rtt_ms)
    return {k: (s, np.concatenate(parts)) for k, (s, parts) in found.items()}


def _sample(values: Floats, seed: int) -> Floats:
    if values.size <= MAX_SAMPLE:
        return values
    return np.random.default_rng(seed).choice(values, MAX_SAMPLE, replace=False)


def warnings(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two manifests that makes their figures not comparable."""
    found = []
    pa, pb = a.get("provenance", {}), b.get("provenance", {})
    checks = {
        "host kernel": ("host_kernel",),
        "Docker engine's kernel": ("docker", "engine_kernel"),
        "Docker version": ("docker", "version"),
        "echolab commit": ("echolab", "commit"),
        "fault backends this host applies": ("preflight", "applies"),
    }
    for name, path in checks.items():
        va, vb = _get(pa, path), _get(pb, path)
        if va != vb:
            found.append(f"{name} differs: {va!r} vs {vb!r}")
    backends = [
        sorted({str(r.get("backend")) for r in m.get("runs", {}).values() if r.get("backend")})
        for m in (a, b)
    ]
    if backends[0] != backends[1]:
        found.append(f"fault backends used differ: {backends[0]} vs {backends[1]}")
    for label, manifest in (("A", a), ("B", b)):
        drifted = [r for r, v in manifest.get("runs", {}).items() if v.get("fidelity_ok") is False]
        if drifted:
            found.append(f"{label}: runs whose faults drifted beyond their bound: {drifted}")
    return found


def _get(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key, {}) if isinstance(data, Mapping) else {}
    return data or None


Pooled = Mapping[str, tuple[Mapping[str, Any], Floats]]


def compare(left: Pooled, right: Pooled, *, resamples: int = 2000, seed: int = 0) -> list[Row]:
    """One row per settings both experiments ran (``pooled`` of each), B - A."""
    rows = []
    for key in sorted(set(left) & set(right)):
        settings, xa = left[key]
        _, xb = right[key]
        if not xa.size or not xb.size:
            continue
        sa, sb = _sample(xa, seed), _sample(xb, seed + 1)
        diffs = tuple(
            bootstrap_difference(sa, sb, stat, resamples=resamples, seed=seed)
            for stat in ("p50", "p99")
        )
        rows.append(Row(settings, (int(xa.size), int(xb.size)), diffs))
    return rows


def unmatched(left: Pooled, right: Pooled) -> tuple[list[str], list[str]]:
    """Settings only one side ran (as JSON)."""
    return sorted(set(left) - set(right)), sorted(set(right) - set(left))
