"""SMIC and MMEW adapters, per-sample "AU codes known", the MEGC 2019 composite (class map, include list, counts
beside the official ones, evaluate --by-dataset, ablate base) and caches of the first release."""
from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import make_synthetic_cache
from mertool.errors import MertoolError

REAL = {  # the composite class map applied to the real sheets: per class, subjects with a sample, dropped
    "casme2/CASME2-coding-20140508.xlsx": ({"negative": 90, "positive": 32, "surprise": 25}, 24, 108),
    "casme2/CASME2-coding-20190701.xlsx": ({"negative": 90, "positive": 32, "surprise": 28}, 24, 105),
    "samm/SAMM_Micro_FACS_Codes_v2.xlsx": ({"negative": 92, "positive": 26, "surprise": 15}, 28, 26),
    "samm/SAMM_20181215_Micro_FACS_Codes_v2.xlsx": ({"negative": 92, "positive": 26, "surprise": 15}, 28, 26),
}


def megc(**sets):
    """The megc2019 recipe; without the official list (its clips are not in synthetic caches) unless given."""
    from mertool.recipe import load_recipe

    sets.setdefault("data.include", "")
    return load_recipe("megc2019", [f"{k}={v}" for k, v in sets.items()])


# ------------------------------------------------------------------------------------ the composite class map

@pytest.mark.parametrize("sheet", sorted(REAL))
def test_composite_class_map_on_real_sheets(realdata, sheet):
    from mertool.data.classmap import ClassMap
    from mertool.datasets import load_records

    records, _ = load_records(realdata / "annotations" / sheet)
    cmap = ClassMap(megc()["data"]["classes"])
    counts, subjects, dropped = REAL[sheet]
    assert cmap.counts((r.dataset, r.emotion) for r in records) == counts
    kept = [r for r in records if cmap.index(r.dataset, r.emotion) >= 0]
    assert len({r.subject for r in kept}) == subjects
    assert len(records) - len(kept) == dropped


def test_class_map_dataset_qualifier():
    from mertool.data.classmap import ClassMap

    cmap = ClassMap({"neg": ["casme2:disgust", "samm:Fear"], "pos": ["happiness"]})
    assert cmap.index("casme2", "Disgust") == 0 and cmap.index("samm", "fears") == 0
    assert cmap.index("casme2", "fear") == -1            # CASME II's fear is not in the composite
    assert cmap.index("smic", "happiness") == 1           # a bare name matches every dataset
    with pytest.raises(MertoolError, match=r"'casmeii:disgust' names dataset 'casmeii'; expected one of"):
        megc(**{"data.classes": "{a: [casmeii:disgust], b: [x]}"})


# --------------------------------------------------------------------------------- AU codes known, old caches

def _strip_added_fields(path: Path) -> Path:
    """Make a cache look like one written before the dataset / aus_known fields existed."""
    with h5py.File(path, "a") as f:
        del f["meta/dataset"], f["meta/aus_known"]
    return path


def test_cache_of_the_first_release_still_loads(tmp_path):
    from mertool.cache.store import CacheWriter, cache_info, load_cache, verify_cache
    from mertool.training.dataset import load_dataset

    old = _strip_added_fields(make_synthetic_cache(tmp_path / "old.h5", subjects=2, per_class=1))
    data = load_cache(old)
    assert set(data.datasets) == {"casme2"} and data.aus_known.all()
    info = cache_info(old)
    assert info["aus_known"] == 10 and info["aus_unknown"] == 0 and not info["aus_known_stored"]
    assert verify_cache(old)["ok"]
    md = load_dataset(data, {"happiness": ["happiness"], "others": ["others"]})
    assert md.au_known.dtype == torch.bool and md.au_known.all() and len(md.au_known) == len(md)
    # appending to it (--resume) gives it the fields, filled for the samples already there
    w = CacheWriter(old, "casme2", 64, {"method": "synthetic-test"}, resume=True)
    w.close()
    assert cache_info(old)["aus_known_stored"] and verify_cache(old)["ok"]


