"""benchmarks.http_load's server: a real ``kensa serve`` process, pinned where asked."""

from __future__ import annotations

import os
import shutil

import pytest

from benchmarks.http_load import Server


@pytest.mark.skipif(shutil.which("taskset") is None, reason="no taskset (util-linux)")
def test_a_pinned_server_runs_on_its_cores_alone(tiny_bundle):
    server = Server(tiny_bundle, "cpu", cpus="0")
    server.start()
    try:
        assert os.sched_getaffinity(server.proc.pid) == {0}
    finally:
        server.stop()
