"""`bench`: parse arguments and call mertool.bench."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mertool.cli.app import app


@app.command("bench")
def bench_cmd(
    device: str = typer.Option("auto", "--device", help="cuda, cuda:N, cpu or auto (cuda when available)."),
    json_: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout (progress on stderr)."),
    recipe: str = typer.Option("casme2", "--recipe", help="Recipe whose model, batch and augmentation are timed "
                                                          "(default casme2: the full model at 224 px)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="HDF5 cache to load (default: a temporary "
                                                               "synthetic cache of CASME II's size)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Frame size (sets data.image_size)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size (default: the recipe's on CUDA, 4 on "
                                                              "CPU)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Batches in the timed epoch (default: the whole "
                                                              "cache on CUDA, 2 on CPU)."),
    set_: List[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set model.width=0.25."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (as train-loso --compile)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's)."),
    loso: bool = typer.Option(False, "--loso", help="Also time a whole LOSO of the recipe's schedule on the same "
                                                    "cache (days on a CPU at paper size; shrink it with --set)."),
    devices: Optional[str] = typer.Option(None, "--devices", help="With --loso: devices for the folds, e.g. "
                                                                  "cuda:0,cuda:1 (default: --device)."),
    synthetic_samples: int = typer.Option(249, "--synthetic-samples", min=2,
                                          help="Without --cache: samples in the synthetic cache (CASME II: 249)."),
    synthetic_subjects: int = typer.Option(26, "--synthetic-subjects", min=1,
                                           help="Without --cache: subjects (LOSO folds) in it (CASME II: 26)."),
    no_flow: bool = typer.Option(False, "--no-flow", help="Skip the optical-flow measurement (endpoint error and "
                                                         "time of tvl1, dis and farneback; ~20 s on 2 CPU cores)."),
    folds_per_device: int = typer.Option(1, "--folds-per-device", help="With --loso: folds trained at once on "
                                                                       "each device; K > 1 is also timed against "
                                                                       "K = 1 (on CUDA, also cudnn.benchmark off)."),
    spotting: bool = typer.Option(False, "--spotting", help="Only the spotting features' frames/s on a 640 x 480 "
                                                            "video beside the matmul rate, and the projected time "
                                                            "for SAMM Long Videos and CAS(ME)^2."),
) -> None:
    """Measure training against the device's dense matmul rate, the data path, alignment and predict latency.

    One run on one device: dense matmul FLOP/s (bf16 on CUDA, fp32 on CPU), the model's FLOPs per training
    sample, training samples/s and model FLOP utilisation (achieved / dense), an epoch fed from the HDF5 cache vs
    the same batches prebuilt on the device, alignment frames/s, pair -> probabilities latency, and each optical-flow
    method's endpoint error on synthetic AU motion of known displacement with its time per pair.
    The defaults take about 1-2 minutes on a 2-core CPU.

    Example:
      mertool bench --device cuda --json > bench.json
      mertool bench --device cpu --image-size 112 --batch 4 --steps 4
      mertool bench --device cuda --loso --folds-per-device 4
      mertool bench --spotting
    """
    from rich.console import Console

    from mertool.bench import render_bench, run_bench, to_json

    err = Console(stderr=True, markup=False)
    if spotting:
        from mertool.spotting.speed import bench_spotting, render_spot_bench

        rep = bench_spotting(log=lambda msg: err.print(f"bench: {msg}"))
        if json_:
            typer.echo(to_json(rep))
        else:
            render_spot_bench(rep, Console(markup=False))
        return
    report = run_bench(device=device, recipe=recipe, cache=cache, image_size=image_size, batch=batch, steps=steps,
                       overrides=set_, compile=compile_, threads=threads, loso=loso, devices=devices,
                       folds_per_device=folds_per_device, synthetic_samples=synthetic_samples,
                       synthetic_subjects=synthetic_subjects, flow_peaks=() if no_flow else (1.0, 3.0),
                       log=lambda msg: err.print(f"bench: {msg}"))
    if json_:
        typer.echo(to_json(report))
        return
    render_bench(report, Console(markup=False))
