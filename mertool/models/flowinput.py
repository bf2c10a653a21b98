"""The optical-flow input of the flow-reading models: (u, v, strain) scaled per sample.

    x = flow_input(flow)      # flow: N x 3 x S x S float (u, v in pixels of the model's input, optical strain)

Flow magnitudes differ by orders of magnitude between pairs (0.2 px for a faint micro-expression, 5 px for a head
that moved) and strain is a small number beside u and v, so each sample is scaled on its own, as STSTNet and
OFF-ApexNet feed their flow images (normalised per image): u and v by the largest flow length of the sample
(directions and relative lengths kept), strain by its largest value. A pair with no motion stays all zero.
"""
from __future__ import annotations

import torch

FLOW_CHANNELS = ("u", "v", "strain")


def flow_input(flow: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """N x 3 x S x S (u, v, strain) -> the same, u and v in [-1, 1] and strain in [0, 1] per sample."""
    if flow.ndim != 4 or flow.shape[1] != len(FLOW_CHANNELS):
        raise ValueError(f"flow: expected N x 3 x S x S (u, v, strain), got {tuple(flow.shape)}")
    flow = flow.float()
    uv, strain = flow[:, :2], flow[:, 2:]
    length = uv.square().sum(1, keepdim=True).sqrt().amax((2, 3), keepdim=True)
    peak = strain.abs().amax((2, 3), keepdim=True)
    return torch.cat([uv / length.clamp_min(eps), strain / peak.clamp_min(eps)], 1)
