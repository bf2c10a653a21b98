"""Per-frame facial motion of a long video: where each facial region has moved, frame by frame, head motion removed.

    tracker = MotionTracker(fps=30)
    feats = tracker.run(FrameSource("video.mp4"))
    feats.track        # N x R x 2 float32: region displacement in crop px since the shot's first frame (NaN = gap)

The face is found ONCE per shot (dlib HOG, `FaceAligner.locate`) and then followed: every frame is cut and
registered onto the shot's first frame by the public registration of mertool.face.align (`FaceAligner.register`, the
rigid fit of the stable landmarks that `preprocess --register landmarks` applies; ECC refinement with
`register="ecc"`, about 6 times slower), with the face box moved along with the head. Optical flow (Farneback) is
measured from an anchor frame to each frame; the anchor is re-set every `anchor_frames` frames (about a second), so
appearance changes over minutes never enter the flow, and each region's displacement is chained across anchors
(D(t) = D(anchor) + flow(anchor -> t)). What registration leaves of the head's motion is removed from the flow by a
robust (least-median) similarity fit over the face: the motion that most of the face shares is the head's, an
expression moves a few regions.

A frame whose registered face no longer resembles the anchor's (normalised cross-correlation under `min_ncc`: a
hand over the face, a turned head, a cut) is checked with the detector: a face there starts a new shot (the chain
restarts); none makes the frame a gap (NaN in `track`, -1 in `shot`), and the detector is tried again every
`redetect` frames. Gaps are recorded, never filled in.

Regions (REGIONS) are disks around landmark points of the shot's first frame, in aligned-crop pixels: brows, lids,
cheeks, nose wings, mouth corners, lips and chin, plus the nose bridge. Spotters read the track and decide for
themselves which regions count (the training-free spotter leaves the lids out: blinks).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from mertool.errors import MertoolError

# region -> {landmark index: weight}: the region's centre is that combination of the shot's first-frame landmarks
REGIONS: dict[str, dict[int, float]] = {
    "brow_r_in": {20: 0.5, 21: 0.5}, "brow_r_out": {17: 0.3, 18: 0.4, 19: 0.3},
    "brow_l_in": {22: 0.5, 23: 0.5}, "brow_l_out": {24: 0.3, 25: 0.4, 26: 0.3},
    "glabella": {21: 0.5, 22: 0.5},
    "lid_r_up": {37: 0.5, 38: 0.5}, "lid_r_low": {40: 0.5, 41: 0.5},
    "lid_l_up": {43: 0.5, 44: 0.5}, "lid_l_low": {46: 0.5, 47: 0.5},
    "cheek_r": {41: 0.5, 1: 0.25, 31: 0.25}, "cheek_l": {46: 0.5, 15: 0.25, 35: 0.25},
    "nose_r": {31: 1.0}, "nose_l": {35: 1.0},
    "mouth_r": {48: 1.0}, "mouth_l": {54: 1.0},
    "lip_up": {50: 0.25, 51: 0.5, 52: 0.25}, "lip_low": {56: 0.25, 57: 0.5, 58: 0.25},
    "chin": {57: 0.3, 8: 0.7},
    "bridge": {27: 0.5, 28: 0.5},
}
EYE_REGIONS = ("lid_r_up", "lid_r_low", "lid_l_up", "lid_l_low")
REGION_NAMES = tuple(REGIONS)
# Farneback: 3 levels follow a second of expression motion (a macro-expression moves a lip corner ~5 px at 128 px)
FLOW = dict(pyr_scale=0.5, levels=3, winsize=11, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)


@dataclass
class VideoFeatures:
    """What the spotting cache stores for one video."""

    numbers: np.ndarray          # int64 N: frame numbers as the data set numbers them
    track: np.ndarray            # float32 N x R x 2: region displacement (crop px) since the shot's start; NaN gaps
    head: np.ndarray             # float32 N x 3: head shift x, y (crop px) and rotation (deg) vs the shot's start
    quality: np.ndarray          # float32 N: NCC of the registered face against its anchor (NaN in gaps)
    shot: np.ndarray             # int32 N: shot index, -1 in gaps
    fps: float
    seconds: float = 0.0         # time it took
    detections: int = 0          # HOG detector calls (first frames, checks, re-detections)

    @property
    def gaps(self) -> np.ndarray:
        return self.shot < 0

    def gap_ranges(self) -> list[tuple[int, int]]:
        """(first, last) frame numbers of every run of gap frames."""
        out, start = [], None
        g = self.gaps
        for i, flag in enumerate(g):
            if flag and start is None:
                start = i
            if not flag and start is not None:
                out.append((int(self.numbers[start]), int(self.numbers[i - 1])))
                start = None
        if start is not None:
            out.append((int(self.numbers[start]), int(self.numbers[-1])))
        return out


@dataclass
class _Shot:
    ref: object                  # align.Reference of the shot's first frame
    box0: np.ndarray             # detector box (l, t, r, b) at the shot's start
    centres: np.ndarray          # R x 2 region centres, crop px
    index: list                  # per region: flat pixel indices of its disk
    face: np.ndarray             # flat indices of the face (NCC and the head fit)
    fit: np.ndarray              # K x 2 float32 sample points for the head fit (x, y)
    anchor: np.ndarray | None = None   # gray crop the flow is measured from
    anchor_d: np.ndarray | None = None  # R x 2 displacement at the anchor
    anchor_head: np.ndarray = field(default_factory=lambda: np.zeros(3))
    since: int = 0


class MotionTracker:
    """Follow the face through a video and measure its regions' motion (see the module docstring)."""

    def __init__(self, fps: float, size: int = 128, register: str = "landmarks", anchor_seconds: float = 1.0,
                 min_ncc: float = 0.5, redetect: int = 5, radius: float = 0.06, aligner=None):
        from mertool.face.align import FaceAligner

        if fps <= 0:
            raise MertoolError(f"fps {fps}: expected a positive frame rate")
        self.fps, self.size = float(fps), int(size)
        self.aligner = aligner or FaceAligner(size=self.size, register=register)
        if self.aligner.register_mode == "none":
            raise MertoolError("spotting registers every frame: register 'none' is not supported (landmarks or ecc)")
        self.anchor_frames = max(2, int(round(anchor_seconds * fps)))
        self.min_ncc, self.redetect, self.radius = float(min_ncc), int(redetect), float(radius)

    def settings(self) -> dict:
        """What a spotting cache records about how its features were made."""
        return {"size": self.size, "register": self.aligner.register_mode, "anchor_frames": self.anchor_frames,
                "min_ncc": self.min_ncc, "redetect": self.redetect, "radius": self.radius, "flow": "farneback",
                "flow_params": FLOW, "regions": REGIONS, "alignment": self.aligner.settings()}

    # ------------------------------------------------------------------------------------------- the loop

    def run(self, source, progress=None) -> VideoFeatures:
        """Features of every frame of `source` (a spot.FrameSource); `progress(i, n)` after each frame."""
        import cv2

        from mertool.face.align import AlignSkip

        t0 = time.perf_counter()
        n = len(source)
        R = len(REGIONS)
        track = np.full((n, R, 2), np.nan, np.float32)
        head = np.full((n, 3), np.nan, np.float32)
        quality = np.full(n, np.nan, np.float32)
        shots = np.full(n, -1, np.int32)
        shot, n_shots, wait, detections = None, 0, 0, 0

        def start(i: int, rgb):
            """A new shot at frame i, or None (and a wait before the next detection) when no face is found."""
            nonlocal n_shots, wait, detections
            detections += 1
            try:
                new = self._start(rgb)
            except AlignSkip:
                wait = self.redetect - 1
                return None
            track[i], head[i], quality[i], shots[i] = 0.0, 0.0, 1.0, n_shots
            n_shots += 1
            return new

        for i, rgb in enumerate(_prefetch(source)):
            if progress is not None:
                progress(i + 1, n)
            if shot is None:
                if wait > 0:
                    wait -= 1
                    continue
                shot = start(i, rgb)
                continue
            crop, reg = self._register(shot, rgb)
            gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
            ncc = _ncc(shot.anchor, gray, shot.face)
            if not ncc >= self.min_ncc:
                # the face changed too much for the flow to mean anything: a new shot when a face is there
                shot = start(i, rgb)
                continue
            d, h = self._measure(shot, gray, reg)
            track[i], head[i], quality[i], shots[i] = d, h, ncc, n_shots - 1
            shot.since += 1
            if shot.since >= self.anchor_frames:
                shot.anchor, shot.anchor_d, shot.anchor_head, shot.since = gray, d, h, 0
            self._follow(shot, reg)
        return VideoFeatures(np.asarray(source.numbers, np.int64), track, head, quality, shots, self.fps,
                             time.perf_counter() - t0, detections)

    def _start(self, rgb) -> _Shot:
        """A new shot at this frame: detect, cut, and lay out the regions (AlignSkip when no face is found)."""
        import cv2

        loc = self.aligner.locate(rgb)
        ref = self.aligner.reference(rgb, loc)
        lm = ref.landmarks.astype(np.float64)
        s = self.size
        centres = np.array([sum(w * lm[k] for k, w in REGIONS[r].items()) for r in REGIONS])
        ys, xs = np.mgrid[0:s, 0:s]
        rad = self.radius * s
        index = [np.flatnonzero(((xs - cx) ** 2 + (ys - cy) ** 2).ravel() <= rad * rad) for cx, cy in centres]
        face = np.zeros((s, s), np.uint8)
        cv2.fillConvexPoly(face, cv2.convexHull(np.round(lm).astype(np.int32)), 1)
        face_idx = np.flatnonzero(face.ravel())
        fy, fx = np.nonzero(face)
        step = max(1, len(fx) // 400)       # ~400 points are plenty for a 4-parameter least-median fit
        fit = np.ascontiguousarray(np.stack([fx, fy], 1)[::step], np.float32)
        gray = cv2.cvtColor(ref.crop, cv2.COLOR_RGB2GRAY)
        return _Shot(ref, np.array(loc.box, np.float64), centres, index, face_idx, fit, gray,
                     np.zeros((len(REGIONS), 2)))

    def _register(self, shot: _Shot, rgb):
        """The frame cut and registered onto the shot's first frame (align's registration), and its Registration."""
        return self.aligner.register(shot.ref, rgb, before=False)

    def _follow(self, shot: _Shot, reg) -> None:
        """Move the face box with the head, so the landmark predictor keeps finding the face as it drifts."""
        if reg is None:
            return
        c = np.array([(self.size - 1) / 2] * 2 + [1.0])
        now = np.asarray(reg.matrix) @ c                       # crop centre in frame px now
        start = np.linalg.inv(np.vstack([shot.ref.matrix, [0, 0, 1]]))[:2] @ c
        dx, dy = now - start
        box = shot.box0 + np.array([dx, dy, dx, dy])
        shot.ref = replace(shot.ref, loc=replace(shot.ref.loc, box=tuple(int(round(v)) for v in box)))

    def _measure(self, shot: _Shot, gray: np.ndarray, reg) -> tuple[np.ndarray, np.ndarray]:
        """(R x 2 region displacement since the shot's start, head (x, y, deg)) of a registered frame."""
        import cv2

        flow = cv2.calcOpticalFlowFarneback(shot.anchor, gray, None, **FLOW)
        flat = flow.reshape(-1, 2)
        pts = shot.fit
        moved = pts + flow[pts[:, 1].astype(int), pts[:, 0].astype(int)]
        m, _ = cv2.estimateAffinePartial2D(pts, moved, method=cv2.LMEDS)
        if m is None:
            m = np.eye(2, 3)
        means = np.array([flat[idx].mean(0) for idx in shot.index])
        rigid = shot.centres @ m[:, :2].T + m[:, 2] - shot.centres     # the head's share at each region centre
        d = shot.anchor_d + (means - rigid)
        hx, hy = (reg.shift if reg is not None else (0.0, 0.0))
        rot = reg.rotation if reg is not None else 0.0
        h = np.array([hx + m[0, 2], hy + m[1, 2], rot + np.degrees(np.arctan2(m[1, 0], m[0, 0]))])
        return d.astype(np.float32), h.astype(np.float32)


def _ncc(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> float:
    """Normalised cross-correlation of two gray crops over the pixels `idx` (flat indices)."""
    x = a.ravel()[idx].astype(np.float32)
    y = b.ravel()[idx].astype(np.float32)
    x -= x.mean()
    y -= y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


def _prefetch(source, depth: int = 8):
    """The frames of `source`, decoded in a thread ahead of their use (decoding and OpenCV release the GIL, so
    a second core decodes while the first measures)."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def reader():
        try:
            for frame in source:
                while not stop.is_set():
                    try:
                        q.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:    # handed to the consumer, raised there
            q.put(exc)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        th.join(timeout=5)
