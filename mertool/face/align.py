"""Face alignment: dlib HOG face detector + 68-point landmarks on the ONSET frame, the apex registered onto it.

    aligner = FaceAligner(size=224)          # register="consensus" (default), "ecc", "landmarks" or "none"
    pair = aligner.align_pair(read_rgb("img46.jpg"), read_rgb("img59.jpg"))
    pair.onset, pair.apex        # 224 x 224 x 3 uint8 crops, the apex's head motion removed
    pair.landmarks               # 68 x 2 onset landmarks in crop pixels
    pair.registration            # head motion (shift, rotation, scale), residuals, flag when refused or doubtful

The crop (dlib.get_face_chip_details: rotation, scale and translation onto dlib's mean face) comes from the onset
landmarks only. With register "none" it is cut unchanged from the apex, which keeps whatever the head did between the
two frames; otherwise the apex is registered onto the onset crop by a rigid motion (one warp of the original frame).
"consensus" estimates that motion as the consensus of the whole face's structure (FaceAligner._consensus: a grid of
small patches tracked by Lucas-Kanade, a robust rigid fit that treats the patches an expression moves as outliers),
so that no one AU region can pull it; "ecc" (the previous default, kept so that caches made with it are reproduced)
registers brows and eyes by ECC, which takes part of a brow raise or frown away with the head. A motion beyond
what a head does between onset and apex (IMPLAUSIBLE) is refused and flagged, never applied silently.

The detector tries upsample 0 before 1 (a third to a fifth of the time). The 68-point model
ships with face_recognition_models; it was trained on iBUG 300-W, whose terms exclude commercial use.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mertool.errors import MertoolError

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"

# skip reasons (preprocess counts samples by these)
NO_FACE = "no face"
UNREADABLE = "unreadable image"
MISSING = "missing frame file"
SIZE_MISMATCH = "frame size mismatch"


REGISTER_MODES = ("none", "landmarks", "ecc", "consensus")
DEFAULT_REGISTER = "consensus"
# Registration settings, chosen on the real neutral->smile clip (img1 -> img32, head moved ~9 px), known rigid
# motions of the astronaut and synthetic clips whose AU motion is known (tests/test_register.py; figures in the
# README's alignment section):
# - points no expression moves for the landmark start: nose bridge 27-30 and the eye corners 36, 39, 42, 45;
STABLE_POINTS = (27, 28, 29, 30, 36, 39, 42, 45)
# - the upper face (brows and eyes, convex hull grown by UPPER_FACE_GROW px) is where residuals are measured;
UPPER_FACE = tuple(range(17, 27)) + tuple(range(36, 48))
UPPER_FACE_GROW = 4
# - ECC runs on brows + eyes (the first region) and on upper eyelids + nose bridge; the second replaces the first
#   only when AGREE_MARGIN more of the upper face agrees to AGREE_PX with it. Brows + eyes alone leave 0.3 px on
#   the real smile but take 1-1.8 px of a synthetic 3-4 px brow raise (AU1+2) away, brows and forehead being half
#   the mask; eyelids + bridge alone keep the brow raise (0.3-0.5 px error) but leave 1.6-3 px on the smile,
#   which lifts the eyes and nose (AU6). Measured agreement: brow raises 0.15 -> 0.29, 0.10 -> 0.19, 0.03 -> 0.28
#   (first -> second region); smile frames at most 0.04 more with the second. The hull down to the nose tip (30)
#   would take in the cheeks, which a smile lifts.
ECC_REGIONS = (UPPER_FACE, (27, 28, 29, 36, 37, 38, 39, 42, 43, 44, 45))
AGREE_PX = 0.3
AGREE_MARGIN = 0.08
# - Euclidean, not similarity: the scale of 8 landmarks is noise (+0.7 % vs ECC-affine's -0.9 % on the real pair)
#   and a head hardly changes distance within a micro-expression; ECC's affine model would absorb expression as shear.
# - a pair is listed as a warning when its registration leaves more than RESIDUAL_WARN px on the upper face: the
#   real clip's 24 pairs (img1 -> every 3rd frame) leave 0.03-0.99 px, synthetic clips with head motion up to 0.5
RESIDUAL_WARN = 1.5
ECC_CRITERIA = (3, 100, 1e-5)       # cv2.TERM_CRITERIA_COUNT | EPS: at most 100 iterations, stop below 1e-5
ECC_SMOOTH = 5                      # Gaussian pre-smoothing (px): sensor noise; 1 px gives the same residuals

# "consensus" registration (FaceAligner._consensus). Chosen on benchmarks/registration_grid.py (synth AU1+2, AU4,
# AU6+12, AU9, AU14+15+17 at 0.5-3 px with 0-6 px / +-1 deg head motion, measured against synth's ground truth) and
# the real smile clip (brows measured by ECC on small windows, a method the registration does not use):
# - patches: a PATCH_STEP-px grid over the convex hull of the 68 onset landmarks (the whole face, ~400 points in a
#   224 crop), each tracked by OpenCV's pyramidal Lucas-Kanade in a PATCH_WIN-px window. Grid, not corners: corners
#   gather on the eyes, brows and mouth, which AUs move; a grid weighs the face by area.
# - a patch counts only when tracking it back lands within TRACK_BACK_PX of where it started: on the real smile the
#   cheeks and mouth fail that (and gave 20-60 px matches); letting 0.5 px through moved the brows 1.6 px.
# - the head is the largest set of patches that one rigid motion explains: RANSAC (cv2.estimateAffinePartial2D) at
#   RANSAC_PX, then the set is narrowed to STILL_K robust sigmas (1.4826 x median residual, never under STILL_MIN_PX)
#   and refitted by least squares (rigid, Kabsch), four times. RANSAC alone at 0.15 px was best on synth (0.06 px)
#   but the real clip's head, which also turns in depth, agrees with itself to ~0.5 px only: 0.15 px kept 8 of 102
#   tracked patches there and the brows moved 2.5 px; LMedS (50 % breakdown) gave 0.22 px on synth AU6+12, whose
#   smile moves half the face. The adaptive band gives <= 0.1 px on synth and 0.2-0.3 px on the real brows.
# - rigid, not similarity or affine: on synth the similarity fit was 0.01-0.02 px worse, the affine 2x worse (it
#   takes up expression as shear), and neither made the real clip's brows agree better. Scale is measured on the
#   final patches (a similarity fit) and reported, not applied.
# - three rounds of warp and track (the first from the landmark fit, at pyramid level 2; then level 1): one round
#   left 0.35 px and 0.23 deg on known rigid motions, two 0.03 px.
PATCH_STEP = 8
PATCH_WIN = 21
TRACK_BACK_PX = 0.2
RANSAC_PX = 0.5
STILL_K = 2.0
STILL_MIN_PX = 0.15
CONSENSUS_ROUNDS = 3
MIN_STILL = 12          # fewer still patches than this: no consensus, the landmark fit stands (flagged)
# Limits of a head's motion between onset and apex (shift as a share of the crop, degrees, scale change), above which
# a registration is refused. From data: synth's head motion reaches 6 px and 1.5 deg; the real smile clip, a head
# moving freely for 2.3 s, 14 px and 3 deg from its first frame; a known move of skimage's small astronaut face by
# 10.6 frame px is 22 crop px and comes back to 0.01 px (a shift is easy to register: the limit is loose). On the
# real wolfgang_langer grimace ECC put -29.8 deg and 38.8 px between frames 14 and 39; a micro-expression lasts
# under 0.5 s, in which a head turning 5 deg in the image plane is already unusual.
IMPLAUSIBLE = {"shift": 0.15, "rotation": 5.0, "scale": 0.05}   # shift: 34 px of a 224 crop
# the consensus settings as FaceAligner(consensus={...}) takes them and a cache records them (alignment attribute)
CONSENSUS = {"patch_step": PATCH_STEP, "patch_win": PATCH_WIN, "track_back_px": TRACK_BACK_PX, "ransac_px": RANSAC_PX,
             "still_k": STILL_K, "still_min_px": STILL_MIN_PX, "rounds": CONSENSUS_ROUNDS, "min_still": MIN_STILL,
             "max_shift": IMPLAUSIBLE["shift"], "max_rotation": IMPLAUSIBLE["rotation"],
             "max_scale_change": IMPLAUSIBLE["scale"]}


def consensus_settings(overrides: dict | None = None) -> dict:
    """CONSENSUS with `overrides` applied, checked: known keys, positive numbers (integers where counted)."""
    out = dict(CONSENSUS)
    for key, value in (overrides or {}).items():
        if key not in CONSENSUS:
            raise MertoolError(f"align consensus setting {key!r}: expected one of {', '.join(CONSENSUS)}")
        counted = isinstance(CONSENSUS[key], int)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or \
                (counted and int(value) != value):
            raise MertoolError(f"align consensus setting {key}={value!r}: expected a positive "
                               f"{'integer' if counted else 'number'}")
        out[key] = int(value) if counted else float(value)
    return out


class AlignSkip(MertoolError):
    """A sample that cannot be aligned: `reason` is one of the skip reasons above, `detail` names the file."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


