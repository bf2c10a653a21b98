"""Known-truth checks of apex registration: synthetic pairs whose AU motion and head motion are known exactly.

    people = subjects(2)                                         # synth identities on the default photos
    pair = render_pair(people[0], (1, 2), peak=2.0, head=(6.0, 0.0, 1.0))   # AU1+2, head 6 px right, +1 deg
    row = measure(FaceAligner(), pair)                           # errors at the AU's landmarks and the still ones

A pair is an onset (the neutral frame) and an apex with `synth`'s AU motion at `peak` aligned px and a rigid head
motion (shift in frame px, rotation in degrees about the face centre, as `synth --head-motion` draws it), both with
sensor noise. Because both motions are known at every landmark, the cached pair's motion there follows from the
map that cut the apex crop alone (`Registration.matrix`): a face point x of the onset lies at C x in the onset crop
(C: the onset's chip) and at M^-1 H(x + d) in the apex crop (d: the AU's displacement, H: the head motion, M: the
registration's crop -> frame map). Its motion in the pair is therefore measured against ground truth, never against
anything the registration minimised; the truth it is compared with is the unregistered pair without head motion,
C (x + d) - C x. tests/test_register.py checks a subset, benchmarks/registration_grid.py the full grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# the grid (#18): AU sets, peak landmark displacements (aligned px), head motions
AU_SETS = {"AU1+2": (1, 2), "AU4": (4,), "AU6+12": (6, 12), "AU9": (9,), "AU14+15+17": (14, 15, 17)}
PEAKS = (0.5, 1.0, 2.0, 3.0)
HEAD_SHIFTS = (3.0, 6.0)
MOVED = 0.05          # aligned px: a landmark the AU set moves by more than this is one of "the AU's landmarks"


def head_motions() -> list[tuple[float, float, float] | None]:
    """None (no head motion), then 3 and 6 px in 8 directions, turning +1 and -1 deg in turn: 17 in all."""
    out: list[tuple[float, float, float] | None] = [None]
    for px in HEAD_SHIFTS:
        for k in range(8):
            a = k * np.pi / 4
            out.append((round(px * np.cos(a), 4), round(px * np.sin(a), 4), 1.0 if k % 2 == 0 else -1.0))
    return out


def head_name(head) -> str:
    return "still" if head is None else f"({head[0]:+.1f}, {head[1]:+.1f}) px {head[2]:+.0f} deg"


@dataclass
class TruthPair:
    """Onset and apex frames with their known motion at the subject's 68 landmarks (frame px)."""

    onset: np.ndarray            # H x W x 3 uint8
    apex: np.ndarray
    points: np.ndarray           # 68 x 2, landmarks on the neutral frame (frame px)
    displacement: np.ndarray     # 68 x 2, the AU motion of each landmark at the apex (frame px)
    head: np.ndarray             # 2 x 3, the head motion: neutral-frame px -> apex-frame px
    aus: tuple[int, ...]
    peak: float


def subjects(n: int = 2, seed: int = 0):
    """`n` synth identities on the default photos (skimage's astronaut, matplotlib's Grace Hopper), found by dlib
    as `synth` finds them."""
    from mertool.face.align import FaceAligner
    from mertool.synth.faces import ALIGNED, default_faces, make_subjects

    return make_subjects(default_faces(), n, seed, FaceAligner(size=int(ALIGNED), upsample_first=1))


def render_pair(subject, aus, peak: float, head=None, noise: bool = True, seed: int = 0) -> TruthPair:
    """Onset and apex of `aus` (both sides, full intensity) at `peak` aligned px, the head moved by `head`
    ((dx, dy) frame px, degrees) between them; no sub-pixel jitter, so the motion is exactly what is recorded."""
    from mertool.synth.faces import SampleSpec, frame_displacement, render_clip

    spec = SampleSpec(subject=subject.name, sample_id="truth", emotion="others", aus=tuple(aus),
                      sides={a: "B" for a in aus}, intensity={a: 1.0 for a in aus}, peak=float(peak), first=1,
                      onset=1, apex=2, offset=3, last=2, seed=(seed, int(10 * peak), *aus))
    centre = subject.landmarks.mean(0)
    if head is not None:
        spec.head = {"shift": [float(head[0]), float(head[1])], "rotation": float(head[2]),
                     "centre": [float(v) for v in centre]}
    frames = dict(render_clip(subject, spec, noise=noise, jitter=False))
    pts, disp = frame_displacement(subject, spec)
    return TruthPair(frames[1], frames[2], pts[:68], disp[:68], head_matrix(head, centre), tuple(aus), float(peak))


