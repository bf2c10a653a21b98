"""The spotting cache: per video and per frame, the facial-motion features of features.py, with the sheet's facts.

    summary = build_spot_cache("/data/CASME_sq", out="casme_sq.spot.h5", workers=2)
    data = load_spot_cache("casme_sq.spot.h5")
    data.videos["15_0401"].track, data.gt, data.fps

Layout (HDF5, schema 1; about 170 bytes a frame, so SAMM Long Videos' ~1M frames take ~170 MB rather than
150 GB of 224^2 crops):
  /videos/<id>/numbers   int64 N          frame numbers as the data set numbers them
  /videos/<id>/track     float32 N x R x 2 region displacement, crop px since the shot's first frame (NaN = gap)
  /videos/<id>/head      float32 N x 3    head shift x, y (crop px), rotation (deg) vs the shot's first frame
  /videos/<id>/quality   float32 N        NCC of the registered face against its anchor
  /videos/<id>/shot      int32 N          shot index; -1 = no face (a gap)
      attrs: subject, frames (the folder), seconds, detections
  /gt/{video,type,emotion,aus,subject} utf-8, /gt/{onset,apex,offset} int64 (apex -1 = none): the expressions
  /blinks/{video} utf-8, /blinks/{onset,offset} int64
  attrs: format 'mertool-spotting', schema_version, dataset, title, fps (the data set's frame rate), regions (JSON
         list), features (JSON: how the features were made), sheet, mertool_version, created, summary (JSON)

Resuming: each finished video is first written alone, atomically, to `<out>.parts/<id>.npz`; the cache is
assembled from the parts into a temporary file that is renamed over `<out>`, and the parts are removed after.
An interrupted run leaves its finished videos in `.parts/`; `--resume` keeps them (and the videos of an existing
`<out>`), so nothing finished is computed twice or lost. A video whose frames are missing or unreadable is
skipped and listed in the report (`<out>.json`, like preprocess's).
"""
from __future__ import annotations

import json
import multiprocessing
import shutil
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mertool import __version__, files
from mertool.errors import MertoolError
from mertool.spotting.features import REGION_NAMES, VideoFeatures
from mertool.spotting.intervals import Interval

FORMAT = "mertool-spotting"
SCHEMA_VERSION = 1
_ARRAYS = ("numbers", "track", "head", "quality", "shot")


