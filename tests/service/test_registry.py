"""The models root on disk (service.registry) and `kensa models`, on real folders and real
bundles (the golden bundle and a re-weighted copy of it)."""

from __future__ import annotations

import json
import shutil

import pytest
from models_root_helpers import golden_version, make_root, reweighted_version

from service.cli import main
from service.errors import Conflict, NotFound
from service.registry import ModelsRoot, ModelsRootError, is_part_folder, publish


@pytest.fixture
def root(tmp_path):
    a, b = make_root(tmp_path / "models")
    return ModelsRoot(tmp_path / "models"), a, b


def test_only_complete_versions_are_listed(root):
    models, a, b = root
    part = models.path / "washer"
    shutil.copytree(part / a, part / ".incoming-1234")  # being written
    (part / "empty").mkdir()  # no bundle.json
    shutil.copytree(part / a, part / "renamed")  # bundle.json names another version
    (part / "broken").mkdir()
    (part / "broken" / "bundle.json").write_text("{not json")
    assert [v.name for v in models.versions("washer")] == [a, b]
    assert models.parts() == ["washer"]


def test_a_version_that_is_not_its_folder_name_or_half_written_is_refused(root):
    models, a, _ = root
    part = models.path / "washer"
    shutil.copytree(part / a, part / "renamed")
    with pytest.raises(Conflict, match="holds bundle version '864194d272d7097b', not 'renamed'"):
        models.verify("washer", "renamed")
    shutil.copytree(part / a, part / ".incoming-1234")
    with pytest.raises(NotFound, match="has no version '.incoming-1234'"):
        models.verify("washer", ".incoming-1234")


def test_a_version_missing_a_file_is_a_conflict_with_the_reason(root):
    models, _, b = root
    (models.path / "washer" / b / "vae.safetensors").unlink()
    with pytest.raises(Conflict, match=r"is not a valid bundle: .* vae.safetensors is missing"):
        models.verify("washer", b)


def test_unknown_part_and_version_name_the_known_ones(root):
    models, a, b = root
    with pytest.raises(NotFound, match="no model part 'bolt' .*; known parts: washer"):
        models.versions("bolt")
    with pytest.raises(NotFound, match=f"its versions: {a}, {b}"):
        models.verify("washer", "0000")


def test_activation_replaces_the_pointer_and_rollback_returns_to_the_one_before(root):
    models, a, b = root
    assert (models.active("washer"), models.previous("washer")) == (a, None)
    models.set_active("washer", b)
    assert (models.path / "washer" / "active").read_text() == f"{b}\n"
    assert (models.active("washer"), models.previous("washer")) == (b, a)
    models.set_active("washer", a)  # a rollback is activating the previous one
    assert (models.active("washer"), models.previous("washer")) == (a, b)
    assert models.history("washer") == [a, b, a]
    assert not [p for p in (models.path / "washer").iterdir() if ".tmp-" in p.name]


def test_prune_keeps_the_newest_the_active_and_the_rollback_target(root):
    models, a, b = root
    part = models.path / "washer"
    c = reweighted_version(part, 0.3)
    d = reweighted_version(part, 0.2)
    models.set_active("washer", b)  # active b, previous a: both spared
    assert sorted(models.prune("washer", keep=1)) == [c]
    assert [v.name for v in models.versions("washer")] == [a, b, d]
    assert not [p for p in part.iterdir() if p.name.startswith(".incoming")]


def test_publish_never_overwrites_a_version(tmp_path):
    part = tmp_path / "washer"
    part.mkdir()
    a = golden_version(part)
    staged = part / ".incoming-x"
    shutil.copytree(part / a, staged)
    with pytest.raises(Exception, match=f"version {a} already exists"):
        publish(staged)
    assert not staged.exists() and (part / a / "bundle.json").is_file()


def test_a_missing_root_names_itself(tmp_path):
    with pytest.raises(ModelsRootError, match=f"KENSA_MODELS_DIR {tmp_path / 'nope'} is not a "
                                              "folder"):
        ModelsRoot(tmp_path / "nope").check()


def test_train_writes_a_version_under_a_models_root_part_and_a_bundle_elsewhere(root, tmp_path):
    models, _, _ = root
    assert is_part_folder(models.path / "washer", None)  # holds versions
    assert is_part_folder(tmp_path / "elsewhere" / "new", tmp_path / "elsewhere")  # parent
    assert not is_part_folder(tmp_path / "bundle", None)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "bundle.json").write_text(json.dumps({"version": "x"}))
    assert not is_part_folder(tmp_path / "bundle", None)  # a plain bundle is rewritten


def test_kensa_models_list_activate_rollback_prune(root, capsys):
    models, a, b = root
    base = ["models", "--models-dir", str(models.path)]
    assert main([*base, "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "washer" and out[1].startswith(f"  * {a}") and out[2].startswith(f"    {b}")
    assert main([*base, "activate", "washer", b]) == 0
    assert models.active("washer") == b
    assert main([*base, "rollback", "washer"]) == 0
    assert models.active("washer") == a
    assert capsys.readouterr().out.splitlines()[-1] == f"{a} is the active version of washer"
    assert main([*base, "activate", "washer", "nope"]) == 2
    assert "has no version 'nope'" in capsys.readouterr().err
    assert main([*base, "prune", "washer", "--keep", "1"]) == 0  # a active, b previous
    assert capsys.readouterr().out.strip() == "deleted 0 version(s) of washer: none"


def test_a_trained_version_appears_complete_and_the_first_becomes_active(tmp_path, capsys):
    """cmd_train's publishing step, with the golden bundle standing in for the training run
    (it writes into the hidden folder it is given, as models.train.train does)."""
    import argparse

    from golden_cases import GOLDEN

    from service.cli import train_version

    def run(staged):
        assert staged.name.startswith(".incoming-")
        shutil.copytree(GOLDEN / "bundle", staged)
        return {"evaluation": {}}

    part = tmp_path / "models" / "washer"
    written, _ = train_version(argparse.Namespace(out=part), run)
    models = ModelsRoot(tmp_path / "models")
    assert written == part / "864194d272d7097b" and models.active("washer") == written.name
    assert capsys.readouterr().out.strip() == (
        "version 864194d272d7097b is the active version of washer")
    with pytest.raises(Exception, match="already exists"):  # the same bundle again
        train_version(argparse.Namespace(out=part), run)
    assert sorted(p.name for p in part.iterdir()) == ["864194d272d7097b", "active", "history"]
