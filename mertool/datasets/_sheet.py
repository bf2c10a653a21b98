"""Shared helpers for the adapters: reading annotation sheets (xlsx/csv) and finding frame files on disk."""
from __future__ import annotations

import csv
import itertools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mertool.errors import MertoolError
from mertool.number_text import parse_number

SHEET_SUFFIXES = (".xlsx", ".xlsm", ".csv", ".xls")  # .xls is found only to say it needs converting
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FRAME_FOLDER = 50   # more image files than this: a frame folder (find_sheets, find_frame_roots)
HEADER_SCAN_ROWS = 50  # SAMM v2 has a 13-row preamble; anything deeper is not a header


def norm(text) -> str:
    """Header key: lowercase letters and digits only ('Onset Frame' and 'OnsetFrame' -> 'onsetframe')."""
    return re.sub(r"[^a-z0-9]", "", str(text).lower()) if text is not None else ""


def cell_text(value) -> str:
    """A cell as stripped text: None -> '', 12.0 -> '12'."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


@dataclass
class Table:
    """The data rows of one sheet below its header, with the header's column positions."""

    path: Path
    sheet: str
    header_row: int                      # 1-based
    columns: dict[str, int]              # column key -> index
    rows: list[tuple[int, tuple]] = field(default_factory=list)   # (1-based sheet row, values)

    def get(self, values: tuple, key: str):
        """Value of column `key` in a row (None when the column is absent or the row is short)."""
        i = self.columns.get(key)
        return values[i] if i is not None and i < len(values) else None

    def where(self, row: int, key: str) -> str:
        """'file row N, column X' for error messages."""
        return f"{self.path} row {row}, column {key!r}"


