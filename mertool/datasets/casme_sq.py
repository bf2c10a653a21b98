"""CAS(ME)^2 long videos (`CAS(ME)^2code_final.xlsx`, circulated as `CASME_sq_gt.xlsx`), 30 fps.

The main sheet has no header row: subject number, expression name (`anger1_1`), onset, apex, offset, AUs, emotion
(negative/positive/surprise/others), type (`macro-expression` / `micro-expression`), self-report. It is recognised by
the shape of its first row. Two more sheets, also without headers, name things: `naming rule1` maps the sheet's
subject number to the subject folder (`1` -> 15, `s15`), `naming rule2` maps the expression name's video part
(`anger1`) to its 4-digit code (`0401`). Video id as MEGC writes it: `15_0401`; subject `s15`.

Quirks of the released sheet: 44 macro rows have offset 0 (the apex is used as the offset, as MEGC's ground truth
does) and one row has apex 0 (apex unknown: None). Frames as released: `rawpic/s15/15_0401girlcrashing/img1.jpg`
(the folder: subject code, `_`, video code, a word), or the same under `cropped/` (`layout='cropped'`).
"""
from __future__ import annotations

import re
from pathlib import Path

from mertool.datasets.longvideo import (FPS, TITLES, Expression, LongVideo, LongVideoSet, Rows, expression_type,
                                        frame_cell, make_interval, subdirs)
from mertool.datasets._sheet import cell_text
from mertool.errors import MertoolError
from mertool.number_text import parse_number

KIND = "casme_sq"
_NAME = re.compile(r"^([a-z]+\d*)_(\d+)$", re.I)          # anger1_1 -> video part anger1
_TYPE = re.compile(r"^(macro|micro)-?expression$", re.I)
_FOLDER = re.compile(r"^s?(\d+)$", re.I)                   # naming rule1's folder 's15'
_VIDEO_DIR = re.compile(r"^(\d+)_(\d{4})", re.I)           # 15_0401girlcrashing


def _is_main_row(row: tuple) -> bool:
    cells = [cell_text(c) for c in row]
    return (len(cells) >= 8 and cells[0].isdigit() and bool(_NAME.match(cells[1]))
            and all(parse_number(c) is not None for c in cells[2:5]) and bool(_TYPE.match(cells[7])))


def matches(book: list[tuple[str, Rows]]) -> bool:
    """A sheet whose first row is a CAS(ME)^2 expression row (no header), and the two naming-rule sheets."""
    return any(rows and _is_main_row(rows[0]) for _, rows in book) and len(_rule_sheets(book)) == 2


def _rule_sheets(book) -> dict[str, Rows]:
    """'subjects' (number, 'sNN', sheet number) and 'videos' ('0401', 'anger1') sheets, found by their rows."""
    found = {}
    for _, rows in book:
        data = [[cell_text(c) for c in r] for r in rows if any(cell_text(c) for c in r)]
        if not data:
            continue
        first = data[0]
        if len(first) >= 3 and first[0].isdigit() and _FOLDER.match(first[1]) and first[2].isdigit():
            found.setdefault("subjects", data)
        elif len(first) >= 2 and re.fullmatch(r"\d{1,4}", first[0]) and re.fullmatch(r"[a-z]+\d*", first[1], re.I):
            found.setdefault("videos", data)
    return found


def load(book: list[tuple[str, Rows]], sheet: Path) -> LongVideoSet:
    title, rows = next((t, r) for t, r in book if r and _is_main_row(r[0]))
    rules = _rule_sheets(book)
    subjects = {int(r[2]): int(r[0]) for r in rules["subjects"] if r[0].isdigit() and r[2].isdigit()}
    codes = {r[1].lower(): r[0].zfill(4) for r in rules["videos"] if r[0].isdigit()}
    expressions, videos, warnings, offset_zero = [], {}, [], 0
    for number, row in enumerate(rows, start=1):
        cells = [cell_text(c) for c in row]
        if not any(cells):
            continue
        where = f"{sheet} sheet {title!r} row {number}"
        if not _is_main_row(row):
            raise MertoolError(f"{where}: expected subject number, expression name, onset, apex, offset, AUs, emotion, "
                               f"type (found: {', '.join(c for c in cells if c)})")
        sheet_subject, name = int(cells[0]), _NAME.match(cells[1]).group(1).lower()
        if sheet_subject not in subjects:
            raise MertoolError(f"{where}: subject {sheet_subject} is not in the naming-rule sheet")
        if name not in codes:
            raise MertoolError(f"{where}: expression {cells[1]!r}: {name!r} is not in the naming-rule sheet")
        folder_number = subjects[sheet_subject]
        video, subject = f"{folder_number}_{codes[name]}", f"s{folder_number}"
        onset = frame_cell(row[2], where, "onset")
        apex = frame_cell(row[3], where, "apex", missing=(0,))
        offset = frame_cell(row[4], where, "offset", missing=(0,))
        if offset is None:  # 44 macro rows of the release: no offset coded; MEGC's ground truth uses the apex
            offset, offset_zero = apex, offset_zero + 1
        iv = make_interval(where, video, subject, onset, apex, offset, expression_type(row[7], where))
        expressions.append(Expression(iv, emotion=cells[6], aus=cells[5], row=number))
        videos.setdefault(video, LongVideo(video, subject))
    if offset_zero:
        warnings.append(f"{offset_zero} rows have offset 0: the apex is used as their offset")
    return LongVideoSet(KIND, TITLES[KIND], FPS[KIND], Path(sheet), videos, expressions, warnings=warnings)


def top_dirs(result: LongVideoSet) -> set[str]:
    """The subject folders frames live in: s15, s16, ..."""
    return {v.subject for v in result.videos.values()}


def frame_folders(root: Path):
    """(video id, subject, folder) of every video folder under root/sNN/ (`15_0401girlcrashing`)."""
    for m, subject_dir in subdirs(root, _FOLDER):
        for vm, video_dir in subdirs(subject_dir, _VIDEO_DIR):
            yield f"{int(vm.group(1))}_{vm.group(2)}", f"s{int(m.group(1))}", video_dir
