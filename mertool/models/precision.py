"""Layers that stay in fp32 under autocast: a classifier's last layer, whose outputs are compared by argmax.

Under bf16 autocast an nn.Linear returns bf16, whose spacing above 4 is 0.031: two close logits become equal and
argmax picks the lower class, so predictions, the oracle epoch choice and `predict` would differ from fp32. FP32Linear
is an nn.Linear (same parameters, same state_dict keys, so checkpoints load either way) that runs with autocast off
on fp32 inputs. Use it as the last layer of any head whose logits are argmax'ed or softmax'ed:

    self.fc = FP32Linear(features, num_classes)          # new layer
    fp32_last_linear(head)                               # or convert the last nn.Linear of an existing head
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class FP32Linear(nn.Linear):
    """nn.Linear computed in fp32 whatever autocast is active; returns fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.float()
        if not torch.amp.is_autocast_available(x.device.type):  # meta (FLOP counting): no autocast to leave
            return F.linear(x.float(), self.weight.float(), bias)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.linear(x.float(), self.weight.float(), bias)


def fp32_last_linear(module: nn.Module) -> nn.Module:
    """Make the last nn.Linear inside `module` (in registration order) an FP32Linear, in place; returns module."""
    last = None
    for name, child in module.named_modules():
        if type(child) is nn.Linear:
            last = (name, child)
    if last is None:
        raise ValueError(f"{type(module).__name__}: no nn.Linear to run in fp32")
    last[1].__class__ = FP32Linear  # same parameters and buffers: only forward changes
    return module
