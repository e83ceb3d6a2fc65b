"""``kensa export --format onnx``: graphs of the networks written into the bundle, recorded in
``bundle.json`` beside (not inside) its version, and checked before the onnx runtime uses them.

Runs on a copy of the golden fixture with its graphs (``exported``, conftest.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from golden_cases import GOLDEN

from models.bundle import read_info
from models.errors import BundleError
from models.exports import GRAPHS, export_onnx, graph_paths
from models.inference import Inspector
from models.preprocess import stride_multiple

KEY = b"a-key-of-the-plant"


def copy_of(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(bundle, out)
    return out


def test_export_keeps_the_version_and_records_the_graphs(exported):
    before = json.loads((GOLDEN / "bundle" / "bundle.json").read_text())
    info = read_info(exported)
    assert info["version"] == before["version"]
    record = info["exports"]["onnx"]
    assert record["for_version"] == before["version"]
    assert sorted(record["files"]) == ["onnx/defect.onnx", "onnx/encode.onnx", "onnx/maps.onnx"]
    assert sorted(record["parity"]) == ["defect", "encode", "maps"]
    assert max(record["parity"].values()) < 1e-4
    assert {k: v for k, v in info.items() if k != "exports"} == before


def test_graphs_take_any_batch_and_the_defect_graph_any_stride_multiple(exported):
    info = read_info(exported)
    cfg = info["model_config"]
    m = 2 ** max(cfg["depth"], cfg["seg_depth"])
    c, v = cfg["channels"], cfg["vae_image_size"]
    defect = ort.InferenceSession(str(exported / "onnx" / GRAPHS["defect"]))
    encode = ort.InferenceSession(str(exported / "onnx" / GRAPHS["encode"]))
    for batch in (1, 3):
        for h, w in ((cfg["image_size"], cfg["image_size"]), (2 * m, 5 * m)):
            x = np.random.default_rng(batch).random((batch, c, h, w), np.float32)
            recon, logits = defect.run(None, {"image": x})
            assert (recon.shape, logits.shape) == ((batch, c, h, w), (batch, 1, h, w))
        [mu] = encode.run(None, {"image": np.zeros((batch, c, v, v), np.float32)})
        cells = cfg["latent_grid"] ** 2 + cfg["map_grid"] ** 2
        assert mu.shape == (batch, cells, cfg["latent_dim"])


def test_the_maps_graph_takes_any_batch_and_stride_multiple(exported):
    """One call gives what the Inspector's torch path computes from the two networks: the
    smoothed map and its maximum, the latent means and the reconstruction, at the image's own
    shape (its coarse view's shape is not that of the example it was traced with)."""
    insp = Inspector.load(exported, device="cpu", runtime="onnx")
    assert insp.networks.fused and sorted(insp.networks.sessions) == ["maps"]
    cfg, m = insp.cfg, stride_multiple(insp.cfg)
    for batch, (h, w) in ((1, (2 * m, 5 * m)), (3, (cfg.image_size, cfg.image_size))):
        x = torch.rand(batch, cfg.channels, h, w, generator=torch.Generator().manual_seed(h))
        with torch.inference_mode():
            want = Inspector.load(exported, device="cpu").raw_scores(x, True)
            got = insp.raw_scores(x, True)
        assert got.maps.shape == (batch, h, w)
        np.testing.assert_allclose(got.maps, want.maps, atol=1e-4)
        np.testing.assert_allclose(got.recon_scores, want.recon_scores, atol=1e-4)
        np.testing.assert_allclose(got.latent_mu, want.latent_mu, atol=1e-4)
        np.testing.assert_allclose(got.recon, want.recon, atol=1e-4)


@pytest.mark.parametrize("rule", ["top1", "top5"])
def test_a_pooling_chosen_by_labels_is_applied_to_the_maps_graph(exported, rule):
    """The graph returns the map's maximum; a calibration that pools otherwise (labels chose
    ``top1``, say) must give the same reconstruction scores as torch, not the maximum."""
    torch_insp = Inspector.load(exported, device="cpu")
    onnx_insp = Inspector.load(exported, device="cpu", runtime="onnx")
    assert onnx_insp.networks.fused
    x = torch.rand(2, torch_insp.cfg.channels, torch_insp.cfg.image_size,
                   torch_insp.cfg.image_size, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        plain = onnx_insp.raw_scores(x).recon_scores
        for insp in (torch_insp, onnx_insp):
            insp.cal.image_score = rule
        want, got = torch_insp.raw_scores(x), onnx_insp.raw_scores(x)
    np.testing.assert_allclose(got.recon_scores, want.recon_scores, atol=1e-4)
    assert (got.recon_scores < plain - 1e-6).all()  # a mean of the top share is under the max


def test_an_export_without_the_maps_graph_still_runs(exported, tmp_path):
    """Exports made before maps.onnx: the two network graphs, the maps computed in torch."""
    bundle = copy_of(exported, tmp_path)
    info = json.loads((bundle / "bundle.json").read_text())
    del info["exports"]["onnx"]["files"]["onnx/maps.onnx"]
    (bundle / "bundle.json").write_text(json.dumps(info))
    (bundle / "onnx" / GRAPHS["maps"]).unlink()
    old = Inspector.load(bundle, device="cpu", runtime="onnx")
    assert not old.networks.fused and sorted(old.networks.sessions) == ["defect", "encode"]
    x = torch.rand(2, old.cfg.channels, old.cfg.image_size, old.cfg.image_size)
    with torch.inference_mode():
        want = Inspector.load(exported, device="cpu", runtime="onnx").raw_scores(x)
        np.testing.assert_allclose(old.raw_scores(x).maps, want.maps, atol=1e-4)


def test_a_maps_graph_that_does_not_read_the_residual_runs(tmp_path):
    """map_mode segmentation: the exporter drops the residual_scale input the graph ignores."""
    import dataclasses

    from models.bundle import load_bundle, save_bundle

    b = load_bundle(GOLDEN / "bundle")
    bundle = tmp_path / "segmentation"
    save_bundle(bundle, dataclasses.replace(b, cfg=dataclasses.replace(
        b.cfg, map_mode="segmentation")), {"name": "segmentation"}, {})
    export_onnx(bundle)
    insp = Inspector.load(bundle, device="cpu", runtime="onnx")
    assert "residual_scale" not in insp.networks.map_inputs
    x = torch.rand(2, insp.cfg.channels, insp.cfg.image_size, insp.cfg.image_size)
    with torch.inference_mode():
        want = Inspector.load(bundle, device="cpu").raw_scores(x).maps
        np.testing.assert_allclose(insp.raw_scores(x).maps, want, atol=1e-4)


def test_a_listed_maps_graph_that_is_missing_is_refused(exported, tmp_path):
    bundle = copy_of(exported, tmp_path)
    (bundle / "onnx" / GRAPHS["maps"]).unlink()
    with pytest.raises(BundleError, match="onnx/maps.onnx is missing; run 'kensa export"):
        Inspector.load(bundle, device="cpu", runtime="onnx")


def test_onnx_networks_give_torch_outputs(exported):
    torch_insp = Inspector.load(exported, device="cpu")
    onnx_insp = Inspector.load(exported, device="cpu", runtime="onnx")
    assert (torch_insp.runtime, onnx_insp.runtime) == ("torch", "onnx")
    m = stride_multiple(torch_insp.cfg)
    x = torch.rand(3, torch_insp.cfg.channels, 3 * m, 2 * m)
    with torch.inference_mode():
        for got, want in zip(onnx_insp.networks.defect(x), torch_insp.networks.defect(x)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_a_bundle_without_graphs_says_how_to_export(tmp_path):
    bundle = copy_of(GOLDEN / "bundle", tmp_path)
    with pytest.raises(BundleError, match=f"kensa export --model {bundle} --format onnx"):
        Inspector.load(bundle, device="cpu", runtime="onnx")


def test_auto_runs_the_graphs_where_a_bundle_has_them_and_torch_elsewhere(exported, tmp_path):
    plain = copy_of(GOLDEN / "bundle", tmp_path)
    assert Inspector.load(exported, device="cpu", runtime="auto").runtime == "onnx"
    assert Inspector.load(plain, device="cpu", runtime="auto").runtime == "torch"
    with pytest.raises(ValueError, match="torch, onnx or auto"):
        Inspector.load(plain, device="cpu", runtime="tensorrt")


def test_auto_keeps_torch_on_cuda_and_where_onnxruntime_or_graphs_are_missing():
    from models.inference import auto_runtime

    assert auto_runtime(graphs=True, onnxruntime=True, device="cpu") == "onnx"
    assert auto_runtime(graphs=True, onnxruntime=True, device="cuda") == "torch"
    assert auto_runtime(graphs=False, onnxruntime=True, device="cpu") == "torch"
    assert auto_runtime(graphs=True, onnxruntime=False, device="cpu") == "torch"


def test_a_changed_graph_is_refused(exported, tmp_path):
    bundle = copy_of(exported, tmp_path)
    graph = bundle / "onnx" / GRAPHS["encode"]
    graph.write_bytes(graph.read_bytes()[:-1] + b"\x00")
    with pytest.raises(BundleError, match="encode.onnx does not match the hash in bundle.json's "
                                          "exports: the graph is corrupt or was replaced"):
        Inspector.load(bundle, device="cpu", runtime="onnx")
    Inspector.load(bundle, device="cpu")  # torch does not read the graphs


def test_graphs_of_another_version_are_refused(exported, tmp_path):
    bundle = copy_of(exported, tmp_path)
    info = json.loads((bundle / "bundle.json").read_text())
    info["exports"]["onnx"]["for_version"] = "0123456789abcdef"
    (bundle / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match="were exported from version '0123456789abcdef', not "
                                          "this bundle's"):
        graph_paths(bundle, read_info(bundle))


def test_with_a_key_only_graphs_signed_with_it_load(tmp_path):
    """A signed bundle: kensa export signs its graphs with the key; an export made without
    it, or with another key, is refused."""
    from models.bundle import load_bundle, save_bundle

    signed = tmp_path / "signed"
    b = load_bundle(GOLDEN / "bundle")
    save_bundle(signed, b, {"name": "signed"}, {}, key=KEY)
    export_onnx(signed, key=KEY)
    assert Inspector.load(signed, device="cpu", key=KEY, runtime="onnx").runtime == "onnx"
    with pytest.raises(BundleError, match="not signed with this KENSA_BUNDLE_KEY"):
        export_onnx(signed, key=b"another-key-of-16+")
    export_onnx(signed)  # no key: the graphs are not signed
    with pytest.raises(BundleError, match="ONNX graphs are not signed with this "
                                          "KENSA_BUNDLE_KEY"):
        Inspector.load(signed, device="cpu", key=KEY, runtime="onnx")
