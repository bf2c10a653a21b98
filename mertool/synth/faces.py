"""Synthetic micro-expressions on real faces, written in the CASME II layout.

    summary = synth("demo_out/data", subjects=10, seed=0)      # default faces: skimage astronaut, Grace Hopper
    summary = synth("out", faces="photos/", subjects=10)        # any folder of frontal face photos

Each subject is one identity: a base photo (a different one while there are photos left, then the same photos
again) with a lasting change of face shape (a smooth warp of the face landmarks), skin tone, lighting, scale, roll
and background. Its neutral frame goes through the dlib detector and 68-point predictor (`FaceAligner`) once; the
landmarks found there are what the Action Units move.

Motion follows FACS: every AU moves the landmarks it governs (`AU_MOTION`, in 224-px aligned-face units, mapped
into the frame by the inverse of the face chip's transform) while all other landmarks, a ring around the face and
the frame border are fixed anchors. A thin-plate spline through those points (scipy `RBFInterpolator`) gives a
smooth displacement field; every frame samples the neutral face through `amplitude(t) x field` (cv2.remap), plus a
sub-pixel head jitter and sensor noise. The amplitude rises from 0 at the onset to 1 at the apex and falls back to 0
at the offset (half-cosine ramps, 10-30 frames in all); the peak displacement of any landmark is at most `MAX_PX`
(4 px in a 224-px aligned face), a micro-expression's size.

Sides follow the FACS sheets: 'R12' is the subject's right lip corner, which is on the left of the image
(dlib points 48, 36-41, 17-21). Output: `OUT/CASME2-RAW/subNN/EPxx_yy/imgN.jpg`, the coding sheet
`OUT/CASME2-coding-synthetic.xlsx` in the CASME II 2019 layout (read by the CASME II adapter unchanged) and
`OUT/synth.json` with the settings and each sample's ground truth (AUs with sides, apex frame, the displacement of
every moved landmark). Same seed, same settings -> byte-identical files.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import time
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mertool import files
from mertool.data.aus import format_aus
from mertool.errors import MertoolError

FORMAT = "mertool-synth"
VERSION = 1
SHEET_NAME = "CASME2-coding-synthetic.xlsx"
RAW_DIR = "CASME2-RAW"
MANIFEST = "synth.json"
MARKER = ".mertool-synth"          # inside CASME2-RAW: this folder was written by synth (safe to replace)
FRAME_SIZE = 320                   # frames are FRAME_SIZE x FRAME_SIZE
CHIP_RANGE = (200.0, 230.0)        # the face chip's width in the frame (224-px alignment is then near 1:1)
ALIGNED = 224.0                    # displacements are given in a 224-px aligned face
MAX_PX = 4.0                       # peak landmark displacement (aligned px)
AMPLITUDE = (3.0, 4.0)             # per-sample peak, aligned px
JPEG_QUALITY = 92
FIXED_TIME = datetime.datetime(2019, 7, 1, 0, 0, 0)   # sheet metadata and zip entry times (determinism)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
CLASSES = ("happiness", "disgust", "repression", "surprise", "others")

# ---------------------------------------------------------------------------------------------- FACS motion

# dlib-68 mirror pairs: subject's right (image left) -> subject's left (image right)
_MIRROR = {17: 26, 18: 25, 19: 24, 20: 23, 21: 22, 36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46, 31: 35, 32: 34,
           48: 54, 49: 53, 50: 52, 59: 55, 58: 56, 60: 64, 61: 63, 67: 65, **{k: 16 - k for k in range(8)}}
# virtual points (not dlib landmarks), as affine combinations of landmarks: skin that moves with the AUs but has
# no landmark of its own (cheeks, forehead, glabella, nasolabial folds, below the lip corners, chin boss)
VIRTUAL = {"cheek_r": {41: 0.5, 1: 0.25, 31: 0.25}, "cheek_l": {46: 0.5, 15: 0.25, 35: 0.25},
           "chin": {57: 0.5, 8: 0.5},
           "forehead_r": {21: 1.4, 39: -0.4}, "forehead_l": {22: 1.4, 42: -0.4},
           "temple_r": {18: 1.4, 37: -0.4}, "temple_l": {25: 1.4, 44: -0.4},
           "glabella": {21: 0.5, 22: 0.5},
           "fold_r": {31: 0.5, 48: 0.5}, "fold_l": {35: 0.5, 54: 0.5},
           "jowl_r": {48: 0.65, 5: 0.35}, "jowl_l": {54: 0.65, 11: 0.35}}
_VNAMES = tuple(VIRTUAL)
N_POINTS = 68 + len(VIRTUAL)


def _pair(r: int, weight: float, dx: float, dy: float) -> list[tuple]:
    """A landmark on the subject's right and its mirror on the left: (index, side, weight, dx, dy), unit direction
    in aligned-face pixels (x right, y down, as the image shows the subject)."""
    n = float(np.hypot(dx, dy))
    return [(r, "R", weight, dx / n, dy / n), (_MIRROR[r], "L", weight, -dx / n, dy / n)]


def _mid(i, weight: float, dx: float, dy: float) -> list[tuple]:
    """A midline point (both sides); `i` may be a virtual point's name."""
    n = float(np.hypot(dx, dy))
    return [(i, "M", weight, dx / n, dy / n)]


def _virtual_pair(r: str, l: str, weight: float, dx: float, dy: float) -> list[tuple]:
    n = float(np.hypot(dx, dy))
    return [(r, "R", weight, dx / n, dy / n), (l, "L", weight, -dx / n, dy / n)]


