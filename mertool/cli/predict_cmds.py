"""`mertool predict`: an image pair, a CSV of pairs, or a clip (video / frame folder) with apex spotting."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal, Optional

import typer

from mertool.cli.app import app
from mertool.errors import MertoolError

_HELP = """Predict the micro-expression of an onset/apex pair, a CSV of pairs, or a clip.

A clip (video or frame folder) is spotted first: aligned with its first frame's transform, facial motion
against that frame measured over time; apex = where it first peaks, onset = the last quiet frame before it.

AUs, as the model learnt them: a model trained on estimated AUs estimates them itself when --aus is not given;
one trained on hand-coded AUs (the casme2 and samm recipes) needs --aus 6+12 or --aus-from (OpenFace 2.x's
per-frame CSV), or --aus auto for its AU head's estimate thresholded at 0.5; --aus none runs with an empty vector.
What a given AU vector does depends on what the model learnt from (model.aus; predict names it):
  oracle     trained on hand-coded AUs: the vector is an input it leans on, so give it (--aus, --aus-from, or
             --aus auto for its head's thresholded estimate).
  estimated  trained on its own AU head's estimates: a given vector replaces the estimate but it never saw such
             input, and the answer moves little (demo model: happiness 0.367 estimated, 0.369 with 6+12, 0.361
             with 4+9); leave --aus out to use its own estimate.
  none       images only: a given vector is ignored (and said to be).

The answer is "cannot judge", with the reason, when the face is not found, the registration is implausible,
nothing moved beyond the frames' noise ("no expression detected") or the motion is far outside the training
pairs'; --force gives the class anyway, marked. Probabilities are calibrated (temperature scaling, fitted on
held-out LOSO predictions) when the model has a temperature, and predict says which. A clip also reports how
stable the class is with the apex moved by -2..+2 frames.

Examples:
  mertool predict onset.jpg apex.jpg --aus auto --model runs/casme2
  mertool predict onset.jpg apex.jpg --aus 6+12 --model runs/casme2
  mertool predict onset.jpg apex.jpg --aus-from openface.csv --apex-frame 32 --model runs/casme2
  mertool predict onset.jpg apex.jpg --aus none --model model.pt --json
  mertool predict --pairs pairs.csv --model runs/casme2 --format jsonl
  mertool predict clip.mp4 --aus none --model runs/casme2 --plot motion.png --explain why.png
  mertool predict frames_dir/ --onset 12 --apex 30 --aus 12 --model runs/casme2
  mertool predict interview.mp4 --long --model runs/casme2 --json

A video or frame folder of more than 4 s is taken as a long recording (--long): every micro- and macro-expression
is spotted, and each interval's onset and apex are classified (--clip: one apex, as for a short clip).

