"""mertool.files: the one atomic writer."""
from __future__ import annotations

import json
import os
import socket

import pytest

from mertool import files


def test_temp_name_carries_host_and_pid(tmp_path):
    name = files.temp_name(tmp_path / "run.json").name
    assert name.startswith("run.json.") and name.endswith(f".{os.getpid()}.tmp")
    assert socket.gethostname().split(".")[0] in name


def test_writes_replace_whole_files(tmp_path):
    path = tmp_path / "a.json"
    files.write_json(path, {"x": 1, "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": 1, "p": str(tmp_path)}
    files.write_text(path, "two\n")
    files.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert path.read_text() == "two\n" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with files.temporary_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
