"""build_model(config) and its helpers: local pretrained weights, parameter and FLOP counts."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from mertool.errors import MertoolError
from mertool.models.config import ModelConfig
from mertool.models.net import MERNet, ResNetBaseline
from mertool.models.offapexnet import OFFApexNet
from mertool.models.ststnet import STSTNet

ARCHS = {"mer": MERNet, "resnet18": ResNetBaseline, "ststnet": STSTNet, "offapexnet": OFFApexNet}


@dataclass
class LoadReport:
    """What a pretrained file gave a module: loaded keys, model keys it lacked, file keys not used."""

    path: str
    target: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def build_model(cfg: dict | ModelConfig | None = None, *, load_weights: bool = True) -> nn.Module:
    """Model for a config (dict or ModelConfig); load_weights=False skips `pretrained` / `fpf_pretrained`.

    Pass load_weights=False when a full state dict is loaded right after (a checkpoint), so the pretrained files
    named at training time need not exist where the checkpoint is used.
    """
    cfg = ModelConfig.from_dict(cfg)
    model = ARCHS[cfg.arch](cfg)
    model.load_reports = []
    if load_weights and cfg.fpf_pretrained and isinstance(model, MERNet):
        if model.fpf is None:
            raise MertoolError(f"model.fpf_pretrained = {cfg.fpf_pretrained}: this model has no FPF (fpf: none)")
        model.load_reports.append(load_fpf_pretrained(model.fpf.backbone.model, cfg.fpf_pretrained))
    if load_weights and cfg.pretrained:
        model.load_reports.append(load_pretrained(model, cfg.pretrained))
    return model


def _read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file (torch.load weights_only=True; a checkpoint wrapper is unwrapped)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MertoolError(f"{path}: {what} file not found (weights are read from a local file, never downloaded)")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:160]
        raise MertoolError(f"{path}: cannot read {what} as a PyTorch state dict ({reason})") from None
    for key in ("state_dict", "model", "state_dict_ema"):  # mertool, timm-train and other wrappers
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise MertoolError(f"{path}: {what} holds no tensors (expected a state dict)")
    # DataParallel / torch.compile prefixes
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in sd.items()
            if isinstance(v, torch.Tensor)}


def _load_matching(module: nn.Module, sd: dict[str, torch.Tensor], path: str, target: str) -> LoadReport:
    """Copy the tensors whose name and shape match; report the rest."""
    own = module.state_dict()
    use = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    report = LoadReport(str(path), target, loaded=sorted(use), missing=sorted(set(own) - set(use)),
                        unused=sorted(set(sd) - set(use)))
    if not use:
        raise MertoolError(f"{path}: no tensor in the file matches the {target} (names or shapes differ; "
                           f"first file keys: {', '.join(list(sd)[:3])})")
    module.load_state_dict(use, strict=False)
    if report.missing:
        warnings.warn(f"{path}: {len(report.missing)} of {len(own)} {target} tensors not in the file and left as "
                      f"initialised (e.g. {', '.join(report.missing[:3])}); {len(report.unused)} file tensors unused",
                      stacklevel=3)
    return report


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """A state dict for the whole model, or for the baseline's trunk (e.g. torchvision's resnet18 weights file)."""
    sd = _read_state_dict(path, "pretrained")
    targets = [(model, "model")]
    if isinstance(model, ResNetBaseline):
        targets.append((model.trunk, "ResNet-18 trunk"))
    # the target sharing most names with the file
    module, name = max(targets, key=lambda t: len(set(sd) & set(t[0].state_dict())))
    return _load_matching(module, sd, str(path), name)


def load_fpf_pretrained(backbone: nn.Module, path: str | Path) -> LoadReport:
    """A timm checkpoint (Swin or ViT) into the FPF backbone, through timm's own checkpoint filter.

    The filter resizes what depends on the window / image size (relative position tables, position embeddings);
    tensors of stages this 3-stage Swin lacks, or of other shapes (the final norm of a 4-stage Swin), are skipped.
    """
    from timm.models import swin_transformer, vision_transformer

    sd = _read_state_dict(path, "fpf_pretrained")
    modules = dict(backbone.named_modules())
    # blocks this shallower Swin lacks: the filter would look their window up on the model
    sd = {k: v for k, v in sd.items()
          if not k.endswith("relative_position_bias_table") or k.rsplit(".", 1)[0] in modules}
    filt = (swin_transformer.checkpoint_filter_fn if isinstance(backbone, swin_transformer.SwinTransformer)
            else vision_transformer.checkpoint_filter_fn)
    try:
        sd = filt(sd, backbone)
    except Exception as exc:  # a file for another architecture
        reason = " ".join(str(exc).split())[:160]
        raise MertoolError(f"{path}: not a timm {type(backbone).__name__} checkpoint ({reason})") from None
    return _load_matching(backbone, sd, str(path), f"FPF {type(backbone).__name__}")


def count_params(model: nn.Module, trainable: bool = False) -> int:
    """Number of parameters (only those with requires_grad if trainable)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def forward_flops(model: nn.Module, image_size: int | None = None, batch: int = 1) -> int:
    """FLOPs of one eval-mode forward of `batch` samples (torch FlopCounterMode: a multiply-add counts 2).

    Works on a model built under `torch.device("meta")` (no memory, no compute), which `mertool model list` uses.
    """
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.config
    size = image_size or cfg.image_size
    if size != cfg.image_size:
        raise MertoolError(f"image_size {size}: this model was built for {cfg.image_size} px")
    p = next(model.parameters())
    frames = torch.zeros(batch, 3, size, size, device=p.device, dtype=p.dtype)
    aus = torch.zeros(batch, cfg.num_aus, device=p.device, dtype=p.dtype)
    flow = torch.zeros(batch, 3, size, size, device=p.device, dtype=p.dtype) if cfg.needs_flow else None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(frames, frames, aus, flow=flow)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
