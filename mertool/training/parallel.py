"""LOSO folds in parallel: worker processes, K per device, each training a queue of held-out subjects.

    train_loso_parallel(recipe, "casme2.h5", "runs/casme2", devices="cuda:0,cuda:1", folds_per_device=4)

A small model leaves a large GPU mostly idle; several folds at once fill it. Each worker is a spawned process
(CUDA cannot be forked) that receives the dataset once through shared memory, takes the next subject from a queue
and calls `mertool.training.train.run_fold`, the same function the sequential `train_loso` calls. A fold's seed
depends only on the run seed and its subject and every fold writes its own folder, so the run folder holds the same
files as a sequential run: on CPU the predictions are identical when each process uses the same number of threads
(oneDNN's reductions depend on the thread count, at the 1e-5 level). Resuming and `--subjects` shards work as in
`train_loso`.
"""
from __future__ import annotations

import os
import queue as queue_mod
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from mertool.errors import MertoolError
from mertool.text import plural


@dataclass(frozen=True)
class Slot:
    """One worker process: its number, device, and CPU threads."""

    index: int
    device: str
    threads: int


def parse_devices(devices: str | list[str] | None) -> list[torch.device]:
    """'cuda:0,cuda:1' / 'cpu' / 'auto' / a list -> devices (each checked like --device; repeats are allowed)."""
    from mertool.training.train import resolve_device

    items = devices.split(",") if isinstance(devices, str) else list(devices or ["auto"])
    items = [str(d).strip() for d in items]
    if not items or any(not d for d in items):
        raise MertoolError(f"--devices {devices!r}: expected a comma-separated list such as cuda:0,cuda:1 or cpu")
    out = []
    for d in items:
        try:
            dev = resolve_device(d)
        except MertoolError as exc:  # name the list the user typed
            raise MertoolError(f"--devices {','.join(items)}: {str(exc).removeprefix('--device ')}") from None
        if dev.type == "cuda":
            dev = torch.device("cuda", dev.index if dev.index is not None else 0)
            if dev.index >= torch.cuda.device_count():
                n = torch.cuda.device_count()
                raise MertoolError(f"--devices {','.join(items)}: {d}: this machine has {n} CUDA device(s) "
                                   f"(cuda:0..cuda:{n - 1})")
        out.append(dev)
    return out


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, which cgroup, taskset and Slurm limits narrow, where
    os.cpu_count() reports every core of the machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity call (macOS, Windows)
        return os.cpu_count() or 1


def mps_running() -> bool:
    """Whether an NVIDIA MPS control daemon is reachable (its pipe directory holds a `control` pipe)."""
    pipe_dir = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"))
    return (pipe_dir / "control").exists()


def time_slicing_warning(devices: list[torch.device], folds_per_device: int) -> str | None:
    """The warning for K > 1 folds per CUDA device without MPS: the processes' kernels take turns, not run at once."""
    if folds_per_device <= 1 or not any(d.type == "cuda" for d in devices) or mps_running():
        return None
    return (f"warning: --folds-per-device {folds_per_device} on CUDA without NVIDIA MPS: separate processes' kernels "
            f"do not run at the same time, the GPU time-slices between them; K > 1 helps only where one fold leaves "
            f"gaps (data path, host syncs). Start MPS (nvidia-cuda-mps-control -d) for concurrent kernels, and "
            f"compare K = 1 with `mertool bench --loso --folds-per-device {folds_per_device}`")