Frame numbers are the numbers in imgN.jpg-style file names, otherwise 1-based positions.
"""


def _is_image(path: Path) -> bool:
    from mertool.spotting.apex import is_sequence
    return not is_sequence(path)


@app.command("predict", help=_HELP)
def predict(
    inputs: list[Path] = typer.Argument(None, help="ONSET APEX image files, or one video file / frame folder.",
                                        show_default=False),
    model: Path = typer.Option(..., "--model", "-m", help="Run folder (uses RUN/final/model.pt) or checkpoint .pt."),
    aus: str = typer.Option(None, "--aus", help="AUs present, e.g. '1,2', 'AU1+R2', '4+L10'; 'auto' = the model's own "
                                                "AU estimate (thresholded at 0.5 for a model trained on hand-coded "
                                                "AUs; the default for one trained on estimated AUs); 'none' = empty "
                                                "vector."),
    aus_from: Path = typer.Option(None, "--aus-from", help="OpenFace 2.x FeatureExtraction CSV: an AU is active when "
                                                          "its _c column is 1 from onset to apex (a pair: the "
                                                          "--apex-frame row, or the last row)."),
    apex_frame: int = typer.Option(None, "--apex-frame", help="With --aus-from and an image pair: the CSV frame of "
                                                              "the apex image."),
    pairs: Path = typer.Option(None, "--pairs", help="CSV with columns onset, apex and aus or aus_from (+ apex_frame) "
                                                     "(paths relative to the CSV)."),
    fmt: Literal["csv", "jsonl"] = typer.Option("csv", "--format", help="Output of --pairs on stdout: csv or jsonl "
                                                                         "(--json = jsonl)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there."),
    onset: int = typer.Option(None, "--onset", help="Clip: use this onset frame number instead of the spotted one."),
    apex: int = typer.Option(None, "--apex", help="Clip: use this apex frame number instead of the spotted one."),
    plot: Path = typer.Option(None, "--plot", help="Clip: write the motion-over-time plot (PNG)."),
    explain: Path = typer.Option(None, "--explain", help="Write onset, apex, difference and CVA attention (PNG)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    save_inputs: Path = typer.Option(None, "--save-inputs", help="Write what the model was given to FILE.npz: onset "
                                                                  "and apex as the cache stores them (uint8 RGB) and "
                                                                  "aus (float32, 21)."),
    force: bool = typer.Option(False, "--force", help="Give the model's class even where it cannot judge (no motion "
                                                      "above noise, motion far outside its training pairs', "
                                                      "implausible registration); marked as forced."),
    long: Optional[bool] = typer.Option(None, "--long/--clip", help="A video or frame folder: --long spots every "
                                                                  "interval and classifies each; --clip finds one "
                                                                  "apex (default: --long for more than "
                                                                  "4 s of frames)."),
    spotter: Optional[Path] = typer.Option(None, "--spotter", help="With --long: a learned spotter's run folder "
                                                                   "(default: the training-free spotter)."),
) -> None:
    from rich.console import Console

    err = Console(stderr=True)
    inputs = list(inputs or [])
    if pairs is not None:
        if inputs:
            raise MertoolError("--pairs: give either a pairs CSV or input files, not both")
        fmt = "jsonl" if as_json else fmt
        for opt, v in (("--explain", explain), ("--plot", plot), ("--onset", onset), ("--apex", apex),
                       ("--aus", aus), ("--aus-from", aus_from), ("--apex-frame", apex_frame)):
            if v is not None:
                raise MertoolError(f"{opt}: not used with --pairs (AUs come from the CSV's aus or aus_from column)")
        if save_inputs is not None:
            raise MertoolError("--save-inputs: one pair or clip at a time, not with --pairs")
        raise typer.Exit(_predict_batch(pairs, model, fmt, device, err, force))
    if aus is not None and aus_from is not None:
        raise MertoolError(f"--aus and --aus-from {aus_from}: give one source of AUs, not both")
    if apex_frame is not None and (aus_from is None or len(inputs) != 2):
        raise MertoolError("--apex-frame: only with --aus-from and an image pair (a clip uses its onset..apex frames)")
    if len(inputs) == 2:
        if onset is not None or apex is not None or plot is not None:
            raise MertoolError("--onset/--apex/--plot: only for a video or frame folder, not an image pair")
        for p in inputs:
            if p.is_dir() or not _is_image(p):
                raise MertoolError(f"{p}: expected an image file (an onset/apex pair is two images)")
        return _predict_one(inputs, model, aus, as_json, None, None, None, explain, device, err, aus_from,
                            apex_frame, save_inputs, force)
    if len(inputs) == 1:
        src = inputs[0]
        if not src.exists():
            raise MertoolError(f"{src}: no such file or folder")
        if _is_image(src):
            raise MertoolError(f"{src}: one image given; expected ONSET APEX images, a video file or a frame folder")
        from mertool.spotting.video import is_long
        if long or (long is None and onset is None and apex is None and is_long(src)):
            from mertool.spotting.recognise import predict_long_cli
            return predict_long_cli(src, model, spotter, as_json, plot, device, err)
        return _predict_one(inputs, model, aus, as_json, onset, apex, plot, explain, device, err, aus_from,
                            save_inputs=save_inputs, force=force)
    raise MertoolError(f"expected ONSET APEX images, or one video / frame folder (got {len(inputs)} inputs); "
                       f"see `mertool predict --help`")


def _predict_one(inputs, model, aus, as_json, onset, apex, plot, explain, device, err, aus_from=None,
                 apex_frame=None, save_inputs=None, force=False) -> None:
    """One pair or one clip: table (or JSON) on stdout, pictures on request."""
    from rich.console import Console

    from mertool.cache.provenance import trained_on_line
    from mertool.predict.predictor import Predictor, render_prediction, sparkline

    if save_inputs is not None and save_inputs.suffix != ".npz":
        raise MertoolError(f"--save-inputs {save_inputs}: expected a file name ending in .npz")
    predictor = Predictor(model, device=device, force=force)
    for note in predictor.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    spot = None
    if len(inputs) == 2:
        pred = predictor.predict_pair(inputs[0], inputs[1], aus, aus_from=aus_from, apex_frame=apex_frame)
        out = pred.to_dict()
    else:
        from rich.progress import Progress

        with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("spotting", total=None)
            pred, spot = predictor.predict_clip(inputs[0], aus, onset=onset, apex=apex, aus_from=aus_from,
                                                progress=lambda i, n: bar.update(task, completed=i, total=n))
        out = {"source": str(inputs[0]), **pred.to_dict()}
        out["onset_frame"] = spot.onset if spot and onset is None else onset
        out["apex_frame"] = spot.apex if spot and apex is None else apex
        out["spotted"] = spot is not None
        if spot is not None:
            out["spotting"] = spot.to_dict()
    out["model"] = str(predictor.model_path)
    out["pairs_made"] = predictor.aligner.settings() if hasattr(predictor.aligner, "settings") else None
    out["notes"] = list(predictor.notes)
    if save_inputs is not None:
        pred.save_inputs(save_inputs)
        err.print(f"wrote model inputs {save_inputs}", markup=False, highlight=False)
    out["trained_on"] = trained_on_line(predictor.trained_on)
    out["trained_on_record"] = {k: v for k, v in (predictor.trained_on or {}).items() if k != "motion"} or None
    if plot is not None:
        if spot is None:
            raise MertoolError(f"--plot {plot}: nothing was spotted (both --onset and --apex were given)")
        from mertool.spotting.apex import plot_motion
        plot_motion(spot, plot, title=str(inputs[0]))
        err.print(f"wrote motion plot {plot}")
    if explain is not None and pred.onset_crop is not None:
        from mertool.predict.explain import explain_figure
        title = (f"{pred.emotion} ({pred.probabilities[pred.emotion]:.2f})" if pred.emotion is not None
                 else f"cannot judge: {pred.verdict.code}")
        explain_figure(pred.onset_crop, pred.apex_crop, pred.cva_maps, explain, title=title)
        err.print(f"wrote explanation {explain}")
        if pred.cva_maps:
            from mertool.predict.explain import attention_image, uniform_note

            att = attention_image(pred.cva_maps[-1], 8)
            note = uniform_note(float(att.min()), float(att.max()))
            if note:
                err.print(f"attention: {note}")
    if as_json:
        sys.stdout.write(json.dumps(out) + "\n")
        return
    con = Console()
    if len(inputs) == 1:
        if spot is not None:
            con.print(f"motion {sparkline(spot.smoothed)} frames {spot.numbers[0]}..{spot.numbers[-1]}")
        how = "spotted" if spot is not None else "given"
        con.print(f"{how}: onset frame {out['onset_frame']}, apex frame {out['apex_frame']}")
    render_prediction(pred, con, predictor.model_path, out["trained_on"])


def _predict_batch(pairs: Path, model: Path, fmt: str, device: str, err, force: bool = False) -> int:
    """Every row of a pairs CSV -> CSV/JSONL on stdout; failed rows keep their error and make the exit code 1."""
    from mertool.cache.provenance import trained_on_line
    from mertool.face.align import registration_warnings
    from mertool.predict.predictor import Predictor, batch_csv, batch_jsonl

    predictor = Predictor(model, device=device, force=force)
    for note in predictor.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)

    def on_row(i, n, rec):
        if rec["error"]:
            err.print(f"row {rec['row']}: {rec['error']}", markup=False, highlight=False)
        elif rec.get("registration"):  # as a single pair prints them (the CSV's registration_flag column too)
            for line in registration_warnings(f"row {rec['row']}", rec["registration"]):
                err.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)

    results = predictor.predict_csv(pairs, on_row)
    err.print(trained_on_line(predictor.trained_on), markup=False, highlight=False, soft_wrap=True)
    err.print(f"probabilities: {predictor.calibration}", markup=False, highlight=False, soft_wrap=True)
    sys.stdout.write(batch_csv(results, predictor.classes) if fmt == "csv" else batch_jsonl(results))
    failed = sum(bool(r["error"]) for r in results)
    err.print(f"{len(results) - failed} of {len(results)} pairs predicted" + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0