class ImageError(AlignSkip):
    """A frame file that is missing or cannot be decoded."""


def read_rgb(path) -> np.ndarray:
    """H x W x 3 uint8 RGB of an image file (grayscale frames such as SAMM's become 3 equal channels).

    Pillow is used rather than cv2.imread because it reports a truncated JPEG instead of silently filling it grey.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(MISSING, f"{path}: no such file (expected an image)")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)  # user photos may carry an EXIF rotation; dataset frames do not
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(UNREADABLE, f"{path}: cannot decode ({type(exc).__name__}: {exc}); expected a JPEG/PNG/BMP "
                                     f"image") from None
    if rgb.ndim != 3 or rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise ImageError(UNREADABLE, f"{path}: image of shape {rgb.shape} is too small")
    return np.ascontiguousarray(rgb)


def predictor_path() -> Path:
    """The 68-point shape predictor file installed with face_recognition_models."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MertoolError("face_recognition_models is not installed: it provides the 68-point landmark model "
                           f"({PREDICTOR_FILE}); install it with `pip install face-recognition-models`")
    for base in spec.submodule_search_locations:
        path = Path(base) / "models" / PREDICTOR_FILE
        if path.is_file():
            return path
    raise MertoolError(f"{PREDICTOR_FILE} not found in the face_recognition_models package "
                       f"({', '.join(spec.submodule_search_locations)}); reinstall face-recognition-models")


@lru_cache(maxsize=2)
def _models(path: str):
    """Detector and predictor, loaded once per process (the predictor file is ~100 MB)."""
    import dlib
    try:
        predictor = dlib.shape_predictor(path)
    except RuntimeError as exc:
        raise MertoolError(f"{path}: cannot load the 68-point landmark model ({exc})") from None
    return dlib.get_frontal_face_detector(), predictor


def chip_matrix(chip) -> np.ndarray:
    """2 x 3 affine map from image pixels to chip pixels (dlib's get_mapping_to_chip, which Python does not expose)."""
    r = chip.rect
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    cos, sin = np.cos(chip.angle), np.sin(chip.angle)

    def rotated(x, y):  # dlib's rotate_point(center(rect), p, angle)
        dx, dy = x - cx, y - cy
        return cx + cos * dx - sin * dy, cy + sin * dx + cos * dy

    src = np.array([rotated(r.left(), r.top()), rotated(r.right(), r.top()), rotated(r.right(), r.bottom())])
    dst = np.array([(0, 0), (chip.cols - 1, 0), (chip.cols - 1, chip.rows - 1)], float)
    # solve [x y 1] @ M.T = dst for the three corners
    return np.linalg.solve(np.c_[src, np.ones(3)], dst).T