def plan_slots(devices: list[torch.device], folds_per_device: int, threads: int | None = None) -> list[Slot]:
    """K worker slots per device; the usable CPUs split evenly so workers do not oversubscribe them."""
    if isinstance(folds_per_device, bool) or not isinstance(folds_per_device, int) or folds_per_device < 1:
        raise MertoolError(f"--folds-per-device {folds_per_device!r}: expected an integer >= 1")
    n = len(devices) * folds_per_device
    if threads is None:
        threads = max(1, usable_cpus() // n)
    elif threads < 1:
        raise MertoolError(f"threads per worker {threads!r}: expected an integer >= 1")
    # interleaved (cuda:0, cuda:1, cuda:0, ...): when there are fewer folds than slots, every device still works
    return [Slot(i, str(dev), threads) for i, dev in enumerate(list(devices) * folds_per_device)]


@dataclass(frozen=True)
class Job:
    """One run folder's part of a pool: its recipe, folder, fold folder names, and which of the pool's data it reads."""

    recipe: dict
    out: str
    fold_dirs: dict
    data: int
    name: str = ""


def _worker(slot: Slot, datas: list, jobs: list[Job], select: str, compile: bool, tasks, events) -> None:
    """Worker process: train (job, subject) tasks from the queue until a None, reporting epochs and results."""
    from mertool.training.runs import FINAL, FoldBusy, final_path, fold_path
    from mertool.training.train import FoldDiverged, run_fold, setup_device

    torch.set_num_threads(slot.threads)
    device = torch.device(slot.device)
    setup_device(device)  # this worker's GPU is its current device before the data is copied there
    task = None
    on_device: dict[int, object] = {}
    try:
        while (task := tasks.get()) is not None:
            j, subject = task
            job = jobs[j]
            if job.data not in on_device:  # each distinct data set is moved once
                on_device[job.data] = datas[job.data].to(device)
            final = subject == FINAL
            fdir = final_path(job.out) if final else fold_path(job.out, job.fold_dirs[subject])
            events.put(("start", slot.index, (j, subject), int(job.recipe["train"]["epochs"])))

            def on_epoch(epoch, epochs, rec, _t=(j, subject)):
                events.put(("epoch", slot.index, _t, epoch, epochs, rec))

            try:
                r = run_fold(on_device[job.data], job.recipe, None if final else subject, fdir, device=device,
                             select=select, compile=compile, on_epoch=on_epoch, skip_done=True)
            except FoldDiverged as exc:  # this fold only: the worker goes on with the next
                events.put(("diverged", slot.index, (j, subject), str(exc)))
                continue
            except FoldBusy as exc:  # another process or job has it, or finished it meanwhile: the next one
                events.put(("busy", slot.index, (j, subject), str(exc)))
                continue
            events.put(("done", slot.index, (j, subject), {"accuracy": r.accuracy, "n_test": r.n_test,
                                                           "seconds": r.seconds, "loss": r.log[-1]["loss"]}))
            del r  # the fold's model: released before the next fold builds its own
    except BaseException as exc:  # report everything: the parent decides, and the fold's files stay consistent
        user = isinstance(exc, MertoolError)
        events.put(("error", slot.index, task, str(exc) if user else traceback.format_exc(), user))
    finally:
        events.put(("exit", slot.index, None))


def _task_name(jobs: list[Job], task) -> str:
    """'fold 03' or 'final model', prefixed with the run's name when the pool trains several runs."""
    from mertool.training.runs import FINAL

    j, subject = task
    name = "final model" if subject == FINAL else f"fold {subject}"
    return f"{jobs[j].name} {name}" if len(jobs) > 1 and jobs[j].name else name


class _Display:
    """Rich progress: a bar over folds and one line per worker with its fold, epoch, loss and accuracy."""

    def __init__(self, console, total: int, slots: list[Slot], enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("left"),
                                 TimeRemainingColumn(), console=console,
                                 disable=not enabled)
        self.folds = self.progress.add_task("folds", total=total, info="")
        self.lines = {s.index: self.progress.add_task(f"  worker {s.index} ({s.device})", total=None, info="idle")
                      for s in slots}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def event(self, kind: str, slot: int, name: str, final: bool, *rest) -> None:
        task = self.lines.get(slot)
        if kind == "start":
            self.progress.reset(task, total=rest[0], completed=0, info=name)
        elif kind == "epoch":
            epoch, epochs, rec = rest
            self.progress.update(task, completed=epoch,
                                 info=f"{name}: loss {rec['loss']:.3f}  train acc {rec['train_acc']:.3f}")
        elif kind == "done":
            r = rest[0]
            line = (f"{name} saved" if final else
                    f"{name}: accuracy {r['accuracy']:.3f} on {r['n_test']} samples, final train loss "
                    f"{r['loss']:.3f}, {r['seconds']:.1f} s (worker {slot})")
            self.progress.update(self.folds, advance=1, info=line)
            self.progress.update(task, info="idle")
            self.progress.console.print(line)
        elif kind == "diverged":
            self.progress.update(self.folds, advance=1)
            self.progress.update(task, info="idle")
            self.progress.console.print(f"error: {rest[0]}", soft_wrap=True)
        elif kind == "busy":
            self.progress.update(self.folds, advance=1)
            self.progress.update(task, info="idle")
            self.progress.console.print(rest[0], soft_wrap=True)

    def skipped(self, line: str) -> None:
        self.progress.update(self.folds, advance=1)
        self.progress.console.print(line)


def run_parallel(datas: list, jobs: list[Job], tasks: list[tuple[int, str]], slots: list[Slot], *,
                 select: str = "last", compile: bool = False,
                 display: _Display | None = None) -> dict[tuple[int, str], dict]:
    """Train `tasks` ((job, subject or FINAL) pairs) on worker processes; returns task -> result summary
    ({"diverged": message} for a fold whose loss became NaN: it has no predictions, the other folds go on).

    A worker's error stops the others (their unfinished folds are lost, finished folds stay: resume re-runs the
    rest) and is raised here: a MertoolError as itself, anything else as a RuntimeError with the worker's traceback.
    """
    import torch.multiprocessing as mp

    from mertool.training.runs import FINAL

    ctx = mp.get_context("spawn")
    task_q, events = ctx.Queue(), ctx.Queue()
    slots = slots[:max(1, len(tasks))]  # no idle workers
    for t in tasks:
        task_q.put(t)
    for _ in slots:
        task_q.put(None)
    datas = [d.to("cpu") for d in datas]  # sent once through shared memory; each worker moves it to its device
    procs = {s.index: ctx.Process(target=_worker, name=f"mertool-fold-worker-{s.index}", daemon=True,
                                  args=(s, datas, jobs, select, compile, task_q, events))
             for s in slots}
    for p in procs.values():
        p.start()
    results: dict[tuple[int, str], dict] = {}
    running = set(procs)
    failure = None
    finished = False
    try:
        while running and failure is None:
            try:
                ev = events.get(timeout=0.5)
            except queue_mod.Empty:
                ev = None
            for i in list(running):
                code = procs[i].exitcode
                if code not in (None, 0):  # killed without a word (out of memory, a signal); 0 = its events follow
                    failure = (f"worker {i} ({slots[i].device}) died with exit code {code}; finished folds are "
                               f"kept, re-run the same command to resume", True)
            if ev is None:
                continue
            kind, slot, task = ev[:3]
            if kind == "exit":
                running.discard(slot)
            elif kind == "error":
                what = "" if task is None else f", {_task_name(jobs, task)}"
                failure = (f"worker {slot} ({slots[slot].device}){what}: {ev[3]}", ev[4])
            else:
                if kind == "done":
                    results[task] = ev[3]
                elif kind == "diverged":
                    results[task] = {"diverged": ev[3]}
                elif kind == "busy":
                    results[task] = {"busy": ev[3]}
                if display is not None:
                    display.event(kind, slot, _task_name(jobs, task), task[1] == FINAL, *ev[3:])
        finished = failure is None
    finally:
        for p in procs.values():
            if not finished and p.is_alive():
                p.terminate()  # a fold's files are written atomically: stopping mid-fold loses only that fold
            p.join()
    if failure is not None:
        msg, user = failure
        raise MertoolError(msg) if user else RuntimeError(msg)
    return results


def _run_names(outs: list) -> list[str]:
    """Runs' names in progress lines: their folders' names, with as many parent folders as tell them apart."""
    parts = [Path(o).resolve().parts for o in outs]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(o) for o in outs]


