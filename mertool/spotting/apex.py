"""Spotting a micro-expression in a clip: which frame is the apex, and which the onset before it.

The clip (a video file or a folder of frames) is cut with ONE transform, the first frame's face chip, exactly as
`preprocess` cuts a pair, and every frame is registered onto the first with the very registration `preprocess`
applies to an apex (align.FaceAligner.register with the aligner's mode: by default `consensus`, the rigid motion
most of the face's patches agree on; `predict` passes the model's own), so the motion curve and the classified pair
agree on what head motion is. Each registered frame is compared with the first:

1. Farneback optical flow -> mean flow magnitude inside the face, eyes left out (blinks are the largest facial
   motion and are not an expression); with `register none` the flow's own robust (LMedS) affine fit over the face
   stands in for the registration (the frame is warped back by it first);
2. the per-frame curve is smoothed with a Gaussian over time.

Apex = the first frame that reaches 90 % of the curve's range and after which the curve rises no further (by
more than 3 % of the range within 5 frames): the peak of a micro-expression that rises and falls, and the moment
a held expression (a posed smile kept to the end of the clip) first reaches full strength rather than a later
wobble. Onset = the last frame before the apex whose motion is still below 20 % of the way from the clip's
floor to the apex.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from mertool.errors import MertoolError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}

# 68-point landmark indices (iBUG 300-W layout): the two eyes
_EYES = (tuple(range(36, 42)), tuple(range(42, 48)))
# Farneback settings: a 3-level pyramid handles the few-pixel head motion; winsize 15 averages sensor noise
_FLOW = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _natural_key(name: str) -> list:
    """'img10.jpg' after 'img9.jpg': digits compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _frame_number(name: str) -> int | None:
    """The last number in a file's stem ('img46.jpg' -> 46, '006_05562.jpg' -> 5562), or None."""
    nums = re.findall(r"\d+", Path(name).stem)
    return int(nums[-1]) if nums else None


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of a frame folder in natural order (img2 before img10)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise MertoolError(f"{folder}: no image files in the folder (expected frames such as img1.jpg, img2.jpg, ...)")
    return sorted(files, key=lambda p: _natural_key(p.name))


def is_sequence(path: str | Path) -> bool:
    """A folder of frames or a video file (as opposed to a single image)."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in VIDEO_EXTS


class FrameSource:
    """The frames of a video file or a frame folder, read one at a time; frame numbers are what a user names.

    Frame folder whose files all carry distinct numbers (imgN.jpg, CASME II / SAMM layouts): the file's number.
    Otherwise (other names, a video): the 1-based position in the clip.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise MertoolError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            self.files: list[Path] | None = list_frame_files(self.path)
            nums = [_frame_number(p.name) for p in self.files]
            use_nums = None not in nums and len(set(nums)) == len(nums)
            self.numbers = nums if use_nums else list(range(1, len(self.files) + 1))
            self.names = [p.name for p in self.files]
        else:
            self.files = None
            n = self._count_video()
            self.numbers = list(range(1, n + 1))
            self.names = [f"frame {i}" for i in self.numbers]

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise MertoolError(f"{self.path}: cannot be read as a video (expected e.g. an .mp4 or .avi file)")
        return cap

    def _count_video(self) -> int:
        cap = self._open()
        n = 0
        while cap.grab():  # decoding counts reliably; CAP_PROP_FRAME_COUNT is an estimate for some containers
            n += 1
        cap.release()
        if n == 0:
            raise MertoolError(f"{self.path}: the video has no readable frames")
        return n

    def __len__(self) -> int:
        return len(self.numbers)

    def __iter__(self) -> Iterator[np.ndarray]:
        """RGB uint8 frames in order."""
        if self.files is not None:
            from mertool.face.align import read_rgb
            for p in self.files:
                yield read_rgb(p)
            return
        cap = self._open()
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    def index(self, number: int) -> int:
        """Position (0-based) of a frame number; an absent number is a user error naming the valid range."""
        try:
            return self.numbers.index(int(number))
        except ValueError:
            raise MertoolError(f"{self.path}: frame {number} is not in the clip (frames {self.numbers[0]}.."
                               f"{self.numbers[-1]})") from None

    def read(self, number: int) -> np.ndarray:
        """One frame (RGB) by its frame number."""
        i = self.index(number)
        if self.files is not None:
            from mertool.face.align import read_rgb
            return read_rgb(self.files[i])
        cap = self._open()
        try:
            for _ in range(i):
                cap.grab()
            ok, bgr = cap.read()
        finally:
            cap.release()
        if not ok:
            raise MertoolError(f"{self.path}: frame {number} cannot be decoded")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def label(self, number: int) -> str:
        """'img46.jpg' for a folder, 'frame 12' for a video."""
        return self.names[self.index(number)]

    def describe(self, number: int) -> str:
        """Where a frame comes from: the frame file's path, or 'clip.mp4 frame 12'."""
        i = self.index(number)
        return str(self.files[i]) if self.files is not None else f"{self.path} frame {number}"