def is_spot_cache(path) -> bool:
    """A file written by build_spot_cache (checked by its format attribute, not its name)."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except (OSError, ValueError):
        return False


def report_path(out) -> Path:
    return Path(str(out) + ".json")


def parts_dir(out) -> Path:
    return Path(str(out) + ".parts")


# ------------------------------------------------------------------------------------------------ building

_WORKER: dict = {}


def _init_worker(settings: dict) -> None:
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    _WORKER["settings"] = settings


def _work(task: tuple) -> tuple:
    """One video: ('ok', id, part path, seconds) or ('skip', id, reason)."""
    from mertool.spotting.apex import FrameSource
    from mertool.spotting.features import MotionTracker

    video, folder, parts = task
    try:
        tracker = MotionTracker(**_WORKER["settings"])
        feats = tracker.run(FrameSource(folder))
    except MertoolError as exc:
        return "skip", video, str(exc)
    except Exception as exc:   # dlib or OpenCV refusing a frame: the run goes on, the video is listed
        return "skip", video, f"{folder}: {type(exc).__name__}: {exc}"
    path = Path(parts) / f"{video}.npz"
    save_part(path, feats)
    return "ok", video, str(path), feats.seconds


def save_part(path: Path, feats: VideoFeatures) -> None:
    import io
    buf = io.BytesIO()
    np.savez(buf, **{k: getattr(feats, k) for k in _ARRAYS}, fps=feats.fps, seconds=feats.seconds,
             detections=feats.detections)
    files.write_bytes(path, buf.getvalue())


def load_part(path: Path) -> VideoFeatures:
    with np.load(path) as z:
        return VideoFeatures(*(z[k] for k in _ARRAYS), float(z["fps"]), float(z["seconds"]), int(z["detections"]))


def build_spot_cache(dataset_dir, out=None, kind: str | None = None, resume: bool = False, workers: int = 2,
                     size: int = 128, register: str = "landmarks", anchor_seconds: float = 1.0,
                     progress: bool = False, videos: list[str] | None = None) -> dict:
    """Features of every video of a long-video data set (sheet + frames) -> one spotting cache; returns the report."""
    from mertool.datasets.longvideo import load_long_videos

    t0 = time.perf_counter()
    data = load_long_videos(dataset_dir, kind=kind)
    out = Path(out) if out is not None else Path(f"{data.dataset}.spot.h5")
    parts = parts_dir(out)
    if out.exists() and not resume:
        raise MertoolError(f"{out}: exists; pass --resume to keep its videos and add the rest, or choose --out")
    if parts.exists() and not resume:
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    settings = {"fps": data.fps, "size": size, "register": register, "anchor_seconds": anchor_seconds}
    done: dict[str, VideoFeatures] = {}
    if resume and out.exists() and is_spot_cache(out):
        old = load_spot_cache(out)
        if old.features.get("size") == size and old.features.get("register") == register:
            done.update(old.videos)
    for p in sorted(parts.glob("*.npz")) if resume else []:
        try:
            done[p.stem] = load_part(p)
        except (OSError, ValueError, KeyError):
            p.unlink()       # a part is written atomically; an unreadable one is recomputed
    wanted = sorted(data.videos) if videos is None else [v for v in videos if v in data.videos]
    skipped = {v: "no frames folder found" for v in wanted if data.videos[v].frames is None}
    tasks = [(v, str(data.videos[v].frames), str(parts)) for v in wanted if v not in done and v not in skipped]
    kept = len([v for v in wanted if v in done])
    new_frames = 0
    for status, video, *rest in _run(tasks, settings, workers, progress):
        if status == "ok":
            done[video] = load_part(Path(rest[0]))
            new_frames += len(done[video].numbers)
        else:
            skipped[video] = rest[0]
    report = _report(data, out, done, skipped, kept, len(tasks), workers, time.perf_counter() - t0, new_frames,
                     settings)
    _assemble(out, data, done, settings, report)
    files.write_json(report_path(out), report)
    shutil.rmtree(parts, ignore_errors=True)
    return report


def _run(tasks, settings: dict, workers: int, progress: bool):
    from mertool.synth.faces import _progress

    if not tasks:
        return
    if workers <= 1:
        _WORKER["settings"] = settings
        yield from _progress((_work(t) for t in tasks), progress, len(tasks))
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker,
                             initargs=(settings,)) as ex:
        yield from _progress(ex.map(_work, tasks), progress, len(tasks))


def _report(data, out: Path, done: dict, skipped: dict, kept: int, computed: int, workers: int, seconds: float,
            new_frames: int, settings: dict) -> dict:
    frames = {v: int(len(f.numbers)) for v, f in done.items()}
    gaps = {v: f.gap_ranges() for v, f in done.items() if f.gaps.any()}
    return {"cache": str(out), "dataset": data.dataset, "title": data.title, "sheet": str(data.sheet),
            "fps": data.fps, "videos_in_sheet": len(data.videos), "videos_cached": len(done),
            "already_cached": kept, "computed_now": computed - len(skipped), "skipped": skipped,
            "frames": int(sum(frames.values())), "gap_frames": int(sum(int(f.gaps.sum()) for f in done.values())),
            "gaps": {v: [list(r) for r in g] for v, g in gaps.items()},
            "shots": {v: int(f.shot.max()) + 1 for v, f in done.items()},
            "expressions": len(data.expressions), "blinks": len(data.blinks),
            "seconds": round(seconds, 2), "workers": workers,
            "frames_per_second": round(new_frames / seconds, 1) if new_frames and seconds > 0 else None,
            "features": settings}


def _assemble(out: Path, data, done: dict, settings: dict, report: dict) -> None:
    """Write the whole cache to a temporary file and rename it over `out`."""
    import h5py

    s = h5py.string_dtype("utf-8")
    with files.temporary_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(format=FORMAT, schema_version=SCHEMA_VERSION, dataset=data.dataset, title=data.title,
                           fps=float(data.fps), regions=json.dumps(list(REGION_NAMES)), sheet=str(data.sheet),
                           features=json.dumps({**settings, **_describe(settings)}), mertool_version=__version__,
                           created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           summary=json.dumps(report))
            g = f.create_group("videos")
            for video in sorted(done):
                feats, v = done[video], g.create_group(video)
                for k in _ARRAYS:
                    v.create_dataset(k, data=getattr(feats, k), compression="gzip", compression_opts=4)
                info = data.videos.get(video)
                v.attrs.update(subject=info.subject if info else "", frames=str(info.frames) if info else "",
                               seconds=float(feats.seconds), detections=int(feats.detections))
            ex = data.expressions
            gt = f.create_group("gt")
            for k in ("video", "type", "subject"):
                gt.create_dataset(k, data=[str(getattr(e.interval, k) or "") for e in ex], dtype=s)
            gt.create_dataset("emotion", data=[e.emotion for e in ex], dtype=s)
            gt.create_dataset("aus", data=[e.aus for e in ex], dtype=s)
            for k in ("onset", "apex", "offset"):
                gt.create_dataset(k, data=np.array([_int(getattr(e.interval, k)) for e in ex], np.int64))
            b = f.create_group("blinks")
            b.create_dataset("video", data=[iv.video for iv in data.blinks], dtype=s)
            for k in ("onset", "offset"):
                b.create_dataset(k, data=np.array([getattr(iv, k) for iv in data.blinks], np.int64))


def _describe(settings: dict) -> dict:
    """The tracker's full settings (regions, flow, alignment) without loading a video."""
    from mertool.spotting.features import FLOW, REGIONS

    return {"flow": "farneback", "flow_params": FLOW, "regions": REGIONS,
            "anchor_frames": max(2, int(round(settings["anchor_seconds"] * settings["fps"])))}


