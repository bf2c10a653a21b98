"""`spot` and `spot-cache`: parse arguments and call mertool.spotting."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal, Optional

import typer

from mertool.cli.app import app


@app.command("spot")
def spot_cmd(
    source: Path = typer.Argument(..., help="A video file or a folder of frames (one uncut recording)."),
    spotter: Optional[Path] = typer.Option(None, "--spotter", help="A learned spotter's run folder (from "
                                                                   "train-loso with a spotting recipe) or its "
                                                                   "model.pt; default: the training-free spotter."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the intervals as CSV (video,onset,offset,apex,"
                                                           "type,score)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG of the motion curve with the intervals (default: "
                                                             "<name>_spot.png in the current folder)."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate (a video file gives its own; a frame "
                                                            "folder is taken as 30 fps unless given)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Find every micro- and macro-expression in an uncut video: intervals, type, score and a motion timeline.

    The face is found once per shot and followed frame to frame; each facial region's motion is measured with the
    head's motion removed. Frames without a face (a hand over it, a turned head) are gaps, never spotted.
    Micro = at most 0.5 s from onset to offset.

    Example:
      mertool spot interview.mp4
      mertool spot frames/ --fps 200 --out intervals.csv --json
      mertool spot interview.mp4 --spotter runs/spot_demo --plot timeline.png
    """
    from rich.console import Console
    from rich.progress import Progress

    from mertool.spotting.intervals import write_intervals_csv
    from mertool.spotting.video import plot_timeline, render_timeline, spot_video

    err = Console(stderr=True)
    with Progress(console=err, transient=True, disable=quiet or not err.is_terminal) as bar:
        task = bar.add_task("spotting", total=None)
        outcome = spot_video(source, spotter, fps, progress=lambda i, n: bar.update(task, completed=i, total=n))
    png = plot if plot is not None else Path(f"{outcome.video}_spot.png")
    plot_timeline(outcome, png)
    if out is not None:
        write_intervals_csv(out, outcome.intervals)
    if as_json:
        d = outcome.to_dict()
        d["plot"], d["csv"] = str(png), str(out) if out else None
        sys.stdout.write(json.dumps(d) + "\n")
        return
    con = Console()
    render_timeline(outcome, con)
    con.print(f"wrote {png}" + (f" and {out}" if out else ""), markup=False, highlight=False)


@app.command("spot-cache")
def spot_cache_cmd(
    dataset_dir: Path = typer.Argument(..., help="Long-video data set folder (or its sheet): CAS(ME)^2, SAMM Long "
                                                 "Videos, CAS(ME)^3 part A, or `mertool synth --long` output."),
    out: Optional[Path] = typer.Option(None, "--out", help="Spotting cache file (default: <dataset>.spot.h5)."),
    dataset: Optional[Literal["casme_sq", "samm_lv", "casme3_lv"]] = typer.Option(
        None, "--dataset", help="Which data set (default: recognised from the sheet's header)."),
    workers: int = typer.Option(2, "--workers", help="Processes, one video each at a time."),
    resume: bool = typer.Option(False, "--resume", help="Keep the videos already done (in --out or left by an "
                                                        "interrupted run) and add the rest."),
    size: int = typer.Option(128, "--size", help="Aligned face crop (px) the motion is measured in."),
    register: Literal["landmarks", "ecc"] = typer.Option("landmarks", "--register", help="Registration of every "
                                                         "frame onto the shot's first: landmarks (fast) or ecc "
                                                         "(refined, ~6x slower)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Measure per-frame facial motion of every video of a long-video data set into one spotting cache.

    Resumable (--resume): finished videos are kept even after an interruption. The report (<out>.json) lists
    every video's gaps (frames without a face) and any video skipped.

    Example:
      mertool spot-cache /data/CASME_sq --out casme_sq.spot.h5
      mertool spot-cache long_demo --out long_demo.spot.h5 --resume
      mertool cache info long_demo.spot.h5
    """
    from rich.console import Console

    from mertool.spotting.cache import build_spot_cache, print_report

    report = build_spot_cache(dataset_dir, out, kind=dataset, resume=resume, workers=workers, size=size,
                              register=register, progress=not quiet)
    print_report(report, Console())
