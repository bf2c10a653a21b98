"""Dataset adapters: real coding sheets (exact counts), frame layouts built in tmp_path, bad inputs."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

from mertool.datasets import class_counts, detect_dataset, load_records
from mertool.errors import MertoolError

CASME2_CLASSES = {c: [c] for c in ("happiness", "disgust", "repression", "surprise", "others")}
SAMM_CLASSES = {c: [c] for c in ("anger", "contempt", "happiness", "surprise", "other")}
CASME2_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
                 "Estimated Emotion"]
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
               "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]


def write_xlsx(path: Path, rows, sheet="Sheet1", first_sheet=None) -> Path:
    """A workbook with `rows` on `sheet` (optionally after another sheet that holds no table)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    if first_sheet:
        ws.title = first_sheet
        ws.append(["read me first"])
        ws = wb.create_sheet(sheet)
    else:
        ws.title = sheet
    for r in rows:
        ws.append(list(r))
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def write_frames(folder: Path, names) -> None:
    """Tiny real JPEG files."""
    folder.mkdir(parents=True, exist_ok=True)
    img = np.full((8, 8, 3), 128, np.uint8)
    for name in names:
        assert cv2.imwrite(str(folder / name), img)


# ------------------------------------------------------------------------------------------ real coding sheets

@pytest.mark.parametrize("name, five_class, surprise", [
    ("CASME2-coding-20190701.xlsx", 249, 28), ("CASME2-coding-20140508.xlsx", 246, 25)])
def test_casme2_real_sheets(realdata, name, five_class, surprise):
    sheet = realdata / "annotations" / "casme2" / name
    records, report = load_records(sheet.parent, sheet=sheet)
    assert report["dataset"] == "casme2" and report["rows"] == len(records) == 255
    assert report["subjects"] == len({r.subject for r in records}) == 26
    counts = class_counts(records, CASME2_CLASSES)
    assert sum(counts.values()) == five_class
    assert counts == {"happiness": 32, "disgust": 63, "repression": 27, "surprise": surprise, "others": 99}
    assert records[0].subject == "01" and records[0].sample_id == "EP02_01f"
    assert (records[0].onset, records[0].apex, records[0].offset) == (46, 59, 86)
    est = [r for r in records if r.apex_estimated]
    assert [r.key for r in est] == ["04/EP12_01f"] == report["apex_estimated"]
    assert est[0].apex == (261 + 321) // 2 and est[0].onset <= est[0].apex <= est[0].offset
    assert any("04/EP12_01f" in w and "estimated" in w for w in report["warnings"])
    assert report["aus_outside"] == {"38": 2}  # '4+38', 'L2+26+38'
    assert len({r.key for r in records}) == 255
    # no frames next to the sheets: every sample is reported missing, nothing raised
    assert len(report["missing_frames"]) == 255 and all(r.onset_path is None for r in records)


def test_casme2_picks_newest_sheet_when_both_present(realdata):
    records, report = load_records(realdata / "annotations" / "casme2")
    assert Path(report["sheet"]).name == "CASME2-coding-20190701.xlsx"
    assert any("several CASME II sheets" in w for w in report["warnings"])


@pytest.mark.parametrize("name, header_row", [
    ("SAMM_Micro_FACS_Codes_v2.xlsx", 14), ("SAMM_20181215_Micro_FACS_Codes_v2.xlsx", 1)])
def test_samm_real_sheets(realdata, name, header_row):
    sheet = realdata / "annotations" / "samm" / name
    records, report = load_records(sheet.parent, sheet=sheet)
    assert report["dataset"] == "samm" and report["header_row"] == header_row and report["sheet_name"] == "MICRO_ONLY"
    assert report["rows"] == len(records) == 159 and report["subjects"] == 29
    counts = class_counts(records, SAMM_CLASSES)  # the sheet writes 'Other', 'Anger': case-insensitive match
    assert sum(counts.values()) == 136
    assert counts == {"anger": 57, "contempt": 12, "happiness": 26, "surprise": 15, "other": 26}
    assert sorted(report["apex_outside"]) == ["028/028_4_1", "032/032_3_1"]
    assert sum("outside onset..offset" in w for w in report["warnings"]) == 2
    assert report["aus_outside"]["43"] == 8
    r = next(r for r in records if r.key == "006/006_1_2")
    assert (r.onset, r.apex, r.offset, r.aus, r.emotion) == (5562, 5588, 5632, (4, 7), "Anger")