def _sheets(path: Path, max_rows: int | None = None) -> list[tuple[str, list[tuple]]]:
    """All sheets of a workbook (or the one 'sheet' of a CSV) as lists of row tuples (the first `max_rows` only)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                return [(path.name, [tuple(r) for r in itertools.islice(csv.reader(f), max_rows)])]
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise MertoolError(f"{path}: cannot read CSV ({e})") from None
    if suffix == ".xls":
        raise MertoolError(f"{path}: old .xls format is not supported; save the sheet as .xlsx")
    import openpyxl
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises zipfile/KeyError/InvalidFileException for damaged files
        raise MertoolError(f"{path}: cannot read spreadsheet ({type(e).__name__}: {e})") from None
    try:
        return [(ws.title, list(ws.iter_rows(min_row=1, max_row=max_rows, values_only=True))) for ws in wb.worksheets]
    finally:
        wb.close()


def _match_header(row: tuple, columns: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    """Column key -> index for every key whose alias appears in this row (first occurrence wins)."""
    keys = [norm(c) for c in row]
    found = {}
    for key, aliases in columns.items():
        for alias in map(norm, aliases):
            if alias in keys:
                found[key] = keys.index(alias)
                break
    return found


def read_table(path: Path, required: Mapping[str, tuple[str, ...]], optional: Mapping[str, tuple[str, ...]] = {},
               prefer_sheets: Iterable[str] = ()) -> Table:
    """Find the header row (by content, on any sheet) and return the rows under it.

    `required`/`optional` map a column key to its accepted header spellings (compared after `norm`; the first is
    the one error messages show).
    """
    path = Path(path)
    if not path.is_file():
        raise MertoolError(f"{path}: annotation sheet not found")
    sheets = _sheets(path)
    order = sorted(sheets, key=lambda s: s[0] not in tuple(prefer_sheets))  # stable: preferred sheets first
    best: tuple[int, str, int, dict] | None = None
    for title, rows in order:
        for i, row in enumerate(rows[:HEADER_SCAN_ROWS]):
            found = _match_header(row, required)
            if len(found) == len(required):
                found.update(_match_header(row, optional))
                data = [(i + 2 + j, r) for j, r in enumerate(rows[i + 1:]) if any(cell_text(c) for c in r)]
                return Table(path, title, i + 1, found, data)
            if len(found) >= 2 and (best is None or len(found) > best[0]):
                best = (len(found), title, i + 1, found, row)
    expected = ", ".join(a[0] for a in required.values())
    if best is not None:
        missing = ", ".join(required[k][0] for k in required if k not in best[3])
        raise MertoolError(f"{path}: header on sheet {best[1]!r} row {best[2]} lacks column(s) {missing} "
                           f"(expected columns {expected}; found {_header_text(best[4])})")
    first = next(((t, i + 1, r) for t, rows in order for i, r in enumerate(rows[:HEADER_SCAN_ROWS])
                  if any(cell_text(c) for c in r)), None)
    seen = f"; first row found: sheet {first[0]!r} row {first[1]}: {_header_text(first[2])}" if first else ""
    raise MertoolError(f"{path}: no header row with columns {expected} found "
                       f"(sheets: {', '.join(t for t, _ in sheets)}{seen})")


def _header_text(row: tuple) -> str:
    """A header row as the user sees it: 'Subject, Filename, Onset, ...' (blank cells left out)."""
    return ", ".join(cell_text(c) for c in row if cell_text(c)) or "(empty)"


def first_row(path: Path) -> str:
    """The first non-empty row of a sheet as text ('sheet S row N: a, b, c'), for errors about unknown headers."""
    try:
        sheets = _sheets(Path(path), max_rows=HEADER_SCAN_ROWS)
    except MertoolError as exc:
        return str(exc)
    for title, rows in sheets:
        for i, row in enumerate(rows):
            if any(cell_text(c) for c in row):
                return f"sheet {title!r} row {i + 1}: {_header_text(row)}"
    return "no non-empty row"


def header_keys(path: Path) -> set[str]:
    """Normalised cell texts of the first rows of every sheet, for detecting which dataset a sheet belongs to."""
    keys: set[str] = set()
    for _, rows in _sheets(path, max_rows=HEADER_SCAN_ROWS):
        for row in rows:
            keys.update(norm(c) for c in row if c is not None)
    return keys


def to_frame(table: Table, row: int, values: tuple, key: str, required: bool = True) -> int | None:
    """A frame-number cell as int; '/', '-' or blank -> None (an error when required)."""
    text = cell_text(table.get(values, key))
    if text in ("", "/", "-", "?"):
        if required:
            raise MertoolError(f"{table.where(row, key)}: empty; expected a frame number")
        return None
    number = parse_number(text)
    if number is None or not number.is_integer() or number < 0:
        raise MertoolError(f"{table.where(row, key)}: {text!r} is not a frame number")
    return int(number)


def find_sheets(folder: Path, max_depth: int = 6) -> list[Path]:
    """Every xlsx/xlsm/csv/xls file under `folder`, down to `max_depth` folders, in os.walk's top-down sorted order.

    A frame folder (a folder below `folder` with more than FRAME_FOLDER image files) is neither searched nor descended
    into, and its listing is read only until that many images are seen: a data set of a million frames costs about
    FRAME_FOLDER names per frame folder, not a million (on a network disk a full listing takes minutes). The folder
    given is always searched whole. Hidden files and folders are skipped; symlinked folders are not followed.
    """
    found = []
    pending = [(Path(folder), 0)]
    while pending:
        here, depth = pending.pop()
        sheets, subdirs, images = [], [], 0
        try:
            with os.scandir(here) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith("."):
                        continue
                    if entry.is_dir():
                        if not entry.is_symlink():
                            subdirs.append(name)
                    elif name.lower().endswith(IMAGE_SUFFIXES):
                        images += 1
                        if depth > 0 and images > FRAME_FOLDER:
                            break
                    elif name.lower().endswith(SHEET_SUFFIXES) and not name.startswith("~$"):
                        sheets.append(name)
        except OSError:  # as os.walk: a folder that cannot be listed is passed over
            continue
        if depth > 0 and images > FRAME_FOLDER:
            continue
        found += [here / f for f in sorted(sheets)]
        if depth < max_depth:
            pending += [(here / d, depth + 1) for d in sorted(subdirs, reverse=True)]
    return found


# ---------------------------------------------------------------------------------------------- frames on disk

_DIGITS = re.compile(r"(\d+)(?!.*\d)")


def frame_number(name: str) -> int | None:
    """Integer frame number of a frame file: the last digit run of its stem ('reg_img46' -> 46, '006_05562' -> 5562)."""
    m = _DIGITS.search(Path(name).stem)
    return int(m.group(1)) if m else None


@lru_cache(maxsize=4096)
def frame_index(folder: Path) -> dict[int, Path]:
    """Frame number -> image file in one sample folder (matched by number, so any zero padding works)."""
    index: dict[int, Path] = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return index
    for name in names:
        if name.lower().endswith(IMAGE_SUFFIXES):
            n = frame_number(name)
            if n is not None:
                index.setdefault(n, folder / name)
    return index


@lru_cache(maxsize=4096)
def _listing(folder: Path) -> dict[str, str]:
    try:
        return {name.lower(): name for name in os.listdir(folder)}
    except OSError:
        return {}


def child(folder: Path, name: str) -> Path | None:
    """folder/name when it is a directory, matching the name case-insensitively."""
    real = _listing(folder).get(name.lower())
    return folder / real if real is not None and (folder / real).is_dir() else None


def find_frame_roots(folder: Path, subject_dirs: set[str], max_depth: int = 6) -> list[tuple[Path, int]]:
    """Folders under `folder` (itself included) that hold subject folders, with how many subjects each holds."""
    wanted = {s.lower() for s in subject_dirs}
    roots = []
    base = len(folder.parts)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        hits = [d for d in dirnames if d.lower() in wanted]
        if hits:
            roots.append((Path(dirpath), len(hits)))
            dirnames[:] = [d for d in dirnames if d.lower() not in wanted]  # a subject folder holds no other root
        if len(Path(dirpath).parts) - base >= max_depth or len(filenames) > FRAME_FOLDER:  # deep, or frame folder
            dirnames[:] = []
    return roots


def is_cropped(root: Path, base: Path | None = None) -> bool:
    """A frame root of already-cropped faces (CASME II 'Cropped', SAMM 'SAMM_CROP', ...); only `base` (the dataset
    folder) and the folders below it count, so a parent such as /data/cropped_sets/ does not make raw frames 'cropped'."""
    parts = root.relative_to(base.parent).parts if base is not None and root.is_relative_to(base) else root.parts
    return any("crop" in part.lower() for part in parts)


def choose_root(roots: list[tuple[Path, int]], layout: str | None, base: Path | None = None) -> Path | None:
    """The root with most subjects, preferring raw frames unless layout == 'cropped'."""
    if layout not in (None, "raw", "cropped"):
        raise MertoolError(f"frame layout {layout!r}: expected 'raw' or 'cropped'")
    want_cropped = layout == "cropped"
    ranked = sorted(roots, key=lambda r: (is_cropped(r[0], base) == want_cropped, r[1]), reverse=True)
    if not ranked or (layout is not None and is_cropped(ranked[0][0], base) != want_cropped):
        return None
    return ranked[0][0]


def attach_frames(records, folder: Path, rel_dir: Callable, layout: str | None = None,
                  inner: tuple[str, ...] = ()) -> dict:
    """Set onset_path/apex_path of each record from `root/<rel_dir(record)...>/[inner]/<frame file>`.

    The root is searched under `folder`; frames are matched by number. A missing frame leaves the path None and
    adds a warning to the record (preprocess records the skip). Returns report entries.
    """
    folder = Path(folder).resolve()
    frame_index.cache_clear()  # folders may have changed since the last call (synth, tests)
    _listing.cache_clear()
    subjects = {rel_dir(r)[0] for r in records}
    roots = find_frame_roots(folder, subjects) if folder.is_dir() else []
    root = choose_root(roots, layout, folder)
    report = {"frames_root": str(root) if root else None,
              "frame_roots_found": [str(r) for r, _ in roots], "missing_frames": []}
    if root is None:
        report["frames_warning"] = (f"{folder}: no frame folders found ({layout or 'any'} layout; looked for "
                                    f"subject folders such as {sorted(subjects)[:3]})")
        report["missing_frames"] = [r.key for r in records]
        return report
    for rec in records:
        d: Path | None = root
        for part in rel_dir(rec):
            d = child(d, part) if d is not None else None
        for name in inner:  # an optional extra level, e.g. CAS(ME)^3 '<sample>/color'
            if d is not None and child(d, name) is not None:
                d = child(d, name)
        frames = frame_index(d) if d is not None else {}
        rec.onset_path = frames.get(rec.onset)
        rec.apex_path = frames.get(rec.apex)
        if d is None:
            rec.warnings.append(f"sample folder {root.joinpath(*rel_dir(rec))} not found")
        else:
            for what, n, p in (("onset", rec.onset, rec.onset_path), ("apex", rec.apex, rec.apex_path)):
                if p is None:
                    rec.warnings.append(f"{what} frame {n} not found in {d}")
        if rec.onset_path is None or rec.apex_path is None:
            report["missing_frames"].append(rec.key)
    return report


def check_apex(rec, table: Table, row: int) -> None:
    """Estimate a missing apex (middle of onset..offset) and warn about one outside onset..offset."""
    if rec.apex is None:
        if rec.offset is None:
            raise MertoolError(f"{table.where(row, 'apex')}: apex and offset both missing; cannot estimate the apex")
        rec.apex = (rec.onset + rec.offset) // 2
        rec.apex_estimated = True
        rec.warnings.append(f"{rec.key}: apex missing in the sheet; estimated as frame {rec.apex} "
                            f"(middle of {rec.onset}..{rec.offset})")
    elif rec.offset is not None and not rec.onset <= rec.apex <= rec.offset:
        rec.warnings.append(f"{rec.key}: apex {rec.apex} outside onset..offset {rec.onset}..{rec.offset}")


def sheet_records(table: Table, kind: str, subject_width: int = 0,
                  sample_id: Callable[[str, int], str] | None = None, malformed: list | None = None) -> list:
    """One SampleRecord per data row of a sheet with subject/filename/onset/apex/offset/aus/emotion columns.

    Numeric subjects are zero-padded to `subject_width` ('1' -> '01'); `sample_id(filename, onset)` builds the id
    when a filename is not unique. Rows with neither subject nor filename (notes under the table) are ignored.
    A malformed row is an error, or, when a `malformed` list is given, appended to it as {row, detail} and skipped.
    """
    if malformed is not None:
        records = []
        for row, values in table.rows:
            try:
                records += sheet_records(Table(table.path, table.sheet, table.header_row, table.columns,
                                               [(row, values)]), kind, subject_width, sample_id)
            except MertoolError as exc:
                malformed.append({"row": row, "detail": str(exc)})
        return records
    from mertool.data.aus import parse_aus
    from mertool.data.records import SampleRecord

    records = []
    for row, values in table.rows:
        subject, filename = cell_text(table.get(values, "subject")), cell_text(table.get(values, "filename"))
        if not subject and not filename:
            continue
        for key, text in (("subject", subject), ("filename", filename)):
            if not text:
                raise MertoolError(f"{table.where(row, key)}: empty; expected a {key}")
        if subject_width and subject.isdigit():
            subject = subject.zfill(subject_width)
        onset = to_frame(table, row, values, "onset")
        aus_raw = cell_text(table.get(values, "aus"))
        parsed = parse_aus(aus_raw)
        rec = SampleRecord(
            dataset=kind, subject=subject, sample_id=sample_id(filename, onset) if sample_id else filename,
            onset=onset, apex=to_frame(table, row, values, "apex", required=False),
            offset=to_frame(table, row, values, "offset", required=False), onset_path=None, apex_path=None,
            emotion=cell_text(table.get(values, "emotion")), aus_raw=aus_raw, aus=parsed.codes,
            aus_outside=parsed.outside, row=row,
            # '?', 'unknown' or an empty cell in a sheet that codes AUs: not coded, which is not "no AU active"
            aus_known="aus" not in table.columns or not parsed.unknown)
        check_apex(rec, table, row)
        records.append(rec)
    return records
