"""The named model variants of recipes/model/*.yaml (one per row of the paper's Tables 2-7) and their sizes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mertool.errors import MertoolError
from mertool.models.build import build_model, count_params, forward_flops
from mertool.models.config import ModelConfig
from mertool.paths import recipes_dir


@dataclass
class Variant:
    """One recipes/model file: its name (file stem), label, and ModelConfig keys."""

    name: str
    label: str
    model: dict
    path: Path


def _read(path: Path) -> Variant:
    from mertool.recipe import read_yaml

    raw = read_yaml(path)
    model = raw.get("model", {})
    if not isinstance(model, dict):
        raise MertoolError(f"{path}: model: expected a mapping of model options, got {type(model).__name__}")
    try:
        ModelConfig.from_dict(model)
    except MertoolError as exc:
        raise MertoolError(f"{path}: {exc}") from None
    return Variant(path.stem, str(raw.get("label") or path.stem), dict(model), path)


def model_variants_dir() -> Path:
    """recipes/model."""
    return recipes_dir() / "model"


def list_variants() -> list[Variant]:
    """Every variant in recipes/model, the full model first, then by name."""
    paths = sorted(model_variants_dir().glob("*.yaml"), key=lambda p: (p.stem != "full", p.stem))
    return [_read(p) for p in paths]


def load_variant(name: str | Path) -> Variant:
    """A variant by name ('full', 'attn_both') or by the path of a YAML file with a `model:` section."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return _read(p)
    path = model_variants_dir() / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(v.stem for v in sorted(model_variants_dir().glob("*.yaml")))
        raise MertoolError(f"{name}: no such model variant; expected one of {names} (or a .yaml file)")
    return _read(path)


def variant_size(model_cfg: dict | ModelConfig, image_size: int | None = None) -> dict:
    """Parameters, per-part parameters and forward GFLOPs per sample, from a model built on the meta device."""
    cfg = ModelConfig.from_dict(model_cfg).to_dict()
    if image_size is not None:
        cfg["image_size"] = image_size
    with torch.device("meta"):  # shapes only: no memory, no compute, no pretrained files read
        model = build_model(cfg, load_weights=False)
    parts = {name: count_params(child) for name, child in model.named_children() if count_params(child)}
    return {"parameters": count_params(model), "parts": parts, "gflops": forward_flops(model) / 1e9,
            "image_size": cfg["image_size"]}
