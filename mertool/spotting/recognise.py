"""Spot-then-recognise: every spotted interval's (onset, predicted apex) pair classified by a recognition model.

    result = predict_long("interview.mp4", Predictor("runs/casme2"))          # mertool predict LONG_VIDEO
    report = str_evaluate("runs/spot_demo", "runs/demo-oracle")                 # STR of a spotting run

The pair is cut and registered exactly as `mertool predict` cuts an onset/apex pair (the recognition model's own
alignment settings); its AUs are the model's own estimate when it has an AU head, otherwise none (a long video
comes without hand-coded AUs). STR = spotting F1 x UF1 of the classes predicted for the true-positive intervals,
scored by mertool.spotting.megc.evaluate_str (str_evaluate classifies the true positives and hands them over); the
ground-truth class of an interval is its sheet's emotion, or a class given per interval (the synthetic videos'
classes, from synth_long.json).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mertool.errors import MertoolError
from mertool.spotting.intervals import Interval


def read_frames(source, numbers: set[int]) -> dict[int, np.ndarray]:
    """The frames with these numbers, read in one pass (a video file is decoded once)."""
    want = set(int(n) for n in numbers)
    if source.files is not None:
        from mertool.face.align import read_rgb
        return {n: read_rgb(source.files[source.index(n)]) for n in want}
    out = {}
    for num, rgb in zip(source.numbers, source):
        if num in want:
            out[num] = rgb
            if len(out) == len(want):
                break
    return out


def classify_intervals(intervals: list[Interval], source, predictor) -> list[dict]:
    """For every interval: its class, probability and all probabilities (or the reason it could not be cut), and
    how its apex was registered (align.Registration.to_dict(), as `predict`'s JSON gives it; None unregistered)."""
    from mertool.face.align import AlignSkip

    need = {iv.onset for iv in intervals} | {iv.apex if iv.apex is not None else iv.onset for iv in intervals}
    frames = read_frames(source, need)
    # no FACS coding per interval: the AU head's estimate (thresholded for a model trained on hand-coded AUs)
    aus = predictor.aus("auto" if predictor.has_au_head else None)
    out = []
    for iv in intervals:
        apex = iv.apex if iv.apex is not None else (iv.onset + iv.offset) // 2
        rec = {"interval": iv, "class": None, "probability": None, "probabilities": None, "registration": None,
               "error": ""}
        try:
            pair = predictor.aligner.align_pair(frames[iv.onset], frames[apex], name=f"{iv.video} frame {iv.onset}")
            if pair.registration is not None:
                rec["registration"] = pair.registration.to_dict()
            probs, _, _ = predictor.classify(pair.onset, pair.apex, aus)
            k = int(np.argmax(probs))
            rec.update({"class": predictor.classes[k], "probability": float(probs[k]),
                        "probabilities": {c: round(float(p), 6) for c, p in zip(predictor.classes, probs)}})
        except (AlignSkip, KeyError) as exc:
            rec["error"] = str(exc)
        out.append(rec)
    return out


def predict_long(path, predictor, spotter=None, fps: float | None = None, progress=None) -> dict:
    """`mertool predict LONG_VIDEO`: spot every interval, classify each; returns a JSON-ready dict with the
    outcome of the spotting (key `outcome`, not JSON) for the timeline."""
    from mertool.spotting.apex import FrameSource
    from mertool.spotting.video import interval_dict, spot_video

    outcome = spot_video(path, spotter, fps, progress)
    rows = classify_intervals(outcome.intervals, FrameSource(path), predictor)
    items = []
    for r in rows:
        d = interval_dict(r["interval"], outcome.fps)
        d.update({"class": r["class"], "probability": None if r["probability"] is None else
                  round(r["probability"], 4), "probabilities": r["probabilities"], "registration": r["registration"]})
        if r["error"]:
            d["error"] = r["error"]
        items.append(d)
    spot = outcome.to_dict()
    return {"source": str(path), "model": str(predictor.model_path), "classes": predictor.classes,
            "aus_source": _au_source(predictor), "intervals": items,
            "spotting": {k: v for k, v in spot.items() if k != "intervals"}, "outcome": outcome}


def predict_long_cli(src, model, spotter, as_json: bool, plot, device: str, err) -> None:
    """`mertool predict LONG_VIDEO --model RUN`: the timeline and the table, or one JSON object."""
    import json
    import sys

    from rich.console import Console
    from rich.progress import Progress

    from mertool.predict.predictor import Predictor
    from mertool.spotting.video import plot_timeline

    predictor = Predictor(model, device=device)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("spotting", total=None)
        result = predict_long(src, predictor, spotter, progress=lambda i, n: bar.update(task, completed=i, total=n))
    if plot is not None:
        plot_timeline(result["outcome"], plot)
        err.print(f"wrote timeline plot {plot}")
    outcome = result.pop("outcome")
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    result["outcome"] = outcome
    render_long(result, Console())


def render_long(result: dict, console) -> None:
    """The timeline and one row per interval: onset, apex, offset, type, class, probability; then the warnings of
    registrations refused or doubtful (as `predict` prints a pair's)."""
    from rich.markup import escape
    from rich.table import Table

    from mertool.face.align import registration_warnings
    from mertool.spotting.video import render_timeline

    render_timeline(result["outcome"], console)
    t = Table(title=f"spot-then-recognise ({Path(result['model']).name}, AUs: {result['aus_source']})")
    for c in ("onset", "apex", "offset", "type", "class", "probability"):
        t.add_column(c, justify="left" if c in ("type", "class") else "right")
    for d in result["intervals"]:
        t.add_row(str(d["onset"]), str(d["apex"]), str(d["offset"]), d["type"] or "",
                  d["class"] or f"({d.get('error', '')[:40]})",
                  "" if d["probability"] is None else f"{d['probability']:.2f}")
    console.print(t)
    for d in result["intervals"]:
        if d.get("registration"):
            for line in registration_warnings(f"interval {d['onset']}-{d['offset']}", d["registration"]):
                console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)