def to_chip(points: np.ndarray, chip) -> np.ndarray:
    """Image-pixel points (K x 2) mapped into chip pixels."""
    m = chip_matrix(chip)
    pts = np.asarray(points, np.float64)
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def describe(size: int, padding: float, upsample: int, detect_max_side: int | None,
             register: str = DEFAULT_REGISTER, upsample_first: int = 0, consensus: dict | None = None) -> dict:
    """Alignment settings as a cache stores them (without loading the models); 'consensus' registration adds its
    settings (the other modes' records stay as the previous release wrote them, so their caches resume)."""
    out = {"method": "dlib-chip", "detector": "dlib frontal_face_detector (HOG)", "upsample": int(upsample),
           "upsample_first": int(upsample_first), "detect_max_side": detect_max_side, "landmarks": PREDICTOR_FILE,
           "size": int(size), "padding": float(padding), "anchor": "onset", "register": register}
    if register == "consensus":
        out["consensus"] = consensus_settings(consensus)
    return out


@dataclass
class Located:
    """One frame's face: the chip that aligns it, its landmarks (image pixels), how many faces were found."""

    chip: object                 # dlib.chip_details
    landmarks: np.ndarray        # 68 x 2 float32, image pixels
    n_faces: int
    box: tuple[int, int, int, int]  # left, top, right, bottom of the chosen face (image pixels)
    upsample: int = 0               # the detector upsampling that found it


@dataclass
class Registration:
    """How the apex was brought onto the onset, in crop pixels of the onset's chip.

    `matrix` maps onset-crop pixels to the apex frame's pixels (the one warp that cut the apex crop); the head
    motion (shift of the crop centre, rotation, scale) is what registration estimated, relative to the onset's own
    chip. When `applied` is False the estimate was refused (`flag` says why) and the apex was cut with the onset's
    chip, unregistered. `flag` is empty for a pair whose registration is trusted.

    Residuals, for "consensus": `residual_before` is the median motion of the still patches (those that follow the
    head) in the unregistered pair; `residual` is how far registration leaves them, measured on patches held out of
    the fit (two interleaved halves of the grid, each predicted by a fit to the other): what the rigid head motion
    cannot explain on the still face, never the expression. `still_share` is the share of tracked patches that
    follow the head; `moving_px` the median motion, after registration, of the patches that do not (the expression
    and anything else the head motion does not explain). For "ecc" and "landmarks" the residuals are the upper face's
    median optical flow before and after (the previous release's measure) and the patch figures are NaN.
    """

    method: str                  # what was used: "consensus", "ecc" or "landmarks"
    matrix: np.ndarray           # 2 x 3, onset-crop px -> apex frame px
    shift: tuple[float, float]   # crop px (x, y)
    rotation: float              # degrees, positive = clockwise in the image
    scale: float
    residual_before: float       # crop px
    residual: float              # crop px
    note: str = ""               # why a method fell back to the landmark fit, when it did
    flag: str = ""               # why this pair's registration is refused or doubtful; "" when it is trusted
    applied: bool = True         # False: the estimate was refused and the apex cut unregistered
    still_share: float = float("nan")
    moving_px: float = float("nan")
    patches: int = 0             # patches tracked (consensus)

    def to_dict(self) -> dict:
        return {"method": self.method, "shift_x": round(self.shift[0], 3), "shift_y": round(self.shift[1], 3),
                "rotation": round(self.rotation, 4), "scale": round(self.scale, 5),
                "residual_before": round(self.residual_before, 3), "residual": round(self.residual, 3),
                "note": self.note, "flag": self.flag, "applied": self.applied,
                "still_share": round(self.still_share, 3), "moving_px": round(self.moving_px, 3),
                "patches": int(self.patches)}


@dataclass
class AlignedPair:
    """Onset cut with its own chip; apex cut with that chip (register none) or registered onto the onset."""

    onset: np.ndarray            # size x size x 3 uint8
    apex: np.ndarray
    landmarks: np.ndarray        # 68 x 2 float32, onset landmarks in crop pixels
    n_faces: int
    chip: object
    registration: Registration | None = None
    upsample: int = 0            # the detector upsampling that found the onset's face


