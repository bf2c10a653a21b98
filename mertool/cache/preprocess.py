"""Dataset folder -> HDF5 cache: sheet -> sample records -> aligned onset/apex pairs -> CacheWriter.

    summary = preprocess("/data/CASME2", out="casme2.h5", workers=2)

Worker processes read the frames and align them (each builds its own FaceAligner once); the main process alone writes
the cache, in sheet order. A sample that cannot be used (missing frame file, unreadable image, no face) is skipped and
recorded by reason; several faces in a frame is a note, not a skip (the largest face is used). The summary is returned,
stored in the cache's attributes and written beside it as `<out>.json`.

With `flow` (tvl1 | dis | farneback) a second step computes the optical flow and strain of every cached pair, onset
to apex, on the registered crops (mertool.face.flow.fill_flow, with its own progress bar), before the cache gets its
final name.
"""
from __future__ import annotations

import json
import signal
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from mertool.face.align import DEFAULT_REGISTER, MISSING, REGISTER_MODES, SIZE_MISMATCH, AlignSkip, FaceAligner, \
    describe, read_rgb, registration_warnings, resize_square
from mertool.cache.store import CachedSample, CacheWriter, open_cache, read_registration, registration_summary
from mertool.data.aus import au_bits
from mertool.errors import MertoolError
from mertool.files import write_json

DUPLICATE = "duplicate sample id"
FAILED = "alignment failed"
MALFORMED = "malformed sheet row"


@dataclass(frozen=True)
class _Task:
    index: int
    name: str          # subject/sample, for messages
    onset: str
    apex: str


# ------------------------------------------------------------------------------------------------ worker side

_WORKER: dict = {}


def _init_worker(settings: dict) -> None:
    """Pool initializer: ignore Ctrl-C (the main process handles it) and build this process's aligner once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _setup(settings)


def _setup(settings: dict) -> None:
    _WORKER["size"] = settings["size"]
    _WORKER["aligner"] = FaceAligner(**settings["aligner"]) if settings["aligner"] else None


def _work(task: _Task) -> tuple:
    """Read and align one sample: ('ok', index, onset, apex, landmarks, n_faces, seconds, registration dict or None,
    detector upsampling or -1) or ('skip', index, reason, message, seconds)."""
    t0 = time.perf_counter()
    try:
        onset, apex = read_rgb(task.onset), read_rgb(task.apex)
        aligner: FaceAligner | None = _WORKER["aligner"]
        if aligner is not None:
            pair = aligner.align_pair(onset, apex, name=task.onset)
            reg = pair.registration.to_dict() if pair.registration is not None else None
            return "ok", task.index, pair.onset, pair.apex, pair.landmarks, pair.n_faces, time.perf_counter() - t0, \
                reg, pair.upsample
        if onset.shape != apex.shape:  # resizing frames of different sizes would add motion between them
            raise AlignSkip(SIZE_MISMATCH, f"{task.name}: onset {onset.shape[:2]} and apex {apex.shape[:2]} differ")
        size = _WORKER["size"]
        return "ok", task.index, resize_square(onset, size), resize_square(apex, size), None, 0, \
            time.perf_counter() - t0, None, -1
    except AlignSkip as exc:
        return "skip", task.index, exc.reason, str(exc), time.perf_counter() - t0
    except Exception as exc:  # e.g. dlib rejecting a degenerate image: the run goes on, the sample is recorded
        return "skip", task.index, FAILED, f"{task.onset}: {type(exc).__name__}: {exc}", time.perf_counter() - t0


def _results(tasks: list[_Task], settings: dict, workers: int):
    """Results in task order, from `workers` processes (or this process when workers <= 1)."""
    if workers <= 1 or len(tasks) <= 1:
        _setup(settings)
        yield from map(_work, tasks)
        return
    ex = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), initializer=_init_worker, initargs=(settings,))
    try:
        yield from ex.map(_work, tasks, chunksize=1)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------------- main side

def _load(folder, kind, sheet, layout, align: bool, options: dict | None = None):
    """Sample records; with --no-align the already-cropped frames are preferred when the folder has both."""
    from mertool.datasets import load_records

    if layout is None and not align:
        try:
            records, report = load_records(folder, kind=kind, sheet=sheet, layout="cropped", options=options)
        except MertoolError:
            if kind != "smic" and not options:  # only SMIC (no sheet) fails outright without cropped frames
                raise
            report = {}
        if report.get("frames_root") or report.get("dataset") == "manifest":
            return records, report
        records, report = load_records(folder, kind=kind, sheet=sheet, options=options)
        report.setdefault("warnings", []).append(
            "--no-align: no cropped frame folder found; the frames are resized as they are (are they face crops?)")
        return records, report
    return load_records(folder, kind=kind, sheet=sheet, layout=layout, options=options)


def smic_options(part: str | None, apex: str | None, progress: bool) -> dict:
    """Options for the SMIC adapter from --smic-part / --smic-apex; a progress bar while clips are spotted."""
    opts: dict = {}
    if part is not None:
        opts["part"] = part
    if apex is not None:
        opts["apex"] = apex
    if progress:
        bar = _progress(True)
        state: dict = {}

        def on_clip(i: int, n: int) -> None:
            if "job" not in state:
                bar.start()
                state["job"] = bar.add_task("SMIC apex", total=n, note="")
            bar.update(state["job"], completed=i)
            if i == n:
                bar.stop()

        opts["on_clip"] = on_clip
    return opts


def _relative(path, base: Path) -> str:
    """Source path relative to the dataset folder when inside it (the cache stays meaningful if the folder moves)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(base))
    except ValueError:
        return str(p)


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled)


