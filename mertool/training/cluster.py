"""LOSO folds and whole ablation grids on a Slurm cluster: one job array per command, through submitit.

    run_on_slurm([RunSpec(recipe, "casme2.h5", "runs/casme2")], SlurmOptions(partition="gpu"), console=console)

Every fold of every run (a LOSO run, or each variant x seed of an ablation table) is one unit of work; units are cut
into chunks of `folds_per_job`, and each chunk is one task of a Slurm job array. A task trains its folds through the
same code path as `train-loso` (`train_loso_parallel` with the chunk's subjects, `folds_per_device` workers on each
GPU Slurm gave it) into the run folders on the shared filesystem, which stay the single source of truth: a fold is
done when its predictions.csv exists (mertool.training.runs).

Faults: the submitting process polls the scheduler (squeue, so clusters without job accounting work too) until every
task has left the queue, and stops with an error naming the job ids if Slurm no longer lists a job it never saw
finish. Folds still without predictions.csv are then submitted again as a new array, up to `max_retries` times; a
fold that fails every try is named with its last log, and the command fails. Finished folds are never re-run: a
task skips them. A task that reaches its time limit or is preempted gets Slurm's signal, and submitit calls
`FoldChunk.checkpoint`, which requeues the same chunk: it resumes at its first unfinished fold.

Slurm's own failures (sbatch, squeue, scancel: a partition that does not exist, an sbatch option it does not know, GPUs
on a cluster without them, a controller that does not answer, no slurm.conf, no Slurm on PATH) end the command with one
line that quotes Slurm's message and says what to change, exit 2; a run folder this command created is removed when
nothing was submitted, so the next command starts clean. Ctrl-C, SIGTERM, SIGHUP and losing track of a job cancel the
jobs this command submitted (or the message names those still running). `--dry-run` writes nothing.

submitit is an optional dependency (`pip install -e '.[slurm]'`), imported only here.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mertool.training import runs
from mertool.errors import MertoolError
from mertool.text import plural

INSTALL_HINT = "pip install -e '.[slurm]'"
MIN_JOB_SECONDS = 600          # clusters cap jobs per user: the default chunk makes a job run about 10 minutes
ASSUMED_FLOPS = 100e12         # training FLOP/s assumed for one GPU when sizing chunks before any fold ran
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
            "SPECIAL_EXIT"}


@dataclass(frozen=True)
class RunSpec:
    """A run folder to fill: its resolved recipe, the cache (a path every node can read) and what to train."""

    recipe: dict
    cache: str
    out: str
    subjects: object = None        # None/"all" or a list: the folds of this run to train
    select: str = "last"
    final: bool = False
    compile: bool = False


@dataclass(frozen=True)
class Unit:
    """One fold of one run (subject runs.FINAL: the run's final model)."""

    run: int
    subject: str
    fold_dir: str


@dataclass
class SlurmOptions:
    """What `--slurm-*`, `--folds-per-job`, `--max-retries` and `--folds-per-device` ask for."""

    partition: str | None = None
    gpus_per_job: int = 1
    time_min: int = 120
    folds_per_job: int | None = None
    opts: dict = field(default_factory=dict)     # --slurm-opt KEY=VALUE: sbatch options passed through
    max_retries: int = 2
    logs: Path | None = None
    folds_per_device: int = 1
    poll_s: float = 10.0
    lost_after_s: float = 600.0
    job_name: str = "mertool"
    executor: object = None   # a submitit executor to use instead of Slurm's (tests: submitit.DebugExecutor)


def parse_slurm_opts(items) -> dict:
    """--slurm-opt account=lab --slurm-opt mem=32G -> {"account": "lab", "mem": "32G"}."""
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key or not value.strip():
            raise MertoolError(f"--slurm-opt {item!r}: expected KEY=VALUE, e.g. account=mylab or mem=32G")
        out[key.replace("-", "_")] = value.strip()
    return out


# ------------------------------------------------------------------------------------------------------ the job

class FoldChunk:
    """One array task: train its folds (skipping those already done) into their run folders.

    A plain picklable callable; submitit calls `checkpoint` on a time-out or preemption and requeues what it returns.
    """

    def __init__(self, specs: list[RunSpec], units: list[Unit], folds_per_device: int = 1):
        self.specs, self.units, self.folds_per_device = list(specs), list(units), int(folds_per_device)

    def __call__(self) -> list[str]:
        import torch

        n_gpu = torch.cuda.device_count()
        devices = ",".join(f"cuda:{i}" for i in range(n_gpu)) if n_gpu else "cpu"
        threads = int(os.environ["SLURM_CPUS_PER_TASK"]) if os.environ.get("SLURM_CPUS_PER_TASK") else None
        errors = []
        for run, units in _by_run(self.units).items():
            spec = self.specs[run]
            todo = [u for u in units if not unit_done(spec, u)]
            if not todo:
                continue
            print(f"{spec.out}: folds {', '.join(u.subject for u in todo)} on {devices} "
                  f"(host {os.uname().nodename}, pid {os.getpid()})", flush=True)
            try:
                self._train(spec, todo, devices, threads)
            except Exception as exc:  # one bad fold must not keep the chunk's other folds from training
                if len(todo) == 1:
                    errors.append(f"{spec.out} fold {todo[0].subject}: {type(exc).__name__}: {exc}")
                    continue
                print(f"{spec.out}: {type(exc).__name__}: {exc}; training the remaining folds one by one", flush=True)
                for u in (u for u in todo if not unit_done(spec, u)):
                    try:
                        self._train(spec, [u], devices, threads)
                    except Exception as exc1:
                        errors.append(f"{spec.out} fold {u.subject}: {type(exc1).__name__}: {exc1}")
        if errors:
            raise RuntimeError("; ".join(errors))
        return [f"{self.specs[u.run].out}:{u.subject}" for u in self.units]

    def _train(self, spec: RunSpec, todo: list[Unit], devices: str, threads: int | None) -> None:
        from mertool.training.parallel import train_loso_parallel

        train_loso_parallel(spec.recipe, spec.cache, spec.out, subjects=[u.subject for u in todo if u.subject !=
                                                                         runs.FINAL],
                            devices=devices, folds_per_device=self.folds_per_device, threads=threads,
                            select=spec.select, final=any(u.subject == runs.FINAL for u in todo),
                            compile=spec.compile, progress=False)

    def checkpoint(self, *args, **kwargs):
        """Requeue the same chunk: finished folds are skipped, so it resumes at its first unfinished fold."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(FoldChunk(self.specs, self.units, self.folds_per_device), *args, **kwargs)


def _unit_dir(spec: RunSpec, unit: Unit) -> Path:
    return runs.final_path(spec.out) if unit.subject == runs.FINAL else runs.fold_path(spec.out, unit.fold_dir)


def unit_done(spec: RunSpec, unit: Unit) -> bool:
    return runs.final_done(spec.out) if unit.subject == runs.FINAL else runs.fold_done(spec.out, unit.fold_dir)


def _by_run(units: list[Unit]) -> dict[int, list[Unit]]:
    groups: dict[int, list[Unit]] = {}
    for u in units:
        groups.setdefault(u.run, []).append(u)
    return groups


# ------------------------------------------------------------------------------------------------- submitting

def run_on_slurm(specs: list[RunSpec], options: SlurmOptions, *, console, dry_run: bool = False) -> dict:
    """Prepare every run folder, submit the unfinished folds as job arrays, wait, retry; returns a summary."""
    submitit = _import_submitit()
    if options.executor is None and not dry_run:
        check_slurm_here()
    made = [Path(s.out) for s in specs if not runs.is_run(s.out)]  # removed again if nothing gets submitted
    units, sizes = plan_units(specs, console, write=not dry_run)
    logs = Path(options.logs or Path(specs[0].out) / "slurm")
    per_job = options.folds_per_job or default_folds_per_job(specs, options, sizes)
    if per_job < 1:
        raise MertoolError(f"--folds-per-job {per_job}: expected an integer >= 1")
    done_before = [u for u in units if unit_done(specs[u.run], u)]
    todo_now = len(units) - len(done_before)
    per_job = max(1, min(per_job, todo_now))  # never more per job than there are folds to train
    console.print(f"{plural(len(units), 'fold')} in {plural(len(specs), 'run folder')}, {len(done_before)} done "
                  f"earlier; {plural(per_job, 'fold')} per job")
    if dry_run:
        return dry_run_scripts(specs, [u for u in units if u not in done_before], options, logs, per_job, console)
    executor = options.executor
    submitted, attempts, last_job = [], 0, {}
    t0 = time.monotonic()
    try:
        if executor is None:
            with _slurm_messages(options, "sbatch"):
                logs.mkdir(parents=True, exist_ok=True)
                executor = submitit.SlurmExecutor(folder=logs)
                executor.update_parameters(**slurm_parameters(options))
        for attempt in range(options.max_retries + 1):
            todo = [u for u in units if not unit_done(specs[u.run], u)]
            if not todo:
                break
            attempts = attempt + 1
            chunks = [todo[i:i + per_job] for i in range(0, len(todo), per_job)]
            with _slurm_messages(options, "sbatch"):
                with executor.batch():
                    jobs = [executor.submit(FoldChunk(specs, c, options.folds_per_device)) for c in chunks]
            ids = [str(j.job_id) for j in jobs]
            submitted += ids
            console.print(f"try {attempt + 1}: submitted {plural(len(jobs), 'job')} ({_id_range(ids)}) for "
                          f"{plural(len(todo), 'fold')}; logs in {logs}")
            states = _wait_or_cancel(jobs, options, console)
            for u in todo:  # claims left by these jobs (killed on another node) would hold the retry off
                if not unit_done(specs[u.run], u):
                    runs.drop_claims_of_jobs(_unit_dir(specs[u.run], u), ids)
            for job, chunk in zip(jobs, chunks):
                for u in chunk:
                    last_job[u] = (str(job.job_id), states.get(str(job.job_id), "?"), _log_path(job))
    except BaseException:
        if not submitted:  # nothing reached Slurm: leave no run folder this command made
            for out in made:
                _remove_unstarted(out, logs)
        raise
    failed = [u for u in units if not unit_done(specs[u.run], u)]
    seconds = time.monotonic() - t0
    summary = {"folds": len(units), "done_before": len(done_before), "jobs": submitted, "tries": attempts,
               "failed": [(specs[u.run].out, u.subject) + last_job.get(u, ("?", "?", None)) for u in failed],
               "seconds": seconds}
    if failed:
        lines = [f"  {specs[u.run].out} fold {u.subject}: job {jid} {state}, log {log}"
                 for u in failed for jid, state, log in [last_job.get(u, ("?", "?", None))]]
        raise MertoolError(f"{plural(len(failed), 'fold')} failed in all {plural(attempts, 'try', 'tries')} "
                           f"(finished folds are kept; re-run the same command to try again):\n" + "\n".join(lines))
    console.print(f"all {plural(len(units), 'fold')} done: {plural(len(submitted), 'job')} in "
                  f"{plural(attempts, 'try', 'tries')}, {seconds:.0f} s")
    return summary


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP while waiting for the jobs: handled as Ctrl-C is (the jobs are cancelled)."""


def _wait_or_cancel(jobs, options: SlurmOptions, console) -> dict[str, str]:
    """wait_for, with the jobs cancelled on Ctrl-C, SIGTERM, SIGHUP or a lost job: left running, they would race
    the next command's jobs for the same folds."""
    ids = [str(j.job_id) for j in jobs]

    def stop(signum, _frame):
        raise Stopped(signal.Signals(signum).name)

    handlers = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            handlers[sig] = signal.signal(sig, stop)
        except (ValueError, OSError):  # not the main thread: Ctrl-C handling only
            pass
    try:
        return wait_for(jobs, options, console)
    except KeyboardInterrupt as exc:
        what = f"stopped by {exc.args[0]}" if isinstance(exc, Stopped) and exc.args else "interrupted"
        console.print(f"{what}: {cancel_jobs(jobs, ids)}; finished folds are kept, re-run the same command to go on")
        raise
    except MertoolError as exc:  # Slurm lost track of a job, or squeue stopped answering
        raise MertoolError(f"{exc}; {cancel_jobs(jobs, ids)}") from None
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)


