"""Cache -> in-memory tensors with the recipe's class map, and batched on-device augmentation.

The whole cache is small (CASME II ~75 MB at 224 px), so it is loaded once, kept as uint8 on the training device
and converted to float per batch. Augmentation is one batched affine warp (`augment_pair`) rather than torchvision
v2 per sample: v2 draws one set of parameters per call, so per-sample draws need a Python loop of N small kernels
per transform, which costs more than the model step for small models on a GPU; `affine_grid` + `grid_sample` warp
the whole batch (onset and apex stacked on the channel axis, so both get the same draw) in two kernels.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mertool.aus import normalize_emotion
from mertool.cache import CacheData, load_cache
from mertool.errors import MertoolError


@dataclass
class MERData:
    """Every usable sample of a cache under one class map: frames uint8 N x 3 x S x S, AU bits, labels, subjects."""

    onset: torch.Tensor            # N x 3 x S x S uint8
    apex: torch.Tensor             # N x 3 x S x S uint8
    aus: torch.Tensor              # N x 21 float32 (0/1)
    labels: torch.Tensor           # N int64
    subjects: np.ndarray           # N str
    sample_ids: np.ndarray         # N str
    classes: list[str]
    dropped: dict[str, int] = field(default_factory=dict)  # raw emotion outside the class map -> count
    source: str = ""
    dataset: str = ""              # the cache's `dataset` attribute (casme2, samm, ...)
    au_known: torch.Tensor | None = None  # N bool: the sample's dataset codes AUs ("unknown" is not "none active")

    def __post_init__(self):
        if self.au_known is None:
            self.au_known = torch.ones(len(self.labels), dtype=torch.bool, device=self.labels.device)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return int(self.onset.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.onset.device

    def class_counts(self) -> dict[str, int]:
        """Samples per class."""
        counts = torch.bincount(self.labels.cpu(), minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts))

    def to(self, device: str | torch.device) -> "MERData":
        """Copy the tensors to a device once; from CPU to CUDA through pinned memory with non-blocking copies."""
        device = torch.device(device)
        if self.onset.device == device:
            return self

        def move(t: torch.Tensor) -> torch.Tensor:
            if device.type == "cuda" and t.device.type == "cpu":
                return t.pin_memory().to(device, non_blocking=True)
            return t.to(device)

        return replace(self, onset=move(self.onset), apex=move(self.apex), aus=move(self.aus),
                       labels=move(self.labels), au_known=move(self.au_known))


def class_index(classes: dict[str, list[str]]) -> dict[str, int]:
    """normalize_emotion(raw name) -> class number, in the recipe's class order."""
    out = {}
    for i, raws in enumerate(classes.values()):
        for raw in raws:
            out[normalize_emotion(raw)] = i
    return out


def resize_frames(frames: torch.Tensor, size: int, chunk: int = 64) -> torch.Tensor:
    """uint8 N x 3 x S x S -> uint8 N x 3 x size x size (antialiased bilinear), in chunks to bound memory."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    out = torch.empty((frames.shape[0], 3, size, size), dtype=torch.uint8)
    for i in range(0, frames.shape[0], chunk):
        x = frames[i:i + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def load_dataset(cache: str | Path | CacheData, classes: dict[str, list[str]], image_size: int | None = None,
                 recipe_name: str = "recipe") -> MERData:
    """Cache -> MERData: samples mapped by the class map (others dropped and counted), frames resized if needed."""
    data = cache if isinstance(cache, CacheData) else load_cache(cache)
    index = class_index(classes)
    keys = np.array([normalize_emotion(e) for e in data.emotions], dtype=object)
    labels = np.array([index.get(k, -1) for k in keys], dtype=np.int64)
    present = Counter(str(e) for e in data.emotions)
    counts = np.bincount(labels[labels >= 0], minlength=len(classes))
    empty = [name for name, n in zip(classes, counts) if n == 0]
    if empty:
        names = ", ".join(f"{name} (matches {', '.join(map(repr, classes[name]))})" for name in empty)
        found = ", ".join(f"{e!r}: {n}" for e, n in sorted(present.items())) or "none"
        raise MertoolError(f"{recipe_name}: data.classes {names}: no sample in cache {data.path}; "
                           f"emotions in the cache: {found}")
    keep = labels >= 0
    dropped = Counter(str(e) for e, k in zip(data.emotions, keep) if not k)
    size = int(image_size or data.onset.shape[1])

    def frames(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a[keep])).permute(0, 3, 1, 2).contiguous()
        return resize_frames(t, size)

    return MERData(
        onset=frames(data.onset), apex=frames(data.apex),
        aus=torch.from_numpy(data.aus[keep].astype(np.float32)),
        labels=torch.from_numpy(labels[keep]),
        subjects=np.array([str(s) for s in data.subjects[keep]], dtype=object),
        sample_ids=np.array([str(s) for s in data.sample_ids[keep]], dtype=object),
        classes=list(classes), dropped=dict(sorted(dropped.items())), source=str(data.path),
        dataset=str(data.attrs.get("dataset") or ""))


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float32 in [0, 1] (the model normalises with ImageNet statistics itself)."""
    return frames.float().div_(255.0)


def augment_pair(onset: torch.Tensor, apex: torch.Tensor, *, hflip: float = 0.5, crop_padding: int = 15,
                 rotation: float = 3.0, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One random draw per sample, applied identically to onset and apex, as a single batched affine warp.

    - horizontal flip with probability `hflip`;
    - pad-and-random-crop with padding P = an integer shift in [-P, P] pixels on each axis with zero fill
      (exactly torchvision's RandomCrop(S, padding=P) when there is no rotation);
    - rotation by an angle uniform in [-R, R] degrees about the centre (torchvision's RandomRotation(R)).
    Inputs are float N x 3 x H x W (H == W); the draws come from `generator` on the frames' device.
    """
    if onset.shape != apex.shape or onset.ndim != 4 or onset.shape[-1] != onset.shape[-2]:
        raise ValueError(f"augment_pair: expected two equal N x C x S x S tensors, got {tuple(onset.shape)} "
                         f"and {tuple(apex.shape)}")
    if hflip <= 0 and crop_padding <= 0 and rotation <= 0:
        return onset, apex
    n, c, h, w = onset.shape
    dev = onset.device
    u = torch.rand((n, 2), generator=generator, device=dev)
    shift = torch.randint(-crop_padding, crop_padding + 1, (n, 2), generator=generator, device=dev)
    sign = torch.where(u[:, 0] < hflip, -1.0, 1.0)
    angle = (u[:, 1] * 2 - 1) * math.radians(rotation)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output pixel (normalised coords) -> input location: rotate, shift by whole pixels, then mirror x.
    tx = shift[:, 0].float() * 2 / w
    ty = shift[:, 1].float() * 2 / h
    theta = torch.stack([torch.stack([sign * cos, -sign * sin, sign * tx], 1),
                         torch.stack([sin, cos, ty], 1)], 1)
    both = torch.cat([onset, apex], dim=1)
    grid = F.affine_grid(theta.to(both.dtype), [n, 2 * c, h, w], align_corners=False)
    out = F.grid_sample(both, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, :c], out[:, c:]


def make_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into batches; a last batch of one sample joins the previous one (BatchNorm needs 2)."""
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = torch.cat([batches[-1], last])
    return batches
