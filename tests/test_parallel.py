"""Folds in parallel worker processes: the same run folder content as a sequential run, resumable, clear errors."""
from pathlib import Path

import pytest
import torch

from mertool.errors import MertoolError
from mertool.recipe import load_recipe
from mertool.training.parallel import parse_devices, plan_slots, train_loso_parallel, train_runs_parallel
from mertool.training.train import train_loso

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["data.image_size=64", "model.width=0.25", "train.epochs=2", "train.decay_epochs=1",
         "augment.crop_padding=4"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_recipe():
    return load_recipe(ROOT / "recipes" / "casme2.yaml", SMALL)


def fold_files(run: Path, name: str) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in sorted((run / "folds").glob(f"*/{name}"))}


def test_devices_and_slots():
    assert parse_devices("cpu") == [torch.device("cpu")]
    assert parse_devices("cpu, cpu") == [torch.device("cpu")] * 2
    for bad in ("", "cpu,,cpu", "tpu:0"):
        with pytest.raises(MertoolError, match="--device"):
            parse_devices(bad)
    if not torch.cuda.is_available():
        with pytest.raises(MertoolError, match="CUDA is not available"):
            parse_devices("cuda:0,cuda:1")
    slots = plan_slots([torch.device("cuda", 0), torch.device("cuda", 1)], 3, threads=2)
    assert [s.device for s in slots] == ["cuda:0", "cuda:1"] * 3  # interleaved: fewer folds still use both
    assert [s.index for s in slots] == list(range(6)) and {s.threads for s in slots} == {2}
    assert {s.threads for s in plan_slots([torch.device("cpu")], 64)} == {1}
    for bad in (0, -1, 1.5, True):
        with pytest.raises(MertoolError, match="--folds-per-device"):
            plan_slots([torch.device("cpu")], bad)


@pytest.mark.slow
def test_parallel_folds_equal_sequential_and_resume(tmp_path, synthetic_cache):
    recipe = small_recipe()
    assert torch.get_num_threads() == 1  # the workers' thread count: CPU reductions depend on it at the 1e-5 level
    seq = train_loso(recipe, synthetic_cache, tmp_path / "seq", progress=False)
    par = train_loso_parallel(recipe, synthetic_cache, tmp_path / "par", devices="cpu", folds_per_device=2,
                              threads=1, final=True, progress=False)
    expected = fold_files(tmp_path / "seq", "predictions.csv")
    assert sorted(expected) == ["01", "02", "03", "04"]
    assert fold_files(tmp_path / "par", "predictions.csv") == expected  # byte for byte
    for f in ("recipe.yaml", "run.json"):
        assert (tmp_path / "par" / f).read_text() == (tmp_path / "seq" / f).read_text()
    assert (tmp_path / "par" / "final" / "model.pt").is_file()
    assert par["metrics"] == seq["metrics"]
    # Resume: nothing left to train, nothing rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "par").rglob("*") if p.is_file()}
    train_loso_parallel(recipe, synthetic_cache, tmp_path / "par", devices="cpu,cpu", threads=1, final=True,
                        progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.slow
def test_parallel_resumes_a_partial_run_and_shards(tmp_path, synthetic_cache):
    recipe = small_recipe()
    run = tmp_path / "run"
    train_loso_parallel(recipe, synthetic_cache, run, subjects="02", devices="cpu", threads=1, progress=False)
    assert sorted(fold_files(run, "predictions.csv")) == ["02"]
    first = (run / "folds" / "02" / "predictions.csv").stat().st_mtime_ns
    report = train_loso_parallel(recipe, synthetic_cache, run, devices="cpu", folds_per_device=2, threads=1,
                                 progress=False)
    assert sorted(fold_files(run, "predictions.csv")) == ["01", "02", "03", "04"]
    assert (run / "folds" / "02" / "predictions.csv").stat().st_mtime_ns == first
    assert not report["missing"]


def test_parallel_refuses_what_train_loso_refuses(tmp_path, synthetic_cache):
    recipe = small_recipe()
    with pytest.raises(MertoolError, match="--subjects 99"):
        train_loso_parallel(recipe, synthetic_cache, tmp_path / "r", subjects="99", devices="cpu",
                            folds_per_device=2, progress=False)
    with pytest.raises(MertoolError, match="--select"):
        train_loso_parallel(recipe, synthetic_cache, tmp_path / "r", select="best", devices="cpu",
                            folds_per_device=2, progress=False)


@pytest.mark.slow
def test_a_failing_worker_stops_the_run_with_a_clear_error(tmp_path, synthetic_cache):
    recipe = load_recipe(ROOT / "recipes" / "casme2.yaml", SMALL + [f"model.pretrained={tmp_path / 'none.pt'}"])
    with pytest.raises(MertoolError, match=r"worker \d \(cpu\), fold 0\d: .*none.pt: pretrained file not found"):
        train_loso_parallel(recipe, synthetic_cache, tmp_path / "r", devices="cpu", folds_per_device=2, threads=1,
                            progress=False)
    assert not list((tmp_path / "r" / "folds").glob("*/predictions.csv"))


@pytest.mark.slow
def test_several_runs_share_one_pool_and_equal_their_own_runs(tmp_path, synthetic_cache, capsys):
    oracle = small_recipe()
    none = load_recipe(ROOT / "recipes" / "casme2.yaml", SMALL + ["model.aus=none"])
    runs = [(oracle, tmp_path / "pool" / "oracle", True), (none, tmp_path / "pool" / "none", False)]
    reports = train_runs_parallel(runs, synthetic_cache, subjects="01,03", devices="cpu", folds_per_device=2,
                                  threads=1, progress=False)
    out = capsys.readouterr().out
    assert "5 trainings on 2 workers" in out  # two folds of each run and the final model, in one pool
    for recipe, run, final in runs:
        alone = train_loso(recipe, synthetic_cache, tmp_path / "alone" / run.name, subjects="01,03", final=final,
                           progress=False)
        expected = fold_files(tmp_path / "alone" / run.name, "predictions.csv")
        assert sorted(expected) == ["01", "03"]
        assert fold_files(run, "predictions.csv") == expected  # byte for byte
        assert (run / "recipe.yaml").read_text() == (tmp_path / "alone" / run.name / "recipe.yaml").read_text()
    assert (tmp_path / "pool" / "oracle" / "final" / "model.pt").is_file()
    assert not (tmp_path / "pool" / "none" / "final").exists()
    assert [sorted(r["missing"]) for r in reports] == [["02", "04"]] * 2  # each run's own summary, in order
    # resumed: what is done is skipped, per run
    train_runs_parallel(runs, synthetic_cache, subjects="01,03", devices="cpu", folds_per_device=2, threads=1,
                        progress=False)
    assert "0 trainings" in capsys.readouterr().out


@pytest.mark.slow
def test_a_failing_worker_in_a_pool_names_its_run(tmp_path, synthetic_cache):
    bad = load_recipe(ROOT / "recipes" / "casme2.yaml", SMALL + [f"model.pretrained={tmp_path / 'none.pt'}"])
    runs = [(small_recipe(), tmp_path / "good", False), (bad, tmp_path / "bad", False)]
    with pytest.raises(MertoolError, match=r"worker \d \(cpu\), bad fold 0\d: .*none.pt: pretrained file not found"):
        train_runs_parallel(runs, synthetic_cache, subjects="02", devices="cpu", folds_per_device=2, threads=1,
                            progress=False)
    assert not list((tmp_path / "bad" / "folds").glob("*/predictions.csv"))
