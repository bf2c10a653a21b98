"""Issue #21: calibration (temperature recovered from known ground truth, cross-fitting never reads the held-out
subject), subject-bootstrap intervals (checked against an explicit resample), provenance (synthetic never ranked
against the paper), and the reject option's motion checks on pairs of known motion."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mertool.reports import metrics
from mertool.reports.calibration import apply_temperature, calibrate_parts, calibration_png, fit_temperature, \
    model_temperature, reliability
from mertool.cache.provenance import cache_provenance, folder_provenance, merge, trained_on_line
from mertool.predict.reject import judge, motion_stats, pair_motion
from mertool.reports.evaluate import evaluate_runs

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
    from mertool.synth.faces import MANIFEST, settings_key

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


# ------------------------------------------------------------------------------------------------ estimates

def test_estimate_from_flops_and_rate_then_from_finished_folds(tmp_path):
    from mertool.bench import model_flops
    from mertool.recipe import load_recipe
    from mertool.training.estimate import MFU, slow_hint, training_estimate

    recipe = load_recipe("demo")
    rate = {"flops": 50e9, "dtype": "float32"}
    est = training_estimate([(recipe, tmp_path / "run", [140, 140, 160])], torch.device("cpu"), 2, rate)
    flops = model_flops(recipe["model"], 2)["train_per_sample"] * 440 * recipe["train"]["epochs"]
    assert est["flops"] == pytest.approx(flops)
    assert est["seconds"] == pytest.approx((flops / (50e9 * MFU["cpu"][1]), flops / (50e9 * MFU["cpu"][0])))
    assert slow_hint(est, torch.device("cpu"), recipe) is None  # the demo: minutes
    paper = load_recipe("casme2")
    slow = training_estimate([(paper, tmp_path / "p", [240] * 26)], torch.device("cpu"), 1, rate)
    assert "--executor slurm" in slow_hint(slow, torch.device("cpu"), paper)
    # resumed: two finished folds took 1 s per sample-epoch on 2 workers, 440 sample-epochs x epochs are left
    for s in ("a", "b"):
        (tmp_path / "run" / "folds" / s).mkdir(parents=True)
        (tmp_path / "run" / "folds" / s / "fold.json").write_text(json.dumps({"seconds": 30.0, "n_train": 10,
                                                                              "epochs": 3}))
    est = training_estimate([(recipe, tmp_path / "run", [140, 140, 160])], torch.device("cpu"), 2, rate)
    mid = sum(est["seconds"]) / 2
    assert est["basis"] == "2 finished fold(s)" and mid == pytest.approx(440 * recipe["train"]["epochs"] / 2)


# ------------------------------------------------------------------------------------------------ small things

def test_ablation_table_wraps_names_at_80_columns_and_tests_differences(tmp_path):
    from rich.console import Console

    from mertool.reports.ablate import load_table, report_table

    long = "Vertical attention with position focaliser and hand-coded action units"
    (tmp_path / "t.yaml").write_text(
        "title: width test\nbase: {'*': ../demo.yaml}\npaper_columns: [accuracy, f1]\nvariants:\n"
        "  - {name: base, label: Baseline without attention, paper: {test: {accuracy: 80.0, f1: 0.8}}}\n"
        f"  - {{name: full, label: '{long}', paper: {{test: {{accuracy: 90.0, f1: 0.9}}}}}}\n"
        "  - {name: same, label: Baseline again}\n")
    rng = np.random.default_rng(1)
    ys = {f"s{i:02d}": rng.integers(0, 3, 10) for i in range(12)}
    make_run(tmp_path / "runs" / "t" / "base", folds={s: (y, (y + (np.arange(10) % 2)) % 3) for s, y in ys.items()})
    make_run(tmp_path / "runs" / "t" / "full", folds={s: (y, y) for s, y in ys.items()})
    make_run(tmp_path / "runs" / "t" / "same", folds={s: (y, (y + (np.arange(10) % 2)) % 3) for s, y in ys.items()})
    console = Console(width=80, record=True)
    rep = report_table(load_table(tmp_path / "t.yaml"), tmp_path / "runs" / "t", "test", console=console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert all(word in text for word in long.split())
    rows = {r["variant"]: r for r in rep["rows"]}
    assert rows["full"]["differs_beyond_uncertainty"] and not rows["same"]["differs_beyond_uncertainty"]
    assert rows["full"]["diff_accuracy"] == pytest.approx(0.5, abs=0.01)  # half the baseline's answers were wrong
    assert "paired bootstrap over 12 subjects" in (tmp_path / "runs" / "t" / "table.md").read_text()


def test_preprocess_warns_when_most_samples_are_skipped():
    from mertool.cache.preprocess import mostly_skipped

    summary = {"samples_read": 255, "in_cache": 1, "frames_root": "/data/CASME2/CASME2-RAW",
               "skipped_samples": {"missing frame file": [{"detail": "sub01/EP02_01: img46.jpg not found"}] * 250,
                                   "no face": [{"detail": "x"}] * 4}}
    line = mostly_skipped(summary)
    assert "254 of 255 samples were skipped" in line and "missing frame file (250 samples)" in line
    assert "/data/CASME2/CASME2-RAW" in line and "img46.jpg not found" in line
    assert mostly_skipped({**summary, "samples_read": 600}) is None


def test_divergence_hint_and_flat_attention(tmp_path):
    from mertool.predict.explain import explain_figure, uniform_note
    from mertool.training.train import suggested_lr

    assert suggested_lr(1e6) == 8e-4 and suggested_lr(1e-3) == pytest.approx(1e-4)
    assert "nearly uniform" in uniform_note(0.581, 0.588) and uniform_note(0.2, 0.9) == ""
    crop = np.zeros((32, 32, 3), np.uint8)
    flat = [torch.full((4, 8, 1), 0.585)]
    assert explain_figure(crop, crop, flat, tmp_path / "why.png").read_bytes()[:4] == b"\x89PNG"


def test_gitignore_covers_what_the_docs_write_and_scripts_spare_tracked_files():
    import re
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("demo_data/x.jpg", "demo_out/demo.h5", "casme2.h5", "casme2.h5.json", "why.png", "runs/x"):
        assert subprocess.run(["git", "-C", str(root), "check-ignore", "-q", path]).returncode == 0, path
    tracked = set(subprocess.run(["git", "-C", str(root), "ls-files"], capture_output=True, text=True).stdout.split())
    for script in root.glob("benchmarks/*.sh"):
        for target in re.findall(r"(?:--png|--out|>)\s+\"?([\w./-]+)", script.read_text()):
            assert target not in tracked, f"{script.name} writes over the tracked {target}"


def test_demo_next_commands_use_the_unseen_subject_and_a_still_pair(tmp_path):
    from mertool.demo import UNSEEN, next_commands

    unseen = tmp_path / UNSEEN
    samples = [{"subject": "01", "sample_id": f"EP0{i}_01", "first": 3, "onset": 6, "apex": 14, "emotion": "happiness"}
               for i in range(3)]
    (unseen).mkdir()
    (unseen / "synth.json").write_text(json.dumps({"samples": samples}))
    cmds = next_commands(tmp_path, unseen, tmp_path / "runs")
    assert len(cmds) == 3 and all(str(unseen) in c and "/data/" not in c for c in cmds)
    assert "EP00_01 --model" in cmds[0] and "--explain" in cmds[0]
    assert cmds[1].split()[2:4] == [str(unseen / "CASME2-RAW/sub01/EP01_01/img6.jpg"),
                                    str(unseen / "CASME2-RAW/sub01/EP01_01/img14.jpg")]
    assert "img3.jpg" in cmds[2] and "img6.jpg" in cmds[2] and "no motion" in cmds[2]