@dataclass
class _Tally:
    """What a run did, sample by sample."""

    skipped: dict[str, list[dict]] = field(default_factory=dict)   # reason -> [{sample, detail}]
    notes: list[str] = field(default_factory=list)
    registration: list[str] = field(default_factory=list)   # pairs whose registration failed or left a large residual
    registered: list[dict] = field(default_factory=list)     # each registered pair: sample, head motion, residual
    already: int = 0
    cached: int = 0
    done: int = 0            # samples that went through read + align (cached or skipped there)
    busy: float = 0.0        # seconds spent on them inside the workers

    def skip(self, reason: str, name: str, message: str) -> None:
        self.skipped.setdefault(reason, []).append({"sample": name, "detail": message})


def _plan(records, writer: CacheWriter, tally: _Tally) -> list[_Task]:
    """Samples to read and align; duplicates, samples already cached (--resume) and missing frames are settled here."""
    tasks, seen = [], set()
    for i, rec in enumerate(records):
        ident = (rec.subject, rec.sample_id)
        if ident in seen:
            tally.skip(DUPLICATE, rec.key, f"{rec.key}: appears more than once in the sheet (row {rec.row}); "
                                           f"the first is kept")
            continue
        seen.add(ident)
        if writer.has(*ident):
            tally.already += 1
        elif rec.onset_path is None or rec.apex_path is None:
            detail = "; ".join(w for w in rec.warnings if "not found" in w) or "frame file not found"
            tally.skip(MISSING, rec.key, f"{rec.key}: {detail}")
        else:
            tasks.append(_Task(i, rec.key, str(rec.onset_path), str(rec.apex_path)))
    return tasks


def _sample(rec, onset, apex, landmarks, base: Path, registration: dict | None = None,
            upsample: int = -1) -> CachedSample:
    """The cache row of one record: aligned frames, how the apex was registered, plus the sheet's facts."""
    def frame(n):
        return -1 if n is None else n

    return CachedSample(onset=onset, apex=apex, aus=au_bits(rec.aus), landmarks=landmarks, subject=rec.subject,
                        sample_id=rec.sample_id, emotion=rec.emotion, aus_raw=rec.aus_raw,
                        source_onset=_relative(rec.onset_path, base), source_apex=_relative(rec.apex_path, base),
                        onset_frame=frame(rec.onset), apex_frame=frame(rec.apex), offset_frame=frame(rec.offset),
                        apex_estimated=rec.apex_estimated, dataset=rec.dataset, aus_known=rec.aus_known,
                        registration=registration, upsample=upsample)


def _settings(align: bool, size: int, padding: float, upsample: int, detect_max_side,
              register: str) -> tuple[dict, dict]:
    """(alignment attribute of the cache, worker settings)."""
    if not align:
        return ({"method": "resize", "size": size, "note": "frames cached as found (already cropped faces)"},
                {"size": size, "aligner": None})
    return (describe(size, padding, upsample, detect_max_side, register),
            {"size": size, "aligner": {"size": size, "padding": padding, "upsample": upsample,
                                       "detect_max_side": detect_max_side, "register": register}})


