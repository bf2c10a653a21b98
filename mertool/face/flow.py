"""Optical flow and optical strain between a cached onset and apex, and the cache stage that stores them.

    flow = compute_flow(onset, apex, "tvl1")   # H x W x 2 float32 (u, v): onset pixel (x, y) is at (x+u, y+v)
    strain = optical_strain(flow)              # H x W float32, magnitude of the optical strain tensor
    add_flow("casme2.h5", "tvl1")              # an existing cache gets /flow and /strain (new file, then rename)

Methods (FLOW_METHODS):
  tvl1       scikit-image's TV-L1 (skimage.registration.optical_flow_tvl1; Zach, Pock & Bischof 2007, as refined by
             Wedel et al. 2009): the flow most micro-expression papers feed (STSTNet, OFF-ApexNet, HTNet, ...).
  dis        OpenCV's Dense Inverse Search (Kroeger et al. 2016), ~100x faster, coarser at sub-pixel motion.
  farneback  OpenCV's polynomial-expansion flow (Farneback 2003).
Why scikit-image for TV-L1: OpenCV's own TV-L1 (cv2.optflow.DualTVL1OpticalFlow_create) is only in the
opencv-contrib-python wheels, which install the same `cv2` package as opencv-python(-headless), mertool's OpenCV:
pip puts both into one folder and whichever comes last overwrites the other's files, so a project cannot depend on
both; swapping mertool's OpenCV for contrib would pull the GUI build and its X/Qt libraries into every install.
scikit-image is already a dependency, is pure NumPy/SciPy, and on 224-px faces is accurate to a tenth of a pixel on
micro-expression motion (docs/preprocessing.md has the measurement; benchmarks/flow.py repeats it).

Every method reads the frames as 8-bit grey (ITU-R 601 luma, as cv2 converts), so they see the same input. The
flow's sign is the one the models and papers use: from the onset to the apex, in pixels of the cached crop.
Optical strain is the Frobenius norm of the infinitesimal strain tensor e = (grad w + grad w^T) / 2 of the flow w,
sqrt(e_xx^2 + e_yy^2 + 2 e_xy^2) with central differences (Shreve et al. 2011; Liong et al. 2014), dimensionless.
"""
from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

import numpy as np

from mertool.errors import MertoolError

FLOW_METHODS = ("tvl1", "dis", "farneback")
# each method's parameters and their defaults (recorded in the cache's `flow` attribute with the values used)
FLOW_DEFAULTS: dict[str, dict] = {
    # scikit-image's own defaults
    "tvl1": {"attachment": 15.0, "tightness": 0.3, "num_warp": 5, "num_iter": 10, "tol": 1e-4, "prefilter": False},
    # "medium" preset (finest scale 1: half resolution is too coarse for motion of 1 px), variational refinement on
    "dis": {"preset": "medium", "finest_scale": 0, "variational_refinement_iterations": 5},
    # OpenCV's documented example values
    "farneback": {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2},
}
_DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


def flow_params(method: str, **params) -> dict:
    """The method's full parameter set: its defaults updated by `params`; a MertoolError for an unknown name."""
    if method not in FLOW_METHODS:
        raise MertoolError(f"--flow {method!r}: expected one of {', '.join(FLOW_METHODS)} (or none)")
    defaults = FLOW_DEFAULTS[method]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise MertoolError(f"flow method {method}: unknown parameter(s) {', '.join(unknown)}; "
                           f"expected {', '.join(defaults)}")
    out = dict(defaults)
    for k, v in params.items():
        kind = type(defaults[k])
        try:
            out[k] = v if kind is str else (str(v).lower() in ("1", "true", "yes") if kind is bool else kind(v))
        except (TypeError, ValueError):
            raise MertoolError(f"flow method {method}: {k}={v!r}: expected a {kind.__name__}") from None
    if method == "dis" and out["preset"] not in _DIS_PRESETS:
        raise MertoolError(f"flow method dis: preset={out['preset']!r}: expected one of {', '.join(_DIS_PRESETS)}")
    return out


def flow_settings(method: str, params: dict | None = None) -> dict:
    """What a cache records about its flow: method, full parameters, library and version, direction, units."""
    import cv2
    import skimage

    library = f"scikit-image {skimage.__version__}" if method == "tvl1" else f"opencv {cv2.__version__}"
    return {"method": method, "params": flow_params(method, **(params or {})), "library": library,
            "direction": "onset -> apex", "units": "pixels of the cached crop (u: x right, v: y down)",
            "strain": "sqrt(e_xx^2 + e_yy^2 + 2 e_xy^2), central differences"}


