"""Reports from run folders: pooled LOSO metrics, per-class and per-subject tables, confusion matrix (table + PNG).

The main figures come from each fold's predictions.csv (last epoch of the fixed schedule). Figures of the epoch chosen
on each test subject (predictions_best_on_test.csv, written only with `--select best-on-test`; predictions_oracle.csv
in run folders of the previous release) are reported apart, labelled SELECT_LABEL, and only when every fold has
them. Every report says what the test clips' AU input was, in words (runs.run_au_source). Several run folders
(e.g. seeds) give mean ± sample standard deviation (ddof=1).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mertool import files
from mertool.cache import provenance
from mertool.data.aus import AU_VOCAB
from mertool.errors import MertoolError
from mertool.reports import metrics
from mertool.training import runs
from mertool.training.runs import read_predictions  # noqa: F401  (imported from here by older code and tests)

SELECT_LABEL = runs.SELECT_LABEL
ORACLE_LABEL = SELECT_LABEL  # the previous release's name of this label (imported by older code)
PROTOCOL = "last epoch of a fixed schedule (no test-fold selection)"
HEADLINE = ("accuracy", "uf1", "uar", "macro_f1", "mean_subject_accuracy")
NAMES = {"accuracy": "accuracy", "uf1": "UF1", "uar": "UAR", "macro_f1": "macro F1",
         "mean_subject_accuracy": "mean per-subject accuracy"}


def _run_dataset(info: dict) -> str | None:
    """The dataset a run was trained on: recorded in run.json, or (older runs) its cache's attribute if still there."""
    cache = info.get("cache") or {}
    if cache.get("dataset"):
        return str(cache["dataset"])
    try:
        import h5py

        with h5py.File(cache.get("path", ""), "r") as f:
            value = f.attrs.get("dataset")
        return None if value is None else str(value)
    except (OSError, TypeError, ValueError):
        return None


def _run_synthetic(info: dict) -> bool:
    """Whether a run was trained on `mertool synth` data: recorded in run.json, or (older runs) read from its cache's
    preprocess report if the cache is still there."""
    cache = info.get("cache") or {}
    if "synthetic" in cache:
        return bool(cache["synthetic"])
    try:
        import h5py

        from mertool.cache.store import made_from_synth

        with h5py.File(cache.get("path", ""), "r") as f:
            return made_from_synth(dict(f.attrs))
    except (OSError, TypeError, ValueError):
        return False


def _subject_datasets(info: dict, subjects) -> dict[str, str]:
    """Subject -> source dataset: recorded in run.json, or inferred from the cache's dataset attribute (a merged
    cache's subjects carry their dataset as a prefix)."""
    known = info.get("subject_datasets") or {}
    rest = [s for s in subjects if s not in known]
    if rest:
        from mertool.cache.store import infer_datasets

        known = {**known, **dict(zip(rest, infer_datasets(_run_dataset(info) or "?", rest)))}
    return {s: str(known[s]) for s in subjects}


def _by_dataset(parts: list[dict], classes: list[str], datasets: dict[str, str]) -> dict:
    """UF1, UAR and accuracy of the pooled predictions of each source dataset (the MEGC composite's columns)."""
    y = np.concatenate([f["true"] for f in parts])
    p = np.concatenate([f["pred"] for f in parts])
    src = np.array([datasets[s] for f in parts for s in f["subject"]], dtype=object)
    out = {}
    for d in sorted(set(src)):
        sel = src == d
        m = metrics.summarize(y[sel], p[sel], classes)
        out[d] = {k: m[k] for k in ("n", "accuracy", "uf1", "uar")}
    return out


def _pooled(parts: list[dict], classes: list[str]) -> dict:
    """Metrics of predictions pooled over folds, plus the mean of per-fold accuracies."""
    y = np.concatenate([f["true"] for f in parts])
    p = np.concatenate([f["pred"] for f in parts])
    out = metrics.summarize(y, p, classes)
    out["mean_subject_accuracy"] = float(np.mean([np.mean(f["true"] == f["pred"]) for f in parts]))
    return out


