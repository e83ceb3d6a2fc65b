"""The golden fixture: a tiny bundle committed in ``tests/fixtures/golden`` must keep giving the
answers recorded beside it, through the Inspector and through the HTTP API.

This pins behaviour across refactors (a move that claims to change nothing changes nothing)
and pins that bundles written by an earlier Kensa still load. Floats are compared to a relative
1e-4 so that another CPU's kernels pass; on one machine they agree to the bit. Regenerate only
for a change that is meant to change answers: ``python tests/fixtures/make_golden.py``.
"""

from __future__ import annotations

import json
import math

import pytest
from golden_cases import GOLDEN, answers

REL = 1e-4


def assert_close(got, want, path="") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (path, sorted(got), sorted(want))
        for k in want:
            assert_close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (path, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, float) or (isinstance(want, int) and not isinstance(want, bool)
                                     and path.endswith(".sum")):
        assert math.isclose(got, want, rel_tol=REL, abs_tol=1e-6), (path, got, want)
    else:
        assert got == want, (path, got, want)


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads((GOLDEN / "expected.json").read_text())


@pytest.fixture(scope="module")
def current() -> dict:
    return answers(GOLDEN / "bundle")


def test_inspector_results_are_the_recorded_ones(current, recorded):
    assert len(recorded["inspector"]) == 5
    assert_close(current["inspector"], recorded["inspector"], "inspector")


def test_http_answers_are_the_recorded_ones(current, recorded):
    assert [a.get("status") for a in recorded["http"][:-1]] == [200] * 5
    assert_close(current["http"], recorded["http"], "http")
