"""Issue #21: calibration (temperature recovered from known ground truth, cross-fitting never reads the held-out
subject), subject-bootstrap intervals (checked against an explicit resample), provenance (synthetic never ranked
against the paper), and the reject option's motion checks on pairs of known motion."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mertool import metrics
from mertool.calibration import apply_temperature, calibrate_parts, calibration_png, fit_temperature, \
    model_temperature, reliability
from mertool.evaluate import evaluate_runs
from mertool.provenance import cache_provenance, folder_provenance, merge, trained_on_line
from mertool.reject import judge, motion_stats, pair_motion

from test_evaluate import CLASSES, FOLDS, make_run


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _overconfident(n, t_true, seed):
    """Logits z; labels drawn from softmax(z / t_true): softmax(z) is overconfident by exactly t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3.0, (n, 4))
    p_true = _softmax(z / t_true)
    y = np.array([rng.choice(4, p=p) for p in p_true])
    return _softmax(z), y


# ------------------------------------------------------------------------------------------------ calibration

def test_temperature_recovers_known_overconfidence():
    probs, y = _overconfident(4000, 2.5, 0)
    t = fit_temperature(probs, y)
    assert t == pytest.approx(2.5, rel=0.08)
    assert reliability(apply_temperature(probs, t), y)["ece"] < 0.5 * reliability(probs, y)["ece"]
    assert fit_temperature(*_overconfident(4000, 1.0, 1)) == pytest.approx(1.0, rel=0.08)


def _parts(seed=0, subjects=5, n=200):
    out = []
    for i in range(subjects):
        probs, y = _overconfident(n, 2.0, seed + i)
        out.append({"subject": [f"s{i}"] * n, "true": y, "pred": probs.argmax(1), "probs": probs})
    return out


def test_fold_temperature_never_reads_the_held_out_subject():
    parts = _parts()
    cal = calibrate_parts(parts)
    assert set(cal["folds"]) == {f"s{i}" for i in range(5)}
    assert cal["ece_after"] < cal["ece_before"] and cal["nll_after"] < cal["nll_before"]
    # scramble s0's labels: s0's own temperature must not move, every other fold's does
    parts[0] = dict(parts[0], true=np.zeros_like(parts[0]["true"]))
    cal2 = calibrate_parts(parts)
    assert cal2["folds"]["s0"] == pytest.approx(cal["folds"]["s0"], abs=1e-9)
    assert all(cal2["folds"][s] != pytest.approx(cal["folds"][s], abs=1e-3) for s in ("s1", "s2", "s3", "s4"))


def test_old_checkpoint_is_uncalibrated_and_says_so(tmp_path):
    t, note = model_temperature({}, tmp_path / "model.pt")
    assert t == 1.0 and note.startswith("uncalibrated (T = 1)")
    t, note = model_temperature({"calibration": {"temperature": 1.7, "fitted_on": "x"}}, tmp_path / "model.pt")
    assert t == 1.7 and "fitted on x" in note