def test_old_smic_and_merged_caches_infer_unknown_aus(tmp_path):
    from mertool.cache.store import load_cache, merge_caches

    smic = _strip_added_fields(make_synthetic_cache(tmp_path / "smic.h5", subjects=2, per_class=1, dataset="smic",
                                                    emotions=("positive", "negative", "surprise")))
    assert not load_cache(smic).aus_known.any()
    casme = make_synthetic_cache(tmp_path / "casme2.h5", subjects=2, per_class=1)
    merged = _strip_added_fields(merge_caches([casme, smic], tmp_path / "m.h5")["out"])
    data = load_cache(merged)
    assert dict(zip(*np.unique(data.datasets, return_counts=True))) == {"casme2": 10, "smic": 6}
    assert (data.aus_known == (data.datasets == "casme2")).all()


@pytest.fixture
def composite(tmp_path) -> Path:
    """casme2 (2 subjects x 5 classes x 2) + smic (2 subjects x 3 classes x 2), merged as `cache merge` does."""
    from mertool.cache.store import merge_caches

    casme = make_synthetic_cache(tmp_path / "casme2.h5", subjects=2)
    smic = make_synthetic_cache(tmp_path / "smic.h5", subjects=2, dataset="smic", seed=1,
                                emotions=("positive", "negative", "surprise"))
    return Path(merge_caches([casme, smic], tmp_path / "megc.h5")["out"])


def test_oracle_aus_refuse_unknown_unless_the_recipe_says(composite):
    from mertool.training.dataset import load_for_recipe

    with pytest.raises(MertoolError, match=r"model.aus = oracle .* has 12 samples whose AU codes are unknown "
                                           r"\(smic: 12\); set data.unknown_aus"):
        load_for_recipe(composite, megc(**{"model.aus": "true"}))
    dropped = load_for_recipe(composite, megc(**{"model.aus": "true", "data.unknown_aus": "drop"}))
    assert set(dropped.datasets) == {"casme2"} and dropped.excluded == {"AU codes unknown (data.unknown_aus: drop)": 12}
    empty = load_for_recipe(composite, megc(**{"model.aus": "true", "data.unknown_aus": "empty"}))
    assert len(empty) == 28 and int((~empty.au_known).sum()) == 12
    assert not empty.aus[~empty.au_known].any()
    data = load_for_recipe(composite, megc())          # model.aus off: no question asked
    assert len(data) == 28 and (data.au_known == torch.from_numpy(data.datasets == "casme2")).all()
    assert data.to("cpu").au_known is data.au_known
    assert data.dataset_class_counts() == {"casme2": {"negative": 8, "positive": 4, "surprise": 4},
                                           "smic": {"negative": 4, "positive": 4, "surprise": 4}}
    assert data.dropped == {"casme2:others": 4}        # dropped and counted, with the dataset named


def test_include_list(composite, tmp_path):
    from mertool.training.dataset import load_for_recipe

    lst = tmp_path / "official.txt"
    lst.write_text("# two casme2 clips and one smic clip\ncasme2/1/EP00_00\ncasme2/01/EP01_01\n\n"
                   "smic/2/EP02_01   # subject without padding or prefix\nsamm/006/006_1_2\n")
    data = load_for_recipe(composite, megc(**{"data.include": str(lst)}))
    assert sorted(zip(data.subjects, data.sample_ids)) == [("casme2_01", "EP00_00"), ("casme2_01", "EP01_01"),
                                                           ("smic_02", "EP02_01")]
    assert data.class_counts() == {"negative": 1, "positive": 1, "surprise": 1}
    assert data.excluded == {"not in data.include": 29, "listed in data.include but not in the cache": 1}
    recipe = tmp_path / "r" / "mine.yaml"   # a relative list is also looked for beside the recipe
    recipe.parent.mkdir()
    (recipe.parent / "list.txt").write_text(lst.read_text())
    recipe.write_text("extends: " + str(Path(__file__).resolve().parents[1] / "recipes" / "megc2019.yaml")
                      + "\ndata: {include: list.txt}\n")
    from mertool.recipe import load_recipe

    assert len(load_for_recipe(composite, load_recipe(recipe))) == 3
    lst.write_text("casme2/01\n")
    with pytest.raises(MertoolError, match=r"official.txt line 1: 'casme2/01': expected dataset/subject/sample"):
        load_for_recipe(composite, megc(**{"data.include": str(lst)}))


