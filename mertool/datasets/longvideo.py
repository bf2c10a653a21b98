"""Long-video spotting datasets: a sheet -> LongVideoSet (videos, expression intervals, blinks, frame rate).

    videos = load_long_videos("/data/CASME_sq")                # the sheet found under the folder by its content
    videos = load_long_videos("CAS(ME)3_part_A_v2.xls")        # or the sheet itself (.xls, .xlsx, .csv)
    videos.intervals, videos.blinks, videos.fps, videos.videos["15_0401"].frames

Three data sets, each recognised by its header (CAS(ME)^2's sheet has none: by the shape of its rows), never by the
file name: CAS(ME)^2 (`casme_sq`, 30 fps), SAMM Long Videos (`samm_lv`, 200 fps) and CAS(ME)^3 part A
(`casme3_lv`, 30 fps). Video ids are written as MEGC logs write them: `15_0401` (CAS(ME)^2: subject folder number
and the 4-digit video code), `006_1` (SAMM-LV: the expression's Filename `006_1_2` less its last part),
`spNO.1_a` (CAS(ME)^3: Subject and Filename joined by `_`, the Filename lower-cased: the sheet writes both `J` and
`j`). Workbooks are read with python-calamine, which reads the old `.xls` format as well as `.xlsx`, and gives the
cached value of formula cells.
"""
from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mertool.datasets._sheet import cell_text, child, choose_root, find_frame_roots, find_sheets, norm
from mertool.errors import MertoolError
from mertool.number_text import parse_number
from mertool.spotting.intervals import Interval

__all__ = ["FPS", "KINDS", "TITLES", "Expression", "LongVideo", "LongVideoSet", "find_long_sheets", "load_long_videos",
           "sniff_long_sheet"]

Rows = list[tuple]


@dataclass
class LongVideo:
    """One uncut recording: its MEGC id, subject and the folder of its frames (None when not found)."""

    id: str
    subject: str
    frames: Path | None = None


@dataclass
class Expression:
    """One annotated expression: its interval (with type and subject) and the sheet's labels."""

    interval: Interval
    emotion: str = ""      # CAS(ME)^2: negative/positive/surprise/others; CAS(ME)^3: the objective class (I..VII)
    aus: str = ""
    row: int | None = None


@dataclass
class LongVideoSet:
    """What a long-video sheet holds, with frames found under the data set's folder."""

    dataset: str
    title: str
    fps: float
    sheet: Path
    videos: dict[str, LongVideo]
    expressions: list[Expression]
    blinks: list[Interval] = field(default_factory=list)
    frames_root: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def intervals(self) -> list[Interval]:
        return [e.interval for e in self.expressions]

    def counts(self) -> dict:
        """rows, micro, macro, subjects, videos (with expressions), blinks: the figures the tests check."""
        types = Counter(iv.type for iv in self.intervals)
        return {"rows": len(self.expressions), "macro": types["macro"], "micro": types["micro"],
                "subjects": len({iv.subject for iv in self.intervals}),
                "videos": len({iv.video for iv in self.intervals}), "blinks": len(self.blinks)}


# ------------------------------------------------------------------------------------------------ loading

def load_long_videos(path, kind: str | None = None, frames=None, layout: str | None = None) -> LongVideoSet:
    """Read a long-video sheet (or find it under a data set folder) and find each video's frames.

    `frames` is the folder searched for frames (default: the data set folder, or the sheet's folder); `layout`
    'raw' or 'cropped' picks CAS(ME)^2's `rawpic` or `cropped` frames (default raw).
    """
    from mertool.datasets import casme3_lv, casme_sq, samm_lv

    adapters = {m.KIND: m for m in (casme_sq, samm_lv, casme3_lv)}
    if kind is not None and kind not in adapters:
        raise MertoolError(f"unknown long-video data set {kind!r}: expected one of {', '.join(KINDS)}")
    path = Path(path).expanduser()
    if path.is_dir():
        folder = path
        sheet, found_kind = _find_sheet(path, kind)
    elif path.is_file():
        folder, sheet = path.parent, path
        found_kind = sniff_long_sheet(sheet)
        if found_kind is None:
            raise MertoolError(f"{sheet}: not a long-video sheet of {', '.join(TITLES.values())} (found header: "
                               f"{_header_found(read_workbook(sheet))})")
        if kind is not None and found_kind != kind:
            raise MertoolError(f"{sheet}: a {TITLES[found_kind]} sheet, not {TITLES[kind]}")
    else:
        raise MertoolError(f"{path}: no such sheet or data set folder")
    result = adapters[found_kind].load(read_workbook(sheet), sheet)
    _attach_frames(result, Path(frames).expanduser() if frames is not None else folder, adapters[found_kind], layout)
    return result


