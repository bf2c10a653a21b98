"""LOSO folds in parallel: worker processes, K per device, each training a queue of held-out subjects.

    train_loso_parallel(recipe, "casme2.h5", "runs/casme2", devices="cuda:0,cuda:1", folds_per_device=4)

A small model leaves a large GPU mostly idle; several folds at once fill it. Each worker is a spawned process
(CUDA cannot be forked) that receives the dataset once through shared memory, takes the next subject from a queue
and calls `mertool.train.run_fold`, the same function the sequential `train_loso` calls. A fold's seed depends only
on the run seed and its subject and every fold writes its own folder, so the run folder holds the same files as a
sequential run: on CPU the predictions are identical when each process uses the same number of threads (oneDNN's
reductions depend on the thread count, at the 1e-5 level). Resuming and `--subjects` shards work as in `train_loso`.
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


@dataclass(frozen=True)
class Slot:
    """One worker process: its number, device, and CPU threads."""

    index: int
    device: str
    threads: int


def parse_devices(devices: str | list[str] | None) -> list[torch.device]:
    """'cuda:0,cuda:1' / 'cpu' / 'auto' / a list -> devices (each checked like --device; repeats are allowed)."""
    from mertool.train import resolve_device

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


def _worker(slot: Slot, data, recipe: dict, out: str, fold_dirs: dict, select: str, compile: bool,
            tasks, events) -> None:
    """Worker process: train folds from the task queue until a None, reporting epochs and results as events."""
    from mertool.runs import FINAL, final_path, fold_path
    from mertool.train import FoldDiverged, run_fold, setup_device

    torch.set_num_threads(slot.threads)
    device = torch.device(slot.device)
    setup_device(device)  # this worker's GPU is its current device before the data is copied there
    subject = None
    try:
        data = data.to(device)
        while (subject := tasks.get()) is not None:
            final = subject == FINAL
            fdir = final_path(out) if final else fold_path(out, fold_dirs[subject])
            events.put(("start", slot.index, subject, int(recipe["train"]["epochs"])))

            def on_epoch(epoch, epochs, rec, _s=subject):
                events.put(("epoch", slot.index, _s, epoch, epochs, rec))

            try:
                r = run_fold(data, recipe, None if final else subject, fdir, device=device, select=select,
                             compile=compile, on_epoch=on_epoch)
            except FoldDiverged as exc:  # this fold only: the worker goes on with the next
                events.put(("diverged", slot.index, subject, str(exc)))
                continue
            events.put(("done", slot.index, subject, {"accuracy": r.accuracy, "n_test": r.n_test,
                                                      "seconds": r.seconds, "loss": r.log[-1]["loss"]}))
            del r  # the fold's model: released before the next fold builds its own
    except BaseException as exc:  # report everything: the parent decides, and the fold's files stay consistent
        user = isinstance(exc, MertoolError)
        events.put(("error", slot.index, subject, str(exc) if user else traceback.format_exc(), user))
    finally:
        events.put(("exit", slot.index, None))


class _Display:
    """Rich progress: a bar over folds and one line per worker with its fold, epoch, loss and accuracy."""

    def __init__(self, console, total: int, slots: list[Slot], enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                                 disable=not enabled)
        self.folds = self.progress.add_task("folds", total=total, info="")
        self.lines = {s.index: self.progress.add_task(f"  worker {s.index} ({s.device})", total=None, info="idle")
                      for s in slots}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def event(self, kind: str, slot: int, subject, *rest) -> None:
        from mertool.runs import FINAL

        name = "final (all subjects)" if subject == FINAL else f"fold {subject}"
        task = self.lines.get(slot)
        if kind == "start":
            self.progress.reset(task, total=rest[0], completed=0, info=name)
        elif kind == "epoch":
            epoch, epochs, rec = rest
            self.progress.update(task, completed=epoch,
                                 info=f"{name}: loss {rec['loss']:.3f}  train acc {rec['train_acc']:.3f}")
        elif kind == "done":
            r = rest[0]
            line = ("final model saved" if subject == FINAL else
                    f"fold {subject}: accuracy {r['accuracy']:.3f} on {r['n_test']} samples, final train loss "
                    f"{r['loss']:.3f}, {r['seconds']:.1f} s (worker {slot})")
            self.progress.update(self.folds, advance=1, info=line)
            self.progress.update(task, info="idle")
            self.progress.console.print(line)
        elif kind == "diverged":
            self.progress.update(self.folds, advance=1)
            self.progress.update(task, info="idle")
            self.progress.console.print(f"error: {rest[0]}", soft_wrap=True)

    def skipped(self, line: str) -> None:
        self.progress.update(self.folds, advance=1)
        self.progress.console.print(line)


def run_parallel(data, recipe: dict, out: Path, tasks: list[str], fold_dirs: dict, slots: list[Slot], *,
                 select: str = "last", compile: bool = False, display: _Display | None = None) -> dict[str, dict]:
    """Train `tasks` (subjects, or FINAL) on worker processes; returns subject -> result summary
    ({"diverged": message} for a fold whose loss became NaN: it has no predictions, the other folds go on).

    A worker's error stops the others (their unfinished folds are lost, finished folds stay: resume re-runs the
    rest) and is raised here: a MertoolError as itself, anything else as a RuntimeError with the worker's traceback.
    """
    import torch.multiprocessing as mp

    from mertool.runs import FINAL

    ctx = mp.get_context("spawn")
    task_q, events = ctx.Queue(), ctx.Queue()
    slots = slots[:max(1, len(tasks))]  # no idle workers
    for t in tasks:
        task_q.put(t)
    for _ in slots:
        task_q.put(None)
    data = data.to("cpu")  # sent once through shared memory; each worker moves it to its own device
    procs = {s.index: ctx.Process(target=_worker, name=f"mertool-fold-worker-{s.index}", daemon=True,
                                  args=(s, data, recipe, str(out), fold_dirs, select, compile, task_q, events))
             for s in slots}
    for p in procs.values():
        p.start()
    results: dict[str, dict] = {}
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
            kind, slot, subject = ev[:3]
            if kind == "exit":
                running.discard(slot)
            elif kind == "error":
                what = "" if subject is None else (", final model" if subject == FINAL else f", fold {subject}")
                failure = (f"worker {slot} ({slots[slot].device}){what}: {ev[3]}", ev[4])
            else:
                if kind == "done":
                    results[subject] = ev[3]
                elif kind == "diverged":
                    results[subject] = {"diverged": ev[3]}
                if display is not None:
                    display.event(kind, slot, subject, *ev[3:])
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


def train_loso_parallel(recipe: dict, cache, out: str | Path, *, subjects=None, devices="auto",
                        folds_per_device: int = 1, threads: int | None = None, select: str = "last",
                        final: bool = False, compile: bool = False, console=None, progress: bool = True) -> dict:
    """`train_loso` with folds spread over worker processes: `folds_per_device` at a time on each of `devices`.

    One worker in all runs `train_loso` itself in this process. Otherwise the run folder is prepared (and checked)
    exactly as `train_loso` does, finished folds are skipped, the rest go to the workers, and the same summary is
    printed and returned. `threads` is each worker's CPU thread count (default: the cores shared evenly).
    """
    from rich.console import Console

    from mertool.runs import FINAL, final_done, fold_done, open_run
    from mertool.train import print_run_summary, raise_diverged, train_loso

    console = console or Console(markup=False)
    if select not in ("last", "oracle"):
        raise MertoolError(f"--select {select!r}: expected last or oracle")
    devs = parse_devices(devices)
    slots = plan_slots(devs, folds_per_device, threads)
    if len(slots) == 1:
        if threads is not None:
            torch.set_num_threads(threads)
        return train_loso(recipe, cache, out, subjects=subjects, device=devs[0], select=select, final=final,
                          compile=compile, console=console, progress=progress)
    warning = time_slicing_warning(devs, folds_per_device)
    if warning:
        console.print(warning, soft_wrap=True)
    out = Path(out)
    data, plan, todo = open_run(recipe, cache, out, subjects, devs[0], console)
    tasks = [s for s in todo if not fold_done(out, plan.fold_dirs[s])]
    if final and not final_done(out):
        tasks.append(FINAL)
    n_workers = min(len(slots), len(tasks))
    console.print(f"{len(data)} samples, {len(plan.folds)} folds ({len(todo)} here, {len(tasks)} to train), "
                  f"{n_workers} workers on {', '.join(sorted({s.device for s in slots}))} "
                  f"({slots[0].threads} CPU thread(s) each), run folder {out}")
    t0 = time.perf_counter()
    with _Display(console, len(todo) + int(final), slots[:max(1, n_workers)], progress) as display:
        for s in todo:
            if s not in tasks:
                display.skipped(f"fold {s}: done earlier, skipped")
        if final and FINAL not in tasks:
            display.skipped("final model: done earlier, skipped")
        results = run_parallel(data, recipe, out, tasks, plan.fold_dirs, slots, select=select, compile=compile,
                               display=display) if tasks else {}
    if tasks:
        console.print(f"{len(tasks)} fold(s) trained in {time.perf_counter() - t0:.1f} s on {n_workers} workers")
    report = print_run_summary(out, console)
    raise_diverged(["final model" if s == FINAL else s for s, r in results.items() if "diverged" in r])
    return report