class FaceAligner:
    """dlib frontal-face (HOG) detector + 68-point landmarks -> face chip of `size` px with dlib's `padding`.

    Detection runs at upsample 0 first and again at each higher count up to `upsample` only when no face was found:
    upsample 0 costs a third of upsample 1 (19 vs 77 ms on a 640 x 360 frame on this project's CPU) and finds faces
    of ~80 px and more, which dataset faces are; 1 finds faces down to ~40 px. Frames whose longer side exceeds
    `detect_max_side` are shrunk for detection only (SAMM's 2040 x 1088 frames); landmarks and crops use the full
    resolution (`upsample_first` 1 restores the finer-only detection). `register` ('none' | 'landmarks' | 'ecc' |
    'consensus') is how the apex is brought onto the onset (register()); `consensus` overrides CONSENSUS's settings
    (its limits of a plausible head motion apply to every mode).
    """

    def __init__(self, size: int = 224, padding: float = 0.25, upsample: int = 1, detect_max_side: int | None = 640,
                 predictor: str | Path | None = None, register: str = DEFAULT_REGISTER, upsample_first: int = 0,
                 consensus: dict | None = None):
        if size < 16:
            raise MertoolError(f"alignment size {size}: expected at least 16 px")
        if upsample < 0:
            raise MertoolError(f"upsample {upsample}: expected 0 or more")
        if not 0 <= upsample_first <= upsample:
            raise MertoolError(f"upsample_first {upsample_first}: expected 0 to upsample ({upsample})")
        if register not in REGISTER_MODES:
            raise MertoolError(f"align.register {register!r}: expected one of {', '.join(REGISTER_MODES)}")
        self.size, self.padding, self.upsample = int(size), float(padding), int(upsample)
        self.upsample_first = int(upsample_first)
        self.detect_max_side, self.register_mode = detect_max_side, register
        self.consensus = consensus_settings(consensus)
        self.predictor_path = Path(predictor) if predictor else predictor_path()
        self._detector, self._predictor = _models(str(self.predictor_path))

    def settings(self) -> dict:
        """What a cache records about how it was aligned."""
        return describe(self.size, self.padding, self.upsample, self.detect_max_side, self.register_mode,
                        self.upsample_first, self.consensus)

    def _boxes(self, rgb: np.ndarray) -> tuple[list, int]:
        """(face rectangles in full-image pixels, the chosen face first; the upsampling that found them)."""
        import dlib
        h, w = rgb.shape[:2]
        scale = 1.0
        img = rgb
        if self.detect_max_side and max(h, w) > self.detect_max_side:
            import cv2
            scale = self.detect_max_side / max(h, w)
            img = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        img = np.ascontiguousarray(img)
        for up in range(self.upsample_first, self.upsample + 1):
            rects, scores, _ = self._detector.run(img, up)
            if rects:
                break
        else:
            return [], self.upsample
        boxes = [dlib.rectangle(round(r.left() / scale), round(r.top() / scale), round(r.right() / scale),
                                round(r.bottom() / scale)) for r in rects]
        areas = np.array([b.width() * b.height() for b in boxes], float)
        # the largest face; among faces within 20% of the largest area, the most confident one (a weak false
        # detection of the same size as the face must not win on a pixel of area)
        order = sorted(range(len(boxes)), key=lambda i: (areas[i] >= 0.8 * areas.max(), scores[i], areas[i]),
                       reverse=True)
        return [boxes[i] for i in order], up

    def locate(self, rgb: np.ndarray, name: str = "") -> Located:
        """Largest face, its landmarks and chip; AlignSkip('no face') when none is found."""
        import dlib
        rgb = np.ascontiguousarray(rgb)
        boxes, up = self._boxes(rgb)
        if not boxes:
            raise AlignSkip(NO_FACE, f"{name or 'image'}: no face found by the dlib detector "
                                     f"(upsample {self.upsample_first}..{self.upsample})")
        shape = self._predictor(rgb, boxes[0])   # once: the landmarks and the chip both come from it
        pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        chip = dlib.get_face_chip_details(shape, self.size, self.padding)
        b = boxes[0]
        return Located(chip, pts, len(boxes), (b.left(), b.top(), b.right(), b.bottom()), up)

    def landmarks(self, rgb: np.ndarray, box) -> np.ndarray:
        """68 x 2 landmarks (image pixels) of the face in `box` (a dlib.rectangle or (left, top, right, bottom))."""
        import dlib
        if not isinstance(box, dlib.rectangle):
            box = dlib.rectangle(*(int(v) for v in box))
        shape = self._predictor(np.ascontiguousarray(rgb), box)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, int]:
        """(68 x 2 landmarks of the largest face in image pixels, number of faces found)."""
        loc = self.locate(rgb)
        return loc.landmarks, loc.n_faces

    def chip_from_landmarks(self, landmarks: np.ndarray):
        """The chip for given 68 image-pixel landmarks (e.g. landmarks tracked or stored elsewhere)."""
        import dlib
        pts = np.asarray(landmarks)
        if pts.shape != (68, 2):
            raise MertoolError(f"landmarks of shape {pts.shape}: expected (68, 2)")
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        rect = dlib.rectangle(int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1)))
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
        return dlib.get_face_chip_details(shape, self.size, self.padding)

    def apply(self, rgb: np.ndarray, chip) -> np.ndarray:
        """Cut `chip` out of a frame (any frame of the clip: the transform does not depend on its content)."""
        import dlib
        return dlib.extract_image_chip(np.ascontiguousarray(rgb, dtype=np.uint8), chip)

    def align_pair(self, onset: np.ndarray, apex: np.ndarray, name: str = "") -> AlignedPair:
        """Locate the face on the onset, cut it with its chip, and bring the apex onto it (`register`)."""
        if onset.shape != apex.shape:
            raise AlignSkip(SIZE_MISMATCH, f"{name or 'pair'}: onset {onset.shape[:2]} and apex {apex.shape[:2]} "
                                           f"frames differ in size")
        loc = self.locate(onset, name)
        ref = self.reference(onset, loc)
        apex_crop, reg = self.register(ref, apex)
        if reg is not None:   # between an onset and its apex: a motion no head makes there is refused
            apex_crop, reg = self._plausible(ref, apex, apex_crop, reg)
        return AlignedPair(ref.crop, apex_crop, ref.landmarks, loc.n_faces, loc.chip, reg, loc.upsample)

    def reference(self, rgb: np.ndarray, loc: Located | None = None) -> Reference:
        """The onset (or a clip's first frame) as registration's target: its crop, landmarks and upper-face mask."""
        loc = loc if loc is not None else self.locate(rgb)
        # registered pairs: both crops through the same warp (cv2, bilinear), so that resampling differs in nothing
        # but the transform (dlib's chip sampler against cv2's biased ECC by 0.1 deg / 0.2 px on identical faces)
        crop = self.apply(rgb, loc.chip) if self.register_mode == "none" else \
            _warp(rgb, np.linalg.inv(_h(chip_matrix(loc.chip)))[:2], self.size)
        lm = to_chip(loc.landmarks, loc.chip)
        mask = upper_face_mask(lm, self.size)
        ecc = self.register_mode == "ecc"   # the other modes use neither ECC's regions nor a window around the face
        return Reference(loc, crop, lm, chip_matrix(loc.chip), _gray(crop), mask,
                         tuple(upper_face_mask(lm, self.size, r) for r in ECC_REGIONS) if ecc else (), _window(mask),
                         face_patches(lm, self.size), _around(rgb, loc.box) if self.register_mode == "consensus"
                         else ((0, 0), None))

    def register(self, ref: Reference, rgb: np.ndarray,
                 before: bool = True) -> tuple[np.ndarray, Registration | None]:
        """(the frame `rgb` cut and registered onto `ref`'s crop, the Registration; None with register 'none').

        'consensus': the whole face's rigid motion, robust to what an expression moves (_consensus). 'ecc' and
        'landmarks': the previous release's registration of the upper face (_upper_face). Either way the frame is
        cut by ONE warp of the original (no second resampling; edges repeated, never black), a motion under 0.01 px
        is none (the apex is cut with the onset's own chip: identical frames give identical crops). align_pair then
        refuses a motion no head makes between onset and apex (IMPLAUSIBLE; _plausible): the apex is cut
        unregistered and the Registration's `flag` says why; frames of a long video registered onto an anchor
        (spotting) are not held to those limits. With 'none' the apex is cut with the onset's dlib chip, as before
        registration existed. `before=False` skips measuring the residual before registration where that costs time
        (NaN; spotting, which registers every frame, has no use for it).
        """
        if self.register_mode == "none":
            return self.apply(rgb, ref.loc.chip), None
        return self._consensus(ref, rgb) if self.register_mode == "consensus" else self._upper_face(ref, rgb, before)

    def _plausible(self, ref: Reference, rgb: np.ndarray, crop: np.ndarray,
                   reg: Registration) -> tuple[np.ndarray, Registration]:
        """The registration as it is, or refused (apex cut with the onset's chip, `flag` naming the limit) when its
        head motion exceeds IMPLAUSIBLE."""
        c = self.consensus
        limits = [(np.hypot(*reg.shift), c["max_shift"] * self.size, "shift", "px"),
                  (abs(reg.rotation), c["max_rotation"], "rotation", "deg"),
                  (abs(reg.scale - 1), c["max_scale_change"], "scale change", "")]
        over = [f"{what} {value:.3g}{' ' + unit if unit else ''} over the {limit:.3g}{' ' + unit if unit else ''} "
                f"limit" for value, limit, what, unit in limits if value > limit]
        if not over:
            return crop, reg
        to_frame = np.linalg.inv(_h(ref.matrix))[:2]
        reg.flag = (f"registration refused: head motion ({reg.shift[0]:+.1f}, {reg.shift[1]:+.1f}) px, "
                    f"{reg.rotation:+.1f} deg, scale {reg.scale:.3f} is implausible between onset and apex "
                    f"({'; '.join(over)}); apex cut unregistered")
        reg.applied, reg.matrix = False, to_frame
        return _warp(rgb, to_frame, self.size), reg

    def _apex_landmarks(self, ref: Reference, rgb: np.ndarray) -> np.ndarray:
        """68 landmarks of `rgb` in crop px, found without a second detection: in the onset's face box, and in that
        box moved by the shift phase correlation finds around the face (dlib's predictor fails when the face has
        moved a fifth of its box: 20 px on a 87 px box gave landmarks 16 deg off); the set a similarity of the
        onset's landmarks fits better is kept."""
        import cv2
        box = ref.loc.box
        candidates = [self.landmarks(rgb, box)]
        (x0, y0), window = ref.around
        if window is not None:
            here = _gray(rgb)[y0:y0 + window.shape[0], x0:x0 + window.shape[1]].astype(np.float64)
            (dx, dy), _ = cv2.phaseCorrelate(window, here, cv2.createHanningWindow(window.shape[::-1], cv2.CV_64F))
            if np.hypot(dx, dy) > 2:
                candidates.append(self.landmarks(rgb, (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)))

        def misfit(pts):
            m, _ = cv2.estimateAffinePartial2D(ref.loc.landmarks, pts, method=cv2.LMEDS)
            return np.inf if m is None else np.median(np.linalg.norm(ref.loc.landmarks @ m[:, :2].T + m[:, 2] - pts,
                                                                     axis=1))

        return to_chip(min(candidates, key=misfit), ref.loc.chip)

    def _consensus(self, ref: Reference, rgb: np.ndarray) -> tuple[np.ndarray, Registration]:
        """The apex registered by the rigid motion most of the face agrees on (see the constants above).

        Start: a least-median similarity fit of all 68 landmarks, kept rigid. Then CONSENSUS_ROUNDS times: cut the
        apex with the current motion, track the patch grid from the onset crop into it (Lucas-Kanade), fit the
        largest rigid consensus (_still_fit) and compose. Without a consensus (fewer than MIN_STILL patches agree)
        the landmark fit stands and the pair is flagged."""
        import cv2
        size = self.size
        to_frame = np.linalg.inv(_h(ref.matrix))
        lm = self._apex_landmarks(ref, rgb)
        start, _ = cv2.estimateAffinePartial2D(ref.landmarks, lm, method=cv2.LMEDS)
        head = _h(rigid_fit(ref.landmarks, ref.landmarks @ start[:, :2].T + start[:, 2]) if start is not None
                  else rigid_fit(ref.landmarks[list(STABLE_POINTS)], lm[list(STABLE_POINTS)]))
        c = self.consensus
        pts, g0 = ref.patches, ref.gray.astype(np.uint8)
        if c["patch_step"] != PATCH_STEP:
            pts = face_patches(ref.landmarks, size, c["patch_step"])
        tracked, fit, prev, note = None, None, head, ""
        for rnd in range(c["rounds"]):
            g1 = _gray(_warp(rgb, (to_frame @ head)[:2], size), np.uint8)
            lk = {"winSize": (c["patch_win"],) * 2, "maxLevel": 2 if rnd == 0 else 1, "minEigThreshold": 1e-3,
                  "criteria": (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.001)}
            nxt, status, _ = cv2.calcOpticalFlowPyrLK(g0, g1, pts, None, **lk)
            ok = status.ravel() == 1
            if tracked is None:   # forward-backward check, once: a patch that does not track back is not used
                back, status, _ = cv2.calcOpticalFlowPyrLK(g1, g0, nxt, None, **lk)
                tracked = ok & (status.ravel() == 1) & (np.linalg.norm(back - pts, axis=1) < c["track_back_px"])
            ok &= tracked
            found = _still_fit(pts[ok], nxt[ok], c) if ok.sum() >= c["min_still"] else None
            if found is None:
                note = (f"no consensus: {int(ok.sum())} of {len(pts)} patches tracked, fewer than {c['min_still']} "
                        f"follow one rigid motion; landmark fit kept")
                fit = None
                break
            fit, still = found
            prev, head = head, head @ _h(fit)
            if _extent(fit, size) < 0.02:   # converged: another round would move nothing
                break
        nan = float("nan")
        if _extent(head[:2], size) < 0.01:   # no motion: the onset's own chip (identical frames, identical crops)
            head = np.eye(3)
        if fit is None:
            crop = _warp(rgb, (to_frame @ head)[:2], size)
            reg = self._result("landmarks", ref, head, crop, nan, nan, note)
            reg.flag, reg.patches = note, int(ok.sum())
            return crop, reg
        a, b = pts[ok], nxt[ok]
        after = np.linalg.norm(a @ fit[:, :2].T + fit[:, 2] - b, axis=1)
        unregistered = np.linalg.norm(b @ prev[:2, :2].T + prev[:2, 2] - a, axis=1)
        scale = float(np.hypot(*rigid_fit(a[still], b[still], scale=True)[:, 0]))
        crop = _warp(rgb, (to_frame @ head)[:2], size)
        reg = self._result("consensus", ref, head, crop, float(np.median(unregistered[still])),
                           _held_out(a, b, still, c["patch_step"]), "", scale)
        reg.still_share, reg.patches = float(still.mean()), int(len(a))
        reg.moving_px = float(np.median(after[~still])) if (~still).any() else 0.0
        return crop, reg

    def _result(self, method: str, ref: Reference, head: np.ndarray, crop: np.ndarray, before: float,
                after: float, note: str, scale: float | None = None) -> Registration:
        """A Registration from the composed crop -> crop motion `head` (3 x 3 or 2 x 3)."""
        head = np.asarray(head, np.float64)[:2]
        size = self.size
        rotation = float(np.degrees(np.arctan2(head[1, 0], head[0, 0])))
        centre = np.array([(size - 1) / 2] * 2)
        shift = head[:, :2] @ centre + head[:, 2] - centre
        to_frame = np.linalg.inv(_h(ref.matrix))
        return Registration(method, (to_frame @ _h(head))[:2], (float(shift[0]), float(shift[1])), rotation,
                            float(np.hypot(head[0, 0], head[1, 0])) if scale is None else scale, before, after, note)

    def _upper_face(self, ref: Reference, rgb: np.ndarray, before: bool = True) -> tuple[np.ndarray, Registration]:
        """The previous release's registration ('ecc', 'landmarks'), unchanged so that its caches are reproduced:

        1. landmarks of `rgb` in the reference's face box (no second detection: the head moves a few px between
           onset and apex) -> a rigid least-squares fit of STABLE_POINTS, never the mouth or cheeks;
        2. 'ecc': a least-median fit to the optical flow over each ECC region, then OpenCV's ECC (Euclidean) on the
           region's pixels that follow it; the result most of the upper face agrees with is kept.
        ECC on brows and eyes minimises exactly the motion AU1, 2, 4, 6 and 7 make: it removes part of the expression
        (benchmarks/registration_grid.py). When ECC fails on every region the landmark fit stands and `note` says so.
        """
        import cv2
        size = self.size
        to_frame = np.linalg.inv(_h(ref.matrix))                 # onset-crop px -> frame px (inverse chip map)
        plain = _warp(rgb, to_frame[:2], size)                   # the onset's chip, no registration
        apex_lm = to_chip(self.landmarks(rgb, ref.loc.box), ref.loc.chip)
        head = rigid_fit(ref.landmarks[list(STABLE_POINTS)], apex_lm[list(STABLE_POINTS)])  # crop px -> crop px
        start = _warp(rgb, (to_frame @ _h(head))[:2], size)
        method, note, crop, best, after = "landmarks", "", start, -1.0, None
        if self.register_mode == "ecc":
            failures, flow = [], _flow(ref, start)
            for region in ref.regions:
                fix, still = _robust_motion(flow, region)
                try:
                    w = _ecc(ref, start, fix, still)
                except cv2.error as exc:   # no convergence (a blank or changed frame)
                    failures.append(str(exc).strip().splitlines()[-1][:80])
                    continue
                cand = (_h(head) @ _h(w))[:2]
                cand_crop = _warp(rgb, (to_frame @ _h(cand))[:2], size)
                rest = _flow(ref, cand_crop)[ref.mask > 0]
                agree = float((np.linalg.norm(rest, axis=1) < AGREE_PX).mean())
                if method == "landmarks" or agree >= best + AGREE_MARGIN:
                    chosen, crop, method, best = cand, cand_crop, "ecc", agree
                    after = float(np.linalg.norm(np.median(rest, axis=0)))
            if method == "ecc":
                head = chosen
            else:
                note = f"ECC failed ({'; '.join(failures)}); landmark fit kept"
        corners = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], float)
        if np.abs(corners @ head[:, :2].T + head[:, 2] - corners).max() < 0.01:
            head, crop, after = np.eye(2, 3), plain, None
        rotation = float(np.degrees(np.arctan2(head[1, 0], head[0, 0])))
        centre = np.array([(size - 1) / 2] * 2)
        shift = head[:, :2] @ centre + head[:, 2] - centre
        return crop, Registration(method, (to_frame @ _h(head))[:2], (float(shift[0]), float(shift[1])), rotation,
                                  float(np.hypot(head[0, 0], head[1, 0])),
                                  upper_face_residual(ref, plain, True) if before else float("nan"),
                                  upper_face_residual(ref, crop) if after is None else after, note)


