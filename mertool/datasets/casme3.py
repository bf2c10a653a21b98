"""CAS(ME)^3 part A: `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` (Subject, Filename, Onset, Apex, Offset, AU,
Objective class, emotion; frame numbers as text). Frames: `<root>/spNO.1/a/color/355.jpg` as the dataset ships them
(part_A/data/part_A/...), or `<root>/spNO.1/a/355.jpg` without the modality level; matched by frame number.

A Filename ('a') is one long recording holding several micro-expressions, so sample_id is '<filename>_<onset>'."""
from __future__ import annotations

from pathlib import Path

from mertool.data.records import SampleRecord
from mertool.datasets._sheet import attach_frames, read_table, sheet_records

KIND = "casme3"
TITLE = "CAS(ME)^3 part A"
SHEET_NAMES = ("cas(me)3_part_A*.xlsx",)
COLUMNS = {"subject": ("Subject",), "filename": ("Filename",), "onset": ("Onset", "OnsetFrame"),
           "apex": ("Apex", "ApexFrame"), "offset": ("Offset", "OffsetFrame"), "aus": ("AU", "AUs", "Action Units"),
           "emotion": ("emotion", "Estimated Emotion")}
OPTIONAL = {"objective": ("Objective class", "Objective classes")}
MODALITY = "color"


def matches(keys: set[str]) -> bool:
    """Header signature: short 'Onset'/'Apex' names and 'Objective class'."""
    return {"subject", "filename", "onset", "apex", "offset", "au", "emotion"} <= keys


def load(sheet: Path, folder: Path, layout: str | None = None) -> tuple[list[SampleRecord], dict]:
    """Records of a CAS(ME)^3 part A sheet with frame paths resolved under `folder`."""
    table = read_table(sheet, COLUMNS, OPTIONAL, prefer_sheets=("label",))
    records = sheet_records(table, KIND, subject_width=0, sample_id=lambda f, onset: f"{f}_{onset}")
    report = attach_frames(records, folder, lambda r: (r.subject, r.sample_id.rsplit("_", 1)[0]), layout,
                           inner=(MODALITY,))
    return records, {"sheet": str(table.path), "sheet_name": table.sheet, "header_row": table.header_row, **report}