def test_casme3_real_sheet(realdata):
    folder = realdata / "annotations" / "casme3"
    assert detect_dataset(folder) == "casme3"
    records, report = load_records(folder)
    assert report["rows"] == len(records) == 860
    assert len({r.key for r in records}) == 860  # filename + onset makes the id unique
    r = records[0]
    assert (r.subject, r.sample_id, r.onset, r.apex, r.offset, r.aus) == ("spNO.1", "a_355", 355, 359, 360, (5,))
    assert all(isinstance(x.onset, int) for x in records)


def test_detect_real_folders(realdata):
    ann = realdata / "annotations"
    assert detect_dataset(ann / "casme2") == "casme2"
    assert detect_dataset(ann / "samm") == "samm"
    with pytest.raises(MertoolError, match="several datasets"):
        detect_dataset(ann)


def test_real_sheet_copied_into_casme2_layout(realdata, tmp_path):
    root = tmp_path / "CASME2"
    shutil.copy(realdata / "annotations" / "casme2" / "CASME2-coding-20190701.xlsx", root.mkdir() or root)
    write_frames(root / "CASME2-RAW" / "sub01" / "EP02_01f", [f"img{i}.jpg" for i in (46, 59, 86)])
    write_frames(root / "CASME2-RAW" / "sub04" / "EP12_01f", [f"img{i}.jpg" for i in (261, 291)])
    assert detect_dataset(root) == "casme2"
    records, report = load_records(root)
    by_key = {r.key: r for r in records}
    assert by_key["01/EP02_01f"].apex_path == root / "CASME2-RAW" / "sub01" / "EP02_01f" / "img59.jpg"
    assert by_key["04/EP12_01f"].apex_path.name == "img291.jpg"  # estimated apex resolved like any other
    assert len(report["missing_frames"]) == 253


# ------------------------------------------------------------------------------------ layouts built in tmp_path

@pytest.fixture
def casme2_folder(tmp_path) -> Path:
    """CASME II-like folder: sheet in a sub-folder, raw and cropped frames, one sample without frames."""
    root = tmp_path / "casme2"
    write_xlsx(root / "annotations" / "CASME2-coding-20190701.xlsx", [
        CASME2_HEADER,
        ["01", "EP02_01f", None, 46, 59, 86, None, 12, "happiness"],
        ["01", "EP03_02", None, 131, "/", 161, None, "R6+R12", "Others"],
        ["02", "EP06_02f", None, 36, 64, 111, None, "?", "confused"],   # unknown emotion is a fact, not an error
        [None] * 9,
        ["03", "EP01_01", None, 10, 12, 20, None, "4+L10", "disgust"],
    ])
    for folder, prefix in (("CASME2-RAW", "img"), ("Cropped", "reg_img")):
        write_frames(root / folder / "sub01" / "EP02_01f", [f"{prefix}{i}.jpg" for i in range(46, 87, 3)] +
                     [f"{prefix}59.jpg"])
        write_frames(root / folder / "sub01" / "EP03_02", [f"{prefix}{i}.jpg" for i in (131, 146)])
        write_frames(root / folder / "sub02" / "EP06_02f", [f"{prefix}{i}.jpg" for i in (36,)])  # apex missing
    return root


def test_casme2_layout_raw_and_cropped(casme2_folder):
    records, report = load_records(casme2_folder)
    assert report["dataset"] == "casme2" and report["rows"] == 4 and report["subjects"] == 3
    raw = casme2_folder / "CASME2-RAW"
    assert report["frames_root"] == str(raw)
    r = {x.key: x for x in records}
    assert r["01/EP02_01f"].onset_path == raw / "sub01" / "EP02_01f" / "img46.jpg"
    assert r["01/EP02_01f"].apex_path == raw / "sub01" / "EP02_01f" / "img59.jpg"
    assert r["01/EP03_02"].apex_estimated and r["01/EP03_02"].apex == 146
    assert r["01/EP03_02"].apex_path.name == "img146.jpg"
    assert r["02/EP06_02f"].onset_path is not None and r["02/EP06_02f"].apex_path is None
    assert r["02/EP06_02f"].emotion == "confused" and r["02/EP06_02f"].aus == ()
    assert r["03/EP01_01"].onset_path is None  # no sub03 folder at all
    assert sorted(report["missing_frames"]) == ["02/EP06_02f", "03/EP01_01"]
    assert report["emotions"]["confused"] == 1
    assert class_counts(records, CASME2_CLASSES)["others"] == 1

    cropped, _ = load_records(casme2_folder, layout="cropped")
    assert cropped[0].onset_path == casme2_folder / "Cropped" / "sub01" / "EP02_01f" / "reg_img46.jpg"


