"""The short form `mertool train-loso --subjects all`: the one cache in the current folder and its dataset's recipe."""
import h5py
import pytest

from conftest import make_synthetic_cache
from mertool.cli import main
from mertool.errors import MertoolError
from mertool.training.discover import resolve_short_form

SMALL = ["data.image_size=64", "model.width=0.25", "model.fpf=none", "train.epochs=1", "augment.crop_padding=4"]


@pytest.mark.slow
def test_short_form_uses_the_one_cache_and_its_datasets_recipe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_synthetic_cache(tmp_path / "casme2.h5", subjects=3, per_class=1, dataset="casme2")
    with h5py.File(tmp_path / "other.h5", "w") as f:  # someone else's HDF5 file is not a candidate
        f["x"] = [1]
    sets = [a for s in SMALL for a in ("--set", s)]
    assert main(["train-loso", "--subjects", "01", "--device", "cpu", "--quiet"] + sets) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("using cache casme2.h5 (the only mertool cache in") and "recipe casme2" in first
    assert (tmp_path / "runs" / "casme2-seed0" / "folds" / "01" / "predictions.csv").is_file()


def test_no_or_several_caches_are_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train-loso", "--subjects", "all"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "0 mertool caches" in err and "--cache FILE" in err
    make_synthetic_cache(tmp_path / "a.h5", subjects=2, per_class=1, dataset="casme2")
    make_synthetic_cache(tmp_path / "b.h5", subjects=2, per_class=1, dataset="samm",
                         emotions=("anger", "contempt", "happiness", "surprise", "other"))
    with pytest.raises(MertoolError, match=r"2 mertool caches .*found: a\.h5 \(casme2\), b\.h5 \(samm\)"):
        resolve_short_form(None, None, tmp_path)
    # given explicitly, either works; a given recipe keeps its name
    assert resolve_short_form(None, tmp_path / "b.h5")[:2] == ("samm", tmp_path / "b.h5")
    assert resolve_short_form("demo", tmp_path / "a.h5") == ("demo", tmp_path / "a.h5", None)


def test_dataset_without_a_recipe_is_an_error(tmp_path):
    make_synthetic_cache(tmp_path / "x.h5", subjects=2, per_class=1, dataset="mystery")
    with pytest.raises(MertoolError, match="dataset 'mystery', which has no recipe of that name"):
        resolve_short_form(None, None, tmp_path)
