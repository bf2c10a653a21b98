"""Review fixes around the fold loop: diverged folds, the CUDA device set first, CPU threads from the affinity mask,
models released between folds, subject spellings, padded evaluation chunks, the time-slicing warning."""
import gc
import json
import weakref
from pathlib import Path

import pytest
import torch

import mertool.training.train as train
from mertool.cli import main
from mertool.errors import MertoolError
from mertool.recipe import load_recipe
from mertool.training import parallel
from mertool.training.dataset import load_dataset
from mertool.training.runs import LosoPlan, select_subjects

ROOT = Path(__file__).resolve().parents[1]
FAST = ["data.image_size=64", "model.width=0.25", "model.fpf=none", "train.epochs=2", "train.decay_epochs=1",
        "augment.crop_padding=4"]


def fast_recipe(*extra):
    return load_recipe(ROOT / "recipes" / "casme2.yaml", FAST + list(extra))


def sets(*extra):
    return [a for s in FAST + list(extra) for a in ("--set", s)]


# --------------------------------------------------------------------------------------------- diverged folds

@pytest.mark.slow
def test_a_diverged_fold_is_a_one_line_error_with_no_predictions(tmp_path, synthetic_cache, capsys):
    out = tmp_path / "r"
    argv = ["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(out), "--device", "cpu",
            "--quiet", "--subjects", "01,02"] + sets("train.lr=1e6")
    assert main(argv) == 2
    stdout, stderr = capsys.readouterr()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("error: fold")]
    assert [ln.split(":")[1].strip() for ln in lines] == ["fold 01", "fold 02"]
    for ln in lines:
        assert "training diverged at epoch" in ln and "train.lr = 1e+06" in ln and "train.gamma" in ln
        assert "--set train.lr=0.0008" in ln  # a sensible rate (the paper's), not a tenth of 1e6
    assert stderr.strip().startswith("error: 2 folds diverged") and len(stderr.strip().splitlines()) == 1
    assert not list(out.glob("folds/*/predictions.csv")) and not list(out.glob("folds/*/checkpoint.pt"))


@pytest.mark.slow
def test_other_folds_still_run_when_one_diverges(tmp_path, synthetic_cache, monkeypatch):
    original = train.run_fold

    def run_fold(data, recipe, subject, *args, **kwargs):
        if subject == "02":
            recipe = {**recipe, "train": {**recipe["train"], "lr": 1e6}}
        return original(data, recipe, subject, *args, **kwargs)

    monkeypatch.setattr(train, "run_fold", run_fold)
    out = tmp_path / "r"
    with pytest.raises(MertoolError, match=r"1 fold diverged and have no predictions: 02"):
        train.train_loso(fast_recipe(), synthetic_cache, out, subjects="01,02,03", device="cpu", progress=False)
    assert sorted(p.parent.name for p in out.glob("folds/*/predictions.csv")) == ["01", "03"]


@pytest.mark.slow
def test_parallel_workers_report_diverged_folds_and_go_on(tmp_path, synthetic_cache, capsys):
    out = tmp_path / "r"
    argv = ["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(out), "--devices", "cpu",
            "--folds-per-device", "2", "--quiet", "--subjects", "01,02,03"] + sets("train.lr=1e6")
    assert main(argv) == 2
    stdout, stderr = capsys.readouterr()
    assert sorted(ln.split(":")[1].strip() for ln in stdout.splitlines() if ln.startswith("error: fold")) == \
        ["fold 01", "fold 02", "fold 03"]  # each worker went on to its next fold
    assert "3 folds diverged" in stderr
    assert not list(out.glob("folds/*/predictions.csv"))


