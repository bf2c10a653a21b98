"""Registration against ground truth: the full grid of issue #18, known rigid motions, the real clips, speed.

    python benchmarks/registration_grid.py [--register MODE ...] [--subjects N] [--quick]

Every figure compares the cached pair's motion with the truth (mertool.synth.motion_truth: synth's known AU and head
motion), or, on the real clips, with a second method (ECC on small windows started from phase correlation); never
with what the registration minimised. Prints the fp32 matmul rate beside the timings, as every timing report must.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
TOL = 0.15


def grid(aligner, people, quick: bool) -> None:
    from mertool.synth.motion_truth import AU_SETS, PEAKS, head_motions, measure, render_pair

    heads = head_motions()
    if quick:
        heads = heads[::4]
    rows = []
    print(f"{'AU set':<11} {'peak':>4} | {'max AU-landmark error px (still / 3 px / 6 px head)':>52} | "
          f"{'kept % min..max':>16} | {'max still-landmark px':>22} | flagged")
    for name, aus in AU_SETS.items():
        for peak in PEAKS:
            res = {}
            for head in heads:
                for subject in people:
                    r = measure(aligner, render_pair(subject, aus, peak, head))
                    mag = 0 if head is None else round(float(np.hypot(*head[:2])))
                    res.setdefault(mag, []).append(r)
                    rows.append((name, peak, mag, r))
            au = {m: max(r["au_err"] for r in v) for m, v in res.items()}
            kept = [100 * r["kept"] for v in res.values() for r in v]
            still = {m: max(r["still_err"] for r in v) for m, v in res.items()}
            flagged = sum(bool((r["registration"] or {}).get("flag")) for v in res.values() for r in v)
            print(f"{name:<11} {peak:>4} | {au.get(0, np.nan):>16.3f} / {au.get(3, np.nan):.3f} / "
                  f"{au.get(6, np.nan):.3f}{'':>15} | {min(kept):>6.0f}..{max(kept):<7.0f} | "
                  f"{still.get(0, np.nan):.3f} / {still.get(3, np.nan):.3f} / {still.get(6, np.nan):.3f}    | "
                  f"{flagged}")
    au = np.array([r["au_err"] for *_, r in rows])
    still = np.array([r["still_err"] for *_, r in rows])
    kept = np.array([r["kept"] for *_, r in rows])
    print(f"all {len(rows)} pairs: AU-landmark error median {np.median(au):.3f}, p90 {np.percentile(au, 90):.3f}, "
          f"max {au.max():.3f} px ({(au <= TOL).mean():.0%} within {TOL}); still-landmark error median "
          f"{np.median(still):.3f}, max {still.max():.3f} px ({(still <= TOL).mean():.0%} within {TOL}); "
          f"kept {100 * np.median(kept):.0f} % median, {100 * kept.min():.0f}..{100 * kept.max():.0f} %")
    for mag in sorted({m for _, _, m, _ in rows}):
        k = np.array([r["kept"] for _, _, m, r in rows if m == mag])
        e = np.array([r["still_err"] for _, _, m, r in rows if m == mag])
        print(f"  head {mag} px: kept {100 * k.mean():.0f} % mean ({100 * k.min():.0f}..{100 * k.max():.0f}); "
              f"false motion at still landmarks median {np.median(e):.3f}, max {e.max():.3f} px")


def rigid(aligner, people) -> None:
    from mertool.synth.motion_truth import head_motions, measure, render_pair

    errs, rots = [], []
    for head in head_motions()[1:]:
        for subject in people:
            r = measure(aligner, render_pair(subject, (), 0.0, head))
            errs.append(r["still_err"])
            rots.append(abs(r["rotation_err"]))
    print(f"known rigid motion of a still face ({len(errs)} pairs, 3 and 6 px, +-1 deg): max error at the 68 "
          f"landmarks median {np.median(errs):.3f}, max {max(errs):.3f} px; rotation error max {max(rots):.4f} deg")


def real(aligner) -> None:
    import cv2

    from mertool.face.align import read_rgb
    from mertool.synth.motion_truth import BROWS, window_shift

    frames = REALDATA / "video" / "single_face" / "frames"
    if not frames.is_dir():
        print(f"real clip: {frames} not available")
        return
    pair = aligner.align_pair(read_rgb(frames / "img1.jpg"), read_rgb(frames / "img32.jpg"))
    shifts = {k: window_shift(pair.onset, pair.apex, pair.landmarks[list(v)]) for k, v in BROWS.items()}
    reg = pair.registration
    print("real clip single_face img1 -> img32: " + ", ".join(f"{k} ({v[0]:+.2f}, {v[1]:+.2f}) = "
                                                              f"{np.hypot(*v):.2f} px" for k, v in shifts.items())
          + ("" if reg is None else f"; head ({reg.shift[0]:+.2f}, {reg.shift[1]:+.2f}) px {reg.rotation:+.2f} deg "
                                    f"{reg.to_dict().get('flag', '')}"))
    video = REALDATA / "video" / "wolfgang_langer" / "WolfgangLanger_Pexels.mp4"
    if video.is_file():
        cap = cv2.VideoCapture(str(video))
        got = {}
        for n in range(40):
            ok, bgr = cap.read()
            if n in (14, 39) and ok:
                got[n] = bgr[..., ::-1].copy()
        cap.release()
        reg = aligner.align_pair(got[14], got[39]).registration
        if reg is not None:
            print(f"wolfgang_langer frames 14 -> 39 (a grimace): {reg.to_dict()}")


def frl(aligners) -> None:
    """The issue's own measurement: an FRL face whose apex raises both brows by 2 crop px (a smooth bump on the brows,
    nothing else moves), with and without head motion (6 px in 8 directions, +-1 deg); the brow windows and the lower
    face measured by ECC windows (phase-correlation start) in each cached pair, against the unregistered still-head
    pair."""
    import cv2

    from mertool.face.align import FaceAligner, chip_matrix, read_rgb
    from mertool.synth.motion_truth import BROWS, head_matrix, head_motions, window_shift

    path = REALDATA / "faces" / "frl_london" / "neutral_front" / "001_03.jpg"
    if not path.is_file():
        print(f"FRL brow raise: {path} not available")
        return
    face = cv2.resize(read_rgb(path), (640, 640), interpolation=cv2.INTER_AREA)
    plain = FaceAligner(register="none")
    loc = plain.locate(face)
    scale = np.hypot(*chip_matrix(loc.chip)[0, :2])          # crop px per frame px
    lm = loc.landmarks.astype(np.float64)
    brows = lm[17:27]
    sigma = 0.35 * np.linalg.norm(lm[21] - lm[17])
    ys, xs = np.mgrid[0:640, 0:640].astype(np.float32)
    bump = np.zeros((640, 640), np.float32)
    for x, y in brows:                                        # a smooth raise of the brows, 2 crop px at its top
        bump = np.maximum(bump, np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)).astype(np.float32))
    up = 2.0 / scale
    raised = cv2.remap(face, xs, (ys + np.float32(up) * bump).astype(np.float32), cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    lower = lm[list(range(3, 14)) + list(range(48, 60))]     # jaw and mouth: nothing moves there
    centre = lm.mean(0)

    def read(pair):
        b = np.mean([window_shift(pair.onset, pair.apex, pair.landmarks[list(v)])[1] for v in BROWS.values()])
        low = window_shift(pair.onset, pair.apex, pair.landmarks[list(range(3, 14)) + list(range(48, 60))])
        return b, float(np.hypot(*low))

    ref_brow, ref_low = read(plain.align_pair(face, raised))
    print(f"FRL 001 brow raise of 2 crop px: unregistered, still head: brows {ref_brow:+.2f} px, lower face "
          f"{ref_low:.2f} px")
    for aligner in aligners:
        rows = []
        for head in [None] + head_motions()[9:]:              # still, and 6 px in 8 directions
            apex = raised if head is None else cv2.warpAffine(raised, head_matrix(head, centre), (640, 640),
                                                              flags=cv2.INTER_CUBIC,
                                                              borderMode=cv2.BORDER_REFLECT101)
            rows.append(read(aligner.align_pair(face, apex)))
        kept = np.array([r[0] for r in rows]) / ref_brow
        low = np.array([r[1] for r in rows])
        print(f"  register {aligner.register_mode}: brow raise kept {100 * kept[0]:.0f} % still head, "
              f"{100 * kept[1:].min():.0f}-{100 * kept[1:].max():.0f} % with 6 px head motion; lower face "
              f"{low[0]:.2f} px still head, {low[1:].min():.2f}-{low[1:].max():.2f} px with head motion")


def speed(aligner, rate: float) -> None:
    from mertool.bench import bench_alignment

    r = bench_alignment(aligner)
    print(f"speed ({r['image']}): pair {1e3 / r['pairs_per_s']:.1f} ms (alignment "
          f"{r['pair_unregistered_ms']:.1f} ms + registration {r['registration_ms']:.1f} ms) at "
          f"{rate / 1e9:.0f} GFLOP/s, {torch.get_num_threads()} threads")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--register", nargs="*", default=None, help="modes to measure (default: the default and none)")
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="every 4th head motion only")
    ap.add_argument("--skip-grid", action="store_true")
    ap.add_argument("--frl", action="store_true", help="only the FRL brow-raise measurement, for every mode given")
    args = ap.parse_args()
    import cv2

    from mertool.bench import matmul_rate
    from mertool.face.align import DEFAULT_REGISTER, FaceAligner
    from mertool.synth.motion_truth import subjects

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    rate = matmul_rate(torch.device("cpu"), torch.float32)["flops"]
    print(f"fp32 matmul rate: {rate / 1e9:.1f} GFLOP/s (1 thread)")
    modes = args.register or [DEFAULT_REGISTER, "none"]
    if args.frl:
        frl([FaceAligner(register=m) for m in modes if m != "none"])
        return
    people = subjects(args.subjects)
    for mode in modes:
        aligner = FaceAligner(register=mode)
        print(f"\n== register {mode}")
        t0 = time.perf_counter()
        if not args.skip_grid:
            grid(aligner, people, args.quick)
        if mode != "none":
            rigid(aligner, people)
        real(aligner)
        speed(aligner, rate)
        print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
