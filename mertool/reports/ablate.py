"""Ablation tables: each variant of a paper table is a recipe (base recipe + model overrides) run through LOSO.

Table file (recipes/ablations/tableN.yaml):
  title: "Table 3: direction of the attention"
  base: {casme2: ../casme2.yaml, samm: ../samm.yaml, megc2019: ../megc2019.yaml}
                                                        # chosen by the cache's `dataset` attribute (or --base);
                                                        # megc2019 = a merged casme2+samm+smic cache
  paper_columns: [accuracy, f1]                         # what the paper reports per dataset
  variants:
    - name: vertical                                    # run folder name: OUT/<table>/<name>
      label: "Vertical (CVA)"
      model: {direction: vertical}                      # ModelConfig overrides on top of the base recipe
      set: {train.epochs: 75}                           # optional extra recipe overrides
      model_file: ../model/full.yaml                    # optional: a recipes/model/ variant file (label + model)
      paper: {casme2: {accuracy: 94.35, f1: 0.9402}, samm: {accuracy: 86.73, f1: 0.8171}}
Paper values are the paper's own (accuracy %, F1), exactly as each table prints them; null means the paper has no such
row (Table 2's CVA + FPF without AU) and prints NOT_IN_PAPER (or the table's `paper_missing`, e.g. n/a), never an
estimate. A table of published composite figures (recipes/ablations/megc2019_baselines.yaml) says
`composite: megc2019` (its paper values are the composite's, printed whatever cache it runs on, with the cache
labelled) and `by_dataset: [casme2, samm, smic]` (a second table: ours and published UF1 / UAR per source dataset).
Each variant is an ordinary run folder, so it resumes, shards (--subjects) and evaluates like any train-loso run.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mertool.cache import provenance
from mertool.errors import MertoolError
from mertool.files import write_text
from mertool.recipe import find_recipe, load_recipe, read_yaml

NOT_IN_PAPER = "no row"  # the paper has no such row (see the table's note)
OURS = ("accuracy", "uf1", "uar", "macro_f1")
OUR_NAMES = {"accuracy": "Acc", "uf1": "UF1", "uar": "UAR", "macro_f1": "macro F1"}


@dataclass
class Variant:
    """One row of a table."""

    name: str
    label: str
    model: dict = field(default_factory=dict)
    set: dict = field(default_factory=dict)
    paper: dict = field(default_factory=dict)


@dataclass
class AblationTable:
    """A parsed table file."""

    path: Path
    title: str
    base: dict
    paper_columns: list[str]
    variants: list[Variant]
    note: str = ""
    paper_missing: str = NOT_IN_PAPER
    composite: str | None = None   # the paper values are this composite's, whatever the cache
    by_dataset: list[str] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return self.path.stem


def load_table(path: str | Path) -> AblationTable:
    """Read and check a table file (errors name the file and the key)."""
    path = find_recipe(path)
    raw = read_yaml(path)
    known = {"title", "note", "base", "paper_columns", "variants", "paper_missing", "composite", "by_dataset"}
    for key in raw:
        if key not in known:
            raise MertoolError(f"{path}: unknown key {key!r}; expected one of {', '.join(sorted(known))}")
    base = raw.get("base") or {}
    if isinstance(base, str):
        base = {"*": base}
    if not isinstance(base, dict):
        raise MertoolError(f"{path}: base = {base!r}: expected {{dataset: recipe path}}")
    base = {str(k): (path.parent / v) for k, v in base.items()}
    variants, seen = [], set()
    for i, v in enumerate(raw.get("variants") or []):
        where = f"{path}: variants[{i}]"
        if not isinstance(v, dict) or not v.get("name"):
            raise MertoolError(f"{where}: expected a mapping with a name")
        extra = set(v) - {"name", "label", "model", "set", "paper", "model_file"}
        if extra:
            raise MertoolError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        name = str(v["name"])
        if name in seen or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise MertoolError(f"{where}: name {name!r} must be unique and use letters, digits, '-', '_', '.'")
        seen.add(name)
        model, label = {}, v.get("label")
        if v.get("model_file"):  # a variant file of recipes/model/: {label: ..., model: {...}}
            mf = read_yaml(path.parent / v["model_file"])
            model.update(mf.get("model", mf))
            label = label or mf.get("label")
        model.update(v.get("model") or {})
        sets = v.get("set") or {}
        if not isinstance(sets, dict):
            raise MertoolError(f"{where}: set = {sets!r}: expected {{dotted.key: value}}")
        variants.append(Variant(name, str(label or name), model, dict(sets), v.get("paper") or {}))
    if not variants:
        raise MertoolError(f"{path}: no variants")
    by_dataset = raw.get("by_dataset") or []
    if not isinstance(by_dataset, list) or not all(isinstance(d, str) for d in by_dataset):
        raise MertoolError(f"{path}: by_dataset = {by_dataset!r}: expected a list of dataset names")
    return AblationTable(path, str(raw.get("title") or path.stem), base,
                         list(raw.get("paper_columns") or ["accuracy", "f1"]), variants, str(raw.get("note") or ""),
                         str(raw.get("paper_missing") or NOT_IN_PAPER),
                         str(raw["composite"]) if raw.get("composite") else None, list(by_dataset))


def base_recipe_path(table: AblationTable, dataset: str | None, base: str | Path | None = None,
                     synthetic: bool = False) -> Path:
    """--base, else the table's base recipe for the cache's dataset (its `demo` base for a `mertool synth` cache,
    when the table has one: the paper's schedule at 224 px is not what a demo set is for)."""
    if base is not None:
        return find_recipe(base)
    if synthetic and "demo" in table.base:
        return table.base["demo"]
    for key in (dataset, "*"):
        if key in table.base:
            return table.base[key]
    from mertool.datasets import composite_name

    parts = set(str(dataset).split("+"))
    for key, path in table.base.items():  # a merged cache: its datasets in any order, or a composite's name
        if key == composite_name(dataset) or set(key.split("+")) == parts:
            return path
    raise MertoolError(f"{table.path}: no base recipe for dataset {dataset!r} (has {', '.join(table.base)}); "
                       f"pass --base RECIPE")


def variant_recipe(table: AblationTable, variant: Variant, base_path: Path, overrides=()) -> dict:
    """Base recipe + the variant's model and set overrides + the user's --set (last, so they apply to all)."""
    sets = [(tuple(str(k).split(".")), v) for k, v in variant.set.items()]
    extra = {"model": dict(variant.model), "name": f"{table.stem}/{variant.name}"}
    return load_recipe(base_path, overrides=sets + list(overrides), extra=extra)


def cache_dataset(cache) -> str | None:
    """The `dataset` attribute of a cache (casme2, samm, ...)."""
    from mertool.cache.store import open_cache

    with open_cache(cache) as f:
        value = f.attrs.get("dataset")
    return None if value is None else str(value)


def cache_is_synthetic(cache) -> bool:
    """The cache was preprocessed from `mertool synth` data (mertool.cache.provenance: its record, or for an older cache
    its preprocess report naming synth's coding sheet)."""
    from mertool.cache.store import open_cache

    with open_cache(cache) as f:
        return provenance.cache_provenance(dict(f.attrs)).get("synthetic") is True


def list_variants(table_path, base=None, overrides=(), console=None) -> list[dict]:
    """Print each variant's label and model overrides (and parameter count when the model builder can say)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(markup=False)
    table = load_table(table_path)
    base_path = base_recipe_path(table, next(iter(table.base), None) if base is None else None, base)
    rows = []
    t = Table(title=f"{table.title} ({table.path})")
    for col in ("variant", "label", "model overrides", "parameters"):
        t.add_column(col)
    datasets = sorted({d for v in table.variants for d in (v.paper or {})})
    paper_t = Table(title=f"{table.title}: the paper's numbers (Acc %, F1)")
    paper_t.add_column("variant")
    for d, c in ((d, c) for d in datasets for c in table.paper_columns):
        paper_t.add_column(f"{d} {c}", justify="right")
    for v in table.variants:
        recipe = variant_recipe(table, v, base_path, overrides)
        params = _param_count(recipe["model"])
        rows.append({"name": v.name, "label": v.label, "model": v.model, "parameters": params, "paper": v.paper})
        t.add_row(v.name, v.label, ", ".join(f"{k}={val}" for k, val in v.model.items()) or "(base)",
                  f"{params / 1e6:.2f} M" if params else "?")
        paper_t.add_row(v.name, *[paper_cell(c, ((v.paper or {}).get(d) or {}).get(c), table.paper_missing)
                                  for d in datasets for c in table.paper_columns])
    console.print(t)
    if datasets:
        console.print(paper_t)
    if table.note:
        console.print(" ".join(table.note.split()))
    console.print(f"base recipe: {base_path.resolve()}")
    return rows


def paper_cell(column: str, value, missing: str = NOT_IN_PAPER) -> str:
    """A paper number as the paper prints it (accuracy with its two decimals; text as written, so '0.6810' keeps its
    zero), or `missing`."""
    if value is None:
        return missing
    return f"{float(value):.2f}" if column == "accuracy" and not isinstance(value, str) else str(value)


def _param_count(model_cfg: dict) -> int | None:
    import torch

    try:
        from mertool.models import build_model, count_params

        with torch.device("meta"):  # shapes only: no memory, no initialisation
            return count_params(build_model(model_cfg, load_weights=False))
    except Exception:  # a listing must not fail because one variant cannot be built here
        return None


def run_table(table_path, cache, out="runs", *, subjects=None, device="auto", folds_per_device=1, base=None,
              overrides=(), seeds=None, select="last", compile=False, console=None, progress=True,
              slurm=None, dry_run=False) -> dict:
    """Train every variant (x seed) (resumable, shardable), then print and write the table (Markdown + CSV).

    `slurm` (cluster.SlurmOptions): every variant x seed x fold goes into one Slurm job array instead.
    """
    from rich.console import Console

    from mertool.cache.store import load_cache
    from mertool.training.dataset import recipe_selection
    from mertool.training.parallel import train_runs_parallel

    console = console or Console(markup=False)
    table = load_table(table_path)
    dataset = cache_dataset(cache)
    synthetic = cache_is_synthetic(cache)
    base_path = base_recipe_path(table, dataset, base, synthetic=synthetic)
    root = Path(out) / table.stem
    grid = variant_runs(table, base_path, root, overrides, seeds)  # every recipe checked before any training
    machine = None if slurm is not None else this_machine(device, folds_per_device, grid, console)
    cache_data = load_cache(cache)
    for v, _run_dir, recipe in grid:  # e.g. an AU-fed variant on a cache with SMIC: refused before any training
        try:
            recipe_selection(cache_data, recipe)
        except MertoolError as exc:
            raise MertoolError(f"{table.path}: variant {v.name}: {exc}") from None
    if slurm is not None:
        from mertool.training.cluster import RunSpec, run_on_slurm

        specs = [RunSpec(recipe, str(Path(cache).resolve()), str(run_dir.resolve()), subjects, select,
                         compile=compile) for _v, run_dir, recipe in grid]
        slurm.logs = slurm.logs or root / "slurm"
        run_on_slurm(specs, slurm, console=console, dry_run=dry_run)
        if dry_run:
            return {}
    else:  # every variant's folds through one pool of workers (one at a time in this process when it has one)
        train_runs_parallel([(recipe, run_dir, False) for _v, run_dir, recipe in grid], cache_data,
                            subjects=subjects, devices=device, folds_per_device=folds_per_device, select=select,
                            compile=compile, console=console, progress=progress,
                            rate=machine and {"flops": machine["rate"], "dtype": machine["dtype"]})
    return report_table(table, root, dataset, console=console, synthetic=synthetic, machine=machine)


def this_machine(device, folds_per_device: int, grid: list, console) -> dict:
    """Where and when the table is trained: date, host, workers, the load average and the device's dense matmul
    rate, measured before training (the variants' times mean little without it: machines differ 3x)."""
    from datetime import datetime, timezone

    import torch

    from mertool.bench import matmul_rate
    from mertool.files import host_name
    from mertool.training.parallel import parse_devices, plan_slots

    devs = parse_devices(device)
    slots = plan_slots(devs, folds_per_device)
    rate = matmul_rate(devs[0], min_seconds=0.2)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows)
        load = None
    out = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "host": host_name(),
           "device": devs[0].type, "workers": len(slots),
           "threads": slots[0].threads if len(slots) > 1 else torch.get_num_threads(), "load": load,
           "rate": rate["flops"], "dtype": rate["dtype"],
           "seeds": sorted({int(recipe["train"]["seed"]) for _v, _d, recipe in grid})}
    console.print(machine_line(out))
    return out