def test_the_epoch_log_is_written_after_the_first_and_last_epoch_not_every_one(tmp_path, synthetic_cache,
                                                                               monkeypatch):
    # rewriting the whole log every epoch cost O(epochs^2): ~10 % of an 800-epoch STSTNet fold
    writes = []
    write_log = train.runs.write_log
    monkeypatch.setattr(train.runs, "write_log", lambda d, log: (writes.append(len(log)), write_log(d, log)))
    monkeypatch.setattr(train, "LOG_EVERY_S", 1e9)
    recipe = fast_recipe("train.epochs=4", "data.image_size=32")
    data = load_dataset(synthetic_cache, recipe["data"]["classes"], 32)
    fdir = tmp_path / "fold"
    train.run_fold(data, recipe, "01", fdir, device="cpu")
    assert writes == [1, 4]
    assert [json.loads(line)["epoch"] for line in (fdir / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    writes.clear()
    monkeypatch.setattr(train, "LOG_EVERY_S", 0.0)  # a slow fold: every epoch, as before
    train.run_fold(data, recipe, "01", tmp_path / "fold2", device="cpu")
    assert writes == [1, 2, 3, 4]


def test_a_diverged_fold_keeps_the_log_of_the_epochs_before(tmp_path, synthetic_cache, monkeypatch):
    monkeypatch.setattr(train, "LOG_EVERY_S", 1e9)
    epoch = train._train_epoch
    calls = []

    def nan_at_third(*args):  # the third epoch's loss is NaN
        calls.append(1)
        loss, correct, au = epoch(*args)
        return (loss * float("nan") if len(calls) == 3 else loss), correct, au

    monkeypatch.setattr(train, "_train_epoch", nan_at_third)
    recipe = fast_recipe("train.epochs=5", "data.image_size=32")
    data = load_dataset(synthetic_cache, recipe["data"]["classes"], 32)
    with pytest.raises(train.FoldDiverged, match="epoch 3 of 5"):
        train.run_fold(data, recipe, "01", tmp_path / "fold", device="cpu")
    assert [json.loads(line)["epoch"] for line in (tmp_path / "fold/log.jsonl").read_text().splitlines()] == [1, 2]


# ---------------------------------------------------------------------------------------------------- devices

class _Stop(Exception):
    pass


def test_the_cuda_device_is_set_before_anything_touches_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", str(d))))
    benchmark = torch.backends.cudnn.benchmark
    try:
        train.setup_device(torch.device("cuda", 1))
        assert calls == [("set_device", "cuda:1")] and torch.backends.cudnn.benchmark
        monkeypatch.setenv("MERTOOL_CUDNN_BENCHMARK", "0")
        train.setup_device(torch.device("cuda", 1))
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = benchmark

    def open_run(*args, **kwargs):  # the first step that loads data and records the device
        calls.append(("open_run",))
        raise _Stop

    calls.clear()
    monkeypatch.setattr(train, "open_run", open_run)
    try:
        with pytest.raises(_Stop):
            train.train_loso(fast_recipe(), tmp_path / "none.h5", tmp_path / "r", device="cuda:1", progress=False)
    finally:
        torch.backends.cudnn.benchmark = benchmark
    assert calls == [("set_device", "cuda:1"), ("open_run",)]


def test_worker_threads_come_from_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 64)
    assert parallel.usable_cpus() == 4
    slots = parallel.plan_slots([torch.device("cpu")], 2)
    assert [s.threads for s in slots] == [2, 2]


def test_time_slicing_warning_only_for_k_above_1_on_cuda_without_mps(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert parallel.time_slicing_warning([cpu], 4) is None
    assert parallel.time_slicing_warning([cuda], 1) is None
    msg = parallel.time_slicing_warning([cuda], 4)
    assert msg.startswith("warning: --folds-per-device 4 on CUDA without NVIDIA MPS") and "time-slices" in msg
    assert "bench --loso --folds-per-device 4" in msg
    (tmp_path / "control").touch()  # an MPS daemon's pipe
    assert parallel.time_slicing_warning([cuda], 4) is None


# ------------------------------------------------------------------------------------------- memory, subjects

@pytest.mark.slow
def test_the_previous_folds_model_is_released_before_the_next_fold(tmp_path, synthetic_cache, monkeypatch):
    original, models, alive_at_start = train.run_fold, [], []

    def run_fold(*args, **kwargs):
        gc.collect()  # only what is still referenced survives
        alive_at_start.append([ref() is not None for ref in models])
        result = original(*args, **kwargs)
        models.append(weakref.ref(result.model))
        return result

    monkeypatch.setattr(train, "run_fold", run_fold)
    train.train_loso(fast_recipe("train.epochs=1"), synthetic_cache, tmp_path / "r", subjects="01,02,03",
                     device="cpu", progress=False)
    assert alive_at_start == [[], [False], [False, False]]


def test_subjects_accept_a_datasets_folder_spelling():
    casme2 = LosoPlan(["01", "02", "10"], ["03"], {})
    assert select_subjects(casme2, "sub01,sub10") == ["01", "10"]
    assert select_subjects(casme2, "02") == ["02"]
    with pytest.raises(MertoolError, match="--subjects sub03: this subject has no sample"):
        select_subjects(casme2, "sub03")
    with pytest.raises(MertoolError, match="--subjects sub99: no such subject; the cache has 01, 02, 10"):
        select_subjects(casme2, "sub99")
    samm = LosoPlan(["006", "007", "011"], [], {})
    assert select_subjects(samm, "6,011") == ["006", "011"]
    with pytest.raises(MertoolError, match="no such subject"):
        select_subjects(samm, "x6")
    merged = LosoPlan(["casme2_01", "samm_006"], [], {})
    assert select_subjects(merged, "casme2_sub01,samm_6") == ["casme2_01", "samm_006"]
    with pytest.raises(MertoolError, match=r"--subjects sub1: matches several subjects \(1, 01\)"):
        select_subjects(LosoPlan(["1", "01"], [], {}), "sub1")


# ------------------------------------------------------------------------------------------------ evaluation

def test_evaluation_chunks_are_padded_to_one_size(synthetic_cache):
    from mertool.models import build_model

    recipe = fast_recipe()
    data = load_dataset(synthetic_cache, recipe["data"]["classes"], 64)
    torch.manual_seed(0)
    model = build_model(recipe["model"]).eval()
    shapes = []
    model.register_forward_pre_hook(lambda m, args: shapes.append(args[0].shape[0]))
    idx = torch.arange(11)
    plain = train.predict_probs(model, data, idx, batch_size=4, pad=False)
    assert shapes == [4, 4, 3]
    shapes.clear()
    padded = train.predict_probs(model, data, idx, batch_size=4, pad=True)
    assert shapes == [4, 4, 4] and padded.shape == (11, 5)
    assert torch.allclose(padded, plain, atol=1e-5)  # eval-mode BatchNorm: batch-mates change nothing
