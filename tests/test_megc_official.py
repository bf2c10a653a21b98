"""The official MEGC 2019 list shipped with the recipes: read with its quirks, the published counts, the real sheets."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mertool.errors import MertoolError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "recipes" / "lists" / "megc2019_combined_3class_gt.csv"
PUBLISHED = {"casme2": (145, {"negative": 88, "positive": 32, "surprise": 25}),
             "samm": (133, {"negative": 92, "positive": 26, "surprise": 15}),
             "smic": (164, {"negative": 70, "positive": 51, "surprise": 43})}


def _megc():
    from mertool.recipe import load_recipe

    return load_recipe("megc2019")


def test_megc2019_recipe_reads_the_shipped_list_by_default():
    recipe = _megc()
    assert Path(recipe["data"]["include"]) == SHIPPED.resolve()
    raw = SHIPPED.read_bytes()
    assert raw.count(b"\r\n") == 442 and not raw.lower().startswith(b"dataset")  # as published: CRLF, no header


def test_the_list_gives_the_published_counts():
    from mertool.data.include import read_include_list

    lst = read_include_list(SHIPPED)
    keys = [k for _, k, _ in lst.entries]
    assert len(keys) == len(set(keys)) == 442
    assert len({(d, s) for d, s, _ in keys}) == 68
    for dataset, (n, classes) in PUBLISHED.items():
        assert sum(k[0] == dataset for k in keys) == n, dataset
        assert Counter(lst.labels[k] for k in keys if k[0] == dataset) == classes, dataset
    # the quirks, read as mertool names the clips: CASME II `sub01` = sheet subject 1, SAMM `6` with file `006_1_2`,
    # SMIC `s01` / `s01_ne_01` = folders `s1` / `s1_ne_01`
    from mertool.data.include import sample_key

    for d, s, i in (("casme2", "01", "EP02_01f"), ("samm", "006", "006_1_2"), ("smic", "s01", "s1_ne_01")):
        assert sample_key(d, s, i) in lst.keys()
        assert sample_key(d, f"{d}_{s}", i) in lst.keys()  # a merged cache's prefixed subject


def test_the_shipped_list_is_the_official_file(realdata):
    from mertool.data.include import read_include_list

    real = realdata / "annotations" / "megc2019" / "combined_3class_gt.csv"
    ours, theirs = read_include_list(SHIPPED), read_include_list(real)
    assert [k for _, k, _ in ours.entries] == [k for _, k, _ in theirs.entries]
    assert ours.labels == theirs.labels
    assert SHIPPED.read_bytes() == real.read_bytes()


@pytest.mark.parametrize("sheet,dataset,extra", [
    ("casme2/CASME2-coding-20140508.xlsx", "casme2", ["casme2/04/EP12_01f", "casme2/05/EP09_05f"]),
    ("casme2/CASME2-coding-20190701.xlsx", "casme2", ["casme2/04/EP12_01f", "casme2/05/EP09_05f",
                                                      "casme2/24/EP07_01", "casme2/24/EP07_04f", "casme2/24/EP10_03"]),
    ("samm/SAMM_Micro_FACS_Codes_v2.xlsx", "samm", []),
])
def test_real_sheets_under_the_official_list(realdata, sheet, dataset, extra):
    """Both CASME II sheets give the official 145 clips (the 2019 sheet's 150 and the 2014 sheet's 147 under the
    class map), SAMM its 133, with the published class counts and every label as the list has it."""
    from mertool.data.classmap import ClassMap
    from mertool.data.include import include_report
    from mertool.datasets import load_records

    records, _ = load_records(realdata / "annotations" / sheet)
    recipe = _megc()
    cmap = ClassMap(recipe["data"]["classes"])
    sheet_data = SimpleNamespace(**{f: np.array([getattr(r, a) for r in records], dtype=object) for f, a in (
        ("datasets", "dataset"), ("subjects", "subject"), ("sample_ids", "sample_id"), ("emotions", "emotion"))})
    report = include_report(recipe["data"]["include"], sheet_data, cmap)
    n, classes = PUBLISHED[dataset]
    assert report["in_cache"] == n
    assert report["absent_datasets"] == {d: m for d, (m, _) in PUBLISHED.items() if d != dataset}
    assert [m for m in report["missing"] if m.startswith(dataset)] == []
    assert report["left_out"] == extra and report["label_mismatch"] == []
    from mertool.data.include import read_include_list

    keys = read_include_list(recipe["data"]["include"]).keys()
    from mertool.data.include import sample_key

    listed = [r for r in records if sample_key(r.dataset, r.subject, r.sample_id) in keys]
    assert cmap.counts((r.dataset, r.emotion) for r in listed) == classes


def test_include_list_errors(tmp_path):
    from mertool.data.include import read_include_list

    bad = tmp_path / "l.csv"
    bad.write_bytes(b"casme2,sub01,EP02_01f,7\r\n")
    with pytest.raises(MertoolError, match=r"l.csv line 1: label '7': expected 0 \(negative\)"):
        read_include_list(bad)
    bad.write_bytes(b"casme2,sub01\r\n")
    with pytest.raises(MertoolError, match=r"line 1: 'casme2,sub01': expected dataset,subject,filename\[,label\]"):
        read_include_list(bad)


def test_a_cache_the_list_does_not_cover_is_a_clear_error(synthetic_cache):
    from mertool.recipe import load_recipe
    from mertool.training.dataset import load_for_recipe

    with pytest.raises(MertoolError, match=r"none of its 442 samples is in the cache .* --set data.include="):
        load_for_recipe(synthetic_cache, load_recipe("megc2019"))
