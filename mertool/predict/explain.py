"""Pictures of what the model saw: onset, apex, their difference, and the CVA attention over the face.

The attention is the model's own: the maps its CVA modules computed in the same forward pass that produced the
prediction (`model(..., return_maps=True)`), averaged over channels and upsampled to the face crop. With vertical
attention a map is one weight per row, so it reads as bands across the face: which heights (brows, eyes, mouth)
the motion stream amplified.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mertool import files


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure through a temporary name and rename it (never a half-written picture)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        with files.temporary_path(path) as tmp:
            fig.savefig(tmp, format=fmt)
    finally:
        plt.close(fig)
    return path


def attention_image(stage_map: torch.Tensor, size: int) -> np.ndarray:
    """One sample's CVA map (C x H x W, W or H may be 1), channel-averaged and upsampled to size x size.

    Values are the model's own (sigmoid products, in (0, 1)); no rescaling, so an untrained model's nearly flat
    map looks flat instead of being stretched into bands.
    """
    m = stage_map.detach().float().mean(0, keepdim=True)[None]  # 1 x 1 x H x W
    return F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[0, 0].cpu().numpy()


UNIFORM_SPREAD = 0.05   # a map whose weights span less than this is "nearly uniform": no region stands out


def uniform_note(lo: float, hi: float) -> str:
    """'' or a note that the attention is nearly uniform (with its range), for the picture and the console."""
    if hi - lo < UNIFORM_SPREAD:
        return f"nearly uniform ({lo:.3f}-{hi:.3f}): no region stands out"
    return ""


def stage_profiles(maps: list[torch.Tensor]) -> list[np.ndarray]:
    """Per stage, the channel-averaged attention along the height (vertical) or width (horizontal)."""
    out = []
    for m in maps:
        m = m.detach().float().mean(0).cpu().numpy()  # H x W
        out.append(m.mean(1) if m.shape[0] >= m.shape[1] else m.mean(0))
    return out


def explain_figure(onset: np.ndarray, apex: np.ndarray, maps: list[torch.Tensor] | None, path: str | Path,
                   title: str = "") -> Path:
    """PNG with onset, apex, |apex - onset|, the last CVA map over the face and every stage's profile.

    onset/apex: aligned RGB uint8 crops (what the model was given); maps: one sample's CVA maps, C x H x W each,
    in stage order (None or empty for a model without CVA: the attention panels say so).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = onset.shape[0]
    diff = np.abs(apex.astype(np.float32) - onset.astype(np.float32)).mean(2)
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.4), dpi=100,
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 0.8]})
    axes[0].imshow(onset)
    axes[0].set_title("onset")
    axes[1].imshow(apex)
    axes[1].set_title("apex")
    vmax = max(float(np.percentile(diff, 99.5)), 1.0)  # micro-motion is a few grey levels: stretch it
    im = axes[2].imshow(diff, cmap="magma", vmin=0, vmax=vmax)
    axes[2].set_title("|apex - onset|")
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
    if maps:
        att = attention_image(maps[-1], size)
        axes[3].imshow(apex)
        lo, hi = float(att.min()), float(att.max())
        # a fixed scale (the maps are sigmoid products in (0, 1)): a map of 0.581-0.588 reads as flat, not as bands
        im = axes[3].imshow(att, cmap="viridis", alpha=0.55, vmin=0.0, vmax=1.0)
        fig.colorbar(im, ax=axes[3], fraction=0.046, pad=0.02, label="attention weight (fixed 0-1 scale)")
        flat = uniform_note(lo, hi)
        axes[3].set_title(f"CVA attention (stage {len(maps)})" + (f"\n{flat}" if flat else ""), fontsize=9)
        for k, prof in enumerate(stage_profiles(maps)):
            rows = (np.arange(len(prof)) + 0.5) * size / len(prof)
            axes[4].plot(prof, rows, label=f"stage {k + 1}")
        axes[4].set_ylim(size, 0)
        axes[4].set_xlim(0, 1)
        axes[4].set_xlabel("attention (0-1)")
        axes[4].set_ylabel("face row (px)")
        axes[4].legend(fontsize=7)
        axes[4].set_title("attention per row")
    else:
        for ax in axes[3:]:
            ax.text(0.5, 0.5, "model has no CVA\nattention maps", ha="center", va="center")
    for ax in axes[:4]:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
