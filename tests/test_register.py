"""Registration of the apex onto the onset (align.FaceAligner.register): known rigid motions come back to 0.3 px and
0.1 deg, synthetic AU motion survives added head motion, the real smile clip's upper face agrees to 1 px, detection
tries upsample 0 first, and caches record (or, made before, lack) the per-sample registration."""
from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import pytest
from skimage import data

from conftest import make_synthetic_cache
from mertool.align import AlignSkip, FaceAligner, registration_warnings, upper_face_mask
from mertool.cache import cache_info, load_cache, merge_caches, show_sample, verify_cache
from mertool.cli import main
from mertool.errors import MertoolError


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner(size=224)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return data.astronaut()


def rigid(rgb: np.ndarray, dx: float, dy: float, deg: float, centre) -> tuple[np.ndarray, np.ndarray]:
    """(the frame turned by `deg` about `centre` and shifted by (dx, dy), the 2 x 3 map of that motion)."""
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), deg, 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(rgb, m, rgb.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101), m


def _h(m):
    return np.vstack([m, [0, 0, 1]])


# ------------------------------------------------------------------------------------- known rigid motion

@pytest.mark.parametrize("dx, dy, deg", [(3.0, -2.0, 1.0), (-4.5, -9.6, 0.6), (1.5, 2.5, -1.0)])
def test_known_rigid_motion_comes_back(aligner, face, dx, dy, deg):
    """The apex is the onset moved rigidly: the registration's map (onset crop -> apex frame) must be the true one to
    0.3 px everywhere on the upper face and 0.1 deg; the registered apex crop then matches the onset crop there."""
    apex, motion = rigid(face, dx, dy, deg, np.array(face.shape[1::-1]) / 2)
    ref = aligner.reference(face)
    crop, reg = aligner.register(ref, apex)
    truth = (_h(motion) @ np.linalg.inv(_h(ref.matrix)))[:2]     # onset crop px -> apex frame px
    ys, xs = np.nonzero(upper_face_mask(ref.landmarks, 224))
    pts = np.c_[xs, ys, np.ones(len(xs))]
    error = np.linalg.norm(pts @ truth.T - pts @ reg.matrix.T, axis=1)
    turn = np.degrees(np.arctan2(truth[1, 0], truth[0, 0]) - np.arctan2(reg.matrix[1, 0], reg.matrix[0, 0]))
    print(f"rigid ({dx}, {dy}, {deg} deg): max error {error.max():.3f} px, rotation error {abs(turn):.4f} deg, "
          f"residual {reg.residual_before:.2f} -> {reg.residual:.2f} px")
    assert reg.method == "ecc" and error.max() <= 0.3 and abs(turn) <= 0.1
    assert reg.residual_before > 2.0 and reg.residual < 0.3
    diff = np.abs(crop.astype(float) - ref.crop.astype(float)).mean(-1)[ys, xs]
    assert np.median(diff) < 3   # grey levels: the same face, in place


def test_modes_none_landmarks_ecc(face):
    apex, _ = rigid(face, 3.0, -2.0, 1.0, np.array(face.shape[1::-1]) / 2)
    pairs = {m: FaceAligner(register=m).align_pair(face, apex) for m in ("none", "landmarks", "ecc")}
    assert pairs["none"].registration is None
    lm, ecc = pairs["landmarks"].registration, pairs["ecc"].registration
    assert lm.method == "landmarks" and ecc.method == "ecc"
    assert ecc.residual <= lm.residual < lm.residual_before   # the landmark fit helps, ECC more
    assert FaceAligner(register="ecc").settings()["register"] == "ecc"
    with pytest.raises(MertoolError, match="align.register 'rigid'"):
        FaceAligner(register="rigid")


def test_identical_frames_identical_crops(aligner, face):
    pair = aligner.align_pair(face, face.copy())
    assert np.array_equal(pair.onset, pair.apex)
    assert pair.registration.shift == (0.0, 0.0) and pair.registration.rotation == 0.0


