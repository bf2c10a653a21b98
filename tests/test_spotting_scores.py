"""MEGC spotting scores (mertool.spotting.megc), the intervals CSV, and the STR score, against examples worked
out by hand in the comments (not by the code under test)."""
from __future__ import annotations

import pytest

from mertool.errors import MertoolError
from mertool.spotting.intervals import Interval, read_intervals_csv, type_from_duration, write_intervals_csv
from mertool.spotting.megc import (DatasetGT, evaluate, evaluate_str, format_megc_log, iou, recognition_f1,
                                   score_spotting, str_score)

FPS = 30.0
# Ground truth of video v1 (30 fps), and a second video v0 that has no expressions.
GT = [Interval("v1", 10, 19, 14, "micro"), Interval("v1", 40, 49, 44, "micro"), Interval("v1", 60, 69, None, "micro"),
      Interval("v1", 64, 73, None, "micro"), Interval("v1", 501, 501, None, "micro"),
      Interval("v1", 100, 159, 120, "macro"), Interval("v1", 300, 399, 350, "macro")]
PRED = [
    Interval("v1", 12, 21, type="micro"),   # vs 10..19: frames 12..19 = 8 shared, 10..21 = 12 in all: 0.667 -> TP
    Interval("v1", 15, 24, type="micro"),   # vs 10..19: 15..19 = 5 of 10..24 = 15: 0.333 -> FP (10..19 is taken anyway)
    Interval("v1", 40, 44, type="micro"),   # vs 40..49: 5 of 10 = 0.5, the boundary counts -> TP
    Interval("v1", 62, 71, type="micro"),   # vs 60..69: 8/12 = 0.667; vs 64..73: 8/12 = 0.667 (tie)
    Interval("v1", 64, 73, type="micro"),   # vs 64..73: 1.0; vs 60..69: 6/14 = 0.43
    # highest IoU first: (64..73, 64..73, 1.0) is taken, then 62..71 takes the tie's other GT 60..69 -> both TP
    Interval("v1", 500, 500, type="micro"),  # disjoint from 501..501: IoU 0 -> FP; 501..501 is a FN (the MEGC 2020
                                             # baseline counted an intersection of 1: 1/(1+1-1)... = 0.5 -> TP)
    Interval("v1", 200, 205),               # no type: 205-200 = 5 frame steps = 0.17 s at 30 fps -> micro; FP
    Interval("v0", 1, 5, type="micro"),     # a video without expressions: FP (known video, no warning)
    Interval("v9", 1, 5, type="micro"),     # a video the ground truth does not know: FP, listed as unknown
    Interval("v1", 100, 150, type="macro"),  # vs 100..159: 51 of 60 = 0.85 -> TP; 300..399 is a FN
]
# micro: TP 4 (12..21, 40..44, 62..71, 64..73), predicted 9, ground truth 5
#        precision 4/9 = 0.4444, recall 4/5 = 0.8, F1 = 2*4/(9+5) = 8/14 = 0.5714
# macro: TP 1, predicted 1, ground truth 2: precision 1, recall 0.5, F1 = 2/3
# overall: TP 5, predicted 10, ground truth 7: precision 0.5, recall 5/7 = 0.7143, F1 = 10/17 = 0.5882


def test_hand_worked_example():
    score = score_spotting(PRED, DatasetGT("casme_sq", GT, FPS, videos={"v0", "v1"}))
    assert score.micro == {"tp": 4, "predicted": 9, "ground_truth": 5, "precision": pytest.approx(4 / 9),
                           "recall": pytest.approx(0.8), "f1": pytest.approx(8 / 14)}
    assert score.macro == {"tp": 1, "predicted": 1, "ground_truth": 2, "precision": 1.0, "recall": 0.5,
                           "f1": pytest.approx(2 / 3)}
    assert score.overall == {"tp": 5, "predicted": 10, "ground_truth": 7, "precision": 0.5,
                             "recall": pytest.approx(5 / 7), "f1": pytest.approx(10 / 17)}
    assert score.unknown_videos == ["v9"]
    pairs = {(p.onset, p.offset): (g.onset, g.offset) for p, g in score.true_positives()}
    assert pairs == {(12, 21): (10, 19), (40, 44): (40, 49), (62, 71): (60, 69), (64, 73): (64, 73),
                     (100, 150): (100, 159)}


def test_iou_counts_frames_inclusively():
    assert iou(Interval("v", 10, 19), Interval("v", 15, 24)) == pytest.approx(5 / 15)
    assert iou(Interval("v", 3, 3), Interval("v", 3, 3)) == 1.0
    assert iou(Interval("v", 3, 3), Interval("v", 4, 4)) == 0.0


def test_type_from_duration():
    # SAMM Long Videos at 200 fps: 'Micro - 1/2' rows span <= 100 frame steps, 'Macro' rows >= 101
    assert type_from_duration(0, 100, 200) == "micro" and type_from_duration(0, 101, 200) == "macro"
    assert type_from_duration(10, 25, 30) == "micro" and type_from_duration(10, 26, 30) == "macro"


def test_megc_log_format(tmp_path):
    score = score_spotting(PRED, DatasetGT("casme_sq", GT, FPS, videos={"v0", "v1"}))
    lines = format_megc_log([score]).splitlines()
    assert lines[0] == "2"  # the MEGC 2019 guideline's label for CAS(ME)^2
    assert "v1 10 19 12 21 TP micro" in lines
    assert "v1 - - 15 24 FP micro" in lines
    assert "v1 300 399 - - FN macro" in lines
    assert "v9 - - 1 5 FP micro" in lines
    v1 = [ln.split() for ln in lines if ln.startswith("v1 ")]
    onsets = [int(f[3]) if f[3] != "-" else int(f[1]) for f in v1]
    assert onsets == sorted(onsets) and len(v1) == 8 + 2  # v1: 8 predictions, FNs 501 and 300..399
    assert len(lines) == 1 + 10 + 2  # + v0's and v9's FP


