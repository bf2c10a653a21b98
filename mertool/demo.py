"""`mertool demo`: the whole pipeline on the synthetic demo set, with each of the three AU sources.

    summary = demo("demo_out")          # synth -> preprocess -> train-loso demo x 3 AU sources -> evaluate -> spotting

Layout of the output folder:

    demo_out/data/                      synthetic CASME II (CASME2-RAW/, CASME2-coding-synthetic.xlsx, synth.json)
    demo_out/demo.h5 (+ .json)          the aligned cache and its preprocess report
    demo_out/runs/oracle/               LOSO run of recipes/demo.yaml, hand-coded AUs (folds/, confusion.png, ...)
    demo_out/runs/estimated/            the same with model.aus=estimated, and its final model (final/model.pt)
    demo_out/runs/none/                 the same with model.aus=none
    demo_out/unseen/                    clips of one more synthetic subject, rendered after training and never
                                        trained on (the "next" commands classify these, and one still pair)
    demo_out/spotting/                  synthetic long videos, their spotting cache and the learned spotter's run
    demo_out/demo.json                  the results, the machine's matmul rate, settings and step times

Re-running resumes: the data set is kept when it was made with the same settings, the cache when it was made from
that data, and finished folds are skipped (train-loso's own resume).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from mertool.data.aus import au_source_text
from mertool.errors import MertoolError
from mertool.files import write_json

SUBJECTS = 8
PER_SUBJECT = 20
# (run name, the AU source in the words every report uses, --set overrides, train the final model for `predict`)
VARIANTS = (("oracle", au_source_text("oracle"), ("model.aus=oracle",), False),
            ("estimated", au_source_text("estimated"), ("model.aus=estimated",), True),
            ("none", au_source_text("none"), ("model.aus=none",), False))
STATE = ".demo-state.json"
UNSEEN = "unseen"
UNSEEN_CLIPS = 3
UNSEEN_SEED = 1000   # added to the demo's seed: another identity draw than any training subject's


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_state(out: Path) -> dict:
    try:
        return json.loads((out / STATE).read_text())
    except (OSError, ValueError):
        return {}


def _remove_runs(runs: Path) -> None:
    """Run folders trained on other data (only folders that are mertool runs are removed)."""
    for name, *_ in VARIANTS:
        d = runs / name
        if (d / "run.json").is_file():
            shutil.rmtree(d)


def _slots(device: str, workers: int) -> tuple[int, int | None]:
    """(folds at a time, CPU threads each): on CPU the cores this process may use are split between folds; one fold
    at a time on a GPU."""
    from mertool.training.parallel import usable_cpus
    from mertool.training.train import resolve_device

    if resolve_device(device).type != "cpu":
        return 1, None
    cores = usable_cpus()
    folds = max(1, min(workers, cores))
    return folds, max(1, cores // folds)


def train_all(recipes: dict, cache: Path, runs: Path, *, device: str, workers: int, console,
              progress: bool, rate: dict | None = None) -> None:
    """Every variant's LOSO run (resumed where its folder exists) through one pool of workers."""
    from mertool.training.parallel import train_runs_parallel

    folds, threads = _slots(device, workers)
    try:
        train_runs_parallel([(recipes[name], runs / name, final) for name, _, _, final in VARIANTS], cache,
                            devices=device, folds_per_device=folds, threads=threads, console=console,
                            progress=progress, rate=rate)
    except MertoolError as exc:
        raise MertoolError(f"{exc} (or delete {runs} to train it again)") from None


def _train_seconds(run: dict, run_dir: Path) -> float:
    """The run's folds' (and final model's) own training times, summed: the variants share the pool's wall time."""
    from mertool.training.runs import final_path, read_fold_summary

    final = read_fold_summary(final_path(run_dir)).get("seconds") or 0.0
    return sum(f.get("seconds") or 0.0 for f in run["folds"]) + final


