"""SAMM: `SAMM_Micro_FACS_Codes_v2.xlsx` (sheet MICRO_ONLY, header after a preamble or on row 1),
frames in `SAMM/006/006_1_2/006_05562.jpg` (matched by frame number, whatever the zero padding)."""
from __future__ import annotations

from pathlib import Path

from mertool.data.records import SampleRecord
from mertool.datasets._sheet import attach_frames, read_table, sheet_records

KIND = "samm"
TITLE = "SAMM"
SHEET_NAMES = ("SAMM*FACS*.xlsx",)
COLUMNS = {"subject": ("Subject",), "filename": ("Filename",), "onset": ("Onset Frame", "Onset"),
           "apex": ("Apex Frame", "Apex"), "offset": ("Offset Frame", "Offset"), "aus": ("Action Units", "AUs", "AU"),
           "emotion": ("Estimated Emotion", "Emotion")}
OPTIONAL = {"objective": ("Objective Classes", "Objective Class"), "notes": ("Notes",)}


def matches(keys: set[str]) -> bool:
    """Header signature: SAMM's 'Inducement Code' next to the frame columns."""
    return {"subject", "filename", "inducementcode", "onsetframe"} <= keys


def load(sheet: Path, folder: Path, layout: str | None = None) -> tuple[list[SampleRecord], dict]:
    """Records of a SAMM sheet with frame paths resolved under `folder`."""
    table = read_table(sheet, COLUMNS, OPTIONAL, prefer_sheets=("MICRO_ONLY",))
    records = sheet_records(table, KIND, subject_width=3)
    report = attach_frames(records, folder, lambda r: (r.subject, r.sample_id), layout)
    return records, {"sheet": str(table.path), "sheet_name": table.sheet, "header_row": table.header_row, **report}