def registration_warnings(name: str, reg: dict) -> list[str]:
    """Warning lines for one pair's registration (Registration.to_dict()): a refused or doubtful registration (its
    flag), a fallback to landmarks, a large residual."""
    out = []
    if reg.get("flag"):
        out.append(f"{name}: {reg['flag']}")
    if reg.get("note") and reg.get("note") != reg.get("flag"):
        out.append(f"{name}: registration: {reg['note']}")
    if reg["residual"] > RESIDUAL_WARN:
        out.append(f"{name}: registration leaves {reg['residual']:.2f} px on the face (over {RESIDUAL_WARN} px; "
                   f"head shift ({reg['shift_x']:+.1f}, {reg['shift_y']:+.1f}) px, rotation {reg['rotation']:+.2f} "
                   f"deg): check it with `mertool cache show`")
    return out


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """An already-cropped face resized to size x size (--no-align): area filter to shrink, cubic to enlarge."""
    import cv2
    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=interp))


# ------------------------------------------------------------------------------------------------ registration

@dataclass
class Reference:
    """What frames are registered onto: the onset's location, crop, crop-pixel landmarks and upper-face mask."""

    loc: Located
    crop: np.ndarray             # size x size x 3 uint8
    landmarks: np.ndarray        # 68 x 2, crop px
    matrix: np.ndarray           # 2 x 3, frame px -> crop px (the chip)
    gray: np.ndarray             # float32 size x size
    mask: np.ndarray             # uint8 size x size, 1 on the upper face (residuals)
    regions: tuple               # uint8 size x size masks, 1 where ECC registers (one per ECC_REGIONS entry)
    window: tuple[slice, slice]  # rows, columns around the upper face: flow and ECC look only there
    patches: np.ndarray          # K x 2 float32, crop px: the grid 'consensus' tracks (face_patches)
    around: tuple = ((0, 0), None)   # ((x0, y0), float64 grey window of the frame around the face) or no window


