"""LOSO training on CPU with a small model: folds, files, determinism, resume after kill -9, oracle labelling."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_synthetic_cache
from mertool.cli import main
from mertool.errors import MertoolError
from mertool.recipe import load_recipe
from mertool.training.dataset import augment_pair, make_batches
from mertool.training.runs import FINAL, load_checkpoint, plan_folds
from mertool.training.train import fold_seed, lr_factor, predict_probs, run_fold, split_fold, train_loso

ROOT = Path(__file__).resolve().parents[1]
# Small but complete model (CVA + Swin FPF + AU) at 64 px, for the end-to-end test.
SMALL = ["data.image_size=64", "model.width=0.25", "train.epochs=2", "train.decay_epochs=1",
         "augment.crop_padding=4"]
# The Swin FPF is ~85 % of a small model's step; tests of the fold machinery use the CVA + AU model without it.
FAST = SMALL + ["model.fpf=none"]


def small_recipe(*extra, base=SMALL):
    return load_recipe(ROOT / "recipes" / "casme2.yaml", base + list(extra))


def cli_small(*extra, base=SMALL):
    return [a for s in base + list(extra) for a in ("--set", s)]


# ------------------------------------------------------------------------------------------- augmentation


def test_augment_shares_one_draw_between_onset_and_apex():
    g = torch.Generator().manual_seed(0)
    onset = torch.rand(8, 3, 32, 32, generator=g)
    apex = 0.5 * onset  # a per-pixel linear relation survives the same (linear, zero-filled) warp, not another
    a_on, a_ap = augment_pair(onset, apex, hflip=0.5, crop_padding=4, rotation=3, generator=g)
    assert torch.allclose(a_ap, 0.5 * a_on, atol=1e-6)
    assert not torch.allclose(a_on, onset)


def test_augment_pad_crop_is_an_integer_shift_and_flip_mirrors():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 20, 20, generator=g)
    out, _ = augment_pair(x, x.clone(), hflip=0.0, crop_padding=3, rotation=0.0, generator=g)
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
    shifts = set()
    for i in range(len(x)):
        match = [(dy, dx) for dy in range(7) for dx in range(7)
                 if torch.allclose(out[i], padded[i, :, dy:dy + 20, dx:dx + 20], atol=1e-5)]
        assert match, f"sample {i} is not a pad-and-crop of its input"
        shifts.add(match[0])
    assert len(shifts) > 3  # a draw per sample, not one per batch
    flipped, _ = augment_pair(x, x, hflip=1.0, crop_padding=0, rotation=0.0, generator=g)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)
    same, _ = augment_pair(x, x, hflip=0.0, crop_padding=0, rotation=0.0, generator=g)
    assert same is x


def test_augment_rotation_is_small_and_per_sample():
    g = torch.Generator().manual_seed(2)
    x = torch.zeros(6, 1, 41, 41)
    x[:, :, 20, 30:] = 1.0  # a horizontal bar from the centre to the right edge
    out, _ = augment_pair(x, x, hflip=0.0, crop_padding=0, rotation=3.0, generator=g)
    for i in range(len(x)):
        ys, xs = torch.nonzero(out[i, 0] > 0.25, as_tuple=True)
        slope = np.polyfit((xs - 20).numpy(), (ys - 20).numpy(), 1)[0]
        assert abs(np.degrees(np.arctan(slope))) <= 3.5
    assert len({round(float(out[i].sum()), 3) for i in range(len(x))}) > 1


def test_batches_schedule_and_seeds():
    sizes = [len(b) for b in make_batches(torch.arange(33), 16)]
    assert sizes == [16, 17]  # a lone last sample joins the previous batch (BatchNorm needs two)
    assert [len(b) for b in make_batches(torch.arange(34), 16)] == [16, 16, 2]
    assert [lr_factor(e, 0.5, 2) for e in range(5)] == [1, 0.5, 0.25, 0.25, 0.25]
    assert fold_seed(0, "01") == fold_seed(0, "01") != fold_seed(0, "02") != fold_seed(1, "01")


# ---------------------------------------------------------------------------------------------- folds


def test_fold_split_is_disjoint_and_subjects_without_samples_are_skipped(tmp_path):
    from mertool.cache.store import load_cache
    from mertool.training.dataset import load_dataset

    cache = make_synthetic_cache(tmp_path / "c.h5", subjects=3, per_class=1, size=32)
    c = load_cache(cache)
    c.meta["emotion"][c.subjects == "03"] = "fear"  # subject 03 has nothing of the recipe's classes
    data = load_dataset(c, small_recipe()["data"]["classes"], 32)
    plan = plan_folds(data, c.subjects)
    assert plan.folds == ["01", "02"] and plan.skipped == ["03"]
    for s in plan.folds:
        tr, te = split_fold(data.subjects, s)
        assert set(data.subjects[te]) == {s} and s not in set(data.subjects[tr])
        assert len(tr) + len(te) == len(data)
    with pytest.raises(MertoolError, match="no sample"):
        split_fold(data.subjects, "03")


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_loso_end_to_end_files_checkpoint_and_determinism(tmp_path, synthetic_cache):
    run = tmp_path / "run"
    code = main(["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(run), "--device", "cpu",
                 "--quiet", "--final"] + cli_small())
    assert code == 0
    info = json.loads((run / "run.json").read_text())
    assert info["folds"] == ["01", "02", "03", "04"] and info["skipped_subjects"] == []
    env = json.loads((run / "env.json").read_text())
    assert env["seed"] == 0 and env["device"]["type"] == "cpu" and env["torch"] == torch.__version__
    assert load_recipe(run / "recipe.yaml") == small_recipe()
    for s in info["folds"]:
        fdir = run / "folds" / s
        fold = json.loads((fdir / "fold.json").read_text())
        assert s not in fold["train_subjects"] and fold["n_test"] == 10 and fold["n_train"] == 30
        log = [json.loads(line) for line in (fdir / "log.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in log] == [1, 2] and {"loss", "lr", "seconds", "train_acc"} <= set(log[0])
        assert log[1]["lr"] < log[0]["lr"]
        rows = (fdir / "predictions.csv").read_text().splitlines()
        assert rows[0].startswith("sample_id,subject,true,predicted,p_happiness")
        assert len(rows) == 11 and all(r.split(",")[1] == s for r in rows[1:])
        assert not (fdir / "predictions_best_on_test.csv").exists()
        assert not list(fdir.glob("*.tmp"))

    # the fold checkpoint reproduces the fold's predictions
    model, ckpt = load_checkpoint(run / "folds" / "02" / "checkpoint.pt")
    assert ckpt["classes"] == info["classes"] and ckpt["uses_aus"] is True and ckpt["image_size"] == 64
    from mertool.training.dataset import load_dataset
    data = load_dataset(synthetic_cache, ckpt["recipe"]["data"]["classes"], 64)
    idx = torch.as_tensor(np.flatnonzero(data.subjects == "02"))
    probs = predict_probs(model, data, idx).numpy()
    saved = np.loadtxt(run / "folds" / "02" / "predictions.csv", delimiter=",", skiprows=1, usecols=range(4, 9))
    assert np.allclose(probs, saved, atol=2e-6)
    final_model, final_ckpt = load_checkpoint(run)  # a run folder resolves to final/model.pt
    assert (run / "final" / "model.pt").is_file() and final_ckpt["recipe"]["train"]["epochs"] == 2

    # same seed -> identical predictions; a re-run of a finished run trains nothing
    run2 = tmp_path / "run2"
    assert main(["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(run2), "--device", "cpu",
                 "--quiet", "--subjects", "03"] + cli_small()) == 0
    assert (run2 / "folds/03/predictions.csv").read_bytes() == (run / "folds/03/predictions.csv").read_bytes()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert main(["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(run), "--device", "cpu",
                 "--quiet", "--final"] + cli_small()) == 0
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.suffix != ".png"} == \
        {p: t for p, t in before.items() if p.suffix != ".png"}


@pytest.mark.slow
def test_resume_after_kill_mid_fold(tmp_path, synthetic_cache):
    run = tmp_path / "run"
    args = ["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(run), "--device", "cpu",
            "--quiet"] + cli_small("train.epochs=20", base=FAST)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from mertool.cli import main; "
                             "sys.exit(main(sys.argv[1:]))"] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    first, second = run / "folds/01/predictions.csv", run / "folds/02/log.jsonl"
    deadline = time.time() + 240
    try:
        while not (first.exists() and second.exists()):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "training did not reach the second fold"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (run / "folds/02/predictions.csv").exists(), "fold 02 finished before the kill; test inconclusive"
    done = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (run / "folds/01").iterdir()}
    # a partial run is refused by evaluate, naming the missing folds
    with pytest.raises(MertoolError, match=r"3 of 4 folds .*: 02, 03, 04"):
        from mertool.reports.evaluate import evaluate_run
        evaluate_run(run)
    (run / "folds/02/predictions_best_on_test.csv").write_text("left by an earlier attempt\n")
    assert main(args) == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (run / "folds/01").iterdir()} == done
    assert not (run / "folds/02/predictions_best_on_test.csv").exists()  # the unfinished attempt's files are gone
    for s in ("01", "02", "03", "04"):
        assert (run / "folds" / s / "predictions.csv").is_file()
        assert len((run / "folds" / s / "log.jsonl").read_text().splitlines()) == 20
    assert not list(run.rglob("*.tmp"))


@pytest.mark.slow
def test_best_on_test_selection_is_recorded_apart_and_labelled(tmp_path, synthetic_cache, capsys):
    run = tmp_path / "run"
    r = small_recipe("train.epochs=3", base=FAST)
    from rich.console import Console
    console = Console(file=open(os.devnull, "w"))
    train_loso(r, synthetic_cache, run, subjects="01,02", device="cpu", select="best-on-test", console=console,
               progress=False)
    train_loso(r, synthetic_cache, run, subjects="03,04", device="cpu", select="oracle", console=console,
               progress=False)  # a second shard fills the same run folder; the old spelling means the same
    from mertool.reports.evaluate import evaluate_run, read_predictions
    label = "best epoch chosen on the test subject"
    rep = evaluate_run(run)
    assert rep["best_on_test"]["label"] == label
    assert rep["au_source"]["text"] == "reads the test clips' hand-coded AUs (as the paper)"
    classes = rep["classes"]
    for s in ("01", "02", "03", "04"):
        fdir = run / "folds" / s
        log = [json.loads(line) for line in (fdir / "log.jsonl").read_text().splitlines()]
        best = max(range(3), key=lambda i: (log[i]["best_on_test_acc"], -i))
        fold = json.loads((fdir / "fold.json").read_text())
        assert fold["best_on_test"] == {"epoch": best + 1, "accuracy": log[best]["best_on_test_acc"], "label": label}
        assert (fdir / "predictions_best_on_test.csv").is_file()
        last = read_predictions(fdir / "predictions.csv", classes)
        assert np.mean(last["true"] == last["pred"]) == fold["accuracy_last_epoch"]  # main figure = last epoch
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "BEST EPOCH CHOSEN ON THE TEST" in out and "last epoch of a fixed schedule" in out  # the title may wrap
    assert "oracle" not in out.lower().replace("(as the paper)", "")
    assert "AU input: reads the test clips' hand-coded AUs (as the paper)" in out
    assert main(["evaluate", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"][0]["best_on_test"]["label"] == label
    assert report["runs"][0]["metrics"]["accuracy"] == rep["metrics"]["accuracy"]


def test_run_fold_without_folder_and_final_mode(synthetic_cache):
    from mertool.training.dataset import load_dataset
    r = small_recipe("train.epochs=1", base=FAST)
    data = load_dataset(synthetic_cache, r["data"]["classes"], 64)
    res = run_fold(data, r, None, None, device="cpu")
    assert res.subject == FINAL and res.n_train == len(data) and res.n_test == 0 and res.accuracy is None


def test_cli_errors_are_one_line(tmp_path, synthetic_cache, capsys):
    base = ["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(tmp_path / "r"), "--device",
            "cpu", "--quiet"]
    assert main(base + ["--set", "train.epoch=1"]) == 2
    assert "unknown key train.epoch" in capsys.readouterr().err
    assert main(base + ["--set", "data.classes={a: [happiness], b: [fear]}"]) == 2
    assert "b (matches 'fear'): no sample in cache" in capsys.readouterr().err
    assert main(base + ["--subjects", "07"] + cli_small(base=FAST)) == 2
    assert "--subjects 07: no such subject" in capsys.readouterr().err
    assert main(["train-loso", "casme2", "--cache", str(tmp_path / "none.h5")]) == 2
    assert "no such cache file" in capsys.readouterr().err
    not_ckpt = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(2)}, not_ckpt)
    with pytest.raises(MertoolError, match="not a mertool checkpoint"):
        load_checkpoint(not_ckpt)
    (tmp_path / "y.pt").write_bytes(b"garbage")
    with pytest.raises(MertoolError, match="not a mertool checkpoint"):
        load_checkpoint(tmp_path / "y.pt")


@pytest.mark.slow
def test_resume_refuses_a_different_recipe(tmp_path, synthetic_cache, capsys):
    base = ["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(tmp_path / "r"), "--device",
            "cpu", "--quiet", "--subjects", "01"]
    assert main(base + cli_small("train.epochs=1", base=FAST)) == 0
    assert main(base + cli_small("train.epochs=1", "train.seed=3", base=FAST)) == 2
    assert "different recipe (train.seed: 0 != 3)" in capsys.readouterr().err
