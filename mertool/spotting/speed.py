"""`mertool bench --spotting`: spotting features' frames per second on a 640 x 480 video, beside the matmul rate.

A synthetic long video (mertool.spotting.synth: a real face with expressions, blinks and head motion) is rendered,
placed in a 640 x 480 frame and written as an MJPEG .avi; the time measured is the whole feature path from the file:
decoding (in a second thread), one face detection for the shot, per-frame landmarks and registration, flow and the
region means. Projections for the long-video data sets divide their frame counts by that rate.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

# Frame counts for the projections. SAMM Long Videos: "about a million frames" (147 videos at 200 fps; the issue's
# figure). CAS(ME)^2 part A: 98 videos at 30 fps of about 2.5 min on average (an estimate, not a published count).
DATASET_FRAMES = {"samm_lv": 1_000_000, "casme_sq": 98 * 150 * 30}
WIDTH, HEIGHT = 640, 480


def write_test_video(path: Path, seconds: float = 10.0, fps: float = 30.0, seed: int = 0) -> Path:
    """A synthetic long video of one subject in a 640 x 480 frame (MJPEG .avi)."""
    import cv2

    from mertool.face.align import FaceAligner
    from mertool.spotting.synth import plan_video, render_video
    from mertool.synth.faces import ALIGNED, default_faces, make_subjects

    subject = make_subjects(default_faces()[:1], 1, seed, FaceAligner(size=int(ALIGNED), upsample_first=1))[0]
    spec = plan_video("spNO.1", 0, "a", 0, int(round(seconds * fps)), fps, seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    for _, frame in render_video(subject, spec):
        h, w = frame.shape[:2]
        top, left = (HEIGHT - h) // 2, (WIDTH - w) // 2
        big = cv2.copyMakeBorder(frame, top, HEIGHT - h - top, left, WIDTH - w - left, cv2.BORDER_REPLICATE)
        writer.write(big[..., ::-1])
    writer.release()
    return path


def bench_spotting(seconds: float = 10.0, register: str = "landmarks", log=None) -> dict:
    """Frames per second of the spotting features on a 640 x 480 video, with the matmul rate of the same run."""
    import os

    import torch

    from mertool.bench import matmul_rate
    from mertool.spotting.apex import FrameSource
    from mertool.spotting.features import MotionTracker

    log = log or (lambda msg: None)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rate = matmul_rate(torch.device("cpu"), min_seconds=0.3)
    with tempfile.TemporaryDirectory(prefix="mertool-spotbench-") as tmp:
        log(f"rendering a {seconds:g} s synthetic video at {WIDTH} x {HEIGHT}")
        video = write_test_video(Path(tmp) / "long.avi", seconds)
        tracker = MotionTracker(30.0, register=register)
        source = FrameSource(video)
        log(f"spotting features ({register} registration) of {len(source)} frames")
        t = time.perf_counter()
        feats = tracker.run(source)
        elapsed = time.perf_counter() - t
    fps = len(feats.numbers) / elapsed
    rate_end = matmul_rate(torch.device("cpu"), min_seconds=0.3)
    return {"frames": int(len(feats.numbers)), "seconds": round(elapsed, 2), "frames_per_s": round(fps, 1),
            "frame_size": [WIDTH, HEIGHT], "register": register, "gap_frames": int(feats.gaps.sum()),
            "detections": feats.detections, "torch_threads": torch.get_num_threads(),
            "matmul_gflops": round(rate["flops"] / 1e9, 1), "matmul_gflops_end": round(rate_end["flops"] / 1e9, 1),
            "load_average_1min": load,
            "projection_hours": {k: round(n / fps / 3600, 2) for k, n in DATASET_FRAMES.items()},
            "projection_frames": DATASET_FRAMES}


def render_spot_bench(rep: dict, console) -> None:
    from rich.table import Table

    t = Table(title="spotting features (mertool spot / spot-cache)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("note")
    t.add_row("dense matmul rate (float32)", f"{rep['matmul_gflops']:.0f} GFLOP/s",
              f"{rep['matmul_gflops_end']:.0f} at the end" + (f"; 1-min load average {rep['load_average_1min']:.1f}"
                                                               if rep.get("load_average_1min") is not None else ""))
    t.add_row("features", f"{rep['frames_per_s']:.0f} frames/s",
              f"{rep['frames']} frames of {rep['frame_size'][0]} x {rep['frame_size'][1]} from an MJPEG file, "
              f"{rep['register']} registration, {rep['detections']} face detection(s); target >= 100 on 2 cores")
    for k, h in rep["projection_hours"].items():
        t.add_row(f"projected: {k}", f"{h:.1f} h", f"{rep['projection_frames'][k]:,} frames at this rate, one "
                                                   f"process (spot-cache --workers 2 runs two videos at once)")
    console.print(t)
