"""``--connections K`` against the real server on 127.0.0.1: one process, K checked connections."""

from __future__ import annotations

import resource
import subprocess
import sys

from tests.native.test_client import ROOT, RUN_TIMEOUT, StartServer, batch, client_env


def test_each_connection_has_its_own_complete_ordered_seqs(start_server: StartServer) -> None:
    server = start_server()
    done, records = batch(server, "--count", "40", "--pipeline", "4", "--id", "c1",
                          "--connections", "5", "--rate", "2000")  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert records.unparsed == [] and records.problems == []
    for k in range(5):
        mine = [e for e in records.exchanges if e.connection == k]
        assert [e.seq for e in mine] == list(range(40)), k
        assert all(e.request.startswith(f"c1/{k} ") and e.client == "c1" for e in mine)
    verdicts = sorted(records.connections, key=lambda v: v.connection)
    assert [(v.connection, v.replied, v.ok) for v in verdicts] == [(k, 40, True) for k in range(5)]
    summary = records.summary
    assert summary is not None and summary.ok
    assert (summary.connections, summary.count, summary.replied) == (5, 200, 200)
    assert " 200/200 replies ok over 5 connections " in done.stderr.decode()


def test_too_few_descriptors_is_a_setting_error_not_a_run_error() -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))

    done = subprocess.run(
        [sys.executable, "-m", "echo_client", "--count", "1", "--connections", "500",
         "--host", "127.0.0.1", "--port", "9"],
        capture_output=True, timeout=RUN_TIMEOUT, env=client_env(), cwd=ROOT, check=False,
        preexec_fn=low_limit,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr.decode()
    err = done.stderr.decode()
    assert "--connections needs 564 open files" in err and "ulimit" in err
    assert done.stdout == b""
