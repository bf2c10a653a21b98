"""The learned spotter: a small temporal convolutional network scoring every frame as none / micro / macro.

    mertool train-loso spot_demo --cache long.spot.h5 --out runs/spot_demo      # recipes/spot_demo.yaml
    mertool evaluate runs/spot_demo                                             # MEGC figures + log
    mertool spot video.mp4 --spotter runs/spot_demo

Input per frame (`frame_inputs`): for every region of the spotting cache, its displacement minus the median of the
`window` seconds before and minus the median of the `window` seconds after (the two sides peaks.py takes the
smaller of), 4 numbers a region, and the head's frame-to-frame motion (3); gaps are zeros. Sequences are
resampled to the recipe's `fps` first, so one model serves 30 and 200 fps data. The network: a 1x1 input
projection, `layers` residual blocks of dilated 3-tap convolutions (dilation 1, 2, 4, ...: a receptive field of
about 2^layers frames either side), a 1x1 head with 3 outputs. Training: random windows of `window_seconds`
from the training subjects' videos, cross-entropy with the classes weighted by inverse frequency (micro frames are
rare), AdamW. Blinks are frames of class none: the network learns to pass over them.

Decoding (`LearnedSpotter.spot`): expression probability p(micro) + p(macro), smoothed; runs above `threshold`
within a shot, at least `min_seconds` long, are intervals; the apex is the run's strongest facial motion
(peaks.curves), the type is by duration (micro <= 0.5 s, as MEGC types the ground truth), the score the run's
mean probability.

Run folder: RUN/recipe.yaml, RUN/folds/<subject>/{model.pt, intervals.csv, summary.json}, RUN/intervals.csv (all
folds), RUN/megc_log.txt and RUN/spotting.json (written by `evaluate`), RUN/final/model.pt (--final).
"""
from __future__ import annotations

import copy
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mertool import files
from mertool.errors import MertoolError
from mertool.spotting.features import REGION_NAMES, VideoFeatures
from mertool.spotting.intervals import Interval, read_intervals_csv, type_from_duration, write_intervals_csv

TASK = "spotting"
CLASSES = ("none", "micro", "macro")
DEFAULTS = {
    "task": TASK, "name": "", "description": "",
    "features": {"window": 3.0, "fps": 30.0},
    "model": {"hidden": 32, "layers": 5, "dropout": 0.1},
    "train": {"epochs": 20, "steps_per_epoch": 15, "batch_size": 8, "window_seconds": 5.0, "lr": 3.0e-3,
              "weight_decay": 1.0e-4, "seed": 0},
    "decode": {"threshold": 0.5, "min_seconds": 0.1, "sigma": 1.0},
}
_SPECS = {("features", "window"): (float, 0.2, 60.0), ("features", "fps"): (float, 5.0, 1000.0),
          ("model", "hidden"): (int, 4, 1024), ("model", "layers"): (int, 1, 12), ("model", "dropout"): (float, 0, .9),
          ("train", "epochs"): (int, 1, 10000), ("train", "steps_per_epoch"): (int, 1, 100000),
          ("train", "batch_size"): (int, 1, 4096), ("train", "window_seconds"): (float, 0.5, 600.0),
          ("train", "lr"): (float, 1e-8, 1.0), ("train", "weight_decay"): (float, 0.0, 10.0),
          ("train", "seed"): (int, 0, 2**31 - 1), ("decode", "threshold"): (float, 0.0, 1.0),
          ("decode", "min_seconds"): (float, 0.0, 10.0), ("decode", "sigma"): (float, 0.0, 50.0)}


# ------------------------------------------------------------------------------------------------ recipe

def is_spotting_recipe(raw: dict) -> bool:
    return isinstance(raw, dict) and raw.get("task") == TASK


