"""Facial Position Focalizer (FPF): a transformer over the face frames giving a map the size of the motion stream's.

Swin (the paper): timm's SwinTransformer with patch 4, embed 128, depths (2, 2, 6), heads (4, 8, 16), window 7;
its last stage at 224 px is 14 x 14 x 512 (NHWC in timm, permuted to NCHW here). ViT (Table 5): a timm ViT-S/16
(embed 384, depth 12, about the Swin's parameter count) whose 14 x 14 patch tokens are projected to 512 channels.
Both scale with `width` (channels / 4 of the motion stream's output for the Swin embed, 384 * width for the ViT);
the Swin's heads are an option (`swin_heads`): a narrow model keeps the paper's 32 channels a head with fewer heads.

The two frames go through one shared backbone (a siamese FPF), in one batch, and the maps are summed: the paper
applies "a" Swin to each frame; both frames are the same face, so the position cue is the same kind for each and
sharing halves the parameters. frames='onset' / 'apex' feeds only that frame (Table 6).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer

from mertool.errors import MertoolError
from mertool.models.config import channels

FRAMES = ("dual", "onset", "apex")


class SwinBackbone(nn.Module):
    """Three Swin stages: N x 3 x S x S -> N x C x S/16 x S/16 (C = 4 * embed)."""

    def __init__(self, image_size: int = 224, out_channels: int = 512, window: int = 7,
                 depths=(2, 2, 6), num_heads=(4, 8, 16), drop_path_rate: float = 0.1):
        super().__init__()
        embed = out_channels // 4
        dims = (embed, 2 * embed, 4 * embed)
        if out_channels % 4 or any(d % h for d, h in zip(dims, num_heads)):
            raise MertoolError(f"model.swin_heads = {list(num_heads)}: the Swin stages have "
                               f"{', '.join(map(str, dims))} channels at this width; each stage's heads must divide "
                               f"its channels")
        # timm clips a window larger than a stage to the stage (no shift there) and pads a stage the window does
        # not divide, so window 7 also works at 64-112 px
        self.model = SwinTransformer(img_size=image_size, patch_size=4, embed_dim=embed, depths=depths,
                                     num_heads=num_heads, window_size=window, num_classes=0,
                                     drop_path_rate=drop_path_rate)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x).permute(0, 3, 1, 2)  # NHWC -> NCHW (memory stays channels_last)


class ViTBackbone(nn.Module):
    """ViT with patch 16: N x 3 x S x S -> patch tokens -> linear to out_channels -> N x C x S/16 x S/16."""

    def __init__(self, image_size: int = 224, out_channels: int = 512, width: float = 1.0, depth: int = 12,
                 drop_path_rate: float = 0.1):
        super().__init__()
        embed = channels(384, width)
        head_dim = next(d for d in (64, 32, 16) if embed % d == 0)  # ViT-S: 6 heads of 64
        self.model = VisionTransformer(img_size=image_size, patch_size=16, embed_dim=embed, depth=depth,
                                       num_heads=embed // head_dim, num_classes=0, global_pool="",
                                       drop_path_rate=drop_path_rate)
        self.proj = nn.Linear(embed, out_channels)
        self.grid = image_size // 16
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.model.forward_features(x)[:, self.model.num_prefix_tokens:]  # drop the class token
        t = self.proj(t)
        return t.reshape(t.shape[0], self.grid, self.grid, -1).permute(0, 3, 1, 2)


class FPF(nn.Module):
    """Position map of the chosen frames: backbone(onset) + backbone(apex), or one of them."""

    def __init__(self, kind: str = "swin", frames: str = "dual", image_size: int = 224, out_channels: int = 512,
                 width: float = 1.0, window: int = 7, swin_heads=(4, 8, 16)):
        super().__init__()
        if frames not in FRAMES:
            raise ValueError(f"frames {frames!r}: expected one of {FRAMES}")
        self.frames = frames
        if kind == "swin":
            self.backbone = SwinBackbone(image_size, out_channels, window, num_heads=tuple(swin_heads))
        elif kind == "vit":
            self.backbone = ViTBackbone(image_size, out_channels, width)
        else:
            raise ValueError(f"fpf {kind!r}: expected swin or vit")

    def forward(self, onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
        if self.frames == "onset":
            return self.backbone(onset)
        if self.frames == "apex":
            return self.backbone(apex)
        a, b = self.backbone(torch.cat([onset, apex])).chunk(2)  # one batched pass through the shared backbone
        return a + b
