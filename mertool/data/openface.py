"""AUs from OpenFace 2.x: the per-frame CSV that FeatureExtraction writes, read into mertool's 21-AU vocabulary.

Columns (OpenFace writes ', ' between fields; a plain ',' is accepted too):
  frame, face_id, timestamp, confidence, success, ..., AU01_r ... AU45_r, AU01_c ... AU45_c, ...
OpenFace codes AU presence (`_c`, 0/1) for 18 AUs: 1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45,
all inside mertool's vocabulary. It does not code AU16, AU18 and AU24: those stay 0 in a vector read from OpenFace.

An AU counts as active when its `_c` column is 1 in any frame from onset to apex (a clip), or in the apex row
(an image pair). Only face 0 is read when the CSV tracks several faces (OpenFace numbers the first face 0); rows
whose tracking failed (success 0) carry no AU evidence.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mertool.data.aus import AU_VOCAB
from mertool.errors import MertoolError
from mertool.number_text import parse_number

_PRESENCE = re.compile(r"^AU0*(\d+)_c$")


@dataclass
class OpenFaceAUs:
    """One face's AU presence per frame: frames (int, CSV order) and active (frames x AUs, bool)."""

    path: Path
    frames: np.ndarray
    success: np.ndarray
    aus: tuple[int, ...]          # the AUs the CSV codes (columns AUxx_c), in column order
    active: np.ndarray            # len(frames) x len(aus) bool

    @property
    def not_coded(self) -> tuple[int, ...]:
        """Vocabulary AUs this CSV has no column for (OpenFace 2.x: 16, 18, 24)."""
        return tuple(au for au in AU_VOCAB if au not in self.aus)

    def row(self, frame: int) -> int:
        """Index of a frame number; a frame the CSV lacks is an error naming the file and its frame range."""
        hits = np.flatnonzero(self.frames == int(frame))
        if not len(hits):
            raise MertoolError(f"{self.path}: frame {frame} is not in the CSV (frames {self.frames.min()}.."
                               f"{self.frames.max()})")
        return int(hits[0])

    def codes_between(self, onset: int | None, apex: int | None) -> tuple[int, ...]:
        """AUs active in any successfully tracked frame from onset to apex (inclusive; onset None: the apex row only,
        apex None: the last row)."""
        end = self.row(apex) if apex is not None else len(self.frames) - 1
        start = self.row(onset) if onset is not None else end
        if start > end:
            start, end = end, start
        rows = slice(start, end + 1)
        seen = (self.active[rows] & self.success[rows, None]).any(0)
        return tuple(sorted(au for au, on in zip(self.aus, seen) if on and au in AU_VOCAB))


def read_openface_csv(path: str | Path) -> OpenFaceAUs:
    """Parse an OpenFace 2.x FeatureExtraction CSV; malformed files are one-line errors naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MertoolError(f"{path}: cannot read OpenFace CSV ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise MertoolError(f"{path}: not a text CSV (expected OpenFace FeatureExtraction output)") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or not any(c.strip() for c in rows[0]):
        raise MertoolError(f"{path}: empty file (expected an OpenFace CSV with a header line)")
    header = [c.strip() for c in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    presence = [(int(m.group(1)), i) for i, name in enumerate(header) if (m := _PRESENCE.match(name))]
    missing = [name for name in ("frame", "success") if name not in col]
    if missing or not presence:
        need = missing + ([] if presence else ["AU01_c ... AU45_c"])
        raise MertoolError(f"{path}: line 1: not an OpenFace AU CSV: missing column(s) {', '.join(need)} "
                           f"(found: {', '.join(header[:8])}{', ...' if len(header) > 8 else ''})")
    face_col = col.get("face_id")
    frames, success, active = [], [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise MertoolError(f"{path}: line {lineno}: {len(row)} fields, the header has {len(header)}")
        try:
            if face_col is not None and int(float(row[face_col])) != 0:
                continue
            frame = int(float(row[col["frame"]]))
            ok = float(row[col["success"]]) >= 0.5
            bits = [float(row[i]) >= 0.5 for _, i in presence]
        except ValueError:
            bad = next((header[i] for i in [col["frame"], col["success"], *(i for _, i in presence)]
                        if parse_number(row[i]) is None), "?")
            raise MertoolError(f"{path}: line {lineno}: column {bad} = {row[col.get(bad, 0)].strip()!r}: "
                               f"expected a number") from None
        frames.append(frame)
        success.append(ok)
        active.append(bits)
    if not frames:
        raise MertoolError(f"{path}: no data rows for face 0 (expected one row per frame)")
    return OpenFaceAUs(path, np.array(frames, np.int64), np.array(success, bool), tuple(au for au, _ in presence),
                       np.array(active, bool).reshape(len(frames), len(presence)))


def aus_from_openface(path: str | Path, onset: int | None = None, apex: int | None = None) -> tuple[int, ...]:
    """The 21-AU vocabulary codes active from onset to apex in an OpenFace CSV (see OpenFaceAUs.codes_between)."""
    return read_openface_csv(path).codes_between(onset, apex)