def evaluate_parts(run_dir: str | Path) -> tuple[list[dict], list[str]]:
    """The done folds' predictions (one dict per fold, read_predictions) and the subjects of missing folds."""
    run_dir = Path(run_dir)
    info = runs.read_run_info(run_dir)
    classes, expected = list(info["classes"]), list(info["folds"])
    dirs = info.get("fold_dirs", {s: s for s in expected})
    parts = [read_predictions(runs.fold_path(run_dir, dirs[s]) / runs.PREDICTIONS, classes)
             for s in expected if runs.fold_done(run_dir, dirs[s])]
    return parts, [s for s in expected if not runs.fold_done(run_dir, dirs[s])]


def uncertainty(parts: list[dict], classes: list[str]) -> dict | None:
    """95 % intervals of accuracy, UF1 and UAR by bootstrap over subjects (None with fewer than 2 subjects)."""
    parts = [f for f in parts if len(f["true"])]
    if len(parts) < 2:
        return None
    return metrics.subject_bootstrap(metrics.subject_confusions(parts, len(classes)))


def evaluate_run(run_dir: str | Path, partial: bool = False) -> dict:
    """One run folder -> report dict; a run with missing folds is refused (naming them) unless partial."""
    run_dir = Path(run_dir)
    info = runs.read_run_info(run_dir)
    classes, expected = list(info["classes"]), list(info["folds"])
    dirs = info.get("fold_dirs", {s: s for s in expected})
    done, missing = [], []
    for s in expected:
        (done if runs.fold_done(run_dir, dirs[s]) else missing).append(s)
    if missing and not partial:
        raise MertoolError(f"{run_dir}: {len(missing)} of {len(expected)} folds have no predictions.csv: "
                           f"{', '.join(missing)}; run them (train-loso --subjects ...) or pass --partial")
    folds, parts, best_parts = [], [], []
    for s in done:
        fdir = runs.fold_path(run_dir, dirs[s])
        pred = read_predictions(fdir / runs.PREDICTIONS, classes)
        bad = {x for x in pred["subject"] if x != s}
        if bad:
            raise MertoolError(f"{fdir / runs.PREDICTIONS}: fold {s} holds samples of subject(s) {sorted(bad)}")
        parts.append(pred)
        summary = runs.read_fold_summary(fdir)
        fold = {"subject": s, "n": len(pred["true"]), "accuracy": float(np.mean(pred["true"] == pred["pred"])),
                "seconds": summary.get("seconds"), "best_on_test": None}
        best_path = runs.best_predictions_path(fdir)
        if best_path is not None:
            o = read_predictions(best_path, classes)
            best_parts.append(o)
            fold["best_on_test"] = {"accuracy": float(np.mean(o["true"] == o["pred"])),
                                    "epoch": (runs.fold_best_on_test(summary) or {}).get("epoch"),
                                    "label": SELECT_LABEL}
        folds.append(fold)
    from mertool.reports.calibration import calibrate_parts

    provenance = info.get("provenance") or _old_run_provenance(info)
    report = {"run": str(run_dir), "protocol": PROTOCOL, "classes": classes, "expected_folds": expected,
              "cache": info.get("cache") or {}, "dataset": _run_dataset(info), "provenance": provenance,
              "intervals": uncertainty(parts, classes), "calibration": calibrate_parts(parts),
              "done_folds": done, "missing": missing, "partial": bool(missing),
              "skipped_subjects": info.get("skipped_subjects", []), "folds": folds,
              "au_source": runs.run_au_source(run_dir), "synthetic": _run_synthetic(info),
              "metrics": _pooled(parts, classes) if parts else None, "by_dataset": None, "best_on_test": None,
              "best_on_test_note": None, "include": info.get("include")}
    if parts:
        report["by_dataset"] = _by_dataset(parts, classes, _subject_datasets(info, done))
    report["au_detection"] = pooled_au_detection(parts)
    if best_parts and len(best_parts) == len(parts):
        report["best_on_test"] = {**_pooled(best_parts, classes), "label": SELECT_LABEL}
    elif best_parts:
        report["best_on_test_note"] = (f"{SELECT_LABEL}: recorded for {len(best_parts)} of {len(parts)} folds only; "
                                       f"not reported")
    return report


