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

from mertool.cache.provenance import cache_provenance
from mertool.cache.store import CacheData, load_cache, pair_settings
from mertool.data.classmap import ClassMap
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
    dataset: str = ""              # the cache's `dataset` attribute (casme2, samm, casme2+samm+smic, ...)
    au_known: torch.Tensor | None = None  # N bool: the sample's dataset codes AUs ("unknown" is not "none active");
    #                                       an AU loss masks the others out
    datasets: np.ndarray | None = None     # N str: each sample's source dataset
    excluded: dict[str, int] = field(default_factory=dict)  # other reasons a sample was left out -> count
    pairs: dict = field(default_factory=dict)  # how the cache made its pairs (cache.pair_settings): checkpoints
    #                                            record it, so that `predict` makes its pairs the same way
    provenance: dict = field(default_factory=dict)  # where the cache's data came from (mertool.cache.provenance)
    include: dict | None = None            # include.include_report of data.include: what the list left out
    flow: torch.Tensor | None = None       # N x 3 x S x S float16 (u, v in pixels at S, optical strain); loaded
    #                                        only for a model that reads flow (ModelConfig.needs_flow)

    def __post_init__(self):
        if self.au_known is None:
            self.au_known = torch.ones(len(self.labels), dtype=torch.bool, device=self.labels.device)
        if self.datasets is None:
            self.datasets = np.array([""] * len(self.labels), dtype=object)

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
                       labels=move(self.labels), au_known=move(self.au_known),
                       flow=None if self.flow is None else move(self.flow))

    def dataset_class_counts(self) -> dict[str, dict[str, int]]:
        """Samples per class of each source dataset."""
        labels = self.labels.cpu().numpy()
        out = {}
        for d in dict.fromkeys(self.datasets):
            counts = np.bincount(labels[self.datasets == d], minlength=len(self.classes)).tolist()
            out[str(d)] = dict(zip(self.classes, counts))
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


def resize_flow(flow: np.ndarray, strain: np.ndarray, size: int, chunk: int = 64) -> torch.Tensor:
    """(N x S x S x 2 flow in crop pixels, N x S x S strain) -> N x 3 x size x size float16 (u, v, strain).

    Resizing the crop scales displacements with it: u and v are multiplied by size / S (a 2 px motion at 224 is
    0.25 px at 28). Strain is a ratio of displacements to distances, so it is resized without a factor.
    """
    n, s = flow.shape[0], flow.shape[1]
    out = torch.empty((n, 3, size, size), dtype=torch.float16)
    for i in range(0, n, chunk):
        x = torch.cat([torch.from_numpy(np.asarray(flow[i:i + chunk], np.float32)).permute(0, 3, 1, 2),
                       torch.from_numpy(np.asarray(strain[i:i + chunk], np.float32))[:, None]], 1)
        if s != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            x[:, :2] *= size / s
        out[i:i + chunk] = x.to(torch.float16)
    return out


