"""`synth` and `demo`: parse arguments and call mertool.synth / mertool.demo."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mertool.cli.app import app


@app.command("synth")
def synth_cmd(
    out_dir: Path = typer.Argument(..., help="Output folder: CASME2-RAW/ and the coding sheet are written here."),
    faces: Optional[Path] = typer.Option(None, "--faces", help="Folder of frontal face photos, one identity each "
                                                               "(default: scikit-image's astronaut and "
                                                               "matplotlib's Grace Hopper)."),
    subjects: int = typer.Option(10, "--subjects", help="Number of synthetic subjects (identities)."),
    per_subject: Optional[int] = typer.Option(None, "--per-subject", help="Clips per subject, classes balanced "
                                                                       "(default 20); with --long videos per "
                                                                       "subject (default 1)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes identical files."),
    workers: int = typer.Option(2, "--workers", help="Processes rendering clips (1: in this process)."),
    clean: bool = typer.Option(False, "--clean", help="No sensor noise and no head jitter (for measuring the "
                                                      "motion itself)."),
    head_motion: float = typer.Option(0.0, "--head-motion", help="Rigid head motion in every clip, onset to apex: "
                                                                 "this many px of shift and up to a quarter of it "
                                                                 "in degrees of rotation (tests registration)."),
    long: bool = typer.Option(False, "--long", help="Long videos for spotting instead (CAS(ME)^3 part A layout): "
                                                    "--per-subject videos of --seconds each per subject."),
    seconds: float = typer.Option(30.0, "--seconds", help="With --long: length of each video."),
    fps: float = typer.Option(30.0, "--fps", help="With --long: frame rate."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write a synthetic micro-expression dataset in the CASME II layout (frames + 2019-format coding sheet).

    With --long: uncut videos with several micro- and macro-expressions, blinks and head motion, written as
    CAS(ME)^3 part A ships them (frames spNO.N/a/color/K.jpg, a workbook with sheets `AU+Emotion` and
    `eye blink`), for `mertool spot-cache`, the spotters and `evaluate-spot`.

    Each subject is a real face photo given its own face shape, skin tone, lighting, scale and background; each
    clip moves the 68 dlib landmarks governed by its Action Units (FACS), at most 4 px in a 224-px aligned face.
    OUT_DIR/synth.json holds every sample's ground truth (AUs, sides, apex, landmark displacements).

    Example:
      mertool synth demo_data --subjects 10 --seed 0
      mertool synth my_data --faces photos/ --per-subject 30
      mertool synth moving --head-motion 8      # every head moves 8 px and up to 2 degrees, onset to apex
      mertool synth long_demo --long --subjects 4 --seconds 30
      mertool preprocess demo_data --out demo.h5
    """
    if long:
        from mertool.errors import MertoolError
        from mertool.spotting.synth import synth_long

        if head_motion:
            raise MertoolError("--head-motion: long videos have their own head drift and moves (see --help)")

        s = synth_long(out_dir, faces=faces, subjects=subjects, videos_per_subject=per_subject or 1,
                       seconds=seconds, fps=fps, seed=seed, workers=workers, noise=not clean,
                       progress=not quiet)
        typer.echo(f"{s['videos']} videos of {seconds:g} s at {fps:g} fps, {s['subjects']} subjects: "
                   f"{s['micro']} micro, {s['macro']} macro, {s['blink']} blinks in {s['seconds']:.1f} s")
        typer.echo(f"frames:   {s['frames_root']}\nsheet:    {s['sheet']}")
        typer.echo(f"next:     mertool spot-cache {s['out']} --out {Path(s['out']).name}.spot.h5")
        return
    from mertool.synth.faces import synth

    s = synth(out_dir, faces=faces, subjects=subjects, per_subject=per_subject or 20, seed=seed, workers=workers,
              noise=not clean, jitter=not clean, progress=not quiet, head_motion=head_motion)
    emotions = ", ".join(f"{k} {v}" for k, v in s["emotions"].items())
    typer.echo(f"{s['samples']} clips ({emotions}), {s['subjects']} subjects, {s['frames']} frames "
               f"in {s['seconds']:.1f} s")
    typer.echo(f"frames:   {s['frames_root']}\nsheet:    {s['sheet']}\nmanifest: {Path(s['out']) / 'synth.json'}")
    typer.echo(f"next:     mertool preprocess {s['out']} --out {Path(s['out']).name}.h5")


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for everything the demo writes."),
    subjects: int = typer.Option(8, "--subjects", help="Synthetic subjects (= LOSO folds)."),
    per_subject: int = typer.Option(20, "--per-subject", help="Clips per subject."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data and of training."),
    faces: Optional[Path] = typer.Option(None, "--faces", help="Folder of frontal face photos (default: built-in)."),
    device: str = typer.Option("auto", "--device", help="cuda, cuda:N, cpu or auto (cuda when available)."),
    workers: int = typer.Option(2, "--workers", help="Processes for synth and preprocess; on CPU also the folds "
                                                     "trained at once."),
    recipe: str = typer.Option("demo", "--recipe", help="Recipe to train (default: recipes/demo.yaml)."),
    spotting: bool = typer.Option(True, "--spotting/--no-spotting", help="End with the spotting row: synthetic "
                                                                       "long videos, both spotters, STR."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """The whole pipeline on built-in synthetic data: synth -> preprocess -> train-loso (recipes/demo.yaml) ->
    evaluate, once per AU source: hand-coded AUs (oracle), the model's own estimate, and none (images only).

    Re-running resumes: finished steps and folds are kept.

    Example:
      mertool demo --out demo_out
      mertool demo --out demo_gpu --device cuda --subjects 20
    """
    from mertool.demo import demo

    demo(out, subjects=subjects, per_subject=per_subject, seed=seed, recipe=recipe, faces=faces, workers=workers,
         device=device, progress=not quiet, spotting=spotting)