def machine_line(m: dict) -> str:
    """'trained 2026-12-06 07:10 UTC on host: cpu, 2 workers of 1 CPU thread, load average 3.9; dense float32 matmul
    110 GFLOP/s measured before training; seed 0'."""
    from mertool.text import plural

    where = f"{m['device']}, {plural(m['workers'], 'worker')}"
    if m["device"] == "cpu":
        where += f" of {plural(m['threads'], 'CPU thread')}"
    if m.get("load") is not None:
        where += f", load average {m['load']:.1f}"
    seeds = m.get("seeds") or []
    return (f"trained {m['date']} on {m['host']}: {where}; dense {m['dtype']} matmul {m['rate'] / 1e9:.0f} GFLOP/s "
            f"measured before training; {'seed' if len(seeds) == 1 else 'seeds'} "
            f"{', '.join(str(x) for x in seeds)}; time: the sum of each variant's fold times (folds of an earlier, "
            f"resumed run included)")


def variant_runs(table: AblationTable, base_path: Path, root: Path, overrides=(), seeds=None) -> list:
    """(variant, run folder, recipe) for every variant, and every seed: OUT/<table>/<variant>[/seed<N>]."""
    grid = []
    for v in table.variants:
        for seed in (seeds or [None]):
            extra = [] if seed is None else [f"train.seed={int(seed)}"]
            run_dir = root / v.name if seed is None else root / v.name / f"seed{int(seed)}"
            grid.append((v, run_dir, variant_recipe(table, v, base_path, list(overrides) + extra)))
    return grid


