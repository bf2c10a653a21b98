"""`mertool bench` end to end with tiny settings: keys, positive figures, consistent ratios (never timings)."""
import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from mertool.bench import (loso_estimate, make_bench_cache, matmul_rate, model_flops, render_bench, replayed_batches,
                           run_bench)
from mertool.cache.store import load_cache, verify_cache
from mertool.cli import main
from mertool.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["model.width=0.25", "augment.crop_padding=4"]
TINY = dict(device="cpu", image_size=64, overrides=SMALL, batch=2, steps=2, synthetic_samples=12,
            synthetic_subjects=3, matmul_sizes=(64, 128), align_seconds=0.1, predict_reps=1, repeats=2,
            flow_peaks=(1.0,), flow_patterns=((1, 2),), flow_faces=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def check_report(rep: dict) -> None:
    """Every figure present and positive, every ratio the quotient it claims to be."""
    m, model, t, d = rep["matmul"], rep["model"], rep["train"], rep["data"]
    assert m["dtype"] == "float32" and m["flops"] == max(m["sizes"].values()) > 0
    assert model["train_flops_per_sample"] > model["forward_flops_per_sample"] > 0 and model["parameters"] > 0
    for key in ("samples_per_s", "step_samples_per_s", "achieved_flops", "mfu", "step_mfu", "warmup_s"):
        assert t[key] > 0, key
    assert t["achieved_flops"] == pytest.approx(model["train_flops_per_sample"] * t["samples_per_s"])
    assert t["mfu"] == pytest.approx(t["achieved_flops"] / m["flops"])
    assert t["step_mfu"] == pytest.approx(model["train_flops_per_sample"] * t["step_samples_per_s"] / m["flops"])
    assert t["samples"] == d["epoch_samples"] == t["batch"] * t["batches"]
    assert t["samples_per_s"] == pytest.approx(d["epoch_samples"] / d["epoch_from_cache_s"])
    for key in ("epoch_from_cache_s", "epoch_preloaded_s", "data_path_s", "cache_load_s"):
        assert d[key] > 0, key
    assert d["ratio"] == pytest.approx(d["epoch_from_cache_s"] / d["epoch_preloaded_s"])
    assert d["overhead_pct"] == pytest.approx(100 * (1 - 1 / d["ratio"]))
    assert 0 < d["direct_pct"] < 100
    assert rep["align"]["frames_per_s"] > 0 and rep["align"]["pairs_per_s"] > 0 and rep["align"]["pair_ms"] > 0
    assert rep["align"]["cpu_matmul_flops"] > 0 and rep["align"]["image"].endswith("640x480")
    assert rep["predict"]["pair_ms"] > 0 and rep["predict"]["forward_ms"] > 0
    est = rep["loso_estimate"]
    assert est["seconds"] == pytest.approx(est["sample_steps"] / t["samples_per_s"])
    if "flow" in rep:   # one pair at 1 px (tests/test_flow.py holds the bounds)
        for m, r in rep["flow"]["methods"].items():
            assert r["seconds_per_pair"] > 0 and 0 < r["epe"]["1"]["moving"]["median"] < 0.15, m


@pytest.mark.slow
def test_bench_end_to_end_on_a_synthetic_cache():
    tiny = {**TINY, "overrides": SMALL + ["train.epochs=1", "train.decay_epochs=1"]}
    rep = run_bench(**tiny, loso=True, devices="cpu", folds_per_device=2, threads=1)
    check_report(rep)
    lo, k1 = rep["loso"], rep["loso_k1"]  # K = 2 is measured against K = 1
    assert lo["seconds"] > 0 and lo["folds"] == 3 and lo["samples"] == 12 and lo["epochs"] == 1
    assert (lo["folds_per_device"], k1["folds_per_device"]) == (2, 1) and k1["folds"] == 3 and k1["seconds"] > 0
    assert "loso_no_cudnn_benchmark" not in rep  # a CUDA-only comparison
    assert rep["config"]["cache"].startswith("synthetic") and rep["config"]["cache_samples"] == 12
    assert rep["config"]["image_size"] == 64 and rep["device"]["type"] == "cpu"
    json.dumps(rep)  # JSON-ready
    console = Console(file=io.StringIO(), width=200)
    render_bench(rep, console)
    text = console.file.getvalue()
    for label in ("dense matmul rate (float32)", "model FLOP utilisation", "data path share", "alignment",
                  "predict latency", "full LOSO estimate", "full LOSO, measured", "full LOSO, 1 fold per device",
                  "tvl1 flow", "dis flow", "farneback flow"):
        assert label in text, label
    assert f"{100 * rep['train']['mfu']:.1f} %" in text


@pytest.mark.slow
def test_bench_without_the_landmark_model_skips_alignment_with_a_reason(monkeypatch):
    import mertool.face.align
    from mertool.errors import MertoolError

    def missing():
        raise MertoolError("face_recognition_models is not installed")

    monkeypatch.setattr(mertool.face.align, "predictor_path", missing)
    rep = run_bench(**{**TINY, "repeats": 1})
    assert rep["align"] == rep["predict"] == {
        "skipped": "skipped: the landmark model is not available (face_recognition_models is not installed)"}
    assert rep["train"]["samples_per_s"] > 0
    console = Console(file=io.StringIO(), width=200)
    render_bench(rep, console)
    assert "face_recognition_models is not installed" in console.file.getvalue()


@pytest.mark.slow
def test_bench_cli_json_only_on_stdout(synthetic_cache, capsys):
    args = ["bench", "--device", "cpu", "--json", "--cache", str(synthetic_cache), "--image-size", "64",
            "--batch", "4", "--steps", "2", "--set", "model.width=0.25", "--set", "augment.crop_padding=4",
            "--no-flow"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    rep = json.loads(out)  # nothing but the JSON on stdout
    check_report(rep)
    assert rep["config"]["cache"] == str(synthetic_cache) and rep["config"]["cache_samples"] == 40
    assert rep["train"]["batch"] == 4 and rep["data"]["epoch_samples"] == 8
    assert "bench: dense matmul rate" in err


def test_bench_user_errors_are_one_line(synthetic_cache, tmp_path, capsys):
    base = ["bench", "--device", "cpu", "--image-size", "64", "--set", "model.width=0.25"]
    bad = tmp_path / "not-a-cache.h5"
    bad.write_text("hello")
    cases = [(["--batch", "1"], "--batch 1: expected an integer >= 2"),
             (["--steps", "0"], "--steps 0: expected an integer >= 1"),
             (["--cache", str(bad)], "not a readable HDF5 file"),
             (["--recipe", "nosuch"], "nosuch: no such recipe file"),
             (["--loso", "--devices", "cpu,tpu"], "--devices cpu,tpu: 'tpu': expected"),
             (["--loso", "--folds-per-device", "0"], "--folds-per-device 0")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "CUDA is not available"))
    for extra, msg in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and msg in err[-1], (extra, err)


def test_matmul_rate_and_model_flops():
    rate = matmul_rate(torch.device("cpu"), sizes=(32, 64), min_seconds=0.01)
    assert set(rate["sizes"]) == {32, 64} and rate["flops"] == max(rate["sizes"].values()) > 0
    from mertool.models import build_model, forward_flops

    cfg = load_recipe("casme2", ["data.image_size=64", *SMALL])["model"]
    f = model_flops(cfg, batch=2)
    with torch.device("meta"):
        ref = forward_flops(build_model(cfg, load_weights=False), batch=2) / 2
    assert f["forward_per_sample"] == ref  # the model helper's count of the same forward
    assert 2 * ref < f["train_per_sample"] < 3.5 * ref  # backward costs about twice the forward


def test_replayed_batches_feed_the_real_training_loop(synthetic_cache):
    """Prebuilt batches give the real epoch loop exactly what its own data path would have built."""
    from mertool.models import build_model
    from mertool.training.dataset import load_dataset, make_batches
    from mertool.training.train import _batch, _optimizer, _train_epoch

    r = load_recipe("casme2", ["data.image_size=64", *SMALL])
    data = load_dataset(synthetic_cache, r["data"]["classes"], 64)
    tr = {**r["train"], "batch_size": 4}
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:12]

    def run(replay: bool) -> float:
        torch.manual_seed(0)
        model = build_model(r["model"])
        opt = _optimizer(model, tr, data.device)
        gen = torch.Generator().manual_seed(5)
        if not replay:
            return _train_epoch(model, opt, data, order, tr, r["augment"], gen)[0].item()
        batches = [_batch(data, idx, r["augment"], gen, False) for idx in make_batches(order, 4)]
        with replayed_batches(batches):
            return _train_epoch(model, opt, data, order, tr, r["augment"], None)[0].item()

    assert run(replay=True) == run(replay=False)
    with pytest.raises(RuntimeError, match="fewer batches"):
        with replayed_batches([None, None]):
            pass


def test_bench_cache_and_loso_estimate(tmp_path):
    path = make_bench_cache(tmp_path / "b.h5", ["happiness", "others"], 32, samples=10, subjects=4)
    c = load_cache(path)
    assert len(c) == 10 and sorted(set(c.subjects)) == ["01", "02", "03", "04"]
    assert sorted(set(c.emotions)) == ["happiness", "others"] and c.onset.shape == (10, 32, 32, 3)
    assert verify_cache(path)["ok"]
    est = loso_estimate(2.0, epochs=75)
    assert est["sample_steps"] == 75 * 25 * 249 and est["seconds"] == est["sample_steps"] / 2.0
