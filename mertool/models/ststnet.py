"""STSTNet (Liong et al., "Shallow Triple Stream Three-dimensional CNN (STSTNet) for Micro-expression Recognition",
FG 2019; arXiv:1902.03634): a two-layer network on the optical flow of the onset -> apex pair at 28 x 28.

Layers as the authors' released PyTorch code (github.com/christy1206/STSTNet, main.py) has them: three streams, each
a 3 x 3 convolution (padding 2) over the stacked (optical strain, u, v) input, with 3, 5 and 8 kernels, then ReLU,
BatchNorm, 3 x 3 max pooling with stride 3 and dropout 0.5; the 16 maps are concatenated ("three-dimensional"),
average-pooled 2 x 2, flattened (5 x 5 x 16 at 28 px) and classified by one linear layer. Schedule as released:
Adam, learning rate 5e-5, batch 256, no augmentation (recipes/model/ststnet.yaml and the baselines table set it).
The streams differ in width, not in input: each sees all three flow channels, as in the released code.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from mertool.models.config import ModelConfig
from mertool.models.flowinput import flow_input
from mertool.models.precision import FP32Linear

STREAM_KERNELS = (3, 5, 8)


class STSTNet(nn.Module):
    """flow (N x 3 x S x S: u, v, strain) -> class logits; onset, apex and AUs are not read."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.streams = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3, k, 3, padding=2), nn.ReLU(inplace=True), nn.BatchNorm2d(k),
                          nn.MaxPool2d(3, stride=3, padding=1), nn.Dropout(cfg.dropout))
            for k in STREAM_KERNELS)
        self.pool = nn.AvgPool2d(2, stride=2)
        side = ((cfg.image_size + 2 + 2 - 3) // 3 + 1) // 2  # conv (pad 2) -> max pool /3 (pad 1) -> avg pool /2
        self.fc = FP32Linear(sum(STREAM_KERNELS) * side * side, cfg.num_classes)
        self.au_head = None

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, aus: torch.Tensor | None = None,
                return_maps: bool = False, return_aus: bool = False, estimate_aus: bool | None = None,
                flow: torch.Tensor | None = None):
        if flow is None:
            raise ValueError("flow: STSTNet reads the pair's optical flow and strain; none was given")
        x = flow_input(flow).to(onset.dtype)
        fmap = self.pool(torch.cat([s(x) for s in self.streams], 1))
        logits = self.fc(fmap.flatten(1))
        if return_aus:
            return logits, None
        return (logits, {"cva": [], "motion": fmap, "position": None, "au_logits": None}) if return_maps else logits
