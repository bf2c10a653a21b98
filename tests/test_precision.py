"""The classifier's last layer runs in fp32 under bf16 autocast, so close logits are not rounded into a tie."""
import torch
import torch.nn as nn

from mertool.models import build_model
from mertool.models.precision import FP32Linear, fp32_last_linear

BF16_CPU = dict(device_type="cpu", dtype=torch.bfloat16)


def _close_logits_layer(cls) -> nn.Linear:
    """x = [1] -> logits [4.035, 4.045]: 0.01 apart, below bf16's spacing of 0.031 above 4."""
    layer = cls(1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[4.035], [4.045]]))
        layer.bias.zero_()
    return layer


def test_plain_linear_ties_close_logits_under_bf16_and_fp32_linear_does_not():
    x = torch.ones(1, 1)
    with torch.autocast(**BF16_CPU):
        plain = _close_logits_layer(nn.Linear)(x)
        fixed = _close_logits_layer(FP32Linear)(x)
    assert plain.dtype == torch.bfloat16 and plain[0, 0] == plain[0, 1]  # the bug: a tie, argmax -> class 0
    assert fixed.dtype == torch.float32 and fixed.argmax(1).item() == 1
    assert torch.allclose(fixed, _close_logits_layer(nn.Linear)(x))  # equal to fp32 without autocast


def test_fp32_last_linear_converts_in_place_and_keeps_the_state_dict():
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    keys = list(head.state_dict())
    x = torch.randn(5, 8)
    before = head(x)
    fp32_last_linear(head)
    assert type(head[2]) is FP32Linear and type(head[0]) is nn.Linear
    assert list(head.state_dict()) == keys
    assert torch.equal(head(x), before)
    with torch.autocast(**BF16_CPU):
        assert head(x).dtype == torch.float32


def test_models_return_fp32_logits_under_bf16_autocast():
    for cfg in ({"arch": "mer", "width": 0.25, "image_size": 32, "fpf": "none"},
                {"arch": "resnet18", "direction": "none", "fpf": "none", "image_size": 32}):
        torch.manual_seed(0)
        model = build_model({**cfg, "num_classes": 5}).eval()
        x = torch.rand(2, 3, 32, 32)
        aus = torch.zeros(2, 21)
        with torch.no_grad(), torch.autocast(**BF16_CPU):
            logits = model(x, x * 0.9, aus)
        assert logits.dtype == torch.float32, cfg
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        assert type(last) is FP32Linear, cfg
