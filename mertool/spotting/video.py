"""Spotting one uncut video or frame folder for a user: intervals, a text timeline and a picture.

    outcome = spot_video("interview.mp4")                      # the training-free spotter
    outcome = spot_video("frames/", spotter="runs/spot_demo", fps=30)   # a learned spotter's run folder
    render_timeline(outcome, console); plot_timeline(outcome, "interview_spot.png")

The video's frame rate comes from the file (a frame folder needs --fps; 30 when not given, said so). Frames without
a face are gaps: listed, drawn grey, and never inside an interval.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mertool.errors import MertoolError
from mertool.spotting.features import VideoFeatures
from mertool.spotting.intervals import Interval

DEFAULT_FPS = 30.0


@dataclass
class SpotOutcome:
    source: str
    video: str
    fps: float
    fps_given: str               # 'file', 'option' or 'default'
    features: VideoFeatures
    intervals: list[Interval]
    curve: np.ndarray            # the spotter's per-frame score (NaN in gaps)
    threshold: float
    spotter: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        f = self.features
        return {"source": self.source, "video": self.video, "fps": self.fps, "fps_from": self.fps_given,
                "frames": int(len(f.numbers)), "first_frame": int(f.numbers[0]), "last_frame": int(f.numbers[-1]),
                "spotter": self.spotter, "threshold": round(float(self.threshold), 4),
                "intervals": [interval_dict(iv, self.fps) for iv in self.intervals],
                "gaps": [list(r) for r in f.gap_ranges()], "shots": int(f.shot.max()) + 1,
                "seconds": round(f.seconds, 2), "frames_per_second": round(len(f.numbers) / f.seconds, 1)
                if f.seconds > 0 else None,
                "curve": [None if not np.isfinite(v) else round(float(v), 4) for v in self.curve],
                "notes": self.notes}


def interval_dict(iv: Interval, fps: float) -> dict:
    return {"onset": iv.onset, "apex": iv.apex, "offset": iv.offset, "type": iv.type, "score": iv.score,
            "seconds": round((iv.offset - iv.onset + 1) / fps, 3)}


def video_fps(path: Path) -> float | None:
    """The frame rate a video file declares (None for a frame folder or when the file gives none)."""
    if path.is_dir():
        return None
    import cv2
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if 1.0 <= fps <= 10000.0 else None


def is_long(path, seconds: float = 4.0) -> bool:
    """More than `seconds` of frames (a frame folder counted at 30 fps): a recording to spot, not one clip."""
    from mertool.spotting.apex import FrameSource

    path = Path(path)
    n = len(FrameSource(path))
    return n > seconds * (video_fps(path) or DEFAULT_FPS)


def load_spotter(spotter=None):
    """The training-free spotter (None) or a learned spotter's run folder / checkpoint."""
    if spotter is None:
        from mertool.spotting.peaks import PeakSpotter
        return PeakSpotter()
    from mertool.spotting.learned import LearnedSpotter
    return LearnedSpotter.load(spotter)


def spot_video(path, spotter=None, fps: float | None = None, progress=None, register: str = "landmarks"
               ) -> SpotOutcome:
    """Track the face through the video, measure its motion, and spot intervals."""
    from mertool.spotting.apex import FrameSource
    from mertool.spotting.features import MotionTracker

    path = Path(path)
    source = FrameSource(path)       # an unreadable video or empty folder is a one-line MertoolError here
    declared = video_fps(path)
    notes = []
    if fps is not None:
        if fps <= 0:
            raise MertoolError(f"--fps {fps}: expected a positive frame rate")
        how = "option"
    elif declared is not None:
        fps, how = declared, "file"
    else:
        fps, how = DEFAULT_FPS, "default"
        notes.append(f"frame rate unknown for a frame folder: {DEFAULT_FPS:g} fps assumed (give --fps)")
    sp = load_spotter(spotter)
    feats = MotionTracker(fps, register=register).run(source, progress)
    if feats.gaps.all():
        raise MertoolError(f"{path}: no face found in any of its {len(feats.numbers)} frames by the dlib detector")
    video = path.stem if path.is_file() else path.name
    intervals = sp.spot(feats, video)
    curve, thr = sp.curve(feats)
    return SpotOutcome(str(path), video, float(fps), how, feats, intervals, curve, thr,
                       getattr(sp, "name", type(sp).__name__), notes)