def preprocess(folder, kind: str | None = None, sheet=None, out=None, workers: int = 2, align: bool = True,
               resume: bool = False, size: int = 224, progress: bool = True, layout: str | None = None,
               padding: float = 0.25, upsample: int = 1, detect_max_side: int | None = 640,
               options: dict | None = None, register: str = DEFAULT_REGISTER, flow: str = "none",
               flow_options: dict | None = None) -> dict:
    """Turn a dataset folder into one HDF5 cache and return the run's summary (also written to `<out>.json`).

    `layout` ('raw' | 'cropped') picks the frame folders when a dataset has both; by default raw frames are aligned,
    and with `align=False` the cropped ones are resized to `size`. `options` go to the dataset adapter (SMIC's part
    and apex method, `smic_options`). `register` (consensus | ecc | landmarks | none) is how the apex is brought onto
    the onset (align.FaceAligner.register). `flow` (none | tvl1 | dis | farneback) adds optical flow and strain to the
    cache, `flow_options` that method's parameters (mertool.face.flow.FLOW_DEFAULTS).
    """
    if size < 16:
        raise MertoolError(f"--size {size}: expected at least 16 px")
    if workers < 0:
        raise MertoolError(f"--workers {workers}: expected 0 or more")
    flow_wanted = None
    if flow != "none":
        from mertool.face.flow import flow_params

        flow_wanted = {"method": flow, "params": flow_params(flow, **(flow_options or {}))}
    t_start = time.perf_counter()
    if options is None and kind in (None, "smic") and sheet is None and Path(folder).expanduser().is_dir():
        from mertool.datasets import detect_dataset

        if (kind or detect_dataset(folder)) == "smic":
            options = smic_options(None, None, progress)
    records, report = _load(folder, kind, sheet, layout, align, options)
    kind = report["dataset"]
    base = Path(folder).expanduser().resolve()
    base = base.parent if base.is_file() else base
    out = Path(out) if out else Path(f"{kind}.h5")
    out.parent.mkdir(parents=True, exist_ok=True)
    if register not in REGISTER_MODES:
        raise MertoolError(f"--register {register!r}: expected one of {', '.join(REGISTER_MODES)}")
    alignment, settings = _settings(align, size, padding, upsample, detect_max_side, register)
    aligner = None
    if align:  # load the models here: a broken install fails once, clearly, and forked workers inherit them
        aligner = FaceAligner(**settings["aligner"])
    if resume:
        _check_resumable(out, kind, alignment, flow_wanted)

    writer = CacheWriter(out, dataset=kind, image_size=size, alignment=alignment, resume=resume)
    tally = _Tally()
    try:
        for bad in report.get("malformed_rows", []):
            tally.skip(MALFORMED, f"row {bad['row']}", bad["detail"])
        tasks = _plan(records, writer, tally)
        if aligner is not None and len(tasks) >= ESTIMATE_FROM:
            _announce(tasks, aligner, workers)
        t_loop = time.perf_counter()
        with _progress(progress) as bar, closing(_results(tasks, settings, workers)) as results:
            job = bar.add_task(f"preprocess {kind}", total=len(tasks), note="")
            for res in results:
                rec = records[res[1]]
                if res[0] == "ok":
                    _, _, onset, apex, landmarks, n_faces, seconds, reg, up = res
                    writer.append(_sample(rec, onset, apex, landmarks, base, reg, up))
                    tally.cached += 1
                    if reg is not None:
                        tally.registration.extend(registration_warnings(rec.key, reg))
                        tally.registered.append({"sample": rec.key, **reg, "upsample": up})
                    if n_faces > 1:
                        tally.notes.append(f"{rec.key}: {n_faces} faces in the onset frame; the largest was used")
                else:
                    _, _, reason, message, seconds = res
                    tally.skip(reason, rec.key, message)
                tally.busy += seconds
                tally.done += 1
                n_skip = sum(map(len, tally.skipped.values()))
                bar.update(job, advance=1, note=f"skipped {n_skip}" if n_skip else "")
        loop_s = time.perf_counter() - t_loop
        if len(writer) == 0:
            raise MertoolError(f"{folder}: no sample could be cached ({_skip_line(tally.skipped)})")
        flow_report = _flow_step(writer, flow_wanted, workers, progress) if flow_wanted else None
        summary = _summary(writer, tally, report, records, out, alignment, size, workers, loop_s,
                           time.perf_counter() - t_start, base)
        summary["flow"] = flow_report
        per_sample = ("skipped_samples", "registration_samples")   # in <out>.json; the cache has them per sample
        writer.set_attrs(provenance=json.dumps(summary["provenance"]))
        writer.set_attrs(preprocess_summary=json.dumps({k: v for k, v in summary.items() if k not in per_sample},
                                                       default=str))
    except BaseException as exc:
        writer.abort()  # the .tmp stays for --resume; nothing is renamed over the final name
        if not len(writer.done):
            writer.tmp.unlink(missing_ok=True)
        if isinstance(exc, BrokenProcessPool):
            raise MertoolError(f"{out}: a worker process died (out of memory?); {len(writer.done)} samples are kept "
                               f"in {writer.tmp.name}: run again with --resume, perhaps with fewer --workers") from None
        raise
    writer.close()
    write_json(summary_path(out), summary)
    return summary


