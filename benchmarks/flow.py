"""Optical-flow figures for docs/preprocessing.md: endpoint error against known motion, and time per pair.

    python benchmarks/flow.py              # dense ground truth (synth.au_motion_pair) + a synth dataset end to end
    python benchmarks/flow.py --quick      # dense ground truth only, peaks 1 and 3 px
    python benchmarks/flow.py --dense      # dense ground truth only
    python benchmarks/flow.py --end-to-end # the synth dataset only

1. Dense ground truth: mertool.bench.bench_flow on synth's two default faces x six AU patterns, peaks 1, 2, 3 px,
   without and with sensor noise (sigma 1.5 grey levels, the middle of synth's range). The error is measured on the
   face (inside the 68-landmark hull) where it moves by >= a tenth of the peak, and on the whole face.
2. End to end against synth.json: `mertool synth` clips (3-4 px AU motion, head jitter, noise, JPEG) go through
   `preprocess --flow` (detection, chip, registration ecc and none, flow); each method's flow, read at the cache's
   onset landmarks, is compared with the displacement synth.json records for every moved landmark (aligned px).
Prints the machine's fp32 matmul rate (mertool.bench.matmul_rate), the CPU, the date and the load, as every timing
report must.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def dense(peaks, noises) -> None:
    from mertool.bench import bench_flow

    for noise in noises:
        rep = bench_flow(peaks=peaks, noise=noise)
        print(f"\ndense ground truth, noise sigma {noise:g}: {len(rep['faces'])} faces x {len(rep['patterns'])} AU "
              f"patterns per peak, {rep['size']} px crops; {rep['pixels']}")
        print("per peak: moving median/p90, face median, landmarks median/p90, recovered at the landmarks")
        for m, r in rep["methods"].items():
            cells = []
            for p in (f"{p:g}" for p in peaks):
                e = r["epe"][p]
                cells.append(f"{p} px: {e['moving']['median']:.3f}/{e['moving']['p90']:.3f}, "
                             f"{e['face']['median']:.3f}, "
                             f"{e['landmarks']['median']:.3f}/{e['landmarks']['p90']:.3f}, {r['recovered'][p]:.2f}")
            print(f"{m:10s} {r['seconds_per_pair']:7.3f} s/pair  " + "  |  ".join(cells))


def end_to_end(subjects: int = 2, per_subject: int = 6) -> None:
    import cv2

    from mertool.cache.preprocess import preprocess
    from mertool.cache.store import load_cache
    from mertool.face.flow import FLOW_METHODS, add_flow
    from mertool.synth.faces import synth

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        synth(data, subjects=subjects, per_subject=per_subject, seed=0, workers=2)
        truth = {(s["subject"], s["sample_id"]): s["displacement"]
                 for s in json.loads((data / "synth.json").read_text())["samples"]}
        print("\nend to end: synth clips (3-4 px AU motion, sub-pixel head jitter, noise, JPEG) through preprocess; "
              "flow read at the onset's dlib landmarks vs synth.json's displacement of each moved landmark "
              "(aligned px); 'recovered': the flow's component along the true displacement / its length (median)")
        for register in ("ecc", "none"):
            out = Path(tmp) / f"{register}.h5"
            s = preprocess(data, out=out, workers=2, progress=False, register=register, flow="tvl1")
            for method in FLOW_METHODS:
                if method != "tvl1":
                    add_flow(out, method, replace=True, workers=2)
                c = load_cache(out)
                err, along, brow = [], [], []
                for i, key in enumerate(zip(c.subjects, c.sample_ids)):
                    flow = c.flow[i].astype(np.float32)
                    for point, (dx, dy) in truth[key].items():
                        x, y = c.landmarks[i, int(point)]
                        u, v = (cv2.getRectSubPix(flow[..., k], (1, 1), (float(x), float(y)))[0, 0] for k in (0, 1))
                        err.append(np.hypot(u - dx, v - dy))
                        along.append((u * dx + v * dy) / (dx * dx + dy * dy))
                        brow.append(17 <= int(point) <= 26)
                err, along, brow = np.array(err), np.array(along), np.array(brow)
                print(f"register {register:4s} {method:10s} {s['in_cache']} clips, {len(err)} moved landmarks: "
                      f"endpoint error median {np.median(err):.3f} px, p90 {np.percentile(err, 90):.3f}; recovered "
                      f"{np.median(along):.2f} (brows {np.median(along[brow]):.2f}, elsewhere "
                      f"{np.median(along[~brow]):.2f})")


def main(argv: list[str]) -> None:
    from mertool.bench import cpu_name, matmul_rate

    rate = matmul_rate(torch.device("cpu"), torch.float32)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_name()}, {os.cpu_count()} CPUs, "
          f"1-min load {load:.1f}; fp32 matmul rate {rate['flops'] / 1e9:.1f} GFLOP/s "
          f"({torch.get_num_threads()} threads)")
    if "--end-to-end" not in argv:
        quick = "--quick" in argv
        dense((1.0, 3.0) if quick else (1.0, 2.0, 3.0), (1.5,) if quick else (0.0, 1.5))
    if "--quick" not in argv and "--dense" not in argv:
        end_to_end()
    rate = matmul_rate(torch.device("cpu"), torch.float32)
    print(f"\nfp32 matmul rate at the end: {rate['flops'] / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main(sys.argv[1:])
