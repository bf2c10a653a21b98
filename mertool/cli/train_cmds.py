"""`train-loso`, `evaluate`, `ablate`: parse arguments and call mertool.training / reports."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Literal, Optional

import typer

from mertool.cli.app import app
from mertool.errors import MertoolError

_SET_HELP = "Override a recipe key, e.g. --set train.epochs=5 (value parsed as YAML; repeatable)."
_SUBJECTS_HELP = "Folds to run here: all, or held-out subjects '01,02' (shards of one run folder)."
_DEVICE_HELP = "cuda, cuda:N, cpu or auto (cuda when available)."
_DEVICES_HELP = "Train folds in parallel on these devices, e.g. cuda:0,cuda:1 (replaces --device)."
_FPD_HELP = ("Folds trained at once on each device (worker processes); a small model leaves a big GPU idle. "
             "Without NVIDIA MPS the processes' kernels do not run concurrently: the GPU time-slices between them "
             "(measure K against 1 with `mertool bench --loso --folds-per-device K`).")

# Slurm options, shared by train-loso and ablate (see mertool/training/cluster.py)
_EXECUTOR = typer.Option("local", "--executor", help="local (this machine) or slurm (one job array through "
                                                     "submitit; pip install -e '.\\[slurm]').")
_PARTITION = typer.Option(None, "--slurm-partition", help="Slurm partition (default: the cluster's default).")
_GPUS = typer.Option(1, "--slurm-gpus-per-job", min=0, help="GPUs per Slurm job (0: CPU jobs).")
_TIME = typer.Option(120, "--slurm-time", min=1, help="Time limit per Slurm job in minutes; a job that reaches it "
                                                       "requeues itself and resumes at its first unfinished fold.")
_FPJ = typer.Option(None, "--folds-per-job", min=1, help="Folds per Slurm job (default: enough for about 10 "
                                                          "minutes of work, from finished folds or the model's FLOPs).")
_SOPT = typer.Option([], "--slurm-opt", help="Extra sbatch option KEY=VALUE, e.g. account=lab, qos=high, mem=32G, "
                                              "constraint=a100 (repeatable).")
_RETRIES = typer.Option(2, "--max-retries", min=0, help="Resubmit folds without predictions.csv this many times "
                                                         "after the array ends.")
_LOGS = typer.Option(None, "--slurm-logs", help="Folder for sbatch scripts and job logs (default: RUN/slurm/).")
_POLL = typer.Option(10.0, "--slurm-poll", min=0.1, help="Seconds between two looks at the queue (squeue).")
_DRY = typer.Option(False, "--dry-run", help="With --executor slurm: print the sbatch script and each task's folds; "
                                             "submit nothing.")


def _slurm_options(executor, dry_run, partition, gpus, time_min, folds_per_job, opts, retries, logs,
                   folds_per_device, poll_s, devices=None):
    """SlurmOptions for --executor slurm, None for local (and --dry-run without slurm is a usage error)."""
    if executor not in ("local", "slurm"):
        raise MertoolError(f"--executor {executor!r}: expected local or slurm")
    if executor == "local":
        if dry_run:
            raise MertoolError("--dry-run prints Slurm scripts: use it with --executor slurm")
        return None
    if devices:  # this machine's devices mean nothing on the nodes Slurm picks
        raise MertoolError(f"--devices {devices}: with --executor slurm each job uses the GPUs Slurm gives it; set "
                           f"how many with --slurm-gpus-per-job N (and --folds-per-device K for folds on each)")
    from mertool.training.cluster import SlurmOptions, parse_slurm_opts

    return SlurmOptions(partition=partition, gpus_per_job=gpus, time_min=time_min, folds_per_job=folds_per_job,
                        opts=parse_slurm_opts(opts), max_retries=retries, logs=logs,
                        folds_per_device=folds_per_device, poll_s=poll_s)


def _console(quiet_stdout: bool = False):
    from rich.console import Console

    return Console(stderr=quiet_stdout, markup=False)


def _select(select: str) -> str:
    """--select, with the deprecation line for the previous release's spelling."""
    from mertool.training.runs import SELECT_DEPRECATION, check_select

    if select == "oracle":
        _console(quiet_stdout=True).print(f"warning: {SELECT_DEPRECATION}", soft_wrap=True)
    return check_select(select)