AU_MOTION: dict[int, list[tuple]] = {
    1: _pair(21, 1.0, 0, -1) + _pair(20, 0.7, 0, -1) + _pair(19, 0.3, 0, -1)                       # inner brow raiser
       + _virtual_pair("forehead_r", "forehead_l", 0.6, 0, -1),
    2: _pair(17, 0.8, 0, -1) + _pair(18, 1.0, 0, -1) + _pair(19, 0.6, 0, -1)                       # outer brow raiser
       + _virtual_pair("temple_r", "temple_l", 0.6, 0, -1),
    4: _pair(21, 1.0, 0.45, 0.9) + _pair(20, 0.8, 0.3, 0.95) + _pair(19, 0.5, 0.15, 1)             # brow lowerer
       + _pair(18, 0.25, 0, 1) + _mid("glabella", 0.5, 0, 1),
    5: _pair(37, 1.0, 0, -1) + _pair(38, 1.0, 0, -1),                                              # upper lid raiser
    6: _pair(41, 0.8, 0, -1) + _pair(40, 0.6, 0, -1) + _pair(36, 0.3, 0, -1)                       # cheek raiser
       + _virtual_pair("cheek_r", "cheek_l", 1.0, 0, -1),
    7: _pair(41, 1.0, 0, -1) + _pair(40, 1.0, 0, -1) + _pair(37, 0.4, 0, 1) + _pair(38, 0.4, 0, 1),  # lid tightener
    9: _pair(31, 1.0, 0, -1) + _pair(32, 0.8, 0, -1) + _mid(33, 0.6, 0, -1) + _mid(30, 0.3, 0, -1)  # nose wrinkler
       + _pair(21, 0.3, 0.2, 1) + _pair(50, 0.3, 0, -1) + _mid(51, 0.3, 0, -1) + _mid("glabella", 0.4, 0, 1)
       + _virtual_pair("fold_r", "fold_l", 0.5, 0, -1),
    10: _pair(49, 0.7, 0, -1) + _pair(50, 1.0, 0, -1) + _mid(51, 0.8, 0, -1) + _pair(61, 0.8, 0, -1)  # upper lip raiser
        + _mid(62, 0.6, 0, -1) + _pair(31, 0.2, 0, -1) + _virtual_pair("fold_r", "fold_l", 0.6, -0.2, -1),
    12: _pair(48, 1.0, -0.55, -0.85) + _pair(60, 0.8, -0.5, -0.85) + _pair(49, 0.35, -0.3, -0.9)   # lip corner puller
        + _pair(59, 0.35, -0.3, -0.9) + _virtual_pair("fold_r", "fold_l", 0.5, -0.5, -0.85)
        + _virtual_pair("jowl_r", "jowl_l", 0.4, -0.5, -0.85),
    14: _pair(48, 1.0, -1, 0.1) + _pair(60, 0.8, -1, 0.1) + _pair(49, 0.3, -1, 0) + _pair(59, 0.3, -1, 0)  # dimpler
        + _virtual_pair("jowl_r", "jowl_l", 0.5, -1, 0),
    15: _pair(48, 1.0, -0.15, 1) + _pair(60, 0.8, -0.1, 1) + _pair(59, 0.5, 0, 1) + _pair(49, 0.3, 0, 1)  # depressor
        + _virtual_pair("jowl_r", "jowl_l", 0.6, -0.1, 1),
    17: _mid(8, 1.0, 0, -1) + _pair(7, 0.8, 0, -1) + _pair(6, 0.4, 0, -1) + _mid(57, 0.7, 0, -1)   # chin raiser
        + _pair(58, 0.6, 0, -1) + _mid("chin", 1.0, 0, -1),
    20: _pair(48, 1.0, -0.85, 0.5) + _pair(60, 0.8, -0.85, 0.5) + _pair(59, 0.3, -0.6, 0.5)        # lip stretcher
        + _virtual_pair("jowl_r", "jowl_l", 0.5, -0.85, 0.5),
    24: _pair(50, 0.8, 0, 1) + _mid(51, 1.0, 0, 1) + _pair(58, 0.8, 0, -1) + _mid(57, 1.0, 0, -1),  # lip presser
}
# AUs whose motion is on the midline only: never written with a side
MIDLINE_AUS = frozenset({9, 17, 24})

# class -> [(AU codes, weight)]: CASME II's typical patterns; several share AUs with other classes on purpose
# (others: AU4 as disgust, AU17 as repression, 12+15 between happiness and repression)
CLASS_PATTERNS: dict[str, list[tuple[tuple[int, ...], float]]] = {
    "happiness": [((6, 12), 0.5), ((12,), 0.3), ((6, 7, 12), 0.2)],
    "disgust": [((4, 9), 0.3), ((10,), 0.2), ((4, 10), 0.2), ((4, 7, 10), 0.15), ((9,), 0.15)],
    "repression": [((14,), 0.2), ((15,), 0.15), ((17,), 0.15), ((15, 17), 0.2), ((24,), 0.15), ((17, 24), 0.15)],
    "surprise": [((1, 2), 0.7), ((1,), 0.1), ((2,), 0.1), ((1, 2, 5), 0.1)],
    "others": [((4,), 0.3), ((7,), 0.15), ((4, 7), 0.15), ((1, 4), 0.1), ((12, 15), 0.1), ((17,), 0.1),
               ((20,), 0.1)],
}


def objective_class(aus) -> int:
    """CASME II 2019 'Objective Classes' (Davison et al. 2018's AU-based classes I-VII), approximately."""
    a = set(aus)
    if a & {6, 12} and not a & {15, 9, 10}:
        return 1
    if {1, 2} <= a and 4 not in a or (5 in a and 4 not in a):
        return 2
    if a & {9, 10}:
        return 4
    if {1, 2, 4} <= a or 20 in a:
        return 6
    if a & {4, 7, 24, 23}:
        return 3
    if a & {15, 17} or a == {1}:
        return 5
    return 7


def sided_motion(aus, sides: dict[int, str]) -> list[tuple]:
    """(point, weight, dx, dy) entries for AUs with sides ('B' both, 'R', 'L'); a midline point moves at half weight
    under a one-sided AU."""
    out = []
    for au in aus:
        side = sides.get(au, "B")
        for point, where, w, dx, dy in AU_MOTION[au]:
            if side == "B" or where == side:
                out.append((point, w, dx, dy))
            elif where == "M":
                out.append((point, 0.5 * w, dx, dy))
    return out


