"""Long-video spotting sheets (CAS(ME)^2, SAMM Long Videos, CAS(ME)^3 part A) read with the published counts, a
CAS(ME)^3-layout .xlsx with frames found as the dataset ships them, and `mertool evaluate-spot` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mertool.cli import main
from mertool.datasets.longvideo import FPS, load_long_videos, sniff_long_sheet
from mertool.errors import MertoolError

SHEETS = {"casme_sq": "casme_sq/CAS(ME)^2code_final.xlsx", "samm_lv": "samm_lv/SAMM_LongVideos_V2_Release.xlsx",
          "casme3_lv": "casme3_partA/CAS(ME)3_part_A_v2.xls"}
# published counts (realdata README, issue #19): rows, macro, micro, subjects, videos with expressions, blinks
COUNTS = {"casme_sq": (357, 300, 57, 22, None, 0), "samm_lv": (502, 343, 159, 30, 147, 0),
          "casme3_lv": (4206, 3346, 860, 98, 956, 841)}


@pytest.mark.realdata
@pytest.mark.parametrize("kind", sorted(SHEETS))
def test_real_sheets_counts(realdata, kind):
    sheet = realdata / "annotations/spotting" / SHEETS[kind]
    assert sniff_long_sheet(sheet) == kind
    got = load_long_videos(sheet)
    c = got.counts()
    rows, macro, micro, subjects, videos, blinks = COUNTS[kind]
    assert (c["rows"], c["macro"], c["micro"], c["subjects"], c["blinks"]) == (rows, macro, micro, subjects, blinks)
    if videos is not None:
        assert c["videos"] == videos
    assert got.fps == FPS[kind]
    # the sheets' overlapping expressions (CAS(ME)^2 anger2_2 3363-3383 and anger2_3 3380-3407, ...) each match
    # themselves when the ground truth is scored as a prediction: no pair is lost to a neighbour
    from mertool.spotting.megc import evaluate, load_ground_truth
    assert evaluate(got.intervals, load_ground_truth(sheet))["overall"]["f1"] == 1.0


@pytest.mark.realdata
def test_real_sheets_quirks(realdata):
    base = realdata / "annotations/spotting"
    casme = load_long_videos(base / SHEETS["casme_sq"])
    first = casme.expressions[0].interval  # row 1: subject 1 (s15), anger1_1 (0401), 557 572 608
    assert (first.video, first.subject, first.onset, first.apex, first.offset) == ("15_0401", "s15", 557, 572, 608)
    assert "44 rows have offset 0" in " ".join(casme.warnings)
    third = casme.expressions[2].interval  # anger2_1: offset 0 -> the apex 2163
    assert (third.video, third.onset, third.offset) == ("15_0402", 2155, 2163)
    assert sum(1 for iv in casme.intervals if iv.apex is None) == 1  # the one row with apex 0
    samm = load_long_videos(base / SHEETS["samm_lv"])
    one = samm.expressions[0].interval  # 006_1_1: 566.4, 647.6, 743.2 displayed as 566, 648, 743
    assert (one.video, one.subject, one.onset, one.apex, one.offset, one.type) == ("006_1", "006", 566, 648, 743,
                                                                                   "macro")
    assert sum(1 for iv in samm.intervals if iv.apex is None) == 6  # apex -1
    casme3 = load_long_videos(base / SHEETS["casme3_lv"])
    assert all(iv.video == iv.video.split("_")[0] + "_" + iv.video.split("_")[1].lower() for iv in casme3.intervals)
    assert casme3.intervals[0].video == "spNO.1_a" and casme3.blinks[0].video == "spNO.1_a"


def _write_casme3_book(path: Path, rows, blinks, header=("Subject", "Filename", "Onset", "Apex", "Offset", "AU",
                                                          "Expression type", "Objective class")):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "AU+Emotion"
    ws.append(list(header))
    for r in rows:
        ws.append(list(r))
    wb.create_sheet("eye blink").append(["Subject", "Filename", "Onset", "Offset"])
    for r in blinks:
        wb["eye blink"].append(list(r))
    wb.save(path)


@pytest.fixture
def casme3_folder(tmp_path):
    """A CAS(ME)^3-layout folder: workbook (.xlsx) and frames spNO.1/a/color/N.jpg, spNO.1/b (no expressions)."""
    root = tmp_path / "CASME3"
    for video in ("a", "b"):
        frames = root / "part_A" / "spNO.1" / video / "color"
        frames.mkdir(parents=True)
        for n in range(1, 4):
            (frames / f"{n}.jpg").write_bytes(b"")
    (root / "part_A" / "spNO.2" / "J").mkdir(parents=True)  # no colour level; capital J as the sheet writes it
    _write_casme3_book(root / "labels.xlsx",
                       [("spNO.1", "a", "10", "12", "20", "4", "Micro-expression", "II"),
                        ("spNO.1", "a", 100, 150, 400, "12", "Macro-expression", "I"),
                        ("spNO.2", "J", 5, 9, 12, "", "Micro-expression", "VII")],
                       [("spNO.1", "a", 30, 35)])
    return root


def test_casme3_xlsx_and_frames(casme3_folder):
    got = load_long_videos(casme3_folder)
    assert got.dataset == "casme3_lv" and got.fps == 30.0
    assert [(iv.video, iv.onset, iv.apex, iv.offset, iv.type) for iv in got.intervals] == [
        ("spNO.1_a", 10, 12, 20, "micro"), ("spNO.1_a", 100, 150, 400, "macro"), ("spNO.2_j", 5, 9, 12, "micro")]
    assert [e.emotion for e in got.expressions] == ["II", "I", "VII"]
    assert [(b.video, b.onset, b.offset) for b in got.blinks] == [("spNO.1_a", 30, 35)]
    assert got.videos["spNO.1_a"].frames == casme3_folder / "part_A/spNO.1/a/color"
    assert got.videos["spNO.1_b"].frames == casme3_folder / "part_A/spNO.1/b/color"  # found on disk only
    assert got.videos["spNO.2_j"].frames == casme3_folder / "part_A/spNO.2/J"


def test_unknown_header_is_one_line(tmp_path, capsys):
    sheet = tmp_path / "other.xlsx"
    _write_casme3_book(sheet, [("1", "a", 1, 2, 3)], [], header=("Who", "Clip", "Start", "Peak", "End"))
    with pytest.raises(MertoolError, match=r"not a long-video sheet .*found header: sheet 'AU\+Emotion': Who, Clip"):
        load_long_videos(sheet)
    pred = tmp_path / "p.csv"
    pred.write_text("video,onset,offset\nv,1,2\n")
    assert main(["evaluate-spot", str(pred), "--gt", str(sheet)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Who, Clip, Start" in err
    assert main(["evaluate-spot", str(pred), "--gt", str(tmp_path)]) == 2  # a folder: each sheet's header shown
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "other.xlsx (sheet 'AU+Emotion': Who, Clip" in err and "p.csv (sheet" in err


def test_bad_sheet_row_names_the_row(tmp_path):
    sheet = tmp_path / "gt.xlsx"
    _write_casme3_book(sheet, [("spNO.1", "a", 10, 12, 20, "4", "Micro-expression", "II"),
                               ("spNO.1", "a", 50, 52, 40, "4", "Micro-expression", "II")], [])
    with pytest.raises(MertoolError, match=r"gt\.xlsx sheet 'AU\+Emotion' row 3: offset 40 is before onset 50"):
        load_long_videos(sheet)


def test_evaluate_spot_cli(casme3_folder, tmp_path, capsys):
    pred = tmp_path / "pred.csv"
    # spNO.1_a: 11..20 vs micro 10..20: 10/11 -> TP; 100..300 (macro) vs 100..400: 201/301 = 0.67 -> TP;
    # spNO.2_j: 0..3 (untyped, 3 steps at 30 fps: micro) vs 5..12: disjoint -> FP, and 5..12 a FN;
    # spNO.1_b: no expressions -> FP; spNO.9_z unknown -> FP and a warning
    pred.write_text("video,onset,offset,type,score\nspNO.1_a,11,20,micro,0.9\nspNO.1_a,100,300,macro,0.8\n"
                    "spNO.2_j,0,3,,\nspNO.1_b,1,3,micro,\nspNO.9_z,1,3,micro,\n")
    log = tmp_path / "megc.txt"
    assert main(["evaluate-spot", str(pred), "--gt", str(casme3_folder), "--json", "--log", str(log)]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    # micro: TP 1, predicted 4, GT 2 -> P 0.25, R 0.5, F1 2/6; macro: 1/1/1; overall: TP 2, predicted 5, GT 3
    assert out["micro"] == {"tp": 1, "predicted": 4, "ground_truth": 2, "precision": 0.25, "recall": 0.5,
                            "f1": pytest.approx(1 / 3)}
    assert out["macro"] == {"tp": 1, "predicted": 1, "ground_truth": 1, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert out["overall"]["f1"] == pytest.approx(4 / 8)
    for kind in ("micro", "macro", "overall"):
        assert set(out[kind]) == {"tp", "predicted", "ground_truth", "precision", "recall", "f1"}
    assert "spNO.9_z" in captured.err and "spNO.1_b" not in captured.err
    lines = log.read_text().splitlines()
    assert lines[0] == "casme3_lv"
    assert "spNO.1_a 10 20 11 20 TP micro" in lines and "spNO.2_j 5 12 - - FN micro" in lines


def test_evaluate_spot_bad_prediction_row(casme3_folder, tmp_path, capsys):
    pred = tmp_path / "pred.csv"
    for body, expected in (("spNO.1_a,20,11\n", "row 3: offset 11 is before onset 20"),
                           ("spNO.1_a,abc,11\n", "row 3: onset 'abc' is not a number")):
        pred.write_text("video,onset,offset\nspNO.1_a,1,2\n" + body)
        assert main(["evaluate-spot", str(pred), "--gt", str(casme3_folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(pred) in err and expected in err


def test_evaluate_spot_csv_ground_truth_needs_fps_without_type(tmp_path, capsys):
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gt.write_text("video,onset,offset\nv,10,20\nv,100,200\n")
    pred.write_text("video,onset,offset\nv,10,19\n")
    assert main(["evaluate-spot", str(pred), "--gt", str(gt)]) == 2
    assert "--fps" in capsys.readouterr().err
    # at 30 fps: 10..20 spans 10 steps (micro), 100..200 is macro; 10..19 vs 10..20: 10/11 -> micro TP
    assert main(["evaluate-spot", str(pred), "--gt", str(gt), "--fps", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["micro"]["tp"] == 1 and out["macro"]["ground_truth"] == 1 and out["overall"]["recall"] == 0.5


def _book(path: Path, sheets: dict[str, list]):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for r in rows:
            ws.append(list(r))
    wb.save(path)


def _frames(folder: Path, names=("img1.jpg",)):
    folder.mkdir(parents=True)
    for n in names:
        (folder / n).write_bytes(b"")


def test_casme_sq_layout(tmp_path):
    root = tmp_path / "CASME_sq"
    root.mkdir()
    _book(root / "gt.xlsx", {  # headerless, as released; the naming rules name folders and video codes
        "CASFEcode_final": [(1, "anger1_1", 557, 572, 608, "4+10", "negative", "macro-expression", "anger"),
                            (1, "disgust1_2", 10, 14, 0, 4, "others", "macro-expression", "fear"),   # offset 0
                            (2, "happy1_1", 5, 0, 12, 12, "positive", "micro-expression", "happiness")],  # apex 0
        "naming rule1": [(15, "s15", 1), (15, "s15", 1), (16, "s16", 2)],
        "naming rule2": [("0401", "anger1"), ("0101", "disgust1"), ("0502", "happy1")]})
    for sub in ("rawpic", "cropped"):
        _frames(root / sub / "s15" / "15_0401girlcrashing")
    _frames(root / "rawpic" / "s15" / "15_0101disgustingteeth")
    _frames(root / "rawpic" / "s15" / "15_0102eatingworms")  # a video without expressions
    for sub in ("s15", "s16"):  # the videos as files: more subject folders than rawpic/, but no frame folders
        (root / "rawvideo" / sub).mkdir(parents=True)
        (root / "rawvideo" / sub / f"{sub[1:]}_0401girlcrashing.avi").write_bytes(b"")
    got = load_long_videos(root)
    assert got.dataset == "casme_sq" and got.fps == 30.0
    assert [(iv.video, iv.subject, iv.onset, iv.apex, iv.offset, iv.type) for iv in got.intervals] == [
        ("15_0401", "s15", 557, 572, 608, "macro"), ("15_0101", "s15", 10, 14, 14, "macro"),
        ("16_0502", "s16", 5, None, 12, "micro")]
    assert [e.emotion for e in got.expressions] == ["negative", "others", "positive"]
    assert got.videos["15_0401"].frames == root / "rawpic/s15/15_0401girlcrashing"
    assert got.videos["15_0102"].frames == root / "rawpic/s15/15_0102eatingworms"
    assert got.videos["16_0502"].frames is None and "1 of 4 videos have no frame folder" in " ".join(got.warnings)
    cropped = load_long_videos(root, layout="cropped")
    assert cropped.videos["15_0401"].frames == root / "cropped/s15/15_0401girlcrashing"


def test_samm_lv_layout(tmp_path):
    root = tmp_path / "SAMM_LV"
    root.mkdir()
    title = [("SAMM Long Videos Dataset - FACS Codes",)] + [("",)] * 8  # header on row 10, as in V2
    header = ("Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type", "Action Units",
              "Notes")
    _book(root / "labels.xlsx", {"FACS_Movement_Only": title + [
        header, ("006", "006_1_1", 1, 566.4, 647.6, 743.2, 176.8, "Macro", "4+7", ""),
        (7, "007_3_2", 3, 100, -1, 180, 80, "Micro - 1/2", "12", "")]})
    _frames(root / "SAMM_longvideos" / "006_1", ("006_1_0001.jpg",))
    _frames(root / "SAMM_longvideos" / "006_2", ("006_2_0001.jpg",))
    got = load_long_videos(root)
    assert got.dataset == "samm_lv" and got.fps == 200.0
    assert [(iv.video, iv.subject, iv.onset, iv.apex, iv.offset, iv.type) for iv in got.intervals] == [
        ("006_1", "006", 566, 648, 743, "macro"), ("007_3", "007", 100, None, 180, "micro")]
    assert got.expressions[0].row == 11
    assert got.videos["006_2"].frames == root / "SAMM_longvideos/006_2" and got.videos["007_3"].frames is None


def test_evaluate_spot_text_table(tmp_path, capsys):
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gt.write_text("video,onset,offset,type\nv,10,20,micro\nv,100,200,macro\n")
    pred.write_text("video,onset,offset,type\nv,10,19,micro\nv,300,400,macro\n")
    assert main(["evaluate-spot", str(pred), "--gt", str(gt)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # micro: 10..19 vs 10..20 (10/11) TP of 1 and 1; macro: 300..400 misses 100..200; overall 1 of 2 and 2
    assert lines[2].split() == ["micro", "1", "1", "1", "1.0000", "1.0000", "1.0000"]
    assert lines[3].split() == ["macro", "0", "1", "1", "0.0000", "0.0000", "0.0000"]
    assert lines[4].split() == ["overall", "1", "2", "2", "0.5000", "0.5000", "0.5000"]