def face_masks(landmarks: np.ndarray, size: int, eye_margin: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(whole face, face without the eyes) boolean masks from 68 landmarks in crop pixels."""
    pts = np.round(landmarks).astype(np.int32)
    face = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(pts), 1)
    eyes = np.zeros_like(face)
    for idx in _EYES:
        cv2.fillConvexPoly(eyes, cv2.convexHull(pts[list(idx)]), 1)
    if eye_margin:
        eyes = cv2.dilate(eyes, np.ones((2 * eye_margin + 1, 2 * eye_margin + 1), np.uint8))
    return face.astype(bool), (face & (1 - eyes)).astype(bool)


def _flow(ref: np.ndarray, gray: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(ref, gray, None, **_FLOW)


def stabilise(ref: np.ndarray, gray: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`gray` warped onto `ref` by the affine head motion that the flow at `points` (N x 2, x/y) shows."""
    flow = _flow(ref, gray)
    dst = points + flow[points[:, 1].astype(int), points[:, 0].astype(int)]
    m, _ = cv2.estimateAffine2D(points, np.ascontiguousarray(dst, np.float32), method=cv2.LMEDS)
    if m is None:  # degenerate flow (a blank frame): nothing to undo
        return gray
    h, w = gray.shape
    return cv2.warpAffine(gray, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


class MotionMeter:
    """Facial motion of aligned frames against a reference (the clip's first frame); `stabilise` removes the head's
    motion from the flow first (for frames that were not registered)."""

    def __init__(self, ref_rgb: np.ndarray, landmarks: np.ndarray, top_fraction: float = 0.1, fit_step: int = 7,
                 eye_margin: int = 4, stabilise: bool = True):
        self.ref = cv2.cvtColor(ref_rgb, cv2.COLOR_RGB2GRAY)
        self.top_fraction, self.stabilise = top_fraction, stabilise
        face, self.mask = face_masks(landmarks, self.ref.shape[0], eye_margin)
        ys, xs = np.nonzero(face)
        # every fit_step-th face pixel is plenty for a 6-parameter robust fit and keeps it fast
        self.points = np.ascontiguousarray(np.stack([xs, ys], 1)[::fit_step], np.float32)

    def __call__(self, rgb: np.ndarray) -> float:
        """Mean optical-flow magnitude (crop pixels) of the most-moving `top_fraction` of the face without the eyes.

        An expression moves a few regions (brows, lip corners); flow noise is everywhere. Averaging only the
        strongest tenth keeps the local signal and drops most of the noise (about twice the contrast of a
        whole-face mean on a 3 px smile against a drifting head, tests/test_spot.py).
        """
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        flow = _flow(self.ref, stabilise(self.ref, gray, self.points) if self.stabilise else gray)
        mag = np.linalg.norm(flow[self.mask], axis=1)
        k = max(1, int(round(self.top_fraction * len(mag))))
        return float(np.partition(mag, len(mag) - k)[-k:].mean())


@dataclass
class SpotResult:
    """Where the micro-expression is: frame numbers, and the motion curve they were read from."""

    onset: int                 # frame number (file number for imgN folders, 1-based position otherwise)
    apex: int
    numbers: list[int]         # frame number of every curve entry
    motion: np.ndarray         # raw per-frame motion against the first frame (crop pixels)
    smoothed: np.ndarray
    quiet_level: float         # motion below this counts as quiet (onset rule)
    peak_level: float          # the apex is the first settled frame at or above this

    def to_dict(self) -> dict:
        return {"onset": self.onset, "apex": self.apex, "frames": len(self.numbers),
                "motion": [round(float(v), 4) for v in self.motion],
                "smoothed": [round(float(v), 4) for v in self.smoothed]}


def find_apex(motion: np.ndarray, sigma: float = 1.5, peak_fraction: float = 0.9, quiet_fraction: float = 0.2,
              settle_window: int = 5, settle_tol: float = 0.03) -> tuple[int, int, np.ndarray, float, float]:
    """(onset index, apex index, smoothed curve, quiet level, peak level) of a motion-vs-first-frame curve.

    Apex: the first frame at or above the peak level (floor + peak_fraction of the curve's range) after which the
    curve rises by no more than settle_tol of the range within settle_window frames: the top of a rise-and-fall,
    the point where a held expression levels off (a later slow drift of a few percent does not move it); then the
    highest frame within those settle_window frames.
    """
    motion = np.asarray(motion, np.float64)
    if len(motion) < 2:
        raise MertoolError(f"a clip needs at least 2 frames to spot an apex (got {len(motion)})")
    curve = motion.copy()
    curve[0] = motion[1]  # frame 1 against itself is exactly 0, below any real noise floor; don't let it pull
    smoothed = gaussian_filter1d(curve, sigma, mode="nearest") if sigma > 0 else curve
    floor, top = float(smoothed[1:].min()), float(smoothed[1:].max())
    span = top - floor
    peak_level = floor + peak_fraction * span
    apex = int(smoothed[1:].argmax()) + 1  # a flat curve (no motion at all) falls back to its maximum
    for i in range(1, len(smoothed)):
        ahead = smoothed[i + 1:i + 1 + settle_window]
        if smoothed[i] >= peak_level and (not len(ahead) or ahead.max() <= smoothed[i] + settle_tol * span):
            apex = i + int(np.argmax(smoothed[i:i + 1 + settle_window]))  # the top within that last small rise
            break
    floor = float(smoothed[1:apex + 1].min())  # the quiet level is judged before the apex only
    quiet_level = floor + quiet_fraction * (smoothed[apex] - floor)
    quiet = np.flatnonzero(smoothed[:apex] <= quiet_level)
    onset = int(quiet[-1]) if len(quiet) else 0
    return onset, apex, smoothed, quiet_level, peak_level


class Spotter:
    """Align a clip with its first frame's transform, measure facial motion over time, and pick onset and apex."""

    def __init__(self, aligner=None, sigma: float = 2.0, peak_fraction: float = 0.9, quiet_fraction: float = 0.2,
                 settle_window: int = 5, settle_tol: float = 0.03, top_fraction: float = 0.1, eye_margin: int = 4):
        if aligner is None:
            from mertool.face.align import FaceAligner
            aligner = FaceAligner()
        self.aligner = aligner
        self.sigma, self.peak_fraction, self.quiet_fraction = sigma, peak_fraction, quiet_fraction
        self.settle_window, self.settle_tol = settle_window, settle_tol
        self.top_fraction, self.eye_margin = top_fraction, eye_margin

    def motion(self, source: FrameSource, progress=None) -> np.ndarray:
        """Per-frame motion against the first frame; `progress(i, n)` is called after each frame."""
        from mertool.face.align import AlignSkip

        meter, ref, values = None, None, []
        registered = self.aligner.register_mode != "none"
        for i, rgb in enumerate(source):
            if meter is None:
                try:
                    ref = self.aligner.reference(rgb, self.aligner.locate(rgb, f"{source.path} ({source.names[0]})"))
                except AlignSkip as exc:
                    raise MertoolError(f"{exc}; spotting aligns the whole clip with its first frame's face, so the "
                                       f"first frame must show it") from None
                meter = MotionMeter(ref.crop, ref.landmarks, self.top_fraction, eye_margin=self.eye_margin,
                                    stabilise=not registered)
                values.append(0.0)
            else:
                values.append(meter(self.aligner.register(ref, rgb, before=False)[0]))
            if progress is not None:
                progress(i + 1, len(source))
        return np.asarray(values, np.float64)

    def spot(self, source: FrameSource | str | Path, progress=None) -> SpotResult:
        """Onset and apex of the clip at `source`."""
        source = source if isinstance(source, FrameSource) else FrameSource(source)
        motion = self.motion(source, progress)
        onset, apex, smoothed, quiet, peak = find_apex(motion, self.sigma, self.peak_fraction, self.quiet_fraction,
                                                       self.settle_window, self.settle_tol)
        return SpotResult(onset=source.numbers[onset], apex=source.numbers[apex], numbers=list(source.numbers),
                          motion=motion, smoothed=smoothed, quiet_level=quiet, peak_level=peak)


def plot_motion(result: SpotResult, path: str | Path, title: str = "") -> Path:
    """Motion-over-time PNG with the spotted onset and apex marked (written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mertool.predict.explain import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 2.8), dpi=110)
    ax.plot(result.numbers, result.motion, color="0.7", lw=1, label="motion vs first frame")
    ax.plot(result.numbers, result.smoothed, color="C0", lw=2, label="smoothed")
    ax.axhline(result.quiet_level, color="0.5", ls=":", lw=1)
    ax.axvline(result.onset, color="C2", ls="--", label=f"onset {result.onset}")
    ax.axvline(result.apex, color="C3", ls="--", label=f"apex {result.apex}")
    ax.set_xlabel("frame")
    ax.set_ylabel("facial motion (px)")
    ax.set_title(title or "micro-expression spotting", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)
