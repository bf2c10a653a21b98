"""CASME II: `CASME2-coding-20140508.xlsx` / `CASME2-coding-20190701.xlsx`, frames in `CASME2-RAW/sub01/EP02_01f/img46.jpg`
or `Cropped/sub01/EP02_01f/reg_img46.jpg`."""
from __future__ import annotations

from pathlib import Path

from mertool.data.records import SampleRecord
from mertool.datasets._sheet import attach_frames, read_table, sheet_records

KIND = "casme2"
TITLE = "CASME II"
SHEET_NAMES = ("CASME2-coding-*.xlsx",)
COLUMNS = {"subject": ("Subject",), "filename": ("Filename",), "onset": ("OnsetFrame", "Onset"),
           "apex": ("ApexFrame", "Apex"), "offset": ("OffsetFrame", "Offset"), "aus": ("Action Units", "AUs", "AU"),
           "emotion": ("Estimated Emotion", "Emotion")}
OPTIONAL = {"objective": ("Objective Classes", "Objective Class")}


def matches(keys: set[str]) -> bool:
    """Header signature: CASME II's frame columns and 'Estimated Emotion' (SAMM's extra columns are checked first)."""
    return {"subject", "filename", "onsetframe", "apexframe", "estimatedemotion"} <= keys


def subject_dir(subject: str) -> str:
    """'01' (or 1) -> 'sub01'."""
    return f"sub{subject.zfill(2)}" if subject.isdigit() else subject


def load(sheet: Path, folder: Path, layout: str | None = None) -> tuple[list[SampleRecord], dict]:
    """Records of a CASME II sheet with frame paths resolved under `folder` (raw frames unless layout='cropped')."""
    table = read_table(sheet, COLUMNS, OPTIONAL)
    records = sheet_records(table, KIND, subject_width=2)
    report = attach_frames(records, folder, lambda r: (subject_dir(r.subject), r.sample_id), layout)
    return records, {"sheet": str(table.path), "sheet_name": table.sheet, "header_row": table.header_row, **report}