def rigid_fit(src: np.ndarray, dst: np.ndarray, scale: bool = False) -> np.ndarray:
    """2 x 3 least-squares rotation + translation taking points `src` to `dst` (Kabsch; with `scale`, the
    similarity of Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    cs, cd = src.mean(0), dst.mean(0)
    u, sv, vt = np.linalg.svd((src - cs).T @ (dst - cd))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, d]) @ u.T
    if scale:
        rot = rot * (sv[0] + d * sv[1]) / max(((src - cs) ** 2).sum(), 1e-12)
    return np.c_[rot, cd - rot @ cs]


def face_patches(landmarks: np.ndarray, size: int, step: int = PATCH_STEP) -> np.ndarray:
    """K x 2 float32 centres (crop px) of a `step`-px grid inside the convex hull of the 68 landmarks."""
    import cv2
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(landmarks).astype(np.int32)), 1)
    ys, xs = np.mgrid[step // 2:size:step, step // 2:size:step]
    keep = mask[ys, xs] > 0
    return np.ascontiguousarray(np.stack([xs[keep], ys[keep]], 1), np.float32)


def _still_fit(a: np.ndarray, b: np.ndarray, c: dict = CONSENSUS) -> tuple[np.ndarray, np.ndarray] | None:
    """(2 x 3 rigid motion a -> b that the largest coherent set of points follows, bool mask of that set), or None
    when fewer than `min_still` follow one. RANSAC at `ransac_px` finds the set; it is then narrowed to `still_k`
    robust sigmas of its own residuals (no tighter than `still_min_px`) and refitted, so that the slow edge of an
    expression, which moves less than `ransac_px`, leaves the fit."""
    import cv2
    m, inliers = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=c["ransac_px"],
                                             maxIters=2000, confidence=0.999)
    if m is None:
        return None
    still = inliers.ravel() == 1
    if still.sum() < c["min_still"]:
        return None
    fit = rigid_fit(a[still], b[still])
    for _ in range(4):
        r = np.linalg.norm(a @ fit[:, :2].T + fit[:, 2] - b, axis=1)
        band = float(np.clip(c["still_k"] * 1.4826 * np.median(r[still]), c["still_min_px"], c["ransac_px"]))
        narrowed = r < band
        if narrowed.sum() < c["min_still"]:
            break
        still = narrowed
        fit = rigid_fit(a[still], b[still])
    return fit, still


def _held_out(a: np.ndarray, b: np.ndarray, still: np.ndarray, step: int) -> float:
    """Median distance (px) by which the still patches miss a rigid fit of the other half of the grid (patches
    alternate between halves like a chessboard's squares): the residual of what the fit did not see."""
    half = ((a[:, 0] // step + a[:, 1] // step) % 2).astype(bool)
    errors = []
    for side in (True, False):
        train, test = still & (half == side), still & (half != side)
        if train.sum() >= 3 and test.any():
            f = rigid_fit(a[train], b[train])
            errors.append(np.linalg.norm(a[test] @ f[:, :2].T + f[:, 2] - b[test], axis=1))
    return float(np.median(np.concatenate(errors))) if errors else float("nan")


def _around(rgb: np.ndarray, box) -> tuple:
    """((x0, y0), the frame's grey window around the face box, grown by half the box each side, inside the frame)
    for phase correlation; no window when the frame leaves too little of it."""
    left, top, right, bottom = box
    gx, gy = (right - left) // 2, (bottom - top) // 2
    x0, y0 = max(left - gx, 0), max(top - gy, 0)
    x1, y1 = min(right + gx, rgb.shape[1]), min(bottom + gy, rgb.shape[0])
    if x1 - x0 < 32 or y1 - y0 < 32:
        return (0, 0), None
    return (x0, y0), _gray(np.ascontiguousarray(rgb[y0:y1, x0:x1])).astype(np.float64)


def _extent(m: np.ndarray, size: int) -> float:
    """How far (px) the 2 x 3 map `m` moves the crop's corners at most."""
    corners = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], float)
    m = np.asarray(m, np.float64)[:2]
    return float(np.abs(corners @ m[:, :2].T + m[:, 2] - corners).max())


def upper_face_mask(landmarks: np.ndarray, size: int, points=None, grow: int | None = None) -> np.ndarray:
    """uint8 mask (1 inside) of the convex hull of `points` (default UPPER_FACE: brows, eyes and nose bridge), grown
    by `grow` px."""
    import cv2
    mask = np.zeros((size, size), np.uint8)
    hull = landmarks[list(UPPER_FACE if points is None else points)]
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(hull).astype(np.int32)), 1)
    grow = UPPER_FACE_GROW if grow is None else grow
    return cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) if grow else mask