def cancel_jobs(jobs, ids: list[str]) -> str:
    """Cancel the jobs; what happened, as a clause ("cancelled job(s) 12_0 .. 12_3", or the ids still running and
    scancel's own message)."""
    if jobs and _is_slurm(jobs[0]):
        try:
            r = subprocess.run(["scancel", *sorted({i.split("_")[0] for i in ids})], capture_output=True, text=True,
                               timeout=60)
            problem = "" if r.returncode == 0 else (_first_line(r.stderr) or f"scancel exit {r.returncode}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = f"scancel: {exc}"
        if problem:
            return (f"job(s) {', '.join(ids)} may still be running (scancel said: {problem}); cancel them with "
                    f"`scancel {' '.join(sorted({i.split('_')[0] for i in ids}))}`")
    else:
        for job in jobs:
            job.cancel(check=False)
    return f"cancelled {'job' if len(ids) == 1 else 'jobs'} {_id_range(ids)}"


def _remove_unstarted(out: Path, logs: Path) -> None:
    """A run folder this command created and nothing trained in: removed (only if it holds no finished fold)."""
    out = Path(out)
    if not out.is_dir() or any(out.glob(f"{runs.FOLDS}/*/{runs.PREDICTIONS}")) or runs.final_done(out):
        return
    shutil.rmtree(out, ignore_errors=True)
    if logs.is_dir() and not any(logs.iterdir()):
        logs.rmdir()


def check_slurm_here() -> None:
    """sbatch, squeue and srun on PATH (submitit needs all three), else one line saying so."""
    missing = [c for c in ("sbatch", "squeue", "srun") if shutil.which(c) is None]
    if missing:
        raise MertoolError(f"--executor slurm: {', '.join(missing)} not found on PATH (no Slurm client here); run "
                           f"on a machine of the cluster (its login node), or train here with --executor local")


# What to change for the Slurm messages users meet most (matched in lower case).
SLURM_HINTS = (
    (("invalid partition",), "choose an existing partition with --slurm-partition (`sinfo -s` lists them), or leave "
                             "it out for the cluster's default"),
    (("gres", "gpu", "generic resource", "requested node configuration is not available"),
     "ask for no GPUs with --slurm-gpus-per-job 0 (CPU jobs), or a partition that has them with --slurm-partition"),
    (("unrecognized option", "unknown option", "invalid option", "invalid --", "invalid mem", "mem",
      "invalid account", "invalid qos", "unable to allocate"),
     "fix or drop the --slurm-opt it names (`sbatch --help` lists sbatch's options)"),
    (("unable to contact slurm controller", "connection refused", "socket timed out", "zero bytes were transmitted",
      "connect failure"),
     "the Slurm controller does not answer: check it is up (`scontrol ping`) and that SLURM_CONF names this "
     "cluster's slurm.conf"),
    (("could not establish a configuration source", "slurm.conf", "slurm_conf", "no such file"),
     "Slurm finds no configuration: set SLURM_CONF to this cluster's slurm.conf, or run on a cluster machine"),
)


def slurm_hint(message: str, options: SlurmOptions | None = None) -> str:
    """What to change for a Slurm error message."""
    low = message.lower()
    for opt in (options.opts if options else {}):
        if opt.replace("_", "-") in low or opt in low:
            return f"fix or drop --slurm-opt {opt}=... (`sbatch --help` lists sbatch's options)"
    for needles, hint in SLURM_HINTS:
        if any(n in low for n in needles):
            return hint
    return "check the --slurm-* options and the cluster (sinfo, squeue)"


def _first_line(text: str) -> str:
    """Slurm's message: its 'error:' lines joined, else its first non-empty line."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()]
    return " / ".join(dict.fromkeys(errors or lines[:1]))


@contextlib.contextmanager
def _slurm_messages(options: SlurmOptions, command: str):
    """Turn a failed sbatch (submitit's FailedJobError, RuntimeError, ValueError, OSError) into one MertoolError
    line quoting Slurm's message, with submitit's own printing (stderr copies, logged errors) kept off the screen."""
    quiet = io.StringIO()
    log = logging.getLogger("submitit")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(quiet):
            yield
    except MertoolError:
        raise
    except (Exception) as exc:  # noqa: BLE001 - every submitit failure becomes the one line
        text = _first_line(str(exc)) or _first_line(quiet.getvalue()) or type(exc).__name__
        if isinstance(exc, FileNotFoundError):
            text = f"{command} not found ({exc.filename or command})"
        raise MertoolError(f"{command} failed: {text}; {slurm_hint(text, options)}") from None
    finally:
        log.setLevel(level)


def train_loso_slurm(recipe: dict, cache, out, *, subjects=None, select="last", final=False, compile=False,
                     options: SlurmOptions, console, dry_run: bool = False) -> dict | None:
    """`train-loso --executor slurm`: one job array for the run's unfinished folds, then the usual summary."""
    from mertool.training.train import print_run_summary

    out = Path(out)
    if not Path(cache).is_file():
        raise MertoolError(f"--cache {cache}: no such file")
    select = runs.check_select(select)
    options.logs = options.logs or out / "slurm"
    spec = RunSpec(recipe, str(Path(cache).resolve()), str(out.resolve()), subjects, select, final, compile)
    result = run_on_slurm([spec], options, console=console, dry_run=dry_run)
    return None if dry_run else {**print_run_summary(out, console), "slurm": result}


def plan_units(specs: list[RunSpec], console, write: bool = True) -> tuple[list[Unit], list[int]]:
    """Create or check each run folder (as train-loso does; write=False only checks) and list its folds to train;
    also each run's number of samples (for sizing chunks)."""
    import torch

    units, sizes = [], []
    for i, spec in enumerate(specs):
        data, plan, todo = runs.open_run(spec.recipe, spec.cache, Path(spec.out), spec.subjects,
                                         torch.device("cpu"), console, write=write)
        units += [Unit(i, s, plan.fold_dirs[s]) for s in todo]
        sizes.append(len(data))
        if spec.final:
            units.append(Unit(i, runs.FINAL, runs.FINAL_DIR))
    return units, sizes


def default_folds_per_job(specs: list[RunSpec], options: SlurmOptions, sizes: list[int] | None = None) -> int:
    """Folds per job so that one job runs about MIN_JOB_SECONDS: from the folds already run when there are some,
    else from the model's training FLOPs at ASSUMED_FLOPS per GPU (sizes: each run's samples)."""
    per_fold = [t for t in (_fold_seconds(s) for s in specs) if t]
    if not per_fold:
        sizes = sizes or [None] * len(specs)
        per_fold = [_estimated_fold_seconds(s.recipe, s.out, n) / max(1, options.gpus_per_job)
                    for s, n in zip(specs, sizes)]
    per_fold_s = max(1e-3, sum(per_fold) / len(per_fold)) / max(1, options.folds_per_device)
    return max(1, math.ceil(MIN_JOB_SECONDS / per_fold_s))


def _fold_seconds(spec: RunSpec) -> float | None:
    times = []
    folds_root = Path(spec.out) / runs.FOLDS
    for fdir in folds_root.glob("*") if folds_root.is_dir() else ():
        seconds = runs.read_fold_summary(fdir).get("seconds") if (fdir / runs.PREDICTIONS).is_file() else None
        if seconds:
            times.append(float(seconds))
    return sorted(times)[len(times) // 2] if times else None


def _estimated_fold_seconds(recipe: dict, out: str, n_samples: int | None = None) -> float:
    from mertool.bench import model_flops

    if n_samples is None:
        n_samples = int(runs.read_run_info(Path(out)).get("n_samples", 1))
    tr = recipe["train"]
    flops = model_flops(recipe["model"], batch=2)["train_per_sample"]
    return flops * int(n_samples) * int(tr["epochs"]) / ASSUMED_FLOPS


def slurm_parameters(options: SlurmOptions) -> dict:
    """submitit SlurmExecutor parameters (sbatch options)."""
    params = {"job_name": options.job_name, "time": int(options.time_min), "nodes": 1, "ntasks_per_node": 1,
              "additional_parameters": dict(options.opts)}
    if options.gpus_per_job:
        params["gpus_per_node"] = int(options.gpus_per_job)
    if options.partition:
        params["partition"] = options.partition
    return params


# ----------------------------------------------------------------------------------------------------- waiting

def wait_for(jobs, options: SlurmOptions, console) -> dict[str, str]:
    """Poll until every job has left the queue; job id -> final state. Raises if Slurm loses track of a job."""
    if not jobs or not _is_slurm(jobs[0]):
        return _run_local(jobs)
    ids = [str(j.job_id) for j in jobs]
    seen: dict[str, str] = {}
    final: dict[str, str] = {}
    t_submit = last_ok = time.monotonic()
    last_line = ""
    while len(final) < len(ids):
        listing, problem = _squeue(sorted({i.split("_")[0] for i in ids}))
        now = time.monotonic()
        if listing is None:
            if now - last_ok > options.lost_after_s:
                raise MertoolError(f"squeue has failed for {now - last_ok:.0f} s (squeue said: {problem}; "
                                   f"{slurm_hint(problem, options)}); job(s) "
                                   f"{', '.join(i for i in ids if i not in final)} are in an unknown state; finished "
                                   f"folds are kept, re-run the same command once squeue works")
        else:
            last_ok = now
            for jid in ids:
                if jid in final:
                    continue
                state = listing.get(jid)
                if state is not None:
                    seen[jid] = state
                    if state in TERMINAL:
                        final[jid] = state
                elif jid in seen:  # listed before, gone now: it ended and was purged from the queue
                    final[jid] = seen[jid] if seen[jid] in TERMINAL else "ENDED"
            lost = [j for j in ids if j not in seen and now - t_submit > options.lost_after_s]
            if lost:
                raise MertoolError(f"Slurm lost track of job(s) {', '.join(lost)}: not listed by squeue "
                                   f"{now - t_submit:.0f} s after submission; finished folds are kept, re-run the "
                                   f"same command to resubmit the rest")
            counts = {}
            for jid in ids:
                s = final.get(jid) or seen.get(jid, "SUBMITTED")
                counts[s] = counts.get(s, 0) + 1
            line = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
            if line != last_line:
                console.print(f"jobs: {line}")
                last_line = line
        if len(final) < len(ids):
            time.sleep(options.poll_s)
    return final


def _squeue(array_ids: list[str]) -> tuple[dict[str, str] | None, str]:
    """(job id (12_3) -> state for every task of these arrays, or None when squeue fails; squeue's message)."""
    try:
        r = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(array_ids)],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if r.returncode != 0:
        # squeue exits 1 for job ids it no longer knows; those are simply absent
        if "Invalid job id" not in r.stderr:
            return None, _first_line(r.stderr) or f"exit {r.returncode}"
    out = {}
    for line in r.stdout.splitlines():
        jid, _, state = line.strip().partition("|")
        if jid:
            out[jid] = state.split()[0] if state else "?"
    return out, ""


def _run_local(jobs) -> dict[str, str]:
    """Jobs of a non-Slurm executor (submitit's DebugExecutor runs them here, now)."""
    states = {}
    for job in jobs:
        exc = job.exception()
        states[str(job.job_id)] = "COMPLETED" if exc is None else f"FAILED ({type(exc).__name__}: {exc})"
    return states


def _is_slurm(job) -> bool:
    return type(job).__name__ == "SlurmJob"


def _log_path(job) -> str | None:
    try:
        return str(job.paths.stderr)
    except Exception:  # a job class without paths
        return None


def _id_range(ids: list[str]) -> str:
    return ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}"


# ----------------------------------------------------------------------------------------------------- dry run

def dry_run_scripts(specs: list[RunSpec], todo: list[Unit], options: SlurmOptions, logs: Path, per_job: int,
                    console) -> dict:
    """Print the sbatch script of the array that would be submitted, and which folds each task trains."""
    from submitit.slurm.slurm import _make_sbatch_string

    chunks = [todo[i:i + per_job] for i in range(0, len(todo), per_job)]
    if not chunks:
        console.print("nothing to submit: every fold is done")
        return {"script": None, "chunks": []}
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(logs))])
    script = _make_sbatch_string(command=command, folder=logs, map_count=len(chunks), **slurm_parameters(options))
    console.print(f"# dry run: nothing submitted or written. The job array ({plural(len(chunks), 'task')}) "
                  f"submitit would submit:")
    console.print(script, markup=False, highlight=False, soft_wrap=True)
    listing = []
    for i, chunk in enumerate(chunks):
        parts = [f"{specs[run].out}: {', '.join(u.subject for u in units)}" for run, units in _by_run(chunk).items()]
        listing.append(parts)
        console.print(f"# array task {i}: " + "; ".join(parts), markup=False, highlight=False, soft_wrap=True)
    return {"script": script, "chunks": listing}


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise MertoolError(f"--executor slurm needs submitit: {INSTALL_HINT}") from None
    return submitit
