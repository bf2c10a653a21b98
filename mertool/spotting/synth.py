"""Synthetic long videos for spotting, written in CAS(ME)^3 part A's layout.

    summary = synth_long("long_out", subjects=4, videos_per_subject=1, seconds=30, seed=0)

Each video is one subject of mertool.synth.faces (a real photo given its own shape, tone, light and background, its
landmarks found by dlib) filmed for `seconds` at `fps`, with these events placed apart from each other in time:

- micro-expressions: an AU pattern of one of synth's classes, peak landmark displacement 2.5-4 px in a 224-px
  aligned face, rise 3-6 and fall 4-8 frames at 30 fps (onset to offset at most 0.5 s);
- macro-expressions: the same AU patterns at 6-10 px, rise 6-15 frames, a hold of 0.2-1.3 s, fall 8-20 frames;
- blinks (distractors, never ground truth): the upper lids close 60 % of the eye's height and open again in
  4-9 frames;
- head motion (distractors): a slow drift (sum of two slow sines, a few px and up to a degree over the video), one
  to three quick moves (3-8 px within 5-15 frames, then held), and synth's sub-pixel jitter.

Every event moves landmarks through synth's FACS motion (AU_MOTION, a thin-plate spline per event); the events'
fields add up, and the head's rigid motion moves the face with them (synth._head_source). Frames are written as
CAS(ME)^3 ships them, `OUT/data/part_A/spNO.<k>/<letter>/color/<n>.jpg` with n from 0, and the ground truth as a
workbook `OUT/CAS(ME)3_part_A_synthetic.xlsx` with the real sheets' names and headers: `AU+Emotion` (Subject,
Filename, Onset, Apex, Offset, AU, Expression type, Objective class; frame numbers written as text, as in the real
.xls) and `eye blink` (Subject, Filename, Onset, Offset). OUT/synth_long.json holds the settings and every event
(head moves included). Same seed, same settings -> the same frames and sheet.
"""
from __future__ import annotations

import io
import json
import multiprocessing
import shutil
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mertool import files
from mertool.errors import MertoolError

FORMAT = "mertool-synth-long"
VERSION = 1
SHEET_NAME = "CAS(ME)3_part_A_synthetic.xlsx"
FRAMES_DIR = "data/part_A"
MODALITY = "color"
MANIFEST = "synth_long.json"
MARKER = ".mertool-synth-long"
SHEET_HEADER = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Expression type", "Objective class")
BLINK_HEADER = ("Subject", "Filename", "Onset", "Offset")
TYPE_NAMES = {"micro": "Micro-expression", "macro": "Macro-expression"}
ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII"}
MICRO_PX, MACRO_PX = (2.5, 4.0), (6.0, 10.0)     # peak landmark displacement, aligned px
BLINK_CLOSURE = 0.6                               # share of the eye's height the upper lid travels
UPPER_LIDS = ((37, 41), (38, 40), (43, 47), (44, 46))   # upper-lid landmark -> the lower-lid landmark below it
JPEG_QUALITY = 92


@dataclass
class Event:
    """One expression or blink of a video (frame numbers from 0, inclusive)."""

    kind: str                    # micro | macro | blink
    onset: int
    apex: int                    # blinks: the frame of fullest closure
    offset: int
    hold: int = 0                # frames at full strength after the apex (macro)
    emotion: str = ""
    aus: tuple[int, ...] = ()
    sides: dict = field(default_factory=dict)
    peak: float = 0.0            # aligned px (blinks: the closure share)

    def amplitude(self, n: np.ndarray) -> np.ndarray:
        """0 outside onset..offset, half-cosine rise to 1 at the apex, held `hold` frames, half-cosine fall."""
        n = np.asarray(n, np.float64)
        a = np.zeros_like(n)
        rise = (n > self.onset) & (n <= self.apex)
        a[rise] = 0.5 - 0.5 * np.cos(np.pi * (n[rise] - self.onset) / max(self.apex - self.onset, 1))
        top = self.apex + self.hold
        a[(n > self.apex) & (n <= top)] = 1.0
        fall = (n > top) & (n < self.offset)
        a[fall] = 0.5 + 0.5 * np.cos(np.pi * (n[fall] - top) / max(self.offset - top, 1))
        return a


