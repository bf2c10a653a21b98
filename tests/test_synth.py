"""Synthetic CASME II-layout data (`mertool synth`): the sheet reads through the CASME II adapter, the motion measured
back with dlib is what was asked (micro amplitude), the rest of the face stays still, and a seed fixes every byte."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mertool.cli import main
from mertool.synth.faces import MAX_PX, aligned_displacement, files_digest, synth

SUBJECTS, PER_SUBJECT = 3, 5     # 3 subjects from 2 default photos: the third reuses a photo with a new identity


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    """A small default set (noise and jitter on), rendered by 2 worker processes."""
    out = tmp_path_factory.mktemp("synth") / "noisy"
    synth(out, subjects=SUBJECTS, per_subject=PER_SUBJECT, seed=3, workers=2)
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """The test mode for measuring motion: no sensor noise, no head jitter (the only image change is the AUs').

    Identities from the astronaut photo only (--faces with one photo: each subject a new face shape, tone, light):
    on Grace Hopper's old scan with glasses dlib's own points wander by ~1 px with nothing moving, too coarse an
    instrument for a 1-px check (figures in the synth helper's report).
    """
    import skimage.data
    from PIL import Image

    faces = tmp_path_factory.mktemp("faces")
    Image.fromarray(skimage.data.astronaut()).save(faces / "astronaut.png")
    out = tmp_path_factory.mktemp("synth") / "clean"
    synth(out, faces=faces, subjects=SUBJECTS + 1, per_subject=PER_SUBJECT, seed=1, workers=1, noise=False,
          jitter=False)
    return out


def _manifest(out: Path) -> dict:
    return json.loads((out / "synth.json").read_text())


def _frame(out: Path, s: dict, n: int) -> np.ndarray:
    from mertool.face.align import read_rgb

    return read_rgb(out / "CASME2-RAW" / f"sub{s['subject']}" / s["sample_id"] / f"img{n}.jpg")


# ------------------------------------------------------------------------------------------ layout and sheet

def test_sheet_read_by_casme2_adapter(noisy):
    from mertool.data.aus import parse_aus
    from mertool.datasets import detect_dataset, load_records

    assert detect_dataset(noisy) == "casme2"
    records, report = load_records(noisy)
    truth = {(s["subject"], s["sample_id"]): s for s in _manifest(noisy)["samples"]}
    assert len(records) == SUBJECTS * PER_SUBJECT == len(truth)
    assert {r.subject for r in records} == {"01", "02", "03"}
    for r in records:
        s = truth[(r.subject, r.sample_id)]
        assert (r.onset, r.apex, r.offset) == (s["onset"], s["apex"], s["offset"])
        assert r.onset < r.apex < r.offset and 10 <= r.offset - r.onset <= 30
        assert r.onset_path.is_file() and r.apex_path.is_file()
        assert r.emotion == s["emotion"] and not r.aus_outside and not r.warnings
        assert r.aus == tuple(sorted(s["aus"])) == parse_aus(s["aus_coded"]).codes
        frames = sorted(int(p.stem[3:]) for p in r.onset_path.parent.glob("img*.jpg"))
        assert frames == list(range(frames[0], frames[-1] + 1)) and frames[0] <= r.onset and frames[-1] >= r.offset
    # balanced classes, sides written FACS-style (R/L prefixes), single plain codes as numbers like CASME II
    assert sorted({r.emotion for r in records}) == ["disgust", "happiness", "others", "repression", "surprise"]


def test_sheet_layout_matches_casme2_2019(noisy, realdata):
    import openpyxl

    real = openpyxl.load_workbook(realdata / "annotations/casme2/CASME2-coding-20190701.xlsx").active
    ours = openpyxl.load_workbook(noisy / "CASME2-coding-synthetic.xlsx").active
    assert [c.value for c in ours[1]] == [c.value for c in real[1]]
    for row in ours.iter_rows(min_row=2, values_only=True):
        subject, _, blank_c, onset, apex, offset, blank_g, aus, emotion, objective = row
        assert isinstance(subject, str) and len(subject) == 2       # text '01', as in the real sheet
        assert blank_c is None and blank_g is None
        assert all(isinstance(v, int) for v in (onset, apex, offset, objective))
        assert isinstance(aus, (int, str)) and emotion in {"happiness", "disgust", "repression", "surprise", "others"}


def test_same_seed_identical_files(noisy, tmp_path):
    again = tmp_path / "again"
    synth(again, subjects=SUBJECTS, per_subject=PER_SUBJECT, seed=3, workers=1)  # 1 process vs 2: same bytes
    assert files_digest(again) == files_digest(noisy)
    other = tmp_path / "other"
    synth(other, subjects=1, per_subject=2, seed=4, workers=1)
    first = sorted((noisy / "CASME2-RAW" / "sub01").iterdir())[0]
    assert not (other / "CASME2-RAW" / "sub01" / first.name).is_dir() or files_digest(other) != files_digest(noisy)


# ------------------------------------------------------------------------------------------------- motion

def test_requested_motion_is_micro_and_sided():
    d = aligned_displacement((6, 12), {6: "B", 12: "R"}, {6: 1.0, 12: 1.0}, peak=3.5)
    norms = np.linalg.norm(d, axis=1)
    assert norms.max() == pytest.approx(3.5)
    assert norms[48] > 2 and norms[54] == 0           # R12: the subject's right lip corner only (image left)
    assert norms[41] > 0 and norms[46] > 0            # AU6 on both sides
    assert norms[[27, 28, 29, 30, 8]].max() == 0      # nose bridge and chin do not move
    big = aligned_displacement((1, 2), {}, {}, peak=9.0)
    assert np.linalg.norm(big, axis=1).max() == pytest.approx(MAX_PX)   # capped at 4 px


def _dlib_landmarks(predictor, rgb: np.ndarray, box, up: int = 2, n: int = 9) -> np.ndarray:
    """68 landmarks with sub-pixel precision: the frame upscaled `up` times, the mean over `n` slightly shifted and
    scaled copies of one box (dlib's regression trees answer a single box with ~1 px of jitter)."""
    import cv2
    import dlib

    big = cv2.resize(rgb, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
    l, t, r, b = box
    rng = np.random.default_rng(0)   # same boxes for every frame
    out = []
    for k in range(n):
        dx, dy = rng.uniform(-0.04, 0.04, 2) * (r - l) if k else (0.0, 0.0)
        half = (r - l) / 2 * (rng.uniform(0.95, 1.05) if k else 1.0)
        cx, cy = (l + r) / 2 + dx, (t + b) / 2 + dy
        rect = dlib.rectangle(*(int(round(v * up)) for v in (cx - half, cy - half, cx + half, cy + half)))
        out.append([(p.x, p.y) for p in predictor(big, rect).parts()])
    return np.mean(out, 0) / up


def test_dlib_measured_displacement_matches_request(clean):
    """Onset vs apex landmarks measured with dlib, in 224-px aligned-face units (the onset's face chip).

    'Still' landmarks are those no AU of the clip moves: the warp keeps them exactly in place (see
    test_warp_moves_only_governed_points), but dlib reads each point from the texture around it and its shape model
    couples neighbours, so it reports some motion there; the bound below is that measurement's precision.
    """
    import dlib

    from mertool.face.align import FaceAligner, chip_matrix, predictor_path

    aligner, predictor = FaceAligner(size=224), dlib.shape_predictor(str(predictor_path()))
    rows = []
    for s in _manifest(clean)["samples"]:
        onset, apex = _frame(clean, s, s["onset"]), _frame(clean, s, s["apex"])
        loc = aligner.locate(onset)
        to_aligned = chip_matrix(loc.chip)[:, :2]
        measured = (_dlib_landmarks(predictor, apex, loc.box) - _dlib_landmarks(predictor, onset, loc.box)) \
            @ to_aligned.T
        asked = np.zeros((68, 2))
        for k, v in s["displacement"].items():
            asked[int(k)] = v
        size = np.linalg.norm(asked, axis=1)
        governed, still = size > 0.5, size == 0
        rows.append({"clip": f"{s['subject']}/{s['sample_id']} {s['aus_coded']}", "asked_peak": size.max(),
                     "measured_peak": np.linalg.norm(measured[governed], axis=1).max(),
                     "mean_error": np.linalg.norm(measured[governed].mean(0) - asked[governed].mean(0)),
                     "errors": np.linalg.norm(measured[governed] - asked[governed], axis=1),
                     "governed_mean": np.linalg.norm(measured[governed], axis=1).mean(),
                     "still": np.linalg.norm(measured[still], axis=1)})
    print()
    for r in rows:
        print(f"{r['clip']:<22} asked peak {r['asked_peak']:.2f}  measured peak {r['measured_peak']:.2f}  "
              f"mean-motion error {r['mean_error']:.2f}  per-landmark error median {np.median(r['errors']):.2f}  "
              f"still median {np.median(r['still']):.2f} px")
    errors, still = np.concatenate([r["errors"] for r in rows]), np.concatenate([r["still"] for r in rows])
    print(f"all clips: mean-motion error max {max(r['mean_error'] for r in rows):.2f}; per governed landmark error "
          f"median {np.median(errors):.2f}, p90 {np.percentile(errors, 90):.2f}; still landmarks median "
          f"{np.median(still):.2f}, p90 {np.percentile(still, 90):.2f}; measured peak max "
          f"{max(r['measured_peak'] for r in rows):.2f} px")
    for r in rows:
        assert 0 < r["asked_peak"] <= MAX_PX + 1e-6, r["clip"]                 # micro: at most 4 px asked
        assert r["mean_error"] <= 1.0, r["clip"]                                # the region moves as asked
        assert r["measured_peak"] <= MAX_PX, r["clip"]                          # stays micro as measured too
        assert np.median(r["still"]) < 0.5 * r["governed_mean"], r["clip"]     # the motion is where it was asked
    assert np.median(errors) <= 1.0
    assert np.median(still) <= 0.75


def test_warp_moves_only_governed_points(clean):
    """The rendering field itself: governed points move exactly as planned, every other landmark not at all."""
    from mertool.face.align import FaceAligner
    from mertool.synth.faces import backward_field, border_anchors, frame_displacement, make_subjects, plan_samples
    from mertool.synth.faces import default_faces, ring_anchors

    subject = make_subjects(default_faces()[:1], 1, 0, FaceAligner(size=224))[0]
    h, w = subject.neutral.shape[:2]
    for spec in plan_samples(subject.name, 0, 5, 0):
        pts, disp = frame_displacement(subject, spec)
        field = backward_field(pts, disp, np.vstack([border_anchors((h, w)), ring_anchors(pts)]), (h, w))
        moved = np.linalg.norm(disp, axis=1) > 1e-6
        # backward field sampled where each point ends up points back to where it came from
        dst = np.round(pts + disp).astype(int)
        for i in range(len(pts)):
            x, y = dst[i]
            back = field[y, x]
            if moved[i]:
                assert np.linalg.norm(back + disp[i]) < 0.35, (spec.aus, i)   # grid + rounding to whole pixels
            else:
                assert np.linalg.norm(back) < 0.35, (spec.aus, i)


def test_clean_clip_rises_to_apex_and_returns(clean):
    """Without noise and jitter, frames outside onset..offset are the neutral face, and the change from the onset
    grows to the apex and shrinks after it."""
    s = _manifest(clean)["samples"][0]
    onset = _frame(clean, s, s["onset"]).astype(np.float32)
    np.testing.assert_array_equal(_frame(clean, s, s["first"]), onset)
    np.testing.assert_array_equal(_frame(clean, s, s["offset"]), onset)
    change = [np.abs(_frame(clean, s, n).astype(np.float32) - onset).mean() for n in range(s["onset"], s["offset"] + 1)]
    peak = s["apex"] - s["onset"]
    assert int(np.argmax(change)) == peak
    assert all(a <= b + 0.02 for a, b in zip(change[:peak], change[1:peak + 1]))      # rise (JPEG-level wiggle)
    assert all(a + 0.02 >= b for a, b in zip(change[peak:], change[peak + 1:]))      # fall


def test_noisy_frames_differ_only_slightly(noisy):
    """Sensor noise and sub-pixel jitter: consecutive neutral frames differ, but by little."""
    s = _manifest(noisy)["samples"][0]
    a, b = (_frame(noisy, s, n).astype(np.float32) for n in (s["first"], s["first"] + 1))
    diff = np.abs(a - b).mean()
    assert 0.3 < diff < 8


# ------------------------------------------------------------------------------------------------------ CLI

def test_cli_synth_and_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", str(out), "--subjects", "1", "--per-subject", "2", "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 clips" in printed and "CASME2-coding-synthetic.xlsx" in printed
    assert main(["synth", str(tmp_path / "bad"), "--subjects", "0"]) == 2
    assert "--subjects 0" in capsys.readouterr().err
    assert main(["synth", str(out), "--faces", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "nowhere" in capsys.readouterr().err
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert main(["synth", str(a_file), "--quiet"]) == 2
    assert "a_file: is a file; expected an output folder" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "d"), "--subjects", "0"]) == 2   # checked before any step runs
    assert capsys.readouterr().out == "" and not (tmp_path / "d").exists()
    real = tmp_path / "real"
    (real / "CASME2-RAW" / "sub01").mkdir(parents=True)   # a user's own data is never replaced
    assert main(["synth", str(real), "--subjects", "1", "--per-subject", "1", "--quiet"]) == 2
    assert "not written by mertool synth" in capsys.readouterr().err
    assert (real / "CASME2-RAW" / "sub01").is_dir()


# ----------------------------------------------------------------------------------------------------- demo

def test_demo_table_names_the_au_source_in_words():
    """The demo's closing table: one row per run, named by what its test clips' AU input was, in words."""
    import io

    from rich.console import Console

    from mertool.demo import VARIANTS, print_demo

    results = {name: {"title": title, "run": f"runs/{name}", "confusion_png": "c.png", "accuracy": 0.9, "uf1": 0.8,
                      "uar": 0.8, "n": 160, "au_mean_f1": None, "train_seconds": 10.0}
               for name, title, _extra, _final in VARIANTS}
    summary = {"settings": {"subjects": 8}, "chance": 0.2, "results": results, "au_min_support": 10,
               "au_threshold": 0.5, "data": "d", "cache": "c.h5", "out": "o", "machine": {}, "seconds": {"train": 1.0},
               "total_seconds": 1.0, "next": []}
    buf = io.StringIO()
    print_demo(summary, Console(file=buf, width=220))
    text = buf.getvalue()
    for words in ("reads the test clips' hand-coded AUs (as the paper)", "AUs estimated by the model", "images only"):
        assert words in text
    assert "oracle" not in text.split("data set:")[0]


@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path, capsys):
    """`mertool demo` on 3 subjects with a 1-epoch recipe: every step runs, the three AU sources are scored and
    pictured, the estimated-AU run gets its final model and the printed predict commands run, and a second run
    resumes (data, cache and folds kept)."""
    recipe = tmp_path / "tiny.yaml"
    demo_yaml = Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml"
    recipe.write_text(f"extends: {demo_yaml}\nname: tiny\ntrain:\n  epochs: 1\n  decay_epochs: 1\n")
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--subjects", "3", "--per-subject", "5", "--recipe", str(recipe),
            "--device", "cpu", "--workers", "2", "--quiet", "--no-spotting"]   # spotting: test_spotting_pipeline
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo.json").read_text())
    assert list(summary["results"]) == ["oracle", "estimated", "none"]
    assert [r["title"] for r in summary["results"].values()] == [
        "reads the test clips' hand-coded AUs (as the paper)", "AUs estimated by the model", "images only"]
    assert "ours ranks" not in printed  # synthetic data is not ranked against the paper's CASME II table
    for name, r in summary["results"].items():
        assert 0.0 <= r["accuracy"] <= 1.0 and r["n"] == 15
        assert Path(r["confusion_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(r["au_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "runs" / name / "folds" / "03" / "predictions.csv").is_file()
        assert f"aus: {name}" in (out / "runs" / name / "recipe.yaml").read_text()
        assert str(out / "runs" / name) in printed
    assert summary["machine"]["matmul_gflops"] > 0 and summary["machine"]["matmul_gflops_end"] > 0
    assert "GFLOP/s" in printed and "at the end" in printed
    assert "10 trainings on 2 workers" in printed  # one pool: 3 folds of each AU source, and the final model
    assert set(summary["seconds"]) == {"synth", "preprocess", "train", "evaluate", "unseen"}
    assert all(r["train_seconds"] > 0 for r in summary["results"].values())
    assert (out / "runs" / "estimated" / "final" / "model.pt").is_file()
    assert len(summary["next"]) == 3 and all(c.startswith("mertool predict ") for c in summary["next"])
    assert all(str(out / "unseen") in c for c in summary["next"])   # clips the final model never saw
    assert [c["what"].split()[0] for c in summary["unseen_checks"]] == ["pair", "still"]
    for command in summary["next"]:  # what a new user runs next works as printed
        assert command in printed
        argv = command.split("#")[0].split()[1:] + ["--json"]
        assert main(argv) == 0
        rec = json.loads(capsys.readouterr().out)
        assert rec["aus_source"] == "estimated" and rec["trained_on"].startswith("trained on synthetic demo faces")
    assert (out / "why.png").is_file()
    # ablate picks a table's demo base for a cache made from synth data (the AU-source table has one)
    from mertool.reports.ablate import base_recipe_path, cache_is_synthetic, load_table
    assert cache_is_synthetic(out / "demo.h5")
    table = load_table("ablations/au_source")
    assert base_recipe_path(table, "casme2", synthetic=True).name == "demo.yaml"
    assert base_recipe_path(table, "casme2").name == "casme2.yaml"
    assert (out / "data" / "CASME2-coding-synthetic.xlsx").is_file() and (out / "demo.h5").is_file()
    assert main(args) == 0   # resumes: nothing is made again
    again = capsys.readouterr().out
    assert "kept" in again and "done earlier" in again
