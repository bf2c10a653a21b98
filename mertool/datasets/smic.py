"""SMIC: no annotation sheet, the labels are folder names.

    SMIC/HS/s1/micro/negative/s1_ne_01/image046472.bmp           (also the VIS and NIR parts)
    SMIC/SMIC_all_cropped/HS/s01/micro/positive/s1_po_01/reg_image046472.bmp   (the cropped release)

Classes are the emotion folders (positive, negative, surprise); `non_micro` folders are not samples. A clip folder is
the micro-expression itself: onset = its first frame, offset = its last. SMIC gives no apex and no AU codes:
`apex='spot'` (default) finds the apex with mertool's spotter (the one `predict` uses on videos), `apex='middle'` takes
the middle frame; the report records the frame and the method of every clip. Subjects are written `s01` whatever
the folder says (`s1` in the raw release), so both releases give the same sample keys.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from mertool.data.records import SampleRecord
from mertool.datasets._sheet import choose_root, frame_index
from mertool.errors import MertoolError

KIND = "smic"
TITLE = "SMIC"
SHEET_NAMES: tuple[str, ...] = ()
SHEETLESS = True            # labels come from folder names
AUS_KNOWN = False           # SMIC codes no Action Units
PARTS = ("HS", "VIS", "NIR")
APEX_METHODS = ("spot", "middle")
MICRO, NON_MICRO = "micro", "non_micro"
# SMIC-HS as published (Li et al., FG 2013) and as MEGC 2019 uses it
PUBLISHED = {"HS": {"clips": 164, "subjects": 16, "emotions": {"positive": 51, "negative": 70, "surprise": 43}}}
_SUBJECT = re.compile(r"^s(\d+)$", re.IGNORECASE)


def matches(keys: set[str]) -> bool:
    """SMIC has no sheet, so no header matches it."""
    return False


def subject_name(folder: str) -> str | None:
    """'s1' or 's01' -> 's01'; None for other folder names."""
    m = _SUBJECT.match(folder)
    return f"s{int(m.group(1)):02d}" if m else None


def find_parts(folder: Path, max_depth: int = 4) -> dict[str, list[tuple[Path, int]]]:
    """Part name (HS, VIS, NIR) -> folders holding its subject folders (`s1/micro/...`), with their subject counts."""
    found: dict[str, list[tuple[Path, int]]] = {}
    base = len(folder.parts)
    for dirpath, dirnames, _ in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        subjects = [d for d in dirnames if subject_name(d) and _has_child(here / d, MICRO)]
        if subjects:
            part = next((p for p in PARTS if p.lower() == here.name.lower()), "HS" if here == folder else None)
            if part is not None:
                found.setdefault(part, []).append((here, len(subjects)))
            dirnames[:] = []  # a subject folder holds frames, not other parts
        elif len(here.parts) - base >= max_depth:
            dirnames[:] = []
    return found


def _has_child(folder: Path, name: str) -> bool:
    try:
        return any(e.is_dir() and e.name.lower() == name for e in os.scandir(folder))
    except OSError:
        return False


def _dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def load(sheet, folder: Path, layout: str | None = None, part: str = "HS", apex: str = "spot",
         on_clip: Callable[[int, int], None] | None = None, spotter=None) -> tuple[list[SampleRecord], dict]:
    """Records of one SMIC part under `folder` (raw frames unless layout='cropped'), apex chosen by `apex`."""
    part = str(part).upper()
    if part not in PARTS:
        raise MertoolError(f"--smic-part {part}: expected one of {', '.join(PARTS)}")
    if apex not in APEX_METHODS:
        raise MertoolError(f"--smic-apex {apex}: expected one of {', '.join(APEX_METHODS)}")
    folder = Path(folder).resolve()
    parts = find_parts(folder)
    root = choose_root(parts.get(part, []), layout, folder)
    if root is None:
        have = ", ".join(f"{p} ({', '.join(str(r) for r, _ in v)})" for p, v in sorted(parts.items())) or "none"
        raise MertoolError(f"{folder}: no SMIC {part} frames found ({layout or 'any'} layout; expected "
                           f"{part}/s1/micro/<emotion>/<clip>/image*.bmp; parts found: {have})")
    records, non_micro, warnings = [], 0, []
    for sdir in _dirs(root):
        subject = subject_name(sdir.name)
        if subject is None:
            continue
        for kind_dir in _dirs(sdir):
            if kind_dir.name.lower() == NON_MICRO:
                non_micro += sum(len(_dirs(e)) for e in _dirs(kind_dir)) or len(_dirs(kind_dir))
                continue
            if kind_dir.name.lower() != MICRO:
                continue
            for emo_dir in _dirs(kind_dir):
                for clip in _dirs(emo_dir):
                    records.append(_record(subject, emo_dir.name, clip, warnings))
    methods: Counter = Counter()
    chosen = {}
    if apex == "spot" and spotter is None and records:
        from mertool.spotting.apex import Spotter

        spotter = Spotter()  # one aligner (dlib models) for every clip
    for i, rec in enumerate(records):
        if rec.onset is not None:
            rec.apex, method = _apex(rec, apex, spotter)
            methods[method.split(" ")[0]] += 1
            rec.apex_path = frame_index(rec.onset_path.parent)[rec.apex]
            chosen[rec.key] = {"onset": rec.onset, "apex": rec.apex, "offset": rec.offset, "method": method}
            if method != apex:
                warnings.append(f"{rec.key}: {method}")
        if on_clip is not None:
            on_clip(i + 1, len(records))
    missing = [r.key for r in records if r.onset_path is None]
    report = {"sheet": None, "frames_root": str(root), "smic_part": part, "non_micro_clips": non_micro,
              "apex_chosen": {"method": apex, "methods_used": dict(methods), "clips": chosen},
              "missing_frames": missing, "sheet_warnings": warnings}
    if part in PUBLISHED:
        report["published"] = {"name": f"SMIC-{part}", **PUBLISHED[part]}
    return records, report


def _record(subject: str, emotion: str, clip: Path, warnings: list[str]) -> SampleRecord:
    """One clip folder: onset = first frame, offset = last; a gap in the frame numbers is a warning."""
    frames = frame_index(clip)
    numbers = sorted(frames)
    rec = SampleRecord(dataset=KIND, subject=subject, sample_id=clip.name, onset=numbers[0] if numbers else None,
                       apex=None, offset=numbers[-1] if numbers else None,
                       onset_path=frames[numbers[0]] if numbers else None, apex_path=None, emotion=emotion.lower(),
                       aus_raw="", aus=(), apex_estimated=True, aus_known=AUS_KNOWN)
    if not numbers:
        rec.warnings.append(f"no frame files in {clip}")
    elif len(numbers) != numbers[-1] - numbers[0] + 1:
        gaps = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        listed = ", ".join(map(str, gaps[:5])) + (" ..." if len(gaps) > 5 else "")
        warnings.append(f"{rec.key}: {len(gaps)} frame(s) missing inside the clip ({listed}); the clip is used "
                        f"with the frames present")
    return rec


def _apex(rec: SampleRecord, method: str, spotter) -> tuple[int, str]:
    """(apex frame, how it was chosen); spotting that fails falls back to the middle frame, saying why."""
    numbers = sorted(frame_index(rec.onset_path.parent))
    middle = numbers[(len(numbers) - 1) // 2]
    if method == "middle" or len(numbers) < 3:
        return middle, "middle" if method == "middle" else "middle (clip too short to spot)"
    from mertool.spotting.apex import FrameSource

    try:
        return spotter.spot(FrameSource(rec.onset_path.parent)).apex, "spot"
    except MertoolError as exc:
        return middle, f"middle (spotting failed: {exc})"
