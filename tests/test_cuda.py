"""CUDA: the paths that only run on a GPU (bf16 autocast, channels_last, fused AdamW, device augmentation, parallel
folds on one GPU, predict --device cuda). Marked `cuda`: they run wherever torch.cuda.is_available() and skip with the
reason elsewhere (`pytest -m cuda` runs only these; benchmarks/gpu_check.sh runs them on a bare GPU machine)."""
import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mertool.training.train as train
from mertool.cli import main
from mertool.recipe import load_recipe
from mertool.training.dataset import augment_pair, augment_theta, load_dataset, warp_pair

pytestmark = pytest.mark.cuda
DEVICE = "cuda"
ROOT = Path(__file__).resolve().parents[1]
# the demo model (CVA + Swin FPF + AU, 32 px, width 0.25, Swin heads 1, 2, 4), shortened
DEMO = ["train.epochs=2", "train.decay_epochs=1"]


def demo_recipe(*extra):
    return load_recipe("demo", DEMO + list(extra))


def test_two_folds_of_the_demo_model_with_bf16_channels_last_and_fused_adamw(tmp_path, synthetic_cache, monkeypatch):
    seen = {"autocast": set(), "logits": set()}
    original = train._optimizer

    def optimizer(model, tr, device):
        opt = original(model, tr, device)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        seen["channels_last"] = conv.weight.is_contiguous(memory_format=torch.channels_last)
        seen["fused"] = bool(opt.defaults.get("fused"))

        def hook(module, args, out):
            seen["autocast"].add((torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")))
            seen["logits"].add((out[0] if isinstance(out, tuple) else out).dtype)

        model.register_forward_hook(hook)
        return opt

    monkeypatch.setattr(train, "_optimizer", optimizer)
    out = tmp_path / "run"
    rep = train.train_loso(demo_recipe(), synthetic_cache, out, subjects="01,02", device=DEVICE, progress=False)
    assert seen["channels_last"] and seen["fused"]
    assert seen["autocast"] == {(True, torch.bfloat16)}
    assert seen["logits"] == {torch.float32}  # the classifier's last layer stays fp32 under bf16
    assert rep["done_folds"] == ["01", "02"]
    for s in ("01", "02"):
        with open(out / "folds" / s / "predictions.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        probs = np.array([[float(v) for k, v in r.items() if k.startswith("p_")] for r in rows])
        assert len(rows) == 10 and np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert json.loads((out / "env.json").read_text())["device"]["type"] == "cuda"


def test_device_augmentation_equals_cpu_augmentation_for_the_same_draws():
    gen = torch.Generator().manual_seed(0)
    theta = augment_theta(8, 64, hflip=0.5, crop_padding=4, rotation=3.0, generator=gen, device="cpu")
    x, y = torch.rand(8, 3, 64, 64, generator=gen), torch.rand(8, 3, 64, 64, generator=gen)
    cpu = warp_pair(x, y, theta)
    dev = warp_pair(x.to(DEVICE), y.to(DEVICE), theta.to(DEVICE))
    for a, b in zip(cpu, dev):
        assert torch.allclose(a, b.cpu(), atol=1e-4)
    g = torch.Generator(device=DEVICE).manual_seed(1)  # draws made on the device itself
    o, a = augment_pair(x.to(DEVICE), y.to(DEVICE), hflip=0.5, crop_padding=4, rotation=3.0, generator=g)
    assert o.device.type == "cuda" and o.shape == x.shape and not torch.equal(o.cpu(), x)


def test_cuda_and_cpu_predictions_of_one_checkpoint_agree(synthetic_cache):
    recipe = demo_recipe()
    data = load_dataset(synthetic_cache, recipe["data"]["classes"], recipe["data"]["image_size"])
    r = train.run_fold(data, recipe, None, None, device="cpu")  # the final-model mode: all subjects
    idx = torch.arange(len(data))
    cpu = train.predict_probs(r.model, data, idx)
    model = copy.deepcopy(r.model).to(DEVICE).to(memory_format=torch.channels_last)
    dev = train.predict_probs(model, data.to(DEVICE), idx.to(DEVICE)).cpu()  # bf16 autocast, padded chunks
    assert torch.allclose(cpu, dev, atol=1e-2)
    top2 = cpu.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2e-2  # a near-tie within the tolerance may go either way
    assert torch.equal(cpu.argmax(1)[clear], dev.argmax(1)[clear]) and clear.float().mean() > 0.5


def test_two_folds_per_device_produce_every_fold(tmp_path, synthetic_cache):
    out = tmp_path / "run"
    argv = ["train-loso", "demo", "--cache", str(synthetic_cache), "--out", str(out), "--devices", f"{DEVICE}:0",
            "--folds-per-device", "2", "--quiet"] + [a for s in DEMO for a in ("--set", s)]
    assert main(argv) == 0
    assert sorted(p.parent.name for p in out.glob("folds/*/predictions.csv")) == ["01", "02", "03", "04"]


def test_predict_on_cuda_agrees_with_cpu(tmp_path, synthetic_cache, capsys):
    pytest.importorskip("face_recognition_models", reason="predict aligns faces with dlib's 68-point model, which "
                                                          "the face_recognition_models package provides")
    from PIL import Image

    from mertool.bench import astronaut_pair
    from mertool.training.runs import make_checkpoint, save_checkpoint

    recipe = demo_recipe("train.epochs=1")
    data = load_dataset(synthetic_cache, recipe["data"]["classes"], recipe["data"]["image_size"])
    r = train.run_fold(data, recipe, None, None, device="cpu")
    ckpt = save_checkpoint(make_checkpoint(r.model, recipe, data.classes), tmp_path / "model.pt")
    files = []
    for name, rgb in zip(("onset.png", "apex.png"), astronaut_pair()):
        files.append(str(tmp_path / name))
        Image.fromarray(rgb).save(files[-1])
    results = {}
    for device in ("cpu", DEVICE):
        assert main(["predict", *files, "--model", str(ckpt), "--aus", "none", "--json", "--device", device]) == 0
        results[device] = json.loads(capsys.readouterr().out)
    p_cpu, p_dev = results["cpu"]["probabilities"], results[DEVICE]["probabilities"]
    assert set(p_cpu) == set(p_dev) and all(abs(p_cpu[k] - p_dev[k]) < 1e-2 for k in p_cpu)