def test_warnings_name_failures_and_large_residuals():
    ok = {"method": "ecc", "shift_x": 1.0, "shift_y": -2.0, "rotation": 0.3, "scale": 1.0, "residual_before": 5.0,
          "residual": 0.4, "note": ""}
    assert registration_warnings("01/EP01", ok) == []
    bad = registration_warnings("01/EP02", {**ok, "residual": 2.4, "method": "landmarks", "note": "ECC failed (x)"})
    assert len(bad) == 2 and "ECC failed" in bad[0] and "2.40 px" in bad[1] and bad[1].startswith("01/EP02")


# ------------------------------------------------------------------------------------------ detection speed

def test_upsample_zero_first_then_one(aligner, face):
    """A large face is found at upsample 0; a ~45 px face needs 1 (the fallback), and which was used is recorded."""
    assert aligner.locate(face).upsample == 0
    small = cv2.resize(face, None, fx=0.42, fy=0.42, interpolation=cv2.INTER_AREA)
    canvas = np.full((300, 300, 3), 120, np.uint8)
    canvas[:small.shape[0], :small.shape[1]] = small
    assert aligner.locate(canvas).upsample == 1
    with pytest.raises(AlignSkip, match=r"upsample 0\.\.0"):
        FaceAligner(upsample=0).locate(canvas)


# ----------------------------------------------------------------------------- synthetic AU + head motion

