"""Operator labels in training: the labels file or folder, and rows matched to image files."""

from models.data import open_dataset
from models.labels import labels_file, match_labels


def test_labels_folder_means_its_labels_csv_and_an_empty_folder_means_none(tmp_path, caplog):
    assert labels_file(None) is None
    assert labels_file(tmp_path / "mine.csv") == tmp_path / "mine.csv"  # a file stays a file
    with caplog.at_level("WARNING"):
        assert labels_file(tmp_path) is None  # the trainer's first run, before any label
    assert f"no labels.csv in {tmp_path} yet" in caplog.text
    (tmp_path / "labels.csv").write_text("path,label\nimages/a.png,good\n")
    assert labels_file(tmp_path) == tmp_path / "labels.csv"


def test_label_rows_may_name_images_beside_the_labels_file(texture_data, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.png").write_bytes(
        (texture_data / "test" / "pit" / "000.png").read_bytes())
    ds = open_dataset(texture_data)
    rows = match_labels({"images/x.png": "pit", "test/good/000.png": "good",
                         "images/missing.png": "pit"}, ds, tmp_path)
    assert [(str(it.path), lab) for it, lab in rows] == [
        (str(tmp_path / "images" / "x.png"), "pit"),
        (str(texture_data / "test" / "good" / "000.png"), "good")]


def test_a_label_row_naming_an_outside_file_is_not_taken_for_a_dataset_namesake(texture_data,
                                                                             tmp_path):
    # train/good/000.png exists in the dataset; so does this other 000.png outside it
    (tmp_path / "new").mkdir()
    outside = tmp_path / "new" / "000.png"
    outside.write_bytes((texture_data / "test" / "pit" / "001.png").read_bytes())
    ds = open_dataset(texture_data)
    [(it, lab)] = match_labels({str(outside): "good"}, ds, tmp_path)
    assert (it.path, lab) == (outside, "good")
    # a bare name still finds the dataset file when it is unique there and nowhere else
    [(it, _)] = match_labels({"007.png": "good"}, ds, tmp_path)
    assert it.path == texture_data / "train" / "good" / "007.png"