def load_dataset(cache: str | Path | CacheData, classes: dict[str, list[str]], image_size: int | None = None,
                 recipe_name: str = "recipe", select: np.ndarray | None = None,
                 excluded: dict[str, int] | None = None, flow: bool = False) -> MERData:
    """Cache -> MERData: samples mapped by the class map (others dropped and counted), frames resized if needed.

    `select` (N bool over the cache) leaves samples out before the class map, for the reasons counted in `excluded`.
    `flow`: also the cache's optical flow and strain (an error naming the fix when the cache has none).
    """
    data = cache if isinstance(cache, CacheData) else load_cache(cache)
    cmap = ClassMap(classes)
    labels = np.array([cmap.index(d, e) for d, e in zip(data.datasets, data.emotions)], dtype=np.int64)
    if select is not None:
        labels[~select] = -2  # left out before the class map: not counted as dropped emotions
    present = Counter(str(e) for e in data.emotions)
    counts = np.bincount(labels[labels >= 0], minlength=len(classes))
    empty = [name for name, n in zip(classes, counts) if n == 0]
    if empty:
        names = ", ".join(f"{name} (matches {', '.join(map(repr, classes[name]))})" for name in empty)
        found = ", ".join(f"{e!r}: {n}" for e, n in sorted(present.items())) or "none"
        raise MertoolError(f"{recipe_name}: data.classes {names}: no sample in cache {data.path}; "
                           f"emotions in the cache: {found}")
    keep = labels >= 0
    qualified = bool(cmap.datasets())
    dropped = Counter((f"{d}:{e}" if qualified else str(e))
                      for d, e, lab in zip(data.datasets, data.emotions, labels) if lab == -1)
    size = int(image_size or data.onset.shape[1])
    motion = None
    if flow:
        if getattr(data, "flow", None) is None or getattr(data, "strain", None) is None:
            raise MertoolError(f"{recipe_name}: the model reads optical flow (model.motion flow, or arch ststnet / "
                               f"offapexnet), but cache {data.path} has none; add it with `mertool cache add-flow "
                               f"{data.path} --flow tvl1` (or preprocess with --flow tvl1)")
        motion = resize_flow(data.flow[keep], data.strain[keep], size)

    def frames(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a[keep])).permute(0, 3, 1, 2).contiguous()
        return resize_frames(t, size)

    return MERData(
        onset=frames(data.onset), apex=frames(data.apex),
        # unknown AU codes enter as an empty vector (data.unknown_aus: empty); an AU loss masks them with au_known
        aus=torch.from_numpy((data.aus * np.asarray(data.aus_known, bool)[:, None])[keep].astype(np.float32)),
        labels=torch.from_numpy(labels[keep]),
        subjects=np.array([str(s) for s in data.subjects[keep]], dtype=object),
        sample_ids=np.array([str(s) for s in data.sample_ids[keep]], dtype=object),
        classes=list(classes), dropped=dict(sorted(dropped.items())), source=str(data.path),
        dataset=str(data.attrs.get("dataset") or ""),
        au_known=torch.from_numpy(np.asarray(data.aus_known)[keep].astype(bool)),
        datasets=np.array([str(d) for d in data.datasets[keep]], dtype=object), excluded=dict(excluded or {}),
        provenance=cache_provenance(data.attrs), flow=motion,
        pairs={**pair_settings(data.attrs), "cache_path": str(Path(data.path).resolve())})


def count_lines(data: MERData, official: dict[str, dict[str, int]]) -> list[str]:
    """Samples per class and source dataset as text lines; 'read / official' where the recipe gives official counts.

    Printed at the start of a run, so a composite benchmark shows at once where it differs from the published one.
    """
    per = data.dataset_class_counts()
    if len(per) < 2 and not official:
        return []
    for d in official:  # a dataset of the official figures that the cache lacks shows as 0 read
        per.setdefault(d, dict.fromkeys(data.classes, 0))
    rows = [[d, *[per[d][c] for c in data.classes]] for d in per]
    rows.append(["all", *[sum(per[d][c] for d in per) for c in data.classes]])
    head = ["dataset", *data.classes, "total"]
    cells = []
    for name, *counts in rows:
        off = official.get(name) if name != "all" else (
            {c: sum(official[d].get(c, 0) for d in official) for c in data.classes} if official else None)
        row = [name]
        for c, n in zip(data.classes + ["total"], counts + [sum(counts)]):
            ref = (sum(off.values()) if c == "total" else off.get(c)) if off else None
            row.append(f"{n}" if ref is None else f"{n} / {ref}")
        cells.append(row)
    widths = [max(len(str(r[i])) for r in [head] + cells) for i in range(len(head))]
    title = "samples per class" + (" (read / official)" if official else "")
    return [title] + ["  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
                      for r in [head] + cells]


def load_for_recipe(cache: str | Path | CacheData, recipe: dict) -> MERData:
    """The data a recipe trains on: its class map, its `data.include` list, and its choice for unknown AU codes.

    A model fed the sheet's AU codes (model.aus oracle) cannot use samples whose codes are unknown (SMIC): an empty
    vector would claim "no AU active". Such a cache is refused unless `data.unknown_aus` says drop or empty.
    """
    from mertool.models.config import ModelConfig

    data = cache if isinstance(cache, CacheData) else load_cache(cache)
    select, excluded = recipe_selection(data, recipe)
    out = load_dataset(data, recipe["data"]["classes"], recipe["data"]["image_size"],
                       recipe_name=recipe.get("name") or "recipe", select=select, excluded=excluded,
                       flow=ModelConfig.from_dict(recipe["model"]).needs_flow)
    if recipe["data"].get("include"):
        from mertool.data.include import include_report

        out.include = include_report(recipe["data"]["include"], data, ClassMap(recipe["data"]["classes"]))
    return out