def sniff_long_sheet(path) -> str | None:
    """Which long-video data set a workbook belongs to, judged by its header rows; None when none."""
    from mertool.datasets import casme3_lv, casme_sq, samm_lv

    try:
        book = read_workbook(Path(path), max_rows=60)
    except MertoolError:
        return None
    return next((m.KIND for m in (casme3_lv, samm_lv, casme_sq) if m.matches(book)), None)


def find_long_sheets(folder: Path, kind: str | None = None) -> list[tuple[Path, str]]:
    """(sheet, data set) of every long-video sheet under `folder`, recognised by content."""
    return [(p, k) for p in find_sheets(Path(folder)) if (k := sniff_long_sheet(p)) is not None and kind in (None, k)]


def _find_sheet(folder: Path, kind: str | None) -> tuple[Path, str]:
    found = find_long_sheets(folder, kind)
    if not found:
        what = TITLES[kind] if kind else " / ".join(TITLES.values())
        raise MertoolError(f"{folder}: no {what} long-video sheet found (sheets are recognised by their header "
                           f"anywhere under the folder){headers_found(folder)}")
    if len(found) > 1:
        listing = ", ".join(f"{p.name}: {k}" for p, k in found)
        raise MertoolError(f"{folder}: several long-video sheets found ({listing}); pass the sheet itself")
    return found[0]


def headers_found(folder: Path, shown: int = 3) -> str:
    """'; found: a.xlsx (sheet 'S': X, Y), ...' for the sheets under `folder` that no adapter recognised."""
    found = []
    for path in find_sheets(Path(folder))[:shown]:
        try:
            found.append(f"{path.name} ({_header_found(read_workbook(path, max_rows=HEADER_SCAN_ROWS))})")
        except MertoolError:
            found.append(f"{path.name} (unreadable)")
    return f"; found: {'; '.join(found)}" if found else "; no .xlsx, .xls or .csv file there"


def _header_found(book: list[tuple[str, Rows]]) -> str:
    for title, rows in book:
        for row in rows[:HEADER_SCAN_ROWS]:
            cells = [cell_text(c) for c in row]
            if any(cells):
                return f"sheet {title!r}: " + ", ".join(c for c in cells if c)
    return "the workbook is empty"


# ------------------------------------------------------------------------------------------------ workbooks

HEADER_SCAN_ROWS = 30  # SAMM-LV's header is on row 10
FPS = {"casme_sq": 30.0, "samm_lv": 200.0, "casme3_lv": 30.0}
TITLES = {"casme_sq": "CAS(ME)^2", "samm_lv": "SAMM Long Videos", "casme3_lv": "CAS(ME)^3 part A"}
KINDS = tuple(TITLES)


