"""The netem backend end to end: the harness on this host, Docker Engine in a VM whose kernel has
netem, the lab's own images, the real fault sidecar, round trips measured by a client container.

This host's kernel has no ``sch_netem``, so ``lab.impair(..., backend="netem")`` never ran here
through a real sidecar. ``docker_vm`` boots Debian's kernel with Debian's dockerd in QEMU and
loads the host's images; the same harness code (``Lab``, ``lab.impair``, ``lab.faults``, the
sweep) then drives that engine over a forwarded TCP port. Opt-in (``ECHOLAB_VM=1``, as ``make
test`` sets): not opted in, skipped with why; opted in, a VM that cannot be built or booted fails.

Judging delays in an emulated guest (TCG on this host): netem holds every packet at least its
delay, so no round trip may be shorter than the configured delay; what the guest adds on top is
the emulation's own latency and its stalls, measured first as the unimpaired baseline. A fault
must shift the median round trip by the configured delay, within ``SHIFT_SLACK_MS``: why that
much, in its comment. The figures go to the terminal and to results/netem-docker-vm.json.

    ECHOLAB_VM=1 .venv/bin/pytest tests/vm/test_netem_docker_vm.py -v
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from harness import FaultError, Lab, LabSpec, Workload, images, labels, paths, session, sweep
from harness.faults import preflight
from harness.faults.impair import apply
from harness.faults.model import Impairment
from harness.faults.sidecar import UNDO_ROLE
from tests.helpers import Orphaned, SessionOwner
from tests.vm import docker_vm, netem_vm

pytestmark = [
    pytest.mark.vm,
    pytest.mark.docker,  # the images come from this host's engine
    pytest.mark.skipif(not netem_vm.opted_in(), reason=netem_vm.NOT_OPTED_IN),
    # The first test carries the module's set-up: on a fresh machine the VM image (about a
    # minute), the host's images, the boot and the images' load (see the report's timings).
    pytest.mark.timeout(
        netem_vm.BUILD_TIMEOUT + docker_vm.PREPARE_TIMEOUT + docker_vm.BOOT_TIMEOUT + 600
    ),
]

RESULTS = paths.RESULTS / "netem-docker-vm.json"
ENGINE = images.ENGINE_IMAGE
PROBES = 40  # exchanges per observation: 4 s at 100 ms
SKIP = 2  # the first exchanges carry the connection's set-up
WORKLOAD = Workload(count=PROBES, timeout=120.0, connect_timeout=60.0)
# A fault's median shift may exceed its delay by this much. Measured here (TCG, 2 vCPUs, a
# shared 2-core host): +4 to +6 ms at 50 and 100 ms, the minimum +2.5 to +3 ms: the emulated
# guest wakes late from idle (no round trip is ever shorter than the delay); host load adds
# stalls that lift some round trips by tens of ms and the median by a few. 15 ms keeps room for
# those and still fails every wrong plan seen or imaginable: a missing, stale (50 instead of
# 100), doubled or half-removed (20 instead of 30 + 20) delay is off by 20 ms or more.
SHIFT_SLACK_MS = 15.0
# After removal the 10th percentile must be back within the baseline's p90 plus this. Seen
# here: 1 to 3 ms above it once a fault has come and gone (the guest's noise, not a delay: the
# minimum is back too); 10 ms still fails the smallest delay a wrong removal could leave (20 ms).
BACK_SLACK_MS = 10.0
# Never earlier: a round trip through netem's delay is at least the delay (the timers run on
# the host's clock); this only absorbs the clock's rounding.
EARLY_MS = 0.5


# -- the VM, its engine, the lab ----------------------------------------------------------------


@pytest.fixture(scope="module")
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """What the module measured: written to results/ and shown at the end, whatever happened."""
    found: dict[str, Any] = {"timings_s": {}, "observed": {}}
    started = time.monotonic()
    try:
        yield found
    finally:
        found["timings_s"]["module"] = round(time.monotonic() - started, 1)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(found, indent=2) + "\n")
        # On the terminal whatever the capture: the figures are this module's point.
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("")
                for line in _summary(found):
                    reporter.write_line(f"netem-docker-vm: {line}")


def _summary(found: dict[str, Any]) -> list[str]:
    lines = [
        "timings (s): "
        + ", ".join(f"{name} {seconds:g}" for name, seconds in found["timings_s"].items())
    ]
    for name, seen in found["observed"].items():
        lines.append(
            f"{name}: median {seen['median_ms']:.2f} ms, p10 {seen['p10_ms']:.2f}, "
            f"p90 {seen['p90_ms']:.2f}, min {seen['min_ms']:.2f}, max {seen['max_ms']:.2f} "
            f"({seen['n']} round trips)"
        )
    lines.append(f"written to {RESULTS}")
    return lines


def _timed(found: dict[str, Any], name: str, started: float) -> None:
    found["timings_s"][name] = round(time.monotonic() - started, 1)


@pytest.fixture(scope="module")
def vm(docker_client: docker.DockerClient, figures: dict[str, Any]) -> Iterator[docker_vm.DockerVm]:
    """The VM, booted with the host's images loaded; powered off and its disks removed after."""
    unavailable = None
    try:
        started = time.monotonic()
        image = docker_vm.ensure_image()
        _timed(figures, "vm_image", started)
        host = docker_vm.host_images(docker_client)
        figures["timings_s"]["host_images_current"] = round(host.ensure_s, 1)
        figures["images"] = host.ids
        prepared = docker_vm.prepared_disk(image, docker_client, host)
        figures["loaded_now"] = prepared.loaded  # none: the cached data disk had them all
        if prepared.loaded:  # what docker save (host) and docker load (guest) took now
            figures["loaded_tar_mib"] = prepared.tar_mib
            figures["timings_s"]["host_images_saved"] = round(prepared.save_s, 1)
            figures["timings_s"]["data_disk_prepared"] = round(prepared.seconds, 1)
            figures["prepare_guest_uptime_s"] = prepared.stages
            figures["timings_s"]["docker_load_in_guest"] = round(
                prepared.stages["loaded"] - prepared.stages["dockerd"], 1
            )
        started = time.monotonic()
        with docker_vm.boot(image, prepared.disk) as booted:
            _timed(figures, "boot_to_ready", started)
            figures["accel"] = booted.accel
            figures["guest_uptime_s"] = booted.stages
            figures["missing_modules"] = booted.missing_modules
            yield booted
            return
    except netem_vm.Unavailable as error:
        unavailable = str(error) or type(error).__name__
    # Only reached with ECHOLAB_VM=1 (the module is skipped otherwise): a promise broken.
    pytest.fail(f"ECHOLAB_VM=1 but the Docker VM cannot run here: {unavailable}", pytrace=False)