@dataclass
class VideoSpec:
    subject: str                 # 'spNO.1'
    filename: str                # 'a'
    subject_index: int
    frames: int
    fps: float
    events: list[Event]
    head_moves: list[dict]       # quick moves: start, frames, shift (x, y) px, rotation deg
    drift: dict                  # slow drift: amplitudes and periods
    seed: tuple[int, ...] = ()

    @property
    def video_id(self) -> str:
        """As MEGC logs write CAS(ME)^3 videos."""
        return f"{self.subject}_{self.filename}"


# ------------------------------------------------------------------------------------------------ planning

def plan_video(subject: str, index: int, filename: str, k: int, frames: int, fps: float, seed: int) -> VideoSpec:
    """Events of one video, placed in order with gaps of at least half a second between expressions."""
    from mertool.synth.faces import CLASS_PATTERNS, CLASSES, MIDLINE_AUS, _pick

    rng = np.random.default_rng([seed, 11, index, k])
    s = fps / 30.0                      # timings are drawn for 30 fps and scaled
    gap = int(round(0.5 * fps))
    events: list[Event] = []
    t = int(rng.integers(gap, 2 * gap))
    while True:
        kind = "micro" if rng.random() < 0.55 else "macro"
        if kind == "micro":
            rise, hold, fall = int(rng.integers(3, 7) * s), 0, int(rng.integers(4, 9) * s)
            fall = min(fall, int(0.5 * fps) - rise)   # onset to offset at most 0.5 s
            peak = float(rng.uniform(*MICRO_PX))
        else:
            rise, hold, fall = (int(rng.integers(6, 16) * s), int(rng.integers(6, 40) * s),
                                int(rng.integers(8, 21) * s))
            peak = float(rng.uniform(*MACRO_PX))
        length = rise + hold + fall
        if t + length + gap >= frames:
            break
        emotion = CLASSES[int(rng.integers(len(CLASSES)))]
        aus = tuple(sorted(_pick(rng, CLASS_PATTERNS[emotion])))
        sides = {au: ("B" if au in MIDLINE_AUS else str(rng.choice(["B", "B", "B", "R", "L"]))) for au in aus}
        if len({v for v in sides.values() if v != "B"}) > 1:
            first = next(v for v in sides.values() if v != "B")
            sides = {au: (first if v != "B" else v) for au, v in sides.items()}
        events.append(Event(kind, t, t + rise, t + length, hold, emotion, aus, sides, peak))
        t += length + gap + int(rng.integers(0, 3 * gap))
    # blinks every 2-6 s, kept clear of micro-expressions (a blink inside a micro-expression would hide it)
    t = int(rng.integers(0, int(3 * fps)))
    while t < frames - int(0.4 * fps):
        length = int(rng.integers(4, 10) * s)
        clear = all(t + length + 2 < e.onset or t > e.offset + 2 for e in events if e.kind == "micro")
        if clear:
            events.append(Event("blink", t, t + length // 2, t + length, peak=BLINK_CLOSURE))
        t += int(rng.uniform(2, 6) * fps)
    events.sort(key=lambda e: e.onset)
    moves = []
    for _ in range(int(rng.integers(1, 4))):
        start = int(rng.integers(0, max(frames - int(0.5 * fps), 1)))
        angle = rng.uniform(0, 2 * np.pi)
        px = float(rng.uniform(3, 8))
        moves.append({"start": start, "frames": int(rng.integers(5, 16) * s),
                      "shift": [round(px * np.cos(angle), 3), round(px * np.sin(angle), 3)],
                      "rotation": round(float(rng.uniform(-1.5, 1.5)), 3)})
    drift = {"amp": [round(float(v), 3) for v in rng.uniform(1.5, 4, 2)], "rot": round(float(rng.uniform(0, 1)), 3),
             "period": [round(float(v), 3) for v in rng.uniform(8, 25, 3) * fps],
             "phase": [round(float(v), 3) for v in rng.uniform(0, 2 * np.pi, 3)]}
    return VideoSpec(subject, filename, index, frames, fps, events, moves, drift, (seed, 12, index, k))


def head_pose(spec: VideoSpec, n: int) -> tuple[float, float, float]:
    """(shift x, shift y px, rotation deg) of the head at frame n: slow drift plus the quick moves made so far."""
    d = spec.drift
    tx = d["amp"][0] * np.sin(2 * np.pi * n / d["period"][0] + d["phase"][0])
    ty = d["amp"][1] * np.sin(2 * np.pi * n / d["period"][1] + d["phase"][1])
    rot = d["rot"] * np.sin(2 * np.pi * n / d["period"][2] + d["phase"][2])
    for m in spec.head_moves:
        f = np.clip((n - m["start"]) / m["frames"], 0.0, 1.0)
        f = 0.5 - 0.5 * np.cos(np.pi * f)
        tx, ty, rot = tx + f * m["shift"][0], ty + f * m["shift"][1], rot + f * m["rotation"]
    return float(tx), float(ty), float(rot)


# ------------------------------------------------------------------------------------------------ rendering

def event_field(subject, event: Event, shape: tuple[int, int]) -> np.ndarray:
    """H x W x 2 backward field of the event at full strength (frame px)."""
    from mertool.synth.faces import (MAX_PX, aligned_displacement, backward_field, border_anchors, clamp_to_neighbours,
                               ring_anchors)

    pts = subject.points()
    if event.kind == "blink":
        d_img = np.zeros_like(pts)
        for upper, lower in UPPER_LIDS:
            d_img[upper] = event.peak * (pts[lower] - pts[upper])
    else:
        # synth scales a pattern to at most MAX_PX; a macro-expression is that pattern made larger
        d_al = aligned_displacement(event.aus, event.sides, {}, MAX_PX) * (event.peak / MAX_PX)
        d_img = clamp_to_neighbours(pts, d_al @ subject.to_frame.T)
    anchors = np.vstack([border_anchors(shape), ring_anchors(pts)])
    return backward_field(pts, d_img, anchors, shape)


def render_video(subject, spec: VideoSpec, noise: bool = True):
    """Yield (frame number from 0, uint8 RGB frame) for every frame of the video."""
    import cv2

    from mertool.synth.faces import _head_source

    h, w = subject.neutral.shape[:2]
    fields = [event_field(subject, e, (h, w)) for e in spec.events]
    amps = np.stack([e.amplitude(np.arange(spec.frames)) for e in spec.events]) if spec.events else \
        np.zeros((0, spec.frames))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    centre = [float(v) for v in subject.landmarks.mean(0)]
    rng = np.random.default_rng(list(spec.seed))
    walk = np.zeros(2)
    for n in range(spec.frames):
        walk = 0.7 * walk + rng.normal(0, 0.1, 2)
        tx, ty, rot = head_pose(spec, n)
        px, py = _head_source({"shift": [tx, ty], "rotation": rot, "centre": centre}, 1.0, xs, ys)
        active = np.flatnonzero(amps[:, n] > 0)
        mx, my = px - np.float32(walk[0]), py - np.float32(walk[1])
        if len(active):
            total = sum(np.float32(amps[i, n]) * fields[i] for i in active)
            moved = cv2.remap(total, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            mx, my = mx + moved[..., 0], my + moved[..., 1]
        frame = cv2.remap(subject.neutral, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
        if noise:
            frame += rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(subject.identity.noise)
        yield n, np.clip(frame.round(), 0, 255).astype(np.uint8)


_WORKER: dict = {}


def _init_worker(subjects: dict, root: str, noise: bool) -> None:
    import signal

    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    _WORKER.update(subjects=subjects, root=Path(root), noise=noise)


def _write_video(spec: VideoSpec) -> VideoSpec:
    import cv2

    folder = _WORKER["root"] / spec.subject / spec.filename / MODALITY
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
    for n, frame in render_video(_WORKER["subjects"][spec.subject], spec, _WORKER["noise"]):
        if not cv2.imwrite(str(folder / f"{n}.jpg"), frame[..., ::-1], params):
            raise MertoolError(f"{folder / f'{n}.jpg'}: cannot write the frame")
    return spec


# ------------------------------------------------------------------------------------------------ the sheet

def write_sheet(path, specs: list[VideoSpec]) -> Path:
    """The workbook with CAS(ME)^3 part A's sheets `AU+Emotion` and `eye blink` (frame numbers as text)."""
    import openpyxl
    from openpyxl.writer.excel import ExcelWriter

    from mertool.data.aus import format_aus
    from mertool.synth.faces import FIXED_TIME, _write_zip_fixed, objective_class

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "AU+Emotion"
    ws.append(list(SHEET_HEADER))
    blinks = wb.create_sheet("eye blink")
    blinks.append(list(BLINK_HEADER))
    for v in specs:
        for e in v.events:
            if e.kind == "blink":
                blinks.append([v.subject, v.filename, str(e.onset), str(e.offset)])
                continue
            aus = format_aus(e.aus, {au: s for au, s in e.sides.items() if s != "B"})
            ws.append([v.subject, v.filename, str(e.onset), str(e.apex), str(e.offset), aus, TYPE_NAMES[e.kind],
                       ROMAN[objective_class(e.aus)]])
    wb.properties.creator = "mertool synth --long"
    wb.properties.created = wb.properties.modified = FIXED_TIME
    buf = io.BytesIO()
    ExcelWriter(wb, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED)).save()
    return _write_zip_fixed(Path(path), buf.getvalue())


# ------------------------------------------------------------------------------------------------ entry point

def settings_key(subjects: int, videos_per_subject: int, seconds: float, fps: float, seed: int, faces,
                 noise: bool) -> dict:
    return {"format": FORMAT, "version": VERSION, "subjects": int(subjects),
            "videos_per_subject": int(videos_per_subject), "seconds": float(seconds), "fps": float(fps),
            "seed": int(seed), "faces": str(Path(faces).expanduser().resolve()) if faces else "default",
            "noise": bool(noise)}


def is_complete(out, settings: dict) -> bool:
    """A finished output with these settings (the demo then skips the step)."""
    try:
        m = json.loads((Path(out) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return m.get("settings") == settings and (Path(out) / SHEET_NAME).is_file()


def synth_long(out, faces=None, subjects: int = 4, videos_per_subject: int = 1, seconds: float = 30.0,
               fps: float = 30.0, seed: int = 0, workers: int = 2, noise: bool = True,
               progress: bool = False) -> dict:
    """Write synthetic long videos in CAS(ME)^3 part A's layout into `out`; returns the summary."""
    from mertool.face.align import FaceAligner
    from mertool.synth.faces import ALIGNED, _progress, _replace_dir, default_faces, folder_faces, make_folder, \
        make_subjects

    if not 1 <= subjects <= 99:
        raise MertoolError(f"--subjects {subjects}: expected 1 to 99")
    if not 1 <= videos_per_subject <= 26:
        raise MertoolError(f"--per-subject {videos_per_subject}: expected 1 to 26 videos (filenames a..z)")
    if not 5 <= seconds <= 600:
        raise MertoolError(f"--seconds {seconds}: expected 5 to 600")
    if not 10 <= fps <= 500:
        raise MertoolError(f"--fps {fps}: expected 10 to 500")
    t0 = time.perf_counter()
    out = make_folder(out)
    root = out / FRAMES_DIR
    if root.exists() and not (root / MARKER).is_file():
        raise MertoolError(f"{root}: exists and was not written by mertool synth --long; choose another folder")
    aligner = FaceAligner(size=int(ALIGNED), upsample_first=1)
    base = folder_faces(faces) if faces else default_faces()
    people = make_subjects(base, subjects, seed, aligner)
    frames = int(round(seconds * fps))
    specs = []
    for p in people:
        name = f"spNO.{p.index + 1}"
        for k in range(videos_per_subject):
            specs.append(plan_video(name, p.index, "abcdefghijklmnopqrstuvwxyz"[k], k, frames, fps, seed))
    by_name = {f"spNO.{p.index + 1}": p for p in people}
    tmp = root.with_name(f".{root.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / MARKER).write_text("written by mertool synth --long\n")
    args = (by_name, str(tmp), noise)
    if workers <= 1:
        _WORKER.update(subjects=by_name, root=tmp, noise=noise)
        done = [_write_video(s) for s in _progress(specs, progress)]
    else:
        ctx = multiprocessing.get_context("spawn")   # as synth: never fork a process that has used OpenCV threads
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=args) as ex:
            done = list(_progress(ex.map(_write_video, specs), progress, len(specs)))
    (out / MANIFEST).unlink(missing_ok=True)
    _replace_dir(tmp, root)
    write_sheet(out / SHEET_NAME, done)
    counts = {k: sum(e.kind == k for v in done for e in v.events) for k in ("micro", "macro", "blink")}
    summary = {"out": str(out), "sheet": str(out / SHEET_NAME), "frames_root": str(root), "videos": len(done),
               "subjects": len(people), "frames": frames * len(done), "fps": fps, **counts,
               "seconds": round(time.perf_counter() - t0, 2)}
    manifest = {"settings": settings_key(subjects, videos_per_subject, seconds, fps, seed, faces, noise),
                "videos": [{**{k: v for k, v in asdict(s).items() if k not in ("events", "seed")},
                            "video": s.video_id,
                            "events": [{**asdict(e), "sides": {str(a): x for a, x in e.sides.items()}}
                                       for e in s.events]} for s in done]}
    files.write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return summary
