"""Atomic file writes: write beside the target under a temporary name, then rename over it.

A reader never sees half a file, and a writer killed mid-way leaves at most a stray `*.tmp`. Temporary names carry
the host name and process id, so processes on one machine or on several hosts sharing a filesystem (Slurm jobs
writing one run folder) never write the same temporary file; when two write the same file, the last rename wins
and the file is always whole.
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path


def temp_name(path: str | Path) -> Path:
    """`dir/name.<host>.<pid>.tmp` beside `path`."""
    path = Path(path)
    host = socket.gethostname().split(".")[0] or "host"
    return path.with_name(f"{path.name}.{host}.{os.getpid()}.tmp")


@contextmanager
def temporary_path(path: str | Path):
    """Yield a temporary path beside `path`; on success it is renamed over `path`, on an error removed."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left after an error: a successful rename took it away


def write_bytes(path: str | Path, data: bytes) -> Path:
    with temporary_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with temporary_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj, *, indent: int | None = 2) -> Path:
    """JSON with a final newline; values JSON does not know (paths, dates) are written as strings."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=str) + "\n")