@pytest.fixture(scope="module")
def vm_client(vm: docker_vm.DockerVm, figures: dict[str, Any]) -> Iterator[docker.DockerClient]:
    """The VM's engine, through the forwarded port; building or pulling through it fails."""
    client = vm.client()
    try:
        docker_vm.wait_engine(client)
        docker_vm.forbid_builds(client)
        # Before any harness call: a base missing there would make the builder run
        # base/build-base.sh, which builds on the host's engine, not the VM's.
        found = {tag: client.images.get(tag).id for tag in figures["images"]}
        assert found == figures["images"], "the VM's images are not the host's"
        info = client.info()
        figures["guest"] = {
            "kernel": info.get("KernelVersion"),
            "docker": info.get("ServerVersion"),
            "cgroup": info.get("CgroupVersion"),
            "storage": info.get("Driver"),
            "cpus": info.get("NCPU"),
        }
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def lab(vm_client: docker.DockerClient, figures: dict[str, Any]) -> Iterator[Lab]:
    """One lab in the VM for the module (a start costs tens of seconds emulated)."""
    spec = LabSpec(name="vmnetem", clients=1, workload=WORKLOAD, health_timeout=300.0)
    one = Lab(spec, client=vm_client)
    started = time.monotonic()
    one.start()
    _timed(figures, "lab_start", started)
    try:
        yield one
    finally:
        one.close()


