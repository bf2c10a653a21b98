"""--executor slurm (mertool/training/cluster.py) with submitit's DebugExecutor: chunking, retries, no re-runs, --dry-run.
The real one-node Slurm test is tests/test_slurm.py."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from mertool import files
from mertool.training import runs
from mertool.cli import main
from mertool.errors import MertoolError

submitit = pytest.importorskip("submitit", reason="submitit not installed (pip install -e '.[slurm]')")

from mertool.training.cluster import FoldChunk, RunSpec, SlurmOptions, run_on_slurm  # noqa: E402

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
    monkeypatch.setattr("mertool.training.parallel.train_loso_parallel", f)
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
    assert "1 fold failed in all 2 tries" in msg and "fold 03" in msg and "log " in msg and "simulated" in msg
    # try 1: the chunk stops at 03, then trains its remaining folds one by one; try 2: only 03
    assert [c[1] for c in fake.calls] == [["01", "02", "03", "04"], ["03"], ["04"], ["03"]]
    assert runs.fold_done(tmp_path / "run", "04") and not runs.fold_done(tmp_path / "run", "03")


def test_interrupting_the_wait_cancels_the_submitted_jobs(tmp_path, synthetic_cache, fake, monkeypatch):
    from submitit.local.debug import DebugJob

    cancelled = []
    monkeypatch.setattr(DebugJob, "cancel", lambda self, check=True: cancelled.append(str(self.job_id)))

    def interrupted(jobs, options, console):
        raise KeyboardInterrupt

    monkeypatch.setattr("mertool.training.cluster.wait_for", interrupted)
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
    from mertool.reports import ablate

    table = tmp_path / "t.yaml"
    table.write_text(f"title: T\nbase: {ROOT / 'recipes' / 'casme2.yaml'}\nvariants:\n"
                     "  - {name: au, model: {aus: true}}\n  - {name: no-au, model: {aus: false}}\n")
    opts = options(tmp_path, folds_per_job=3)
    ablate.run_table(table, synthetic_cache, tmp_path / "runs", seeds=[0, 1], slurm=opts, console=None,
                     overrides=["data.image_size=64", "model.width=0.25"])
    # 2 variants x 2 seeds x 4 folds = 16 folds in 6 jobs of 3 (a job's chunk may span two run folders)
    assert sum(len(c[1]) for c in fake.calls) == 16 and len(fake.calls) == 8
    assert "submitted 6 jobs" in capsys.readouterr().out
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
    assert fake.calls == [] and not (tmp_path / "run").exists()  # a dry run writes nothing


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


# ------------------------------------------------------------------------------------- Slurm's own failures

FAKE = {  # what sbatch prints to stderr (exit 1) on a one-node cluster, per mistake
    "partition": "sbatch: error: invalid partition specified: nopart\n"
                 "sbatch: error: Batch job submission failed: Invalid partition name specified",
    "option": "sbatch: unrecognized option '--foo=bar'\nTry \"sbatch --help\" for more information",
    "mem": "sbatch: error: Invalid --mem specification",
    "gpus": "sbatch: error: Batch job submission failed: Invalid generic resource (gres) specification",
    "controller": "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
    "conf": "sbatch: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host\n"
            "sbatch: error: fetch_config: DNS SRV lookup failed\n"
            "sbatch: fatal: Could not establish a configuration source",
}


def fake_slurm(folder: Path, sbatch_error: str = "", scancel_error: str = "") -> Path:
    """A bin folder with sbatch, srun, squeue and scancel that fail as Slurm does."""
    folder.mkdir(parents=True, exist_ok=True)
    scripts = {"srun": "exit 0", "squeue": "exit 0",
               "sbatch": (f"cat >&2 <<'EOF'\n{sbatch_error}\nEOF\nexit 1" if sbatch_error else
                          "echo 'Submitted batch job 4242'"),
               "scancel": (f"cat >&2 <<'EOF'\n{scancel_error}\nEOF\nexit 1" if scancel_error else "exit 0")}
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.parametrize("case, args, needles", [
    ("partition", ["--slurm-partition", "nopart"], ["Invalid partition name specified", "--slurm-partition"]),
    ("option", ["--slurm-opt", "foo=bar"], ["unrecognized option '--foo=bar'", "--slurm-opt foo"]),
    ("mem", ["--slurm-opt", "mem=abc"], ["Invalid --mem specification", "--slurm-opt mem"]),
    ("gpus", [], ["Invalid generic resource (gres) specification", "--slurm-gpus-per-job 0"]),
    ("controller", [], ["Unable to contact slurm controller", "scontrol ping", "SLURM_CONF"]),
    ("conf", [], ["Could not establish a configuration source", "SLURM_CONF"]),
])
def test_sbatch_failures_are_one_line_and_leave_no_run_folder(tmp_path, synthetic_cache, capsys, monkeypatch, fake,
                                                              case, args, needles):
    bin_dir = fake_slurm(tmp_path / "bin", FAKE[case])
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    run = tmp_path / "run"
    code = main(["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(run), "--executor", "slurm",
                 "--set", "data.image_size=64", *args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: sbatch failed: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert not run.exists() and fake.calls == []  # nothing half-made: the next command starts clean
    # so a later command with other --set values is not refused
    monkeypatch.setenv("PATH", f"{fake_slurm(tmp_path / 'ok')}:{__import__('os').environ['PATH']}")
    assert main(["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(run), "--executor", "slurm",
                 "--set", "data.image_size=48", "--dry-run"]) == 0


def test_no_slurm_on_path_is_one_line(tmp_path, synthetic_cache, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither sbatch, squeue nor srun
    code = main(["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(tmp_path / "run"),
                 "--executor", "slurm"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sbatch, squeue, srun not found on PATH" in err[0] and \
        "--executor local" in err[0]
    assert not (tmp_path / "run").exists()


def test_dry_run_writes_nothing_and_chunks_fit_the_folds(tmp_path, synthetic_cache, capsys):
    run = tmp_path / "run"
    code = main(["train-loso", "casme2", "--cache", str(synthetic_cache), "--out", str(run), "--executor", "slurm",
                 "--dry-run", "--subjects", "01", "--set", "data.image_size=64"])
    out = capsys.readouterr().out
    assert code == 0 and not run.exists()
    assert "1 fold in 1 run folder, 0 done earlier; 1 fold per job" in out and "(1 task)" in out


def test_lost_jobs_and_signals_cancel_the_submitted_jobs(tmp_path, synthetic_cache, fake, monkeypatch):
    import os
    import signal

    from submitit.local.debug import DebugJob

    cancelled = []
    monkeypatch.setattr(DebugJob, "cancel", lambda self, check=True: cancelled.append(str(self.job_id)))

    def lost(jobs, options, console):
        raise MertoolError("Slurm lost track of job(s) 1_0: not listed by squeue 600 s after submission")

    monkeypatch.setattr("mertool.training.cluster.wait_for", lost)
    spec = RunSpec(recipe(), str(synthetic_cache), str(tmp_path / "run"))
    with pytest.raises(MertoolError, match="lost track.*cancelled jobs"):
        run_on_slurm([spec], options(tmp_path, folds_per_job=2), console=console())
    assert len(cancelled) == 2

    for sig in (signal.SIGTERM, signal.SIGHUP):
        cancelled.clear()

        def signalled(jobs, options, console, _sig=sig):
            os.kill(os.getpid(), _sig)
            time.sleep(5)  # the handler raises first
            raise AssertionError("the signal did not stop the wait")

        monkeypatch.setattr("mertool.training.cluster.wait_for", signalled)
        with pytest.raises(KeyboardInterrupt):
            run_on_slurm([spec], options(tmp_path, folds_per_job=2), console=console())
        assert len(cancelled) == 2, sig
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_scancel_failure_names_the_jobs_still_running(tmp_path, monkeypatch):
    from mertool.training.cluster import cancel_jobs

    bin_dir = fake_slurm(tmp_path / "bin", scancel_error="scancel: error: Kill job error on job id 77: "
                                                          "Access/permission denied")
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    SlurmJob = type("SlurmJob", (), {})
    jobs = []
    for i in range(2):
        job = SlurmJob()
        job.job_id = f"77_{i}"
        jobs.append(job)
    text = cancel_jobs(jobs, ["77_0", "77_1"])
    assert "77_0, 77_1 may still be running" in text and "Access/permission denied" in text and "scancel 77" in text
