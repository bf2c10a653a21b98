"""Continuous Vertical Attention (CVA) and the motion stream built from it.

One CVA module (paper eqs. 1-4):
  F_conv = Conv1x1(Conv3x3(F)) + Conv1x1(F)
  z      = AvgPool_over_width(F_conv)                         C x H x 1
  a      = sigmoid(Conv1x1_up(h_swish(BN(Conv1x1_down(z)))))  down to max(8, C/32) channels
  a      = a * Conv1x1_link(MaxPool_to_H(a_prev))             continuous: the previous module's map, resized
  out    = F_conv * a                                          broadcast over the width
`direction` picks the pooled axis: vertical (map C x H x 1, the paper), horizontal (C x 1 x W), both (coordinate
attention: one shared reduction over the concatenated pooled rows and columns, two maps, both applied); 'none'
drops the attention and leaves the plain residual stage (ablations without CVA).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mertool.models.config import channels

DIRECTIONS = ("vertical", "horizontal", "both", "none")


def conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


def reduced_channels(c: int) -> int:
    """Width of the attention bottleneck: max(8, C/32)."""
    return max(8, c // 32)


class ConvBlock(nn.Module):
    """F_conv = 1x1(3x3(F)) + 1x1(F): a residual block whose shortcut is a (strided) 1x1 conv."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv3 = conv_bn(cin, cout, 3, stride)
        self.conv1 = conv_bn(cout, cout, 1)
        self.shortcut = conv_bn(cin, cout, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv1(F.relu(self.conv3(x))) + self.shortcut(x))


class AxisAttention(nn.Module):
    """Coordinate-attention maps along the height ('h'), the width ('w') or both, before any chaining."""

    def __init__(self, c: int, axes: tuple[str, ...]):
        super().__init__()
        mip = reduced_channels(c)
        self.axes = axes
        self.reduce = nn.Conv2d(c, mip, 1)
        self.bn = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()  # h-swish: x * ReLU6(x + 3) / 6
        self.expand = nn.ModuleDict({a: nn.Conv2d(mip, c, 1) for a in axes})

    def forward(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        n, c, h, w = f.shape
        pooled = []
        if "h" in self.axes:
            pooled.append(f.mean(3, keepdim=True))  # N x C x H x 1: average over the width
        if "w" in self.axes:
            pooled.append(f.mean(2, keepdim=True).transpose(2, 3))  # N x C x W x 1
        # one reduction over rows and columns together, as in coordinate attention
        y = self.act(self.bn(self.reduce(torch.cat(pooled, 2) if len(pooled) > 1 else pooled[0])))
        out, start = {}, 0
        for a in self.axes:
            size = h if a == "h" else w
            part = y[:, :, start:start + size]
            start += size
            m = torch.sigmoid(self.expand[a](part))
            out[a] = m if a == "h" else m.transpose(2, 3)  # 'w' map: N x C x 1 x W
        return out


class CVA(nn.Module):
    """One module: ConvBlock, attention along `direction`, optionally chained to the previous module's maps."""

    def __init__(self, cin: int, cout: int, stride: int = 1, direction: str = "vertical",
                 continuous: bool = True, prev_channels: int | None = None):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r}: expected one of {DIRECTIONS}")
        self.conv = ConvBlock(cin, cout, stride)
        self.direction = direction
        axes = {"vertical": ("h",), "horizontal": ("w",), "both": ("h", "w"), "none": ()}[direction]
        self.attn = AxisAttention(cout, axes) if axes else None
        self.link = None
        if axes and continuous and prev_channels:
            self.link = nn.ModuleDict({a: nn.Conv2d(prev_channels, cout, 1) for a in axes})
            for conv in self.link.values():
                # start as the channel mean of the previous map: a positive damping in (0, 1) like the map itself,
                # rather than a random-sign rescaling of the features
                nn.init.constant_(conv.weight, 1.0 / prev_channels)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, prev: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x -> (features, maps by axis); prev: the previous module's maps (ignored unless continuous)."""
        f = self.conv(x)
        if self.attn is None:
            return f, {}
        maps = self.attn(f)
        if self.link is not None and prev:
            for a, m in maps.items():
                p = F.adaptive_max_pool2d(prev[a], m.shape[-2:])  # previous map max-pooled to the new size
                maps[a] = m * self.link[a](p)
        for m in maps.values():
            f = f * m
        return f, maps


def combined_map(maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """The map a module applies: N x C x H x 1 (vertical), N x C x 1 x W (horizontal), their product (both)."""
    out = None
    for m in maps.values():
        out = m if out is None else out * m
    return out


STEMS = ("light", "mmnet")


def motion_stem(kind: str, in_chans: int, width: float) -> tuple[nn.Sequential, int]:
    """(stem, its output channels): the layers before the first CVA module, halving the input once.

    light: 3x3 stride-2 conv to 64 channels (mertool's first release). mmnet: as the released code of this model family
    (FaceSleuth, a fork of MMNet) has it, a 3x3 stride-2 conv to 180 channels, then a 3x3 conv to 128 channels, each
    with BatchNorm and ReLU: the paper does not give its stem, so the released code is the reference.
    """
    if kind == "light":
        c = channels(64, width)
        return nn.Sequential(conv_bn(in_chans, c, 3, 2), nn.ReLU(inplace=True)), c
    if kind == "mmnet":
        mid = 180 if width == 1 else max(16, round(180 * width))  # 180 is not a multiple of 16: kept as released
        c = channels(128, width)
        return nn.Sequential(conv_bn(in_chans, mid, 3, 2), nn.ReLU(inplace=True), conv_bn(mid, c, 3),
                             nn.ReLU(inplace=True)), c
    raise ValueError(f"stem {kind!r}: expected one of {STEMS}")


class MotionStream(nn.Module):
    """Motion image -> stem -> four CVA modules: 224 px gives 128x112x112 ... 512x14x14 at width 1."""

    stage_channels = (128, 128, 256, 512)
    stage_strides = (1, 2, 2, 2)

    def __init__(self, width: float = 1.0, direction: str = "vertical", continuous: bool = True,
                 in_chans: int = 3, stem: str = "light"):
        super().__init__()
        self.stem, cin = motion_stem(stem, in_chans, width)  # 224 -> 112
        self.continuous = continuous
        prev = None
        mods = []
        for c, s in zip(self.stage_channels, self.stage_strides):
            c = channels(c, width)
            mods.append(CVA(cin, c, s, direction, continuous, prev))
            cin = prev = c
        self.stages = nn.ModuleList(mods)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Motion image -> (features N x C x H/16 x W/16, each module's maps)."""
        x = self.stem(x)
        all_maps, prev = [], None
        for m in self.stages:
            x, maps = m(x, prev if self.continuous else None)
            all_maps.append(maps)
            prev = maps
        return x, all_maps