def test_casme2_folder_is_the_subject_parent(casme2_folder):
    sheet = casme2_folder / "annotations" / "CASME2-coding-20190701.xlsx"
    records, report = load_records(casme2_folder / "Cropped", sheet=sheet)
    assert records[0].apex_path == casme2_folder / "Cropped" / "sub01" / "EP02_01f" / "reg_img59.jpg"
    assert report["frames_root"] == str(casme2_folder / "Cropped")


def test_samm_layout_varying_digits(tmp_path):
    root = tmp_path / "SAMM_release"
    preamble = [["SAMM Dataset - Master FACS Codes"], [], ["notes about the release", None, None, "x"]]
    write_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", preamble + [
        SAMM_HEADER,
        ["006", "006_1_2", 1, 5562, 5588, 5632, 71, "Micro - 1/2", "4+7", "Anger", 3, None],
        [7, "007_5_3", 5, 759, 797, 835, 77, "Micro - 1/2", 26, "Surprise", 7, None],     # int subject
        ["028", "028_4_1", 4, 1071, 1143, 1134, 64, "Micro - 1/2", "R12 + R15", "Other", 7, None],
    ], sheet="MICRO_ONLY", first_sheet="README")
    write_frames(root / "SAMM" / "006" / "006_1_2", [f"006_{i:05d}.jpg" for i in (5562, 5588, 5600)])
    write_frames(root / "SAMM" / "007" / "007_5_3", [f"007_{i:04d}.jpg" for i in (759, 797)])
    write_frames(root / "SAMM" / "028" / "028_4_1", [f"028_{i}.jpg" for i in (1071, 1143)])
    assert detect_dataset(root) == "samm"
    records, report = load_records(root)
    assert report["header_row"] == 4 and report["sheet_name"] == "MICRO_ONLY"
    r = {x.key: x for x in records}
    assert r["006/006_1_2"].onset_path.name == "006_05562.jpg" and r["006/006_1_2"].apex_path.name == "006_05588.jpg"
    assert r["007/007_5_3"].subject == "007" and r["007/007_5_3"].apex_path.name == "007_0797.jpg"
    assert r["028/028_4_1"].aus == (12, 15) and r["028/028_4_1"].apex_path.name == "028_1143.jpg"
    assert report["apex_outside"] == ["028/028_4_1"] and report["missing_frames"] == []
    assert class_counts(records, SAMM_CLASSES) == {"anger": 1, "contempt": 0, "happiness": 0, "surprise": 1,
                                                   "other": 1}


def test_casme3_layout(tmp_path):
    root = tmp_path / "CASME3"
    write_xlsx(root / "part_A" / "annotation" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", [
        ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"],
        ["spNO.1", "a", "355", "359", "360", "5", "II", "others"],
        ["spNO.1", "a", "400", "405", "410", "L2", "II", "surprise"],
        ["spNO.2", "B", "7", "9", "12", "4", "III", "disgust"],
    ], sheet="label")
    frames = root / "part_A" / "data" / "part_A"
    write_frames(frames / "spNO.1" / "a" / "color", [f"{i}.jpg" for i in (355, 359, 400, 405)])
    write_frames(frames / "spNO.1" / "a" / "depth", [f"{i}.png" for i in (355, 359)])
    write_frames(frames / "spNO.2" / "b", [f"{i}.jpg" for i in (7, 9)])  # no modality level, lower-case folder
    records, report = load_records(root)
    assert report["dataset"] == "casme3" and report["missing_frames"] == []
    assert [r.sample_id for r in records] == ["a_355", "a_400", "B_7"]
    assert records[0].apex_path == frames / "spNO.1" / "a" / "color" / "359.jpg"
    assert records[2].onset_path == frames / "spNO.2" / "b" / "7.jpg"


def test_manifest(tmp_path):
    write_frames(tmp_path / "faces", ["on.jpg", "ap.jpg"])
    absolute = tmp_path / "faces" / "ap.jpg"
    (tmp_path / "list.csv").write_text(
        "subject,sample_id,onset_path,apex_path,emotion,aus\n"
        f"s1,clip1,faces/on.jpg,{absolute},Happiness,R6+12\n"
        "s2,clip2,faces/on.jpg,faces/gone.jpg,other,?\n")
    assert detect_dataset(tmp_path) == "manifest"
    records, report = load_records(tmp_path)
    assert records[0].onset_path == tmp_path / "faces" / "on.jpg" and records[0].apex_path == absolute
    assert records[0].aus == (6, 12) and records[0].dataset == "manifest"
    assert records[1].apex_path is None and report["missing_frames"] == ["s2/clip2"]


