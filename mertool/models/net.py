"""MERNet (motion stream + FPF + AU vector + MLP head) and the ResNet-18 baseline, sharing one forward signature.

forward(onset, apex, aus, return_maps=False, return_aus=False): onset/apex N x 3 x S x S in [0, 1] (normalised
here with the ImageNet mean/std), aus N x num_aus float: the hand-coded AU bits, read only by models built with
aus='oracle' ('estimated' feeds the AU head's own probabilities, 'none' no AU vector). return_aus=True returns
(logits, au_logits) (au_logits None without an AU head); estimate_aus=True/False overrides the AU source of
an oracle/estimated model (the head's probabilities / the given `aus`); return_maps=True returns (logits, maps)
from the same pass: maps['cva'] is one tensor per CVA module (N x C x H x 1 vertical, N x C x 1 x W horizontal,
N x C x H x W both; empty without attention), maps['motion'] / maps['position'] the two streams' outputs,
maps['au_logits'] the AU head's. flow (N x 3 x S x S: u, v in pixels of the input, optical strain) is what a model
built with motion='flow' reads in place of apex - onset (models.flowinput scales it per sample); others ignore it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchvision
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mertool.models.config import ModelConfig
from mertool.models.cva import MotionStream, combined_map
from mertool.models.flowinput import flow_input
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


class AUHead(nn.Module):
    """21 AU logits from a feature map: pooled to a coarse grid (AUs are local: brows vs lip corners), then an MLP."""

    def __init__(self, channels: int, num_aus: int, grid: int = 4, hidden: int = 128):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.mlp = nn.Sequential(nn.Linear(channels * grid * grid, hidden, bias=False), nn.BatchNorm1d(hidden),
                                 nn.ReLU(inplace=True), FP32Linear(hidden, num_aus))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool(x).flatten(1))


def _au_features(cfg: ModelConfig, aus: torch.Tensor | None, au_logits: torch.Tensor | None, n: int,
                 estimate: bool | None = None) -> torch.Tensor | None:
    """The AU vector the classifier reads: hand codes (oracle), the head's probabilities (estimated), or none.

    estimate=None follows the config; True feeds the head's probabilities, False the given `aus` (predict uses
    these to run a model on AUs from another source than the one it was trained with).
    """
    if cfg.aus == "none":
        return None
    if estimate if estimate is not None else cfg.aus == "estimated":
        if au_logits is None:
            raise ValueError("aus: this model has no AU head to estimate AUs with; give the AU vector")
        p = torch.sigmoid(au_logits.float())
        return p.detach() if cfg.au_detach else p
    if aus is None or aus.shape != (n, cfg.num_aus):
        got = None if aus is None else tuple(aus.shape)
        raise ValueError(f"aus: expected a float tensor of shape ({n}, {cfg.num_aus}), got {got}")
    return aus


def _with_aus(x: torch.Tensor, feed: torch.Tensor | None) -> torch.Tensor:
    """Concatenate the AU vector (if any) to flat features."""
    return x if feed is None else torch.cat([x, feed.to(x.dtype)], 1)


class MERNet(nn.Module):
    """The paper's network: CVA motion stream on (apex - onset) + FPF position map, summed, flattened, + AUs, MLP.

    motion='flow' feeds the motion stream the pair's optical flow and strain instead of apex - onset.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.normalize = Normalize()
        self.motion = MotionStream(cfg.width, cfg.direction, cfg.continuous, stem=cfg.stem)
        c = self.motion.out_channels
        self.fpf = None if cfg.fpf == "none" else FPF(cfg.fpf, cfg.frames, cfg.image_size, c, cfg.width,
                                                      cfg.window, cfg.swin_heads)
        grid = cfg.image_size // 16
        self.head = mlp_head(c * grid * grid + (cfg.num_aus if cfg.reads_aus else 0), cfg.mlp_hidden,
                             cfg.num_classes, cfg.dropout)
        self.au_head = AUHead(c, cfg.num_aus) if cfg.au_head else None

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, aus: torch.Tensor | None = None,
                return_maps: bool = False, return_aus: bool = False, estimate_aus: bool | None = None,
                flow: torch.Tensor | None = None):
        onset, apex = self.normalize(onset), self.normalize(apex)
        if self.config.motion == "flow":
            if flow is None:
                raise ValueError("flow: this model (motion: flow) reads the pair's optical flow; none was given")
            motion, cva = self.motion(flow_input(flow).to(onset.dtype))
        else:
            motion, cva = self.motion(apex - onset)  # the mean cancels: (apex - onset) / std
        x = motion
        position = None
        if self.fpf is not None:
            position = self.fpf(onset, apex)
            x = x + position
        au_logits = self.au_head(x) if self.au_head is not None else None
        logits = self.head(_with_aus(x.flatten(1), _au_features(self.config, aus, au_logits, x.shape[0],
                                                                estimate_aus)))
        if return_aus:
            return logits, au_logits
        if not return_maps:
            return logits
        return logits, {"cva": [combined_map(m) for m in cva if m], "motion": motion, "position": position,
                        "au_logits": au_logits}


class ResNetBaseline(nn.Module):
    """Table 2 baseline: torchvision ResNet-18 on (apex - onset); its pooled features + AUs (if any) -> linear."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.normalize = Normalize()
        self.trunk = torchvision.models.resnet18(weights=None)
        features = self.trunk.fc.in_features
        self.trunk.fc = nn.Identity()  # the classifier below takes the AU vector too
        self.fc = FP32Linear(features + (cfg.num_aus if cfg.reads_aus else 0), cfg.num_classes)
        self.au_head = AUHead(features, cfg.num_aus) if cfg.au_head else None

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, aus: torch.Tensor | None = None,
                return_maps: bool = False, return_aus: bool = False, estimate_aus: bool | None = None,
                flow: torch.Tensor | None = None):
        t = self.trunk
        fmap = t.maxpool(t.relu(t.bn1(t.conv1(self.normalize(apex) - self.normalize(onset)))))
        fmap = t.layer4(t.layer3(t.layer2(t.layer1(fmap))))  # torchvision's forward, stopping before the pool
        x = t.avgpool(fmap).flatten(1)
        au_logits = self.au_head(fmap) if self.au_head is not None else None
        logits = self.fc(_with_aus(x, _au_features(self.config, aus, au_logits, x.shape[0], estimate_aus)))
        if return_aus:
            return logits, au_logits
        return (logits, {"cva": [], "motion": None, "position": None, "au_logits": au_logits}) if return_maps \
            else logits
