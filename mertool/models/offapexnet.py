"""OFF-ApexNet (Gan, Liong, Yau, Huang, Tan, "OFF-ApexNet on micro-expression recognition system", Signal Processing:
Image Communication 74, 2019; arXiv:1805.08699): two CNN streams on the horizontal (u) and vertical (v) optical flow
of the onset -> apex pair at 28 x 28, fused by fully connected layers.

Each stream: 5 x 5 convolution with 6 kernels, 2 x 2 max pooling, 5 x 5 convolution with 16 kernels, 2 x 2 max
pooling (7 x 7 x 16 at 28 px, "same" padding); the two streams are flattened and concatenated, then two fully
connected layers of 1024 units with dropout and the classifier (2.66 M parameters at 28 px and 3 classes). The authors
released no code: the layers follow the paper's description as a public re-implementation reads it
(ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet, models/off_apexnet.py); the ReLU after each convolution is the usual
LeNet-style block, which that re-implementation leaves out. Optical strain is not read.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from mertool.models.config import ModelConfig
from mertool.models.flowinput import flow_input
from mertool.models.precision import FP32Linear


def _stream() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2))


class OFFApexNet(nn.Module):
    """flow (N x 3 x S x S: u, v, strain) -> class logits from u and v; onset, apex and AUs are not read."""

    def __init__(self, cfg: ModelConfig, hidden: int = 1024):
        super().__init__()
        self.config = cfg
        self.u_stream, self.v_stream = _stream(), _stream()
        side = cfg.image_size // 4
        self.head = nn.Sequential(nn.Linear(2 * 16 * side * side, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(cfg.dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(cfg.dropout), FP32Linear(hidden, cfg.num_classes))
        self.au_head = None

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, aus: torch.Tensor | None = None,
                return_maps: bool = False, return_aus: bool = False, estimate_aus: bool | None = None,
                flow: torch.Tensor | None = None):
        if flow is None:
            raise ValueError("flow: OFF-ApexNet reads the pair's optical flow; none was given")
        x = flow_input(flow).to(onset.dtype)
        fmap = torch.cat([self.u_stream(x[:, :1]), self.v_stream(x[:, 1:2])], 1)
        logits = self.head(fmap.flatten(1))
        if return_aus:
            return logits, None
        return (logits, {"cva": [], "motion": fmap, "position": None, "au_logits": None}) if return_maps else logits