def test_counts_beside_official(composite):
    from mertool.training.dataset import count_lines, load_for_recipe

    recipe = megc()
    lines = count_lines(load_for_recipe(composite, recipe), recipe["data"]["official_counts"])
    assert lines[0] == "samples per class (read / official)"
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["casme2"][1:] == ["8", "/", "88", "4", "/", "32", "4", "/", "25", "16", "/", "145"]
    assert rows["samm"][1:4] == ["0", "/", "92"]            # a dataset of the official figures the cache lacks
    assert rows["all"][-3:] == ["28", "/", "442"]


def test_cache_info_shows_aus_known(composite, capsys):
    from typer.testing import CliRunner

    from mertool.cli import app

    out = CliRunner().invoke(app, ["cache", "info", str(composite)])
    assert out.exit_code == 0, out.output
    assert "12 unknown" in out.output and "smic" in out.output


def test_short_form_picks_megc2019_for_the_composite_cache(tmp_path):
    from mertool.cache.store import merge_caches
    from mertool.training.discover import resolve_short_form

    parts = [make_synthetic_cache(tmp_path / f"{d}.h5", subjects=2, per_class=1, dataset=d, emotions=e)
             for d, e in (("casme2", ("happiness", "disgust")), ("smic", ("positive", "surprise")),
                          ("samm", ("anger", "surprise")))]
    merged = Path(merge_caches(parts, tmp_path / "all.h5")["out"])
    recipe, cache, note = resolve_short_form(None, merged)
    assert recipe == "megc2019" and cache == merged


def test_ablate_base_for_a_merged_cache(tmp_path):
    from mertool.reports.ablate import base_recipe_path, load_table

    table = load_table("ablations/table3")
    assert base_recipe_path(table, "casme2+samm+smic").name == "megc2019.yaml"
    assert base_recipe_path(table, "smic+samm+casme2").name == "megc2019.yaml"
    with pytest.raises(MertoolError, match=r"no base recipe for dataset 'casme2\+smic'"):
        base_recipe_path(table, "casme2+smic")


# ---------------------------------------------------------------------------------------------- SMIC, MMEW

def _frames(folder: Path, numbers, name="image{:06d}.bmp", size=24, seed=0):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in numbers:
        cv2.imwrite(str(folder / name.format(n)), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def test_smic_adapter_layouts(tmp_path):
    from mertool.datasets import detect_dataset, load_records

    root = tmp_path / "SMIC"
    raw = root / "SMIC_all_raw"
    _frames(raw / "HS/s1/micro/positive/s1_po_01", range(46472, 46481))
    _frames(raw / "HS/s1/micro/negative/s1_ne_01", [10, 11, 12, 14, 15])         # frame 13 missing
    _frames(raw / "HS/s2/micro/surprise/s2_sur_01", range(1, 4))
    _frames(raw / "HS/s2/non_micro/s2_nm_01", range(1, 4))                       # not a sample
    _frames(raw / "VIS/s1/micro/positive/s1_po_01", range(1, 12))
    _frames(raw / "NIR/s1/micro/negative/s1_ne_01", range(1, 12))
    _frames(root / "SMIC_all_cropped/HS/s01/micro/positive/s1_po_01", range(46472, 46481), "reg_image{:06d}.bmp")
    assert detect_dataset(root) == "smic"

    records, report = load_records(root, options={"apex": "middle"})
    assert report["dataset"] == "smic" and report["smic_part"] == "HS" and report["non_micro_clips"] == 1
    by = {r.key: r for r in records}
    assert sorted(by) == ["s01/s1_ne_01", "s01/s1_po_01", "s02/s2_sur_01"]
    po, ne = by["s01/s1_po_01"], by["s01/s1_ne_01"]
    assert (po.onset, po.apex, po.offset) == (46472, 46476, 46480) and po.onset_path.name == "image046472.bmp"
    assert "SMIC_all_raw" in str(po.onset_path) and po.apex_path.name == "image046476.bmp"
    assert (ne.onset, ne.apex, ne.offset) == (10, 12, 15)
    assert not po.aus_known and po.emotion == "positive" and po.apex_estimated
    assert any("s01/s1_ne_01: 1 frame(s) missing inside the clip (13)" in w for w in report["warnings"])
    assert report["apex_chosen"]["clips"]["s01/s1_po_01"] == {"onset": 46472, "apex": 46476, "offset": 46480,
                                                               "method": "middle"}
    assert report["published"]["clips"] == 164

    cropped, rep = load_records(root, layout="cropped", options={"apex": "middle"})
    assert [r.onset_path.name for r in cropped] == ["reg_image046472.bmp"] and cropped[0].subject == "s01"
    vis, rep = load_records(root, options={"part": "VIS", "apex": "middle"})
    assert [r.key for r in vis] == ["s01/s1_po_01"] and rep["smic_part"] == "VIS" and "published" not in rep
    with pytest.raises(MertoolError, match="--smic-apex peak: expected one of spot, middle"):
        load_records(root, options={"apex": "peak"})
    with pytest.raises(MertoolError, match="has no annotation sheet"):
        load_records(root, kind="smic", sheet=tmp_path / "x.xlsx")


MMEW_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion",
               "remarks"]