def test_evaluate_reports_intervals_calibration_and_picture(tmp_path, capsys):
    from mertool.cli import main

    run = make_run(tmp_path / "r")
    rep = evaluate_runs([run])["runs"][0]
    ci = rep["intervals"]
    for k in metrics.CI_METRICS:
        assert ci[k]["lo"] <= rep["metrics"][k] <= ci[k]["hi"]
    assert ci["subjects"] == 3 and rep["calibration"]["ece_before"] >= 0
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "0.75 [" in out and "bootstrap over the 3 subjects" in out and "ECE" in out
    assert (run / "calibration.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------------------ bootstrap

def test_bootstrap_matches_explicit_resampling():
    parts = [{"true": np.array(y), "pred": np.array(p)} for y, p in FOLDS.values()]
    cms = metrics.subject_confusions(parts, 3)
    w = metrics.bootstrap_weights(3, 50, seed=3)
    fast = metrics.bootstrap_values(cms, w)
    for b in range(50):
        y = np.concatenate([parts[s]["true"] for s in range(3) for _ in range(w[b, s])])
        p = np.concatenate([parts[s]["pred"] for s in range(3) for _ in range(w[b, s])])
        assert fast["accuracy"][b] == pytest.approx(metrics.accuracy(y, p))
        assert fast["uf1"][b] == pytest.approx(metrics.uf1(y, p, 3))
        assert fast["uar"][b] == pytest.approx(metrics.uar(y, p, 3))


def test_paired_bootstrap_tells_real_differences_from_noise():
    rng = np.random.default_rng(0)
    ys = [rng.integers(0, 3, 20) for _ in range(12)]
    good = metrics.subject_confusions([{"true": y, "pred": y} for y in ys], 3)
    bad = metrics.subject_confusions([{"true": y, "pred": (y + 1) % 3} for y in ys], 3)
    same = metrics.paired_bootstrap(good, good)
    assert same["accuracy"]["diff"] == 0 and not same["accuracy"]["differs"]
    assert metrics.paired_bootstrap(good, bad)["accuracy"]["differs"]
    # two runs differing on one sample of 240 do not differ beyond the subjects' uncertainty
    almost = [{"true": y, "pred": y.copy()} for y in ys]
    almost[0]["pred"][0] = (almost[0]["pred"][0] + 1) % 3
    assert not metrics.paired_bootstrap(good, metrics.subject_confusions(almost, 3))["accuracy"]["differs"]


# ------------------------------------------------------------------------------------------------ provenance

def test_synth_folder_is_synthetic_and_a_real_folder_is_not(tmp_path):
    from mertool.synth import MANIFEST, settings_key

    (tmp_path / "syn").mkdir()
    (tmp_path / "syn" / MANIFEST).write_text(json.dumps({"settings": settings_key(2, 2, 0, None)}))
    assert folder_provenance(tmp_path / "syn")["synthetic"] is True
    (tmp_path / "real").mkdir()
    assert folder_provenance(tmp_path / "real")["synthetic"] is False


def test_older_caches_detected_when_reliable_else_unknown():
    legacy = {"preprocess_summary": json.dumps({"sheet": "/x/demo_data/CASME2-coding-synthetic.xlsx"})}
    assert cache_provenance(legacy)["synthetic"] is True
    unknown = cache_provenance({"preprocess_summary": json.dumps({"sheet": "/data/CASME2/coding.xlsx"})})
    assert unknown["synthetic"] is None and "before mertool recorded" in unknown["detected"]
    assert cache_provenance({"provenance": json.dumps({"synthetic": False, "source": "dataset folder"})})[
        "synthetic"] is False
    assert merge([{"synthetic": False}, {"synthetic": True}])["synthetic"] is True
    assert merge([{"synthetic": False}, {"synthetic": None}])["synthetic"] is None


def _provenance_run(path, synthetic):
    run = make_run(path, cache={"path": "/nonexistent.h5", "fingerprint": "1", "dataset": "casme2"},
                   classes=["a", "b", "c", "d", "e"],
                   folds={s: (y, p) for s, (y, p) in {"s1": ([0, 1, 2], [0, 1, 2]), "s2": ([3, 4], [3, 4])}.items()})
    info = json.loads((run / "run.json").read_text())
    if synthetic is not None:
        info["provenance"] = {"synthetic": synthetic, "source": "mertool synth" if synthetic else "dataset folder"}
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_synthetic_runs_are_never_ranked_against_the_paper(tmp_path, capsys):
    from mertool.cli import main

    rep = evaluate_runs([_provenance_run(tmp_path / "syn", True)])
    assert rep["published"] is None and "synthetic" in rep["published_note"]
    assert main(["evaluate", str(tmp_path / "syn")]) == 0
    out = capsys.readouterr().out
    assert "synthetic faces" in out and "ranks" not in out
    real = evaluate_runs([_provenance_run(tmp_path / "real", False)])
    assert real["published"]["rank"] >= 1 and not real["published"].get("data_note")
    unknown = evaluate_runs([_provenance_run(tmp_path / "old", None)])
    assert "provenance is unknown" in unknown["published"]["data_note"]


def test_trained_on_line_names_synthetic_data():
    line = trained_on_line({"provenance": {"synthetic": True}, "subjects": ["1", "2"], "datasets": ["casme2"],
                            "class_counts": {"happiness": 3}, "n_samples": 3, "au_source": "estimated"})
    assert line.startswith("trained on synthetic demo faces only; not evidence about real faces")
    assert "not recorded" in trained_on_line(None)


# ------------------------------------------------------------------------------------------------ reject

def _face_like(seed=0, size=96):
    from skimage.data import astronaut
    from skimage.transform import resize

    img = (resize(astronaut()[30:230, 150:350], (size, size), anti_aliasing=True) * 255)
    return torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]


def _noisy(x, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 255)


def test_reject_no_motion_judges_shifted_pairs_and_refuses_far_motion():
    face = _face_like()
    still = {k: float(v[0]) for k, v in pair_motion(_noisy(face, 2.0, 1), _noisy(face, 2.0, 2)).items()}
    moved_img = torch.roll(face, shifts=1, dims=3)  # a known 1 px displacement of the whole face
    moved = {k: float(v[0]) for k, v in pair_motion(_noisy(face, 2.0, 1), _noisy(moved_img, 2.0, 2)).items()}
    train = torch.cat([torch.roll(face, s, dims=d) for s, d in ((1, 3), (-1, 3), (1, 2))])
    stats = motion_stats(torch.cat([face] * 3), train)
    v = judge(still, stats)
    assert not v.ok and v.code == "no-motion" and v.reason.startswith("no expression detected")
    assert judge(moved, stats).ok
    far = {k: float(v[0]) for k, v in pair_motion(face, torch.flip(face, dims=[2])).items()}  # upside down
    v = judge(far, stats)
    assert not v.ok and v.code == "out-of-range"
    v = judge(moved, stats, registration={"residual": 4.0, "rotation": 20.0})
    assert not v.ok and v.code == "registration"
