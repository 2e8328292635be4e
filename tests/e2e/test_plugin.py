"""The echolab pytest plugin as a user's suite meets it: installed with echolab, its fixtures
give a lab, faults and the proxy; a failing test's report carries the lab's logs; everything is
removed after the test, passed or failed."""

from __future__ import annotations

import docker
import pytest

from harness import Lab, LabSpec, Proxy, Toxic, Workload, labels

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(300)

USERS_SUITE = """
import pytest
from harness import LabSpec, Workload

@pytest.fixture
def echolab_spec():
    return LabSpec(name="users", clients=2, workload=Workload(count=20))

def test_delay_is_seen(echolab_lab, echolab_impair):
    echolab_impair("server", delay="15ms")
    result = echolab_lab.run_clients()
    result.assert_ok()
    assert min(e.rtt_ms for c in result.clients for e in c.exchanges) >= 15.0

def test_fails_on_purpose(echolab_lab):
    echolab_lab.run_clients().assert_ok()
    assert False, "on purpose"
"""


def test_a_users_suite_gets_labs_faults_and_logs_from_the_plugin(
    pytester: pytest.Pytester, docker_client: docker.DockerClient
) -> None:
    pytester.makepyfile(test_users=USERS_SUITE)
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=240)
    outcome.assert_outcomes(passed=1, failed=1)
    text = outcome.stdout.str()
    assert "lab logs: users-" in text and "20/20 replies ok" in text
    leftovers = docker_client.containers.list(all=True, filters=labels.project_filter())
    assert not [c for c in leftovers if (c.labels.get(labels.LAB) or "").startswith("users-")]


def test_the_proxy_fixture_sits_in_front_of_the_lab(echolab_lab: Lab, echolab_proxy: Proxy) -> None:
    echolab_proxy.add(Toxic("latency", {"latency": "20ms"}))
    workload = Workload(count=10)
    result = echolab_lab.run_command(
        [*workload.command("p0"), *echolab_proxy.client_args()], timeout=60
    )
    assert result.exit_code == 0, result.stderr
    assert min(result.rtts_ms()) >= 20.0


@pytest.fixture
def echolab_spec() -> LabSpec:
    return LabSpec(name="plugin", clients=1)
