"""`model list|show`: the named model variants (recipes/model) with their parameter counts and forward GFLOPs."""
from __future__ import annotations

import json
from typing import Optional

import typer

from mertool.cli.app import app

model_app = typer.Typer(help="The model variants of the paper's ablation tables (recipes/model/*.yaml): sizes and "
                             "options.", no_args_is_help=True)
app.add_typer(model_app, name="model")


def _options(model: dict) -> str:
    """The options that differ from the full model's (the ModelConfig defaults)."""
    from mertool.models import ModelConfig

    default = ModelConfig().to_dict()
    return " ".join(f"{k}={v}" for k, v in model.items() if default.get(k) != v) or "(full model)"


@model_app.command("list")
def list_cmd(
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input size in pixels for the count "
                                                                        "(default: each variant's own, 224)."),
    width: Optional[float] = typer.Option(None, "--width", help="Channel multiplier for every variant "
                                                                "(default: each variant's own)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Parameter count and forward GFLOPs per sample of every variant in recipes/model, at each one's input size
    (28 px for STSTNet and OFF-ApexNet, as published; 224 for the others).

    Example: mertool model list --image-size 224
    """
    from mertool.models.variants import list_variants, variant_size

    rows = []
    for v in list_variants():
        cfg = dict(v.model, **({"width": width} if width is not None else {}))
        size = variant_size(cfg, image_size)
        rows.append({"name": v.name, "label": v.label, "model": v.model, **size})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Model variants (recipes/model)",
              caption="GFLOPs: one sample's forward, counted by torch.utils.flop_counter.FlopCounterMode (a "
                      "multiply-add counts 2), 5 classes. `full` has mertool's light stem; the paper recipes "
                      "(casme2, samm, megc2019) build it with the released code's stem (stem_mmnet).")
    for col, just in (("variant", "left"), ("row", "left"), ("differs from full", "left"), ("input", "right"),
                      ("params", "right"), ("GFLOPs", "right")):
        t.add_column(col, justify=just)
    for r in rows:
        params = r["parameters"]
        t.add_row(r["name"], r["label"], _options(r["model"]), f"{r['image_size']} px",
                  f"{params / 1e6:.2f} M" if params >= 1e5 else f"{params:,}",
                  f"{r['gflops']:.2f}" if r["gflops"] >= 0.01 else f"{r['gflops']:.5f}")
    Console().print(t)


@model_app.command("show")
def show_cmd(
    variant: str = typer.Argument(..., help="Variant name (see `mertool model list`) or a YAML file with a "
                                            "`model:` section."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input size in pixels (default: the "
                                                                        "variant's own)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Every option of one variant (defaults filled in), its parameters per part and forward GFLOPs.

    Example: mertool model show attn_both
    """
    from mertool.models import model_config_dict
    from mertool.models.variants import load_variant, variant_size

    v = load_variant(variant)
    cfg = model_config_dict(v.model)
    size = variant_size(cfg, image_size)
    if image_size is not None:
        cfg["image_size"] = image_size
    if as_json:
        typer.echo(json.dumps({"name": v.name, "label": v.label, "config": cfg, **size}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{v.name}: {v.label}", show_header=False)
    t.add_column("key")
    t.add_column("value")
    for k, val in cfg.items():
        t.add_row(k, str(val))
    for part, n in size["parts"].items():
        t.add_row(f"params: {part}", f"{n:,}")
    t.add_row("params: total", f"{size['parameters']:,}")
    t.add_row("forward GFLOPs / sample", f"{size['gflops']:.2f}")
    Console().print(t)
