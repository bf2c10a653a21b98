"""One writer per fold: claims by exclusive creation, stale claims taken over, clear_fold leaves held folds alone,
and two train-loso processes on one run folder train every fold once, as one process would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mertool import files
from mertool.training import runs

ROOT = Path(__file__).resolve().parents[1]
SETS = ["--set", "train.epochs=1", "--set", "augment.crop_padding=4"]
SMALL = ["data.image_size=64", "model.width=0.25", "model.fpf=none", "train.epochs=1", "augment.crop_padding=4"]


def _write_claim(fold: Path, **fields) -> None:
    fold.mkdir(parents=True, exist_ok=True)
    now = time.time()
    record = {"host": files.host_name(), "pid": os.getpid(), "started": now, "heartbeat": now, "token": "other"}
    (fold / runs.CLAIM).write_text(json.dumps({**record, **fields}))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_live_claim_is_respected_and_released(tmp_path):
    fold = tmp_path / "folds" / "03"
    with runs.claim_fold(fold, "fold 03") as claim:
        record = runs.read_claim(fold)
        assert record["host"] == files.host_name() and record["pid"] == os.getpid()
        assert {"started", "heartbeat"} <= set(record) and claim.held()
        with pytest.raises(runs.FoldBusy, match=rf"fold 03: being trained by {files.host_name()}:{os.getpid()}"):
            runs.claim_fold(fold, "fold 03")
    assert runs.read_claim(fold) is None  # released


def test_heartbeat_is_refreshed(tmp_path):
    fold = tmp_path / "f"
    with runs.claim_fold(fold, heartbeat_s=0.05) as claim:
        first = runs.read_claim(fold)["heartbeat"]
        time.sleep(0.4)
        assert runs.read_claim(fold)["heartbeat"] > first and claim.held()


def test_stale_claims_are_taken_over(tmp_path):
    dead = tmp_path / "dead"
    _write_claim(dead, pid=_dead_pid())  # a process of this host that no longer exists
    assert not runs.claim_is_live(runs.read_claim(dead))
    with runs.claim_fold(dead) as claim:
        assert runs.read_claim(dead)["token"] == claim.record["token"]
    old = tmp_path / "old"
    _write_claim(old, host="elsewhere", pid=1, heartbeat=time.time() - runs.STALE_AFTER_S - 5)  # a lost Slurm job
    with runs.claim_fold(old):
        pass
    alive = tmp_path / "alive"
    _write_claim(alive, host="elsewhere", pid=1)  # another host, recent heartbeat: live
    with pytest.raises(runs.FoldBusy, match="being trained by elsewhere:1"):
        runs.claim_fold(alive)


def test_clear_fold_never_touches_another_writers_fold(tmp_path):
    fold = tmp_path / "folds" / "02"
    _write_claim(fold, host="elsewhere", pid=7)
    for name in ("predictions.csv", "checkpoint.pt", "checkpoint.pt.elsewhere.7.tmp"):
        (fold / name).write_text("theirs")
    with pytest.raises(runs.FoldBusy, match="elsewhere:7"):
        runs.clear_fold(fold)
    assert sorted(p.name for p in fold.iterdir()) == sorted(
        ["claim.json", "predictions.csv", "checkpoint.pt", "checkpoint.pt.elsewhere.7.tmp"])
    (fold / runs.CLAIM).unlink()
    with runs.claim_fold(fold) as claim:
        runs.clear_fold(fold, claim)  # its own fold: cleared
        assert sorted(p.name for p in fold.iterdir()) == ["claim.json"]


def _train(run: Path, cache: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "mertool.cli", "train-loso", str(ROOT / "recipes" / "casme2.yaml"), "--cache",
            str(cache), "--out", str(run), "--device", "cpu", "--quiet", "--set", "data.image_size=64",
            "--set", "model.width=0.25", "--set", "model.fpf=none", *SETS]
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


@pytest.mark.slow
def test_two_processes_on_one_run_folder_train_every_fold_once(tmp_path, synthetic_cache):
    """Two train-loso processes started together on one run folder: each fold is trained by exactly one of them
    (the other says who has it, or finds it done), and the predictions equal a single process's."""
    both = tmp_path / "both"
    procs = [_train(both, synthetic_cache, tmp_path / f"log{i}.txt") for i in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0], [(tmp_path / f"log{i}.txt").read_text() for i in range(2)]
    logs = [(tmp_path / f"log{i}.txt").read_text() for i in range(2)]
    for s in ("01", "02", "03", "04"):
        trained = [log.count(f"fold {s}: accuracy") for log in logs]
        assert sum(trained) == 1, (s, logs)  # trained once, by one process
        other = logs[trained.index(0)]
        assert f"fold {s}: being trained by" in other or f"fold {s}: done earlier" in other \
            or f"fold {s}: finished by another writer" in other, (s, other)
        assert not (both / "folds" / s / runs.CLAIM).exists()
    # one process, here (one thread, as the two had): the same bytes
    import torch
    from rich.console import Console

    from mertool.recipe import load_recipe
    from mertool.training.train import train_loso

    one = tmp_path / "one"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_loso(load_recipe(ROOT / "recipes" / "casme2.yaml", SMALL), synthetic_cache, one, device="cpu",
                   console=Console(file=open(os.devnull, "w")), progress=False)
    finally:
        torch.set_num_threads(threads)
    for s in ("01", "02", "03", "04"):
        assert (both / "folds" / s / "predictions.csv").read_bytes() == (one / "folds" / s / "predictions.csv").read_bytes()


def test_claims_of_ended_slurm_jobs_are_dropped(tmp_path, monkeypatch):
    """A job killed on another node leaves a claim no pid check can clear; once its array has left the queue the
    submitting command drops claims recorded by its jobs, and only those."""
    fold = tmp_path / "f"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "12")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert runs.slurm_job_id() == "12_3"
    _write_claim(fold, host="node9", pid=1, slurm_job="12_3")
    assert not runs.drop_claims_of_jobs(fold, ["12_0"]) and runs.read_claim(fold)
    assert runs.drop_claims_of_jobs(fold, ["12_0", "12_3"]) and runs.read_claim(fold) is None
