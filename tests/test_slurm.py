"""`train-loso --executor slurm` against a real one-node Slurm (Debian's slurmctld, slurmd, slurm-client, munge),
started on this machine only (127.0.0.1) by tests/slurmlocal.py. A job's process is killed with SIGKILL; the retry
must finish the run. Skipped with a reason where the packages (or root, which slurmd needs) are missing."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import make_synthetic_cache
from slurmlocal import LocalSlurm, missing_programs

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.image_size=32", "model.width=0.25", "model.fpf=none", "train.epochs=1", "train.decay_epochs=1",
        "augment.crop_padding=2", "train.batch_size=8"]

pytestmark = pytest.mark.slow


@pytest.fixture
def slurm(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.skip(f"Slurm not installed ({', '.join(missing)} missing): "
                    f"apt-get install slurmctld slurmd slurm-client munge")
    if os.geteuid() != 0:
        pytest.skip("the one-node Slurm test starts slurmd, which needs root")
    pytest.importorskip("submitit", reason="submitit not installed (pip install -e '.[slurm]')")
    with LocalSlurm(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def _job_processes(logs: Path) -> dict[int, str]:
    """pid -> command line of the jobs' Python processes (submitit's runner for this logs folder)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "submitit.core._submit" in cmd and str(logs) in cmd and not cmd.startswith("srun"):
            out[int(d.name)] = cmd
    return out


def _kill_one_preempt_another(logs: Path, killed: dict, preempted: dict, stop: threading.Event) -> None:
    """SIGKILL the first job process that appears, while it is still starting (before any fold can finish); then
    send another job, once it has started training, the signal Slurm sends before a time limit or a preemption."""
    while not stop.is_set() and not killed:
        procs = _job_processes(logs)
        if procs:
            pid = min(procs)
            env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
            job = {k: v for k, _, v in (e.decode(errors="replace").partition("=") for e in env)}
            os.kill(pid, signal.SIGKILL)
            killed.update(pid=pid, job=f"{job.get('SLURM_ARRAY_JOB_ID')}_{job.get('SLURM_ARRAY_TASK_ID')}",
                          at=time.monotonic())
        time.sleep(0.05)
    while not stop.is_set():
        for log in logs.glob("*_0_log.out"):
            job = log.name.removesuffix("_0_log.out")
            if job != killed["job"] and " on cpu (host " in log.read_text(errors="replace"):
                subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
                preempted.update(job=job, log=log, at=time.monotonic())
                return
        time.sleep(0.05)


def test_train_loso_on_slurm_survives_a_killed_and_a_preempted_job(tmp_path, slurm):
    cache = make_synthetic_cache(tmp_path / "c.h5", subjects=4, per_class=1, size=32)
    run, logs = tmp_path / "run", tmp_path / "run" / "slurm"
    argv = [sys.executable, "-m", "mertool.cli", "train-loso", "demo", "--cache", str(cache), "--out", str(run),
            "--executor", "slurm", "--folds-per-job", "2", "--slurm-gpus-per-job", "0", "--slurm-time", "10",
            "--slurm-poll", "0.5", "--max-retries", "2", "--quiet"] + [a for s in TINY for a in ("--set", s)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    killed, preempted, stop = {}, {}, threading.Event()
    killer = threading.Thread(target=_kill_one_preempt_another, args=(logs, killed, preempted, stop), daemon=True)
    killer.start()
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    finally:
        stop.set()
        killer.join(5)
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out + slurm.log("slurmctld")[-3000:]
    assert killed, "no job process was seen to kill: " + out
    assert preempted, "no second job was seen training: " + out
    job_log = preempted["log"].read_text() + preempted["log"].with_suffix(".err").read_text()
    assert "Calling checkpoint method" in job_log and f"Requeued job {preempted['job']}" in job_log, job_log
    tries = [(int(n), int(j)) for n, j in re.findall(r"try (\d+): submitted (\d+) job", out)]
    assert tries[0] == (1, 2) and len(tries) >= 2, out  # 2 jobs of 2 folds, then the killed job's folds again
    assert re.search(r"all 4 folds done: \d+ jobs? in [23] tries", out), out

    from mertool.reports.evaluate import evaluate_run

    rep = evaluate_run(run)  # refuses a run with missing folds
    assert rep["done_folds"] == ["01", "02", "03", "04"] and rep["metrics"]["n"] == 20
    env_json = json.loads((run / "env.json").read_text())
    assert env_json["hosts"], env_json
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("*.lock"))
    import torch

    from mertool.bench import matmul_rate

    rate = matmul_rate(torch.device("cpu"), sizes=(1024,))["flops"]  # timings come with the machine's own rate
    print(f"\nreal Slurm: jobs per try {tries}, killed job {killed['job']} (pid {killed['pid']}) "
          f"{killed['at'] - t0:.1f} s after start, job {preempted['job']} signalled (USR2) and requeued "
          f"{preempted['at'] - t0:.1f} s after start, {len(tries) - 1} retry round(s), {seconds:.1f} s in all; "
          f"fp32 matmul {rate / 1e9:.1f} GFLOP/s")
