"""Registration's own figures: residuals, detection and registration speed, for the default and the older modes.

    python benchmarks/registration.py [FRAMES_DIR]     # FRAMES_DIR: a neutral -> expression clip (img1.jpg ...)

Prints the machine's fp32 matmul rate (mertool.bench.matmul_rate) with the timings, as every timing report must.
Without FRAMES_DIR only the known rigid motions and synthetic figures are measured (skimage's astronaut).

Registration is the default `--register consensus` (mertool.face.align: the rigid motion most of the face's patches
agree on). Its residual is the still-face residual: `residual_before` the median motion of the patches that follow the
head in the unregistered pair, `residual` how far registration leaves them, measured on patches held out of the fit
(two interleaved halves of the grid, each predicted by a fit to the other). For `ecc` and `landmarks` the residuals
are the previous release's measure, the upper face's median optical flow before and after. Neither is checked
against ground truth here: benchmarks/registration_grid.py measures registration against synth's known motion.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def _per_call(fn, reps: int = 5) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main(frames: Path | None) -> None:
    from skimage.data import astronaut

    from mertool.bench import matmul_rate
    from mertool.face.align import FaceAligner, read_rgb

    rate = matmul_rate(torch.device("cpu"), torch.float32)
    print(f"fp32 matmul rate: {rate['flops'] / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    default, none = FaceAligner(), FaceAligner(register="none")   # default: register consensus
    images = {"astronaut 512x512": astronaut()}
    if frames:
        images["clip frame 640x360"] = read_rgb(frames / "img1.jpg")
    for name, rgb in images.items():
        t0 = _per_call(lambda: default._detector.run(rgb, 0))
        t1 = _per_call(lambda: default._detector.run(rgb, 1))
        loc = _per_call(lambda: default.locate(rgb))
        print(f"{name}: HOG detector {1e3 * t1:.0f} ms at upsample 1 (before: {1 / t1:.1f} frames/s), "
              f"{1e3 * t0:.0f} ms at upsample 0 ({1 / t0:.1f} frames/s); locate (detector + landmarks + chip) "
              f"{1e3 * loc:.0f} ms")
        apex = np.ascontiguousarray(np.roll(rgb, 2, axis=0))
        pe, pn = _per_call(lambda: default.align_pair(rgb, apex)), _per_call(lambda: none.align_pair(rgb, apex))
        print(f"{name}: align_pair {1e3 * pn:.0f} ms unregistered, {1e3 * pe:.0f} ms registered (consensus): "
              f"registration costs {1e3 * (pe - pn):.0f} ms per pair")
    with tempfile.TemporaryDirectory() as tmp:   # what registration costs a whole preprocess run
        from mertool.cache.preprocess import preprocess
        from mertool.synth.faces import synth

        synth(Path(tmp) / "data", subjects=2, per_subject=6, seed=0, workers=1, head_motion=6)
        for mode in ("none", "consensus", "ecc"):
            s = preprocess(Path(tmp) / "data", out=Path(tmp) / f"{mode}.h5", workers=1, progress=False,
                           register=mode)
            reg = s["registration"]
            extra = "" if not reg["registered"] else (
                f"; {_measure(reg['residual_measure'])} median {reg['residual_before_px']['median']:.2f} -> "
                f"{reg['residual_px']['median']:.2f} px, max {reg['residual_px']['max']:.2f}")
            print(f"preprocess 12 synthetic pairs (320x320, head motion 6 px), 1 worker, register {mode}: "
                  f"{s['seconds']:.1f} s, {s['frames_per_second']:.1f} frames/s, "
                  f"{1e3 * s['seconds_per_sample_in_worker']:.0f} ms per pair{extra}")
    for dx, dy, deg in ((3.0, -2.0, 1.0), (-4.5, -9.6, 0.6), (1.5, 2.5, -1.0)):
        face = astronaut()
        m = cv2.getRotationMatrix2D((256.0, 256.0), deg, 1.0)
        m[:, 2] += (dx, dy)
        reg = default.align_pair(face, cv2.warpAffine(face, m, (512, 512), flags=cv2.INTER_CUBIC,
                                                      borderMode=cv2.BORDER_REFLECT101)).registration
        print(f"known motion ({dx:+}, {dy:+}) px, {deg:+} deg: {_measure(reg.method)} {reg.residual_before:.2f} -> "
              f"{reg.residual:.2f} px")
    if frames:
        first = read_rgb(frames / "img1.jpg")
        ref = default.reference(first)
        rows = []
        for path in sorted(frames.glob("img*.jpg"), key=lambda p: int(p.stem[3:]))[1:]:
            rows.append((path.stem, default.register(ref, read_rgb(path))[1]))
        for stem, reg in rows:
            if stem == "img32":
                print(f"{stem}: head shift ({reg.shift[0]:+.2f}, {reg.shift[1]:+.2f}) px, rotation "
                      f"{reg.rotation:+.2f} deg, {_measure(reg.method)} {reg.residual_before:.2f} -> "
                      f"{reg.residual:.2f} px")
        before, after = np.array([r.residual_before for _, r in rows]), np.array([r.residual for _, r in rows])
        print(f"every frame against img1 ({len(rows)}), {_measure(rows[0][1].method)}: before median "
              f"{np.median(before):.2f}, max {before.max():.2f} px; after median {np.median(after):.2f}, p90 {np.percentile(after, 90):.2f}, "
              f"max {after.max():.2f} px ({', '.join(s for s, r in rows if r.residual > 1.0) or 'none'} > 1 px)")


def _measure(method: str) -> str:
    """What a residual of this registration (or a cache summary's residual_measure) measures."""
    if method in ("consensus", "held-out still patches"):
        return "still-face residual (held-out patches)"
    return "upper-face flow residual"


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
