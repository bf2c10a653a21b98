"""Optical flow and strain: accuracy against synthetic AU motion of known displacement, and flow in the cache
(`preprocess --flow`, `cache add-flow`, info, verify, show, merge, load)."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import make_synthetic_cache

from mertool.cache.store import load_cache, merge_caches, show_sample, verify_cache
from mertool.cli import main
from mertool.errors import MertoolError
from mertool.face.flow import add_flow, compute_flow, flow_params, flow_to_rgb, optical_strain


# ------------------------------------------------------------------------------ accuracy against known motion

@pytest.fixture(scope="module")
def au_pairs():
    """The astronaut's face at 224 px moved by a brow (AU 1+2) and a smile (AU 6+12) pattern at 1 and 3 px."""
    from skimage.data import astronaut

    from mertool.face.align import FaceAligner
    from mertool.synth.faces import au_motion_pair

    aligner, rgb = FaceAligner(size=224), astronaut()
    return {peak: [au_motion_pair(rgb, aus, peak, aligner=aligner, noise=1.5, seed=k)
                   for k, aus in enumerate(((1, 2), (6, 12)))] for peak in (1.0, 3.0)}


def _median_epe(pairs, method: str) -> float:
    """Median endpoint error over the face pixels that move by at least a tenth of the peak."""
    errors = []
    for p in pairs:
        gt = p.flow
        moving = p.face & (np.hypot(gt[..., 0], gt[..., 1]) >= 0.1 * p.peak)
        assert moving.sum() > 1000   # the measure covers a real share of the face
        fl = compute_flow(p.onset, p.apex, method)
        errors.append(np.hypot(*(fl - gt)[moving].T))
    return float(np.median(np.concatenate(errors)))


@pytest.mark.parametrize("method, bounds", [("tvl1", (0.10, 0.20)), ("dis", (0.10, 0.20)),
                                            ("farneback", (0.15, 0.35))])
def test_endpoint_error_on_synthetic_au_motion(au_pairs, method, bounds):
    for peak, bound in zip((1.0, 3.0), bounds):
        epe = _median_epe(au_pairs[peak], method)
        assert epe <= bound, f"{method} at {peak} px: median endpoint error {epe:.3f} px > {bound}"


def test_ground_truth_is_what_moved(au_pairs):
    """The pair's ground truth explains the apex: the apex sampled at x + flow is the onset (up to noise)."""
    import cv2

    p = au_pairs[3.0][1]
    ys, xs = np.mgrid[0:224, 0:224].astype(np.float32)
    back = cv2.remap(p.apex.astype(np.float32), xs + p.flow[..., 0], ys + p.flow[..., 1], cv2.INTER_CUBIC)
    still = cv2.remap(p.apex.astype(np.float32), xs, ys, cv2.INTER_CUBIC)
    face = p.face & (np.hypot(p.flow[..., 0], p.flow[..., 1]) > 1)
    moved_err = np.abs(back - p.onset)[face].mean()
    assert moved_err < 0.6 * np.abs(still - p.onset)[face].mean()   # the motion, not noise, made the difference
    assert 2.9 <= p.peak <= 3.0 + 1e-6


def test_zero_motion_is_zero_flow():
    rng = np.random.default_rng(0)
    img = cv2_blur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for method in ("tvl1", "dis", "farneback"):
        fl = compute_flow(img, img, method)
        assert fl.shape == (64, 64, 2) and fl.dtype == np.float32 and np.abs(fl).max() < 0.1, method


def cv2_blur(img):
    import cv2

    return cv2.GaussianBlur(img, (7, 7), 2)


def test_flow_sign_and_units():
    """A texture shifted 2 px right and 1 px down reads u = +2, v = +1."""
    rng = np.random.default_rng(1)
    big = cv2_blur(rng.integers(0, 256, (96, 96), dtype=np.uint8))
    onset, apex = big[8:72, 8:72], big[7:71, 6:70]   # apex(x) = onset(x - (2, 1))
    for method in ("tvl1", "dis", "farneback"):
        fl = compute_flow(onset, apex, method)[16:48, 16:48]
        assert np.allclose(np.median(fl.reshape(-1, 2), 0), (2, 1), atol=0.1), method


