"""--executor slurm (mertool/cluster.py) with submitit's DebugExecutor: chunking, retries, no re-runs, --dry-run.
The real one-node Slurm test is tests/test_slurm.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mertool import files, runs
from mertool.cli import main
from mertool.errors import MertoolError

submitit = pytest.importorskip("submitit", reason="submitit not installed (pip install -e '.[slurm]')")

from mertool.cluster import FoldChunk, RunSpec, SlurmOptions, run_on_slurm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class FakeTraining:
    """Stands in for train_loso_parallel inside the jobs: records each call, writes valid predictions per fold,
    and dies (raises) at a fold of `dies` the first n times it is reached (its job tries it alone once more)."""

    def __init__(self):
        self.calls, self.trained = [], []
        self.dies, self.die_always = {}, set()

    def __call__(self, recipe, cache, out, *, subjects, final=False, **kw):
        self.calls.append((str(out), list(subjects), final))
        info = runs.read_run_info(Path(out))
        classes = info["classes"]
        for s in subjects:
            if s in self.die_always or self.dies.get(s, 0) > 0:
                self.dies[s] = self.dies.get(s, 0) - 1
                raise RuntimeError(f"fold {s}: simulated crash")
            fdir = runs.fold_path(out, info["fold_dirs"][s])
            fdir.mkdir(parents=True, exist_ok=True)
            probs = np.eye(len(classes))[:2]
            runs.write_predictions(fdir / runs.PREDICTIONS, [f"{s}_a", f"{s}_b"], [s, s], [0, 1], probs, classes)
            self.trained.append((Path(out).name, s))
        if final:
            runs.final_path(out).mkdir(parents=True, exist_ok=True)
            files.write_bytes(runs.final_path(out) / runs.FINAL_MODEL, b"model")


@pytest.fixture
def fake(monkeypatch):
    f = FakeTraining()
    monkeypatch.setattr("mertool.parallel.train_loso_parallel", f)
    return f


def recipe():
    from mertool.recipe import load_recipe

    return load_recipe(ROOT / "recipes" / "casme2.yaml", ["data.image_size=64", "model.width=0.25"])


def options(tmp_path, **kw):
    return SlurmOptions(executor=submitit.DebugExecutor(tmp_path / "logs"), poll_s=0.01, **kw)


def console():
    from rich.console import Console

    return Console(markup=False, width=200)


def test_folds_are_chunked_into_one_array(tmp_path, synthetic_cache, fake):
    spec = RunSpec(recipe(), str(synthetic_cache), str(tmp_path / "run"), final=True)
    summary = run_on_slurm([spec], options(tmp_path, folds_per_job=3), console=console())
    assert [c[1:] for c in fake.calls] == [(["01", "02", "03"], False), (["04"], True)]  # 01-03, then 04 + final
    assert fake.trained == [("run", "01"), ("run", "02"), ("run", "03"), ("run", "04")]
    assert summary["tries"] == 1 and len(summary["jobs"]) == 2 and summary["failed"] == []
    assert runs.final_done(tmp_path / "run") and json.loads((tmp_path / "run" / "run.json").read_text())["folds"] \
        == ["01", "02", "03", "04"]


def test_a_fold_that_dies_once_is_retried_and_finished_folds_are_never_rerun(tmp_path, synthetic_cache, fake):
    fake.dies = {"02": 2}  # its job dies at fold 02 (also when trying it alone)
    spec = RunSpec(recipe(), str(synthetic_cache), str(tmp_path / "run"))
    summary = run_on_slurm([spec], options(tmp_path, folds_per_job=2), console=console())
    assert summary["tries"] == 2 and len(summary["jobs"]) == 3  # 2 jobs, then 1 for the fold that died
    assert [c[1] for c in fake.calls] == [["01", "02"], ["02"], ["03", "04"], ["02"]]
    assert sorted(fake.trained) == [("run", s) for s in ("01", "02", "03", "04")]  # each fold trained once
    # a second command finds everything done and submits nothing
    again = run_on_slurm([spec], options(tmp_path, folds_per_job=2), console=console())
    assert again["jobs"] == [] and again["done_before"] == 4 and len(fake.calls) == 4


def test_a_fold_failing_every_try_is_named_with_its_log(tmp_path, synthetic_cache, fake):
    fake.die_always = {"03"}
    spec = RunSpec(recipe(), str(synthetic_cache), str(tmp_path / "run"))
    with pytest.raises(MertoolError) as err:
        run_on_slurm([spec], options(tmp_path, folds_per_job=4, max_retries=1), console=console())
    msg = str(err.value)
    assert "1 fold(s) failed in all 2 tries" in msg and "fold 03" in msg and "log " in msg and "simulated" in msg
    # try 1: the chunk stops at 03, then trains its remaining folds one by one; try 2: only 03
    assert [c[1] for c in fake.calls] == [["01", "02", "03", "04"], ["03"], ["04"], ["03"]]
    assert runs.fold_done(tmp_path / "run", "04") and not runs.fold_done(tmp_path / "run", "03")


def test_interrupting_the_wait_cancels_the_submitted_jobs(tmp_path, synthetic_cache, fake, monkeypatch):
    from submitit.local.debug import DebugJob

    cancelled = []
    monkeypatch.setattr(DebugJob, "cancel", lambda self, check=True: cancelled.append(str(self.job_id)))

    def interrupted(jobs, options, console):
        raise KeyboardInterrupt

    monkeypatch.setattr("mertool.cluster.wait_for", interrupted)
    spec = RunSpec(recipe(), str(synthetic_cache), str(tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        run_on_slurm([spec], options(tmp_path, folds_per_job=2), console=console())
    assert len(cancelled) == 2 and fake.calls == []  # both jobs of the array, none of them run


def test_checkpoint_requeues_the_same_chunk(tmp_path):
    chunk = FoldChunk([RunSpec({}, "c.h5", "run")], [], folds_per_device=2)
    delayed = chunk.checkpoint()
    assert isinstance(delayed.function, FoldChunk) and delayed.function.folds_per_device == 2
    assert delayed.function.specs == chunk.specs


def test_ablation_grid_with_seeds_in_one_array_then_collect(tmp_path, synthetic_cache, fake, capsys):
    from mertool import ablate

    table = tmp_path / "t.yaml"
    table.write_text(f"title: T\nbase: {ROOT / 'recipes' / 'casme2.yaml'}\nvariants:\n"
                     "  - {name: au, model: {aus: true}}\n  - {name: no-au, model: {aus: false}}\n")
    opts = options(tmp_path, folds_per_job=3)
    ablate.run_table(table, synthetic_cache, tmp_path / "runs", seeds=[0, 1], slurm=opts, console=None,
                     overrides=["data.image_size=64", "model.width=0.25"])
    # 2 variants x 2 seeds x 4 folds = 16 folds in 6 jobs of 3 (a job's chunk may span two run folders)
    assert sum(len(c[1]) for c in fake.calls) == 16 and len(fake.calls) == 8
    assert "submitted 6 job(s)" in capsys.readouterr().out
    assert {Path(c[0]).relative_to(tmp_path / "runs" / "t").as_posix() for c in fake.calls} == \
        {"au/seed0", "au/seed1", "no-au/seed0", "no-au/seed1"}
    assert main(["ablate", str(table), "--out", str(tmp_path / "runs"), "--collect"]) == 0
    rows = (tmp_path / "runs" / "t" / "table.csv").read_text()
    assert "8/8" in rows and len(fake.calls) == 8  # collect trains and submits nothing


def test_dry_run_prints_the_sbatch_script_and_submits_nothing(tmp_path, synthetic_cache, capsys, fake):
    code = main(["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(tmp_path / "run"),
                 "--executor", "slurm", "--dry-run", "--folds-per-job", "3", "--slurm-partition", "gpu",
                 "--slurm-time", "30", "--slurm-opt", "account=lab", "--slurm-opt", "mem=32G",
                 "--set", "data.image_size=64"])
    out = capsys.readouterr().out
    assert code == 0, out
    for line in ("#!/bin/bash", "#SBATCH --array=0-1%2", "#SBATCH --partition=gpu", "#SBATCH --time=30",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --account=lab", "#SBATCH --mem=32G", "submitit.core._submit"):
        assert line in out, line
    assert "# array task 0: " in out and out.rstrip().endswith(": 04")
    assert fake.calls == [] and not (tmp_path / "run" / "slurm").exists()


def test_usage_errors(tmp_path, synthetic_cache, capsys, monkeypatch):
    base = ["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(tmp_path / "r")]
    assert main(base + ["--dry-run"]) != 0
    assert "--dry-run prints Slurm scripts" in capsys.readouterr().err
    assert main(base + ["--executor", "slurm", "--slurm-opt", "account"]) != 0
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(base + ["--executor", "slurm", "--devices", "cuda:0,cuda:1"]) == 2  # not silently ignored
    assert "--devices cuda:0,cuda:1: with --executor slurm each job uses the GPUs Slurm gives it" in \
        capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "submitit", None)
    assert main(base + ["--executor", "slurm"]) != 0
    assert "pip install -e '.[slurm]'" in capsys.readouterr().err


def test_many_writers_one_run_folder(tmp_path, monkeypatch):
    assert files.create_text(tmp_path / "recipe.yaml", "a: 1\n") is True
    assert files.create_text(tmp_path / "recipe.yaml", "a: 2\n") is False  # the second writer reads, never writes
    assert (tmp_path / "recipe.yaml").read_text() == "a: 1\n" and len(list(tmp_path.iterdir())) == 1
    import torch

    for host in ("node1", "node2", "node1"):
        monkeypatch.setattr("platform.node", lambda h=host: h)
        runs.record_env(tmp_path, torch.device("cpu"), 0)
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["host"] == "node1" and sorted(env["hosts"]) == ["node1", "node2"]
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.tmp"))
