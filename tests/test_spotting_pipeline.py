"""Spotting end to end on synthetic long videos: synth --long -> adapter -> spotting cache (resume, gaps, info) ->
training-free and learned spotters -> MEGC evaluation -> `mertool spot`, `predict LONG_VIDEO` and STR."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from mertool.cli import main
from mertool.spotting.intervals import Interval, read_intervals_csv

SECONDS = 8.0


@pytest.fixture(scope="module")
def long_set(tmp_path_factory):
    """Two subjects, one 8 s video each (seed 0), and their spotting cache."""
    from mertool.spotting.cache import build_spot_cache
    from mertool.spotting.synth import synth_long

    root = tmp_path_factory.mktemp("long")
    synth_long(root / "data", subjects=2, seconds=SECONDS, seed=0, workers=1)
    report = build_spot_cache(root / "data", out=root / "long.spot.h5", workers=1)
    manifest = json.loads((root / "data" / "synth_long.json").read_text())
    return {"root": root, "data": root / "data", "cache": root / "long.spot.h5", "report": report,
            "manifest": manifest}


def _truth(manifest, kinds=("micro", "macro")) -> list[Interval]:
    return [Interval(v["video"], e["onset"], e["offset"], e["apex"], e["kind"] if e["kind"] != "blink" else None)
            for v in manifest["videos"] for e in v["events"] if e["kind"] in kinds]


def test_synthetic_sheet_is_read_by_the_casme3_adapter(long_set):
    from mertool.datasets.longvideo import load_long_videos

    d = load_long_videos(long_set["data"])
    assert d.dataset == "casme3_lv" and d.fps == 30.0
    assert sorted(d.videos) == ["spNO.1_a", "spNO.2_a"]
    assert all(v.frames is not None and (v.frames / "0.jpg").is_file() for v in d.videos.values())
    truth = _truth(long_set["manifest"])
    assert sorted((i.video, i.onset, i.apex, i.offset, i.type) for i in d.intervals) == \
        sorted((i.video, i.onset, i.apex, i.offset, i.type) for i in truth)
    assert len(d.blinks) == sum(e["kind"] == "blink" for v in long_set["manifest"]["videos"] for e in v["events"])
    micro = [i for i in truth if i.type == "micro"]
    assert micro and all(i.offset - i.onset <= 15 for i in micro)   # at most 0.5 s at 30 fps


def test_cache_holds_every_frame_the_truth_and_info(long_set, capsys):
    from mertool.spotting.cache import load_spot_cache, parts_dir, report_path

    data = load_spot_cache(long_set["cache"])
    n = int(SECONDS * 30)
    assert data.fps == 30.0 and sorted(data.videos) == ["spNO.1_a", "spNO.2_a"]
    for f in data.videos.values():
        assert f.track.shape == (n, 19, 2) and list(f.numbers) == list(range(n)) and not f.gaps.any()
    assert len(data.gt) == len(_truth(long_set["manifest"]))
    assert not parts_dir(long_set["cache"]).exists() and report_path(long_set["cache"]).is_file()
    assert main(["cache", "info", str(long_set["cache"])]) == 0
    out = capsys.readouterr().out
    assert "spotting" in out and "30 fps" in out
    assert f"{2 * n}" in out


def test_an_interrupted_cache_resumes_and_loses_nothing(long_set, tmp_path):
    from mertool.spotting.cache import build_spot_cache, load_spot_cache, parts_dir, save_part

    done = load_spot_cache(long_set["cache"]).videos["spNO.1_a"]
    out = tmp_path / "resumed.spot.h5"
    parts_dir(out).mkdir()
    save_part(parts_dir(out) / "spNO.1_a.npz", done)          # what an interrupted run leaves
    report = build_spot_cache(long_set["data"], out=out, workers=1, resume=True)
    assert report["already_cached"] == 1 and report["computed_now"] == 1 and report["videos_cached"] == 2
    again = load_spot_cache(out)
    np.testing.assert_array_equal(again.videos["spNO.1_a"].track, done.track)
    with pytest.raises(Exception, match="exists; pass --resume"):
        build_spot_cache(long_set["data"], out=out, workers=1)


def test_training_free_spotter_finds_the_synthetic_expressions(long_set):
    from mertool.spotting.cache import load_spot_cache
    from mertool.spotting.megc import score_spotting
    from mertool.spotting.peaks import PeakSpotter

    data = load_spot_cache(long_set["cache"])
    pred = [iv for v, f in data.videos.items() for iv in PeakSpotter().spot(f, v)]
    score = score_spotting(pred, _truth(long_set["manifest"]), 30.0)
    assert score.overall["f1"] >= 0.5, score.figures()
    blinks = _truth(long_set["manifest"], ("blink",))
    # blinks are distractors: no spotted interval is a blink (IoU >= 0.5 with one)
    from mertool.spotting.megc import iou
    assert not [p for p in pred for b in blinks if p.video == b.video and iou(p, b) >= 0.5]


def test_strength_keeps_a_bump_and_drops_a_step():
    from mertool.spotting.peaks import region_strength

    n = 300
    track = np.zeros((n, 2, 2), np.float32)
    track[100:115, 0, 0] = 2.0            # an expression: out and back
    track[200:, 1, 1] = 3.0               # a lasting shift (a chained-flow error or a head move)
    s = region_strength(track, np.zeros(n, np.int32), 30.0, window=3.0)
    assert s[100:115, 0].min() == pytest.approx(2.0) and s[:100, 0].max() == 0 and s[115:, 0].max() == 0
    assert s[:, 1].max() == 0


def test_gaps_are_recorded_and_never_spotted(long_set, tmp_path):
    from mertool.spotting.video import spot_video

    src = long_set["data"] / "data" / "part_A" / "spNO.1" / "a" / "color"
    folder = tmp_path / "frames"
    shutil.copytree(src, folder)
    grey = np.full((320, 320, 3), 128, np.uint8)
    for k in range(100, 140):                 # a hand over the face: nothing a detector calls a face
        cv2.imwrite(str(folder / f"{k}.jpg"), grey)
    outcome = spot_video(folder, fps=30)
    gaps = outcome.features.gap_ranges()
    assert len(gaps) == 1 and gaps[0][0] <= 100 and 139 <= gaps[0][1] <= 145, gaps
    assert all(iv.offset < gaps[0][0] or iv.onset > gaps[0][1] for iv in outcome.intervals)
    assert outcome.features.shot.max() >= 1          # the face is found again after the gap: a new shot


@pytest.fixture(scope="module")
def learned_run(long_set, tmp_path_factory):
    run = tmp_path_factory.mktemp("spotrun") / "run"
    code = main(["train-loso", "spot_demo", "--cache", str(long_set["cache"]), "--out", str(run), "--final",
                 "--set", "train.epochs=2", "--set", "train.steps_per_epoch=5"])
    assert code == 0
    return run


def test_learned_spotter_trains_loso_and_evaluates_the_megc_way(learned_run, capsys):
    assert sorted(p.name for p in (learned_run / "folds").iterdir()) == ["spNO.1", "spNO.2"]
    assert (learned_run / "final" / "model.pt").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(learned_run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for k in ("micro", "macro", "overall"):
        assert set(report[k]) >= {"tp", "predicted", "ground_truth", "precision", "recall", "f1"}
    assert report["overall"]["predicted"] == len(read_intervals_csv(learned_run / "intervals.csv"))
    assert (learned_run / "megc_log.txt").is_file()
    assert main(["evaluate", str(learned_run)]) == 0
    assert "MEGC" in capsys.readouterr().out


def test_a_spotting_recipe_is_checked(long_set, tmp_path, capsys):
    code = main(["train-loso", "spot_demo", "--cache", str(long_set["cache"]), "--out", str(tmp_path / "r"),
                 "--set", "train.epochs=0"])
    err = capsys.readouterr().err
    assert code == 2 and "train.epochs" in err and len(err.strip().splitlines()) == 1


def test_spot_command_timeline_csv_png_and_json(long_set, learned_run, tmp_path, capsys):
    src = long_set["data"] / "data" / "part_A" / "spNO.2" / "a" / "color"
    csv_path, png = tmp_path / "iv.csv", tmp_path / "curve.png"
    assert main(["spot", str(src), "--fps", "30", "--json", "--out", str(csv_path), "--plot", str(png)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fps"] == 30.0 and d["frames"] == int(SECONDS * 30) and len(d["curve"]) == d["frames"]
    rows = read_intervals_csv(csv_path)
    assert [(r.onset, r.offset, r.type) for r in rows] == [(i["onset"], i["offset"], i["type"])
                                                             for i in d["intervals"]]
    assert png.stat().st_size > 1000
    assert main(["spot", str(src), "--fps", "30", "--plot", str(png), "--spotter", str(learned_run)]) == 0
    out = capsys.readouterr().out
    assert "motion" in out and "intervals" in out and "learned" in out
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    assert main(["spot", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.mp4" in err[0]


def test_predict_long_video_and_str(long_set, learned_run, tmp_path, capsys):
    from test_predict import save_model

    from mertool.spotting.recognise import str_evaluate

    model = save_model(tmp_path / "model.pt")
    src = long_set["data"] / "data" / "part_A" / "spNO.1" / "a" / "color"
    assert main(["predict", str(src), "--model", str(model), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["intervals"] and all(i["class"] in d["classes"] and 0 < i["probability"] <= 1 for i in d["intervals"])
    # each interval's registration, as predict's pair JSON gives it (flag empty: synth's head motion is plausible)
    assert all(i["registration"]["flag"] == "" and i["registration"]["applied"] for i in d["intervals"])
    classes = {(v["video"], e["onset"], e["offset"]): e["emotion"] for v in long_set["manifest"]["videos"]
               for e in v["events"]}
    report = str_evaluate(learned_run, model, classes)
    assert set(report["str"]["overall"]) >= {"spotting_f1", "uf1", "str"}
    assert report["pairs"] == report["spotting"]["overall"]["tp"] and report["unlabelled"] == 0


def test_long_video_table_warns_of_a_refused_registration(monkeypatch):
    """`predict LONG_VIDEO`'s text names an interval whose registration was refused, with its flag."""
    from rich.console import Console

    import mertool.spotting.video as video
    from mertool.spotting.recognise import render_long

    monkeypatch.setattr(video, "render_timeline", lambda outcome, console: None)
    flag = "registration refused: head motion (+1.0, +0.0) px, +9.0 deg, scale 1.000 is implausible"
    reg = {"flag": flag, "note": "", "residual": 0.4, "applied": False, "shift_x": 1.0, "shift_y": 0.0,
           "rotation": 9.0}
    row = {"onset": 10, "apex": 14, "offset": 20, "type": "micro", "class": "happiness", "probability": 0.5}
    console = Console(record=True, width=200)
    render_long({"model": "m.pt", "aus_source": "none", "outcome": None,
                 "intervals": [{**row, "registration": reg}, {**row, "onset": 40, "registration": None}]}, console)
    text = console.export_text()
    assert f"warning: interval 10-20: {flag}" in text and "interval 40-20" not in text