def _xlsx(path: Path, rows) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    for row in rows:
        wb.active.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def test_mmew_adapter(tmp_path):
    from mertool.datasets import load_records, sniff_sheet

    root = tmp_path / "MMEW"
    _frames(root / "MMEW_Final/Micro_Expression/happiness/S01-01-001", range(1, 10), "{}.jpg")
    _frames(root / "MMEW_Final/Micro_Expression/others/S02-07-003", range(1, 10), "{}.jpg")
    _frames(root / "MMEW_Final/Macro_Expression/S01/anger", range(1, 3), "S01-07-00{}.jpg")
    sheet = _xlsx(root / "MMEW_Micro_Exp.xlsx", [
        MMEW_HEADER, ["S01", "S01-01-001", 1, 4, 9, "AU6+AU12", "happiness", None],
        ["S02", "S02-07-003", 2, "x5", 9, "AU4", "others", "apex unreadable"],          # malformed row
        ["S02", "S02-07-003", 2, 5, 9, "AU4", "others", None]])
    assert sniff_sheet(sheet) == "mmew"
    records, report = load_records(root)
    assert report["dataset"] == "mmew" and [r.key for r in records] == ["S01/S01-01-001", "S02/S02-07-003"]
    assert records[0].aus == (6, 12) and records[0].aus_known and records[0].apex_path.name == "4.jpg"
    assert "Micro_Expression" in str(records[1].onset_path)
    assert report["malformed_rows"][0]["row"] == 3 and "'x5' is not a frame number" in \
        report["malformed_rows"][0]["detail"]
    bad = _xlsx(tmp_path / "other.xlsx", [["Subj", "Clip", "Start"], ["S01", "a", 1]])
    with pytest.raises(MertoolError, match=r"no header row with columns Subject, Filename, OnsetFrame.*first row "
                                           r"found: sheet 'Sheet' row 1: Subj, Clip, Start"):
        load_records(tmp_path, kind="mmew", sheet=bad)


# ------------------------------------------- end to end: SMIC and MMEW trees from the synthetic faces, MEGC 2019

SMIC_CLASS = {"happiness": ("positive", "po"), "disgust": ("negative", "ne"), "repression": ("negative", "ne"),
              "surprise": ("surprise", "sur")}
MMEW_EMOTION = {"happiness": "happiness", "disgust": "disgust", "repression": "fear", "surprise": "surprise",
                "others": "others"}
SMALL = ["--set", "data.image_size=64", "--set", "model.width=0.25", "--set", "model.fpf=none", "--set",
         "train.epochs=1", "--set", "train.decay_epochs=1", "--set", "augment.crop_padding=4"]


