"""The model family: CVA equations, map chaining, FPF/ViT shapes, every variant, gradients, errors, weights, CLI."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mertool.errors import MertoolError
from mertool.models import (CVA, ModelConfig, MotionStream, build_model, count_params, forward_flops,
                            model_config_dict)
from mertool.models.cva import AxisAttention, ConvBlock, combined_map, reduced_channels
from mertool.models.fpf import SwinBackbone
from mertool.models.variants import list_variants

SMALL = {"image_size": 64, "width": 0.25}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomize_bn(module: torch.nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so eval-mode BN is not the identity."""
    for m in module.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def _bn(x, bn):
    """Eval-mode BatchNorm written out."""
    shape = (1, -1, 1, 1)
    return ((x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


def _conv_bn(x, seq):
    conv, bn = seq
    return _bn(F.conv2d(x, conv.weight, None, conv.stride, conv.padding), bn)


def _hswish(x):
    return x * torch.clamp(x + 3, 0, 6) / 6


def _spread(out: torch.Tensor, f: torch.Tensor, dim: int) -> tuple[float, float]:
    """Largest spread of the applied factor out / f along `dim` (where f is not ~0), and its typical spread across."""
    valid = f.abs() > 1e-3  # ReLU zeros carry no factor
    out, f = out.detach(), f.detach()
    r = out / torch.where(valid, f, torch.ones_like(f))
    hi = r.masked_fill(~valid, float("-inf")).amax(dim)
    lo = r.masked_fill(~valid, float("inf")).amin(dim)
    ok = torch.isfinite(hi) & torch.isfinite(lo)
    other = 2 if dim == 3 else 3
    across = r.masked_fill(~valid, float("nan")).nanmean(dim).std(other - 1 if other > dim else other)
    return float((hi - lo)[ok].max()), float(across.nanmean())


def _own_map(attn: AxisAttention, f: torch.Tensor, axis: str) -> torch.Tensor:
    """Eq. 2-3 for one axis alone: pool over the other axis, 1x1 down, BN, h-swish, 1x1 up, sigmoid."""
    z = f.mean(3, keepdim=True) if axis == "h" else f.mean(2, keepdim=True)
    y = _hswish(_bn(F.conv2d(z, attn.reduce.weight, attn.reduce.bias), attn.bn))
    up = attn.expand[axis]
    return torch.sigmoid(F.conv2d(y, up.weight, up.bias))


# ------------------------------------------------------------------------------------------------- equations

def test_hswish_matches_formula():
    x = torch.linspace(-8, 8, 1001)
    act = AxisAttention(64, ("h",)).act
    torch.testing.assert_close(act(x), x * F.relu6(x + 3) / 6)
    assert act(torch.tensor(-3.0)) == 0 and act(torch.tensor(3.0)) == 3


@pytest.mark.parametrize("c", [16, 64, 128, 256, 320, 512, 1024])
def test_reduction_width_is_max_8_c_over_32(c):
    assert reduced_channels(c) == max(8, c // 32)
    m = CVA(8, c, direction="both")
    assert m.attn.reduce.out_channels == max(8, c // 32)
    assert all(e.in_channels == max(8, c // 32) and e.out_channels == c for e in m.attn.expand.values())


def test_conv_block_is_1x1_of_3x3_plus_1x1():
    blk = ConvBlock(6, 16, stride=2).eval()
    _randomize_bn(blk)
    x = torch.randn(2, 6, 12, 12)
    want = F.relu(_conv_bn(F.relu(_conv_bn(x, blk.conv3)), blk.conv1) + _conv_bn(x, blk.shortcut))
    torch.testing.assert_close(blk(x), want)
    assert blk(x).shape == (2, 16, 6, 6)


def test_vertical_map_constant_along_width_and_equations():
    m = CVA(8, 64, stride=2, direction="vertical", continuous=True, prev_channels=32).eval()
    _randomize_bn(m)
    for conv in m.link.values():  # random link weights, not the mean-init, so the check has teeth
        conv.weight.data.normal_(0, 0.3)
    x = torch.randn(2, 8, 24, 20)
    prev = {"h": torch.rand(2, 32, 24, 1)}
    out, maps = m(x, prev)
    f = m.conv(x)
    assert maps["h"].shape == (2, 64, 12, 1)
    want = _own_map(m.attn, f, "h") * F.conv2d(F.max_pool2d(prev["h"], (2, 1)), m.link["h"].weight, m.link["h"].bias)
    torch.testing.assert_close(maps["h"], want)
    torch.testing.assert_close(out, f * want)
    along, across = _spread(out, f, 3)  # the factor applied to the features: the same in every column ...
    assert along < 1e-4 and across > 1e-3  # ... but varying along the height


def test_horizontal_map_constant_along_height():
    m = CVA(8, 32, direction="horizontal", continuous=False).eval()
    _randomize_bn(m)
    x = torch.randn(2, 8, 10, 14)
    out, maps = m(x)
    f = m.conv(x)
    assert maps["w"].shape == (2, 32, 1, 14) and m.link is None
    torch.testing.assert_close(maps["w"], _own_map(m.attn, f, "w"))
    along, across = _spread(out, f, 2)
    assert along < 1e-4 and across > 1e-3


def test_both_is_coordinate_attention_with_shared_reduction():
    m = CVA(8, 32, direction="both", continuous=False).eval()
    _randomize_bn(m)
    x = torch.randn(2, 8, 10, 14)
    out, maps = m(x)
    f = m.conv(x)
    a = m.attn
    z = torch.cat([f.mean(3, keepdim=True), f.mean(2, keepdim=True).transpose(2, 3)], 2)  # N x C x (H+W) x 1
    y = _hswish(_bn(F.conv2d(z, a.reduce.weight, a.reduce.bias), a.bn))
    a_h = torch.sigmoid(F.conv2d(y[:, :, :10], a.expand["h"].weight, a.expand["h"].bias))
    a_w = torch.sigmoid(F.conv2d(y[:, :, 10:], a.expand["w"].weight, a.expand["w"].bias)).transpose(2, 3)
    torch.testing.assert_close(maps["h"], a_h)
    torch.testing.assert_close(maps["w"], a_w)
    torch.testing.assert_close(out, f * a_h * a_w)
    assert combined_map(maps).shape == (2, 32, 10, 14)


@pytest.mark.parametrize("direction,continuous", [("vertical", True), ("horizontal", True), ("both", True),
                                                  ("vertical", False)])
def test_map_chain_through_the_four_modules(direction, continuous):
    """Hook every module: each map is its own map x 1x1(maxpool(previous map)) (continuous) or its own map alone."""
    stream = MotionStream(width=0.25, direction=direction, continuous=continuous).eval()
    _randomize_bn(stream)
    seen = []
    for mod in stream.stages:
        mod.register_forward_hook(lambda mod, args, output: seen.append((mod, args, output)))
    stream(torch.rand(2, 3, 64, 64))
    assert len(seen) == 4
    prev = None
    for i, (mod, args, (out, maps)) in enumerate(seen):
        f = mod.conv(args[0])
        for axis, m in maps.items():
            own = _own_map(mod.attn, f, axis) if direction != "both" else mod.attn(f)[axis]
            if continuous and i > 0:
                assert args[1] is not None
                link = mod.link[axis]
                p = F.adaptive_max_pool2d(prev[axis], m.shape[-2:])
                want = own * F.conv2d(p, link.weight, link.bias)
            else:
                assert mod.link is None  # the first module, or independent maps: nothing to chain
                want = own
            torch.testing.assert_close(m, want)
        prev = maps
    sizes = [maps["h" if direction != "horizontal" else "w"].shape for _, _, (_, maps) in seen]
    axis = 2 if direction != "horizontal" else 3
    assert [s[axis] for s in sizes] == [32, 16, 8, 4]
    assert [s[1] for s in sizes] == [32, 32, 64, 128]


def test_continuous_maps_differ_from_independent():
    """The chain changes the maps: zeroing the previous map changes a continuous module's output."""
    m = CVA(8, 16, direction="vertical", continuous=True, prev_channels=8).eval()
    x = torch.randn(1, 8, 8, 8)
    a = m(x, {"h": torch.rand(1, 8, 8, 1)})[1]["h"]
    b = m(x, {"h": torch.rand(1, 8, 8, 1)})[1]["h"]
    assert not torch.allclose(a, b)


# --------------------------------------------------------------------------------------------- whole models

def test_input_normalised_inside_model():
    model = build_model(SMALL).eval()
    got = {}
    model.motion.register_forward_pre_hook(lambda mod, args: got.setdefault("x", args[0]))
    onset, apex = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    model(onset, apex, torch.zeros(2, 21))
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(got["x"], (apex - onset) / std)
    assert not any("mean" in k or "std" in k for k in model.state_dict() if k.startswith("normalize"))


def test_full_size_forward_backward_batch2():
    """The paper's sizes: motion and position streams 512 x 14 x 14 at 224, CVA maps 112 -> 14, one backward."""
    model = build_model({})
    onset = torch.rand(2, 3, 224, 224)
    apex = (onset + 0.05 * torch.randn_like(onset)).clamp(0, 1)
    logits, maps = model(onset, apex, torch.randint(0, 2, (2, 21)).float(), return_maps=True)
    assert logits.shape == (2, 5)
    assert maps["motion"].shape == (2, 512, 14, 14)
    assert maps["position"].shape == (2, 512, 14, 14)
    assert [tuple(m.shape) for m in maps["cva"]] == [(2, 128, 112, 1), (2, 128, 56, 1), (2, 256, 28, 1),
                                                     (2, 512, 14, 1)]
    logits.logsumexp(1).sum().backward()
    assert torch.isfinite(model.motion.stem[0][0].weight.grad).all()
    assert model.fpf.backbone.model.patch_embed.proj.weight.grad.abs().sum() > 0


def test_swin_position_stream_shape_at_small_sizes():
    for size, width in ((64, 0.25), (96, 0.25), (112, 0.5)):
        m = SwinBackbone(size, out_channels=int(512 * width), window=7)
        assert m(torch.rand(1, 3, size, size)).shape == (1, int(512 * width), size // 16, size // 16)


def test_swin_heads_option_sets_each_stage_and_checks_the_channels():
    model = build_model({**SMALL, "image_size": 48, "window": 6, "swin_heads": [1, 2, 4]})
    stages = model.fpf.backbone.model.layers
    assert [s.blocks[0].attn.num_heads for s in stages] == [1, 2, 4]  # 32 channels a head at width 0.25
    assert [s.blocks[0].attn.qkv.in_features // s.blocks[0].attn.num_heads for s in stages] == [32, 32, 32]
    assert model(torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48), torch.zeros(2, 21)).shape == (2, 5)
    assert [s.blocks[0].attn.num_heads for s in build_model(SMALL).fpf.backbone.model.layers] == [4, 8, 16]
    with pytest.raises(MertoolError, match=r"model.swin_heads = \[3, 2, 4\]: the Swin stages have 32, 64, 128 "
                                           r"channels at this width; each stage's heads must divide"):
        build_model({**SMALL, "swin_heads": [3, 2, 4]})


VARIANTS = list_variants()


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_every_recipe_variant_gives_logits(variant):
    model = build_model({**variant.model, **SMALL, "num_classes": 3}).eval()
    x = torch.rand(3, 3, 64, 64)
    logits, maps = model(x, x.flip(3), torch.zeros(3, 21), return_maps=True, flow=torch.randn(3, 3, 64, 64))
    assert logits.shape == (3, 3)
    cfg = model.config
    assert len(maps["cva"]) == (4 if cfg.arch == "mer" and cfg.direction != "none" else 0)


def test_recipe_variants_cover_the_paper_tables():
    models = {v.name: ModelConfig.from_dict(v.model) for v in VARIANTS}
    got = {(c.arch, c.direction, c.continuous, c.fpf, c.frames, c.aus) for c in models.values()}
    on, off = "oracle", "none"
    full = ("mer", "vertical", True, "swin", "dual", on)
    assert models["full"] == ModelConfig()
    for row in [full, ("mer", "horizontal", True, "swin", "dual", on), ("mer", "both", True, "swin", "dual", on),
                ("mer", "vertical", False, "swin", "dual", on), ("mer", "vertical", True, "vit", "dual", on),
                ("mer", "vertical", True, "swin", "apex", on), ("mer", "vertical", True, "swin", "onset", on),
                ("mer", "vertical", True, "swin", "dual", off), ("mer", "vertical", True, "none", "dual", off)]:
        assert row in got, row
    assert models["baseline"].arch == "resnet18" and models["baseline"].aus == "none"
    # one model is two rows: Table 2's '+CVA +FPF' is Table 7's 'without AU'; no other two files coincide
    same = [(a, b) for a in models for b in models if a < b and models[a] == models[b]]
    assert same == [("baseline_cva_fpf", "no_au")]


@pytest.mark.parametrize("cfg", [{}, {"direction": "both", "fpf": "vit"}, {"arch": "resnet18"},
                                 {"direction": "horizontal", "frames": "onset", "aus": False}],
                         ids=["full", "both-vit", "resnet18", "horizontal-onset-noau"])
def test_gradients_reach_every_parameter(cfg):
    size = 64
    model = build_model({**cfg, **SMALL, "image_size": size}).train()
    x = torch.rand(4, 3, size, size)
    aus = torch.randint(0, 2, (4, 21)).float()
    logits, au_logits = model(x, (x + 0.1 * torch.randn_like(x)).clamp(0, 1), aus, return_aus=True)
    (F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])) + F.binary_cross_entropy_with_logits(au_logits, aus)).backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not dead, dead


def test_return_maps_uses_the_same_single_forward():
    model = build_model(SMALL).eval()
    calls = {"motion": 0, "fpf": 0, "cva": 0}
    model.motion.register_forward_hook(lambda *a: calls.__setitem__("motion", calls["motion"] + 1))
    model.fpf.register_forward_hook(lambda *a: calls.__setitem__("fpf", calls["fpf"] + 1))
    stored = []
    model.motion.stages[-1].register_forward_hook(lambda mod, args, out: stored.append(out[1]["h"]))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        logits, maps = model(x, x.roll(1, 2), torch.zeros(2, 21), return_maps=True)
        assert calls == {"motion": 1, "fpf": 1, "cva": 0}
        assert maps["cva"][-1] is stored[0]  # the very tensor of that pass, not a recomputation
        torch.testing.assert_close(model(x, x.roll(1, 2), torch.zeros(2, 21)), logits)


def test_aus_enter_the_head_only_when_enabled():
    x = torch.rand(2, 3, 64, 64)
    on = build_model(SMALL).eval()
    a, b = torch.zeros(2, 21), torch.ones(2, 21)
    assert not torch.allclose(on(x, x, a), on(x, x, b))
    off = build_model({**SMALL, "aus": False}).eval()
    torch.testing.assert_close(off(x, x, a), off(x, x, b))
    with pytest.raises(ValueError, match="aus"):
        on(x, x, None)


@pytest.mark.parametrize("arch", ["mer", "resnet18"])
def test_au_sources(arch):
    """oracle reads the given AU vector; estimated reads its own head's probabilities; none reads no AU vector."""
    x, y = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64)
    a, b = torch.zeros(3, 21), torch.ones(3, 21)
    torch.manual_seed(0)
    est = build_model({**SMALL, "arch": arch, "aus": "estimated"}).eval()
    logits, au_logits = est(x, y, None, return_aus=True)
    assert au_logits.shape == (3, 21)
    torch.testing.assert_close(est(x, y, a), est(x, y, b))  # hand codes are ignored
    # the classifier really reads the head's probabilities: change the head, the logits change
    with torch.no_grad():
        est.au_head.mlp[-1].bias += 3.0
    assert not torch.allclose(est(x, y, None), logits)
    for alias, source in ((True, "oracle"), (False, "none"), ("Estimated", "estimated")):
        assert ModelConfig.from_dict({"aus": alias}).aus == source
    with pytest.raises(MertoolError, match="model.aus"):
        ModelConfig.from_dict({"aus": "sometimes"})
    with pytest.raises(MertoolError, match="au_head"):
        ModelConfig.from_dict({"aus": "estimated", "au_head": False})


def test_au_detach_decides_whether_class_gradients_reach_the_au_head():
    x, y = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    for detach, reaches in ((True, False), (False, True)):
        torch.manual_seed(0)
        model = build_model({**SMALL, "aus": "estimated", "au_detach": detach}).train()
        F.cross_entropy(model(x, y), torch.tensor([0, 1, 2, 3])).backward()
        grad = model.au_head.mlp[-1].weight.grad
        assert (grad is not None and bool(grad.abs().sum() > 0)) == reaches


def test_bf16_autocast_and_channels_last():
    model = build_model({**SMALL, "direction": "both"}).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, maps = model(x, x.flip(2), torch.ones(2, 21), return_maps=True)
    assert logits.shape == (2, 5) and torch.isfinite(logits.float()).all()
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------------- config & errors

def test_config_round_trip_and_yaml_lists():
    cfg = ModelConfig.from_dict({"mlp_hidden": [256], "width": 1, "direction": "both", "swin_heads": [2, 4, 8]})
    assert cfg.mlp_hidden == (256,) and isinstance(cfg.width, float) and cfg.swin_heads == (2, 4, 8)
    d = cfg.to_dict()
    assert d["mlp_hidden"] == [256] and d["swin_heads"] == [2, 4, 8] and ModelConfig.from_dict(d) == cfg
    assert model_config_dict(None) == ModelConfig().to_dict()
    assert build_model(cfg).config == cfg


def test_unknown_key_error_names_key_and_valid_keys():
    with pytest.raises(MertoolError, match=r"model\.directon: unknown model option; valid options: arch, "
                                           r"num_classes.*direction"):
        build_model({"directon": "vertical"})


@pytest.mark.parametrize("key,value,expect", [
    ("direction", "diagonal", "model.direction = 'diagonal': expected one of vertical, horizontal, both, none"),
    ("fpf", "cnn", "expected one of swin, vit, none"),
    ("frames", "both", "expected one of dual, onset, apex"),
    ("arch", "resnet50", "expected one of mer, resnet18"),
    ("continuous", "yes", "model.continuous = 'yes': expected true or false"),
    ("image_size", 100, "multiple of 16"),
    ("width", 0, r"\(0, 8\]"),
    ("dropout", 1.0, r"\[0, 1\)"),
    ("mlp_hidden", [512, -1], "positive integers"),
    ("swin_heads", [4, 8], "three positive integers, one per Swin stage"),
    ("swin_heads", [4, 0, 16], "three positive integers"),
])
def test_bad_value_errors(key, value, expect):
    with pytest.raises(MertoolError, match=expect):
        ModelConfig.from_dict({key: value})


def test_missing_pretrained_file_is_a_user_error(tmp_path):
    with pytest.raises(MertoolError, match="not found.*never downloaded"):
        build_model({**SMALL, "pretrained": str(tmp_path / "nope.pt")})
    with pytest.raises(MertoolError, match="no FPF"):
        build_model({**SMALL, "fpf": "none", "fpf_pretrained": str(tmp_path / "x.pt")})
    bad = tmp_path / "bad.pt"
    bad.write_text("not a state dict")
    with pytest.raises(MertoolError, match="cannot read pretrained"):
        build_model({**SMALL, "pretrained": str(bad)})
    # load_weights=False (a checkpoint's state dict comes next) does not need the file
    assert build_model({**SMALL, "pretrained": str(tmp_path / "nope.pt")}, load_weights=False) is not None


# --------------------------------------------------------------------------------------------- local weights

def test_pretrained_whole_model_and_baseline_trunk(tmp_path):
    src = build_model(SMALL)
    torch.save({"format": "mertool-checkpoint", "state_dict": src.state_dict()}, tmp_path / "ckpt.pt")
    dst = build_model({**SMALL, "pretrained": str(tmp_path / "ckpt.pt")})
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)

    import torchvision
    tv = torchvision.models.resnet18(weights=None)  # what torchvision's ImageNet file holds (1000-class fc)
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    base = build_model({"arch": "resnet18", "image_size": 64, "pretrained": str(tmp_path / "resnet18.pth")})
    torch.testing.assert_close(base.trunk.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    rep = base.load_reports[0]
    assert rep.target == "ResNet-18 trunk" and rep.missing == [] and rep.unused == ["fc.bias", "fc.weight"]

    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(MertoolError, match="no tensor in the file matches"):
        build_model({**SMALL, "pretrained": str(tmp_path / "other.pt")})


def test_fpf_pretrained_from_a_timm_swin_checkpoint(tmp_path):
    from timm.models.swin_transformer import SwinTransformer

    # a 4-stage Swin as timm ships them (e.g. swin_base: embed 128, depths 2,2,18,2), here narrow and short
    ref = SwinTransformer(img_size=64, embed_dim=32, depths=(2, 2, 2, 2), num_heads=(4, 8, 16, 32), window_size=7,
                          num_classes=10)
    torch.save({"model": ref.state_dict()}, tmp_path / "swin.pth")
    with pytest.warns(UserWarning, match="left as initialised"):
        model = build_model({**SMALL, "fpf_pretrained": str(tmp_path / "swin.pth")})
    swin = model.fpf.backbone.model
    torch.testing.assert_close(swin.layers[2].blocks[1].attn.qkv.weight, ref.layers[2].blocks[1].attn.qkv.weight)
    torch.testing.assert_close(swin.patch_embed.proj.weight, ref.patch_embed.proj.weight)
    rep = model.load_reports[0]
    assert "layers.2.blocks.5.mlp.fc1.weight" in rep.missing  # stage 3 is deeper here than in the file
    assert "norm.weight" in rep.missing and "layers.3.downsample.norm.weight" in rep.unused  # 4th stage unused


# ----------------------------------------------------------------------------------------------- sizes & CLI

def test_flops_and_params_of_resnet18_match_torchvision():
    with torch.device("meta"):
        base = build_model({"arch": "resnet18", "aus": False, "au_head": False, "num_classes": 1000})
    assert count_params(base) == 11_689_512  # torchvision's documented resnet18 size
    assert abs(forward_flops(base) / 2e9 - 1.81) < 0.02  # torchvision documents 1.81 GMAC ("GFLOPS")
    assert forward_flops(base, batch=2) == 2 * forward_flops(base)


def test_model_list_cli_json(capsys):
    from mertool.cli import main

    assert main(["model", "list", "--image-size", "64", "--width", "0.25", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {v.name for v in VARIANTS}
    small_full = build_model({**SMALL})
    assert rows["full"]["parameters"] == count_params(small_full)
    assert rows["full"]["gflops"] == pytest.approx(forward_flops(small_full) / 1e9)
    assert rows["frames_apex"]["gflops"] < rows["full"]["gflops"]  # one Swin pass instead of two
    assert main(["model", "show", "attn_both", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["direction"] == "both" and shown["image_size"] == 224
    assert main(["model", "show", "no_such_variant"]) == 2
    assert "no such model variant" in capsys.readouterr().err
