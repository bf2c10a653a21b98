"""Face alignment: dlib HOG face detector + 68-point landmarks on the ONSET frame, one face chip for both frames.

    aligner = FaceAligner(size=224)
    pair = aligner.align_pair(read_rgb("img46.jpg"), read_rgb("img59.jpg"))
    pair.onset, pair.apex        # 224 x 224 x 3 uint8 crops cut with the same transform
    pair.landmarks               # 68 x 2 onset landmarks in crop pixels

The transform (dlib.get_face_chip_details: rotation, scale and translation onto dlib's mean face) comes from the onset
landmarks only and is applied unchanged to the apex, so alignment never adds or removes motion between the two frames.
The 68-point model ships with face_recognition_models; it was trained on iBUG 300-W, whose terms exclude commercial use.
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


def describe(size: int, padding: float, upsample: int, detect_max_side: int | None) -> dict:
    """Alignment settings as a cache stores them (without loading the models)."""
    return {"method": "dlib-chip", "detector": "dlib frontal_face_detector (HOG)", "upsample": int(upsample),
            "detect_max_side": detect_max_side, "landmarks": PREDICTOR_FILE, "size": int(size),
            "padding": float(padding), "anchor": "onset"}


@dataclass
class Located:
    """One frame's face: the chip that aligns it, its landmarks (image pixels), how many faces were found."""

    chip: object                 # dlib.chip_details
    landmarks: np.ndarray        # 68 x 2 float32, image pixels
    n_faces: int
    box: tuple[int, int, int, int]  # left, top, right, bottom of the chosen face (image pixels)


@dataclass
class AlignedPair:
    """Onset and apex cut with the onset's chip."""

    onset: np.ndarray            # size x size x 3 uint8
    apex: np.ndarray
    landmarks: np.ndarray        # 68 x 2 float32, onset landmarks in crop pixels
    n_faces: int
    chip: object


class FaceAligner:
    """dlib frontal-face (HOG) detector + 68-point landmarks -> face chip of `size` px with dlib's `padding`.

    `upsample` is the detector's upsampling count (1 finds faces down to ~40 px). Frames whose longer side exceeds
    `detect_max_side` are shrunk for detection only (SAMM's 2040 x 1088 frames); landmarks and crops use the full
    resolution.
    """

    def __init__(self, size: int = 224, padding: float = 0.25, upsample: int = 1, detect_max_side: int | None = 640,
                 predictor: str | Path | None = None):
        if size < 16:
            raise MertoolError(f"alignment size {size}: expected at least 16 px")
        if upsample < 0:
            raise MertoolError(f"upsample {upsample}: expected 0 or more")
        self.size, self.padding, self.upsample = int(size), float(padding), int(upsample)
        self.detect_max_side = detect_max_side
        self.predictor_path = Path(predictor) if predictor else predictor_path()
        self._detector, self._predictor = _models(str(self.predictor_path))

    def settings(self) -> dict:
        """What a cache records about how it was aligned."""
        return describe(self.size, self.padding, self.upsample, self.detect_max_side)

    def _boxes(self, rgb: np.ndarray) -> list:
        """Face rectangles in full-image pixels, the chosen face first."""
        import dlib
        h, w = rgb.shape[:2]
        scale = 1.0
        img = rgb
        if self.detect_max_side and max(h, w) > self.detect_max_side:
            import cv2
            scale = self.detect_max_side / max(h, w)
            img = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(np.ascontiguousarray(img), self.upsample)
        if not rects:
            return []
        boxes = [dlib.rectangle(round(r.left() / scale), round(r.top() / scale), round(r.right() / scale),
                                round(r.bottom() / scale)) for r in rects]
        areas = np.array([b.width() * b.height() for b in boxes], float)
        # the largest face; among faces within 20% of the largest area, the most confident one (a weak false
        # detection of the same size as the face must not win on a pixel of area)
        order = sorted(range(len(boxes)), key=lambda i: (areas[i] >= 0.8 * areas.max(), scores[i], areas[i]),
                       reverse=True)
        return [boxes[i] for i in order]

    def locate(self, rgb: np.ndarray, name: str = "") -> Located:
        """Largest face, its landmarks and chip; AlignSkip('no face') when none is found."""
        import dlib
        rgb = np.ascontiguousarray(rgb)
        boxes = self._boxes(rgb)
        if not boxes:
            raise AlignSkip(NO_FACE, f"{name or 'image'}: no face found by the dlib detector "
                                     f"(upsample {self.upsample})")
        shape = self._predictor(rgb, boxes[0])
        pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        chip = dlib.get_face_chip_details(shape, self.size, self.padding)
        b = boxes[0]
        return Located(chip, pts, len(boxes), (b.left(), b.top(), b.right(), b.bottom()))

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
        """Locate the face on the onset and cut both frames with that one chip."""
        if onset.shape != apex.shape:
            raise AlignSkip(SIZE_MISMATCH, f"{name or 'pair'}: onset {onset.shape[:2]} and apex {apex.shape[:2]} "
                                           f"frames differ in size")
        loc = self.locate(onset, name)
        return AlignedPair(self.apply(onset, loc.chip), self.apply(apex, loc.chip), to_chip(loc.landmarks, loc.chip),
                           loc.n_faces, loc.chip)


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """An already-cropped face resized to size x size (--no-align): area filter to shrink, cubic to enlarge."""
    import cv2
    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=interp))