def _cli(*args):
    from typer.testing import CliRunner

    from mertool.cli import app

    out = CliRunner().invoke(app, [str(a) for a in args])
    assert out.exit_code == 0, out.output + repr(out.exception)
    return out.output


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict:
    """`mertool synth` clips (3 subjects, the project's default faces) laid out as CASME II, SMIC-HS and MMEW."""
    import shutil

    import cv2

    from mertool.synth.faces import synth

    root = tmp_path_factory.mktemp("megc")
    synth(root / "CASME2", subjects=3, per_subject=5, seed=5, workers=1)
    samples = json.loads((root / "CASME2" / "synth.json").read_text())["samples"]
    raw = root / "CASME2" / "CASME2-RAW"
    smic, mmew = root / "SMIC" / "HS", root / "MMEW" / "Micro_Expression"
    rows, truth = [MMEW_HEADER], {}
    for k, s in enumerate(samples):
        src, subj = raw / f"sub{s['subject']}" / s["sample_id"], int(s["subject"])
        sdir = f"s{subj}" if subj < 3 else f"s{subj:02d}"          # both spellings of the subject folders
        if s["emotion"] in SMIC_CLASS:
            cls, abbr = SMIC_CLASS[s["emotion"]]
            clip = smic / sdir / "micro" / cls / f"s{subj}_{abbr}_{k:02d}"
            truth[f"s{subj:02d}/{clip.name}"] = s["apex"]
        else:
            clip = smic / sdir / "non_micro" / f"s{subj}_nm_{k:02d}"
        clip.mkdir(parents=True)
        for n in range(s["onset"], s["offset"] + 1):  # a SMIC clip is the micro-expression itself
            cv2.imwrite(str(clip / f"image{n:06d}.bmp"), cv2.imread(str(src / f"img{n}.jpg")))
        name = f"S{subj:02d}-{k:02d}-001"
        dest = mmew / MMEW_EMOTION[s["emotion"]] / name
        dest.mkdir(parents=True)
        for i, n in enumerate(range(s["first"], s["last"] + 1), start=1):
            shutil.copyfile(src / f"img{n}.jpg", dest / f"{i}.jpg")
        rows.append([f"S{subj:02d}", name, s["onset"] - s["first"] + 1, s["apex"] - s["first"] + 1,
                     s["offset"] - s["first"] + 1, s["aus_coded"], MMEW_EMOTION[s["emotion"]], None])
    rows.append(["S01", "S01-99-001", "?", 3, 5, "AU1", "surprise", "malformed: no onset"])
    _xlsx(root / "MMEW" / "MMEW_Micro_Exp.xlsx", rows)
    gap = sorted(truth)[0]
    clip = next(smic.glob(f"*/micro/*/{gap.split('/')[1]}"))
    files = sorted(clip.iterdir())
    files[1].unlink()                                   # a clip with a missing frame (not its first or apex)
    return {"root": root, "smic_truth": truth, "gap": gap, "samples": samples}


@pytest.fixture(scope="module")
def caches(trees) -> dict:
    root = trees["root"]
    out = {}
    for name, extra in (("casme2", []), ("smic", ["--smic-apex", "spot"]), ("mmew", [])):
        out[name] = root / f"{name}.h5"
        _cli("preprocess", root / {"casme2": "CASME2", "smic": "SMIC", "mmew": "MMEW"}[name], "--out", out[name],
             "--size", 64, "--workers", 0, "--quiet", *extra)
        assert "ok:" in _cli("cache", "verify", out[name])
    return out


def test_smic_preprocess_spots_the_apex(trees, caches):
    summary = json.loads(Path(f"{caches['smic']}.json").read_text())
    assert summary["dataset"] == "smic" and summary["smic_part"] == "HS"
    assert summary["cached"] == len(trees["smic_truth"]) == 12 and summary["non_micro_clips"] == 3
    chosen = summary["apex_chosen"]
    assert chosen["method"] == "spot" and chosen["methods_used"] == {"spot": 12}
    errors = [abs(chosen["clips"][k]["apex"] - a) for k, a in trees["smic_truth"].items()]
    assert np.median(errors) <= 2, errors                # the spotter finds the rendered apex
    assert any(f"{trees['gap']}: 1 frame(s) missing inside the clip" in w for w in summary["warnings"])
    p = summary["published"]
    assert p["read"] == {"clips": 12, "subjects": 3, "emotions": {"positive": 3, "negative": 6, "surprise": 3}}
    assert not p["cached_matches"]
    from mertool.cache.store import cache_info

    info = cache_info(caches["smic"])
    assert info["aus_unknown"] == 12 and set(info["subjects"]) == {"s01", "s02", "s03"}


