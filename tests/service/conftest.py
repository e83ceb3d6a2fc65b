"""Fixtures for the service tests: a tiny bundle trained once per session, apps built on it,
and upload factories.

The bundle is real (``models.train.train`` on a few rendered demo washers), only small, so
every test talks to the same code that production runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from service_helpers import TestClient
from tiny import TINY_MODEL, TINY_TRAINING

from models.inference import Inspector
from models.train import train
from service.app import create_app
from service.config import Settings


@pytest.fixture(autouse=True)
def no_kensa_environment(monkeypatch):
    """Settings come from the environment: keep the caller's KENSA_* out of these tests."""
    import os

    for name in [n for n in os.environ if n.startswith("KENSA_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A bundle trained in a few seconds on 16 rendered 48x48 washers (CPU)."""
    from models.synth_demo import make_demo_dataset

    root = tmp_path_factory.mktemp("tiny")
    make_demo_dataset(root / "data", seed=0, n_train=16, n_test_good=2, n_per_defect=1,
                      size=48)
    train(root / "data", root / "bundle", TINY_MODEL, TINY_TRAINING, device="cpu",
          progress=False, name="tiny")
    return root / "bundle"


@pytest.fixture(scope="session")
def washers_bundle(tmp_path_factory) -> Path:
    """A tiny bundle that keeps 24 held-out normal scores (half of 48 rendered washers), enough
    for drift statistics and recalibration; its directory, and so its part, is ``washers``."""
    from dataclasses import replace

    from models.synth_demo import make_demo_dataset

    root = tmp_path_factory.mktemp("washers")
    make_demo_dataset(root / "data", seed=0, n_train=48, n_test_good=2, n_per_defect=1,
                      size=48)
    train(root / "data", root / "washers", TINY_MODEL,
          replace(TINY_TRAINING, holdout_fraction=0.5), device="cpu", progress=False)
    return root / "washers"


@pytest.fixture(scope="session")
def inspector(tiny_bundle) -> Inspector:
    """The bundle loaded directly, to compare the server's answers with."""
    return Inspector.load(tiny_bundle, device="cpu")


@pytest.fixture(scope="session")
def exported_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """A copy of the tiny bundle with its ONNX graphs (``kensa export``): same version."""
    import shutil

    from models.exports import export_onnx

    out = tmp_path_factory.mktemp("exported") / "bundle"
    shutil.copytree(tiny_bundle, out)
    export_onnx(out)
    return out


@pytest.fixture(scope="session")
def onnx_inspector(exported_bundle) -> Inspector:
    return Inspector.load(exported_bundle, device="cpu", runtime="onnx")


@pytest.fixture(params=["torch", "onnx"])
def runtime(request) -> str:
    """Both runtimes, for the HTTP tests that pin the server's answers to the Inspector's."""
    return request.param


@pytest.fixture
def runtime_client(runtime, make_client, exported_bundle) -> TestClient:
    """A started app on the exported bundle whose networks run on ``runtime``."""
    return make_client(model=exported_bundle, runtime=runtime)


@pytest.fixture
def runtime_inspector(runtime, inspector, onnx_inspector) -> Inspector:
    """The Inspector on ``runtime``: what :func:`runtime_client` must answer."""
    return onnx_inspector if runtime == "onnx" else inspector


@pytest.fixture
def data_dir(tmp_path_factory) -> Path:
    """The test's records folder (KENSA_DATA_DIR), apart from its ``tmp_path``."""
    return tmp_path_factory.mktemp("records") / "kensa-data"


@pytest.fixture
def make_settings(tiny_bundle, data_dir) -> Callable[..., Settings]:
    def make(**overrides) -> Settings:
        return Settings(**{"model": tiny_bundle, "device": "cpu", "data_dir": data_dir,
                           **overrides})
    return make


@pytest.fixture
def make_client(make_settings) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**settings)``: a started app (lifespan run, bundle loaded)."""
    with ExitStack() as stack:
        def make(**overrides) -> TestClient:
            app = create_app(make_settings(**overrides))
            return stack.enter_context(TestClient(app))
        yield make


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture(scope="session")
def live_server(tiny_bundle, tmp_path_factory) -> Iterator[str]:
    """A real ``kensa serve`` process (records on, API key ``line-key``) for the client and
    ``kensa watch`` tests; yields its base URL."""
    from test_server_process import running_server

    root = tmp_path_factory.mktemp("live")
    with running_server(tiny_bundle, {"KENSA_DATA_DIR": str(root / "data"),
                                      "KENSA_API_KEYS": "line-key"}, root / "server.log") as base:
        yield base
