"""`mertool cache info|verify|show|merge` and the cache's error messages."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from conftest import make_synthetic_cache

from mertool.cache.store import cache_info, load_cache, merge_caches, verify_cache
from mertool.cli import main
from mertool.errors import MertoolError


def test_info(synthetic_cache, capsys):
    info = cache_info(synthetic_cache)
    assert info["samples"] == 40 and info["subjects"] == {"01": 10, "02": 10, "03": 10, "04": 10}
    assert info["emotions"]["repression"] == 8 and info["attrs"]["image_size"] == 64
    assert info["aus"][12] == 8 and info["with_landmarks"] == 0
    assert main(["cache", "info", str(synthetic_cache)]) == 0
    out = capsys.readouterr().out
    for text in ("casme2", "repression", "AU12", "schema_version"):
        assert text in out


def test_truncated_file_is_a_one_line_error(synthetic_cache, tmp_path, capsys):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(synthetic_cache.read_bytes()[:20000])
    assert main(["cache", "info", str(cut)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cut}: not a readable HDF5 file") and err.count("\n") == 1
    (tmp_path / "text.h5").write_text("hello")
    assert main(["cache", "verify", str(tmp_path / "text.h5")]) == 2
    assert main(["cache", "info", str(tmp_path / "nothing.h5")]) == 2
    assert "no such cache file" in capsys.readouterr().err


def test_old_schema_is_named(synthetic_cache, capsys):
    with h5py.File(synthetic_cache, "a") as f:
        f.attrs["schema_version"] = 0
    assert main(["cache", "info", str(synthetic_cache)]) == 2
    assert "cache schema version 0, expected 1" in capsys.readouterr().err
    with h5py.File(synthetic_cache, "a") as f:
        del f.attrs["schema_version"]
    with pytest.raises(MertoolError, match="not a mertool cache"):
        verify_cache(synthetic_cache)


def test_verify_ok(synthetic_cache, capsys):
    assert verify_cache(synthetic_cache)["ok"]
    assert main(["cache", "verify", str(synthetic_cache)]) == 0
    assert "ok:" in capsys.readouterr().out


def test_verify_names_damaged_samples(synthetic_cache, capsys):
    with h5py.File(synthetic_cache, "a") as f:
        f["apex"][3] = 0                        # an empty frame (its checksum breaks too)
        f["onset"][7, 10, 10, 0] ^= 0xFF        # one flipped pixel: only the checksum notices
        f["landmarks"][5, 0] = (3.0, 4.0)      # landmarks partly present
    problems = verify_cache(synthetic_cache)["problems"]
    names = load_cache(synthetic_cache).meta
    key = lambda i: f"{names['subject'][i]}/{names['sample_id'][i]} (#{i})"  # noqa: E731
    assert f"{key(3)}: apex frame is empty (every pixel 0)" in problems
    assert any(p.startswith(f"{key(3)}: checksum mismatch") for p in problems)
    assert any(p.startswith(f"{key(7)}: checksum mismatch") for p in problems)
    assert f"{key(5)}: landmarks partly missing" in problems
    assert len(problems) == 4
    assert main(["cache", "verify", str(synthetic_cache)]) == 1
    err = capsys.readouterr().err
    assert key(7) in err and "4 problem(s)" in err


def test_verify_shapes_and_datasets(synthetic_cache, tmp_path):
    other = tmp_path / "other.h5"
    shutil.copy(synthetic_cache, other)
    with h5py.File(synthetic_cache, "a") as f:
        f["aus"].resize(39, axis=0)
        f.attrs["au_vocab"] = np.arange(21)
    problems = verify_cache(synthetic_cache)["problems"]
    assert "/aus: shape (39, 21), expected (40, 21)" in problems
    assert any(p.startswith("attribute au_vocab") for p in problems)
    with h5py.File(other, "a") as f:
        del f["checksum"]
    assert verify_cache(other)["problems"] == ["missing dataset(s) /checksum"]


def test_show(synthetic_cache, tmp_path, capsys):
    import matplotlib.image as mpimg
    png = tmp_path / "s.png"
    assert main(["cache", "show", str(synthetic_cache), "02/EP01_00", "--png", str(png)]) == 0
    img = mpimg.imread(png)
    assert img.shape[1] > 2 * img.shape[0] and img.std() > 0.05   # three panels side by side, not blank
    assert "02/EP01_00 (disgust)" in capsys.readouterr().out
    assert main(["cache", "show", str(synthetic_cache), "5", "--png", str(png)]) == 0
    assert main(["cache", "show", str(synthetic_cache), "--png", str(png), "--", "-1"]) == 0
    assert "04/EP04_01" in capsys.readouterr().out


def test_show_bad_sample(synthetic_cache, tmp_path, capsys):
    png = tmp_path / "s.png"
    assert main(["cache", "show", str(synthetic_cache), "EP01_00", "--png", str(png)]) == 2
    assert "matches 4 samples (01/EP01_00, 02/EP01_00" in capsys.readouterr().err   # same id in several subjects
    assert main(["cache", "show", str(synthetic_cache), "99/EP00_00", "--png", str(png)]) == 2
    assert "not found" in capsys.readouterr().err and not png.exists()


def test_merge_two_datasets_prefixes_subjects(tmp_path, capsys):
    a = make_synthetic_cache(tmp_path / "a.h5", subjects=2, per_class=1, size=32)
    b = make_synthetic_cache(tmp_path / "b.h5", subjects=2, per_class=1, size=32, dataset="samm",
                             emotions=("anger", "contempt", "happiness", "surprise", "other"))
    out = tmp_path / "ab.h5"
    assert main(["cache", "merge", str(a), str(b), "--out", str(out)]) == 0
    assert "20 samples, dataset casme2+samm (subjects prefixed" in capsys.readouterr().out
    m = load_cache(out)
    assert m.attrs["dataset"] == "casme2+samm" and len(m) == 20
    assert sorted(set(m.subjects)) == ["casme2_01", "casme2_02", "samm_01", "samm_02"]  # '01' twice, two people
    src = load_cache(b)
    assert np.array_equal(m.onset[10:], src.onset) and np.array_equal(m.aus[10:], src.aus)
    assert verify_cache(out)["ok"]
    assert [s["dataset"] for s in json.loads(m.attrs["merged_from"])] == ["casme2", "samm"]
    # a merge merged again keeps its (already prefixed) subjects; the new single-dataset input is prefixed
    c = make_synthetic_cache(tmp_path / "c.h5", subjects=1, per_class=1, size=32, dataset="casme3")
    abc = merge_caches([out, c], tmp_path / "abc.h5")
    assert abc["dataset"] == "casme2+samm+casme3"
    assert "casme3_01" in set(load_cache(tmp_path / "abc.h5").subjects)


def test_merge_same_dataset_keeps_subjects(tmp_path):
    a = make_synthetic_cache(tmp_path / "a.h5", subjects=1, per_class=1, size=32)
    b = make_synthetic_cache(tmp_path / "b.h5", subjects=1, per_class=1, size=32, emotions=("fear", "sadness"))
    with h5py.File(b, "a") as f:  # another subject of the same dataset (e.g. preprocessed on another machine)
        f["meta/subject"][:] = ["02", "02"]
    r = merge_caches([a, b], tmp_path / "ab.h5")
    assert r["dataset"] == "casme2" and not r["subjects_prefixed"] and r["samples"] == 7
    assert list(load_cache(tmp_path / "ab.h5").subjects) == ["01"] * 5 + ["02"] * 2
    with pytest.raises(MertoolError, match=r"sample 01/EP00_00 is also in .*a\.h5"):
        merge_caches([a, a], tmp_path / "aa.h5")
    assert not (tmp_path / "aa.h5").exists() and not (tmp_path / "aa.h5.tmp").exists()


def test_merge_refuses_mixed_sizes(tmp_path, capsys):
    a = make_synthetic_cache(tmp_path / "a.h5", subjects=1, per_class=1, size=32)
    b = make_synthetic_cache(tmp_path / "b.h5", subjects=1, per_class=1, size=48, dataset="samm")
    assert main(["cache", "merge", str(a), str(b), "--out", str(tmp_path / "ab.h5")]) == 2
    err = capsys.readouterr().err
    assert "differ in image size" in err and "32px" in err and "48px" in err
    assert main(["cache", "merge", str(a), "--out", str(tmp_path / "x.h5")]) == 2
    assert main(["cache", "merge", str(a), str(b), "--out", str(a)]) == 2