def str_evaluate(spot_run, model, gt_classes: dict[tuple[str, int, int], str] | None = None, device: str = "cpu"
                 ) -> dict:
    """STR of a spotting run: its true positives classified by `model` (a recognition run or checkpoint), scored by
    mertool.spotting.megc.evaluate_str (the one STR implementation).

    Ground-truth classes: `gt_classes[(video, onset, offset)]`, else the sheet's emotion of the interval, both
    mapped onto the model's classes by its recipe's class map when they are raw names. A ground truth with neither
    leaves its pair out of the recognition F1 (counted under 'unlabelled'), as evaluate_str does. Only the true
    positives are classified (a false positive's class never enters STR), so the spotting is matched first."""
    import json
    from dataclasses import replace

    from mertool.predict.predictor import Predictor
    from mertool.spotting.apex import FrameSource
    from mertool.spotting.cache import load_spot_cache
    from mertool.spotting.intervals import read_intervals_csv
    from mertool.spotting.megc import DatasetGT, evaluate_str, score_spotting

    run = Path(spot_run)
    info = json.loads((run / "run.json").read_text())
    data = load_spot_cache(info["cache"])
    folds = [json.loads(p.read_text()) for p in sorted((run / "folds").glob("*/summary.json"))]
    videos = {v for f in folds for v in f["videos"]}
    pred = read_intervals_csv(run / "intervals.csv")
    gt = DatasetGT(data.dataset, [g for g in data.gt if g.video in videos], data.fps, videos)
    score = score_spotting(pred, gt)
    predictor = Predictor(model, device=device)
    to_class = _class_map(predictor)
    emotion = {(g.video, g.onset, g.offset): e for g, e in zip(data.gt, data.emotions)}
    said, truth = {}, {}
    by_video: dict[str, list] = {}
    for p, g in score.true_positives():
        by_video.setdefault(p.video, []).append((p, g))
    for video, items in by_video.items():
        src = FrameSource(_frames_folder(data, video))
        recs = classify_intervals([p for p, _ in items], src, predictor)
        for (p, g), r in zip(items, recs):
            said[replace(p, type=None)] = r["class"] or "(not classified)"
            raw = (gt_classes or {}).get((g.video, g.onset, g.offset), emotion.get((g.video, g.onset, g.offset), ""))
            if raw:
                truth[g] = to_class(raw)
    gt.classes = truth
    # a prediction that is no true positive gets no class: evaluate_str reads classes of true positives only
    out = evaluate_str([(p, said.get(replace(p, type=None), "")) for p in pred], gt, classes=predictor.classes)
    return {"spotting": {k: out[k] for k in ("micro", "macro", "overall")}, "str": out["str"],
            "pairs": out["str"]["overall"]["pairs"], "unlabelled": out["unlabelled"],
            "model": str(predictor.model_path), "classes": predictor.classes}


def _frames_folder(data, video: str) -> Path:
    import h5py
    with h5py.File(data.path, "r") as f:
        folder = f["videos"][video].attrs.get("frames", "")
    if not folder or not Path(folder).exists():
        raise MertoolError(f"{data.path}: the frames of {video} are not at {folder!r} any more; STR classifies "
                           f"frames, so the data set must be where the spotting cache was made from")
    return Path(folder)


def _class_map(predictor):
    """Raw emotion name -> the model's class (its recipe's class map), or the name itself when it is a class."""
    from mertool.data.aus import normalize_emotion

    classes = (predictor.ckpt.get("recipe") or {}).get("data", {}).get("classes") or {}
    table = {normalize_emotion(raw): cls for cls, raws in classes.items() for raw in raws}

    def to_class(raw: str) -> str:
        if raw in predictor.classes:
            return raw
        return table.get(normalize_emotion(raw), raw)
    return to_class


def _au_source(predictor) -> str:
    """What the classifier read for every interval (classify_intervals): estimated, estimated-thresholded or none."""
    from mertool.predict.predictor import au_source_name

    return au_source_name(predictor.aus("auto")) if predictor.has_au_head else "none"