def _old_run_provenance(info: dict) -> dict:
    """A run folder from before run.json recorded provenance: its cache's, when the cache is still there."""
    from mertool.cache.provenance import UNKNOWN, cache_provenance

    try:
        from mertool.cache.store import open_cache

        with open_cache((info.get("cache") or {}).get("path", "")) as f:
            return cache_provenance(dict(f.attrs))
    except (MertoolError, OSError, TypeError, ValueError):
        return {"synthetic": None, "source": UNKNOWN,
                "detected": "run folder from before mertool recorded provenance, and its cache is gone"}


def pooled_au_detection(parts: list[dict]) -> dict | None:
    """AU head detection metrics over the pooled folds' samples whose AU codes are known (None without AU columns)."""
    parts = [f for f in parts if f.get("au_probs") is not None]
    if not parts:
        return None
    truth = np.concatenate([f["au_true"] for f in parts])
    probs = np.concatenate([f["au_probs"] for f in parts])
    known = ~np.isnan(truth).any(1)
    if not known.any():
        return {"n": 0, "unknown": int(len(known)), "per_au": [], "mean_f1": None,
                "note": "no sample with known AU codes"}
    out = metrics.au_detection(truth[known].astype(int), probs[known], AU_VOCAB)
    out["unknown"] = int((~known).sum())
    return out


def _mean_std(values: list[float]) -> dict:
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v),
            "values": [float(x) for x in v]}


SEED_KEYS = ("name", "description", "train.seed")


def recipe_differences(run_dirs: list[Path]) -> dict[str, list]:
    """Recipe keys (seed and name aside) whose values differ between runs: key -> each run's value."""
    import yaml

    from mertool.recipe import flat_recipe

    if len(run_dirs) < 2:
        return {}
    flats = []
    for d in run_dirs:
        try:
            flats.append(flat_recipe(yaml.safe_load((d / runs.RECIPE).read_text(encoding="utf-8")) or {}))
        except (OSError, yaml.YAMLError):
            flats.append({})   # an old run without its recipe: nothing to compare
    keys = sorted({k for f in flats for k in f} - set(SEED_KEYS))
    return {k: [f.get(k) for f in flats] for k in keys if any(f.get(k) != flats[0].get(k) for f in flats)}


def evaluate_runs(run_dirs, partial: bool = False) -> dict:
    """Several run folders (same classes) -> per-run reports plus mean ± std of each headline metric."""
    runs = [evaluate_run(d, partial) for d in run_dirs]
    if not runs:
        raise MertoolError("evaluate: name at least one run folder")
    classes = runs[0]["classes"]
    for r in runs[1:]:
        if r["classes"] != classes:
            raise MertoolError(f"{r['run']}: classes {r['classes']} differ from {runs[0]['run']}'s {classes}")
    scored = [r for r in runs if r["metrics"]]
    differ = recipe_differences([Path(r["run"]) for r in runs])
    out = {"protocol": PROTOCOL, "classes": classes, "runs": runs, "aggregate": None,
           "best_on_test_aggregate": None, "recipe_differences": differ, "published": None}
    # mean ± std is for repeats of one recipe (seeds); runs of different settings are only compared side by side
    if len(scored) > 1 and not differ:
        _check_same_cache(scored)
        out["aggregate"] = {k: _mean_std([r["metrics"][k] for r in scored]) for k in HEADLINE}
        if all(r["best_on_test"] for r in scored):
            out["best_on_test_aggregate"] = {k: _mean_std([r["best_on_test"][k] for r in scored]) for k in HEADLINE}
            out["best_on_test_aggregate"]["label"] = SELECT_LABEL
    headline = out["aggregate"] and {k: v["mean"] for k, v in out["aggregate"].items() if k in HEADLINE}
    synthetic = [True if r.get("synthetic") else provenance.is_synthetic(r.get("provenance")) for r in scored]
    out["provenance_note"] = provenance_note(synthetic)
    if any(synthetic):  # synthetic faces are never ranked against results published on a real dataset
        out["published_note"] = provenance.DATA_DIFFER + ": the published table is not shown"
    elif headline or len(scored) == 1:
        from mertool.reports.published import standing

        datasets = {r["dataset"] for r in scored}
        sources = {r["au_source"]["text"] for r in scored}
        out["published"] = standing(headline or scored[0]["metrics"], datasets.pop() if len(datasets) == 1 else None,
                                    len(classes), au_source=sources.pop() if len(sources) == 1 else None)
        if out["published"] and None in synthetic:
            out["published"]["data_note"] = ("the data's provenance is unknown (a cache from before mertool "
                                             "recorded it): if it was made by `mertool synth`, this ranking means "
                                             "nothing")
    return out