# -- measuring and looking ----------------------------------------------------------------------


def observe(lab: Lab, figures: dict[str, Any], name: str) -> dict[str, float]:
    """One client container's round trips (``PROBES`` exchanges, one at a time), summarised."""
    started = time.monotonic()
    result = lab.run_clients(1, WORKLOAD)
    result.assert_ok()
    rtts = sorted(result.clients[0].rtts_ms()[SKIP:])
    seen = {
        "n": len(rtts),
        "min_ms": rtts[0],
        "p10_ms": rtts[len(rtts) // 10],
        "median_ms": statistics.median(rtts),
        "p90_ms": rtts[len(rtts) * 9 // 10],
        "max_ms": rtts[-1],
        "run_s": round(time.monotonic() - started, 1),
    }
    figures["observed"][name] = seen
    print(f"{name}: {seen}")
    return seen


def assert_delayed(
    seen: dict[str, float], baseline: dict[str, float], delay_ms: float, what: str
) -> None:
    """No round trip shorter than ``delay_ms`` (netem never releases early: the strict
    bound); the median shifted by ``delay_ms``, within the slack."""
    assert seen["min_ms"] >= delay_ms - EARLY_MS, (
        f"{what}: a round trip of {seen['min_ms']:.2f} ms, under the {delay_ms:g} ms delay"
    )
    shift = seen["median_ms"] - baseline["median_ms"]
    assert abs(shift - delay_ms) <= SHIFT_SLACK_MS, (
        f"{what}: median shifted by {shift:.2f} ms, {delay_ms:g} ms configured "
        f"(+-{SHIFT_SLACK_MS:g} ms allowed); baseline {baseline}, seen {seen}"
    )


def assert_back_to_baseline(seen: dict[str, float], baseline: dict[str, float], what: str) -> None:
    """No delay left: the 10th percentile is the baseline's again. (Not the median: a delay
    left in place lifts every round trip, the guest's own stalls only some.)"""
    limit = baseline["p90_ms"] + BACK_SLACK_MS
    assert seen["p10_ms"] <= limit, (
        f"{what}: p10 {seen['p10_ms']:.2f} ms, baseline p90 {baseline['p90_ms']:.2f} ms; "
        f"baseline {baseline}, seen {seen}"
    )


class ServerNamespace:
    """``tc`` in the lab server's network namespace, where what a fault left is visible: one
    probe container for the module (``tests.helpers.in_server_namespace`` starts one per look,
    seconds each when emulated), labelled as the lab's, so ``lab.close()`` removes it too."""

    def __init__(self, lab: Lab) -> None:
        self.probe = lab.docker.containers.run(
            ENGINE,
            command=["idle"],
            network_mode=f"container:{lab.server.id}",
            cap_drop=["ALL"],
            cap_add=["NET_ADMIN"],
            labels=labels.lab_labels(lab.id, "probe", session.acquire(lab.docker, ENGINE)),
            detach=True,
        )

    def qdiscs(self) -> str:
        """``tc qdisc show``: eth0's, and ifb0's when it exists."""
        code, output = self.probe.exec_run(["tc", "qdisc", "show"])
        assert code == 0, output
        return bytes(output).decode()


@pytest.fixture(scope="module")
def server_ns(lab: Lab) -> Iterator[ServerNamespace]:
    found = ServerNamespace(lab)
    try:
        yield found
    finally:
        found.probe.remove(force=True)


def netem_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("qdisc netem")]


def fault_sidecars(client: docker.DockerClient, lab: Lab, role: str = "fault") -> list[Any]:
    found = labels.project_filter(**{labels.LAB: lab.id, labels.ROLE: role})
    return list(client.containers.list(all=True, filters=found))


@pytest.fixture(scope="module")
def baseline(lab: Lab, figures: dict[str, Any]) -> dict[str, float]:
    """Round trips with no fault: what the emulated guest itself costs."""
    return observe(lab, figures, "baseline")


# -- the tests ----------------------------------------------------------------------------------


def test_the_vm_runs_the_hosts_images_and_builds_nothing(
    vm: docker_vm.DockerVm, vm_client: docker.DockerClient, figures: dict[str, Any]
) -> None:
    """Same image ids as on the host, so the builder's context hashes match: ``ensure`` finds
    each image current in the VM (a build or a pull there raises: ``forbid_builds``)."""
    for tag, image_id in figures["images"].items():
        assert vm_client.images.get(tag).id == image_id, tag
    started = time.monotonic()
    engine = images.ensure(vm_client, images.definitions()["engine"])
    _timed(figures, "ensure_engine_in_vm", started)
    assert engine == ENGINE


def test_preflight_in_the_vm_says_netem_ok(
    vm_client: docker.DockerClient, figures: dict[str, Any]
) -> None:
    started = time.monotonic()
    report = preflight(vm_client, ENGINE, refresh=True)
    _timed(figures, "preflight", started)
    figures["preflight"] = report.as_dict()
    assert report.netem.ok, report.netem.detail
    assert report.can()["latency"] == "netem"
    assert report.can()["bandwidth"] == "netem"


def test_netem_delay_applied_updated_in_place_and_removed(
    lab: Lab,
    vm_client: docker.DockerClient,
    baseline: dict[str, float],
    figures: dict[str, Any],
    server_ns: ServerNamespace,
) -> None:
    started = time.monotonic()
    with lab.impair("server", delay="50ms", backend="netem") as applied:
        _timed(figures, "impair_apply", started)
        assert applied.backend.name == "netem" and applied.mechanism == "netem"
        (before,) = netem_lines(server_ns.qdiscs())
        assert "delay 50ms" in before, before
        assert_delayed(observe(lab, figures, "delay_50ms"), baseline, 50.0, "delay 50ms")

        started = time.monotonic()
        applied.update(delay="100ms")
        _timed(figures, "impair_update", started)
        (after,) = netem_lines(server_ns.qdiscs())
        assert "delay 100ms" in after, after
        assert after.split()[:3] == before.split()[:3], (before, after)  # same qdisc, changed
        (status,) = applied.status().values()
        assert status["note"]["delay_s"] == pytest.approx(0.1)
        assert_delayed(observe(lab, figures, "delay_100ms"), baseline, 100.0, "delay 100ms")
        started = time.monotonic()
    _timed(figures, "impair_remove", started)
    assert fault_sidecars(vm_client, lab) == []
    left = server_ns.qdiscs()
    assert not netem_lines(left), left
    assert_back_to_baseline(observe(lab, figures, "removed"), baseline, "after removal")


def test_a_second_egress_netem_fault_is_refused_and_changes_nothing(
    lab: Lab, vm_client: docker.DockerClient, server_ns: ServerNamespace
) -> None:
    with lab.impair("server", delay="30ms", backend="netem"):
        before = server_ns.qdiscs()
        with (
            pytest.raises(FaultError, match="one qdisc per direction"),
            lab.impair("server", delay="5ms", backend="netem"),
        ):
            pass
        assert server_ns.qdiscs() == before
    assert fault_sidecars(vm_client, lab) == []
    assert not netem_lines(server_ns.qdiscs())


def _root_netem(text: str, dev: str) -> list[str]:
    return [line for line in netem_lines(text) if f" dev {dev} root " in line]


def test_an_ingress_netem_fault_stacks_on_an_egress_one_and_comes_off_alone(
    lab: Lab,
    vm_client: docker.DockerClient,
    baseline: dict[str, float],
    figures: dict[str, Any],
    server_ns: ServerNamespace,
) -> None:
    """As documented: netem has one qdisc per direction, so an ingress fault stacks beside an
    egress one (30 + 20 ms), and each comes off on its own."""
    with lab.impair("server", delay="30ms", backend="netem"):
        with lab.impair("server", delay="20ms", direction="ingress", backend="netem"):
            shown = server_ns.qdiscs()
            stacked = observe(lab, figures, "stacked_30ms_egress_20ms_ingress")
            figures["stacked_qdiscs"] = shown
            assert _root_netem(shown, "eth0"), f"the egress fault's qdisc is gone:\n{shown}"
            assert _root_netem(shown, "ifb0"), shown
            assert_delayed(stacked, baseline, 50.0, "30 ms egress + 20 ms ingress")
        left = server_ns.qdiscs()  # the ingress fault removed first: the egress one stays
        assert _root_netem(left, "eth0"), f"removing the ingress fault took the egress one:\n{left}"
    assert fault_sidecars(vm_client, lab) == []
    assert not netem_lines(server_ns.qdiscs())


def test_a_killed_netem_sidecar_leaves_its_qdisc_and_removing_undoes_it(
    lab: Lab,
    vm_client: docker.DockerClient,
    baseline: dict[str, float],
    figures: dict[str, Any],
    server_ns: ServerNamespace,
) -> None:
    """The sidecar of a netem fault only execs ``tc``: killed, its qdisc stays in force (and
    ``lab.faults()`` says so); removing the fault undoes it from a short-lived sidecar."""
    with lab.impair("server", delay="50ms", backend="netem") as applied:
        (one,) = applied.sidecars
        assert one.container is not None
        one.container.kill()
        (entry,) = lab.faults()
        figures["killed_sidecar_entry"] = entry
        assert entry["state"] == "died" and entry["params"] is None, entry
        assert "kernel rules stay in force" in entry["why"], entry
        with pytest.raises(FaultError, match="kernel rules stay"):
            applied.status()
        assert netem_lines(server_ns.qdiscs())
        assert_delayed(observe(lab, figures, "sidecar_killed"), baseline, 50.0, "killed")
    (stats,) = applied.engine_stats().values()
    assert stats["engine_died"] is True
    assert fault_sidecars(vm_client, lab) == []
    assert fault_sidecars(vm_client, lab, UNDO_ROLE) == []
    left = server_ns.qdiscs()
    assert not netem_lines(left), left
    assert_back_to_baseline(observe(lab, figures, "killed_removed"), baseline, "after removal")


def test_an_orphaned_netem_fault_is_undone_by_the_sweep(
    lab: Lab,
    vm: docker_vm.DockerVm,
    vm_client: docker.DockerClient,
    baseline: dict[str, float],
    figures: dict[str, Any],
    server_ns: ServerNamespace,
) -> None:
    owner = SessionOwner(lab.spec.client_image, url=vm.url, lease_timeout=60.0)
    try:
        crashed = Orphaned(lab, owner.session)
        orphan = apply(crashed, "server", Impairment.parse(delay="50ms"), backend="netem")
        assert_delayed(observe(lab, figures, "orphan_in_force"), baseline, 50.0, "orphan")
        sweep.sweep(vm_client)  # its owner lives: the sweep leaves it alone
        assert len(fault_sidecars(vm_client, lab)) == 1
    finally:
        started = time.monotonic()
        owner.crash(vm_client)
        _timed(figures, "lease_end_after_kill", started)
    started = time.monotonic()
    sweep.sweep(vm_client)
    _timed(figures, "sweep", started)
    assert fault_sidecars(vm_client, lab) == []
    assert fault_sidecars(vm_client, lab, UNDO_ROLE) == []
    lab.server.reload()
    assert lab.server.status == "running"  # the target is not the sweep's (its owner lives)
    left = server_ns.qdiscs()
    assert not netem_lines(left), left
    assert_back_to_baseline(observe(lab, figures, "orphan_swept"), baseline, "after the sweep")
    orphan.sidecars.clear()  # already swept: nothing left to remove