# ------------------------------------------------------------------------------------------------ output

def timeline_text(outcome: SpotOutcome, width: int = 64) -> list[str]:
    """Three lines: the motion curve as bars, the intervals under it (m micro, M macro), the gaps (x)."""
    bars = "▁▂▃▄▅▆▇█"
    curve = np.asarray(outcome.curve, np.float64)
    n = len(curve)
    edges = np.linspace(0, n, min(width, n) + 1).astype(int)
    top = max(float(np.nanmax(curve)) if np.isfinite(curve).any() else 0.0, outcome.threshold, 1e-9)
    nums = outcome.features.numbers
    line, marks, gaps = [], [], []
    for a, b in zip(edges[:-1], edges[1:]):
        seg = curve[a:b]
        ok = seg[np.isfinite(seg)]
        line.append(bars[int(round(ok.max() / top * (len(bars) - 1)))] if len(ok) else " ")
        gaps.append("x" if outcome.features.gaps[a:b].any() else " ")
        lo, hi = nums[a], nums[b - 1]
        kinds = {iv.type for iv in outcome.intervals if iv.onset <= hi and iv.offset >= lo}
        marks.append("M" if "macro" in kinds else ("m" if "micro" in kinds else "·"))
    return ["".join(line), "".join(marks), "".join(gaps)]


def render_timeline(outcome: SpotOutcome, console) -> None:
    """Intervals table and the text timeline."""
    from rich.table import Table

    f = outcome.features
    for note in outcome.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    console.print(f"{outcome.source}: {len(f.numbers)} frames ({f.numbers[0]}..{f.numbers[-1]}) at "
                  f"{outcome.fps:g} fps, spotter {outcome.spotter}", markup=False, highlight=False)
    line, marks, gaps = timeline_text(outcome)
    console.print(f"motion    {line}", markup=False, highlight=False)
    console.print(f"intervals {marks}", markup=False, highlight=False)
    if f.gaps.any():
        console.print(f"no face   {gaps}", markup=False, highlight=False)
    console.print(f"          frame {f.numbers[0]} .. {f.numbers[-1]}; m = micro, M = macro"
                  + (", x = no face" if f.gaps.any() else ""), markup=False, highlight=False)
    t = Table(title=f"{len(outcome.intervals)} intervals")
    for c in ("onset", "apex", "offset", "type", "score", "seconds"):
        t.add_column(c, justify="left" if c == "type" else "right")
    for iv in outcome.intervals:
        d = interval_dict(iv, outcome.fps)
        t.add_row(str(iv.onset), str(iv.apex), str(iv.offset), iv.type or "", f"{iv.score:.2f}",
                  f"{d['seconds']:.2f}")
    console.print(t)
    for a, b in f.gap_ranges():
        console.print(f"no face in frames {a}..{b} (a gap: not spotted)", markup=False, highlight=False)


def plot_timeline(outcome: SpotOutcome, path, title: str = "") -> Path:
    """PNG of the motion curve with the threshold, the intervals (shaded) and the gaps (grey)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mertool.predict.explain import save_figure

    nums = outcome.features.numbers
    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=110)
    ax.plot(nums, outcome.curve, color="C0", lw=1.2, label="motion")
    ax.axhline(outcome.threshold, color="0.4", ls=":", lw=1, label="threshold")
    colours = {"micro": "C3", "macro": "C2"}
    for iv in outcome.intervals:
        ax.axvspan(iv.onset, iv.offset, color=colours.get(iv.type, "C1"), alpha=0.25, lw=0)
        if iv.apex is not None:
            ax.axvline(iv.apex, color=colours.get(iv.type, "C1"), lw=0.8)
    for a, b in outcome.features.gap_ranges():
        ax.axvspan(a, b, color="0.6", alpha=0.5, lw=0)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.4) for c in ("C3", "C2", "0.6")]
    ax.legend(ax.get_legend_handles_labels()[0] + handles,
              ax.get_legend_handles_labels()[1] + ["micro", "macro", "no face"], fontsize=7, loc="upper right",
              ncol=5)
    ax.set_xlabel("frame")
    ax.set_ylabel("score")
    ax.set_title(title or f"{outcome.source} ({outcome.spotter})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