ESTIMATE_FROM = 20   # samples; a smaller run is over before an estimate would help


def _announce(tasks: list[_Task], aligner: FaceAligner, workers: int) -> None:
    """Print (stderr) how long the alignment will take, timed on the first sample here before the workers start."""
    from rich.console import Console

    from mertool.training.estimate import duration
    from mertool.training.parallel import usable_cpus

    t0 = time.perf_counter()
    try:
        aligner.align_pair(read_rgb(tasks[0].onset), read_rgb(tasks[0].apex), name=tasks[0].onset)
    except Exception:  # the sample is tried again (and recorded) in the loop; an estimate never stops a run
        return
    per = time.perf_counter() - t0
    parallel = max(1, min(workers, usable_cpus(), len(tasks)))
    Console(stderr=True, markup=False, highlight=False).print(
        f"estimate: {len(tasks)} samples at {per:.2f} s each (the first, timed now) on {parallel} process(es): "
        f"about {duration(per * len(tasks) / parallel)}")


def _flow_step(writer: CacheWriter, wanted: dict, workers: int, progress: bool) -> dict:
    """Flow and strain for every cached pair without them (all of them, or a resumed run's new ones)."""
    from mertool.face.flow import fill_flow

    with _progress(progress) as bar:
        job = bar.add_task(f"flow {wanted['method']}", total=None, note="")

        def on_pair(done: int, total: int) -> None:
            bar.update(job, completed=done, total=total)

        return fill_flow(writer.f, wanted["method"], wanted["params"], max(workers, 1), on_pair)


def _summary(writer: CacheWriter, tally: _Tally, report: dict, records, out: Path, alignment: dict, size: int,
             workers: int, loop_s: float, total_s: float, base: Path | None = None) -> dict:
    """The run's report: counts, skips by reason, emotions in the cache, the sheet's warnings, speed, and where the
    data came from (synthetic when `mertool synth` wrote the folder)."""
    from mertool.cache.provenance import folder_provenance

    meta = writer.f["meta"]
    emotions = Counter(meta["emotion"].asstr()[:])
    return {
        "cache": str(out), "dataset": report["dataset"], "provenance": folder_provenance(report.get("sheet") or base),
        "sheet": report.get("sheet"),
        "frames_root": report.get("frames_root"), "alignment": alignment, "image_size": size, "workers": workers,
        "samples_read": len(records), "cached": tally.cached, "already_cached": tally.already,
        "in_cache": len(writer), "subjects_in_cache": len(set(meta["subject"].asstr()[:])),
        "skipped": {r: len(v) for r, v in tally.skipped.items()}, "skipped_samples": tally.skipped,
        "emotions": dict(emotions.most_common()), "emotions_in_sheet": report.get("emotions", {}),
        "aus_outside": report.get("aus_outside", {}), "apex_estimated": report.get("apex_estimated", []),
        "several_faces": tally.notes, "warnings": list(report.get("warnings", [])),
        "registration": registration_summary(read_registration(writer.f)), "registration_warnings": tally.registration,
        "registration_samples": tally.registered,
        **{k: report[k] for k in ("smic_part", "non_micro_clips", "apex_chosen") if k in report},
        **({"published": _published(report["published"], records, meta)} if report.get("published") else {}),
        "seconds": round(total_s, 3),
        "frames_per_second": round(2 * tally.done / loop_s, 2) if tally.done else None,
        "seconds_per_sample_in_worker": round(tally.busy / tally.done, 4) if tally.done else None,
    }