def compute_flow(onset: np.ndarray, apex: np.ndarray, method: str = "tvl1", **params) -> np.ndarray:
    """H x W x 2 float32 flow (u, v) from `onset` to `apex` (uint8 RGB H x W x 3 or grey H x W, same shape):
    the onset's pixel (x, y) shows up at (x + u, y + v) in the apex."""
    p = flow_params(method, **params)
    if onset.shape != apex.shape or onset.ndim not in (2, 3):
        raise MertoolError(f"flow: onset {onset.shape} and apex {apex.shape}: expected two frames of one shape")
    a, b = _grey(onset), _grey(apex)
    if method == "tvl1":
        from skimage.registration import optical_flow_tvl1

        vu = optical_flow_tvl1(a.astype(np.float32) / 255, b.astype(np.float32) / 255, dtype=np.float32, **p)
        return np.ascontiguousarray(np.stack([vu[1], vu[0]], -1), dtype=np.float32)
    import cv2
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[p["preset"]])
        dis.setFinestScale(int(p["finest_scale"]))
        dis.setVariationalRefinementIterations(int(p["variational_refinement_iterations"]))
        return dis.calc(a, b, None).astype(np.float32)
    return cv2.calcOpticalFlowFarneback(a, b, None, p["pyr_scale"], int(p["levels"]), int(p["winsize"]),
                                        int(p["iterations"]), int(p["poly_n"]), p["poly_sigma"], 0).astype(np.float32)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """H x W float32 magnitude of the optical strain tensor of an H x W x 2 flow (u, v)."""
    u, v = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    shear = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx ** 2 + dv_dy ** 2 + 2 * shear ** 2).astype(np.float32)


def flow_to_rgb(flow: np.ndarray, max_px: float | None = None) -> tuple[np.ndarray, float]:
    """(uint8 H x W x 3 colour-wheel picture of a flow, the magnitude drawn at full saturation): hue is the
    direction (red right, yellow-green down, cyan left, violet up as the image shows it), saturation the length;
    white is no motion. `max_px` defaults to the 99th percentile of the length."""
    from matplotlib.colors import hsv_to_rgb

    u, v = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    mag = np.hypot(u, v)
    if max_px is None:
        max_px = float(np.percentile(mag, 99)) if mag.size else 0.0
    max_px = max_px if max_px > 0 else 1.0
    hue = (np.arctan2(v, u) / (2 * np.pi)) % 1.0
    hsv = np.stack([hue, np.clip(mag / max_px, 0, 1), np.ones_like(hue)], -1)
    return (hsv_to_rgb(hsv) * 255).round().astype(np.uint8), max_px


def colour_wheel(size: int = 48) -> np.ndarray:
    """uint8 size x size x 4 (RGBA) key of flow_to_rgb's encoding: a disc of unit radius = max_px."""
    r = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    u, v = (xs - r) / r, (ys - r) / r
    rgb, _ = flow_to_rgb(np.stack([u, v], -1), 1.0)
    alpha = np.where(np.hypot(u, v) <= 1, 255, 0).astype(np.uint8)
    return np.dstack([rgb, alpha])


def _grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    frame = np.ascontiguousarray(frame)
    if frame.dtype != np.uint8:
        frame = np.clip(np.round(frame), 0, 255).astype(np.uint8)
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


# ----------------------------------------------------------------------------------- the cache stage: pairs -> flow

def has_flow(f) -> bool:
    """True when an open cache holds flow (datasets and settings)."""
    return "flow" in f and "strain" in f and "flow" in f.attrs