def upper_face_residual(ref: Reference, crop: np.ndarray, whole: bool = False) -> float:
    """How far the upper face of `crop` still lies from the reference's (crop px): the length of the median optical
    flow vector over the upper-face mask. The median vector is where the upper face as a whole went; sensor noise
    and a blink, pointing every way or covering a small part, drop out (on the real clip's neutral frames it reads
    0.1-0.2 px, the median flow *length* 0.2-0.4 px)."""
    return float(np.linalg.norm(np.median(_flow(ref, crop, whole)[ref.mask > 0], axis=0)))


def _robust_motion(flow: np.ndarray, region: np.ndarray, step: int = 3, tol: float = 1.0):
    """(2 x 3 rigid motion that most of `region` shows in `flow`, uint8 mask of the region's pixels that follow it).

    A least-median-of-squares fit (every `step`-th pixel) finds the motion that most of the region shares, so a part
    an expression moves (raised brows, squinting eyes) pulls it less; ECC then refines on the pixels within `tol` px
    of that fit only.
    """
    import cv2
    ys, xs = np.nonzero(region)
    src = np.stack([xs, ys], 1).astype(np.float32)
    sample = np.ascontiguousarray(src[::step])
    m, _ = cv2.estimateAffinePartial2D(sample, np.ascontiguousarray(sample + flow[ys[::step], xs[::step]]),
                                       method=cv2.LMEDS)
    if m is None:
        return np.eye(2, 3), region
    m = rigid_fit(sample, sample @ m[:, :2].T + m[:, 2])   # the fit's rotation and shift (scale left to none)
    err = np.linalg.norm(src @ m[:, :2].T + m[:, 2] - (src + flow[ys, xs]), axis=1)
    still = np.zeros_like(region)
    still[ys[err < tol], xs[err < tol]] = 1
    return m, (still if still.sum() > 0.3 * len(xs) else region)