def _point_index(point) -> int:
    return point if isinstance(point, int) else 68 + _VNAMES.index(point)


def aligned_displacement(aus, sides: dict[int, str], intensity: dict[int, float], peak: float) -> np.ndarray:
    """N_POINTS x 2 apex displacement in aligned-face px: every AU's motion summed, scaled so that the largest
    landmark displacement equals `peak` (<= MAX_PX)."""
    d = np.zeros((N_POINTS, 2))
    for au in aus:
        for point, w, dx, dy in sided_motion([au], sides):
            d[_point_index(point)] += intensity.get(au, 1.0) * w * np.array([dx, dy])
    top = np.linalg.norm(d, axis=1).max()
    return d * (min(peak, MAX_PX) / top) if top > 0 else d


def with_virtual(landmarks: np.ndarray) -> np.ndarray:
    """68 landmarks + the virtual points (cheeks, chin boss)."""
    extra = [sum(w * landmarks[i] for i, w in VIRTUAL[name].items()) for name in _VNAMES]
    return np.vstack([landmarks, np.array(extra, dtype=landmarks.dtype)])


# ------------------------------------------------------------------------------------------------ warping

def _tps(centers: np.ndarray, values: np.ndarray):
    from scipy.interpolate import RBFInterpolator

    return RBFInterpolator(centers, values, kernel="thin_plate_spline", degree=1)


def dense_field(centers: np.ndarray, values: np.ndarray, shape: tuple[int, int], step: int = 4) -> np.ndarray:
    """H x W x 2 float32 field interpolating `values` at `centers` (x, y) with a thin-plate spline, evaluated on a
    grid of `step` px and resampled bilinearly (the spline is smooth at that scale)."""
    import cv2

    h, w = shape
    gy, gx = np.arange(0, h + step, step), np.arange(0, w + step, step)
    grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2).astype(np.float64)
    coarse = _tps(centers, values)(grid).reshape(len(gy), len(gx), 2).astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(coarse, xs / step, ys / step, cv2.INTER_LINEAR)


def border_anchors(shape: tuple[int, int], spacing: int = 40) -> np.ndarray:
    """Fixed points along the frame border."""
    h, w = shape
    xs, ys = np.arange(0, w + 1, spacing, dtype=float), np.arange(0, h + 1, spacing, dtype=float)
    xs[-1], ys[-1] = w - 1, h - 1
    pts = [(x, 0) for x in xs] + [(x, h - 1) for x in xs] + [(0, y) for y in ys[1:-1]] + [(w - 1, y) for y in ys[1:-1]]
    return np.unique(np.array(pts, float), axis=0)