def fill_flow(f, method: str, params: dict | None = None, workers: int = 2,
              on_pair: Callable[[int, int], None] | None = None) -> dict:
    """Compute the flow and strain of every pair of the cache open for writing in `f` that has none yet.

    The datasets are created when missing (NaN until computed, so a resumed preprocess fills only its new pairs); a
    cache whose flow was made with other settings is refused (the caller removes it first). `on_pair(done, total)`
    reports progress. Returns {'method', 'params', 'pairs', 'seconds', 'seconds_per_pair'}.
    """
    from mertool.cache.store import create_flow_datasets

    settings = flow_settings(method, params)
    if "flow" in f.attrs:
        found = json.loads(f.attrs["flow"])
        if (found.get("method"), found.get("params")) != (settings["method"], settings["params"]):
            raise MertoolError(f"{f.filename}: holds {found.get('method')} flow with {found.get('params')}; this run "
                               f"asks for {method} with {settings['params']}")
    create_flow_datasets(f)
    f.attrs["flow"] = json.dumps(settings, sort_keys=True)
    flow_ds, strain_ds = f["flow"], f["strain"]
    todo = [i for i in range(flow_ds.shape[0]) if not np.isfinite(flow_ds[i, 0, 0, 0])]
    t0 = time.perf_counter()
    busy = 0.0
    if on_pair is not None:
        on_pair(0, len(todo))
    for k, (i, flow, strain, seconds) in enumerate(_flows(f, todo, method, settings["params"], workers)):
        flow_ds[i] = flow.astype(np.float16)
        strain_ds[i] = strain.astype(np.float16)
        busy += seconds
        if on_pair is not None:
            on_pair(k + 1, len(todo))
    f.flush()
    wall = time.perf_counter() - t0
    return {"method": method, "params": settings["params"], "library": settings["library"], "pairs": len(todo),
            "seconds": round(wall, 3), "seconds_per_pair": round(busy / len(todo), 4) if todo else None}


def _flows(f, todo: list[int], method: str, params: dict, workers: int):
    """(index, flow, strain, seconds in the worker) for each index, in order; `workers` processes read nothing from
    the file (the main process reads each pair and sends it), and at most 2 x workers pairs are in flight."""
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            yield _pair_flow((i, f["onset"][i], f["apex"][i], method, params))
        return
    import multiprocessing

    # spawned, not forked: the parent may have used OpenCV's thread pool, and a forked child waits on its lock
    ex = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker)
    try:
        pending, nxt = {}, 0
        for i in todo:
            pending[i] = ex.submit(_pair_flow, (i, f["onset"][i], f["apex"][i], method, params))
            while len(pending) >= 2 * workers:
                yield pending.pop(todo[nxt]).result()
                nxt += 1
        while pending:
            yield pending.pop(todo[nxt]).result()
            nxt += 1
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _init_worker() -> None:
    """One OpenCV thread per process (the pool is the parallelism); Ctrl-C is the main process's."""
    import cv2
    import skimage.registration  # noqa: F401  (imported here, not inside the first pair's timing)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)


def _pair_flow(task: tuple) -> tuple:
    i, onset, apex, method, params = task
    t0 = time.perf_counter()
    flow = compute_flow(onset, apex, method, **params)
    return i, flow, optical_strain(flow), time.perf_counter() - t0


def add_flow(path: str | Path, method: str = "tvl1", params: dict | None = None, replace: bool = False,
             workers: int = 2, on_pair: Callable[[int, int], None] | None = None) -> dict:
    """Give an existing cache /flow and /strain without aligning again.

    The cache is copied (all but an old flow) into a temporary file beside it, the flow is computed there and the
    copy renamed over the cache: an interrupted run leaves the cache as it was. A cache with flow is refused unless
    `replace`. Returns fill_flow's report with 'cache' and 'replaced'.
    """
    import h5py

    from mertool import files
    from mertool.cache.store import open_cache

    path = Path(path)
    flow_params(method, **(params or {}))   # a bad method or parameter fails before any copying
    with open_cache(path) as src:
        old = json.loads(src.attrs["flow"]) if "flow" in src.attrs else None
        if (old is not None or "flow" in src) and not replace:
            what = f"{old.get('method')} flow" if old else "a /flow dataset"
            raise MertoolError(f"{path}: already has {what}; pass --replace to compute it again")
        with files.temporary_path(path) as tmp:
            with h5py.File(tmp, "w") as dst:
                for name in src:
                    if name not in ("flow", "strain"):
                        src.copy(src[name], dst, name)
                dst.attrs.update({k: v for k, v in src.attrs.items() if k != "flow"})
                try:
                    report = fill_flow(dst, method, params, workers, on_pair)
                except BrokenProcessPool:
                    raise MertoolError(f"{path}: a flow worker process died (out of memory?); the cache is unchanged: "
                                       f"run again with fewer --workers (from Python, call add_flow under "
                                       f"`if __name__ == '__main__':`, as spawned workers import the calling "
                                       f"script)") from None
            src.close()   # before the rename replaces the file it reads
    return {"cache": str(path), "replaced": old["method"] if old else None, **report}
