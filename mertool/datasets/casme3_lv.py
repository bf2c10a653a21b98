"""CAS(ME)^3 part A long videos (`CAS(ME)3_part_A_v2.xls`), 30 fps (the colour camera).

Sheet `AU+Emotion`: Subject, Filename, Onset, Apex, Offset, AU, Expression type (`Macro-expression` /
`Micro-expression`), Objective class (I..VII, kept as the emotion); frame numbers mostly stored as text. Sheet
`eye blink`: Subject, Filename, Onset, Offset. Both recognised by their headers, in .xls or .xlsx (synthetic long
videos are written this way). Video id `spNO.1_a`: Subject and Filename, the Filename lower-cased (the sheet writes
both `J` and `j`); subject `spNO.1`. Frames as the dataset ships them: `spNO.1/a/color/355.jpg` (the `color` level
optional), the folder names matched case-insensitively.
"""
from __future__ import annotations

import re
from pathlib import Path

from mertool.datasets._sheet import cell_text, child
from mertool.datasets.longvideo import (FPS, TITLES, Expression, LongVideo, LongVideoSet, Rows, cell,
                                        expression_type, find_header, frame_cell, make_interval, subdirs)
from mertool.errors import MertoolError
from mertool.spotting.intervals import Interval

KIND = "casme3_lv"
COLUMNS = {"subject": ("Subject",), "filename": ("Filename",), "onset": ("Onset",), "apex": ("Apex",),
           "offset": ("Offset",), "type": ("Expression type",)}
BLINK_COLUMNS = {"subject": ("Subject",), "filename": ("Filename",), "onset": ("Onset",), "offset": ("Offset",)}
MODALITY = "color"
_SUBJECT_DIR = re.compile(r"^spNO\.\d+$", re.I)
_VIDEO_DIR = re.compile(r"^[a-z]$", re.I)


def matches(book: list[tuple[str, Rows]]) -> bool:
    """A header with Subject, Filename, Onset, Apex, Offset and Expression type."""
    return any(find_header(rows, COLUMNS) is not None for _, rows in book)


def video_id(subject: str, filename: str) -> str:
    return f"{subject}_{filename.lower()}"


def load(book: list[tuple[str, Rows]], sheet: Path) -> LongVideoSet:
    title, rows, (header, col) = next((t, r, h) for t, r in book if (h := find_header(r, COLUMNS)) is not None)
    names = {key: next((i for i, c in enumerate(rows[header]) if cell_text(c).lower() == name), None)
             for key, name in (("aus", "au"), ("emotion", "objective class"))}
    expressions, videos = [], {}
    for number, row, where, subject, filename in _named_rows(rows, header, col, f"{sheet} sheet {title!r}"):
        video = video_id(subject, filename)
        iv = make_interval(where, video, subject, frame_cell(cell(row, col["onset"]), where, "onset"),
                           frame_cell(cell(row, col["apex"]), where, "apex"),
                           frame_cell(cell(row, col["offset"]), where, "offset"),
                           expression_type(cell(row, col["type"]), where))
        expressions.append(Expression(iv, emotion=cell_text(cell(row, names["emotion"])),
                                      aus=cell_text(cell(row, names["aus"])), row=number))
        videos.setdefault(video, LongVideo(video, subject))
    return LongVideoSet(KIND, TITLES[KIND], FPS[KIND], Path(sheet), videos, expressions,
                        blinks=_blinks(book, sheet, title))


def _named_rows(rows: Rows, header: int, col: dict, where: str):
    """(row number, row, 'SHEET sheet TITLE row N', subject, filename) of every row below the header that names a
    video; a row with neither is skipped, a row with one of the two is an error naming the empty one."""
    for number, row in enumerate(rows[header + 1:], start=header + 2):
        subject, filename = cell_text(cell(row, col["subject"])), cell_text(cell(row, col["filename"]))
        if not subject and not filename:
            continue
        here = f"{where} row {number}"
        for key, text in (("Subject", subject), ("Filename", filename)):
            if not text:
                raise MertoolError(f"{here}: {key} is empty")
        yield number, row, here, subject, filename


def _blinks(book: list[tuple[str, Rows]], sheet: Path, expressions_sheet: str) -> list[Interval]:
    """Blink intervals of the sheet whose header has Subject, Filename, Onset, Offset but no Apex (`eye blink`)."""
    blinks = []
    for title, rows in book:
        found = find_header(rows, BLINK_COLUMNS)
        if title == expressions_sheet or found is None or find_header(rows, COLUMNS) is not None:
            continue
        header, col = found
        for _number, row, where, subject, filename in _named_rows(rows, header, col, f"{sheet} sheet {title!r}"):
            blinks.append(make_interval(where, video_id(subject, filename), subject,
                                        frame_cell(cell(row, col["onset"]), where, "onset"), None,
                                        frame_cell(cell(row, col["offset"]), where, "offset"), None))
    return blinks


def top_dirs(result: LongVideoSet) -> set[str]:
    return {v.subject for v in result.videos.values()}


def frame_folders(root: Path):
    """(video id, subject, folder) of root/spNO.N/<letter>[/color]."""
    for _, subject_dir in subdirs(root, _SUBJECT_DIR):
        for _, video_dir in subdirs(subject_dir, _VIDEO_DIR):
            inner = child(video_dir, MODALITY)
            yield video_id(subject_dir.name, video_dir.name), subject_dir.name, inner or video_dir
