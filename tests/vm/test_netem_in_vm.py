"""The netem plans, run for real: ``harness.faults.netem``'s argv in a VM with a netem kernel.

The unit tests compare these argument vectors as lists; this module runs them, in the network
namespace layout of a container (``eth0``), and measures what a round trip sees. Opt-in
(``ECHOLAB_VM=1``): the first run builds a Debian image (about a minute, needs root and
Debian's mirror), later runs reuse it. See ``netem_vm.py`` for how the VM is made and booted.

    ECHOLAB_VM=1 .venv/bin/pytest tests/vm -v
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.vm import netem_vm

pytestmark = [
    pytest.mark.vm,
    # Not opted in: skipped, with why. Opted in (ECHOLAB_VM=1, as make test sets): run, and a
    # VM that cannot be built or booted fails the run (``results``), never skips.
    pytest.mark.skipif(not netem_vm.opted_in(), reason=netem_vm.NOT_OPTED_IN),
    # A first run builds the image; the project's 120 s default is for ordinary tests.
    pytest.mark.timeout(netem_vm.BUILD_TIMEOUT + netem_vm.BOOT_TIMEOUT + 60),
]

CASES = netem_vm.cases()
BY_NAME = {case["name"]: case for case in CASES}
DELAY_SLACK_MS, DELAY_SLACK_FRACTION = 2.0, 0.05
LOSS_SLACK = 0.02  # absolute: 2 percentage points
RATE_SLACK_FRACTION = 0.05
JITTER_SLACK_MS, JITTER_SLACK_FRACTION = 1.0, 0.2
NORMAL_IQR_PER_SIGMA = 1.349  # the interquartile range of a normal law, in sigmas
LEFTOVERS = ("netem", "ingress", "tbf", "ifb")


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    """One boot runs every case (a boot is the expensive part); results by case name."""
    unavailable = None
    try:
        image = netem_vm.ensure_image()
        run = netem_vm.run_vm(image, CASES)
    except netem_vm.Unavailable as error:
        unavailable = str(error) or type(error).__name__
    if unavailable is not None:
        # Only reached with ECHOLAB_VM=1 (the module is skipped otherwise): a promise broken.
        pytest.fail(f"ECHOLAB_VM=1 but the netem VM cannot run here: {unavailable}", pytrace=False)
    # Kept for a look after a failure (the cache directory is outside the tracked tree).
    (netem_vm.CACHE / "last-console.txt").write_text(run.console)
    print(f"netem VM ({run.accel}): {len(run.results)} records in {run.seconds:.1f} s")
    assert run.exit_status == "0", f"the payload failed in the VM:\n{run.console[-6000:]}"
    by_name = {r["case"]: r for r in run.results if "case" in r}
    missing = sorted(set(BY_NAME) - set(by_name))
    assert not missing, f"no result for {missing}:\n{run.console[-6000:]}"
    return by_name


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["name"] for case in cases]


def _of(probe: str) -> list[str]:
    return [case["name"] for case in CASES if case["probe"] == probe]


def _noise(measured: dict[str, Any]) -> str:
    """How much the host disturbed this measurement (the payload's StallWatch)."""
    return (
        f" (guest stalled up to {measured.get('stall_ms', 0):.0f} ms; "
        f"{measured.get('attempts', 1)} attempt(s))"
    )


def _delay_ok(measured: float, expected: float) -> bool:
    return abs(measured - expected) <= DELAY_SLACK_MS + DELAY_SLACK_FRACTION * expected


@pytest.mark.parametrize("name", _ids(CASES))
def test_apply_and_update_commands_succeed(results, name):
    """Every ``apply`` and ``update`` argv is accepted by this kernel's tc and ip."""
    record = results[name]
    failed = [c for c in record["apply"] + record["update"] if c["rc"] != 0]
    assert not failed, f"{name}: commands refused: {failed}"


def _handles(qdiscs: str) -> list[str]:
    """``netem 8003`` for each shaping qdisc in ``tc qdisc show`` (kind and handle)."""
    return [
        " ".join(line.split()[1:3])
        for line in qdiscs.splitlines()
        if line.startswith("qdisc ") and line.split()[1] in ("netem", "tbf")
    ]


@pytest.mark.parametrize("name", _ids(CASES))
def test_update_changes_in_place(results, name):
    """``update`` is ``tc qdisc change``: the same qdiscs (handles) before and after, so
    their queues are kept; only the parameters differ."""
    record = results[name]
    before = _handles(record["applied_state"]["qdiscs"])
    assert before, f"{name}: no netem or tbf qdisc after apply:\n{record['applied_state']}"
    assert _handles(record["updated_state"]["qdiscs"]) == before
    assert record["updated_state"]["qdiscs"] != record["applied_state"]["qdiscs"]


@pytest.mark.parametrize("name", _of("delay") + _of("jitter"))
def test_delay_added_then_updated(results, name):
    """The median round trip grows by the configured delay, then by the updated one. The
    unimpaired median is the lower of the two measured around the fault (before apply, after
    removal): the emulated guest's slow spells only ever add to a round trip, and one of them
    over the 50 baseline probes once lifted the reference by 3 ms."""
    record = results[name]
    base = min(record["baseline"]["median_ms"], record["removed"]["median_ms"])
    for stage in ("applied", "updated"):
        expected = record["expect"][stage]["delay_ms"]
        measured = record[stage]
        added = measured["median_ms"] - base
        assert measured["received"] == measured["sent"], f"{name} {stage}: probes lost"
        assert _delay_ok(added, expected), (
            f"{name} {stage}: +{added:.2f} ms measured, +{expected:g} ms configured"
            + _noise(measured)
        )


@pytest.mark.parametrize("name", _of("jitter"))
def test_jitter_spreads_delay(results, name):
    """``normal``: the round trips spread as the configured jitter (its sigma). Estimated from
    the interquartile range (sigma = IQR / 1.349 for a normal law): a stall of the emulated
    guest lifts a few probes by tens of ms, which inflates a standard deviation, not an IQR."""
    record = results[name]
    for stage in ("applied", "updated"):
        expected = record["expect"][stage]["jitter_ms"]
        measured = record[stage]
        spread = (measured["p75_ms"] - measured["p25_ms"]) / NORMAL_IQR_PER_SIGMA
        assert abs(spread - expected) <= JITTER_SLACK_MS + JITTER_SLACK_FRACTION * expected, (
            f"{name} {stage}: sigma {spread:.2f} ms measured (IQR; stdev "
            f"{measured['stdev_ms']:.2f}), {expected:g} ms configured" + _noise(measured)
        )


@pytest.mark.parametrize("name", _of("jitter"))
def test_jitter_keeps_order_by_default(results, name):
    record = results[name]
    assert record["expect"]["applied"]["keep_order"]
    assert record["applied"]["reordered"] == 0, (
        f"{name}: {record['applied']['reordered']} of {record['applied']['received']} probes "
        "overtook an earlier one"
    )


@pytest.mark.parametrize("name", _of("loss"))
def test_loss_then_updated(results, name):
    """The share of datagrams without an echo is the configured round-trip loss."""
    record = results[name]
    for stage in ("applied", "updated"):
        expected = record["expect"][stage]["loss"]
        measured = record[stage]
        assert measured["sent"] >= 2000
        assert abs(measured["loss"] - expected) <= LOSS_SLACK, (
            f"{name} {stage}: {measured['loss']:.2%} lost of {measured['sent']}, "
            f"{expected:.2%} configured, other drops {measured.get('other_drops')}"
            + _noise(measured)
        )


@pytest.mark.parametrize("name", _of("rate"))
def test_rate_then_updated(results, name):
    """The echo's way back runs at the configured rate (frames on the wire, headers counted)."""
    record = results[name]
    for stage in ("applied", "updated"):
        expected = record["expect"][stage]["rate_bps"]
        measured = record[stage]["wire_bps"]
        assert abs(measured - expected) <= RATE_SLACK_FRACTION * expected, (
            f"{name} {stage}: {measured / 1e6:.3f} Mbit/s measured, {expected / 1e6:g} configured"
            + _noise(record[stage])
        )


@pytest.mark.parametrize("name", _ids(CASES))
def test_remove_leaves_nothing(results, name):
    """After ``remove``: no netem, ingress or tbf qdisc, no filter, no ifb; rtt as before."""
    record = results[name]
    state = record["removed_state"]
    text = state["qdiscs"] + state["links"]
    assert not [word for word in LEFTOVERS if word in text], f"{name}: left behind:\n{text}"
    assert not state["ingress_filters"].strip(), f"{name}: filters left:\n{state}"
    before, after = record["baseline"], record["removed"]
    assert after["loss"] <= 0.01, f"{name}: {after['loss']:.2%} lost after removal"
    # The 10th percentile: a delay left in place lifts every probe, while the emulated
    # guest's own hiccups lift only some (a median of 50 once moved by 2 ms).
    assert after["p10_ms"] <= before["p10_ms"] + DELAY_SLACK_MS, (
        f"{name}: rtt p10 {after['p10_ms']:.2f} ms after removal, {before['p10_ms']:.2f} before"
        + _noise(after)
    )


def test_every_kind_is_covered():
    """The case list proves each direction for delay and loss, and the rate (plans are pure)."""
    kinds = {(c["probe"], c["impairment"]["direction"]) for c in CASES}
    for direction in ("egress", "ingress", "both"):
        assert ("delay", direction) in kinds
        assert ("loss", direction) in kinds
    assert ("rate", "egress") in kinds
