"""One source of truth for a fault in force: its sidecar's note. After an update, after its
engine dies and after a sweep, ``lab.faults()`` (what ``python -m harness faults`` prints, for
any lab) and ``Applied.status()`` say the same thing."""

from __future__ import annotations

import docker
import pytest

from harness import FaultError, Lab, LabSpec, sweep
from harness.faults.impair import apply
from harness.faults.model import Impairment
from tests.helpers import MakeLab, Orphaned, SessionOwner

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def lab(make_lab: MakeLab, sidecar_image: str) -> Lab:
    return make_lab(LabSpec(name="state", clients=1))


def _entry(lab: Lab) -> dict[str, object]:
    (entry,) = lab.faults()
    return entry


def test_after_an_update_every_reader_sees_the_new_parameters(
    lab: Lab, packet_backend: str
) -> None:
    with lab.impair("server", delay="10ms", loss="1%", seed=5, backend=packet_backend) as applied:
        applied.update(delay="30ms", loss="2%")
        (status,) = applied.status().values()
        entry = _entry(lab)
        assert entry["state"] == "running" and entry["kind"] == "impair"
        assert entry["params"] == status["note"]
        assert status["note"]["delay_s"] == pytest.approx(0.030)
        assert status["note"]["loss"] == pytest.approx(0.02)
        assert status["note"]["seed"] == 5  # what update did not name stays
        assert applied.describe()["delay_s"] == pytest.approx(0.030)
    assert lab.faults() == []


def test_after_the_nfqueue_engine_dies_both_say_so_in_the_same_words(
    lab: Lab, engine_backend: str
) -> None:
    """About the user-space engine: its death lets packets bypass the queue."""
    with lab.impair("server", delay="20ms", backend=engine_backend) as applied:
        (one,) = applied.sidecars
        assert one.container is not None
        one.container.kill()
        entry = _entry(lab)
        assert entry["state"] == "died" and entry["params"] is None
        with pytest.raises(FaultError) as raised:
            applied.status()
        assert str(raised.value) == entry["why"]
        assert "bypasses" in str(raised.value)
    assert lab.faults() == []


def test_after_a_sweep_the_fault_is_gone_for_every_reader(
    lab: Lab, docker_client: docker.DockerClient, sidecar_image: str
) -> None:
    owner = SessionOwner(sidecar_image)
    try:
        applied = apply(Orphaned(lab, owner.session), "server", Impairment.parse(delay="5ms"))
        assert _entry(lab)["state"] == "running"
    finally:
        owner.crash(docker_client)
    sweep.sweep(docker_client, everything=False)  # its owner is gone: an orphan
    assert lab.faults() == []
    with pytest.raises(FaultError, match="gone"):
        applied.status()
