"""Bundle fingerprints: an edited bundle is refused with the part that changed named; old
bundles keep their version; the optional signature."""

import json
import logging
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from models.bundle import load_bundle, sha256
from models.errors import BundleError

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "bundle"


def edited(src: Path, dst: Path, edit) -> Path:
    """A copy of bundle ``src`` whose bundle.json went through ``edit(info)``."""
    shutil.copytree(src, dst)
    info = json.loads((dst / "bundle.json").read_text())
    edit(info)
    (dst / "bundle.json").write_text(json.dumps(info, indent=2))
    return dst


def set_in(path: str, value):
    def edit(info: dict) -> None:
        *outer, last = path.split(".")
        node = info
        for key in outer:
            node = node[key]
        node[last] = value
    return edit


@pytest.mark.parametrize(("field", "value", "named"), [
    ("calibration.image", 99.0, "calibration differs"),
    ("calibration.fusion_weight", 0.1, "calibration differs"),
    ("model_config.map_sigma", 4.0, "model_config differs"),
    ("latent.classes", ["scratch"], "latent.classes differs"),
])
def test_an_edited_part_is_refused_and_named(tiny_bundle, tmp_path, field, value, named):
    copy = edited(tiny_bundle, tmp_path / "b", set_in(field, value))
    with pytest.raises(BundleError, match=f"was changed after it was written: {named}"):
        load_bundle(copy)


@pytest.mark.parametrize(("field", "value", "source"), [
    ("thresholds.image", 99.0, "calibration.image"),
    ("fusion.weight", 0.1, "calibration.fusion_weight"),
    ("fusion.rule", "max", "calibration.fusion"),
    ("image_size", 512, "model_config.image_size"),
])
def test_a_copy_that_disagrees_with_what_the_model_uses_is_refused(tiny_bundle, tmp_path, field,
                                                                   value, source):
    copy = edited(tiny_bundle, tmp_path / "b", set_in(field, value))
    with pytest.raises(BundleError, match=f"{field} says {value!r} but {source}"):
        load_bundle(copy)


def test_weights_replaced_with_their_hash_are_refused_and_named(tiny_bundle, tmp_path):
    copy = edited(tiny_bundle, tmp_path / "b", lambda info: None)
    state = load_file(str(copy / "model.safetensors"))
    name = next(iter(state))
    state[name] = state[name] * 1.01
    save_file(state, str(copy / "model.safetensors"))
    info = json.loads((copy / "bundle.json").read_text())
    info["files"]["model.safetensors"] = sha256(copy / "model.safetensors")
    (copy / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match="weights file model.safetensors differs"):
        load_bundle(copy)


def test_an_edited_version_is_refused(tiny_bundle, tmp_path):
    copy = edited(tiny_bundle, tmp_path / "b", set_in("version", "0123456789abcdef"))
    with pytest.raises(BundleError, match="its version is not the one its contents give"):
        load_bundle(copy)


def test_an_unedited_bundle_loads_under_its_version(tiny_bundle):
    info = json.loads((tiny_bundle / "bundle.json").read_text())
    assert load_bundle(tiny_bundle).info["version"] == info["version"]
    assert set(info["digests"]) == {"weights file latent.safetensors", "calibration",
                                    "weights file model.safetensors", "model_config",
                                    "weights file vae.safetensors", "latent.classes"}


def test_an_old_bundle_keeps_its_version_and_says_what_it_does_not_cover(caplog):
    with caplog.at_level(logging.WARNING, logger="models.fingerprint"):
        assert load_bundle(GOLDEN).info["version"] == "864194d272d7097b"
    assert "format-2 bundle" in caplog.text and "not latent.classes" in caplog.text


def test_an_edited_old_bundle_is_refused(tmp_path):
    copy = edited(GOLDEN, tmp_path / "b", set_in("calibration.image", 99.0))
    with pytest.raises(BundleError, match="weights files, model_config or calibration differ"):
        load_bundle(copy)


KEY = b"plant-7-bundle-key"


@pytest.fixture(scope="module")
def signed_bundle(texture_data, tmp_path_factory) -> Path:
    from tiny import TINY_MODEL, TINY_TRAINING

    from models.train import train

    out = tmp_path_factory.mktemp("signed") / "signed"
    train(texture_data, out, TINY_MODEL, TINY_TRAINING, device="cpu", progress=False, key=KEY)
    return out


def test_a_signed_bundle_loads_with_its_key_and_without_one(signed_bundle):
    signature = json.loads((signed_bundle / "bundle.json").read_text())["signature"]
    assert signature.startswith("hmac-sha256:") and len(signature) == len("hmac-sha256:") + 64
    assert load_bundle(signed_bundle, KEY).info["version"] == load_bundle(signed_bundle
                                                                           ).info["version"]


def test_a_key_refuses_an_unsigned_bundle(tiny_bundle):
    with pytest.raises(BundleError, match="is not signed, and KENSA_BUNDLE_KEY is set"):
        load_bundle(tiny_bundle, KEY)


def test_a_key_refuses_an_old_bundle(tmp_path):
    with pytest.raises(BundleError, match="is not signed, and KENSA_BUNDLE_KEY is set"):
        load_bundle(GOLDEN, KEY)


def test_a_key_refuses_a_bundle_signed_with_another_key(signed_bundle):
    with pytest.raises(BundleError, match="is not signed with this KENSA_BUNDLE_KEY"):
        load_bundle(signed_bundle, b"another-plant-key")


def test_a_signed_bundle_edited_and_restamped_without_the_key_is_refused(signed_bundle,
                                                                         tmp_path):
    """Whoever edits a bundle can recompute its digests and version (no secret in them);
    only the key's holder can sign the result."""
    from models.fingerprint import stamp

    def tamper(info: dict) -> None:
        signature = info["signature"]
        info["calibration"]["image"] = 99.0
        info["thresholds"]["image"] = 99.0
        stamp(info)
        info["signature"] = signature

    copy = edited(signed_bundle, tmp_path / "b", tamper)
    assert load_bundle(copy).cal.image == 99.0  # without the key: a new, consistent bundle
    with pytest.raises(BundleError, match="is not signed with this KENSA_BUNDLE_KEY"):
        load_bundle(copy, KEY)