def _published(published: dict, records, meta) -> dict:
    """The dataset's published figures beside what the folder gave (read) and what the cache holds."""
    def figures(subjects, emotions) -> dict:
        return {"clips": len(emotions), "subjects": len(set(subjects)),
                "emotions": {e: int(Counter(emotions)[e]) for e in published["emotions"]}}

    read = figures([r.subject for r in records], [r.emotion for r in records])
    cached = figures(list(meta["subject"].asstr()[:]), list(meta["emotion"].asstr()[:]))
    want = {k: published[k] for k in ("clips", "subjects", "emotions")}
    return {**published, "read": read, "cached": cached, "read_matches": read == want, "cached_matches": cached == want}


def published_line(p: dict) -> str:
    """'SMIC-HS published: 164 clips, 16 subjects, positive 51 / ...; read ...; cached ...: meets / differs'."""
    def fmt(f: dict) -> str:
        return (f"{f['clips']} clips, {f['subjects']} subjects, "
                + " / ".join(f"{e} {n}" for e, n in f["emotions"].items()))

    verdict = "the cache meets the published figures" if p["cached_matches"] else (
        "the folder meets the published figures, the cache does not (see skipped samples)" if p["read_matches"]
        else "the folder differs from the published figures")
    return f"{p['name']} published: {fmt(p)}; read: {fmt(p['read'])}; cached: {fmt(p['cached'])}: {verdict}"


def _check_resumable(out: Path, kind: str, alignment: dict, flow: dict | None = None) -> None:
    """--resume must not mix datasets, alignment or flow settings in one cache (a cache without flow may get it)."""
    for path in (out.with_name(out.name + ".tmp"), out):
        if not path.exists():
            continue
        try:
            with open_cache(path) as f:
                found = (str(f.attrs["dataset"]), json.loads(f.attrs["alignment"]))
                found_flow = json.loads(f.attrs["flow"]) if "flow" in f.attrs else None
        except (MertoolError, KeyError, ValueError):
            continue  # CacheWriter starts a damaged .tmp over, and reports a wrong schema of the final file
        if found != (kind, alignment):
            raise MertoolError(f"{path}: made with dataset {found[0]!r} and alignment {found[1]}; this run would use "
                               f"{kind!r} and {alignment}: resume with the same options or choose a new --out")
        if found_flow is not None:
            had = {"method": found_flow.get("method"), "params": found_flow.get("params")}
            if had != flow:
                asked = f"--flow {flow['method']} with {flow['params']}" if flow else "--flow none"
                raise MertoolError(f"{path}: holds {had['method']} flow with {had['params']}; this run asks for "
                                   f"{asked}: resume with --flow {had['method']} or choose a new --out")
        return