def provenance_note(synthetic: list) -> str | None:
    """One line for a report whose runs are not all on real data."""
    if any(synthetic):
        return "data: synthetic faces (mertool synth), not a real dataset"
    if None in synthetic:
        return "data: unknown provenance (a cache from before mertool recorded it; it may be synthetic)"
    return None


def _check_same_cache(runs: list[dict]) -> None:
    """Seeds are averaged only over one data set: a run trained on other cache content is refused, naming both."""
    first = runs[0]
    a = first.get("cache") or {}
    for r in runs[1:]:
        b = r.get("cache") or {}
        if a.get("fingerprint") != b.get("fingerprint"):
            raise MertoolError(f"{r['run']} was trained on cache {b.get('path')} (fingerprint {b.get('fingerprint')}) "
                               f"but {first['run']} on {a.get('path')} (fingerprint {a.get('fingerprint')}): "
                               f"runs on different data are not averaged; evaluate them separately")


def summed_confusion(report: dict, key: str = "metrics") -> np.ndarray | None:
    """Confusion matrix summed over the runs of an evaluate_runs report."""
    mats = [np.asarray(r[key]["confusion"]) for r in report["runs"] if r.get(key)]
    return sum(mats) if mats else None


def confusion_png(cm: np.ndarray, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Confusion matrix picture (rows = true, colour = row share, text = counts), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.1 * k + 1.8), dpi=120)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=35, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """A matplotlib figure as PNG, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with files.temporary_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def au_f1_png(report: dict, path: str | Path) -> Path | None:
    """au_f1_figure() written to `path` (atomic); None when no run has an AU head."""
    fig = au_f1_figure(report)
    return None if fig is None else save_figure(fig, Path(path))


def au_f1_figure(report: dict):
    """Bar chart of per-AU F1, one bar group per run; AUs below the support threshold hatched and labelled with
    their support (an F1 of 0 has no bar to hatch); None when no run has an AU head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in report["runs"] if (r.get("metrics") and r.get("au_detection") or {}).get("per_au")]
    if not runs:
        return None
    aus = [row["au"] for row in runs[0]["au_detection"]["per_au"]]
    x = np.arange(len(aus))
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(aus) + 2), 3.6), dpi=120)
    for i, r in enumerate(runs):
        det = r["au_detection"]
        f1 = [row["f1"] for row in det["per_au"]]
        bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, f1, width,
                      label=f"{Path(r['run']).name}: mean F1 {det['mean_f1']:.3f}" if det["mean_f1"] is not None
                      else Path(r["run"]).name)
        for bar, row in zip(bars, det["per_au"]):
            if row["support"] < det["min_support"]:
                bar.set_hatch("//")
                bar.set_alpha(0.45)
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02, f"n={row['support']}",
                        ha="center", va="bottom", rotation=90, fontsize=6, color="0.35")
    ax.set_xticks(x, [f"AU{a}" for a in aus], rotation=60, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    det = runs[0]["au_detection"]
    ax.set_title(f"AU detection, pooled LOSO (threshold {det['threshold']}; hatched, with n: < {det['min_support']} "
                 f"positives)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def render_au_detection(scored: list[dict], console) -> None:
    """Per-AU precision / recall / F1 / support of the AU head and the mean F1 over well-supported AUs."""
    from rich.table import Table

    runs = [r for r in scored if (r.get("au_detection") or {}).get("per_au")]
    if not runs:
        return
    det0 = runs[0]["au_detection"]
    t = Table(title=f"AU detection by the AU head (pooled LOSO, threshold {det0['threshold']})")
    t.add_column("AU")
    t.add_column("positives", justify="right")
    if len(runs) == 1:
        for col in ("precision", "recall", "F1"):
            t.add_column(col, justify="right")
    else:
        for r in runs:
            t.add_column(f"F1 {Path(r['run']).name}", justify="right")
    for i, row in enumerate(det0["per_au"]):
        cells = [f"AU{row['au']}", str(row["support"])]
        if len(runs) == 1:
            cells += [f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}"]
        else:
            cells += [f"{r['au_detection']['per_au'][i]['f1']:.3f}" for r in runs]
        t.add_row(*cells)
    console.print(t)
    for r in runs:
        det = r["au_detection"]
        mean = "n/a (no AU with enough positives)" if det["mean_f1"] is None else f"{det['mean_f1']:.4f}"
        unknown = f"; {det['unknown']} samples without AU codes left out" if det.get("unknown") else ""
        console.print(f"{Path(r['run']).name}: mean AU F1 over the {len(det['aus_counted'])} AUs with >= "
                      f"{det['min_support']} positive samples: {mean} ({det['n']} samples{unknown})")


def to_json(report: dict) -> str:
    """The report as JSON text."""
    return json.dumps(report, indent=2)


def _headline_table(title: str, metrics: list[dict], names: list[str], aggregate: dict | None, agg_title: str,
                    intervals: list | None = None):
    """Accuracy, F1, UF1, UAR: one column per run (or 'value' for one run) with its 95 % interval where known,
    and mean ± std over runs. Two decimals: one standard error on 150-250 samples is about 0.03."""
    from rich.table import Table

    intervals = intervals or [None] * len(metrics)
    table = Table(title=title)
    table.add_column("metric")
    for name in names if len(names) > 1 else ["value"]:
        table.add_column(name, justify="right")
    if aggregate:
        table.add_column(agg_title, justify="right")
    for k in HEADLINE:
        row = [NAMES[k]] + [f"{m[k]:.2f}" + (f" [{ci[k]['lo']:.2f}, {ci[k]['hi']:.2f}]" if ci and k in ci else "")
                            for m, ci in zip(metrics, intervals)]
        if aggregate:
            row.append(f"{aggregate[k]['mean']:.3f} ± {aggregate[k]['std']:.3f}")
        table.add_row(*row)
    return table


def render(report: dict, console) -> None:
    """Rich tables: each run's AU input, headline metrics, per-class, per-subject, confusion; best-on-test figures
    apart, labelled."""
    from rich.table import Table

    runs, classes = report["runs"], report["classes"]
    scored = [r for r in runs if r["metrics"]]
    for r in runs:
        note = f" — PARTIAL: missing folds {', '.join(r['missing'])}" if r["missing"] else ""
        skipped = f"; skipped subjects (no sample of the classes): {', '.join(r['skipped_subjects'])}" \
            if r["skipped_subjects"] else ""
        console.print(f"{r['run']}: {len(r['done_folds'])}/{len(r['expected_folds'])} folds{note}"
                      f"{skipped}")
        console.print(f"  AU input: {r['au_source']['text']}")
    console.print(f"protocol: {report['protocol']}")
    if report.get("provenance_note"):
        console.print(report["provenance_note"])
    differ = report.get("recipe_differences") or {}
    for key, values in differ.items():
        pairs = ", ".join(f"{Path(r['run']).name}={v}" for r, v in zip(runs, values))
        console.print(f"recipes differ in {key}: {pairs}")
    if differ:
        console.print("different settings: the runs are compared side by side, with no mean ± std")
    if not scored:
        console.print("no finished fold to score")
        return

    console.print(_headline_table("Pooled leave-one-subject-out results", [r["metrics"] for r in scored],
                                  [Path(r["run"]).name for r in scored], report.get("aggregate"),
                                  f"mean ± std (n={len(scored)})", [r.get("intervals") for r in scored]))
    ci = next((r["intervals"] for r in scored if r.get("intervals")), None)
    if ci:
        console.print(f"[lo, hi]: {100 * ci['level']:.0f} % interval, bootstrap over the {ci['subjects']} subjects "
                      f"(the LOSO unit; {ci['resamples']} resamples); values to 2 decimals, as the intervals allow")
    render_calibration(scored, console)

    pc = Table(title="Per class" + (" (mean over runs)" if len(scored) > 1 else ""))
    for col in ("class", "precision", "recall", "F1", "support"):
        pc.add_column(col, justify="left" if col == "class" else "right")
    for i, c in enumerate(classes):
        vals = [[r["metrics"]["per_class"][i][m] for r in scored] for m in ("precision", "recall", "f1")]
        pc.add_row(c, *[f"{np.mean(v):.2f}" for v in vals], str(scored[0]["metrics"]["per_class"][i]["support"]))
    console.print(pc)

    subj = Table(title="Per subject accuracy" + (" (mean over runs)" if len(scored) > 1 else ""))
    subj.add_column("subject")
    subj.add_column("samples", justify="right")
    subj.add_column("accuracy", justify="right")
    for s in scored[0]["done_folds"]:
        accs = [f["accuracy"] for r in scored for f in r["folds"] if f["subject"] == s]
        n = next(f["n"] for f in scored[0]["folds"] if f["subject"] == s)
        subj.add_row(s, str(n), f"{np.mean(accs):.2f}")
    console.print(subj)

    cm = summed_confusion(report)
    ct = Table(title="Confusion matrix (rows true, columns predicted"
                     + (f", summed over {len(scored)} runs)" if len(scored) > 1 else ")"))
    ct.add_column("true \\ predicted")
    for c in classes:
        ct.add_column(c, justify="right")
    for c, row in zip(classes, cm):
        ct.add_row(c, *[str(int(v)) for v in row])
    console.print(ct)

    render_au_detection(scored, console)

    best_runs = [r for r in scored if r["best_on_test"]]
    if best_runs:
        console.print(_headline_table(f"{SELECT_LABEL.upper()}: NOT AN ESTIMATE",
                                      [r["best_on_test"] for r in best_runs], [Path(r["run"]).name for r in best_runs],
                                      report.get("best_on_test_aggregate"), "mean ± std"))
        console.print(f"{SELECT_LABEL}: each fold's epoch was chosen on its own test subject, so these figures "
                      f"are optimistic; they are reported apart and never mixed with the figures above.")
    for r in runs:
        if r.get("best_on_test_note"):
            console.print(f"{r['run']}: {r['best_on_test_note']}")
    if report.get("published_note"):
        console.print(report["published_note"])
    if report.get("published"):
        from mertool.reports.published import render_standing

        render_standing(report["published"], console)
        if report["published"].get("data_note"):
            console.print(report["published"]["data_note"])


def render_calibration(scored: list[dict], console) -> None:
    """Expected calibration error before and after temperature scaling, one line per run."""
    for r in scored:
        cal = r.get("calibration")
        if not cal:
            continue
        temps = list(cal["folds"].values())
        console.print(f"calibration ({Path(r['run']).name}): ECE {cal['ece_before']:.3f} before, {cal['ece_after']:.3f} "
                      f"after temperature scaling (per-fold T {min(temps):.2f}-{max(temps):.2f}, each fitted on the "
                      f"other subjects' held-out predictions; final model T {cal['final']:.2f}); NLL "
                      f"{cal['nll_before']:.3f} -> {cal['nll_after']:.3f}")


def render_by_dataset(report: dict, console) -> None:
    """UF1 and UAR of the composite and of each source dataset (the columns of MEGC tables), one row each; for
    several runs of one recipe, mean ± std over them."""
    from rich.table import Table

    scored = [r for r in report["runs"] if r["metrics"]]
    if not scored:
        return
    datasets = sorted({d for r in scored for d in (r.get("by_dataset") or {})})
    seeds = len(scored) > 1 and report.get("aggregate")
    t = Table(title="UF1 and UAR by dataset (pooled LOSO predictions, last epoch)")
    for col in ("dataset", "samples", "UF1", "UAR"):
        t.add_column(col, justify="left" if col == "dataset" else "right")
    runs = scored if seeds else scored[:1]
    for name in ["composite"] + datasets:
        rows = [r["metrics"] if name == "composite" else (r.get("by_dataset") or {}).get(name) for r in runs]
        rows = [m for m in rows if m]
        cells = []
        for k in ("uf1", "uar"):
            v = np.asarray([m[k] for m in rows])
            cells.append(f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v[0]:.4f}")
        t.add_row(name, str(rows[0]["n"]), *cells)
    console.print(t)
    from mertool.data.include import report_lines

    for line in report_lines(scored[0].get("include")):  # the official list: clips missing, extra clips left out
        console.print(line, soft_wrap=True)
    if len(scored) > 1 and not seeds:
        console.print(f"(of {Path(scored[0]['run']).name} only: the runs differ in more than the seed)")