def _int(v) -> int:
    return -1 if v is None else int(v)


# ------------------------------------------------------------------------------------------------ reading

@dataclass
class SpotData:
    """A spotting cache in memory."""

    path: Path
    dataset: str
    fps: float
    videos: dict[str, VideoFeatures]
    subjects: dict[str, str]               # video -> subject
    gt: list[Interval]
    emotions: list[str]                    # parallel to gt
    blinks: list[Interval]
    features: dict
    attrs: dict

    def gt_of(self, video: str) -> list[Interval]:
        return [g for g in self.gt if g.video == video]


def load_spot_cache(path) -> SpotData:
    """Read a whole spotting cache (a few hundred MB at most; a wrong file is one line)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise MertoolError(f"{path}: no such spotting cache (make one with `mertool spot-cache DATASET_DIR`)")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise MertoolError(f"{path}: not a spotting cache (made by `mertool spot-cache`); a recognition "
                                   f"cache from `mertool preprocess` holds face pairs, not per-frame motion")
            if int(f.attrs["schema_version"]) > SCHEMA_VERSION:
                raise MertoolError(f"{path}: spotting cache schema {f.attrs['schema_version']} is newer than this "
                                   f"mertool reads ({SCHEMA_VERSION}); upgrade mertool")
            fps = float(f.attrs["fps"])
            videos, subjects = {}, {}
            for vid, g in f["videos"].items():
                videos[vid] = VideoFeatures(*(g[k][:] for k in _ARRAYS), fps, float(g.attrs["seconds"]),
                                            int(g.attrs["detections"]))
                subjects[vid] = str(g.attrs["subject"])
            gt, emotions = [], []
            t = {k: f["gt"][k][:] for k in f["gt"]}
            for i in range(len(t["onset"])):
                apex = int(t["apex"][i])
                gt.append(Interval(_s(t["video"][i]), int(t["onset"][i]), int(t["offset"][i]),
                                   apex if apex >= 0 else None, _s(t["type"][i]) or None, None,
                                   _s(t["subject"][i]) or None))
                emotions.append(_s(t["emotion"][i]))
            b = {k: f["blinks"][k][:] for k in f["blinks"]}
            blinks = [Interval(_s(v), int(on), int(off)) for v, on, off in zip(b["video"], b["onset"], b["offset"])]
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            return SpotData(path, str(attrs["dataset"]), fps, videos, subjects, gt, emotions, blinks,
                            json.loads(attrs["features"]), attrs)
    except (OSError, KeyError) as exc:
        raise MertoolError(f"{path}: damaged spotting cache ({exc})") from None


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def spot_cache_info(path) -> dict:
    """What `mertool cache info` prints for a spotting cache."""
    d = load_spot_cache(path)
    frames = sum(len(f.numbers) for f in d.videos.values())
    gaps = sum(int(f.gaps.sum()) for f in d.videos.values())
    types = {t: sum(g.type == t for g in d.gt) for t in ("micro", "macro")}
    return {"path": str(path), "kind": "spotting", "bytes": Path(path).stat().st_size, "dataset": d.dataset,
            "title": d.attrs.get("title"), "fps": d.fps, "videos": len(d.videos),
            "subjects": len(set(d.subjects.values())), "frames": frames, "gap_frames": gaps,
            "hours": round(frames / d.fps / 3600, 3), "expressions": len(d.gt), **types, "blinks": len(d.blinks),
            "regions": json.loads(d.attrs["regions"]), "features": d.features,
            "created": d.attrs.get("created"), "mertool_version": d.attrs.get("mertool_version"),
            "sheet": d.attrs.get("sheet")}


def print_report(report: dict, console=None) -> None:
    """The end-of-run table of `mertool spot-cache`."""
    from rich.console import Console

    from mertool.facts_table import facts_table, run_time

    console = console or Console()
    rows = [("videos in sheet", report["videos_in_sheet"]), ("videos cached", report["videos_cached"]),
            ("computed now", report["computed_now"]), ("already cached (--resume)", report["already_cached"]),
            ("skipped", len(report["skipped"])), ("frames", report["frames"]),
            ("frames without a face (gaps)", report["gap_frames"]), ("frame rate of the data set", report["fps"]),
            ("expressions / blinks in sheet", f"{report['expressions']} / {report['blinks']}"),
            ("time", run_time(report["seconds"], report.get("frames_per_second"), report["workers"])),
            ("cache", report["cache"]), ("report", str(report_path(report["cache"])))]
    console.print(facts_table(f"spotting cache {report['dataset']}", rows))
    for video, reason in list(report["skipped"].items())[:10]:
        console.print(f"skipped {video}: {reason}", markup=False, highlight=False)


def print_spot_cache_info(path, console) -> None:
    """`mertool cache info` of a spotting cache."""
    from mertool.facts_table import facts_table

    info = spot_cache_info(path)
    feats = info["features"]
    rows = [("kind", "spotting (per-frame facial motion of long videos)"),
            ("dataset", f"{info['dataset']} ({info['title']})"), ("frame rate", f"{info['fps']:g} fps"),
            ("videos", info["videos"]), ("subjects", info["subjects"]),
            ("frames", f"{info['frames']} ({info['hours']:.2f} h)"), ("frames without a face (gaps)",
                                                                      info["gap_frames"]),
            ("expressions", f"{info['expressions']} (micro {info['micro']}, macro {info['macro']})"),
            ("blinks", info["blinks"]), ("regions", ", ".join(info["regions"])),
            ("features", f"crop {feats['size']} px, register {feats['register']}, {feats['flow']} flow against an "
                         f"anchor re-set every {feats['anchor_frames']} frames"),
            ("sheet", info["sheet"]), ("mertool_version", info["mertool_version"]), ("created", info["created"]),
            ("file size", f"{info['bytes'] / 2**20:.1f} MiB")]
    console.print(facts_table(str(path), rows))
