"""`mertool preprocess`: CASME II-like folders built from real face photos -> cache; skips, resume, bad inputs."""
from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

from mertool.cache.preprocess import preprocess, summary_path
from mertool.cache.store import load_cache
from mertool.cli import main
from mertool.datasets import class_counts
from mertool.errors import MertoolError

# the CASME II 2019 coding sheet's header, column for column (two unnamed columns, 'Objective Classes' last)
HEADER_2019 = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
               "Estimated Emotion", "Objective Classes"]
CASME2_CLASSES = {c: [c] for c in ("happiness", "disgust", "repression", "surprise", "others")}
FRAME_WH = (320, 240)   # CASME II raw frames are 640 x 480; half size keeps detection cheap in tests
FACE_PX = 100           # width of the detector's face box in the built frames


# --------------------------------------------------------------------------------- real faces -> CASME II folders

def _photo_astronaut() -> np.ndarray:
    from skimage import data
    return data.astronaut()


def _photo_grace_hopper() -> np.ndarray:
    import matplotlib
    from PIL import Image
    return np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"))


@lru_cache(maxsize=32)
def _normalised_face(name: str, path: str | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """A photo scaled so that its face box is FACE_PX wide, and the box centre (x, y) in that image."""
    import dlib
    from PIL import Image
    if path is None:
        rgb = {"astronaut": _photo_astronaut, "grace_hopper": _photo_grace_hopper}[name]()
    else:
        rgb = np.asarray(Image.open(path).convert("RGB"))
    pre = 400 / max(rgb.shape[:2])  # detect on a small copy: this is fixture building, not the code under test
    small = cv2.resize(rgb, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA) if pre < 1 else rgb
    pre = min(pre, 1.0)
    rects = dlib.get_frontal_face_detector()(small, 1)
    assert rects, f"fixture photo {name} has no detectable face"
    r = max(rects, key=lambda r: r.width())
    s = FACE_PX / (r.width() / pre)
    scaled = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    cx, cy = (r.left() + r.right()) / 2 / pre * s, (r.top() + r.bottom()) / 2 / pre * s
    return scaled, (cx, cy)


def face_sources(realdata: Path | None = None) -> list[tuple[str, str | None]]:
    """(name, path) of the real face photos to build frames from: two always, the London set's ten when present."""
    sources = [("astronaut", None), ("grace_hopper", None)]
    if realdata is not None:
        london = realdata / "faces" / "frl_london" / "neutral_front"
        sources += [(p.stem, str(p)) for p in sorted(london.glob("*.jpg"))]
    return sources


def onset_frame(source: tuple[str, str | None], jitter=(0, 0)) -> tuple[np.ndarray, tuple[float, float]]:
    """A FRAME_WH frame with the face centred (plus `jitter` px), and the face centre in the frame."""
    face, (cx, cy) = _normalised_face(*source)
    w, h = FRAME_WH
    tx, ty = w / 2 + jitter[0] - cx, h / 2 + jitter[1] - cy
    frame = cv2.warpAffine(face, np.float32([[1, 0, tx], [0, 1, ty]]), (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return frame, (w / 2 + jitter[0], h / 2 + jitter[1])


def mouth_warp(frame: np.ndarray, centre: tuple[float, float], amount: float = 3.0) -> np.ndarray:
    """The apex: the mouth region pulled up by `amount` px with a smooth Gaussian bump (a small local motion)."""
    h, w = frame.shape[:2]
    mx, my = centre[0], centre[1] + 0.3 * FACE_PX   # mouth: below the centre of dlib's face box
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bump = amount * np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (2 * (0.15 * FACE_PX) ** 2))
    return cv2.remap(frame, xx, (yy + bump).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_face(frame: np.ndarray, centre, scale: float = 1.5) -> np.ndarray:
    """What CASME II's Cropped/ holds: a fixed box around the face (the same box for every frame of a sample)."""
    half = int(FACE_PX * scale / 2)
    x, y = int(centre[0]), int(centre[1])
    return frame[max(0, y - half):y + half, max(0, x - half):x + half].copy()


def write_jpg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])


def write_sheet(path: Path, rows) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(HEADER_2019)
    for r in rows:
        ws.append(list(r))
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def write_sample(root: Path, subject: str, sample: str, frames: dict[int, np.ndarray], cropped: bool = False):
    """Frame files of one sample in CASME2-RAW/subNN/<sample>/imgN.jpg (and Cropped/.../reg_imgN.jpg)."""
    for n, rgb in frames.items():
        write_jpg(root / "CASME2-RAW" / f"sub{subject}" / sample / f"img{n}.jpg", rgb)
    if cropped:
        for n, rgb in frames.items():
            write_jpg(root / "Cropped" / f"sub{subject}" / sample / f"reg_img{n}.jpg", rgb)


def build_from_sheet(root: Path, sheet: Path, sources, cropped: bool = True, raw: bool = True) -> Path:
    """Frames for every row of a real coding sheet: each subject is one real face, each sample a small head shift
    and a mouth motion at the apex (the sheet's apex, or the middle of onset..offset where it says '/')."""
    from mertool.datasets import load_records

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(sheet, root / sheet.name)
    records, _ = load_records(root)  # the adapter reads the sheet; frame numbers come from it
    subjects = sorted({r.subject for r in records})
    rng = np.random.default_rng(0)
    for r in records:
        src = sources[subjects.index(r.subject) % len(sources)]
        onset, centre = onset_frame(src, jitter=tuple(rng.integers(-6, 7, 2)))
        apex = mouth_warp(onset, centre, amount=2.0 + rng.random() * 2)
        d = f"sub{r.subject}"
        if raw:
            write_jpg(root / "CASME2-RAW" / d / r.sample_id / f"img{r.onset}.jpg", onset)
            write_jpg(root / "CASME2-RAW" / d / r.sample_id / f"img{r.apex}.jpg", apex)
        if cropped:
            write_jpg(root / "Cropped" / d / r.sample_id / f"reg_img{r.onset}.jpg", crop_face(onset, centre))
            write_jpg(root / "Cropped" / d / r.sample_id / f"reg_img{r.apex}.jpg", crop_face(apex, centre))
    return root


def two_faces(a, b) -> np.ndarray:
    """A frame holding face `a` and a smaller copy of face `b`."""
    fa, ca = onset_frame(a)
    fb, _ = onset_frame(b)
    small = cv2.resize(fb, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    out = cv2.copyMakeBorder(fa, 0, 0, 0, small.shape[1], cv2.BORDER_REPLICATE)
    out[:small.shape[0], fa.shape[1]:] = small
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------- a mixed folder: good and bad samples

@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A CASME II-like folder (sheet written here in the 2019 layout) with good samples and every kind of bad one,
    preprocessed once with two workers."""
    root = tmp_path_factory.mktemp("mixed") / "CASME2"
    astro, grace = ("astronaut", None), ("grace_hopper", None)
    rows = [
        ["01", "EP02_01f", None, 46, 59, 86, None, 12, "happiness", 1],
        ["01", "EP03_02", None, 131, "/", 161, None, "R6+R12", "others", 7],      # apex estimated: 146
        ["02", "EP05_03", None, 10, 20, 30, None, "4+L10", "disgust", 2],
        ["02", "EP06_02f", None, 36, 64, 111, None, "?", "confused", 7],          # unknown emotion: a fact
        ["02", "EP07_01", None, 1, 5, 9, None, "1+2+38", "surprise", 4],          # two faces: a note
        ["03", "EP01_01", None, 10, 12, 20, None, 4, "disgust", 2],               # unreadable JPEG
        ["03", "EP01_02", None, 10, 12, 20, None, 4, "disgust", 2],               # truncated JPEG
        ["03", "EP02_01", None, 30, 33, 40, None, 14, "repression", 6],           # apex frame missing
        ["03", "EP03_01", None, 5, 7, 9, None, 17, "repression", 6],              # no face (noise)
    ]
    write_sheet(root / "CASME2-coding-20190701.xlsx", rows)
    for subject, sample, src, on, ap in (("01", "EP02_01f", astro, 46, 59), ("01", "EP03_02", grace, 131, 146),
                                         ("02", "EP05_03", grace, 10, 20), ("02", "EP06_02f", astro, 36, 64)):
        onset, centre = onset_frame(src, jitter=(3, -2))
        write_sample(root, subject, sample, {on: onset, ap: mouth_warp(onset, centre)})
    both = two_faces(astro, grace)
    write_sample(root, "02", "EP07_01", {1: both, 5: both})
    good, _ = onset_frame(astro)
    write_sample(root, "03", "EP01_01", {12: good})
    (root / "CASME2-RAW" / "sub03" / "EP01_01" / "img10.jpg").write_bytes(b"this is not a JPEG")
    write_sample(root, "03", "EP01_02", {12: good})
    cv2.imwrite(str(root / "CASME2-RAW" / "sub03" / "EP01_02" / "img10.jpg"), good)
    data = (root / "CASME2-RAW" / "sub03" / "EP01_02" / "img10.jpg").read_bytes()
    (root / "CASME2-RAW" / "sub03" / "EP01_02" / "img10.jpg").write_bytes(data[:len(data) // 2])
    write_sample(root, "03", "EP02_01", {30: good})
    noise = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8), (5, 5), 0)
    write_sample(root, "03", "EP03_01", {5: noise, 7: noise})
    out = root.parent / "casme2.h5"
    summary = preprocess(root, out=out, workers=2, progress=False)
    return root, out, summary


def test_mixed_cached_samples(mixed):
    root, out, summary = mixed
    assert summary["samples_read"] == 9 and summary["cached"] == 5 and summary["in_cache"] == 5
    data = load_cache(out)
    assert [f"{s}/{i}" for s, i in zip(data.subjects, data.sample_ids)] == [
        "01/EP02_01f", "01/EP03_02", "02/EP05_03", "02/EP06_02f", "02/EP07_01"]
    assert data.onset.shape == (5, 224, 224, 3) and data.onset.dtype == np.uint8
    assert data.attrs["dataset"] == "casme2" and json.loads(data.attrs["alignment"])["anchor"] == "onset"
    # aligned faces: landmarks inside the crop; the apex differs from the onset only where the mouth moved (the
    # registered apex is resampled, which leaves differences of a grey level or two everywhere: those are not motion)
    lm = data.landmarks[:4]
    assert np.isfinite(lm).all() and (lm >= 0).all() and (lm < 224).all()
    for k in range(4):
        diff = np.abs(data.apex[k].astype(int) - data.onset[k].astype(int)).mean(-1)
        diff[diff < 4] = 0
        mouth = lm[k, 48:68]
        (x0, y0), (x1, y1) = mouth.min(0) - 25, mouth.max(0) + 25
        inside = diff[int(max(y0, 0)):int(y1), int(max(x0, 0)):int(x1)].sum()
        assert diff.sum() > 0 and inside / diff.sum() > 0.6, k
    # the sheet's facts, unchanged
    m = data.meta
    assert m["aus_raw"][1] == "R6+R12" and m["apex_frame"][1] == 146 and m["apex_estimated"][1]
    assert m["source_onset"][0] == "CASME2-RAW/sub01/EP02_01f/img46.jpg"
    assert data.aus[2].sum() == 2 and data.aus[3].sum() == 0  # 4+L10; '?' -> no AU
    assert (m["onset_frame"][0], m["offset_frame"][0]) == (46, 86)


@pytest.mark.parametrize("key, reason, text", [
    ("03/EP01_01", "unreadable image", "img10.jpg"),
    ("03/EP01_02", "unreadable image", "img10.jpg"),   # truncated JPEG: Pillow reports it, cv2 would fill grey
    ("03/EP02_01", "missing frame file", "apex frame 33 not found"),
    ("03/EP03_01", "no face", "img5.jpg"),
])
def test_mixed_skips_recorded(mixed, key, reason, text):
    _, out, summary = mixed
    entries = {e["sample"]: e["detail"] for e in summary["skipped_samples"][reason]}
    assert key in entries and text in entries[key]
    on_disk = json.loads(summary_path(out).read_text())
    assert key in {e["sample"] for e in on_disk["skipped_samples"][reason]}
    assert on_disk["skipped"] == {"unreadable image": 2, "missing frame file": 1, "no face": 1}


def test_mixed_unknown_emotion_kept_and_shown(mixed, capsys):
    _, out, summary = mixed
    assert summary["emotions"]["confused"] == 1
    assert main(["cache", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "confused" in text and "happiness" in text


def test_mixed_several_faces_is_a_note(mixed):
    _, out, summary = mixed
    assert any(n.startswith("02/EP07_01: 2 faces") for n in summary["several_faces"])
    data = load_cache(out)
    lm = data.landmarks[4]
    # the larger face (astronaut, left) was used: its landmarks span more than a small face's would
    assert np.ptp(lm[:, 0]) > 100


def test_mixed_summary_and_verify(mixed, capsys):
    _, out, summary = mixed
    on_disk = json.loads(summary_path(out).read_text())
    assert on_disk["cached"] == 5 and on_disk["aus_outside"] == {"38": 1}
    assert on_disk["emotions"] == {"happiness": 1, "others": 1, "disgust": 1, "confused": 1, "surprise": 1}
    assert on_disk["frames_per_second"] > 0
    assert not out.with_name(out.name + ".tmp").exists()
    assert main(["cache", "verify", str(out)]) == 0
    assert "ok" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- interruption and --resume

def _small_folder(root: Path, n: int = 4, cropped: bool = True) -> Path:
    rows, frames = [], {}
    for k in range(n):
        src = ("astronaut", None) if k % 2 == 0 else ("grace_hopper", None)
        onset, centre = onset_frame(src, jitter=(k, -k))
        rows.append(["01", f"EP0{k}_01", None, 1, 3, 5, None, 12, "happiness", 1])
        write_sample(root, "01", f"EP0{k}_01", {1: onset, 3: mouth_warp(onset, centre)}, cropped=cropped)
    write_sheet(root / "CASME2-coding-20190701.xlsx", rows)
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_run_keeps_old_cache_then_resume(tmp_path, monkeypatch, workers):
    from mertool.cache import store as cache_mod

    root = _small_folder(tmp_path / "CASME2")
    out = tmp_path / "c.h5"
    first = preprocess(root, out=out, workers=workers, progress=False, align=False, size=64)
    before = out.read_bytes()
    assert first["cached"] == 4

    real_append, calls = cache_mod.CacheWriter.append, []

    def failing_append(self, sample):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(sample.sample_id)
        real_append(self, sample)

    monkeypatch.setattr(cache_mod.CacheWriter, "append", failing_append)
    with pytest.raises(KeyboardInterrupt):   # Ctrl-C while the main process writes (workers stop too)
        preprocess(root, out=out, workers=workers, progress=False, align=False, size=64)
    assert out.read_bytes() == before          # the finished cache under the final name is untouched
    with pytest.raises(KeyboardInterrupt):   # a first run stopped before its first sample leaves nothing at all
        preprocess(root, out=tmp_path / "new.h5", workers=workers, progress=False, align=False, size=64)
    assert not list(tmp_path.glob("new.h5*"))
    tmp = out.with_name("c.h5.tmp")
    assert tmp.exists()                         # the interrupted run's two samples wait for --resume
    monkeypatch.setattr(cache_mod.CacheWriter, "append", real_append)
    out.unlink()                                # resume from the .tmp alone
    resumed = preprocess(root, out=out, workers=0, progress=False, align=False, size=64, resume=True)
    assert (resumed["already_cached"], resumed["cached"], resumed["in_cache"]) == (2, 2, 4)
    assert not tmp.exists()
    assert list(load_cache(out).sample_ids) == ["EP00_01", "EP01_01", "EP02_01", "EP03_01"]
    again = preprocess(root, out=out, workers=0, progress=False, align=False, size=64, resume=True)
    assert (again["already_cached"], again["cached"]) == (4, 0)
    with pytest.raises(MertoolError, match="alignment .* resume with the same options"):  # resized + aligned: no
        preprocess(root, out=out, workers=0, progress=False, align=True, size=64, resume=True)
    assert out.read_bytes() and not tmp.exists()


def test_no_align_uses_cropped_frames(tmp_path):
    # a parent folder whose name says 'crop' must not make the raw frames look cropped
    root = _small_folder(tmp_path / "cropped_sets" / "CASME2", n=2)
    out = tmp_path / "c.h5"
    s = preprocess(root, out=out, workers=0, progress=False, align=False, size=96)
    data = load_cache(out)
    assert s["frames_root"].endswith("Cropped") and data.onset.shape == (2, 96, 96, 3)
    assert np.isnan(data.landmarks).all() and json.loads(data.attrs["alignment"])["method"] == "resize"
    assert data.meta["source_onset"][0] == "Cropped/sub01/EP00_01/reg_img1.jpg"
    assert (data.apex != data.onset).any()


def test_no_align_without_cropped_folder_warns(tmp_path):
    root = _small_folder(tmp_path / "CASME2", n=1, cropped=False)
    s = preprocess(root, out=tmp_path / "c.h5", workers=0, progress=False, align=False, size=64)
    assert s["frames_root"].endswith("CASME2-RAW") and s["cached"] == 1
    assert any("no cropped frame folder found" in w for w in s["warnings"])


# -------------------------------------------------------------------------------------------- CLI and bad input

def test_cli_missing_sheet(tmp_path, capsys):
    write_sample(tmp_path / "CASME2", "01", "EP02_01f", {46: np.full((40, 40, 3), 128, np.uint8)})
    assert main(["preprocess", str(tmp_path / "CASME2"), "--out", str(tmp_path / "c.h5"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no CASME II annotation sheet found" in err and "\n" not in err
    assert not (tmp_path / "c.h5").exists()


def test_cli_sheet_without_header(tmp_path, capsys):
    wb = openpyxl.Workbook()
    wb.active.append(["name", "start", "peak"])
    wb.active.append(["x", 1, 2])
    wb.save(tmp_path / "labels.xlsx")
    code = main(["preprocess", str(tmp_path), "--sheet", str(tmp_path / "labels.xlsx"), "--out",
                 str(tmp_path / "c.h5"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "labels.xlsx: no recognisable header" in err and "\n" not in err


def test_cli_nothing_cacheable_is_an_error(tmp_path, capsys):
    root = tmp_path / "CASME2"
    write_sheet(root / "CASME2-coding-20190701.xlsx", [["01", "EP02_01f", None, 46, 59, 86, None, 12, "happiness", 1]])
    write_sample(root, "01", "EP02_01f", {46: np.full((60, 60, 3), 90, np.uint8)})
    code = main(["preprocess", str(root), "--out", str(tmp_path / "c.h5"), "--quiet", "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "no sample could be cached" in err and "missing frame file" in err
    assert not (tmp_path / "c.h5").exists() and not (tmp_path / "c.h5.tmp").exists()


def test_bad_options(tmp_path):
    with pytest.raises(MertoolError, match="--size 8"):
        preprocess(tmp_path, size=8)
    assert main(["preprocess", str(tmp_path), "--layout", "sideways"]) == 2


# ------------------------------------------------------- the real coding sheet, every row, real faces (Done when)

@pytest.mark.slow
def test_real_sheet_every_row(realdata, tmp_path, capsys):
    """All 255 rows of the real 2019 sheet, frames built from real faces: aligned run (workers 2) and a --no-align
    run on the Cropped/ copy both give a cache `cache verify` accepts, with the exact 5-class counts."""
    sheet = realdata / "annotations" / "casme2" / "CASME2-coding-20190701.xlsx"
    root = build_from_sheet(tmp_path / "CASME2", sheet, face_sources(realdata))
    expected = {"happiness": 32, "disgust": 63, "repression": 27, "surprise": 28, "others": 99}
    for args, name in ((["--workers", "2"], "aligned.h5"), (["--no-align", "--size", "112"], "cropped.h5")):
        out = tmp_path / name
        assert main(["preprocess", str(root), "--out", str(out), "--quiet", *args]) == 0
        assert main(["cache", "verify", str(out)]) == 0
        data = load_cache(out)
        assert len(data) == 255 and len(set(data.subjects)) == 26
        counts = class_counts([_Rec(e) for e in data.emotions], CASME2_CLASSES)
        assert counts == expected and sum(counts.values()) == 249
        summary = json.loads(summary_path(out).read_text())
        assert summary["skipped"] == {} and summary["apex_estimated"] == ["04/EP12_01f"]
        assert summary["aus_outside"] == {"38": 2}
    capsys.readouterr()


class _Rec:
    """class_counts reads `.emotion`; cached emotions are raw strings."""

    def __init__(self, emotion, dataset=None):
        self.emotion = emotion
        self.dataset = dataset
