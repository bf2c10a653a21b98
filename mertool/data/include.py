"""`data.include: FILE`: a sample list that restricts a recipe to those samples, and what it left out.

Two formats. mertool's own, one `dataset/subject/sample` a line:

    casme2/01/EP02_01f
    samm/006/006_1_2
    smic/s1/s1_ne_01        # comments and blank lines are ignored

and the MEGC 2019 composite list as the organisers publish it (`combined_3class_gt.csv`, shipped as
recipes/lists/megc2019_combined_3class_gt.csv): `dataset,subject,filename,label` with no header, CRLF line ends and
label 0 negative / 1 positive / 2 surprise; its subjects are written `sub01` (CASME II), `6` (SAMM, while its
filenames say `006_1_2`) and `s01` (SMIC, whose folders and clip names say `s1` and `s1_ne_01`).

Subjects and sample ids are compared without zero padding ('1' = '01' = 'sub01', 's1' = 's01', 's1_ne_01' =
's01_ne_01') and without the `<dataset>_` prefix that `cache merge` adds; everything is compared case-insensitively.
A list with labels is also checked against the cache: a clip whose class under the recipe's class map is not the
list's label is reported (include_report).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mertool.errors import MertoolError

MEGC_LABELS = ("negative", "positive", "surprise")  # combined_3class_gt.csv's labels 0, 1, 2
SHOWN = 8  # names printed per kind of difference; run.json keeps them all


def _digits(text: str) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group())), text)


def _subject_key(subject: str, dataset: str) -> str:
    s = str(subject).strip().lower()
    prefix = f"{dataset.lower()}_"
    if s.startswith(prefix):
        s = s[len(prefix):]
    if re.fullmatch(r"sub\d+", s):  # CASME II's folders (and the MEGC list) say sub01 where its sheets say 1
        s = s[3:]
    return _digits(s)


def sample_key(dataset: str, subject: str, sample_id: str) -> tuple[str, str, str]:
    """What a line and a cache sample are compared by."""
    return str(dataset).strip().lower(), _subject_key(subject, str(dataset)), _digits(str(sample_id).strip().lower())


@dataclass
class IncludeList:
    """A parsed list: its samples (line number, key, the line's own text) and their labels when it has them."""

    path: Path
    entries: list[tuple[int, tuple[str, str, str], str]]
    labels: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def keys(self) -> set[tuple[str, str, str]]:
        return {k for _, k, _ in self.entries}


def read_include_list(path: str | Path) -> IncludeList:
    """Parse either format (a line with commas is a MEGC CSV row); a malformed line is an error naming it."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MertoolError(f"data.include {path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise MertoolError(f"data.include {path}: not a text file (expected a sample list)") from None
    out = IncludeList(path, [])
    for n, line in enumerate(text.splitlines(), start=1):  # splitlines: CRLF and LF alike
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "," in line:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) not in (3, 4) or not all(parts):
                raise MertoolError(f"{path} line {n}: {line!r}: expected dataset,subject,filename[,label] "
                                   f"(the MEGC 2019 list), e.g. casme2,sub01,EP02_01f,1")
            key = sample_key(*parts[:3])
            if len(parts) == 4:
                try:
                    out.labels[key] = MEGC_LABELS[int(parts[3])]
                except (ValueError, IndexError):
                    raise MertoolError(f"{path} line {n}: label {parts[3]!r}: expected 0 (negative), 1 (positive) "
                                       f"or 2 (surprise)") from None
        else:
            parts = [p.strip() for p in line.replace("\\", "/").split("/")]
            if len(parts) != 3 or not all(parts):
                raise MertoolError(f"{path} line {n}: {line!r}: expected dataset/subject/sample, "
                                   f"e.g. casme2/01/EP02_01f")
            key = sample_key(*parts)
        out.entries.append((n, key, "/".join(parts[:3])))
    if not out.entries:
        raise MertoolError(f"{path}: data.include lists no sample (expected dataset/subject/sample lines)")
    return out


def read_include(path: str | Path) -> list[tuple[int, tuple[str, str, str]]]:
    """(line number, key) of every sample in the list."""
    return [(n, k) for n, k, _ in read_include_list(path).entries]


def _cache_keys(data) -> list[tuple[str, str, str]]:
    return [sample_key(d, s, i) for d, s, i in zip(data.datasets, data.subjects, data.sample_ids)]


def include_mask(path: str | Path, data) -> tuple[np.ndarray, list[str]]:
    """(N bool over the cache: listed, lines of the list that match no cached sample)."""
    wanted = read_include_list(path)
    keys = _cache_keys(data)
    listed = wanted.keys()
    mask = np.array([k in listed for k in keys], dtype=bool)
    present = set(keys)
    missing = ["/".join(k) for _, k, _ in wanted.entries if k not in present]
    if wanted.entries and not mask.any():
        example = f"{data.datasets[0]}/{data.subjects[0]}/{data.sample_ids[0]}" if len(keys) else "(empty cache)"
        raise MertoolError(f"data.include {wanted.path}: none of its {len(wanted.entries)} samples is in the cache "
                           f"(its first: {wanted.entries[0][2]}; the cache's first: {example}); use a cache of "
                           f"those datasets, or --set data.include= to use the whole cache")
    return mask, missing


def include_report(path: str | Path, data, classmap) -> dict:
    """What the list did to this cache under a class map: listed clips missing from the cache, cached clips of the
    class map the list left out, and listed clips whose class is not the list's label (names as the list / cache
    write them)."""
    wanted = read_include_list(path)
    keys = _cache_keys(data)
    at = {k: i for i, k in enumerate(keys)}
    names = [f"{d}/{s}/{i}" for d, s, i in zip(data.datasets, data.subjects, data.sample_ids)]
    cls = [classmap.index(d, e) for d, e in zip(data.datasets, data.emotions)]
    listed = wanted.keys()
    missing = [text for _, k, text in wanted.entries if k not in at]
    left_out = [names[i] for i, k in enumerate(keys) if k not in listed and cls[i] >= 0]
    mismatch = []
    check = bool(wanted.labels) and set(wanted.labels.values()) <= set(classmap.classes)
    for _, k, text in wanted.entries:
        if check and k in at and k in wanted.labels:
            i = at[k]
            ours = classmap.classes[cls[i]] if cls[i] >= 0 else f"outside the class map ({data.emotions[i]})"
            if ours != wanted.labels[k]:
                mismatch.append(f"{text}: {ours}, the list says {wanted.labels[k]}")
    per = Counter(k[0] for _, k, _ in wanted.entries)
    absent = {d: n for d, n in per.items() if not any(k[0] == d and k in at for _, k, _ in wanted.entries)}
    return {"list": str(wanted.path), "listed": len(wanted.entries), "in_cache": len(wanted.entries) - len(missing),
            "missing": missing, "absent_datasets": absent, "left_out": left_out, "label_mismatch": mismatch}


def report_lines(report: dict | None) -> list[str]:
    """The report as the start summary and `evaluate --by-dataset` print it."""
    if not report:
        return []

    def few(items: list[str]) -> str:
        more = f" and {len(items) - SHOWN} more (all in run.json)" if len(items) > SHOWN else ""
        return ", ".join(items[:SHOWN]) + more

    lines = [f"data.include {Path(report['list']).name}: {report['in_cache']} of {report['listed']} listed clips "
             f"in the cache"]
    absent = report.get("absent_datasets") or {}
    if absent:
        lines.append("  datasets of the list not in the cache at all: "
                     + ", ".join(f"{d} ({n} clips)" for d, n in absent.items()))
    missing = [m for m in report["missing"] if m.split("/", 1)[0].lower() not in absent]
    if missing:
        lines.append(f"  listed but not in the cache ({len(missing)}): {few(missing)}")
    if report["left_out"]:
        lines.append(f"  in the cache and the class map but not listed, left out ({len(report['left_out'])}): "
                     f"{few(report['left_out'])}")
    if report["label_mismatch"]:
        lines.append(f"  class differs from the list's label ({len(report['label_mismatch'])}): "
                     f"{few(report['label_mismatch'])}")
    return lines