def _motion_at(ref_crop: np.ndarray, crop: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Dense optical flow from one crop to the other, read at `points` (crop px)."""
    g0, g1 = (cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in (ref_crop, crop))
    flow = cv2.calcOpticalFlowFarneback(g0, g1, None, 0.5, 3, 15, 5, 5, 1.1, 0)
    p = np.clip(np.round(points).astype(int), 0, len(flow) - 1)   # the chin may lie at the crop's edge
    return flow[p[:, 1], p[:, 0]]


def test_synth_au_motion_survives_head_motion(tmp_path):
    """`synth --head-motion 6`: every head moves 6 px and up to 1.5 deg between onset and apex. After registration
    the AU motion at the governed landmarks is what synth asked for, within the synth tests' 1 px tolerance (mean
    motion of the governed points, median over clips); without registration the head motion swamps it."""
    from PIL import Image

    from mertool.align import read_rgb
    from mertool.synth import synth

    faces = tmp_path / "faces"
    faces.mkdir()
    Image.fromarray(data.astronaut()).save(faces / "astronaut.png")
    out = tmp_path / "syn"
    synth(out, faces=faces, subjects=2, per_subject=5, seed=2, workers=1, noise=False, jitter=False, head_motion=6)
    manifest = json.loads((out / "synth.json").read_text())
    ecc, none = FaceAligner(register="ecc"), FaceAligner(register="none")
    rows = []
    for s in manifest["samples"]:
        folder = out / "CASME2-RAW" / f"sub{s['subject']}" / s["sample_id"]
        onset, apex = read_rgb(folder / f"img{s['onset']}.jpg"), read_rgb(folder / f"img{s['apex']}.jpg")
        asked = {int(k): np.array(v) for k, v in s["displacement"].items() if np.hypot(*v) > 0.5}
        idx = np.array(sorted(asked))
        want = np.array([asked[i] for i in idx]).mean(0)
        errors = []
        for aligner in (ecc, none):
            pair = aligner.align_pair(onset, apex)
            got = _motion_at(pair.onset, pair.apex, pair.landmarks[idx]).mean(0)
            errors.append(float(np.linalg.norm(got - want)))
        rows.append((f"{s['subject']}/{s['sample_id']} {s['aus_coded']}", *errors))
    for name, e_ecc, e_none in rows:
        print(f"{name:<24} mean-motion error: registered {e_ecc:.2f} px, not registered {e_none:.2f} px")
    e_ecc, e_none = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    assert np.median(e_ecc) <= 1.0 and np.median(e_none) > 3.0
    assert (e_ecc < e_none).all()


# ------------------------------------------------------------------------------------------------ real clip

def test_real_clip_upper_face_agrees(realdata, aligner):
    """The neutral -> smile clip: img1 and img32 are ~9 px apart on the upper face as cut; registered, <= 1 px."""
    from mertool.align import read_rgb

    frames = realdata / "video" / "single_face" / "frames"
    if not frames.is_dir():
        pytest.skip(f"{frames} not available")
    pair = aligner.align_pair(read_rgb(frames / "img1.jpg"), read_rgb(frames / "img32.jpg"))
    reg = pair.registration
    print(f"real clip img1 -> img32: head shift ({reg.shift[0]:+.2f}, {reg.shift[1]:+.2f}) px, rotation "
          f"{reg.rotation:+.2f} deg, upper-face residual {reg.residual_before:.2f} -> {reg.residual:.2f} px")
    assert reg.residual_before > 5.0 and reg.residual <= 1.0 and reg.method == "ecc"


# -------------------------------------------------------------------------------------------------- caches

def test_old_cache_without_registration_still_loads(synthetic_cache, tmp_path, capsys):
    """Caches made before registration have no /registration group: they load, verify, show, merge and say so."""
    with h5py.File(synthetic_cache, "a") as f:
        del f["registration"]
    assert len(load_cache(synthetic_cache)) == 40
    assert cache_info(synthetic_cache)["registration"] is None and verify_cache(synthetic_cache)["ok"]
    assert main(["cache", "info", str(synthetic_cache)]) == 0
    assert "not recorded" in capsys.readouterr().out
    r = show_sample(synthetic_cache, "0", tmp_path / "old.png")
    assert r["registration"] is None and (tmp_path / "old.png").stat().st_size > 0
    new = make_synthetic_cache(tmp_path / "new.h5", dataset="samm")   # with the group: merged with the old one
    assert merge_caches([synthetic_cache, new], tmp_path / "m.h5")["samples"] == 80
    assert cache_info(tmp_path / "m.h5")["registration"]["registered"] == 0 and verify_cache(tmp_path / "m.h5")["ok"]


def test_preprocess_records_registration(tmp_path, capsys):
    """A CASME II-layout folder whose apex frames have the head moved: the cache and <out>.json record each pair's
    head motion and residual, `cache info` summarises them, `cache show` draws the overlay with the residual."""
    from mertool.preprocess import preprocess, summary_path
    from mertool.synth import synth

    out = tmp_path / "syn"
    synth(out, subjects=1, per_subject=3, seed=4, workers=1, head_motion=5)
    cache = tmp_path / "reg.h5"
    summary = preprocess(out, out=cache, workers=0, progress=False)
    report = json.loads(summary_path(cache).read_text())
    assert report["alignment"]["register"] == "ecc" and len(report["registration_samples"]) == 3
    for row in report["registration_samples"]:
        assert row["method"] == "ecc" and row["residual"] < row["residual_before"] and row["upsample"] == 0
    info = cache_info(cache)["registration"]
    assert info["registered"] == 3 and info["residual_px"]["max"] < 1.5 and info["shift_px"]["median"] > 2
    assert main(["cache", "info", str(cache)]) == 0
    assert "upper-face residual median" in capsys.readouterr().out
    r = show_sample(cache, "0", tmp_path / "show.png")
    assert r["registration"]["method"] == "ecc" and (tmp_path / "show.png").read_bytes()[:4] == b"\x89PNG"
    plain = tmp_path / "plain.h5"
    preprocess(out, out=plain, workers=0, progress=False, register="none")
    assert cache_info(plain)["registration"]["registered"] == 0
    with pytest.raises(MertoolError, match="--register"):
        preprocess(out, out=tmp_path / "x.h5", workers=0, progress=False, register="affine")


def test_predict_mirrors_the_training_cache():
    """A model's pairs are aligned as its cache's were: registered when recorded so, not when the cache predates
    registration (its alignment record has no `register`), preprocess's default when nothing is recorded."""
    from mertool.predict import Predictor

    old = {"method": "dlib-chip", "size": 224, "padding": 0.25, "upsample": 1, "detect_max_side": 640}
    assert Predictor._aligner(old).register_mode == "none"
    assert Predictor._aligner({**old, "register": "landmarks"}).register_mode == "landmarks"
    assert Predictor._aligner(None).register_mode == "ecc"
    # a --no-align cache: frames resized as they are, no face alignment and no registration (tests/test_parity.py)
    resize = Predictor._aligner({"method": "resize", "size": 112})
    assert type(resize).__name__ == "ResizePairs" and resize.register_mode == "none" and resize.size == 112
