"""Generic CSV manifest for any other data: one row per sample with
`subject, sample_id, onset_path, apex_path, emotion, aus` (optional `onset, apex, offset` frame numbers).
Paths are relative to the manifest's folder or absolute."""
from __future__ import annotations

from pathlib import Path

from mertool.data.aus import parse_aus
from mertool.data.records import SampleRecord
from mertool.datasets._sheet import cell_text, read_table, to_frame
from mertool.errors import MertoolError

KIND = "manifest"
TITLE = "CSV manifest"
SHEET_NAMES = ("*.csv",)
COLUMNS = {"subject": ("subject",), "sample_id": ("sample_id",), "onset_path": ("onset_path",),
           "apex_path": ("apex_path",), "emotion": ("emotion",), "aus": ("aus", "au", "action units")}
OPTIONAL = {"onset": ("onset", "onset_frame"), "apex": ("apex", "apex_frame"), "offset": ("offset", "offset_frame")}


def matches(keys: set[str]) -> bool:
    """Header signature: the two path columns."""
    return {"onsetpath", "apexpath"} <= keys


def _path(base: Path, text: str) -> Path | None:
    p = Path(text).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def load(sheet: Path, folder: Path | None = None, layout: str | None = None) -> tuple[list[SampleRecord], dict]:
    """Records of a manifest; a frame file that does not exist leaves its path None (preprocess records the skip)."""
    table = read_table(sheet, COLUMNS, OPTIONAL)
    base = table.path.resolve().parent
    records, missing = [], []
    for row, values in table.rows:
        fields = {k: cell_text(table.get(values, k)) for k in COLUMNS}
        for key in ("subject", "sample_id", "onset_path", "apex_path"):
            if not fields[key]:
                raise MertoolError(f"{table.where(row, key)}: empty; expected a {key.replace('_', ' ')}")
        parsed = parse_aus(fields["aus"])
        rec = SampleRecord(
            dataset=KIND, subject=fields["subject"], sample_id=fields["sample_id"],
            onset=to_frame(table, row, values, "onset", required=False),
            apex=to_frame(table, row, values, "apex", required=False),
            offset=to_frame(table, row, values, "offset", required=False),
            onset_path=_path(base, fields["onset_path"]), apex_path=_path(base, fields["apex_path"]),
            emotion=fields["emotion"], aus_raw=fields["aus"], aus=parsed.codes, aus_outside=parsed.outside, row=row,
            aus_known=not parsed.unknown)  # '?', 'unknown' or empty: not coded, which is not "no AU active"
        for what in ("onset_path", "apex_path"):
            p = getattr(rec, what)
            if not p.is_file():
                rec.warnings.append(f"{table.where(row, what)}: {p} not found")
                setattr(rec, what, None)
        if rec.onset_path is None or rec.apex_path is None:
            missing.append(rec.key)
        records.append(rec)
    return records, {"sheet": str(table.path), "sheet_name": table.sheet, "header_row": table.header_row,
                     "frames_root": str(base), "missing_frames": missing}
