"""Face alignment: the onset's chip cuts both frames (no added motion), landmarks in crop pixels, skips."""
from __future__ import annotations

import importlib.util

import cv2
import dlib
import numpy as np
import pytest
from skimage import data

from mertool.face import align
from mertool.face.align import MISSING, NO_FACE, SIZE_MISMATCH, UNREADABLE, AlignSkip, FaceAligner, chip_matrix, \
    read_rgb, to_chip
from mertool.errors import MertoolError


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner(size=224)


@pytest.fixture(scope="module")
def plain() -> FaceAligner:
    """No registration: the onset's chip cut from the apex as it is."""
    return FaceAligner(size=224, register="none")


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """The astronaut photo (real face, public domain, ships with scikit-image)."""
    return data.astronaut()


def shifted(rgb: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return cv2.warpAffine(rgb, np.float32([[1, 0, dx], [0, 1, dy]]), rgb.shape[1::-1], flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def test_identical_frames_give_identical_crops(aligner, face):
    pair = aligner.align_pair(face, face.copy())
    assert pair.onset.shape == (224, 224, 3) and pair.onset.dtype == np.uint8
    assert np.array_equal(pair.onset, pair.apex)


@pytest.mark.parametrize("dx, dy", [(3.0, -2.0), (-2.5, 1.0)])
def test_known_shift_stays_the_same_shift_in_the_crop(plain, face, dx, dy):
    """register none: the apex is the onset moved by (dx, dy): in the crops it must be that motion mapped by the
    chip's similarity transform (a detector run on the apex would have cancelled it). The best-matching translation
    of the onset crop, searched on a 0.25 px grid around the expected one, is the expected one."""
    pair = plain.align_pair(face, shifted(face, dx, dy))
    expected = chip_matrix(pair.chip)[:, :2] @ np.array([dx, dy])   # (x, y) motion in crop pixels
    onset = pair.onset.astype(np.float32)

    def error(sx, sy):
        moved = cv2.warpAffine(onset, np.float32([[1, 0, sx], [0, 1, sy]]), (224, 224), flags=cv2.INTER_LINEAR)
        return np.abs(moved - pair.apex)[24:-24, 24:-24].mean()

    grid = [(expected[0] + i / 4, expected[1] + j / 4) for i in range(-6, 7) for j in range(-6, 7)]
    best = min(grid, key=lambda c: error(*c))
    assert np.allclose(best, expected), (best, expected)
    assert error(*expected) < 1.5 < 10 < error(0, 0)   # the motion is there, and nothing else was added


@pytest.mark.parametrize("register", ["none", "ecc"])
def test_local_motion_stays_local(face, register):
    """Pulling up only the mouth region: the crops differ only around the mouth landmarks. Registration, which looks
    at the upper face only, keeps the mouth's motion and finds no head motion (within ECC's precision)."""
    aligner = FaceAligner(size=224, register=register)
    lm, _ = aligner.detect(face)
    mx, my = lm[48:68].mean(0)
    h, w = face.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bump = (3 * np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (2 * 5.0 ** 2))).astype(np.float32)
    apex = cv2.remap(face, xx, yy + bump, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    pair = aligner.align_pair(face, apex)
    diff = np.abs(pair.apex.astype(int) - pair.onset.astype(int)).sum(-1)
    share = 0.995
    if register == "ecc":   # a 0.1 deg rotation moves sharp edges far from the mouth by a grey level or a few
        reg = pair.registration
        assert reg.method == "ecc" and np.hypot(*reg.shift) < 0.1 and abs(reg.rotation) < 0.15, reg
        diff[diff < 12] = 0
        share = 0.85
    margin = 4 * 5.0 * np.linalg.norm(chip_matrix(pair.chip)[:, 0])   # 4 sigma of the bump, in crop pixels
    (x0, y0), (x1, y1) = pair.landmarks[48:68].min(0) - margin, pair.landmarks[48:68].max(0) + margin
    inside = diff[int(max(y0, 0)):int(y1), int(max(x0, 0)):int(x1)].sum()
    assert diff.sum() > 1000 and inside / diff.sum() > share
    assert (x1 - x0) * (y1 - y0) < 0.4 * 224 ** 2   # the region is a small part of the crop


def test_landmarks_in_crop_pixels(aligner, face):
    pair = aligner.align_pair(face, face)
    lm = pair.landmarks
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert (lm >= 0).all() and (lm < 224).all()
    # the predictor run again on the crop finds the same points (to within its own jitter)
    padded = np.ascontiguousarray(np.pad(pair.onset, ((60, 60), (60, 60), (0, 0)), mode="edge"))
    again, _ = aligner.detect(padded)
    assert np.abs(again - 60 - lm).mean() < 2.0


def test_chip_matrix_matches_dlib_sampling(aligner, face):
    """chip_matrix reimplements dlib's get_mapping_to_chip: check it against dlib's own sampling of coordinates."""
    chip = aligner.locate(face).chip
    h, w = face.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    sx, sy = dlib.extract_image_chip(xs, chip), dlib.extract_image_chip(ys, chip)
    inv = np.linalg.inv(np.vstack([chip_matrix(chip), [0, 0, 1]]))
    v, u = np.mgrid[0:224, 0:224]
    src = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1) @ inv[:2].T
    assert np.abs(src[:, 0] - sx.ravel()).max() < 1e-6 and np.abs(src[:, 1] - sy.ravel()).max() < 1e-6
    assert np.allclose(to_chip(src[:3], chip), np.stack([u.ravel(), v.ravel()], 1)[:3], atol=1e-4)


def test_apply_reuses_the_onset_chip(plain, face):
    other = shifted(face, 1, 1)
    pair = plain.align_pair(face, other)
    assert np.array_equal(plain.apply(other, pair.chip), pair.apex)
    chip = plain.chip_from_landmarks(plain.detect(face)[0])
    assert np.array_equal(plain.apply(face, chip), pair.onset)


def test_largest_of_several_faces(aligner, face):
    import matplotlib
    from PIL import Image
    grace = np.asarray(Image.open(f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg").convert("RGB"))
    small = cv2.resize(grace, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)   # face ~60 px
    canvas = np.full((520, 520 + small.shape[1], 3), 127, np.uint8)
    canvas[:512, :512] = face                                                       # face ~90 px
    canvas[:small.shape[0], 520:] = small
    loc = aligner.locate(canvas)
    assert loc.n_faces >= 2
    assert loc.box[2] < 512 and loc.landmarks[:, 0].max() < 512  # the astronaut, not the small face on the right


def test_no_face_is_a_skip(aligner):
    noise = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8), (5, 5), 0)
    with pytest.raises(AlignSkip) as e:
        aligner.align_pair(noise, noise, name="noise.jpg")
    assert e.value.reason == NO_FACE and "noise.jpg" in str(e.value)
    with pytest.raises(AlignSkip) as e:
        aligner.align_pair(np.full((240, 320, 3), 128, np.uint8), np.full((240, 320, 3), 128, np.uint8))
    assert e.value.reason == NO_FACE


def test_size_mismatch_is_a_skip(aligner, face):
    with pytest.raises(AlignSkip) as e:
        aligner.align_pair(face, face[:400])
    assert e.value.reason == SIZE_MISMATCH


def test_large_frames_detected_on_a_smaller_copy(face):
    big = cv2.resize(face, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    full = FaceAligner(detect_max_side=None).detect(face)[0]
    fast = FaceAligner(detect_max_side=512).detect(big)[0]   # detection at half size, landmarks at full size
    assert np.abs(fast / 2 - full).mean() < 2.0


def test_read_rgb(tmp_path, face):
    p = tmp_path / "face.jpg"
    cv2.imwrite(str(p), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    rgb = read_rgb(p)
    assert rgb.shape == face.shape and np.abs(rgb.astype(int) - face).mean() < 5   # RGB order, not BGR
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), face[..., 0])
    assert read_rgb(gray).shape == (512, 512, 3)                                     # SAMM frames are grayscale
    with pytest.raises(AlignSkip) as e:
        read_rgb(tmp_path / "gone.jpg")
    assert e.value.reason == MISSING and "gone.jpg" in str(e.value)
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(MertoolError) as e:
        read_rgb(tmp_path / "text.jpg")
    assert e.value.reason == UNREADABLE and "text.jpg" in str(e.value)
    (tmp_path / "cut.jpg").write_bytes(p.read_bytes()[:5000])
    with pytest.raises(AlignSkip, match="cut.jpg") as e:
        read_rgb(tmp_path / "cut.jpg")
    assert e.value.reason == UNREADABLE


def test_missing_landmark_model_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(MertoolError, match="face_recognition_models is not installed"):
        align.predictor_path()


def test_bad_settings():
    with pytest.raises(MertoolError, match="size 8"):
        FaceAligner(size=8)
    with pytest.raises(MertoolError, match="upsample -1"):
        FaceAligner(upsample=-1)
