"""The soak's short version: 8 clients for 20 s of good, bad, huge and abandoned uploads
against a real server; memory and connections come back, no 5xx but 503."""

import pytest

from benchmarks.soak import main

pytestmark = pytest.mark.slow


def test_a_short_soak_leaves_the_server_as_it_found_it(tiny_bundle, capsys):
    code = main(["--model", str(tiny_bundle), "--clients", "8", "--seconds", "20",
                 "--budget-mb", "64"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "requests: " in out