def test_optical_strain_of_known_fields():
    ys, xs = np.mgrid[0:32, 0:32].astype(np.float32)
    stretch = np.stack([0.03 * xs, -0.04 * ys], -1)            # e_xx = 0.03, e_yy = -0.04
    assert np.allclose(optical_strain(stretch), 0.05, atol=1e-6)
    shear = np.stack([0.02 * ys, 0.02 * xs], -1)               # e_xy = 0.02: sqrt(2) x 0.02
    assert np.allclose(optical_strain(shear), np.sqrt(2) * 0.02, atol=1e-6)
    theta = 0.01                                                # a small rotation strains nothing
    rotation = np.stack([-theta * (ys - 16), theta * (xs - 16)], -1)
    assert np.abs(optical_strain(rotation)).max() < 1e-6
    assert np.abs(optical_strain(np.full((8, 8, 2), 3.0))).max() == 0   # neither does a translation


def test_colour_wheel_encodes_direction():
    flow = np.zeros((2, 2, 2), np.float32)
    flow[0, 0], flow[0, 1], flow[1, 0] = (1, 0), (-1, 0), (0, 0)
    rgb, top = flow_to_rgb(flow, 1.0)
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[0, 1]) == (0, 255, 255)   # right red, left cyan
    assert tuple(rgb[1, 0]) == (255, 255, 255) and top == 1.0                        # no motion is white


def test_bad_arguments():
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(MertoolError, match="--flow 'raft': expected one of tvl1, dis, farneback"):
        compute_flow(img, img, "raft")
    with pytest.raises(MertoolError, match="unknown parameter.*num_iters.*expected attachment"):
        flow_params("tvl1", num_iters=3)
    with pytest.raises(MertoolError, match="num_iter='many': expected a int"):
        flow_params("tvl1", num_iter="many")
    with pytest.raises(MertoolError, match="onset .* and apex .* expected two frames of one shape"):
        compute_flow(img, img[:8], "dis")
    assert flow_params("tvl1", num_iter="20")["num_iter"] == 20


# ------------------------------------------------------------------------------------------------ in the cache

@pytest.fixture
def small_cache(tmp_path):
    return make_synthetic_cache(tmp_path / "c.h5", subjects=2, per_class=1, size=48)


def test_add_flow_then_load_info_verify_show(small_cache, tmp_path, capsys):
    assert main(["cache", "add-flow", str(small_cache), "--flow", "dis", "--workers", "2", "--quiet"]) == 0
    assert "dis flow and strain for 10 pairs" in capsys.readouterr().out
    data = load_cache(small_cache)
    assert data.flow.shape == (10, 48, 48, 2) and data.flow.dtype == np.float16
    assert data.strain.shape == (10, 48, 48) and data.strain.dtype == np.float16
    settings = data.flow_settings
    assert settings["method"] == "dis" and settings["params"]["preset"] == "medium"
    expect = compute_flow(data.onset[3], data.apex[3], "dis")   # the stored flow is this pair's, in order
    assert np.allclose(data.flow[3].astype(np.float32), expect, atol=2e-3)
    assert np.allclose(data.strain[3].astype(np.float32), optical_strain(expect), atol=2e-3)
    assert load_cache(small_cache, flow=False).flow is None
    assert verify_cache(small_cache)["ok"]
    assert main(["cache", "info", str(small_cache)]) == 0
    assert "10 of 10 pairs" in capsys.readouterr().out
    shown = show_sample(small_cache, "0", tmp_path / "s.png")
    assert shown["flow"]["method"] == "dis" and (tmp_path / "s.png").stat().st_size > 0
    with h5py.File(small_cache, "a") as f:   # a pair whose flow was never computed is named
        f["flow"][4] = np.nan
    problems = verify_cache(small_cache)["problems"]
    assert len(problems) == 1 and "EP04_00 (#4): flow not computed" in problems[0]
    with pytest.raises(MertoolError, match="flow of 1 sample.*not computed.*add-flow"):
        load_cache(small_cache)


def test_cache_without_flow_loads_as_before(small_cache, tmp_path):
    data = load_cache(small_cache)
    assert data.flow is None and data.strain is None and data.flow_settings is None
    assert show_sample(small_cache, "1", tmp_path / "s.png")["flow"] is None
    assert verify_cache(small_cache)["ok"]


