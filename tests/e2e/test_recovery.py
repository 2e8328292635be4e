"""A client cut off while it waits for a reply recovers after the heal, also when the peer it
talked to dropped the connection meanwhile (examples/recovery.toml: a partition under the
proxy's resets).

The case: the client's request is acknowledged, the reply is on its way, the client is
partitioned; the reply is lost and the proxy resets the connection, and that RST is lost
too. After the heal the client has nothing unacknowledged to retransmit and the proxy has
no connection left to send on: without keepalive, silence until the client's own deadline.
"""

from __future__ import annotations

import time

import docker
import pytest

from harness import LabSpec, Toxic, Workload, images
from harness.checks import check_run
from tests.helpers import MakeLab

pytestmark = pytest.mark.timeout(240)

COUNT = 60
# The proxy holds each reply this long, so the client almost always waits on an acknowledged
# request (the case above) when the partition begins.
HELD = Toxic("latency", {"latency": "100ms"})
RESET = Toxic("reset_peer", {"timeout": "1s"})  # every connection reset a second after it opened
PARTITION_AT_S, HEAL_AT_S = 1.5, 4.0  # a reset falls within the partition whatever its phase


@pytest.fixture(scope="session")
def proxy_image_built(docker_client: docker.DockerClient) -> str:
    return images.tag_for(docker_client, "proxy")


@pytest.mark.parametrize("keepalive", [2, 3600], ids=["keepalive", "no-keepalive"])
def test_client_partitioned_under_resets_recovers_after_heal(
    make_lab: MakeLab, proxy_image_built: str, keepalive: int
) -> None:
    """With the client's keepalive (2 s, its default) the first probe after the heal meets the
    proxy's RST and the client reconnects and resends; with keepalive out of reach (3600 s)
    the same client is stuck until its deadline, which shows the test can fail."""
    lab = make_lab(LabSpec(name="recover"))
    workload = Workload(count=COUNT, pipeline=1, timeout=25, connect_timeout=20)
    with lab.proxy([HELD, RESET], seed=1) as proxy:
        command = [*workload.command("c0"), "--keepalive", str(keepalive)]
        batch = lab.create_clients(1, workload, command=command, host=proxy.host)
        (client_id,) = batch.ids
        run = batch.start()
        began = time.monotonic()
        try:
            time.sleep(max(0.0, began + PARTITION_AT_S - time.monotonic()))
            assert lab.partition(client_id) == [f"{lab.id}-{client_id}"]
            time.sleep(max(0.0, began + HEAL_AT_S - time.monotonic()))
        finally:
            lab.heal()
        healed = time.monotonic()
        (result,) = run.wait(60).clients
        resets = proxy.stats()["resets"]
    print(f"keepalive {keepalive}: exit {result.exit_code}, {len(result.exchanges)}/{COUNT} "
          f"replies, done {time.monotonic() - healed:.1f} s after the heal, proxy resets "
          f"{resets}")  # fmt: skip
    assert resets >= 2  # the toxic was in force before and after the partition
    if keepalive == 2:
        assert result.exit_code == 0, result.stderr
        assert check_run([result], COUNT) == []
        assert result.summary is not None and result.summary.reconnects >= 2
    else:
        assert result.exit_code == 1, result.stderr
        assert len(result.exchanges) < COUNT  # stuck from the partition to its deadline
