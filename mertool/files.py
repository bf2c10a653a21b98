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
import time
from contextlib import contextmanager
from pathlib import Path


def host_name() -> str:
    """This machine's short host name."""
    return socket.gethostname().split(".")[0] or "host"


def temp_name(path: str | Path) -> Path:
    """`dir/name.<host>.<pid>.tmp` beside `path`."""
    path = Path(path)
    return path.with_name(f"{path.name}.{host_name()}.{os.getpid()}.tmp")


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


def create_text(path: str | Path, text: str) -> bool:
    """Write `path` only if it does not exist yet (atomically, also across hosts); False when it already existed.

    The whole file is written under a temporary name and hard-linked to `path`: link creation fails if the name
    exists, so of several writers starting at once exactly one creates the file and the others read it.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: the rename is atomic, the existence check is not
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def locked(path: str | Path, timeout: float = 300.0, stale: float = 60.0):
    """Hold `path.lock` (created exclusively, which NFS honours too) for a read-modify-write of `path`.

    A lock older than `stale` seconds is taken to belong to a killed process and is broken.
    """
    lock = Path(f"{path}.lock")
    t0 = time.monotonic()
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > stale:
                    lock.unlink(missing_ok=True)
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"{lock}: held by another process for over {timeout:.0f} s") from None
            time.sleep(0.05)
    try:
        os.write(fd, f"{host_name()} {os.getpid()}\n".encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)