def read_workbook(path: Path, max_rows: int | None = None) -> list[tuple[str, Rows]]:
    """Every sheet of a workbook (.xls, .xlsx, .xlsm, .ods) or the one sheet of a CSV, as (title, rows)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = [tuple(r) for r in csv.reader(f)]
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise MertoolError(f"{path}: cannot read CSV ({e})") from None
        return [(path.name, rows[:max_rows] if max_rows else rows)]
    from python_calamine import CalamineWorkbook

    try:
        book = CalamineWorkbook.from_path(str(path))
        # skip_empty_area=False keeps leading empty rows, so row numbers in messages are the sheet's own
        return [(name, [tuple(r) for r in book.get_sheet_by_name(name).to_python(skip_empty_area=False,
                                                                                  nrows=max_rows)])
                for name in book.sheet_names]
    except Exception as e:  # calamine raises its own error types for damaged or foreign files
        raise MertoolError(f"{path}: cannot read spreadsheet ({type(e).__name__}: {e})") from None


def find_header(rows: Rows, required: dict[str, tuple[str, ...]]) -> tuple[int, dict[str, int]] | None:
    """(0-based row index, column key -> index) of the first row holding every required column, else None."""
    for i, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        keys = [norm(c) for c in row]
        found = {}
        for key, aliases in required.items():
            hit = next((keys.index(norm(a)) for a in aliases if norm(a) in keys), None)
            if hit is not None:
                found[key] = hit
        if len(found) == len(required):
            return i, found
    return None


def cell(row: tuple, index: int | None):
    return row[index] if index is not None and index < len(row) else None


def frame_cell(value, where: str, name: str, missing=(None,)) -> int | None:
    """A frame-number cell as int. Fractional numbers (SAMM-LV stores 566.4 and shows 566) are rounded half up,
    as a spreadsheet displays them; values in `missing` (e.g. 0 or -1) and empty cells are None."""
    text = cell_text(value)
    if text == "":
        return None
    number = parse_number(text)
    if number is None or not math.isfinite(number):
        raise MertoolError(f"{where}: {name} {text!r} is not a frame number")
    number = math.floor(number + 0.5)
    if number in missing:
        return None
    if number < 0:
        raise MertoolError(f"{where}: {name} {text!r} is not a frame number (negative)")
    return int(number)


def expression_type(value, where: str) -> str:
    """'macro-expression', 'Macro', 'Micro - 1/2', 'Micro-expression' -> 'macro' / 'micro'."""
    text = cell_text(value).lower()
    for kind in ("micro", "macro"):
        if text.startswith(kind):
            return kind
    raise MertoolError(f"{where}: type {cell_text(value)!r}; expected a macro- or micro-expression")


def make_interval(where: str, video: str, subject: str, onset, apex, offset, kind: str) -> Interval:
    if onset is None or offset is None:
        raise MertoolError(f"{where}: {'onset' if onset is None else 'offset'} is empty; expected a frame number")
    if offset < onset:
        raise MertoolError(f"{where}: offset {offset} is before onset {onset}")
    return Interval(video, onset, offset, apex, kind, None, subject)


# ------------------------------------------------------------------------------------------------ frames

def _attach_frames(result: LongVideoSet, folder: Path, adapter, layout: str | None) -> None:
    """Find each video's frame folder as the data set ships it, and add videos found on disk without expressions
    (MEGC counts predictions on them as false positives, so they belong to the data set)."""
    if not folder.is_dir():
        return
    # only folders that hold video frame folders: CAS(ME)^2's rawvideo/s15/ holds .avi files beside rawpic/s15/
    roots = [(r, n) for r, n in find_frame_roots(folder, adapter.top_dirs(result))
             if next(iter(adapter.frame_folders(r)), None) is not None]
    root = choose_root(roots, layout, folder)
    result.frames_root = root
    if root is None:
        result.warnings.append(f"{folder}: no frame folders found (looked for folders such as "
                               f"{sorted(adapter.top_dirs(result))[:3]})")
        return
    for video_id, subject, path in adapter.frame_folders(root):
        video = result.videos.setdefault(video_id, LongVideo(video_id, subject))
        video.frames = video.frames or path
    missing = [v for v in result.videos.values() if v.frames is None]
    if missing:
        result.warnings.append(f"{len(missing)} of {len(result.videos)} videos have no frame folder under {root} "
                               f"(first: {', '.join(v.id for v in missing[:5])})")


def subfolder(folder: Path, *names: str) -> Path | None:
    """folder/names..., matching each name case-insensitively; None when a level is missing."""
    d: Path | None = folder
    for name in names:
        d = child(d, name) if d is not None else None
    return d


def subdirs(folder: Path, pattern: re.Pattern) -> list[tuple[re.Match, Path]]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [(m, p) for p in entries if (m := pattern.match(p.name)) and p.is_dir()]
