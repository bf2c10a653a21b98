"""Time told before it is spent: how long a LOSO run (or several) will train, said before the first fold starts.

    est = training_estimate(jobs, device, workers=2)   # jobs: (recipe, run folder, [n_train of each fold to run])
    print(estimate_line(est))

Two sources, the better first: the run folders' finished folds (their own seconds per sample-epoch, measured on
this kind of machine), else the model's training FLOPs (mertool.bench.model_flops, as `mertool bench` counts them)
over the device's dense matmul rate measured now, at 30-65 % of it on a CPU (the bench's measured MFU of the full
model was 45-68 % on this project's 2-core machines) and 20-50 % on a GPU. Evaluation passes are left out (a forward
pass per held-out sample, a few percent of a fold).
"""
from __future__ import annotations

from pathlib import Path

import torch

MFU = {"cpu": (0.30, 0.65), "cuda": (0.20, 0.50)}
SLOW = 12 * 3600    # an estimate above this on a CPU prints the line suggesting another route


def duration(seconds: float) -> str:
    """12 s, 4.5 min, 3.2 h, 2.1 days."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _measured(run_dir: Path) -> list[tuple[float, int]]:
    """(seconds, sample-epochs) of each finished fold of a run folder (fold.json), final model included."""
    import json

    out = []
    for summary in list(Path(run_dir).glob("folds/*/fold.json")) + list(Path(run_dir).glob("final/fold.json")):
        try:
            s = json.loads(summary.read_text(encoding="utf-8"))
            if s.get("seconds") and s.get("n_train") and s.get("epochs"):
                out.append((float(s["seconds"]), int(s["n_train"]) * int(s["epochs"])))
        except (OSError, ValueError, TypeError):
            continue
    return out


def training_estimate(jobs: list[tuple], device: torch.device, workers: int = 1, rate: dict | None = None) -> dict:
    """jobs: (recipe, run folder, [n_train of each fold still to train]) per run. Returns the estimate: seconds
    (lo, hi), what it rests on, and the FLOPs and rate when it rests on them."""
    from mertool.bench import matmul_rate, model_flops

    steps = [(recipe, sum(n_trains) * int(recipe["train"]["epochs"])) for recipe, _run, n_trains in jobs]
    total_steps = sum(s for _r, s in steps)
    measured = [m for _recipe, run, _n in jobs for m in _measured(run)]
    parallel = max(1, workers) if device.type == "cuda" else 1   # CPU workers share the cores the rate was measured on
    if measured:
        per_step = sum(s for s, _ in measured) / sum(n for _, n in measured)
        seconds = total_steps * per_step / max(1, workers)
        return {"seconds": (0.85 * seconds, 1.15 * seconds), "basis": f"{len(measured)} finished fold(s)",
                "sample_epochs": total_steps}
    flops = 0.0
    cache: dict[str, float] = {}
    for recipe, n in steps:
        key = repr(sorted(recipe["model"].items()))
        if key not in cache:
            cache[key] = model_flops(recipe["model"], 2)["train_per_sample"]
        flops += cache[key] * n
    # smaller matmuls than bench's on a CPU: a second here, not several, before every run (the rate is an estimate's)
    rate = rate or matmul_rate(device, sizes=(512, 1024) if device.type == "cpu" else None, min_seconds=0.05)
    lo_mfu, hi_mfu = MFU.get(device.type, MFU["cuda"])
    dense = rate["flops"] * parallel
    return {"seconds": (flops / (dense * hi_mfu), flops / (dense * lo_mfu)), "flops": flops,
            "rate": rate["flops"], "dtype": rate["dtype"], "mfu": (lo_mfu, hi_mfu), "device": device.type,
            "basis": "FLOPs", "sample_epochs": total_steps}


def estimate_line(est: dict, what: str) -> str:
    lo, hi = est["seconds"]
    if est["basis"] == "FLOPs":
        return (f"estimate: {what}, {est['flops'] / 1e12:.1f} TFLOP of training, {duration(lo)} to {duration(hi)} at "
                f"{100 * est['mfu'][0]:.0f}-{100 * est['mfu'][1]:.0f} % of this {est['device']}'s dense "
                f"{est['dtype']} matmul rate, measured now at {est['rate'] / 1e9:.0f} GFLOP/s")
    return f"estimate: {what}, about {duration((lo + hi) / 2)} (from {est['basis']} of this run)"


def slow_hint(est: dict, device: torch.device, recipe: dict) -> str | None:
    """One line when a schedule will take more than half a day on a CPU; the run carries on."""
    if device.type != "cpu" or est["seconds"][0] < SLOW:
        return None
    return (f"this schedule ({recipe['train']['epochs']} epochs at {recipe['data']['image_size']} px) needs "
            f"{duration(est['seconds'][0])} or more on this CPU: a GPU (--device cuda), a cluster (--executor slurm) "
            f"or the demo recipe (`mertool demo`, minutes) are the practical routes; carrying on")


def fold_sizes(data, subjects: list[str], final: bool) -> list[int]:
    """Training samples of each fold to run (all but the held-out subject's), and of the final model (all)."""
    import numpy as np

    subj = np.asarray(data.subjects)
    return [int((subj != s).sum()) for s in subjects] + ([len(subj)] if final else [])


def announce(console, jobs: list[tuple], device: torch.device, workers: int, what: str,
             rate: dict | None = None) -> dict | None:
    """Print the estimate (and the slow-schedule hint) before training; never stops a run. `rate`: the device's
    matmul rate when the caller has measured it already (the demo, ablate), else it is measured here."""
    if not any(n for _r, _run, n in jobs):
        return None
    try:
        est = training_estimate(jobs, device, workers, rate)
    except Exception as exc:  # an estimate must never stop the training it describes
        console.print(f"estimate: not available ({type(exc).__name__}: {exc})")
        return None
    console.print(estimate_line(est, what), soft_wrap=True)
    hint = slow_hint(est, device, jobs[0][0])
    if hint:
        console.print(hint, soft_wrap=True)
    return est
