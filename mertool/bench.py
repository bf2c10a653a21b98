"""`mertool bench`: how fast training, the data path, alignment and prediction run, measured against the hardware.

    report = run_bench(device="cpu")       # one run, one device; report is JSON-ready
    render_bench(report, console)

Everything is measured in one process on one device, with the code the commands use:
- dense rate: the best of timed square matmuls in the run's dtype (bf16 on CUDA, where training autocasts to bf16;
  fp32 on CPU) -- the practical ceiling the model's FLOP utilisation is measured against;
- model FLOPs per training sample: torch's FlopCounterMode over forward + backward of one batch (counted on the meta
  device: the same operators, no compute);
- training throughput: `mertool.training.train._train_epoch` (the loop `train-loso` runs: on-device gather,
  uint8 -> float, batched augmentation, autocast, gradient accumulation, AdamW) on data loaded from an HDF5 cache;
  MFU = achieved FLOP/s / dense rate;
- data path: that epoch against the same step fed the same batches already built on the device; the difference is
  what gathering and augmenting costs, as a share of the epoch;
- alignment (dlib detector + 68 landmarks + chip, and apex registration, on a 640 x 480 frame of skimage's astronaut,
  one core) and predict latency (an image pair -> probabilities through `mertool.predict.Predictor`, model loaded);
- optical flow (bench_flow): each method's endpoint error against synthetic AU motion of known displacement on real
  faces, and its time per 224-px pair on one CPU thread.
Without --cache a temporary synthetic cache of CASME II's size (249 samples, 26 subjects) is written first.
"""
from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mertool.errors import MertoolError

CASME2_SAMPLES, CASME2_SUBJECTS = 249, 26   # the size of the paper's CASME II protocol (2019 sheet, 5 classes)


def sync(device: torch.device) -> None:
    """Wait for queued device work (CUDA kernels are asynchronous), so wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_dtype(device: torch.device) -> torch.dtype:
    """The dtype training computes in: bf16 autocast on CUDA, fp32 on CPU (see mertool.training.train._autocast)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _timed(fn, device: torch.device, min_seconds: float, min_reps: int = 1) -> tuple[float, int]:
    """(seconds per call, calls) of fn repeated until both min_seconds and min_reps are reached."""
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds and reps >= min_reps:
            return elapsed / reps, reps


# --------------------------------------------------------------------------------------------------- the device

def matmul_rate(device: torch.device, dtype: torch.dtype | None = None, sizes=None,
                min_seconds: float = 0.25) -> dict:
    """Dense FLOP/s of square matmuls (2 n^3 FLOPs each) per size after a warm-up; the best is the device's rate."""
    dtype = dtype or run_dtype(device)
    sizes = sizes or ((2048, 4096, 8192) if device.type == "cuda" else (512, 1024, 2048))
    rates = {}
    for n in sizes:
        g = torch.Generator(device=device).manual_seed(n)
        a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
        b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
        a @ b  # warm-up: library initialisation, kernel choice
        seconds, _ = _timed(lambda: a @ b, device, min_seconds, min_reps=3)
        rates[int(n)] = 2 * n ** 3 / seconds
        del a, b
    return {"dtype": str(dtype).removeprefix("torch."), "sizes": rates, "flops": max(rates.values())}


# ---------------------------------------------------------------------------------------------------- the model