def ring_anchors(landmarks: np.ndarray, scale: float = 1.45, n: int = 20) -> np.ndarray:
    """Fixed points on an ellipse around the face (forehead included): motion fades out within the head."""
    (x0, y0), (x1, y1) = landmarks[:68].min(0), landmarks[:68].max(0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * (y1 - y0)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[cx + scale * 0.5 * (x1 - x0) * np.cos(t), cy + scale * 0.6 * (y1 - y0) * np.sin(t)]


def _dedupe(points: np.ndarray, values: np.ndarray, tol: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Drop points within `tol` px of an earlier one (a closed mouth puts inner-lip landmarks on top of each other;
    coincident spline centres make the system singular)."""
    keep: list[int] = []
    for i, p in enumerate(points):
        if not keep or np.hypot(*(points[keep] - p).T).min() >= tol:
            keep.append(i)
    return points[keep], values[keep]


def backward_field(src: np.ndarray, disp: np.ndarray, anchors: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Field B such that frame(y) = neutral(y + B(y)) moves each src point by disp (exactly at the points): a spline
    through the displaced positions, whose value there points back to where the content came from."""
    moving = np.linalg.norm(disp, axis=1) > 1e-6
    dst = src + disp
    # moving points first: a fixed landmark that coincides with a moving one's target must yield to it
    order = np.r_[np.flatnonzero(moving), np.flatnonzero(~moving)]
    pts = np.vstack([dst[order], anchors])
    vals = np.vstack([-disp[order], np.zeros_like(anchors)])
    pts, vals = _dedupe(pts, vals)
    return dense_field(pts, vals, shape)


def clamp_to_neighbours(points: np.ndarray, disp: np.ndarray, share: float = 0.4) -> np.ndarray:
    """Shrink a moving point's displacement until it closes on no other point by more than `share` of their gap,
    so the warp never folds (a lid tightener on a narrow eye, lips pressed on thin lips). Moving apart is free."""
    out = disp.copy()
    for i in np.flatnonzero(np.linalg.norm(disp, axis=1) > 1e-6):
        sep = np.delete(points, i, 0) - points[i]
        gap = np.linalg.norm(sep, axis=1)
        ok = gap > 1e-6
        u, gap, other = sep[ok] / gap[ok, None], gap[ok], np.delete(out, i, 0)[ok]

        def fits(s: float) -> bool:
            return bool(np.all(((s * disp[i] - other) * u).sum(1) <= share * gap + 1e-9))

        if fits(1.0):
            continue
        lo, hi = 0.0, 1.0
        for _ in range(20):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        out[i] = lo * disp[i]
    return out


# -------------------------------------------------------------------------------------------- base faces

@dataclass
class BaseFace:
    """A photo scaled so its face chip is ALIGNED px wide, with its dlib landmarks and chip."""

    name: str
    rgb: np.ndarray              # float32 H x W x 3
    landmarks: np.ndarray        # 68 x 2, image px
    center: np.ndarray           # chip centre, image px
    angle: float                 # chip rotation (radians)


def default_faces() -> list[tuple[str, np.ndarray]]:
    """Real photos every install has: scikit-image's astronaut (NASA, public domain) and matplotlib's
    Grace Hopper sample."""
    import matplotlib
    import skimage.data

    from mertool.face.align import read_rgb

    return [("astronaut", skimage.data.astronaut()),
            ("grace_hopper", read_rgb(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))]


def folder_faces(folder) -> list[tuple[str, np.ndarray]]:
    """Every image in a folder (sorted by name)."""
    from mertool.face.align import ImageError, read_rgb

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise MertoolError(f"--faces {folder}: no such folder (expected a folder of frontal face photos)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise MertoolError(f"--faces {folder}: no .jpg/.png/.bmp images in the folder")
    out = []
    for p in files:
        try:
            out.append((p.name, read_rgb(p)))
        except ImageError as exc:
            raise MertoolError(str(exc)) from None
    return out


def prepare_face(name: str, rgb: np.ndarray, aligner) -> BaseFace | None:
    """Find the face, rescale the photo so the chip is ALIGNED px wide (area filter when shrinking); None if no face."""
    import cv2

    from mertool.face.align import AlignSkip, chip_matrix

    try:
        loc = aligner.locate(rgb, name)
    except AlignSkip:
        return None
    m = chip_matrix(loc.chip)
    chip_w = float(loc.chip.cols) / np.hypot(*m[0, :2])   # chip width in image px
    f = ALIGNED / chip_w
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
    lm = loc.landmarks.astype(np.float64) * f
    center = np.linalg.solve(m[:, :2], np.array([loc.chip.cols - 1, loc.chip.rows - 1]) / 2 - m[:, 2]) * f
    return BaseFace(name, small.astype(np.float32), lm, center, float(loc.chip.angle))


# ------------------------------------------------------------------------------------------------ subjects

@dataclass
class Identity:
    """What makes a subject look like someone else: geometry, shape change, tone, light, background, noise."""

    face: str
    chip_px: float               # face chip width in the frame
    roll: float                  # degrees
    shift: tuple[float, float]   # face centre offset from the frame centre, px
    shape: dict[str, float]      # smooth landmark changes (fractions of face width)
    gains: tuple[float, float, float]   # skin tone (RGB gains inside the head)
    light: tuple[float, float]   # lighting gradient strength, direction (degrees)
    background: tuple[tuple[float, float, float], tuple[float, float, float]]   # two RGB colours, top/bottom
    noise: float                 # sensor noise sigma (8-bit levels)


@dataclass
class Subject:
    """A rendered identity: neutral frame, its dlib landmarks and the map from aligned-face to frame px."""

    index: int
    name: str                    # '01'
    identity: Identity
    neutral: np.ndarray          # float32 H x W x 3
    landmarks: np.ndarray        # 68 x 2 (dlib, frame px)
    to_frame: np.ndarray         # 2 x 2: aligned-face displacement -> frame displacement

    def points(self) -> np.ndarray:
        return with_virtual(self.landmarks.astype(np.float64))


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def draw_identity(rng: np.random.Generator, face: str, reused: bool) -> Identity:
    """Random identity parameters; a reused photo gets a stronger shape change."""
    k = 1.0 if reused else 0.5
    shape = {"jaw": rng.uniform(-0.07, 0.07) * k * 2, "chin": rng.uniform(-0.05, 0.05) * k * 2,
             "eyes": rng.uniform(-0.025, 0.025) * k * 2, "mouth": rng.uniform(-0.08, 0.08) * k * 2,
             "nose": rng.uniform(-0.03, 0.03) * k * 2, "brows": rng.uniform(-0.03, 0.03) * k * 2}
    shape = {key: float(np.clip(v, -0.09, 0.09)) for key, v in shape.items()}
    tone = rng.uniform(-1, 1)   # darker/warmer to lighter/cooler
    gains = (1.0 + 0.12 * tone + rng.uniform(-0.04, 0.04), 1.0 + 0.16 * tone + rng.uniform(-0.04, 0.04),
             1.0 + 0.2 * tone + rng.uniform(-0.04, 0.04))
    bg = tuple(tuple(float(c) for c in rng.uniform(20, 235, 3)) for _ in range(2))
    return Identity(face=face, chip_px=float(rng.uniform(*CHIP_RANGE)), roll=float(rng.uniform(-5, 5)),
                    shift=(float(rng.uniform(-10, 10)), float(rng.uniform(-10, 10))), shape=shape,
                    gains=tuple(float(g) for g in gains),
                    light=(float(rng.uniform(0.08, 0.3)), float(rng.uniform(0, 360))),
                    background=bg, noise=float(rng.uniform(1.0, 2.0)))


def _shape_targets(lm: np.ndarray, s: dict[str, float]) -> np.ndarray:
    """Landmarks after the identity's shape change."""
    out = lm.copy()
    cx = lm[:, 0].mean()
    w = lm[16, 0] - lm[0, 0]
    jaw = np.arange(17)
    out[jaw, 0] = cx + (lm[jaw, 0] - cx) * (1 + s["jaw"])
    chin = np.arange(4, 13)
    out[chin, 1] += s["chin"] * w * np.cos((chin - 8) / 5 * np.pi / 2)
    for r, l in ((range(36, 42), range(42, 48)), (range(17, 22), range(22, 27))):
        out[list(r), 0] -= s["eyes"] * w
        out[list(l), 0] += s["eyes"] * w
    mouth = np.arange(48, 68)
    mx = lm[mouth, 0].mean()
    out[mouth, 0] = mx + (lm[mouth, 0] - mx) * (1 + s["mouth"])
    out[np.r_[31:36, 48:68], 1] += s["nose"] * w
    out[17:27, 1] += s["brows"] * w
    return out


def _head_mask(lm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Soft ellipse over face, forehead and hair line (1 inside, 0 outside)."""
    h, w = shape
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    fh = y1 - y0
    top, bottom = y0 - 0.45 * fh, y1 + 0.12 * fh
    cx, cy = (x0 + x1) / 2, (top + bottom) / 2
    ax, ay = 0.66 * (x1 - x0), (bottom - top) / 2
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2)
    return (1 / (1 + np.exp((r - 1) / 0.05))).astype(np.float32)


def render_identity(base: BaseFace, ident: Identity, size: int = FRAME_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Neutral frame (float32 H x W x 3) of an identity, and its landmarks as warped (before re-detection)."""
    import cv2

    s = ident.chip_px / ALIGNED
    theta = np.deg2rad(ident.roll) - base.angle   # undo the photo's roll, add the identity's own
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) * s
    c = np.array([size / 2 + ident.shift[0], size / 2 + ident.shift[1]])
    m = np.c_[rot, c - rot @ base.center]
    img = cv2.warpAffine(base.rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    lm = base.landmarks @ m[:, :2].T + m[:, 2]
    # lasting change of face shape: the landmarks move to their targets, the rest follows smoothly
    target = _shape_targets(lm, ident.shape)
    anchors = np.vstack([border_anchors((size, size)), ring_anchors(lm, 1.6)])
    field = backward_field(lm, target - lm, anchors, (size, size))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    img = cv2.remap(img, xs + field[..., 0], ys + field[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    # skin tone inside the head, a new background outside, then a lighting gradient over everything
    mask = _head_mask(target, (size, size))[..., None]
    top, bottom = (np.array(c, np.float32) for c in ident.background)
    t = (ys / (size - 1))[..., None]
    bg = top * (1 - t) + bottom * t
    img = mask * img * np.array(ident.gains, np.float32) + (1 - mask) * bg
    strength, direction = ident.light
    a = np.deg2rad(direction)
    light = 1 + strength * (np.cos(a) * (xs / (size - 1) - 0.5) + np.sin(a) * (ys / (size - 1) - 0.5))
    return np.clip(img * light[..., None], 0, 255).astype(np.float32), target


def make_subject(index: int, base: BaseFace, ident: Identity, aligner) -> Subject | None:
    """Render the identity and find its landmarks with dlib (None when the detector misses the face)."""
    from mertool.face.align import AlignSkip, chip_matrix

    neutral, _ = render_identity(base, ident)
    try:
        loc = aligner.locate(np.clip(neutral.round(), 0, 255).astype(np.uint8))
    except AlignSkip:
        return None
    m = chip_matrix(loc.chip)
    return Subject(index, f"{index + 1:02d}", ident, neutral, loc.landmarks.astype(np.float64),
                   np.linalg.inv(m[:, :2]))


def make_subjects(faces: list[tuple[str, np.ndarray]], n: int, seed: int, aligner) -> list[Subject]:
    """n identities: photo i % len(faces), each with its own random look (redrawn if dlib misses the face)."""
    bases = [b for b in (prepare_face(name, rgb, aligner) for name, rgb in faces) if b is not None]
    if not bases:
        raise MertoolError(f"no face found by the dlib detector in any base photo ({', '.join(n for n, _ in faces)})")
    subjects = []
    for i in range(n):
        base = bases[i % len(bases)]
        rng = _rng(seed, 1, i)
        for _ in range(8):
            subject = make_subject(i, base, draw_identity(rng, base.name, i >= len(bases)), aligner)
            if subject is not None:
                break
        else:
            raise MertoolError(f"subject {i + 1}: the dlib detector missed the face of {base.name} in 8 renderings")
        subjects.append(subject)
    return subjects


# ------------------------------------------------------------------------------------------------- samples

@dataclass
class SampleSpec:
    """One clip: class, AUs (sides, intensities), timing, amplitude; `displacement` is filled when planned."""

    subject: str
    sample_id: str
    emotion: str
    aus: tuple[int, ...]
    sides: dict[int, str]
    intensity: dict[int, float]
    peak: float                  # largest landmark displacement at the apex, aligned px
    first: int                   # number of the first frame file (imgN)
    onset: int
    apex: int
    offset: int
    last: int
    seed: tuple[int, ...] = ()
    displacement: dict[int, tuple[float, float]] = field(default_factory=dict)  # landmark -> apex (dx, dy), aligned
    head: dict = field(default_factory=dict)   # rigid head motion, onset to apex (draw_head_motion)

    @property
    def coded(self):
        """The sheet's Action Units cell: an int for a single code without side (as CASME II writes it)."""
        text = format_aus(self.aus, {au: s for au, s in self.sides.items() if s != "B"})
        return int(text) if text.isdigit() else text

    def amplitude(self, frame: int) -> float:
        """0 before the onset, half-cosine rise to 1 at the apex, half-cosine fall to 0 at the offset."""
        if frame <= self.onset or frame >= self.offset:
            return 0.0
        if frame <= self.apex:
            return float(0.5 - 0.5 * np.cos(np.pi * (frame - self.onset) / (self.apex - self.onset)))
        return float(0.5 + 0.5 * np.cos(np.pi * (frame - self.apex) / (self.offset - self.apex)))


def _pick(rng: np.random.Generator, options: list[tuple]) -> tuple:
    w = np.array([o[1] for o in options], float)
    return options[int(rng.choice(len(options), p=w / w.sum()))][0]


def plan_samples(subject: str, index: int, per_subject: int, seed: int) -> list[SampleSpec]:
    """The clips of one subject: classes balanced (a shuffled cycle), AU pattern, sides, intensities, timing."""
    rng = _rng(seed, 2, index)
    classes = [CLASSES[(k + index) % len(CLASSES)] for k in range(per_subject)]
    rng.shuffle(classes)
    counters: Counter = Counter()
    specs = []
    for k, emotion in enumerate(classes):
        aus = tuple(sorted(_pick(rng, CLASS_PATTERNS[emotion])))
        sides = {}
        for au in aus:
            side = "B" if au in MIDLINE_AUS else str(rng.choice(["B", "B", "B", "R", "L"]))
            sides[au] = side
        if len({s for s in sides.values() if s != "B"}) > 1:   # one asymmetric side per sample, as coders see it
            first = next(s for s in sides.values() if s != "B")
            sides = {au: (first if s != "B" else s) for au, s in sides.items()}
        intensity = {au: float(rng.uniform(0.7, 1.0)) for au in aus}
        rise, fall = int(rng.integers(4, 12)), int(rng.integers(6, 16))
        first_frame = int(rng.integers(1, 60))
        onset = first_frame + int(rng.integers(2, 6))
        apex, offset = onset + rise, onset + rise + fall
        episode = int(rng.integers(1, 20))
        counters[episode] += 1
        specs.append(SampleSpec(subject=subject, sample_id=f"EP{episode:02d}_{counters[episode]:02d}",
                                emotion=emotion, aus=aus, sides=sides, intensity=intensity,
                                peak=float(rng.uniform(*AMPLITUDE)), first=first_frame, onset=onset, apex=apex,
                                offset=offset, last=offset + int(rng.integers(1, 4)), seed=(seed, 3, index, k)))
    return specs


def frame_displacement(subject: Subject, spec: SampleSpec) -> tuple[np.ndarray, np.ndarray]:
    """(points in frame px, their apex displacement in frame px) with the non-folding clamp applied;
    spec.displacement is set to the moved dlib landmarks' displacement in aligned px."""
    pts = subject.points()
    d_al = aligned_displacement(spec.aus, spec.sides, spec.intensity, spec.peak)
    d_img = clamp_to_neighbours(pts, d_al @ subject.to_frame.T)
    d_al = d_img @ np.linalg.inv(subject.to_frame).T
    spec.displacement = {int(i): (round(float(d_al[i, 0]), 4), round(float(d_al[i, 1]), 4))
                         for i in range(68) if np.hypot(*d_al[i]) > 1e-6}
    return pts, d_img


def draw_head_motion(subject: Subject, spec: SampleSpec, px: float) -> dict:
    """A rigid head motion for `spec`: between the onset and the apex (with the expression's half-cosine rise, the
    hardest case for separating the two) the face shifts by `px` frame px in a random direction and turns by up to
    px / 4 degrees about its centre, then holds. Recorded per sample in synth.json."""
    if px <= 0:
        return {}
    rng = np.random.default_rng([*spec.seed, 7])   # its own stream: the rest of the clip is drawn as without it
    angle = rng.uniform(0, 2 * np.pi)
    return {"shift": [round(float(px * np.cos(angle)), 4), round(float(px * np.sin(angle)), 4)],
            "rotation": round(float(rng.uniform(-px / 4, px / 4)), 4),
            "centre": [round(float(v), 3) for v in subject.landmarks.mean(0)]}


def render_clip(subject: Subject, spec: SampleSpec, noise: bool = True, jitter: bool = True):
    """Yield (frame number, uint8 RGB frame) for every frame of the clip (with spec.head's rigid drift if set)."""
    import cv2

    h, w = subject.neutral.shape[:2]
    pts, d_img = frame_displacement(subject, spec)
    anchors = np.vstack([border_anchors((h, w)), ring_anchors(pts)])
    field = backward_field(pts, d_img, anchors, (h, w))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(list(spec.seed))
    walk = np.zeros(2)
    for n in range(spec.first, spec.last + 1):
        a = spec.amplitude(n)
        if jitter:  # sub-pixel head sway: a mean-reverting random walk, std ~0.15 px
            walk = 0.7 * walk + rng.normal(0, 0.1, 2)
        px, py, fx, fy = xs, ys, field[..., 0], field[..., 1]
        if spec.head:   # frame pixel p shows the face point R^-1 (p - c - t) + c, moved there by the expression
            px, py = _head_source(spec.head, 1.0 if n >= spec.apex else spec.amplitude(n), xs, ys)
            fx = cv2.remap(field[..., 0], px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            fy = cv2.remap(field[..., 1], px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mx = px + np.float32(a) * fx - np.float32(walk[0])
        my = py + np.float32(a) * fy - np.float32(walk[1])
        if a == 0 and not walk.any() and not spec.head:
            frame = subject.neutral.copy()
        else:
            frame = cv2.remap(subject.neutral, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
        if noise:
            frame += rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(subject.identity.noise)
        yield n, np.clip(frame.round(), 0, 255).astype(np.uint8)


def _head_source(head: dict, f: float, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each frame pixel's content comes from when the head has made the share `f` of its drift."""
    theta = np.deg2rad(head["rotation"] * f)
    (cx, cy), (tx, ty) = head["centre"], (head["shift"][0] * f, head["shift"][1] * f)
    dx, dy = xs - np.float32(cx + tx), ys - np.float32(cy + ty)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    return c * dx + s * dy + np.float32(cx), -s * dx + c * dy + np.float32(cy)


# ------------------------------------------------------------------------------- one pair with dense ground truth

# AU patterns whose flow is measured (bench.bench_flow): one or two per class of CLASS_PATTERNS, upper and lower face
FLOW_PATTERNS = ((1, 2), (4,), (6, 12), (4, 9), (14,), (15, 17))


@dataclass
class MotionPair:
    """An aligned onset, the same face moved by Action Units as its apex, and the motion's ground truth."""

    onset: np.ndarray            # S x S x 3 uint8
    apex: np.ndarray
    flow: np.ndarray             # S x S x 2 float32: onset pixel (x, y) is at (x, y) + flow in the apex (crop px)
    face: np.ndarray             # S x S bool: inside the convex hull of the 68 landmarks (the face, brows to chin)
    landmarks: np.ndarray        # 68 x 2, crop px
    aus: tuple[int, ...]
    peak: float                  # largest landmark displacement, crop px


def au_motion_pair(rgb: np.ndarray, aus=(1, 2), peak: float = 1.0, size: int = int(ALIGNED), noise: float = 0.0,
                   seed: int = 0, aligner=None, sides: dict[int, str] | None = None) -> MotionPair:
    """A face photo aligned as preprocess aligns it, and its apex: the AUs' landmark motion (AU_MOTION, the largest
    landmark displacement `peak` crop px), spread by the same thin-plate spline as synth's clips.

    Onset and apex are both sampled from the photo once (bicubic, through the chip's map), so they differ by the
    motion alone (plus sensor noise of sigma `noise` grey levels, drawn for each frame). The ground-truth flow F
    solves F(x) = -B(x + F(x)) for the backward field B that made the apex (fixed-point iteration to 1e-4 px).
    """
    import cv2

    from mertool.face.align import FaceAligner, chip_matrix, to_chip

    aligner = aligner or FaceAligner(size=size)
    loc = aligner.locate(rgb)
    lm = to_chip(loc.landmarks, loc.chip).astype(np.float64)
    pts = with_virtual(lm)
    disp = clamp_to_neighbours(pts, aligned_displacement(aus, sides or {}, {}, peak) * (size / ALIGNED))
    anchors = np.vstack([border_anchors((size, size)), ring_anchors(pts)])
    back = backward_field(pts, disp, anchors, (size, size))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    flow = -back
    for _ in range(50):
        new = -np.stack([cv2.remap(back[..., k], xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE) for k in (0, 1)], -1)
        step, flow = float(np.abs(new - flow).max()), new
        if step < 1e-4:
            break
    to_frame = np.linalg.inv(np.vstack([chip_matrix(loc.chip), [0, 0, 1]]))[:2]
    photo = np.ascontiguousarray(rgb, np.float32)
    rng = np.random.default_rng(seed)

    def sample(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        fx = to_frame[0, 0] * px + to_frame[0, 1] * py + to_frame[0, 2]
        fy = to_frame[1, 0] * px + to_frame[1, 1] * py + to_frame[1, 2]
        img = cv2.remap(photo, fx.astype(np.float32), fy.astype(np.float32), cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REFLECT101)
        if noise > 0:
            img = img + rng.standard_normal(img.shape).astype(np.float32) * np.float32(noise)
        return np.clip(img.round(), 0, 255).astype(np.uint8)

    face = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(lm.round().astype(np.int32)), 1)
    return MotionPair(sample(xs, ys), sample(xs + back[..., 0], ys + back[..., 1]), flow.astype(np.float32),
                      face.astype(bool), lm.astype(np.float32), tuple(aus),
                      float(np.linalg.norm(disp, axis=1).max()))


# -------------------------------------------------------------------------------------------------- writing

_WORKER: dict = {}


def _setup_worker(subjects: dict, root: str, noise: bool, jitter: bool) -> None:
    _WORKER.update(subjects=subjects, root=Path(root), noise=noise, jitter=jitter)


def _init_worker(*args) -> None:
    """Pool initializer: one OpenCV thread per process, Ctrl-C left to the main process."""
    import signal

    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    _setup_worker(*args)


def _write_sample(spec: SampleSpec) -> SampleSpec:
    """Render one clip into root/subNN/EPxx_yy/imgN.jpg (fixed JPEG settings: same input, same bytes)."""
    import cv2

    subject = _WORKER["subjects"][spec.subject]
    folder = _WORKER["root"] / f"sub{spec.subject}" / spec.sample_id
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
    for n, frame in render_clip(subject, spec, _WORKER["noise"], _WORKER["jitter"]):
        if not cv2.imwrite(str(folder / f"img{n}.jpg"), frame[..., ::-1], params):
            raise MertoolError(f"{folder / f'img{n}.jpg'}: cannot write the frame")
    return spec


SHEET_HEADER = ("Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
                "Estimated Emotion", "Objective Classes")
_WIDTHS = {"A": 8.88, "B": 13.38, "C": 5.62, "D": 16.0, "E": 13.0, "F": 13.88, "G": 5.0, "H": 11.63, "I": 20.13,
           "J": 18.5}


def write_sheet(path, specs: list[SampleSpec]) -> Path:
    """The coding sheet in the CASME II 2019 layout (Subject as text '01', blank columns C and G, AU cells like
    'R6+12' or a plain 12), written atomically with fixed metadata and zip entry times."""
    import openpyxl
    from openpyxl.styles import Alignment, Font
    from openpyxl.writer.excel import ExcelWriter

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(SHEET_HEADER))
    for s in specs:
        ws.append([s.subject, s.sample_id, None, s.onset, s.apex, s.offset, None, s.coded, s.emotion,
                   objective_class(s.aus)])
    font, left = Font(name="Arial Unicode MS", size=11), Alignment(horizontal="left")
    for row in ws.iter_rows():
        for cell in row:
            cell.font, cell.alignment = font, left
        row[0].number_format = "@"   # text, as in the real sheet
    for col, width in _WIDTHS.items():
        ws.column_dimensions[col].width = width
    wb.create_sheet("Sheet2")
    wb.create_sheet("Sheet3")
    wb.properties.creator = "mertool synth"
    wb.properties.title = "synthetic micro-expressions (CASME II layout)"
    wb.properties.created = wb.properties.modified = FIXED_TIME
    buf = io.BytesIO()
    # ExcelWriter directly: openpyxl's save_workbook would stamp `modified` with the current time
    ExcelWriter(wb, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED)).save()
    return _write_zip_fixed(Path(path), buf.getvalue())


def _write_zip_fixed(path: Path, data: bytes) -> Path:
    """Re-pack a zip with every entry dated FIXED_TIME (zipfile stamps the current time), atomically."""
    with files.temporary_path(path) as tmp, zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            fixed.compress_type, fixed.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    return path


def settings_key(subjects: int, per_subject: int, seed: int, faces, clean: bool = False,
                 head_motion: float = 0.0) -> dict:
    """What determines a synth output (a re-run with the same key gives the same files)."""
    key = {"format": FORMAT, "version": VERSION, "subjects": int(subjects), "per_subject": int(per_subject),
           "seed": int(seed), "faces": str(Path(faces).expanduser().resolve()) if faces else "default",
           "clean": bool(clean)}
    if head_motion:   # only when used: outputs made before the option keep matching their manifests
        key["head_motion"] = float(head_motion)
    return key


def read_manifest(out) -> dict | None:
    """OUT/synth.json of a finished synth run, or None."""
    path = Path(out) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("settings", {}).get("format") == FORMAT else None


def is_complete(out, settings: dict) -> bool:
    """A finished synth output made with these settings (the demo then skips the step)."""
    m = read_manifest(out)
    return m is not None and m["settings"] == settings and (Path(out) / SHEET_NAME).is_file() \
        and (Path(out) / RAW_DIR / MARKER).is_file()


def _check_out(out: Path) -> None:
    """Never replace a frames folder synth did not write (a user's real CASME II)."""
    raw = out / RAW_DIR
    if raw.exists() and not (raw / MARKER).is_file():
        raise MertoolError(f"{raw}: exists and was not written by mertool synth; choose another output folder")
    others = [p.name for p in out.glob("*.xls*") if p.name != SHEET_NAME] if out.is_dir() else []
    if others:
        raise MertoolError(f"{out}: holds other annotation sheets ({', '.join(others)}); the CASME II adapter would "
                           f"see several; choose another output folder")


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap a finished folder into place; the old one (ours, checked) is removed after the swap."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def check_settings(subjects: int, per_subject: int) -> None:
    """Subject and clip counts a CASME II layout can hold (sub01..sub99)."""
    if subjects < 1 or subjects > 99:
        raise MertoolError(f"--subjects {subjects}: expected 1 to 99")
    if per_subject < 1 or per_subject > 500:
        raise MertoolError(f"--per-subject {per_subject}: expected 1 to 500")


def make_folder(path) -> Path:
    """An output folder, created when missing; a file in its place is a user error."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise MertoolError(f"{path}: is a file; expected an output folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MertoolError(f"{path}: cannot create the output folder ({exc.strerror})") from None
    return path


def synth(out, faces=None, subjects: int = 10, per_subject: int = 20, seed: int = 0, workers: int = 2,
          noise: bool = True, jitter: bool = True, progress: bool = False, head_motion: float = 0.0) -> dict:
    """Write a synthetic CASME II-layout dataset into `out`; returns the summary (also in OUT/synth.json).

    `head_motion` > 0 adds a rigid head motion to every clip: `head_motion` frame px of shift and up to a quarter of
    that in degrees of rotation from the onset to the apex (draw_head_motion())."""
    from mertool.face.align import FaceAligner

    check_settings(subjects, per_subject)
    if not 0 <= head_motion <= 40:
        raise MertoolError(f"--head-motion {head_motion}: expected 0 to 40 px")
    t0 = time.perf_counter()
    out = make_folder(out)
    _check_out(out)
    # the AU motion is placed on the landmarks found on each neutral frame: detected at upsample 1 as before the
    # faster default (upsample 0 first) existed, so a seed renders the same clips as then; the coarser upsample-0
    # box moved dlib's own landmarks enough to push tests/test_synth.py's precision check over its bound on a clip
    aligner = FaceAligner(size=int(ALIGNED), upsample_first=1)
    base = folder_faces(faces) if faces else default_faces()
    people = make_subjects(base, subjects, seed, aligner)
    specs = [s for p in people for s in plan_samples(p.name, p.index, per_subject, seed)]
    by_name = {p.name: p for p in people}
    for spec in specs:
        spec.head = draw_head_motion(by_name[spec.subject], spec, head_motion) if head_motion else {}

    tmp = out / f".{RAW_DIR}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    (tmp / MARKER).write_text("written by mertool synth\n")
    args = (by_name, str(tmp), noise, jitter)
    if workers <= 1:
        _setup_worker(*args)
        done = [_write_sample(s) for s in _progress(specs, progress)]
    else:
        # spawned, not forked: this process has run OpenCV's thread pool, and a forked child that touches it
        # waits forever on a lock copied mid-use
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=args) as ex:
            done = list(_progress(ex.map(_write_sample, specs, chunksize=4), progress, len(specs)))
    (out / MANIFEST).unlink(missing_ok=True)   # while the folder is swapped, no manifest claims it complete
    _replace_dir(tmp, out / RAW_DIR)
    write_sheet(out / SHEET_NAME, done)
    n_frames = sum(s.last - s.first + 1 for s in done)
    summary = {
        "out": str(out), "sheet": str(out / SHEET_NAME), "frames_root": str(out / RAW_DIR),
        "subjects": len(people), "samples": len(done), "frames": n_frames,
        "emotions": dict(Counter(s.emotion for s in done)), "seconds": round(time.perf_counter() - t0, 2),
        "faces": sorted({p.identity.face for p in people}),
    }
    manifest = {"settings": settings_key(subjects, per_subject, seed, faces, not (noise or jitter), head_motion),
                "noise": noise, "jitter": jitter, "head_motion": head_motion, "frame_size": FRAME_SIZE,
                "aligned_px": ALIGNED,
                "max_displacement_px": MAX_PX,
                "subjects": [{"subject": p.name, **asdict(p.identity), "landmarks": np.round(p.landmarks, 2).tolist()}
                             for p in people],
                "samples": [_spec_json(s) for s in done]}
    files.write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return summary


def _spec_json(s: SampleSpec) -> dict:
    d = asdict(s)
    d["sides"] = {str(k): v for k, v in s.sides.items()}
    d["intensity"] = {str(k): round(v, 4) for k, v in s.intensity.items()}
    d["displacement"] = {str(k): list(v) for k, v in s.displacement.items()}
    d["aus_coded"] = str(s.coded)
    d["peak"] = round(s.peak, 4)
    del d["seed"]
    if not s.head:
        del d["head"]
    return d


def _progress(items, enabled: bool, total: int | None = None):
    """Items as they come, with a rich progress bar on stderr when enabled."""
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as bar:
        job = bar.add_task("synth", total=total if total is not None else len(items))
        for item in items:
            yield item
            bar.advance(job)


def files_digest(out) -> str:
    """sha256 over every file under `out` (relative path + bytes), for checking determinism."""
    h = hashlib.sha256()
    root = Path(out)
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()
