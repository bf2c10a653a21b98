"""The motion stem options, the flow-reading models (STSTNet, OFF-ApexNet, model.motion flow) and their data path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mertool.errors import MertoolError
from mertool.models import build_model, count_params, forward_flops
from mertool.models.config import ModelConfig
from mertool.models.variants import variant_size

ROOT = Path(__file__).resolve().parents[1]
FLOW_MODEL = {"aus": "none", "au_head": False, "num_classes": 3, "image_size": 28}


# ------------------------------------------------------------------------------------------------ motion stem

def test_stem_sizes_against_the_released_code_measurement():
    """FaceSleuth (released code) was measured at 76.82 M parameters and 38.18 GFLOPs per 224 px sample, mertool's
    first release at 76.55 M / 31.26. mertool keeps the paper's 1x1 conv shortcut in the first CVA module where the
    released code has an identity (128 -> 128, stride 1): without it the mmnet stem gives the released figures."""
    light, mmnet = variant_size({}), variant_size({"stem": "mmnet"})
    assert light["parameters"] / 1e6 == pytest.approx(76.55, abs=0.005)
    assert light["gflops"] == pytest.approx(31.26, abs=0.005)
    shortcut_params = 128 * 128 + 2 * 128                 # 1x1 conv + BatchNorm weight and bias
    shortcut_gflops = 2 * 128 * 128 * 112 * 112 / 1e9     # a multiply-add counts 2, at 112 x 112
    assert (mmnet["parameters"] - shortcut_params) / 1e6 == pytest.approx(76.82, abs=0.005)
    assert mmnet["gflops"] - shortcut_gflops == pytest.approx(38.18, abs=0.005)


def test_stem_layers_and_old_checkpoints_build_the_light_stem():
    with torch.device("meta"):
        mmnet = build_model({"stem": "mmnet"}, load_weights=False)
        old = build_model({k: v for k, v in ModelConfig().to_dict().items() if k not in ("stem", "motion")},
                          load_weights=False)
    shapes = {k: tuple(v.shape) for k, v in mmnet.state_dict().items() if k.startswith("motion.stem.")
              and k.endswith("0.weight")}
    assert shapes == {"motion.stem.0.0.weight": (180, 3, 3, 3), "motion.stem.2.0.weight": (128, 180, 3, 3)}
    assert tuple(old.state_dict()["motion.stem.0.0.weight"].shape) == (64, 3, 3, 3)  # a config without the key
    assert old.config.stem == "light" and old.config.motion == "diff"


def test_paper_recipes_use_the_released_stem_and_the_demo_keeps_its_own():
    from mertool.recipe import load_recipe

    for name in ("casme2", "samm", "megc2019"):
        assert load_recipe(name)["model"]["stem"] == "mmnet", name
    assert load_recipe("demo")["model"]["stem"] == "light"


def test_a_run_folder_from_before_model_stem_is_told_how_to_resume():
    from mertool.recipe import dump_recipe, load_recipe, predates_hint, recipe_diff

    new = load_recipe("casme2")
    old = yaml.safe_load(dump_recipe(load_recipe("casme2", ["model.stem=light"])))
    for key in ("stem", "motion"):  # the previous release wrote neither key: they were the light stem, diff
        del old["model"][key]
    assert recipe_diff(old, new) == ["model.stem: None != 'mmnet'"]
    assert predates_hint(old, new) == ("; the run folder's recipe predates model.stem: resume it with "
                                       "--set model.stem=light")
    assert recipe_diff(old, load_recipe("casme2", ["model.stem=light"])) == []


# ------------------------------------------------------------------------------------------ flow-reading models

def test_baseline_layer_sizes_from_their_papers():
    """Counted from the layer lists: STSTNet 3x3 convs of 3, 5, 8 kernels on 3 channels, BatchNorm, a 16 x 5 x 5 ->
    3 classifier; OFF-ApexNet per stream 5x5 convs 1 -> 6 -> 16, then 1568 -> 1024 -> 1024 -> 3."""
    ststnet = sum(3 * 9 * k + k + 2 * k for k in (3, 5, 8)) + 16 * 5 * 5 * 3 + 3
    stream = (25 * 6 + 6) + (6 * 25 * 16 + 16)
    offapex = 2 * stream + (1568 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 3 + 3)
    for arch, expect in (("ststnet", ststnet), ("offapexnet", offapex)):
        with torch.device("meta"):
            model = build_model({"arch": arch, **FLOW_MODEL}, load_weights=False)
        assert count_params(model) == expect, arch
        assert 0 < forward_flops(model) < 1e8
    assert offapex / 1e6 == pytest.approx(2.66, abs=0.005)  # the size the Off-TANet authors report for it


def test_flow_models_read_flow_not_frames():
    torch.manual_seed(0)
    frames = torch.rand(4, 3, 28, 28)
    flow = torch.randn(4, 3, 28, 28)
    for cfg in ({"arch": "ststnet", **FLOW_MODEL}, {"arch": "offapexnet", **FLOW_MODEL},
                {"motion": "flow", "width": 0.25, "image_size": 32, "fpf": "none", "aus": "none"}):
        model = build_model(cfg).eval()
        size = model.config.image_size
        x, f = frames[..., :size, :size], flow[..., :size, :size]
        a = model(x, x, None, flow=f)
        assert torch.equal(a, model(torch.rand_like(x), torch.rand_like(x), None, flow=f))
        assert not torch.allclose(a, model(x, x, None, flow=f.flip(3)))
        with pytest.raises(ValueError, match="optical flow"):
            model(x, x, None)


def test_training_flops_of_the_flow_models_for_the_estimate():
    """The estimate before training counts a step's FLOPs (bench.model_flops): a flow-reading model is fed flow
    (it was called with frames only, and `ablate`'s estimate said "not available")."""
    from mertool.bench import model_flops

    for cfg in ({**FLOW_MODEL, "arch": "ststnet"}, {**FLOW_MODEL, "arch": "offapexnet"}):
        with torch.device("meta"):
            forward = forward_flops(build_model(cfg, load_weights=False))
        f = model_flops(cfg, batch=2)
        assert f["forward_per_sample"] == pytest.approx(forward, rel=0.01), cfg["arch"]
        assert 2 * forward < f["train_per_sample"] < 4 * forward, cfg["arch"]  # backward: about twice the forward


def test_flow_model_config_errors():
    with pytest.raises(MertoolError, match="reads only the optical flow"):
        ModelConfig.from_dict({"arch": "ststnet", "image_size": 28})  # aus oracle and an AU head: not for STSTNet
    with pytest.raises(MertoolError, match="model.motion"):
        ModelConfig.from_dict({"motion": "optical"})
    assert ModelConfig.from_dict({"motion": "flow"}).needs_flow and not ModelConfig().needs_flow


# ----------------------------------------------------------------------------------------------- flow data path

def test_resize_flow_scales_displacements_not_strain():
    from mertool.training.dataset import resize_flow

    flow = np.zeros((2, 64, 64, 2), np.float16)
    flow[..., 0], flow[..., 1] = 2.0, -1.0
    strain = np.full((2, 64, 64), 0.05, np.float16)
    out = resize_flow(flow, strain, 28).float()
    assert out.shape == (2, 3, 28, 28)
    assert out[:, 0].mean().item() == pytest.approx(2.0 * 28 / 64, abs=1e-3)
    assert out[:, 1].mean().item() == pytest.approx(-28 / 64, abs=1e-3)
    assert out[:, 2].mean().item() == pytest.approx(0.05, abs=1e-3)


@pytest.mark.parametrize("hflip,angle", [(False, 0.0), (True, 0.0), (False, 20.0), (True, -15.0)])
def test_augmentation_turns_the_flow_with_the_frames(hflip, angle):
    """Ground truth from the warped frames themselves: OpenCV's phase correlation of the warped onset and apex
    (a textured face shifted by a known amount) must give the displacement the warped flow says."""
    import cv2
    from skimage import data as skdata
    from skimage.transform import resize

    from mertool.training.dataset import warp_flow, warp_pair

    size, shift = 128, (3.0, -2.0)
    face = resize(skdata.astronaut().mean(-1)[40:240, 150:350], (size + 16, size + 16), anti_aliasing=True)
    onset = face[8:8 + size, 8:8 + size]
    apex = face[8 - int(shift[1]):8 - int(shift[1]) + size, 8 - int(shift[0]):8 - int(shift[0]) + size]
    flow = torch.zeros(1, 3, size, size)
    flow[0, 0], flow[0, 1], flow[0, 2] = shift[0], shift[1], 0.1
    a = np.radians(angle)
    sign = -1.0 if hflip else 1.0
    theta = torch.tensor([[[sign * np.cos(a), -sign * np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]]],
                         dtype=torch.float32)
    o, p = warp_pair(torch.from_numpy(onset).float()[None, None], torch.from_numpy(apex).float()[None, None], theta)
    got = warp_flow(flow, theta)
    c = slice(size // 2 - 8, size // 2 + 8)
    u, v = got[0, 0, c, c].mean().item(), got[0, 1, c, c].mean().item()
    window = cv2.createHanningWindow((size, size), cv2.CV_64F)
    (du, dv), _ = cv2.phaseCorrelate(o[0, 0].numpy().astype(np.float64), p[0, 0].numpy().astype(np.float64), window)
    assert (u, v) == pytest.approx((du, dv), abs=0.25)
    assert got[0, 2, c, c].mean().item() == pytest.approx(0.1, abs=1e-4)  # strain: a norm, unchanged


def _flow_cache(subjects: int = 4, per_class: int = 5, size: int = 32, seed: int = 0):
    """An in-memory cache whose frames are noise and whose flow carries the class: a motion band at a
    class-specific height (the pattern a micro-expression leaves), with the sign and length varying by sample."""
    from mertool.cache.store import CacheData

    rng = np.random.default_rng(seed)
    n = subjects * 3 * per_class
    flow = rng.normal(0, 0.05, (n, size, size, 2)).astype(np.float16)
    strain = np.abs(rng.normal(0, 0.01, (n, size, size))).astype(np.float16)
    emotions, subj = [], []
    for i in range(n):
        s, c = divmod(i, 3 * per_class)
        cls = c // per_class
        band = slice(cls * size // 3, (cls + 1) * size // 3)
        flow[i, band, :, 1] += rng.choice([-1, 1]) * rng.uniform(0.5, 2.0)
        strain[i, band] += 0.05
        emotions.append(("negative", "positive", "surprise")[cls])
        subj.append(f"s{s + 1:02d}")
    frames = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    meta = {"subject": np.array(subj, object), "sample_id": np.array([f"c{i}" for i in range(n)], object),
            "emotion": np.array(emotions, object), "dataset": np.array(["smic"] * n, object),
            "aus_known": np.zeros(n, bool)}
    data = CacheData(Path("flow-test.h5"), {"dataset": "smic", "image_size": size}, frames, frames.copy(),
                     np.zeros((n, 21), np.uint8), np.full((n, 68, 2), np.nan, np.float32), meta)
    data.flow, data.strain = flow, strain
    return data


def _flow_recipe(model: str, *extra):
    from mertool.recipe import load_recipe

    sets = ["data.include=", "data.classes=[negative, positive, surprise]", "data.image_size=28", "train.epochs=20",
            "train.decay_epochs=0", "train.gamma=1", "train.lr=3e-3", "train.weight_decay=0", "train.batch_size=16",
            "train.accum_steps=1", "augment.hflip=0.5", "augment.rotation=3", "augment.crop_padding=1"]
    return load_recipe(ROOT / "recipes" / "megc2019.yaml", sets + list(extra),
                       extra={"model": yaml.safe_load((ROOT / "recipes" / "model" / f"{model}.yaml").read_text())[
                           "model"]})


@pytest.mark.parametrize("model", ["ststnet", "offapexnet"])
def test_flow_models_learn_the_flow_of_a_held_out_subject(model, one_torch_thread):
    from mertool.training.dataset import load_for_recipe
    from mertool.training.train import run_fold

    recipe = _flow_recipe(model)
    data = load_for_recipe(_flow_cache(), recipe)
    assert data.flow.shape == (len(data), 3, 28, 28) and data.flow.dtype == torch.float16
    result = run_fold(data, recipe, "s01", device="cpu")
    assert result.accuracy >= 0.8, result.accuracy  # chance is 1/3; the frames are noise


def test_a_flow_model_on_a_cache_without_flow_names_the_fix():
    from mertool.training.dataset import load_for_recipe

    data = _flow_cache()
    data.flow = data.strain = None
    with pytest.raises(MertoolError, match="cache add-flow"):
        load_for_recipe(data, _flow_recipe("ststnet"))


# ------------------------------------------------------------------------------------------ the baselines table

def test_baselines_table_recipes_and_published_figures():
    from mertool.reports.ablate import load_table, paper_cell, variant_recipe

    table = load_table(ROOT / "recipes" / "ablations" / "megc2019_baselines.yaml")
    assert table.composite == "megc2019" and table.by_dataset == ["casme2", "samm", "smic"]
    for base in ("megc2019", "demo"):
        recipes = {v.name: variant_recipe(table, v, table.base[base]) for v in table.variants}
        for name in ("ststnet", "offapexnet"):
            r = recipes[name]
            assert r["model"]["arch"] == name and r["data"]["image_size"] == r["model"]["image_size"] == 28
            assert (r["train"]["lr"], r["train"]["batch_size"], r["train"]["epochs"]) == (5e-5, 256, 800)
            assert r["train"]["weight_decay"] == 0 and r["augment"]["hflip"] == 0  # Adam, no augmentation
        assert recipes["paper-diff"]["model"]["motion"] == "diff" and recipes["paper-flow"]["model"]["motion"] == "flow"
        assert recipes["paper-diff"]["model"]["stem"] == ("mmnet" if base == "megc2019" else "light")
        # the composite's protocol on either base: no AU input (the demo recipe alone would feed hand-coded AUs)
        assert recipes["paper-diff"]["model"]["aus"] == recipes["paper-flow"]["model"]["aus"] == "none"
    paper = {v.name: v.paper for v in table.variants}
    # as the sources print them (the note names each); a figure no source confirms is n/a, never a guess
    assert paper["ststnet"]["megc2019"] == {"uf1": "0.7353", "uar": "0.7605"}
    assert [paper["ststnet"][d]["uar"] for d in ("smic", "casme2", "samm")] == ["0.7013", "0.8686", "0.6810"]
    assert paper["offapexnet"]["megc2019"] == {"uf1": "0.72", "uar": "0.71"}
    assert paper_cell("uf1", paper["paper-diff"]["megc2019"]["uf1"], table.paper_missing) == "n/a"
    for name in ("arXiv:1902.03634", "arXiv:1907.09160", "christy1206/STSTNet"):
        assert name in table.note


@pytest.mark.slow
def test_baselines_table_runs_through_ablate_on_a_flow_cache(tmp_path, capsys):
    """One fold of each variant on a small cache with Farneback flow, through one pool of two workers (as the docs
    run it: the diff and flow variants of the paper's model read the same samples, one of them with flow): the table
    prints ours beside the published composite figures (n/a where no source confirms one) and per dataset."""
    from conftest import make_synthetic_cache
    from mertool.cli import main
    from mertool.face.flow import add_flow

    cache = make_synthetic_cache(tmp_path / "c.h5", subjects=3, per_class=2, size=64)
    add_flow(cache, "farneback", workers=1)
    sets = [a for s in ("train.epochs=1", "train.decay_epochs=0", "model.fpf=none") for a in ("--set", s)]
    assert main(["ablate", "ablations/megc2019_baselines", "--cache", str(cache), "--base", "demo", "--out",
                 str(tmp_path / "runs"), "--device", "cpu", "--folds-per-device", "2", "--quiet", "--subjects", "01",
                 *sets]) == 0
    md = (tmp_path / "runs" / "megc2019_baselines" / "table.md").read_text()
    for text in ("STSTNet", "OFF-ApexNet", "(apex - onset)", "(flow u, v, strain)", "0.7353", "0.7605", "n/a",
                 "published megc2019 figures", "casme2 UF1", "/ 0.8686", "1/3 (partial)", "| time |",
                 "GFLOP/s measured before training; seed 0;"):
        assert text in md, (text, md)
    assert "SYNTHETIC" not in md  # this cache was not made by `mertool synth`
    from mertool.reports.ablate import load_table, report_table

    table = load_table("ablations/megc2019_baselines")
    md = report_table(table, tmp_path / "runs" / "megc2019_baselines", None, synthetic=True)["markdown"].read_text()
    assert "SYNTHETIC DATA" in md and "the paper's columns: the published megc2019 figures" in md  # not "casme2"