def summary_path(out) -> Path:
    """`cache.h5` -> `cache.h5.json`."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def _skip_line(skipped: dict[str, list[dict]]) -> str:
    if not skipped:
        return "the sheet lists no samples"
    parts = [f"{len(v)} {r}" for r, v in skipped.items()]
    first = next(iter(skipped.values()))[0]["detail"]
    return f"skipped: {', '.join(parts)}; e.g. {first}"


def print_summary(summary: dict, console=None) -> None:
    """The end-of-run tables: counts, skips by reason, emotions, AU codes outside the vocabulary, warnings."""
    from rich.console import Console
    from rich.table import Table

    from mertool.facts_table import facts_table, run_time

    console = console or Console()
    rows = [("samples read", summary["samples_read"]), ("cached now", summary["cached"]),
            ("already cached (--resume)", summary["already_cached"]),
            ("skipped", sum(summary["skipped"].values())), ("samples in cache", summary["in_cache"]),
            ("subjects in cache", summary["subjects_in_cache"]),
            ("alignment", summary["alignment"]["method"]), ("image size", summary["image_size"]),
            ("time", run_time(summary["seconds"], summary.get("frames_per_second"), summary["workers"])),
            ("cache", summary["cache"]), ("report", str(summary_path(summary["cache"])))]
    console.print(facts_table(f"preprocess {summary['dataset']}", rows))
    if summary["skipped_samples"]:
        s = Table(title="skipped samples")
        for c in ("reason", "count", "e.g."):
            s.add_column(c)
        for reason, items in summary["skipped_samples"].items():
            s.add_row(reason, str(len(items)), "\n".join(i["detail"] for i in items[:2]))
        console.print(s)
    e = Table(title="emotions in cache (raw sheet values)")
    e.add_column("emotion")
    e.add_column("samples", justify="right")
    for emo, n in summary["emotions"].items():
        e.add_row(emo or "(blank)", str(n))
    console.print(e)
    if summary["aus_outside"]:
        console.print("AU codes outside the 21-AU vocabulary (kept in the raw string): " +
                      ", ".join(f"{c} x{n}" for c, n in summary["aus_outside"].items()))
    fl = summary.get("flow")
    if fl:
        per = f", {fl['seconds_per_pair']:.2f} s a pair in a worker" if fl["seconds_per_pair"] else ""
        console.print(f"flow: {fl['method']} ({fl['library']}) on {fl['pairs']} pairs in {fl['seconds']:.1f} s{per}; "
                      f"stored as /flow and /strain")
    reg = summary.get("registration")
    if reg and reg["registered"]:
        r, b = reg["residual_px"], reg["residual_before_px"]
        what = "still-face residual (held-out patches)" if reg.get("residual_measure", "").startswith("held") \
            else "upper-face residual"
        console.print(f"registration ({reg['registered']} pairs): {what} median {b['median']:.2f} -> "
                      f"{r['median']:.2f} px, p90 {r['p90']:.2f}, max {r['max']:.2f}; head shift median "
                      f"{reg['shift_px']['median']:.2f} px, max {reg['shift_px']['max']:.2f}; flagged "
                      f"{reg.get('flagged', 0)} (refused {reg.get('refused', 0)}); detector upsample "
                      + ", ".join(f"{k}: {v}" for k, v in reg["upsample"].items()))
    if summary.get("apex_chosen"):
        a = summary["apex_chosen"]
        console.print(f"apex: {a['method']} ({', '.join(f'{m} {n}' for m, n in a['methods_used'].items())}); "
                      f"each clip's onset, apex and offset frames: apex_chosen in {summary_path(summary['cache'])}")
    if summary.get("non_micro_clips"):
        console.print(f"non_micro clips (not samples): {summary['non_micro_clips']}")
    if summary.get("published"):
        console.print(published_line(summary["published"]))
    notes = summary["warnings"] + summary.get("registration_warnings", []) + summary["several_faces"]
    from rich.text import Text

    for w in notes[:10]:  # styled without markup: the line is literal whether or not the console parses markup
        console.print(Text.assemble(("warning:", "yellow"), " ", str(w)))
    if len(notes) > 10:
        console.print(f"... {len(notes) - 10} more in {summary_path(summary['cache'])}")
    line = mostly_skipped(summary)
    if line:  # last, boxed: a cache of a few samples must not pass for the dataset
        from rich.panel import Panel

        console.print(Panel(Text(line), title="WARNING", style="bold yellow"))


def mostly_skipped(summary: dict) -> str | None:
    """The warning for a run that skipped more than half of the samples it read: how many, the commonest cause with
    an example, and where the frames were looked for; None otherwise."""
    skipped = summary.get("skipped_samples") or {}
    n_skip = sum(len(v) for v in skipped.values())
    n_read = summary.get("samples_read") or 0
    if not n_read or 2 * n_skip <= n_read:
        return None
    reason, items = max(skipped.items(), key=lambda kv: len(kv[1]))
    where = summary.get("frames_root") or summary.get("sheet") or "the dataset folder"
    return (f"{n_skip} of {n_read} samples were skipped and only {summary['in_cache']} are in the cache. "
            f"Commonest cause: {reason} ({len(items)} samples), e.g. {items[0]['detail']}. Frames were looked for "
            f"under {where}. A partial copy of the dataset (a few subjects) is fine; otherwise check the folder "
            f"layout (docs/datasets.md) before training on this cache.")