def model_flops(model_cfg: dict, batch: int) -> dict:
    """FLOPs per sample of a training step's forward and forward + backward (a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    from mertool.models import ModelConfig, build_model

    cfg = ModelConfig.from_dict(model_cfg)
    with torch.device("meta"):  # shapes only: the same operators as on a real device, no memory or compute
        model = build_model(cfg, load_weights=False).train()
        frames = torch.zeros(batch, 3, cfg.image_size, cfg.image_size)
        aus = torch.zeros(batch, cfg.num_aus)
        labels = torch.zeros(batch, dtype=torch.long)
        flow = torch.zeros(batch, 3, cfg.image_size, cfg.image_size) if cfg.needs_flow else None  # u, v, strain
    with FlopCounterMode(display=False) as counter:
        logits = model(frames, frames, aus, flow=flow)
        forward = counter.get_total_flops()
        F.cross_entropy(logits.float(), labels).backward()
        total = counter.get_total_flops()
    return {"forward_per_sample": forward / batch, "train_per_sample": total / batch}


# ------------------------------------------------------------------------------------------------- the data path

def make_bench_cache(path: str | Path, emotions, image_size: int, samples: int = CASME2_SAMPLES,
                     subjects: int = CASME2_SUBJECTS, seed: int = 0) -> Path:
    """A cache of random frames the size of CASME II (emotions cycle so every class has samples)."""
    from mertool.cache.store import CachedSample, CacheWriter
    from mertool.data.aus import AU_VOCAB

    emotions = list(emotions)
    if samples < 2 or subjects < 1 or not emotions:
        raise MertoolError(f"bench cache: {samples} samples, {subjects} subjects, {len(emotions)} emotions; "
                           f"expected at least 2 samples, 1 subject and 1 emotion")
    rng = np.random.default_rng(seed)
    size = int(image_size)
    w = CacheWriter(path, dataset="synthetic-bench", image_size=size, alignment={"method": "synthetic-bench"})
    try:
        for i in range(samples):
            onset = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            apex = np.clip(onset.astype(np.int16) + rng.integers(-8, 9, onset.shape), 0, 255).astype(np.uint8)
            w.append(CachedSample(onset=onset, apex=apex, aus=rng.integers(0, 2, len(AU_VOCAB)).astype(np.uint8),
                                  landmarks=None, subject=f"{i % subjects + 1:02d}", sample_id=f"EP{i:03d}",
                                  emotion=emotions[i % len(emotions)], aus_raw=""))
    except BaseException:
        w.abort()
        w.tmp.unlink(missing_ok=True)
        raise
    return w.close()


def load_bench_data(cache: str | Path, recipe: dict, device: torch.device):
    """The cache -> MERData on the device, as train-loso loads it; returns (data, seconds)."""
    from mertool.cache.store import load_cache
    from mertool.training.dataset import load_for_recipe

    t0 = time.perf_counter()
    data = load_for_recipe(load_cache(cache), recipe).to(device)
    sync(device)
    return data, time.perf_counter() - t0


@contextmanager
def replayed_batches(batches: list):
    """Make mertool.training.train's epoch loop take `batches` (built beforehand) instead of gathering and augmenting.

    The loop, model step and optimizer stay exactly those of training; only the per-batch data path is replaced.
    """
    import mertool.training.train as train

    it = iter(batches)
    original = train._batch
    train._batch = lambda *args, **kwargs: next(it)
    try:
        yield
    finally:
        train._batch = original
    if next(it, it) is not it:
        raise RuntimeError("replayed_batches: the epoch used fewer batches than were built")


def bench_training(recipe: dict, data, *, batch: int, steps: int | None = None, warmup: int | None = None,
                   repeats: int = 1, compile: bool = False, seed: int = 0) -> dict:
    """Time one epoch of `steps` batches through the training loop, fed by the real data path and by prebuilt batches.

    `warmup` batches run first (None: the whole epoch, so every batch shape has been tuned or compiled). Returns
    seconds for both (the best of `repeats`), the data path timed alone, samples/s, and the model (for predict).
    """
    from mertool.models import build_model
    from mertool.training.dataset import make_batches
    from mertool.training.train import _batch, _optimizer, _train_epoch, setup_device

    device = data.device
    setup_device(device)
    tr = {**recipe["train"], "batch_size": int(batch)}
    aug = recipe["augment"]
    n = len(data) if steps is None else min(len(data), int(batch) * int(steps))
    if n < 2:
        raise MertoolError(f"bench: an epoch of {n} sample(s); need at least 2 (BatchNorm)")
    torch.manual_seed(seed)
    model = build_model(recipe["model"]).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, tr, device)
    step_model = torch.compile(model) if compile else model
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].to(device)

    def epoch(idx: torch.Tensor) -> None:
        sums = _train_epoch(step_model, opt, data, idx, tr, aug, gen)  # loss, correct, AU loss (device tensors)
        torch.stack([t.float() for t in sums]).tolist()  # the loop's one host sync per epoch, as in run_fold

    t0 = time.perf_counter()
    # kernel selection, cuDNN autotuning, compilation, optimizer state
    epoch(order if warmup is None else order[:max(2, min(n, int(batch) * int(warmup)))])
    sync(device)
    warmup_s = time.perf_counter() - t0
    loader, preloaded, building = [], [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        batches = [_batch(data, idx, aug, gen, channels_last) for idx in make_batches(order, int(batch))]
        sync(device)
        building.append(time.perf_counter() - t0)  # the data path alone, timed directly
        for fed_by_loader in ((True, False) if r % 2 == 0 else (False, True)):  # alternate: no order bias
            t0 = time.perf_counter()
            if fed_by_loader:
                epoch(order)
            else:
                with replayed_batches(batches):
                    epoch(order)
            (loader if fed_by_loader else preloaded).append(time.perf_counter() - t0)
        del batches
    a, b = min(loader), min(preloaded)
    return {"samples": n, "batches": len(make_batches(order, int(batch))), "batch": int(batch),
            "accum_steps": int(tr["accum_steps"]), "warmup_s": warmup_s, "epoch_loader_s": a,
            "epoch_preloaded_s": b, "data_path_s": min(building), "samples_per_s": n / a,
            "step_samples_per_s": n / b, "model": model}


# ------------------------------------------------------------------------------------------ alignment, predict

def astronaut_pair() -> tuple[np.ndarray, np.ndarray]:
    """A real face (skimage's astronaut, 512 x 512) and a copy moved by 2 px as its 'apex'."""
    from skimage.data import astronaut

    onset = np.ascontiguousarray(astronaut())
    return onset, np.ascontiguousarray(np.roll(onset, 2, axis=0))


def video_pair() -> tuple[np.ndarray, np.ndarray]:
    """A 640 x 480 frame of a real face (skimage's astronaut scaled by 1.25, the face ~110 px wide as in CASME II's
    640 x 480 frames) and its 'apex': the head moved by (2.5, -1.5) px and turned 0.6 deg, as a pair to register."""
    import cv2
    from skimage.data import astronaut

    onset = np.ascontiguousarray(cv2.resize(astronaut(), (640, 640), interpolation=cv2.INTER_CUBIC)[:480])
    m = cv2.getRotationMatrix2D((320.0, 200.0), 0.6, 1.0)
    m[:, 2] += (2.5, -1.5)
    return onset, np.ascontiguousarray(cv2.warpAffine(onset, m, (640, 480), flags=cv2.INTER_CUBIC,
                                                      borderMode=cv2.BORDER_REFLECT101))


PAIR_TARGET_MS = 60.0     # alignment + registration of a 640 x 480 pair on one core (issue #18), at ~180 GFLOP/s


def bench_alignment(aligner=None, min_seconds: float = 2.0, min_reps: int = 3) -> dict:
    """Frames/s of detect + landmarks + chip (FaceAligner defaults: upsample 0, then 1 if no face), the HOG detector
    alone at upsample 0 and 1, and the time of align_pair on a 640 x 480 pair with and without registering the apex
    (its cost), all on one core (OpenCV held to one thread; dlib uses one), beside the fp32 matmul rate of this CPU
    measured in the same call with torch's threads as the rest of the report."""
    import cv2

    from mertool.face.align import FaceAligner

    extra = {}
    if aligner is None:
        t0 = time.perf_counter()
        aligner = FaceAligner()
        extra["load_s"] = time.perf_counter() - t0  # reading the 68-point model file
    cpu = torch.device("cpu")
    rate = matmul_rate(cpu, torch.float32, sizes=(512, 1024), min_seconds=0.1)["flops"]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        onset, apex = video_pair()
        aligner.align_pair(onset, apex)  # warm-up (and a check that the face is found)
        frame_s, frames = _timed(lambda: aligner.apply(onset, aligner.locate(onset).chip), cpu, min_seconds / 2,
                                 min_reps)
        detect = {up: _timed(lambda: aligner._detector.run(onset, up), cpu, min_seconds / 4, min_reps)[0]
                  for up in (0, 1)}
        plain = FaceAligner(aligner.size, aligner.padding, aligner.upsample, aligner.detect_max_side,
                            aligner.predictor_path, register="none")
        pair_s, pairs = _timed(lambda: aligner.align_pair(onset, apex), cpu, min_seconds / 2, min_reps)
        plain_s, _ = _timed(lambda: plain.align_pair(onset, apex), cpu, min_seconds / 4, min_reps)
    finally:
        cv2.setNumThreads(threads)
    return {"image": f"skimage.data.astronaut x1.25 {onset.shape[1]}x{onset.shape[0]}", "upsample": aligner.upsample,
            "size": aligner.size, "frames_per_s": 1 / frame_s, "pairs_per_s": 1 / pair_s, "frames_timed": frames,
            "pairs_timed": pairs, "detect_ms": {up: 1e3 * t for up, t in detect.items()},
            "register": aligner.register_mode, "pair_unregistered_ms": 1e3 * plain_s,
            "registration_ms": 1e3 * (pair_s - plain_s), "pair_ms": 1e3 * pair_s, "pair_target_ms": PAIR_TARGET_MS,
            "cpu_matmul_flops": rate, "pair_ms_at_180": 1e3 * pair_s * rate / 180e9, "threads": 1, **extra}


def bench_predict(model: torch.nn.Module, recipe: dict, classes: list[str], device: torch.device, workdir: Path,
                  aligner=None, reps: int = 3) -> dict:
    """Latency of Predictor.predict_pair (two image files -> probabilities) and of its forward pass alone."""
    from PIL import Image

    from mertool.predict.predictor import Predictor
    from mertool.training.runs import make_checkpoint, save_checkpoint

    path = save_checkpoint(make_checkpoint(model, recipe, classes), Path(workdir) / "bench-model.pt")
    files = []
    for name, rgb in zip(("onset.png", "apex.png"), astronaut_pair()):
        files.append(Path(workdir) / name)
        Image.fromarray(rgb).save(files[-1])
    t0 = time.perf_counter()
    predictor = Predictor(path, device=device, aligner=aligner)
    load_s = time.perf_counter() - t0
    aus = "none" if predictor.uses_aus else None
    pred = predictor.predict_pair(*files, aus=aus)  # warm-up
    pair_ms, forward_ms = [], []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        predictor.predict_pair(*files, aus=aus)
        sync(predictor.device)
        pair_ms.append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        predictor.classify(pred.onset_crop, pred.apex_crop, predictor.aus(aus))
        sync(predictor.device)
        forward_ms.append(1e3 * (time.perf_counter() - t0))
    # best of the repeats, as for every other figure: other processes on a shared machine only ever add time
    return {"pair_ms": min(pair_ms), "forward_ms": min(forward_ms), "pair_ms_median": statistics.median(pair_ms),
            "reps": len(pair_ms),
            "model_load_s": load_s, "what": "Predictor.predict_pair: read both images, align (onset landmarks), "
                                            "resize, one forward pass with CVA maps, softmax"}


# -------------------------------------------------------------------------------------------------- one run

def bench_recipe(recipe: str | Path = "casme2", image_size: int | None = None, overrides=()) -> dict:
    """The resolved recipe the bench trains (default: CASME II, the full model at 224 px)."""
    from mertool.recipe import load_recipe

    extra = list(overrides) + ([f"data.image_size={int(image_size)}"] if image_size is not None else [])
    return load_recipe(recipe, extra)


def loso_estimate(samples_per_s: float, epochs: int, samples: int = CASME2_SAMPLES,
                  subjects: int = CASME2_SUBJECTS) -> dict:
    """Seconds of a full LOSO's training at a throughput: each sample is trained on in (subjects - 1) folds.

    Only the training steps: evaluation (a forward pass over each held-out subject) and file writes are left out.
    """
    sample_steps = epochs * (subjects - 1) * samples
    return {"samples": samples, "subjects": subjects, "epochs": epochs, "sample_steps": sample_steps,
            "seconds": sample_steps / samples_per_s}


@contextmanager
def cudnn_benchmark(enabled: bool):
    """cuDNN autotuning on or off for the training run inside (through the variable mertool.training.train.setup_device
    reads, so spawned fold workers follow it too)."""
    old = os.environ.get("MERTOOL_CUDNN_BENCHMARK")
    os.environ["MERTOOL_CUDNN_BENCHMARK"] = "1" if enabled else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MERTOOL_CUDNN_BENCHMARK", None)
        else:
            os.environ["MERTOOL_CUDNN_BENCHMARK"] = old


def bench_loso(recipe: dict, cache: str | Path, devices, folds_per_device: int = 1, threads: int | None = None,
               compile: bool = False, cudnn: bool = True) -> dict:
    """Wall time of a whole LOSO run (every fold of the cache, the recipe's schedule) into a temporary folder."""
    from rich.console import Console

    from mertool.training.parallel import train_loso_parallel

    with tempfile.TemporaryDirectory(prefix="mertool-bench-loso-") as tmp, cudnn_benchmark(cudnn):
        t0 = time.perf_counter()
        rep = train_loso_parallel(recipe, cache, Path(tmp) / "run", devices=devices,
                                  folds_per_device=folds_per_device, threads=threads, compile=compile,
                                  console=Console(quiet=True), progress=False)
        seconds = time.perf_counter() - t0
    m = rep.get("metrics") or {}
    return {"seconds": seconds, "folds": len(rep["expected_folds"]), "samples": m.get("n"),
            "epochs": int(recipe["train"]["epochs"]), "devices": str(devices), "folds_per_device": folds_per_device,
            "cudnn_benchmark": bool(cudnn), "accuracy": m.get("accuracy"),
            "what": "train-loso wall time: cache load, every fold, files written"}


def bench_loso_variants(recipe: dict, cache: str | Path, devices: str, folds_per_device: int, threads: int | None,
                        compile: bool, cuda: bool, log) -> dict:
    """The measured LOSO at K folds per device, and what it is compared with: K = 1 (when K > 1; without NVIDIA MPS
    the K processes time-slice the GPU) and, on CUDA, K = 1 with cuDNN autotuning off (its cost: re-tuning for each
    fold's last batch shapes; its gain: faster kernels)."""
    out = {"loso": bench_loso(recipe, cache, devices, folds_per_device, threads, compile)}
    if folds_per_device > 1:
        log("full LOSO again with 1 fold per device (the comparison for K > 1)")
        out["loso_k1"] = bench_loso(recipe, cache, devices, 1, threads, compile)
    if cuda:
        log("full LOSO with 1 fold per device and cudnn.benchmark off")
        out["loso_no_cudnn_benchmark"] = bench_loso(recipe, cache, devices, 1, threads, compile, cudnn=False)
    return out


def figures(flops: dict, tr: dict, dense: float, load_s: float) -> dict:
    """The report's model, train and data sections: throughputs, FLOP/s, utilisation and data-path shares."""
    per_sample = flops["train_per_sample"]
    a, b, direct = tr["epoch_loader_s"], tr["epoch_preloaded_s"], tr["data_path_s"]
    return {
        "model": {"train_flops_per_sample": per_sample, "forward_flops_per_sample": flops["forward_per_sample"]},
        "train": {**{k: v for k, v in tr.items() if k not in ("epoch_loader_s", "epoch_preloaded_s", "data_path_s")},
                  "achieved_flops": per_sample * tr["samples_per_s"], "mfu": per_sample * tr["samples_per_s"] / dense,
                  "step_achieved_flops": per_sample * tr["step_samples_per_s"],
                  "step_mfu": per_sample * tr["step_samples_per_s"] / dense},
        "data": {"epoch_samples": tr["samples"], "epoch_from_cache_s": a, "epoch_preloaded_s": b, "ratio": a / b,
                 "overhead_pct": 100 * (a - b) / a, "data_path_s": direct, "direct_pct": 100 * direct / (b + direct),
                 "cache_load_s": load_s},
    }


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_bench(device: str | torch.device = "auto", recipe: str | Path = "casme2", cache: str | Path | None = None,
              image_size: int | None = None, batch: int | None = None, steps: int | None = None,
              overrides=(), compile: bool = False, repeats: int | None = None, warmup: int | None = None,
              threads: int | None = None, loso: bool = False, devices: str | None = None, folds_per_device: int = 1,
              synthetic_samples: int = CASME2_SAMPLES, synthetic_subjects: int = CASME2_SUBJECTS,
              align_seconds: float = 2.0, predict_reps: int = 3, matmul_sizes=None, flow_peaks=(1.0, 3.0),
              flow_patterns=None, flow_faces: int = 2, log=None) -> dict:
    """Every measurement of `mertool bench` on one device; returns a JSON-ready report.

    With loso=True a whole LOSO of the recipe's schedule is also timed on the same cache, on `devices` (default:
    `device`) with `folds_per_device` workers each (mertool.training.parallel). The optical-flow methods are measured on
    the CPU (bench_flow: `flow_faces` faces x `flow_patterns` at `flow_peaks` px; no peaks: not measured).

    Defaults: on CUDA the recipe's batch, one whole epoch of the cache after a warm-up epoch, best of 3;
    on CPU batch 4, 2 batches per epoch (a paper-size step takes seconds there), 1 optimizer step of warm-up, best
    of 3. The two ways of feeding an epoch alternate in order, so a slow drift in background load hits both.
    """
    from mertool.training.runs import device_info
    from mertool.training.train import resolve_device

    log = log or (lambda msg: None)
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    r = bench_recipe(recipe, image_size, overrides)
    batch = int(batch if batch is not None else (r["train"]["batch_size"] if cuda else 4))
    steps = steps if steps is not None else (None if cuda else 2)
    repeats = repeats or 3
    warmup = warmup or (None if cuda else int(r["train"]["accum_steps"]))  # CUDA: a whole epoch; CPU: one step
    for name, value, lo in (("--batch", batch, 2), ("--steps", steps, 1), ("repeats", repeats, 1),
                            ("warmup", warmup, 1), ("--threads", threads, 1)):
        if value is not None and value < lo:
            raise MertoolError(f"{name} {value}: expected an integer >= {lo}")
    if loso:  # check the devices now, not after minutes of measuring
        from mertool.training.parallel import parse_devices, plan_slots

        plan_slots(parse_devices(devices or str(dev)), folds_per_device, threads)
    if cache is not None:  # a bad file fails now, not after minutes of measuring
        from mertool.cache.store import open_cache

        open_cache(cache).close()
    if threads is not None:
        torch.set_num_threads(threads)

    report: dict = {"device": {**device_info(dev), **({} if cuda else {"name": cpu_name()})},
                    "dtype": str(run_dtype(dev)).removeprefix("torch."),
                    "host": platform.node(), "torch": torch.__version__, "compile": bool(compile)}
    if hasattr(os, "getloadavg"):  # CPU figures on a shared machine depend on what else runs
        report["load_average_1min"] = {"start": os.getloadavg()[0]}

    log(f"dense matmul rate ({report['dtype']}) on {dev}")
    report["matmul"] = matmul_rate(dev, sizes=matmul_sizes)

    log("model FLOPs per training sample (FlopCounterMode, forward + backward)")
    from mertool.models import count_params

    flops = model_flops(r["model"], batch)
    with tempfile.TemporaryDirectory(prefix="mertool-bench-") as tmp:
        if cache is None:
            emotions = [names[0] for names in r["data"]["classes"].values()]
            log(f"writing a synthetic cache: {synthetic_samples} samples, {synthetic_subjects} subjects, "
                f"{r['data']['image_size']} px")
            cache_path = make_bench_cache(Path(tmp) / "bench.h5", emotions, r["data"]["image_size"],
                                          synthetic_samples, synthetic_subjects)
        else:
            cache_path = Path(cache)
        log(f"loading the cache onto {dev}")
        data, load_s = load_bench_data(cache_path, r, dev)
        log(f"training loop: epoch of {len(data) if steps is None else min(len(data), batch * steps)} samples, "
            f"batch {batch}, from the cache and from prebuilt batches")
        tr = bench_training(r, data, batch=batch, steps=steps, warmup=warmup, repeats=repeats, compile=compile)
        model = tr.pop("model")
        report["config"] = {"recipe": str(recipe), "recipe_name": r.get("name", ""),
                            "image_size": r["data"]["image_size"], "model": r["model"],
                            "cache": str(cache) if cache is not None else "synthetic (temporary)",
                            "cache_samples": len(data), "cache_subjects": len(set(data.subjects)),
                            "cache_bytes": cache_path.stat().st_size, "batch": batch, "steps": steps,
                            "repeats": repeats, "warmup_batches": warmup}
        report.update(figures(flops, tr, report["matmul"]["flops"], load_s))
        report["model"]["parameters"] = count_params(model)
        report["loso_estimate"] = loso_estimate(tr["samples_per_s"], int(r["train"]["epochs"]), len(data),
                                                len(set(data.subjects)))

        log("alignment (dlib HOG + 68 landmarks + chip) on skimage's astronaut")
        from mertool.face.align import FaceAligner

        try:
            aligner = FaceAligner()
        except (MertoolError, ImportError) as exc:  # a GPU box without dlib's ~100 MB landmark model
            reason = f"skipped: the landmark model is not available ({exc})"
            log(f"alignment and predict latency {reason}")
            report["align"] = report["predict"] = {"skipped": reason}
        else:
            report["align"] = bench_alignment(aligner, min_seconds=align_seconds)
            log("predict latency (image pair -> probabilities)")
            report["predict"] = bench_predict(model, r, data.classes, dev, Path(tmp), aligner, reps=predict_reps)
            if flow_peaks:
                log("optical flow against synthetic AU motion (tvl1, dis, farneback; CPU)")
                report["flow"] = bench_flow(peaks=tuple(flow_peaks), patterns=flow_patterns, faces=flow_faces,
                                            aligner=FaceAligner(size=224))
        del model, data
        if loso:
            log(f"full LOSO: {r['train']['epochs']} epochs per fold on {devices or dev}, {folds_per_device} "
                f"fold(s) per device")
            if folds_per_device > 1 and cuda:
                from mertool.training.parallel import parse_devices, time_slicing_warning

                report["loso_warning"] = time_slicing_warning(parse_devices(devices or str(dev)), folds_per_device)
            report.update(bench_loso_variants(r, cache_path, devices or str(dev), folds_per_device, threads, compile,
                                              cuda, log))
    if hasattr(os, "getloadavg"):
        report["load_average_1min"]["end"] = os.getloadavg()[0]
    return report


# ----------------------------------------------------------------------------------------------- optical flow

def bench_flow(methods=None, peaks=(1.0, 3.0), patterns=None, faces: int = 2, noise: float = 1.5, size: int = 224,
               aligner=None, log=None) -> dict:
    """Endpoint error of each flow method against synthetic AU motion of known displacement, and its time per pair.

    Pairs: `faces` of synth's default photos (astronaut, Grace Hopper) aligned as preprocess aligns them, each moved
    by every AU pattern (synth.FLOW_PATTERNS) with its largest landmark displacement at each of `peaks` crop px
    (synth.au_motion_pair; sensor noise of sigma `noise` grey levels on both frames). The error is measured on the
    face (inside the convex hull of its 68 landmarks, where the ground truth is the warp that made the apex) and
    there on the pixels that move by at least a tenth of the peak ('moving'; the headline), and on all of its
    pixels ('face'); and at the landmarks that move by at least a quarter of the peak ('landmarks', where the motion
    peaks; with 'recovered', the median share of the true displacement the flow shows along it). Time: one
    compute_flow call, one OpenCV thread, as a preprocess worker runs it.
    """
    import cv2

    from mertool.face.align import FaceAligner
    from mertool.face.flow import FLOW_METHODS, compute_flow
    from mertool.synth.faces import FLOW_PATTERNS, au_motion_pair, default_faces

    methods, patterns = tuple(methods or FLOW_METHODS), tuple(patterns or FLOW_PATTERNS)
    aligner = aligner or FaceAligner(size=size)
    photos = default_faces()[:faces]
    errors = {m: {p: {"moving": [], "face": [], "landmarks": []} for p in peaks} for m in methods}
    recovered = {m: {p: [] for p in peaks} for m in methods}
    seconds = {m: [] for m in methods}
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for peak in peaks:
            for k, (name, rgb) in enumerate(photos):
                for j, aus in enumerate(patterns):
                    pair = au_motion_pair(rgb, aus, peak, size=size, noise=noise, seed=100 * k + j, aligner=aligner)
                    gt = pair.flow
                    moving = pair.face & (np.hypot(gt[..., 0], gt[..., 1]) >= 0.1 * pair.peak)
                    at_lm = _sample_at(gt, pair.landmarks)
                    lm_moving = np.hypot(at_lm[:, 0], at_lm[:, 1]) >= 0.25 * pair.peak
                    for m in methods:
                        t0 = time.perf_counter()
                        fl = compute_flow(pair.onset, pair.apex, m)
                        seconds[m].append(time.perf_counter() - t0)
                        epe = np.hypot(fl[..., 0] - gt[..., 0], fl[..., 1] - gt[..., 1])
                        errors[m][peak]["moving"].append(epe[moving])
                        errors[m][peak]["face"].append(epe[pair.face])
                        got, want = _sample_at(fl, pair.landmarks)[lm_moving], at_lm[lm_moving]
                        errors[m][peak]["landmarks"].append(np.hypot(*(got - want).T))
                        recovered[m][peak].append((got * want).sum(1) / (want * want).sum(1))
            if log:
                log(f"flow at {peak:g} px done")
    finally:
        cv2.setNumThreads(threads)

    def stats(parts: list) -> dict:
        v = np.concatenate(parts)
        return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "pixels": int(v.size)}

    out = {}
    for m in methods:
        out[m] = {"seconds_per_pair": float(np.median(seconds[m])), "pairs_timed": len(seconds[m]),
                  "epe": {f"{p:g}": {kind: stats(parts) for kind, parts in errors[m][p].items()} for p in peaks},
                  "recovered": {f"{p:g}": float(np.median(np.concatenate(recovered[m][p]))) for p in peaks}}
    return {"methods": out, "peaks": list(peaks), "patterns": [list(p) for p in patterns],
            "faces": [name for name, _ in photos], "noise": noise, "size": size,
            "pixels": "moving: inside the 68-landmark hull and moved by >= 0.1 x peak; face: the whole hull; "
                      "landmarks: the 68 landmarks moved by >= 0.25 x peak"}