@app.command("train-loso")
def train_loso_cmd(
    recipe: Optional[str] = typer.Argument(None, help="Recipe YAML (a path, or a name in recipes/: casme2, samm, "
                                                      "demo); default: the recipe named after the cache's dataset."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="HDF5 cache from `mertool preprocess`; default: the "
                                                              "only mertool cache in the current folder."),
    subjects: str = typer.Option("all", "--subjects", help=_SUBJECTS_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/RECIPE-seedN)."),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed (sets train.seed)."),
    set_: List[str] = typer.Option([], "--set", help=_SET_HELP),
    select: Literal["last", "best-on-test", "oracle"] = typer.Option(
        "last", "--select", help="last (default: the fixed schedule's last epoch) or best-on-test (ALSO record each "
                                 "fold's best epoch on its test subject, reported apart as 'best epoch chosen on the "
                                 "test subject'); 'oracle' is its deprecated old spelling."),
    final: bool = typer.Option(False, "--final", help="Also train one model on all subjects: RUN/final/model.pt."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (CUDA; slower start)."),
    devices: Optional[str] = typer.Option(None, "--devices", help=_DEVICES_HELP),
    folds_per_device: int = typer.Option(1, "--folds-per-device", min=1, help=_FPD_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    executor: Literal["local", "slurm"] = _EXECUTOR, slurm_partition: Optional[str] = _PARTITION,
    slurm_gpus_per_job: int = _GPUS,
    slurm_time: int = _TIME, folds_per_job: Optional[int] = _FPJ, slurm_opt: List[str] = _SOPT,
    max_retries: int = _RETRIES, slurm_logs: Optional[Path] = _LOGS, slurm_poll: float = _POLL,
    dry_run: bool = _DRY,
) -> None:
    """Leave-one-subject-out training: one fold per held-out subject, fixed schedule, last epoch as the result.

    Re-running the same command resumes: finished folds (those with predictions.csv) are skipped.
    With no RECIPE and no --cache, the one mertool cache in the current folder and the recipe named after its
    dataset are used (the first line of output says which).

    Example:
      mertool train-loso --subjects all
      mertool train-loso recipes/casme2.yaml --cache casme2.h5 --out runs/casme2-seed0 --final
      mertool train-loso demo --cache demo.h5 --set train.epochs=5 --subjects 01,02
      mertool train-loso casme2 --cache casme2.h5 --devices cuda:0,cuda:1 --folds-per-device 4
      mertool train-loso casme2 --cache casme2.h5 --executor slurm --slurm-partition gpu --folds-per-job 6
    """
    from mertool.recipe import find_recipe, load_recipe
    from mertool.training.discover import resolve_short_form
    from mertool.training.parallel import train_loso_parallel

    from mertool.spotting.learned import train_spotting_cli

    if train_spotting_cli(recipe, cache, out, subjects, set_, seed, final, _console()):
        return  # a spotting recipe (task: spotting) trains the learned spotter on a spotting cache
    slurm = _slurm_options(executor, dry_run, slurm_partition, slurm_gpus_per_job, slurm_time, folds_per_job,
                           slurm_opt, max_retries, slurm_logs, folds_per_device, slurm_poll, devices)
    select = _select(select)
    recipe, cache, note = resolve_short_form(recipe, cache)
    if note:
        _console().print(note, soft_wrap=True)
    overrides = list(set_) + ([f"train.seed={seed}"] if seed is not None else [])
    r = load_recipe(recipe, overrides)
    if out is None:
        out = Path("runs") / f"{find_recipe(recipe).stem}-seed{r['train']['seed']}"
    if slurm is not None:
        from mertool.training.cluster import train_loso_slurm

        train_loso_slurm(r, cache, out, subjects=subjects, select=select, final=final, compile=compile_,
                         options=slurm, console=_console(), dry_run=dry_run)
        return
    train_loso_parallel(r, cache, out, subjects=subjects, devices=devices or device, folds_per_device=folds_per_device,
                        select=select, final=final, compile=compile_, console=_console(),
                        progress=not quiet)


@app.command("evaluate")
def evaluate_cmd(
    run_dirs: List[Path] = typer.Argument(..., help="Run folder(s); several (e.g. seeds) give mean ± std."),
    json_: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout (nothing else there)."),
    partial: bool = typer.Option(False, "--partial", help="Score a run with missing folds (marked partial)."),
    png: Optional[Path] = typer.Option(None, "--png", help="Confusion-matrix picture (default: RUN/confusion.png "
                                                           "for one run folder)."),
    by_dataset: bool = typer.Option(False, "--by-dataset", help="Also UF1 and UAR of each source dataset of a "
                                                                "merged cache (the MEGC 2019 composite's columns)."),
) -> None:
    """Pooled LOSO metrics (accuracy, UF1, UAR, macro F1), per class, per subject, confusion matrix.

    Figures of the epoch chosen on each test subject (runs trained with --select best-on-test) are shown apart and
    labelled; every report says what the test clips' AU input was.
    A run with missing folds is refused, naming them, unless --partial.

    Example:
      mertool evaluate runs/casme2-seed0
      mertool evaluate runs/casme2-seed0 runs/casme2-seed1 runs/casme2-seed2 --json > results.json
      mertool evaluate runs/megc2019-seed0 --by-dataset
    """
    from mertool.reports.evaluate import (au_f1_png, confusion_png, evaluate_runs, render, render_by_dataset,
                                  summed_confusion, to_json)
    from mertool.spotting.learned import is_spotting_run

    if len(run_dirs) == 1 and is_spotting_run(run_dirs[0]):  # MEGC figures and log of a learned spotter's run
        from mertool.spotting.learned import evaluate_spotting_run, render_spotting_report
        report = evaluate_spotting_run(run_dirs[0])
        if json_:
            typer.echo(json.dumps(report, indent=2))
        else:
            render_spotting_report(report, _console())
        return

    report = evaluate_runs(run_dirs, partial=partial)
    if png is None and len(run_dirs) == 1:
        png = Path(run_dirs[0]) / "confusion.png"
    cm = summed_confusion(report)
    if png is not None and cm is not None:
        title = "LOSO confusion, last epoch" + (f", {len(run_dirs)} runs summed" if len(run_dirs) > 1 else "")
        report["png"] = str(confusion_png(cm, report["classes"], png, title))
        au_png = au_f1_png(report, png.with_name("au_f1.png"))
        report["au_png"] = str(au_png) if au_png else None
    if len(run_dirs) == 1 and report["runs"][0].get("calibration"):
        from mertool.reports.calibration import calibration_png

        report["calibration_png"] = str(calibration_png(report["runs"][0]["calibration"],
                                                        Path(run_dirs[0]) / "calibration.png",
                                                        f"{Path(run_dirs[0]).name}: reliability, pooled LOSO"))
    if json_:
        typer.echo(to_json(report))
        return
    console = _console()
    render(report, console)
    if by_dataset:
        render_by_dataset(report, console)
    if report.get("png"):
        console.print(f"confusion matrix picture: {report['png']}")
    if report.get("au_png"):
        console.print(f"AU detection picture: {report['au_png']}")
    if report.get("calibration_png"):
        console.print(f"reliability diagram (before and after calibration): {report['calibration_png']}")


@app.command("ablate")
def ablate_cmd(
    table: str = typer.Argument(..., help="Table file, e.g. recipes/ablations/table3.yaml (or ablations/table3)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="HDF5 cache (not needed with --list)."),
    out: Path = typer.Option(Path("runs"), "--out", help="Variants go to OUT/<table>/<variant>/."),
    list_: bool = typer.Option(False, "--list", help="Print the table's variants and exit."),
    subjects: str = typer.Option("all", "--subjects", help=_SUBJECTS_HELP),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    base: Optional[str] = typer.Option(None, "--base", help="Base recipe for every variant (default: the "
                                                            "table's recipe for the cache's dataset)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed (sets train.seed)."),
    set_: List[str] = typer.Option([], "--set", help=_SET_HELP + " Applies to every variant."),
    select: Literal["last", "best-on-test", "oracle"] = typer.Option(
        "last", "--select", help="last or best-on-test (see train-loso; 'oracle' is its deprecated old spelling)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the models."),
    devices: Optional[str] = typer.Option(None, "--devices", help=_DEVICES_HELP),
    folds_per_device: int = typer.Option(1, "--folds-per-device", min=1, help=_FPD_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Run every variant with each seed, e.g. 0,1,2: "
                                                              "OUT/<table>/<variant>/seed<N>, table as mean ± std."),
    collect: bool = typer.Option(False, "--collect", help="Print and write the table from the run folders in OUT; "
                                                          "train and submit nothing."),
    executor: Literal["local", "slurm"] = _EXECUTOR, slurm_partition: Optional[str] = _PARTITION,
    slurm_gpus_per_job: int = _GPUS,
    slurm_time: int = _TIME, folds_per_job: Optional[int] = _FPJ, slurm_opt: List[str] = _SOPT,
    max_retries: int = _RETRIES, slurm_logs: Optional[Path] = _LOGS, slurm_poll: float = _POLL,
    dry_run: bool = _DRY,
) -> None:
    """Run every variant of a paper ablation table through LOSO and print the table beside the paper's numbers.

    Resumable and shardable like train-loso; writes OUT/<table>/table.md and table.csv.

    Example:
      mertool ablate recipes/ablations/table3.yaml --list
      mertool ablate recipes/ablations/table3.yaml --cache casme2.h5 --out runs/
      mertool ablate ablations/table2 --cache casme2.h5 --seeds 0,1,2 --executor slurm --slurm-partition gpu
      mertool ablate ablations/table2 --out runs/ --collect
    """
    from mertool.reports.ablate import collect_table, list_variants, parse_seeds, run_table

    slurm = _slurm_options(executor, dry_run, slurm_partition, slurm_gpus_per_job, slurm_time, folds_per_job,
                           slurm_opt, max_retries, slurm_logs, folds_per_device, slurm_poll, devices)
    select = _select(select)
    seed_list = parse_seeds(seeds)
    if seed_list and seed is not None:
        raise MertoolError("ablate: use --seed or --seeds, not both")
    overrides = list(set_) + ([f"train.seed={seed}"] if seed is not None else [])
    console = _console()
    if list_:
        list_variants(table, base=base, overrides=overrides, console=console)
        return
    if collect:
        collect_table(table, out, console=console)
        return
    if cache is None:
        raise MertoolError("ablate: --cache FILE is required (except with --list or --collect)")
    run_table(table, cache, out, subjects=subjects, device=devices or device, folds_per_device=folds_per_device,
              base=base, overrides=overrides, seeds=seed_list, select=select, compile=compile_, console=console,
              progress=not quiet, slurm=slurm, dry_run=dry_run)
