"""Calibrated probabilities: temperature scaling fitted on held-out predictions of training subjects only.

    cal = calibrate_parts(parts)                  # parts: each fold's predictions (evaluate's read_predictions)
    cal["folds"]["sub03"]                         # the temperature of the fold that held out sub03
    apply_temperature(probs, cal["final"])        # the final model's probabilities, calibrated

Where the temperature comes from (cross-fitting, as scikit-learn's CalibratedClassifierCV(ensemble=False) does):
each LOSO fold's model predicted its own held-out subject; the temperature of the fold that holds out subject s
is fitted on the held-out predictions of every OTHER subject, so none of s's samples or labels enters it, and it
is fitted on predictions the models had not trained on (a model's predictions on its own training pairs are
overconfident by construction, so fitting on them calibrates the wrong thing). The final model (trained on every
subject) gets the temperature fitted on all subjects' held-out predictions. This needs no extra training; its
cost is that a fold's temperature is known only when the other folds are done.

Probabilities are stored rounded to 6 decimals; log p equals the logits up to a per-sample constant, which softmax
ignores, so scaling log p by 1/T is temperature scaling of the logits. p = 0 is read as half the rounding unit.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

METHOD = "temperature scaling, cross-fitted on the other subjects' held-out predictions"
CALIBRATION = "calibration.json"
BINS = 10
_FLOOR = 5e-7   # half of the 6-decimal rounding unit of predictions.csv


def log_probs(probs) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, np.float64), _FLOOR, 1.0))


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """Probabilities (N x K) rescaled by 1/T in log space and renormalised."""
    z = log_probs(probs) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(probs, labels) -> float:
    p = np.asarray(probs, np.float64)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(p)), np.asarray(labels)], 1e-12, 1.0))))


def fit_temperature(probs, labels) -> float:
    """The T > 0 minimising the negative log-likelihood of softmax(log p / T) (bounded search on log T)."""
    from scipy.optimize import minimize_scalar

    lp, y = log_probs(probs), np.asarray(labels, np.int64)
    if len(y) == 0:
        return 1.0

    def loss(log_t: float) -> float:
        z = lp / np.exp(log_t)
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())

    res = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def reliability(probs, labels, bins: int = BINS) -> dict:
    """Top-label reliability: per equal-width confidence bin its count, mean confidence and accuracy; and the
    expected calibration error ECE = sum over bins of (count / N) |accuracy - confidence|."""
    p = np.asarray(probs, np.float64)
    conf, pred = p.max(1), p.argmax(1)
    correct = (pred == np.asarray(labels)).astype(float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        acc = float(correct[sel].mean()) if n else None
        c = float(conf[sel].mean()) if n else None
        if n:
            ece += n / len(p) * abs(acc - c)
        rows.append({"lo": b / bins, "hi": (b + 1) / bins, "n": n, "confidence": c, "accuracy": acc})
    return {"ece": float(ece), "bins": rows, "n": int(len(p))}


def calibrate_parts(parts: list[dict]) -> dict | None:
    """Each fold's temperature (fitted on the other folds' held-out predictions) and the final model's (all of
    them), with ECE and NLL before and after over the pooled held-out predictions. None with fewer than 2 folds."""
    parts = [f for f in parts if len(f["true"])]
    if len(parts) < 2:
        return None
    subjects = [f["subject"][0] for f in parts]
    folds, after = {}, []
    for i, s in enumerate(subjects):
        others = [f for j, f in enumerate(parts) if j != i]
        t = fit_temperature(np.concatenate([f["probs"] for f in others]), np.concatenate([f["true"] for f in others]))
        folds[s] = t
        after.append(apply_temperature(parts[i]["probs"], t))
    probs = np.concatenate([f["probs"] for f in parts])
    y = np.concatenate([f["true"] for f in parts])
    after = np.concatenate(after)
    before_r, after_r = reliability(probs, y), reliability(after, y)
    return {"method": METHOD, "folds": folds, "final": fit_temperature(probs, y), "n": int(len(y)),
            "ece_before": before_r["ece"], "ece_after": after_r["ece"], "nll_before": nll(probs, y),
            "nll_after": nll(after, y), "bins_before": before_r["bins"], "bins_after": after_r["bins"]}


def calibrate_run(run_dir: str | Path, write: bool = True) -> dict | None:
    """A finished run's calibration (every fold done), written to RUN/calibration.json and stamped into the final
    model's checkpoint when it exists; None while folds are missing."""
    from mertool import files
    from mertool.reports.evaluate import evaluate_parts
    from mertool.training import runs

    run_dir = Path(run_dir)
    parts, missing = evaluate_parts(run_dir)
    if missing:
        return None
    cal = calibrate_parts(parts)
    if cal is None or not write:
        return cal
    path = run_dir / CALIBRATION
    with files.locked(path):  # a resumed run with nothing new rewrites nothing
        try:
            same = json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(cal))
        except (OSError, ValueError):
            same = False
        if not same:
            files.write_json(path, cal)
        model = runs.final_path(run_dir) / runs.FINAL_MODEL
        if model.is_file():
            record = checkpoint_record(cal, "final")
            if runs.read_checkpoint_field(model, "calibration") != record:
                runs.stamp_checkpoint(model, calibration=record)
    return cal


