"""`mertool evaluate-spot`: score an intervals CSV against long-video ground truth the MEGC way."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mertool.cli.app import app
from mertool.errors import MertoolError

_UNKNOWN_SHOWN = 5


@app.command("evaluate-spot")
def evaluate_spot_cmd(
    pred: Path = typer.Argument(..., metavar="PRED.csv",
                                help="Intervals CSV: video,onset,offset and optionally apex,type,score."),
    gt: Path = typer.Option(..., "--gt", help="Ground truth: a CAS(ME)^2 / SAMM Long Videos / CAS(ME)^3 part A "
                                              "sheet (.xlsx, .xls), a data set folder holding one or more of them, "
                                              "or an intervals CSV."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate for typing intervals without a type "
                                                            "(micro <= 0.5 s); default: the data set's own (CAS(ME)^2 "
                                                            "30, SAMM-LV 200, CAS(ME)^3 30)."),
    log: Optional[Path] = typer.Option(None, "--log", help="Write the MEGC evaluation log here."),
    json_: bool = typer.Option(False, "--json", help="Print the figures as JSON on stdout (nothing else there)."),
) -> None:
    """Score spotted intervals: a TP is an interval with IoU >= 0.5 (frames, both ends included) against a ground
    truth of the same type, each ground truth matched once. Prints TP, predicted, ground truth, precision, recall
    and F1 for micro, macro and overall, per data set when the ground truth holds several.

    A predicted video id that the ground truth lacks counts as false positives (MEGC: a video without
    expressions) and is named in a warning.

    Examples:
      mertool evaluate-spot intervals.csv --gt /data/CASME_sq
      mertool evaluate-spot intervals.csv --gt SAMM_LongVideos_V2_Release.xlsx --json
      mertool evaluate-spot intervals.csv --gt gt.csv --fps 30 --log megc_log.txt
    """
    from mertool.spotting.intervals import read_intervals_csv
    from mertool.spotting.megc import evaluate, format_figures, load_ground_truth

    if fps is not None and not fps > 0:
        raise MertoolError(f"--fps {fps}: expected a positive frame rate")
    sets = load_ground_truth(gt, fps)
    result = evaluate(read_intervals_csv(pred), sets, log_path=log)
    unknown = result["unknown_videos"]
    if unknown:
        more = f" and {len(unknown) - _UNKNOWN_SHOWN} more" if len(unknown) > _UNKNOWN_SHOWN else ""
        typer.echo(f"warning: {len(unknown)} video id(s) of {pred} are not in the ground truth and count as false "
                   f"positives: {', '.join(unknown[:_UNKNOWN_SHOWN])}{more}", err=True)
    if json_:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{pred} against {', '.join(s.name for s in sets)} (IoU >= 0.5, one match per ground truth)")
    typer.echo(format_figures(result))
    if log is not None:
        typer.echo(f"MEGC log: {log}")