def _sample_at(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """K x 2 values of an H x W x 2 field at K sub-pixel points (x, y), bilinear."""
    import cv2

    xs = np.ascontiguousarray(points[:, 0], np.float32)[None]
    ys = np.ascontiguousarray(points[:, 1], np.float32)[None]
    return np.stack([cv2.remap(np.ascontiguousarray(field[..., k]), xs, ys, cv2.INTER_LINEAR)[0] for k in (0, 1)], 1)


def flow_rows(flow: dict) -> list[tuple[str, str, str]]:
    """(measure, value, note) rows of bench_flow's figures: one per method."""
    rows = []
    for m, r in flow["methods"].items():
        epe = " / ".join(f"{r['epe'][p]['moving']['median']:.3f}" for p in r["epe"])
        rows.append((f"{m} flow", f"{1e3 * r['seconds_per_pair']:.0f} ms a pair",
                     f"median endpoint error {epe} px at {' / '.join(r['epe'])} px AU motion (moving face pixels, "
                     f"{flow['size']} px, noise {flow['noise']:g}); 1 thread"))
    return rows


# ------------------------------------------------------------------------------------------------- rendering

def _si(x: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def bench_rows(rep: dict) -> list[tuple[str, str, str]]:
    """(measure, value, note) rows of the report's table."""
    m, t, d, c = rep["matmul"], rep["train"], rep["data"], rep["config"]
    gpu = rep["device"]["type"] == "cuda"
    sizes = ", ".join(f"{n}: {_si(v, 'FLOP/s')}" for n, v in m["sizes"].items())
    est = rep["loso_estimate"]
    rows = [
        ("device", f"{rep['device'].get('name', '?')} ({rep['device']['type']})",
         f"{rep['device'].get('torch_threads')} threads" + (", 1-min load average {start:.1f} at start, {end:.1f} at "
                                                             "end".format(**rep["load_average_1min"])
                                                             if "load_average_1min" in rep else "")),
        (f"dense matmul rate ({m['dtype']})", _si(m["flops"], "FLOP/s"), f"best of n x n: {sizes}"),
        ("model", f"{rep['model']['parameters'] / 1e6:.2f} M parameters",
         f"{c['recipe_name'] or c['recipe']}, {c['image_size']} px"),
        ("FLOPs per training sample", _si(rep["model"]["train_flops_per_sample"], "FLOP"),
         f"forward + backward (forward {_si(rep['model']['forward_flops_per_sample'], 'FLOP')})"),
        ("training throughput", f"{t['samples_per_s']:.3g} samples/s",
         f"batch {t['batch']}, accumulation {t['accum_steps']}, {t['samples']} samples, real loop"),
        ("achieved", _si(t["achieved_flops"], "FLOP/s"), ""),
        ("model FLOP utilisation", f"{100 * t['mfu']:.1f} %",
         f"achieved / dense rate{' (target >= 50 %)' if gpu else ''}; step alone {100 * t['step_mfu']:.1f} %"),
        ("epoch from the cache", f"{d['epoch_from_cache_s']:.3g} s",
         "gather + uint8->float + augmentation on the device, then the step"),
        ("epoch, batches prebuilt", f"{d['epoch_preloaded_s']:.3g} s", "same batches already on the device"),
        ("data path share", f"{d['overhead_pct']:.1f} %",
         f"(cache - prebuilt) / cache, ratio {d['ratio']:.3f}{'; target <= 5 %' if gpu else ''}"),
        ("data path, timed alone", f"{d['data_path_s']:.3g} s",
         f"{d['direct_pct']:.1f} % of an epoch; one-off cache load {d['cache_load_s']:.2f} s "
         f"({c['cache_samples']} samples, {c['cache_bytes'] / 1e6:.0f} MB)"),
        ("alignment", "-", rep["align"]["skipped"]) if "skipped" in rep["align"] else
        ("alignment", f"{rep['align']['frames_per_s']:.3g} frames/s",
         f"{rep['align']['pairs_per_s']:.3g} pairs/s; {rep['align']['image']}; HOG detector "
         f"{rep['align']['detect_ms'][0]:.0f} ms at upsample 0, {rep['align']['detect_ms'][1]:.0f} ms at 1; "
         f"registration ({rep['align']['register']}) {rep['align']['registration_ms']:.0f} ms per pair; pair "
         f"(alignment + registration) {rep['align']['pair_ms']:.0f} ms on one core at a CPU matmul rate of "
         f"{rep['align']['cpu_matmul_flops'] / 1e9:.0f} GFLOP/s, {rep['align']['pair_ms_at_180']:.0f} ms scaled to "
         f"180 GFLOP/s (target <= {rep['align']['pair_target_ms']:.0f} ms)"),
        ("predict latency", "-", rep["predict"]["skipped"]) if "skipped" in rep["predict"] else
        ("predict latency", f"{rep['predict']['pair_ms']:.0f} ms",
         f"pair -> probabilities, best of {rep['predict']['reps']}; forward alone "
         f"{rep['predict']['forward_ms']:.0f} ms"),
        *(flow_rows(rep["flow"]) if "flow" in rep else []),
        ("full LOSO estimate", _duration(est["seconds"]),
         f"{est['subjects']} folds x {est['epochs']} epochs over this cache's {est['samples']} samples, training "
         f"steps only, one process at the measured throughput"),
    ]
    if "loso" in rep:
        lo = rep["loso"]
        rows.append(("full LOSO, measured", _duration(lo["seconds"]),
                     f"{lo['folds']} folds x {lo['epochs']} epochs, {lo['samples']} samples on {lo['devices']}, "
                     f"{lo['folds_per_device']} fold(s) per device{'; target <= 3 min on one H100' if gpu else ''}"))
    if "loso_k1" in rep:
        k1 = rep["loso_k1"]
        rows.append(("full LOSO, 1 fold per device", _duration(k1["seconds"]),
                     f"K = {rep['loso']['folds_per_device']} is {k1['seconds'] / rep['loso']['seconds']:.2f}x "
                     f"as fast" + (" (without NVIDIA MPS the K processes time-slice the GPU)" if gpu else "")))
    if "loso_no_cudnn_benchmark" in rep:
        base = rep.get("loso_k1", rep["loso"])
        off = rep["loso_no_cudnn_benchmark"]
        rows.append(("full LOSO, cudnn.benchmark off", _duration(off["seconds"]),
                     f"1 fold per device; autotuning on is {off['seconds'] / base['seconds']:.2f}x as fast"))
    return rows


def render_bench(rep: dict, console) -> None:
    """The report as a rich table."""
    from rich.table import Table

    table = Table(title=f"mertool bench on {rep['device']['type']} ({rep['dtype']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("how / note")
    for row in bench_rows(rep):
        table.add_row(*row)
    console.print(table)
    if rep.get("loso_warning"):
        console.print(rep["loso_warning"])


def to_json(rep: dict) -> str:
    """JSON text of a report (numbers as floats, keys as strings)."""
    import json

    return json.dumps(rep, indent=2, default=str)