def _flow(ref: Reference, crop: np.ndarray, whole: bool = False) -> np.ndarray:
    """Farneback flow from the reference crop to `crop` (size x size x 2, zero outside the upper-face window unless
    `whole`): 4 pyramid levels follow the ~10 px head motion of an unregistered pair (computed on the whole crop:
    the window is too small for the coarse levels), a 15 px window averages sensor noise."""
    import cv2
    rows, cols = (slice(None), slice(None)) if whole else ref.window
    flow = np.zeros(ref.gray.shape + (2,), np.float32)
    flow[rows, cols] = cv2.calcOpticalFlowFarneback(ref.gray[rows, cols].astype(np.uint8),
                                                    np.ascontiguousarray(_gray(crop, np.uint8)[rows, cols]), None,
                                                    0.5, 4, 15, 3, 5, 1.1, 0)
    return flow


def _ecc(ref: Reference, crop: np.ndarray, start: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """ECC (Euclidean) of `crop` onto the reference inside its window: 2 x 3, reference crop px -> `crop` px.

    The template is the window only (a third of the crop: a third of the time); the map is shifted by the window's
    corner on the way in and out. OpenCV's mask marks valid pixels of `crop`, which it warps along; `crop` starts
    within a few px of the reference, so the reference's region serves."""
    import cv2
    rows, cols = ref.window
    corner = np.array([cols.start, rows.start], np.float64)
    init = np.asarray(start, np.float64).copy()
    init[:, 2] += init[:, :2] @ corner
    _, w = cv2.findTransformECC(np.ascontiguousarray(ref.gray[rows, cols]), _gray(crop), init.astype(np.float32),
                                cv2.MOTION_EUCLIDEAN, ECC_CRITERIA, mask, ECC_SMOOTH)
    w = w.astype(np.float64)
    w[:, 2] -= w[:, :2] @ corner
    return w


def _window(mask: np.ndarray, margin: int = 16) -> tuple[slice, slice]:
    """Rows and columns of the mask's bounding box grown by `margin` px (flow and ECC need context at its edge)."""
    ys, xs = np.nonzero(mask)
    n = mask.shape[0]
    return (slice(max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, n)),
            slice(max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, n)))


def _h(m: np.ndarray) -> np.ndarray:
    """2 x 3 affine -> 3 x 3."""
    return np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])


def _gray(rgb: np.ndarray, dtype=np.float32) -> np.ndarray:
    import cv2
    return cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2GRAY).astype(dtype)


def _warp(rgb: np.ndarray, crop_to_frame: np.ndarray, size: int) -> np.ndarray:
    """The size x size crop whose pixel p is frame pixel crop_to_frame @ p (bilinear, as dlib cuts chips; edge
    pixels repeated rather than black where the map leaves the frame)."""
    import cv2
    return cv2.warpAffine(np.ascontiguousarray(rgb, np.uint8), np.asarray(crop_to_frame, np.float64), (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