def test_add_flow_refuses_existing_flow_unless_replace(small_cache, capsys):
    add_flow(small_cache, "farneback", workers=0)
    before = small_cache.read_bytes()
    assert main(["cache", "add-flow", str(small_cache), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {small_cache}: already has farneback flow; pass --replace to compute it again\n"
    assert small_cache.read_bytes() == before
    r = add_flow(small_cache, "dis", replace=True, workers=0)
    assert r["replaced"] == "farneback" and r["pairs"] == 10
    assert load_cache(small_cache).flow_settings["method"] == "dis"
    assert main(["cache", "add-flow", str(small_cache.with_name("none.h5")), "--quiet"]) == 2
    assert "no such cache file" in capsys.readouterr().err


def test_interrupted_add_flow_leaves_the_cache_as_it_was(small_cache, monkeypatch):
    from mertool.face import flow as flow_mod

    before = small_cache.read_bytes()
    real, calls = flow_mod.compute_flow, []

    def failing(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(flow_mod, "compute_flow", failing)
    with pytest.raises(KeyboardInterrupt):
        add_flow(small_cache, "dis", workers=0)
    assert small_cache.read_bytes() == before
    assert sorted(p.name for p in small_cache.parent.iterdir()) == ["c.h5"]   # no temporary file left


def test_merge_keeps_flow_only_when_made_alike(tmp_path):
    a = make_synthetic_cache(tmp_path / "a.h5", subjects=1, per_class=1, size=32, dataset="casme2")
    b = make_synthetic_cache(tmp_path / "b.h5", subjects=1, per_class=1, size=32, dataset="samm", seed=1)
    for c in (a, b):
        add_flow(c, "dis", workers=0)
    r = merge_caches([a, b], tmp_path / "ab.h5")
    merged = load_cache(tmp_path / "ab.h5")
    assert r["flow"] == "kept" and merged.flow.shape == (10, 32, 32, 2)
    assert np.array_equal(merged.flow[5:], load_cache(b).flow)
    assert verify_cache(tmp_path / "ab.h5")["ok"]
    add_flow(b, "farneback", replace=True, workers=0)
    r = merge_caches([a, b], tmp_path / "ab2.h5")
    assert r["flow"].startswith("left out") and load_cache(tmp_path / "ab2.h5").flow is None


def test_preprocess_flow_and_resume(tmp_path):
    from test_preprocess import _small_folder

    from mertool.cache.preprocess import preprocess

    root = _small_folder(tmp_path / "CASME2", n=3)
    out = tmp_path / "c.h5"
    s = preprocess(root, out=out, workers=0, progress=False, align=False, size=64, flow="dis")
    assert s["flow"]["method"] == "dis" and s["flow"]["pairs"] == 3
    data = load_cache(out)
    assert data.flow.shape == (3, 64, 64, 2) and np.isfinite(data.flow.astype(np.float32)).all()
    # the mouth warp of the folder's apex moves the lower face, not the top rows
    length = np.hypot(*data.flow[0].astype(np.float32).transpose(2, 0, 1))
    assert length[40:].mean() > 3 * length[:16].mean()
    assert json.loads(data.attrs["flow"])["method"] == "dis"
    with pytest.raises(MertoolError, match="holds dis flow .* asks for --flow none: resume with --flow dis"):
        preprocess(root, out=out, workers=0, progress=False, align=False, size=64, resume=True)
    with pytest.raises(MertoolError, match="holds dis flow .* asks for --flow tvl1"):
        preprocess(root, out=out, workers=0, progress=False, align=False, size=64, resume=True, flow="tvl1")
    plain = tmp_path / "plain.h5"
    preprocess(root, out=plain, workers=0, progress=False, align=False, size=64)
    again = preprocess(root, out=plain, workers=0, progress=False, align=False, size=64, resume=True, flow="dis")
    assert again["flow"]["pairs"] == 3 and load_cache(plain).flow is not None   # a cache without flow may get it


def test_a_dead_flow_worker_is_one_line_and_leaves_the_cache(small_cache, monkeypatch, capsys):
    from concurrent.futures.process import BrokenProcessPool

    from mertool.face import flow as flow_mod

    def dies(*args, **kwargs):
        raise BrokenProcessPool("a worker died")

    before = small_cache.read_bytes()
    monkeypatch.setattr(flow_mod, "fill_flow", dies)
    assert main(["cache", "add-flow", str(small_cache), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a flow worker process died (out of memory?); the cache is unchanged" in err
    assert small_cache.read_bytes() == before and sorted(p.name for p in small_cache.parent.iterdir()) == ["c.h5"]