def test_mmew_preprocess_records_the_malformed_row(caches):
    summary = json.loads(Path(f"{caches['mmew']}.json").read_text())
    assert summary["dataset"] == "mmew" and summary["cached"] == 15
    assert summary["skipped"] == {"malformed sheet row": 1}
    assert "empty; expected a frame number" in summary["skipped_samples"]["malformed sheet row"][0]["detail"]


def test_megc2019_end_to_end(trees, caches, tmp_path):
    root = trees["root"]
    merged = root / "megc.h5"
    if not merged.exists():
        _cli("cache", "merge", caches["casme2"], caches["smic"], caches["mmew"], "--out", merged)
    info = _cli("cache", "info", merged)
    assert "casme2+smic+mmew" in info and "12 unknown" in info
    from mertool.cache.store import load_cache

    # a list in the official file's format (no header, CRLF, CASME II subjects `sub01`, SMIC `s01` and `s01_...`):
    # every composite clip of the cache but one, and one clip the cache lacks
    data = load_cache(merged)
    keep = [(d, s.split("_", 1)[1], i) for d, s, i in zip(data.datasets, data.subjects, data.sample_ids)
            if d in ("casme2", "smic")]
    rows = [f"{d},{'sub' + s if d == 'casme2' else s},{i.replace('s1_', 's01_').replace('s2_', 's02_')},0"
            for d, s, i in keep]
    dropped = rows.pop()
    lst = tmp_path / "official.csv"
    lst.write_bytes(("\r\n".join(rows + ["casme2,sub01,EP99_99f,0", "samm,6,006_1_2,0"]) + "\r\n").encode())
    run = tmp_path / "run"
    out = _cli("train-loso", "megc2019", "--cache", merged, "--out", run, "--quiet", "--device", "cpu", *SMALL,
               "--set", f"data.include={lst}")
    assert "samples per class (read / official)" in out
    assert re.search(r"casme2\s+6 / 88\s+3 / 32\s+3 / 25\s+12 / 145", out), out
    assert re.search(r"smic\s+\d / 70\s+\d / 51\s+\d / 43\s+11 / 164", out), out
    assert "mmew:happiness" not in out                    # MMEW is not on the list: left out before the class map
    lines = [f"data.include official.csv: {len(rows)} of {len(rows) + 2} listed clips in the cache",
             "datasets of the list not in the cache at all: samm (1 clips)",
             "listed but not in the cache (1): casme2/sub01/EP99_99f",
             f"in the cache and the class map but not listed, left out (1): smic/smic_{dropped.split(',')[1]}/"]
    for line in lines:
        assert line in out, (line, out)
    assert "class differs from the list's label" in out   # every label written 0 (negative): the others differ
    report = _cli("evaluate", run, "--by-dataset")
    assert "UF1 and UAR by dataset" in report
    for line in lines:
        assert line in report, (line, report)
    rows = {m.group(1): int(m.group(2)) for m in re.finditer(r"(composite|casme2|smic|mmew)\s+│\s+(\d+)", report)}
    assert rows == {"composite": 23, "casme2": 12, "smic": 11}
    js = json.loads(_cli("evaluate", run, "--json"))["runs"][0]
    assert set(js["by_dataset"]) == {"casme2", "smic"} and js["by_dataset"]["smic"]["n"] == 11
    run_info = json.loads((run / "run.json").read_text())
    assert run_info["subject_datasets"]["smic_s01"] == "smic" and len(run_info["folds"]) == 6


def test_run_folder_saved_before_the_new_data_keys_still_matches():
    import copy

    from mertool.recipe import load_recipe, recipe_diff

    new = load_recipe("casme2")
    old = copy.deepcopy(new)
    for key in ("include", "unknown_aus", "official_counts"):
        del old["data"][key]
    assert recipe_diff(old, new) == []
    old["data"]["include"] = "official.txt"
    assert recipe_diff(old, new) == ["data.include: 'official.txt' != ''"]