def test_evaluate_several_datasets_and_log(tmp_path):
    other = DatasetGT("samm_lv", [Interval("006_1", 100, 199, None, "macro")], 200.0)
    preds = PRED + [Interval("006_1", 110, 199, type="macro"), Interval("006_1", 1000, 1010)]  # 1000..1010: micro
    out = evaluate(preds, [DatasetGT("casme_sq", GT, FPS, videos={"v0", "v1"}), other], log_path=tmp_path / "log")
    # casme_sq as above but v9 goes to '(unknown videos)' (not this data set's): overall 5 / 9 / 7;
    # samm_lv: 110..199 vs 100..199: 90/100 -> TP; 1000..1010 (10 steps at 200 fps: micro) FP
    assert out["datasets"]["casme_sq"]["overall"] == {"tp": 5, "predicted": 9, "ground_truth": 7,
                                                      "precision": pytest.approx(5 / 9), "recall": pytest.approx(5 / 7),
                                                      "f1": pytest.approx(10 / 16)}
    assert out["datasets"]["samm_lv"]["micro"]["predicted"] == 1
    assert out["overall"]["tp"] == 6 and out["overall"]["predicted"] == 12 and out["overall"]["ground_truth"] == 8
    assert out["unknown_videos"] == ["v9"]
    log = (tmp_path / "log").read_text().splitlines()
    assert log[0] == "2" and "1" in log and "(unknown videos)" in log


def test_empty_denominators_are_none():
    score = score_spotting([], [Interval("v", 1, 5, type="micro")])
    assert score.micro["precision"] is None and score.micro["recall"] == 0.0 and score.micro["f1"] == 0.0
    assert score.macro == {"tp": 0, "predicted": 0, "ground_truth": 0, "precision": None, "recall": None, "f1": None}


def test_str_score():
    score = score_spotting(PRED, DatasetGT("casme_sq", GT, FPS, videos={"v0", "v1"}))
    truth = {10: "positive", 40: "negative", 60: "negative", 64: "surprise", 100: "positive"}
    said = {10: "positive", 40: "negative", 60: "surprise", 64: "surprise", 100: "negative"}
    pairs = [(p, said[g.onset], g, truth[g.onset]) for p, g in score.true_positives()]
    out = str_score(score, pairs)
    # micro pairs (true, predicted): (pos,pos) (neg,neg) (neg,sur) (sur,sur)
    #   positive: TP1 FP0 FN0 -> F1 1; negative: TP1 FN1 -> 2/3; surprise: TP1 FP1 -> 2/3; UF1 = (1+2/3+2/3)/3 = 7/9
    #   UAR: positive 1, negative 1/2, surprise 1 -> 5/6; STR micro = 8/14 * 7/9 = 4/9
    assert out["micro"]["uf1"] == pytest.approx(7 / 9) and out["micro"]["uar"] == pytest.approx(5 / 6)
    assert out["micro"]["str"] == pytest.approx(4 / 9)
    # overall adds (pos,neg): positive TP1 FN1 -> 2/3; negative TP1 FP1 FN1 -> 2/4; surprise 2/3: UF1 = 11/18
    assert out["overall"]["uf1"] == pytest.approx(11 / 18)
    assert out["overall"]["str"] == pytest.approx(10 / 17 * 11 / 18)
    assert recognition_f1([])["uf1"] is None


def test_intervals_csv_round_trip_and_errors(tmp_path):
    ivs = [Interval("15_0401", 10, 20, 15, "micro", 0.75), Interval("15_0401", 30, 90)]
    path = write_intervals_csv(tmp_path / "p.csv", ivs)
    assert path.read_text().splitlines()[0] == "video,onset,offset,apex,type,score"
    assert read_intervals_csv(path) == ivs
    bad = tmp_path / "bad.csv"
    for body, expected in (("v,5,3\n", "row 2: offset 3 is before onset 5"), ("v,x,3\n", "row 2: onset 'x' is not"),
                           ("v,1,3.5\n", "row 2: offset '3.5' is not a frame number"),
                           ("v,1,3\nv,1,4,,blink\n", "row 3: type 'blink'")):
        bad.write_text("video,onset,offset,apex,type\n" + body)
        with pytest.raises(MertoolError, match=expected.replace(".", r"\.")) as e:
            read_intervals_csv(bad)
        assert str(bad) in str(e.value)
    bad.write_text("name,start,end\nv,1,2\n")
    with pytest.raises(MertoolError, match="lacks video, onset, offset"):
        read_intervals_csv(bad)


def test_evaluate_str_from_classified_predictions():
    truth = {10: "positive", 40: "negative", 60: "negative", 64: "surprise", 100: "positive", 300: "negative"}
    said = {12: "positive", 40: "negative", 62: "surprise", 64: "surprise", 100: "negative"}  # keyed by pred onset
    gt = DatasetGT("casme_sq", GT, FPS, {"v0", "v1"}, {g: truth[g.onset] for g in GT if g.onset in truth})
    out = evaluate_str([(p, said.get(p.onset, "others")) for p in PRED], gt)
    # the same TP pairs as test_str_score (12..21 -> 10..19, 62..71 -> 60..69, ...): same UF1 11/18, F1 10/17
    assert out["str"]["overall"]["str"] == pytest.approx(10 / 17 * 11 / 18)
    assert out["str"]["micro"]["pairs"] == 4 and out["unlabelled"] == 0  # 501..501 has no class but is not a TP
    assert out["overall"]["tp"] == 5
