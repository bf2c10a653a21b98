"""`data.include: FILE`: a sample list (one `dataset/subject/sample` a line) that restricts a recipe to those samples.

    casme2/01/EP02_01f
    samm/006/006_1_2
    smic/s1/s1_ne_01        # comments and blank lines are ignored

This is how an official list (say MEGC 2019's 442 clips) is reproduced exactly from caches that hold more. Subjects
are compared without zero padding ('1' = '01', 's1' = 's01') and without the `<dataset>_` prefix that `cache merge`
adds; everything is compared case-insensitively.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mertool.errors import MertoolError


def _subject_key(subject: str, dataset: str) -> str:
    s = str(subject).strip().lower()
    prefix = f"{dataset.lower()}_"
    if s.startswith(prefix):
        s = s[len(prefix):]
    return re.sub(r"\d+", lambda m: str(int(m.group())), s)


def sample_key(dataset: str, subject: str, sample_id: str) -> tuple[str, str, str]:
    """What a line and a cache sample are compared by."""
    return str(dataset).strip().lower(), _subject_key(subject, str(dataset)), str(sample_id).strip().lower()


def read_include(path: str | Path) -> list[tuple[int, tuple[str, str, str]]]:
    """(line number, key) of every sample in the list; a malformed line is an error naming it."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MertoolError(f"data.include {path}: cannot read ({exc.strerror})") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.replace("\\", "/").split("/")]
        if len(parts) != 3 or not all(parts):
            raise MertoolError(f"{path} line {n}: {line!r}: expected dataset/subject/sample, e.g. casme2/01/EP02_01f")
        out.append((n, sample_key(*parts)))
    if not out:
        raise MertoolError(f"{path}: data.include lists no sample (expected dataset/subject/sample lines)")
    return out


def include_mask(path: str | Path, data) -> tuple[np.ndarray, list[str]]:
    """(N bool over the cache: listed, lines of the list that match no cached sample)."""
    wanted = read_include(path)
    keys = [sample_key(d, s, i) for d, s, i in zip(data.datasets, data.subjects, data.sample_ids)]
    listed = {k for _, k in wanted}
    mask = np.array([k in listed for k in keys], dtype=bool)
    present = set(keys)
    missing = ["/".join(k) for _, k in wanted if k not in present]
    return mask, missing
