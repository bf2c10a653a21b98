"""The spotted or annotated interval, and the intervals CSV every spotter writes and `evaluate-spot` reads.

An interval is `video, onset, offset` in frame numbers as the data set numbers its frames, both inclusive, with an
optional apex, type ('micro' | 'macro'), score and subject. The CSV has a header with the columns
`video,onset,offset` and, optionally, `apex,type,score,subject` in any order; other columns are ignored, so a file
another tool wrote with extra columns still reads. Empty cells of the optional columns are None.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mertool.errors import MertoolError
from mertool.files import write_text
from mertool.number_text import parse_number

TYPES = ("micro", "macro")
COLUMNS = ("video", "onset", "offset", "apex", "type", "score")
MICRO_MAX_SECONDS = 0.5  # the field's definition of a micro-expression: at most half a second from onset to offset


@dataclass(frozen=True)
class Interval:
    """Frames `onset..offset` (inclusive) of one video, as a spotter found them or a sheet annotates them."""

    video: str
    onset: int
    offset: int
    apex: int | None = None
    type: str | None = None      # "micro" | "macro"
    score: float | None = None
    subject: str | None = None

    def __post_init__(self):
        if self.offset < self.onset:  # readers check user input first and say which row; this is a broken invariant
            raise ValueError(f"{self.video}: offset {self.offset} before onset {self.onset}")
        if self.type is not None and self.type not in TYPES:
            raise ValueError(f"{self.video}: type {self.type!r} is not one of {TYPES}")

    @property
    def frames(self) -> int:
        """Number of frames, both ends included."""
        return self.offset - self.onset + 1


def type_from_duration(onset: int, offset: int, fps: float) -> str:
    """'micro' when offset - onset spans at most 0.5 s at `fps`, else 'macro'.

    The span is measured from the onset frame to the offset frame (offset - onset frame steps): with it every
    'Micro - 1/2' row of SAMM Long Videos (200 fps) spans <= 100 steps and every 'Macro' row >= 101.
    """
    if not fps or fps <= 0:
        raise ValueError(f"fps {fps!r}: expected a positive frame rate")
    return "micro" if (offset - onset) <= MICRO_MAX_SECONDS * fps + 1e-9 else "macro"


def with_type(interval: Interval, fps: float | None) -> Interval:
    """The interval with its type set from its duration when it has none (needs `fps` then)."""
    if interval.type is not None:
        return interval
    if fps is None:
        raise MertoolError(f"{interval.video} {interval.onset}-{interval.offset}: no type given and no frame rate to "
                           f"judge micro from macro by duration; pass --fps N or a type column")
    return Interval(interval.video, interval.onset, interval.offset, interval.apex,
                    type_from_duration(interval.onset, interval.offset, fps), interval.score, interval.subject)


# ------------------------------------------------------------------------------------------------------ CSV

def read_intervals_csv(path) -> list[Interval]:
    """Intervals of a CSV with columns video,onset,offset[,apex,type,score,subject].

    A row with a missing or non-integer frame number, an offset before its onset, an unknown type or a score that
    is not a number is a MertoolError naming the file and row (rows counted as a spreadsheet shows them, the
    header being row 1).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MertoolError(f"{path}: intervals CSV not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MertoolError(f"{path}: cannot read as a UTF-8 CSV ({e})") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise MertoolError(f"{path}: not a CSV ({e})") from None
    if not rows:
        raise MertoolError(f"{path}: empty; expected a header with columns video,onset,offset")
    header = [c.strip().lower() for c in rows[0]]
    missing = [c for c in ("video", "onset", "offset") if c not in header]
    if missing:
        raise MertoolError(f"{path}: header {','.join(rows[0])!r} lacks {', '.join(missing)}; expected columns "
                           f"video,onset,offset[,apex,type,score]")
    col = {name: header.index(name) for name in (*COLUMNS, "subject") if name in header}
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        cell = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
        where = f"{path} row {number}"
        if not cell["video"]:
            raise MertoolError(f"{where}: video is empty")
        onset, offset = _frame(cell["onset"], where, "onset"), _frame(cell["offset"], where, "offset")
        if offset < onset:
            raise MertoolError(f"{where}: offset {offset} is before onset {onset}")
        apex = _frame(cell["apex"], where, "apex") if cell.get("apex") else None
        kind = cell.get("type", "").lower() or None
        if kind is not None and kind not in TYPES:
            raise MertoolError(f"{where}: type {cell['type']!r}; expected micro or macro (or empty)")
        score = _number(cell["score"], where, "score") if cell.get("score") else None
        out.append(Interval(cell["video"], onset, offset, apex, kind, score, cell.get("subject") or None))
    return out


def write_intervals_csv(path, intervals: Iterable[Interval]) -> Path:
    """Write intervals as CSV (atomically): video,onset,offset,apex,type,score, plus subject when any has one."""
    intervals = list(intervals)
    columns = list(COLUMNS) + (["subject"] if any(iv.subject for iv in intervals) else [])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for iv in intervals:
        values = {"video": iv.video, "onset": iv.onset, "offset": iv.offset, "apex": iv.apex, "type": iv.type,
                  "score": None if iv.score is None else f"{iv.score:.6g}", "subject": iv.subject}
        writer.writerow(["" if values[c] is None else values[c] for c in columns])
    return write_text(path, buf.getvalue())


def _number(text: str, where: str, name: str) -> float:
    value = parse_number(text)
    if value is None:
        raise MertoolError(f"{where}: {name} {text!r} is not a number")
    if not math.isfinite(value):
        raise MertoolError(f"{where}: {name} {text!r} is not a finite number")
    return value


def _frame(text: str, where: str, name: str) -> int:
    if not text:
        raise MertoolError(f"{where}: {name} is empty; expected a frame number")
    value = _number(text, where, name)
    if not value.is_integer() or value < 0:
        raise MertoolError(f"{where}: {name} {text!r} is not a frame number (a whole number >= 0)")
    return int(value)