def head_matrix(head, centre) -> np.ndarray:
    """2 x 3 map of synth's rigid head motion (synth._head_source inverted): p = R (x - c) + c + t."""
    if head is None:
        return np.eye(2, 3)
    t = np.deg2rad(head[2])
    r = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = np.asarray(centre, np.float64)
    return np.c_[r, c - r @ c + np.asarray(head[:2], np.float64)]


def pair_motion(truth: TruthPair, chip: np.ndarray, apex_map: np.ndarray) -> np.ndarray:
    """68 x 2 motion (crop px) of the landmarks between the onset crop (cut by `chip`, frame -> crop) and the apex
    crop (cut by `apex_map`, crop -> apex frame)."""
    x = truth.points
    moved = x + truth.displacement
    in_apex = moved @ truth.head[:, :2].T + truth.head[:, 2]
    inv = np.linalg.inv(np.vstack([apex_map, [0, 0, 1]]))[:2]
    return (in_apex @ inv[:, :2].T + inv[:, 2]) - (x @ chip[:, :2].T + chip[:, 2])


def measure(aligner, truth: TruthPair) -> dict:
    """Align the pair and compare its motion at the landmarks with the unregistered, still-head truth."""
    from mertool.face.align import chip_matrix

    pair = aligner.align_pair(truth.onset, truth.apex)
    chip = chip_matrix(pair.chip)
    reg = pair.registration
    apex_map = np.linalg.inv(np.vstack([chip, [0, 0, 1]]))[:2] if reg is None else reg.matrix
    got = pair_motion(truth, chip, apex_map)
    want = truth.displacement @ chip[:, :2].T
    size = np.linalg.norm(want, axis=1)
    au = size > MOVED * max(size.max(), 1e-9) if truth.aus else np.zeros(len(size), bool)
    still = size == 0
    err = np.linalg.norm(got - want, axis=1)
    # the map onset crop -> apex crop of a point the expression leaves alone: identity when the head was removed
    rest = np.linalg.inv(np.vstack([apex_map, [0, 0, 1]])) @ np.vstack([truth.head, [0, 0, 1]]) \
        @ np.linalg.inv(np.vstack([chip, [0, 0, 1]]))
    return {"au_err": float(err[au].max()) if au.any() else 0.0, "still_err": float(err[still].max()),
            "kept": float((got[au] * want[au]).sum() / (want[au] ** 2).sum()) if au.any() else 1.0,
            "rotation_err": float(np.degrees(np.arctan2(rest[1, 0], rest[0, 0]))),
            "peak_crop": float(size.max()), "registration": None if reg is None else reg.to_dict()}


# ------------------------------------------------------------------------------- motion of a window, by image

BROWS = {"right brow": tuple(range(17, 22)), "left brow": tuple(range(22, 27))}


def window_shift(onset: np.ndarray, apex: np.ndarray, points: np.ndarray, grow: int = 8) -> np.ndarray:
    """(dx, dy) crop px by which the window around `points` (crop px) moved from the onset crop to the apex crop:
    OpenCV's ECC (translation) on the window, started from phase correlation. A second method, independent of any
    registration: used where no ground truth exists (real clips)."""
    import cv2

    g0, g1 = (cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2GRAY).astype(np.float32) for c in (onset, apex))
    (x0, y0), (x1, y1) = np.floor(points.min(0)).astype(int) - grow, np.ceil(points.max(0)).astype(int) + grow
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, g0.shape[1]), min(y1, g0.shape[0])
    a, b = g0[y0:y1, x0:x1], g1[y0:y1, x0:x1]
    win = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a.astype(np.float64), b.astype(np.float64), win.astype(np.float64))
    warp = np.array([[1, 0, x0 + dx], [0, 1, y0 + dy]], np.float32)
    _, warp = cv2.findTransformECC(np.ascontiguousarray(a), g1, warp, cv2.MOTION_TRANSLATION,
                                   (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-6), None, 3)
    return np.array([warp[0, 2] - x0, warp[1, 2] - y0])
