"""Shared test fixtures: the path to ../shared/realdata (skip when absent) and small synthetic caches."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Under `pytest -n 2` on a 2-core machine torch's default thread pool per worker oversubscribes the CPU
# (a model test file took 92 s instead of 19 s): one thread per worker, also for the subprocesses tests start.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

REALDATA = Path(os.environ.get("MERTOOL_REALDATA", Path(__file__).resolve().parents[1].parent / "shared" / "realdata"))


@pytest.fixture
def realdata() -> Path:
    """The real material folder, or a skip when this checkout has none (a user's fresh clone)."""
    if not REALDATA.is_dir():
        pytest.skip(f"real data not available at {REALDATA}")
    return REALDATA


def make_synthetic_cache(path: Path, subjects: int = 4, per_class: int = 2, size: int = 64,
                         emotions=("happiness", "disgust", "repression", "surprise", "others"), seed: int = 0,
                         dataset: str = "casme2") -> Path:
    """Write a small cache whose apex differs from the onset by a class-specific pattern (learnable, not trivial)."""
    from mertool.cache.store import CachedSample, CacheWriter
    from mertool.data.aus import AU_VOCAB

    rng = np.random.default_rng(seed)
    class_aus = {"happiness": (6, 12), "disgust": (4, 9), "repression": (14, 17), "surprise": (1, 2),
                 "others": (4,), "other": (4,), "anger": (4, 7), "contempt": (14,)}
    w = CacheWriter(path, dataset=dataset, image_size=size, alignment={"method": "synthetic-test"})
    for s in range(subjects):
        base = rng.integers(40, 200, (size, size, 3)).astype(np.float32)
        for ci, emo in enumerate(emotions):
            for k in range(per_class):
                onset = np.clip(base + rng.normal(0, 3, base.shape), 0, 255)
                apex = onset.copy()
                band = slice(ci * size // len(emotions), (ci + 1) * size // len(emotions))
                apex[band] += 40.0  # class-specific horizontal band of motion
                aus = np.zeros(len(AU_VOCAB), np.uint8)
                for au in class_aus.get(emo, ()):
                    aus[AU_VOCAB.index(au)] = 1
                w.append(CachedSample(
                    onset=onset.astype(np.uint8), apex=np.clip(apex, 0, 255).astype(np.uint8), aus=aus,
                    landmarks=None, subject=f"{s + 1:02d}", sample_id=f"EP{ci:02d}_{k:02d}", emotion=emo,
                    aus_raw="+".join(str(a) for a in class_aus.get(emo, ())), onset_frame=1, apex_frame=5,
                    offset_frame=9))
    return w.close()


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: two test workers x two threads on two busy cores make OpenMP barriers crawl."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def synthetic_cache(tmp_path) -> Path:
    """A 4-subject, 5-class, 64-px cache (40 samples)."""
    return make_synthetic_cache(tmp_path / "synthetic.h5")


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` run wherever a GPU is and skip, with the reason, where none is."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is false here")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