def test_manifest_missing_column(tmp_path):
    bad = tmp_path / "list.csv"
    bad.write_text("subject,sample_id,onset_path,apex_path,emotion\ns1,c1,a.jpg,b.jpg,happiness\n")
    with pytest.raises(MertoolError, match=r"list\.csv.*aus"):
        load_records(tmp_path, kind="manifest", sheet=bad)


# ---------------------------------------------------------------------------------------------------- bad input

def test_missing_sheet(tmp_path):
    write_frames(tmp_path / "CASME2-RAW" / "sub01" / "EP02_01f", ["img1.jpg"])
    with pytest.raises(MertoolError, match=r"no CASME II annotation sheet found.*CASME2-coding") as e:
        load_records(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(MertoolError, match="no annotation sheet found"):
        load_records(tmp_path / "CASME2-RAW" / "sub01")  # nothing to go by
    with pytest.raises(MertoolError, match="not found"):
        load_records(tmp_path, sheet=tmp_path / "nope.xlsx")
    with pytest.raises(MertoolError, match="dataset folder not found"):
        load_records(tmp_path / "nowhere")


def test_sheet_without_header(tmp_path):
    sheet = write_xlsx(tmp_path / "CASME2-coding-20190701.xlsx", [["a", "b", "c"], [1, 2, 3]])
    with pytest.raises(MertoolError, match=r"CASME2-coding-20190701\.xlsx: no recognisable header \(expected columns"):
        load_records(tmp_path, sheet=sheet)
    with pytest.raises(MertoolError, match=r"CASME2-coding-20190701\.xlsx: no header row with columns Subject"):
        load_records(tmp_path, kind="casme2", sheet=sheet)
    partial = write_xlsx(tmp_path / "p.xlsx", [["Subject", "Filename", "OnsetFrame", "Estimated Emotion"]])
    with pytest.raises(MertoolError, match=r"p\.xlsx: header on sheet 'Sheet1' row 1 lacks column\(s\) ApexFrame, OffsetFrame, Action Units"):
        load_records(tmp_path, kind="casme2", sheet=partial)


def test_unknown_kind_and_bad_frame_number(tmp_path):
    sheet = write_xlsx(tmp_path / "s.xlsx", [CASME2_HEADER, ["01", "EP1", None, "x12", 14, 20, None, 4, "others"]])
    with pytest.raises(MertoolError, match="unknown dataset kind 'casme9'"):
        load_records(tmp_path, kind="casme9")
    with pytest.raises(MertoolError, match=r"s\.xlsx row 2, column 'onset': 'x12' is not a frame number"):
        load_records(tmp_path, sheet=sheet)


def test_damaged_sheet(tmp_path):
    bad = tmp_path / "CASME2-coding-20190701.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(MertoolError, match="cannot read spreadsheet"):
        load_records(tmp_path, kind="casme2", sheet=bad)


def test_old_xls_sheet_is_named(tmp_path):
    (tmp_path / "CAS(ME)3_part_A_v2.xls").write_bytes(b"\xd0\xcf\x11\xe0 old format")
    with pytest.raises(MertoolError, match=r"CAS\(ME\)3_part_A_v2\.xls.*save them as \.xlsx"):
        load_records(tmp_path)
    with pytest.raises(MertoolError, match=r"old \.xls format is not supported"):
        load_records(tmp_path, kind="casme3", sheet="CAS(ME)3_part_A_v2.xls")


def test_casme2_2014_question_marks_are_unknown_not_none(realdata, tmp_path):
    """The 2014 sheet's five '?' AU cells (all 'others'): aus_known false, no AU bits, and an oracle recipe that would
    feed them as "no AU active" is refused, naming them; the 2019 sheet codes every row."""
    from mertool.cache.store import CachedSample, CacheWriter, load_cache
    from mertool.data.aus import au_bits
    from mertool.errors import MertoolError
    from mertool.recipe import load_recipe
    from mertool.training.dataset import load_for_recipe

    sheet = realdata / "annotations" / "casme2" / "CASME2-coding-20140508.xlsx"
    records, _ = load_records(sheet.parent, sheet=sheet)
    unknown = [r for r in records if not r.aus_known]
    assert sorted(r.key for r in unknown) == ["05/EP05_03", "05/EP07_01", "05/EP13_04f", "19/EP11_01f", "26/EP13_01"]
    assert all(r.aus_raw == "?" and r.aus == () and r.emotion == "others" for r in unknown)
    newer = realdata / "annotations" / "casme2" / "CASME2-coding-20190701.xlsx"
    assert all(r.aus_known for r in load_records(newer.parent, sheet=newer)[0])
    # through the cache: stored as unknown, refused under model.aus oracle, dropped on request
    w = CacheWriter(tmp_path / "c.h5", dataset="casme2", image_size=16, alignment={"method": "test"})
    frame = np.zeros((16, 16, 3), np.uint8)
    for r in records:
        w.append(CachedSample(onset=frame, apex=frame + 1, aus=au_bits(r.aus), landmarks=None, subject=r.subject,
                              sample_id=r.sample_id, emotion=r.emotion, aus_raw=r.aus_raw, aus_known=r.aus_known))
    cache = load_cache(w.close())
    assert int((~cache.aus_known).sum()) == 5
    with pytest.raises(MertoolError, match="5 samples whose AU codes are unknown"):
        load_for_recipe(cache, load_recipe("casme2"))
    data = load_for_recipe(cache, load_recipe("casme2", ["data.unknown_aus=drop"]))
    assert data.excluded["AU codes unknown (data.unknown_aus: drop)"] == 5


def test_unknown_au_cells_in_a_manifest(tmp_path):
    from mertool.data.aus import parse_aus

    assert parse_aus("unknown").unknown and parse_aus("?").unknown and parse_aus("").unknown
    (tmp_path / "m.csv").write_text("subject,sample_id,onset_path,apex_path,emotion,aus\n"
                                    "s1,a,x.png,y.png,happiness,6+12\ns1,b,x.png,y.png,others,?\n"
                                    "s1,c,x.png,y.png,others,unknown\ns1,d,x.png,y.png,others,\n")
    records, _ = load_records(tmp_path / "m.csv", kind="manifest")
    assert [r.aus_known for r in records] == [True, False, False, False]


def test_find_sheets_reads_no_more_of_a_frame_folder_than_it_needs(tmp_path, monkeypatch):
    """find_sheets searches the folder given whole and every small folder below it, in os.walk's sorted order, but
    stops listing a frame folder (more than FRAME_FOLDER images) after that many images, and neither searches it
    nor descends into it: a data set of a million frames costs ~50 names per frame folder."""
    import os

    from mertool.datasets import _sheet

    (tmp_path / "b_notes").mkdir()
    (tmp_path / "b_notes" / "coding.xlsx").write_bytes(b"")
    for name in ("z.csv", "a.csv", "~$lock.xlsx", ".hidden.csv"):
        (tmp_path / name).write_bytes(b"")
    for i in range(60):  # images beside the sheets in the folder given: it is still searched whole
        (tmp_path / f"root{i}.jpg").write_bytes(b"")
    frames = tmp_path / "a_frames" / "sub01" / "EP01"
    frames.mkdir(parents=True)
    for i in range(5000):
        (frames / f"img{i}.jpg").write_bytes(b"")
    (frames / "stray.csv").write_bytes(b"")
    (frames / "deeper").mkdir()
    (frames / "deeper" / "inside.csv").write_bytes(b"")
    few = tmp_path / "a_frames" / "sub01" / "EP02"   # 50 images: not a frame folder by the rule, searched
    few.mkdir()
    for i in range(_sheet.FRAME_FOLDER):
        (few / f"img{i}.jpg").write_bytes(b"")
    (few / "labels.csv").write_bytes(b"")

    read = {}
    scandir = os.scandir

    class Counting:
        def __init__(self, path):
            self.path, self.it = Path(path), scandir(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.it.close()

        def __iter__(self):
            for entry in self.it:
                read[self.path] = read.get(self.path, 0) + 1
                yield entry

    monkeypatch.setattr(_sheet.os, "scandir", Counting)
    found = _sheet.find_sheets(tmp_path)
    assert found == [tmp_path / "a.csv", tmp_path / "z.csv", few / "labels.csv", tmp_path / "b_notes" / "coding.xlsx"]
    assert read[tmp_path] == 66 and read[few] == _sheet.FRAME_FOLDER + 1
    assert read[frames] <= _sheet.FRAME_FOLDER + 3 and frames / "deeper" not in read  # 5003 entries there
