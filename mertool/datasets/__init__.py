"""Dataset adapters: annotation sheet -> SampleRecord list (+ a report of what was read).

    records, report = load_records("/data/CASME2")               # kind and sheet detected
    records, report = load_records("/data/SAMM", kind="samm", sheet="/data/SAMM_Micro_FACS_Codes_v2.xlsx")
    records, report = load_records("/data/SMIC", options={"part": "HS", "apex": "middle"})   # no sheet: folders
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from fnmatch import fnmatch
from pathlib import Path

from mertool.data.records import SampleRecord
from mertool.datasets import casme2, casme3, manifest, mmew, samm, smic
from mertool.datasets._sheet import find_sheets, first_row, header_keys
from mertool.errors import MertoolError

# detection order matters: SAMM's and MMEW's headers are supersets of CASME II's
ADAPTERS = {m.KIND: m for m in (samm, casme3, mmew, casme2, manifest, smic)}
KINDS = tuple(sorted(ADAPTERS))
# composite benchmarks: name (= its recipe) -> the datasets of the merged cache it is made of
COMPOSITES = {"megc2019": ("casme2", "samm", "smic")}
__all__ = ["ADAPTERS", "COMPOSITES", "KINDS", "class_counts", "composite_name", "detect_dataset", "load_records",
           "sniff_sheet"]


def composite_name(dataset: str) -> str | None:
    """'casme2+samm+smic' (in any order) -> 'megc2019'; None for other datasets."""
    parts = set(str(dataset).split("+"))
    return next((name for name, members in COMPOSITES.items() if set(members) == parts), None)


def sniff_sheet(path: Path) -> str | None:
    """Which dataset a sheet belongs to, judged by its header; None when no adapter recognises it."""
    try:
        keys = header_keys(Path(path))
    except MertoolError:
        return None
    return next((kind for kind, m in ADAPTERS.items() if m.matches(keys)), None)


def _sheet_candidates(folder: Path) -> dict[str, list[Path]]:
    """kind -> sheets under `folder` that belong to it."""
    found: dict[str, list[Path]] = {}
    for path in find_sheets(folder):
        kind = "xls" if path.suffix.lower() == ".xls" else sniff_sheet(path)
        if kind is not None:
            found.setdefault(kind, []).append(path)
    return found


def _kind_from_layout(folder: Path) -> str | None:
    """Guess from frame folders when no sheet is there (the error about the missing sheet then names the right files)."""
    names = {p.name.lower() for p in folder.iterdir() if p.is_dir()}
    if smic.find_parts(folder):
        return "smic"
    if mmew.FRAMES.lower() in names:
        return "mmew"
    if any(n.startswith("casme2") for n in names) or any(n.startswith("sub") and n[3:].isdigit() for n in names):
        return "casme2"
    if any(n.startswith("samm") for n in names):
        return "samm"
    if any(n.startswith(("part_a", "spno.", "cas(me)")) for n in names):
        return "casme3"
    return None


def _check_folder(folder) -> Path:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise MertoolError(f"{folder}: dataset folder not found")
    return folder


def _looked_for(kinds=KINDS) -> str:
    return ", ".join(p for k in kinds for p in ADAPTERS[k].SHEET_NAMES)


def _sheetless(kind: str) -> bool:
    return getattr(ADAPTERS[kind], "SHEETLESS", False)


def detect_dataset(folder) -> str:
    """Dataset kind of a folder from the sheets anywhere under it (by header content), else from its layout."""
    folder = _check_folder(folder)
    return _detect(folder, _sheet_candidates(folder))


def _xls_hint(found: dict[str, list[Path]]) -> str:
    xls = found.pop("xls", [])
    return f"; found old .xls sheets ({', '.join(p.name for p in xls)}): save them as .xlsx" if xls else ""


def _detect(folder: Path, found: dict[str, list[Path]]) -> str:
    found = dict(found)
    hint = _xls_hint(found)
    if len(found) > 1:
        listing = "; ".join(f"{k}: {', '.join(p.name for p in v)}" for k, v in sorted(found.items()))
        raise MertoolError(f"{folder}: sheets of several datasets found ({listing}); choose one with --dataset")
    if found:
        return next(iter(found))
    kind = _kind_from_layout(folder)
    if kind is None:
        raise MertoolError(f"{folder}: no annotation sheet found (looked for {_looked_for()} anywhere under the "
                           f"folder); pass --sheet FILE and --dataset {'|'.join(KINDS)}{hint}")
    return kind


def _pick_sheet(folder: Path, kind: str, found: dict[str, list[Path]]) -> tuple[Path, list[str]]:
    """The sheet of `kind` under `folder` (the last by name when several: e.g. the newest CASME II coding)."""
    adapter = ADAPTERS[kind]
    candidates = found.get(kind, [])
    if not candidates:
        raise MertoolError(f"{folder}: no {adapter.TITLE} annotation sheet found (looked for "
                           f"{_looked_for([kind])} with a {adapter.TITLE} header anywhere under the folder); "
                           f"pass --sheet FILE{_xls_hint(dict(found))}")
    named = [p for p in candidates if any(fnmatch(p.name.lower(), n.lower()) for n in adapter.SHEET_NAMES)]
    ranked = sorted(named or candidates, key=lambda p: p.name)
    warnings = []
    if len(candidates) > 1:
        warnings.append(f"several {adapter.TITLE} sheets found ({', '.join(p.name for p in candidates)}); "
                        f"using {ranked[-1].name} (choose with --sheet)")
    return ranked[-1], warnings


def _resolve_sheet(folder: Path, sheet) -> Path:
    """--sheet given as a path (absolute, relative to the cwd, or relative to the dataset folder)."""
    sheet = Path(sheet).expanduser()
    for p in (sheet, folder / sheet):
        if p.is_file():
            return p
    raise MertoolError(f"{sheet}: annotation sheet not found (also looked in {folder})")


def load_records(folder, kind: str | None = None, sheet=None, layout: str | None = None,
                 options: Mapping | None = None) -> tuple[list[SampleRecord], dict]:
    """Read a dataset folder's annotation sheet into sample records, with frame paths resolved under the folder.

    `folder` may also be the sheet itself. `layout` picks 'raw' or 'cropped' frames when both exist (default: raw).
    `options` go to an adapter that takes them (SMIC: part, apex, on_clip). The report holds rows read, subjects,
    per-emotion counts, AU codes outside the vocabulary, warnings and the samples whose frames are missing.
    """
    folder = Path(folder).expanduser()
    if sheet is None and folder.is_file():
        folder, sheet = folder.parent, folder
    folder = _check_folder(folder)
    if kind is not None and kind not in ADAPTERS:
        raise MertoolError(f"unknown dataset kind {kind!r}: expected one of {', '.join(KINDS)}")
    warnings: list[str] = []
    options = dict(options or {})
    found = None
    if kind is None and sheet is None:
        found = _sheet_candidates(folder)  # one walk of the folder serves detection and the choice of sheet
        kind = _detect(folder, found)
    if kind is not None and _sheetless(kind):
        if sheet is not None:
            raise MertoolError(f"--sheet {sheet}: {ADAPTERS[kind].TITLE} has no annotation sheet (labels are folder "
                               f"names); leave --sheet out")
        records, extra = ADAPTERS[kind].load(None, folder, layout=layout, **options)
        return records, make_report(kind, records, extra, extra.pop("sheet_warnings", []))
    if options:
        raise MertoolError(f"{', '.join(options)}: options of SMIC only, not of {ADAPTERS[kind].TITLE if kind else 'this sheet'}")
    if sheet is not None:
        sheet = _resolve_sheet(folder, sheet)
        kind = kind or sniff_sheet(sheet)
        if kind is None:
            expected = "; ".join(f"{m.TITLE}: {', '.join(a[0] for a in m.COLUMNS.values())}"
                                 for m in ADAPTERS.values() if hasattr(m, "COLUMNS"))
            raise MertoolError(f"{sheet}: no recognisable header (expected columns {expected}; found "
                               f"{first_row(sheet)})")
    else:
        sheet, warnings = _pick_sheet(folder, kind, found if found is not None else _sheet_candidates(folder))
    records, extra = ADAPTERS[kind].load(sheet, folder, layout=layout)
    return records, make_report(kind, records, extra, warnings)


def make_report(kind: str, records: Sequence[SampleRecord], extra: Mapping, warnings: Sequence[str] = ()) -> dict:
    """Summary of what the sheet held: counts, AU codes outside the vocabulary, warnings, missing frames."""
    report = {"dataset": kind, **extra, "rows": len(records), "subjects": len({r.subject for r in records}),
              "emotions": dict(Counter(r.emotion for r in records).most_common()),
              "aus_outside": dict(Counter(c for r in records for c in r.aus_outside).most_common()),
              "aus_unknown": sum(1 for r in records if not r.aus and not r.aus_outside),
              "apex_estimated": [r.key for r in records if r.apex_estimated],
              "apex_outside": [r.key for r in records if not r.apex_estimated and r.offset is not None
                               and r.apex is not None and not r.onset <= r.apex <= r.offset],
              "warnings": list(warnings) + [w for r in records for w in r.warnings if w.startswith(f"{r.key}: apex")],
              "frame_problems": [f"{r.key}: {w}" for r in records for w in r.warnings
                                 if not w.startswith(f"{r.key}: apex")][:50]}
    if extra.get("frames_warning"):
        report["warnings"].append(extra["frames_warning"])
    return report


def class_counts(records: Sequence[SampleRecord], classes: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Samples per class for a recipe's class map {class: [raw emotion names or dataset:emotion]}."""
    from mertool.data.classmap import ClassMap

    return ClassMap(classes).counts((r.dataset, r.emotion) for r in records)
