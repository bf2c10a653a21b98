"""MERNet (motion stream + FPF + AU vector + MLP head) and the ResNet-18 baseline, sharing one forward signature.

forward(onset, apex, aus, return_maps=False): onset/apex N x 3 x S x S in [0, 1] (normalised here with the
ImageNet mean/std), aus N x num_aus float (ignored by models built with aus=False). return_maps=True returns
(logits, maps) from the same pass: maps['cva'] is one tensor per CVA module (N x C x H x 1 vertical, N x C x 1 x W
horizontal, N x C x H x W both; empty without attention), maps['motion'] / maps['position'] the two streams' outputs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchvision
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mertool.models.config import ModelConfig
from mertool.models.cva import MotionStream, combined_map
from mertool.models.fpf import FPF
from mertool.models.precision import FP32Linear


class Normalize(nn.Module):
    """[0, 1] RGB -> ImageNet-normalised (buffers follow the model's device and dtype; not saved in state dicts)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def mlp_head(in_features: int, hidden: tuple[int, ...], num_classes: int, dropout: float) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU -> Dropout per hidden size, then a linear classifier (fp32 under autocast)."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_features, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True),
                   nn.Dropout(dropout)]
        in_features = h
    layers.append(FP32Linear(in_features, num_classes))
    return nn.Sequential(*layers)


def _with_aus(x: torch.Tensor, aus: torch.Tensor | None, uses_aus: bool, num_aus: int) -> torch.Tensor:
    """Concatenate the AU vector to flat features when the model uses AUs."""
    if not uses_aus:
        return x
    if aus is None or aus.shape != (x.shape[0], num_aus):
        got = None if aus is None else tuple(aus.shape)
        raise ValueError(f"aus: expected a float tensor of shape ({x.shape[0]}, {num_aus}), got {got}")
    return torch.cat([x, aus.to(x.dtype)], 1)


class MERNet(nn.Module):
    """The paper's network: CVA motion stream on (apex - onset) + FPF position map, summed, flattened, + AUs, MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.normalize = Normalize()
        self.motion = MotionStream(cfg.width, cfg.direction, cfg.continuous)
        c = self.motion.out_channels
        self.fpf = None if cfg.fpf == "none" else FPF(cfg.fpf, cfg.frames, cfg.image_size, c, cfg.width, cfg.window)
        grid = cfg.image_size // 16
        self.head = mlp_head(c * grid * grid + (cfg.num_aus if cfg.aus else 0), cfg.mlp_hidden, cfg.num_classes,
                             cfg.dropout)

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, aus: torch.Tensor | None = None,
                return_maps: bool = False):
        onset, apex = self.normalize(onset), self.normalize(apex)
        motion, cva = self.motion(apex - onset)  # the mean cancels: (apex - onset) / std
        x = motion
        position = None
        if self.fpf is not None:
            position = self.fpf(onset, apex)
            x = x + position
        logits = self.head(_with_aus(x.flatten(1), aus, self.config.aus, self.config.num_aus))
        if not return_maps:
            return logits
        return logits, {"cva": [combined_map(m) for m in cva if m], "motion": motion, "position": position}


class ResNetBaseline(nn.Module):
    """Table 2 baseline: torchvision ResNet-18 on (apex - onset); its pooled features + AUs (if aus) -> linear."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.normalize = Normalize()
        self.trunk = torchvision.models.resnet18(weights=None)
        features = self.trunk.fc.in_features
        self.trunk.fc = nn.Identity()  # the classifier below takes the AU vector too
        self.fc = FP32Linear(features + (cfg.num_aus if cfg.aus else 0), cfg.num_classes)

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, aus: torch.Tensor | None = None,
                return_maps: bool = False):
        x = self.trunk(self.normalize(apex) - self.normalize(onset))
        logits = self.fc(_with_aus(x, aus, self.config.aus, self.config.num_aus))
        return (logits, {"cva": [], "motion": None, "position": None}) if return_maps else logits