def recipe_selection(data: CacheData, recipe: dict) -> tuple[np.ndarray, dict[str, int]]:
    """(N bool: samples the recipe may use before its class map, reason -> count of those it leaves out); raises
    when model.aus is oracle and samples of the class map have unknown AU codes under data.unknown_aus: refuse."""
    name = recipe.get("name") or "recipe"
    select = np.ones(len(data), dtype=bool)
    excluded: dict[str, int] = {}
    if recipe["data"].get("include"):
        from mertool.data.include import include_mask

        listed, missing = include_mask(recipe["data"]["include"], data)
        excluded["not in data.include"] = int((~listed).sum())
        if missing:
            excluded["listed in data.include but not in the cache"] = len(missing)
        select &= listed
    unknown = select & ~np.asarray(data.aus_known, dtype=bool)
    cmap = ClassMap(recipe["data"]["classes"])
    unknown &= np.array([cmap.index(d, e) >= 0 for d, e in zip(data.datasets, data.emotions)], dtype=bool)
    policy = recipe["data"].get("unknown_aus", "refuse")
    from mertool.models.config import au_source

    if unknown.any() and au_source(recipe["model"].get("aus", "oracle")) == "oracle":
        if policy == "refuse":
            per = Counter(str(d) for d in data.datasets[unknown])
            where = ", ".join(f"{d}: {n}" for d, n in per.items())
            raise MertoolError(f"{name}: model.aus = oracle feeds the sheets' AU codes to the model, but {data.path} "
                               f"has {int(unknown.sum())} samples whose AU codes are unknown ({where}); set "
                               f"data.unknown_aus to drop (leave them out) or empty (an all-zero AU vector), or "
                               f"model.aus to estimated or none")
        if policy == "drop":
            excluded["AU codes unknown (data.unknown_aus: drop)"] = int(unknown.sum())
            select &= ~unknown
    return select, excluded


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
    theta = augment_theta(onset.shape[0], onset.shape[-1], hflip=hflip, crop_padding=crop_padding,
                          rotation=rotation, generator=generator, device=onset.device)
    return warp_pair(onset, apex, theta)


def augment_theta(n: int, size: int, *, hflip: float, crop_padding: int, rotation: float,
                  generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """The random draws of `augment_pair` as n affine matrices (n x 2 x 3, normalised coordinates)."""
    u = torch.rand((n, 2), generator=generator, device=device)
    shift = torch.randint(-crop_padding, crop_padding + 1, (n, 2), generator=generator, device=device)
    sign = torch.where(u[:, 0] < hflip, -1.0, 1.0)
    angle = (u[:, 1] * 2 - 1) * math.radians(rotation)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output pixel (normalised coords) -> input location: rotate, shift by whole pixels, then mirror x.
    tx = shift[:, 0].float() * 2 / size
    ty = shift[:, 1].float() * 2 / size
    return torch.stack([torch.stack([sign * cos, -sign * sin, sign * tx], 1),
                        torch.stack([sin, cos, ty], 1)], 1)


def warp_pair(onset: torch.Tensor, apex: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp onset and apex by the same per-sample affine matrices, in one grid_sample over both stacked."""
    n, c, h, w = onset.shape
    both = torch.cat([onset, apex], dim=1)
    grid = F.affine_grid(theta.to(both.dtype), [n, 2 * c, h, w], align_corners=False)
    out = F.grid_sample(both, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, :c], out[:, c:]


def warp_flow(flow: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp a flow batch (N x 3 x S x S: u, v, strain) by the affine matrices that warp its frames (warp_pair).

    The output pixel x shows the input at A x + t, so a displacement f there appears as A^-1 f in the output: u and
    v are turned (and mirrored) with the frames. Strain, a norm of the strain tensor, is unchanged by rotation and
    mirroring and is only resampled. Square frames: one pixel is the same length on both normalised axes.
    """
    n, c, h, w = flow.shape
    grid = F.affine_grid(theta.to(flow.dtype), [n, c, h, w], align_corners=False)
    out = F.grid_sample(flow, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    turn = torch.linalg.inv(theta[:, :, :2].to(torch.float32)).to(out.dtype)
    uv = torch.einsum("nij,njhw->nihw", turn, out[:, :2])
    return torch.cat([uv, out[:, 2:]], 1)


def make_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into batches; a last batch of one sample joins the previous one (BatchNorm needs 2)."""
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = torch.cat([batches[-1], last])
    return batches