def report_run(recipe: dict, run_dir: Path, console) -> dict:
    """A run's evaluation report, confusion picture and AU F1 chart (report.json in the run folder)."""
    from mertool.reports.evaluate import au_f1_png, confusion_png, evaluate_runs, render, summed_confusion

    report = evaluate_runs([run_dir])
    report["published"] = None  # synthetic clips in CASME II's layout: the published CASME II table does not apply
    cm = summed_confusion(report)
    report["png"] = str(confusion_png(cm, report["classes"], run_dir / "confusion.png",
                                      f"{recipe.get('name', 'demo')}: LOSO confusion, last epoch"))
    au_png = au_f1_png(report, run_dir / "au_f1.png")
    report["au_png"] = str(au_png) if au_png else None
    cal = report["runs"][0].get("calibration")
    if cal:
        from mertool.reports.calibration import calibration_png

        report["calibration_png"] = str(calibration_png(cal, run_dir / "calibration.png",
                                                        f"{recipe.get('name', 'demo')}: reliability, pooled LOSO"))
    render(report, console)
    write_json(run_dir / "report.json", report)
    return report


def demo(out="demo_out", subjects: int = SUBJECTS, per_subject: int = PER_SUBJECT, seed: int = 0, recipe: str = "demo",
         faces=None, workers: int = 2, device: str = "auto", console=None, progress: bool = True,
         spotting: bool = True) -> dict:
    """Run the demo into `out` and return its summary (also written to OUT/demo.json)."""
    from rich.console import Console

    from mertool.bench import matmul_rate
    from mertool.cache.preprocess import preprocess, print_summary
    from mertool.recipe import find_recipe, load_recipe
    from mertool.synth.faces import MANIFEST, check_settings, is_complete, make_folder, settings_key, synth
    from mertool.training.train import resolve_device

    console = console or Console(markup=False, soft_wrap=True)  # paths stay whole lines
    t_start = time.perf_counter()
    check_settings(subjects, per_subject)
    out = make_folder(out)
    data, cache, runs = out / "data", out / "demo.h5", out / "runs"
    recipe_path = find_recipe(recipe)
    recipes = {name: load_recipe(recipe_path, list(extra) + [f"train.seed={seed}"]) for name, _, extra, _ in VARIANTS}
    times: dict[str, float] = {}
    state = _read_state(out)
    steps = 5 if spotting else 4
    # the machine's own dense rate, measured in this run: timings mean little without it (machines differ 3x)
    dev = resolve_device(device)
    rate = matmul_rate(dev, min_seconds=0.2)
    console.print(f"machine: {dev.type}, dense {rate['dtype']} matmul {rate['flops'] / 1e9:.0f} GFLOP/s")

    t = time.perf_counter()
    settings = settings_key(subjects, per_subject, seed, faces)
    if is_complete(data, settings):
        console.print(f"[1/{steps}] synth: {data} already holds this data set (same settings), kept")
    else:
        console.print(f"[1/{steps}] synth: {subjects} subjects x {per_subject} clips -> {data}")
        s = synth(data, faces=faces, subjects=subjects, per_subject=per_subject, seed=seed, workers=workers,
                  progress=progress)
        console.print(f"      {s['samples']} clips, {s['frames']} frames in {s['seconds']:.1f} s")
    times["synth"] = time.perf_counter() - t

    t = time.perf_counter()
    source = _digest(data / MANIFEST)
    if cache.is_file() and state.get("cache_source") == source:
        console.print(f"[2/{steps}] preprocess: {cache} was made from this data set, kept")
    else:
        console.print(f"[2/{steps}] preprocess: {data} -> {cache}")
        _remove_runs(runs)  # trained on other data: their folds would not match the new cache
        summary = preprocess(data, out=cache, workers=workers, progress=progress)
        print_summary(summary, console)
        state["cache_source"] = source
        write_json(out / STATE, state)
    times["preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    console.print(f"[3/{steps}] train-loso {recipe_path.name}, one run per AU source, in one pool of workers:")
    for name, title, extra, final in VARIANTS:
        console.print(f"      --set {' '.join(extra)}{' --final' if final else ''}: {title} -> {runs / name}")
    train_all(recipes, cache, runs, device=device, workers=workers, console=console, progress=progress, rate=rate)
    times["train"] = time.perf_counter() - t

    t = time.perf_counter()
    console.print(f"[4/{steps}] evaluate: {', '.join(str(runs / name) for name, *_ in VARIANTS)}")
    results = {}
    for name, title, _extra, _final in VARIANTS:
        run_dir = runs / name
        report = report_run(recipes[name], run_dir, console)
        run = report["runs"][0]
        m, det = run["metrics"], run.get("au_detection") or {}
        results[name] = {"title": run["au_source"]["text"], "run": str(run_dir), "confusion_png": report["png"],
                         "au_png": report.get("au_png"), "accuracy": m["accuracy"], "uf1": m["uf1"],
                         "uar": m["uar"], "n": m["n"], "au_mean_f1": det.get("mean_f1"),
                         "intervals": run.get("intervals"),
                         "ece": [(run.get("calibration") or {}).get(k) for k in ("ece_before", "ece_after")],
                         "au_counted": len(det.get("aus_counted") or []),
                         "train_seconds": round(_train_seconds(run, run_dir), 1)}
    times["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    unseen = out / UNSEEN
    settings = settings_key(1, UNSEEN_CLIPS, seed + UNSEEN_SEED, faces)
    if not is_complete(unseen, settings):
        synth(unseen, faces=faces, subjects=1, per_subject=UNSEEN_CLIPS, seed=seed + UNSEEN_SEED, workers=1)
    checks = unseen_checks(unseen, runs / "estimated")
    times["unseen"] = time.perf_counter() - t
    if spotting:
        t = time.perf_counter()
        console.print(f"[5/{steps}] spotting: synthetic long videos -> spot-cache -> both spotters -> MEGC F1 -> STR")
        from mertool.spotting.demo import spotting_demo
        spotting = spotting_demo(out / "spotting", runs / "estimated", seed=seed, workers=workers, console=console)
        times["spotting"] = time.perf_counter() - t
    else:
        spotting = None

    total = time.perf_counter() - t_start
    # measured again after the work: a shared or throttled machine can read low at the start (96 vs 160 seen here)
    rate_end = matmul_rate(dev, min_seconds=0.2)
    summary = {"out": str(out), "data": str(data), "cache": str(cache), "recipe": str(recipe_path),
               "settings": {"subjects": subjects, "per_subject": per_subject, "seed": seed,
                            "faces": str(faces) if faces else "default (astronaut, Grace Hopper)",
                            "device": device, "workers": workers},
               "machine": {"device": dev.type, "matmul_gflops": round(rate["flops"] / 1e9, 1),
                           "matmul_gflops_end": round(rate_end["flops"] / 1e9, 1), "matmul_dtype": rate["dtype"]},
               "results": results, "spotting": spotting, "seconds": {k: round(v, 1) for k, v in times.items()},
               "total_seconds": round(total, 1), "chance": 1 / 5,
               "au_threshold": 0.5, "au_min_support": 10, "next": next_commands(out, unseen, runs),
               "unseen_checks": checks}
    write_json(out / "demo.json", summary)
    print_demo(summary, console)
    return summary


def print_demo(summary: dict, console) -> None:
    """The closing table: each variant's pooled LOSO figures, and where everything was written."""
    from rich.table import Table

    table = Table(title=f"mertool demo: leave-one-subject-out on {summary['settings']['subjects']} synthetic subjects "
                        f"(chance {summary['chance']:.2f})")
    for col in ("AU source", "accuracy", "UF1", "UAR", "AU F1", "samples", "training"):
        table.add_column(col, justify="left" if col == "AU source" else "right")
    for r in summary["results"].values():
        au = "-" if r.get("au_mean_f1") is None else f"{r['au_mean_f1']:.3f}"
        ci = (r.get("intervals") or {}).get("accuracy")
        acc = f"{r['accuracy']:.2f}" + (f" [{ci['lo']:.2f}, {ci['hi']:.2f}]" if ci else "")
        table.add_row(r["title"], acc, f"{r['uf1']:.2f}", f"{r['uar']:.2f}", au, str(r["n"]),
                      f"{r['train_seconds']:.0f} s")
    console.print(table)
    console.print("accuracy [lo, hi]: 95 % interval, bootstrap over the subjects; synthetic faces: not comparable "
                  "with results published on real datasets")
    for name, r in summary["results"].items():
        if (r.get("ece") or [None])[0] is not None:
            console.print(f"calibration {name}: ECE {r['ece'][0]:.3f} -> {r['ece'][1]:.3f} after temperature scaling "
                          f"({Path(r['run']) / 'calibration.png'})")
    console.print(f"AU F1: the AU head's mean F1 on held-out subjects over AUs with >= {summary['au_min_support']} "
                  f"positives (threshold {summary['au_threshold']}); training: the run's folds' own times, summed "
                  "(the runs shared one pool of workers)")
    if summary.get("spotting"):
        from mertool.spotting.demo import print_row
        print_row(summary["spotting"], console)
    console.print(f"data set:   {summary['data']}")
    console.print(f"cache:      {summary['cache']}")
    for r in summary["results"].values():
        console.print(f"run:        {r['run']}  (confusion: {r['confusion_png']})")
    console.print(f"summary:    {Path(summary['out']) / 'demo.json'}")
    m = summary.get("machine") or {}
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in summary["seconds"].items())
    rates = f"{m.get('matmul_gflops', 0):.0f}" + (f" at the start, {m['matmul_gflops_end']:.0f} at the end"
                                                   if m.get("matmul_gflops_end") else "")
    console.print(f"total time: {summary['total_seconds']:.0f} s ({steps}) on a {m.get('device', '?')} whose "
                  f"{m.get('matmul_dtype', '?')} matmul measured {rates} GFLOP/s")
    for c in summary.get("unseen_checks") or []:
        console.print(f"unseen {c['what']}: {c['answer']} (true: {c['truth']})")
    if summary.get("next"):
        console.print("next, with the estimated-AU model (no FACS coding needed), on clips of a subject it never "
                      "saw (rendered after training, another identity):")
        for line in summary["next"]:
            console.print(f"  {line}")


def _unseen_samples(unseen: Path) -> list[dict]:
    try:
        return json.loads((unseen / "synth.json").read_text())["samples"]
    except (OSError, ValueError, KeyError):
        return []


def _clip_folder(unseen: Path, s: dict) -> Path:
    return unseen / "CASME2-RAW" / f"sub{s['subject']}" / s["sample_id"]


def next_commands(out: Path, unseen: Path, runs: Path) -> list[str]:
    """Three ready-to-run predict commands on the unseen subject's clips: a whole clip (spotting, estimated AUs,
    --explain), another clip's onset and apex frames as an image pair, and two still frames before an onset (no
    motion: "cannot judge")."""
    samples = _unseen_samples(unseen)
    model = runs / "estimated"
    cmds = []
    for i, s in enumerate(samples[:2]):
        folder = _clip_folder(unseen, s)
        if i == 0:
            cmds.append(f"mertool predict {folder} --model {model} --explain {out / 'why.png'}")
        else:
            onset, apex = folder / f"img{s['onset']}.jpg", folder / f"img{s['apex']}.jpg"
            cmds.append(f"mertool predict {onset} {apex} --model {model}")
    if samples:
        s = samples[-1]
        still, onset = (_clip_folder(unseen, s) / f"img{s[k]}.jpg" for k in ("first", "onset"))
        cmds.append(f"mertool predict {still} {onset} --model {model}   # two still frames: no motion")
    return cmds


def unseen_checks(unseen: Path, model: Path) -> list[dict]:
    """The final estimated-AU model on the unseen subject: one onset/apex pair and one still pair (two neutral
    frames before an onset), each with what predict answers (a class with its calibrated probability, or cannot
    judge and why) beside the truth."""
    from mertool.predict.predictor import Predictor

    samples = _unseen_samples(unseen)
    if len(samples) < 2 or not (model / "final").is_dir():
        return []
    predictor = Predictor(model)
    out = []
    for what, s, a, b, truth in (("pair", samples[1], "onset", "apex", samples[1]["emotion"]),
                                 ("still pair", samples[-1], "first", "onset", "no motion")):
        folder = _clip_folder(unseen, s)
        p = predictor.predict_pair(folder / f"img{s[a]}.jpg", folder / f"img{s[b]}.jpg")
        answer = (f"{p.emotion} {p.probabilities[p.emotion]:.2f}" if p.emotion is not None
                  else f"cannot judge ({p.verdict.reason})")
        out.append({"what": f"{what} {s['sample_id']} img{s[a]} -> img{s[b]}", "answer": answer, "truth": truth,
                    "emotion": p.emotion, "code": None if p.judged else p.verdict.code})
    return out
