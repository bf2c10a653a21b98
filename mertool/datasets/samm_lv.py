"""SAMM Long Videos (`SAMM_LongVideos_V2_Release.xlsx`, circulated as `SAMMLV_gt.xlsx`), 200 fps.

Title rows above a header (row 10 in V2): Subject, Filename, Inducement Code, Onset, Apex, Offset, Duration, Type,
Action Units, Notes. Type `Macro` or `Micro - 1/2`. Frame cells may be fractional (566.4, displayed 566: rounded half
up, as displayed); apex -1 means not annotated (None). Video id: the expression's Filename `006_1_2` less its last
part, `006_1`; subject `006`. Frames as released: `SAMM_longvideos/006_1/006_1_0001.jpg`.
"""
from __future__ import annotations

import re
from pathlib import Path

from mertool.datasets._sheet import cell_text
from mertool.datasets.longvideo import (FPS, TITLES, Expression, LongVideo, LongVideoSet, Rows, cell,
                                        expression_type, find_header, frame_cell, make_interval, subdirs)
from mertool.errors import MertoolError

KIND = "samm_lv"
COLUMNS = {"subject": ("Subject",), "filename": ("Filename",), "inducement": ("Inducement Code",),
           "onset": ("Onset", "Onset Frame"), "apex": ("Apex", "Apex Frame"), "offset": ("Offset", "Offset Frame"),
           "type": ("Type",)}
_EXPRESSION = re.compile(r"^(\d+_\d+)_\d+$")
_VIDEO_DIR = re.compile(r"^(\d+)_(\d+)$")


def matches(book: list[tuple[str, Rows]]) -> bool:
    """A header with Subject, Filename, Inducement Code, Onset, Apex, Offset and Type."""
    return any(find_header(rows, COLUMNS) is not None for _, rows in book)


def load(book: list[tuple[str, Rows]], sheet: Path) -> LongVideoSet:
    title, rows, (header, col) = next((t, r, h) for t, r in book if (h := find_header(r, COLUMNS)) is not None)
    aus = next((i for i, c in enumerate(rows[header]) if cell_text(c).lower() in ("action units", "aus", "au")), None)
    expressions, videos = [], {}
    for number, row in enumerate(rows[header + 1:], start=header + 2):
        subject, filename = cell_text(cell(row, col["subject"])), cell_text(cell(row, col["filename"]))
        if not subject and not filename:
            continue  # notes under the table
        where = f"{sheet} sheet {title!r} row {number}"
        m = _EXPRESSION.match(filename)
        if not m:
            raise MertoolError(f"{where}: Filename {filename!r}; expected subject_video_expression such as 006_1_2")
        if subject.isdigit():
            subject = subject.zfill(3)
        video = m.group(1)
        iv = make_interval(where, video, subject, frame_cell(cell(row, col["onset"]), where, "onset"),
                           frame_cell(cell(row, col["apex"]), where, "apex", missing=(-1,)),
                           frame_cell(cell(row, col["offset"]), where, "offset"),
                           expression_type(cell(row, col["type"]), where))
        expressions.append(Expression(iv, aus=cell_text(cell(row, aus)), row=number))
        videos.setdefault(video, LongVideo(video, subject))
    return LongVideoSet(KIND, TITLES[KIND], FPS[KIND], Path(sheet), videos, expressions)


def top_dirs(result: LongVideoSet) -> set[str]:
    """Video folders sit directly in the frames root: 006_1, 006_2, ..."""
    return set(result.videos)


def frame_folders(root: Path):
    for m, path in subdirs(root, _VIDEO_DIR):
        yield path.name, m.group(1).zfill(3), path
