"""The demo's spotting row: synthetic long videos -> spotting cache -> both spotters -> MEGC F1 -> STR.

    row = spotting_demo(out / "spotting", model=out / "runs" / "estimated", seed=0)

Cheap on purpose (the whole demo has a time goal): three subjects with one 20 s video each at 30 fps, the
learned spotter trained leave-one-subject-out with recipes/spot_demo.yaml (three folds), STR with the demo's
estimated-AU recognition model classifying every true-positive interval. Re-running keeps the videos and the cache
when they were made with the same settings, and the spotter's finished folds.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

SUBJECTS, SECONDS = 3, 20.0


def spotting_demo(out, model, seed: int = 0, workers: int = 2, console=None, progress: bool = False) -> dict:
    """Run the spotting part of the demo into `out`; returns the row (F1s, STR, times)."""
    from mertool.spotting.cache import build_spot_cache, load_spot_cache
    from mertool.spotting.learned import evaluate_spotting_run, resolve_recipe, train_loso_spotting
    from mertool.spotting.megc import score_spotting
    from mertool.spotting.peaks import PeakSpotter
    from mertool.spotting.recognise import str_evaluate
    from mertool.spotting.synth import MANIFEST, is_complete, settings_key, synth_long
    from mertool.recipe import find_recipe, read_yaml

    say = console.print if console is not None else (lambda *a, **k: None)
    out = Path(out)
    data, cache, run = out / "data", out / "long.spot.h5", out / "runs" / "spot_demo"
    times = {}
    t = time.perf_counter()
    settings = settings_key(SUBJECTS, 1, SECONDS, 30.0, seed, None, True)
    fresh = not is_complete(data, settings)
    if fresh:
        s = synth_long(data, subjects=SUBJECTS, seconds=SECONDS, seed=seed, workers=workers, progress=progress)
        say(f"      synth --long: {s['videos']} videos, {s['micro']} micro, {s['macro']} macro, {s['blink']} blinks")
    times["synth"] = time.perf_counter() - t
    t = time.perf_counter()
    if fresh or not cache.is_file():
        for stale in (cache, run):
            if stale.is_file():
                stale.unlink()
            elif stale.is_dir():
                import shutil
                shutil.rmtree(stale)
        rep = build_spot_cache(data, out=cache, workers=workers, progress=progress)
        say(f"      spot-cache: {rep['frames']} frames at {rep['frames_per_second']} frames/s")
    times["features"] = time.perf_counter() - t
    spot = load_spot_cache(cache)
    manifest = json.loads((data / MANIFEST).read_text())
    t = time.perf_counter()
    free = [iv for v, f in spot.videos.items() for iv in PeakSpotter().spot(f, v, spot.subjects[v])]
    free_score = score_spotting(free, spot.gt, spot.fps)
    times["training_free"] = time.perf_counter() - t
    t = time.perf_counter()
    path = find_recipe("spot_demo")
    recipe = resolve_recipe(read_yaml(path), str(path), [f"train.seed={seed}"])
    train_loso_spotting(recipe, cache, run)
    learned = evaluate_spotting_run(run)
    times["learned"] = time.perf_counter() - t
    t = time.perf_counter()
    classes = {(v["video"], e["onset"], e["offset"]): e["emotion"] for v in manifest["videos"] for e in v["events"]}
    strr = str_evaluate(run, model, classes)
    times["str"] = time.perf_counter() - t
    row = {"videos": len(spot.videos), "seconds_each": SECONDS, "ground_truth": len(spot.gt),
           "training_free": {k: free_score.figures()[k]["f1"] for k in ("micro", "macro", "overall")},
           "learned": {k: learned[k]["f1"] for k in ("micro", "macro", "overall")},
           "str": strr["str"]["overall"]["str"], "str_uf1": strr["str"]["overall"]["uf1"],
           "str_pairs": strr["pairs"], "run": str(run), "cache": str(cache),
           "times": {k: round(v, 1) for k, v in times.items()}}
    return row


def print_row(row: dict, console) -> None:
    """The spotting table of the demo's closing output."""
    from rich.table import Table

    t = Table(title=f"spotting: {row['videos']} synthetic long videos of {row['seconds_each']:g} s "
                    f"({row['ground_truth']} expressions; MEGC F1, IoU >= 0.5)")
    for c in ("spotter", "micro F1", "macro F1", "overall F1", "STR"):
        t.add_column(c, justify="left" if c == "spotter" else "right")

    def f(v):
        return "-" if v is None else f"{v:.3f}"
    tf, le = row["training_free"], row["learned"]
    t.add_row("training-free (motion peaks)", f(tf["micro"]), f(tf["macro"]), f(tf["overall"]), "")
    t.add_row("learned (temporal CNN, LOSO)", f(le["micro"]), f(le["macro"]), f(le["overall"]),
              f"{f(row['str'])} (UF1 {f(row['str_uf1'])} on {row['str_pairs']} pairs)")
    console.print(t)
