"""`preprocess` and `cache info|verify|show|merge`: parse arguments and call mertool.cache."""
from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

import typer

from mertool.cli.app import app
from mertool.errors import MertoolError

cache_app = typer.Typer(help="Inspect, check, picture and merge HDF5 caches made by `mertool preprocess`.",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


@app.command("preprocess")
def preprocess_cmd(
    dataset_dir: Path = typer.Argument(..., help="Dataset folder (sheet and frame folders anywhere under it)."),
    dataset: Optional[str] = typer.Option(None, "--dataset",
                                          help="casme2, samm, casme3, mmew, smic or manifest (default: detected "
                                               "from the sheet, or from SMIC's folders)."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Annotation sheet, xlsx or csv (default: found under "
                                                               "DATASET_DIR)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Cache file (default: <dataset>.h5)."),
    workers: int = typer.Option(2, "--workers", help="Processes reading and aligning frames (0: in this process)."),
    no_align: bool = typer.Option(False, "--no-align", help="Frames are already face crops (CASME II Cropped/): "
                                                            "resize them, no detection."),
    layout: Optional[Literal["raw", "cropped"]] = typer.Option(None, "--layout", help="raw or cropped frame folders when both exist "
                                                                "(default: raw, or cropped with --no-align)."),
    resume: bool = typer.Option(False, "--resume", help="Keep samples already in --out (or its .tmp) and add the "
                                                        "rest."),
    size: int = typer.Option(224, "--size", help="Crop size in pixels."),
    padding: float = typer.Option(0.25, "--padding", help="dlib face-chip padding around the landmarks."),
    upsample: int = typer.Option(1, "--upsample", help="Largest dlib detector upsampling: 0 is tried first, then up "
                                                       "to this when no face is found (1 finds faces down to ~40 px)."),
    register: Literal["consensus", "ecc", "landmarks", "none"] = typer.Option(
        "consensus", "--register", help="How the apex is brought onto the onset: consensus (the rigid motion most of "
                                        "the face's patches agree on; expression kept), ecc (the previous default: "
                                        "ECC on brows and eyes, which removes part of a brow motion), landmarks, or "
                                        "none (the onset's crop cut from the apex as it is)."),
    smic_apex: Optional[Literal["spot", "middle"]] = typer.Option(None, "--smic-apex", help="SMIC gives no apex: spot (default: mertool's "
                                                                      "spotter finds it) or middle (the middle frame)."),
    smic_part: Optional[Literal["HS", "VIS", "NIR"]] = typer.Option(None, "--smic-part", help="SMIC part: HS (default), VIS or NIR."),
    flow: Literal["none", "tvl1", "dis", "farneback"] = typer.Option(
        "none", "--flow", help="Also store optical flow (onset -> apex) and optical strain of every pair: tvl1 "
                               "(scikit-image TV-L1, ~0.4 s a pair), dis or farneback (OpenCV, faster, coarser)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Turn a dataset folder (annotation sheet + frames) into one HDF5 cache of aligned onset/apex pairs.

    The face is found on the onset frame (dlib detector + 68 landmarks) and cut out; the apex is registered onto it
    (rigid: head motion removed, expression kept) and its residual recorded per sample; an implausible head motion
    is refused and the pair flagged.

    Skipped samples (missing frame, unreadable image, no face) are listed in the summary and in <out>.json.
    With --flow, the flow and strain of each registered pair are stored as /flow and /strain.

    Example:
      mertool preprocess /data/CASME2 --out casme2.h5 --workers 2
      mertool preprocess /data/CASME2 --out casme2-flow.h5 --flow tvl1
      mertool preprocess /data/CASME2 --no-align --out casme2-cropped.h5
      mertool preprocess /data/SAMM --dataset samm --sheet SAMM_Micro_FACS_Codes_v2.xlsx --resume
      mertool preprocess /data/SMIC --smic-part HS --smic-apex spot --out smic.h5
    """
    from mertool.cache.preprocess import preprocess, print_summary, smic_options

    options = None
    if smic_apex is not None or smic_part is not None:
        if dataset not in (None, "smic"):
            raise MertoolError(f"--smic-apex/--smic-part: options of SMIC, not of --dataset {dataset}")
        options = smic_options(smic_part, smic_apex, not quiet)
        dataset = "smic"
    summary = preprocess(dataset_dir, kind=dataset, sheet=sheet, out=out, workers=workers, align=not no_align,
                         resume=resume, size=size, progress=not quiet, layout=layout, padding=padding,
                         upsample=upsample, options=options, register=register, flow=flow)
    print_summary(summary, _console())


@cache_app.command("info")
def info_cmd(file: Path = typer.Argument(..., help="Cache file (.h5).")) -> None:
    """Show a cache's attributes and its counts per subject, emotion and AU (a spotting cache: its videos,
    frames, gaps, frame rate, expressions and how its features were made).

    Example:
      mertool cache info casme2.h5
      mertool cache info casme_sq.spot.h5
    """
    from rich.table import Table

    from mertool.cache.store import cache_info, flow_line, registration_line
    from mertool.facts_table import facts_table
    from mertool.spotting.cache import is_spot_cache, print_spot_cache_info

    if is_spot_cache(file):
        return print_spot_cache_info(file, _console())
    info = cache_info(file)
    con = _console()
    a = info["attrs"]
    align = a.get("alignment", {})
    unknown = info["aus_unknown"]
    rows = [(k, a.get(k, "")) for k in ("dataset", "schema_version", "image_size", "mertool_version", "created")]
    rows += [("alignment", ", ".join(f"{k}={v}" for k, v in align.items()) if isinstance(align, dict) else align),
             ("samples", info["samples"]), ("subjects", len(info["subjects"])),
             ("with landmarks", info["with_landmarks"]), ("apex estimated", info["apex_estimated"]),
             ("registration", registration_line(info["registration"])), ("flow", flow_line(info["flow"])),
             ("AU codes known", f"{info['aus_known']} of {info['samples']}"
              + (f" ({unknown} unknown: the dataset codes no AUs)" if unknown else "")
              + ("" if info["aus_known_stored"] else " (inferred: cache made before this field existed)")),
             ("file size", f"{info['bytes'] / 2**20:.1f} MiB")]
    if "merged_from" in a:
        rows.append(("merged from", ", ".join(f"{s['path']} ({s['dataset']}, {s['samples']})"
                                              for s in a["merged_from"])))
    con.print(facts_table(f"{file}", rows))
    if len(info["datasets"]) > 1 or info["aus_unknown"]:
        d = Table(title="datasets")
        for col in ("dataset", "samples", "subjects", "AU codes known", "AU codes unknown"):
            d.add_column(col, justify="left" if col == "dataset" else "right")
        for name, row in info["datasets"].items():
            d.add_row(name, *(str(row[k]) for k in ("samples", "subjects", "aus_known", "aus_unknown")))
        con.print(d)
    for title, counts in (("emotions (raw sheet values)", info["emotions"]), ("subjects", info["subjects"]),
                          ("AUs", {f"AU{k}": v for k, v in info["aus"].items()})):
        c = Table(title=title)
        c.add_column(title.split()[0].rstrip("s"))
        c.add_column("samples", justify="right")
        for k, v in counts.items():
            c.add_row(str(k) or "(blank)", str(v))
        con.print(c)


@cache_app.command("verify")
def verify_cmd(file: Path = typer.Argument(..., help="Cache file (.h5).")) -> None:
    """Check a cache: schema, shapes and dtypes, no empty frames, landmarks, checksums; exit 1 on a problem.

    Example:
      mertool cache verify casme2.h5
    """
    from mertool.cache.store import verify_cache

    report = verify_cache(file)
    if report["ok"]:
        typer.echo(f"ok: {file}: {report['samples']} samples, shapes, frames and checksums verified")
        return
    for p in report["problems"][:50]:  # plain lines (no wrapping), one per problem, each naming its sample
        typer.echo(f"problem: {p}", err=True)
    if len(report["problems"]) > 50:
        typer.echo(f"... {len(report['problems']) - 50} more", err=True)
    typer.echo(f"error: {file}: {len(report['problems'])} problem(s) found", err=True)
    raise typer.Exit(1)


@cache_app.command("show")
def show_cmd(
    file: Path = typer.Argument(..., help="Cache file (.h5)."),
    sample: str = typer.Argument(..., help="Sample id (EP02_01f), SUBJECT/SAMPLE (01/EP02_01f) or index (0)."),
    png: Path = typer.Option(..., "--png", help="Picture to write."),
    gain: Optional[float] = typer.Option(None, "--gain", help="Difference amplification (default: automatic)."),
    dpi: int = typer.Option(100, "--dpi", help="Picture resolution (100: 1600 x 460 px)."),
) -> None:
    """Draw one sample's onset, apex, amplified |apex - onset| and their red/cyan overlay (with the registration's
    head motion and residual) side by side into a PNG; with the cache's flow (a colour wheel: hue is the direction,
    saturation the length) and optical strain beside them when it has them.

    Example:
      mertool cache show casme2.h5 01/EP02_01f --png ep02.png
    """
    from mertool.cache.store import registration_text, show_sample

    r = show_sample(file, sample, png, gain, dpi)
    fl = r["flow"]
    flow = f"; {fl['method']} flow median {fl['median_px']:.2f} px, full colour {fl['max_px']:.2f} px" if fl else ""
    typer.echo(f"{r['png']}: {r['subject']}/{r['sample_id']} ({r['emotion']}), difference x{r['gain']:.1f}; "
               + registration_text(r["registration"]).replace("\n", "; ") + flow)


@cache_app.command("add-flow")
def add_flow_cmd(
    file: Path = typer.Argument(..., help="Cache file (.h5) made by `mertool preprocess`."),
    flow: Literal["tvl1", "dis", "farneback"] = typer.Option("tvl1", "--flow", help="Flow method: tvl1 "
                                                             "(scikit-image TV-L1), dis or farneback (OpenCV)."),
    replace: bool = typer.Option(False, "--replace", help="Compute the flow again when the cache already has flow."),
    workers: int = typer.Option(2, "--workers", help="Processes computing flow (0 or 1: in this process)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Add optical flow (onset -> apex, crop pixels) and optical strain to an existing cache, without aligning again.

    The cache is rewritten to a temporary file and renamed over the old one only when every pair is done: an
    interrupted run leaves it as it was. A cache that has flow is refused unless --replace.

    Example:
      mertool cache add-flow casme2.h5 --flow tvl1
      mertool cache add-flow casme2.h5 --flow dis --replace
    """
    from mertool.cache.preprocess import _progress
    from mertool.face.flow import add_flow

    if workers < 0:
        raise MertoolError(f"--workers {workers}: expected 0 or more")
    bar, state = _progress(not quiet), {}

    def on_pair(done: int, total: int) -> None:   # the bar starts with the first pair: a refusal prints no bar
        if "job" not in state:
            bar.start()
            state["job"] = bar.add_task(f"flow {flow}", total=total, note="")
        bar.update(state["job"], completed=done, total=total)

    try:
        r = add_flow(file, flow, replace=replace, workers=workers, on_pair=on_pair)
    finally:
        bar.stop()
    per = f", {r['seconds_per_pair']:.2f} s a pair in a worker" if r["seconds_per_pair"] else ""
    again = f" (replacing {r['replaced']} flow)" if r["replaced"] else ""
    typer.echo(f"{r['cache']}: {r['method']} flow and strain for {r['pairs']} pairs{again} in {r['seconds']:.1f} s"
               f"{per}")


@cache_app.command("merge")
def merge_cmd(
    files: List[Path] = typer.Argument(..., help="Two or more caches of the same image size."),
    out: Path = typer.Option(..., "--out", help="Merged cache to write."),
) -> None:
    """Merge caches of one image size into one (composite sets, e.g. CASME II + SAMM).

    Caches of different datasets get subjects renamed <dataset>_<subject> (casme2_01, samm_006).

    Example:
      mertool cache merge casme2.h5 samm.h5 --out composite.h5
    """
    from mertool.cache.store import merge_caches

    r = merge_caches(files, out)
    note = " (subjects prefixed with their dataset)" if r["subjects_prefixed"] else ""
    flow = f"; flow {r['flow']}" if r["flow"] else ""
    typer.echo(f"{r['out']}: {r['samples']} samples, dataset {r['dataset']}{note}{flow}")
