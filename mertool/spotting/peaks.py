"""The training-free spotter: peaks of facial motion above a threshold set by each video's own noise.

    intervals = PeakSpotter().spot(features, video="spNO.1_a")

1. Expression strength per region and frame (`region_strength`): how far the region lies from where it was before
   AND from where it will be after. A region's displacement track (features.py) is compared with its median over
   the `window` seconds before the frame and over the `window` seconds after it; the smaller of the two distances
   counts. An expression departs and comes back, so both distances are large inside it; a lasting change (a step
   left by a quick head turn, or a chained-flow error) is far from one side only and scores nothing. Expressions
   up to `window` seconds long keep the medians on their neutral surroundings.
2. Face curve: the mean of the `top` strongest non-lid regions (an expression moves a few regions, noise moves all
   a little); lid regions give the eye curve (blinks).
3. Threshold relative to the video: median + `k` robust standard deviations (1.4826 x MAD) of the face curve over
   the quieter half of the video's tracked frames (a video may be expressive half the time), never below
   `min_px`. Intervals are the runs above `low` (a share of the way from
   the median to the threshold: hysteresis, so an interval reaches down its rise and fall) that peak above the
   threshold; the apex is the run's strongest frame.
4. A run whose eye curve peaks above `blink_ratio` times its face curve and that lasts at most `blink_seconds` is a
   blink, dropped. Micro or macro by duration (micro <= 0.5 s from onset to offset). Runs never cross a gap or a
   new shot (the track restarts there).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mertool.spotting.features import EYE_REGIONS, REGION_NAMES, VideoFeatures
from mertool.spotting.intervals import Interval, type_from_duration

FACE_REGIONS = tuple(r for r in REGION_NAMES if r not in EYE_REGIONS and r != "bridge")


def region_strength(track: np.ndarray, shot: np.ndarray, fps: float, window: float = 3.0) -> np.ndarray:
    """N x R expression strength (crop px) from an N x R x 2 track; 0 in gaps (see the module docstring)."""
    from scipy.ndimage import median_filter

    n, r, _ = track.shape
    out = np.zeros((n, r), np.float32)
    w = max(3, int(round(window * fps))) | 1     # odd: a window of w frames strictly before (after)
    for s in np.unique(shot[shot >= 0]):
        idx = np.flatnonzero(shot == s)
        seg = track[idx].astype(np.float64)
        if len(idx) < 3:
            continue
        # median over the w frames strictly before / after each frame; at the shot's ends the nearest values repeat
        before = median_filter(seg, size=(w, 1, 1), origin=(w // 2, 0, 0),
                               mode="nearest")
        before = np.concatenate([seg[:1], before[:-1]])
        after = median_filter(seg, size=(w, 1, 1), origin=(-(w // 2), 0, 0), mode="nearest")
        after = np.concatenate([after[1:], seg[-1:]])
        out[idx] = np.minimum(np.linalg.norm(seg - before, axis=2), np.linalg.norm(seg - after, axis=2))
    return out


def curves(features: VideoFeatures, window: float = 3.0, top: int = 3, sigma: float = 1.0
           ) -> tuple[np.ndarray, np.ndarray]:
    """(face curve, eye curve), smoothed over time, NaN in gaps."""
    from scipy.ndimage import gaussian_filter1d

    strength = region_strength(features.track, features.shot, features.fps, window)
    face = np.sort(strength[:, [REGION_NAMES.index(r) for r in FACE_REGIONS]], axis=1)[:, -top:].mean(1)
    eye = strength[:, [REGION_NAMES.index(r) for r in EYE_REGIONS]].max(1)
    if sigma > 0:
        face, eye = gaussian_filter1d(face, sigma), gaussian_filter1d(eye, sigma)
    face[features.gaps], eye[features.gaps] = np.nan, np.nan
    return face.astype(np.float32), eye.astype(np.float32)


@dataclass
class PeakSpotter:
    """Training-free spotting settings (see the module docstring); the defaults were set on synthetic seed 0."""

    window: float = 3.0          # seconds of neutral surroundings on each side
    top: int = 3
    sigma: float = 1.0           # frames of temporal smoothing
    k: float = 8.0               # threshold: median + k robust sigmas
    min_px: float = 0.15         # ... and never below this (crop px)
    low: float = 0.3             # hysteresis level, share of the way from the median to the threshold
    blink_ratio: float = 1.5
    blink_seconds: float = 0.4

    name = "training-free (motion peaks)"

    def settings(self) -> dict:
        return dict(self.__dict__)

    def curve(self, features: VideoFeatures) -> tuple[np.ndarray, float]:
        """(the face curve, its threshold): what `mertool spot` draws."""
        face, _ = curves(features, self.window, self.top, self.sigma)
        return face, self.threshold(face)[1]

    def threshold(self, face: np.ndarray) -> tuple[float, float]:
        """(median, threshold) of a face curve."""
        v = face[np.isfinite(face)]
        if not len(v):
            return 0.0, float("inf")
        quiet = v[v <= np.median(v)]        # a video may be expressive half the time: its quieter half is noise
        med = float(np.median(quiet))
        mad = float(np.median(np.abs(quiet - med))) * 1.4826
        return med, max(med + self.k * mad, self.min_px)

    def spot(self, features: VideoFeatures, video: str, subject: str | None = None) -> list[Interval]:
        """Intervals of one video (frame numbers as the features carry them)."""
        face, eye = curves(features, self.window, self.top, self.sigma)
        med, thr = self.threshold(face)
        low = med + self.low * (thr - med)
        nums, fps = features.numbers, features.fps
        out = []
        for start, stop in _runs(np.nan_to_num(face, nan=-1.0) > low, features.shot):
            seg = face[start:stop]
            peak = float(seg.max())
            if peak < thr:
                continue
            length = (stop - 1 - start) / fps
            if length <= self.blink_seconds and float(eye[start:stop].max()) > self.blink_ratio * peak:
                continue
            apex = start + int(np.argmax(seg))
            onset, offset = int(nums[start]), int(nums[stop - 1])
            out.append(Interval(video, onset, offset, int(nums[apex]), type_from_duration(onset, offset, fps),
                                round(peak / thr, 4), subject))
        return out


def _runs(mask: np.ndarray, shot: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True that stays within one shot."""
    out, start = [], None
    for i, flag in enumerate(mask):
        if start is not None and (not flag or shot[i] != shot[start]):
            out.append((start, i))
            start = None
        if flag and start is None and shot[i] >= 0:
            start = i
    if start is not None:
        out.append((start, len(mask)))
    return out