def checkpoint_record(cal: dict, which: str) -> dict:
    """What a checkpoint keeps: its temperature and how it was fitted."""
    t = cal["final"] if which == "final" else cal["folds"][which]
    fitted = ("all subjects' held-out LOSO predictions" if which == "final"
              else f"the other subjects' held-out predictions (not {which})")
    return {"temperature": float(t), "method": "temperature scaling", "fitted_on": fitted, "n": cal["n"],
            "ece_before": cal["ece_before"], "ece_after": cal["ece_after"]}


def model_temperature(ckpt: dict, model_path: str | Path) -> tuple[float, str]:
    """(T, how it was found) for a loaded checkpoint: its own record, else its run folder's calibration.json, else
    T = 1 (a model from before mertool calibrated, or a run whose folds are not all done)."""
    rec = ckpt.get("calibration")
    if isinstance(rec, dict) and rec.get("temperature"):
        return float(rec["temperature"]), f"temperature {float(rec['temperature']):.2f}, fitted on {rec['fitted_on']}"
    from mertool.training import runs

    path = Path(model_path).resolve()
    run_dir = path.parent.parent if path.name == runs.FINAL_MODEL else path.parent.parent.parent
    cal_path = run_dir / CALIBRATION
    try:
        cal = json.loads(cal_path.read_text(encoding="utf-8"))
        if path.name == runs.FINAL_MODEL:
            return float(cal["final"]), f"temperature {float(cal['final']):.2f}, from {cal_path}"
        summary = runs.read_fold_summary(path.parent)
        t = cal["folds"][summary["subject"]]
        return float(t), f"temperature {float(t):.2f}, from {cal_path}"
    except (OSError, ValueError, KeyError, TypeError):
        return 1.0, "uncalibrated (T = 1): this model has no temperature (trained before mertool calibrated, or " \
                    "its run's folds are not all done)"


def calibration_png(cal: dict, path: str | Path, title: str = "") -> Path:
    """Reliability diagram, before and after temperature scaling: accuracy per confidence bin against the
    diagonal, bar widths the bins, counts written on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mertool.reports.evaluate import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0), dpi=110, sharey=True)
    for ax, key, name in ((axes[0], "before", "before (softmax)"),
                          (axes[1], "after", "after (temperature per fold)")):
        bins = cal[f"bins_{key}"]
        lo = [b["lo"] for b in bins]
        width = bins[0]["hi"] - bins[0]["lo"]
        acc = [b["accuracy"] or 0.0 for b in bins]
        ax.bar(lo, acc, width=width, align="edge", color="tab:blue", alpha=0.75, edgecolor="k", label="accuracy")
        gap = [(b["confidence"] or 0.0) - (b["accuracy"] or 0.0) for b in bins]
        ax.bar(lo, gap, bottom=acc, width=width, align="edge", color="tab:red", alpha=0.25, hatch="//",
               label="gap to confidence")
        for b, a in zip(bins, acc):
            if b["n"]:
                ax.text(b["lo"] + width / 2, min(a + 0.02, 0.95), str(b["n"]), ha="center", fontsize=7)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top class probability)")
        ax.set_title(f"{name}: ECE {cal[f'ece_{key}']:.3f}", fontsize=10)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, Path(path))
