"""MMEW: `MMEW_Micro_Exp.xlsx` (Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated
Emotion, remarks), frames in `Micro_Expression/<emotion>/<clip>/<n>.jpg` (emotions happiness, surprise, anger, disgust,
fear, sadness, others).

Its header is CASME II's plus a `remarks` column, which is what tells the two apart (`--dataset mmew` for a copy
without it). A malformed row (a frame cell that is not a number, a missing subject) is skipped and listed in the
preprocess report instead of stopping the run.
"""
from __future__ import annotations

from pathlib import Path

from mertool.data.records import SampleRecord
from mertool.datasets._sheet import attach_frames, read_table, sheet_records

KIND = "mmew"
TITLE = "MMEW"
SHEET_NAMES = ("MMEW*.xlsx",)
COLUMNS = {"subject": ("Subject",), "filename": ("Filename",), "onset": ("OnsetFrame", "Onset Frame", "Onset"),
           "apex": ("ApexFrame", "Apex Frame", "Apex"), "offset": ("OffsetFrame", "Offset Frame", "Offset"),
           "aus": ("Action Units", "AUs", "AU"), "emotion": ("Estimated Emotion", "Emotion")}
OPTIONAL = {"remarks": ("remarks", "remark")}
FRAMES = "Micro_Expression"


def matches(keys: set[str]) -> bool:
    """Header signature: CASME II's frame and emotion columns and MMEW's 'remarks'."""
    return {"subject", "filename", "onsetframe", "apexframe", "estimatedemotion", "remarks"} <= keys


def load(sheet: Path, folder: Path, layout: str | None = None) -> tuple[list[SampleRecord], dict]:
    """Records of an MMEW sheet with frame paths resolved under `folder` (…/Micro_Expression/<emotion>/<clip>/)."""
    table = read_table(sheet, COLUMNS, OPTIONAL)
    malformed: list[dict] = []
    records = sheet_records(table, KIND, malformed=malformed)
    report = attach_frames(records, folder, lambda r: (r.emotion, r.sample_id), layout)
    return records, {"sheet": str(table.path), "sheet_name": table.sheet, "header_row": table.header_row,
                     "malformed_rows": malformed, **report}