def resolve_recipe(raw: dict, source: str = "recipe", overrides=()) -> dict:
    """Defaults filled in, every key and value checked (unknown keys name the key and the file)."""
    from mertool.recipe import apply_overrides

    raw = apply_overrides(copy.deepcopy(raw), overrides) if overrides else copy.deepcopy(raw)
    raw.pop("extends", None)
    out = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        if key not in out:
            raise MertoolError(f"{source}: unknown key {key!r} in a spotting recipe (expected {', '.join(out)})")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise MertoolError(f"{source}: {key} must be a mapping")
            for k, v in value.items():
                if k not in out[key]:
                    raise MertoolError(f"{source}: unknown key {key}.{k} (expected {', '.join(out[key])})")
                kind, lo, hi = _SPECS[(key, k)]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and int(v) != v):
                    what = "an integer" if kind is int else "a number"
                    raise MertoolError(f"{source}: {key}.{k} = {v!r}: expected {what}")
                if not lo <= v <= hi:
                    raise MertoolError(f"{source}: {key}.{k} = {v}: expected {lo} to {hi}")
                out[key][k] = kind(v)
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------------ inputs

def frame_inputs(features: VideoFeatures, window: float) -> np.ndarray:
    """C x N float32 network input of one video at its own frame rate (see the module docstring)."""
    from scipy.ndimage import median_filter

    track, shot, fps = features.track, features.shot, features.fps
    n, r, _ = track.shape
    x = np.zeros((n, r, 4), np.float32)
    head = np.zeros((n, 3), np.float32)
    w = max(3, int(round(window * fps))) | 1
    for s in np.unique(shot[shot >= 0]):
        idx = np.flatnonzero(shot == s)
        if len(idx) < 3:
            continue
        seg = track[idx].astype(np.float64)
        before = np.concatenate([seg[:1], median_filter(seg, size=(w, 1, 1), origin=(w // 2, 0, 0),
                                                        mode="nearest")[:-1]])
        after = np.concatenate([median_filter(seg, size=(w, 1, 1), origin=(-(w // 2), 0, 0), mode="nearest")[1:],
                                seg[-1:]])
        x[idx, :, :2], x[idx, :, 2:] = seg - before, seg - after
        h = features.head[idx].astype(np.float64)
        head[idx[1:]] = np.diff(h, axis=0) * (30.0 / fps)     # per 1/30 s, so rates compare across data sets
    out = np.concatenate([x.reshape(n, -1), head], 1)
    return np.clip(np.nan_to_num(out), -20, 20).T.astype(np.float32)


def frame_labels(features: VideoFeatures, gt: list[Interval]) -> np.ndarray:
    """int64 N: 0 none, 1 micro, 2 macro (inside a ground-truth interval)."""
    y = np.zeros(len(features.numbers), np.int64)
    nums = features.numbers
    for g in gt:
        y[(nums >= g.onset) & (nums <= g.offset)] = 1 if g.type == "micro" else 2
    return y


def resample(a: np.ndarray, src_fps: float, dst_fps: float, nearest: bool = False) -> np.ndarray:
    """... x N sequence at src_fps -> ... x M at dst_fps (linear, or nearest for labels and masks)."""
    if abs(src_fps - dst_fps) < 1e-6:
        return a
    n = a.shape[-1]
    m = max(1, int(round(n * dst_fps / src_fps)))
    pos = np.arange(m) * (src_fps / dst_fps)
    if nearest:
        return a[..., np.clip(np.round(pos).astype(int), 0, n - 1)]
    lo = np.clip(np.floor(pos).astype(int), 0, n - 1)
    hi = np.clip(lo + 1, 0, n - 1)
    t = (pos - lo).astype(np.float32)
    return a[..., lo] * (1 - t) + a[..., hi] * t


# ------------------------------------------------------------------------------------------------ network

class _Block(nn.Module):
    def __init__(self, c: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(c, c, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return x + self.mix(self.drop(F.gelu(self.conv(x))))


class SpotNet(nn.Module):
    """Frame inputs C x N -> 3 x N logits (none, micro, macro)."""

    def __init__(self, in_channels: int, hidden: int = 32, layers: int = 5, dropout: float = 0.1):
        super().__init__()
        self.config = {"in_channels": in_channels, "hidden": hidden, "layers": layers, "dropout": dropout}
        self.inp = nn.Conv1d(in_channels, hidden, 1)
        self.blocks = nn.Sequential(*[_Block(hidden, 2 ** i, dropout) for i in range(layers)])
        self.out = nn.Conv1d(hidden, len(CLASSES), 1)

    def forward(self, x):
        return self.out(self.blocks(F.gelu(self.inp(x))))


# ------------------------------------------------------------------------------------------------ training

def _prepare(data, videos: list[str], recipe: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    fps = recipe["features"]["fps"]
    out = []
    for v in videos:
        f = data.videos[v]
        x = resample(frame_inputs(f, recipe["features"]["window"]), f.fps, fps)
        y = resample(frame_labels(f, data.gt_of(v)), f.fps, fps, nearest=True)
        out.append((x, y))
    return out


@contextmanager
def _one_thread():
    """Run torch on one CPU thread for the block. The temporal CNN's ops are too small to split between threads: on
    the 2-core machine shared with other work, 4 epochs of the demo spotter took 2.3 s on one thread and 10-31 s on
    two (OpenMP's threads waiting on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_model(seqs: list[tuple[np.ndarray, np.ndarray]], recipe: dict, seed: int) -> SpotNet:
    """Fit a SpotNet on (inputs, labels) sequences (see the module docstring), on one CPU thread (_one_thread)."""
    with _one_thread():
        return _train_model(seqs, recipe, seed)


def _train_model(seqs: list[tuple[np.ndarray, np.ndarray]], recipe: dict, seed: int) -> SpotNet:
    tr, mc = recipe["train"], recipe["model"]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SpotNet(seqs[0][0].shape[0], mc["hidden"], mc["layers"], mc["dropout"])
    counts = np.bincount(np.concatenate([y for _, y in seqs]), minlength=len(CLASSES)).astype(np.float64)
    weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(CLASSES), dtype=torch.float32).clamp(max=50)
    opt = torch.optim.AdamW(model.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"])
    total = tr["epochs"] * tr["steps_per_epoch"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tr["lr"], total_steps=total, pct_start=0.2)
    win = max(8, int(round(tr["window_seconds"] * recipe["features"]["fps"])))
    lengths = np.array([y.shape[0] for _, y in seqs], np.float64)
    model.train()
    for _ in range(total):
        xb, yb = [], []
        for _ in range(tr["batch_size"]):
            k = int(torch.multinomial(torch.tensor(lengths), 1, generator=g))
            x, y = seqs[k]
            n = len(y)
            if n <= win:
                pad = win - n
                xb.append(np.pad(x, ((0, 0), (0, pad))))
                yb.append(np.pad(y, (0, pad), constant_values=-100))
                continue
            s = int(torch.randint(0, n - win + 1, (1,), generator=g))
            xb.append(x[:, s:s + win])
            yb.append(y[s:s + win])
        logits = model(torch.from_numpy(np.stack(xb)))
        loss = F.cross_entropy(logits, torch.from_numpy(np.stack(yb)), weight=weight, ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model


class LearnedSpotter:
    """A trained SpotNet with its recipe: spots intervals in a video's features."""

    name = "learned (temporal CNN)"

    def __init__(self, model: SpotNet, recipe: dict, path: str = ""):
        self.model, self.recipe, self.path = model, recipe, path
        if path:
            self.name = f"learned ({path})"

    @classmethod
    def load(cls, path) -> "LearnedSpotter":
        p = Path(path)
        if p.is_dir():
            for cand in (p / "final" / "model.pt", *sorted((p / "folds").glob("*/model.pt"))):
                if cand.is_file():
                    p = cand
                    break
            else:
                raise MertoolError(f"{path}: no spotter model in this run folder (expected final/model.pt from "
                                   f"train-loso --final, or folds/*/model.pt)")
        if not p.is_file():
            raise MertoolError(f"{path}: no such spotter run folder or model file")
        try:
            ckpt = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise MertoolError(f"{p}: cannot be read as a spotter model ({type(exc).__name__})") from None
        if not isinstance(ckpt, dict) or ckpt.get("task") != TASK:
            raise MertoolError(f"{p}: not a spotter model (a recognition model classifies pairs; --spotter needs a "
                               f"run of train-loso with a spotting recipe)")
        model = SpotNet(**ckpt["config"])
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        return cls(model, ckpt["recipe"], str(path))

    def checkpoint(self) -> dict:
        return {"task": TASK, "config": self.model.config, "state_dict": self.model.state_dict(),
                "recipe": self.recipe, "classes": list(CLASSES)}

    @torch.no_grad()
    def probabilities(self, features: VideoFeatures) -> np.ndarray:
        """3 x N class probabilities at the video's own frame rate (zero expression in gaps)."""
        fps = self.recipe["features"]["fps"]
        x = resample(frame_inputs(features, self.recipe["features"]["window"]), features.fps, fps)
        p = torch.softmax(self.model(torch.from_numpy(np.ascontiguousarray(x))[None]), 1)[0].numpy()
        p = resample(p, fps, features.fps)
        n = len(features.numbers)
        if p.shape[1] < n:
            p = np.pad(p, ((0, 0), (0, n - p.shape[1])), mode="edge")
        p = p[:, :n]
        p[1:, features.gaps] = 0.0
        p[0, features.gaps] = 1.0
        return p

    def curve(self, features: VideoFeatures) -> tuple[np.ndarray, float]:
        from scipy.ndimage import gaussian_filter1d

        p = self.probabilities(features)
        e = p[1] + p[2]
        s = self.recipe["decode"]["sigma"]
        e = gaussian_filter1d(e, s) if s > 0 else e
        e = e.astype(np.float32)
        e[features.gaps] = np.nan
        return e, self.recipe["decode"]["threshold"]

    def spot(self, features: VideoFeatures, video: str, subject: str | None = None) -> list[Interval]:
        from mertool.spotting.peaks import _runs, curves

        e, thr = self.curve(features)
        motion, _ = curves(features)
        nums, fps = features.numbers, features.fps
        min_len = max(2, int(round(self.recipe["decode"]["min_seconds"] * fps)))
        out = []
        for start, stop in _runs(np.nan_to_num(e, nan=0.0) > thr, features.shot):
            if stop - start < min_len:
                continue
            seg = np.nan_to_num(motion[start:stop], nan=-1.0)
            apex = start + int(np.argmax(seg))
            onset, offset = int(nums[start]), int(nums[stop - 1])
            out.append(Interval(video, onset, offset, int(nums[apex]), type_from_duration(onset, offset, fps),
                                round(float(np.nanmean(e[start:stop])), 4), subject))
        return out


# ------------------------------------------------------------------------------------------------ LOSO

def train_loso_spotting(recipe: dict, cache, out, subjects: str | list[str] | None = "all", final: bool = False,
                        console=None) -> dict:
    """One fold per held-out subject of a spotting cache; every fold's intervals into RUN/intervals.csv."""
    from mertool.recipe import save_recipe
    from mertool.spotting.cache import load_spot_cache
    from mertool.training.runs import fold_dirname

    data = load_spot_cache(cache)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "recipe.yaml"
    if saved.is_file():
        from mertool.recipe import read_yaml
        old = read_yaml(saved)
        if old != json.loads(json.dumps(recipe)):
            raise MertoolError(f"{out}: holds a run of another spotting recipe; choose another --out")
    else:
        save_recipe(recipe, saved)
    files.write_json(out / "run.json", {"task": TASK, "cache": str(Path(cache).resolve()), "dataset": data.dataset,
                                        "fps": data.fps})
    by_subject: dict[str, list[str]] = {}
    for v in sorted(data.videos):
        by_subject.setdefault(data.subjects[v], []).append(v)
    everyone = sorted(by_subject)
    if len(everyone) < 2:
        raise MertoolError(f"{cache}: {len(everyone)} subject(s); leave-one-subject-out needs at least 2")
    chosen = everyone if subjects in (None, "all") else [s.strip() for s in
                                                         (subjects.split(",") if isinstance(subjects, str)
                                                          else subjects)]
    for s in chosen:
        if s not in by_subject:
            raise MertoolError(f"--subjects {s}: not a subject of {cache} (subjects: {', '.join(everyone)})")
    seed = recipe["train"]["seed"]
    for i, s in enumerate(chosen):
        fold = out / "folds" / fold_dirname(s)
        if (fold / "summary.json").is_file():
            continue
        t0 = time.perf_counter()
        train_videos = [v for t in everyone if t != s for v in by_subject[t]]
        model = train_model(_prepare(data, train_videos, recipe), recipe, seed + everyone.index(s))
        spotter = LearnedSpotter(model, recipe)
        pred = [iv for v in by_subject[s] for iv in spotter.spot(data.videos[v], v, s)]
        fold.mkdir(parents=True, exist_ok=True)
        files.write_bytes(fold / "model.pt", _ckpt_bytes(spotter.checkpoint()))
        write_intervals_csv(fold / "intervals.csv", pred)
        files.write_json(fold / "summary.json", {"subject": s, "videos": by_subject[s], "intervals": len(pred),
                                                 "train_videos": len(train_videos),
                                                 "seconds": round(time.perf_counter() - t0, 2)})
        if console is not None:
            console.print(f"fold {i + 1}/{len(chosen)} subject {s}: {len(pred)} intervals "
                          f"({time.perf_counter() - t0:.1f} s)", markup=False, highlight=False)
    done = [out / "folds" / fold_dirname(s) for s in everyone if (out / "folds" / fold_dirname(s) /
                                                                  "summary.json").is_file()]
    allp = [iv for d in done for iv in read_intervals_csv(d / "intervals.csv")]
    write_intervals_csv(out / "intervals.csv", allp)
    if final and not (out / "final" / "model.pt").is_file():
        model = train_model(_prepare(data, sorted(data.videos), recipe), recipe, seed)
        (out / "final").mkdir(exist_ok=True)
        files.write_bytes(out / "final" / "model.pt", _ckpt_bytes(LearnedSpotter(model, recipe).checkpoint()))
    return {"run": str(out), "folds_done": len(done), "folds": len(everyone), "intervals": len(allp)}


def train_spotting_cli(recipe, cache, out, subjects, overrides, seed, final, console) -> bool:
    """`train-loso` with a spotting recipe: train and report, True; any other recipe: False (nothing done)."""
    from mertool.recipe import find_recipe, read_yaml

    if recipe is None:
        return False
    path = find_recipe(recipe)
    raw = read_yaml(path)
    if not is_spotting_recipe(raw):
        return False
    if cache is None:
        raise MertoolError(f"{path}: a spotting recipe needs --cache SPOT.h5 (made by `mertool spot-cache`)")
    overrides = list(overrides) + ([f"train.seed={seed}"] if seed is not None else [])
    r = resolve_recipe(raw, str(path), overrides)
    out = Path(out) if out is not None else Path("runs") / f"{path.stem}-seed{r['train']['seed']}"
    res = train_loso_spotting(r, cache, out, subjects, final, console)
    console.print(f"{res['folds_done']}/{res['folds']} folds done, {res['intervals']} intervals in "
                  f"{out / 'intervals.csv'}; next: mertool evaluate {out}", markup=False, highlight=False)
    return True


def _ckpt_bytes(ckpt: dict) -> bytes:
    import io
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


def is_spotting_run(path) -> bool:
    p = Path(path) / "run.json"
    try:
        return json.loads(p.read_text()).get("task") == TASK
    except (OSError, ValueError, AttributeError):
        return False


def evaluate_spotting_run(run, cache=None) -> dict:
    """MEGC figures of a spotting run's held-out intervals against its cache's ground truth; writes
    RUN/megc_log.txt and RUN/spotting.json."""
    from mertool.spotting.cache import load_spot_cache
    from mertool.spotting.megc import DatasetGT, evaluate

    run = Path(run)
    info = json.loads((run / "run.json").read_text())
    data = load_spot_cache(cache or info["cache"])
    folds = [json.loads(p.read_text()) for p in sorted((run / "folds").glob("*/summary.json"))]
    videos = {v for f in folds for v in f["videos"]}
    pred = read_intervals_csv(run / "intervals.csv") if (run / "intervals.csv").is_file() else []
    gt = DatasetGT(data.dataset, [g for g in data.gt if g.video in videos], data.fps, videos)
    report = evaluate(pred, gt, log_path=run / "megc_log.txt")
    report.update(run=str(run), dataset=data.dataset, folds=len(folds), videos=len(videos),
                  log=str(run / "megc_log.txt"))
    files.write_json(run / "spotting.json", report)
    return report


def render_spotting_report(report: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"spotting {report['run']} ({report['dataset']}, {report['folds']} folds, "
                    f"{report['videos']} videos; MEGC IoU >= 0.5)")
    for c in ("", "TP", "predicted", "ground truth", "precision", "recall", "F1"):
        t.add_column(c, justify="left" if not c else "right")
    for k in ("micro", "macro", "overall"):
        r = report[k]
        t.add_row(k, str(r["tp"]), str(r["predicted"]), str(r["ground_truth"]),
                  *("-" if r[x] is None else f"{r[x]:.3f}" for x in ("precision", "recall", "f1")))
    console.print(t)
    console.print(f"MEGC log: {report['log']}", markup=False, highlight=False)