def train_loso_parallel(recipe: dict, cache, out: str | Path, *, subjects=None, devices="auto",
                        folds_per_device: int = 1, threads: int | None = None, select: str = "last",
                        final: bool = False, compile: bool = False, console=None, progress: bool = True) -> dict:
    """`train_loso` with folds spread over worker processes: `folds_per_device` at a time on each of `devices`.

    One worker in all runs `train_loso` itself in this process. Otherwise the run folder is prepared (and checked)
    exactly as `train_loso` does, finished folds are skipped, the rest go to the workers, and the same summary is
    printed and returned. `threads` is each worker's CPU thread count (default: the cores shared evenly).
    """
    return train_runs_parallel([(recipe, out, final)], cache, subjects=subjects, devices=devices,
                               folds_per_device=folds_per_device, threads=threads, select=select, compile=compile,
                               console=console, progress=progress)[0]


def train_runs_parallel(runs: list[tuple[dict, str | Path, bool]], cache, *, subjects=None, devices="auto",
                        folds_per_device: int = 1, threads: int | None = None, select: str = "last",
                        compile: bool = False, console=None, progress: bool = True,
                        rate: dict | None = None) -> list[dict]:
    """Several LOSO runs ((recipe, run folder, train the final model) each, e.g. the variants of an ablation) on
    one cache through one pool of workers; returns each run's summary, in order.

    One pool for all: no worker starts per run, and no slot idles at the end of one run while the next waits.
    The final models go first (the longest tasks), then the runs' folds in order. Each run folder ends up with
    the same files as its own `train_loso_parallel` would write. `rate`: the device's matmul rate when the caller
    has measured it (the estimate then reuses it rather than measuring again).
    """
    from rich.console import Console

    from mertool.cache.store import CacheData, load_cache
    from mertool.training.estimate import announce, fold_sizes
    from mertool.training.runs import FINAL, check_select, data_fingerprint, final_done, fold_done, open_run
    from mertool.training.train import print_run_summary, raise_diverged, train_loso

    console = console or Console(markup=False)
    select = check_select(select)
    devs = parse_devices(devices)
    slots = plan_slots(devs, folds_per_device, threads)
    names = _run_names([out for _recipe, out, _final in runs])
    if len({Path(out).resolve() for _recipe, out, _final in runs}) < len(runs):
        raise MertoolError(f"runs {', '.join(names)}: the same run folder twice (each run needs its own)")
    cache_data = cache if isinstance(cache, CacheData) else load_cache(cache)  # read once for every run
    if len(slots) == 1:
        if threads is not None:
            torch.set_num_threads(threads)
        return [train_loso(recipe, cache_data, out, subjects=subjects, device=devs[0], select=select, final=final,
                           compile=compile, console=console, progress=progress) for recipe, out, final in runs]
    warning = time_slicing_warning(devs, folds_per_device)
    if warning:
        console.print(warning, soft_wrap=True)
    datas, keys, jobs, folds, finals, done, total, sizes = [], {}, [], [], [], [], 0, []
    for recipe, out, final in runs:
        out = Path(out)
        data, plan, todo = open_run(recipe, cache_data, out, subjects, devs[0], console)
        # variants that read the same samples share one copy; a flow-reading one needs the copy holding flow
        key = (data_fingerprint(data), data.flow is not None)
        if key not in keys:
            keys[key] = len(datas)
            datas.append(data)
        j = len(jobs)
        jobs.append(Job(recipe, str(out), plan.fold_dirs, keys[key], names[j]))
        mine = [(j, s) for s in todo if not fold_done(out, plan.fold_dirs[s])]
        done += [(j, s) for s in todo if (j, s) not in mine]
        if final:
            (done if final_done(out) else finals).append((j, FINAL))
        folds += mine
        total += len(todo) + int(final)
        sizes.append((recipe, out, fold_sizes(data, [s for _j, s in mine], (j, FINAL) in finals)))
        console.print(f"{len(data)} samples, {len(plan.folds)} folds ({len(todo)} here, {len(mine)} to train"
                      f"{', and the final model' if (j, FINAL) in finals else ''}), run folder {out}")
    tasks = finals + folds  # the longest first
    n_workers = min(len(slots), len(tasks))
    console.print(f"{len(tasks)} trainings on {n_workers} workers on {', '.join(sorted({s.device for s in slots}))} "
                  f"({plural(slots[0].threads, 'CPU thread')} each)")
    announce(console, sizes, devs[0], len({s.device for s in slots}) if devs[0].type == "cuda" else n_workers,
             f"{len(tasks)} trainings on {n_workers} workers", rate)
    t0 = time.perf_counter()
    with _Display(console, total, slots[:max(1, n_workers)], progress) as display:
        for t in done:
            display.skipped(f"{_task_name(jobs, t)}: done earlier, skipped")
        results = run_parallel(datas, jobs, tasks, slots, select=select, compile=compile,
                               display=display) if tasks else {}
    trained = sum(1 for r in results.values() if "busy" not in r and "diverged" not in r)
    if tasks:
        console.print(f"{plural(trained, 'fold')} trained in {time.perf_counter() - t0:.1f} s on "
                      f"{plural(n_workers, 'worker')}")
    reports = [print_run_summary(Path(job.out), console) for job in jobs]
    raise_diverged([_task_name(jobs, t).removeprefix("fold ") for t, r in results.items() if "diverged" in r])
    return reports