def parse_seeds(seeds: str | None) -> list[int] | None:
    """--seeds 0,1,2 -> [0, 1, 2]."""
    if seeds is None:
        return None
    try:
        out = [int(x) for x in str(seeds).split(",") if x.strip()]
    except ValueError:
        raise MertoolError(f"--seeds {seeds!r}: expected integers separated by commas, e.g. 0,1,2") from None
    if not out or len(set(out)) != len(out):
        raise MertoolError(f"--seeds {seeds!r}: expected distinct integers separated by commas, e.g. 0,1,2")
    return out


def collect_table(table_path, out="runs", console=None) -> dict:
    """Print and write the table from the run folders already there (`ablate --collect`): nothing is trained."""
    table = load_table(table_path)
    root = Path(out) / table.stem
    if not root.is_dir():
        raise MertoolError(f"{root}: no such folder; run `mertool ablate {table_path} --cache FILE --out {out}` first")
    return report_table(table, root, None, console=console)


def report_table(table: AblationTable, root: Path, dataset: str | None, console=None,
                 synthetic: bool | None = None, machine: dict | None = None) -> dict:
    """Collect each variant's run folder into the paper-layout table; write table.md and table.csv in root.

    synthetic (None: judged from the first run folder's cache, when it is still there) labels the caption: figures
    on a `mertool synth` set are not comparable to published ones. machine (this_machine, from a run that trained
    here) adds a line under the table: when, where, the matmul rate and the seeds."""
    from rich.console import Console
    from rich.table import Table

    from mertool.training.estimate import duration
    from mertool.training.runs import SELECT_LABEL

    console = console or Console(markup=False)
    rows = []
    reports = {v.name: _variant_report(root / v.name) for v in table.variants}
    for v in table.variants:
        rep = reports[v.name]
        m = rep["metrics"] if rep else None
        dataset = dataset or (rep or {}).get("dataset")
        if synthetic is None and rep:
            synthetic = _run_synthetic(rep)
        paper = (v.paper or {}).get(table.composite or dataset) or {}
        rows.append({
            "variant": v.name, "label": v.label,
            "folds": f"{rep['done']}/{rep['expected']}" if rep else "0/?",
            "train_seconds": rep["seconds"] if rep else None,
            "complete": bool(rep) and rep["complete"], "seeds": rep["seeds"] if rep else 0,
            **{k: (m[k] if m else None) for k in OURS},
            **{f"{k}_std": (rep["std"][k] if rep and rep["std"] else None) for k in OURS},
            "best_on_test_accuracy": rep["best_on_test_accuracy"] if rep else None,
            "au_f1": rep["au_f1"] if rep else None, "au_input": rep["au_input"] if rep else None,
            **{f"paper_{c}": paper.get(c) for c in table.paper_columns},
            **{f"{d}_{k}": ((rep or {}).get("by_dataset") or {}).get(d, {}).get(k)
               for d in table.by_dataset for k in ("uf1", "uar")},
            **{f"paper_{d}_{k}": ((v.paper or {}).get(d) or {}).get(k)
               for d in table.by_dataset for k in ("uf1", "uar")}})
    provs = [provenance.is_synthetic((rep or {}).get("provenance")) for rep in reports.values() if rep]
    data_note = ""
    if any(provs) or synthetic:
        theirs = f"the published {table.composite} figures" if table.composite else f"the real {dataset or 'dataset'}"
        data_note = (f"ours: synthetic faces (mertool synth); the paper's columns: {theirs}. "
                     f"{provenance.DATA_DIFFER[0].upper()}{provenance.DATA_DIFFER[1:]}.")
    elif None in provs:
        data_note = ("ours: data of unknown provenance (a cache from before mertool recorded it; it may be "
                     "synthetic, and then not comparable with the paper's columns).")
    diffs = paired_differences(table, root, reports)
    has_best = any(r["best_on_test_accuracy"] is not None for r in rows)
    has_au = any(r["au_f1"] is not None for r in rows)
    headers = ["Variant", "AU input"] + [OUR_NAMES[k] for k in OURS] + (["AU F1"] if has_au else []) + ["folds"]
    headers += ["time"]
    headers += [f"{SELECT_LABEL} Acc"] if has_best else []
    headers += [f"paper {c}" + (" (real data)" if any(provs) or synthetic else "") for c in table.paper_columns]

    def cell(r: dict, k: str) -> str:
        if r[k] is None:
            return "-"
        scale, fmt = (100, ".2f") if k == "accuracy" else (1, ".4f")
        std = r.get(f"{k}_std")
        return f"{scale * r[k]:{fmt}}" + ("" if std is None else f" ± {scale * std:{fmt}}")

    def cells(r: dict) -> list[str]:
        out = [r["label"], r["au_input"] or "-"] + [cell(r, k) for k in OURS]
        if has_au:  # the AU head's mean detection F1 (AUs with >= 10 positives), see evaluate
            out.append("-" if r["au_f1"] is None else f"{r['au_f1']:.4f}")
        out.append(r["folds"] + ("" if r["complete"] else " (partial)"))
        out.append("-" if r["train_seconds"] is None else duration(r["train_seconds"]))
        if has_best:
            out.append("-" if r["best_on_test_accuracy"] is None else f"{100 * r['best_on_test_accuracy']:.2f}")
        out += [paper_cell(c, r[f"paper_{c}"], table.paper_missing) for c in table.paper_columns]
        return out

    seeds = max(r["seeds"] for r in rows)
    caption = (f"{table.title} — dataset {dataset or '?'}; ours: last epoch of a fixed schedule, pooled over "
               f"leave-one-subject-out folds (Acc in %)" + (f"; mean ± std over {seeds} seeds" if seeds > 1 else ""))
    if table.composite:
        caption += f"; paper: the published {table.composite} figures"
    if synthetic:
        caption += (" — SYNTHETIC DATA (a `mertool synth` set): ours are not comparable to the published figures, "
                    "which are on the real datasets")
    t = Table(title=caption)
    for h in headers:  # names wrap instead of being cut at 80 columns
        t.add_column(h, justify="left" if h == "Variant" else "right", overflow="fold",
                     min_width=12 if h == "Variant" else None)
    for r in rows:
        t.add_row(*cells(r))
    console.print(t)
    if data_note:
        console.print(data_note)
    if machine:
        console.print(machine_line(machine))
    md = [f"**{caption}**", "", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    md += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    if data_note:
        md += ["", data_note]
    if machine:
        md += ["", machine_line(machine)]
    if diffs:
        render_differences(diffs, console)
        md += ["", differences_markdown(diffs)]
        for r in rows:
            d = diffs["rows"].get(r["variant"]) or {}
            for k in ("accuracy", "uf1", "uar"):
                r[f"diff_{k}"] = d[k]["diff"] if d else None
                r[f"diff_{k}_lo"] = d[k]["lo"] if d else None
                r[f"diff_{k}_hi"] = d[k]["hi"] if d else None
            r["differs_beyond_uncertainty"] = (any(d[k]["differs"] for k in ("accuracy", "uf1", "uar"))
                                               if d else None)
    if table.by_dataset:
        head2, body2 = _by_dataset_table(table, rows)
        t2 = Table(title=f"By source dataset: ours / published ({table.composite or 'paper'}), UF1 and UAR")
        for h in head2:
            t2.add_column(h, justify="left" if h == "Variant" else "right")
        for line in body2:
            t2.add_row(*line)
        console.print(t2)
        md += ["", "**By source dataset: ours / published, UF1 and UAR**", "", "| " + " | ".join(head2) + " |",
               "|" + "|".join("---" for _ in head2) + "|"] + ["| " + " | ".join(line) + " |" for line in body2]
    if table.note:
        md += ["", table.note.strip()]
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / "table.md", "\n".join(md) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(root / "table.csv", buf.getvalue())
    console.print(f"wrote {root / 'table.md'} and {root / 'table.csv'}")
    return {"title": table.title, "dataset": dataset, "rows": rows, "markdown": root / "table.md",
            "csv": root / "table.csv", "synthetic": bool(synthetic)}


def _by_dataset_table(table: AblationTable, rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-dataset table: 'ours / published' for each dataset's UF1 and UAR."""
    head = ["Variant"] + [f"{d} {name}" for d in table.by_dataset for name in ("UF1", "UAR")]
    body = []
    for r in rows:
        line = [r["label"]]
        for d in table.by_dataset:
            for k in ("uf1", "uar"):
                ours = "-" if r[f"{d}_{k}"] is None else f"{r[f'{d}_{k}']:.4f}"
                line.append(f"{ours} / {paper_cell(k, r[f'paper_{d}_{k}'], table.paper_missing)}")
        body.append(line)
    return head, body


def _run_synthetic(rep: dict) -> bool | None:
    """Whether a variant's runs were trained on a `mertool synth` cache (None when the cache is gone)."""
    path = (rep.get("cache") or {}).get("path")
    try:
        return cache_is_synthetic(path) if path and Path(path).is_file() else None
    except MertoolError:
        return None


def paired_differences(table: AblationTable, root: Path, reports: dict) -> dict | None:
    """Each finished variant against the first (the baseline row) by a paired bootstrap over the subjects both
    ran (their folds' predictions, pooled over seeds per subject); None when fewer than two variants are done."""
    from mertool.reports import metrics
    from mertool.reports.evaluate import evaluate_parts
    from mertool.training.runs import is_run, read_run_info

    done = [v for v in table.variants if reports.get(v.name) and reports[v.name]["complete"]]
    if len(done) < 2:
        return None
    per_subject, classes = {}, None
    for v in done:
        vdir = root / v.name
        run_dirs = [vdir] if is_run(vdir) else sorted(d for d in vdir.glob("seed*") if is_run(d))
        counts: dict[str, np.ndarray] = {}
        for d in run_dirs:
            classes = classes or list(read_run_info(d)["classes"])
            parts, _missing = evaluate_parts(d)
            for f, cm in zip(parts, metrics.subject_confusions(parts, len(classes))):
                s = f["subject"][0]
                counts[s] = counts.get(s, 0) + cm
        per_subject[v.name] = counts
    base = done[0]
    out = {"baseline": base.name, "baseline_label": base.label, "rows": {}, "level": 0.95}
    for v in done[1:]:
        common = sorted(set(per_subject[base.name]) & set(per_subject[v.name]))
        if len(common) < 2:
            continue
        a = np.stack([per_subject[v.name][s] for s in common])
        b = np.stack([per_subject[base.name][s] for s in common])
        out["rows"][v.name] = {"label": v.label, **metrics.paired_bootstrap(a, b)}
        out["subjects"] = len(common)
    return out if out["rows"] else None


def render_differences(diffs: dict, console) -> None:
    """Each variant minus the baseline with its 95 % interval, and whether it differs beyond the uncertainty."""
    from rich.table import Table

    t = Table(title=f"Difference from {diffs['baseline_label']} (95 % paired bootstrap over {diffs['subjects']} "
                    f"subjects)")
    t.add_column("Variant", overflow="fold", min_width=12)
    for c in ("ΔAcc", "ΔUF1", "ΔUAR"):
        t.add_column(c, justify="right", overflow="fold")
    t.add_column("beyond noise?", justify="right", overflow="fold")
    for name, d in diffs["rows"].items():
        t.add_row(d["label"], *[_diff_cell(d[k]) for k in ("accuracy", "uf1", "uar")],
                  "yes" if any(d[k]["differs"] for k in ("accuracy", "uf1", "uar")) else "no")
    console.print(t)


def _diff_cell(d: dict) -> str:
    return f"{d['diff']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]"


def differences_markdown(diffs: dict) -> str:
    head = (f"**Difference from {diffs['baseline_label']}** (95 % paired bootstrap over {diffs['subjects']} "
            f"subjects; 'yes' = an interval excludes 0)")
    lines = [head, "", "| Variant | ΔAcc | ΔUF1 | ΔUAR | beyond noise? |", "|---|---|---|---|---|"]
    for d in diffs["rows"].values():
        lines.append(f"| {d['label']} | " + " | ".join(_diff_cell(d[k]) for k in ("accuracy", "uf1", "uar"))
                     + f" | {'yes' if any(d[k]['differs'] for k in ('accuracy', 'uf1', 'uar')) else 'no'} |")
    return "\n".join(lines)


def _variant_report(vdir: Path) -> dict | None:
    """One variant's figures: its run folder, or the mean (and std) over its seed<N> run folders."""
    from mertool.reports.evaluate import evaluate_run, evaluate_runs
    from mertool.training.runs import is_run, run_au_source

    run_dirs = [vdir] if is_run(vdir) else sorted(d for d in vdir.glob("seed*") if is_run(d))
    if not run_dirs:
        return None
    reps = [evaluate_run(d, partial=True) for d in run_dirs]
    done, expected = sum(len(r["done_folds"]) for r in reps), sum(len(r["expected_folds"]) for r in reps)
    seconds = [f["seconds"] for r in reps for f in r["folds"] if f.get("seconds")]
    out = {"done": done, "expected": expected, "complete": done == expected, "seeds": len(reps),
           "seconds": float(sum(seconds)) if seconds else None,
           "dataset": reps[0].get("dataset"), "metrics": reps[0]["metrics"], "std": None,
           "provenance": reps[0].get("provenance"),
           "cache": reps[0].get("cache"), "by_dataset": _mean_by_dataset(reps),
           "best_on_test_accuracy": reps[0]["best_on_test"]["accuracy"] if reps[0].get("best_on_test") else None,
           "au_input": run_au_source(run_dirs[0])["text"]}
    au = [(r.get("au_detection") or {}).get("mean_f1") for r in reps]
    out["au_f1"] = float(sum(au) / len(au)) if au and all(a is not None for a in au) else None
    if len(reps) > 1:
        agg = evaluate_runs(run_dirs, partial=True)
        if agg["aggregate"]:
            out["metrics"] = {k: agg["aggregate"][k]["mean"] for k in OURS}
            out["std"] = {k: agg["aggregate"][k]["std"] for k in OURS}
            best = agg.get("best_on_test_aggregate")
            out["best_on_test_accuracy"] = best["accuracy"]["mean"] if best else None
    return out


def _mean_by_dataset(reps: list[dict]) -> dict:
    """Per source dataset UF1 and UAR of a variant: its run's, or the mean over its seeds' runs."""
    out: dict = {}
    for d in sorted({d for r in reps for d in (r.get("by_dataset") or {})}):
        got = [r["by_dataset"][d] for r in reps if d in (r.get("by_dataset") or {})]
        out[d] = {k: float(sum(g[k] for g in got) / len(got)) for k in ("uf1", "uar")}
    return out
